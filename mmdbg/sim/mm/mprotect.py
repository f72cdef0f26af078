"""mprotect (mm/mprotect.c): change a range's protection, splitting and merging VMAs.

``do_mprotect_pkey`` walks the VMAs of [start, end) (a hole is -ENOMEM, a protection the
VMA's VM_MAY* bits forbid is -EACCES); ``mprotect_fixup`` charges Committed_AS when a private
mapping becomes writable, splits/merges through ``vma_modify_flags`` and
``change_protection`` rewrites the present PTEs (``change_pte_range``), flushing the TLB for
the range.  Write permission returns to a PTE only where no CoW or dirty tracking needs the
fault (an exclusive anon page, or a dirty page of a shared mapping); elsewhere the next write
faults as the kernel's does.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.arch.x86 import tlb as x86_tlb
from mmdbg.sim.include.mm import (
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
)
from mmdbg.sim.mm import memory
from mmdbg.sim.mm.util import security_vm_enough_memory, vm_unacct_memory
from mmdbg.sim.mm.vma import (
    VM_ACCOUNT,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGETLB,
    VM_NORESERVE,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    VmAreaStruct,
    vm_stat_account,
)
from mmdbg.sim.trace import current_machine, kfunc

PAGE_MASK = ~4095


@kfunc
def change_protection(vma: VmAreaStruct, start: int, end: int) -> int:
    """Rewrite the PTEs of [start, end) with ``vma->vm_page_prot``; pages changed."""
    m = current_machine()
    mm = vma.vm_mm
    shifts = mm.paging.shifts
    last = len(shifts) - 1
    newprot = vma.vm_page_prot
    pages = 0

    def walk(t: Any, level: int, a: int, e: int) -> None:
        nonlocal pages
        s = shifts[level]
        while a < e:
            nxt = min(((a >> s) + 1) << s, e)
            c = t[a >> s & 511]
            if c is not None:
                if level + 1 == last:
                    pages += memory.change_pte_range(m, vma, c, a, nxt, newprot)
                else:
                    walk(c, level + 1, a, nxt)
            a = nxt

    walk(mm.pgd, 0, start, end)
    if pages:
        x86_tlb.flush_tlb_range(vma, start, end)
    return pages


@kfunc
def mprotect_fixup(vma: VmAreaStruct, start: int, end: int, newflags: int) -> Any:
    from mmdbg.sim.mm.mmap import vma_modify_flags

    m = current_machine()
    mm = vma.vm_mm
    oldflags = vma.vm_flags
    nrpages = (end - start) >> 12
    if newflags == oldflags:
        return vma
    charged = 0
    if newflags & VM_WRITE:
        if not oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE):
            charged = nrpages
            if security_vm_enough_memory(m, mm, charged):
                return -errno.ENOMEM
            newflags |= VM_ACCOUNT
    elif oldflags & VM_ACCOUNT and vma.vm_ops is None and vma.anon_vma is None:
        newflags &= ~VM_ACCOUNT
    r = vma_modify_flags(vma, start, end, newflags)
    if isinstance(r, int):
        if charged:
            vm_unacct_memory(m, charged)
        return r
    if oldflags & VM_ACCOUNT and not newflags & VM_ACCOUNT:
        vm_unacct_memory(m, nrpages)
    change_protection(r, start, end)
    vm_stat_account(mm, oldflags, -nrpages)
    vm_stat_account(mm, newflags, nrpages)
    return r


@kfunc
def do_mprotect_pkey(start: int, length: int, prot: int, pkey: int = -1) -> int:
    from mmdbg.sim.mm.mmap import PAGE_ALIGN, calc_vm_prot_bits

    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    mm = m.current.mm
    grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP)
    prot &= ~(PROT_GROWSDOWN | PROT_GROWSUP)
    if grows == PROT_GROWSDOWN | PROT_GROWSUP:
        return -errno.EINVAL
    if start & ~PAGE_MASK:
        return -errno.EINVAL
    if not length:
        return 0
    length = PAGE_ALIGN(length)
    end = start + length
    if end <= start:
        return -errno.ENOMEM
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM):
        return -errno.EINVAL
    vma = mm.mm_mt.find(start)
    if vma is None:
        return -errno.ENOMEM
    if grows & PROT_GROWSDOWN:
        if vma.vm_start >= end:
            return -errno.ENOMEM
        start = vma.vm_start
        if not vma.vm_flags & VM_GROWSDOWN:
            return -errno.EINVAL
    elif vma.vm_start > start:
        return -errno.ENOMEM
    nstart = start
    newbits = calc_vm_prot_bits(prot)
    if m.current.personality_read_implies_exec and prot & PROT_READ:
        newbits |= VM_EXEC
    while True:
        vma = mm.mm_mt.find(nstart)
        if vma is None or (vma.vm_start != nstart and vma.vm_start > nstart):
            return -errno.ENOMEM
        newflags = newbits | (vma.vm_flags & ~(VM_READ | VM_WRITE | VM_EXEC))
        if (newflags & ~(newflags >> 4)) & (VM_READ | VM_WRITE | VM_EXEC):
            return -errno.EACCES
        tmp = min(vma.vm_end, end)
        r = mprotect_fixup(vma, nstart, tmp, newflags)
        if isinstance(r, int):
            return r
        nstart = tmp
        if nstart >= end:
            return 0


def sys_mprotect(start: int, length: int, prot: int) -> int:
    return do_mprotect_pkey(start, length, prot, -1)
