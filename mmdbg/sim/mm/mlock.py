"""mlock, munlock, mlockall (mm/mlock.c).

A locked VMA carries ``VM_LOCKED`` (and ``VM_LOCKONFAULT`` for ``MLOCK_ONFAULT``); its pages
are faulted in at once (unless on-fault) and marked ``PG_mlocked``, counted in the zone's
``nr_mlock`` and in ``mm->locked_vm``.  ``RLIMIT_MEMLOCK`` (8 MiB) applies to tasks without
CAP_IPC_LOCK (uid != 0 here).  The folio's mlock_count lives in ``vm.mlock_count``.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.include.mm import MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT, MLOCK_ONFAULT
from mmdbg.sim.mm import memory
from mmdbg.sim.mm.vma import VM_LOCKED, VM_LOCKED_MASK, VM_LOCKONFAULT, VM_SPECIAL, VmAreaStruct
from mmdbg.sim.trace import current_machine, kfunc

PAGE_MASK = ~4095


def can_do_mlock(t: Any) -> bool:
    return t.euid == 0


def mlock_future_ok(mm: Any, flags: int, length: int) -> bool:
    from mmdbg.sim.mm.mmap import RLIMIT_MEMLOCK, rlimit

    m = current_machine()
    if not flags & VM_LOCKED or can_do_mlock(m.current):
        return True
    return (length >> 12) + mm.locked_vm <= rlimit(m.current, RLIMIT_MEMLOCK) >> 12


def _for_each_mapped(vma: VmAreaStruct, start: int, end: int) -> list[int]:
    from mmdbg.sim.arch.x86.pgtable import pte_table_lookup

    out = []
    for a in range(start, end, 4096):
        t = pte_table_lookup(vma.vm_mm, a)
        if t is None:
            continue
        pte = t[a >> 12 & 511]
        if pte & 0x101 and not pte & 0x200:
            out.append((pte >> 12) & 0xFFFFFFFFFF)
    return out


@kfunc
def mlock_fixup(vma: VmAreaStruct, start: int, end: int, newflags: int) -> int:
    m = current_machine()
    mm = vma.vm_mm
    oldflags = vma.vm_flags
    if newflags == oldflags or oldflags & VM_SPECIAL:
        return 0
    from mmdbg.sim.mm.mmap import vma_modify_flags

    nr_pages = (end - start) >> 12
    lock = bool(newflags & VM_LOCKED)
    r = vma_modify_flags(vma, start, end, newflags)
    if isinstance(r, int):
        return r
    if lock and not oldflags & VM_LOCKED:
        mm.locked_vm += nr_pages
        for pfn in _for_each_mapped(r, start, end):
            memory.mlock_new_folio(m, pfn)
    elif not lock and oldflags & VM_LOCKED:
        mm.locked_vm -= nr_pages
        for pfn in _for_each_mapped(r, start, end):
            memory.munlock_folio(m, pfn)
    return 0


def apply_vma_lock_flags(m: Any, start: int, length: int, flags: int) -> int:
    mm = m.current.mm
    end = start + length
    vmas = mm.mm_mt.overlapping(start, end)
    if not vmas or vmas[0].vm_start > start:
        return -errno.ENOMEM
    pos = start
    for v in vmas:
        if v.vm_start > pos:
            return -errno.ENOMEM
        pos = v.vm_end
    if pos < end:
        return -errno.ENOMEM
    nstart = start
    while nstart < end:
        v = mm.mm_mt.find(nstart)
        tmp = min(v.vm_end, end)
        newflags = (v.vm_flags & ~VM_LOCKED_MASK) | flags
        err = mlock_fixup(v, nstart, tmp, newflags)
        if err:
            return err
        nstart = tmp
    return 0


@kfunc
def do_mlock(start: int, length: int, flags: int) -> int:
    from mmdbg.sim.mm.mmap import PAGE_ALIGN, RLIMIT_MEMLOCK, __mm_populate, rlimit

    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    mm = m.current.mm
    length = PAGE_ALIGN(length + (start & 4095))
    start &= PAGE_MASK
    if not can_do_mlock(m.current):
        lock_limit = rlimit(m.current, RLIMIT_MEMLOCK) >> 12
        already = sum((min(v.vm_end, start + length) - max(v.vm_start, start)) >> 12
                      for v in mm.mm_mt.overlapping(start, start + length)
                      if v.vm_flags & VM_LOCKED)
        if (length >> 12) + mm.locked_vm - already > lock_limit:
            return -errno.ENOMEM
    err = apply_vma_lock_flags(m, start, length, flags)
    if err:
        return err
    if not flags & VM_LOCKONFAULT:
        err = __mm_populate(start, length, 0)
        if err == -errno.ENOMEM:
            return -errno.EAGAIN
        if err == -errno.EFAULT:
            return -errno.ENOMEM
    return 0


def sys_mlock(start: int, length: int) -> int:
    return do_mlock(start, length, VM_LOCKED)


def sys_mlock2(start: int, length: int, flags: int) -> int:
    if flags & ~MLOCK_ONFAULT:
        return -errno.EINVAL
    vm_flags = VM_LOCKED | (VM_LOCKONFAULT if flags & MLOCK_ONFAULT else 0)
    return do_mlock(start, length, vm_flags)


def sys_munlock(start: int, length: int) -> int:
    from mmdbg.sim.mm.mmap import PAGE_ALIGN

    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    length = PAGE_ALIGN(length + (start & 4095))
    start &= PAGE_MASK
    return apply_vma_lock_flags(m, start, length, 0)


def sys_mlockall(flags: int) -> int:
    from mmdbg.sim.mm.mmap import __mm_populate

    m = current_machine()
    if not flags or flags & ~(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) or flags == MCL_ONFAULT:
        return -errno.EINVAL
    mm = m.current.mm
    to_add = VM_LOCKED | (VM_LOCKONFAULT if flags & MCL_ONFAULT else 0)
    mm.def_flags &= ~VM_LOCKED_MASK
    if flags & MCL_FUTURE:
        mm.def_flags |= to_add
    if flags & MCL_CURRENT:
        for v in list(mm.mm_mt.vmas):
            if v.vm_flags & VM_SPECIAL:
                continue
            err = mlock_fixup(v, v.vm_start, v.vm_end, (v.vm_flags & ~VM_LOCKED_MASK) | to_add)
            if err:
                return err
        if not flags & MCL_ONFAULT:
            for v in list(mm.mm_mt.vmas):
                if v.vm_flags & VM_LOCKED:
                    __mm_populate(v.vm_start, v.vm_end - v.vm_start, 1)
    return 0


def sys_munlockall() -> int:
    m = current_machine()
    mm = m.current.mm
    mm.def_flags &= ~VM_LOCKED_MASK
    for v in list(mm.mm_mt.vmas):
        if v.vm_flags & VM_LOCKED_MASK:
            mlock_fixup(v, v.vm_start, v.vm_end, v.vm_flags & ~VM_LOCKED_MASK)
    return 0
