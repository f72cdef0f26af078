"""``struct page`` as columns (include/linux/mm_types.h), and a ``Page`` view for inspection.

The kernel's ``mem_map``/vmemmap is an array of 64-byte ``struct page``.  Here every hot field
is one ``array`` column indexed by pfn (about 25 bytes per page, see
reference/performance.md); rarely used fields (``mapping``, ``index``, ``private``,
``memcg_data``) live in sparse dicts keyed by pfn.  A :class:`Page` is a light view made on
demand for the debugger and the probe language; it has the kernel's field names.

Columns:
    flags          Q   page flags (page_flags.py); zone/node are derived from the pfn
    _refcount      i
    _mapcount      i   also the page_type overlay (PGTY_buddy ...), as in 6.12+
    order          b   buddy order of a free block's head; compound order of a head page
    compound_head  i   head pfn of a tail page, -1 otherwise
    lru_prev/next  i   intrusive LRU links (-1 = none), used by reclaim

Addresses are x86_64's: a page's ``struct page *`` is ``VMEMMAP_START + pfn * 64`` and its
direct-map address is ``PAGE_OFFSET + pfn * 4096``.
"""

from __future__ import annotations

from array import array
from typing import Any

from mmdbg.sim.mm import page_flags as pf

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_OFFSET = 0xFFFF888000000000
VMEMMAP_START = 0xFFFFEA0000000000
VMALLOC_START = 0xFFFFC90000000000
VMALLOC_END = 0xFFFFE8FFFFFFFFFF
KERNEL_TEXT = 0xFFFFFFFF81000000
STRUCT_PAGE_SIZE = 64
MAX_PAGE_ORDER = 10
NR_PAGE_ORDERS = MAX_PAGE_ORDER + 1
PAGEBLOCK_ORDER = 9
PAGEBLOCK_NR_PAGES = 1 << PAGEBLOCK_ORDER


def pfn_to_page_addr(pfn: int) -> int:
    return VMEMMAP_START + pfn * STRUCT_PAGE_SIZE


def page_addr_to_pfn(addr: int) -> int | None:
    off = addr - VMEMMAP_START
    if off < 0 or off % STRUCT_PAGE_SIZE:
        return None
    return off // STRUCT_PAGE_SIZE


def pfn_to_virt(pfn: int) -> int:
    return PAGE_OFFSET + (pfn << PAGE_SHIFT)


def virt_to_pfn(addr: int) -> int:
    return (addr - PAGE_OFFSET) >> PAGE_SHIFT


class MemMap:
    """The vmemmap: one column per hot ``struct page`` field, indexed by pfn."""

    __slots__ = (
        "_mapcount",
        "_refcount",
        "compound_head",
        "flags",
        "index",
        "lru_next",
        "lru_prev",
        "mapping",
        "max_pfn",
        "memcg_data",
        "order",
        "pageblock_mt",
        "private",
    )

    def __init__(self, max_pfn: int) -> None:
        n = max_pfn
        self.max_pfn = n
        # memmap_init(): every page starts PG_reserved with one reference; the pages
        # memblock hands to the buddy allocator lose both in __free_pages_core()
        self.flags = array("Q", [1 << pf.PG_reserved]) * n
        self._refcount = array("i", [1]) * n
        self._mapcount = array("i", [-1]) * n
        self.order = array("b", [0]) * n
        self.compound_head = array("i", [-1]) * n
        self.lru_prev = array("i", [-1]) * n
        self.lru_next = array("i", [-1]) * n
        # pageblock migratetype, one byte per pageblock (pageblock_flags in the kernel);
        # every pageblock starts MIGRATE_MOVABLE (1)
        self.pageblock_mt = array("b", [1]) * ((n + PAGEBLOCK_NR_PAGES - 1) >> PAGEBLOCK_ORDER)
        self.mapping: dict[int, Any] = {}
        self.index: dict[int, int] = {}
        self.private: dict[int, int] = {}
        self.memcg_data: dict[int, Any] = {}

    def nbytes(self) -> int:
        cols = (self.flags, self._refcount, self._mapcount, self.order, self.compound_head,
                self.lru_prev, self.lru_next, self.pageblock_mt)
        return sum(c.itemsize * len(c) for c in cols)

    def bytes_per_page(self) -> float:
        return self.nbytes() / max(1, self.max_pfn)


class Page:
    """A view of one ``struct page``: kernel field names, read from the columns.

    ``page.flags``, ``page._refcount``, ``page._mapcount``, ``page.mapping``,
    ``page.index``, ``page.private``, ``page.compound_head`` read live values; the view
    holds no state of its own beyond the pfn.
    """

    __slots__ = ("_m", "pfn")
    ktype = "page"

    def __init__(self, mem_map: MemMap, pfn: int) -> None:
        self._m = mem_map
        self.pfn = pfn

    def __repr__(self) -> str:
        return f"<struct page 0x{self.addr:x} pfn 0x{self.pfn:x}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Page) and other.pfn == self.pfn and other._m is self._m

    def __hash__(self) -> int:
        return hash(self.pfn)

    @property
    def addr(self) -> int:
        return pfn_to_page_addr(self.pfn)

    @property
    def flags(self) -> int:
        return self._m.flags[self.pfn]

    @property
    def _refcount(self) -> int:
        return self._m._refcount[self.pfn]

    @property
    def _mapcount(self) -> int:
        return self._m._mapcount[self.pfn]

    @property
    def page_type(self) -> int:
        return self._m._mapcount[self.pfn] & 0xFFFFFFFF

    @property
    def mapping(self) -> Any:
        return self._m.mapping.get(self.pfn, 0)

    @property
    def index(self) -> int:
        return self._m.index.get(self.pfn, 0)

    @property
    def private(self) -> int:
        if self.PageBuddy:
            return self._m.order[self.pfn]
        return self._m.private.get(self.pfn, 0)

    @property
    def memcg_data(self) -> Any:
        return self._m.memcg_data.get(self.pfn, 0)

    @property
    def compound_head(self) -> int:
        h = self._m.compound_head[self.pfn]
        return pfn_to_page_addr(h) | 1 if h >= 0 else 0

    @property
    def order(self) -> int:
        return self._m.order[self.pfn]

    @property
    def virtual(self) -> int:
        return pfn_to_virt(self.pfn)

    # -- predicates with the kernel's names --------------------------------------------
    def test(self, bit: int) -> bool:
        return bool(self._m.flags[self.pfn] >> bit & 1)

    @property
    def PageBuddy(self) -> bool:
        return self._m._mapcount[self.pfn] == pf.PAGE_BUDDY_MAPCOUNT_VALUE

    @property
    def PageReserved(self) -> bool:
        return self.test(pf.PG_reserved)

    @property
    def PageHead(self) -> bool:
        return self.test(pf.PG_head)

    @property
    def PageTail(self) -> bool:
        return self._m.compound_head[self.pfn] >= 0

    @property
    def PageCompound(self) -> bool:
        return self.PageHead or self.PageTail

    @property
    def PageSlab(self) -> bool:
        return self._m._mapcount[self.pfn] == pf.PAGE_SLAB_MAPCOUNT_VALUE

    @property
    def PageTable(self) -> bool:
        return self._m._mapcount[self.pfn] == pf.PAGE_TABLE_MAPCOUNT_VALUE

    def page_mapcount(self) -> int:
        v = self._m._mapcount[self.pfn]
        return 0 if pf.page_type_of(v) is not None else v + 1

    def flag_names(self) -> list[str]:
        names = pf.flag_names(self.flags)
        t = pf.page_type_of(self._m._mapcount[self.pfn])
        if t is not None:
            names.append(pf.PGTY_NAMES[t])
        return names
