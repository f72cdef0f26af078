"""x86_64 page tables: bit layout, swap entries, 4- and 5-level walks, table accounting."""

from __future__ import annotations

import pytest

import mmdbg
from mmdbg.sim.arch.x86 import pgtable as pt
from mmdbg.sim.mm import page_flags as pf
from mmdbg.workloads.api import Process


@pytest.fixture
def vm():
    m = mmdbg.boot("mem=256M cpus=2", seed=7)
    yield m
    m.check_consistency()


def test_bit_layout_is_x86s():
    assert (pt._PAGE_PRESENT, pt._PAGE_RW, pt._PAGE_USER, pt._PAGE_PWT, pt._PAGE_PCD) == \
        (1, 2, 4, 8, 16)
    assert (pt._PAGE_ACCESSED, pt._PAGE_DIRTY, pt._PAGE_PSE, pt._PAGE_GLOBAL) == \
        (0x20, 0x40, 0x80, 0x100)
    assert pt._PAGE_SPECIAL == 0x200 and pt._PAGE_UFFD_WP == 0x400
    assert pt._PAGE_SOFT_DIRTY == 0x800 and pt._PAGE_NX == 1 << 63
    assert pt._PAGE_TABLE == 0x67 and pt._KERNPG_TABLE == 0x63
    assert pt.PTE_PFN_MASK == 0x000FFFFFFFFFF000
    # the kernel's protection_map for private writable: PAGE_COPY (read-only, NX)
    assert pt.vm_get_page_prot(0x3) == pt.PAGE_COPY_NOEXEC == 0x8000000000000025
    assert pt.vm_get_page_prot(0xB) == pt.PAGE_SHARED == 0x8000000000000027
    assert pt.vm_get_page_prot(0x0) == pt.PAGE_NONE == 0x120


def test_pte_helpers():
    pte = pt.pfn_pte(0x1234, pt.PAGE_COPY)
    assert pt.pte_pfn(pte) == 0x1234 and pt.pte_present(pte) and not pt.pte_write(pte)
    w = pt.pte_mkdirty(pt.pte_mkwrite(pte))
    assert w == 0x8000000001234867
    assert pt.pte_decode_flags(w) == ["PRESENT", "RW", "USER", "ACCESSED", "DIRTY",
                                      "SOFT_DIRTY", "NX"]
    none = pt.pte_modify(w, pt.PAGE_NONE)
    assert pt.pte_present(none) and pt.pte_protnone(none) and pt.pte_pfn(none) == 0x1234
    assert pt.pte_dirty(none)  # pte_modify keeps A/D and the software bits


def test_swap_entry_encoding():
    pte = pt.swp_entry_to_pte(3, 0x1F2E)
    assert pt.is_swap_pte(pte) and not pt.pte_present(pte)
    assert pt.pte_swp_type(pte) == 3 and pt.pte_swp_offset(pte) == 0x1F2E
    # type in bits 59-63, the offset inverted in bits 9..58, bits 0-8 clear
    assert pte >> 59 == 3
    assert pte & 0x1FF == 0
    assert (pte >> 9) & ((1 << 50) - 1) == (~0x1F2E) & ((1 << 50) - 1)
    assert pt.pte_swp_offset(pt.swp_entry_to_pte(31, 0)) == 0


def _walk(m, la57):
    p = Process.start(m, "/usr/bin/walker")
    a = p.mmap(1 << 20)
    p.touch(a, 4096)
    walk = pt.walk_entries(p.mm, a)
    names = [w[0] for w in walk]
    return p, a, walk, names


def test_four_level_walk(vm):
    _p, a, walk, names = _walk(vm, False)
    assert names == ["PGD", "PUD", "PMD", "PTE"]
    for _name, _eaddr, val, _table in walk[:-1]:
        assert val & 0xFFF == pt._PAGE_TABLE
        child = val >> 12
        assert vm.mem_map._mapcount[child] == pf.PAGE_TABLE_MAPCOUNT_VALUE
    pte = walk[-1][2]
    pfn = pte >> 12 & 0xFFFFFFFFFF
    assert pte & 0x867 == 0x867 and pte >> 63
    assert vm.mem_map._mapcount[pfn] == 0  # mapped once
    # the entry address is inside the table page: table pfn * 4096 + index * 8
    assert walk[-1][1] == (walk[-2][2] & pt.PTE_PFN_MASK) + ((a >> 12) & 511) * 8


def test_five_level_walk():
    m = mmdbg.boot("mem=256M cpus=1 la57", seed=7)
    p, _a, _walk_entries, names = _walk(m, True)
    assert names == ["PGD", "P4D", "PUD", "PMD", "PTE"]
    assert m.vm.paging.task_size == (1 << 56) - 4096
    # 5-level paging: P4D tables are not in pgtables_bytes, PUD/PMD/PTE are
    _pages, counted = pt.count_tables(p.mm)
    assert counted == p.mm.pgtables_bytes
    m.check_consistency()


def test_table_pages_accounted_and_freed(vm):
    nr = pt._NR_PAGETABLE
    base = sum(n.vm_stat[nr] for n in vm.node_data)
    p = Process.start(vm, "/usr/bin/t")
    before_bytes = p.mm.pgtables_bytes
    a = p.mmap(8 << 20, addr=0x200000000000, flags=0x22 | 0x10)
    p.touch(a, 8 << 20)
    # 8 MiB at a fresh 1 GiB-aligned spot: one PUD, one PMD, four PTE tables
    assert p.mm.pgtables_bytes - before_bytes == 6 * 4096
    assert sum(n.vm_stat[nr] for n in vm.node_data) > base
    vm.check_consistency()
    p.munmap(a, 8 << 20)
    assert p.mm.pgtables_bytes == before_bytes
    p.exit(0)
    assert sum(n.vm_stat[nr] for n in vm.node_data) == len(vm.vm.pgtables)
