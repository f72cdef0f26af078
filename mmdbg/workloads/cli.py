"""The workload options of the ``mmdbg`` command line (plugged in by ``mmdbg/cli.py``).

``--scenario NAME[:k=v,...]`` starts a scenario on the booted machine, ``--duration TIME``
bounds the simulated time it runs (``2s``, ``500ms``; default: to its end),
``--list-scenarios`` prints the scenarios and exits, ``--spawn 'COMMAND LINE'`` starts a
simulated program (``--spawn 'stress-ng --vm 2 --vm-bytes 64M'``).  Bad names or parameters
are usage errors: a message on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from mmdbg.workloads import scenarios
from mmdbg.workloads.programs import UsageError, parse_seconds, start_command

EXIT_USAGE = 2
SLICE_NS = 10_000_000


class _ListScenarios(argparse.Action):
    def __init__(self, option_strings: list[str], dest: str, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kw)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        for s in scenarios.list_scenarios():
            print(f"{s.usage():50} {s.summary}")
        parser.exit(0)


def add_workload_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("workloads")
    g.add_argument("--scenario", metavar="NAME[:K=V,...]", default=None,
                   help="start a named scenario (see --list-scenarios), e.g. "
                        "anon-touch:size=512M")
    g.add_argument("--spawn", metavar="'COMMAND'", action="append", default=[],
                   help="start a simulated program (stress-ng, memhog, dd, cat, ls, sleep); "
                        "repeatable")
    g.add_argument("--duration", metavar="TIME", default=None,
                   help="simulated time to run the workload for (2s, 500ms; default: "
                        "until it ends)")
    g.add_argument("--list-scenarios", action=_ListScenarios,
                   help="list the scenarios and exit")


def _usage_exit(msg: str) -> None:
    print(f"mmdbg: {msg}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def print_panic_stop(machine: Any, out: Any = None) -> None:
    """The stop of a panicked machine (``kasan.fault=panic``, ``panic_on_oom``): why, where
    (the kernel function, file and line), on which CPU and task, when."""
    out = out if out is not None else sys.stderr
    reason = getattr(machine, "stop_reason", "") or \
        f"Kernel panic - not syncing: {getattr(machine, 'panic_msg', '') or '?'}"
    where = getattr(machine, "stop_where", "") or "no kernel frame"
    t = getattr(machine, "stop_task", None) or machine.current
    cpu = getattr(machine, "stop_cpu", machine.cpu)
    who = f", pid {t.pid} ({t.comm})" if t is not None else ""
    ns = machine.clock.ns
    print(f"mmdbg: {reason}", file=out)
    print(f"mmdbg: stopped at {where}, cpu {cpu}{who}, time "
          f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d} s", file=out)
    out.flush()


def make_workload_runner(ns: Any, machine: Any) -> Callable[[Callable[[], bool]], str] | None:
    """Start what the options ask for; returns ``run(until_exit)`` or None."""
    spec = getattr(ns, "scenario", None)
    spawns = getattr(ns, "spawn", None) or []
    duration_text = getattr(ns, "duration", None)
    if spec is None and not spawns:
        if duration_text is not None:
            _usage_exit("--duration needs --scenario or --spawn")
        return None
    duration = None
    if duration_text is not None:
        try:
            duration = int(parse_seconds(duration_text, "--duration") * 1e9)
        except UsageError as e:
            _usage_exit(str(e))
    try:
        if spec is not None:
            scenarios.start(machine, spec)
        for cmd in spawns:
            start_command(machine, cmd)
    except UsageError as e:
        _usage_exit(f"--scenario: {e}" if spec is not None else str(e))

    shown = [0]
    # Without a probe program or tracing front end, the programs' terminal output is the
    # output (e.g. the zswap scenario's comparison); with one, stdout belongs to the probes.
    echo = not (getattr(ns, "program", None) or getattr(ns, "script", None)
                or getattr(ns, "trace", None) or getattr(ns, "stat", False))

    def show_console() -> None:
        """Echo what the simulated programs printed, as their terminal would."""
        if not echo:
            return
        new = machine.console[shown[0]:]
        if new:
            shown[0] += len(new)
            sys.stdout.write("".join(new))
            sys.stdout.flush()

    def run(until_exit: Callable[[], bool]) -> str:
        try:
            return _run(until_exit)
        finally:
            show_console()

    def _run(until_exit: Callable[[], bool]) -> str:
        start = machine.clock.ns
        reason = "idle"
        while True:
            left = None if duration is None else start + duration - machine.clock.ns
            if left is not None and left <= 0:
                return "duration"
            reason = machine.run(SLICE_NS if left is None else min(SLICE_NS, left))
            show_console()
            if reason == "stopped" and getattr(machine, "panicked", False):
                print_panic_stop(machine)
                return reason  # a panicked machine runs no further
            if reason != "duration" or until_exit():
                return reason

    return run
