"""KASAN shadow memory (mm/kasan/shadow.c, kasan.h): one shadow byte per 8 bytes.

Generic KASAN maps every 8-byte granule of kernel memory to one shadow byte at
``(addr >> 3) + KASAN_SHADOW_OFFSET``: 0 = all 8 bytes accessible, 1..7 = the first N bytes
accessible, a negative value (0x80..0xFF) = poisoned, the value naming why
(reference/reports.md §3.2).

Representation: shadow is stored per 4 KiB page of memory (512 shadow bytes) where KASAN has
written it: slab pages, large kmalloc pages, vmalloc/module areas, task stacks.  A direct-map
page with no stored shadow has the shadow the page allocator would have given it: poisoned
``KASAN_PAGE_FREE`` when the page is free (``kasan_poison_pages`` on free), accessible when it
is allocated (``kasan_unpoison_pages`` on alloc) -- derived from ``struct page`` on demand, so
the page allocator needs no hook.  A vmalloc-range page with no stored shadow reads as
``KASAN_VMALLOC_INVALID``.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, VMALLOC_START

KASAN_GRANULE_SIZE = 8
KASAN_SHADOW_SCALE_SHIFT = 3
KASAN_SHADOW_OFFSET = 0xDFFFFC0000000000

KASAN_PAGE_FREE = 0xFF
KASAN_PAGE_REDZONE = 0xFE
KASAN_SLAB_REDZONE = 0xFC
KASAN_SLAB_FREE = 0xFB
KASAN_SLAB_FREETRACK = 0xFA
KASAN_GLOBAL_REDZONE = 0xF9
KASAN_VMALLOC_INVALID = 0xF8
KASAN_STACK_LEFT = 0xF1
KASAN_STACK_MID = 0xF2
KASAN_STACK_RIGHT = 0xF3
KASAN_STACK_PARTIAL = 0xF4
KASAN_ALLOCA_LEFT = 0xCA
KASAN_ALLOCA_RIGHT = 0xCB

MODULES_VADDR = 0xFFFFFFFFA0000000
MODULES_END = 0xFFFFFFFFFF000000
_BUDDY = pf.PAGE_BUDDY_MAPCOUNT_VALUE
_RESERVED = 1 << pf.PG_reserved


def kasan_mem_to_shadow(addr: int) -> int:
    return ((addr >> KASAN_SHADOW_SCALE_SHIFT) + KASAN_SHADOW_OFFSET) & ((1 << 64) - 1)


class Shadow:
    """Sparse shadow memory: ``pages[addr >> 12]`` is a 512-byte bytearray."""

    __slots__ = ("dm_end", "m", "pages")

    def __init__(self, m: Any) -> None:
        self.m = m
        self.pages: dict[int, bytearray] = {}
        self.dm_end = PAGE_OFFSET + (m.mem_map.max_pfn << 12)

    # -- what memory has shadow -------------------------------------------------------------
    def addr_has_metadata(self, addr: int) -> bool:
        return PAGE_OFFSET <= addr < self.dm_end or VMALLOC_START <= addr < 0xFFFFE90000000000 \
            or MODULES_VADDR <= addr < MODULES_END

    def _default(self, addr: int) -> int:
        if PAGE_OFFSET <= addr < self.dm_end:
            return 0 if self.page_allocated((addr - PAGE_OFFSET) >> 12) else KASAN_PAGE_FREE
        return KASAN_VMALLOC_INVALID

    def page_allocated(self, pfn: int) -> bool:
        """Is this pfn part of an allocation (as the page allocator's KASAN hooks see it)?"""
        mm = self.m.mem_map
        if mm.compound_head[pfn] >= 0 or mm.flags[pfn] & _RESERVED:
            return True
        refc = mm._refcount
        order = mm.order
        for k in range(11):
            head = pfn & ~((1 << k) - 1)
            if mm._mapcount[head] == _BUDDY and head + (1 << order[head]) > pfn:
                return False
            if refc[head] > 0 and head + (1 << order[head]) > pfn:
                return True
        return False

    def page(self, vpage: int, create: bool = True) -> bytearray | None:
        sh = self.pages.get(vpage)
        if sh is None and create:
            sh = self.pages[vpage] = bytearray((self._default(vpage << 12),)) * 512
        return sh

    def drop(self, addr: int, size: int) -> None:
        """Forget stored shadow (the memory goes back to its derived state)."""
        for vp in range(addr >> 12, (addr + size + 4095) >> 12):
            self.pages.pop(vp, None)

    # -- reading ------------------------------------------------------------------------
    def byte(self, addr: int) -> int:
        sh = self.pages.get(addr >> 12)
        if sh is not None:
            return sh[(addr & 4095) >> 3]
        return self._default(addr)

    def bytes_at(self, addr: int, n: int) -> list[int]:
        """``n`` shadow bytes for granules starting at ``addr`` (granule aligned)."""
        return [self.byte(addr + 8 * i) for i in range(n)]

    # -- writing ------------------------------------------------------------------------
    def poison(self, addr: int, size: int, value: int) -> None:
        """kasan_poison(): ``size`` rounded up to granules."""
        end = addr + size
        a = addr & ~7
        while a < end:
            vp = a >> 12
            sh = self.page(vp)
            lo = (a & 4095) >> 3
            hi = min(((end - (vp << 12)) + 7) >> 3, 512)
            sh[lo:hi] = bytes((value,)) * (hi - lo)
            a = (vp + 1) << 12

    def unpoison(self, addr: int, size: int) -> None:
        """kasan_unpoison(): full granules 0, a trailing partial granule ``size & 7``."""
        if size <= 0:
            return
        full = size & ~7
        if full:
            self.poison(addr, full, 0)
        if size & 7:
            a = addr + full
            self.page(a >> 12)[(a & 4095) >> 3] = size & 7

    # -- checking -----------------------------------------------------------------------
    def first_bad(self, addr: int, size: int) -> int:
        """The first inaccessible byte of [addr, addr+size), or -1."""
        a = addr
        end = addr + size
        pages = self.pages
        while a < end:
            sh = pages.get(a >> 12)
            v = sh[(a & 4095) >> 3] if sh is not None else self._default(a)
            if v:
                if v >= 0x80:
                    return a
                # partial granule: bytes at offset >= v are poisoned
                if (a & 7) >= v:
                    return a
                lim = (a & ~7) + v
                if end > lim:
                    return lim
            a = (a & ~7) + 8
        return -1
