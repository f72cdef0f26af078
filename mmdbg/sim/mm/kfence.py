"""KFENCE (mm/kfence/core.c, report.c): sampled slab allocations in a guarded pool.

With ``kfence.sample_interval=MS`` (simulated milliseconds, 0 = off) the machine has a pool of
``CONFIG_KFENCE_NUM_OBJECTS`` = 255 object pages, each between guard pages
(``(255 + 1) * 2`` pages).  Once per interval the allocation gate opens and the next slab
allocation of at most a page is served from the pool instead: the object is placed at the
start or the end of its page (at random, as the kernel does) and the rest of the page is
filled with canary bytes (``0xaa ^ (addr & 7)``).

Detections, reported in the kernel's format (reference/reports.md §4):

* an access to a guard page: ``out-of-bounds`` (the nearest allocated object's index and the
  distance);
* an access to a freed object's page: ``use-after-free``;
* a free of an address that is not the object's start, or of a freed object: ``invalid free``;
* canary bytes changed when the object is freed: ``memory corruption`` with the
  ``[ ! . . ]`` map.

Accesses are checked by ``sim/mm/kmem_access.py`` (the page fault KFENCE turns into a report).
``/sys/kernel/debug/kfence/stats`` and ``objects`` print the pool.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.include.gfp import GFP_KERNEL
from mmdbg.sim.kernel.printk import KERN_ERR
from mmdbg.sim.lib import stackdepot
from mmdbg.sim.mm import page_alloc
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE
from mmdbg.sim.mm.slab import SLAB_SKIP_KFENCE, KmemCache
from mmdbg.sim.trace import kfunc

CONFIG_KFENCE_NUM_OBJECTS = 255
KFENCE_POOL_SIZE = (CONFIG_KFENCE_NUM_OBJECTS + 1) * 2 * PAGE_SIZE
UNUSED, ALLOCATED, FREED = 0, 1, 2

_INTERNAL = ("kfence_alloc", "__kfence_alloc", "kfence_guarded_alloc", "kfence_free",
             "__kfence_free", "kfence_handle_page_fault", "kfence_report_error",
             "slab_alloc_node", "slab_post_alloc_hook", "__do_kmalloc_node", "kmem_read",
             "kmem_write", "memset", "memcpy", "kfree", "kmem_cache_free", "slab_free",
             "_kfree_nonslab", "__kmalloc_noprof", "kmem_cache_alloc_noprof")


def canary(addr: int) -> int:
    return 0xAA ^ (addr & 7)


class KfenceTrack:
    __slots__ = ("cpu", "pid", "stack", "ts")

    def __init__(self, m: Any, skip: tuple[str, ...]) -> None:
        t = m.current
        self.pid = t.pid if t else 0
        self.cpu = m.cpu
        self.ts = m.clock.ns
        self.stack = stackdepot.depot(m).save(stackdepot.save_stack(skip))


class KfenceMetadata:
    """``struct kfence_metadata``: one object slot of the pool."""

    ktype = "kfence_metadata"
    __slots__ = ("addr", "alloc_track", "cache", "free_track", "index", "page", "size", "state")

    def __init__(self, index: int, page: int) -> None:
        self.index = index
        self.page = page  # the object page's address
        self.addr = page
        self.size = 0
        self.cache: KmemCache | None = None
        self.state = UNUSED
        self.alloc_track: KfenceTrack | None = None
        self.free_track: KfenceTrack | None = None


class Kfence:
    ktype = "kfence"

    def __init__(self, m: Any, interval_ms: int) -> None:
        self.m = m
        self.interval_ns = interval_ms * 1_000_000
        self.next_gate = self.interval_ns
        pfn = page_alloc.alloc_pages(GFP_KERNEL, 9)
        if pfn is None:
            raise MemoryError("kfence pool")
        self.pool_pfn = pfn
        self.pool = PAGE_OFFSET + (pfn << PAGE_SHIFT)
        self.pool_end = self.pool + KFENCE_POOL_SIZE
        self.meta = [KfenceMetadata(i, self.pool + (2 * i + 2) * PAGE_SIZE)
                     for i in range(CONFIG_KFENCE_NUM_OBJECTS)]
        self.freelist: deque[KfenceMetadata] = deque(self.meta)
        self.stats = {"allocations": 0, "frees": 0, "zombies": 0, "bugs": 0, "skipped": 0}
        self.enabled = True

    # -- pool geometry ----------------------------------------------------------------------
    def in_pool(self, addr: int) -> bool:
        return self.pool <= addr < self.pool_end

    is_kfence_address = in_pool

    def addr_to_metadata(self, addr: int) -> KfenceMetadata | None:
        idx = (addr - self.pool) // PAGE_SIZE
        if idx < 2 or idx % 2 or idx >= 2 * (CONFIG_KFENCE_NUM_OBJECTS + 1):
            return None
        return self.meta[idx // 2 - 1]

    # -- allocation -----------------------------------------------------------------------
    def kfence_alloc(self, s: KmemCache, size: int, flags: int) -> int:
        m = self.m
        if not self.enabled or not self.interval_ns or m.clock.ns < self.next_gate:
            return 0
        if size > PAGE_SIZE or s.flags & SLAB_SKIP_KFENCE or s.size > PAGE_SIZE:
            return 0
        if not self.freelist:
            self.stats["skipped"] += 1
            return 0
        self.next_gate = m.clock.ns + self.interval_ns
        return kfence_guarded_alloc(self, s, size, flags)

    def kfence_ksize(self, addr: int) -> int:
        meta = self.addr_to_metadata(addr)
        return meta.size if meta is not None and meta.state == ALLOCATED else 0

    def kfence_free(self, addr: int) -> None:
        _kfence_free(self, addr)

    def kfence_handle_access(self, addr: int, size: int, write: bool) -> None:
        kfence_handle_page_fault(self, addr, write)

    def _write(self, addr: int, data: bytes) -> None:
        self.m.physmem.write(addr - PAGE_OFFSET, data)

    def _read(self, addr: int, n: int) -> bytes:
        return self.m.physmem.read(addr - PAGE_OFFSET, n)


@kfunc
def kfence_guarded_alloc(k: Kfence, s: KmemCache, size: int, flags: int) -> int:
    m = k.m
    meta = k.freelist.popleft()
    page = meta.page
    if m.rng.getrandbits(1):
        addr = page + ((PAGE_SIZE - size) & ~(s.align - 1))
    else:
        addr = page
    meta.addr = addr
    meta.size = size
    meta.cache = s
    meta.state = ALLOCATED
    meta.alloc_track = KfenceTrack(m, _INTERNAL)
    meta.free_track = None
    # canaries around the object
    k._write(page, bytes(canary(a) for a in range(page, addr)))
    k._write(addr + size, bytes(canary(a) for a in range(addr + size, page + PAGE_SIZE)))
    if flags & 0x100:  # __GFP_ZERO
        k._write(addr, bytes(size))
    k.stats["allocations"] += 1
    return addr


@kfunc(name="__kfence_free")
def _kfence_free(k: Kfence, addr: int) -> None:
    meta = k.addr_to_metadata(addr)
    if meta is None or meta.state != ALLOCATED or addr != meta.addr:
        kfence_report_error(k, addr, False, meta, "invalid-free")
        return
    # check_canary
    bad = [a for a in range(meta.page, meta.addr) if k._read(a, 1)[0] != canary(a)]
    end = meta.addr + meta.size
    bad += [a for a in range(end, meta.page + PAGE_SIZE) if k._read(a, 1)[0] != canary(a)]
    if bad:
        kfence_report_error(k, bad[0], False, meta, "corruption")
    meta.state = FREED
    meta.free_track = KfenceTrack(k.m, _INTERNAL)
    k.freelist.append(meta)
    k.stats["frees"] += 1


@kfunc
def kfence_handle_page_fault(k: Kfence, addr: int, is_write: bool) -> bool:
    idx = (addr - k.pool) // PAGE_SIZE
    to_report = None
    if idx < 2 or idx % 2:
        distance = 0
        left = k.addr_to_metadata(addr - PAGE_SIZE)
        if left is not None and left.state == ALLOCATED:
            to_report = left
            distance = addr - (left.addr + left.size)
        right = k.addr_to_metadata(addr + PAGE_SIZE)
        if right is not None and right.state == ALLOCATED and (
                to_report is None or distance > right.addr - addr):
            to_report = right
        if to_report is None:
            kfence_report_error(k, addr, is_write, None, "invalid")
            return True
        kfence_report_error(k, addr, is_write, to_report, "oob")
        return True
    meta = k.addr_to_metadata(addr)
    if meta is not None and meta.state == FREED:
        kfence_report_error(k, addr, is_write, meta, "uaf")
        return True
    return False


def _pr(m: Any, text: str) -> None:
    m.printk(text, level=KERN_ERR)


def _ts(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns // 1000 % 1_000_000:06d}s"


def print_object_lines(k: Kfence, meta: KfenceMetadata) -> list[str]:
    m = k.m
    cache = meta.cache.name if meta.cache is not None else "<destroyed>"
    out = [f"kfence-#{meta.index}: 0x{meta.addr:016x}-0x{meta.addr + meta.size - 1:016x}, "
           f"size={meta.size}, cache={cache}", ""]
    tr = meta.alloc_track
    if tr is not None:
        age = f" (age: {_ts(m.clock.ns - tr.ts)})" if meta.state == ALLOCATED else ""
        out.append(f"allocated by task {tr.pid} on cpu {tr.cpu} at {_ts(tr.ts)}{age}:")
        out += stackdepot.depot(m).print_lines(tr.stack)
    if meta.state == FREED and meta.free_track is not None:
        tr = meta.free_track
        out.append("")
        out.append(f"freed by task {tr.pid} on cpu {tr.cpu} at {_ts(tr.ts)}:")
        out += stackdepot.depot(m).print_lines(tr.stack)
    return out


@kfunc
def kfence_report_error(k: Kfence, addr: int, is_write: bool, meta: KfenceMetadata | None,
                        kind: str) -> None:
    m = k.m
    k.stats["bugs"] += 1
    stack = stackdepot.save_stack((*_INTERNAL, "page_fault_oops", "check_access", "_pages"))
    where = stackdepot.format_frame(stack[0]) if stack else "0x0"
    acc = "write" if is_write else "read"
    _pr(m, "=" * 66)
    idx = meta.index if meta is not None else -1
    if kind == "oob":
        left = addr < meta.addr  # type: ignore[union-attr]
        dist = meta.addr - addr if left else addr - meta.addr  # type: ignore[union-attr]
        _pr(m, f"BUG: KFENCE: out-of-bounds {acc} in {where}")
        _pr(m, "")
        _pr(m, f"Out-of-bounds {acc} at 0x{addr:016x} ({dist}B {'left' if left else 'right'} "
               f"of kfence-#{idx}):")
    elif kind == "uaf":
        _pr(m, f"BUG: KFENCE: use-after-free {acc} in {where}")
        _pr(m, "")
        _pr(m, f"Use-after-free {acc} at 0x{addr:016x} (in kfence-#{idx}):")
    elif kind == "corruption":
        _pr(m, f"BUG: KFENCE: memory corruption in {where}")
        _pr(m, "")
        start = addr
        end = min(start + 16, (meta.addr if addr < meta.addr else meta.page + PAGE_SIZE))  # type: ignore[union-attr]
        marks = " ".join("!" if k._read(a, 1)[0] != canary(a) else "." for a in range(start, end))
        _pr(m, f"Corrupted memory at 0x{addr:016x} [ {marks} ] (in kfence-#{idx}):")
    elif kind == "invalid-free":
        _pr(m, f"BUG: KFENCE: invalid free in {where}")
        _pr(m, "")
        _pr(m, f"Invalid free of 0x{addr:016x} (in kfence-#{idx}):")
    else:
        _pr(m, f"BUG: KFENCE: invalid {acc} in {where}")
        _pr(m, "")
        _pr(m, f"Invalid {acc} at 0x{addr:016x}:")
    for fr in stack:
        _pr(m, " " + stackdepot.format_frame(fr))
    if meta is not None:
        _pr(m, "")
        for line in print_object_lines(k, meta):
            _pr(m, line)
    _pr(m, "")
    for line in stackdepot.dump_stack_lines(m)[:2]:
        _pr(m, line)
    _pr(m, "=" * 66)
    m.add_taint("B")
    k.last_report = kind  # type: ignore[attr-defined]


def kfence_init(m: Any) -> None:
    interval = m.config.kfence_sample_interval
    if not interval:
        m.kfence = None
        return
    m.kfence = Kfence(m, interval)
    m.printk(f"kfence: initialized - using {KFENCE_POOL_SIZE} bytes for "
             f"{CONFIG_KFENCE_NUM_OBJECTS} objects at 0x{m.kfence.pool:016x}-"
             f"0x{m.kfence.pool_end:016x}")


def stats_text(m: Any) -> str:
    k = m.kfence
    if k is None:
        return "enabled: 0\n"
    inuse = sum(1 for x in k.meta if x.state == ALLOCATED)
    return (f"enabled: 1\ncurrently allocated: {inuse}\ntotal allocations: "
            f"{k.stats['allocations']}\ntotal frees: {k.stats['frees']}\nzombie allocations: 0\n"
            f"total bugs: {k.stats['bugs']}\nskipped allocations (incompatible): 0\n"
            f"skipped allocations (capacity): {k.stats['skipped']}\n"
            "skipped allocations (covered): 0\n")


def objects_text(m: Any) -> str:
    k = m.kfence
    if k is None:
        return ""
    out = []
    for meta in k.meta:
        if meta.state == UNUSED:
            out.append(f"kfence-#{meta.index} unused")
        else:
            out += print_object_lines(k, meta)
        out.append("-" * 66)
    return "".join(line + "\n" for line in out)


def kfence_free_any(addr: int) -> None:
    m = _trace._current
    if m.kfence is not None:
        m.kfence.kfence_free(addr)
