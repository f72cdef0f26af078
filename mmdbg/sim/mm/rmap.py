"""Reverse mapping (mm/rmap.c): anon_vma, mapcounts, and walking a page's mappers.

Anonymous pages: ``page->mapping`` is the VMA's ``anon_vma`` (the kernel tags the pointer with
``PAGE_MAPPING_ANON``; here the column holds the :class:`AnonVma` object) and ``page->index``
the linear page index.  Every VMA that may map pages of an anon_vma is on its list (the
kernel's ``anon_vma_chain`` interval tree, a list here): a forked child's VMA is linked to its
own new anon_vma *and* to every anon_vma of the parent's VMA (``anon_vma_fork``), so a CoW
page still shared after fork is found in both processes.

File pages: ``page->mapping`` is the file's ``address_space``; its ``i_mmap`` list holds the
VMAs mapping the file.

Mapcounts live on the ``_mapcount`` column: -1 = unmapped, each PTE mapping adds one
(``folio_mapcount`` = ``page_mapcount`` = ``_mapcount + 1`` for the order-0 folios of this
simulation).  ``NR_ANON_MAPPED`` (``nr_anon_pages``) and ``NR_FILE_MAPPED`` (``nr_mapped``)
count pages with a non-negative mapcount.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.include.gfp import GFP_KERNEL
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import slab_common, vmstat
from mmdbg.sim.mm.mm_types import PAGEBLOCK_ORDER
from mmdbg.sim.mm.vma import kobj_slab_alloc, kobj_slab_free
from mmdbg.sim.trace import current_machine, kfunc

NR_ANON_MAPPED = vmstat.NS["nr_anon_pages"]
NR_FILE_MAPPED = vmstat.NS["nr_mapped"]
NR_SHMEM_MAPPED = NR_FILE_MAPPED
_EXCL = 1 << pf.PG_anon_exclusive
_SWAPBACKED = 1 << pf.PG_swapbacked
_UPTODATE = 1 << pf.PG_uptodate


class AnonVma:
    """``struct anon_vma``: the root of an anon rmap, and the VMAs linked to it."""

    __slots__ = ("addr", "degree", "num_active_vmas", "num_children", "parent", "refcount",
                 "root", "vmas")
    ktype = "anon_vma"

    def __init__(self, m: Any, parent: AnonVma | None = None) -> None:
        self.parent = parent if parent is not None else self
        self.root = parent.root if parent is not None else self
        self.refcount = 1
        self.num_children = 0
        self.num_active_vmas = 0
        self.degree = 1
        self.vmas: list[Any] = []  # the rb_root of anon_vma_chains, as a list of VMAs
        self.addr = 0
        kobj_slab_alloc(m, self, "anon_vma", 88)  # anon_vma_alloc

    def __repr__(self) -> str:
        return f"<anon_vma {self.addr:#x}>"


def anon_vma_chain_link(vma: Any, av: AnonVma) -> None:
    vma.anon_vma_chain.append(av)
    av.vmas.append(vma)
    m = _trace._current
    if m.vm.kobj_slab:  # anon_vma_chain_alloc(GFP_KERNEL); boot links none
        s = slab_common.find_cache(m, "anon_vma_chain")
        a = slab_common.kmem_cache_alloc(s, GFP_KERNEL) if s is not None else 0
        if a:
            m.vm.kobj_avc.setdefault((vma, av), []).append(a)


def put_anon_vma(av: AnonVma) -> None:
    """Drop a reference; the last one frees the anon_vma (and its root reference)."""
    av.refcount -= 1
    if av.refcount == 0:
        m = _trace._current
        root = av.root
        kobj_slab_free(m, av)  # anon_vma_free
        if root is not av:
            put_anon_vma(root)


@kfunc(aliases=("__anon_vma_prepare",))
def anon_vma_prepare(vma: Any) -> int:
    """Attach an anon_vma to ``vma`` before its first anonymous page (reusing a mergeable
    neighbour's, as find_mergeable_anon_vma does); 0 or -ENOMEM."""
    if vma.anon_vma is not None:
        return 0
    m = current_machine()
    mt = vma.vm_mm.mm_mt
    av = None
    for nb in (mt.prev(vma), mt.next(vma)):
        if nb is not None and nb.anon_vma is not None and len(nb.anon_vma_chain) == 1 and \
                (nb.vm_end == vma.vm_start or nb.vm_start == vma.vm_end) and \
                nb.vm_flags == vma.vm_flags and nb.vm_file is vma.vm_file and \
                nb.vm_pgoff + (nb.vm_start - vma.vm_start) // 4096 == vma.vm_pgoff:
            av = nb.anon_vma
            break
    if av is None:
        av = AnonVma(m)
    vma.anon_vma = av
    av.num_active_vmas += 1
    anon_vma_chain_link(vma, av)
    return 0


@kfunc
def anon_vma_fork(vma: Any, pvma: Any) -> int:
    """Link the child's VMA to the parent's anon_vmas and give it a new one of its own."""
    if pvma.anon_vma is None:
        return 0
    m = current_machine()
    vma.anon_vma = None
    vma.anon_vma_chain = []
    for av in pvma.anon_vma_chain:
        anon_vma_chain_link(vma, av)
    av = AnonVma(m, pvma.anon_vma)
    av.root.refcount += 1  # get_anon_vma(anon_vma->root)
    av.parent.num_children += 1
    av.num_active_vmas += 1
    vma.anon_vma = av
    anon_vma_chain_link(vma, av)
    return 0


def anon_vma_clone(dst: Any, src: Any) -> None:
    """A split VMA shares all of its original's anon_vmas."""
    dst.anon_vma_chain = []
    for av in src.anon_vma_chain:
        anon_vma_chain_link(dst, av)
    if dst.anon_vma is not None:
        dst.anon_vma.num_active_vmas += 1


@kfunc
def unlink_anon_vmas(vma: Any) -> None:
    m = _trace._current
    avcs = m.vm.kobj_avc
    empty = []
    for av in vma.anon_vma_chain:
        try:
            av.vmas.remove(vma)
        except ValueError:
            continue
        a = avcs.get((vma, av))
        if a:  # anon_vma_chain_free
            slab_common.kmem_cache_free(slab_common.find_cache(m, "anon_vma_chain"), a.pop())
            if not a:
                del avcs[(vma, av)]
        if not av.vmas:  # RB_EMPTY_ROOT: the last VMA is gone
            if av.parent is not av:
                av.parent.num_children -= 1
            empty.append(av)
    if vma.anon_vma is not None:
        vma.anon_vma.num_active_vmas -= 1
    vma.anon_vma_chain = []
    for av in empty:
        put_anon_vma(av)


# -- mapcounts -----------------------------------------------------------------------------
def _nodestat(m: Any, pfn: int) -> list[int]:
    return m.vm.nodestat[pfn >> PAGEBLOCK_ORDER]


@kfunc
def folio_add_new_anon_rmap(folio: int, vma: Any, address: int, flags: int = 1) -> None:
    """A freshly allocated anon folio gets its first mapping (RMAP_EXCLUSIVE)."""
    m = _trace._current
    mem_map = m.mem_map
    mem_map.mapping[folio] = vma.anon_vma
    mem_map.index[folio] = ((address - vma.vm_start) >> 12) + vma.vm_pgoff
    mem_map.flags[folio] |= _SWAPBACKED | _UPTODATE | (_EXCL if flags & 1 else 0)
    mem_map._mapcount[folio] = 0
    m.vm.nodestat[folio >> PAGEBLOCK_ORDER][NR_ANON_MAPPED] += 1


@kfunc(aliases=("folio_add_anon_rmap_ptes", "page_add_anon_rmap"))
def folio_add_anon_rmap_pte(folio: int, page: int, vma: Any, address: int, flags: int) -> None:
    """Map an existing anon folio once more (swap-in, or a CoW page left shared)."""
    m = current_machine()
    mc = m.mem_map._mapcount
    v = mc[folio] + 1
    mc[folio] = v
    if v == 0:
        m.vm.nodestat[folio >> PAGEBLOCK_ORDER][NR_ANON_MAPPED] += 1
    if flags & 1:
        m.mem_map.flags[folio] |= _EXCL


@kfunc(aliases=("folio_try_dup_anon_rmap_ptes",))
def folio_try_dup_anon_rmap_pte(folio: int, page: int, src_vma: Any) -> int:
    """fork: the child maps the parent's anon page too; it stops being exclusive."""
    mem_map = _trace._current.mem_map
    mem_map._mapcount[folio] += 1
    mem_map._refcount[folio] += 1
    mem_map.flags[folio] &= ~_EXCL
    return 0


@kfunc(aliases=("folio_add_file_rmap_ptes", "page_add_file_rmap"))
def folio_add_file_rmap_pte(folio: int, page: int, vma: Any) -> None:
    m = current_machine()
    mc = m.mem_map._mapcount
    v = mc[folio] + 1
    mc[folio] = v
    if v == 0:
        m.vm.nodestat[folio >> PAGEBLOCK_ORDER][NR_FILE_MAPPED] += 1


@kfunc(aliases=("folio_remove_rmap_ptes", "page_remove_rmap"))
def folio_remove_rmap_pte(folio: int, page: int, vma: Any) -> None:
    """One mapping fewer; the last one takes the page out of NR_ANON/FILE_MAPPED."""
    m = _trace._current
    mem_map = m.mem_map
    mc = mem_map._mapcount
    v = mc[folio] - 1
    mc[folio] = v
    if v == -1:
        anon = isinstance(mem_map.mapping.get(folio), AnonVma)  # folio_test_anon()
        m.vm.nodestat[folio >> PAGEBLOCK_ORDER][NR_ANON_MAPPED if anon else NR_FILE_MAPPED] -= 1
        if anon:
            mem_map.flags[folio] &= ~_EXCL


def folio_test_anon(m: Any, pfn: int) -> bool:
    return isinstance(m.mem_map.mapping.get(pfn), AnonVma)


def folio_mapcount(m: Any, pfn: int) -> int:
    v = m.mem_map._mapcount[pfn]
    return 0 if pf.page_type_of(v) is not None else v + 1


def page_mapcount(m: Any, pfn: int) -> int:
    return folio_mapcount(m, pfn)


def folio_mapped(m: Any, pfn: int) -> bool:
    return folio_mapcount(m, pfn) > 0


# -- rmap walks -------------------------------------------------------------------------------
def vma_address(vma: Any, pgoff: int) -> int | None:
    a = vma.vm_start + ((pgoff - vma.vm_pgoff) << 12)
    return a if vma.vm_start <= a < vma.vm_end else None


@kfunc(aliases=("rmap_walk_anon", "rmap_walk_file"))
def rmap_walk(folio: int) -> list[tuple[Any, int]]:
    """Every (vma, address) whose PTE maps ``folio`` (page_vma_mapped_walk per candidate)."""
    mem_map = _trace._current.mem_map
    mapping = mem_map.mapping.get(folio)
    if mapping is None:
        return []
    pgoff = mem_map.index.get(folio, 0)
    if isinstance(mapping, AnonVma):
        candidates = mapping.vmas
    else:
        candidates = getattr(mapping, "i_mmap", ())
    out = []
    seen = set() if len(candidates) > 1 else None
    for vma in candidates:
        if seen is not None:
            if id(vma) in seen:
                continue
            seen.add(id(vma))
        start = vma.vm_start  # vma_address, inlined
        a = start + ((pgoff - vma.vm_pgoff) << 12)
        if not start <= a < vma.vm_end:
            continue
        # pte_table_lookup, inlined
        mm = vma.vm_mm
        t = mm.pgd
        for s in mm.paging.shifts[:-1]:
            t = t[a >> s & 511]
            if t is None:
                break
        if t is None:
            continue
        pte = t[a >> 12 & 511]
        if pte and pte & 0x101 and (pte >> 12) & 0xFFFFFFFFFF == folio:
            out.append((vma, a))
    return out
