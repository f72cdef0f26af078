"""madvise and msync (mm/madvise.c, mm/msync.c).

Behaviours: ``MADV_DONTNEED`` zaps the range (anonymous memory reads back as zeros, file
pages are refaulted from the page cache); ``MADV_FREE`` marks private anonymous pages lazily
freeable (clean, not swap-backed: counted in smaps ``LazyFree``; reclaim frees them unless they
are written again); ``MADV_WILLNEED`` reads file pages ahead; ``MADV_HUGEPAGE``/
``MADV_NOHUGEPAGE``, ``MADV_DONTFORK``/``DOFORK``, ``MADV_WIPEONFORK``/``KEEPONFORK``,
``MADV_DONTDUMP``/``DODUMP``, ``MADV_MERGEABLE``/``UNMERGEABLE``, ``MADV_RANDOM``/
``SEQUENTIAL``/``NORMAL`` set ``vm_flags`` (splitting VMAs); ``MADV_POPULATE_READ/WRITE``
fault the range in; ``MADV_COLD``/``MADV_PAGEOUT`` are accepted and left to reclaim (a later
issue) through ``vm.hooks``.  A hole in the range gives -ENOMEM after the mapped parts were
advised, as the kernel does.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.arch.x86 import tlb as x86_tlb
from mmdbg.sim.include.mm import (
    FAULT_FLAG_DEFAULT,
    FAULT_FLAG_WRITE,
    MADV_COLD,
    MADV_DODUMP,
    MADV_DOFORK,
    MADV_DONTDUMP,
    MADV_DONTFORK,
    MADV_DONTNEED,
    MADV_FREE,
    MADV_HUGEPAGE,
    MADV_KEEPONFORK,
    MADV_MERGEABLE,
    MADV_NOHUGEPAGE,
    MADV_NORMAL,
    MADV_PAGEOUT,
    MADV_POPULATE_READ,
    MADV_POPULATE_WRITE,
    MADV_RANDOM,
    MADV_REMOVE,
    MADV_SEQUENTIAL,
    MADV_UNMERGEABLE,
    MADV_WILLNEED,
    MADV_WIPEONFORK,
    MS_ASYNC,
    MS_INVALIDATE,
    MS_SYNC,
    VM_FAULT_ERROR,
    VM_FAULT_OOM,
)
from mmdbg.sim.mm import memory, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.vma import (
    VM_DONTCOPY,
    VM_DONTDUMP,
    VM_HUGEPAGE,
    VM_HUGETLB,
    VM_IO,
    VM_LOCKED,
    VM_MERGEABLE,
    VM_MIXEDMAP,
    VM_NOHUGEPAGE,
    VM_PFNMAP,
    VM_RAND_READ,
    VM_SEQ_READ,
    VM_SHARED,
    VM_SPECIAL,
    VM_WIPEONFORK,
    VM_WRITE,
    VmAreaStruct,
)
from mmdbg.sim.trace import current_machine, kfunc

PAGE_MASK = ~4095
PGLAZYFREE = vmstat.EV["pglazyfree"]
_SWAPBACKED = 1 << pf.PG_swapbacked
_DIRTY = 1 << pf.PG_dirty
_EXCL = 1 << pf.PG_anon_exclusive

_FLAG_BEHAVIOURS = {
    MADV_NORMAL: (0, VM_RAND_READ | VM_SEQ_READ),
    MADV_RANDOM: (VM_RAND_READ, VM_SEQ_READ),
    MADV_SEQUENTIAL: (VM_SEQ_READ, VM_RAND_READ),
    MADV_DONTFORK: (VM_DONTCOPY, 0),
    MADV_DOFORK: (0, VM_DONTCOPY),
    MADV_WIPEONFORK: (VM_WIPEONFORK, 0),
    MADV_KEEPONFORK: (0, VM_WIPEONFORK),
    MADV_DONTDUMP: (VM_DONTDUMP, 0),
    MADV_DODUMP: (0, VM_DONTDUMP),
    MADV_MERGEABLE: (VM_MERGEABLE, 0),
    MADV_UNMERGEABLE: (0, VM_MERGEABLE),
    MADV_HUGEPAGE: (VM_HUGEPAGE, VM_NOHUGEPAGE),
    MADV_NOHUGEPAGE: (VM_NOHUGEPAGE, VM_HUGEPAGE),
}
VALID = set(_FLAG_BEHAVIOURS) | {MADV_DONTNEED, MADV_FREE, MADV_WILLNEED, MADV_COLD,
                                 MADV_PAGEOUT, MADV_POPULATE_READ, MADV_POPULATE_WRITE,
                                 MADV_REMOVE}


@kfunc(aliases=("zap_page_range_single",))
def madvise_dontneed_single_vma(vma: VmAreaStruct, start: int, end: int) -> int:
    tlb = memory.tlb_gather_mmu(vma.vm_mm)
    vma.vm_mm.update_hiwater_rss()
    memory.unmap_page_range(tlb, vma, start, end)
    memory.tlb_finish_mmu(tlb)
    return 0


@kfunc
def madvise_free_single_vma(vma: VmAreaStruct, start: int, end: int) -> int:
    """Clean and age exclusive anon pages; they lose PG_swapbacked (lazyfree)."""
    from mmdbg.sim.arch.x86.pgtable import _PAGE_ACCESSED, _PAGE_DIRTY, pte_table_lookup

    m = current_machine()
    if vma.vm_ops is not None or vma.vm_flags & VM_SHARED:
        return -errno.EINVAL
    flags = m.mem_map.flags
    mc = m.mem_map._mapcount
    n = 0
    for a in range(start, end, 4096):
        t = pte_table_lookup(vma.vm_mm, a)
        if t is None:
            continue
        i = a >> 12 & 511
        pte = t[i]
        if not pte & 1 or pte & 0x200:
            continue
        pfn = (pte >> 12) & 0xFFFFFFFFFF
        if mc[pfn] != 0:  # shared with another process: leave it
            continue
        t[i] = pte & ~(_PAGE_DIRTY | _PAGE_ACCESSED)
        if flags[pfn] & _SWAPBACKED:
            flags[pfn] &= ~(_SWAPBACKED | _DIRTY)
            m.vm_events[PGLAZYFREE] += 1
            m.vm.hooks.lazyfree_folio(pfn)
        n += 1
    if n:
        x86_tlb.flush_tlb_range(vma, start, end)
    return 0


def madvise_populate(m: Any, vma: VmAreaStruct, start: int, end: int, write: bool) -> int:
    from mmdbg.sim.arch.x86.pgtable import pte_table_lookup

    if vma.vm_flags & (VM_IO | VM_PFNMAP):
        return -errno.EINVAL
    if write and not vma.vm_flags & VM_WRITE:
        return -errno.EINVAL
    flags = FAULT_FLAG_DEFAULT | (FAULT_FLAG_WRITE if write else 0)
    for a in range(start, end, 4096):
        t = pte_table_lookup(vma.vm_mm, a)
        pte = t[a >> 12 & 511] if t is not None else 0
        if pte & 1 and (not write or pte & 2):
            continue
        ret = memory.handle_mm_fault(vma, a, flags, None)
        if ret & VM_FAULT_ERROR:
            return -errno.ENOMEM if ret & VM_FAULT_OOM else -errno.EFAULT
    return 0


@kfunc
def madvise_vma_behavior(vma: VmAreaStruct, start: int, end: int, behavior: int) -> int:
    from mmdbg.sim.mm.filemap import page_cache_ra_unbounded
    from mmdbg.sim.mm.mmap import vma_modify_flags

    m = current_machine()
    if behavior in _FLAG_BEHAVIOURS:
        setf, clearf = _FLAG_BEHAVIOURS[behavior]
        if behavior == MADV_DONTFORK and vma.vm_flags & VM_IO:
            return -errno.EINVAL
        if behavior == MADV_WIPEONFORK and (vma.vm_ops is not None or
                                            vma.vm_flags & VM_SHARED):
            return -errno.EINVAL
        if behavior in (MADV_HUGEPAGE, MADV_NOHUGEPAGE) and vma.vm_flags & VM_SPECIAL:
            return -errno.EINVAL
        newflags = (vma.vm_flags | setf) & ~clearf
        if newflags == vma.vm_flags:
            return 0
        r = vma_modify_flags(vma, start, end, newflags)
        return r if isinstance(r, int) else 0
    if behavior == MADV_DONTNEED:
        if vma.vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB):
            return -errno.EINVAL
        return madvise_dontneed_single_vma(vma, start, end)
    if behavior == MADV_FREE:
        if vma.vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB | VM_MIXEDMAP):
            return -errno.EINVAL
        return madvise_free_single_vma(vma, start, end)
    if behavior == MADV_WILLNEED:
        if vma.vm_file is not None and not vma.vm_file.f_inode.shmem:
            first = vma.vm_pgoff + ((start - vma.vm_start) >> 12)
            page_cache_ra_unbounded(vma.vm_file.f_mapping, first, (end - start) >> 12)
        return 0
    if behavior in (MADV_COLD, MADV_PAGEOUT):
        if vma.vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB):
            return -errno.EINVAL
        m.vm.hooks.madvise_cold_or_pageout(vma, start, end, behavior == MADV_PAGEOUT)
        return 0
    if behavior in (MADV_POPULATE_READ, MADV_POPULATE_WRITE):
        return madvise_populate(m, vma, start, end, behavior == MADV_POPULATE_WRITE)
    if behavior == MADV_REMOVE:
        if not vma.vm_flags & VM_SHARED or vma.vm_file is None:
            return -errno.EINVAL
        madvise_dontneed_single_vma(vma, start, end)
        if vma.vm_file.f_inode.shmem:
            from mmdbg.sim.mm.filemap import filemap_remove_folio

            mapping = vma.vm_file.f_mapping
            first = vma.vm_pgoff + ((start - vma.vm_start) >> 12)
            for idx in range(first, first + ((end - start) >> 12)):
                pfn = mapping.i_pages.get(idx)
                if pfn is not None and m.mem_map._mapcount[pfn] < 0:
                    filemap_remove_folio(pfn)
        return 0
    return -errno.EINVAL


@kfunc
def do_madvise(start: int, len_in: int, behavior: int) -> int:
    from mmdbg.sim.mm.mmap import PAGE_ALIGN

    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    mm = m.current.mm
    if start & ~PAGE_MASK:
        return -errno.EINVAL
    if behavior not in VALID:
        return -errno.EINVAL
    length = PAGE_ALIGN(len_in)
    if len_in and not length:
        return -errno.EINVAL
    end = start + length
    if end < start:
        return -errno.EINVAL
    if end == start:
        return 0
    unmapped_error = 0
    pos = start
    while pos < end:
        vma = mm.mm_mt.find(pos)
        if vma is None or vma.vm_start >= end:
            unmapped_error = -errno.ENOMEM
            break
        if vma.vm_start > pos:
            unmapped_error = -errno.ENOMEM
            pos = vma.vm_start
        tmp = min(vma.vm_end, end)
        err = madvise_vma_behavior(vma, pos, tmp, behavior)
        if err:
            return err
        pos = tmp
    return unmapped_error


def sys_madvise(start: int, length: int, behavior: int) -> int:
    return do_madvise(start, length, behavior)


@kfunc
def sys_msync(start: int, length: int, flags: int) -> int:
    """msync(2): MS_SYNC writes back the dirty pages of shared file mappings."""
    from mmdbg.sim.mm.filemap import filemap_write_and_wait_range

    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    mm = m.current.mm
    if flags & ~(MS_ASYNC | MS_INVALIDATE | MS_SYNC):
        return -errno.EINVAL
    if start & ~PAGE_MASK:
        return -errno.EINVAL
    if flags & MS_ASYNC and flags & MS_SYNC:
        return -errno.EINVAL
    length = (length + 4095) & PAGE_MASK
    end = start + length
    if end < start:
        return -errno.ENOMEM
    if end == start:
        return 0
    unmapped_error = 0
    pos = start
    while True:
        vma = mm.mm_mt.find(pos)
        if vma is None:
            return -errno.ENOMEM
        if pos < vma.vm_start:
            if flags == MS_ASYNC:
                return -errno.ENOMEM
            pos = vma.vm_start
            if pos >= end:
                return -errno.ENOMEM
            unmapped_error = -errno.ENOMEM
        if flags & MS_INVALIDATE and vma.vm_flags & VM_LOCKED:
            return -errno.EBUSY
        f = vma.vm_file
        fstart = (pos - vma.vm_start) + (vma.vm_pgoff << 12)
        fend = fstart + (min(end, vma.vm_end) - pos) - 1
        pos = vma.vm_end
        if flags & MS_SYNC and f is not None and vma.vm_flags & VM_SHARED:
            err = filemap_write_and_wait_range(f.f_mapping, fstart, fend)
            if err:
                return err
        if pos >= end:
            return unmapped_error
    _ = _EXCL
