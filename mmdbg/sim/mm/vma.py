"""``mm_struct``, ``vm_area_struct`` and the VMA tree (include/linux/mm_types.h, mm/vma.c).

The VMA tree (``mm->mm_mt``)
    The kernel keeps VMAs in a maple tree (6.1+).  Here :class:`VmaTree` is a sorted Python
    list of VMAs plus a parallel list of their ``vm_end`` keys: ``find_vma`` is one
    ``bisect_right`` (O(log n)), iteration is in address order, insert/remove are a C-level
    memmove (O(n), microseconds for thousands of VMAs) -- the measured choice of
    reference/performance.md §4e ("bisect VMA lookup with a 1-entry cache").

The ``vm_flags`` values are the kernel's (include/linux/mm.h, 64-bit).  ``mm->rss_stat`` holds
the four ``MM_*`` counters in pages; ``hiwater_rss``/``hiwater_vm`` are updated the way the
kernel updates them (``update_hiwater_rss`` before unmapping, ``update_hiwater_vm`` before
``total_vm`` shrinks).

VMA splitting and merging (``__split_vma``, ``vma_merge_new_range``, ``vma_modify_flags``)
live here because they are pure VMA-tree operations; page-table work is in ``memory.py``.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

from mmdbg.sim.mm.mm_types import PAGE_SHIFT
from mmdbg.sim.trace import declare_tracepoint, kfunc

# include/linux/mm.h
VM_NONE = 0x00000000
VM_READ = 0x00000001
VM_WRITE = 0x00000002
VM_EXEC = 0x00000004
VM_SHARED = 0x00000008
VM_MAYREAD = 0x00000010
VM_MAYWRITE = 0x00000020
VM_MAYEXEC = 0x00000040
VM_MAYSHARE = 0x00000080
VM_GROWSDOWN = 0x00000100
VM_UFFD_MISSING = 0x00000200
VM_PFNMAP = 0x00000400
VM_UFFD_WP = 0x00001000
VM_LOCKED = 0x00002000
VM_IO = 0x00004000
VM_SEQ_READ = 0x00008000
VM_RAND_READ = 0x00010000
VM_DONTCOPY = 0x00020000
VM_DONTEXPAND = 0x00040000
VM_LOCKONFAULT = 0x00080000
VM_ACCOUNT = 0x00100000
VM_NORESERVE = 0x00200000
VM_HUGETLB = 0x00400000
VM_SYNC = 0x00800000
VM_ARCH_1 = 0x01000000
VM_WIPEONFORK = 0x02000000
VM_DONTDUMP = 0x04000000
VM_SOFTDIRTY = 0x08000000
VM_MIXEDMAP = 0x10000000
VM_HUGEPAGE = 0x20000000
VM_NOHUGEPAGE = 0x40000000
VM_MERGEABLE = 0x80000000

VM_STACK = VM_GROWSDOWN
VM_DATA_DEFAULT_FLAGS = VM_READ | VM_WRITE | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC
VM_STACK_DEFAULT_FLAGS = VM_DATA_DEFAULT_FLAGS
VM_STACK_FLAGS = VM_STACK | VM_STACK_DEFAULT_FLAGS | VM_ACCOUNT
VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT
VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP
# flags that must be equal for two VMAs to merge (VM_SOFTDIRTY is ignored, as in the kernel)
VM_MERGE_IGNORE = VM_SOFTDIRTY

# smaps VmFlags mnemonics (fs/proc/task_mmu.c show_smap_vma_flags), in bit order
VMFLAG_MNEMONICS = (
    (VM_READ, "rd"), (VM_WRITE, "wr"), (VM_EXEC, "ex"), (VM_SHARED, "sh"), (VM_MAYREAD, "mr"),
    (VM_MAYWRITE, "mw"), (VM_MAYEXEC, "me"), (VM_MAYSHARE, "ms"), (VM_GROWSDOWN, "gd"),
    (VM_PFNMAP, "pf"), (VM_LOCKED, "lo"), (VM_IO, "io"), (VM_SEQ_READ, "sr"),
    (VM_RAND_READ, "rr"), (VM_DONTCOPY, "dc"), (VM_DONTEXPAND, "de"), (VM_LOCKONFAULT, "lf"),
    (VM_ACCOUNT, "ac"), (VM_NORESERVE, "nr"), (VM_HUGETLB, "ht"), (VM_SYNC, "sf"),
    (VM_ARCH_1, "ar"), (VM_WIPEONFORK, "wf"), (VM_DONTDUMP, "dd"), (VM_SOFTDIRTY, "sd"),
    (VM_MIXEDMAP, "mm"), (VM_HUGEPAGE, "hg"), (VM_NOHUGEPAGE, "nh"), (VM_MERGEABLE, "mg"),
    (VM_UFFD_MISSING, "um"), (VM_UFFD_WP, "uw"),
)
VMFLAG_NAMES = (
    (VM_READ, "READ"), (VM_WRITE, "WRITE"), (VM_EXEC, "EXEC"), (VM_SHARED, "SHARED"),
    (VM_MAYREAD, "MAYREAD"), (VM_MAYWRITE, "MAYWRITE"), (VM_MAYEXEC, "MAYEXEC"),
    (VM_MAYSHARE, "MAYSHARE"), (VM_GROWSDOWN, "GROWSDOWN"), (VM_UFFD_MISSING, "UFFD_MISSING"),
    (VM_PFNMAP, "PFNMAP"), (VM_UFFD_WP, "UFFD_WP"), (VM_LOCKED, "LOCKED"), (VM_IO, "IO"),
    (VM_SEQ_READ, "SEQ_READ"), (VM_RAND_READ, "RAND_READ"), (VM_DONTCOPY, "DONTCOPY"),
    (VM_DONTEXPAND, "DONTEXPAND"), (VM_LOCKONFAULT, "LOCKONFAULT"), (VM_ACCOUNT, "ACCOUNT"),
    (VM_NORESERVE, "NORESERVE"), (VM_HUGETLB, "HUGETLB"), (VM_SYNC, "SYNC"),
    (VM_ARCH_1, "ARCH_1"), (VM_WIPEONFORK, "WIPEONFORK"), (VM_DONTDUMP, "DONTDUMP"),
    (VM_SOFTDIRTY, "SOFTDIRTY"), (VM_MIXEDMAP, "MIXEDMAP"), (VM_HUGEPAGE, "HUGEPAGE"),
    (VM_NOHUGEPAGE, "NOHUGEPAGE"), (VM_MERGEABLE, "MERGEABLE"),
)

# rss counter indexes (include/linux/mm_types_task.h)
MM_FILEPAGES = 0
MM_ANONPAGES = 1
MM_SWAPENTS = 2
MM_SHMEMPAGES = 3
NR_MM_COUNTERS = 4
RESIDENT_PAGE_TYPES = ("MM_FILEPAGES", "MM_ANONPAGES", "MM_SWAPENTS", "MM_SHMEMPAGES")

_tp_vma_store = declare_tracepoint("mmap:vma_store")

# Kernel objects (task_struct, mm_struct, vm_area_struct, anon_vma, anon_vma_chain) come from
# their slab caches once the machine has booted (kobj_slab_alloc/kobj_slab_free).  Objects
# boot creates (kthreadd, init's task_struct), kernel threads (started at boot in the kernel,
# lazily here) and other simulator objects (address_space) take addresses from a bump
# allocator in a range of the direct map that no RAM page uses.
_KOBJ_BASE = 0xFFFF88F000000000


def kobj_addr(m: Any, size: int) -> int:
    vm = m.vm
    a = _KOBJ_BASE + vm.kobj_next
    vm.kobj_next += (size + 63) & ~63
    return a


def kobj_slab_alloc(m: Any, obj: Any, cache: str, size: int) -> int:
    """Give ``obj`` its address: an object of the slab cache ``cache`` once the machine has
    booted (``kmem_cache_alloc(cachep, GFP_KERNEL)``, as alloc_task_struct_node,
    allocate_mm, vm_area_alloc, anon_vma_alloc do), else the bump range above (the objects
    boot creates stay off the slab, so booting allocates no page).  Falls back to the bump
    range if the slab allocation fails (simplification: the kernel fails the operation)."""
    vm = m.vm
    a = 0
    if vm.kobj_slab:
        from mmdbg.sim.include.gfp import GFP_KERNEL
        from mmdbg.sim.mm import slab_common

        s = slab_common.find_cache(m, cache)
        if s is not None:
            a = slab_common.kmem_cache_alloc(s, GFP_KERNEL)
            if a:
                vm.kobj_objs[a] = (obj, s)
    if not a:
        a = kobj_addr(m, size)
    obj.addr = a
    return a


def kobj_slab_free(m: Any, obj: Any) -> None:
    """Free ``obj``'s slab object back to its cache (kmem_cache_free), exactly once: a
    second call, or an object that does not own its address (boot objects), is a no-op."""
    vm = m.vm
    ent = vm.kobj_objs.get(obj.addr)
    if ent is not None and ent[0] is obj:
        del vm.kobj_objs[obj.addr]
        from mmdbg.sim.mm import slab_common

        slab_common.kmem_cache_free(ent[1], obj.addr)


def vm_flags_string(flags: int) -> str:
    return "|".join(n for b, n in VMFLAG_NAMES if flags & b)


class VmAreaStruct:
    """``struct vm_area_struct``."""

    __slots__ = ("addr", "anon_name", "anon_vma", "anon_vma_chain", "special_name", "vm_end",
                 "vm_file", "vm_flags", "vm_mm", "vm_ops", "vm_page_prot", "vm_pgoff",
                 "vm_private_data", "vm_start")
    ktype = "vm_area_struct"

    def __init__(self, mm: Any, start: int, end: int, flags: int, pgoff: int = 0,
                 file: Any = None) -> None:
        self.vm_mm = mm
        self.vm_start = start
        self.vm_end = end
        self.vm_flags = flags
        self.vm_pgoff = pgoff
        self.vm_file = file
        self.vm_page_prot = 0
        self.vm_ops: Any = None
        self.anon_vma: Any = None
        self.anon_vma_chain: list = []
        self.anon_name: str | None = None
        self.special_name: str | None = None  # [vdso], [vvar] (vm_ops->name)
        self.vm_private_data: Any = None
        self.addr = 0

    def __repr__(self) -> str:
        return f"<vm_area_struct {self.vm_start:#x}-{self.vm_end:#x} flags {self.vm_flags:#x}>"

    @property
    def pages(self) -> int:
        return (self.vm_end - self.vm_start) >> PAGE_SHIFT

    def is_anonymous(self) -> bool:
        return self.vm_ops is None

    def linear_page_index(self, address: int) -> int:
        return ((address - self.vm_start) >> PAGE_SHIFT) + self.vm_pgoff


class VmaTree:
    """``mm->mm_mt`` as a sorted list (see the module docstring)."""

    __slots__ = ("cache", "ends", "vmas")

    def __init__(self) -> None:
        self.vmas: list[VmAreaStruct] = []
        self.ends: list[int] = []
        self.cache: VmAreaStruct | None = None

    def __len__(self) -> int:
        return len(self.vmas)

    def __iter__(self) -> Iterator[VmAreaStruct]:
        return iter(list(self.vmas))

    def find(self, addr: int) -> VmAreaStruct | None:
        """find_vma(): the first VMA with ``vm_end > addr`` (it may start above addr)."""
        c = self.cache
        if c is not None and c.vm_start <= addr < c.vm_end:
            return c
        i = bisect_right(self.ends, addr)
        if i == len(self.vmas):
            return None
        v = self.vmas[i]
        if v.vm_start <= addr:
            self.cache = v
        return v

    def index_of(self, vma: VmAreaStruct) -> int:
        i = bisect_right(self.ends, vma.vm_end - 1)
        if i < len(self.vmas) and self.vmas[i] is vma:
            return i
        raise KeyError(vma)

    def prev(self, vma: VmAreaStruct) -> VmAreaStruct | None:
        i = self.index_of(vma)
        return self.vmas[i - 1] if i > 0 else None

    def next(self, vma: VmAreaStruct) -> VmAreaStruct | None:
        i = self.index_of(vma)
        return self.vmas[i + 1] if i + 1 < len(self.vmas) else None

    def prev_of_addr(self, addr: int) -> VmAreaStruct | None:
        """The last VMA that ends at or below ``addr``."""
        i = bisect_right(self.ends, addr)
        # vmas[i-1].vm_end <= addr
        return self.vmas[i - 1] if i > 0 else None

    def overlapping(self, start: int, end: int) -> list[VmAreaStruct]:
        i = bisect_right(self.ends, start)
        out = []
        while i < len(self.vmas) and self.vmas[i].vm_start < end:
            out.append(self.vmas[i])
            i += 1
        return out

    def insert(self, vma: VmAreaStruct) -> None:
        i = bisect_right(self.ends, vma.vm_start)
        if i < len(self.vmas) and self.vmas[i].vm_start < vma.vm_end:
            raise AssertionError(f"VMA {vma!r} overlaps {self.vmas[i]!r}")
        self.vmas.insert(i, vma)
        self.ends.insert(i, vma.vm_end)
        if _tp_vma_store.enabled:
            _tp_vma_store.fire(mt=vma.vm_mm.addr + 0x40, vma=vma.addr, vm_start=vma.vm_start,
                               vm_end=vma.vm_end - 1)

    def remove(self, vma: VmAreaStruct) -> None:
        i = self.index_of(vma)
        del self.vmas[i]
        del self.ends[i]
        if self.cache is vma:
            self.cache = None

    def update(self, vma: VmAreaStruct) -> None:
        """Re-key ``vma`` after its bounds changed (it must not overlap a neighbour)."""
        for i, v in enumerate(self.vmas):
            if v is vma:
                del self.vmas[i]
                del self.ends[i]
                break
        self.cache = None
        self.insert(vma)


class MmContext:
    """``mm_context_t`` (x86): the TLB generation and context id."""

    __slots__ = ("ctx_id", "tlb_gen")

    def __init__(self, ctx_id: int) -> None:
        self.ctx_id = ctx_id
        self.tlb_gen = 1


class MmStruct:
    """``struct mm_struct``."""

    ktype = "mm_struct"

    def __init__(self, m: Any) -> None:
        self.mm_mt = VmaTree()
        self.pgd: Any = None
        self.paging = m.vm.paging
        self.map_count = 0
        self.mm_users = 1
        self.mm_count = 1
        self.total_vm = 0
        self.locked_vm = 0
        self.pinned_vm = 0
        self.data_vm = 0
        self.exec_vm = 0
        self.stack_vm = 0
        self.def_flags = 0
        self.start_code = self.end_code = 0
        self.start_data = self.end_data = 0
        self.start_brk = self.brk = 0
        self.start_stack = 0
        self.arg_start = self.arg_end = self.env_start = self.env_end = 0
        self.mmap_base = 0
        self.mmap_legacy_base = 0
        self.task_size = m.vm.paging.task_size
        self.rss_stat = [0] * NR_MM_COUNTERS
        self.hiwater_rss = 0
        self.hiwater_vm = 0
        self.pgtables_bytes = 0
        self.owner: Any = None
        self.exe_file: Any = None
        self.flags = 0
        m.vm.mm_ctx_next += 1
        self.context = MmContext(m.vm.mm_ctx_next)
        self.cpu_bitmap: set[int] = set()  # mm_cpumask()
        self.addr = 0
        kobj_slab_alloc(m, self, "mm_struct", 1408)  # allocate_mm()
        self.mm_id = m.vm.mm_ctx_next
        self.machine = m

    def __repr__(self) -> str:
        return f"<mm_struct {self.addr:#x}>"

    # -- counters ----------------------------------------------------------------------
    def get_mm_counter(self, member: int) -> int:
        return self.rss_stat[member]

    def get_mm_rss(self) -> int:
        r = self.rss_stat
        return r[MM_FILEPAGES] + r[MM_ANONPAGES] + r[MM_SHMEMPAGES]

    def update_hiwater_rss(self) -> None:
        rss = self.get_mm_rss()
        if self.hiwater_rss < rss:
            self.hiwater_rss = rss

    def update_hiwater_vm(self) -> None:
        if self.hiwater_vm < self.total_vm:
            self.hiwater_vm = self.total_vm

    def get_mm_hiwater_rss(self) -> int:
        return max(self.hiwater_rss, self.get_mm_rss())

    def get_mm_hiwater_vm(self) -> int:
        return max(self.hiwater_vm, self.total_vm)

    def mm_pgtables_bytes(self) -> int:
        return self.pgtables_bytes

    # -- VMAs --------------------------------------------------------------------------
    def vmas(self) -> list[VmAreaStruct]:
        return list(self.mm_mt.vmas)

    def find_vma(self, addr: int) -> VmAreaStruct | None:
        return self.mm_mt.find(addr)

    def vma_lookup(self, addr: int) -> VmAreaStruct | None:
        v = self.mm_mt.find(addr)
        return v if v is not None and v.vm_start <= addr else None


def for_each_vma(mm: MmStruct) -> Iterator[VmAreaStruct]:
    return iter(list(mm.mm_mt.vmas))


@kfunc
def find_vma(mm: MmStruct, addr: int) -> VmAreaStruct | None:
    """Look up the first VMA which satisfies ``addr < vm_end``, NULL if none."""
    return mm.mm_mt.find(addr)


def vma_is_initial_heap(vma: VmAreaStruct) -> bool:
    mm = vma.vm_mm
    return vma.vm_start < mm.brk and vma.vm_end > mm.start_brk


def vma_is_initial_stack(vma: VmAreaStruct) -> bool:
    mm = vma.vm_mm
    return vma.vm_start <= mm.start_stack <= vma.vm_end


def vma_is_accessible(vma: VmAreaStruct) -> bool:
    return bool(vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC))


def is_cow_mapping(flags: int) -> bool:
    return flags & (VM_SHARED | VM_MAYWRITE) == VM_MAYWRITE


# -- stats (mm/mmap.c vm_stat_account) --------------------------------------------------
def is_exec_mapping(flags: int) -> bool:
    return flags & (VM_WRITE | VM_EXEC | VM_STACK) == VM_EXEC


def is_stack_mapping(flags: int) -> bool:
    return flags & VM_STACK == VM_STACK


def is_data_mapping(flags: int) -> bool:
    return flags & (VM_WRITE | VM_SHARED | VM_STACK) == VM_WRITE


def vm_stat_account(mm: MmStruct, flags: int, npages: int) -> None:
    if npages < 0:
        mm.update_hiwater_vm()
    mm.total_vm += npages
    if is_exec_mapping(flags):
        mm.exec_vm += npages
    elif is_stack_mapping(flags):
        mm.stack_vm += npages
    elif is_data_mapping(flags):
        mm.data_vm += npages


# -- merge and split ----------------------------------------------------------------------
def anon_vma_compatible(a: VmAreaStruct, b: VmAreaStruct) -> bool:
    return a.anon_vma is None or b.anon_vma is None or a.anon_vma is b.anon_vma


def can_vma_merge(prev: VmAreaStruct, nxt: VmAreaStruct) -> bool:
    """prev directly followed by nxt with the same flags, file offset, anon_vma and name."""
    if prev.vm_end != nxt.vm_start:
        return False
    if (prev.vm_flags ^ nxt.vm_flags) & ~VM_MERGE_IGNORE:
        return False
    if prev.vm_file is not nxt.vm_file or prev.vm_ops is not nxt.vm_ops:
        return False
    if prev.anon_name != nxt.anon_name or prev.special_name or nxt.special_name:
        return False
    if prev.vm_flags & VM_SPECIAL:
        return False
    if not anon_vma_compatible(prev, nxt):
        return False
    # prev/next anon_vmas with different chains (fork) cannot merge (is_mergeable_anon_vma)
    if prev.anon_vma is not None and nxt.anon_vma is not None and \
            len(prev.anon_vma_chain) != len(nxt.anon_vma_chain):
        return False
    if prev.vm_file is not None or prev.anon_vma is not None or nxt.anon_vma is not None:
        return prev.vm_pgoff + prev.pages == nxt.vm_pgoff
    return True


def vm_area_dup(orig: VmAreaStruct) -> VmAreaStruct:
    from mmdbg.sim import trace

    new = VmAreaStruct(orig.vm_mm, orig.vm_start, orig.vm_end, orig.vm_flags, orig.vm_pgoff,
                       orig.vm_file)
    new.vm_page_prot = orig.vm_page_prot
    new.vm_ops = orig.vm_ops
    new.anon_vma = orig.anon_vma
    new.anon_name = orig.anon_name
    new.special_name = orig.special_name
    new.vm_private_data = orig.vm_private_data
    kobj_slab_alloc(trace.current_machine(), new, "vm_area_struct", 184)
    if orig.vm_file is not None:
        orig.vm_file.get()
    return new
