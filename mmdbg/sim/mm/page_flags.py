"""Page flags with the kernel's names and bit numbers (include/linux/page-flags.h, 6.1x).

``enum pageflags`` order is the mainline x86_64 one (CONFIG_MEMORY_FAILURE, 64-bit page
flags).  Aliases share bits exactly as in the kernel (``PG_swapcache`` is ``PG_owner_priv_1``,
``PG_readahead`` is ``PG_reclaim``, ``PG_anon_exclusive`` is ``PG_owner_2``).

Page *types* are not flags since 6.12: they live in the top byte of ``page_type``, which
overlays ``_mapcount`` (``PGTY_buddy`` = 0xf0 ...).  ``page_type_of``/``PAGE_TYPE_*`` model
that overlay on the ``_mapcount`` column: an ordinary page has ``_mapcount == -1`` when not
mapped, a typed page stores ``type << 24`` (negative as an int32, as the kernel's is).

Simplification: the kernel marks tail pages through ``page->compound_head & 1``; here tail
pages carry the head pfn in the ``compound_head`` column and ``PG_tail_sim`` (bit 62) mirrors
that low bit so a flags word alone tells head from tail.
"""

from __future__ import annotations

PAGEFLAG_NAMES = [
    "locked", "writeback", "referenced", "uptodate", "dirty", "lru", "head", "waiters",
    "active", "workingset", "owner_priv_1", "owner_2", "arch_1", "reserved", "private",
    "private_2", "reclaim", "swapbacked", "unevictable", "dropbehind", "mlocked", "hwpoison",
    "young", "idle", "arch_2", "arch_3",
]
NR_PAGEFLAGS = len(PAGEFLAG_NAMES)

for _i, _n in enumerate(PAGEFLAG_NAMES):
    globals()[f"PG_{_n}"] = _i

PG_locked = 0
PG_writeback = 1
PG_referenced = 2
PG_uptodate = 3
PG_dirty = 4
PG_lru = 5
PG_head = 6
PG_waiters = 7
PG_active = 8
PG_workingset = 9
PG_owner_priv_1 = 10
PG_owner_2 = 11
PG_arch_1 = 12
PG_reserved = 13
PG_private = 14
PG_private_2 = 15
PG_reclaim = 16
PG_swapbacked = 17
PG_unevictable = 18
PG_dropbehind = 19
PG_mlocked = 20
PG_hwpoison = 21
PG_young = 22
PG_idle = 23
# aliases
PG_swapcache = PG_owner_priv_1
PG_checked = PG_owner_priv_1
PG_readahead = PG_reclaim
PG_anon_exclusive = PG_owner_2
PG_mappedtodisk = PG_owner_2
PG_isolated = PG_reclaim
PG_tail_sim = 62  # see module docstring

# Flags the kernel checks when a page is freed (PAGE_FLAGS_CHECK_AT_FREE) and when it is
# prepared for allocation (PAGE_FLAGS_CHECK_AT_PREP: every flag but the ones below).
PAGE_FLAGS_CHECK_AT_FREE = (
    1 << PG_lru | 1 << PG_locked | 1 << PG_private | 1 << PG_private_2 | 1 << PG_writeback
    | 1 << PG_reserved | 1 << PG_active | 1 << PG_unevictable | 1 << PG_mlocked
    | 1 << PG_hwpoison
)
PAGE_FLAGS_CHECK_AT_PREP = ((1 << NR_PAGEFLAGS) - 1) & ~(1 << PG_hwpoison)
PAGE_FLAGS_MASK = (1 << NR_PAGEFLAGS) - 1

# page_type (top byte of the word overlaying _mapcount), include/linux/page-flags.h
PGTY_buddy = 0xF0
PGTY_offline = 0xF1
PGTY_table = 0xF2
PGTY_guard = 0xF3
PGTY_hugetlb = 0xF4
PGTY_slab = 0xF5
PGTY_zsmalloc = 0xF6
PGTY_unaccepted = 0xF7
PGTY_large_kmalloc = 0xF8
PGTY_NAMES = {
    PGTY_buddy: "buddy", PGTY_offline: "offline", PGTY_table: "table", PGTY_guard: "guard",
    PGTY_hugetlb: "hugetlb", PGTY_slab: "slab", PGTY_zsmalloc: "zsmalloc",
    PGTY_unaccepted: "unaccepted", PGTY_large_kmalloc: "large_kmalloc",
}


def page_type_value(pgty: int) -> int:
    """The int32 stored in the _mapcount column for a page of type ``pgty``."""
    v = pgty << 24
    return v - (1 << 32)


PAGE_BUDDY_MAPCOUNT_VALUE = page_type_value(PGTY_buddy)
PAGE_TABLE_MAPCOUNT_VALUE = page_type_value(PGTY_table)
PAGE_SLAB_MAPCOUNT_VALUE = page_type_value(PGTY_slab)
PAGE_GUARD_MAPCOUNT_VALUE = page_type_value(PGTY_guard)


def page_type_of(mapcount_word: int) -> int | None:
    """The PGTY_* type stored in the overlay word, or None for an ordinary page."""
    top = (mapcount_word & 0xFFFFFFFF) >> 24
    return top if top in PGTY_NAMES and (mapcount_word & 0xFFFFFFFF) != 0xFFFFFFFF else None


def flag_names(flags: int) -> list[str]:
    """Names of the set bits, in bit order (what /proc/kpageflags users and crash show)."""
    return [PAGEFLAG_NAMES[i] for i in range(NR_PAGEFLAGS) if flags >> i & 1]
