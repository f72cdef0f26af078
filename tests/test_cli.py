"""The ``mmdbg`` command line: the real console script / ``python -m mmdbg`` in a subprocess,
and ``mmdbg.cli.main`` in-process for the cheaper cases."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mmdbg.cli import build_parser, main

ROOT = Path(__file__).resolve().parent.parent
FIRST_SESSION = ROOT / "docs" / "examples" / "first-session.cmd"


def mmdbg(*args: str, input: str | None = None, script: bool = False
          ) -> subprocess.CompletedProcess:
    """Run mmdbg as a user would: ``python -m mmdbg`` (or the console script)."""
    if script:
        exe = Path(sys.executable).with_name("mmdbg")
        if not exe.exists():
            pytest.skip("the mmdbg console script is not installed next to this Python")
        cmd = [str(exe), *args]
    else:
        cmd = [sys.executable, "-m", "mmdbg", *args]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(cmd, input=input if input is not None else "", capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=60)


def run_main(argv: list[str], stdin: str, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# ---------------------------------------------------------------------------------------
# the real binary


def test_quick_start_first_session():
    """The README's quick start: mmdbg --machine 'mem=1G cpus=2' -x docs/...cmd"""
    r = mmdbg("--machine", "mem=1G cpus=2", "-x", "docs/examples/first-session.cmd",
              script=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    for expected in ("mmdbg> sys", "        CPUS: 2", "      MEMORY: 1 GB",
                     "mmdbg> kmem -i", "    TOTAL MEM ", "mmdbg> kmem -z", 'NAME: "DMA32"',
                     "mmdbg> call __alloc_pages(GFP_KERNEL, 3)", "mmdbg> kmem -f",
                     "(verified)", "mmdbg> log", "] Linux version 6.18.0-mmdbg"):
        assert expected in out, expected
    assert re.search(r"^\$1 = \(struct page \*\) 0xffffea[0-9a-f]{10}$", out, re.M)
    assert "#" not in [ln[:1] for ln in out.splitlines()]  # comments are not echoed


def test_python_m_mmdbg_reads_stdin():
    r = mmdbg(input="kmme -i\nsys\ncall __alloc_pages(GFP_KERNEL, 3)\n")
    assert r.returncode == 0
    assert r.stderr == "mmdbg: unknown command: kmme (did you mean: kmem?)\n"
    assert "        CPUS: 2\n" in r.stdout
    assert re.search(r"\$1 = \(struct page \*\) 0xffffea[0-9a-f]{10}\n$", r.stdout)


@pytest.mark.parametrize("cmdline, key", [
    ("mem=1Q", "mem"),
    ("bogus=1", "bogus"),
    ("cpus=0", "cpus"),
    ("numa=fake=x", "numa"),
])
def test_bad_machine_string_exits_2_naming_the_key(cmdline, key):
    r = mmdbg("--machine", cmdline, input="sys\n")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.startswith(f"mmdbg: --machine: {key}: ")
    assert "Traceback" not in r.stderr


def test_echo_cat_roundtrip_through_the_binary():
    r = mmdbg("--machine", "mem=512M", input=(
        "echo 12345 > /proc/sys/vm/min_free_kbytes\n"
        "cat /proc/sys/vm/min_free_kbytes\n"
        "echo bogus > /proc/sys/vm/min_free_kbytes\n"
        "cat /proc/sys/vm/min_free_kbytes\n"))
    assert r.returncode == 0
    assert r.stdout == "12345\n12345\n"
    assert r.stderr == "echo: write error: Invalid argument\n"


# ---------------------------------------------------------------------------------------
# main() in-process


def test_main_stdin_batch(monkeypatch, capsys):
    rc, out, err = run_main([], "cat /proc/sys/vm/watermark_scale_factor\nquit\nsys\n",
                            monkeypatch, capsys)
    assert (rc, out, err) == (0, "10\n", "")


def test_main_quit_status(monkeypatch, capsys):
    rc, out, _ = run_main([], "echo a\nquit 4\necho b\n", monkeypatch, capsys)
    assert (rc, out) == (4, "a\n")


def test_main_machine_and_seed(monkeypatch, capsys):
    rc, out, _ = run_main(["--machine", "mem=2G cpus=4 numa=fake=2", "--seed", "7"],
                          "sys\n", monkeypatch, capsys)
    assert rc == 0
    assert "        CPUS: 4\n" in out and "       NODES: 2\n" in out
    assert "        SEED: 7\n" in out and "      MEMORY: 2 GB\n" in out


def test_main_bad_machine(monkeypatch, capsys):
    rc, out, err = run_main(["--machine", "mem=1G frob"], "sys\n", monkeypatch, capsys)
    assert rc == 2 and out == ""
    assert err == "mmdbg: --machine: frob: unknown kernel parameter\n"


def test_main_command_file_echoes_and_exits(tmp_path, monkeypatch, capsys):
    f = tmp_path / "cmds"
    f.write_text("# comment\necho hi\nkmme\n")
    rc, out, err = run_main(["-x", str(f)], "sys\n", monkeypatch, capsys)  # stdin ignored
    assert rc == 0
    assert out == "mmdbg> echo hi\nhi\n\nmmdbg> kmme\n\n"
    assert err == "mmdbg: unknown command: kmme (did you mean: kmem?)\n"
    rc, out, _ = run_main(["--no-echo", "-x", str(f), "-x", str(f)], "", monkeypatch, capsys)
    assert out == "hi\nhi\n"


def test_main_missing_command_file(tmp_path, monkeypatch, capsys):
    rc, out, err = run_main(["-x", str(tmp_path / "nope.cmd")], "", monkeypatch, capsys)
    assert (rc, out) == (1, "")
    assert err == f"mmdbg: {tmp_path / 'nope.cmd'}: No such file or directory\n"


def test_main_echo_flag_for_stdin(monkeypatch, capsys):
    rc, out, _ = run_main(["--echo"], "echo x\n", monkeypatch, capsys)
    assert (rc, out) == (0, "mmdbg> echo x\nx\n\n")


def test_main_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("mmdbg 0.1.0")


def test_main_bad_option_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--seed", "x"])
    assert e.value.code == 2


def test_main_interactive_fallback(monkeypatch, capsys):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stdin", Tty("echo typed\n"))
    import builtins

    lines = iter(["echo typed"])

    def fake_input(prompt=""):
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr(builtins, "input", fake_input)
    monkeypatch.setitem(sys.modules, "mmdbg.shell.repl", None)  # the plain fallback loop
    rc = main([])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.startswith("mmdbg 0.1.0: simulated machine")
    assert "typed\n" in out


def test_extensions_are_optional(monkeypatch):
    """An extension module that does not exist (yet) just leaves its options out."""
    import mmdbg.cli as cli

    parser, exts = build_parser(warn=lambda msg: None)
    assert exts["workloads"].mod is None or exts["workloads"].dests
    broken = cli.Extension("mmdbg.no_such_module", "add_arguments")
    assert broken.load(parser, lambda msg: None) is False

    def bad_add(parser):
        raise RuntimeError("half-written")

    import types

    mod = types.ModuleType("mmdbg_test_fake_ext")
    mod.add_arguments = bad_add
    monkeypatch.setitem(sys.modules, "mmdbg_test_fake_ext", mod)
    warnings = []
    assert cli.Extension("mmdbg_test_fake_ext", "add_arguments").load(
        parser, warnings.append) is False
    assert warnings and "half-written" in warnings[0]


def test_probe_options_do_not_capture_shell_input(monkeypatch, capsys):
    """With the probe CLI present, plain shell use still reaches the shell."""
    rc, out, err = run_main(["--machine", "mem=1G"], "echo shell\n", monkeypatch, capsys)
    assert (rc, out, err) == (0, "shell\n", "")


def test_trace_front_end_prints_ftrace_lines(capsys):
    from mmdbg.cli import main

    rc = main(["--trace", "kmem:mm_page_alloc", "--scenario", "anon-touch:size=1M"])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0 and out
    first = out[0]
    assert "anon-touch-" in first and ": mm_page_alloc: page=" in first and " pfn=0x" in first
    assert first.split("[", 1)[1].startswith("00")  # [CPU] with three digits


def test_trace_front_end_rejects_unknown_events(capsys):
    from mmdbg.cli import main

    assert main(["--trace", "nope:*"]) == 2
    assert "no simulated tracepoint matches 'nope:*'" in capsys.readouterr().err


def test_stat_front_end_counts_page_faults(capsys):
    from mmdbg.cli import main

    rc = main(["--stat", "-e", "page-faults,minor-faults,major-faults",
               "--scenario", "anon-touch:size=1M"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Performance counter stats for 'anon-touch:size=1M':" in out
    faults = {line.split()[1]: int(line.split()[0].replace(",", ""))
              for line in out.splitlines() if line.strip().endswith("faults")
              or "faults " in line}
    assert faults["page-faults"] == faults["minor-faults"] + faults["major-faults"]
    assert faults["page-faults"] >= 256  # 1 MiB of anonymous memory touched


def test_scenario_boot_options_apply_and_machine_option_wins():
    from mmdbg.cli import _scenario_cmdline, build_parser

    parser, _ = build_parser()
    ns = parser.parse_args(["--scenario", "oom-global:size=64M"])
    assert "mem=256M" in _scenario_cmdline(ns)
    from mmdbg.sim.config import parse_cmdline

    assert parse_cmdline(f"{_scenario_cmdline(ns)} mem=512M").mem == 512 << 20
    assert _scenario_cmdline(parser.parse_args([])) == ""
    assert _scenario_cmdline(parser.parse_args(["--scenario", "no-such"])) == ""


def test_scenario_program_output_is_shown_without_probes(capsys, tmp_path):
    from mmdbg.cli import main

    empty = tmp_path / "none.cmd"
    empty.write_text("")
    assert main(["--scenario", "zswap:size=8M", "-x", str(empty)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("zswap off: pswpout ")
    assert "\nzswap on : pswpout " in out and "zswap pool (" in out
