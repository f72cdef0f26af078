"""Kernel reports in dmesg: warn_alloc's "page allocation failure" with the __show_mem
Mem-Info block, and "BUG: Bad page state" with dump_page.

The expected text is rebuilt here from the machine's data structures with the kernel's own
format strings (mm/show_mem.c, mm/page_alloc.c, mm/debug.c, lib/vsprintf.c %pGp), written
out C-style so they can be read against the source.  The stack trace lines depend on line
numbers of the simulated kernel, so they are checked by shape and function names.
"""
# The expected lines use printf-style formats on purpose: they are the kernel's strings.
# ruff: noqa: UP031

from __future__ import annotations

import re

import mmdbg
from mmdbg.sim.include.gfp import (
    __GFP_COMP,
    __GFP_NOWARN,
    GFP_DMA,
    GFP_KERNEL,
    ZONE_DMA,
    ZONE_NORMAL,
)
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.show_mem import SHOW_MEM_FILTER_NODES, __show_mem

MIGRATE_LETTERS = "UMEHCI"


def new_lines(m, since: int) -> list[str]:
    """dmesg lines printed after the first ``since`` records, without timestamps."""
    return [r.text for r in list(m.log.records)[since:]]


def K(x: int) -> int:
    return x * 4


def node_stat(m, node, name):
    return m.node_data[node].vm_stat[vmstat.NS[name]]


def glob_node(m, name):
    return sum(n.vm_stat[vmstat.NS[name]] for n in m.node_data)


def expected_mem_info(m, nodes=None, max_zone_idx=4) -> list[str]:
    """__show_mem(filter, nodemask, max_zone_idx) of Linux 6.18, line by line."""
    ok_node = (lambda nid: True) if nodes is None else (lambda nid: nid in nodes)
    zones = [z for z in m.zones if z.present_pages and z.zone_idx <= max_zone_idx
             and ok_node(z.node)]
    free_pcp = sum(p.count for z in zones for p in z.per_cpu_pageset)
    g = lambda name: glob_node(m, name)  # noqa: E731
    zsum = lambda i: sum(z.vm_stat[i] for z in m.zones)  # noqa: E731
    out = ["Mem-Info:"]
    out += (("active_anon:%d inactive_anon:%d isolated_anon:%d\n"
             " active_file:%d inactive_file:%d isolated_file:%d\n"
             " unevictable:%d dirty:%d writeback:%d\n"
             " slab_reclaimable:%d slab_unreclaimable:%d\n"
             " mapped:%d shmem:%d pagetables:%d\n"
             " sec_pagetables:%d bounce:%d\n"
             " kernel_misc_reclaimable:%d\n"
             " free:%d free_pcp:%d free_cma:%d") % (
        g("nr_active_anon"), g("nr_inactive_anon"), g("nr_isolated_anon"),
        g("nr_active_file"), g("nr_inactive_file"), g("nr_isolated_file"),
        g("nr_unevictable"), g("nr_dirty"), g("nr_writeback"),
        g("nr_slab_reclaimable"), g("nr_slab_unreclaimable"),
        g("nr_mapped"), g("nr_shmem"), g("nr_page_table_pages"),
        g("nr_sec_page_table_pages"), 0,
        g("nr_kernel_misc_reclaimable"),
        zsum(vmstat.NR_FREE_PAGES), free_pcp, zsum(vmstat.NR_FREE_CMA_PAGES))).split("\n")
    for pgdat in m.node_data:
        nid = pgdat.node_id
        if not ok_node(nid) or not any(z.managed_pages
                                       for z in pgdat.node_zones[:max_zone_idx + 1]):
            continue
        n = lambda name, nid=nid: node_stat(m, nid, name)  # noqa: E731
        out.append(
            ("Node %d active_anon:%dkB inactive_anon:%dkB active_file:%dkB"
             " inactive_file:%dkB unevictable:%dkB isolated(anon):%dkB isolated(file):%dkB"
             " mapped:%dkB dirty:%dkB writeback:%dkB shmem:%dkB shmem_thp:%dkB"
             " shmem_pmdmapped:%dkB anon_thp:%dkB kernel_stack:%dkB pagetables:%dkB"
             " sec_pagetables:%dkB all_unreclaimable? %s Balloon:%dkB") % (
                nid, K(n("nr_active_anon")), K(n("nr_inactive_anon")),
                K(n("nr_active_file")), K(n("nr_inactive_file")), K(n("nr_unevictable")),
                K(n("nr_isolated_anon")), K(n("nr_isolated_file")), K(n("nr_mapped")),
                K(n("nr_dirty")), K(n("nr_writeback")), K(n("nr_shmem")),
                K(n("nr_shmem_hugepages")), K(n("nr_shmem_pmdmapped")),
                K(n("nr_anon_transparent_hugepages")), n("nr_kernel_stack"),
                K(n("nr_page_table_pages")), K(n("nr_sec_page_table_pages")),
                "yes" if pgdat.kswapd_failures >= 16 else "no", K(n("nr_balloon_pages"))))
    for z in zones:
        zs = lambda name, z=z: z.vm_stat[vmstat.ZS[name]]  # noqa: E731
        highatomic_free = sum(len(a.free_list[3]) << o for o, a in enumerate(z.free_area))
        out.append(
            ("Node %d %s free:%dkB boost:%dkB min:%dkB low:%dkB high:%dkB"
             " reserved_highatomic:%dKB free_highatomic:%dKB active_anon:%dkB"
             " inactive_anon:%dkB active_file:%dkB inactive_file:%dkB unevictable:%dkB"
             " writepending:%dkB present:%dkB managed:%dkB mlocked:%dkB bounce:%dkB"
             " free_pcp:%dkB local_pcp:%dkB free_cma:%dkB") % (
                z.node, z.name, K(zs("nr_free_pages")), K(z.watermark_boost),
                K(z.min_wmark_pages()), K(z.low_wmark_pages()), K(z.high_wmark_pages()),
                K(z.nr_reserved_highatomic), K(highatomic_free),
                K(zs("nr_zone_active_anon")), K(zs("nr_zone_inactive_anon")),
                K(zs("nr_zone_active_file")), K(zs("nr_zone_inactive_file")),
                K(zs("nr_zone_unevictable")), K(zs("nr_zone_write_pending")),
                K(z.present_pages), K(z.managed_pages), K(zs("nr_mlock")), 0,
                K(sum(p.count for p in z.per_cpu_pageset)),
                K(z.per_cpu_pageset[m.cpu].count), K(zs("nr_free_cma"))))
        out.append("lowmem_reserve[]:" + "".join(" %d" % r for r in z.lowmem_reserve))
    for z in zones:
        line = "Node %d %s: " % (z.node, z.name)
        total = 0
        for order, area in enumerate(z.free_area):
            line += "%d*%dkB " % (area.nr_free, 4 << order)
            total += area.nr_free << order
            if area.nr_free:
                line += "(%s) " % "".join(MIGRATE_LETTERS[t] for t in range(6)
                                          if area.free_list[t])
        out.append(line + "= %dkB" % K(total))
    for pgdat in m.node_data:
        if ok_node(pgdat.node_id):
            for size in (1048576, 2048):
                out.append("Node %d hugepages_total=0 hugepages_free=0 hugepages_surp=0"
                           " hugepages_size=%dkB" % (pgdat.node_id, size))
    out.append("%d total pagecache pages" % g("nr_file_pages"))
    out.append("%d pages in swap cache" % g("nr_swapcached"))
    out.append("Free swap  = 0kB")
    out.append("Total swap = 0kB")
    populated = [z for z in m.zones if z.present_pages]
    out.append("%d pages RAM" % sum(z.present_pages for z in populated))
    out.append("0 pages HighMem/MovableOnly")
    out.append("%d pages reserved" % sum(z.present_pages - z.managed_pages for z in populated))
    return out


STACK_FRAME = re.compile(r" [A-Za-z_][A-Za-z0-9_.]*\+0x[0-9a-f]+/0x[0-9a-f]+")


def split_stack(lines: list[str]) -> tuple[list[str], list[str], list[str]]:
    """(before, stack, after): the dump_stack block from "CPU:" through " </TASK>"."""
    start = next(i for i, line in enumerate(lines) if line.startswith("CPU: "))
    end = lines.index(" </TASK>", start)
    return lines[:start], lines[start:end + 1], lines[end + 1:]


def check_stack(m, stack: list[str], frames: list[str], taint: str = "Not tainted") -> None:
    t = m.current
    assert stack[0] == ("CPU: %d UID: 0 PID: %d Comm: %s %s 6.18.0-mmdbg #1 "
                        "PREEMPT(voluntary) " % (m.cpu, t.pid, t.comm, taint))
    assert stack[1].startswith("Hardware name: ")
    assert stack[2:5] == ["Call Trace:", " <TASK>", " dump_stack_lvl+0x5d/0x80"]
    body = stack[5:-1]
    assert all(STACK_FRAME.fullmatch(line) for line in body), body
    names = [line.split("+")[0].strip() for line in body]
    assert names[:len(frames)] == frames, names


# ---------------------------------------------------------------------------------------
# warn_alloc


def test_warn_alloc_dma_beyond_free_memory(machine):
    m = machine
    held = []
    while (p := m.alloc_pages(GFP_KERNEL | GFP_DMA | __GFP_NOWARN, 10)) is not None:
        held.append(p)
    assert len(held) == 3  # ZONE_DMA of a PC holds three free 4 MiB blocks at boot
    since = len(m.log.records)
    assert m.alloc_pages(GFP_KERNEL | GFP_DMA, 10) is None
    lines = new_lines(m, since)
    before, stack, after = split_stack(lines)
    assert before == ["swapper/0: page allocation failure: order:10, "
                      "mode:0xcc1(GFP_KERNEL|GFP_DMA), nodemask=(null),cpuset=/,mems_allowed=0"]
    check_stack(m, stack, ["warn_alloc", "__alloc_pages_slowpath", "__alloc_pages"])
    # gfp_zone(GFP_DMA) is ZONE_DMA: only the DMA zone is shown
    assert after == expected_mem_info(m, max_zone_idx=ZONE_DMA)
    assert [line for line in after if line.startswith("Node 0 DMA")] == [
        after[10], after[12]]
    assert after[12].endswith("0*4096kB = %dkB" % K(m.zones[0].vm_stat[vmstat.NR_FREE_PAGES]))
    # records carry the warning level, as printk without a level does
    assert {r.level for r in list(m.log.records)[since:]} == {4}
    for p in held:
        m.free_pages(p, 10)


def test_warn_alloc_gfp_kernel_order_10_on_exhausted_machine(machine):
    m = machine
    held = []
    while (p := m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 10)) is not None:
        held.append(p)
    assert m.zones[1].free_area[10].nr_free == 0
    since = len(m.log.records)
    assert m.alloc_pages(GFP_KERNEL | __GFP_COMP, 10) is None
    lines = new_lines(m, since)
    before, stack, after = split_stack(lines)
    assert before == ["swapper/0: page allocation failure: order:10, "
                      "mode:0x40cc0(GFP_KERNEL|__GFP_COMP), nodemask=(null),cpuset=/,"
                      "mems_allowed=0"]
    check_stack(m, stack, ["warn_alloc", "__alloc_pages_slowpath", "__alloc_pages"])
    expected = expected_mem_info(m, max_zone_idx=ZONE_NORMAL)
    assert after == expected
    assert sum(line.startswith("lowmem_reserve[]:") for line in after) == 2  # DMA, DMA32
    # the numbers are the machine's: the buddy summary totals equal the free pages
    for z in (m.zones[0], m.zones[1]):
        line = next(x for x in after if x.startswith(f"Node 0 {z.name}: "))
        assert line.endswith(" = %dkB" % K(z.vm_stat[vmstat.NR_FREE_PAGES]))
    for p in held:
        m.free_pages(p, 10)


def test_nowarn_prints_nothing(machine):
    m = machine
    since = len(m.log.records)
    held = []
    while (p := m.alloc_pages(GFP_KERNEL | GFP_DMA | __GFP_NOWARN, 10)) is not None:
        held.append(p)
    assert len(held) == 3 and new_lines(m, since) == []
    for p in held:
        m.free_pages(p, 10)
    m.drain_all_pages()


def test_show_mem_filters_nodes_and_zones():
    m = mmdbg.boot("mem=4G numa=fake=2 movablecore=256M")
    pfns = [m.alloc_pages(GFP_KERNEL, o) for o in (0, 1, 2, 3)]  # something on pcp lists
    since = len(m.log.records)
    m.show_mem()
    assert new_lines(m, since) == expected_mem_info(m)
    assert any(line.startswith("Node 1 Movable free:") for line in new_lines(m, since))
    since = len(m.log.records)
    __show_mem(m, SHOW_MEM_FILTER_NODES, {1}, ZONE_NORMAL)
    lines = new_lines(m, since)
    assert lines == expected_mem_info(m, nodes={1}, max_zone_idx=ZONE_NORMAL)
    assert not any(line.startswith("Node 0") for line in lines)
    assert not any(line.startswith("Node 1 Movable") for line in lines)
    for p, o in zip(pfns, (0, 1, 2, 3)):
        m.free_pages(p, o)
    m.check_consistency()


def test_show_mem_free_pcp_and_migratetype_letters(machine):
    m = machine
    p0 = m.alloc_pages(GFP_KERNEL, 0)          # unmovable: steals a pageblock, refills pcp
    p1 = m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0)
    since = len(m.log.records)
    m.show_mem()
    lines = new_lines(m, since)
    assert lines == expected_mem_info(m)
    free_pcp = sum(p.count for z in m.zones for p in z.per_cpu_pageset)
    assert free_pcp > 0
    assert f" free:{m.nr_free_pages()} free_pcp:{free_pcp} free_cma:0" in lines
    dma32 = next(line for line in lines if line.startswith("Node 0 DMA32: "))
    assert re.search(r" \((U|UM|M)\) ", dma32)
    m.free_pages(p0, 0)
    m.free_pages(p1, 0)


# ---------------------------------------------------------------------------------------
# Bad page state / dump_page


def flags_word(m, pfn: int) -> int:
    """page->flags as the kernel holds it: node at bit 54, zone at 51, last_cpupid (all ones
    after reset, 21 bits) at 30, then the page flag bits."""
    z = m.pfn_zone(pfn)
    return (z.node << 54) | (z.zone_idx << 51) | (0x1FFFFF << 30) | (
        m.mem_map.flags[pfn] & ((1 << 26) - 1))


def raw_lines(words: list[int], prefix: str = "raw: ") -> list[str]:
    return [prefix + " ".join("%016x" % w for w in words[i:i + 4]) for i in (0, 4)]


def test_bad_page_double_free_of_buddy_page(machine):
    m = machine
    pfn = m.alloc_pages(GFP_KERNEL, 10)       # order 10: freed straight to the buddy lists
    m.free_pages(pfn, 10)
    free = m.nr_free_pages()
    since = len(m.log.records)
    m.free_pages(pfn, 10)                     # double free
    lines = new_lines(m, since)
    before, stack, after = split_stack(lines)
    z = m.pfn_zone(pfn)
    fw = flags_word(m, pfn)
    assert fw == (z.zone_idx << 51) | (0x1FFFFF << 30)  # a free page has no flags
    assert before == [
        "BUG: Bad page state in process swapper/0  pfn:%05x" % pfn,
        "page: refcount:0 mapcount:0 mapping:0000000000000000 index:0x0 pfn:%#x" % pfn,
        "flags: %#x(node=0|zone=%d|lastcpupid=0x1fffff)" % (fw, z.zone_idx),
        "page_type: f0(buddy)",
        *raw_lines([fw, 0xDEAD000000000100, 0xDEAD000000000122, 0, 0, 10,
                    0x00000000F0000000, 0]),
        "page dumped because: nonzero mapcount",
        "Modules linked in:",
    ]
    check_stack(m, stack, ["bad_page", "__free_pages"])  # bad_page taints after dump_stack
    assert m.taint_string() == "Tainted: B"
    assert after == []
    assert m.nr_free_pages() == free and m.bad_pages == 1
    m.check_consistency()


def test_bad_page_double_free_after_pcp_drain(machine):
    m = machine
    pfn = m.alloc_pages(GFP_KERNEL, 0)
    m.free_pages(pfn, 0)
    m.drain_all_pages()                       # now PageBuddy, merged into a larger block
    since = len(m.log.records)
    buddy = m.page(pfn).PageBuddy           # head of a free block, or inside one
    m.free_pages(pfn, 0)
    before, stack, after = split_stack(new_lines(m, since))
    fw = flags_word(m, pfn)
    reason = "nonzero mapcount" if buddy else "VM_BUG_ON_PAGE(page_ref_count(page) == 0)"
    mapcount_word = 0xF0000000 if buddy else 0xFFFFFFFF
    private = m.mem_map.order[pfn] if buddy else 0
    assert before == [
        "BUG: Bad page state in process swapper/0  pfn:%05x" % pfn,
        "page: refcount:0 mapcount:0 mapping:0000000000000000 index:0x0 pfn:%#x" % pfn,
        "flags: %#x(node=0|zone=1|lastcpupid=0x1fffff)" % fw,
        *(["page_type: f0(buddy)"] if buddy else []),
        *raw_lines([fw, 0xDEAD000000000100, 0xDEAD000000000122, 0, 0, private,
                    mapcount_word, 0]),
        "page dumped because: %s" % reason,
        "Modules linked in:",
    ]
    check_stack(m, stack, ["bad_page", "__free_pages"])
    assert after == []
    m.check_consistency()


def test_dump_page_of_compound_page_with_mapping(machine):
    m = machine
    pfn = m.alloc_pages(GFP_KERNEL | __GFP_COMP, 2)
    m.mem_map.mapping[pfn] = 0xFFFF888012345678
    m.mem_map.index[pfn] = 0x42
    since = len(m.log.records)
    m.free_pages(pfn, 2)
    before, _stack, _after = split_stack(new_lines(m, since))
    fw = flags_word(m, pfn)
    z = m.pfn_zone(pfn)
    head = (pfn << 6) + 0xFFFFEA0000000000
    page_words = [fw, 0xDEAD000000000100, 0xDEAD000000000122, 0xFFFF888012345678, 0x42, 0,
                  (0 << 32) | 0xFFFFFFFF, 0]
    tail_words = [flags_word(m, pfn + 1) | 2, head | 1, 0, 0, 0, 0, 0xFFFFFFFF, 0]
    assert before == [
        "BUG: Bad page state in process swapper/0  pfn:%05x" % pfn,
        "page: refcount:0 mapcount:0 mapping:ffff888012345678 index:0x42 pfn:%#x" % pfn,
        "head: order:2 mapcount:0 entire_mapcount:0 nr_pages_mapped:0 pincount:0",
        "flags: %#x(head|node=0|zone=%d|lastcpupid=0x1fffff)" % (fw, z.zone_idx),
        *raw_lines(page_words),
        *raw_lines(page_words, "head: "),
        *raw_lines(tail_words, "head: "),
        "page dumped because: non-NULL mapping",
        "Modules linked in:",
    ]
    # the page was not freed: give it back properly
    del m.mem_map.mapping[pfn]
    del m.mem_map.index[pfn]
    m.mem_map._refcount[pfn] = 1
    m.free_pages(pfn, 2)
    m.check_consistency()


def test_dump_page_flags_names_node_and_tail_page():
    m = mmdbg.boot("mem=2G numa=fake=2")
    pfn = m.alloc_pages(GFP_KERNEL | __GFP_COMP, 3, nid=1)
    assert m.pfn_zone(pfn).node == 1
    mm = m.mem_map
    mm.flags[pfn] |= 1 << 2 | 1 << 3 | 1 << 4 | 1 << 0  # referenced, uptodate, dirty, locked
    since = len(m.log.records)
    m.dump_page(pfn + 3, "test")
    lines = new_lines(m, since)
    fw = flags_word(m, pfn)
    assert fw >> 54 == 1
    z = m.pfn_zone(pfn)
    # a tail page: refcount of the folio, its own mapcount, folio flags, index + idx
    assert lines[0] == ("page: refcount:1 mapcount:0 mapping:0000000000000000 index:0x3 "
                        "pfn:%#x" % (pfn + 3))
    assert lines[1] == "head: order:3 mapcount:0 entire_mapcount:0 nr_pages_mapped:0 pincount:0"
    # names in __def_pageflag_names order, not bit order
    assert lines[2] == ("flags: %#x(locked|referenced|uptodate|dirty|head|node=1|zone=%d|"
                        "lastcpupid=0x1fffff)" % (fw, z.zone_idx))
    tail = (pfn << 6) + 0xFFFFEA0000000000
    assert lines[3].startswith("raw: %016x %016x " % (flags_word(m, pfn + 3), tail | 1))
    assert lines[-1] == "page dumped because: test"
    mm.flags[pfn] &= ~(1 << 2 | 1 << 3 | 1 << 4 | 1 << 0)
    m.free_pages(pfn, 3)
    m.check_consistency()


def test_dump_page_lru_links_and_pages_outside_the_memmap(machine):
    m = machine
    pfn = m.alloc_pages(GFP_KERNEL, 0)
    mm = m.mem_map
    mm.lru_next[pfn], mm.lru_prev[pfn] = pfn + 7, pfn - 3  # as if on an LRU list
    since = len(m.log.records)
    m.dump_page(pfn, None)
    lines = new_lines(m, since)
    vmemmap = 0xFFFFEA0000000000
    assert lines[-2] == "raw: %016x %016x %016x %016x" % (
        flags_word(m, pfn), vmemmap + (pfn + 7) * 64 + 8, vmemmap + (pfn - 3) * 64 + 8, 0)
    assert lines[-1] == "raw: %016x %016x %016x %016x" % (0, 0, 1 << 32 | 0xFFFFFFFF, 0)
    assert not any(line.startswith("page dumped because") for line in lines)
    mm.lru_next[pfn] = mm.lru_prev[pfn] = -1
    m.free_pages(pfn, 0)
    since = len(m.log.records)
    m.dump_page(m.mem_map.max_pfn + 5, "outside")
    assert new_lines(m, since) == [
        "page:%016x is uninitialized and poisoned" % (vmemmap + (m.mem_map.max_pfn + 5) * 64),
        "page dumped because: outside"]
