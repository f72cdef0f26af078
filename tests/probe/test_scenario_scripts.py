"""The tools in scripts/ and the timer/watchpoint probes, end to end against named scenarios.

Each run is the real command line in-process (``mmdbg SCRIPT.bt --machine ... --scenario
NAME``) on a small machine, seed 0; one is the installed ``python -m mmdbg`` in a subprocess.
Outputs are exact where the simulation is deterministic and the numbers are the scenario's
own (16 pages of 64 KiB, one fault each ...).
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmdbg.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
SMALL = "mem=128M cpus=2"
# anon-touch:size=64K maps its buffer here (seed 0, deterministic mmap layout)
ANON_BUF = 0x7F9054B8E000


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def script(name: str, scenario: str, machine: str = SMALL, *extra: str) -> tuple[int, str, str]:
    return run(str(SCRIPTS / name), *extra, "--machine", machine, "--scenario", scenario)


# -- the tools ---------------------------------------------------------------------------------

def test_pagefaults_by_process_fork_cow() -> None:
    rc, out, err = script("pagefaults_by_process.bt", "fork-cow:size=64K")
    assert (rc, err) == (0, "Attached 3 probes\n")
    # parent: 16 first-touch faults + 16 writes after the child exits (reuse); child: 16 CoW
    assert out == ("Tracing page faults... Hit Ctrl-C to end.\n\n\n"
                   "@user[fork-cow, 4]: 16\n"
                   "@user[fork-cow, 3]: 32\n")


def test_top_fault_addresses_fork_cow() -> None:
    rc, out, err = script("top_fault_addresses.bt", "fork-cow:size=64K")
    assert (rc, err) == (0, "Attached 2 probes\n")
    lines = out.splitlines()
    assert lines[0] == "Top 10 faulting pages:"
    rows = [re.fullmatch(r"@faults\[fork-cow, (\d+)\]: (\d+)", ln) for ln in lines[1:11]]
    assert all(rows), lines
    pages = [int(r.group(1)) for r in rows]  # type: ignore[union-attr]
    # every page of the 64 KiB buffer faults 3 times: parent write, child CoW, parent reuse
    assert all(int(r.group(2)) == 3 for r in rows)  # type: ignore[union-attr]
    assert all(p % 4096 == 0 and ANON_BUF <= p < ANON_BUF + (16 << 12) for p in pages)
    assert len(set(pages)) == 10
    assert out.endswith("\n\n\n") and "@faults" not in out.split("\n\n\n")[-1]


def test_mmapsnoop_anon_touch() -> None:
    rc, out, err = script("mmapsnoop.bt", "anon-touch:size=64K")
    assert (rc, err) == (0, "Attached 2 probes\n")
    assert out == ("COMM             PID     START              END                KB\n"
                   "anon-touch       3       0x7f9054b8e000     0x7f9054b9dfff     64\n"
                   "\n\n@stores[anon-touch]: 1\n")


def test_fork_cow_counts() -> None:
    rc, out, err = script("fork_cow.bt", "fork-cow:size=64K")
    assert (rc, err) == (0, "Attached 3 probes\n")
    # 16 CoW copies in the child, 16 reuses by the parent afterwards; one
    # copy_page_range per VMA fork() copies
    assert out.startswith("\n\n@cow_copies[fork-cow]: 16\n@cow_reuses[fork-cow]: 16\n")
    assert re.fullmatch(r"@vmas_copied\[fork-cow\]: \d+\n", out.split("@cow_reuses[fork-cow]: 16\n")[1])


def test_fork_cow_child_writes_only_some_pages() -> None:
    rc, out, _ = script("fork_cow.bt", "fork-cow:size=64K,child_pages=4,parent_writes=no")
    assert rc == 0
    assert "@cow_copies[fork-cow]: 4\n" in out and "@cow_reuses" not in out


def test_tlb_flushes_stress_vm() -> None:
    rc, out, err = script("tlb_flushes.bt", "stress-vm:workers=2,bytes=1M,timeout=0.005")
    assert (rc, err) == (0, "Attached 3 probes\n")
    ranged = dict(re.findall(r"^@ranged\[(.+)\]: (\d+)$", out, re.M))
    assert set(ranged) >= {"stress-ng-vm"} and int(ranged["stress-ng-vm"]) > 0
    cpus = dict(re.findall(r"^@per_cpu\[(\d)\]: (\d+)$", out, re.M))
    assert set(cpus) == {"0", "1"}  # two workers on two CPUs


@pytest.mark.parametrize(("scenario", "victim", "pages"), [
    ("oom-global", "oom-global", 52778),  # totalpages: RAM + swap of the 256 MiB machine
    ("memcg-oom", "memcg-oom", 8192),  # the cgroup's memory.max (32 MiB)
])
def test_oomkill(scenario: str, victim: str, pages: int) -> None:
    rc, out, err = script("oomkill.bt", scenario, "mem=256M")
    assert (rc, err) == (0, "Attached 2 probes\n")
    assert out == ("Tracing oom_kill_process()... Hit Ctrl-C to end.\n"
                   f'00:00:00 Triggered by PID 4 ("{victim}"), OOM kill of PID 4 '
                   f'("{victim}"), {pages} pages\n\n\n')


def test_stop_ends_a_batch_run_with_a_scenario() -> None:
    rc, out, err = run("--unsafe", "-e", "k:wp_page_copy { @copies = count(); stop(); } "
                       "k:do_exit { @exits = count(); }",
                       "--machine", SMALL, "--scenario", "fork-cow:size=64K")
    assert rc == 0
    assert out == "\n\n@copies: 1\n"  # nothing fires after the stop: no exit seen
    assert re.fullmatch(r"Attached 2 probes\nStopped by stop\(\) in kprobe:wp_page_copy at "
                        r"wp_page_copy \(mm/memory\.py:\d+\), called from do_wp_page\+\d+ "
                        r"\(mm/memory\.py:\d+\), cpu \d, pid 4 \(fork-cow\), "
                        r"time \d+ ns\n", err), err


def test_cli_subprocess() -> None:
    p = subprocess.run([sys.executable, "-m", "mmdbg", str(SCRIPTS / "fork_cow.bt"),
                        "--machine", SMALL, "--scenario", "fork-cow:size=64K"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stderr == "Attached 3 probes\n"
    assert "@cow_copies[fork-cow]: 16\n" in p.stdout


# -- interval / profile on the simulated clock -------------------------------------------------

def test_interval_and_profile_follow_simulated_time() -> None:
    rc, out, err = run("-e", "interval:ms:1 { @ticks = count(); } "
                             "profile:hz:1000 { @prof[cpu] = count(); } "
                             "i:ms:2 /@ticks == 4/ { printf(\"at %d ms\\n\", elapsed / 1000000); }"
                             " END { @ms = elapsed / 1000000; }",
                       "--machine", "mem=256M cpus=2", "--scenario", "anon-touch:size=32M")
    assert rc == 0, err
    ms = int(re.search(r"^@ms: (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    ticks = int(re.search(r"^@ticks: (\d+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert ms >= 5 and ticks in (ms, ms - 1, ms + 1)
    # profile fires on every CPU each period, interval on one
    prof = re.findall(r"^@prof\[(\d)\]: (\d+)$", out, re.M)
    assert [c for c, _ in prof] in (["0", "1"], ["1", "0"])
    assert all(int(n) == ticks for _, n in prof)
    assert out.startswith("at 4 ms\n")


def test_interval_exit_ends_the_run_early() -> None:
    rc, out, _ = run("-e", "i:ms:1 { @n = count(); if (@n == 3) { exit(); } }",
                     "--machine", SMALL, "--scenario", "stress-vm:timeout=1")
    assert rc == 0 and out == "\n\n@n: 3\n"


def test_interval_probes_do_not_keep_an_idle_machine_running() -> None:
    rc, out, _ = run("-e", "i:s:1 { @n = count(); } END { printf(\"%d\\n\", elapsed < 1000000000); }",
                     "--machine", SMALL, "--scenario", "anon-touch:size=64K")
    assert rc == 0 and out == "1\n\n\n"


# -- watchpoints on simulated memory -----------------------------------------------------------

def test_watchpoint_write_on_a_user_buffer() -> None:
    rc, out, err = run("-e", f"watchpoint:{ANON_BUF + 0x2000:#x}:8:w "
                             '{ printf("write by %s pid %d\\n", comm, pid); } '
                             f"watchpoint:{ANON_BUF + 0x2000:#x}:8:r {{ @reads = count(); }}",
                       "--machine", SMALL, "--scenario", "anon-touch:size=64K")
    assert (rc, err) == (0, "Attached 2 probes\n")
    assert out == "write by anon-touch pid 3\n\n\n"  # touched once; never read


def test_watchpoint_rw_sees_both_and_signal_kills() -> None:
    rc, out, _ = run("--unsafe", "-e",
                     f"watchpoint:{ANON_BUF}:1:rw {{ @[comm] = count(); signal(\"SIGKILL\"); }} "
                     "k:do_exit { printf(\"%s exits, status %d\\n\", comm, arg0); }",
                     "--machine", SMALL, "--scenario", "anon-touch:size=64K")
    assert rc == 0
    assert out == "anon-touch exits, status 9\n\n\n@[anon-touch]: 1\n"


# -- the machine API under the probes ----------------------------------------------------------

@pytest.fixture(scope="module")
def m():
    from mmdbg.sim.machine import boot

    return boot("mem=64M cpus=2", seed=0).activate()


def test_symbols_round_trip(m) -> None:
    from mmdbg.shell.debugger import kfunc_address
    from mmdbg.sim import trace

    a = m.kallsyms_lookup_name("__alloc_pages")
    assert a == kfunc_address(trace.find_kfunc("__alloc_pages"))
    assert m.ksym(a) == "__alloc_pages" and m.ksym(a + 1) == "__alloc_pages"
    assert m.kallsyms_lookup_name("no_such_function") == 0
    assert m.ksym(0x1234) == ""
    assert m.kallsyms_lookup_name("init_task") == m.idle_tasks[0].addr


def test_kobj_resolves_kernel_objects(m) -> None:
    import mmdbg.workloads.scenarios as sc

    sc.start(m, "anon-touch:size=64K,hold=1")
    m.run(2_000_000)
    t = next(t for t in m.tasks.values() if t.comm == "anon-touch")
    assert m.kobj("task_struct", t.addr) is t
    assert m.kobj("struct mm_struct", t.mm.addr) is t.mm
    v = t.mm.vmas()[0]
    assert m.kobj("vm_area_struct", v.addr) is v
    assert m.kobj("struct page", m.struct_page_addr(1234)).pfn == 1234
    from mmdbg.shell.kaddr import zone_addr

    z = m.zones[-1]
    assert m.kobj("zone", zone_addr(z)) is z  # the address the shell shows
    with pytest.raises(LookupError, match="is a task_struct, not a mm_struct"):
        m.kobj("mm_struct", t.addr)
    with pytest.raises(LookupError, match="no task_struct at"):
        m.kobj("task_struct", 0xFFFF888000000008)


def test_timers_and_hw_breakpoint_slots(m) -> None:
    import errno

    fired: list[int] = []
    t = m.add_timer(1000, lambda: fired.append(m.clock.ns))
    assert t.cancel() is True and t.cancel() is False
    assert not m.timer_base.pending
    bps = [m.add_watchpoint(0xFFFF888000100000 + 8 * i, 8, "w", lambda *a: None)
           for i in range(4)]
    with pytest.raises(OSError) as ei:
        m.add_watchpoint(0xFFFF888000200000, 8, "w", lambda *a: None)
    assert ei.value.errno == errno.ENOSPC
    with pytest.raises(ValueError):
        m.add_watchpoint(0xFFFF888000200000, 3, "w", lambda *a: None)
    for bp in bps:
        bp.remove()
    from mmdbg.sim.kernel import hw_breakpoint

    assert not [b for b in hw_breakpoint.ACTIVE if b.machine is m]


def test_kernel_watchpoint_on_kmem_write(m) -> None:
    from mmdbg.sim.mm import kmem_access
    from mmdbg.sim.mm.mm_types import PAGE_OFFSET

    pfn = m.alloc_pages("GFP_KERNEL", 0)
    addr = PAGE_OFFSET + (pfn << 12)
    hits: list[tuple[int, int, bool]] = []
    bp = m.add_watchpoint(addr + 8, 8, "rw", lambda b, a, n, w: hits.append((a - addr, n, w)))
    try:
        kmem_access.write64(addr, 1)  # not the watched word
        kmem_access.write64(addr + 8, 2)
        assert kmem_access.read64(addr + 8) == 2
        kmem_access.memset(addr, 0, 64)
    finally:
        bp.remove()
        m.free_pages(pfn, 0)
    assert hits == [(8, 8, True), (8, 8, False), (0, 64, True)]
