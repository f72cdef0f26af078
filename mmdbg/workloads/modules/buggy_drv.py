"""buggy_drv: a driver-like module with one of three classic slab bugs (the scenarios of
docs/slab-debugging.md).  A kernel thread ``buggy_drv`` does the work on simulated time, one
step every ``interval_ms``; the ``bug`` parameter picks the bug:

``leak``
    Each step submits a request (``kmalloc(size)``, ``struct buggy_req``: seq, ctx pointer,
    list_head) on a pending list headed in module memory, with a 64-byte DMA context
    (``buggy_map_ctx``: ``kzalloc(64)``) it points to.  Completing a request frees both --
    except on the error path, taken by every ``leak_every``-th request, which returns
    before ``kfree(ctx)``: that context is lost (no pointer to it remains in memory).
``uaf``
    The thread polls a session object (``kmalloc(128)``, pointer in the global
    ``cur_session``).  Every ``uaf_after`` steps ``buggy_close_session`` frees it but forgets
    to clear ``cur_session``; the next ``buggy_poll_session`` reads the freed object
    (use-after-free), then a new session is opened.
``oob``
    Each step ``buggy_fill_buffer`` allocates ``size`` bytes, fills them and writes the
    terminating NUL one byte past the end (``buf[size] = 0``), then frees the buffer.

``rmmod buggy_drv`` stops the thread and frees what the module still references.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mmdbg.workloads.modules.api import (
    EINVAL,
    ENOMEM,
    GFP_KERNEL,
    kfree,
    kmalloc,
    kthread_run,
    kthread_should_stop,
    kthread_stop,
    kzalloc,
    memset,
    msleep_interruptible,
    pr_info,
    read32,
    read64,
    write8,
    write32,
    write64,
)

PARAMS = {"bug": "leak", "interval_ms": 50, "size": 96, "leak_every": 8, "uaf_after": 5}
GLOBALS = {"pending": 16, "cur_session": 8}  # struct list_head pending; struct session *cur
REQ_SEQ, REQ_CTX, REQ_NODE = 0, 8, 16  # struct buggy_req { u64 seq; void *ctx; list_head node; }
CTX_SIZE = 64
SESSION_SIZE = 128
MAX_PENDING = 4


# -- the leak ---------------------------------------------------------------------------------
def buggy_map_ctx(mod: Any, seq: int) -> int:
    ctx = kzalloc(CTX_SIZE, GFP_KERNEL)
    if ctx:
        write64(ctx, seq)
    return ctx


def buggy_submit(mod: Any, seq: int) -> int:
    req = kmalloc(mod.size, GFP_KERNEL)
    if not req:
        return -ENOMEM
    write64(req + REQ_SEQ, seq)
    write64(req + REQ_CTX, buggy_map_ctx(mod, seq))
    head = mod.addr("pending")  # list_add_tail(&req->node, &pending)
    node = req + REQ_NODE
    prev = read64(head + 8)
    write64(node, head)
    write64(node + 8, prev)
    write64(prev, node)
    write64(head + 8, node)
    return 0


def buggy_complete(mod: Any) -> int:
    head = mod.addr("pending")
    node = read64(head)
    if node == head:
        return 0
    nxt, prev = read64(node), read64(node + 8)  # list_del(&req->node)
    write64(nxt + 8, prev)
    write64(prev, nxt)
    req = node - REQ_NODE
    seq = read64(req + REQ_SEQ)
    ctx = read64(req + REQ_CTX)
    kfree(req)
    if seq % mod.leak_every == 0:
        return -EINVAL  # the error path: "goto out" skips kfree(ctx) -- the leak
    kfree(ctx)
    return 0


def buggy_pending(mod: Any) -> int:
    head = mod.addr("pending")
    n, node = 0, read64(head)
    while node != head:
        n += 1
        node = read64(node)
    return n


def buggy_leak_thread(mod: Any) -> Generator:
    seq = 0
    while not kthread_should_stop():
        seq += 1
        buggy_submit(mod, seq)
        while buggy_pending(mod) > MAX_PENDING:
            buggy_complete(mod)
        yield msleep_interruptible(mod.interval_ms)
    return 0


# -- the use-after-free -----------------------------------------------------------------------
def buggy_open_session(mod: Any, sid: int) -> int:
    s = kmalloc(SESSION_SIZE, GFP_KERNEL)
    if s:
        memset(s, 0, SESSION_SIZE)
        write32(s, 1)  # refcount
        write32(s + 4, sid)
        write64(mod.addr("cur_session"), s)
        mod.data["closed"] = False
    return s


def buggy_close_session(mod: Any) -> None:
    s = read64(mod.addr("cur_session"))
    kfree(s)  # the bug: cur_session still points to the freed object
    mod.data["closed"] = True


def buggy_poll_session(mod: Any) -> int:
    s = read64(mod.addr("cur_session"))
    return read32(s + 4)  # session->id


def buggy_uaf_thread(mod: Any) -> Generator:
    sid = 1
    buggy_open_session(mod, sid)
    tick = 0
    while not kthread_should_stop():
        tick += 1
        buggy_poll_session(mod)
        if tick % mod.uaf_after == 0:
            buggy_close_session(mod)
            yield msleep_interruptible(mod.interval_ms)
            if kthread_should_stop():
                break
            buggy_poll_session(mod)  # reads the freed session
            sid += 1
            buggy_open_session(mod, sid)
        yield msleep_interruptible(mod.interval_ms)
    return 0


# -- the off-by-one ---------------------------------------------------------------------------
def buggy_fill_buffer(mod: Any) -> int:
    buf = kmalloc(mod.size, GFP_KERNEL)
    if not buf:
        return -ENOMEM
    memset(buf, 0x78, mod.size)
    write8(buf + mod.size, 0)  # buf[size] = '\0': one byte past the end
    kfree(buf)
    return 0


def buggy_oob_thread(mod: Any) -> Generator:
    while not kthread_should_stop():
        buggy_fill_buffer(mod)
        yield msleep_interruptible(mod.interval_ms)
    return 0


THREADS = {"leak": buggy_leak_thread, "uaf": buggy_uaf_thread, "oob": buggy_oob_thread}


def buggy_init(mod: Any) -> int:
    fn = THREADS.get(mod.bug)
    if fn is None or mod.interval_ms <= 0 or mod.size < 32 or mod.leak_every <= 0 \
            or mod.uaf_after <= 0:
        return -EINVAL
    head = mod.addr("pending")
    write64(head, head)  # LIST_HEAD_INIT
    write64(head + 8, head)
    mod.data["thread"] = kthread_run(mod, fn, "buggy_drv")
    pr_info(f"bug={mod.bug} interval={mod.interval_ms}ms size={mod.size}", mod)
    return 0


def buggy_exit(mod: Any) -> None:
    t = mod.data.pop("thread", None)
    if t is not None:
        kthread_stop(t)
    head = mod.addr("pending")
    node = read64(head)
    while node != head:
        nxt = read64(node)
        req = node - REQ_NODE
        kfree(read64(req + REQ_CTX))
        kfree(req)
        node = nxt
    write64(head, head)
    write64(head + 8, head)
    if mod.bug == "uaf":
        s = read64(mod.addr("cur_session"))
        write64(mod.addr("cur_session"), 0)
        if not mod.data.get("closed"):
            kfree(s)
    pr_info("unloaded", mod)


module_init = buggy_init
module_exit = buggy_exit
