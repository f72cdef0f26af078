"""The buddy allocator: kernel semantics of mm/page_alloc.c."""

from __future__ import annotations

from math import isqrt

import pytest

import mmdbg
from mmdbg.sim import trace
from mmdbg.sim.include.gfp import (
    __GFP_COMP,
    __GFP_DMA,
    __GFP_DMA32,
    __GFP_NOWARN,
    __GFP_RECLAIMABLE,
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
    MIGRATE_MOVABLE,
    MIGRATE_RECLAIMABLE,
    MIGRATE_UNMOVABLE,
    ZONE_DMA,
    ZONE_DMA32,
    ZONE_MOVABLE,
    ZONE_NORMAL,
)
from mmdbg.sim.mm import page_alloc as pa
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.mm_types import PAGEBLOCK_ORDER
from mmdbg.sim.mm.vmstat import EV


def buddyinfo(m):
    return [[a.nr_free for a in z.free_area] for z in m.zones]


def zone_of(m, pfn):
    return m.pfn_zone(pfn)


def events(tp_name, m):
    got = []
    att = trace.TRACEPOINTS[tp_name].attach(lambda ev: got.append(vars(ev.args).copy()), m)
    return got, att


# -- splitting and merging ------------------------------------------------------------------


def test_split_puts_upper_halves_back(machine):
    """An order-0 request from an order-10 block leaves one free block of every order 0..9."""
    m = machine
    m.drain_all_pages()
    zone = m.zones[ZONE_DMA32]
    # drain the lower orders so __rmqueue_smallest has to split an order-10 block
    for order in range(10):
        for mt in range(6):
            for pfn in list(zone.free_area[order].free_list[mt]):
                pa.__del_page_from_free_list(zone, pfn, order, mt)
                pa.account_freepages(zone, -(1 << order), mt)
                m.mem_map._refcount[pfn] = 1  # now "allocated" at that order
                m.mem_map.order[pfn] = order
    before = zone.free_area[10].nr_free
    m.activate()
    pfn = pa.__rmqueue_smallest(zone, 0, MIGRATE_MOVABLE)
    assert pfn is not None and pfn % 1024 == 0
    assert zone.free_area[10].nr_free == before - 1
    for order in range(10):
        assert zone.free_area[order].nr_free == 1
        (head,) = zone.free_area[order].free_list[MIGRATE_MOVABLE]
        assert head == pfn + (1 << order)  # expand() puts back the upper half at each level
        assert m.page(head).PageBuddy and m.mem_map.order[head] == order
    m.mem_map._refcount[pfn] = 1
    m.free_pages(pfn, 0)
    m.drain_all_pages()
    assert zone.free_area[10].nr_free == before
    assert all(zone.free_area[o].nr_free == 0 for o in range(10))


def test_free_merges_buddies_back_to_the_boot_state(machine):
    m = machine
    m.drain_all_pages()
    bi0 = buddyinfo(m)
    pfns = [m.alloc_pages(GFP_KERNEL, 2) for _ in range(50)]
    assert buddyinfo(m) != bi0
    for p in pfns:
        m.free_pages(p, 2)
    m.drain_all_pages()
    assert buddyinfo(m) == bi0


def test_buddy_pfn_is_pfn_xor_size(machine):
    m = machine
    a = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 4)
    b = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 4)
    # two consecutive allocations of the same order split one block: they are buddies
    assert a ^ (1 << 4) == b
    m.free_pages(a, 4)
    m.free_pages(b, 4)


def test_higher_order_not_on_pcp_goes_straight_to_buddy(machine):
    m = machine
    z = m.zones[ZONE_DMA32]
    before = [p.count for p in z.per_cpu_pageset]
    pfn = m.alloc_pages(GFP_KERNEL, 5)
    assert [p.count for p in z.per_cpu_pageset] == before
    m.free_pages(pfn, 5)
    assert [p.count for p in z.per_cpu_pageset] == before


# -- per-CPU lists -------------------------------------------------------------------------


def test_pcp_refills_by_batch_and_drains_at_high(machine):
    m = machine
    z = m.zones[ZONE_DMA32]
    pcp = z.per_cpu_pageset[0]
    assert pcp.batch == 63  # zone_batchsize() for a zone over 256 MiB
    # the first unmovable allocation claims a pageblock (no zone_locked event for that
    # block, as in the kernel); after that, refills come from __rmqueue_smallest
    m.free_pages(m.alloc_pages(GFP_KERNEL, 0), 0)
    m.drain_all_pages()
    got, att = events("kmem:mm_page_alloc_zone_locked", m)
    try:
        p = m.alloc_pages(GFP_KERNEL, 0)
    finally:
        att.detach()
    assert len(got) == pcp.batch  # rmqueue_bulk took one batch under the zone lock
    assert all(e["percpu_refill"] == 1 and e["order"] == 0 for e in got)
    assert pcp.count == pcp.batch - 1
    m.free_pages(p, 0)
    assert pcp.count == pcp.batch
    # free until count reaches high: free_pcppages_bulk gives back a batch
    pages = [m.alloc_pages(GFP_KERNEL, 0) for _ in range(pcp.high + pcp.batch)]
    drained, att = events("kmem:mm_page_pcpu_drain", m)
    try:
        for q in pages:
            m.free_pages(q, 0)
    finally:
        att.detach()
    assert drained, "freeing past pcp->high must drain to the buddy lists"
    assert pcp.count < pcp.high
    m.drain_all_pages()
    assert pcp.count == 0


def test_pcp_high_and_batch_follow_kernel_formulas():
    m = mmdbg.boot("mem=1G cpus=2")
    for z in m.zones:
        if not z.managed_pages:
            continue
        batch = min(z.managed_pages >> 10, 256) // 4
        batch = max(batch, 1)
        batch = (1 << ((batch + batch // 2).bit_length() - 1)) - 1
        batch = max(batch, 1)
        cpus = 2
        high_min = max(z.low_wmark_pages() // cpus, batch << 2)
        high_max = max(z.managed_pages // 8 // cpus, batch << 2)
        for pcp in z.per_cpu_pageset:
            assert (pcp.batch, pcp.high_min, pcp.high_max) == (batch, high_min, high_max)


# -- watermarks ----------------------------------------------------------------------------


@pytest.mark.parametrize("mem", ["1G", "4G", "16G"])
def test_watermarks_match_kernel_formula(mem):
    m = mmdbg.boot(f"mem={mem}")
    lowmem_kbytes = sum(z.managed_pages for z in m.zones if z.zone_idx <= ZONE_NORMAL) * 4
    mfk = max(128, min(isqrt(lowmem_kbytes * 16), 262144))
    assert m.sysctl["vm.min_free_kbytes"] == mfk
    pages_min = mfk >> 2
    lowmem = sum(z.managed_pages for z in m.zones if z.zone_idx < ZONE_MOVABLE)
    for z in m.zones:
        if z.zone_idx >= ZONE_MOVABLE:
            continue
        tmp = pages_min * z.managed_pages // lowmem
        gap = max(tmp >> 2, z.managed_pages * 10 // 10000)
        assert z._watermark[:3] == [tmp, tmp + gap, tmp + 2 * gap]


def test_min_free_kbytes_examples_from_kernel_comments():
    # mm/page_alloc.c: "16MB: 512k ... 1GB: 4096k ... 16GB: 16384k" (approximately, of lowmem)
    assert 3900 <= mmdbg.boot("mem=1G").sysctl["vm.min_free_kbytes"] <= 4096
    assert 15800 <= mmdbg.boot("mem=16G").sysctl["vm.min_free_kbytes"] <= 16384


def test_writing_min_free_kbytes_recomputes_watermarks(machine):
    m = machine
    old = [z._watermark[:] for z in m.zones]
    m.write("/proc/sys/vm/min_free_kbytes", "16384\n")
    assert m.sysctl["vm.min_free_kbytes"] == 16384
    dma32 = m.zones[ZONE_DMA32]
    lowmem = sum(z.managed_pages for z in m.zones if z.zone_idx < ZONE_MOVABLE)
    assert dma32._watermark[0] == 4096 * dma32.managed_pages // lowmem
    assert [z._watermark for z in m.zones] != old


def test_lowmem_reserve_protects_lower_zones():
    m = mmdbg.boot("mem=8G")
    dma, dma32, normal = m.zones[ZONE_DMA], m.zones[ZONE_DMA32], m.zones[ZONE_NORMAL]
    assert dma.lowmem_reserve[ZONE_DMA32] == dma32.managed_pages // 256
    assert dma.lowmem_reserve[ZONE_NORMAL] == (dma32.managed_pages + normal.managed_pages) // 256
    assert dma32.lowmem_reserve[ZONE_NORMAL] == normal.managed_pages // 256
    assert normal.lowmem_reserve == [0, 0, 0, 0, 0]


# -- zone placement by GFP ------------------------------------------------------------------


def test_zone_placement_by_gfp():
    m = mmdbg.boot("mem=8G movablecore=1G")
    cases = {
        GFP_KERNEL: ZONE_NORMAL,
        GFP_KERNEL | __GFP_DMA32: ZONE_DMA32,
        GFP_KERNEL | __GFP_DMA: ZONE_DMA,
        GFP_HIGHUSER_MOVABLE: ZONE_MOVABLE,
    }
    for gfp, zidx in cases.items():
        pfn = m.alloc_pages(gfp, 0)
        assert zone_of(m, pfn).zone_idx == zidx, hex(gfp)
        m.free_pages(pfn, 0)
    m.check_consistency()


def test_exhausted_zone_falls_back_down_the_zonelist():
    m = mmdbg.boot("mem=8G")
    normal = m.zones[ZONE_NORMAL]
    taken = []
    while True:
        p = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 9)
        if p is None or zone_of(m, p) is not normal:
            break
        taken.append(p)
    assert p is not None and zone_of(m, p).zone_idx == ZONE_DMA32
    assert normal.nr_free_pages <= normal.low_wmark_pages() + 512
    m.check_consistency()


def test_numa_fallback_counts_numa_miss():
    m = mmdbg.boot("mem=2G numa=fake=2 cpus=2")
    assert len(m.node_data) == 2
    n1_zone = m.node_data[1].node_zonelists[0][0]
    assert n1_zone.node == 1
    p = m.alloc_pages(GFP_KERNEL, 0, nid=1)
    assert zone_of(m, p).node == 1
    assert sum(z.vm_numa_event[0] for z in m.node_data[1].node_zones) >= 1  # numa_hit
    m.free_pages(p, 0)
    m.check_consistency()


# -- migratetype fallback and stealing ------------------------------------------------------


def test_unmovable_request_claims_a_movable_pageblock(machine):
    """fallbacks[UNMOVABLE] = {RECLAIMABLE, MOVABLE}: claim the whole block, fire extfrag."""
    m = machine
    got, att = events("kmem:mm_page_alloc_extfrag", m)
    try:
        # nothing allocates from ZONE_DMA at boot: all its pageblocks are still MOVABLE
        pfn = m.alloc_pages(GFP_KERNEL | __GFP_DMA, 0)
    finally:
        att.detach()
    assert got, "the first unmovable allocation must fall back"
    e = got[0]
    assert e["alloc_migratetype"] == MIGRATE_UNMOVABLE
    assert e["fallback_migratetype"] == MIGRATE_MOVABLE
    assert e["fallback_order"] == 10  # __rmqueue_claim searches from the largest order down
    assert e["change_ownership"] == 1
    assert m.mem_map.pageblock_mt[pfn >> PAGEBLOCK_ORDER] == MIGRATE_UNMOVABLE
    m.free_pages(pfn, 0)


def test_movable_claims_whole_free_pageblocks(machine):
    """Orders >= pageblock_order/2 are always claimed (should_try_claim_block)."""
    assert pa.should_try_claim_block(10, MIGRATE_MOVABLE)
    assert pa.should_try_claim_block(PAGEBLOCK_ORDER // 2, MIGRATE_MOVABLE)
    assert not pa.should_try_claim_block(3, MIGRATE_MOVABLE)
    assert pa.should_try_claim_block(0, MIGRATE_UNMOVABLE)
    assert pa.should_try_claim_block(0, MIGRATE_RECLAIMABLE)


def test_small_movable_fallback_steals_without_changing_ownership(machine):
    """Only small RECLAIMABLE blocks left: __rmqueue_steal takes one, the block stays."""
    m = machine
    m.activate()
    m.drain_all_pages()
    z = m.zones[ZONE_DMA32]
    hidden = []
    for order in range(11):
        for mt in range(6):
            for pfn in list(z.free_area[order].free_list[mt]):
                pa.__del_page_from_free_list(z, pfn, order, mt)
                pa.account_freepages(z, -(1 << order), mt)
                hidden.append((pfn, order, mt))
    # give the zone back two small blocks in a RECLAIMABLE pageblock
    pfn0, _, _ = next(h for h in hidden if h[1] == 10)
    pa.change_pageblock_range(m, pfn0, 10, MIGRATE_RECLAIMABLE)
    for pfn, order in ((pfn0, 0), (pfn0 + 2, 1)):
        pa.__add_to_free_list(z, pfn, order, MIGRATE_RECLAIMABLE)
        pa.set_buddy_order(m.mem_map, pfn, order)
        pa.account_freepages(z, 1 << order, MIGRATE_RECLAIMABLE)
    got, att = events("kmem:mm_page_alloc_extfrag", m)
    try:
        pfn = pa.__rmqueue(z, 0, MIGRATE_MOVABLE, pa.ALLOC_WMARK_LOW)
    finally:
        att.detach()
    assert pfn in (pfn0, pfn0 + 2)
    assert len(got) == 1
    assert got[0]["fallback_migratetype"] == MIGRATE_RECLAIMABLE
    assert got[0]["change_ownership"] == 0
    assert m.mem_map.pageblock_mt[pfn >> PAGEBLOCK_ORDER] == MIGRATE_RECLAIMABLE
    # undo: take the remaining small blocks out, put every hidden block back
    for order in range(2):
        for p in list(z.free_area[order].free_list[MIGRATE_RECLAIMABLE]):
            pa.__del_page_from_free_list(z, p, order, MIGRATE_RECLAIMABLE)
            pa.account_freepages(z, -(1 << order), MIGRATE_RECLAIMABLE)
    pa.change_pageblock_range(m, pfn0, 10, MIGRATE_MOVABLE)
    for p, order, mt in hidden:
        pa.__add_to_free_list(z, p, order, mt)
        pa.set_buddy_order(m.mem_map, p, order)
        pa.account_freepages(z, 1 << order, mt)


def test_gfp_migratetype_selects_free_list(machine):
    m = machine
    for gfp, mt in ((GFP_KERNEL, MIGRATE_UNMOVABLE), (GFP_KERNEL | __GFP_RECLAIMABLE,
                                                      MIGRATE_RECLAIMABLE),
                    (GFP_HIGHUSER_MOVABLE, MIGRATE_MOVABLE)):
        p = m.alloc_pages(gfp, 4)
        assert m.mem_map.pageblock_mt[p >> PAGEBLOCK_ORDER] == mt
        m.free_pages(p, 4)


# -- compound pages, zeroing ---------------------------------------------------------------


def test_compound_page_metadata(machine):
    m = machine
    p = m.alloc_pages(GFP_KERNEL | __GFP_COMP, 3)
    head = m.page(p)
    assert head.PageHead and head.order == 3 and head._refcount == 1
    for t in range(p + 1, p + 8):
        tp = m.page(t)
        assert tp.PageTail and tp.compound_head == head.addr | 1
    m.free_pages(p, 3)
    assert not any(m.page(t).PageTail for t in range(p + 1, p + 8))


def test_gfp_zero_clears_contents(machine):
    from mmdbg.sim.include.gfp import __GFP_ZERO

    m = machine
    p = m.alloc_pages(GFP_KERNEL, 0)
    m.physmem.write(p << 12, b"junk")
    m.free_pages(p, 0)
    q = m.alloc_pages(GFP_KERNEL | __GFP_ZERO, 0)
    assert m.physmem.read(q << 12, 4) == b"\0\0\0\0"
    m.free_pages(q, 0)


# -- failures and bad frees -----------------------------------------------------------------


def test_order_above_max_warns_and_returns_null(machine):
    m = machine
    assert m.alloc_pages(GFP_KERNEL, 11) is None
    log = m.dmesg()
    assert "WARNING: CPU: 0 PID: 0 at mm/page_alloc.py:" in log
    assert "__alloc_pages+0x" in log
    n = len(m.log.records)
    assert m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 11) is None
    assert len(m.log.records) == n


def test_exhaustion_reports_page_allocation_failure():
    m = mmdbg.boot("mem=256M")
    while m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 0) is not None:
        pass
    assert m.alloc_pages(GFP_KERNEL, 0) is None
    lines = m.log.lines(with_time=False)
    assert "swapper/0: page allocation failure: order:0, mode:0xcc0(GFP_KERNEL), " \
           "nodemask=(null),cpuset=/,mems_allowed=0" in lines
    assert "Mem-Info:" in lines
    # an atomic request dips into the min reserve before failing
    assert m.alloc_pages(GFP_ATOMIC, 0) is not None
    m.check_consistency()


def test_double_free_is_bad_page_and_machine_stays_consistent(machine):
    m = machine
    p = m.alloc_pages(GFP_KERNEL, 0)
    m.free_pages(p, 0)
    m.free_pages(p, 0)
    assert f"BUG: Bad page state in process swapper/0  pfn:{p:05x}" in m.dmesg()
    assert "B" in m.taints
    m.check_consistency()


def test_freeing_a_buddy_page_reports_nonzero_mapcount(machine):
    m = machine
    m.drain_all_pages()
    z = m.zones[ZONE_DMA32]
    free_head = next(iter(z.free_area[10].free_list[MIGRATE_MOVABLE]))
    m.mem_map._refcount[free_head] = 1  # a corrupted refcount on a free block
    m.free_pages(free_head, 0)
    assert "page dumped because: nonzero mapcount" in m.dmesg()
    m.mem_map._refcount[free_head] = 0


def test_free_with_wrong_order_of_a_compound_page(machine):
    m = machine
    p = m.alloc_pages(GFP_KERNEL | __GFP_COMP, 2)
    m.free_pages(p, 3)
    assert "BUG: Bad page state" in m.dmesg()
    m.check_consistency()
    m.free_pages(p, 2)


def test_mapped_page_free_is_bad(machine):
    m = machine
    p = m.alloc_pages(GFP_KERNEL, 0)
    m.mem_map._mapcount[p] = 0  # mapped once
    m.free_pages(p, 0)
    assert "nonzero mapcount" in m.dmesg()
    m.mem_map._mapcount[p] = -1
    m.mem_map._refcount[p] = 1
    m.free_pages(p, 0)


def test_flags_checked_at_free(machine):
    m = machine
    p = m.alloc_pages(GFP_KERNEL, 0)
    m.mem_map.flags[p] |= 1 << pf.PG_lru
    m.free_pages(p, 0)
    assert "PAGE_FLAGS_CHECK_AT_FREE flag(s) set" in m.dmesg()
    m.mem_map.flags[p] &= ~(1 << pf.PG_lru)
    m.mem_map._refcount[p] = 1
    m.free_pages(p, 0)


# -- counters and events --------------------------------------------------------------------


def test_pgalloc_and_pgfree_counters(machine):
    m = machine
    a0 = m.vm_events[EV["pgalloc_dma32"]]
    f0 = m.vm_events[EV["pgfree"]]
    p = m.alloc_pages(GFP_KERNEL, 3)
    assert m.vm_events[EV["pgalloc_dma32"]] == a0 + 8
    m.free_pages(p, 3)
    assert m.vm_events[EV["pgfree"]] == f0 + 8


def test_mm_page_alloc_event_fields(machine):
    m = machine
    got, att = events("kmem:mm_page_alloc", m)
    try:
        p = m.alloc_pages(GFP_KERNEL, 2)
        assert m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, 11) is None
    finally:
        att.detach()
    assert got == [{"pfn": p, "order": 2, "gfp_flags": GFP_KERNEL, "migratetype": 0}]
    m.free_pages(p, 2)


def test_mm_page_alloc_stream_is_deterministic():
    def stream(seed):
        m = mmdbg.boot("mem=512M", seed=seed)
        got, att = events("kmem:mm_page_alloc", m)
        try:
            live = []
            for _ in range(400):
                if live and m.rng.random() < 0.45:
                    p, o = live.pop(m.rng.randrange(len(live)))
                    m.free_pages(p, o)
                else:
                    o = m.rng.choice([0, 0, 0, 1, 2, 3, 5, 9])
                    gfp = m.rng.choice([GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_ATOMIC])
                    p = m.alloc_pages(gfp, o)
                    if p is not None:
                        live.append((p, o))
        finally:
            att.detach()
        return got

    assert stream(7) == stream(7)
    assert stream(7) != stream(8)


def test_kprobe_sees_args_and_override_fails_allocation(machine):
    m = machine
    seen = []

    def probe(ev):
        seen.append((ev.args.gfp_mask, ev.args.order))
        if ev.args.order == 3:
            ev.override = None

    att = trace.attach_kprobe("__alloc_pages", probe, machine=m)
    try:
        p = m.alloc_pages(GFP_KERNEL, 1)
        assert m.alloc_pages(GFP_KERNEL, 3) is None
    finally:
        att.detach()
    assert seen == [(GFP_KERNEL, 1), (GFP_KERNEL, 3)]
    assert pa.__dict__["__alloc_pages"] is trace.KFUNCS["__alloc_pages"].func
    m.free_pages(p, 1)


def test_kretprobe_and_kstack(machine):
    m = machine
    out = []

    def ret(ev):
        out.append((ev.retval, ev.kstack()[:3]))

    att = trace.attach_kprobe("rmqueue_pcplist", ret, ret=True, machine=m)
    try:
        p = m.alloc_pages(GFP_KERNEL, 0)
    finally:
        att.detach()
    assert out[0][0] == p
    stack = [s.split("+")[0] for s in out[0][1]]
    assert stack == ["get_page_from_freelist", "__alloc_pages", "alloc_pages"]
    m.free_pages(p, 0)


def test_probe_on_other_machine_is_not_called():
    a = mmdbg.boot("mem=256M")
    b = mmdbg.boot("mem=256M")
    hits = []
    att = trace.TRACEPOINTS["kmem:mm_page_alloc"].attach(lambda ev: hits.append(1), a)
    try:
        p = b.alloc_pages(GFP_KERNEL, 0)
        assert hits == []
        q = a.alloc_pages(GFP_KERNEL, 0)
        assert hits == [1]
    finally:
        att.detach()
    a.free_pages(q, 0)
    b.free_pages(p, 0)


# -- boot layout ---------------------------------------------------------------------------


@pytest.mark.parametrize(("cmdline", "nodes"), [("mem=1G", 1), ("mem=6G numa=fake=2", 2),
                                                ("mem=16G cpus=4 numa=fake=4", 4)])
def test_boot_layouts_are_consistent(cmdline, nodes):
    m = mmdbg.boot(cmdline)
    assert len(m.node_data) == nodes
    dma = m.zones[ZONE_DMA]
    assert (dma.zone_start_pfn, dma.spanned_pages, dma.present_pages, dma.managed_pages) == \
        (1, 4095, 3998, 3840)
    total = sum(z.managed_pages for z in m.zones)
    assert total == m.totalram_pages
    assert m.nr_free_pages() + m.free_pcp_pages() <= total
    m.check_consistency()  # every managed page is free, on a pcp list or in use


def test_boot_memory_excludes_memblock_reservations():
    m = mmdbg.boot("mem=1G")
    kernel = next(r for r in m.memblock.reserved if r.name == "kernel image")
    for pfn in range(kernel.base >> 12, kernel.end >> 12, 97):
        assert m.page(pfn).PageReserved and not m.page(pfn).PageBuddy
    memmap = next(r for r in m.memblock.reserved if r.name.startswith("memmap"))
    assert memmap.size >= m.mem_map.max_pfn * 64 // 1 - 4096


def test_raw_tracepoint_handler_gets_the_fields_for_its_machine_only():
    a = mmdbg.boot("mem=256M")
    b = mmdbg.boot("mem=256M")
    got = []
    att = trace.TRACEPOINTS["kmem:mm_page_alloc"].attach_raw(
        lambda m, fields: got.append((m, dict(fields))), a)
    try:
        q = b.alloc_pages(GFP_KERNEL, 0)
        p = a.alloc_pages(GFP_KERNEL, 1)
    finally:
        att.detach()
    assert got == [(a, {"pfn": p, "order": 1, "gfp_flags": GFP_KERNEL, "migratetype": 0})]
    assert not trace.TRACEPOINTS["kmem:mm_page_alloc"].enabled
    a.free_pages(p, 1)
    b.free_pages(q, 0)
