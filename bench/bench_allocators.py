#!/usr/bin/env python3
"""SLUB vs SLAB vs SLOB on the same workload (issue 6, point 2; figures in docs/allocators.md).

The workload, identical for the three (``slab=slub|slab|slob``, same seed): a kmalloc mix of
small and medium objects -- sizes drawn from a fixed table weighted towards 32-256 bytes, as
a kernel's kmalloc traffic is -- grown to ``LIVE`` live objects, then churned (each step frees
a random live object and allocates a new one) on both CPUs, then half of the objects freed at
random.  Printed per allocator:

* ``pages``: slab pages (nr_slab_reclaimable + nr_slab_unreclaimable) at the peak;
* ``overhead``: slab memory / bytes requested, at the peak (1.00 would be perfect packing);
* ``after half freed``: the same two figures once half the objects are gone
  (fragmentation: memory the allocator cannot give back), and after ``kmem_cache_shrink``
  of every cache;
* ``pairs/s``: kmalloc(64)+kfree pairs per second on one CPU (the hot path), and
  ``churn ops/s`` for the mixed workload (wall time of this Python simulation).

With ``--no-pow2`` every size is 8 bytes smaller (12 for 16): no kmalloc request is a power
of two, which matters to SLOB (power-of-two kmallocs are naturally aligned since 5.4).

    python3 bench/bench_allocators.py [--quick] [--no-pow2]
"""

from __future__ import annotations

import gc
import sys
import time

import mmdbg
from mmdbg.sim.mm import slab_common as sc
from mmdbg.sim.mm import vmstat

SIZES = [(16, 10), (32, 16), (48, 8), (64, 16), (96, 8), (128, 12), (192, 8), (256, 8),
         (384, 4), (512, 4), (1024, 3), (2048, 2), (4000, 1)]
NR = (vmstat.NS["nr_slab_reclaimable"], vmstat.NS["nr_slab_unreclaimable"])


def slab_bytes(m) -> int:
    return sum(n.vm_stat[NR[0]] + n.vm_stat[NR[1]] for n in m.node_data) * 4096


def pick_size(rng) -> int:
    total = sum(w for _s, w in SIZES)
    r = rng.randrange(total)
    for s, w in SIZES:
        if r < w:
            return s
        r -= w
    return SIZES[-1][0]


def workload(alloc: str, live_target: int, churn: int) -> dict[str, float]:
    m = mmdbg.boot(f"mem=1G cpus=2 slab={alloc}", seed=1)
    m.activate()
    rng = m.rng
    base = slab_bytes(m)
    live: dict[int, int] = {}
    order: list[int] = []
    t0 = time.perf_counter()
    for _ in range(live_target):
        m.cpu = rng.randrange(2)
        n = pick_size(rng)
        p = sc.kmalloc(n)
        live[p] = n
        order.append(p)
    t_fill = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(churn):
        m.cpu = rng.randrange(2)
        i = rng.randrange(len(order))
        p = order[i]
        order[i] = order[-1]
        order.pop()
        sc.kfree(p)
        del live[p]
        n = pick_size(rng)
        p = sc.kmalloc(n)
        live[p] = n
        order.append(p)
    t_churn = time.perf_counter() - t0
    peak_req = sum(live.values())
    peak = slab_bytes(m) - base
    for _ in range(len(order) // 2):
        i = rng.randrange(len(order))
        p = order[i]
        order[i] = order[-1]
        order.pop()
        sc.kfree(p)
        del live[p]
    half_req = sum(live.values())
    half = slab_bytes(m) - base
    for s in list(m.slub.slab_caches):
        sc.kmem_cache_shrink(s)
    shrunk = slab_bytes(m) - base
    m.check_consistency()
    return {"peak_pages": peak // 4096, "peak_ovh": peak / peak_req,
            "half_pages": half // 4096, "half_ovh": half / half_req,
            "shrunk_pages": shrunk // 4096, "shrunk_ovh": shrunk / half_req,
            "ops": (live_target + 2 * churn) / (t_fill + t_churn)}


def pairs_per_sec(alloc: str, n: int) -> float:
    m = mmdbg.boot(f"mem=1G cpus=2 slab={alloc}", seed=1)
    m.activate()
    km, kf = sc.kmalloc, sc.kfree
    kf(km(64))
    best = float("inf")
    for _ in range(3):
        gc.collect()
        t = time.perf_counter()
        for _ in range(n):
            kf(km(64))
        best = min(best, time.perf_counter() - t)
    return n / best


def main() -> None:
    quick = "--quick" in sys.argv
    if "--no-pow2" in sys.argv:
        SIZES[:] = [(s - 8 if s > 16 else 12, w) for s, w in SIZES]
    live, churn, pairs = (2000, 4000, 20000) if quick else (8000, 24000, 100000)
    print(f"workload: {live} live kmalloc objects, {churn} churn steps, then half freed "
          f"(mem=1G cpus=2, seed 1, sizes {SIZES[0][0]}..{SIZES[-1][0]})")
    print(f"{'allocator':9} {'peak pages':>10} {'overhead':>9} {'half pages':>11} "
          f"{'overhead':>9} {'shrunk':>7} {'overhead':>9} {'pairs/s':>10} {'churn ops/s':>12}")
    for alloc in ("slub", "slab", "slob"):
        r = workload(alloc, live, churn)
        pps = pairs_per_sec(alloc, pairs)
        print(f"{alloc:9} {r['peak_pages']:10d} {r['peak_ovh']:9.2f} {r['half_pages']:11d} "
              f"{r['half_ovh']:9.2f} {r['shrunk_pages']:7d} {r['shrunk_ovh']:9.2f} "
              f"{pps:10.0f} {r['ops']:12.0f}")


if __name__ == "__main__":
    main()
