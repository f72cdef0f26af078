"""mremap (mm/mremap.c): shrink, grow in place, or move a mapping with its page tables.

Shrinking unmaps the tail.  Growing in place extends the VMA when the pages after it are free
(charging Committed_AS for accountable memory).  Otherwise, with ``MREMAP_MAYMOVE``,
``move_vma`` copies the VMA to a new address (``copy_vma``), moves every PTE there
(``move_page_tables`` -- pages are not copied, and anon pages keep their ``index`` because the
new VMA's ``vm_pgoff`` is unchanged) and unmaps the old range (kept, empty, with
``MREMAP_DONTUNMAP``).  ``MREMAP_FIXED`` moves to a given address, replacing what is there.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.arch.x86 import tlb as x86_tlb
from mmdbg.sim.arch.x86.pgtable import pte_table_alloc, pte_table_lookup
from mmdbg.sim.include.mm import (
    MAP_FIXED,
    MAP_SHARED,
    MREMAP_DONTUNMAP,
    MREMAP_FIXED,
    MREMAP_MAYMOVE,
)
from mmdbg.sim.mm.rmap import anon_vma_clone
from mmdbg.sim.mm.util import security_vm_enough_memory
from mmdbg.sim.mm.vma import (
    VM_ACCOUNT,
    VM_DONTEXPAND,
    VM_LOCKED,
    VM_MAYSHARE,
    VM_PFNMAP,
    VmAreaStruct,
    vm_area_dup,
    vm_stat_account,
)
from mmdbg.sim.trace import current_machine, kfunc

PAGE_MASK = ~4095


@kfunc
def move_page_tables(vma: VmAreaStruct, old_addr: int, new_vma: VmAreaStruct, new_addr: int,
                     length: int) -> int:
    """Move the PTEs of [old_addr, +len) to new_addr (same mm); returns bytes moved."""
    mm = vma.vm_mm
    moved = 0
    for off in range(0, length, 4096):
        src = pte_table_lookup(mm, old_addr + off)
        if src is None:
            continue
        i = (old_addr + off) >> 12 & 511
        pte = src[i]
        if not pte:
            continue
        dst = pte_table_alloc(mm, new_addr + off)
        if dst is None:
            return -errno.ENOMEM
        src[i] = 0
        dst[(new_addr + off) >> 12 & 511] = pte
        moved += 1
    if moved:
        x86_tlb.flush_tlb_range(vma, old_addr, old_addr + length)
    return moved * 4096


@kfunc
def copy_vma(vma: VmAreaStruct, addr: int, length: int, pgoff: int) -> VmAreaStruct:
    from mmdbg.sim.mm.mmap import vma_link

    new = vm_area_dup(vma)
    new.vm_start = addr
    new.vm_end = addr + length
    new.vm_pgoff = pgoff
    anon_vma_clone(new, vma)
    vma_link(vma.vm_mm, new)
    return new


@kfunc
def move_vma(vma: VmAreaStruct, old_addr: int, old_len: int, new_len: int, new_addr: int,
             flags: int) -> int:
    from mmdbg.sim.mm.mmap import do_vmi_munmap

    m = current_machine()
    mm = vma.vm_mm
    if mm.map_count >= m.sysctl["vm.max_map_count"] - 3:
        return -errno.ENOMEM
    new_pgoff = vma.vm_pgoff + ((old_addr - vma.vm_start) >> 12)
    new_vma = copy_vma(vma, new_addr, new_len, new_pgoff)
    r = move_page_tables(vma, old_addr, new_vma, new_addr, old_len)
    if r < 0:
        return r
    vm_flags = vma.vm_flags
    vm_stat_account(mm, vm_flags, new_len >> 12)
    if vm_flags & VM_LOCKED:
        mm.locked_vm += new_len >> 12
    if flags & MREMAP_DONTUNMAP:
        return new_addr
    # the old range's charge moves with the mapping: do not unaccount it on unmap
    accounted = vm_flags & VM_ACCOUNT
    if accounted:
        for v in mm.mm_mt.overlapping(old_addr, old_addr + old_len):
            v.vm_flags &= ~VM_ACCOUNT
    # keep the parts of the old VMA outside the moved range accounted
    err = do_vmi_munmap(mm, old_addr, old_len)
    if accounted:
        for v in mm.mm_mt.overlapping(max(0, old_addr - 4096), old_addr + old_len + 4096):
            if v is not new_vma and v.vm_file is vma.vm_file and v.anon_vma is vma.anon_vma \
                    and v.vm_flags | VM_ACCOUNT == vm_flags:
                v.vm_flags |= VM_ACCOUNT
    return err or new_addr


@kfunc
def do_mremap(addr: int, old_len: int, new_len: int, flags: int, new_addr: int) -> int:
    from mmdbg.sim.mm.mmap import (
        PAGE_ALIGN,
        __get_unmapped_area,
        do_vmi_munmap,
        may_expand_vm,
        mm_populate,
    )

    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    mm = m.current.mm
    if flags & ~(MREMAP_FIXED | MREMAP_MAYMOVE | MREMAP_DONTUNMAP):
        return -errno.EINVAL
    if flags & MREMAP_FIXED and not flags & MREMAP_MAYMOVE:
        return -errno.EINVAL
    if flags & MREMAP_DONTUNMAP and (not flags & MREMAP_MAYMOVE or old_len != new_len):
        return -errno.EINVAL
    if addr & ~PAGE_MASK:
        return -errno.EINVAL
    old_len = PAGE_ALIGN(old_len)
    new_len = PAGE_ALIGN(new_len)
    if not new_len:
        return -errno.EINVAL
    vma = mm.vma_lookup(addr)
    if vma is None:
        return -errno.EFAULT
    if flags & MREMAP_FIXED:
        if new_addr & ~PAGE_MASK:
            return -errno.EINVAL
        if new_addr + new_len > mm.task_size or (new_addr <= addr < new_addr + new_len) or \
                (addr <= new_addr < addr + old_len):
            return -errno.EINVAL
        err = do_vmi_munmap(mm, new_addr, new_len)
        if err:
            return err
        if old_len > new_len:
            err = do_vmi_munmap(mm, addr + new_len, old_len - new_len)
            if err:
                return err
            old_len = new_len
        vma = mm.vma_lookup(addr)
        return _move(m, mm, vma, addr, old_len, new_len, new_addr, flags)
    if old_len >= new_len and not flags & MREMAP_DONTUNMAP:
        if old_len > new_len:
            err = do_vmi_munmap(mm, addr + new_len, old_len - new_len)
            if err:
                return err
        return addr
    if not old_len or addr + old_len > vma.vm_end:
        return -errno.EFAULT
    if vma.vm_flags & (VM_DONTEXPAND | VM_PFNMAP):
        return -errno.EFAULT
    delta = (new_len - old_len) >> 12
    if vma.vm_flags & VM_LOCKED:
        from mmdbg.sim.mm.mlock import mlock_future_ok

        if not mlock_future_ok(mm, vma.vm_flags, new_len - old_len):
            return -errno.EAGAIN
    if not may_expand_vm(mm, vma.vm_flags, delta):
        return -errno.ENOMEM
    if not flags & MREMAP_DONTUNMAP and addr + old_len == vma.vm_end:
        nxt = mm.mm_mt.find(vma.vm_end)
        if nxt is None or nxt.vm_start >= addr + new_len:
            if addr + new_len <= mm.task_size:
                if vma.vm_flags & VM_ACCOUNT and security_vm_enough_memory(m, mm, delta):
                    return -errno.ENOMEM
                mm.mm_mt.remove(vma)
                vma.vm_end = addr + new_len
                mm.mm_mt.insert(vma)
                vm_stat_account(mm, vma.vm_flags, delta)
                if vma.vm_flags & VM_LOCKED:
                    mm.locked_vm += delta
                    mm_populate(addr + old_len, new_len - old_len)
                return addr
    if not flags & MREMAP_MAYMOVE:
        return -errno.ENOMEM
    map_flags = MAP_SHARED if vma.vm_flags & VM_MAYSHARE else 0
    pgoff = vma.vm_pgoff + ((addr - vma.vm_start) >> 12)
    new_addr = __get_unmapped_area(vma.vm_file, 0, new_len, pgoff, map_flags, vma.vm_flags)
    if new_addr < 0:
        return new_addr
    _ = MAP_FIXED
    return _move(m, mm, vma, addr, old_len, new_len, new_addr, flags)


def _move(m: Any, mm: Any, vma: VmAreaStruct, addr: int, old_len: int, new_len: int,
          new_addr: int, flags: int) -> int:
    if vma.vm_flags & VM_ACCOUNT:
        charge = (new_len >> 12) if flags & MREMAP_DONTUNMAP else (new_len - old_len) >> 12
        if charge > 0 and security_vm_enough_memory(m, mm, charge):
            return -errno.ENOMEM
    ret = move_vma(vma, addr, old_len, new_len, new_addr, flags)
    if ret >= 0 and vma.vm_flags & VM_LOCKED and new_len > old_len:
        from mmdbg.sim.mm.mmap import mm_populate

        mm_populate(new_addr + old_len, new_len - old_len)
    return ret


def sys_mremap(addr: int, old_len: int, new_len: int, flags: int, new_addr: int = 0) -> int:
    return do_mremap(addr, old_len, new_len, flags, new_addr)
