"""Page reclaim (mm/vmscan.c): kswapd, direct reclaim, memcg reclaim, the LRU scan.

::

    kswapd (one kthread per node, "kswapdN") <- wakeup_kswapd (below the low watermark)
      -> balance_pgdat (priority 12..1 until the node is balanced at the high watermark)
         -> age_active_anon ; kswapd_shrink_node -> shrink_node
    __alloc_pages_direct_reclaim -> try_to_free_pages -> do_try_to_free_pages -> shrink_node
    try_charge_memcg -> try_to_free_mem_cgroup_pages -> do_try_to_free_pages (memcg target)
    shrink_node -> shrink_node_memcgs (memory.min/low) -> shrink_lruvec
         -> get_scan_count (vm.swappiness, costs, cache_trim_mode, file_is_tiny)
         -> shrink_list -> shrink_active_list   (folio_referenced: clear the Accessed bits)
                        -> shrink_inactive_list -> shrink_folio_list
                             (folio_check_references, add_to_swap, try_to_unmap, pageout,
                              __remove_mapping with a workingset shadow)
       -> shrink_slab (the SLUB registry's shrinkers)

Counters: pgscan_*/pgsteal_* (kswapd, direct, anon, file), pgrefill, pgactivate,
pgdeactivate, allocstall_*, pageoutrun, nr_vmscan_write, nr_vmscan_immediate_reclaim, the
memcg's copies; tracepoints ``vmscan:*``.

Simplifications: the classic two-list LRU (no MGLRU); no folio locking or isolation
references (a scan runs without preemption); swap writeout is synchronous (the page is clean
when pageout returns, as with zram or zswap); dirty *file* pages are left to the flushers
(PG_reclaim set, activated) unless kswapd finds them again with PG_reclaim set, as the kernel
does when the node is flagged dirty; shmem pages are not swapped (they stay resident).
kswapd, the oom_reaper and the flushers are created on first use rather than at boot so that
machines that never see memory pressure keep their pid numbering.
"""

from __future__ import annotations

from math import isqrt
from typing import Any

from mmdbg.sim.arch.x86 import tlb
from mmdbg.sim.arch.x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_SOFT_DIRTY,
    _PAGE_SWP_EXCLUSIVE,
    _PAGE_SWP_SOFT_DIRTY,
    pte_table_lookup,
    swp_entry_to_pte,
)
from mmdbg.sim.include.gfp import __GFP_DIRECT_RECLAIM, __GFP_IO, GFP_KERNEL
from mmdbg.sim.kernel.sched import PF_MEMALLOC
from mmdbg.sim.mm import (
    filemap,
    memcontrol,
    memory,
    page_alloc,
    page_io,
    page_writeback,
    swap_state,
    swapfile,
    vmstat,
    workingset,
)
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import swap as lru_mod
from mmdbg.sim.mm.mm_types import PAGEBLOCK_ORDER
from mmdbg.sim.mm.rmap import AnonVma, folio_remove_rmap_pte, rmap_walk
from mmdbg.sim.mm.swap import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    folio_putback_lru,
    lru_note_cost,
    lruvec_del_folio,
)
from mmdbg.sim.mm.vma import MM_ANONPAGES, MM_SWAPENTS, VM_EXEC, VM_LOCKED
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

DEF_PRIORITY = 12
SWAP_CLUSTER_MAX = 32
MAX_RECLAIM_RETRIES = 16
MAX_SWAPPINESS = 200
SCAN_EQUAL, SCAN_FRACT, SCAN_ANON, SCAN_FILE = range(4)
DEACTIVATE_ANON = 1
DEACTIVATE_FILE = 2
FOLIOREF_RECLAIM, FOLIOREF_RECLAIM_CLEAN, FOLIOREF_KEEP, FOLIOREF_ACTIVATE = range(4)
RECLAIM_WB_ANON = 0x0001
RECLAIM_WB_FILE = 0x0002
RECLAIM_WB_ASYNC = 0x0008
SCAN_COST_NS = 60  # per page isolated and examined
RMAP_COST_NS = 40  # per mapping walked by folio_referenced / try_to_unmap

_tp_kswapd_sleep = declare_tracepoint("vmscan:mm_vmscan_kswapd_sleep")
_tp_kswapd_wake = declare_tracepoint("vmscan:mm_vmscan_kswapd_wake")
_tp_wakeup_kswapd = declare_tracepoint("vmscan:mm_vmscan_wakeup_kswapd")
_tp_direct_begin = declare_tracepoint("vmscan:mm_vmscan_direct_reclaim_begin")
_tp_direct_end = declare_tracepoint("vmscan:mm_vmscan_direct_reclaim_end")
_tp_memcg_begin = declare_tracepoint("vmscan:mm_vmscan_memcg_reclaim_begin")
_tp_memcg_end = declare_tracepoint("vmscan:mm_vmscan_memcg_reclaim_end")
_tp_isolate = declare_tracepoint("vmscan:mm_vmscan_lru_isolate")
_tp_write = declare_tracepoint("vmscan:mm_vmscan_write_folio")
_tp_shrink_inactive = declare_tracepoint("vmscan:mm_vmscan_lru_shrink_inactive")
_tp_shrink_active = declare_tracepoint("vmscan:mm_vmscan_lru_shrink_active")
_tp_reclaim_pages = declare_tracepoint("vmscan:mm_vmscan_reclaim_pages")

EV = vmstat.EV
NS = vmstat.NS
_LRU = 1 << pf.PG_lru
_ACTIVE = 1 << pf.PG_active
_REFERENCED = 1 << pf.PG_referenced
_SWAPBACKED = 1 << pf.PG_swapbacked
_SWAPCACHE = 1 << pf.PG_swapcache
_DIRTY = 1 << pf.PG_dirty
_WRITEBACK = 1 << pf.PG_writeback
_WORKINGSET = 1 << pf.PG_workingset
_RECLAIM = 1 << pf.PG_reclaim
_MLOCKED = 1 << pf.PG_mlocked
_UNEVICTABLE = 1 << pf.PG_unevictable
_ANON_EXCLUSIVE = 1 << pf.PG_anon_exclusive
_EV_PGACTIVATE = EV["pgactivate"]
_NR_LRU_BASE = NS["nr_inactive_anon"]
_NR_ZONE_LRU_BASE = vmstat.ZS["nr_zone_inactive_anon"]
_SWP_OFFSET_MASK = (1 << 58) - 1


class ScanControl:
    """``struct scan_control``."""

    ktype = "scan_control"

    def __init__(self, gfp_mask: int = GFP_KERNEL, order: int = 0, priority: int = DEF_PRIORITY,
                 nr_to_reclaim: int = SWAP_CLUSTER_MAX, target_mem_cgroup: Any = None,
                 reclaim_idx: int = 4, may_swap: bool = True, kswapd: bool = False) -> None:
        self.gfp_mask = gfp_mask
        self.order = order
        self.priority = priority
        self.nr_to_reclaim = nr_to_reclaim
        self.target_mem_cgroup = target_mem_cgroup
        self.reclaim_idx = reclaim_idx
        self.may_writepage = True
        self.may_unmap = True
        self.may_swap = may_swap
        self.may_deactivate = 0
        self.force_deactivate = False
        self.skipped_deactivate = False
        self.memcg_low_reclaim = False
        self.memcg_low_skipped = False
        self.cache_trim_mode = False
        self.file_is_tiny = False
        self.anon_cost = 0
        self.file_cost = 0
        self.nr_scanned = 0
        self.nr_reclaimed = 0
        self.kswapd = kswapd
        self.nr_dirty = 0
        self.nr_unqueued_dirty = 0
        self.nr_file_taken = 0
        self.proactive = False


class ReclaimStat:
    """``struct reclaim_stat``."""

    def __init__(self) -> None:
        self.nr_dirty = 0
        self.nr_unqueued_dirty = 0
        self.nr_congested = 0
        self.nr_writeback = 0
        self.nr_immediate = 0
        self.nr_pageout = 0
        self.nr_activate = [0, 0]
        self.nr_ref_keep = 0
        self.nr_unmap_fail = 0
        self.nr_lazyfree_fail = 0


def _m() -> Any:
    return current_machine()


def _cost(m: Any, ns: int) -> None:
    m.clock.ns += ns


def cgroup_reclaim(sc: ScanControl) -> bool:
    return sc.target_mem_cgroup is not None and not sc.target_mem_cgroup.is_root()


def is_file_lru(lru: int) -> bool:
    return lru in (LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)


def is_active_lru(lru: int) -> bool:
    return lru in (LRU_ACTIVE_ANON, LRU_ACTIVE_FILE)


def _count_memcg(lruvec: Any, name: str, n: int) -> None:
    if n:
        lruvec.memcg.count_event(name, n)


def can_reclaim_anon_pages(m: Any, memcg: Any = None) -> bool:
    return memcontrol.mem_cgroup_get_nr_swap_pages(m, memcg or m.memcg.root) > 0


# -- isolation and references ----------------------------------------------------------------
@kfunc(aliases=("isolate_lru_pages",))
def isolate_lru_folios(nr_to_scan: int, lruvec: Any, dst: list[int], sc: ScanControl,
                       lru: int) -> tuple[int, int]:
    """Take up to ``nr_to_scan`` pages off the tail (oldest end) of ``lru``."""
    m = current_machine()
    lst = lruvec.lists[lru]
    nr_taken = 0
    if lst:
        # lruvec_del_folio per page, inlined: the list's pages are all on (lruvec, lru), so
        # the node and memcg list sizes drop once by nr_taken; zone and kind per page
        lru_where = m.lru_where
        flags = m.mem_map.flags
        zones = m.zones
        zone_of_block = m.zone_of_block
        kind_pages = lruvec.memcg.kind_pages
        zone_item = _NR_ZONE_LRU_BASE + lru
        popitem = lst.popitem
        append = dst.append
        n = min(nr_to_scan, len(lst))
        for _ in range(n):
            pfn = popitem(last=False)[0]
            kind = lru_where.pop(pfn)[2]
            flags[pfn] &= ~_LRU
            zones[zone_of_block[pfn >> PAGEBLOCK_ORDER]].vm_stat[zone_item] -= 1
            kind_pages[kind] -= 1
            append(pfn)
        nr_taken = n
        lruvec.pgdat.vm_stat[_NR_LRU_BASE + lru] -= n
        lruvec.memcg.lru_pages[lru] -= n
    _cost(m, nr_taken * SCAN_COST_NS)
    if _tp_isolate.enabled:
        _tp_isolate.fire(highest_zoneidx=sc.reclaim_idx, order=sc.order,
                         nr_requested=nr_to_scan, nr_scanned=nr_taken, nr_skipped=0,
                         nr_taken=nr_taken, lru=lru)
    return nr_taken, nr_taken


@kfunc(aliases=("page_referenced",))
def folio_referenced(folio: int, is_locked: int, memcg: Any) -> tuple[int, int]:
    """Test and clear the Accessed bit of every PTE mapping the page (ptep_clear_flush_young):
    returns (number of referencing PTEs, the union of the mapping VMAs' flags)."""
    m = current_machine()
    if m.mem_map._mapcount[folio] < 0:
        return 0, 0
    referenced = 0
    vm_flags = 0
    clock = m.clock
    for vma, addr in rmap_walk(folio):
        clock.ns += RMAP_COST_NS
        vf = vma.vm_flags
        if vf & VM_LOCKED:
            vm_flags |= VM_LOCKED
            break
        t = pte_table_lookup(vma.vm_mm, addr)
        i = addr >> 12 & 511
        pte = t[i]
        if pte & _PAGE_ACCESSED:
            t[i] = pte & ~_PAGE_ACCESSED
            tlb.flush_tlb_page(vma, addr)
            referenced += 1
        vm_flags |= vf
    return referenced, vm_flags


@kfunc(aliases=("page_check_references",))
def folio_check_references(folio: int, sc: ScanControl) -> int:
    m = current_machine()
    flags = m.mem_map.flags
    referenced_ptes, vm_flags = folio_referenced(folio, 1, sc.target_mem_cgroup)
    referenced_folio = bool(flags[folio] & _REFERENCED)
    flags[folio] &= ~_REFERENCED
    if vm_flags & VM_LOCKED:
        return FOLIOREF_ACTIVATE
    if referenced_ptes:
        flags[folio] |= _REFERENCED
        if referenced_folio or referenced_ptes > 1:
            return FOLIOREF_ACTIVATE
        if vm_flags & VM_EXEC and not flags[folio] & _SWAPBACKED:
            return FOLIOREF_ACTIVATE
        return FOLIOREF_KEEP
    if referenced_folio and not flags[folio] & _SWAPBACKED:
        return FOLIOREF_RECLAIM_CLEAN
    return FOLIOREF_RECLAIM


@kfunc
def try_to_unmap(folio: int, flags: int = 0) -> bool:
    """Unmap the page from every page table (try_to_unmap_one per mapping).

    Anonymous pages in the swap cache leave a swap entry in each PTE (MM_SWAPENTS); clean
    lazyfree pages are simply dropped; file pages leave an empty PTE.  A dirty PTE dirties
    the page.  Returns True when no mapping is left."""
    m = current_machine()
    mem_map = m.mem_map
    fl = mem_map.flags
    anon = isinstance(mem_map.mapping.get(folio), AnonVma)
    clock = m.clock
    add_mm_counter = memory.add_mm_counter
    for vma, addr in rmap_walk(folio):
        clock.ns += RMAP_COST_NS
        if vma.vm_flags & VM_LOCKED:
            return False
        t = pte_table_lookup(vma.vm_mm, addr)
        i = addr >> 12 & 511
        pte = t[i]
        mm = vma.vm_mm
        if anon:
            if not fl[folio] & _SWAPBACKED:  # MADV_FREE
                if pte & _PAGE_DIRTY or fl[folio] & _DIRTY or \
                        mem_map._refcount[folio] > mem_map._mapcount[folio] + 1:
                    fl[folio] |= _SWAPBACKED
                    return False
                t[i] = 0
                tlb.flush_tlb_page(vma, addr)
                add_mm_counter(mm, MM_ANONPAGES, -1)
            elif fl[folio] & _SWAPCACHE:
                entry = mem_map.private[folio]
                swp = swp_entry_to_pte(entry >> 58, entry & _SWP_OFFSET_MASK)
                if pte & _PAGE_SOFT_DIRTY:
                    swp |= _PAGE_SWP_SOFT_DIRTY
                if fl[folio] & _ANON_EXCLUSIVE:
                    swp |= _PAGE_SWP_EXCLUSIVE
                if pte & _PAGE_DIRTY:
                    fl[folio] |= _DIRTY
                swapfile.swap_duplicate_entry(m, entry)
                t[i] = swp
                tlb.flush_tlb_page(vma, addr)
                add_mm_counter(mm, MM_ANONPAGES, -1)
                add_mm_counter(mm, MM_SWAPENTS, 1)
            else:
                return False
        else:
            if pte & _PAGE_DIRTY:
                filemap.folio_mark_dirty(folio)
            t[i] = 0
            tlb.flush_tlb_page(vma, addr)
            add_mm_counter(mm, memory.mm_counter(m, folio), -1)
        folio_remove_rmap_pte(folio, folio, vma)
        mem_map._refcount[folio] -= 1
    return mem_map._mapcount[folio] < 0


# -- writing and freeing ---------------------------------------------------------------------------
PAGE_KEEP, PAGE_ACTIVATE, PAGE_SUCCESS, PAGE_CLEAN = range(4)


@kfunc
def pageout(folio: int, mapping: Any) -> int:
    """Write a dirty page: to swap for an anon swap-cache page, to its file otherwise."""
    m = _m()
    fl = m.mem_map.flags
    if not fl[folio] & _DIRTY:
        return PAGE_CLEAN
    fl[folio] &= ~_DIRTY
    if fl[folio] & _SWAPCACHE:
        if _tp_write.enabled:
            _tp_write.fire(pfn=folio, reclaim_flags=RECLAIM_WB_ANON | RECLAIM_WB_ASYNC)
        if page_io.swap_writeout(folio):
            fl[folio] |= _DIRTY
            return PAGE_ACTIVATE
    else:
        fl[folio] |= _DIRTY
        if _tp_write.enabled:
            _tp_write.fire(pfn=folio, reclaim_flags=RECLAIM_WB_FILE | RECLAIM_WB_ASYNC)
        page_writeback.writeout_file_folio(m, folio)
    m.vm.nodestat[folio >> 9][NS["nr_vmscan_write"]] += 1
    return PAGE_SUCCESS


@kfunc
def __remove_mapping(mapping: Any, folio: int, reclaimed: bool, target_memcg: Any) -> bool:
    """Drop an unmapped, clean page from the page cache or the swap cache, leaving a
    workingset shadow; the cache's reference was the last one, so the page is freed."""
    m = current_machine()
    mem_map = m.mem_map
    fl = mem_map.flags
    if mem_map._refcount[folio] != 1 or fl[folio] & _DIRTY:
        return False
    shadow = workingset.workingset_eviction(folio, target_memcg) if reclaimed else None
    if fl[folio] & _SWAPCACHE:
        swap_state.delete_from_swap_cache_shadow(folio, shadow)
        mem_map.mapping.pop(folio, None)
        mem_map.index.pop(folio, None)
        lru_mod.folio_release(folio)
        mem_map._refcount[folio] = 0
        page_alloc.free_frozen_pages(folio, 0)
        return True
    if isinstance(mapping, filemap.AddressSpace):
        index = mem_map.index.get(folio, 0)
        filemap.filemap_remove_folio(folio)
        if shadow is not None:
            if not hasattr(mapping, "shadows"):
                mapping.shadows = {}
            mapping.shadows[index] = shadow
        return True
    return False


def _free_anon_lazy(m: Any, folio: int) -> None:
    mem_map = m.mem_map
    mem_map.mapping.pop(folio, None)
    mem_map.index.pop(folio, None)
    lru_mod.folio_release(folio)
    mem_map._refcount[folio] = 0
    page_alloc.free_frozen_pages(folio, 0)


@kfunc(aliases=("shrink_page_list",))
def shrink_folio_list(folio_list: list[int], pgdat: Any, sc: ScanControl, stat: ReclaimStat,
                      ignore_references: bool) -> int:
    """Try to free each isolated page; the rest go back to the LRU (activated or kept)."""
    m = current_machine()
    mem_map = m.mem_map
    fl = mem_map.flags
    address_space = filemap.AddressSpace
    nr_reclaimed = 0
    for folio in folio_list:
        sc.nr_scanned += 1
        if fl[folio] & _MLOCKED:  # not folio_evictable
            m.vm_events[EV["unevictable_pgs_culled"]] += 1
            folio_putback_lru(m, folio)
            continue
        mapping = mem_map.mapping.get(folio)
        f = fl[folio]
        if f & _WRITEBACK:
            stat.nr_writeback += 1
            if f & _RECLAIM and sc.kswapd:
                stat.nr_immediate += 1
            fl[folio] |= _RECLAIM
            folio_putback_lru(m, folio)
            continue
        references = FOLIOREF_RECLAIM if ignore_references else folio_check_references(folio, sc)
        if references == FOLIOREF_ACTIVATE:
            _activate(m, folio, stat)
            continue
        if references == FOLIOREF_KEEP:
            stat.nr_ref_keep += 1
            folio_putback_lru(m, folio)
            continue
        is_file = isinstance(mapping, address_space)
        anon = not is_file and mapping is not None
        if is_file and mapping.host.shmem:
            # shmem swap-out is not modelled: the page stays resident
            _activate(m, folio, stat)
            continue
        if anon and fl[folio] & _SWAPBACKED and not fl[folio] & _SWAPCACHE:
            if not sc.may_swap or not swap_state.add_to_swap(folio):
                _activate(m, folio, stat)
                continue
        if mem_map._mapcount[folio] >= 0:
            if not sc.may_unmap or not try_to_unmap(folio):
                stat.nr_unmap_fail += 1
                if anon and not fl[folio] & _SWAPBACKED:
                    stat.nr_lazyfree_fail += 1
                _activate(m, folio, stat)
                continue
        if anon and not fl[folio] & _SWAPBACKED:
            # a clean MADV_FREE page: discard it (pglazyfreed)
            if mem_map._refcount[folio] == 1 and not fl[folio] & _DIRTY:
                _free_anon_lazy(m, folio)
                m.vm_events[EV["pglazyfreed"]] += 1
                nr_reclaimed += 1
                continue
            fl[folio] |= _SWAPBACKED
            _activate(m, folio, stat)
            continue
        if fl[folio] & _DIRTY:
            file = not fl[folio] & _SWAPBACKED
            if file:
                stat.nr_dirty += 1
                stat.nr_unqueued_dirty += 1
                if not sc.kswapd or not fl[folio] & _RECLAIM:
                    pgdat.vm_stat[NS["nr_vmscan_immediate_reclaim"]] += 1
                    fl[folio] |= _RECLAIM
                    _activate(m, folio, stat)
                    continue
            if references == FOLIOREF_RECLAIM_CLEAN or not sc.may_writepage:
                folio_putback_lru(m, folio)
                continue
            res = pageout(folio, mapping)
            if res == PAGE_ACTIVATE:
                _activate(m, folio, stat)
                continue
            if res == PAGE_SUCCESS:
                stat.nr_pageout += 1
                fl[folio] &= ~_RECLAIM
                if fl[folio] & (_DIRTY | _WRITEBACK):
                    folio_putback_lru(m, folio)
                    continue
        if __remove_mapping(mem_map.mapping.get(folio), folio, True, sc.target_mem_cgroup):
            nr_reclaimed += 1
            continue
        folio_putback_lru(m, folio)
    return nr_reclaimed


def _AS() -> type:
    return filemap.AddressSpace


def _activate(m: Any, folio: int, stat: ReclaimStat) -> None:
    """activate_locked: drop a stale swap copy when swap runs short, move to active."""
    fl = m.mem_map.flags
    if fl[folio] & _SWAPCACHE and (
            memcontrol.mem_cgroup_swap_full(m, lru_mod.folio_memcg(m, folio))
            or fl[folio] & _MLOCKED):
        swapfile.folio_free_swap(folio)
    f = fl[folio]
    if not f & (_MLOCKED | _ACTIVE):  # folio_evictable and not active
        fl[folio] = f | _ACTIVE
        stat.nr_activate[0 if f & _SWAPBACKED else 1] += 1
        m.vm_events[_EV_PGACTIVATE] += 1
        lru_mod.folio_memcg(m, folio).count_event("pgactivate", 1)
    folio_putback_lru(m, folio)


# -- the list scans -----------------------------------------------------------------------------
def _flags_for(lru: int) -> int:
    return RECLAIM_WB_FILE if is_file_lru(lru) else RECLAIM_WB_ANON


@kfunc
def shrink_active_list(nr_to_scan: int, lruvec: Any, sc: ScanControl, lru: int) -> None:
    """Deactivate pages from the active list; referenced executable file pages stay."""
    m = current_machine()
    fl = m.mem_map.flags
    hold: list[int] = []
    nr_taken, nr_scanned = isolate_lru_folios(nr_to_scan, lruvec, hold, sc, lru)
    m.vm_events[EV["pgrefill"]] += nr_scanned
    _count_memcg(lruvec, "pgrefill", nr_scanned)
    file = is_file_lru(lru)
    nr_rotated = nr_deactivate = nr_activate = 0
    target = sc.target_mem_cgroup
    for folio in hold:
        if fl[folio] & _MLOCKED:  # not folio_evictable
            folio_putback_lru(m, folio)
            continue
        referenced, vm_flags = folio_referenced(folio, 0, target)
        if referenced:
            nr_rotated += 1
            if vm_flags & VM_EXEC and file:
                folio_putback_lru(m, folio)
                nr_activate += 1
                workingset.workingset_age_nonresident(lruvec, 1)
                continue
        fl[folio] = (fl[folio] & ~_ACTIVE) | _WORKINGSET
        folio_putback_lru(m, folio)
        nr_deactivate += 1
    m.vm_events[EV["pgdeactivate"]] += nr_deactivate
    _count_memcg(lruvec, "pgdeactivate", nr_deactivate)
    if _tp_shrink_active.enabled:
        _tp_shrink_active.fire(nid=lruvec.pgdat.node_id, nr_taken=nr_taken,
                               nr_active=nr_activate, nr_deactivated=nr_deactivate,
                               nr_referenced=nr_rotated, priority=sc.priority,
                               reclaim_flags=_flags_for(lru))


@kfunc
def shrink_inactive_list(nr_to_scan: int, lruvec: Any, sc: ScanControl, lru: int) -> int:
    m = _m()
    folio_list: list[int] = []
    nr_taken, nr_scanned = isolate_lru_folios(nr_to_scan, lruvec, folio_list, sc, lru)
    if not nr_taken:
        return 0
    file = is_file_lru(lru)
    who = "kswapd" if sc.kswapd else ("proactive" if sc.proactive else "direct")
    m.vm_events[EV[f"pgscan_{who}"]] += nr_scanned
    m.vm_events[EV["pgscan_file" if file else "pgscan_anon"]] += nr_scanned
    _count_memcg(lruvec, f"pgscan_{who}", nr_scanned)
    stat = ReclaimStat()
    scanned_before = sc.nr_scanned
    nr_reclaimed = shrink_folio_list(folio_list, lruvec.pgdat, sc, stat, False)
    sc.nr_scanned = scanned_before + nr_scanned
    lru_note_cost(lruvec, file, stat.nr_pageout, nr_scanned - nr_reclaimed)
    m.vm_events[EV[f"pgsteal_{who}"]] += nr_reclaimed
    m.vm_events[EV["pgsteal_file" if file else "pgsteal_anon"]] += nr_reclaimed
    _count_memcg(lruvec, f"pgsteal_{who}", nr_reclaimed)
    sc.nr_dirty += stat.nr_dirty
    sc.nr_unqueued_dirty += stat.nr_unqueued_dirty
    if file:
        sc.nr_file_taken += nr_taken
    if stat.nr_unqueued_dirty and stat.nr_unqueued_dirty == nr_taken:
        page_writeback.wakeup_flusher_threads(m, "vmscan")
    if _tp_shrink_inactive.enabled:
        _tp_shrink_inactive.fire(
            nid=lruvec.pgdat.node_id, nr_scanned=nr_scanned, nr_reclaimed=nr_reclaimed,
            nr_dirty=stat.nr_dirty, nr_writeback=stat.nr_writeback,
            nr_congested=stat.nr_congested, nr_immediate=stat.nr_immediate,
            nr_activate0=stat.nr_activate[0], nr_activate1=stat.nr_activate[1],
            nr_ref_keep=stat.nr_ref_keep, nr_unmap_fail=stat.nr_unmap_fail,
            priority=sc.priority, reclaim_flags=_flags_for(lru))
    return nr_reclaimed


def inactive_is_low(lruvec: Any, inactive_lru: int) -> bool:
    inactive = len(lruvec.lists[inactive_lru])
    active = len(lruvec.lists[inactive_lru + 1])
    gb = (inactive + active) >> (30 - 12)
    ratio = isqrt(10 * gb) if gb else 1
    return inactive * ratio < active


@kfunc
def shrink_list(lru: int, nr_to_scan: int, lruvec: Any, sc: ScanControl) -> int:
    if is_active_lru(lru):
        if sc.may_deactivate & (DEACTIVATE_FILE if is_file_lru(lru) else DEACTIVATE_ANON):
            shrink_active_list(nr_to_scan, lruvec, sc, lru)
        else:
            sc.skipped_deactivate = True
        return 0
    return shrink_inactive_list(nr_to_scan, lruvec, sc, lru)


def _swappiness(m: Any, memcg: Any) -> int:
    if memcg is None or memcg.is_root():
        return m.sysctl["vm.swappiness"]
    return memcg.swappiness


@kfunc
def get_scan_count(lruvec: Any, sc: ScanControl) -> list[int]:
    """How many pages of each evictable list to scan at this priority (vm.swappiness)."""
    m = _m()
    memcg = lruvec.memcg
    swappiness = _swappiness(m, memcg)
    fraction = [0, 0]
    denominator = 0
    if not sc.may_swap or not can_reclaim_anon_pages(m, memcg) or (cgroup_reclaim(sc) and not swappiness):
        balance = SCAN_FILE
    elif not sc.priority and swappiness:
        balance = SCAN_EQUAL
    elif sc.file_is_tiny:
        balance = SCAN_ANON
    elif sc.cache_trim_mode:
        balance = SCAN_FILE
    else:
        balance = SCAN_FRACT
        total_cost = sc.anon_cost + sc.file_cost
        anon_cost = total_cost + sc.anon_cost
        file_cost = total_cost + sc.file_cost
        total_cost = anon_cost + file_cost
        ap = swappiness * (total_cost + 1) // (anon_cost + 1)
        fp = (MAX_SWAPPINESS - swappiness) * (total_cost + 1) // (file_cost + 1)
        fraction = [ap, fp]
        denominator = ap + fp
    nr = [0, 0, 0, 0]
    for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
        size = len(lruvec.lists[lru])
        file = is_file_lru(lru)
        scan = size
        prot = memcg.memory.elow if sc.memcg_low_reclaim else memcg.memory.emin
        if prot and not memcg.is_root():
            cgroup_size = max(memcg.memory.usage, prot)
            scan = size - size * prot // (cgroup_size + 1)
            scan = max(scan, SWAP_CLUSTER_MAX)
        scan >>= sc.priority
        if not scan and not memcg.online:
            scan = min(size, SWAP_CLUSTER_MAX)
        if balance == SCAN_FRACT:
            scan = -(-scan * fraction[int(file)] // denominator) if denominator else 0
        elif balance == SCAN_FILE:
            scan = scan if file else 0
        elif balance == SCAN_ANON:
            scan = 0 if file else scan
        nr[lru] = scan
    return nr


@kfunc
def shrink_lruvec(lruvec: Any, sc: ScanControl) -> None:
    m = _m()
    nr = get_scan_count(lruvec, sc)
    nr_to_reclaim = sc.nr_to_reclaim
    nr_reclaimed = 0
    while nr[LRU_INACTIVE_ANON] or nr[LRU_ACTIVE_FILE] or nr[LRU_INACTIVE_FILE]:
        for lru in (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE):
            if nr[lru]:
                n = min(nr[lru], SWAP_CLUSTER_MAX)
                nr[lru] -= n
                nr_reclaimed += shrink_list(lru, n, lruvec, sc)
        if nr_reclaimed >= nr_to_reclaim:
            break
    sc.nr_reclaimed += nr_reclaimed
    if can_reclaim_anon_pages(m, lruvec.memcg) and inactive_is_low(lruvec, LRU_INACTIVE_ANON):
        shrink_active_list(SWAP_CLUSTER_MAX, lruvec, sc, LRU_ACTIVE_ANON)


def _rescue_unevictable(m: Any, lruvec: Any) -> None:
    """munlock'ed pages go back to the evictable lists (check_move_unevictable_folios)."""
    lst = lruvec.lists[lru_mod.LRU_UNEVICTABLE]
    if not lst:
        return
    fl = m.mem_map.flags
    for pfn in [p for p in lst if not fl[p] & _MLOCKED]:
        lruvec_del_folio(m, pfn)
        fl[pfn] &= ~_UNEVICTABLE
        folio_putback_lru(m, pfn)
        m.vm_events[EV["unevictable_pgs_rescued"]] += 1


def _hier_events(m: Any, memcg: Any, name: str) -> int:
    if memcg.is_root():
        return sum(n.vm_stat[NS[name]] for n in m.node_data)
    return sum(c.vmev.get(name, 0) for c in memcg.subtree())


def prepare_scan_control(pgdat: Any, sc: ScanControl) -> None:
    m = _m()
    target = sc.target_mem_cgroup or m.memcg.root
    tl = target.lruvecs[pgdat.node_id]
    sc.anon_cost = tl.anon_cost
    sc.file_cost = tl.file_cost
    if sc.force_deactivate:
        sc.may_deactivate = DEACTIVATE_ANON | DEACTIVATE_FILE
    else:
        ra = _hier_events(m, target, "workingset_activate_anon")
        rf = _hier_events(m, target, "workingset_activate_file")
        agg = _aggregate_lists(m, target, pgdat.node_id)
        sc.may_deactivate = 0
        if ra != tl.refaults[0] or _low(agg, LRU_INACTIVE_ANON):
            sc.may_deactivate |= DEACTIVATE_ANON
        if rf != tl.refaults[1] or _low(agg, LRU_INACTIVE_FILE):
            sc.may_deactivate |= DEACTIVATE_FILE
    agg = _aggregate_lists(m, target, pgdat.node_id)
    sc.cache_trim_mode = bool(agg[LRU_INACTIVE_FILE] >> sc.priority) and \
        not sc.may_deactivate & DEACTIVATE_FILE
    sc.file_is_tiny = False
    if not cgroup_reclaim(sc):
        free = sum(z.nr_free_pages for z in pgdat.node_zones)
        file = pgdat.vm_stat[NS["nr_active_file"]] + pgdat.vm_stat[NS["nr_inactive_file"]]
        high = sum(z.high_wmark_pages() for z in pgdat.node_zones)
        anon = pgdat.vm_stat[NS["nr_inactive_anon"]]
        sc.file_is_tiny = file + free <= high and not sc.may_deactivate & DEACTIVATE_ANON \
            and bool(anon >> sc.priority)


def _aggregate_lists(m: Any, memcg: Any, nid: int) -> list[int]:
    if memcg.is_root():
        st = m.node_data[nid].vm_stat
        return [st[NS["nr_inactive_anon"] + i] for i in range(5)]
    out = [0] * 5
    for c in memcg.subtree():
        for i, lst in enumerate(c.lruvecs[nid].lists):
            out[i] += len(lst)
    return out


def _low(agg: list[int], inactive_lru: int) -> bool:
    inactive, active = agg[inactive_lru], agg[inactive_lru + 1]
    gb = (inactive + active) >> 18
    ratio = isqrt(10 * gb) if gb else 1
    return inactive * ratio < active


def snapshot_refaults(m: Any, target: Any, pgdat: Any) -> None:
    tl = target.lruvecs[pgdat.node_id]
    tl.refaults[0] = _hier_events(m, target, "workingset_activate_anon")
    tl.refaults[1] = _hier_events(m, target, "workingset_activate_file")


@kfunc
def shrink_node_memcgs(pgdat: Any, sc: ScanControl) -> None:
    from mmdbg.sim.mm.memcontrol import (
        mem_cgroup_below_low,
        mem_cgroup_below_min,
        mem_cgroup_calculate_protection,
        memcg_memory_event,
    )

    m = _m()
    target = sc.target_mem_cgroup or m.memcg.root
    for memcg in target.subtree():
        mem_cgroup_calculate_protection(target, memcg)
        if mem_cgroup_below_min(target, memcg):
            continue
        if mem_cgroup_below_low(target, memcg):
            if not sc.memcg_low_reclaim:
                sc.memcg_low_skipped = True
                continue
            memcg_memory_event(memcg, "low")
        lruvec = memcg.lruvecs[pgdat.node_id]
        _rescue_unevictable(m, lruvec)
        shrink_lruvec(lruvec, sc)
        if sc.nr_reclaimed >= sc.nr_to_reclaim and not sc.kswapd and cgroup_reclaim(sc):
            break


@kfunc
def shrink_node(pgdat: Any, sc: ScanControl) -> None:
    m = _m()
    nr_reclaimed = sc.nr_reclaimed
    prepare_scan_control(pgdat, sc)
    shrink_node_memcgs(pgdat, sc)
    if not cgroup_reclaim(sc):
        freed = shrink_slab_node(m, sc.gfp_mask, pgdat.node_id, sc.priority)
        if freed:
            pass
    if sc.nr_reclaimed - nr_reclaimed:
        pgdat.kswapd_failures = 0


def shrink_slab_node(m: Any, gfp: int, nid: int, priority: int) -> int:
    """Run the slab shrinkers of the SLUB registry (mm/shrinker.c shrink_slab)."""
    slub = getattr(m, "slub", None)
    if slub is None or not getattr(slub, "shrinkers", None):
        return 0
    from mmdbg.sim.mm import slab_common

    return slab_common.shrink_slab(gfp, nid, None, priority)


# -- direct and memcg reclaim ---------------------------------------------------------------------
@kfunc
def do_try_to_free_pages(zonelist: list[Any], sc: ScanControl) -> int:
    m = _m()
    initial_priority = sc.priority
    target = sc.target_mem_cgroup or m.memcg.root
    while True:
        nodes = []
        for z in zonelist:
            if z.zone_idx <= sc.reclaim_idx and z.managed_pages and z.zone_pgdat not in nodes:
                nodes.append(z.zone_pgdat)
        while sc.priority >= 0:
            sc.nr_scanned = 0
            for pgdat in nodes:
                shrink_node(pgdat, sc)
            if sc.nr_reclaimed >= sc.nr_to_reclaim:
                break
            sc.priority -= 1
        for pgdat in nodes:
            snapshot_refaults(m, target, pgdat)
        if sc.nr_reclaimed:
            return sc.nr_reclaimed
        if sc.skipped_deactivate and not sc.force_deactivate:
            sc.priority = initial_priority
            sc.force_deactivate = True
            sc.skipped_deactivate = False
            continue
        if sc.memcg_low_skipped and not sc.memcg_low_reclaim:
            sc.priority = initial_priority
            sc.memcg_low_reclaim = True
            sc.memcg_low_skipped = False
            continue
        return 0


@kfunc
def try_to_free_pages(zonelist: list[Any], order: int, gfp_mask: int, nodemask: Any) -> int:
    """Direct reclaim from the allocator slow path (the machine.hooks entry)."""
    from mmdbg.sim.include.gfp import gfp_zone

    m = _m()
    t = m.current
    if t is not None and t.flags & PF_MEMALLOC:
        return 0
    reclaim_idx = gfp_zone(gfp_mask)
    sc = ScanControl(gfp_mask, order, DEF_PRIORITY, SWAP_CLUSTER_MAX, None, reclaim_idx,
                     may_swap=True)
    sc.may_writepage = True
    sc.may_swap = bool(gfp_mask & __GFP_IO) or True
    if _tp_direct_begin.enabled:
        _tp_direct_begin.fire(order=order, gfp_flags=gfp_mask)
    m.vm_events[vmstat.ALLOCSTALL + reclaim_idx] += 1
    if t is not None:
        t.flags |= PF_MEMALLOC
    try:
        nr = do_try_to_free_pages(zonelist, sc)
    finally:
        if t is not None:
            t.flags &= ~PF_MEMALLOC
    if _tp_direct_end.enabled:
        _tp_direct_end.fire(nr_reclaimed=nr)
    return nr


@kfunc
def try_to_free_mem_cgroup_pages(memcg: Any, nr_pages: int, gfp_mask: int,
                                 may_swap: bool) -> int:
    m = _m()
    t = m.current
    if t is not None and t.flags & PF_MEMALLOC:
        return 0
    sc = ScanControl(gfp_mask, 0, DEF_PRIORITY, max(nr_pages, SWAP_CLUSTER_MAX), memcg, 4,
                     may_swap=may_swap)
    if _tp_memcg_begin.enabled:
        _tp_memcg_begin.fire(order=0, gfp_flags=gfp_mask)
    zonelist = m.node_data[m.numa_node_id()].node_zonelists[0] or m.populated_zones()
    if t is not None:
        t.flags |= PF_MEMALLOC
    try:
        nr = do_try_to_free_pages(zonelist, sc)
    finally:
        if t is not None:
            t.flags &= ~PF_MEMALLOC
    if _tp_memcg_end.enabled:
        _tp_memcg_end.fire(nr_reclaimed=nr)
    return nr


def zone_reclaimable_pages(zone: Any) -> int:
    m = zone.machine
    st = zone.vm_stat
    base = vmstat.ZS["nr_zone_inactive_anon"]
    nr = st[base + LRU_INACTIVE_FILE] + st[base + LRU_ACTIVE_FILE]
    if can_reclaim_anon_pages(m):
        nr += st[base + LRU_INACTIVE_ANON] + st[base + LRU_ACTIVE_ANON]
    return nr


@kfunc
def reclaim_pages(folio_list: list[int]) -> int:
    """MADV_PAGEOUT: reclaim these pages now, ignoring their references."""
    m = _m()
    by_node: dict[int, list[int]] = {}
    for pfn in folio_list:
        if pfn in m.lru_where:
            lruvec_del_folio(m, pfn)
            by_node.setdefault(m.pfn_zone(pfn).node, []).append(pfn)
    total = 0
    for nid, lst in sorted(by_node.items()):
        sc = ScanControl(GFP_KERNEL, 0, DEF_PRIORITY, SWAP_CLUSTER_MAX)
        stat = ReclaimStat()
        n = shrink_folio_list(lst, m.node_data[nid], sc, stat, True)
        total += n
        if _tp_reclaim_pages.enabled:
            _tp_reclaim_pages.fire(nid=nid, nr_scanned=len(lst), nr_reclaimed=n,
                                   nr_dirty=stat.nr_dirty, nr_writeback=stat.nr_writeback,
                                   nr_congested=0, nr_immediate=stat.nr_immediate,
                                   nr_activate0=stat.nr_activate[0],
                                   nr_activate1=stat.nr_activate[1],
                                   nr_ref_keep=stat.nr_ref_keep,
                                   nr_unmap_fail=stat.nr_unmap_fail)
    return total


def madvise_cold_or_pageout(vma: Any, start: int, end: int, pageout: bool) -> None:
    """MADV_COLD deactivates the range's private pages, MADV_PAGEOUT reclaims them."""
    from mmdbg.sim.arch.x86.pgtable import pte_table_lookup

    m = _m()
    pages = []
    for a in range(start, end, 4096):
        t = pte_table_lookup(vma.vm_mm, a)
        if t is None:
            continue
        pte = t[a >> 12 & 511]
        if not pte & 1 or pte & 0x200:
            continue
        pfn = (pte >> 12) & 0xFFFFFFFFFF
        if m.mem_map._mapcount[pfn] != 0:
            continue
        pages.append(pfn)
    if pageout:
        for pfn in pages:
            m.mem_map.flags[pfn] &= ~_REFERENCED
        reclaim_pages(pages)
    else:
        for pfn in pages:
            lru_mod.folio_deactivate(pfn)


# -- kswapd ----------------------------------------------------------------------------------------
def pgdat_balanced(pgdat: Any, order: int, highest_zoneidx: int) -> bool:
    from mmdbg.sim.mm.page_alloc import zone_watermark_ok

    mark_ok = None
    for z in pgdat.node_zones[:highest_zoneidx + 1]:
        if not z.managed_pages:
            continue
        if zone_watermark_ok(z, order, z.high_wmark_pages(), highest_zoneidx, 0):
            return True
        mark_ok = False
    return mark_ok is None


@kfunc
def wakeup_kswapd(zone: Any, gfp_flags: int, order: int, highest_zoneidx: int) -> None:
    """An allocation fell below the low watermark: wake the node's kswapd."""
    m = zone.machine
    pgdat = zone.zone_pgdat
    if not zone.managed_pages:
        return
    if pgdat.kswapd_order < order:
        pgdat.kswapd_order = order
    if not getattr(pgdat, "kswapd_pending", False) or \
            pgdat.kswapd_highest_zoneidx < highest_zoneidx:
        pgdat.kswapd_highest_zoneidx = max(pgdat.kswapd_highest_zoneidx, highest_zoneidx)
    if pgdat.kswapd_failures >= MAX_RECLAIM_RETRIES or \
            pgdat_balanced(pgdat, order, highest_zoneidx):
        return
    if _tp_wakeup_kswapd.enabled:
        _tp_wakeup_kswapd.fire(nid=pgdat.node_id, zid=zone.zone_idx, order=order,
                               gfp_flags=gfp_flags)
    pgdat.kswapd_pending = True
    kswapd_run(m, pgdat)
    pgdat.kswapd_wait.wake_up(m)


def kswapd_run(m: Any, pgdat: Any) -> None:
    """Create kswapdN on first use (see the module docstring)."""
    if pgdat.kswapd is not None:
        return
    from mmdbg.sim.kernel.fork import kthread_create
    from mmdbg.sim.kernel.sched_core import WaitQueue

    pgdat.kswapd_wait = WaitQueue(f"kswapd{pgdat.node_id}")
    t = kthread_create(lambda mm: kswapd(mm, pgdat), f"kswapd{pgdat.node_id}")
    t.flags |= 0x00020000  # PF_KSWAPD
    t.state = 1
    pgdat.kswapd = t
    t.se.wait = None
    pgdat.kswapd_wait.waiters.append(t)


def kswapd(m: Any, pgdat: Any) -> Any:
    """The kswapd thread: sleep until woken, balance the node, go back to sleep."""
    from mmdbg.sim.kernel.sched_core import Block

    while True:
        if not getattr(pgdat, "kswapd_pending", False):
            if _tp_kswapd_sleep.enabled:
                _tp_kswapd_sleep.fire(nid=pgdat.node_id)
            yield Block(pgdat.kswapd_wait)
            continue
        pgdat.kswapd_pending = False
        order = pgdat.kswapd_order
        highest = pgdat.kswapd_highest_zoneidx
        pgdat.kswapd_order = 0
        pgdat.kswapd_highest_zoneidx = 0
        if _tp_kswapd_wake.enabled:
            _tp_kswapd_wake.fire(nid=pgdat.node_id, zid=highest, order=order)
        t = m.current
        t.flags |= PF_MEMALLOC
        try:
            yield from balance_pgdat(pgdat, order, highest)
        finally:
            t.flags &= ~PF_MEMALLOC


def balance_pgdat(pgdat: Any, order: int, highest_zoneidx: int) -> Any:
    """Reclaim until the node meets its high watermark (a generator: yields between
    passes so the machine keeps running while kswapd works)."""
    m = current_machine()
    m.vm_events[EV["pageoutrun"]] += 1
    sc = ScanControl(GFP_KERNEL, order, DEF_PRIORITY, SWAP_CLUSTER_MAX, None, highest_zoneidx,
                     kswapd=True)
    total = 0
    while sc.priority >= 1:
        if pgdat_balanced(pgdat, order, highest_zoneidx):
            break
        raise_priority = True
        sc.nr_scanned = 0
        sc.nr_reclaimed = 0
        if can_reclaim_anon_pages(m):
            for memcg in m.memcg.root.subtree():
                lv = memcg.lruvecs[pgdat.node_id]
                if inactive_is_low(lv, LRU_INACTIVE_ANON):
                    shrink_active_list(SWAP_CLUSTER_MAX, lv, sc, LRU_ACTIVE_ANON)
        sc.nr_to_reclaim = sum(max(z.high_wmark_pages(), SWAP_CLUSTER_MAX)
                               for z in pgdat.node_zones[:highest_zoneidx + 1]
                               if z.managed_pages)
        _kswapd_shrink_node(pgdat, sc)
        if sc.nr_scanned >= sc.nr_to_reclaim:
            raise_priority = False
        total += sc.nr_reclaimed
        if raise_priority or not sc.nr_reclaimed:
            sc.priority -= 1
        if m.current is not None and m.current is pgdat.kswapd:
            yield
    snapshot_refaults(m, m.memcg.root, pgdat)
    if not total and not pgdat_balanced(pgdat, order, highest_zoneidx):
        pgdat.kswapd_failures += 1
    return total


def _kswapd_shrink_node(pgdat: Any, sc: ScanControl) -> None:
    shrink_node(pgdat, sc)


def kswapd_tasks(m: Any) -> list[Any]:
    return [p.kswapd for p in m.node_data if p.kswapd is not None]


_ = (__GFP_DIRECT_RECLAIM, cgroup_reclaim)


# -- boot: install the hooks ---------------------------------------------------------------------
def _h_wakeup_kswapd(zone: Any, gfp: int, order: int, highest_zoneidx: int) -> None:
    wakeup_kswapd(zone, gfp, order, highest_zoneidx)


def _h_try_to_free_pages(zonelist: Any, order: int, gfp: int, nodemask: Any) -> int:
    return try_to_free_pages(zonelist, order, gfp, nodemask)


def _h_out_of_memory(gfp: int, order: int, ac: Any) -> bool:
    from mmdbg.sim.mm import oom_kill

    return oom_kill.alloc_out_of_memory(gfp, order, ac)


def _h_charge(folio: int, mm: Any, gfp: int) -> bool:
    return memcontrol.mem_cgroup_charge(folio, mm, gfp) == 0


def _h_add_lru_vma(folio: int, vma: Any) -> None:
    lru_mod.folio_add_lru_vma(folio, vma)


def _h_do_swap_page(vmf: Any) -> int:
    return swap_state.do_swap_page(vmf)


def _h_free_swap(pte: int) -> None:
    swapfile.free_swap_and_cache(pte)


def _h_swap_dup(pte: int) -> None:
    swapfile.swap_duplicate(pte)


def _h_bdp(mapping: Any) -> None:
    page_writeback.balance_dirty_pages_ratelimited(mapping)


def _h_lazyfree(folio: int) -> None:
    lru_mod.folio_mark_lazyfree(folio)


def _h_cold(vma: Any, start: int, end: int, pageout: bool) -> None:
    madvise_cold_or_pageout(vma, start, end, pageout)


def _h_filemap_add(folio: int, mapping: Any, index: int) -> None:
    """A page entered the page cache: charge it, check its shadow, put it on the LRU."""
    m = current_machine()
    if folio not in m.mem_map.memcg_data:
        memcg = memcontrol.get_mem_cgroup_from_mm(m, None)
        if memcontrol.try_charge_memcg(memcg, mapping.gfp_mask, 1):
            memcontrol.page_counter_charge([c.memory for c in memcg.ancestors()], 1)
        m.mem_map.memcg_data[folio] = memcg
    shadows = getattr(mapping, "shadows", None)
    if shadows:
        shadow = shadows.pop(index, None)
        if shadow is not None:
            workingset.workingset_refault(folio, shadow)
    lru_mod.folio_add_lru(folio)


def _h_free_swap_cache(folio: int) -> None:
    swapfile.free_swap_cache(folio)


def _h_mark_accessed(folio: int) -> None:
    lru_mod.folio_mark_accessed(folio)


def pressure_init(m: Any) -> None:
    """Memory-pressure subsystems at boot: memcg root, LRU, swap, OOM, and their hooks."""
    from mmdbg.sim.kernel.sched_core import WaitQueue
    from mmdbg.sim.mm import debug_vm_pressure  # noqa: F401 -- registers the checks
    from mmdbg.sim.mm.memcontrol import mem_cgroup_init
    from mmdbg.sim.mm.oom_kill import oom_init
    from mmdbg.sim.mm.swapfile import swap_init, swapon_default

    m.lru_where = {}
    mem_cgroup_init(m)
    swap_init(m)
    oom_init(m)
    for pgdat in m.node_data:
        pgdat.kswapd_wait = WaitQueue(f"kswapd{pgdat.node_id}")
        pgdat.kswapd_pending = False
    h = m.hooks
    h.wakeup_kswapd = _h_wakeup_kswapd
    h.try_to_free_pages = _h_try_to_free_pages
    h.zone_reclaimable_pages = zone_reclaimable_pages
    h.out_of_memory = _h_out_of_memory
    vh = m.vm.hooks
    vh.mem_cgroup_charge = _h_charge
    vh.folio_add_lru_vma = _h_add_lru_vma
    vh.folio_release = lru_mod.folio_release
    vh.do_swap_page = _h_do_swap_page
    vh.free_swap_and_cache = _h_free_swap
    vh.swap_duplicate = _h_swap_dup
    vh.balance_dirty_pages_ratelimited = _h_bdp
    vh.lazyfree_folio = _h_lazyfree
    vh.madvise_cold_or_pageout = _h_cold
    vh.filemap_add_folio = _h_filemap_add
    vh.free_swap_cache = _h_free_swap_cache
    vh.folio_mark_accessed = _h_mark_accessed
    swapon_default(m)
