"""Scheduler, signals, scenarios, simulated programs, fault tracepoints and determinism."""

from __future__ import annotations

import pytest

import mmdbg
from mmdbg.sim import trace
from mmdbg.sim.kernel.signal import SIGKILL, SIGSEGV, TaskKilled
from mmdbg.sim.mm import vmstat
from mmdbg.workloads import scenarios
from mmdbg.workloads.api import Process, exit_status, spawn_program
from mmdbg.workloads.programs import UsageError, parse_command, start_command


@pytest.fixture
def vm():
    m = mmdbg.boot("mem=256M cpus=2", seed=19)
    yield m
    m.check_consistency()


def test_two_tasks_run_on_two_cpus(vm):
    cpus = set()

    def prog(p):
        a = p.mmap(2 << 20)
        for _ in range(4):
            cpus.add(vm.cpu)
            assert vm.current is p.task
            yield from p.touch_chunks(a, 2 << 20)
        return 7

    a = spawn_program(vm, "w1", prog)
    b = spawn_program(vm, "w2", prog)
    assert vm.run() == "idle"
    assert cpus == {0, 1}
    assert exit_status(a.task) == "exit 7" and exit_status(b.task) == "exit 7"
    assert a.pid not in vm.tasks  # reaped by init


def test_run_duration_and_sleep(vm):
    def prog(p):
        yield p.sleep(2.0)
        return 0

    p = spawn_program(vm, "sleeper", prog)
    t0 = vm.clock.ns
    assert vm.run(500_000_000) == "duration"
    assert vm.clock.ns - t0 >= 500_000_000 and p.alive
    assert "S (sleeping)" in vm.read(f"/proc/{p.pid}/status")
    assert vm.run() == "idle"
    assert vm.clock.ns - t0 >= 2_000_000_000 and not p.alive


def test_sigkill_wakes_and_kills_a_sleeper(vm):
    def prog(p):
        a = p.mmap(1 << 20)
        p.touch(a, 1 << 20)
        yield p.sleep(100.0)
        return 0

    p = spawn_program(vm, "victim", prog)
    vm.run(10_000_000)
    init = Process(vm, vm.tasks[1])
    init.kill(p.pid, SIGKILL)
    vm.run()
    assert not p.alive and p.task.exit_code & 0x7F == SIGKILL


def test_preemption_counts_switches(vm):
    def spin(p):
        for _ in range(3000):
            yield
        return 0

    progs = [spawn_program(vm, f"spin{i}", spin) for i in range(3)]
    vm.run()
    assert sum(p.task.nivcsw for p in progs) > 0


def test_fault_tracepoint_and_counters(vm):
    got = []
    att = trace.find_tracepoint("exceptions:page_fault_user").attach(
        lambda ev: got.append((ev.args.address, ev.args.error_code, ev.task.comm)), vm)
    try:
        pf0 = vm.vm_events[vmstat.PGFAULT]
        p = scenarios.start(vm, "anon-touch:size=1M")
        vm.run()
    finally:
        att.detach()
    mine = [g for g in got if g[2] == "anon-touch"]
    assert len([g for g in mine if g[1] == 6]) >= 256  # write, user, not present
    assert p.task.min_flt >= 256 and p.task.perf_page_faults >= 256
    assert vm.vm_events[vmstat.PGFAULT] - pf0 >= 256


def test_file_map_major_faults_and_fault_around(vm):
    p = scenarios.start(vm, "file-map:size=1M")
    maj0 = vm.vm_events[vmstat.PGMAJFAULT]
    vm.run()
    assert p.task.maj_flt >= 1
    assert vm.vm_events[vmstat.PGMAJFAULT] > maj0
    # 256 pages read with fault-around mapping 16 at a time: far fewer faults than pages
    assert p.task.min_flt + p.task.maj_flt < 256
    assert vm.vm.fs.disk.read_ios > 0


def test_file_map_shared_writes_back(vm):
    scenarios.start(vm, "file-map:size=64K,shared=yes,path=/data/s")
    vm.run()
    ino = vm.vm.fs.lookup("/data/s")
    assert all(ino.disk_read(i)[0] == 0x77 for i in range(16))


def test_segv_scenario(vm):
    p = scenarios.start(vm, "segv")
    vm.run()
    assert p.task.exit_code & 0x7F == SIGSEGV and p.task.exit_code & 0x80
    assert any("segv[" in ln and "segfault at" in ln for ln in vm.log_lines())


def test_fork_cow_scenario(vm):
    p = scenarios.start(vm, "fork-cow:size=1M")
    reuse0 = vm.vm_events[vmstat.EV["pgreuse"]]
    vm.run()
    assert p.task.exit_code == 0
    assert vm.vm_events[vmstat.EV["pgreuse"]] - reuse0 >= 200


def test_scenario_registry_and_errors():
    names = [s.name for s in scenarios.list_scenarios()]
    assert {"anon-touch", "fork-cow", "file-map"} <= set(names)
    s, params = scenarios.parse_spec("anon-touch:size=512M")
    assert s.name == "anon-touch" and params["size"] == 512 << 20
    for bad, msg in (("nope", "unknown scenario"), ("anon-touch:sise=1M", "unknown parameter"),
                     ("anon-touch:size=lots", "invalid size"), ("anon-touch:size", "key=value"),
                     ("fork-cow:parent_writes=maybe", "invalid boolean")):
        with pytest.raises(UsageError, match=msg):
            scenarios.parse_spec(bad)
    assert "parameters:" in scenarios.get("fork-cow").help()


def test_programs_parse(vm):
    cmd = parse_command("stress-ng --vm 2 --vm-bytes 256M", vm)
    assert cmd.comm == "stress-ng"
    for bad in ("stress-ng", "stress-ng --vm x", "stress-ng --bogus 1", "memhog",
                "dd if", "sleep", "frobnicate"):
        with pytest.raises(UsageError):
            parse_command(bad, vm)


def test_stress_ng_vm_workers(vm):
    p = start_command(vm, "stress-ng --vm 2 --vm-bytes 2M --vm-keep --timeout 0.01")
    seen = set()
    vm.run(2_000_000)
    seen = {t.comm for t in vm.tasks.values()}
    assert "stress-ng-vm" in seen
    vm.run()
    assert p.task.exit_code == 0
    assert "successful run completed" in "".join(p.task.output)


def test_dd_cat_ls(vm):
    start_command(vm, "dd if=/dev/zero of=/data/z bs=4K count=8")
    vm.run()
    assert vm.vm.fs.lookup("/data/z").i_size == 32768
    c = start_command(vm, "cat /data/z")
    ls = start_command(vm, "ls /data")
    vm.run()
    assert len("".join(c.task.output)) == 32768
    assert "".join(ls.task.output) == "z\n"


def _alloc_stream(seed):
    m = mmdbg.boot("mem=256M cpus=2", seed=seed)
    out = []
    att = trace.find_tracepoint("kmem:mm_page_alloc").attach(
        lambda ev: out.append((ev.nsecs, ev.cpu, ev.args.pfn, ev.args.order)), m)
    try:
        scenarios.start(m, "fork-cow:size=256K")
        scenarios.start(m, "file-map:size=128K")
        m.run()
    finally:
        att.detach()
    m.check_consistency()
    return out, m.dmesg()


def test_same_seed_same_event_stream():
    a, da = _alloc_stream(5)
    b, db = _alloc_stream(5)
    assert a == b and da == db and len(a) > 100
    c, _ = _alloc_stream(6)
    assert c != a  # ASLR and scheduling come from the seed


def test_direct_process_segfault_is_reported(vm):
    p = Process.start(vm, "/usr/bin/x")
    with pytest.raises(TaskKilled):
        p.touch(0x1000, 1)
    assert not p.alive
