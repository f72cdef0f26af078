"""Memory cgroups: limits, reclaim then OOM, protection, memory.high, oom.group, events."""

from __future__ import annotations

from mmdbg.sim.fs.cgroupfs import cgroup_mkdir
from mmdbg.sim.mm.memcontrol import (
    calculate_high_delay,
    effective_protection,
    effective_protections,
)
from tests.pressure_util import boot, hog

CG = "/sys/fs/cgroup"


def _in(m, cg, proc):
    m.write(f"{CG}/{cg}/cgroup.procs", str(proc.pid))
    m.vm.sched.wake_up_new_task(proc.task)


def test_memory_max_reclaims_to_swap_then_counts_events():
    m = boot("mem=128M cpus=2 swap=64M")
    cgroup_mkdir(m, f"{CG}/box")
    m.write(f"{CG}/box/memory.max", "8M")
    p = hog(m, 16 << 20, start=False)
    _in(m, "box", p)
    m.run()
    assert p.task.exit_code == 0
    ev = dict(ln.split() for ln in m.read(f"{CG}/box/memory.events").splitlines())
    assert int(ev["max"]) > 0 and ev["oom"] == "0"
    assert int(m.read(f"{CG}/box/memory.peak")) <= 8 << 20
    # at most the objcg's pre-charged page of its freed kernel objects (VMAs, anon_vmas)
    assert int(m.read(f"{CG}/box/memory.current")) <= 4096
    m.check_consistency()


def test_memory_max_without_swap_ooms_inside_the_group_only():
    m = boot("mem=128M cpus=2")
    cgroup_mkdir(m, f"{CG}/box")
    m.write(f"{CG}/box/memory.max", "8M")
    outside = hog(m, 4 << 20, name="outside", hold=1.0)
    p = hog(m, 16 << 20, name="inbox", start=False)
    _in(m, "box", p)
    m.run()
    assert not p.alive and outside.task.exit_code == 0
    text = m.dmesg()
    assert "memory: usage 8192kB, limit 8192kB, failcnt" in text
    assert "Memory cgroup stats for /box:" in text
    assert f"oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,mems_allowed=0," \
           f"oom_memcg=/box,task_memcg=/box,task=inbox,pid={p.pid},uid=0" in text
    assert f"Memory cgroup out of memory: Killed process {p.pid} (inbox)" in text
    ev = dict(ln.split() for ln in m.read(f"{CG}/box/memory.events").splitlines())
    assert ev["oom"] == "1" and ev["oom_kill"] == "1"
    assert m.read(f"{CG}/box/memory.oom_control").splitlines()[2] == "oom_kill 1"
    m.check_consistency()


def test_oom_group_kills_all_but_oom_score_adj_min():
    m = boot("mem=128M cpus=2")
    cgroup_mkdir(m, f"{CG}/grp")
    m.write(f"{CG}/grp/memory.max", "12M")
    m.write(f"{CG}/grp/memory.oom.group", "1")
    a = hog(m, 2 << 20, name="member", hold=5.0, start=False)
    b = hog(m, 2 << 20, name="protected", hold=5.0, start=False)
    b.task.oom_score_adj = -1000
    _in(m, "grp", a)
    _in(m, "grp", b)
    m.run(50_000_000)
    c = hog(m, 32 << 20, name="grower", start=False)
    _in(m, "grp", c)
    m.run(1_000_000_000)
    assert not a.alive and not c.alive and b.alive
    assert "Tasks in /grp are going to be killed due to memory.oom.group set" in m.dmesg()
    ev = dict(ln.split() for ln in m.read(f"{CG}/grp/memory.events").splitlines())
    assert ev["oom_group_kill"] == "1"
    m.check_consistency()


def test_effective_protection_distribution():
    # siblings claim more than the parent affords: shares in proportion to protected usage
    assert effective_protection(usage=50, parent_usage=100, setting=75, parent_effective=50,
                                siblings_protected=75 + 25) == 50 * 50 // 100
    assert effective_protection(30, 100, 25, 50, 30) == 25  # within the parent's budget
    m = boot("mem=128M cpus=2")
    for d in ("A", "A/B", "A/C", "A/D"):
        cgroup_mkdir(m, f"{CG}/{d}")
    m.write(f"{CG}/A/memory.min", "50M")
    m.write(f"{CG}/A/B/memory.min", "75M")
    m.write(f"{CG}/A/C/memory.min", "25M")
    from mmdbg.sim.mm.memcontrol import mem_cgroup_lookup

    a, b, c, d = (mem_cgroup_lookup(m, p) for p in ("/A", "/A/B", "/A/C", "/A/D"))
    a.memory.usage, b.memory.usage, c.memory.usage, d.memory.usage = 150 * 256, 50 * 256, \
        50 * 256, 50 * 256
    eff = effective_protections(m)
    assert eff["/A"][0] == 50 * 256
    # B and C claim min(50,75) + min(50,25) = 75M of A's 50M: 50*50/75 and 25*50/75
    assert eff["/A/B"][0] == 50 * 256 * 50 * 256 // (75 * 256)
    assert eff["/A/C"][0] == 25 * 256 * 50 * 256 // (75 * 256)
    assert eff["/A/D"][0] == 0
    a.memory.usage = b.memory.usage = c.memory.usage = d.memory.usage = 0


def test_memory_low_protects_a_working_set():
    m = boot("mem=128M cpus=2 swap=128M")
    for d in ("prot", "hog"):
        cgroup_mkdir(m, f"{CG}/{d}")
    m.write(f"{CG}/prot/memory.low", "32M")
    keep = hog(m, 24 << 20, name="keeper", hold=3.0, start=False)
    _in(m, "prot", keep)
    m.run(100_000_000)
    g = hog(m, 160 << 20, name="grower", start=False)
    _in(m, "hog", g)
    m.run()
    assert m.read(f"{CG}/prot/memory.swap.current") == "0\n"
    m.check_consistency()


def test_memory_high_throttles():
    m = boot("mem=128M cpus=2 swap=64M")
    cgroup_mkdir(m, f"{CG}/slow")
    m.write(f"{CG}/slow/memory.high", "4M")
    p = hog(m, 12 << 20, start=False)
    _in(m, "slow", p)
    m.run()
    ev = dict(ln.split() for ln in m.read(f"{CG}/slow/memory.events").splitlines())
    assert int(ev["high"]) > 0
    assert getattr(p.task, "memcg_high_delay_ns", 0) > 0 or int(ev["high"]) > 0
    from mmdbg.sim.mm.memcontrol import mem_cgroup_lookup

    cg = mem_cgroup_lookup(m, "/slow")
    usage = cg.memory.usage  # the objcg's pre-charged page of its freed kernel objects
    cg.memory.usage = cg.memory.high * 2
    assert calculate_high_delay(cg, 64) == 2000  # capped at 2 * HZ
    cg.memory.usage = usage
    m.check_consistency()


def test_v1_files():
    m = boot()
    cgroup_mkdir(m, f"{CG}/v1")
    assert m.read(f"{CG}/v1/memory.limit_in_bytes") == "9223372036854771712\n"
    m.write(f"{CG}/v1/memory.limit_in_bytes", "64M")
    assert m.read(f"{CG}/v1/memory.limit_in_bytes") == f"{64 << 20}\n"
    assert m.read(f"{CG}/v1/memory.oom_control") == "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
    assert m.read(f"{CG}/v1/memory.failcnt") == "0\n"
