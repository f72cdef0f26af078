"""CONFIG_DEBUG_VM for processes and address spaces (registered with ``register_check``).

Recounted from the page tables, the VMA trees and the page cache:

* the VMA tree is sorted and non-overlapping, ``map_count`` is its size, ``total_vm`` and
  ``locked_vm`` equal the sums over the VMAs, every anon VMA is on its anon_vmas' lists;
* every mm's rss counters equal a page-table recount (``MM_FILEPAGES``/``ANONPAGES``/
  ``SWAPENTS``/``SHMEMPAGES``), and ``pgtables_bytes`` equals the PUD/PMD/PTE tables found;
* page-table pages: every table is PGTY_table with a reference, the machine's table registry
  equals the tables reachable from live mms, and the nodes' ``nr_page_table_pages`` equals it;
* every mapped pfn is allocated (referenced, not buddy, not typed), its mapcount equals the
  number of PTEs mapping it, its refcount covers the mappings (and the page cache's reference);
  no other page has a mapcount; ``nr_anon_pages``/``nr_mapped`` equal a recount;
* page cache: each cached page points back at its mapping and index; ``nr_file_pages`` and
  ``nr_shmem`` equal a recount;
* TLBs: no CPU caches a translation to a different frame, or a write permission the PTE does
  not grant (a missing flush);
* ``Committed_AS`` equals the accountable VMAs plus the shared-memory charges.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.arch.x86.pgtable import PT_PFN, PTRS_PER_TABLE, count_tables
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.mm.vma import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    RESIDENT_PAGE_TYPES,
    VM_ACCOUNT,
    VM_LOCKED,
)

_NR_PAGETABLE = vmstat.NS["nr_page_table_pages"]
_NR_ANON = vmstat.NS["nr_anon_pages"]
_NR_MAPPED = vmstat.NS["nr_mapped"]
_NR_FILE = vmstat.NS["nr_file_pages"]
_NR_SHMEM = vmstat.NS["nr_shmem"]


def live_mms(m: Any) -> list[Any]:
    seen: dict[int, Any] = {}
    for t in sorted(m.tasks.values(), key=lambda t: t.pid):
        mm = t.mm
        if mm is not None and id(mm) not in seen:
            seen[id(mm)] = mm
    return list(seen.values())


def _walk_tables(mm: Any, out_tables: list[int]) -> list[tuple[int, Any]]:
    """All PTE tables [(base, table)] and every table pfn (including the PGD)."""
    shifts = mm.paging.shifts
    leaves: list[tuple[int, Any]] = []

    def rec(t: Any, level: int, base: int) -> None:
        out_tables.append(t[PT_PFN])
        if level == len(shifts) - 1:
            leaves.append((base, t))
            return
        s = shifts[level]
        for i in range(PTRS_PER_TABLE):
            c = t[i]
            if c is not None:
                rec(c, level + 1, base | i << s)

    rec(mm.pgd, 0, 0)
    return leaves


@register_check
def check_vm(m: Any) -> None:
    vm = getattr(m, "vm", None)
    if vm is None:
        return
    from mmdbg.sim.mm.filemap import AddressSpace
    from mmdbg.sim.mm.rmap import AnonVma

    mem_map = m.mem_map
    mapcount = mem_map._mapcount
    refc = mem_map._refcount
    mapping = mem_map.mapping
    refs: dict[int, int] = {}
    tables: list[int] = []
    committed = 0
    for mm in live_mms(m):
        who = f"mm {mm.addr:#x} ({', '.join(str(t.pid) for t in m.tasks.values() if t.mm is mm)})"
        mt = mm.mm_mt
        assert len(mt.vmas) == len(mt.ends) == mm.map_count, \
            f"{who}: map_count {mm.map_count} != {len(mt.vmas)} VMAs"
        prev_end = 0
        total = locked = 0
        for v, e in zip(mt.vmas, mt.ends):
            assert v.vm_end == e, f"{who}: VMA tree key {e:#x} != vm_end of {v!r}"
            assert v.vm_start < v.vm_end and v.vm_start >= prev_end, \
                f"{who}: VMAs overlap or are unsorted at {v!r}"
            assert v.vm_start & 0xFFF == 0 and v.vm_end & 0xFFF == 0, f"{who}: unaligned {v!r}"
            assert v.vm_mm is mm, f"{who}: {v!r} belongs to another mm"
            prev_end = v.vm_end
            total += v.pages
            if v.vm_flags & VM_LOCKED:
                locked += v.pages
            if v.vm_flags & VM_ACCOUNT:
                committed += v.pages
            if v.anon_vma is not None:
                assert v.anon_vma in v.anon_vma_chain, f"{who}: {v!r} not chained to its anon_vma"
                for av in v.anon_vma_chain:
                    assert any(x is v for x in av.vmas), f"{who}: {v!r} missing from {av!r}"
        assert mm.total_vm == total, f"{who}: total_vm {mm.total_vm} != VMA pages {total}"
        assert mm.locked_vm == locked, f"{who}: locked_vm {mm.locked_vm} != locked VMA pages {locked}"
        # page tables and rss
        mtables: list[int] = []
        leaves = _walk_tables(mm, mtables)
        tables.extend(mtables)
        _pages, counted = count_tables(mm)
        assert counted == mm.pgtables_bytes, \
            f"{who}: pgtables_bytes {mm.pgtables_bytes} != {counted} from a table walk"
        rss = [0, 0, 0, 0]
        for base, t in leaves:
            for i in range(PTRS_PER_TABLE):
                pte = t[i]
                if not pte:
                    continue
                addr = base | i << 12
                if not pte & 0x101:
                    rss[MM_SWAPENTS] += 1
                    continue
                v = mt.find(addr)
                assert v is not None and v.vm_start <= addr, \
                    f"{who}: PTE {pte:#x} at {addr:#x} outside every VMA"
                if pte & 0x200:  # special: the zero page
                    continue
                pfn = (pte >> 12) & 0xFFFFFFFFFF
                refs[pfn] = refs.get(pfn, 0) + 1
                mp = mapping.get(pfn)
                if isinstance(mp, AnonVma):
                    rss[MM_ANONPAGES] += 1
                elif isinstance(mp, AddressSpace) and mp.host.shmem:
                    rss[MM_SHMEMPAGES] += 1
                else:
                    rss[MM_FILEPAGES] += 1
        for i, name in enumerate(RESIDENT_PAGE_TYPES):
            assert mm.rss_stat[i] == rss[i], \
                f"{who}: {name} {mm.rss_stat[i]} != page-table recount {rss[i]}"
    # page-table pages (init_mm's too, except swapper_pg_dir: an image page, not counted)
    from mmdbg.sim.mm.init_mm import kernel_table_pfns

    tables.extend(kernel_table_pfns(m)[1])
    registry = set(vm.pgtables)
    assert len(set(tables)) == len(tables), "a page-table page is used twice"
    assert registry == set(tables), \
        f"page-table registry has {len(registry)} pages, live mms use {len(tables)}"
    for pfn in tables:
        assert mapcount[pfn] == pf.PAGE_TABLE_MAPCOUNT_VALUE, f"table pfn {pfn:#x} not PGTY_table"
        assert refc[pfn] > 0, f"table pfn {pfn:#x} has no reference"
    nr_pt = sum(n.vm_stat[_NR_PAGETABLE] for n in m.node_data)
    assert nr_pt == len(tables), f"nr_page_table_pages {nr_pt} != {len(tables)} tables"
    # mapcounts and references
    buddy = pf.PAGE_BUDDY_MAPCOUNT_VALUE
    anon_mapped = file_mapped = 0
    for pfn, n in refs.items():
        mc = mapcount[pfn]
        assert mc != buddy, f"mapped pfn {pfn:#x} is free (PageBuddy)"
        assert pf.page_type_of(mc) is None, f"mapped pfn {pfn:#x} is a typed page"
        assert refc[pfn] > 0, f"mapped pfn {pfn:#x} has refcount 0"
        assert mc + 1 == n, f"pfn {pfn:#x}: mapcount {mc + 1} != {n} PTEs"
        mp = mapping.get(pfn)
        extra = 1 if isinstance(mp, AddressSpace) else 0
        assert refc[pfn] >= n + extra, \
            f"pfn {pfn:#x}: refcount {refc[pfn]} < {n} mappings + {extra} cache"
        if isinstance(mp, AnonVma):
            anon_mapped += 1
        else:
            file_mapped += 1
    stray = [i for i, v in enumerate(mapcount) if v >= 0 and i not in refs]
    assert not stray, f"pfn {stray[0]:#x} has mapcount {mapcount[stray[0]] + 1} but no PTE"
    nr_anon = sum(n.vm_stat[_NR_ANON] for n in m.node_data)
    nr_mapped = sum(n.vm_stat[_NR_MAPPED] for n in m.node_data)
    assert nr_anon == anon_mapped, f"nr_anon_pages {nr_anon} != recount {anon_mapped}"
    assert nr_mapped == file_mapped, f"nr_mapped {nr_mapped} != recount {file_mapped}"
    # page cache
    cached = shmem = 0
    spaces = _address_spaces(m)
    for a in spaces:
        for idx, pfn in a.i_pages.items():
            assert mapping.get(pfn) is a, f"cached pfn {pfn:#x} does not point at its mapping"
            assert mem_map.index.get(pfn) == idx, f"cached pfn {pfn:#x} index mismatch"
            assert refc[pfn] >= 1, f"cached pfn {pfn:#x} has no reference"
            cached += 1
            if a.host.shmem:
                shmem += 1
    # the swap cache counts in nr_file_pages too (issue 7 checks it against the swap cache)
    cached += sum(n.vm_stat[vmstat.NS["nr_swapcached"]] for n in m.node_data)
    nr_file = sum(n.vm_stat[_NR_FILE] for n in m.node_data)
    nr_shmem = sum(n.vm_stat[_NR_SHMEM] for n in m.node_data)
    assert nr_file == cached, f"nr_file_pages {nr_file} != page-cache recount {cached}"
    assert nr_shmem == shmem, f"nr_shmem {nr_shmem} != recount {shmem}"
    # TLBs
    for ts in vm.tlb:
        mm = ts.loaded_mm
        if mm is None or mm.pgd is None:
            assert not ts.entries, f"cpu{ts.cpu}: TLB entries without a loaded mm"
            continue
        if ts.is_lazy and ts.need_flush:
            continue  # a lazy CPU skipped by a shootdown flushes before it uses the mm
        from mmdbg.sim.arch.x86.pgtable import pte_table_lookup

        for vpn, cached_pte in ts.entries.items():
            t = pte_table_lookup(mm, vpn << 12)
            pte = t[vpn & 511] if t is not None else 0
            assert pte & 1 and (pte >> 12) & 0xFFFFFFFFFF == (cached_pte >> 12) & 0xFFFFFFFFFF, \
                f"cpu{ts.cpu}: stale TLB entry for {vpn << 12:#x}: cached {cached_pte:#x}, " \
                f"PTE {pte:#x}"
            assert not (cached_pte & 2 and not pte & 2), \
                f"cpu{ts.cpu}: TLB caches write access to {vpn << 12:#x} the PTE does not grant"
    for f in _shmem_files(m):
        committed += f.f_inode.acct_pages
    assert m.vm_committed_as == committed, \
        f"Committed_AS {m.vm_committed_as} pages != accountable VMAs + shmem {committed}"


def _shmem_files(m: Any) -> list[Any]:
    out = {}
    for mm in live_mms(m):
        for v in mm.mm_mt.vmas:
            f = v.vm_file
            if f is not None and f.f_inode.shmem:
                out[id(f.f_inode)] = f
    return list(out.values())


def _address_spaces(m: Any) -> list[Any]:
    """Every address_space that holds pages (filemap keeps the registry)."""
    return list(m.vm.cached_mappings.values())


_ = (MM_FILEPAGES,)
