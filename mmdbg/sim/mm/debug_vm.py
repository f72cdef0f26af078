"""check_consistency(): the simulator's CONFIG_DEBUG_VM.

Recounts everything from first principles and raises ``AssertionError`` naming the first
invariant that does not hold:

* every pfn of every zone is accounted exactly once: as part of a free buddy block (on the
  free list of its pageblock's migratetype, with PageBuddy and the order on its head page), on
  a per-CPU list, or allocated (refcount > 0 or reserved);
* free-list lengths equal ``nr_free``; free blocks are naturally aligned and inside their zone;
* zone counters equal a recount: NR_FREE_PAGES = buddy pages (not isolated) + 0 for pcp
  (pcp pages are not free pages in the kernel's accounting), NR_FREE_PAGES_BLOCKS, pcp counts;
* per-CPU list counts equal the pages on them.

Subsystems add their own checks with :func:`register_check` (VM rss counters, slab counts,
memcg charges ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmdbg.sim.include.gfp import MIGRATE_CMA, MIGRATE_ISOLATE, MIGRATE_TYPES
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.mm_types import NR_PAGE_ORDERS, PAGEBLOCK_ORDER
from mmdbg.sim.mm.mmzone import pindex_to_order

CHECKS: list[Callable[[Any], None]] = []


def register_check(fn: Callable[[Any], None]) -> Callable[[Any], None]:
    CHECKS.append(fn)
    return fn


def check_buddy(m: Any) -> None:
    mem_map = m.mem_map
    mapcount = mem_map._mapcount
    morder = mem_map.order
    owner: dict[int, str] = {}
    for zone in m.zones:
        free = free_blocks = cma = 0
        for order in range(NR_PAGE_ORDERS):
            area = zone.free_area[order]
            n = 0
            for mt in range(MIGRATE_TYPES):
                for pfn in area.free_list[mt]:
                    n += 1
                    where = f"{zone.name} node {zone.node} order {order} {mt} pfn {pfn:#x}"
                    assert pfn % (1 << order) == 0, f"free block not aligned: {where}"
                    assert zone.zone_spans_pfn(pfn) and zone.zone_spans_pfn(
                        pfn + (1 << order) - 1), f"free block outside its zone: {where}"
                    assert mapcount[pfn] == pf.PAGE_BUDDY_MAPCOUNT_VALUE, \
                        f"free-list page without PageBuddy: {where}"
                    assert morder[pfn] == order, \
                        f"buddy order {morder[pfn]} != list order: {where}"
                    for b in range(pfn >> PAGEBLOCK_ORDER,
                                   ((pfn + (1 << order) - 1) >> PAGEBLOCK_ORDER) + 1):
                        assert mem_map.pageblock_mt[b] == mt, \
                            f"free block on list {mt} in pageblock of type " \
                            f"{mem_map.pageblock_mt[b]}: {where}"
                    for p in range(pfn, pfn + (1 << order)):
                        assert p not in owner, f"pfn {p:#x} counted twice ({owner[p]}, {where})"
                        owner[p] = "buddy"
                        assert mem_map._refcount[p] == 0, f"free pfn {p:#x} has a refcount"
                    if mt != MIGRATE_ISOLATE:
                        free += 1 << order
                        if order >= PAGEBLOCK_ORDER:
                            free_blocks += 1 << order
                    if mt == MIGRATE_CMA:
                        cma += 1 << order
            assert n == area.nr_free, \
                f"{zone.name} node {zone.node} order {order}: nr_free {area.nr_free} != {n}"
        assert zone.vm_stat[vmstat.NR_FREE_PAGES] == free, \
            f"{zone.name} node {zone.node}: NR_FREE_PAGES {zone.vm_stat[vmstat.NR_FREE_PAGES]}" \
            f" != recount {free}"
        assert zone.vm_stat[vmstat.NR_FREE_PAGES_BLOCKS] == free_blocks, \
            f"{zone.name} node {zone.node}: NR_FREE_PAGES_BLOCKS mismatch"
        assert zone.vm_stat[vmstat.NR_FREE_CMA_PAGES] == cma, "NR_FREE_CMA_PAGES mismatch"
        for cpu, pcp in enumerate(zone.per_cpu_pageset):
            cnt = 0
            for pindex, lst in enumerate(pcp.lists):
                order = pindex_to_order(pindex)
                for pfn in lst:
                    for p in range(pfn, pfn + (1 << order)):
                        assert p not in owner, f"pcp pfn {p:#x} also {owner[p]}"
                        owner[p] = f"pcp cpu{cpu}"
                    assert mem_map._refcount[pfn] == 0, f"pcp pfn {pfn:#x} has a refcount"
                    assert m.pfn_zone(pfn) is zone, f"pcp pfn {pfn:#x} in the wrong zone"
                    cnt += 1 << order
            assert cnt == pcp.count, \
                f"{zone.name} cpu{cpu}: pcp->count {pcp.count} != {cnt} pages on lists"
    # every managed page is free, on a pcp list, or in use; free pages have no references
    # and nothing else claims them.
    managed = sum(z.managed_pages for z in m.zones)
    in_use = 0
    refc = mem_map._refcount
    reserved = 1 << pf.PG_reserved
    flags = mem_map.flags
    ch = mem_map.compound_head
    morder = mem_map.order
    for z in m.zones:
        pfn = z.zone_start_pfn
        end = z.zone_end_pfn
        while pfn < end:
            if pfn in owner or flags[pfn] & reserved:
                pfn += 1
                continue
            if refc[pfn] > 0:
                # an allocation: a non-compound high-order block references only its
                # first page, so its tail pages are in use with no refcount of their own
                n = 1 << morder[pfn]
                for p in range(pfn + 1, pfn + n):
                    assert p not in owner, f"pfn {p:#x} inside allocation {pfn:#x} is {owner[p]}"
                in_use += n
                pfn += n
                continue
            if ch[pfn] >= 0:
                in_use += 1
                pfn += 1
                continue
            raise AssertionError(f"pfn {pfn:#x} is neither free, on a pcp list nor in use")
    assert len(owner) + in_use == managed, \
        f"managed pages {managed} != free {len(owner)} + in use {in_use}"


def check_consistency(m: Any) -> None:
    check_buddy(m)
    for fn in CHECKS:
        fn(m)
