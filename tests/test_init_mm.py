"""init_mm (mm/init-mm.c) and vmalloc's kernel page-table mappings (issue 6, point 3)."""

from __future__ import annotations

import pytest

import mmdbg
from mmdbg.shell.session import run_commands
from mmdbg.sim.arch.x86 import pgtable as pt
from mmdbg.sim.arch.x86 import tlb
from mmdbg.sim.mm import init_mm as init_mm_mod
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmalloc, vmstat
from mmdbg.sim.mm.mm_types import PAGE_SHIFT, PAGE_SIZE, VMALLOC_START

NR_PT = vmstat.NS["nr_page_table_pages"]
PAGE_KERNEL_BITS = (pt._PAGE_PRESENT | pt._PAGE_RW | pt._PAGE_ACCESSED | pt._PAGE_DIRTY
                    | pt._PAGE_GLOBAL | pt._PAGE_NX)


def _pte(m, addr):
    t = pt.pte_table_lookup(m.init_mm, addr)
    return 0 if t is None else t[addr >> PAGE_SHIFT & 511]


def _nr_pt(m):
    return sum(n.vm_stat[NR_PT] for n in m.node_data)


@pytest.fixture(params=["", "la57"], ids=["4level", "5level"])
def km(request):
    m = mmdbg.boot(f"mem=256M cpus=2 {request.param}".strip(), seed=5)
    m.activate()
    yield m
    m.check_consistency()


def test_init_mm_at_boot(km):
    mm = km.init_mm
    assert mm.paging.levels == (5 if km.config.la57 else 4)
    assert mm.pgd[pt.PT_PFN] == init_mm_mod.SWAPPER_PG_DIR_PHYS >> PAGE_SHIFT
    assert km.memblock.is_reserved(init_mm_mod.SWAPPER_PG_DIR_PHYS)  # in the kernel image
    assert mm.pgtables_bytes == 0
    # only head_64.S's static tables for the top 2 GiB (module area): PGD 511 -> ... -> PMD
    assert [i for i in range(512) if mm.pgd[i] is not None] == [511]
    kall, kbuddy = init_mm_mod.kernel_table_pfns(km)
    assert len(kall) == mm.paging.levels - 1 and kbuddy == []
    assert mm.mm_users == 2 and mm.mm_count == 1
    assert not any(t.mm is mm for t in km.tasks.values())
    km.check_consistency()


def test_vmalloc_maps_pages_in_init_mm(km):
    pt_before = _nr_pt(km)
    addr = vmalloc.vmalloc(3 * PAGE_SIZE)
    assert addr == VMALLOC_START
    vm = vmalloc.find_vm_area(addr)
    assert vm.size == 4 * PAGE_SIZE  # 3 pages + the guard page
    levels = km.init_mm.paging.levels
    # PUD, PMD and PTE tables from the buddy allocator, in NR_PAGETABLE (with la57 the P4D
    # under PGD 511 is the image's level4_kernel_pgt)
    assert _nr_pt(km) - pt_before == 3
    # init_mm.pgtables_bytes: PUD and PMD (mm_inc_nr_puds/pmds), not the kernel PTE table
    assert km.init_mm.pgtables_bytes == 2 * 4096
    kall, kbuddy = init_mm_mod.kernel_table_pfns(km)
    assert len(kbuddy) == 3 and len(kall) == 3 + levels - 1
    for pfn in kbuddy:  # PGTY_table pages from the buddy allocator
        assert km.mem_map._mapcount[pfn] == pf.PAGE_TABLE_MAPCOUNT_VALUE
        assert km.mem_map._refcount[pfn] == 1
    assert km.mem_map._mapcount[kall[0]] != pf.PAGE_TABLE_MAPCOUNT_VALUE  # swapper_pg_dir
    for i, pfn in enumerate(vm.pages):
        a = addr + i * PAGE_SIZE
        pte = _pte(km, a)
        assert pte == pfn << PAGE_SHIFT | PAGE_KERNEL_BITS
        assert pte == pt.pfn_pte(pfn, pt.PAGE_KERNEL) == 0x8000000000000163 | pfn << PAGE_SHIFT
        assert pt.pte_decode_flags(pte) == ["PRESENT", "RW", "ACCESSED", "DIRTY", "GLOBAL", "NX"]
        assert vmalloc.vmalloc_to_pfn(a + 123) == pfn
    guard = addr + 3 * PAGE_SIZE
    assert _pte(km, guard) == 0 and vmalloc.vmalloc_to_pfn(guard) is None
    assert vmalloc.vmalloc_area_of(km, guard)["state"] == "guard page"
    # a second area starts after the guard page and reuses the tables
    b = vmalloc.vmalloc(PAGE_SIZE)
    assert b == guard + PAGE_SIZE
    assert _nr_pt(km) - pt_before == 3
    assert _pte(km, b) & pt._PAGE_PRESENT and _pte(km, b + PAGE_SIZE) == 0
    km.check_consistency()


def test_vfree_clears_ptes_keeps_tables_flushes_lazily(km, monkeypatch):
    flushes = []
    orig = tlb.flush_tlb_kernel_range
    monkeypatch.setattr(tlb, "flush_tlb_kernel_range",
                        lambda s, e: (flushes.append((s, e)), orig(s, e))[-1])
    addr = vmalloc.vmalloc(2 * PAGE_SIZE)
    pages = list(vmalloc.find_vm_area(addr).pages)
    nr_pt = _nr_pt(km)
    vmalloc.vfree(addr)
    assert _pte(km, addr) == 0 and _pte(km, addr + PAGE_SIZE) == 0
    assert vmalloc.vmalloc_to_pfn(addr) is None
    assert all(km.mem_map._refcount[p] == 0 for p in pages)
    assert _nr_pt(km) == nr_pt  # the kernel never frees vmalloc page tables
    assert flushes == []  # lazy: the area waits in the purge list
    km.check_consistency()
    vmalloc.purge_vmap_area_lazy(km)
    assert flushes == [(addr, addr + 3 * PAGE_SIZE)]
    # vunmap of a vmap()ed area: PTEs cleared, the caller's pages untouched
    p = km.alloc_pages("GFP_KERNEL", 0)
    v = vmalloc.vmap([p], 1)
    assert _pte(km, v) == pt.pfn_pte(p, pt.PAGE_KERNEL)
    vmalloc.vunmap(v)
    assert _pte(km, v) == 0 and km.mem_map._refcount[p] == 1
    km.check_consistency()
    km.free_pages(p, 0)
    # the exported vunmap_range flushes at once
    flushes.clear()
    c = vmalloc.vmalloc(PAGE_SIZE)
    vmalloc.vunmap_range(c, c + PAGE_SIZE)
    assert flushes == [(c, c + PAGE_SIZE)] and _pte(km, c) == 0
    vmalloc.vmap_pages_range(km, c, vmalloc.find_vm_area(c).pages)  # remap before vfree
    vmalloc.vfree(c)


def test_module_and_huge_mappings(km):
    nr_pt = _nr_pt(km)
    a = vmalloc.module_alloc(2 * PAGE_SIZE)
    assert a >= vmalloc.MODULES_VADDR
    assert _nr_pt(km) == nr_pt + 1  # only a PTE table: the PMD is level2_kernel_pgt
    walk = pt.walk_entries(km.init_mm, a)
    assert walk[-2][0] == "PMD" and walk[-2][3][pt.PT_PFN] == \
        init_mm_mod.LEVEL2_KERNEL_PGT_PHYS >> PAGE_SHIFT
    vm = vmalloc.find_vm_area(a)
    assert _pte(km, a) == pt.pfn_pte(vm.pages[0], pt.PAGE_KERNEL)
    h = vmalloc.vmalloc_huge(2 << 20)
    vmh = vmalloc.find_vm_area(h)
    assert vmh.page_order == 9
    assert vmalloc.vmalloc_to_pfn(h + 5 * PAGE_SIZE) == vmh.pages[0] + 5
    km.check_consistency()
    vmalloc.vfree(h)
    vmalloc.vfree(a)


def test_consistency_check_catches_a_stale_pte(km):
    addr = vmalloc.vmalloc(PAGE_SIZE)
    t = pt.pte_table_lookup(km.init_mm, addr)
    i = addr >> PAGE_SHIFT & 511
    good = t[i]
    t[i] = 0
    with pytest.raises(AssertionError, match="cached but not mapped"):
        km.check_consistency()
    t[i] = good
    guard = addr + PAGE_SIZE
    t[i + 1] = pt.pfn_pte(km.init_mm.pgd[pt.PT_PFN], pt.PAGE_KERNEL)
    with pytest.raises(AssertionError, match="guard page"):
        km.check_consistency()
    t[guard >> PAGE_SHIFT & 511] = 0
    km.check_consistency()
    vmalloc.vfree(addr)


def test_vtop_vmalloc_address(km):
    addr = vmalloc.vmalloc(2 * PAGE_SIZE)
    pfn = vmalloc.find_vm_area(addr).pages[1]
    out = run_commands(km, f"vtop {addr + PAGE_SIZE + 0x10:x}")
    lines = out.splitlines()
    assert lines[0] == "VIRTUAL           PHYSICAL"
    assert lines[1] == f"{addr + PAGE_SIZE + 0x10:<16x}  {pfn << PAGE_SHIFT | 0x10:x}"
    assert lines[3] == f"PGD DIRECTORY: {init_mm_mod.SWAPPER_PG_DIR:x}"
    names = ("PGD", "P4D", "PUD", "PMD", "PTE") if km.config.la57 else ("PGD", "PUD", "PMD",
                                                                         "PTE")
    walk = pt.walk_entries(km.init_mm, addr + PAGE_SIZE)
    for j, (name, (wname, eaddr, value, _t)) in enumerate(zip(names, walk)):
        assert name == wname
        assert lines[4 + j] == f"{name:>6}: {eaddr:x} => {value:x}"
    pgd_index = addr >> km.init_mm.paging.pgdir_shift & 511
    assert lines[4].startswith(f"   PGD: {init_mm_mod.SWAPPER_PG_DIR_PHYS + pgd_index * 8:x} => ")
    k = 4 + len(names)
    assert lines[k] == f"  PAGE: {pfn << PAGE_SHIFT:x}"
    assert lines[k + 2] == "      PTE         PHYSICAL  FLAGS"
    assert lines[k + 3] == (f"{0x8000000000000163 | pfn << PAGE_SHIFT:16x}  {pfn << PAGE_SHIFT:9x}"
                            "  (PRESENT|RW|ACCESSED|DIRTY|GLOBAL|NX)")
    assert "      PAGE        PHYSICAL      MAPPING       INDEX CNT FLAGS" in lines
    # the guard page: walk shown, not mapped
    out = run_commands(km, f"vtop {addr + 2 * PAGE_SIZE:x}")
    assert out.splitlines()[1] == f"{addr + 2 * PAGE_SIZE:<16x}  (not mapped)"
    assert "  PAGE:" not in out
    # the direct map is still arithmetic
    out = run_commands(km, "vtop ffff888000100000")
    assert "ffff888000100000  100000" in out
    vmalloc.vfree(addr)
