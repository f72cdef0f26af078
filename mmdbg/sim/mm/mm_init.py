"""Boot-time memory initialisation (mm/mm_init.c, mm/numa_emulation.c, mm/page_alloc.c).

``setup_nodes`` splits RAM into NUMA nodes (``numa=fake=N`` splits evenly by present
memory, boundaries aligned to 32 MiB as FAKE_NODE_MIN_SIZE), ``free_area_init`` sizes the
zones of every node (DMA below 16 MiB, DMA32 below 4 GiB, Normal above, Movable carved from
the top of the highest populated zone by ``movablecore=``), ``memmap_init`` marks every page
reserved with one reference and every pageblock MIGRATE_MOVABLE, and ``memblock_free_all``
releases the unreserved ranges into the buddy allocator in naturally aligned blocks of up
to MAX_PAGE_ORDER, merging as ``__free_pages_core`` does.  ``build_all_zonelists`` builds
each node's fallback list: its own zones highest first, then the other nodes' by distance.
"""

from __future__ import annotations

from array import array
from typing import Any

from mmdbg.sim.include.gfp import (
    MAX_NR_ZONES,
    MIGRATE_MOVABLE,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_MOVABLE,
    ZONE_NAMES,
    ZONE_NORMAL,
)
from mmdbg.sim.mm.mm_types import MAX_PAGE_ORDER, PAGEBLOCK_ORDER
from mmdbg.sim.mm.mmzone import PglistData

MAX_DMA_PFN = (16 << 20) >> 12
MAX_DMA32_PFN = (4 << 30) >> 12
MAX_ORDER_NR_PAGES = 1 << MAX_PAGE_ORDER
FAKE_NODE_MIN_PAGES = (32 << 20) >> 12


def split_nodes(ram: list[tuple[int, int]], nr_nodes: int) -> list[tuple[int, int]]:
    """numa=fake=N: N node pfn ranges holding about equal amounts of RAM."""
    total = sum(e - s for s, e in ram)
    per = total // nr_nodes
    bounds = []
    acc = 0
    target = per
    for s, e in ram:
        while len(bounds) < nr_nodes - 1 and acc + (e - s) >= target:
            cut = s + (target - acc)
            cut = (cut + FAKE_NODE_MIN_PAGES - 1) // FAKE_NODE_MIN_PAGES * FAKE_NODE_MIN_PAGES
            cut = min(max(cut, s), e)
            bounds.append(cut)
            target += per
        acc += e - s
    start = ram[0][0]
    end = ram[-1][1]
    edges = [start, *bounds, end]
    return [(edges[i], edges[i + 1]) for i in range(nr_nodes)]


def present_in(ram: list[tuple[int, int]], lo: int, hi: int) -> int:
    return sum(max(0, min(e, hi) - max(s, lo)) for s, e in ram)


def free_area_init(m: Any, ram: list[tuple[int, int]], node_ranges: list[tuple[int, int]]
                   ) -> None:
    cfg = m.config
    ncpus = m.ncpus
    m.node_data = []
    movable_pages = cfg.movablecore >> 12
    highest_populated = ZONE_DMA
    for _s, e in ram:
        if e > MAX_DMA32_PFN:
            highest_populated = ZONE_NORMAL
        elif e > MAX_DMA_PFN and highest_populated < ZONE_DMA32:
            highest_populated = ZONE_DMA32
    limits = [(0, MAX_DMA_PFN), (MAX_DMA_PFN, MAX_DMA32_PFN), (MAX_DMA32_PFN, 1 << 40)]
    for nid, (ns, ne) in enumerate(node_ranges):
        pgdat = PglistData(m, nid, ncpus)
        pgdat.node_start_pfn = ns
        pgdat.node_spanned_pages = ne - ns
        pgdat.node_present_pages = present_in(ram, ns, ne)
        zone_movable_pfn = ne
        if movable_pages:
            share = movable_pages // len(node_ranges)
            # walk down from the node end until `share` present pages are covered
            cut = ne
            need = share
            for s, e in reversed(ram):
                s2, e2 = max(s, ns), min(e, ne)
                if s2 >= e2 or s2 >= cut:
                    continue
                e2 = min(e2, cut)
                take = min(need, e2 - s2)
                cut = e2 - take
                need -= take
                if need == 0:
                    break
            cut = (cut + MAX_ORDER_NR_PAGES - 1) // MAX_ORDER_NR_PAGES * MAX_ORDER_NR_PAGES
            hz_lo = max(limits[highest_populated][0], ns)
            zone_movable_pfn = max(cut, hz_lo)
        for zidx in range(MAX_NR_ZONES):
            z = pgdat.node_zones[zidx]
            if zidx <= ZONE_NORMAL:
                lo, hi = limits[zidx]
                zs, ze = max(lo, ns), min(hi, ne)
                if zidx == highest_populated:
                    ze = min(ze, zone_movable_pfn)
            elif zidx == ZONE_MOVABLE and zone_movable_pfn < ne:
                zs, ze = zone_movable_pfn, ne
            else:
                zs = ze = 0
            if ze <= zs:
                zs = ze = 0
            z.zone_start_pfn = zs
            z.spanned_pages = ze - zs
            z.present_pages = present_in(ram, zs, ze) if ze > zs else 0
        pgdat.nr_zones = max((i + 1 for i, z in enumerate(pgdat.node_zones) if z.present_pages),
                             default=0)
        m.node_data.append(pgdat)
    m.zones = [z for pgdat in m.node_data for z in pgdat.node_zones]


def memmap_init(m: Any) -> None:
    """Every page starts reserved with one reference; pageblocks start MIGRATE_MOVABLE."""
    mem_map = m.mem_map  # MemMap() already holds the reserved, refcount-1, MOVABLE state
    assert mem_map.pageblock_mt[0] == MIGRATE_MOVABLE
    # pageblock -> index into m.zones (-1: no zone), for page_zone()
    zob = array("b", [-1]) * len(mem_map.pageblock_mt)
    for i, z in enumerate(m.zones):
        if not z.spanned_pages:
            continue
        b0 = z.zone_start_pfn >> PAGEBLOCK_ORDER
        b1 = (z.zone_end_pfn - 1) >> PAGEBLOCK_ORDER
        for b in range(b0, b1 + 1):
            zob[b] = i
    m.zone_of_block = zob


def memblock_free_all(m: Any) -> int:
    """Release every unreserved page into the buddy allocator; returns pages freed."""
    from mmdbg.sim.mm.page_alloc import __free_one_page

    mem_map = m.mem_map
    flags = mem_map.flags
    refc = mem_map._refcount
    zero_q = [array("Q", bytes(8 << o)) for o in range(MAX_PAGE_ORDER + 1)]
    zero_i = [array("i", bytes(4 << o)) for o in range(MAX_PAGE_ORDER + 1)]
    total = 0
    for z in m.zones:
        if not z.spanned_pages:
            continue
        for s, e in m.memblock.free_ranges(z.zone_start_pfn, z.zone_end_pfn):
            start = s
            while start < e:
                order = min(MAX_PAGE_ORDER, (start & -start).bit_length() - 1) if start else \
                    MAX_PAGE_ORDER
                while start + (1 << order) > e:
                    order -= 1
                nr = 1 << order
                # __free_pages_core: drop PG_reserved and the boot reference
                flags[start:start + nr] = zero_q[order]
                refc[start:start + nr] = zero_i[order]
                z.managed_pages += nr
                __free_one_page(z, start, order, mem_map.pageblock_mt[start >> PAGEBLOCK_ORDER])
                start += nr
                total += nr
    return total


def build_all_zonelists(m: Any) -> None:
    """node_zonelists[0]: fallback (all nodes, nearest first); [1]: this node only."""
    nodes = m.node_data
    n = len(nodes)
    m.ac_cache.clear()
    for pgdat in nodes:
        order = [pgdat.node_id] + [(pgdat.node_id + k) % n for k in range(1, n)]
        fallback = []
        for nid in order:
            fallback.extend(z for z in reversed(nodes[nid].node_zones) if z.managed_pages)
        pgdat.node_zonelists[0] = fallback
        pgdat.node_zonelists[1] = [z for z in reversed(pgdat.node_zones) if z.managed_pages]


def zone_ranges_lines(m: Any) -> list[str]:
    """The "Zone ranges:" boot lines."""
    out = ["Zone ranges:"]
    lo_hi = {ZONE_DMA: (0x1000, MAX_DMA_PFN), ZONE_DMA32: (MAX_DMA_PFN, MAX_DMA32_PFN),
             ZONE_NORMAL: (MAX_DMA32_PFN, m.mem_map.max_pfn)}
    for zidx in (ZONE_DMA, ZONE_DMA32, ZONE_NORMAL):
        lo, hi = lo_hi[zidx]
        if zidx == ZONE_DMA:
            lo = 1
        if hi <= lo or (zidx == ZONE_NORMAL and m.mem_map.max_pfn <= MAX_DMA32_PFN):
            out.append(f"  {ZONE_NAMES[zidx]:<8} empty")
            continue
        hi = min(hi, m.mem_map.max_pfn)
        out.append(f"  {ZONE_NAMES[zidx]:<8} [mem 0x{lo << 12:016x}-0x{(hi << 12) - 1:016x}]")
    out.append(f"  {'Device':<8} empty")
    out.append("Movable zone start for each node")
    for pgdat in m.node_data:
        mz = pgdat.node_zones[ZONE_MOVABLE]
        if mz.spanned_pages:
            out.append(f"  Node {pgdat.node_id}: 0x{mz.zone_start_pfn << 12:016x}")
    out.append("Early memory node ranges")
    return out
