#!/usr/bin/env python3
"""Benchmarks for issue 6: kmalloc+kfree throughput and the cost of the debugging tools.

Prints figures; asserts nothing.  Target: >= 1M kmalloc+kfree pairs/s with debugging off
(the per-CPU freelist fast path); printed beside it, the slowdown factor with kasan=on, with
slub_debug=FZPU, with kmemleak=on, and the cost of kmem_cache_alloc/free and of the slow
paths (bursts that empty and refill the per-CPU slabs).

    python3 bench/bench_slab.py [--quick]
"""

from __future__ import annotations

import gc
import sys
import time

import mmdbg
from mmdbg.sim.mm import slab_common as sc


def best(fn, repeat: int) -> float:
    out = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return min(out)


def pairs_per_sec(cmdline: str, n: int, size: int = 64, repeat: int = 5) -> float:
    m = mmdbg.boot(cmdline)
    m.activate()
    km, kf = sc.kmalloc, sc.kfree
    kf(km(size))

    def run() -> None:
        for _ in range(n):
            kf(km(size))

    return n / best(run, repeat)


def burst_pairs_per_sec(cmdline: str, n: int, burst: int, size: int, repeat: int = 3) -> float:
    m = mmdbg.boot(cmdline)
    m.activate()
    km, kf = sc.kmalloc, sc.kfree

    def run() -> None:
        for _ in range(n // burst):
            objs = [km(size) for _ in range(burst)]
            for p in objs:
                kf(p)

    return n / best(run, repeat)


def cache_pairs_per_sec(n: int, repeat: int = 5) -> float:
    m = mmdbg.boot("mem=1G cpus=2")
    m.activate()
    s = m.slub.by_name["vm_area_struct"]
    alloc, free = sc.kmem_cache_alloc, sc.kmem_cache_free

    def run() -> None:
        for _ in range(n):
            free(s, alloc(s))

    return n / best(run, repeat)


def main() -> None:
    quick = "--quick" in sys.argv
    n = 100_000 if quick else 500_000
    base = pairs_per_sec("mem=1G cpus=2", n)
    print(f"kmalloc(64)+kfree pairs/s, debugging off:        {base:12,.0f}  (target >= 1,000,000)")
    print(f"kmem_cache_alloc+free pairs/s (vm_area_struct):  {cache_pairs_per_sec(n):12,.0f}")
    b = burst_pairs_per_sec("mem=1G cpus=2", n // 5, 2000, 256)
    print(f"bursts of 2000 kmalloc(256) then kfree, pairs/s: {b:12,.0f}  (slow paths: new "
          "slabs, partial lists)")
    nd = max(2_000, n // 50)
    for label, cmd in (("kasan=on", "mem=1G cpus=2 kasan=on"),
                       ("slub_debug=FZPU", "mem=1G cpus=2 slub_debug=FZPU"),
                       ("slub_debug=FZ (no tracks)", "mem=1G cpus=2 slub_debug=FZ"),
                       ("kmemleak=on", "mem=1G cpus=2 kmemleak=on"),
                       ("kfence.sample_interval=100", "mem=1G cpus=2 kfence.sample_interval=100")):
        r = pairs_per_sec(cmd, nd, repeat=3)
        print(f"  {label:<28} {r:12,.0f} pairs/s   slowdown x{base / r:6.1f}")


if __name__ == "__main__":
    main()
