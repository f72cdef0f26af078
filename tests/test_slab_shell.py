"""Issue 6 views in the shell: kmem -s / -S (crash's layouts), kmem ADDR in the vmalloc and
module areas, slabtop -d refreshing in simulated time, KernelStack in /proc/meminfo."""

from __future__ import annotations

import io
import re

import mmdbg
from mmdbg.shell.session import Session
from mmdbg.sim.kernel import module
from mmdbg.sim.mm import vmalloc
from mmdbg.workloads import scenarios

KMEM_S = """\
CACHE             OBJSIZE  ALLOCATED     TOTAL  SLABS  SSIZE  NAME
ffff88800f40b000     1000          5        16      1    16k  kmalloc_test_cache
"""

KMEM_S_DETAIL = KMEM_S + """\
CPU 0 KMEM_CACHE_CPU:
  ffff88800f40c000
CPU 0 SLAB:
  SLAB              MEMORY            NODE  TOTAL  ALLOCATED  FREE
  ffffea00003d0400  ffff88800f410000     0     16          5    11
  FREE / [ALLOCATED]
  [ffff88800f410000]
  [ffff88800f4103e8]
  [ffff88800f4107d0]
  [ffff88800f410bb8]
  [ffff88800f410fa0]
   ffff88800f411388  (cpu 0 cache)
   ffff88800f411770  (cpu 0 cache)
   ffff88800f411b58  (cpu 0 cache)
   ffff88800f411f40  (cpu 0 cache)
   ffff88800f412328  (cpu 0 cache)
   ffff88800f412710  (cpu 0 cache)
   ffff88800f412af8  (cpu 0 cache)
   ffff88800f412ee0  (cpu 0 cache)
   ffff88800f4132c8  (cpu 0 cache)
   ffff88800f4136b0  (cpu 0 cache)
   ffff88800f413a98  (cpu 0 cache)
CPU 0 PARTIAL:
  (empty)
CPU 1 KMEM_CACHE_CPU:
  ffff88800f40d000
CPU 1 SLAB:
  (empty)
CPU 1 PARTIAL:
  (empty)
KMEM_CACHE_NODE   NODE  SLABS  PARTIAL  PER-CPU
ffff88800f40b100     0      1        0        1
NODE 0 PARTIAL:
  (empty)
NODE 0 FULL:
  (not tracked)
"""


def run(m, *lines: str) -> str:
    out = io.StringIO()
    Session(m, out, out).run_lines(list(lines))
    return out.getvalue()


def test_kmem_s_and_S_golden():
    m = mmdbg.boot("mem=256M cpus=2")
    run(m, "insmod kmalloc_test size=1000 count=5 keep=1 cache=1")
    assert run(m, "kmem -s kmalloc_test_cache") == KMEM_S
    assert run(m, "kmem -S kmalloc_test_cache") == KMEM_S_DETAIL
    every = run(m, "kmem -s").splitlines()
    assert every[0] == KMEM_S.splitlines()[0]
    assert any(ln.endswith("  kmalloc-64") for ln in every)
    assert run(m, "kmem -s nosuch") == "kmem: invalid kmem_cache name: nosuch\n"
    assert run(m, "kmem -S").startswith("kmem: -S takes one cache name\n")
    assert run(m, "kmem -s -i").startswith("kmem: only one of -i, -f, -F, -z, -p, -s, -S")
    run(m, "rmmod kmalloc_test")
    m.check_consistency()


def test_kmem_addr_names_vmalloc_areas_modules_and_guard_pages():
    m = mmdbg.boot("mem=256M cpus=2")
    m.activate()
    a = vmalloc.vmalloc(3 * 4096 + 100)
    out = run(m, f"kmem {a + 5000:#x}", f"kmem {a + 4 * 4096:#x}")
    assert out == (
        "   VMAP_AREA START    VMAP_AREA END          SIZE  CALLER / FLAGS\n"
        "ffffc90000000000 ffffc90000005000     20480  - pages=4 vmalloc\n"
        "  +0x1388: pfn 62465 (0xf401), physical 0xf401388\n"
        "   VMAP_AREA START    VMAP_AREA END          SIZE  CALLER / FLAGS\n"
        "ffffc90000000000 ffffc90000005000     20480  - pages=4 vmalloc\n"
        "  +0x4000: guard page (not mapped)\n")
    mod = module.load_module(m, "kmemleak_test")
    out = run(m, f"kmem {mod.addr('test_list') + 8:#x}")
    assert out.splitlines()[-2:] == ["  module kmemleak_test memory (text and data)",
                                     "  test_list+0x8/0x10 [kmemleak_test]"]
    assert run(m, "kmem 0xffffc90100000000") == "vmalloc area\n"
    vmalloc.vfree(a)
    module.unload_module(m, "kmemleak_test")


def test_slabtop_refreshes_in_simulated_time():
    ls = scenarios.load_scenario("slab-leak", {"duration": "5", "rate": "50"})
    m = ls.machine
    out = run(m, "slabtop -d 1 -i 3 -s n -n 2")
    clocks = re.findall(r"^slabtop: clock at (\d+\.\d+) s$", out, re.M)
    assert clocks == ["0.002048000", "1.002048000", "2.002048000"]
    assert out.count("Active / Total Objects") == 3
    assert out.count("\n  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME\n") == 3
    active = [int(n) for n in re.findall(r"Active / Total Objects \(% used\) +: (\d+) / ", out)]
    # the scenario's processes (task_struct, mm_struct, VMAs ...), then the module allocated
    assert 0 < active[0] < active[1]
    once = run(m, "slabtop -n 1")
    assert not once.startswith("slabtop: clock") and m.clock.ns // 10**9 == 2
    assert run(m, "slabtop -o -d 1 -n 1") == once  # -o wins: once
    assert run(m, "slabtop -d 0").startswith("slabtop: invalid delay: 0")
    assert run(m, "slabtop -d 1 -i 0").startswith("slabtop: invalid count: 0")


def kernel_stack_kb(m) -> int:
    return int(re.search(r"^KernelStack: +(\d+) kB$", m.read("/proc/meminfo"), re.M).group(1))


def test_kernel_stack_counts_tasks():
    m = mmdbg.boot("mem=256M cpus=2")
    # kthreadd, init and the idle task of CPU 1 (init_task's stack is static)
    assert kernel_stack_kb(m) == 3 * 16
    scenarios.start(m, "stress-vm:workers=2,timeout=0.01")
    seen = []
    m.vm.sched.run(2_000_000, until=lambda: bool(seen.append(kernel_stack_kb(m))) and False)
    assert max(seen) >= (3 + 3) * 16  # stress-ng and its two workers
    m.run()
    assert kernel_stack_kb(m) == 3 * 16
    m = mmdbg.boot("mem=256M cpus=4 kmemleak=on")
    assert kernel_stack_kb(m) == (2 + 3 + 1) * 16  # + the kmemleak thread
