"""Property-based tests of the buddy allocator: random alloc/free sequences."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmdbg
from mmdbg.sim.include.gfp import (
    __GFP_COMP,
    __GFP_DMA32,
    __GFP_NOWARN,
    __GFP_RECLAIMABLE,
    GFP_ATOMIC,
    GFP_HIGHUSER_MOVABLE,
    GFP_KERNEL,
)

GFPS = [GFP_KERNEL, GFP_HIGHUSER_MOVABLE, GFP_ATOMIC, GFP_KERNEL | __GFP_RECLAIMABLE,
        GFP_KERNEL | __GFP_DMA32, GFP_KERNEL | __GFP_COMP]

op = st.one_of(
    st.tuples(st.just("alloc"), st.sampled_from(range(len(GFPS))),
              st.sampled_from([0, 0, 0, 1, 2, 3, 4, 6, 9, 10])),
    st.tuples(st.just("free"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("drain"), st.just(0), st.just(0)),
)



def fresh():
    # booting 128 MiB takes milliseconds; a fresh machine per example keeps examples independent.
    # Boot-time allocations leave pages on the per-CPU lists: drain them so the buddy lists
    # are the reference state.
    m = mmdbg.boot("mem=128M cpus=2 numa=fake=1")
    m.drain_all_pages()
    return m


def buddyinfo(m):
    return [[a.nr_free for a in z.free_area] for z in m.zones]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, min_size=1, max_size=120), st.integers(0, 1))
def test_random_sequences_keep_the_machine_consistent(ops, cpu):
    m = fresh()
    boot_free = m.nr_free_pages() + m.free_pcp_pages()
    boot_bi = buddyinfo(m)
    m.cpu = cpu
    live = []
    seen = set()
    for kind, a, order in ops:
        if kind == "alloc":
            pfn = m.alloc_pages(GFPS[a] | __GFP_NOWARN, order)
            if pfn is not None:
                block = set(range(pfn, pfn + (1 << order)))
                assert not block & seen, "a page was handed out twice"
                seen |= block
                live.append((pfn, order))
        elif kind == "free" and live:
            pfn, order = live.pop(a % len(live))
            seen -= set(range(pfn, pfn + (1 << order)))
            m.free_pages(pfn, order)
        elif kind == "drain":
            m.drain_all_pages()
    m.check_consistency()
    for pfn, order in live:
        m.free_pages(pfn, order)
    m.drain_all_pages()
    m.check_consistency()
    assert m.nr_free_pages() == boot_free
    assert buddyinfo(m) == boot_bi
    assert m.bad_pages == 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([0, 1, 2, 3, 9]), min_size=1, max_size=400))
def test_exhaust_then_free_everything_restores_boot_state(orders):
    m = fresh()
    boot_bi = buddyinfo(m)
    live = []
    for o in orders:
        p = m.alloc_pages(GFP_KERNEL | __GFP_NOWARN, o)
        if p is not None:
            live.append((p, o))
    # exhaust order-0 completely, then free in allocation order
    while (p := m.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_NOWARN, 0)) is not None:
        live.append((p, 0))
    m.check_consistency()
    for p, o in live:
        m.free_pages(p, o)
    m.drain_all_pages()
    m.check_consistency()
    assert buddyinfo(m) == boot_bi
