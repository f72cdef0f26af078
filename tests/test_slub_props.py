"""SLUB invariants under random operation sequences (hypothesis)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmdbg
from mmdbg.sim.mm import slab_common as sc
from mmdbg.sim.mm import slub
from mmdbg.sim.mm.slab import SLAB_NO_MERGE

_MACHINES: dict[str, mmdbg.Machine] = {}


def fresh(cmdline: str) -> mmdbg.Machine:
    return mmdbg.boot(cmdline)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("alloc"), st.integers(1, 9000), st.integers(0, 1)),
        st.tuples(st.just("free"), st.integers(0, 10_000), st.integers(0, 1)),
        st.tuples(st.just("cache_alloc"), st.integers(0, 0), st.integers(0, 1)),
        st.tuples(st.just("shrink"), st.integers(0, 0), st.integers(0, 1)),
    ),
    min_size=1, max_size=120)


def run(m: mmdbg.Machine, seq: list) -> None:
    m.activate()
    cache = sc.kmem_cache_create("prop_cache", 72, 0, SLAB_NO_MERGE)
    live: dict[int, object] = {}
    order: list[int] = []
    for op, arg, cpu in seq:
        m.cpu = cpu
        if op == "alloc":
            p = sc.kmalloc(arg)
            assert p and p not in live, "object handed out twice"
            live[p] = None
            order.append(p)
        elif op == "cache_alloc":
            p = sc.kmem_cache_alloc(cache)
            assert p and p not in live, "object handed out twice"
            live[p] = cache
            order.append(p)
        elif op == "free" and order:
            p = order.pop(arg % len(order))
            c = live.pop(p)
            if c is None:
                sc.kfree(p)
            else:
                sc.kmem_cache_free(cache, p)
        elif op == "shrink":
            sc.kmem_cache_shrink(m.slub.by_name["kmalloc-64"])
    m.cpu = 0
    slub.check_slub(m)
    # counts agree: allocated objects = live objects of each cache (crash-style count)
    for s in (cache, m.slub.by_name["kmalloc-128"]):
        n_live = sum(1 for p, c in live.items()
                     if (c is cache if s is cache else c is None and
                         m.slab_pages.get((p - 0xFFFF888000000000) >> 12) is not None and
                         m.slab_pages[(p - 0xFFFF888000000000) >> 12].slab_cache is s))
        counted = 0
        for slab, where in slub.all_slabs(s):
            counted += slab.objects - len(slub.free_objects(s, slab, where))
        if m.kasan is not None:  # freed objects waiting in the KASAN quarantine
            counted -= sum(1 for c, _o in m.kasan.quarantine if c is s)
        assert counted == n_live, s.name
    for p, c in live.items():
        if c is None:
            sc.kfree(p)
        else:
            sc.kmem_cache_free(cache, p)
    sc.kmem_cache_destroy(cache)
    m.check_consistency()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_slub_random_ops(seq):
    run(fresh("mem=256M cpus=2"), seq)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_slub_random_ops_debug(seq):
    m = fresh("mem=256M cpus=2 slub_debug=FZPU")
    run(m, seq)
    assert m.slab_errors == 0 and "BUG " not in m.dmesg()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_slub_random_ops_kasan_no_false_positive(seq):
    m = fresh("mem=256M cpus=2 kasan=on")
    run(m, seq)
    assert m.kasan.reports == []
