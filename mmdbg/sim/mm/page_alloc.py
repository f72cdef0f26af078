"""The buddy allocator (mm/page_alloc.c), following mainline 6.15+ names and control flow.

Allocation::

    alloc_pages -> __alloc_pages -> get_page_from_freelist -> rmqueue
        -> rmqueue_pcplist -> __rmqueue_pcplist -> rmqueue_bulk -> __rmqueue   (order <= 3, 9)
        -> rmqueue_buddy -> __rmqueue -> __rmqueue_smallest -> page_del_and_expand -> expand
                                      -> __rmqueue_claim / __rmqueue_steal     (fallbacks[])
    __alloc_pages -> __alloc_pages_slowpath (wake_all_kswapds, __alloc_pages_direct_compact,
        __alloc_pages_direct_reclaim, should_reclaim_retry, __alloc_pages_may_oom, warn_alloc)

Freeing::

    __free_pages -> free_frozen_pages -> free_pages_prepare
        -> free_frozen_page_commit -> free_pcppages_bulk -> __free_one_page    (pcp orders)
        -> free_one_page -> __free_one_page                                    (others)

Pages are pfns throughout (the kernel passes ``struct page *``; ``page_to_pfn`` is the
identity here).  Kernel functions are registered with ``@kfunc`` so kprobes, breakpoints and
``bt`` see the kernel's names.

Reclaim, compaction and the OOM killer plug in through ``machine.hooks`` (see
:class:`AllocHooks`): until those subsystems exist the hooks report no progress, so an
allocation that cannot be satisfied fails as Linux fails it: ``warn_alloc`` in dmesg (unless
``__GFP_NOWARN``) and NULL (``None``).

Simplifications (stated, not hidden):
  * ``ALLOC_NOFRAGMENT`` and watermark boosting are not modelled; fallbacks happen as soon as
    the requested migratetype is exhausted in a zone.
  * PCP ``high`` is clamped into [high_min, high_max] on free as nr_pcp_high() does, but is
    not tuned upwards on bursts of frees nor decayed by vmstat work;
    ``nr_pcp_alloc``/``nr_pcp_free`` use ``batch`` (scaled by order for refills).
  * No zone lock or IRQ state: the simulation is single-threaded per machine.
  * ``__GFP_NOFAIL`` gives up after MAX_NOFAIL_RETRIES loops instead of looping forever.
"""

from __future__ import annotations

from collections import deque
from math import isqrt
from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.include.gfp import (
    __GFP_ACCOUNT,
    __GFP_COMP,
    __GFP_DIRECT_RECLAIM,
    __GFP_HARDWALL,
    __GFP_HIGH,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MEMALLOC,
    __GFP_NOFAIL,
    __GFP_NOMEMALLOC,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RETRY_MAYFAIL,
    __GFP_THISNODE,
    __GFP_ZERO,
    MIGRATE_CMA,
    MIGRATE_HIGHATOMIC,
    MIGRATE_ISOLATE,
    MIGRATE_MOVABLE,
    MIGRATE_PCPTYPES,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    format_gfp,
    gfp_migratetype,
    gfp_zone,
)
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.mm_types import (
    MAX_PAGE_ORDER,
    NR_PAGE_ORDERS,
    PAGEBLOCK_NR_PAGES,
    PAGEBLOCK_ORDER,
)
from mmdbg.sim.mm.mmzone import (
    NR_PCP_LISTS,
    PAGE_ALLOC_COSTLY_ORDER,
    WMARK_HIGH,
    WMARK_LOW,
    WMARK_MIN,
    Zone,
    order_to_pindex,
)
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

# alloc_flags (mm/internal.h)
ALLOC_WMARK_MIN = WMARK_MIN
ALLOC_WMARK_LOW = WMARK_LOW
ALLOC_WMARK_HIGH = WMARK_HIGH
ALLOC_NO_WATERMARKS = 0x04
ALLOC_WMARK_MASK = ALLOC_NO_WATERMARKS - 1
ALLOC_OOM = 0x08
ALLOC_NON_BLOCK = 0x10
ALLOC_MIN_RESERVE = 0x20
ALLOC_CPUSET = 0x40
ALLOC_CMA = 0x80
ALLOC_NOFRAGMENT = 0x100
ALLOC_HIGHATOMIC = 0x200
ALLOC_TRYLOCK = 0x400
ALLOC_KSWAPD = 0x800
ALLOC_RESERVES = ALLOC_NON_BLOCK | ALLOC_MIN_RESERVE | ALLOC_HIGHATOMIC | ALLOC_OOM

MAX_RECLAIM_RETRIES = 16
MAX_NOFAIL_RETRIES = 64

# mm/page_alloc.c: fallbacks[MIGRATE_PCPTYPES][MIGRATE_PCPTYPES - 1]
fallbacks = (
    (MIGRATE_RECLAIMABLE, MIGRATE_MOVABLE),  # UNMOVABLE
    (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE),  # MOVABLE
    (MIGRATE_UNMOVABLE, MIGRATE_MOVABLE),  # RECLAIMABLE
)

_tp_alloc = declare_tracepoint("kmem:mm_page_alloc")
_tp_free = declare_tracepoint("kmem:mm_page_free")
_tp_free_batched = declare_tracepoint("kmem:mm_page_free_batched")
_tp_zone_locked = declare_tracepoint("kmem:mm_page_alloc_zone_locked")
_tp_pcpu_drain = declare_tracepoint("kmem:mm_page_pcpu_drain")
_tp_extfrag = declare_tracepoint("kmem:mm_page_alloc_extfrag")

_BUDDY = pf.PAGE_BUDDY_MAPCOUNT_VALUE
_HEAD = 1 << pf.PG_head
_NR_FREE_PAGES = vmstat.NR_FREE_PAGES
_NR_FREE_PAGES_BLOCKS = vmstat.NR_FREE_PAGES_BLOCKS
_NR_FREE_CMA = vmstat.NR_FREE_CMA_PAGES
_PGALLOC = vmstat.PGALLOC
_PGFREE = vmstat.PGFREE
_NUMA_HIT = vmstat.NUMA_HIT
_NUMA_LOCAL = vmstat.NUMA_LOCAL


class AllocContext:
    """``struct alloc_context`` (mm/internal.h)."""

    __slots__ = ("highest_zoneidx", "migratetype", "nodemask", "preferred_zone", "spread_dirty_pages",
                 "zonelist", "zones")
    ktype = "alloc_context"

    def __init__(self) -> None:
        self.zonelist: list[Zone] = []
        # the zonelist already filtered by highest_zoneidx and nodemask
        # (for_next_zone_zonelist_nodemask), computed once per context
        self.zones: tuple[Zone, ...] = ()
        self.nodemask: Any = None
        self.preferred_zone: Zone | None = None
        self.migratetype = 0
        self.highest_zoneidx = 0
        self.spread_dirty_pages = False


class AllocHooks:
    """Where reclaim, compaction and the OOM killer plug into the slow path.

    Later subsystems replace these attributes on ``machine.hooks``; the defaults make no
    progress, which is what a kernel with nothing reclaimable and no OOM victim sees.
    """

    def __init__(self) -> None:
        self.wakeup_kswapd = lambda zone, gfp, order, highest_zoneidx: None
        self.try_to_free_pages = lambda zonelist, order, gfp, nodemask: 0
        self.try_to_compact_pages = lambda gfp, order, alloc_flags, ac, prio: None
        self.out_of_memory = lambda gfp, order, ac: False
        self.zone_reclaimable_pages = lambda zone: 0
        self.memcg_kmem_charge = lambda pfn, gfp, order: True
        self.memcg_kmem_uncharge = lambda pfn, order: None


# ---------------------------------------------------------------------------------------
# Free lists


def get_pageblock_migratetype(m: Any, pfn: int) -> int:
    return m.mem_map.pageblock_mt[pfn >> PAGEBLOCK_ORDER]


def set_pageblock_migratetype(m: Any, pfn: int, migratetype: int) -> None:
    m.mem_map.pageblock_mt[pfn >> PAGEBLOCK_ORDER] = migratetype


def change_pageblock_range(m: Any, pfn: int, order: int, migratetype: int) -> None:
    nr = max(1, (1 << order) >> PAGEBLOCK_ORDER)
    blk = pfn >> PAGEBLOCK_ORDER
    arr = m.mem_map.pageblock_mt
    for b in range(blk, blk + nr):
        arr[b] = migratetype


def account_freepages(zone: Zone, nr_pages: int, migratetype: int) -> None:
    if migratetype == MIGRATE_ISOLATE:
        return
    zone.vm_stat[_NR_FREE_PAGES] += nr_pages
    if migratetype == MIGRATE_CMA:
        zone.vm_stat[_NR_FREE_CMA] += nr_pages


def __add_to_free_list(zone: Zone, pfn: int, order: int, migratetype: int) -> None:
    area = zone.free_area[order]
    area.free_list[migratetype][pfn] = None
    area.nr_free += 1
    if order >= PAGEBLOCK_ORDER and migratetype != MIGRATE_ISOLATE:
        zone.vm_stat[_NR_FREE_PAGES_BLOCKS] += 1 << order


def __del_page_from_free_list(zone: Zone, pfn: int, order: int, migratetype: int) -> None:
    area = zone.free_area[order]
    del area.free_list[migratetype][pfn]
    area.nr_free -= 1
    mm = zone.machine.mem_map
    mm._mapcount[pfn] = -1  # __ClearPageBuddy
    mm.order[pfn] = 0
    if order >= PAGEBLOCK_ORDER and migratetype != MIGRATE_ISOLATE:
        zone.vm_stat[_NR_FREE_PAGES_BLOCKS] -= 1 << order


def set_buddy_order(mem_map: Any, pfn: int, order: int) -> None:
    mem_map.order[pfn] = order
    mem_map._mapcount[pfn] = _BUDDY  # __SetPageBuddy


def expand(zone: Zone, pfn: int, low: int, high: int, migratetype: int) -> int:
    """Split a block of order ``high`` down to ``low``, putting the upper halves back."""
    mem_map = zone.machine.mem_map
    size = 1 << high
    nr_added = 0
    while high > low:
        high -= 1
        size >>= 1
        __add_to_free_list(zone, pfn + size, high, migratetype)
        set_buddy_order(mem_map, pfn + size, high)
        nr_added += size
    return nr_added


def page_del_and_expand(zone: Zone, pfn: int, low: int, high: int, migratetype: int) -> None:
    nr_pages = 1 << high
    __del_page_from_free_list(zone, pfn, high, migratetype)
    nr_pages -= expand(zone, pfn, low, high, migratetype)
    account_freepages(zone, -nr_pages, migratetype)


def page_del_and_expand_isolate(zone: Zone, pfn: int, low: int, high: int) -> None:
    """The rest of page_del_and_expand() for MIGRATE_ISOLATE (no free-page accounting)."""
    expand(zone, pfn, low, high, MIGRATE_ISOLATE)


def pcp_allowed_order(order: int) -> bool:
    return order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER


@kfunc
def __rmqueue_smallest(zone: Zone, order: int, migratetype: int) -> int | None:
    """Take the smallest free block of ``migratetype`` that fits, splitting it."""
    free_area = zone.free_area
    for current_order in range(order, NR_PAGE_ORDERS):
        area = free_area[current_order]
        lst = area.free_list[migratetype]
        if not lst:
            continue
        pfn = next(reversed(lst))  # list head: most recently added
        # page_del_and_expand() -> __del_page_from_free_list() + expand(), inlined
        del lst[pfn]
        area.nr_free -= 1
        mem_map = zone.machine.mem_map
        mapcount = mem_map._mapcount
        morder = mem_map.order
        mapcount[pfn] = -1  # __ClearPageBuddy
        morder[pfn] = 0
        if migratetype == MIGRATE_ISOLATE:
            page_del_and_expand_isolate(zone, pfn, order, current_order)
        else:
            vm_stat = zone.vm_stat
            if current_order >= PAGEBLOCK_ORDER:
                vm_stat[_NR_FREE_PAGES_BLOCKS] -= 1 << current_order
            high = current_order
            while high > order:
                high -= 1
                buddy = pfn + (1 << high)
                a = free_area[high]
                a.free_list[migratetype][buddy] = None  # __add_to_free_list
                a.nr_free += 1
                if high >= PAGEBLOCK_ORDER:
                    vm_stat[_NR_FREE_PAGES_BLOCKS] += 1 << high
                morder[buddy] = high  # set_buddy_order
                mapcount[buddy] = _BUDDY
            vm_stat[_NR_FREE_PAGES] -= 1 << order  # account_freepages
            if migratetype == MIGRATE_CMA:
                vm_stat[_NR_FREE_CMA] -= 1 << order
        if _tp_zone_locked.enabled:
            _tp_zone_locked.fire(pfn=pfn, order=order, migratetype=migratetype,
                                 percpu_refill=int(pcp_allowed_order(order)
                                                   and migratetype < MIGRATE_PCPTYPES))
        return pfn
    return None


def should_try_claim_block(order: int, start_mt: int) -> bool:
    if order >= PAGEBLOCK_ORDER:
        return True
    if order >= PAGEBLOCK_ORDER // 2:
        return True
    return start_mt in (MIGRATE_RECLAIMABLE, MIGRATE_UNMOVABLE)


def find_suitable_fallback(area: Any, order: int, migratetype: int, claimable: bool) -> int:
    """-2: too low an order to claim; -1: nothing; else the fallback migratetype."""
    if claimable and not should_try_claim_block(order, migratetype):
        return -2
    if area.nr_free == 0:
        return -1
    for fmt in fallbacks[migratetype]:
        if area.free_list[fmt]:
            return fmt
    return -1


def __move_freepages_block(zone: Zone, start_pfn: int, old_mt: int, new_mt: int) -> int:
    """Move every free block inside one pageblock from ``old_mt``'s lists to ``new_mt``'s."""
    mem_map = zone.machine.mem_map
    pfn = start_pfn
    end = start_pfn + PAGEBLOCK_NR_PAGES
    moved = 0
    while pfn < end:
        if mem_map._mapcount[pfn] != _BUDDY:
            pfn += 1
            continue
        order = mem_map.order[pfn]
        __del_page_from_free_list(zone, pfn, order, old_mt)
        account_freepages(zone, -(1 << order), old_mt)
        __add_to_free_list(zone, pfn, order, new_mt)
        set_buddy_order(mem_map, pfn, order)
        account_freepages(zone, 1 << order, new_mt)
        pfn += 1 << order
        moved += 1 << order
    return moved


def prep_move_freepages_block(zone: Zone, pfn: int) -> tuple[int, int, int] | None:
    """(start_pfn, free_pages, movable_pages) of the pageblock, or None at a zone edge."""
    mem_map = zone.machine.mem_map
    start = pfn & ~(PAGEBLOCK_NR_PAGES - 1)
    end = start + PAGEBLOCK_NR_PAGES
    if not zone.zone_spans_pfn(start) or not zone.zone_spans_pfn(end - 1):
        return None
    free = movable = 0
    p = start
    lru = 1 << pf.PG_lru
    while p < end:
        if mem_map._mapcount[p] == _BUDDY:
            n = 1 << mem_map.order[p]
            free += n
            p += n
            continue
        if mem_map.flags[p] & lru:
            movable += 1
        p += 1
    return start, free, movable


def try_to_claim_block(zone: Zone, pfn: int, current_order: int, order: int, start_type: int,
                       block_type: int, alloc_flags: int) -> int | None:
    m = zone.machine
    if current_order >= PAGEBLOCK_ORDER:
        __del_page_from_free_list(zone, pfn, current_order, block_type)
        account_freepages(zone, -(1 << current_order), block_type)
        change_pageblock_range(m, pfn, current_order, start_type)
        nr_added = expand(zone, pfn, order, current_order, start_type)
        account_freepages(zone, nr_added, start_type)
        return pfn
    prep = prep_move_freepages_block(zone, pfn)
    if prep is None:
        return None
    start_pfn, free_pages, movable_pages = prep
    if start_type == MIGRATE_MOVABLE:
        alike = movable_pages
    elif block_type == MIGRATE_MOVABLE:
        alike = PAGEBLOCK_NR_PAGES - (free_pages + movable_pages)
    else:
        alike = 0
    if free_pages + alike >= 1 << (PAGEBLOCK_ORDER - 1):
        __move_freepages_block(zone, start_pfn, block_type, start_type)
        set_pageblock_migratetype(m, start_pfn, start_type)
        return __rmqueue_smallest(zone, order, start_type)
    return None


def _extfrag(zone: Zone, pfn: int, order: int, fallback_order: int, start_mt: int,
             fallback_mt: int) -> None:
    _tp_extfrag.fire(pfn=pfn, alloc_order=order, fallback_order=fallback_order,
                     alloc_migratetype=start_mt, fallback_migratetype=fallback_mt,
                     change_ownership=int(get_pageblock_migratetype(zone.machine, pfn)
                                          == start_mt))


@kfunc
def __rmqueue_claim(zone: Zone, order: int, start_migratetype: int,
                    alloc_flags: int) -> int | None:
    """Fallback that takes ownership of a whole pageblock, searching largest blocks first."""
    min_order = order
    if order < PAGEBLOCK_ORDER and alloc_flags & ALLOC_NOFRAGMENT:
        min_order = PAGEBLOCK_ORDER
    for current_order in range(MAX_PAGE_ORDER, min_order - 1, -1):
        area = zone.free_area[current_order]
        fallback_mt = find_suitable_fallback(area, current_order, start_migratetype, True)
        if fallback_mt == -1:
            continue
        if fallback_mt == -2:
            break
        pfn = next(reversed(area.free_list[fallback_mt]))
        got = try_to_claim_block(zone, pfn, current_order, order, start_migratetype,
                                 fallback_mt, alloc_flags)
        if got is not None:
            if _tp_extfrag.enabled:
                _extfrag(zone, got, order, current_order, start_migratetype, fallback_mt)
            return got
    return None


@kfunc
def __rmqueue_steal(zone: Zone, order: int, start_migratetype: int) -> int | None:
    """Fallback that takes a single block without changing the pageblock's owner."""
    for current_order in range(order, NR_PAGE_ORDERS):
        area = zone.free_area[current_order]
        fallback_mt = find_suitable_fallback(area, current_order, start_migratetype, False)
        if fallback_mt == -1:
            continue
        pfn = next(reversed(area.free_list[fallback_mt]))
        page_del_and_expand(zone, pfn, order, current_order, fallback_mt)
        if _tp_extfrag.enabled:
            _extfrag(zone, pfn, order, current_order, start_migratetype, fallback_mt)
        return pfn
    return None


@kfunc
def __rmqueue(zone: Zone, order: int, migratetype: int, alloc_flags: int) -> int | None:
    if alloc_flags & ALLOC_CMA and (zone.vm_stat[_NR_FREE_CMA]
                                    > zone.vm_stat[_NR_FREE_PAGES] // 2):
        pfn = __rmqueue_smallest(zone, order, MIGRATE_CMA)
        if pfn is not None:
            return pfn
    pfn = __rmqueue_smallest(zone, order, migratetype)
    if pfn is not None:
        return pfn
    if alloc_flags & ALLOC_CMA:
        pfn = __rmqueue_smallest(zone, order, MIGRATE_CMA)
        if pfn is not None:
            return pfn
    if migratetype >= MIGRATE_PCPTYPES:
        return None
    pfn = __rmqueue_claim(zone, order, migratetype, alloc_flags)
    if pfn is None:
        pfn = __rmqueue_steal(zone, order, migratetype)
    return pfn


@kfunc
def rmqueue_bulk(zone: Zone, order: int, count: int, lst: deque, migratetype: int,
                 alloc_flags: int) -> int:
    """Refill a pcp list with ``count`` blocks of ``order``; returns blocks taken."""
    i = 0
    while i < count:
        pfn = __rmqueue(zone, order, migratetype, alloc_flags)
        if pfn is None:
            break
        lst.appendleft(pfn)  # list_add_tail: refills go behind what is there
        i += 1
    return i


def nr_pcp_alloc(pcp: Any, order: int) -> int:
    batch = pcp.batch
    if order == 0:
        return batch
    return max(batch >> order, 2)


def __rmqueue_pcplist(zone: Zone, order: int, migratetype: int, alloc_flags: int, pcp: Any,
                      lst: deque) -> int | None:
    if not lst:
        batch = nr_pcp_alloc(pcp, order)
        alloced = rmqueue_bulk(zone, order, batch, lst, migratetype, alloc_flags)
        pcp.count += alloced << order
        if not lst:
            return None
    pfn = lst.pop()
    pcp.count -= 1 << order
    return pfn


@kfunc
def rmqueue_pcplist(preferred_zone: Zone, zone: Zone, order: int, migratetype: int,
                    alloc_flags: int) -> int | None:
    m = zone.machine
    pcp = zone.per_cpu_pageset[m.cpu]
    pcp.free_count >>= 1
    lst = pcp.lists[MIGRATE_PCPTYPES * order + migratetype if order <= PAGE_ALLOC_COSTLY_ORDER
                    else order_to_pindex(migratetype, order)]
    if lst:  # __rmqueue_pcplist fast path, inlined
        pfn = lst.pop()
        pcp.count -= 1 << order
    else:
        pfn = __rmqueue_pcplist(zone, order, migratetype, alloc_flags, pcp, lst)
        if pfn is None:
            return None
    m.vm_events[_PGALLOC + zone.zone_idx] += 1 << order
    if preferred_zone is zone and zone.node == m.cpu_to_node[m.cpu]:
        ev = zone.vm_numa_event  # zone_statistics() for the common local case
        ev[_NUMA_HIT] += 1
        ev[_NUMA_LOCAL] += 1
    else:
        zone_statistics(preferred_zone, zone, 1)
    return pfn


@kfunc
def rmqueue_buddy(preferred_zone: Zone, zone: Zone, order: int, alloc_flags: int,
                  migratetype: int) -> int | None:
    pfn = None
    if order > 0 and alloc_flags & ALLOC_HIGHATOMIC:
        pfn = __rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
    if pfn is None:
        pfn = __rmqueue(zone, order, migratetype, alloc_flags)
        if pfn is None and alloc_flags & (ALLOC_OOM | ALLOC_NON_BLOCK):
            pfn = __rmqueue_smallest(zone, order, MIGRATE_HIGHATOMIC)
        if pfn is None:
            return None
    zone.machine.vm_events[_PGALLOC + zone.zone_idx] += 1 << order
    zone_statistics(preferred_zone, zone, 1)
    return pfn


def rmqueue(preferred_zone: Zone, zone: Zone, order: int, gfp_flags: int, alloc_flags: int,
            migratetype: int) -> int | None:
    if order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER:
        pfn = rmqueue_pcplist(preferred_zone, zone, order, migratetype, alloc_flags)
        if pfn is not None:
            return pfn
    return rmqueue_buddy(preferred_zone, zone, order, alloc_flags, migratetype)


def zone_statistics(preferred_zone: Zone, z: Zone, nr_account: int) -> None:
    ev = z.vm_numa_event
    if z.node == preferred_zone.node:
        ev[vmstat.NUMA_HIT] += nr_account
    else:
        ev[vmstat.NUMA_MISS] += nr_account
        preferred_zone.vm_numa_event[vmstat.NUMA_FOREIGN] += nr_account
    if z.node == z.machine.cpu_to_node[z.machine.cpu]:
        ev[vmstat.NUMA_LOCAL] += nr_account
    else:
        ev[vmstat.NUMA_OTHER] += nr_account


# ---------------------------------------------------------------------------------------
# Watermarks


def __zone_watermark_unusable_free(z: Zone, order: int, alloc_flags: int) -> int:
    unusable = (1 << order) - 1
    if not alloc_flags & ALLOC_RESERVES:
        unusable += z.nr_reserved_highatomic
    if not alloc_flags & ALLOC_CMA:
        unusable += z.vm_stat[_NR_FREE_CMA]
    return unusable


@kfunc
def __zone_watermark_ok(z: Zone, order: int, mark: int, highest_zoneidx: int, alloc_flags: int,
                        free_pages: int) -> bool:
    min_ = mark
    free_pages -= __zone_watermark_unusable_free(z, order, alloc_flags)
    if alloc_flags & ALLOC_RESERVES:
        if alloc_flags & ALLOC_MIN_RESERVE:
            min_ -= min_ // 2
            if alloc_flags & ALLOC_NON_BLOCK:
                min_ -= min_ // 4
        if alloc_flags & ALLOC_OOM:
            min_ -= min_ // 2
    if free_pages <= min_ + z.lowmem_reserve[highest_zoneidx]:
        return False
    if not order:
        return True
    for o in range(order, NR_PAGE_ORDERS):
        area = z.free_area[o]
        if not area.nr_free:
            continue
        fl = area.free_list
        if fl[0] or fl[1] or fl[2]:
            return True
        if alloc_flags & ALLOC_CMA and fl[MIGRATE_CMA]:
            return True
        if alloc_flags & (ALLOC_HIGHATOMIC | ALLOC_OOM) and fl[MIGRATE_HIGHATOMIC]:
            return True
    return False


def zone_watermark_ok(z: Zone, order: int, mark: int, highest_zoneidx: int,
                      alloc_flags: int) -> bool:
    return __zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags,
                               z.vm_stat[_NR_FREE_PAGES])


def zone_watermark_fast(z: Zone, order: int, mark: int, highest_zoneidx: int,
                        alloc_flags: int, gfp_mask: int) -> bool:
    free_pages = z.vm_stat[_NR_FREE_PAGES]
    if not order:
        fast_free = free_pages - __zone_watermark_unusable_free(z, 0, alloc_flags)
        if fast_free > mark + z.lowmem_reserve[highest_zoneidx]:
            return True
    return __zone_watermark_ok(z, order, mark, highest_zoneidx, alloc_flags, free_pages)


# ---------------------------------------------------------------------------------------
# Allocation


@kfunc
def get_page_from_freelist(gfp_mask: int, order: int, alloc_flags: int,
                           ac: AllocContext) -> int | None:
    """Walk the zonelist for a zone above its watermark and take a page from it."""
    highest = ac.highest_zoneidx
    wmark = alloc_flags & ALLOC_WMARK_MASK
    for zone in ac.zones:
        if not zone.managed_pages:
            continue
        if not alloc_flags & ALLOC_NO_WATERMARKS:
            mark = zone._watermark[wmark] + zone.watermark_boost
            # zone_watermark_fast()'s order-0 shortcut, inlined for the common case
            if order or alloc_flags & ALLOC_RESERVES or zone.vm_stat[_NR_FREE_PAGES] \
                    - zone.nr_reserved_highatomic - zone.vm_stat[_NR_FREE_CMA] \
                    <= mark + zone.lowmem_reserve[highest]:
                if not zone_watermark_fast(zone, order, mark, highest, alloc_flags, gfp_mask):
                    continue
        # rmqueue() is static inline in the kernel: its pcp branch is open-coded here
        if order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER:
            pfn = rmqueue_pcplist(ac.preferred_zone, zone, order, ac.migratetype, alloc_flags)
            if pfn is None:
                pfn = rmqueue_buddy(ac.preferred_zone, zone, order, alloc_flags, ac.migratetype)
        else:
            pfn = rmqueue_buddy(ac.preferred_zone, zone, order, alloc_flags, ac.migratetype)
        if pfn is not None:
            m = zone.machine
            mem_map = m.mem_map
            if order or gfp_mask & __GFP_COMP or mem_map.flags[pfn] & _CHECK_AT_PREP:
                prep_new_page(zone, pfn, order, gfp_mask, alloc_flags)
            else:
                mem_map._refcount[pfn] = 1  # post_alloc_hook for a plain order-0 page
                mem_map.order[pfn] = 0
                if gfp_mask & __GFP_ZERO:
                    m.physmem.clear_pages(pfn, 1)
            return pfn
    return None


def prep_new_page(zone: Zone, pfn: int, order: int, gfp_flags: int, alloc_flags: int) -> None:
    """post_alloc_hook + prep_compound_page: refcount 1, zeroing, compound metadata."""
    m = zone.machine
    mem_map = m.mem_map
    flags = mem_map.flags
    if flags[pfn] & pf.PAGE_FLAGS_CHECK_AT_PREP:
        bad_page(m, pfn, "PAGE_FLAGS_CHECK_AT_PREP flag(s) set")
        flags[pfn] &= ~pf.PAGE_FLAGS_CHECK_AT_PREP
    mem_map._refcount[pfn] = 1
    mem_map.order[pfn] = order
    if gfp_flags & __GFP_ZERO:
        m.physmem.clear_pages(pfn, 1 << order)
    if order and gfp_flags & __GFP_COMP:
        flags[pfn] |= _HEAD
        ch = mem_map.compound_head
        tail = 1 << pf.PG_tail_sim
        for t in range(pfn + 1, pfn + (1 << order)):
            ch[t] = pfn
            flags[t] |= tail


def prepare_alloc_pages(m: Any, gfp_mask: int, order: int, preferred_nid: int,
                        nodemask: Any) -> tuple[AllocContext, int]:
    """Build (and memoise) the alloc_context for this node, zone limit and migratetype.

    The kernel builds it on the stack each call; its inputs are few, so a machine keeps
    the finished contexts keyed by them (cleared when zonelists are rebuilt).
    """
    key = (preferred_nid, gfp_mask & _AC_KEY_MASK, None if nodemask is None
           else tuple(sorted(nodemask)))
    cached = m.ac_cache.get(key)
    if cached is not None:
        return cached
    ac = AllocContext()
    ac.highest_zoneidx = gfp_zone(gfp_mask)
    node = m.node_data[preferred_nid]
    ac.zonelist = node.node_zonelists[1 if gfp_mask & __GFP_THISNODE else 0]
    ac.nodemask = None if nodemask is None else frozenset(nodemask)
    ac.migratetype = gfp_migratetype(gfp_mask)
    ac.spread_dirty_pages = False
    ac.preferred_zone = first_zone(ac.zonelist, ac.highest_zoneidx, nodemask)
    ac.zones = tuple(z for z in ac.zonelist if z.zone_idx <= ac.highest_zoneidx
                     and (nodemask is None or z.node in nodemask))
    alloc_flags = ALLOC_WMARK_LOW
    if ac.migratetype == MIGRATE_MOVABLE and m.cma_enabled:
        alloc_flags |= ALLOC_CMA
    m.ac_cache[key] = (ac, alloc_flags)
    return ac, alloc_flags


_AC_KEY_MASK = 0x1F | __GFP_THISNODE  # zone modifiers, migratetype bits, THISNODE


def first_zone(zonelist: list[Zone], highest_zoneidx: int, nodemask: Any) -> Zone | None:
    for z in zonelist:
        if z.zone_idx <= highest_zoneidx and (nodemask is None or z.node in nodemask):
            return z
    return None


@kfunc(aliases=("__alloc_pages_noprof", "__alloc_frozen_pages_noprof", "__alloc_pages_nodemask"))
def __alloc_pages(gfp_mask: int, order: int, preferred_nid: int = 0,
                  nodemask: Any = None) -> int | None:
    """The heart of the zoned buddy allocator: fast path, then the slow path."""
    m = _trace._current
    if order > MAX_PAGE_ORDER:
        if not gfp_mask & __GFP_NOWARN:
            m.warn_on()
        return None
    gfp_mask &= m.gfp_allowed_mask
    # prepare_alloc_pages()'s memo lookup, inlined for the common no-nodemask case (``ac``
    # briefly holds the (ac, alloc_flags) pair: no extra local shows in `info locals`)
    ac = m.ac_cache.get((preferred_nid, gfp_mask & _AC_KEY_MASK, None)) \
        if nodemask is None else None
    ac, alloc_flags = ac if ac is not None else \
        prepare_alloc_pages(m, gfp_mask, order, preferred_nid, nodemask)
    pfn = None
    if ac.preferred_zone is not None:
        pfn = get_page_from_freelist(gfp_mask, order, alloc_flags, ac)
        if pfn is None:
            pfn = __alloc_pages_slowpath(gfp_mask, order, ac)
    if pfn is not None and gfp_mask & __GFP_ACCOUNT and not m.hooks.memcg_kmem_charge(
            pfn, gfp_mask, order):
        __free_pages(pfn, order)
        pfn = None
    if _tp_alloc.enabled:
        _tp_alloc.fire(pfn=pfn if pfn is not None else -1, order=order, gfp_flags=gfp_mask,
                       migratetype=ac.migratetype)
    return pfn


@kfunc(aliases=("alloc_pages_noprof",))
def alloc_pages(gfp_mask: int, order: int) -> int | None:
    """Allocate 2**order pages on the current CPU's node; returns the first pfn or None."""
    m = _trace._current
    return __alloc_pages(gfp_mask, order, m.cpu_to_node[m.cpu], None)


@kfunc(aliases=("alloc_pages_node_noprof",))
def alloc_pages_node(nid: int, gfp_mask: int, order: int) -> int | None:
    if nid < 0:
        m = current_machine()
        nid = m.cpu_to_node[m.cpu]
    return __alloc_pages(gfp_mask, order, nid, None)


def gfp_to_alloc_flags(m: Any, gfp_mask: int, order: int) -> int:
    alloc_flags = ALLOC_WMARK_MIN | ALLOC_CPUSET
    if gfp_mask & __GFP_HIGH:
        alloc_flags |= ALLOC_MIN_RESERVE
    if gfp_mask & __GFP_KSWAPD_RECLAIM:
        alloc_flags |= ALLOC_KSWAPD
    if not gfp_mask & __GFP_DIRECT_RECLAIM:
        alloc_flags |= ALLOC_NON_BLOCK
        if order > 0:
            alloc_flags |= ALLOC_HIGHATOMIC
        alloc_flags &= ~ALLOC_CPUSET
    if m.cma_enabled and gfp_migratetype(gfp_mask) == MIGRATE_MOVABLE:
        alloc_flags |= ALLOC_CMA
    return alloc_flags


def __gfp_pfmemalloc_flags(m: Any, gfp_mask: int) -> int:
    if gfp_mask & __GFP_NOMEMALLOC:
        return 0
    if gfp_mask & __GFP_MEMALLOC:
        return ALLOC_NO_WATERMARKS
    task = m.current
    if task is not None and task.flags & 0x00000800:  # PF_MEMALLOC: reclaim's own allocations
        return ALLOC_NO_WATERMARKS
    if task is not None and getattr(task, "oom_victim", False):
        return ALLOC_OOM
    return 0


@kfunc
def wake_all_kswapds(order: int, gfp_mask: int, ac: AllocContext) -> None:
    m = current_machine()
    seen = set()
    for zone in ac.zonelist:
        if zone.zone_idx > ac.highest_zoneidx or zone.node in seen:
            continue
        seen.add(zone.node)
        m.hooks.wakeup_kswapd(zone, gfp_mask, order, ac.highest_zoneidx)


@kfunc
def __alloc_pages_direct_compact(gfp_mask: int, order: int, alloc_flags: int,
                                 ac: AllocContext, prio: int) -> int | None:
    """Hook point for direct compaction (mm/compaction.c); no page until it exists."""
    if not order:
        return None
    m = current_machine()
    pfn = m.hooks.try_to_compact_pages(gfp_mask, order, alloc_flags, ac, prio)
    if pfn is not None:
        return pfn
    return None


@kfunc
def __perform_reclaim(gfp_mask: int, order: int, ac: AllocContext) -> int:
    m = current_machine()
    return m.hooks.try_to_free_pages(ac.zonelist, order, gfp_mask, ac.nodemask)


@kfunc
def __alloc_pages_direct_reclaim(gfp_mask: int, order: int, alloc_flags: int,
                                 ac: AllocContext) -> tuple[int | None, int]:
    """Reclaim, then retry; returns (page, did_some_progress)."""
    m = current_machine()
    progress = __perform_reclaim(gfp_mask, order, ac)
    if not progress:
        return None, 0
    pfn = get_page_from_freelist(gfp_mask, order, alloc_flags, ac)
    if pfn is None:
        drain_all_pages(m, None)
        pfn = get_page_from_freelist(gfp_mask, order, alloc_flags, ac)
    return pfn, progress


@kfunc
def should_reclaim_retry(gfp_mask: int, order: int, ac: AllocContext, alloc_flags: int,
                         did_some_progress: int, no_progress_loops: int) -> tuple[bool, int]:
    m = current_machine()
    if did_some_progress and order <= PAGE_ALLOC_COSTLY_ORDER:
        no_progress_loops = 0
    else:
        no_progress_loops += 1
    if no_progress_loops > MAX_RECLAIM_RETRIES:
        return False, no_progress_loops
    for zone in ac.zonelist:
        if zone.zone_idx > ac.highest_zoneidx or not zone.managed_pages:
            continue
        reclaimable = m.hooks.zone_reclaimable_pages(zone)
        if not reclaimable and not did_some_progress:
            continue
        available = reclaimable + zone.vm_stat[_NR_FREE_PAGES]
        if __zone_watermark_ok(zone, order, zone.min_wmark_pages(), ac.highest_zoneidx,
                               alloc_flags, available):
            return True, no_progress_loops
    return False, no_progress_loops


@kfunc
def __alloc_pages_may_oom(gfp_mask: int, order: int, ac: AllocContext) -> tuple[int | None, int]:
    """Last try at the high watermark, then the OOM killer hook."""
    m = current_machine()
    pfn = get_page_from_freelist((gfp_mask | __GFP_HARDWALL) & ~__GFP_DIRECT_RECLAIM, order,
                                 ALLOC_WMARK_HIGH | ALLOC_CPUSET, ac)
    if pfn is not None:
        return pfn, 1
    if gfp_mask & __GFP_NOFAIL:
        return None, 1
    if order > PAGE_ALLOC_COSTLY_ORDER or gfp_mask & __GFP_RETRY_MAYFAIL:
        return None, 0
    if gfp_mask & __GFP_THISNODE:
        return None, 0
    if m.hooks.out_of_memory(gfp_mask, order, ac):
        return None, 1
    return None, 0


@kfunc
def __alloc_pages_slowpath(gfp_mask: int, order: int, ac: AllocContext) -> int | None:
    m = current_machine()
    can_direct_reclaim = bool(gfp_mask & __GFP_DIRECT_RECLAIM)
    costly_order = order > PAGE_ALLOC_COSTLY_ORDER
    no_progress_loops = 0
    nofail_loops = 0
    alloc_flags = gfp_to_alloc_flags(m, gfp_mask, order)
    if alloc_flags & ALLOC_KSWAPD:
        wake_all_kswapds(order, gfp_mask, ac)
    pfn = get_page_from_freelist(gfp_mask, order, alloc_flags, ac)
    if pfn is not None:
        return pfn
    if can_direct_reclaim and (costly_order or (order > 0 and ac.migratetype != MIGRATE_MOVABLE)):
        pfn = __alloc_pages_direct_compact(gfp_mask, order, alloc_flags, ac, 2)
        if pfn is not None:
            return pfn
        if costly_order and gfp_mask & __GFP_NORETRY:
            return _nopage(m, gfp_mask, order, ac)
    while True:
        if alloc_flags & ALLOC_KSWAPD:
            wake_all_kswapds(order, gfp_mask, ac)
        reserve_flags = __gfp_pfmemalloc_flags(m, gfp_mask)
        if reserve_flags:
            alloc_flags = reserve_flags | (alloc_flags & (ALLOC_KSWAPD | ALLOC_CMA))
        pfn = get_page_from_freelist(gfp_mask, order, alloc_flags, ac)
        if pfn is not None:
            return pfn
        if not can_direct_reclaim:
            break
        pfn, did_some_progress = __alloc_pages_direct_reclaim(gfp_mask, order, alloc_flags, ac)
        if pfn is not None:
            return pfn
        pfn = __alloc_pages_direct_compact(gfp_mask, order, alloc_flags, ac, 1)
        if pfn is not None:
            return pfn
        if gfp_mask & __GFP_NORETRY:
            break
        if costly_order and not gfp_mask & __GFP_RETRY_MAYFAIL:
            break
        retry, no_progress_loops = should_reclaim_retry(gfp_mask, order, ac, alloc_flags,
                                                         did_some_progress, no_progress_loops)
        if retry:
            continue
        pfn, did_some_progress = __alloc_pages_may_oom(gfp_mask, order, ac)
        if pfn is not None:
            return pfn
        if did_some_progress and not gfp_mask & __GFP_NOFAIL:
            no_progress_loops = 0
            continue
        if gfp_mask & __GFP_NOFAIL:
            nofail_loops += 1
            if nofail_loops < MAX_NOFAIL_RETRIES:
                pfn = get_page_from_freelist(gfp_mask, order, ALLOC_MIN_RESERVE, ac)
                if pfn is not None:
                    return pfn
                continue
        break
    return _nopage(m, gfp_mask, order, ac)


def _nopage(m: Any, gfp_mask: int, order: int, ac: AllocContext) -> None:
    warn_alloc(gfp_mask, ac.nodemask, f"page allocation failure: order:{order}")
    return None


@kfunc
def warn_alloc(gfp_mask: int, nodemask: Any, msg: str) -> None:
    """The "page allocation failure" report: header line, stack, Mem-Info."""
    m = current_machine()
    if gfp_mask & __GFP_NOWARN:
        return
    comm = m.current.comm if m.current is not None else "swapper/0"
    nm = "(null)" if nodemask is None else ",".join(str(n) for n in sorted(nodemask))
    mems = ",".join(str(n) for n in range(len(m.node_data)))
    if len(m.node_data) > 1:
        mems = f"0-{len(m.node_data) - 1}"
    m.printk(f"{comm}: {msg}, mode:{gfp_mask:#x}({format_gfp(gfp_mask)}), "
             f"nodemask={nm},cpuset=/,mems_allowed={mems}", level=4)
    m.dump_stack()
    warn_alloc_show_mem(m, gfp_mask, nodemask)


def warn_alloc_show_mem(m: Any, gfp_mask: int, nodemask: Any) -> None:
    """Mem-Info up to the request's highest zone, filtered to its nodes when it may block."""
    from mmdbg.sim.mm.show_mem import SHOW_MEM_FILTER_NODES, __show_mem

    filt = SHOW_MEM_FILTER_NODES if gfp_mask & __GFP_DIRECT_RECLAIM else 0
    __show_mem(m, filt, nodemask, gfp_zone(gfp_mask))


# ---------------------------------------------------------------------------------------
# Freeing


def page_bad_reason(m: Any, pfn: int, flags_mask: int) -> str | None:
    mem_map = m.mem_map
    if mem_map._mapcount[pfn] != -1:
        return "nonzero mapcount"
    if mem_map.mapping.get(pfn):
        return "non-NULL mapping"
    if mem_map._refcount[pfn] != 0:
        return "nonzero _refcount"
    if mem_map.flags[pfn] & flags_mask:
        if flags_mask == pf.PAGE_FLAGS_CHECK_AT_FREE:
            return "PAGE_FLAGS_CHECK_AT_FREE flag(s) set"
        return "PAGE_FLAGS_CHECK_AT_PREP flag(s) set"
    if mem_map.memcg_data.get(pfn):
        return "page still charged to cgroup"
    return None


@kfunc
def bad_page(m: Any, pfn: int, reason: str) -> None:
    """``BUG: Bad page state`` with dump_page, as mm/page_alloc.c reports it."""
    comm = m.current.comm if m.current is not None else "swapper/0"
    m.printk(f"BUG: Bad page state in process {comm}  pfn:{pfn:05x}", level=1)
    m.dump_page(pfn, reason)
    m.printk("Modules linked in:", level=4)  # print_modules()
    m.dump_stack()
    m.add_taint("B")
    m.bad_pages += 1


def free_pages_prepare(m: Any, pfn: int, order: int) -> bool:
    """Checks and resets before a block goes back; False leaves the pages untouched."""
    mem_map = m.mem_map
    if _tp_free.enabled:
        _tp_free.fire(pfn=pfn, order=order)
    compound = bool(order and mem_map.flags[pfn] & _HEAD)
    n = 1 << order
    if pfn + n > mem_map.max_pfn or pfn < 0:
        bad_page(m, pfn, "page outside memory map")
        return False
    if getattr(mem_map.memcg_data.get(pfn), "is_objcg", False):  # PageMemcgKmem
        m.hooks.memcg_kmem_uncharge(pfn, order)  # __memcg_kmem_uncharge_page
    reason = page_bad_reason(m, pfn, pf.PAGE_FLAGS_CHECK_AT_FREE)
    if reason is None and order:
        ch = mem_map.compound_head
        for t in range(pfn + 1, pfn + n):
            if compound and ch[t] != pfn:
                reason = "PageTail not set" if ch[t] < 0 else "compound_head not consistent"
            else:
                r = page_bad_reason(m, t, pf.PAGE_FLAGS_CHECK_AT_FREE)
                if r is not None:
                    bad_page(m, t, r)
                    return False
            if reason is not None:
                bad_page(m, t, reason)
                return False
    if reason is not None:
        bad_page(m, pfn, reason)
        return False
    flags = mem_map.flags
    if compound:
        ch = mem_map.compound_head
        tail = ~(1 << pf.PG_tail_sim)
        for t in range(pfn + 1, pfn + n):
            ch[t] = -1
            flags[t] &= tail
    flags[pfn] &= ~pf.PAGE_FLAGS_CHECK_AT_PREP
    mem_map.order[pfn] = 0
    mem_map.mapping.pop(pfn, None)
    mem_map.index.pop(pfn, None)
    mem_map.private.pop(pfn, None)
    return True


@kfunc
def __free_one_page(zone: Zone, pfn: int, order: int, migratetype: int, fpi_flags: int = 0) -> None:
    """Return a block to the buddy lists, merging with free buddies as far as possible."""
    mem_map = zone.machine.mem_map
    mapcount = mem_map._mapcount
    morder = mem_map.order
    pageblock_mt = mem_map.pageblock_mt
    max_pfn = mem_map.max_pfn
    free_area = zone.free_area
    vm_stat = zone.vm_stat
    zstart = zone.zone_start_pfn
    zend = zstart + zone.spanned_pages
    if migratetype != MIGRATE_ISOLATE:  # account_freepages(), inlined
        vm_stat[_NR_FREE_PAGES] += 1 << order
        if migratetype == MIGRATE_CMA:
            vm_stat[_NR_FREE_CMA] += 1 << order
    while order < MAX_PAGE_ORDER:
        buddy_pfn = pfn ^ (1 << order)
        if buddy_pfn >= max_pfn or mapcount[buddy_pfn] != _BUDDY \
                or morder[buddy_pfn] != order:
            break
        buddy_mt = pageblock_mt[buddy_pfn >> PAGEBLOCK_ORDER]
        if order >= PAGEBLOCK_ORDER and migratetype != buddy_mt and (
                migratetype >= MIGRATE_PCPTYPES or buddy_mt >= MIGRATE_PCPTYPES):
            if migratetype != MIGRATE_CMA or buddy_mt != MIGRATE_CMA:
                break
        if not zstart <= buddy_pfn < zend:  # zone_spans_pfn()
            break
        # __del_page_from_free_list(), inlined
        area = free_area[order]
        del area.free_list[buddy_mt][buddy_pfn]
        area.nr_free -= 1
        mapcount[buddy_pfn] = -1  # __ClearPageBuddy
        morder[buddy_pfn] = 0
        if order >= PAGEBLOCK_ORDER and buddy_mt != MIGRATE_ISOLATE:
            vm_stat[_NR_FREE_PAGES_BLOCKS] -= 1 << order
        if buddy_mt != migratetype:
            # the buddy's free pages were counted under its old type
            account_freepages(zone, -(1 << order), buddy_mt)
            account_freepages(zone, 1 << order, migratetype)
            change_pageblock_range(zone.machine, buddy_pfn, order, migratetype)
        pfn &= buddy_pfn
        order += 1
    morder[pfn] = order  # set_buddy_order()
    mapcount[pfn] = _BUDDY
    if order >= PAGEBLOCK_ORDER:
        change_pageblock_range(zone.machine, pfn, order, migratetype)
    # __add_to_free_list(), inlined
    area = free_area[order]
    area.free_list[migratetype][pfn] = None
    area.nr_free += 1
    if order >= PAGEBLOCK_ORDER and migratetype != MIGRATE_ISOLATE:
        vm_stat[_NR_FREE_PAGES_BLOCKS] += 1 << order


def free_one_page(zone: Zone, pfn: int, order: int, fpi_flags: int = 0) -> None:
    mt = get_pageblock_migratetype(zone.machine, pfn)
    __free_one_page(zone, pfn, order, mt, fpi_flags)


def nr_pcp_free(pcp: Any, batch: int, high: int) -> int:
    if high < batch:
        return 1
    return max(1, min(batch, high - batch) if high > batch else batch)


@kfunc
def free_pcppages_bulk(zone: Zone, count: int, pcp: Any, pindex: int) -> None:
    """Give ``count`` pages back to the buddy lists, round-robin over the pcp lists."""
    m = zone.machine
    mem_map = m.mem_map
    pageblock_mt = mem_map.pageblock_mt
    count = min(pcp.count, count)
    lists = pcp.lists
    while count > 0:
        lst = None
        for _ in range(NR_PCP_LISTS):
            pindex += 1
            if pindex == NR_PCP_LISTS:
                pindex = 0
            if lists[pindex]:
                lst = lists[pindex]
                break
        if lst is None:
            break
        order = 9 if pindex >= 12 else pindex // MIGRATE_PCPTYPES
        nr_pages = 1 << order
        while True:
            pfn = lst.popleft()  # oldest first, as list_last_entry
            mt = pageblock_mt[pfn >> PAGEBLOCK_ORDER]
            count -= nr_pages
            pcp.count -= nr_pages
            if _tp_pcpu_drain.enabled:
                _tp_pcpu_drain.fire(pfn=pfn, order=order, migratetype=mt)
            __free_one_page(zone, pfn, order, mt)
            if count <= 0 or not lst:
                break


def free_frozen_page_commit(zone: Zone, pcp: Any, pfn: int, migratetype: int, order: int) -> None:
    pindex = MIGRATE_PCPTYPES * order + migratetype if order <= PAGE_ALLOC_COSTLY_ORDER \
        else order_to_pindex(migratetype, order)
    pcp.lists[pindex].append(pfn)
    pcp.count += 1 << order
    pcp.free_count += 1 << order
    # nr_pcp_high(): pcp->high starts at 0 and is clamped into [high_min, high_max] on
    # the first free, which is why an unused zone shows "high: 0" in zoneinfo
    high = pcp.high
    if high < pcp.high_min:
        high = pcp.high = pcp.high_min
    elif high > pcp.high_max:
        high = pcp.high = pcp.high_max
    if pcp.count >= high:
        free_pcppages_bulk(zone, nr_pcp_free(pcp, pcp.batch, high), pcp, pindex)


@kfunc(aliases=("free_unref_page", "free_the_page", "__free_frozen_pages"))
def free_frozen_pages(pfn: int, order: int) -> None:
    m = _trace._current
    mem_map = m.mem_map
    if order == 0 and not _tp_free.enabled and mem_map._mapcount[pfn] == -1 \
            and not mem_map.flags[pfn] & _CHECK_AT_FREE and pfn not in mem_map.mapping \
            and pfn not in mem_map.memcg_data:
        # free_pages_prepare() for a clean order-0 page, inlined
        mem_map.flags[pfn] &= _CLEAR_AT_PREP
        if mem_map.private:
            mem_map.private.pop(pfn, None)
        if mem_map.index:
            mem_map.index.pop(pfn, None)
    elif not free_pages_prepare(m, pfn, order):
        return
    zone = m.zones[m.zone_of_block[pfn >> PAGEBLOCK_ORDER]]
    m.vm_events[_PGFREE] += 1 << order
    if not (order <= PAGE_ALLOC_COSTLY_ORDER or order == PAGEBLOCK_ORDER):
        free_one_page(zone, pfn, order)
        return
    migratetype = mem_map.pageblock_mt[pfn >> PAGEBLOCK_ORDER]
    if migratetype >= MIGRATE_PCPTYPES:
        if migratetype == MIGRATE_ISOLATE:
            free_one_page(zone, pfn, order)
            return
        migratetype = MIGRATE_MOVABLE
    pcp = zone.per_cpu_pageset[m.cpu]
    if order:
        free_frozen_page_commit(zone, pcp, pfn, migratetype, order)
        return
    # free_frozen_page_commit() for order 0, inlined
    pcp.lists[migratetype].append(pfn)
    pcp.count += 1
    pcp.free_count += 1
    high = pcp.high
    if high < pcp.high_min:
        high = pcp.high = pcp.high_min
    elif high > pcp.high_max:
        high = pcp.high = pcp.high_max
    if pcp.count >= high:
        free_pcppages_bulk(zone, nr_pcp_free(pcp, pcp.batch, high), pcp, migratetype)


_CHECK_AT_FREE = pf.PAGE_FLAGS_CHECK_AT_FREE
_CHECK_AT_PREP = pf.PAGE_FLAGS_CHECK_AT_PREP
_PREP_SLOW = __GFP_ZERO | __GFP_COMP
_CLEAR_AT_PREP = ~pf.PAGE_FLAGS_CHECK_AT_PREP & ((1 << 64) - 1)


@kfunc(aliases=("___free_pages",))
def __free_pages(page: int, order: int) -> None:
    """Drop a reference; the last one frees the block (put_page_testzero)."""
    m = _trace._current
    if order > MAX_PAGE_ORDER or order < 0:
        m.warn_on()
        return
    mem_map = m.mem_map
    if page < 0 or page >= mem_map.max_pfn or m.zone_of_block[page >> PAGEBLOCK_ORDER] < 0:
        bad_page(m, max(page, 0), "page outside memory map")
        return
    ref = mem_map._refcount[page]
    if ref <= 0:
        bad_page(m, page, page_bad_reason(m, page, pf.PAGE_FLAGS_CHECK_AT_FREE)
                 or "VM_BUG_ON_PAGE(page_ref_count(page) == 0)")
        return
    head = mem_map.flags[page] & _HEAD
    mem_map._refcount[page] = ref - 1
    if ref == 1:
        if head and mem_map.order[page] != order:
            mem_map._refcount[page] = 1
            bad_page(m, page, "wrong order")
            return
        free_frozen_pages(page, order)
    elif not head:
        while order > 0:
            order -= 1
            free_frozen_pages(page + (1 << order), order)


def free_pages_bulk_batched(pfns: list[int]) -> None:
    """free_unref_folios for order-0 folios: one mm_page_free_batched event each."""
    refcount = _trace._current.mem_map._refcount
    for pfn in pfns:
        if _tp_free_batched.enabled:
            _tp_free_batched.fire(pfn=pfn)
        if refcount[pfn] == 1:
            refcount[pfn] = 0
            free_frozen_pages(pfn, 0)


# ---------------------------------------------------------------------------------------
# Draining per-CPU lists


@kfunc
def drain_pages_zone(cpu: int, zone: Zone) -> None:
    pcp = zone.per_cpu_pageset[cpu]
    if pcp.count:
        free_pcppages_bulk(zone, pcp.count, pcp, 0)


def drain_pages(m: Any, cpu: int) -> None:
    for zone in m.zones:
        drain_pages_zone(cpu, zone)


@kfunc
def drain_all_pages(m: Any, zone: Zone | None) -> None:
    for cpu in range(m.ncpus):
        if zone is None:
            drain_pages(m, cpu)
        else:
            drain_pages_zone(cpu, zone)


@kfunc
def drain_local_pages(m: Any, zone: Zone | None) -> None:
    if zone is None:
        drain_pages(m, m.cpu)
    else:
        drain_pages_zone(m.cpu, zone)


# ---------------------------------------------------------------------------------------
# Watermarks, lowmem_reserve and pcp sizing (boot and sysctl writes)


def int_sqrt(x: int) -> int:
    return isqrt(x)


def nr_free_buffer_pages(m: Any) -> int:
    """Managed pages above the high watermark in zones <= ZONE_NORMAL (nr_free_zone_pages)."""
    total = 0
    for node in m.node_data:
        for z in node.node_zones[:3]:
            size = z.managed_pages
            high = z.high_wmark_pages()
            if size > high:
                total += size - high
    return total


def calculate_min_free_kbytes(m: Any) -> int:
    """init_per_zone_wmark_min(): int_sqrt(lowmem_kbytes * 16), clamped to [128, 262144]."""
    lowmem_kbytes = nr_free_buffer_pages(m) * 4
    new = int_sqrt(lowmem_kbytes * 16)
    return max(128, min(new, 262144))


@kfunc
def __setup_per_zone_wmarks(m: Any) -> None:
    pages_min = m.sysctl["vm.min_free_kbytes"] >> 2
    wsf = m.sysctl["vm.watermark_scale_factor"]
    lowmem_pages = sum(z.managed_pages for z in m.zones
                       if not z.is_movable() and not z.is_device())
    for z in m.zones:
        managed = z.managed_pages
        tmp = pages_min * managed // lowmem_pages if lowmem_pages else 0
        if z.is_movable() or z.is_device():
            min_pages = managed // 1024
            min_pages = max(32, min(min_pages, 128))
            if z.is_device():
                min_pages = 0
            z._watermark[WMARK_MIN] = min_pages
        else:
            z._watermark[WMARK_MIN] = tmp
        gap = max(tmp >> 2, managed * wsf // 10000)
        if z.is_device():
            gap = 0
        z.watermark_boost = 0
        z._watermark[WMARK_LOW] = z._watermark[WMARK_MIN] + gap
        z._watermark[WMARK_HIGH] = z._watermark[WMARK_LOW] + gap
        z._watermark[3] = z._watermark[WMARK_HIGH] + gap
    calculate_totalreserve_pages(m)


def setup_per_zone_lowmem_reserve(m: Any) -> None:
    ratio = m.lowmem_reserve_ratio
    for node in m.node_data:
        zones = node.node_zones
        for i, z in enumerate(zones):
            managed_pages = 0
            z.lowmem_reserve = [0] * len(zones)
            for j in range(i + 1, len(zones)):
                managed_pages += zones[j].managed_pages
                if ratio[i] and managed_pages:
                    z.lowmem_reserve[j] = managed_pages // ratio[i]
    calculate_totalreserve_pages(m)


def calculate_totalreserve_pages(m: Any) -> None:
    total = 0
    for node in m.node_data:
        node_total = 0
        for z in node.node_zones:
            mx = max(z.lowmem_reserve) if z.lowmem_reserve else 0
            mx += z.high_wmark_pages()
            mx = min(mx, z.managed_pages)
            node_total += mx
        node.totalreserve_pages = node_total
        total += node_total
    m.totalreserve_pages = total


def zone_batchsize(zone: Zone) -> int:
    batch = min(zone.managed_pages >> 10, (1 << 20) // 4096)
    batch //= 4
    if batch < 1:
        batch = 1
    v = batch + batch // 2
    return (1 << (v.bit_length() - 1)) - 1


def zone_highsize(zone: Zone, batch: int, cpu_online: int, high_fraction: int) -> int:
    if not high_fraction:
        total_pages = zone.low_wmark_pages()
    else:
        total_pages = zone.managed_pages // high_fraction
    m = zone.machine
    nr_split_cpus = sum(1 for c in range(m.ncpus) if m.cpu_to_node[c] == zone.node) + cpu_online
    if not nr_split_cpus:
        nr_split_cpus = m.ncpus
    high = total_pages // nr_split_cpus
    return max(high, batch << 2)


def zone_set_pageset_high_and_batch(zone: Zone, cpu_online: int = 0) -> None:
    new_batch = max(1, zone_batchsize(zone))
    frac = zone.machine.sysctl["vm.percpu_pagelist_high_fraction"]
    if frac:
        high_min = zone_highsize(zone, new_batch, cpu_online, frac)
        high_max = high_min
    else:
        high_min = zone_highsize(zone, new_batch, cpu_online, 0)
        high_max = zone_highsize(zone, new_batch, cpu_online, 8)
    zone.pageset_batch = new_batch
    zone.pageset_high_min = high_min
    zone.pageset_high_max = high_max
    for pcp in zone.per_cpu_pageset:
        pcp.batch = new_batch
        pcp.high_min = high_min
        pcp.high_max = high_max
        pcp.high = min(pcp.high, high_max) if pcp.high else 0  # BOOT_PAGESET_HIGH until used


def calculate_normal_threshold(zone: Zone) -> int:
    """mm/vmstat.c: the per-cpu vm stat threshold shown in zoneinfo."""
    m = zone.machine
    mem = zone.managed_pages >> (27 - 12)
    threshold = 2 * (m.ncpus.bit_length()) * (1 + (mem.bit_length() if mem else 0))
    return min(125, threshold)


@kfunc
def setup_per_zone_wmarks(m: Any) -> None:
    __setup_per_zone_wmarks(m)
    for z in m.zones:
        zone_set_pageset_high_and_batch(z, 0)
        z.stat_threshold = calculate_normal_threshold(z) if z.managed_pages else 0


def init_per_zone_wmark_min(m: Any) -> None:
    if m.config.min_free_kbytes is not None:
        m.sysctl["vm.min_free_kbytes"] = m.config.min_free_kbytes
    else:
        m.sysctl["vm.min_free_kbytes"] = calculate_min_free_kbytes(m)
    setup_per_zone_wmarks(m)
    setup_per_zone_lowmem_reserve(m)
