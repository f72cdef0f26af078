"""vmalloc (mm/vmalloc.c): virtually contiguous kernel memory in the vmalloc range.

* ``vmap_area`` management in ``[VMALLOC_START, VMALLOC_END)``: the lowest free range that
  fits (the kernel's free-area augmented tree gives the same first-fit answer), each area
  followed by a guard page (``VM_NO_GUARD`` to omit it);
* ``vmalloc``/``vzalloc``/``vmalloc_node``/``vmalloc_huge``/``__vmalloc_node_range``,
  ``vmap``/``vunmap``, ``vfree`` (lazy: the area stays in the address space as an
  ``unpurged vm_area`` until ``vmap_lazy_nr`` exceeds ``lazy_max_pages()``, then
  ``__purge_vmap_area_lazy`` releases them all, as with ``vmap_purge_lock``);
* the pages: order-0 pages (or 2 MiB blocks for ``vmalloc_huge`` when the size allows) from the
  buddy allocator, the ``pages`` array from kmalloc (``vpages`` when it is itself vmalloc'ed);
* ``/proc/vmallocinfo`` (``s_show``) and ``VmallocUsed`` (``vmalloc_nr_pages``);
* ``vmalloc_to_page``/``vmalloc_to_pfn``, ``is_vmalloc_addr``, ``find_vm_area``.

Kernel page tables (init_mm, ``sim/mm/init_mm.py``): :func:`vmap_pages_range` writes
``PAGE_KERNEL`` PTEs into init_mm's x86 page tables (missing tables allocated from the buddy
allocator, never freed: vunmap only clears PTEs, as the kernel does).  ``vmalloc_to_page`` and
``kmem ADDR`` walk those tables.  ``machine.vmap_pages`` (``vaddr >> PAGE_SHIFT -> pfn``) is kept
as a translation cache for simulated kernel memory accesses; ``check_init_mm`` verifies it
against the page tables.  vfree/vunmap clear the PTEs at once (``vunmap_range_noflush``); the
kernel TLB flush (``flush_tlb_kernel_range``) is deferred to the lazy purge, as in the kernel.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.arch.x86 import pgtable, tlb
from mmdbg.sim.include.gfp import __GFP_NOWARN, __GFP_ZERO, GFP_KERNEL
from mmdbg.sim.lib import stackdepot
from mmdbg.sim.mm import page_alloc
from mmdbg.sim.mm.mm_types import PAGE_SHIFT, PAGE_SIZE, VMALLOC_END, VMALLOC_START
from mmdbg.sim.trace import kfunc

VM_IOREMAP = 0x00000001
VM_ALLOC = 0x00000002
VM_MAP = 0x00000004
VM_USERMAP = 0x00000008
VM_DMA_COHERENT = 0x00000010
VM_UNINITIALIZED = 0x00000020
VM_NO_GUARD = 0x00000040
VM_KASAN = 0x00000080
VM_FLUSH_RESET_PERMS = 0x00000100
VM_MAP_PUT_PAGES = 0x00000200
VM_ALLOW_HUGE_VMAP = 0x00000400
VM_SPARSE = 0x00001000
PMD_SIZE = 2 << 20
MODULES_VADDR = 0xFFFFFFFFA0000000
MODULES_END = 0xFFFFFFFFFF000000


class VmStruct:
    """``struct vm_struct``: one mapped area (size includes the guard page)."""

    ktype = "vm_struct"
    __slots__ = ("addr", "caller", "flags", "nr_pages", "page_order", "pages", "pages_vmalloced",
                 "phys_addr", "requested_size", "size")

    def __init__(self, addr: int, size: int, flags: int, caller: int) -> None:
        self.addr = addr
        self.size = size
        self.flags = flags
        self.caller = caller
        self.pages: list[int] = []
        self.nr_pages = 0
        self.page_order = 0
        self.phys_addr = 0
        self.requested_size = 0
        self.pages_vmalloced = False


class VmapArea:
    """``struct vmap_area``: [va_start, va_end) in the vmalloc space."""

    ktype = "vmap_area"
    __slots__ = ("va_end", "va_start", "vm")

    def __init__(self, start: int, end: int, vm: VmStruct | None) -> None:
        self.va_start = start
        self.va_end = end
        self.vm = vm

    def __lt__(self, other: VmapArea) -> bool:
        return self.va_start < other.va_start


class VmallocState:
    def __init__(self) -> None:
        self.busy: list[VmapArea] = []  # sorted by va_start (vmap_area_root)
        self.starts: list[int] = []
        self.purge: list[VmapArea] = []  # lazily freed, still occupying the space
        self.vmap_lazy_nr = 0
        self.nr_vmalloc_pages = 0


def vmalloc_init(m: Any) -> None:
    m.vmalloc = VmallocState()
    m.vmap_pages = {}  # vaddr >> PAGE_SHIFT -> pfn
    m.vmalloc_nr_pages = 0


def lazy_max_pages(m: Any) -> int:
    return m.ncpus.bit_length() * (32 * 1024 * 1024 // PAGE_SIZE)


def _occupied(st: VmallocState) -> list[tuple[int, int]]:
    return sorted([(v.va_start, v.va_end) for v in st.busy]
                  + [(v.va_start, v.va_end) for v in st.purge])


@kfunc
def alloc_vmap_area(size: int, align: int, vstart: int, vend: int, node: int,
                    gfp_mask: int) -> VmapArea | None:
    """The lowest free, aligned range of ``size`` bytes in [vstart, vend)."""
    m = _trace._current
    st = m.vmalloc
    for attempt in range(2):
        addr = (vstart + align - 1) & ~(align - 1)
        for s, e in _occupied(st):
            if e <= addr or s >= vend:
                continue
            if s >= addr + size:
                break
            addr = (e + align - 1) & ~(align - 1)
        if addr + size <= vend:
            va = VmapArea(addr, addr + size, None)
            i = bisect_left(st.starts, addr)
            st.starts.insert(i, addr)
            st.busy.insert(i, va)
            return va
        if attempt == 0:
            purge_vmap_area_lazy(m)
    if not gfp_mask & __GFP_NOWARN:
        m.printk(f"vmap allocation for size {size} failed: use vmalloc=<size> to increase "
                 "size", level=4)
    return None


def _unlink(st: VmallocState, va: VmapArea) -> None:
    i = bisect_left(st.starts, va.va_start)
    if i < len(st.busy) and st.busy[i] is va:
        del st.starts[i]
        del st.busy[i]


def find_vmap_area(m: Any, addr: int) -> VmapArea | None:
    st = m.vmalloc
    i = bisect_left(st.starts, addr + 1) - 1
    if i >= 0:
        va = st.busy[i]
        if va.va_start <= addr < va.va_end:
            return va
    return None


def find_vm_area(addr: int) -> VmStruct | None:
    va = find_vmap_area(_trace._current, addr)
    return va.vm if va is not None else None


def is_vmalloc_addr(addr: int) -> bool:
    return VMALLOC_START <= addr < VMALLOC_END


def vmap_pages_range(m: Any, addr: int, pfns: list[int], order: int = 0) -> int:
    """Map pages at ``addr`` in init_mm (``pfns`` of ``1 << order`` pages each); -ENOMEM if a
    table cannot be allocated."""
    vp = m.vmap_pages
    base = addr >> PAGE_SHIFT
    i = 0
    for pfn in pfns:
        for j in range(1 << order):
            vp[base + i] = pfn + j
            i += 1
    if getattr(m, "init_mm", None) is None:
        return 0
    return vmap_pages_range_noflush(addr, addr + (i << PAGE_SHIFT), pgtable.PAGE_KERNEL, pfns,
                                    PAGE_SHIFT + order)


@kfunc
def vmap_pages_range_noflush(addr: int, end: int, prot: int, pages: list[int],
                             page_shift: int) -> int:
    """Install PTEs for ``pages`` in init_mm (4K PTEs even for huge pages)."""
    init_mm = _trace._current.init_mm
    a = addr
    for pfn in pages:
        for j in range(1 << (page_shift - PAGE_SHIFT)):
            pte = pgtable.pte_table_alloc_kernel(init_mm, a)
            if pte is None:
                return -12  # -ENOMEM
            pte[a >> PAGE_SHIFT & 511] = pgtable.pfn_pte(pfn + j, prot)
            a += PAGE_SIZE
    return 0


@kfunc
def vunmap_range_noflush(start: int, end: int) -> None:
    """Clear init_mm's PTEs in [start, end); the tables stay (the kernel never frees them)."""
    m = _trace._current
    vp = m.vmap_pages
    for vpn in range(start >> PAGE_SHIFT, end >> PAGE_SHIFT):
        vp.pop(vpn, None)
    init_mm = getattr(m, "init_mm", None)
    if init_mm is None:
        return
    for a in range(start, end, PAGE_SIZE):
        pte = pgtable.pte_table_lookup(init_mm, a)
        if pte is not None:
            pte[a >> PAGE_SHIFT & 511] = 0


@kfunc
def vunmap_range(addr: int, end: int) -> None:
    """Unmap and flush the kernel TLB at once (the exported, non-lazy path)."""
    vunmap_range_noflush(addr, end)
    tlb.flush_tlb_kernel_range(addr, end)


def _kernel_pte(m: Any, addr: int) -> int:
    init_mm = getattr(m, "init_mm", None)
    if init_mm is None:
        pfn = m.vmap_pages.get(addr >> PAGE_SHIFT)
        return 0 if pfn is None else pgtable.pfn_pte(pfn, pgtable.PAGE_KERNEL)
    t = pgtable.pte_table_lookup(init_mm, addr)
    return 0 if t is None else t[addr >> PAGE_SHIFT & 511]


def vmalloc_to_pfn(addr: int) -> int | None:
    """vmalloc_to_page(): the init_mm page-table walk (None where nothing is mapped)."""
    pte = _kernel_pte(_trace._current, addr)
    return pgtable.pte_pfn(pte) if pte & pgtable._PAGE_PRESENT else None


vmalloc_to_page = vmalloc_to_pfn


def _caller() -> int:
    return stackdepot.caller_ip(_INTERNAL)


_INTERNAL = ("vmalloc", "vzalloc", "vmalloc_node", "vmalloc_huge", "__vmalloc_node_range",
             "__vmalloc_node", "__get_vm_area_node", "vmap", "__vmalloc_area_node",
             "vmalloc_user", "kvmalloc_node", "kvmalloc", "module_alloc", "execmem_alloc",
             "alloc_thread_stack_node", "vm_area_alloc_pages", "vmalloc_noprof",
             "vzalloc_noprof", "vmalloc_node_noprof", "vmalloc_huge_node_noprof",
             "__vmalloc_node_range_noprof")


@kfunc
def __get_vm_area_node(size: int, align: int, shift: int, flags: int, start: int, end: int,
                       node: int, gfp_mask: int, caller: int) -> VmStruct | None:
    size = (size + (1 << shift) - 1) & ~((1 << shift) - 1)
    if not size:
        return None
    if not flags & VM_NO_GUARD:
        size += PAGE_SIZE
    va = alloc_vmap_area(size, max(align, PAGE_SIZE), start, end, node, gfp_mask)
    if va is None:
        return None
    vm = VmStruct(va.va_start, size, flags | VM_UNINITIALIZED, caller)
    va.vm = vm
    return vm


def get_vm_area_size(vm: VmStruct) -> int:
    return vm.size if vm.flags & VM_NO_GUARD else vm.size - PAGE_SIZE


@kfunc
def vm_area_alloc_pages(gfp: int, nid: int, order: int, nr_pages: int) -> list[int]:
    out = []
    while len(out) << order < nr_pages:
        pfn = page_alloc.alloc_pages(gfp, order) if nid < 0 else \
            page_alloc.alloc_pages_node(nid, gfp, order)
        if pfn is None:
            break
        out.append(pfn)
    return out


@kfunc
def __vmalloc_area_node(area: VmStruct, gfp_mask: int, shift: int, node: int) -> int:
    m = _trace._current
    size = get_vm_area_size(area)
    order = shift - PAGE_SHIFT
    nr_small = size >> PAGE_SHIFT
    array_size = nr_small * 8
    if array_size > PAGE_SIZE:
        area.pages_vmalloced = True
    pfns = vm_area_alloc_pages(gfp_mask & ~__GFP_ZERO | (gfp_mask & __GFP_ZERO), node, order,
                               nr_small)
    if len(pfns) << order < nr_small:
        for pfn in pfns:
            page_alloc.__free_pages(pfn, order)
        page_alloc.warn_alloc(gfp_mask, None,
                              f"vmalloc error: size {size}, failed to allocate pages")
        return 0
    area.page_order = order
    area.pages = pfns
    area.nr_pages = nr_small
    m.vmalloc_nr_pages += nr_small
    m.vmalloc.nr_vmalloc_pages += nr_small
    if vmap_pages_range(m, area.addr, pfns, order) < 0:
        vunmap_range_noflush(area.addr, area.addr + size)
        for pfn in pfns:
            page_alloc.__free_pages(pfn, order)
        area.pages = []
        area.nr_pages = 0
        m.vmalloc_nr_pages -= nr_small
        m.vmalloc.nr_vmalloc_pages -= nr_small
        page_alloc.warn_alloc(gfp_mask, None, f"vmalloc error: size {size}, failed to map pages")
        return 0
    return area.addr


@kfunc(name="__vmalloc_node_range_noprof", aliases=("__vmalloc_node_range",))
def __vmalloc_node_range(size: int, align: int, start: int, end: int, gfp_mask: int,
                         vm_flags: int, node: int, caller: int) -> int:
    m = _trace._current
    if not size or size >> PAGE_SHIFT > m.totalram_pages:
        if not gfp_mask & __GFP_NOWARN:
            page_alloc.warn_alloc(gfp_mask, None,
                                  f"vmalloc error: size {size}, exceeds total pages")
        return 0
    shift = PAGE_SHIFT
    if vm_flags & VM_ALLOW_HUGE_VMAP and size >= PMD_SIZE:
        shift = 21
        align = max(align, PMD_SIZE)
    area = __get_vm_area_node(size, align, shift, VM_ALLOC | vm_flags, start, end, node,
                              gfp_mask, caller or _caller())
    if area is None:
        page_alloc.warn_alloc(gfp_mask, None, f"vmalloc error: size {size}, vm_struct "
                              "allocation failed")
        return 0
    area.requested_size = size
    addr = __vmalloc_area_node(area, gfp_mask, shift, node)
    if not addr:
        free_vmap_area_now(m, area.addr)
        return 0
    area.flags &= ~VM_UNINITIALIZED
    if m.kasan is not None:
        m.kasan.kasan_unpoison_vmalloc(addr, size, area.size - PAGE_SIZE
                                       if not area.flags & VM_NO_GUARD else area.size)
    if m.kmemleak is not None:
        m.kmemleak.kmemleak_vmalloc(area, size, gfp_mask)
    return addr


def free_vmap_area_now(m: Any, addr: int) -> None:
    va = find_vmap_area(m, addr)
    if va is not None:
        _unlink(m.vmalloc, va)


@kfunc(name="vmalloc_noprof", aliases=("vmalloc",))
def vmalloc(size: int) -> int:
    return __vmalloc_node_range(size, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL, 0, -1,
                                _caller())


@kfunc(name="vzalloc_noprof", aliases=("vzalloc",))
def vzalloc(size: int) -> int:
    return __vmalloc_node_range(size, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL | __GFP_ZERO,
                                0, -1, _caller())


@kfunc(name="vmalloc_node_noprof", aliases=("vmalloc_node",))
def vmalloc_node(size: int, node: int) -> int:
    return __vmalloc_node_range(size, 1, VMALLOC_START, VMALLOC_END, GFP_KERNEL, 0, node,
                                _caller())


@kfunc(name="vmalloc_huge_node_noprof", aliases=("vmalloc_huge",))
def vmalloc_huge(size: int, gfp_mask: int = GFP_KERNEL) -> int:
    return __vmalloc_node_range(size, 1, VMALLOC_START, VMALLOC_END, gfp_mask,
                                VM_ALLOW_HUGE_VMAP, -1, _caller())


def module_alloc(size: int) -> int:
    """execmem_alloc(EXECMEM_MODULE_TEXT): module memory in the module area."""
    return __vmalloc_node_range(size, 1, MODULES_VADDR, MODULES_END, GFP_KERNEL | __GFP_ZERO,
                                0, -1, _caller())


@kfunc
def vmap(pages: list[int], count: int, flags: int = VM_MAP) -> int:
    """Map existing pages contiguously; the pages stay the caller's."""
    m = _trace._current
    area = __get_vm_area_node(count << PAGE_SHIFT, 1, PAGE_SHIFT, flags, VMALLOC_START,
                              VMALLOC_END, -1, GFP_KERNEL, _caller())
    if area is None:
        return 0
    area.pages = list(pages[:count])
    area.nr_pages = count
    area.flags &= ~VM_UNINITIALIZED
    if vmap_pages_range(m, area.addr, area.pages) < 0:
        remove_vm_area(area.addr)
        return 0
    if m.kasan is not None:
        m.kasan.kasan_unpoison_vmalloc(area.addr, count << PAGE_SHIFT, count << PAGE_SHIFT)
    return area.addr


@kfunc
def remove_vm_area(addr: int) -> VmStruct | None:
    m = _trace._current
    va = find_vmap_area(m, addr)
    if va is None or va.vm is None or va.va_start != addr:
        return None
    vm = va.vm
    vunmap_range_noflush(addr, va.va_end)  # free_unmap_vmap_area: the flush is lazy
    _unlink(m.vmalloc, va)
    free_vmap_area_noflush(m, va)
    return vm


def free_vmap_area_noflush(m: Any, va: VmapArea) -> None:
    st = m.vmalloc
    va.vm = None
    insort(st.purge, va)
    st.vmap_lazy_nr += (va.va_end - va.va_start) >> PAGE_SHIFT
    if st.vmap_lazy_nr > lazy_max_pages(m):
        purge_vmap_area_lazy(m)


@kfunc(name="__purge_vmap_area_lazy", aliases=("purge_vmap_area_lazy",))
def purge_vmap_area_lazy(m: Any) -> None:
    st = m.vmalloc
    if st.purge:
        tlb.flush_tlb_kernel_range(min(va.va_start for va in st.purge),
                                   max(va.va_end for va in st.purge))
    if m.kasan is not None:
        for va in st.purge:
            m.kasan.kasan_release_vmalloc(va.va_start, va.va_end)
    st.purge.clear()
    st.vmap_lazy_nr = 0


@kfunc
def vfree(addr: int) -> None:
    """Unmap and free a vmalloc area; NULL is ignored, a bad address warns."""
    m = _trace._current
    if not addr:
        return
    if m.kmemleak is not None:
        m.kmemleak.kmemleak_free(addr)
    vm = remove_vm_area(addr)
    if vm is None:
        m.printk(f"Trying to vfree() nonexistent vm area ({addr:#x})", level=3)
        m.warn_on()
        return
    if m.kasan is not None:
        m.kasan.kasan_poison_vmalloc(addr, get_vm_area_size(vm))
    if vm.flags & VM_ALLOC:
        for pfn in vm.pages:
            page_alloc.__free_pages(pfn, vm.page_order)
        m.vmalloc_nr_pages -= vm.nr_pages
        m.vmalloc.nr_vmalloc_pages -= vm.nr_pages


@kfunc
def vunmap(addr: int) -> None:
    m = _trace._current
    vm = remove_vm_area(addr)
    if vm is None:
        m.printk(f"Trying to vunmap() nonexistent vm area ({addr:#x})", level=3)
        m.warn_on()


def kvmalloc(size: int, flags: int = GFP_KERNEL) -> int:
    """kmalloc, falling back to vmalloc for large sizes (__kvmalloc_node)."""
    from mmdbg.sim.mm import slab_common

    if size <= PAGE_SIZE:
        return slab_common.kmalloc(size, flags)
    p = slab_common.kmalloc(size, flags | __GFP_NOWARN | 0x10000)  # __GFP_NORETRY
    if p:
        return p
    return __vmalloc_node_range(size, 1, VMALLOC_START, VMALLOC_END, flags, 0, -1, _caller())


def kvfree(addr: int) -> None:
    from mmdbg.sim.mm import slab_common

    if is_vmalloc_addr(addr):
        vfree(addr)
    else:
        slab_common.kfree(addr)


# ---------------------------------------------------------------------------------------
# /proc/vmallocinfo


def vmallocinfo_lines(m: Any) -> list[str]:
    st = m.vmalloc
    out = []
    for va in st.busy:
        vm = va.vm
        size = va.va_end - va.va_start
        if vm is None:
            out.append(f"0x{va.va_start:016x}-0x{va.va_end:016x} {size:7d} vm_map_ram")
            continue
        line = f"0x{vm.addr:016x}-0x{vm.addr + vm.size:016x} {vm.size:7d}"
        if vm.caller:
            line += " " + stackdepot.lookup_symbol(vm.caller)
        if vm.nr_pages:
            line += f" pages={vm.nr_pages}"
        if vm.phys_addr:
            line += f" phys=0x{vm.phys_addr:016x}"
        if vm.flags & VM_IOREMAP:
            line += " ioremap"
        if vm.flags & VM_SPARSE:
            line += " sparse"
        if vm.flags & VM_ALLOC:
            line += " vmalloc"
        if vm.flags & VM_MAP:
            line += " vmap"
        if vm.flags & VM_USERMAP:
            line += " user"
        if vm.flags & VM_DMA_COHERENT:
            line += " dma-coherent"
        if vm.pages_vmalloced:
            line += " vpages"
        if vm.flags & VM_ALLOC and vm.pages:
            counts: dict[int, int] = {}
            for pfn in vm.pages:
                z = m.pfn_zone(pfn)
                nid = z.node if z is not None else 0
                counts[nid] = counts.get(nid, 0) + (1 << vm.page_order)
            line += "".join(f" N{n}={c}" for n, c in sorted(counts.items()))
        out.append(line)
    for va in st.purge:
        out.append(f"0x{va.va_start:016x}-0x{va.va_end:016x} {va.va_end - va.va_start:7d} "
                   "unpurged vm_area")
    return out


def proc_vmallocinfo(m: Any) -> str:
    return "".join(line + "\n" for line in vmallocinfo_lines(m))


def vmalloc_area_of(m: Any, addr: int) -> dict[str, Any] | None:
    """For ``kmem ADDR``: the vm area holding a vmalloc address."""
    va = find_vmap_area(m, addr)
    if va is None:
        for p in m.vmalloc.purge:
            if p.va_start <= addr < p.va_end:
                return {"area": p, "vm": None, "state": "unpurged (freed)"}
        return None
    vm = va.vm
    pte = _kernel_pte(m, addr)
    pfn = pgtable.pte_pfn(pte) if pte & pgtable._PAGE_PRESENT else None
    state = "guard page" if vm is not None and addr >= vm.addr + get_vm_area_size(vm) \
        else "mapped"
    return {"area": va, "vm": vm, "pfn": pfn, "state": state}
