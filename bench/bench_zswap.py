"""zswap and zram figures per compressor (issue 7).

For each compressor: raw compress/decompress pages per second of host time on text pages;
zswap store (MADV_PAGEOUT -> zswap_store) and load (read fault -> zswap_load) pages per
second; the pool's compression ratio; zram write/read pages per second as swap.
"""

from __future__ import annotations

import time

import mmdbg
from mmdbg.sim.drivers import zram
from mmdbg.sim.lib import crypto_comp
from mmdbg.workloads.api import Process
from mmdbg.workloads.zswap_scenarios import page_content

N = 4096  # pages per run (16 MiB)


def _setup(m, n):
    p = Process.start(m, "/usr/bin/bench", ["bench"])
    addr = p.mmap(n << 12)
    for i in range(n):
        p.write_bytes(addr + (i << 12), page_content(m, "text", i))
    return p, addr


def _store_load(m, p, addr, n) -> tuple[float, float]:
    t0 = time.perf_counter()
    p.madvise(addr, n << 12, 21)
    t1 = time.perf_counter()
    for i in range(n):
        p.read_bytes(addr + (i << 12), 1)
    t2 = time.perf_counter()
    return n / (t1 - t0), n / (t2 - t1)


def main() -> None:
    print(f"{'compressor':10} {'compress/s':>11} {'decompress/s':>12} {'zswap store/s':>13} "
          f"{'load/s':>8} {'ratio':>6} {'zram write/s':>12} {'read/s':>8}")
    for name in crypto_comp.available():
        c = crypto_comp.crypto_alloc_acomp(name)
        m = mmdbg.boot("mem=128M", seed=0)
        pages = [page_content(m, "text", i) for i in range(512)]
        t0 = time.perf_counter()
        comp = [c.compress(pg) for pg in pages]
        t1 = time.perf_counter()
        for x in comp:
            c.decompress(x)
        t2 = time.perf_counter()
        craw, draw = 512 / (t1 - t0), 512 / (t2 - t1)

        m = mmdbg.boot(f"mem=128M swap=64M zswap.enabled=1 zswap.compressor={name}", seed=0)
        m.write("/proc/sys/vm/page-cluster", "0")
        p, addr = _setup(m, N)
        p.madvise(addr, N << 12, 21)
        ratio = int(m.read("/sys/kernel/debug/zswap/stored_pages")) * 4096 / \
            max(1, int(m.read("/sys/kernel/debug/zswap/pool_total_size")))
        for i in range(N):
            p.read_bytes(addr + (i << 12), 1)
        p.munmap(addr, N << 12)
        p, addr = _setup(m, N)
        st, ld = _store_load(m, p, addr, N)
        m.check_consistency()

        m = mmdbg.boot("mem=128M", seed=0)
        zram.zram_setup(m, "64M", name)
        zram.zram_swapon(m)
        p, addr = _setup(m, N)
        zw, zr = _store_load(m, p, addr, N)
        m.check_consistency()
        print(f"{name:10} {craw:11.0f} {draw:12.0f} {st:13.0f} {ld:8.0f} {ratio:6.2f} "
              f"{zw:12.0f} {zr:8.0f}")


if __name__ == "__main__":
    main()
