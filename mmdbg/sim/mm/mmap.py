"""mmap, munmap, brk, stack growth and exit_mmap (mm/mmap.c, mm/vma.c, arch/x86/mm/mmap.c).

::

    ksys_mmap_pgoff -> vm_mmap_pgoff -> do_mmap -> __get_unmapped_area
                          (arch_get_unmapped_area_topdown -> vm_unmapped_area [tp])
                       -> mmap_region (may_expand_vm, __vm_enough_memory, merge or new VMA,
                                       f_op->mmap / shmem_zero_setup, vma_link [tp vma_store])
                    -> mm_populate (MAP_POPULATE, VM_LOCKED)
    __vm_munmap -> do_vmi_munmap -> do_vmi_align_munmap (__split_vma, detach)
                -> vms_complete_munmap_vmas -> unmap_region (unmap_vmas, free_pgtables)
                -> remove_vma
    brk -> do_brk_flags | do_vmi_munmap
    exit_mmap [tp] -> unmap_vmas, free_pgtables, remove_vma, vm_unacct_memory

The address-space layout is x86_64's: ``mmap_base`` = TASK_SIZE - gap - random (28 bits of
page randomisation, ``vm.mmap_rnd_bits``), allocation top-down below it, falling back to a
bottom-up search; stack VMAs keep ``stack_guard_gap`` (256 pages) free below them.
Randomisation uses the machine's seeded RNG and honours ``kernel.randomize_va_space``.

System-call entry points (``sys_mmap`` ...) return what the kernel returns: an address or a
negative errno.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Any

from mmdbg.sim.arch.x86.pgtable import DEFAULT_MAP_WINDOW, vm_get_page_prot
from mmdbg.sim.include.mm import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_GROWSDOWN,
    MAP_HUGETLB,
    MAP_LOCKED,
    MAP_NONBLOCK,
    MAP_NORESERVE,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_STACK,
    MAP_SYNC,
    MAP_TYPE,
    PROT_EXEC,
    PROT_GROWSDOWN,
    PROT_GROWSUP,
    PROT_READ,
    PROT_SEM,
    PROT_WRITE,
    VmOperations,
)
from mmdbg.sim.mm import memory
from mmdbg.sim.mm.rmap import anon_vma_clone, unlink_anon_vmas
from mmdbg.sim.mm.util import security_vm_enough_memory, vm_unacct_memory
from mmdbg.sim.mm.vma import (
    MM_FILEPAGES,
    NR_MM_COUNTERS,
    RESIDENT_PAGE_TYPES,
    VM_ACCOUNT,
    VM_DATA_DEFAULT_FLAGS,
    VM_DONTEXPAND,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGETLB,
    VM_IO,
    VM_LOCKED,
    VM_LOCKED_MASK,
    VM_MAYEXEC,
    VM_MAYREAD,
    VM_MAYSHARE,
    VM_MAYWRITE,
    VM_NOHUGEPAGE,
    VM_NORESERVE,
    VM_PFNMAP,
    VM_READ,
    VM_SHARED,
    VM_SOFTDIRTY,
    VM_SPECIAL,
    VM_SYNC,
    VM_WRITE,
    MmStruct,
    VmAreaStruct,
    can_vma_merge,
    kobj_slab_alloc,
    kobj_slab_free,
    vm_area_dup,
    vm_stat_account,
)
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

PAGE_SIZE = 4096
PAGE_MASK = ~(PAGE_SIZE - 1)
SZ_128M = 128 << 20
SZ_1G = 1 << 30
STACK_RND_MASK = 0x3FFFFF
STACK_GUARD_GAP = 256 << 12
RLIM_INFINITY = (1 << 64) - 1
RLIMIT_STACK = 3
RLIMIT_DATA = 2
RLIMIT_MEMLOCK = 8
RLIMIT_AS = 9
DEFAULT_RLIMITS = {RLIMIT_STACK: 8 << 20, RLIMIT_DATA: RLIM_INFINITY,
                   RLIMIT_MEMLOCK: 8 << 20, RLIMIT_AS: RLIM_INFINITY}
FIRST_USER_ADDRESS = 0
OVERCOMMIT_NEVER = 2

_tp_unmapped = declare_tracepoint("mmap:vm_unmapped_area")
_tp_exit_mmap = declare_tracepoint("mmap:exit_mmap")


def PAGE_ALIGN(x: int) -> int:
    return (x + PAGE_SIZE - 1) & PAGE_MASK


def rlimit(t: Any, res: int) -> int:
    rl = getattr(t, "rlim", None)
    if rl is None:
        return DEFAULT_RLIMITS.get(res, RLIM_INFINITY)
    return rl.get(res, DEFAULT_RLIMITS.get(res, RLIM_INFINITY))


# -- vm_operations for files ------------------------------------------------------------------
def _fault(vmf: Any) -> int:
    from mmdbg.sim.mm import filemap

    return filemap.filemap_fault(vmf)


def _map_pages(vmf: Any, start: int, end: int) -> int:
    from mmdbg.sim.mm import filemap

    return filemap.filemap_map_pages(vmf, start, end)


def _page_mkwrite(vmf: Any) -> int:
    from mmdbg.sim.mm import filemap

    return filemap.filemap_page_mkwrite(vmf)


def _shmem_fault(vmf: Any) -> int:
    from mmdbg.sim.mm import filemap

    return filemap.shmem_fault(vmf)


def _sigbus_fault(vmf: Any) -> int:
    from mmdbg.sim.include.mm import VM_FAULT_SIGBUS

    return VM_FAULT_SIGBUS


generic_file_vm_ops = VmOperations("generic_file_vm_ops", _fault, _map_pages, _page_mkwrite)
shmem_anon_vm_ops = VmOperations("shmem_anon_vm_ops", _shmem_fault, _map_pages, None)
special_mapping_vmops = VmOperations("special_mapping_vmops", _sigbus_fault, None, None)


# -- layout -------------------------------------------------------------------------------------
def randomize_va_space(m: Any) -> int:
    return m.sysctl.get("kernel.randomize_va_space", 2)


def arch_mmap_rnd(m: Any) -> int:
    return m.rng.getrandbits(28) << 12


def stack_maxrandom_size(m: Any) -> int:
    return STACK_RND_MASK << 12 if randomize_va_space(m) else 0


def mmap_base(m: Any, rnd: int, task_size: int, rlim_stack: int) -> int:
    gap = rlim_stack
    pad = stack_maxrandom_size(m) + STACK_GUARD_GAP
    gap += pad
    gap_min = SZ_128M
    gap_max = (task_size // 6) * 5
    gap = min(max(gap, gap_min), gap_max)
    return PAGE_ALIGN(task_size - gap - rnd)


@kfunc
def arch_pick_mmap_layout(mm: MmStruct, rlim_stack: int) -> None:
    """mmap_base below the stack, randomised with the machine's RNG (28 bits of pages)."""
    m = current_machine()
    rnd = arch_mmap_rnd(m) if randomize_va_space(m) else 0
    mm.mmap_base = mmap_base(m, rnd, DEFAULT_MAP_WINDOW, rlim_stack)
    mm.mmap_legacy_base = PAGE_ALIGN(DEFAULT_MAP_WINDOW // 3) + rnd


def vm_start_gap(vma: VmAreaStruct) -> int:
    s = vma.vm_start
    if vma.vm_flags & VM_GROWSDOWN:
        s -= STACK_GUARD_GAP
        if s > vma.vm_start:
            s = 0
    return max(s, 0)


def vm_end_gap(vma: VmAreaStruct) -> int:
    return vma.vm_end


class VmUnmappedAreaInfo:
    """``struct vm_unmapped_area_info``."""

    __slots__ = ("align_mask", "align_offset", "flags", "high_limit", "length", "low_limit",
                 "start_gap")
    ktype = "vm_unmapped_area_info"
    VM_UNMAPPED_AREA_TOPDOWN = 1

    def __init__(self, length: int, low: int, high: int, topdown: bool) -> None:
        self.flags = 1 if topdown else 0
        self.length = length
        self.low_limit = low
        self.high_limit = high
        self.align_mask = 0
        self.align_offset = 0
        self.start_gap = 0


@kfunc
def vm_unmapped_area(info: VmUnmappedAreaInfo) -> int:
    m = current_machine()
    mm = m.current.mm
    if info.flags & 1:
        addr = unmapped_area_topdown(mm, info)
    else:
        addr = unmapped_area(mm, info)
    if _tp_unmapped.enabled:
        _tp_unmapped.fire(addr=addr & ((1 << 64) - 1), total_vm=mm.total_vm, flags=info.flags,
                          length=info.length, low_limit=info.low_limit,
                          high_limit=info.high_limit, align_mask=info.align_mask,
                          align_offset=info.align_offset)
    return addr


def unmapped_area_topdown(mm: MmStruct, info: VmUnmappedAreaInfo) -> int:
    length = info.length
    vmas = mm.mm_mt.vmas
    high = info.high_limit
    # gaps from the top: [prev.vm_end, vm_start_gap(vma)) clipped to [low, high)
    for i in range(len(vmas), -1, -1):
        gap_end = vm_start_gap(vmas[i]) if i < len(vmas) else high
        gap_start = vm_end_gap(vmas[i - 1]) if i > 0 else 0
        gap_end = min(gap_end, high)
        gap_start = max(gap_start, info.low_limit)
        if gap_end - gap_start >= length:
            addr = (gap_end - length) & ~info.align_mask
            if addr >= gap_start:
                return addr
    return -errno.ENOMEM


def unmapped_area(mm: MmStruct, info: VmUnmappedAreaInfo) -> int:
    length = info.length
    vmas = mm.mm_mt.vmas
    for i in range(len(vmas) + 1):
        gap_start = max(vm_end_gap(vmas[i - 1]) if i > 0 else 0, info.low_limit)
        gap_end = min(vm_start_gap(vmas[i]) if i < len(vmas) else info.high_limit,
                      info.high_limit)
        gap_start = (gap_start + info.align_mask) & ~info.align_mask
        if gap_end - gap_start >= length:
            return gap_start
    return -errno.ENOMEM


@kfunc(aliases=("mm_get_unmapped_area", "arch_get_unmapped_area"))
def arch_get_unmapped_area_topdown(file: Any, addr: int, length: int, pgoff: int,
                                   flags: int) -> int:
    m = current_machine()
    mm = m.current.mm
    task_size = mm.task_size
    if length > task_size:
        return -errno.ENOMEM
    if flags & MAP_FIXED:
        return addr
    high = mm.mmap_base
    # 5-level paging: a hint above the 47-bit window opts into the full address space
    if addr > DEFAULT_MAP_WINDOW - length:
        high = task_size
    if addr:
        addr = PAGE_ALIGN(addr)
        vma = mm.mm_mt.find(addr)
        prev = mm.mm_mt.prev_of_addr(addr)
        if task_size - length >= addr and addr >= m.sysctl["vm.mmap_min_addr"] and \
                (vma is None or addr + length <= vm_start_gap(vma)) and \
                (prev is None or addr >= vm_end_gap(prev)):
            return addr
    low = max(PAGE_SIZE, m.sysctl["vm.mmap_min_addr"])
    info = VmUnmappedAreaInfo(length, low, high, True)
    a = vm_unmapped_area(info)
    if a >= 0:
        return a
    info = VmUnmappedAreaInfo(length, mm.mmap_legacy_base, task_size, False)
    return vm_unmapped_area(info)


@kfunc
def __get_unmapped_area(file: Any, addr: int, length: int, pgoff: int, flags: int,
                        vm_flags: int) -> int:
    m = current_machine()
    mm = m.current.mm
    if length > mm.task_size:
        return -errno.ENOMEM
    addr = arch_get_unmapped_area_topdown(file, addr, length, pgoff, flags)
    if addr < 0:
        return addr
    if addr > mm.task_size - length:
        return -errno.ENOMEM
    if addr & ~PAGE_MASK:
        return -errno.EINVAL
    if addr < m.sysctl["vm.mmap_min_addr"] and m.current.euid != 0:
        return -errno.EPERM  # security_mmap_addr
    return addr


# -- VMA bookkeeping ------------------------------------------------------------------------------
def may_expand_vm(mm: MmStruct, flags: int, npages: int) -> bool:
    m = current_machine()
    if mm.total_vm + npages > rlimit(m.current, RLIMIT_AS) >> 12:
        return False
    return not (flags & (VM_WRITE | VM_SHARED | VM_GROWSDOWN) == VM_WRITE and mm.data_vm + npages > rlimit(m.current, RLIMIT_DATA) >> 12)


def vma_set_page_prot(vma: VmAreaStruct) -> None:
    """vm_page_prot from vm_flags; shared writable file mappings start write-protected so
    the first write reaches ->page_mkwrite (vma_wants_writenotify)."""
    flags = vma.vm_flags
    if flags & VM_SHARED and flags & VM_WRITE and vma.vm_ops is not None and \
            vma.vm_ops.page_mkwrite is not None:
        flags &= ~VM_SHARED
    vma.vm_page_prot = vm_get_page_prot(flags)


def vma_link(mm: MmStruct, vma: VmAreaStruct) -> None:
    mm.mm_mt.insert(vma)
    mm.map_count += 1
    if vma.vm_file is not None:
        vma.vm_file.f_mapping.i_mmap.append(vma)


def vma_unlink_file(vma: VmAreaStruct) -> None:
    if vma.vm_file is not None:
        with contextlib.suppress(ValueError):
            vma.vm_file.f_mapping.i_mmap.remove(vma)


@kfunc(aliases=("vm_area_free",))
def remove_vma(vma: VmAreaStruct) -> None:
    """Drop a detached VMA: its file reference and its anon_vma links."""
    unlink_anon_vmas(vma)
    vma_unlink_file(vma)
    if vma.vm_file is not None:
        vma.vm_file.put()
    kobj_slab_free(current_machine(), vma)  # vm_area_free -> kmem_cache_free


def new_vma(mm: MmStruct, start: int, end: int, flags: int, pgoff: int,
            file: Any = None) -> VmAreaStruct:
    m = current_machine()
    v = VmAreaStruct(mm, start, end, flags, pgoff, file)
    kobj_slab_alloc(m, v, "vm_area_struct", 184)  # vm_area_alloc
    return v


@kfunc
def __split_vma(vma: VmAreaStruct, addr: int, new_below: int) -> int:
    """Split ``vma`` at ``addr``; the new VMA takes the lower (new_below) or upper part."""
    m = current_machine()
    mm = vma.vm_mm
    if mm.map_count >= m.sysctl["vm.max_map_count"]:
        return -errno.ENOMEM
    new = vm_area_dup(vma)
    if new_below:
        new.vm_end = addr
    else:
        new.vm_start = addr
        new.vm_pgoff += (addr - vma.vm_start) >> 12
    anon_vma_clone(new, vma)
    mm.mm_mt.remove(vma)
    if new_below:
        vma.vm_pgoff += (addr - vma.vm_start) >> 12
        vma.vm_start = addr
    else:
        vma.vm_end = addr
    mm.mm_mt.insert(vma)
    vma_link(mm, new)
    return 0


def split_vma(vma: VmAreaStruct, addr: int, new_below: int) -> int:
    return __split_vma(vma, addr, new_below)


def vma_merge_with(prev: VmAreaStruct, nxt: VmAreaStruct) -> VmAreaStruct:
    """``prev`` absorbs the adjacent ``nxt`` (the caller checked can_vma_merge)."""
    from mmdbg.sim.mm.rmap import anon_vma_chain_link

    mm = prev.vm_mm
    if prev.anon_vma is None and nxt.anon_vma is not None:
        prev.anon_vma = nxt.anon_vma
        nxt.anon_vma.num_active_vmas += 1
        for av in nxt.anon_vma_chain:
            anon_vma_chain_link(prev, av)
    mm.mm_mt.remove(nxt)
    mm.map_count -= 1
    mm.mm_mt.remove(prev)
    prev.vm_end = nxt.vm_end
    mm.mm_mt.insert(prev)
    remove_vma(nxt)
    return prev


def vma_try_merge(vma: VmAreaStruct) -> VmAreaStruct:
    """Merge ``vma`` with its neighbours where the kernel would (vma_merge_existing_range)."""
    mt = vma.vm_mm.mm_mt
    prev = mt.prev(vma)
    if prev is not None and can_vma_merge(prev, vma):
        vma = vma_merge_with(prev, vma)
    nxt = mt.next(vma)
    if nxt is not None and can_vma_merge(vma, nxt):
        vma = vma_merge_with(vma, nxt)
    return vma


@kfunc
def vma_modify_flags(vma: VmAreaStruct, start: int, end: int, newflags: int) -> Any:
    """Give [start, end) of ``vma`` new flags: split at the edges, then try merging."""
    if vma.vm_start < start:
        err = __split_vma(vma, start, 1)
        if err:
            return err
    if vma.vm_end > end:
        err = __split_vma(vma, end, 0)
        if err:
            return err
    vma.vm_flags = newflags
    vma_set_page_prot(vma)
    return vma_try_merge(vma)


# -- mmap ------------------------------------------------------------------------------------------
def calc_vm_prot_bits(prot: int) -> int:
    return ((VM_READ if prot & PROT_READ else 0) | (VM_WRITE if prot & PROT_WRITE else 0)
            | (VM_EXEC if prot & PROT_EXEC else 0))


def calc_vm_flag_bits(flags: int) -> int:
    out = 0
    if flags & MAP_GROWSDOWN:
        out |= VM_GROWSDOWN
    if flags & MAP_LOCKED:
        out |= VM_LOCKED
    if flags & MAP_SYNC:
        out |= VM_SYNC
    if flags & MAP_STACK:
        out |= VM_NOHUGEPAGE
    return out


def accountable_mapping(file: Any, vm_flags: int) -> bool:
    return vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE) == VM_WRITE


@kfunc
def do_mmap(file: Any, addr: int, length: int, prot: int, flags: int, vm_flags: int,
            pgoff: int) -> tuple[int, int]:
    """Validate and place a mapping; returns (address or -errno, bytes to populate)."""
    m = current_machine()
    mm = m.current.mm
    if not length:
        return -errno.EINVAL, 0
    if prot & PROT_READ and m.current.personality_read_implies_exec:
        prot |= PROT_EXEC
    if flags & MAP_FIXED_NOREPLACE:
        flags |= MAP_FIXED
    if not flags & MAP_FIXED:
        addr = max(addr, m.sysctl["vm.mmap_min_addr"]) if addr else 0
        addr = addr & PAGE_MASK if addr else 0
    length = PAGE_ALIGN(length)
    if not length or length > (1 << 64) - PAGE_SIZE:
        return -errno.ENOMEM, 0
    if (pgoff + (length >> 12)) >= 1 << 52:
        return -errno.EOVERFLOW, 0
    if mm.map_count > m.sysctl["vm.max_map_count"]:
        return -errno.ENOMEM, 0
    if flags & MAP_FIXED and addr & ~PAGE_MASK:
        return -errno.EINVAL, 0
    addr = __get_unmapped_area(file, addr, length, pgoff, flags, vm_flags)
    if addr < 0:
        return addr, 0
    if flags & MAP_FIXED_NOREPLACE:
        if mm.mm_mt.overlapping(addr, addr + length):
            return -errno.EEXIST, 0
    vm_flags |= calc_vm_prot_bits(prot) | calc_vm_flag_bits(flags) | mm.def_flags \
        | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
    if flags & MAP_LOCKED:
        from mmdbg.sim.mm.mlock import mlock_future_ok

        if not mlock_future_ok(mm, vm_flags | VM_LOCKED, length):
            return -errno.EAGAIN, 0
    mtype = flags & MAP_TYPE
    if file is not None:
        inode = file.f_inode
        if mtype in (MAP_SHARED, MAP_SHARED_VALIDATE):
            if prot & PROT_WRITE and "w" not in file.f_mode and "+" not in file.f_mode:
                return -errno.EACCES, 0
            if "r" not in file.f_mode and "+" not in file.f_mode:
                return -errno.EACCES, 0
            vm_flags |= VM_SHARED | VM_MAYSHARE
            if "w" not in file.f_mode and "+" not in file.f_mode:
                vm_flags &= ~(VM_MAYWRITE | VM_SHARED)
        elif mtype == MAP_PRIVATE:
            if "r" not in file.f_mode and "+" not in file.f_mode and file.f_mode != "rw":
                return -errno.EACCES, 0
        else:
            return -errno.EINVAL, 0
        _ = inode
    else:
        if mtype in (MAP_SHARED, MAP_SHARED_VALIDATE):
            if vm_flags & (VM_GROWSDOWN | 0):
                return -errno.EINVAL, 0
            pgoff = 0
            vm_flags |= VM_SHARED | VM_MAYSHARE
        elif mtype == MAP_PRIVATE:
            pgoff = addr >> 12
        else:
            return -errno.EINVAL, 0
    if flags & MAP_NORESERVE and m.sysctl["vm.overcommit_memory"] != OVERCOMMIT_NEVER:
        vm_flags |= VM_NORESERVE
    addr = mmap_region(file, addr, length, vm_flags, pgoff)
    populate = 0
    if addr >= 0 and (vm_flags & VM_LOCKED or
                      flags & (MAP_POPULATE | MAP_NONBLOCK) == MAP_POPULATE):
        populate = length
    return addr, populate


@kfunc(aliases=("__mmap_region",))
def mmap_region(file: Any, addr: int, length: int, vm_flags: int, pgoff: int) -> int:
    m = current_machine()
    mm = m.current.mm
    end = addr + length
    pglen = length >> 12
    overlap = mm.mm_mt.overlapping(addr, end)
    nr_overlap = sum((min(v.vm_end, end) - max(v.vm_start, addr)) >> 12 for v in overlap)
    if not may_expand_vm(mm, vm_flags, pglen - nr_overlap):
        return -errno.ENOMEM
    if overlap:
        err = do_vmi_munmap(mm, addr, length)
        if err:
            return err
    charged = 0
    if accountable_mapping(file, vm_flags):
        charged = pglen
        if security_vm_enough_memory(m, mm, charged):
            return -errno.ENOMEM
        vm_flags |= VM_ACCOUNT
    vm_flags |= VM_SOFTDIRTY
    # vma_merge_new_range: extend an anonymous neighbour instead of adding a VMA
    if file is None and not vm_flags & (VM_SHARED | VM_SPECIAL):
        probe = VmAreaStruct(mm, addr, end, vm_flags, pgoff)
        prev = mm.mm_mt.prev_of_addr(addr)
        nxt = mm.mm_mt.find(end)
        if prev is not None and prev.vm_end == addr and prev.vm_ops is None and \
                can_vma_merge(prev, probe):
            mm.mm_mt.remove(prev)
            prev.vm_end = end
            mm.mm_mt.insert(prev)
            v = prev
            if nxt is not None and nxt.vm_start == end and can_vma_merge(v, nxt):
                v = vma_merge_with(v, nxt)
            return _mmap_complete(mm, v, addr, length, vm_flags)
        if nxt is not None and nxt.vm_start == end and nxt.vm_ops is None and \
                can_vma_merge(probe, nxt):
            mm.mm_mt.remove(nxt)
            nxt.vm_start = addr
            nxt.vm_pgoff = pgoff
            mm.mm_mt.insert(nxt)
            return _mmap_complete(mm, nxt, addr, length, vm_flags)
    if mm.map_count >= m.sysctl["vm.max_map_count"]:
        if charged:
            vm_unacct_memory(m, charged)
        return -errno.ENOMEM
    vma = new_vma(mm, addr, end, vm_flags, pgoff)
    if file is not None:
        vma.vm_file = file.get()
        err = call_mmap(file, vma)
        if err:
            vma.vm_file.put()
            kobj_slab_free(m, vma)
            if charged:
                vm_unacct_memory(m, charged)
            return err
    elif vm_flags & VM_SHARED:
        err = shmem_zero_setup(vma)
        if err:
            kobj_slab_free(m, vma)
            if charged:
                vm_unacct_memory(m, charged)
            return err
    vma_set_page_prot(vma)
    vma_link(mm, vma)
    return _mmap_complete(mm, vma, addr, length, vm_flags)


def _mmap_complete(mm: MmStruct, vma: VmAreaStruct, addr: int, length: int,
                   vm_flags: int) -> int:
    vm_stat_account(mm, vm_flags, length >> 12)
    if vm_flags & VM_LOCKED:
        if vm_flags & VM_SPECIAL:
            vma.vm_flags &= ~VM_LOCKED_MASK
        else:
            mm.locked_vm += length >> 12
    vma.vm_flags |= VM_SOFTDIRTY
    vma_set_page_prot(vma)
    return addr


@kfunc(aliases=("generic_file_mmap",))
def call_mmap(file: Any, vma: VmAreaStruct) -> int:
    """f_op->mmap: page-cache backed files get the generic filemap operations."""
    if file.f_inode.shmem:
        vma.vm_ops = shmem_anon_vm_ops
    else:
        vma.vm_ops = generic_file_vm_ops
    return 0


@kfunc
def shmem_zero_setup(vma: VmAreaStruct) -> int:
    """A shared anonymous mapping is backed by an unlinked shmem file ("/dev/zero")."""
    from mmdbg.sim.fs.ramfs import shmem_file_setup

    m = current_machine()
    size = vma.vm_end - vma.vm_start
    if not vma.vm_flags & VM_NORESERVE:
        if security_vm_enough_memory(m, vma.vm_mm, size >> 12):
            return -errno.ENOMEM
    f = shmem_file_setup(m, "/dev/zero", size)
    f.f_inode.acct_pages = 0 if vma.vm_flags & VM_NORESERVE else size >> 12
    vma.vm_file = f
    vma.vm_ops = shmem_anon_vm_ops
    return 0


@kfunc
def vm_mmap_pgoff(file: Any, addr: int, length: int, prot: int, flag: int, pgoff: int) -> int:
    ret, populate = do_mmap(file, addr, length, prot, flag, 0, pgoff)
    if ret >= 0 and populate:
        mm_populate(ret, populate)
    return ret


@kfunc
def ksys_mmap_pgoff(addr: int, length: int, prot: int, flags: int, file: Any,
                    pgoff: int) -> int:
    if not flags & MAP_ANONYMOUS:
        if file is None:
            return -errno.EBADF
        if flags & MAP_HUGETLB:
            return -errno.EINVAL
    else:
        file = None
    if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP):
        return -errno.EINVAL
    if flags & MAP_HUGETLB:
        return -errno.ENOMEM  # no hugetlb pool in this simulation
    return vm_mmap_pgoff(file, addr, length, prot, flags, pgoff)


def sys_mmap(addr: int, length: int, prot: int, flags: int, file: Any, off: int) -> int:
    """mmap(2): an address or -errno."""
    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    if off & ~PAGE_MASK:
        return -errno.EINVAL
    return ksys_mmap_pgoff(addr, length, prot, flags, file, off >> 12)


# -- populate --------------------------------------------------------------------------------------
@kfunc
def __mm_populate(start: int, length: int, ignore_errors: int) -> int:
    m = current_machine()
    mm = m.current.mm
    end = start + length
    a = start
    while a < end:
        vma = mm.mm_mt.find(a)
        if vma is None or vma.vm_start >= end:
            break
        a = max(a, vma.vm_start)
        e = min(end, vma.vm_end)
        if vma.vm_flags & (VM_IO | VM_PFNMAP):
            a = e
            continue
        r = memory.populate_vma_page_range(vma, a, e)
        if r < 0:
            if ignore_errors:
                a = e
                continue
            return r
        a = e
    return 0


def mm_populate(start: int, length: int) -> None:
    __mm_populate(start, length, 1)


# -- munmap ----------------------------------------------------------------------------------------
@kfunc
def do_vmi_munmap(mm: MmStruct, start: int, length: int) -> int:
    if start & ~PAGE_MASK or start > mm.task_size or length > mm.task_size - start:
        return -errno.EINVAL
    end = start + PAGE_ALIGN(length)
    if end == start:
        return -errno.EINVAL
    return do_vmi_align_munmap(mm, start, end)


@kfunc
def do_vmi_align_munmap(mm: MmStruct, start: int, end: int) -> int:
    """Split the edge VMAs, detach everything in [start, end) and unmap it."""
    m = current_machine()
    vmas = mm.mm_mt.overlapping(start, end)
    if not vmas:
        return 0
    first = vmas[0]
    if first.vm_start < start:
        if end < first.vm_end and mm.map_count >= m.sysctl["vm.max_map_count"]:
            return -errno.ENOMEM
        err = __split_vma(first, start, 1)
        if err:
            return err
    last = mm.mm_mt.overlapping(start, end)[-1]
    if last.vm_end > end:
        err = __split_vma(last, end, 0)
        if err:
            return err
    detached = mm.mm_mt.overlapping(start, end)
    for v in detached:
        mm.mm_mt.remove(v)
        mm.map_count -= 1
    vms_complete_munmap_vmas(mm, detached, start, end)
    return 0


@kfunc
def vms_complete_munmap_vmas(mm: MmStruct, vmas: list[VmAreaStruct], start: int,
                             end: int) -> None:
    m = current_machine()
    unmap_region(mm, vmas, start, end)
    nr_accounted = 0
    for v in vmas:
        if v.vm_flags & VM_LOCKED:
            mm.locked_vm -= v.pages
        if v.vm_flags & VM_ACCOUNT:
            nr_accounted += v.pages
        vm_stat_account(mm, v.vm_flags, -v.pages)
        remove_vma(v)
    if nr_accounted:
        vm_unacct_memory(m, nr_accounted)


@kfunc
def unmap_region(mm: MmStruct, vmas: list[VmAreaStruct], start: int, end: int) -> None:
    tlb = memory.tlb_gather_mmu(mm)
    mm.update_hiwater_rss()
    memory.unmap_vmas(tlb, vmas, start, end)
    memory.free_pgtables(tlb, vmas, FIRST_USER_ADDRESS, 0)
    memory.tlb_finish_mmu(tlb)


@kfunc
def __vm_munmap(start: int, length: int) -> int:
    m = current_machine()
    return do_vmi_munmap(m.current.mm, start, length)


def sys_munmap(addr: int, length: int) -> int:
    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    return __vm_munmap(addr, length)


# -- brk ----------------------------------------------------------------------------------------
def check_brk_limits(m: Any, mm: MmStruct, addr: int, length: int) -> int:
    if addr + length > mm.task_size or addr < m.sysctl["vm.mmap_min_addr"]:
        return -errno.ENOMEM
    if mm.def_flags & VM_LOCKED:
        from mmdbg.sim.mm.mlock import mlock_future_ok

        if not mlock_future_ok(mm, mm.def_flags, length):
            return -errno.EAGAIN
    return 0


@kfunc
def do_brk_flags(vma: Any, addr: int, length: int, flags: int) -> int:
    m = current_machine()
    mm = m.current.mm
    flags |= VM_DATA_DEFAULT_FLAGS | VM_ACCOUNT | mm.def_flags
    if not may_expand_vm(mm, flags, length >> 12):
        return -errno.ENOMEM
    if mm.map_count > m.sysctl["vm.max_map_count"]:
        return -errno.ENOMEM
    if security_vm_enough_memory(m, mm, length >> 12):
        return -errno.ENOMEM
    if vma is not None and vma.vm_end == addr and (vma.vm_flags & ~VM_SOFTDIRTY) == flags and \
            vma.vm_file is None:
        mm.mm_mt.remove(vma)
        vma.vm_end = addr + length
        mm.mm_mt.insert(vma)
    else:
        vma = new_vma(mm, addr, addr + length, flags, addr >> 12)
        vma_set_page_prot(vma)
        vma_link(mm, vma)
    vm_stat_account(mm, flags, length >> 12)
    if flags & VM_LOCKED:
        mm.locked_vm += length >> 12
    vma.vm_flags |= VM_SOFTDIRTY
    return 0


def sys_brk(brk: int) -> int:
    """brk(2): the new break, or the old one when the request is refused."""
    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    mm = m.current.mm
    origbrk = mm.brk
    min_brk = mm.start_brk
    if brk < min_brk:
        return origbrk
    if rlimit(m.current, RLIMIT_DATA) != RLIM_INFINITY and \
            brk - mm.start_brk + (mm.end_data - mm.start_data) > rlimit(m.current, RLIMIT_DATA):
        return origbrk
    newbrk = PAGE_ALIGN(brk)
    oldbrk = PAGE_ALIGN(mm.brk)
    if oldbrk == newbrk:
        mm.brk = brk
        return brk
    if brk <= mm.brk:
        mm.brk = brk
        if do_vmi_munmap(mm, newbrk, oldbrk - newbrk):
            mm.brk = origbrk
            return origbrk
        return brk
    if check_brk_limits(m, mm, oldbrk, newbrk - oldbrk):
        return origbrk
    nxt = mm.mm_mt.find(oldbrk)
    if nxt is not None and newbrk + PAGE_SIZE > vm_start_gap(nxt):
        return origbrk
    brkvma = mm.mm_mt.prev_of_addr(oldbrk)
    if brkvma is not None and brkvma.vm_end <= mm.start_brk - 1:
        brkvma = None
    if do_brk_flags(brkvma, oldbrk, newbrk - oldbrk, 0) < 0:
        return origbrk
    mm.brk = brk
    if mm.def_flags & VM_LOCKED:
        mm_populate(oldbrk, newbrk - oldbrk)
    return brk


# -- stack ---------------------------------------------------------------------------------------
@kfunc
def expand_downwards(vma: VmAreaStruct, address: int) -> int:
    """Grow a VM_GROWSDOWN VMA down to ``address`` (acct_stack_growth's checks)."""
    m = current_machine()
    mm = vma.vm_mm
    address &= PAGE_MASK
    if address < m.sysctl["vm.mmap_min_addr"]:
        return -errno.EPERM
    prev = mm.mm_mt.prev_of_addr(vma.vm_start)
    if prev is not None and not prev.vm_flags & VM_GROWSDOWN and \
            address - prev.vm_end < STACK_GUARD_GAP:
        return -errno.ENOMEM
    if address >= vma.vm_start:
        return 0
    size = vma.vm_end - address
    grow = (vma.vm_start - address) >> 12
    if size > rlimit(m.current, RLIMIT_STACK):
        return -errno.ENOMEM
    if not may_expand_vm(mm, vma.vm_flags, grow):
        return -errno.ENOMEM
    if vma.vm_flags & VM_LOCKED:
        from mmdbg.sim.mm.mlock import mlock_future_ok

        if not mlock_future_ok(mm, vma.vm_flags, grow << 12):
            return -errno.ENOMEM
    if vma.vm_flags & VM_ACCOUNT and security_vm_enough_memory(m, mm, grow):
        return -errno.ENOMEM
    mm.mm_mt.remove(vma)
    vma.vm_start = address
    vma.vm_pgoff -= grow
    mm.mm_mt.insert(vma)
    if vma.vm_flags & VM_LOCKED:
        mm.locked_vm += grow
    vm_stat_account(mm, vma.vm_flags, grow)
    return 0


def expand_stack_locked(vma: VmAreaStruct, address: int) -> int:
    return expand_downwards(vma, address)


# -- exit ----------------------------------------------------------------------------------------
@kfunc
def exit_mmap(mm: MmStruct) -> None:
    """Tear down a dying address space: every page, every table, every VMA."""
    m = current_machine()
    vmas = list(mm.mm_mt.vmas)
    tlb = memory.tlb_gather_mmu_fullmm(mm)
    mm.update_hiwater_rss()
    memory.unmap_vmas(tlb, vmas, 0, 1 << 64)
    mm.mm_mt.vmas.clear()
    mm.mm_mt.ends.clear()
    mm.mm_mt.cache = None
    top = 1 << (mm.paging.pgdir_shift + 9)
    memory.free_pgd_range(tlb, FIRST_USER_ADDRESS, top, 0, 0)
    memory.tlb_finish_mmu(tlb)
    nr_accounted = 0
    for v in vmas:
        if v.vm_flags & VM_ACCOUNT:
            nr_accounted += v.pages
        remove_vma(v)
    mm.map_count = 0
    vm_unacct_memory(m, nr_accounted)
    if _tp_exit_mmap.enabled:
        _tp_exit_mmap.fire(mm=mm.addr, mt=mm.addr + 0x40)


def hashed_ptr(addr: int) -> str:
    """%p: the kernel prints a hashed pointer (32 bits of siphash, zero-extended)."""
    import hashlib

    h = int.from_bytes(hashlib.blake2b(addr.to_bytes(8, "little"), digest_size=4).digest(),
                       "little")
    return f"{h:016x}"


@kfunc
def check_mm(mm: MmStruct) -> None:
    """Report rss counters and page-table bytes left over when an mm is freed."""
    m = current_machine()
    t = m.current
    for i in range(NR_MM_COUNTERS):
        x = mm.rss_stat[i]
        if x:
            m.printk(f"BUG: Bad rss-counter state mm:{hashed_ptr(mm.addr)} "
                     f"type:{RESIDENT_PAGE_TYPES[i]} val:{x} Comm:{t.comm} Pid:{t.pid}", level=1)
    if mm.pgtables_bytes:
        m.printk(f"BUG: non-zero pgtables_bytes on freeing mm: {mm.pgtables_bytes}", level=1)


__all__ = ["MM_FILEPAGES", "VM_DONTEXPAND", "VM_HUGETLB", "VM_MAYSHARE"]
