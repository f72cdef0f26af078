"""``init_mm`` (mm/init-mm.c): the kernel's own mm, whose PGD is ``swapper_pg_dir``.

``machine.init_mm`` is created at the end of boot.  Its PGD (``swapper_pg_dir``, 4 or 5 levels
per ``la57``) is a page of the kernel image (``.data``), not a buddy page: it is not in the
machine's table registry (``vm.pgtables``), not PGTY_table and not in NR_PAGETABLE; so are
head_64.S's ``level3_kernel_pgt``/``level2_kernel_pgt`` (and ``level4_kernel_pgt`` with la57)
that cover the top 2 GiB, where the module area is.  The
tables below it are allocated on demand by ``vmap_pages_range`` from the buddy allocator with
``GFP_PGTABLE_KERNEL`` (no memcg charge), typed PGTY_table and counted in NR_PAGETABLE as 6.x
does; ``init_mm.pgtables_bytes`` counts the PUD and PMD tables (``mm_inc_nr_puds``/``pmds``)
but not the PTE tables (``__pte_alloc_kernel`` does not call ``mm_inc_nr_ptes``).  As in the
kernel, vunmap clears PTEs and never frees the tables.

Simplifications: the kernel half is not copied into user PGDs (user PGDs hold user mappings
only); the direct map, vmemmap and kernel text are not mapped in swapper_pg_dir (``vtop``
translates the direct map arithmetically); the vmalloc range's upper levels are not
preallocated at boot (``preallocate_vmalloc_pages``); ``vmalloc_huge`` maps 4K PTEs.

The consistency check verifies vmalloc's translation cache (``machine.vmap_pages``, what
simulated kernel memory accesses read) against these page tables, entry for entry.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.arch.x86 import pgtable
from mmdbg.sim.arch.x86.pgtable import PT_PFN, PTRS_PER_TABLE
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.mm.mm_types import PAGE_SHIFT

__START_KERNEL_map = 0xFFFFFFFF80000000
SWAPPER_PG_DIR_PHYS = 0x0300A000  # in the image's .data (memblock "kernel image")
SWAPPER_PG_DIR = __START_KERNEL_map + SWAPPER_PG_DIR_PHYS
# head_64.S's static tables for the top 2 GiB (kernel text and the module area): PGD 511 ->
# [level4_kernel_pgt (la57) ->] level3_kernel_pgt, PUD 510 -> level2_kernel_pgt
LEVEL4_KERNEL_PGT_PHYS = 0x0300B000
LEVEL3_KERNEL_PGT_PHYS = 0x0300C000
LEVEL2_KERNEL_PGT_PHYS = 0x0300D000
INIT_MM_ADDR = 0xFFFFFFFF8301B7C0  # &init_mm, in the image's .data


def init_mm_init(m: Any) -> None:
    """Build ``init_mm`` (static in the kernel: no mm id, no kobj address taken)."""
    from mmdbg.sim.mm.vma import MmStruct

    vm = m.vm
    saved = (vm.kobj_next, vm.mm_ctx_next)
    mm = MmStruct(m)
    vm.kobj_next, vm.mm_ctx_next = saved
    mm.addr = INIT_MM_ADDR
    mm.mm_users = 2  # INIT_MM: .mm_users = ATOMIC_INIT(2)
    mm.mm_count = 1
    mm.context.ctx_id = 1  # INIT_MM_CONTEXT
    mm.mm_id = 0
    mm.pgd = _image_table(m, SWAPPER_PG_DIR_PHYS)
    top = mm.pgd
    if mm.paging.levels == 5:
        top[511] = _image_table(m, LEVEL4_KERNEL_PGT_PHYS)
        top = top[511]
    top[511] = l3 = _image_table(m, LEVEL3_KERNEL_PGT_PHYS)
    l3[510] = _image_table(m, LEVEL2_KERNEL_PGT_PHYS)
    m.init_mm = mm
    # anything vmalloc'ed before init_mm existed gets its mappings now
    from mmdbg.sim.mm import vmalloc

    for va in list(m.vmalloc.busy):
        vmv = va.vm
        if vmv is not None and vmv.pages:
            vmalloc.vmap_pages_range(m, vmv.addr, vmv.pages, vmv.page_order)


def _image_table(m: Any, phys: int) -> list:
    """A static table of the kernel image: not a buddy page, not in the table registry."""
    t = pgtable._new_upper(m, phys >> PAGE_SHIFT)
    m.vm.pgtables.pop(phys >> PAGE_SHIFT)
    return t


IMAGE_TABLE_PFNS = frozenset(p >> PAGE_SHIFT for p in (
    SWAPPER_PG_DIR_PHYS, LEVEL4_KERNEL_PGT_PHYS, LEVEL3_KERNEL_PGT_PHYS, LEVEL2_KERNEL_PGT_PHYS))


def _tables(mm: Any) -> list[tuple[int, int]]:
    """[(table pfn, level)] of init_mm, level 0 the PGD."""
    out: list[tuple[int, int]] = []
    last = len(mm.paging.shifts) - 1

    def rec(t: Any, level: int) -> None:
        out.append((t[PT_PFN], level))
        if level == last:
            return
        for i in range(PTRS_PER_TABLE):
            c = t[i]
            if c is not None:
                rec(c, level + 1)

    rec(mm.pgd, 0)
    return out


def kernel_table_pfns(m: Any) -> tuple[list[int], list[int]]:
    """(every init_mm table pfn, the ones from the buddy allocator: not the image's)."""
    mm = getattr(m, "init_mm", None)
    if mm is None or mm.pgd is None:
        return [], []
    out = [pfn for pfn, _level in _tables(mm)]
    return out, [pfn for pfn in out if pfn not in IMAGE_TABLE_PFNS]


def kernel_ptes(m: Any) -> dict[int, int]:
    """{vaddr >> PAGE_SHIFT: PTE} for every non-empty PTE of init_mm."""
    mm = m.init_mm
    out: dict[int, int] = {}
    sign = (1 << 64) - (1 << (57 if mm.paging.levels == 5 else 48))
    for base, t in pgtable.for_each_pte_table(mm):
        for i in range(PTRS_PER_TABLE):
            pte = t[i]
            if pte:
                out[(sign | base | i << PAGE_SHIFT) >> PAGE_SHIFT] = pte
    return out


def kernel_pgtables_bytes(m: Any) -> int:
    """PUD + PMD tables of init_mm, as mm_inc_nr_puds/pmds count them."""
    mm = m.init_mm
    n = mm.paging.levels
    return sum(PTRS_PER_TABLE * 8 for pfn, level in _tables(mm)
               if pfn not in IMAGE_TABLE_PFNS and n - 3 <= level <= n - 2)


@register_check
def check_init_mm(m: Any) -> None:
    mm = getattr(m, "init_mm", None)
    if mm is None or getattr(m, "vmalloc", None) is None:
        return
    from mmdbg.sim.mm import page_flags as pf
    from mmdbg.sim.mm.vmalloc import get_vm_area_size

    assert mm.pgd is not None and mm.pgd[PT_PFN] == SWAPPER_PG_DIR_PHYS >> PAGE_SHIFT, \
        "init_mm.pgd is not swapper_pg_dir"
    want = kernel_pgtables_bytes(m)
    assert mm.pgtables_bytes == want, \
        f"init_mm: pgtables_bytes {mm.pgtables_bytes} != {want} (PUD+PMD tables)"
    ptes = kernel_ptes(m)
    cache = m.vmap_pages
    mapcount, refc = m.mem_map._mapcount, m.mem_map._refcount
    heads = {p for va in m.vmalloc.busy if va.vm is not None for p in va.vm.pages}
    for vpn, pfn in cache.items():
        pte = ptes.get(vpn)
        assert pte is not None, f"vmalloc address {vpn << PAGE_SHIFT:#x} cached but not mapped"
        assert pte == pgtable.pfn_pte(pfn, pgtable.PAGE_KERNEL), \
            f"init_mm PTE {pte:#x} at {vpn << PAGE_SHIFT:#x} != pfn {pfn:#x} PAGE_KERNEL"
        assert mapcount[pfn] != pf.PAGE_BUDDY_MAPCOUNT_VALUE and (
            refc[pfn] > 0 or pfn not in heads), \
            f"vmalloc address {vpn << PAGE_SHIFT:#x} maps free pfn {pfn:#x}"
    for va in m.vmalloc.busy:
        vmv = va.vm
        if vmv is None or vmv.flags & 0x40:  # VM_NO_GUARD
            continue
        g = (vmv.addr + get_vm_area_size(vmv)) >> PAGE_SHIFT
        assert g not in ptes, f"guard page {g << PAGE_SHIFT:#x} of {vmv.addr:#x} is mapped"
    assert len(ptes) == len(cache), \
        f"init_mm maps {len(ptes)} pages, vmalloc's translation cache has {len(cache)}"
