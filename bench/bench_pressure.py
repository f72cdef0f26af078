"""Memory-pressure figures: reclaim and swap throughput, time to the OOM kill (issue 7).

Prints pages reclaimed per second of host time, swap-out and swap-in pages per second, and
the host time of ``oom-global`` on a 1 GiB machine from start to the kill.  zswap/zram
per-compressor figures: ``bench/bench_zswap.py``.
"""

from __future__ import annotations

import time

import mmdbg
from mmdbg.workloads import scenarios
from mmdbg.workloads.api import Process


def vmstat(m):
    return {k: int(v) for k, v in (ln.split() for ln in m.read("/proc/vmstat").splitlines())}


def bench_swap() -> None:
    m = mmdbg.boot("mem=256M cpus=2 swap=512M", seed=0)
    m.write("/proc/sys/vm/overcommit_memory", "1")
    size = 384 << 20

    def prog(p):
        addr = p.mmap(size)
        yield from p.touch_chunks(addr, size, True, 0x41)
        t1 = time.perf_counter()
        p.task.t_swapin = t1
        yield from p.touch_chunks(addr, size, False)
        return 0

    Process.start(m, "/usr/bin/swapper", ["swapper"], prog)
    t0 = time.perf_counter()
    m.run()
    dt = time.perf_counter() - t0
    v = vmstat(m)
    steal = v["pgsteal_kswapd"] + v["pgsteal_direct"]
    print(f"reclaim+swap run: {dt:.2f} s host, {m.clock.ns / 1e9:.3f} s simulated")
    print(f"  pages reclaimed: {steal}  ({steal / dt:,.0f} pages/s host)")
    print(f"  swap-out: {v['pswpout']} pages ({v['pswpout'] / dt:,.0f} pages/s host)")
    print(f"  swap-in:  {v['pswpin']} pages ({v['pswpin'] / dt:,.0f} pages/s host), "
          f"swap_ra {v['swap_ra']}, swap_ra_hit {v['swap_ra_hit']}")


def bench_oom() -> None:
    m = mmdbg.boot("mem=1G cpus=2", seed=0)
    t0 = time.perf_counter()
    scenarios.start(m, "oom-global:size=1536M,hold=0.1")
    m.run()
    dt = time.perf_counter() - t0
    killed = any("Out of memory: Killed process" in ln for ln in m.log_lines())
    print(f"oom-global on mem=1G: {dt:.2f} s host to completion (killed={killed}), "
          f"{m.clock.ns / 1e9:.3f} s simulated")


if __name__ == "__main__":
    bench_swap()
    bench_oom()
