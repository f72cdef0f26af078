"""/proc/vmstat, /proc/zoneinfo, /proc/buddyinfo, /proc/pagetypeinfo (mm/vmstat.c).

Formats are Linux 6.18's (``vmstat_show``, ``zoneinfo_show_print``, ``frag_show_print``,
``pagetypeinfo_show*``), checked against reference/proc-samples-linux-6.18:

* buddyinfo and pagetypeinfo list the *populated* zones of each node; zoneinfo lists all
  five zones (DMA, DMA32, Normal, Movable, Device) of every node, with the per-node stats
  under the node's first populated zone and nothing past ``protection:`` for an empty zone;
* zoneinfo prints ``vm stats threshold`` after every CPU's pageset, as 6.18 does;
* vmstat is zone items, NUMA events, node items, the global items, events, then the
  deprecated ``nr_unstable 0``.  Node THP items are kept in pages (as the kernel keeps them)
  and printed in THP units; ``pgpgin``/``pgpgout`` are kept in 512-byte sectors and printed
  in kB.
* The CMA migratetype appears in pagetypeinfo only when the machine has CMA (the sample
  kernel was built without CONFIG_CMA); ``Isolate`` is always listed.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.include.gfp import MIGRATE_CMA, MIGRATE_TYPES, MIGRATETYPE_NAMES
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.mm_types import NR_PAGE_ORDERS, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER
from mmdbg.sim.mm.show_mem import HPAGE_PMD_NR, MAX_RECLAIM_RETRIES
from mmdbg.sim.trace import kfunc

# vmstat_item_print_in_thp()
THP_ITEMS = frozenset(vmstat.NS[n] for n in (
    "nr_anon_transparent_hugepages", "nr_file_hugepages", "nr_shmem_hugepages",
    "nr_shmem_pmdmapped", "nr_file_pmdmapped"))
PGPGIN = vmstat.EV["pgpgin"]
PGPGOUT = vmstat.EV["pgpgout"]
PAGES_PER_SECTION = 1 << (27 - 12)  # SECTION_SIZE_BITS 27 on x86_64
FREE_LIST_WALK_CAP = 100000


def migratetypes(m: Any) -> list[int]:
    """The migratetypes this kernel has (no CMA without CONFIG_CMA)."""
    return [mt for mt in range(MIGRATE_TYPES) if mt != MIGRATE_CMA or m.cma_enabled]


def node_page_state_pages(pgdat: Any, item: int) -> int:
    v = pgdat.vm_stat[item]
    return v // HPAGE_PMD_NR if item in THP_ITEMS else v


# ---------------------------------------------------------------------------------------
# /proc/vmstat


def global_dirty_limits(m: Any) -> tuple[int, int]:
    """mm/page-writeback.c: (background threshold, threshold) in pages."""
    free = m.nr_free_pages()
    x = free - min(free, m.totalreserve_pages)
    x += sum(n.vm_stat[vmstat.NS["nr_inactive_file"]] + n.vm_stat[vmstat.NS["nr_active_file"]]
             for n in m.node_data)
    available = x + 1
    sysctl = m.sysctl
    ratio = sysctl["vm.dirty_ratio"] * 4096 // 100
    bg_ratio = sysctl["vm.dirty_background_ratio"] * 4096 // 100
    if sysctl["vm.dirty_bytes"]:
        thresh = -(-sysctl["vm.dirty_bytes"] // 4096)
    else:
        thresh = ratio * available // 4096
    if sysctl["vm.dirty_background_bytes"]:
        bg_thresh = -(-sysctl["vm.dirty_background_bytes"] // 4096)
    else:
        bg_thresh = bg_ratio * available // 4096
    if bg_thresh >= thresh:
        bg_thresh = thresh // 2
    thresh = min(thresh, (1 << 32) - 1)
    if bg_thresh >= thresh:
        bg_thresh = thresh // 2
    return bg_thresh, thresh


def nr_memmap_boot_pages(m: Any) -> int:
    """Pages of struct page allocated from memblock at boot."""
    return sum(r.size >> 12 for r in m.memblock.reserved if r.name.startswith("memmap"))


def vmstat_values(m: Any) -> list[tuple[str, int]]:
    """(name, value) for every /proc/vmstat line but the trailing ``nr_unstable``."""
    out: list[tuple[str, int]] = []
    zones = m.zones
    for i, name in enumerate(vmstat.ZONE_STAT_ITEMS):
        out.append((name, sum(z.vm_stat[i] for z in zones)))
    for i, name in enumerate(vmstat.NUMA_STAT_ITEMS):
        out.append((name, sum(z.vm_numa_event[i] for z in zones)))
    for i, name in enumerate(vmstat.NODE_STAT_ITEMS):
        v = sum(n.vm_stat[i] for n in m.node_data)
        out.append((name, v // HPAGE_PMD_NR if i in THP_ITEMS else v))
    bg, thresh = global_dirty_limits(m)
    glob = {
        "nr_dirty_threshold": thresh,
        "nr_dirty_background_threshold": bg,
        "nr_memmap_pages": m.global_stat[vmstat.GLOBAL_STAT_ITEMS.index("nr_memmap_pages")],
        "nr_memmap_boot_pages": nr_memmap_boot_pages(m),
    }
    for name in vmstat.GLOBAL_STAT_ITEMS:
        out.append((name, glob[name]))
    ev = list(m.vm_events)
    ev[PGPGIN] //= 2  # sectors -> kbytes
    ev[PGPGOUT] //= 2
    out.extend(zip(vmstat.VM_EVENT_ITEMS, ev))
    return out


@kfunc
def vmstat_show(m: Any) -> str:
    """The text of /proc/vmstat."""
    lines = [f"{name} {v}\n" for name, v in vmstat_values(m)]
    lines.append("nr_unstable 0\n")
    return "".join(lines)


# ---------------------------------------------------------------------------------------
# /proc/buddyinfo


@kfunc
def frag_show(m: Any) -> str:
    """The text of /proc/buddyinfo: free blocks per order, populated zones only."""
    out = []
    for pgdat in m.node_data:
        for z in pgdat.node_zones:
            if not z.present_pages:
                continue
            out.append(f"Node {pgdat.node_id}, zone {z.name:>8} "
                       + "".join(f"{z.free_area[o].nr_free:6d} " for o in range(NR_PAGE_ORDERS))
                       + "\n")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# /proc/pagetypeinfo


def pageblock_online(m: Any, pfn: int) -> bool:
    """pfn_to_online_page(): the pfn's memory section holds RAM."""
    sec = pfn // PAGES_PER_SECTION
    lo, hi = sec * PAGES_PER_SECTION, (sec + 1) * PAGES_PER_SECTION
    return any(s < hi and lo < e for s, e in m.ram_ranges)


def pageblock_counts(m: Any, zone: Any) -> list[int]:
    """Pageblocks of each migratetype in ``zone`` (pagetypeinfo_showblockcount_print)."""
    count = [0] * MIGRATE_TYPES
    mts = m.mem_map.pageblock_mt
    for pfn in range(zone.zone_start_pfn, zone.zone_end_pfn, PAGEBLOCK_NR_PAGES):
        if not pageblock_online(m, pfn) or m.pfn_zone(pfn) is not zone:
            continue
        mt = mts[pfn >> PAGEBLOCK_ORDER]
        if 0 <= mt < MIGRATE_TYPES:
            count[mt] += 1
    return count


@kfunc
def pagetypeinfo_show(m: Any) -> str:
    """The text of /proc/pagetypeinfo, every node with memory in turn."""
    out: list[str] = []
    mts = migratetypes(m)
    for pgdat in m.node_data:
        if not pgdat.node_present_pages:
            continue
        zones = [z for z in pgdat.node_zones if z.present_pages]
        out.append(f"Page block order: {PAGEBLOCK_ORDER}\n")
        out.append(f"Pages per block:  {PAGEBLOCK_NR_PAGES}\n\n")
        out.append(f"{'Free pages count per migrate type at order':<43} "
                   + "".join(f"{o:6d} " for o in range(NR_PAGE_ORDERS)) + "\n")
        for z in zones:
            for mt in mts:
                row = [f"Node {pgdat.node_id:4d}, zone {z.name:>8}, type "
                       f"{MIGRATETYPE_NAMES[mt]:>12} "]
                for o in range(NR_PAGE_ORDERS):
                    n = len(z.free_area[o].free_list[mt])
                    row.append(f">{FREE_LIST_WALK_CAP:6d} " if n >= FREE_LIST_WALK_CAP
                               else f"{n:6d} ")
                out.append("".join(row) + "\n")
        out.append(f"\n{'Number of blocks type ':<23}"
                   + "".join(f"{MIGRATETYPE_NAMES[mt]:>12} " for mt in mts) + "\n")
        for z in zones:
            count = pageblock_counts(m, z)
            out.append(f"Node {pgdat.node_id}, zone {z.name:>8} "
                       + "".join(f"{count[mt]:12d} " for mt in mts) + "\n")
    return "".join(out)


# ---------------------------------------------------------------------------------------
# /proc/zoneinfo


def is_zone_first_populated(pgdat: Any, zone: Any) -> bool:
    for z in pgdat.node_zones:
        if z.present_pages:
            return z is zone
    return False


def zoneinfo_show_print(m: Any, pgdat: Any, zone: Any) -> str:
    out = [f"Node {pgdat.node_id}, zone {zone.name:>8}"]
    if is_zone_first_populated(pgdat, zone):
        out.append("\n  per-node stats")
        for i, name in enumerate(vmstat.NODE_STAT_ITEMS):
            out.append(f"\n      {name:<12} {node_page_state_pages(pgdat, i)}")
    out.append(
        f"\n  pages free     {zone.vm_stat[vmstat.NR_FREE_PAGES]}"
        f"\n        boost    {zone.watermark_boost}"
        f"\n        min      {zone.min_wmark_pages()}"
        f"\n        low      {zone.low_wmark_pages()}"
        f"\n        high     {zone.high_wmark_pages()}"
        f"\n        promo    {zone.promo_wmark_pages()}"
        f"\n        spanned  {zone.spanned_pages}"
        f"\n        present  {zone.present_pages}"
        f"\n        managed  {zone.managed_pages}"
        f"\n        cma      {zone.cma_pages}")
    out.append("\n        protection: (" + ", ".join(str(r) for r in zone.lowmem_reserve) + ")")
    if not zone.present_pages:
        out.append("\n")
        return "".join(out)
    for i, name in enumerate(vmstat.ZONE_STAT_ITEMS):
        out.append(f"\n      {name:<12} {zone.vm_stat[i]}")
    for i, name in enumerate(vmstat.NUMA_STAT_ITEMS):
        out.append(f"\n      {name:<12} {zone.vm_numa_event[i]}")
    out.append("\n  pagesets")
    for cpu, pcp in enumerate(zone.per_cpu_pageset):
        out.append(f"\n    cpu: {cpu}"
                   f"\n              count:    {pcp.count}"
                   f"\n              high:     {pcp.high}"
                   f"\n              batch:    {pcp.batch}"
                   f"\n              high_min: {pcp.high_min}"
                   f"\n              high_max: {pcp.high_max}"
                   f"\n  vm stats threshold: {zone.stat_threshold}")
    out.append(f"\n  node_unreclaimable:  {int(pgdat.kswapd_failures >= MAX_RECLAIM_RETRIES)}"
               f"\n  start_pfn:           {zone.zone_start_pfn}")
    out.append("\n")
    return "".join(out)


@kfunc
def zoneinfo_show(m: Any) -> str:
    """The text of /proc/zoneinfo: every zone of every node, populated or not."""
    return "".join(zoneinfo_show_print(m, pgdat, z)
                   for pgdat in m.node_data for z in pgdat.node_zones)
