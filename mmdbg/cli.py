"""The ``mmdbg`` command line (also ``python -m mmdbg``).

::

    mmdbg [--machine 'CMDLINE'] [--seed N] [-x FILE ...] [--echo | --no-echo]

boots a simulated machine from a kernel-style command line and runs shell commands on it:
from each ``-x FILE`` (then exits), else from standard input when it is not a terminal, else
interactively at an ``mmdbg>`` prompt.  A bad ``--machine`` string is reported naming the
offending key, with exit status 2 (argparse's usage errors exit 2 as well).

Other parts of mmdbg plug their options in here without this module knowing them in advance;
each is imported defensively, so until a part exists its options are simply absent:

* ``mmdbg.probe.cli``: ``add_probe_arguments(parser)`` adds bpftrace's options (``-e
  PROGRAM``, ``SCRIPT.bt``, ``-l`` ...) and ``run_probe_cli(ns, machine, run_workload) -> int``
  runs a probe program in batch; it runs instead of the shell when its ``wants_probes(ns)``
  says so (without that function: when one of its options was given).
* ``mmdbg.workloads.cli``: ``add_workload_arguments(parser)`` (``--scenario``,
  ``--duration`` ...) and ``make_workload_runner(ns, machine)``, returning
  ``run_workload(until_exit)`` (runs the workload until it ends or ``until_exit()`` is true)
  or None when no workload was asked for.  The probe runner receives it (None: the program
  ends after BEGIN, as bpftrace's does without a command); the shell runs it to its end before
  the first command.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mmdbg
from mmdbg.sim.config import ConfigError, parse_cmdline

EXIT_USAGE = 2


@dataclass
class Extension:
    """An optional part of the CLI provided by another package (probe, workloads ...)."""

    module: str
    add_arguments: str
    mod: Any = None
    dests: list[str] = field(default_factory=list)

    def load(self, parser: argparse.ArgumentParser, warn: Callable[[str], None]) -> bool:
        try:
            mod = importlib.import_module(self.module)
            add = getattr(mod, self.add_arguments)
        except (ImportError, AttributeError):
            return False  # not written yet: its options are absent
        before = {a.dest for a in parser._actions}
        try:
            add(parser)
        except Exception as e:  # a half-finished extension must not break the shell
            warn(f"mmdbg: warning: options from {self.module} unavailable: "
                 f"{type(e).__name__}: {e}")
            return False
        self.mod = mod
        self.dests = [a.dest for a in parser._actions if a.dest not in before]
        return True

    def func(self, name: str) -> Any:
        return getattr(self.mod, name, None) if self.mod is not None else None

    def given(self, parser: argparse.ArgumentParser, ns: argparse.Namespace) -> bool:
        """True if the user gave any of this extension's options."""
        for a in parser._actions:
            if a.dest not in self.dests:
                continue
            v = getattr(ns, a.dest, a.default)
            if v != a.default and v not in (None, False, [], ""):
                return True
        return False


def build_parser(warn: Callable[[str], None] | None = None
                 ) -> tuple[argparse.ArgumentParser, dict[str, Extension]]:
    warn = warn or (lambda msg: print(msg, file=sys.stderr))
    p = argparse.ArgumentParser(
        prog="mmdbg",
        description="A debugger shell (crash + bpftrace + gdb) for a simulated Linux memory "
                    "manager.",
        epilog="Examples:\n"
               "  mmdbg --machine 'mem=1G cpus=2' -x docs/examples/first-session.cmd\n"
               "  echo 'cat /proc/sys/vm/min_free_kbytes' | mmdbg\n"
               "  mmdbg --machine 'mem=4G numa=fake=2' --seed 7\n"
               'Inside the shell, "help" lists the commands.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    g = p.add_argument_group("machine")
    g.add_argument("--machine", metavar="CMDLINE", default="",
                   help="kernel-style command line of the simulated machine, e.g. "
                        "'mem=1G cpus=2 numa=fake=2 movablecore=256M min_free_kbytes=8192' "
                        "(default: 1 GiB, 2 CPUs, one node)")
    g.add_argument("--seed", metavar="N", type=int, default=0,
                   help="seed of the machine's random number generator (default 0); the "
                        "same machine, seed and commands give the same output")
    s = p.add_argument_group("shell")
    s.add_argument("-x", dest="command_files", metavar="FILE", action="append", default=[],
                   help="run the shell commands in FILE (repeatable; '-' is standard "
                        "input), then exit")
    s.add_argument("--echo", action=argparse.BooleanOptionalAction, default=None,
                   help="print each command after the prompt before its output (default: "
                        "on for -x files, off for piped input)")
    p.add_argument("-V", "--version", action="version", version=f"mmdbg {mmdbg.__version__}")
    t = p.add_argument_group("tracing front ends")
    t.add_argument("--trace", metavar="EVENTS", default=None,
                   help="trace-cmd record + report in one: print every event of EVENTS "
                        "(e.g. 'kmem:*,vmscan:mm_vmscan_*') in ftrace's text format while the "
                        "workload runs")
    t.add_argument("--no-irq-info", action="store_true",
                   help="with --trace: drop the irq-info columns (ftrace's options/irq-info)")
    t.add_argument("--trace-header", action="store_true",
                   help="with --trace: print ftrace's '# tracer: nop' header first")
    t.add_argument("--stat", action="store_true",
                   help="perf stat: count the events given with -e (default page-faults,"
                        "minor-faults,major-faults) over the workload and print perf's table")
    exts = {
        "probe": Extension("mmdbg.probe.cli", "add_probe_arguments"),
        "workloads": Extension("mmdbg.workloads.cli", "add_workload_arguments"),
    }
    for ext in exts.values():
        ext.load(p, warn)
    return p, exts


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:  # mmdbg ... | head
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130


def _main(argv: list[str] | None) -> int:
    parser, exts = build_parser()
    ns = parser.parse_args(argv)
    try:
        config = parse_cmdline(f"{_scenario_cmdline(ns)} {ns.machine}".strip())
    except ConfigError as e:
        print(f"mmdbg: --machine: {e}", file=sys.stderr)
        return EXIT_USAGE
    machine = mmdbg.Machine(config, ns.seed)

    make_runner = exts["workloads"].func("make_workload_runner")
    run_workload = make_runner(ns, machine) if make_runner is not None else None

    if ns.trace is not None or ns.stat:
        return _tracing_front_end(ns, machine, run_workload)

    probe = exts["probe"]
    run_probe = probe.func("run_probe_cli")
    if run_probe is not None:
        wants = probe.func("wants_probes") or probe.func("wants_probe_cli")
        if wants(ns) if wants is not None else probe.given(parser, ns):
            return int(run_probe(ns, machine, run_workload) or 0)

    from mmdbg.shell.session import Session

    if run_workload is not None:
        run_workload(lambda: False)
    if ns.command_files:
        session = Session(machine, sys.stdout, sys.stderr,
                          echo=True if ns.echo is None else ns.echo)
        for path in ns.command_files:
            try:
                lines = _read_lines(path)
            except OSError as e:
                print(f"mmdbg: {path}: {e.strerror}", file=sys.stderr)
                return 1
            session.run_lines(lines)
            if session.quit_requested:
                break
        return session.exit_status
    session = Session(machine, sys.stdout, sys.stderr, echo=bool(ns.echo))
    if sys.stdin is None or not sys.stdin.isatty():
        return session.run_lines(sys.stdin or [])
    return _interactive(session)


def _scenario_cmdline(ns: argparse.Namespace) -> str:
    """A scenario's own boot options (``oom-global`` wants ``mem=256M``); ``--machine`` wins,
    since later keys override earlier ones.  A bad scenario name is reported later by the
    workload runner, with its usage."""
    spec = getattr(ns, "scenario", None)
    if not spec:
        return ""
    try:
        from mmdbg.workloads import scenarios

        return scenarios.get(spec.split(":", 1)[0]).cmdline
    except Exception:
        return ""


def _tracing_front_end(ns: argparse.Namespace, machine: Any, run_workload: Any) -> int:
    """``--trace`` (ftrace text) and ``--stat`` (perf stat's table) over the workload."""
    runner = run_workload if run_workload is not None else (lambda until_exit: None)
    if ns.trace is not None:
        from mmdbg.probe.ftrace import run_trace_cli

        return run_trace_cli(ns.trace, machine, runner, sys.stdout, sys.stderr,
                             irq_info=not ns.no_irq_info, header=ns.trace_header)
    from mmdbg.probe.perfstat import run_stat_cli

    events = getattr(ns, "program", None) or "page-faults,minor-faults,major-faults"
    scenario = getattr(ns, "scenario", None)
    label = scenario or "system wide"
    return run_stat_cli(events, machine, runner, sys.stdout, sys.stderr, label)


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _interactive(session: Any) -> int:
    """At a terminal: the prompt_toolkit REPL when it exists, else a plain input() loop."""
    try:
        from mmdbg.shell.repl import run_repl  # type: ignore[import-not-found]
    except ImportError:
        run_repl = None
    if run_repl is not None:
        return int(run_repl(session) or 0)
    from mmdbg.shell.session import interactive_loop

    m = session.machine
    print(f"mmdbg {mmdbg.__version__}: simulated machine '{m.config.cmdline or 'mem=1G cpus=2'}'"
          f", seed {m.seed}.  Enter \"help\" for the commands, \"quit\" to leave.")
    return interactive_loop(session)


if __name__ == "__main__":
    raise SystemExit(main())
