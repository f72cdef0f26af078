"""Generic KASAN (mm/kasan/common.c, generic.c, quarantine.c): the allocator hooks.

``machine.kasan`` is a :class:`Kasan` when the machine booted with ``kasan=on``.  SLUB,
kmalloc, vmalloc and the memory accessors call it where the kernel calls its ``kasan_*``
hooks:

* ``kasan_poison_slab`` (a new slab is all ``KASAN_SLAB_REDZONE``), ``kasan_slab_alloc`` /
  ``__kasan_kmalloc`` (unpoison the object, or exactly the requested kmalloc size, save the
  alloc track), ``kasan_slab_free`` (detect invalid and double frees, poison the object
  ``KASAN_SLAB_FREE`` with the free track in its first granule ``KASAN_SLAB_FREETRACK``, put it
  in the quarantine), ``kasan_kmalloc_large``/``kasan_kfree_large`` (``KASAN_PAGE_REDZONE``
  after the object), ``kasan_unpoison_vmalloc``/``kasan_poison_vmalloc``;
* ``kasan_check_range``: every simulated kernel memory access (``sim/mm/kmem_access.py``);
* the quarantine: freed objects wait in a FIFO of at most 1/32 of RAM before SLUB gets them
  back (``quarantine_reduce``), so a use-after-free reads poisoned memory, not a new object.

Alloc and free tracks are kept in the object's KASAN metadata in the kernel; here the track
(pid + stack depot handle) is stored in a dict keyed by object, which is what the metadata
bytes would hold.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.lib import stackdepot
from mmdbg.sim.mm.kasan import shadow as sh
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE
from mmdbg.sim.mm.slab import SLAB_TYPESAFE_BY_RCU, KmemCache, Slab, nearest_obj
from mmdbg.sim.trace import kfunc

QUARANTINE_FRACTION = 32

# kasan frames kept at the top of saved stacks, and allocator internals dropped below them
_SKIP = ("slab_post_alloc_hook", "slab_alloc_node", "___slab_alloc", "__do_kmalloc_node",
         "slab_free_hook", "slab_free", "kasan_slab_alloc", "kasan_kmalloc", "kasan_slab_free",
         "kasan_kmalloc_large", "kasan_kfree_large", "kasan_save_alloc_info")


class Track:
    __slots__ = ("cpu", "pid", "stack", "when")

    def __init__(self, pid: int, stack: int, cpu: int, when: int) -> None:
        self.pid = pid
        self.stack = stack
        self.cpu = cpu
        self.when = when


@kfunc
def kasan_save_stack(m: Any) -> int:
    return stackdepot.depot(m).save(stackdepot.save_stack(_SKIP))


@kfunc
def kasan_save_track(m: Any) -> Track:
    t = m.current
    return Track(t.pid if t else 0, kasan_save_stack(m), m.cpu, m.clock.ns)


class Kasan:
    """The generic KASAN runtime of one machine."""

    ktype = "kasan"

    def __init__(self, m: Any) -> None:
        self.m = m
        self.shadow = sh.Shadow(m)
        extra = m.config.extra
        self.fault = extra.get("kasan.fault", "report")
        self.multi_shot = bool(extra.get("kasan_multi_shot", False))
        self.reported = False
        self.reports: list[dict[str, Any]] = []
        self.alloc_track: dict[int, Track] = {}
        self.free_track: dict[int, Track] = {}
        self.quarantine: deque[tuple[KmemCache, int]] = deque()
        self.quarantine_set: set[int] = set()
        self.quarantine_bytes = 0
        self.quarantine_max = (m.totalram_pages << PAGE_SHIFT) // QUARANTINE_FRACTION
        self.depth = 0  # >0 while KASAN itself runs (kasan_disable_current)
        self.stack_frames: dict[int, list[tuple[int, int, list[tuple[int, int, str]], str]]] = {}

    # -- slab -----------------------------------------------------------------------------
    def poison_slab(self, s: KmemCache, slab: Slab) -> None:
        self.shadow.poison(slab.s_mem, PAGE_SIZE << slab.order, sh.KASAN_SLAB_REDZONE)

    def init_slab_obj(self, s: KmemCache, obj: int) -> None:
        self.alloc_track.pop(obj, None)
        self.free_track.pop(obj, None)

    def unpoison_object_data(self, s: KmemCache, obj: int) -> None:
        self.shadow.unpoison(obj, s.object_size)

    def poison_object_data(self, s: KmemCache, obj: int) -> None:
        self.shadow.poison(obj, (s.object_size + 7) & ~7, sh.KASAN_SLAB_REDZONE)

    def free_slab_pages(self, pfn: int, order: int) -> None:
        base = PAGE_OFFSET + (pfn << PAGE_SHIFT)
        self.shadow.drop(base, PAGE_SIZE << order)

    def kasan_slab_alloc(self, s: KmemCache, obj: int, flags: int) -> None:
        _kasan_slab_alloc(self, s, obj, flags)

    def kasan_kmalloc(self, s: KmemCache, obj: int, size: int, flags: int) -> None:
        _kasan_kmalloc(self, s, obj, size, flags)

    def kasan_slab_free(self, s: KmemCache, obj: int, init: bool) -> bool:
        """True: do not free the object now (quarantined, or a bug was reported)."""
        return _kasan_slab_free(self, s, obj, init)

    def unpoison_range(self, addr: int, size: int) -> None:
        self.shadow.unpoison(addr, size)

    def kasan_krealloc(self, obj: int, new_size: int, ks: int) -> None:
        m = self.m
        slab = m.slab_pages.get((obj - PAGE_OFFSET) >> PAGE_SHIFT)
        if slab is not None:
            s = slab.slab_cache
            self.shadow.poison(obj, (s.object_size + 7) & ~7, sh.KASAN_SLAB_REDZONE)
            self.shadow.unpoison(obj, new_size)
        else:
            self.shadow.unpoison(obj, new_size)
            end = (obj + new_size + 7) & ~7
            self.shadow.poison(end, obj + ks - end, sh.KASAN_PAGE_REDZONE)

    def in_quarantine(self, obj: int) -> bool:
        return obj in self.quarantine_set

    # -- quarantine ---------------------------------------------------------------------
    def quarantine_put(self, s: KmemCache, obj: int) -> bool:
        if s.flags & SLAB_TYPESAFE_BY_RCU:
            return False
        self.quarantine.append((s, obj))
        self.quarantine_set.add(obj)
        self.quarantine_bytes += s.size
        if self.quarantine_bytes > self.quarantine_max:
            quarantine_reduce(self)
        return True

    def _release(self, s: KmemCache, obj: int) -> None:
        from mmdbg.sim.mm import slub

        self.quarantine_set.discard(obj)
        self.quarantine_bytes -= s.size
        slab = self.m.slab_pages.get((obj - PAGE_OFFSET) >> PAGE_SHIFT)
        if slab is not None:
            slub.do_slab_free(s, slab, obj, obj, 1, 0)

    def quarantine_remove_cache(self, s: KmemCache) -> None:
        keep: deque[tuple[KmemCache, int]] = deque()
        drop = []
        for c, obj in self.quarantine:
            (drop if c is s else keep).append((c, obj))
        self.quarantine = keep
        for c, obj in drop:
            self._release(c, obj)

    def quarantine_drain(self) -> None:
        while self.quarantine:
            c, obj = self.quarantine.popleft()
            self._release(c, obj)

    # -- large kmalloc ------------------------------------------------------------------
    def kasan_kmalloc_large(self, ptr: int, size: int, flags: int) -> None:
        order_bytes = PAGE_SIZE << ((size - 1) >> PAGE_SHIFT).bit_length()
        self.shadow.unpoison(ptr, size)
        start = (ptr + size + 7) & ~7
        self.shadow.poison(start, ptr + order_bytes - start, sh.KASAN_PAGE_REDZONE)
        self.alloc_track[ptr] = kasan_save_track(self.m)

    def kasan_kfree_large(self, ptr: int) -> bool:
        """False: a bug was reported, do not free."""
        if not self.byte_accessible(ptr):
            self.kasan_report_invalid_free(ptr, 0, "double-free")
            return False
        self.free_track[ptr] = kasan_save_track(self.m)
        m = self.m
        info = m.large_kmalloc.get((ptr - PAGE_OFFSET) >> PAGE_SHIFT)
        if info:
            self.shadow.drop(ptr, PAGE_SIZE << info[0])
        return True

    # -- vmalloc ------------------------------------------------------------------------
    def kasan_unpoison_vmalloc(self, addr: int, size: int, area: int) -> None:
        self.shadow.poison(addr, area, sh.KASAN_VMALLOC_INVALID)
        self.shadow.unpoison(addr, size)

    def kasan_poison_vmalloc(self, addr: int, size: int) -> None:
        self.shadow.poison(addr, (size + 7) & ~7, sh.KASAN_VMALLOC_INVALID)

    def kasan_release_vmalloc(self, start: int, end: int) -> None:
        self.shadow.drop(start, end - start)

    # -- globals and stacks -------------------------------------------------------------
    def register_global(self, addr: int, size: int, size_with_redzone: int) -> None:
        """__asan_register_globals(): the variable, then KASAN_GLOBAL_REDZONE."""
        self.shadow.unpoison(addr, size)
        start = (addr + size + 7) & ~7
        self.shadow.poison(start, addr + size_with_redzone - start, sh.KASAN_GLOBAL_REDZONE)

    def poison_stack_frame(self, base: int, layout: list[tuple[int, int, str]]) -> None:
        """A frame with KASAN stack redzones: 32 bytes left, each variable followed by a
        mid (or, for the last, right) redzone padding to 32 bytes."""
        self.shadow.poison(base, 32, sh.KASAN_STACK_LEFT)
        for i, (off, size, _name) in enumerate(layout):
            self.shadow.unpoison(base + off, size)
            start = (base + off + size + 7) & ~7
            end = base + off + ((size + 31) & ~31) + 32
            last = i + 1 == len(layout)
            self.shadow.poison(start, end - start,
                               sh.KASAN_STACK_RIGHT if last else sh.KASAN_STACK_MID)

    def unpoison_stack(self, base: int, size: int) -> None:
        self.shadow.poison(base, size, 0)

    # -- checks ---------------------------------------------------------------------------
    def byte_accessible(self, addr: int) -> bool:
        v = self.shadow.byte(addr)
        return v < 8

    def kasan_check_range(self, addr: int, size: int, write: bool, ip: int = 0) -> bool:
        """False when the access is bad (and was reported)."""
        if self.depth or size == 0:
            return True
        if addr + size > (1 << 64) or not self.shadow.addr_has_metadata(addr):
            kasan_report(addr, size, write, ip)
            return False
        bad = self.shadow.first_bad(addr, size)
        if bad < 0:
            return True
        kasan_report(addr, size, write, ip)
        return False

    def kasan_report_invalid_free(self, ptr: int, ip: int, kind: str) -> None:
        from mmdbg.sim.mm.kasan import report

        report.kasan_report_invalid_free(self, ptr, ip, kind)


@kfunc(name="__kasan_slab_alloc")
def _kasan_slab_alloc(k: Kasan, s: KmemCache, obj: int, flags: int) -> None:
    k.shadow.unpoison(obj, s.object_size)
    k.alloc_track[obj] = kasan_save_track(k.m)
    k.free_track.pop(obj, None)


@kfunc(name="__kasan_kmalloc")
def _kasan_kmalloc(k: Kasan, s: KmemCache, obj: int, size: int, flags: int) -> None:
    """poison_kmalloc_redzone(): only the requested bytes are accessible."""
    k.alloc_track[obj] = kasan_save_track(k.m)
    start = (obj + size + 7) & ~7
    end = (obj + s.object_size + 7) & ~7
    k.shadow.poison(start, end - start, sh.KASAN_SLAB_REDZONE)
    k.shadow.unpoison(obj, size)


@kfunc(name="__kasan_slab_free")
def _kasan_slab_free(k: Kasan, s: KmemCache, obj: int, init: bool) -> bool:
    m = k.m
    slab = m.slab_pages.get((obj - PAGE_OFFSET) >> PAGE_SHIFT)
    if slab is None or nearest_obj(s, slab, obj) != obj:
        k.kasan_report_invalid_free(obj, 0, "invalid-free")
        return True
    if not k.byte_accessible(obj):
        k.kasan_report_invalid_free(obj, 0, "double-free")
        return True
    k.shadow.poison(obj, (s.object_size + 7) & ~7, sh.KASAN_SLAB_FREE)
    kasan_save_free_info(k, s, obj)
    return k.quarantine_put(s, obj)


@kfunc
def kasan_save_free_info(k: Kasan, s: KmemCache, obj: int) -> None:
    k.free_track[obj] = kasan_save_track(k.m)
    if s.kasan_info["free_meta_offset"] != 0xFFFFFFFF:
        k.shadow.page(obj >> 12)[(obj & 4095) >> 3] = sh.KASAN_SLAB_FREETRACK


@kfunc
def quarantine_reduce(k: Kasan) -> None:
    """Free the oldest quarantined objects until the quarantine is below its limit."""
    target = k.quarantine_max * 3 // 4
    while k.quarantine and k.quarantine_bytes > target:
        c, obj = k.quarantine.popleft()
        k._release(c, obj)


@kfunc
def kasan_report(addr: int, size: int, is_write: bool, ip: int) -> bool:
    """The bad-access report (the kernel's probe and breakpoint location for KASAN)."""
    from mmdbg.sim.mm.kasan import report

    m = _trace._current
    return report.print_report(m.kasan, addr, size, is_write, ip, "access")
