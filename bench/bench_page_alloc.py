#!/usr/bin/env python3
"""Benchmarks for issue 2: boot, bytes per page, page allocator throughput, tracing overhead.

Prints figures; asserts nothing.  Targets (issue 2): boot of 16 GiB < 100 ms, <= 32 bytes per
simulated page, >= 600k order-0 alloc+free pairs/s through the public path, tracing overhead
with nothing attached < 3% against the same code with tracing stripped.

    python3 bench/bench_page_alloc.py [--quick]
"""

from __future__ import annotations

import ast
import gc
import importlib.util
import statistics
import sys
import time
import types

import mmdbg
from mmdbg.sim.include.gfp import __GFP_NOWARN, GFP_KERNEL
from mmdbg.sim.mm import page_alloc


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times)


def bench_boot():
    mmdbg.boot("mem=16G")  # warm imports
    b, med = best(lambda: mmdbg.boot("mem=16G cpus=2"))
    m = mmdbg.boot("mem=16G cpus=2")
    print(f"boot 16 GiB machine: best {b * 1e3:.1f} ms, median {med * 1e3:.1f} ms "
          f"(target < 100 ms)")
    print(f"struct page columns: {m.mem_map.bytes_per_page():.1f} bytes/page over "
          f"{m.mem_map.max_pfn} pfns (target <= 32)")


def pairs(alloc, free, n, order=0):
    def run():
        for _ in range(n):
            p = alloc(GFP_KERNEL, order)
            free(p, order)
    return run


def mixed(alloc, free, n, rng):
    orders = [rng.randrange(4) for _ in range(n)]

    def run():
        live = []
        for o in orders:
            p = alloc(GFP_KERNEL | __GFP_NOWARN, o)
            if p is not None:
                live.append((p, o))
            if len(live) > 64:
                q, qo = live.pop(rng.randrange(len(live)))
                free(q, qo)
        for q, qo in live:
            free(q, qo)
    return run


def stripped_page_alloc():
    """page_alloc.py with every `if _tp_*.enabled:` block removed (no tracing at all)."""
    with open(page_alloc.__file__) as f:
        src = f.read()
    tree = ast.parse(src)

    class Strip(ast.NodeTransformer):
        def visit_If(self, node):
            self.generic_visit(node)
            t = node.test
            if isinstance(t, ast.Attribute) and t.attr == "enabled" and \
                    isinstance(t.value, ast.Name) and t.value.id.startswith("_tp_"):
                return node.orelse or None
            return node

    tree = ast.fix_missing_locations(Strip().visit(tree))
    mod = types.ModuleType("page_alloc_stripped")
    mod.__file__ = page_alloc.__file__
    spec = importlib.util.spec_from_loader("page_alloc_stripped", loader=None)
    mod.__spec__ = spec
    code = compile(tree, page_alloc.__file__, "exec")
    # kfunc registration of the copies is harmless (same names, last one wins); restore after
    from mmdbg.sim import trace
    saved = dict(trace.KFUNCS), dict(trace._BY_CODE)
    exec(code, mod.__dict__)
    trace.KFUNCS.clear()
    trace.KFUNCS.update(saved[0])
    trace._BY_CODE.clear()
    trace._BY_CODE.update(saved[1])
    return mod


def main(argv):
    quick = "--quick" in argv
    n = 50_000 if quick else 300_000
    print(f"mmdbg page allocator benchmarks (python {sys.version.split()[0]}, n={n})")
    bench_boot()
    m = mmdbg.boot("mem=4G cpus=2")
    m.activate()
    alloc = page_alloc.alloc_pages
    free = getattr(page_alloc, "__free_pages")
    b, med = best(pairs(alloc, free, n))
    print(f"order-0 alloc_pages+__free_pages: {n / b / 1e3:.0f}k pairs/s best, "
          f"{n / med / 1e3:.0f}k median ({b / n * 1e9:.0f} ns/pair; target >= 600k/s)")
    import random
    b2, _ = best(mixed(alloc, free, n, random.Random(1)))
    print(f"mixed orders 0..3 with random frees: {n / b2 / 1e3:.0f}k allocs/s best")
    m.check_consistency()

    s = stripped_page_alloc()
    # two machines in the same fresh state (the one above is fragmented by the mixed run)
    m = mmdbg.boot("mem=4G cpus=2")
    m2 = mmdbg.boot("mem=4G cpus=2")
    m2.activate()
    sfree = s.__dict__["__free_pages"]
    traced, stripped = [], []
    for _ in range(7):  # interleave to cancel drift
        m.activate()
        traced.append(best(pairs(alloc, free, n // 2), 1)[0])
        m2.activate()
        stripped.append(best(pairs(s.alloc_pages, sfree, n // 2), 1)[0])
    t, st_ = min(traced), min(stripped)
    print(f"tracing overhead, nothing attached: {(t / st_ - 1) * 100:+.1f}% "
          f"({t / (n // 2) * 1e9:.0f} vs {st_ / (n // 2) * 1e9:.0f} ns/pair; target < 3%)")
    from mmdbg.sim import trace
    hits = [0]
    att = trace.TRACEPOINTS["kmem:mm_page_alloc"].attach(lambda ev: None, m)
    m.activate()
    bt = best(pairs(alloc, free, n // 2), 3)[0]
    att.detach()
    print(f"with a no-op handler on kmem:mm_page_alloc: "
          f"{(bt - t) / (n // 2) * 1e9:+.0f} ns/event")
    del hits


if __name__ == "__main__":
    main(sys.argv[1:])
