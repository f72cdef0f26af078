"""Shell commands of the VM family (ps, vm, vtop, ptov, pte, rd, spawn, kill) and the CLI's
--scenario / --list-scenarios / --duration."""

from __future__ import annotations

import re

import pytest

import mmdbg
from mmdbg import cli
from mmdbg.shell.session import run_commands
from mmdbg.sim.mm.uaccess import follow_pte


@pytest.fixture
def vm():
    m = mmdbg.boot("mem=256M cpus=2", seed=23)
    yield m
    m.check_consistency()


def test_spawn_ps_vm_vtop_rd(vm):
    out = run_commands(vm, "spawn anon-touch:size=1M,hold=1\nrun 5ms\nps")
    assert "[3] anon-touch" in out
    assert "   PID    PPID  CPU       TASK        ST  %MEM     VSZ    RSS  COMM" in out
    row = next(ln for ln in out.splitlines() if ln.endswith("  anon-touch"))
    assert re.fullmatch(r"[ >]\s+3\s+1\s+\d\s+[0-9a-f]{16}\s+IN\s+[\d.]+\s+\d+\s+\d+  anon-touch",
                        row), row
    assert "[kthreadd]" in out and "[swapper/0]" in out
    out = run_commands(vm, "vm 3")
    assert 'PID: 3      TASK: ' in out and 'COMMAND: "anon-touch"' in out
    assert "[stack]" in out and "/usr/bin/anon-touch" in out
    t = vm.tasks[3]
    stack = next(v for v in t.mm.vmas() if v.vm_flags & 0x100)
    top = stack.vm_end - 4096
    out = run_commands(vm, f"vtop -c 3 {top:x}")
    lines = out.splitlines()
    assert lines[0] == "VIRTUAL           PHYSICAL"
    phys = follow_pte(t.mm, top) & 0x000FFFFFFFFFF000
    assert lines[1] == f"{top:<16x}  {phys:x}"
    assert [ln.split(":")[0].strip() for ln in lines[3:7]] == ["PGD", "PUD", "PMD", "PTE"]
    assert f"  PAGE: {phys:x}" in out and "(PRESENT|RW|USER|ACCESSED|DIRTY|SOFT_DIRTY|NX)" in out
    assert "[stack]" in out
    # the argument strings at the top of the stack, read through the page tables
    args = t.mm.arg_start
    out = run_commands(vm, f"vtop -c 3 {args:x}\nrd -u {args:x} 2")
    assert "/usr/bin/anon-to" in out.replace("\n", "") or "anon" in out
    out = run_commands(vm, "vm -f 8100073")
    assert out.strip() == "8100073: (READ|WRITE|MAYREAD|MAYWRITE|MAYEXEC|ACCOUNT|SOFTDIRTY)"


def test_pte_ptov_rd_p(vm):
    out = run_commands(vm, "pte 8000000001234867")
    assert out.splitlines() == ["      PTE         PHYSICAL  FLAGS",
                                "8000000001234867    1234000  "
                                "(PRESENT|RW|USER|ACCESSED|DIRTY|SOFT_DIRTY|NX)"]
    from mmdbg.sim.arch.x86.pgtable import swp_entry_to_pte

    out = run_commands(vm, f"pte {swp_entry_to_pte(1, 0x42):x}")
    assert "SWAP" in out and " 66" in out
    out = run_commands(vm, "ptov 56e000")
    assert out.splitlines() == ["VIRTUAL           PHYSICAL", "ffff88800056e000  56e000"]
    out = run_commands(vm, "spawn sleep 1\nvtop -c 3 0")
    pgd = vm.tasks[3].mm.pgd[512]
    out = run_commands(vm, f"rd -p {pgd << 12:x} 1")
    assert re.match(rf"{pgd << 12:x}:  [0-9a-f]{{16}}", out)


def test_spawn_program_and_kill(vm):
    out = run_commands(vm, "spawn stress-ng --vm 1 --vm-bytes 1M\nrun 2ms\nps stress-ng-vm")
    assert "stress-ng-vm" in out
    pid = next(t.pid for t in vm.tasks.values() if t.comm == "stress-ng-vm")
    out = run_commands(vm, f"kill -9 {pid}\nrun 1ms\nps -u")
    assert "stress-ng-vm" not in out
    out = run_commands(vm, "spawn frobnicate\nspawn anon-touch:bogus=1\nkill -NOPE 3")
    assert "command not found" in out and "unknown parameter" in out
    assert "unknown signal" in out


def test_cli_scenarios(capsys):
    with pytest.raises(SystemExit) as ei:
        cli.main(["--list-scenarios"])
    assert ei.value.code == 0
    assert "anon-touch" in capsys.readouterr().out
    with pytest.raises(SystemExit) as ei:
        cli.main(["--scenario", "anon-touch:size=huge", "-x", "/dev/null"])
    assert ei.value.code == 2
    assert "invalid size" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        cli.main(["--scenario", "nope"])
    assert ei.value.code == 2


def test_cli_runs_scenario_for_a_duration(tmp_path, capsys):
    f = tmp_path / "cmds"
    f.write_text("ps\n")
    rc = cli.main(["--machine", "mem=256M", "--scenario", "anon-touch:size=2M,hold=5",
                   "--duration", "50ms", "-x", str(f), "--no-echo"])
    assert rc == 0
    assert "anon-touch" in capsys.readouterr().out
