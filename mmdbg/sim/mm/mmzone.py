"""Nodes and zones (include/linux/mmzone.h, mm/mmzone.c): ``pg_data_t``, ``struct zone``,
``free_area``, per-CPU page lists, zonelists, watermarks and ``lowmem_reserve``.

Free lists are ``free_area[order].free_list[migratetype]``.  Each list is a dict used as an
ordered set of head pfns (reference/performance.md §4a): O(1) add, O(1) removal of any block
(which isolation and compaction need), and ``popitem()`` takes the most recently added block,
i.e. the list head where the kernel adds frees by default.  Simplification: the kernel's
``FPI_TO_TAIL``/``buddy_merge_likely`` tail placement is not modelled; all adds go to the head.

Per-CPU page lists (``struct per_cpu_pages``) keep one Python list per (migratetype, order)
for order <= PAGE_ALLOC_COSTLY_ORDER, plus one for pageblock_order (THP), indexed as the
kernel's ``order_to_pindex()``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from mmdbg.sim.include.gfp import (
    MAX_NR_ZONES,
    MIGRATE_PCPTYPES,
    MIGRATE_TYPES,
    ZONE_DEVICE,
    ZONE_MOVABLE,
    ZONE_NAMES,
)
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.mm_types import NR_PAGE_ORDERS, PAGEBLOCK_ORDER

WMARK_MIN = 0
WMARK_LOW = 1
WMARK_HIGH = 2
WMARK_PROMO = 3
NR_WMARK = 4

PAGE_ALLOC_COSTLY_ORDER = 3
NR_LOWORDER_PCP_LISTS = MIGRATE_PCPTYPES * (PAGE_ALLOC_COSTLY_ORDER + 1)
NR_PCP_THP = 2
NR_PCP_LISTS = NR_LOWORDER_PCP_LISTS + NR_PCP_THP

# sysctl_lowmem_reserve_ratio (mm/page_alloc.c): DMA 256, DMA32 256, Normal 32, Movable 0
LOWMEM_RESERVE_RATIO_DEFAULT = [256, 256, 32, 0, 0]


def order_to_pindex(migratetype: int, order: int) -> int:
    """The kernel's order_to_pindex(): which pcp list holds (migratetype, order)."""
    if order > PAGE_ALLOC_COSTLY_ORDER:
        return NR_LOWORDER_PCP_LISTS + (0 if migratetype == 1 else 1)
    return MIGRATE_PCPTYPES * order + migratetype


def pindex_to_order(pindex: int) -> int:
    if pindex >= NR_LOWORDER_PCP_LISTS:
        return PAGEBLOCK_ORDER
    return pindex // MIGRATE_PCPTYPES


class FreeArea:
    """``struct free_area``: one free list per migratetype and the block count."""

    __slots__ = ("free_list", "nr_free")
    ktype = "free_area"

    def __init__(self) -> None:
        self.free_list: list[dict[int, None]] = [{} for _ in range(MIGRATE_TYPES)]
        self.nr_free = 0


class PerCpuPages:
    """``struct per_cpu_pages``: count in pages, high/batch limits, and the lists."""

    __slots__ = ("alloc_factor", "batch", "count", "free_count", "high", "high_max", "high_min",
                 "lists")
    ktype = "per_cpu_pages"

    def __init__(self) -> None:
        self.count = 0
        self.high = 0
        self.high_min = 0
        self.high_max = 0
        self.batch = 1
        self.free_count = 0
        self.alloc_factor = 0
        self.lists: list[deque[int]] = [deque() for _ in range(NR_PCP_LISTS)]


class Zone:
    """``struct zone``."""

    ktype = "zone"

    def __init__(self, pgdat: PglistData, zone_idx: int, ncpus: int) -> None:
        self.zone_pgdat = pgdat
        self.node = pgdat.node_id
        self.zone_idx = zone_idx
        self.name = ZONE_NAMES[zone_idx]
        self.zone_start_pfn = 0
        self.spanned_pages = 0
        self.present_pages = 0
        self.managed_pages = 0
        self.cma_pages = 0
        self._watermark = [0] * NR_WMARK
        self.watermark_boost = 0
        self.nr_reserved_highatomic = 0
        self.lowmem_reserve = [0] * MAX_NR_ZONES
        self.free_area = [FreeArea() for _ in range(NR_PAGE_ORDERS)]
        self.vm_stat = [0] * len(vmstat.ZONE_STAT_ITEMS)
        self.vm_numa_event = [0] * len(vmstat.NUMA_STAT_ITEMS)
        self.per_cpu_pageset = [PerCpuPages() for _ in range(ncpus)]
        self.pageset_batch = 1
        self.pageset_high_min = 0
        self.pageset_high_max = 0
        self.stat_threshold = 0
        self.machine: Any = pgdat.machine

    def __repr__(self) -> str:
        return f"<zone {self.name} node {self.node}>"

    @property
    def zone_end_pfn(self) -> int:
        return self.zone_start_pfn + self.spanned_pages

    def populated_zone(self) -> bool:
        return self.present_pages > 0

    def managed_zone(self) -> bool:
        return self.managed_pages > 0

    def zone_spans_pfn(self, pfn: int) -> bool:
        return self.zone_start_pfn <= pfn < self.zone_start_pfn + self.spanned_pages

    def min_wmark_pages(self) -> int:
        return self._watermark[WMARK_MIN] + self.watermark_boost

    def low_wmark_pages(self) -> int:
        return self._watermark[WMARK_LOW] + self.watermark_boost

    def high_wmark_pages(self) -> int:
        return self._watermark[WMARK_HIGH] + self.watermark_boost

    def promo_wmark_pages(self) -> int:
        return self._watermark[WMARK_PROMO] + self.watermark_boost

    def wmark_pages(self, i: int) -> int:
        return self._watermark[i] + self.watermark_boost

    @property
    def nr_free_pages(self) -> int:
        return self.vm_stat[vmstat.NR_FREE_PAGES]

    def zone_page_state(self, item: int) -> int:
        return self.vm_stat[item]

    def is_movable(self) -> bool:
        return self.zone_idx == ZONE_MOVABLE

    def is_device(self) -> bool:
        return self.zone_idx == ZONE_DEVICE


class PglistData:
    """``pg_data_t``: one NUMA node, its zones, zonelist and node counters."""

    ktype = "pglist_data"

    def __init__(self, machine: Any, node_id: int, ncpus: int) -> None:
        self.machine = machine
        self.node_id = node_id
        self.node_start_pfn = 0
        self.node_spanned_pages = 0
        self.node_present_pages = 0
        self.node_zones = [Zone(self, i, ncpus) for i in range(MAX_NR_ZONES)]
        # node_zonelists[ZONELIST_FALLBACK]: zones of all nodes, this node first, highest
        # zone first within a node (build_zonelists, node order).
        self.node_zonelists: list[list[Zone]] = [[], []]
        self.vm_stat = [0] * len(vmstat.NODE_STAT_ITEMS)
        self.kswapd: Any = None
        self.kswapd_order = 0
        self.kswapd_highest_zoneidx = 0
        self.kswapd_failures = 0
        self.nr_zones = 0
        self.totalreserve_pages = 0

    def __repr__(self) -> str:
        return f"<pglist_data node {self.node_id}>"

    def populated_zones(self) -> list[Zone]:
        return [z for z in self.node_zones if z.present_pages]

    def node_page_state(self, item: int) -> int:
        return self.vm_stat[item]
