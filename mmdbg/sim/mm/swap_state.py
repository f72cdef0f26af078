"""The swap cache and swap-in (mm/swap_state.c, the do_swap_page of mm/memory.c).

The swap cache maps a swap entry to the page holding its contents (``machine.swap.cache``),
like a page cache for anonymous memory.  A page in it has ``PG_swapcache``, its entry in
``page->private`` and one reference held by the cache; it counts in ``nr_swapcached``
(SwapCached) and, as in the kernel, in ``nr_file_pages``.

Swap-out (from reclaim): ``add_to_swap`` allocates a slot and inserts the page; reclaim then
unmaps it (swap PTEs), writes it (page_io.swap_writeout) and finally deletes it from the cache
leaving a workingset shadow in the slot.

Swap-in: ``do_swap_page`` finds the page in the swap cache or reads it with
``swapin_readahead`` -- the cluster readahead of ``2**vm.page-cluster`` slots around the
faulting one (``swap_cluster_readahead``; no readahead on synchronous devices such as zram),
each read through ``__read_swap_cache_async`` (allocate, charge the memcg that owned the
slot, insert, workingset refault check, LRU, ``swap_read_folio``).  The PTE's reference to the
slot is dropped (``swap_free``) and the swap copy itself is freed when swap is getting full,
the page is mlocked, or a write fault leaves the page exclusive (``should_try_to_free_swap``).

Simplifications: cluster (physical) readahead only, not the VMA-based ``swap_vma_readahead``;
no THP swap-in.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.arch.x86.pgtable import (
    _PAGE_DIRTY,
    _PAGE_RW,
    _PAGE_SOFT_DIRTY,
    _PAGE_SWP_EXCLUSIVE,
    _PAGE_SWP_SOFT_DIRTY,
    pte_swp_offset,
    pte_swp_type,
)
from mmdbg.sim.include.gfp import GFP_HIGHUSER_MOVABLE
from mmdbg.sim.include.mm import FAULT_FLAG_WRITE, VM_FAULT_MAJOR, VM_FAULT_OOM, VM_FAULT_SIGBUS
from mmdbg.sim.mm import memcontrol, memory, page_alloc, page_io, swapfile, vmstat, workingset
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import swap as lru_mod
from mmdbg.sim.mm.rmap import AnonVma, folio_add_anon_rmap_pte, folio_add_new_anon_rmap
from mmdbg.sim.mm.swapfile import (
    SWAP_HAS_CACHE,
    SWP_SYNCHRONOUS_IO,
    get_swap_page_of_type,
    put_swap_folio,
    swap_info,
    swp_entry,
    swp_offset,
)
from mmdbg.sim.mm.vma import MM_ANONPAGES, MM_SWAPENTS, VM_LOCKED, VM_WRITE
from mmdbg.sim.trace import current_machine, kfunc

_NR_SWAPCACHED = vmstat.NS["nr_swapcached"]
_NR_FILE_PAGES = vmstat.NS["nr_file_pages"]
_SWAPCACHE = 1 << pf.PG_swapcache
_SWAPBACKED = 1 << pf.PG_swapbacked
_UPTODATE = 1 << pf.PG_uptodate
_DIRTY = 1 << pf.PG_dirty
_READAHEAD = 1 << pf.PG_readahead
_MLOCKED = 1 << pf.PG_mlocked
_EXCL = 1 << pf.PG_anon_exclusive


def _nodestat(m: Any, pfn: int) -> list[int]:
    return m.vm.nodestat[pfn >> 9]


@kfunc(aliases=("swap_cache_add_folio",))
def add_to_swap_cache(folio: int, entry: int) -> None:
    m = current_machine()
    mem_map = m.mem_map
    m.swap.cache[entry] = folio
    mem_map.flags[folio] |= _SWAPCACHE | _SWAPBACKED
    mem_map.private[folio] = entry
    mem_map._refcount[folio] += 1
    st = _nodestat(m, folio)
    st[_NR_SWAPCACHED] += 1
    st[_NR_FILE_PAGES] += 1


@kfunc
def add_to_swap(folio: int) -> bool:
    """Give an anonymous page a swap slot and put it in the swap cache (it becomes dirty:
    its contents are not on swap yet)."""
    m = current_machine()
    entry = get_swap_page_of_type(folio)
    if entry is None:
        return False
    add_to_swap_cache(folio, entry)
    m.mem_map.flags[folio] |= _DIRTY
    return True


def __delete_from_swap_cache(folio: int, entry: int, shadow: Any) -> None:
    m = current_machine()
    mem_map = m.mem_map
    del m.swap.cache[entry]
    mem_map.flags[folio] &= ~(_SWAPCACHE | _READAHEAD)
    mem_map.private.pop(folio, None)
    st = _nodestat(m, folio)
    st[_NR_SWAPCACHED] -= 1
    st[_NR_FILE_PAGES] -= 1
    if shadow is not None:
        si = swap_info(m, entry)
        si.shadows[swp_offset(entry)] = shadow


def delete_from_swap_cache_shadow(folio: int, shadow: Any) -> None:
    """Reclaim's __remove_mapping for a swap-cache page: leave the shadow, release the slot's
    cache reference (the caller drops the page reference)."""
    m = current_machine()
    entry = m.mem_map.private[folio]
    __delete_from_swap_cache(folio, entry, shadow)
    put_swap_folio(folio, entry)


@kfunc
def delete_from_swap_cache(folio: int) -> None:
    """Take a page out of the swap cache (the caller drops the cache's page reference)."""
    delete_from_swap_cache_shadow(folio, None)


@kfunc(aliases=("lookup_swap_cache",))
def swap_cache_get_folio(entry: int) -> int | None:
    return current_machine().swap.cache.get(entry)


@kfunc(aliases=("read_swap_cache_async",))
def __read_swap_cache_async(entry: int, gfp_mask: int, mm: Any) -> tuple[int | None, bool]:
    """The page for ``entry`` in the swap cache, reading it in if needed: (pfn, allocated).
    A new page carries one extra reference for the caller."""
    m = current_machine()
    pfn = m.swap.cache.get(entry)
    if pfn is not None:
        return pfn, False
    si = swap_info(m, entry)
    off = swp_offset(entry)
    if si is None or off >= si.max or not si.count(off):
        return None, False
    pfn = page_alloc.alloc_pages(gfp_mask, 0)
    if pfn is None:
        return None, False
    if memcontrol.mem_cgroup_swapin_charge_folio(pfn, mm, gfp_mask, entry):
        page_alloc.__free_pages(pfn, 0)
        return None, False
    if m.swap.cache.get(entry) is not None:  # reclaim inside the allocation raced us
        memcontrol.mem_cgroup_uncharge(pfn)
        page_alloc.__free_pages(pfn, 0)
        return m.swap.cache[entry], False
    si.swap_map[off] |= SWAP_HAS_CACHE  # swapcache_prepare
    add_to_swap_cache(pfn, entry)
    shadow = si.shadows.pop(off, None)
    if shadow is not None:
        workingset.workingset_refault(pfn, shadow)
    lru_mod.folio_add_lru(pfn)
    page_io.swap_read_folio(pfn, entry)
    m.mem_map.flags[pfn] |= _UPTODATE
    return pfn, True


@kfunc
def swap_cluster_readahead(entry: int, gfp_mask: int, mm: Any) -> int | None:
    """Read the faulting slot and its ``2**page-cluster`` aligned neighbours; returns the
    faulting page with a reference for the caller."""
    m = current_machine()
    si = swap_info(m, entry)
    off = swp_offset(entry)
    win = 1 << m.sysctl["vm.page-cluster"]
    if si.flags & SWP_SYNCHRONOUS_IO or win <= 1:
        return __read_swap_cache_async(entry, gfp_mask, mm)[0]
    start = off & ~(win - 1)
    end = min(start + win, si.max)
    target = None
    for o in range(max(start, 1), end):
        e = swp_entry(si.type, o)
        if o != off and (not si.count(o) or e in m.swap.cache):
            continue
        pfn, allocated = __read_swap_cache_async(e, gfp_mask, mm)
        if pfn is None:
            if o == off:
                return None
            continue
        if o == off:
            target = pfn
        elif allocated:
            m.mem_map.flags[pfn] |= _READAHEAD
            m.mem_map._refcount[pfn] -= 1  # only the swap cache keeps it
            m.vm_events[vmstat.EV["swap_ra"]] += 1
            si.swap_ra += 1
    if target is None:
        target, _ = __read_swap_cache_async(entry, gfp_mask, mm)
    return target


def swapin_readahead(entry: int, gfp_mask: int, vmf: Any) -> int | None:
    return swap_cluster_readahead(entry, gfp_mask, vmf.vma.vm_mm)


def should_try_to_free_swap(m: Any, folio: int, vma: Any, fault_flags: int) -> bool:
    fl = m.mem_map.flags
    if not fl[folio] & _SWAPCACHE:
        return False
    if memcontrol.mem_cgroup_swap_full(m, lru_mod.folio_memcg(m, folio)) or vma.vm_flags & VM_LOCKED or \
            fl[folio] & _MLOCKED:
        return True
    return bool(fault_flags & FAULT_FLAG_WRITE) and m.mem_map._refcount[folio] == 2


@kfunc
def do_swap_page(vmf: Any) -> int:
    """A fault on a swap PTE: get the page back (swap cache or read), map it, drop the slot
    reference (the vm.hooks.do_swap_page entry)."""
    m = current_machine()
    vma = vmf.vma
    orig = vmf.orig_pte
    entry = swp_entry(pte_swp_type(orig), pte_swp_offset(orig))
    si = swap_info(m, entry)
    if si is None or swp_offset(entry) >= si.max:
        m.printk(f"do_swap_page: bad swap entry {orig:#x}", level=3)
        return VM_FAULT_SIGBUS
    mem_map = m.mem_map
    ret = 0
    folio = m.swap.cache.get(entry)
    if folio is not None:
        mem_map._refcount[folio] += 1
        if mem_map.flags[folio] & _READAHEAD:
            mem_map.flags[folio] &= ~_READAHEAD
            m.vm_events[vmstat.EV["swap_ra_hit"]] += 1
    else:
        folio = swapin_readahead(entry, GFP_HIGHUSER_MOVABLE, vmf)
        if folio is None:
            if vmf.pte[vmf.pte_idx] != orig:
                return 0
            return VM_FAULT_OOM
        ret = VM_FAULT_MAJOR
        m.vm_events[vmstat.PGMAJFAULT] += 1
        lru_mod.folio_memcg(m, folio).count_event("pgmajfault", 1)
    if vmf.pte[vmf.pte_idx] != orig:  # the PTE changed while we slept
        from mmdbg.sim.mm.filemap import folio_put

        folio_put(m, folio)
        return ret
    exclusive = bool(orig & _PAGE_SWP_EXCLUSIVE)
    swapfile.swap_free(entry)
    if should_try_to_free_swap(m, folio, vma, vmf.flags):
        swapfile.folio_free_swap(folio)
    mm = vma.vm_mm
    memory.add_mm_counter(mm, MM_ANONPAGES, 1)
    memory.add_mm_counter(mm, MM_SWAPENTS, -1)
    pte = (folio << 12) | vma.vm_page_prot
    write = bool(vmf.flags & FAULT_FLAG_WRITE)
    if write and exclusive:
        pte |= _PAGE_DIRTY | _PAGE_SOFT_DIRTY
        if vma.vm_flags & VM_WRITE:
            pte |= _PAGE_RW
        vmf.flags &= ~FAULT_FLAG_WRITE
        mem_map.flags[folio] |= _DIRTY if not mem_map.flags[folio] & _SWAPCACHE else 0
    if orig & _PAGE_SWP_SOFT_DIRTY:
        pte |= _PAGE_SOFT_DIRTY
    if isinstance(mem_map.mapping.get(folio), AnonVma) and mem_map._mapcount[folio] >= -1:
        mem_map.index[folio] = vmf.pgoff
        if mem_map._mapcount[folio] == -1 and mem_map.mapping[folio] is not vma.anon_vma \
                and vma.anon_vma is not None and \
                mem_map.mapping[folio] not in vma.anon_vma_chain:
            mem_map.mapping[folio] = vma.anon_vma
        folio_add_anon_rmap_pte(folio, folio, vma, vmf.address, 1 if exclusive else 0)
    else:
        from mmdbg.sim.mm.rmap import anon_vma_prepare

        if vma.anon_vma is None:
            anon_vma_prepare(vma)
        mem_map.flags[folio] &= ~_EXCL
        folio_add_new_anon_rmap(folio, vma, vmf.address, 1 if exclusive else 0)
    if vma.vm_flags & 0x2000:  # VM_LOCKED
        memory.mlock_new_folio(m, folio)
    vmf.pte[vmf.pte_idx] = pte
    if vmf.flags & FAULT_FLAG_WRITE:
        vmf.orig_pte = pte
        ret |= memory.do_wp_page(vmf)
    return ret


def unuse_pte(vma: Any, addr: int, table: Any, idx: int, entry: int) -> int:
    """swapoff: fault one swap PTE back in (as a read fault); 0 or -ENOMEM."""
    from mmdbg.sim.include.mm import VmFault

    vmf = VmFault(vma, addr, 0)
    vmf.pte = table
    vmf.orig_pte = table[idx]
    ret = do_swap_page(vmf)
    return -12 if ret & (VM_FAULT_OOM | VM_FAULT_SIGBUS) else 0


_ = (_UPTODATE,)
