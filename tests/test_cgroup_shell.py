"""The shell's mkdir/rmdir on cgroupfs, echo PID > cgroup.procs, ls of a cgroup."""

from __future__ import annotations

import mmdbg
from mmdbg.shell.session import run_commands

CG = "/sys/fs/cgroup"


def test_mkdir_ls_procs_rmdir():
    m = mmdbg.boot("mem=128M cpus=2", seed=0)
    out = run_commands(m, f"mkdir {CG}/box\nls {CG}\nls {CG}/box")
    lines = out.splitlines()
    assert "box/" in lines
    for f in ("cgroup.procs", "memory.current", "memory.max", "memory.stat",
              "memory.kmem.usage_in_bytes"):
        assert f in lines
    out = run_commands(m, "spawn anon-touch:size=1M,hold=1\n"
                          f"echo 3 > {CG}/box/cgroup.procs\ncat {CG}/box/cgroup.procs\n"
                          "run 5ms\n"
                          f"cat {CG}/box/memory.current")
    assert "\n3\n" in out
    assert int(out.strip().splitlines()[-1]) >= 1 << 20
    out = run_commands(m, f"rmdir {CG}/box")
    assert out.strip() == f"rmdir: failed to remove '{CG}/box': Device or resource busy"
    run_commands(m, f"echo 3 > {CG}/cgroup.procs")
    out = run_commands(m, f"rmdir {CG}/box\nls {CG}")
    assert out.strip() == "" or "box/" not in out.splitlines()
    assert "box/" not in run_commands(m, f"ls {CG}").splitlines()
    m.check_consistency()


def test_mkdir_nested_and_errors():
    m = mmdbg.boot("mem=128M cpus=2", seed=0)
    out = run_commands(m, f"mkdir {CG}/a/b")
    assert out.strip() == f"mkdir: cannot create directory '{CG}/a/b': No such file or directory"
    assert run_commands(m, f"mkdir -p {CG}/a/b\nmkdir -p {CG}/a/b").strip() == ""
    assert "b/" in run_commands(m, f"ls {CG}/a").splitlines()
    out = run_commands(m, f"mkdir {CG}/a")
    assert out.strip() == f"mkdir: cannot create directory '{CG}/a': File exists"
    out = run_commands(m, "mkdir /proc/foo")
    assert out.strip() == "mkdir: cannot create directory '/proc/foo': No such file or directory"
    out = run_commands(m, "mkdir /sys/kernel/foo")
    assert out.strip() == ("mkdir: cannot create directory '/sys/kernel/foo': "
                           "Operation not permitted")
    out = run_commands(m, "mkdir /tmp/x")
    assert out.strip() == "mkdir: cannot create directory '/tmp/x': Read-only file system"
    out = run_commands(m, f"rmdir {CG}/a")
    assert out.strip() == f"rmdir: failed to remove '{CG}/a': Device or resource busy"
    out = run_commands(m, f"rmdir {CG}/nope\nrmdir {CG}\nrmdir /proc/sys/vm")
    assert out.splitlines() == [
        f"rmdir: failed to remove '{CG}/nope': No such file or directory",
        f"rmdir: failed to remove '{CG}': Device or resource busy",
        "rmdir: failed to remove '/proc/sys/vm': Operation not permitted"]
    out = run_commands(m, f"rmdir {CG}/a/memory.max")
    assert out.strip() == f"rmdir: failed to remove '{CG}/a/memory.max': Not a directory"
    assert run_commands(m, f"rmdir {CG}/a/b\nrmdir {CG}/a").strip() == ""
    assert run_commands(m, f"ls {CG}").splitlines() == ["cgroup.procs", "memory.stat"]
