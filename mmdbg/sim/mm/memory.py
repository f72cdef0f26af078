"""The generic fault handler, unmapping and fork's page-table copy (mm/memory.c).

Fault path (reference/kernel-functions.md §3)::

    handle_mm_fault -> __handle_mm_fault -> handle_pte_fault
        -> do_pte_missing -> do_anonymous_page              (zero page on a read fault)
                          -> do_fault -> do_read_fault      (do_fault_around -> ->map_pages)
                                      -> do_cow_fault       (private file write)
                                      -> do_shared_fault    (shared file write, page_mkwrite)
        -> do_swap_page                                     (hook for the swap issue)
        -> do_wp_page -> wp_page_reuse | wp_page_copy       (CoW)

Unmapping: ``unmap_vmas -> unmap_page_range -> zap_pte_range`` under an ``mmu_gather``
(:class:`MmuGather`), which batches the TLB flush and frees the pages afterwards
(``tlb_finish_mmu``), then ``free_pgtables -> free_pgd_range`` with the kernel's floor/ceiling
rules.  fork: ``copy_page_range -> copy_pte_range -> copy_present_pte`` write-protects both
sides of a private writable mapping (CoW) and duplicates the rmap.

Pages are order-0 folios (no THP/mTHP here).  The simulated MMU (arch/x86/tlb.py) sets
Accessed/Dirty; these functions set the bits the kernel sets.  Every function the kernel
names is ``@kfunc``.  ``mm->rss_stat`` changes go through :func:`add_mm_counter`, which fires
``kmem:rss_stat`` as ``add_mm_counter`` does.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.arch.x86 import tlb as x86_tlb
from mmdbg.sim.arch.x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_PRESENT,
    _PAGE_PROTNONE,
    _PAGE_RW,
    _PAGE_SOFT_DIRTY,
    _PAGE_SPECIAL,
    PAGE_NONE,
    PT_PFN,
    PTE_PFN_MASK,
    PTRS_PER_TABLE,
    pagetable_free,
    pte_modify,
    pte_table_alloc,
)
from mmdbg.sim.include.gfp import __GFP_ZERO, GFP_HIGHUSER_MOVABLE
from mmdbg.sim.include.mm import (
    FAULT_FLAG_TRIED,
    FAULT_FLAG_UNSHARE,
    FAULT_FLAG_WRITE,
    VM_FAULT_ERROR,
    VM_FAULT_MAJOR,
    VM_FAULT_NOPAGE,
    VM_FAULT_OOM,
    VM_FAULT_RETRY,
    VM_FAULT_SIGBUS,
    VmFault,
)
from mmdbg.sim.mm import page_alloc, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.rmap import (
    AnonVma,
    anon_vma_prepare,
    folio_add_file_rmap_pte,
    folio_add_new_anon_rmap,
    folio_remove_rmap_pte,
    folio_try_dup_anon_rmap_pte,
)
from mmdbg.sim.mm.vma import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    VM_LOCKED,
    VM_MAYSHARE,
    VM_SHARED,
    VM_WRITE,
    is_cow_mapping,
)
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

_tp_rss = declare_tracepoint("kmem:rss_stat")

_P = _PAGE_PRESENT
_PRESENT_ANY = _PAGE_PRESENT | _PAGE_PROTNONE
_RW = _PAGE_RW
_PFN = PTE_PFN_MASK
_WRITE_DIRTY = _PAGE_RW | _PAGE_DIRTY | _PAGE_SOFT_DIRTY
_GFP_ANON = GFP_HIGHUSER_MOVABLE | __GFP_ZERO
_EXCL = 1 << pf.PG_anon_exclusive
_UPTODATE = 1 << pf.PG_uptodate
_MLOCKED = 1 << pf.PG_mlocked
_SWAPCACHE = 1 << pf.PG_swapcache
PGFAULT = vmstat.PGFAULT
PGREUSE = vmstat.EV["pgreuse"]
NR_MLOCK = vmstat.NR_MLOCK
RMAP_EXCLUSIVE = 1


# -- rss counters ---------------------------------------------------------------------------
def add_mm_counter(mm: Any, member: int, value: int) -> None:
    mm.rss_stat[member] += value
    if _tp_rss.enabled:
        _fire_rss(mm, member)


def _fire_rss(mm: Any, member: int) -> None:
    m = current_machine()
    cur = m.current
    _tp_rss.fire(mm_id=mm.mm_id, curr=int(cur is not None and cur.mm is mm), member=member,
                 size=mm.rss_stat[member] << 12)


def add_mm_rss_vec(mm: Any, rss: list[int]) -> None:
    for i, v in enumerate(rss):
        if v:
            add_mm_counter(mm, i, v)


def mm_counter(m: Any, pfn: int) -> int:
    mapping = m.mem_map.mapping.get(pfn)
    if isinstance(mapping, AnonVma):
        return MM_ANONPAGES
    if mapping is not None and mapping.host.shmem:
        return MM_SHMEMPAGES
    return MM_FILEPAGES


def vm_normal_page(vma: Any, addr: int, pte: int) -> int | None:
    """The pfn a PTE maps, or None for special mappings (the zero page, PFN maps)."""
    if pte & _PAGE_SPECIAL:
        return None
    return (pte & _PFN) >> 12


def _cost(m: Any, ns: int) -> None:
    m.clock.ns += ns


# -- mlock bookkeeping (mm/mlock.c names; the folio's mlock_count is a dict here) -----------
def mlock_new_folio(m: Any, folio: int) -> None:
    flags = m.mem_map.flags
    mc = m.vm.mlock_count
    mc[folio] = mc.get(folio, 0) + 1
    if not flags[folio] & _MLOCKED:
        flags[folio] |= _MLOCKED
        m.pfn_zone(folio).vm_stat[NR_MLOCK] += 1
        m.vm_events[vmstat.EV["unevictable_pgs_mlocked"]] += 1


def munlock_folio(m: Any, folio: int) -> None:
    mc = m.vm.mlock_count
    n = mc.get(folio, 0) - 1
    if n > 0:
        mc[folio] = n
        return
    mc.pop(folio, None)
    flags = m.mem_map.flags
    if flags[folio] & _MLOCKED:
        flags[folio] &= ~_MLOCKED
        m.pfn_zone(folio).vm_stat[NR_MLOCK] -= 1
        m.vm_events[vmstat.EV["unevictable_pgs_munlocked"]] += 1


# -- the fault handler ---------------------------------------------------------------------
@kfunc
def handle_mm_fault(vma: Any, address: int, flags: int, regs: Any) -> int:
    """Resolve a fault in ``vma``; returns the VM_FAULT_* bits."""
    m = _trace._current
    ret = __handle_mm_fault(vma, address, flags)
    if ret or flags & FAULT_FLAG_TRIED:
        mm_account_fault(m, regs, address, flags, ret)
    else:  # mm_account_fault() for a plain minor fault, inlined
        m.vm_events[PGFAULT] += 1
        t = m.cpu_curr[m.cpu]
        t.min_flt += 1
        if regs is not None:
            t.perf_minor_faults += 1
    return ret


def mm_account_fault(m: Any, regs: Any, address: int, flags: int, ret: int) -> None:
    if ret & VM_FAULT_RETRY:
        return
    m.vm_events[PGFAULT] += 1
    if ret & VM_FAULT_ERROR:
        return
    t = m.cpu_curr[m.cpu]
    if ret & VM_FAULT_MAJOR or flags & FAULT_FLAG_TRIED:
        t.maj_flt += 1
        if regs is not None:
            t.perf_major_faults += 1
    else:
        t.min_flt += 1
        if regs is not None:
            t.perf_minor_faults += 1


@kfunc
def __handle_mm_fault(vma: Any, address: int, flags: int) -> int:
    """Walk (allocating) to the PTE table, then handle the PTE."""
    mm = vma.vm_mm
    t = mm.pgd
    for s in mm.paging.upper_shifts:
        c = t[address >> s & 511]
        if c is None:
            t = pte_table_alloc(mm, address)
            if t is None:
                return VM_FAULT_OOM
            break
        t = c
    vmf = VmFault(vma, address, flags)
    vmf.pte = t
    vmf.orig_pte = t[vmf.pte_idx]
    return handle_pte_fault(vmf)


@kfunc
def handle_pte_fault(vmf: VmFault) -> int:
    entry = vmf.orig_pte
    if not entry:
        return do_pte_missing(vmf)
    if not entry & _PRESENT_ANY:
        return do_swap_page(vmf)
    if not entry & _P:  # PROT_NONE entry in an accessible VMA: NUMA hinting
        return do_numa_page(vmf)
    new = entry
    if vmf.flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE):
        if not entry & _RW:
            return do_wp_page(vmf)
        new |= _PAGE_DIRTY | _PAGE_SOFT_DIRTY
    new |= _PAGE_ACCESSED
    if new != entry:
        vmf.pte[vmf.pte_idx] = new  # ptep_set_access_flags (an upgrade: no flush on x86)
    elif vmf.flags & FAULT_FLAG_WRITE:
        x86_tlb.flush_tlb_fix_spurious_fault(vmf.vma, vmf.address)
    return 0


@kfunc
def do_pte_missing(vmf: VmFault) -> int:
    if vmf.vma.vm_ops is None:
        return do_anonymous_page(vmf)
    return do_fault(vmf)


@kfunc(aliases=("vma_alloc_zeroed_movable_folio",))
def alloc_anon_folio(vmf: VmFault) -> int | None:
    return vma_alloc_folio(_GFP_ANON, 0, vmf.vma, vmf.address)


@kfunc(aliases=("alloc_pages_vma", "vma_alloc_folio_noprof"))
def vma_alloc_folio(gfp: int, order: int, vma: Any, addr: int) -> int | None:
    return page_alloc.alloc_pages(gfp, order)


@kfunc
def do_anonymous_page(vmf: VmFault) -> int:
    """First touch of anonymous memory: the zero page for a read, a new page for a write."""
    vma = vmf.vma
    m = _trace._current
    if vma.vm_flags & VM_SHARED:
        return VM_FAULT_SIGBUS
    if not vmf.flags & FAULT_FLAG_WRITE:
        vmf.pte[vmf.pte_idx] = (m.vm.zero_pfn << 12) | vma.vm_page_prot | _PAGE_SPECIAL
        return 0
    if vma.anon_vma is None and anon_vma_prepare(vma):
        return VM_FAULT_OOM
    folio = alloc_anon_folio(vmf)
    if folio is None:
        return VM_FAULT_OOM
    mm = vma.vm_mm
    vm = m.vm
    if not vm.hooks.mem_cgroup_charge(folio, mm, _GFP_ANON):
        page_alloc.__free_pages(folio, 0)
        return VM_FAULT_OOM
    m.clock.ns += vm.cost.page_zero
    vm_flags = vma.vm_flags
    entry = (folio << 12) | vma.vm_page_prot
    if vm_flags & VM_WRITE:
        entry |= _WRITE_DIRTY
    folio_add_new_anon_rmap(folio, vma, vmf.address, RMAP_EXCLUSIVE)
    vm.hooks.folio_add_lru_vma(folio, vma)
    if vm_flags & VM_LOCKED:
        mlock_new_folio(m, folio)
    mm.rss_stat[MM_ANONPAGES] += 1
    if _tp_rss.enabled:
        _fire_rss(mm, MM_ANONPAGES)
    vmf.pte[vmf.pte_idx] = entry  # set_pte_at
    return 0


# -- file faults ------------------------------------------------------------------------------
@kfunc
def do_fault(vmf: VmFault) -> int:
    vma = vmf.vma
    if vma.vm_ops.fault is None:
        return VM_FAULT_SIGBUS
    if not vmf.flags & FAULT_FLAG_WRITE:
        return do_read_fault(vmf)
    if not vma.vm_flags & VM_SHARED:
        return do_cow_fault(vmf)
    return do_shared_fault(vmf)


def should_fault_around(vmf: VmFault) -> bool:
    m = current_machine()
    return vmf.vma.vm_ops.map_pages is not None and m.vm.fault_around_bytes >> 12 > 1


@kfunc
def do_fault_around(vmf: VmFault) -> int:
    """Map the cached pages around the fault (fault_around_bytes, 64 KiB by default)."""
    m = current_machine()
    nr_pages = m.vm.fault_around_bytes >> 12
    pte_off = vmf.address >> 12 & 511
    vma = vmf.vma
    vma_off = vmf.pgoff - vma.vm_pgoff
    from_pte = max(pte_off & ~(nr_pages - 1), pte_off - min(pte_off, vma_off))
    to_pte = min(from_pte + nr_pages, PTRS_PER_TABLE,
                 pte_off + ((vma.vm_end - vma.vm_start) >> 12) - vma_off) - 1
    return vma.vm_ops.map_pages(vmf, vmf.pgoff + from_pte - pte_off,
                                vmf.pgoff + to_pte - pte_off)


@kfunc
def __do_fault(vmf: VmFault) -> int:
    return vmf.vma.vm_ops.fault(vmf)


@kfunc
def do_read_fault(vmf: VmFault) -> int:
    if should_fault_around(vmf):
        ret = do_fault_around(vmf)
        if ret:
            return ret
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    return ret | finish_fault(vmf)


@kfunc
def do_cow_fault(vmf: VmFault) -> int:
    """Write to a private file mapping: copy the file page into a new anonymous page."""
    m = current_machine()
    vma = vmf.vma
    if anon_vma_prepare(vma):
        return VM_FAULT_OOM
    cow = vma_alloc_folio(GFP_HIGHUSER_MOVABLE, 0, vma, vmf.address)
    if cow is None:
        return VM_FAULT_OOM
    vmf.cow_page = cow
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        page_alloc.__free_pages(cow, 0)
        return ret
    copy_user_highpage(cow, vmf.page)
    m.mem_map.flags[cow] |= _UPTODATE
    ret |= finish_fault(vmf)
    _put_page(m, vmf.page)
    return ret


@kfunc
def do_shared_fault(vmf: VmFault) -> int:
    vma = vmf.vma
    ret = __do_fault(vmf)
    if ret & (VM_FAULT_ERROR | VM_FAULT_NOPAGE | VM_FAULT_RETRY):
        return ret
    if vma.vm_ops.page_mkwrite is not None:
        vma.vm_ops.page_mkwrite(vmf)
    ret |= finish_fault(vmf)
    fault_dirty_shared_page(vmf)
    return ret


@kfunc
def fault_dirty_shared_page(vmf: VmFault) -> None:
    m = current_machine()
    m.vm.hooks.balance_dirty_pages_ratelimited(vmf.vma.vm_file.f_mapping)


@kfunc
def finish_fault(vmf: VmFault) -> int:
    """Install the page ``__do_fault`` found (or the CoW copy)."""
    m = current_machine()
    if vmf.flags & FAULT_FLAG_WRITE and not vmf.vma.vm_flags & VM_SHARED:
        page = vmf.cow_page
    else:
        page = vmf.page
    if vmf.pte[vmf.pte_idx]:
        _put_page(m, page)
        return VM_FAULT_NOPAGE
    set_pte_range(vmf, page, vmf.address, vmf.pte_idx, page is vmf.cow_page)
    return 0


@kfunc(aliases=("do_set_pte",))
def set_pte_range(vmf: VmFault, folio: int, addr: int, idx: int, is_cow: bool) -> None:
    """Map ``folio`` at ``addr`` (the caller's reference becomes the mapping's)."""
    m = current_machine()
    vma = vmf.vma
    entry = (folio << 12) | vma.vm_page_prot
    if vmf.flags & FAULT_FLAG_WRITE and addr == vmf.address:
        entry |= _PAGE_DIRTY | _PAGE_SOFT_DIRTY
        if vma.vm_flags & VM_WRITE:
            entry |= _RW
    mm = vma.vm_mm
    if is_cow:
        folio_add_new_anon_rmap(folio, vma, addr, RMAP_EXCLUSIVE)
        m.vm.hooks.folio_add_lru_vma(folio, vma)
        add_mm_counter(mm, MM_ANONPAGES, 1)
    else:
        folio_add_file_rmap_pte(folio, folio, vma)
        add_mm_counter(mm, mm_counter(m, folio), 1)
    if vma.vm_flags & VM_LOCKED:
        mlock_new_folio(m, folio)
    vmf.pte[idx] = entry


def copy_user_highpage(dst: int, src: int) -> None:
    m = current_machine()
    m.physmem.copy_page(dst, src)
    _cost(m, m.vm.cost.page_copy)


def _put_page(m: Any, pfn: int) -> None:
    from mmdbg.sim.mm.filemap import folio_put

    folio_put(m, pfn)


# -- write-protect faults (CoW) ----------------------------------------------------------------
@kfunc
def do_wp_page(vmf: VmFault) -> int:
    """A write to a present, write-protected PTE: reuse the page or copy it."""
    m = _trace._current
    vma = vmf.vma
    entry = vmf.orig_pte
    page = None if entry & _PAGE_SPECIAL else (entry & _PFN) >> 12  # vm_normal_page()
    vmf.page = page
    if vma.vm_flags & (VM_SHARED | VM_MAYSHARE):
        if page is None:
            return wp_page_reuse(vmf, None)
        return wp_page_shared(vmf, page)
    if page is not None:
        mem_map = m.mem_map
        if isinstance(mem_map.mapping.get(page), AnonVma) and (
                mem_map.flags[page] & _EXCL or wp_can_reuse_anon_folio(page, vma)):
            mem_map.flags[page] |= _EXCL
            return wp_page_reuse(vmf, page)
    return wp_page_copy(vmf)


@kfunc
def wp_can_reuse_anon_folio(folio: int, vma: Any) -> bool:
    """Our reference is the only one: nobody else can see the page, so write to it."""
    m = _trace._current
    if m.mem_map._refcount[folio] != 1:
        return False
    m.mem_map.mapping[folio] = vma.anon_vma  # folio_move_anon_rmap
    return True


@kfunc
def wp_page_reuse(vmf: VmFault, folio: int | None) -> int:
    m = current_machine()
    entry = vmf.orig_pte | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_SOFT_DIRTY
    if vmf.vma.vm_flags & VM_WRITE:
        entry |= _RW
    vmf.pte[vmf.pte_idx] = entry
    if folio is not None:
        m.vm_events[PGREUSE] += 1
    return 0


@kfunc
def wp_page_shared(vmf: VmFault, folio: int) -> int:
    vma = vmf.vma
    if vma.vm_ops is not None and vma.vm_ops.page_mkwrite is not None:
        vma.vm_ops.page_mkwrite(vmf)
    wp_page_reuse(vmf, folio)
    if vma.vm_file is not None:
        fault_dirty_shared_page(vmf)
    return 0


@kfunc
def wp_page_copy(vmf: VmFault) -> int:
    """Break CoW: copy the old page (or the zero page) into a new exclusive anon page."""
    m = _trace._current
    vma = vmf.vma
    mm = vma.vm_mm
    old = vmf.page
    address = vmf.address
    if anon_vma_prepare(vma):
        return VM_FAULT_OOM
    if old is None:
        new = vma_alloc_folio(_GFP_ANON, 0, vma, address)
    else:
        new = vma_alloc_folio(GFP_HIGHUSER_MOVABLE, 0, vma, address)
    if new is None:
        return VM_FAULT_OOM
    vm = m.vm
    if old is None:
        m.clock.ns += vm.cost.page_zero
    else:  # copy_user_highpage(), static inline
        m.physmem.copy_page(new, old)
        m.clock.ns += vm.cost.page_copy
    if not vm.hooks.mem_cgroup_charge(new, mm, GFP_HIGHUSER_MOVABLE):
        page_alloc.__free_pages(new, 0)
        return VM_FAULT_OOM
    mem_map = m.mem_map
    mem_map.flags[new] |= _UPTODATE
    if old is not None:
        member = mm_counter(m, old)
        if member != MM_ANONPAGES:
            add_mm_counter(mm, member, -1)
            add_mm_counter(mm, MM_ANONPAGES, 1)
    else:
        add_mm_counter(mm, MM_ANONPAGES, 1)
    vm_flags = vma.vm_flags
    entry = (new << 12) | vma.vm_page_prot | _PAGE_DIRTY | _PAGE_SOFT_DIRTY
    if vm_flags & VM_WRITE:
        entry |= _RW
    ptep_clear_flush(vma, address, vmf.pte, vmf.pte_idx)
    folio_add_new_anon_rmap(new, vma, address, RMAP_EXCLUSIVE)
    vm.hooks.folio_add_lru_vma(new, vma)
    if vm_flags & VM_LOCKED:
        mlock_new_folio(m, new)
    vmf.pte[vmf.pte_idx] = entry
    if old is not None:
        if vm_flags & VM_LOCKED and mem_map.flags[old] & _MLOCKED:
            munlock_folio(m, old)
        folio_remove_rmap_pte(old, old, vma)
        _release_pages(m, [old])
    return 0


@kfunc
def ptep_clear_flush(vma: Any, address: int, table: Any, idx: int) -> int:
    pte = table[idx]
    table[idx] = 0
    # flush_tlb_page(), static inline on x86
    x86_tlb.flush_tlb_mm_range(vma.vm_mm, address, address + 4096, 12, False)
    return pte


@kfunc
def do_swap_page(vmf: VmFault) -> int:
    """A swap entry in the PTE: the swap issue installs ``vm.hooks.do_swap_page``."""
    m = current_machine()
    return m.vm.hooks.do_swap_page(vmf)


@kfunc
def do_numa_page(vmf: VmFault) -> int:
    """A PROT_NONE entry in an accessible VMA (NUMA hinting): restore the VMA protection."""
    vma = vmf.vma
    vmf.pte[vmf.pte_idx] = pte_modify(vmf.orig_pte, vma.vm_page_prot) | _PAGE_ACCESSED
    x86_tlb.flush_tlb_page(vma, vmf.address)
    return 0


# -- unmapping -------------------------------------------------------------------------------
class MmuGather:
    """``struct mmu_gather``: pages and tables to free once the TLB is flushed."""

    __slots__ = ("end", "freed_tables", "fullmm", "mm", "pages", "start", "tables")
    ktype = "mmu_gather"

    def __init__(self, mm: Any, fullmm: bool = False) -> None:
        self.mm = mm
        self.fullmm = fullmm
        self.start = 1 << 64
        self.end = 0
        self.freed_tables = False
        self.pages: list[int] = []
        self.tables: list[int] = []

    def track(self, start: int, end: int) -> None:
        if start < self.start:
            self.start = start
        if end > self.end:
            self.end = end


def tlb_gather_mmu(mm: Any) -> MmuGather:
    return MmuGather(mm)


def tlb_gather_mmu_fullmm(mm: Any) -> MmuGather:
    return MmuGather(mm, fullmm=True)


@kfunc
def tlb_finish_mmu(tlb: MmuGather) -> None:
    """Flush the TLB for what was unmapped, then free the gathered pages and tables."""
    m = current_machine()
    if tlb.fullmm:
        x86_tlb.flush_tlb_mm_range(tlb.mm, 0, x86_tlb.TLB_FLUSH_ALL, 12, True)
    elif tlb.end > tlb.start:
        x86_tlb.flush_tlb_mm_range(tlb.mm, tlb.start, tlb.end, 12, tlb.freed_tables)
    if tlb.pages:
        _release_pages(m, tlb.pages)
        tlb.pages = []
    for pfn in tlb.tables:
        pagetable_free(m, pfn)
    tlb.tables = []


def _release_pages(m: Any, pfns: list[int]) -> None:
    """folios_put_refs: drop one reference each; free the last ones in one batch."""
    mem_map = m.mem_map
    refc = mem_map._refcount
    mapping = mem_map.mapping
    index = mem_map.index
    release = m.vm.hooks.folio_release
    flags = mem_map.flags
    batch = []
    for pfn in pfns:
        if flags[pfn] & _SWAPCACHE and mem_map._mapcount[pfn] < 0:
            m.vm.hooks.free_swap_cache(pfn)  # free_pages_and_swap_cache
        r = refc[pfn]
        if r > 1:
            refc[pfn] = r - 1
            continue
        mp = mapping.get(pfn)
        if mp is not None and mp.__class__ is AnonVma:
            del mapping[pfn]
            index.pop(pfn, None)
        release(pfn)
        batch.append(pfn)
    if batch:
        page_alloc.free_pages_bulk_batched(batch)


@kfunc
def zap_pte_range(tlb: MmuGather, vma: Any, table: Any, addr: int, end: int) -> int:
    """Clear the PTEs of [addr, end) in one PTE table; pages go to the mmu_gather."""
    m = current_machine()
    mm = vma.vm_mm
    mem_map = m.mem_map
    flags = mem_map.flags
    mapping = mem_map.mapping
    rss = [0, 0, 0, 0]
    pages = tlb.pages
    locked = vma.vm_flags & VM_LOCKED
    i0 = addr >> 12 & 511
    n = (end - addr) >> 12
    zapped = 0
    for i in range(i0, i0 + n):
        pte = table[i]
        if not pte:
            continue
        table[i] = 0
        zapped += 1
        if pte & _PRESENT_ANY:
            if pte & _PAGE_SPECIAL:
                continue
            pfn = (pte & _PFN) >> 12
            mp = mapping.get(pfn)
            if mp is not None and mp.__class__ is AnonVma:
                rss[MM_ANONPAGES] -= 1
            else:
                if pte & _PAGE_DIRTY and mp is not None and not mp.host.shmem:
                    from mmdbg.sim.mm.filemap import folio_mark_dirty

                    folio_mark_dirty(pfn)
                rss[MM_SHMEMPAGES if mp is not None and mp.host.shmem else MM_FILEPAGES] -= 1
            if locked and flags[pfn] & _MLOCKED:
                munlock_folio(m, pfn)
            folio_remove_rmap_pte(pfn, pfn, vma)
            pages.append(pfn)
        else:
            rss[MM_SWAPENTS] -= 1
            m.vm.hooks.free_swap_and_cache(pte)
    if zapped:
        tlb.track(addr, end)
    add_mm_rss_vec(mm, rss)
    _cost(m, zapped * m.vm.cost.pte_zap)
    return zapped


@kfunc
def unmap_page_range(tlb: MmuGather, vma: Any, addr: int, end: int) -> None:
    """Walk the tables under [addr, end) and zap every PTE table found."""
    mm = vma.vm_mm
    shifts = mm.paging.shifts
    last = len(shifts) - 1

    def walk(t: Any, level: int, a: int, e: int) -> None:
        s = shifts[level]
        while a < e:
            nxt = min(((a >> s) + 1) << s, e)
            c = t[a >> s & 511]
            if c is not None:
                if level + 1 == last:
                    zap_pte_range(tlb, vma, c, a, nxt)
                else:
                    walk(c, level + 1, a, nxt)
            a = nxt

    walk(mm.pgd, 0, addr, end)


@kfunc
def unmap_vmas(tlb: MmuGather, vmas: list[Any], start_addr: int, end_addr: int) -> None:
    for vma in vmas:
        s = max(vma.vm_start, start_addr)
        e = min(vma.vm_end, end_addr)
        if s < e:
            unmap_page_range(tlb, vma, s, e)


@kfunc
def free_pgd_range(tlb: MmuGather, addr: int, end: int, floor: int, ceiling: int) -> None:
    """Free the page tables of [addr, end) that no mapping in [floor, ceiling) needs."""
    pmd_size = 1 << 21
    pmd_mask = ~(pmd_size - 1)
    addr &= pmd_mask
    if addr < floor:
        addr += pmd_size
    if ceiling:
        ceiling &= pmd_mask
        if not ceiling:
            return
    top = ceiling if ceiling else 1 << 64
    if end - 1 > top - 1:
        end -= pmd_size
    if addr > end - 1:
        return
    mm = tlb.mm
    shifts = mm.paging.shifts
    last = len(shifts) - 1

    def free_level(t: Any, level: int, a: int, e: int) -> None:
        s = shifts[level]
        while a < e:
            nxt = min(((a >> s) + 1) << s, e)
            i = a >> s & 511
            c = t[i]
            if c is not None:
                if level + 1 == last:
                    _free_table(tlb, t, i, c, level + 1)
                else:
                    free_level(c, level + 1, a, nxt)
                    # the child table itself: only if its whole span is inside [floor, ceiling)
                    span = 1 << s
                    start = a & ~(span - 1)
                    if start >= floor:
                        ok = True
                        if ceiling:
                            c2 = ceiling & ~(span - 1)
                            ok = c2 != 0 and nxt - 1 <= c2 - 1
                        if ok:
                            _free_table(tlb, t, i, c, level + 1)
            a = nxt

    free_level(mm.pgd, 0, addr, end)


def _free_table(tlb: MmuGather, parent: Any, i: int, table: Any, level: int) -> None:
    mm = tlb.mm
    levels = len(mm.paging.shifts)
    for k in range(PTRS_PER_TABLE):
        if table[k]:
            raise AssertionError(f"freeing a page table that still maps entry {k}")
    parent[i] = None
    if level >= levels - 3:
        mm.pgtables_bytes -= PTRS_PER_TABLE * 8
    tlb.freed_tables = True
    tlb.tables.append(table[PT_PFN])


@kfunc
def free_pgtables(tlb: MmuGather, vmas: list[Any], floor: int, ceiling: int) -> None:
    """Free the tables under ``vmas`` (already unlinked), within [floor, ceiling)."""
    if not vmas:
        return
    ranges: list[list[int]] = []
    for v in sorted(vmas, key=lambda v: v.vm_start):
        if ranges and ranges[-1][1] == v.vm_start:
            ranges[-1][1] = v.vm_end
        else:
            ranges.append([v.vm_start, v.vm_end])
    mt = tlb.mm.mm_mt
    for s, e in ranges:
        prev = mt.prev_of_addr(s)
        nxt = mt.find(e)
        fl = max(floor, prev.vm_end) if prev is not None else floor
        ce = ceiling
        if nxt is not None:
            ce = nxt.vm_start if not ceiling else min(ceiling, nxt.vm_start)
        free_pgd_range(tlb, s, e, fl, ce)


# -- fork ----------------------------------------------------------------------------------------
def vma_needs_copy(dst_vma: Any, src_vma: Any) -> bool:
    from mmdbg.sim.mm.vma import VM_MIXEDMAP, VM_PFNMAP, VM_UFFD_WP

    if src_vma.vm_flags & (VM_PFNMAP | VM_MIXEDMAP | VM_UFFD_WP):
        return True
    return src_vma.anon_vma is not None


@kfunc
def copy_page_range(dst_vma: Any, src_vma: Any) -> int:
    """fork: copy the parent's PTEs of ``src_vma`` into the child (CoW for private memory)."""
    if not vma_needs_copy(dst_vma, src_vma):
        return 0
    src_mm = src_vma.vm_mm
    shifts = src_mm.paging.shifts
    last = len(shifts) - 1
    start, end = src_vma.vm_start, src_vma.vm_end
    err = 0

    def walk(t: Any, level: int, a: int, e: int) -> None:
        nonlocal err
        s = shifts[level]
        while a < e and not err:
            nxt = min(((a >> s) + 1) << s, e)
            c = t[a >> s & 511]
            if c is not None:
                if level + 1 == last:
                    err = copy_pte_range(dst_vma, src_vma, c, a, nxt)
                else:
                    walk(c, level + 1, a, nxt)
            a = nxt

    walk(src_mm.pgd, 0, start, end)
    return err


@kfunc
def copy_pte_range(dst_vma: Any, src_vma: Any, src_table: Any, addr: int, end: int) -> int:
    m = current_machine()
    dst_mm = dst_vma.vm_mm
    dst_table = pte_table_alloc(dst_mm, addr)
    if dst_table is None:
        return -12
    mem_map = m.mem_map
    mapping = mem_map.mapping
    cow = is_cow_mapping(src_vma.vm_flags)
    shared = src_vma.vm_flags & VM_SHARED
    rss = [0, 0, 0, 0]
    i0 = addr >> 12 & 511
    n = 0
    for i in range(i0, i0 + ((end - addr) >> 12)):
        pte = src_table[i]
        if not pte:
            continue
        n += 1
        if pte & _PRESENT_ANY:
            if not pte & _PAGE_SPECIAL:
                pfn = (pte & _PFN) >> 12
                mp = mapping.get(pfn)
                if mp is not None and mp.__class__ is AnonVma:
                    folio_try_dup_anon_rmap_pte(pfn, pfn, src_vma)
                    rss[MM_ANONPAGES] += 1
                else:
                    mem_map._refcount[pfn] += 1
                    mem_map._mapcount[pfn] += 1
                    rss[MM_SHMEMPAGES if mp is not None and mp.host.shmem else MM_FILEPAGES] += 1
            if cow and pte & _RW:
                pte &= ~_RW
                src_table[i] = pte  # ptep_set_wrprotect
            if shared:
                pte &= ~_PAGE_DIRTY
            dst_table[i] = pte & ~_PAGE_ACCESSED
        else:
            m.vm.hooks.swap_duplicate(pte)
            rss[MM_SWAPENTS] += 1
            dst_table[i] = pte
    add_mm_rss_vec(dst_mm, rss)
    _cost(m, n * m.vm.cost.pte_copy)
    return 0


# -- populate (GUP) ------------------------------------------------------------------------------
@kfunc(aliases=("__get_user_pages", "faultin_page"))
def populate_vma_page_range(vma: Any, start: int, end: int) -> int:
    """Fault in [start, end) as get_user_pages would: writes for private writable memory."""
    from mmdbg.sim.arch.x86.pgtable import pte_table_lookup
    from mmdbg.sim.include.mm import FAULT_FLAG_DEFAULT
    from mmdbg.sim.mm.vma import VM_READ

    write = vma.vm_flags & (VM_WRITE | VM_SHARED) == VM_WRITE
    flags = FAULT_FLAG_DEFAULT | (FAULT_FLAG_WRITE if write else 0)
    if not vma.vm_flags & (VM_READ | VM_WRITE) and not vma.vm_flags & 0x4:
        return 0
    mm = vma.vm_mm
    done = 0
    for a in range(start, end, 4096):
        t = pte_table_lookup(mm, a)
        pte = t[a >> 12 & 511] if t is not None else 0
        if pte & _P and (not write or pte & _RW):
            continue
        ret = handle_mm_fault(vma, a, flags, None)
        if ret & VM_FAULT_ERROR:
            return -12 if ret & VM_FAULT_OOM else -14
        done += 1
    return done


def change_pte_range(m: Any, vma: Any, table: Any, addr: int, end: int, newprot: int) -> int:
    """mprotect: rewrite the protection of present PTEs in one table; returns pages changed."""
    i0 = addr >> 12 & 511
    n = 0
    shared_writable = vma.vm_flags & VM_SHARED and vma.vm_flags & VM_WRITE
    none = newprot == PAGE_NONE
    for i in range(i0, i0 + ((end - addr) >> 12)):
        pte = table[i]
        if not pte or not pte & _PRESENT_ANY:
            continue
        new = pte_modify(pte, newprot)
        if not none and new & _P:
            # write permission comes back only where no CoW/dirty tracking is needed
            pfn = (pte & _PFN) >> 12
            if vma.vm_flags & VM_WRITE and not pte & _PAGE_SPECIAL and (
                    (shared_writable and pte & _PAGE_DIRTY)
                    or (not vma.vm_flags & VM_SHARED
                        and m.mem_map.flags[pfn] & _EXCL
                        and m.mem_map.mapping.get(pfn).__class__ is AnonVma)):
                new |= _RW
        if new != pte:
            table[i] = new
            n += 1
    return n
