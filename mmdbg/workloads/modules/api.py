"""The kernel API a module sees (what ``#include <linux/slab.h>`` & co. give a C module).

Memory is touched through ``read8..read64``/``write8..write64``/``memset``/``memcpy``: these
are the instrumented accesses KASAN and KFENCE check.  ``pr_info``/``pr_err`` go to dmesg
prefixed with the module name when given ``mod`` (``pr_fmt``).
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim import trace
from mmdbg.sim.include.gfp import (  # noqa: F401
    __GFP_ACCOUNT,
    __GFP_NOWARN,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_ATOMIC,
    GFP_DMA,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_NOWAIT,
)
from mmdbg.sim.kernel.printk import KERN_ERR, KERN_INFO, KERN_WARNING
from mmdbg.sim.mm import page_alloc
from mmdbg.sim.mm.kmem_access import (  # noqa: F401
    KernelOops,
    kmem_read,
    kmem_write,
    memcpy,
    memset,
    read8,
    read16,
    read32,
    read64,
    read_string,
    write8,
    write16,
    write32,
    write64,
    write_string,
)
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE  # noqa: F401
from mmdbg.sim.mm.slab import (  # noqa: F401
    SLAB_ACCOUNT,
    SLAB_HWCACHE_ALIGN,
    SLAB_NO_MERGE,
    SLAB_PANIC,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_TYPESAFE_BY_RCU,
    ZERO_SIZE_PTR,
)
from mmdbg.sim.mm.slab_common import (  # noqa: F401
    kcalloc,
    kfree,
    kfree_sensitive,
    kmalloc,
    kmalloc_array,
    kmem_cache_alloc,
    kmem_cache_create,
    kmem_cache_destroy,
    kmem_cache_free,
    kmem_cache_shrink,
    kmem_cache_zalloc,
    krealloc,
    ksize,
    kzalloc,
)
from mmdbg.sim.mm.vmalloc import kvfree, kvmalloc, vfree, vmalloc, vmap, vunmap, vzalloc  # noqa: F401

ENOMEM = errno.ENOMEM
EINVAL = errno.EINVAL
LIST_POISON1 = 0xDEAD000000000100
LIST_POISON2 = 0xDEAD000000000122


def machine() -> Any:
    return trace.current_machine()


def _printk(level: int, mod: Any, text: str) -> None:
    m = machine()
    prefix = f"{mod.name}: " if mod is not None else ""
    m.printk(prefix + text, level=level)


def pr_info(text: str, mod: Any = None) -> None:
    _printk(KERN_INFO, mod, text)


def pr_warn(text: str, mod: Any = None) -> None:
    _printk(KERN_WARNING, mod, text)


def pr_err(text: str, mod: Any = None) -> None:
    _printk(KERN_ERR, mod, text)


def alloc_pages(gfp: int, order: int) -> int | None:
    """Returns a pfn (the simulator's ``struct page *``) or None."""
    return page_alloc.alloc_pages(gfp, order)


def free_pages(pfn: int, order: int) -> None:
    getattr(page_alloc, "__free_pages")(pfn, order)


def page_address(pfn: int) -> int:
    return PAGE_OFFSET + (pfn << PAGE_SHIFT)


def virt_to_pfn(addr: int) -> int:
    return (addr - PAGE_OFFSET) >> PAGE_SHIFT


def msleep(ms: int) -> None:
    """Let simulated time pass (the debugging tools' timers run on it)."""
    m = machine()
    m.clock.advance(ms * 1_000_000)
    if m.kmemleak is not None:
        from mmdbg.sim.mm.kmemleak import kmemleak_poll

        kmemleak_poll(m)


def msleep_interruptible(ms: int) -> Any:
    """In a kernel thread (a generator): ``yield msleep_interruptible(ms)`` sleeps ``ms`` of
    simulated time on the scheduler, letting other tasks, the kmemleak scan thread and
    KFENCE's sampling gate run meanwhile."""
    from mmdbg.sim.kernel.sched_core import Sleep

    return Sleep(ms * 1_000_000)


def kthread_run(mod: Any, threadfn: Any, name: str) -> Any:
    """Start a kernel thread running the generator ``threadfn(mod)``; returns its task.
    The thread ends when the generator returns; it should return once
    :func:`kthread_should_stop` is true."""
    from mmdbg.sim.kernel import fork

    t = fork.kthread_run(lambda _m: threadfn(mod), name)
    t.kthread_should_stop = False
    return t


def kthread_should_stop() -> bool:
    return bool(getattr(machine().current, "kthread_should_stop", False))


def kthread_stop(t: Any) -> None:
    """Ask the thread to stop and wake it (rmmod's exit function calls it): it runs to its
    ``return`` at its next step, before the module's memory goes away it touches nothing."""
    from mmdbg.sim.kernel.sched_core import wake_up_process

    t.kthread_should_stop = True
    if not t.exit_state:
        wake_up_process(t)


def num_possible_cpus() -> int:
    return machine().ncpus


def current() -> Any:
    return machine().current


def stack_frame(mod: Any, variables: list[tuple[str, int]]) -> dict[str, int]:
    """Locals of the calling function on the task's kernel stack, KASAN-redzoned the way the
    compiler lays them out (32-byte left redzone, each variable padded to 32 bytes with a
    mid/right redzone).  Returns name -> address; release with :func:`stack_frame_end`."""
    import sys

    from mmdbg.sim.lib import stackdepot

    m = machine()
    t = m.current
    layout = []
    off = 32
    for name, size in variables:
        layout.append((off, size, name))
        off += ((size + 31) & ~31) + 32
    frame_size = off
    t.stack_sp -= frame_size
    base = t.stack_sp
    if m.kasan is not None:
        m.kasan.poison_stack_frame(base, layout)
        st = stackdepot.save_stack((), 1, sys._getframe(1))
        func = stackdepot.format_frame(st[0]) if st else "?"
        m.kasan.stack_frames[base] = (t, func, layout, frame_size)
    return {name: base + o for o, _s, name in layout} | {"__base__": base,
                                                            "__size__": frame_size}


def stack_frame_end(frame: dict[str, int]) -> None:
    m = machine()
    t = m.current
    base, size = frame["__base__"], frame["__size__"]
    if m.kasan is not None:
        m.kasan.unpoison_stack(base, size)
        m.kasan.stack_frames.pop(base, None)
    t.stack_sp = base + size
