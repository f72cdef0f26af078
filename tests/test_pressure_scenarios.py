"""The memory-pressure scenarios run to their documented outcome, consistently."""

from __future__ import annotations

import mmdbg
from mmdbg.workloads import scenarios


def _run(spec: str, cmdline: str):
    m = mmdbg.boot(cmdline, seed=0)
    p = scenarios.start(m, spec)
    m.run()
    m.check_consistency()
    return m, p


def test_oom_global():
    m, p = _run("oom-global:size=256M", "mem=128M cpus=2")
    assert p.task.exit_code == 9
    assert f"Out of memory: Killed process {p.pid} (oom-global)" in m.dmesg()


def test_oom_adj_kills_the_adjusted_process_first():
    m, _p = _run("oom-adj:size=256M,hold=0.5", "mem=128M cpus=2")
    kills = [ln for ln in m.log_lines() if "Killed process" in ln]
    assert "(victim)" in kills[0]


def test_memcg_oom():
    m, p = _run("memcg-oom:max=8M,size=16M", "mem=128M cpus=2")
    assert p.task.exit_code == 9
    assert "Memory cgroup out of memory: Killed process" in m.dmesg()


def test_swap_storm():
    m, _p = _run("swap-storm:size=80M,passes=2", "mem=128M cpus=2 swap=256M")
    v = dict(ln.split() for ln in m.read("/proc/vmstat").splitlines())
    assert int(v["pswpin"]) > 0 and int(v["pswpout"]) > 0
    assert int(v["workingset_refault_anon"]) > 0
