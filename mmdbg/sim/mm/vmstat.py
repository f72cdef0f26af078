"""vmstat counters: the kernel's item lists, in /proc/vmstat order (mm/vmstat.c, 6.18).

Zone items live per zone (``zone.vm_stat``), NUMA events per zone (``zone.vm_numa_event``),
node items per node (``pgdat.vm_stat``), and events are global (``machine.vm_events``; the
kernel keeps them per CPU and sums on read, which is not observable here).  The lists are the
ones a Linux 6.18 x86_64 kernel prints; the simulation advances the counters whose mechanism
exists and leaves the others at 0.  Per-zone events (``pgalloc_normal``) are indexed
``BASE + zone_idx``.
"""

from __future__ import annotations

from mmdbg.sim.include.gfp import ZONE_NAMES

ZONE_STAT_ITEMS = [
    "nr_free_pages", "nr_free_pages_blocks", "nr_zone_inactive_anon", "nr_zone_active_anon",
    "nr_zone_inactive_file", "nr_zone_active_file", "nr_zone_unevictable",
    "nr_zone_write_pending", "nr_mlock", "nr_zspages", "nr_free_cma",
]
NUMA_STAT_ITEMS = [
    "numa_hit", "numa_miss", "numa_foreign", "numa_interleave", "numa_local", "numa_other",
]
NODE_STAT_ITEMS = [
    "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file", "nr_unevictable",
    "nr_slab_reclaimable", "nr_slab_unreclaimable", "nr_isolated_anon", "nr_isolated_file",
    "workingset_nodes", "workingset_refault_anon", "workingset_refault_file",
    "workingset_activate_anon", "workingset_activate_file", "workingset_restore_anon",
    "workingset_restore_file", "workingset_nodereclaim", "nr_anon_pages", "nr_mapped",
    "nr_file_pages", "nr_dirty", "nr_writeback", "nr_shmem", "nr_shmem_hugepages",
    "nr_shmem_pmdmapped", "nr_file_hugepages", "nr_file_pmdmapped",
    "nr_anon_transparent_hugepages", "nr_vmscan_write", "nr_vmscan_immediate_reclaim",
    "nr_dirtied", "nr_written", "nr_throttled_written", "nr_kernel_misc_reclaimable",
    "nr_foll_pin_acquired", "nr_foll_pin_released", "nr_kernel_stack", "nr_page_table_pages",
    "nr_sec_page_table_pages", "nr_iommu_pages", "nr_swapcached", "pgpromote_success",
    "pgpromote_candidate", "pgpromote_candidate_nrl", "pgdemote_kswapd", "pgdemote_direct",
    "pgdemote_khugepaged", "pgdemote_proactive", "nr_hugetlb", "nr_balloon_pages",
    "nr_kernel_file_pages",
]
GLOBAL_STAT_ITEMS = [
    "nr_dirty_threshold", "nr_dirty_background_threshold", "nr_memmap_pages",
    "nr_memmap_boot_pages",
]
# Event names; the three per-zone families expand to one counter per zone type.
_EVENT_TEMPLATE = [
    "pgpgin", "pgpgout", "pswpin", "pswpout", "pgfree", "pgactivate", "pgdeactivate",
    "pglazyfree", "pgfault", "pgmajfault", "pglazyfreed", "pgrefill", "pgreuse",
    "pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged", "pgsteal_proactive",
    "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged", "pgscan_proactive",
    "pgscan_direct_throttle", "pgscan_anon", "pgscan_file", "pgsteal_anon", "pgsteal_file",
    "zone_reclaim_success", "zone_reclaim_failed", "pginodesteal", "slabs_scanned",
    "kswapd_inodesteal", "kswapd_low_wmark_hit_quickly", "kswapd_high_wmark_hit_quickly",
    "pageoutrun", "pgrotated", "drop_pagecache", "drop_slab", "oom_kill", "numa_pte_updates",
    "numa_huge_pte_updates", "numa_hint_faults", "numa_hint_faults_local", "numa_pages_migrated",
    "pgmigrate_success", "pgmigrate_fail", "thp_migration_success", "thp_migration_fail",
    "thp_migration_split", "compact_migrate_scanned", "compact_free_scanned", "compact_isolated",
    "compact_stall", "compact_fail", "compact_success", "compact_daemon_wake",
    "compact_daemon_migrate_scanned", "compact_daemon_free_scanned", "htlb_buddy_alloc_success",
    "htlb_buddy_alloc_fail", "unevictable_pgs_culled", "unevictable_pgs_scanned",
    "unevictable_pgs_rescued", "unevictable_pgs_mlocked", "unevictable_pgs_munlocked",
    "unevictable_pgs_cleared", "unevictable_pgs_stranded", "thp_fault_alloc",
    "thp_fault_fallback", "thp_fault_fallback_charge", "thp_collapse_alloc",
    "thp_collapse_alloc_failed", "thp_file_alloc", "thp_file_fallback",
    "thp_file_fallback_charge", "thp_file_mapped", "thp_split_page", "thp_split_page_failed",
    "thp_deferred_split_page", "thp_underused_split_page", "thp_split_pmd",
    "thp_scan_exceed_none_pte", "thp_scan_exceed_swap_pte", "thp_scan_exceed_share_pte",
    "thp_split_pud", "thp_zero_page_alloc", "thp_zero_page_alloc_failed", "thp_swpout",
    "thp_swpout_fallback", "balloon_inflate", "balloon_deflate", "balloon_migrate", "swap_ra",
    "swap_ra_hit", "swpin_zero", "swpout_zero", "ksm_swpin_copy", "cow_ksm", "zswpin", "zswpout",
    "zswpwb", "direct_map_level2_splits", "direct_map_level3_splits",
    "direct_map_level2_collapses", "direct_map_level3_collapses",
]
PER_ZONE_EVENTS = ("pgalloc", "allocstall", "pgskip")


def _expand_events() -> list[str]:
    out: list[str] = []
    for n in _EVENT_TEMPLATE:
        if n == "pgfree":
            for fam in PER_ZONE_EVENTS:
                out.extend(f"{fam}_{z.lower()}" for z in ZONE_NAMES)
        out.append(n)
    return out


VM_EVENT_ITEMS = _expand_events()

ZS = {n: i for i, n in enumerate(ZONE_STAT_ITEMS)}
NS = {n: i for i, n in enumerate(NODE_STAT_ITEMS)}
NUMA = {n: i for i, n in enumerate(NUMA_STAT_ITEMS)}
EV = {n: i for i, n in enumerate(VM_EVENT_ITEMS)}

NR_FREE_PAGES = ZS["nr_free_pages"]
NR_FREE_PAGES_BLOCKS = ZS["nr_free_pages_blocks"]
NR_FREE_CMA_PAGES = ZS["nr_free_cma"]
NR_MLOCK = ZS["nr_mlock"]

NUMA_HIT = NUMA["numa_hit"]
NUMA_MISS = NUMA["numa_miss"]
NUMA_FOREIGN = NUMA["numa_foreign"]
NUMA_LOCAL = NUMA["numa_local"]
NUMA_OTHER = NUMA["numa_other"]

PGALLOC = EV["pgalloc_dma"]  # + zone_idx
ALLOCSTALL = EV["allocstall_dma"]
PGSKIP = EV["pgskip_dma"]
PGFREE = EV["pgfree"]
PGFAULT = EV["pgfault"]
PGMAJFAULT = EV["pgmajfault"]
