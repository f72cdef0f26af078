"""bpftrace's command line, for mmdbg's batch mode.

The main CLI (``mmdbg/cli.py``) calls :func:`add_probe_arguments` on its parser and, when a
probe program was given (or ``-l``), :func:`run_probe_cli` with the booted machine and a
``run_workload(until_exit)`` callable that runs the scenario or the duration and returns when
it ends or when ``until_exit()`` becomes true.

Flags: ``-e PROGRAM``, ``SCRIPT [ARGS...]`` (positional parameters ``$1..``; with ``-e`` every
positional is a parameter), ``-l [PATTERN]``, ``-lv [PATTERN]`` (with fields), ``-f text|json``,
``-o FILE``, ``--unsafe``, ``-d [ast|codegen]`` (print and do not run), ``--dry-run`` (parse and
check only), ``-q`` (no banner), ``--no-warnings``.

Exit status: 0 on success (and on Ctrl-C, like bpftrace), the ``exit(code)`` value, 1 on a
runtime error, 2 on a usage or compile error.  Compile errors are printed in bpftrace's format
on stderr, also in JSON mode.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any, TextIO

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    """Add bpftrace's flags to ``parser``."""
    g = parser.add_argument_group("probe programs (bpftrace syntax)")
    g.add_argument("-e", dest="program", metavar="PROGRAM", help="run this probe program")
    g.add_argument("script", nargs="?", metavar="SCRIPT", help="a probe program file (.bt)")
    g.add_argument("script_args", nargs="*", metavar="ARGS",
                   help="positional parameters $1, $2, ... of the program")
    g.add_argument("-l", dest="list_probes", nargs="?", const="*", metavar="PATTERN",
                   help="list probes matching PATTERN (or the program's probes)")
    g.add_argument("-lv", dest="list_verbose", nargs="?", const="*", metavar="PATTERN",
                   help="list probes with their arguments")
    g.add_argument("-f", dest="format", choices=("text", "json"), default="text",
                   help="output format (default text)")
    g.add_argument("-o", dest="output", metavar="FILE", help="write probe output to FILE")
    g.add_argument("--unsafe", action="store_true",
                   help="allow system(), signal(), override() and stop()")
    g.add_argument("-d", dest="debug", nargs="?", const="ast", choices=("ast", "codegen", "all"),
                   help="print the AST (or the generated Python) and do not run")
    g.add_argument("--dry-run", dest="dry_run", action="store_true",
                   help="parse and check the program, then exit")
    g.add_argument("-q", dest="quiet", action="store_true", help="do not print the banner")
    g.add_argument("--no-warnings", dest="no_warnings", action="store_true",
                   help="do not print compiler warnings")


def wants_probes(ns: argparse.Namespace) -> bool:
    """Did the command line ask for a probe program or a probe listing?"""
    return bool(getattr(ns, "program", None) or getattr(ns, "script", None)
                or getattr(ns, "list_probes", None) or getattr(ns, "list_verbose", None))


def _program_text(ns: argparse.Namespace, err: TextIO) -> tuple[str, str, list[str]] | None:
    positional = ([ns.script] if getattr(ns, "script", None) else []) + list(
        getattr(ns, "script_args", None) or [])
    if getattr(ns, "program", None) is not None:
        return ns.program, "stdin", positional
    if not positional:
        return None
    path = positional[0]
    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        err.write(f"ERROR: failed to open file '{path}': {getattr(e, 'strerror', None) or e}\n")
        raise SystemExit(EXIT_USAGE) from None
    return text, ("stdin" if path == "-" else path), positional[1:]


def _list(ns: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from mmdbg.probe import compile_program
    from mmdbg.probe.errors import ProbeCompileError
    from mmdbg.probe.probes import list_probes

    verbose = ns.list_verbose is not None
    pattern = ns.list_verbose if verbose else ns.list_probes
    if getattr(ns, "program", None) is not None:
        try:
            prog = compile_program(ns.program, params=list(getattr(ns, "script_args", []) or []),
                                   unsafe=ns.unsafe)
        except ProbeCompileError as e:
            err.write(e.render())
            return EXIT_USAGE
        for cp in prog.checked.probes:
            for rp in cp.resolved:
                out.write(rp.name + "\n")
                if verbose and rp.args_type is not None:
                    for line in list_probes(rp.name, True)[1:]:
                        out.write(line + "\n")
        return EXIT_OK
    if pattern == "*" and getattr(ns, "script", None):
        pattern = ns.script
    for line in list_probes(None if pattern == "*" else pattern, verbose):
        out.write(line + "\n")
    return EXIT_OK


def run_probe_cli(ns: argparse.Namespace, machine: Any,
                  run_workload: Callable[[Callable[[], bool]], None] | None,
                  *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the probe part of the command line; return the exit status."""
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        return _run(ns, machine, run_workload, out, err)
    except SystemExit as e:
        return int(e.code or 0)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        return EXIT_OK


def _run(ns: argparse.Namespace, machine: Any,
         run_workload: Callable[[Callable[[], bool]], None] | None, out: TextIO,
         err: TextIO) -> int:
    from mmdbg.probe import compile_program
    from mmdbg.probe.ast import dump
    from mmdbg.probe.errors import ProbeCompileError, ProbeRuntimeError
    from mmdbg.probe.output import make_output
    from mmdbg.probe.session import ProbeSession

    if getattr(ns, "list_probes", None) is not None or getattr(ns, "list_verbose", None) is not None:
        return _list(ns, out, err)
    got = _program_text(ns, err)
    if got is None:
        err.write("ERROR: no program given: use -e 'PROGRAM' or a script file\n")
        return EXIT_USAGE
    text, filename, params = got
    try:
        prog = compile_program(text, filename, params=params, unsafe=ns.unsafe)
    except ProbeCompileError as e:
        err.write(e.render())
        return EXIT_USAGE
    if not getattr(ns, "no_warnings", False):
        for w in prog.checked.warnings:
            err.write(w.render(text, filename))
    if ns.debug:
        if ns.debug in ("ast", "all"):
            out.write(dump(prog.checked.program))
        if ns.debug in ("codegen", "all"):
            out.write(prog.source)
        return EXIT_OK
    if ns.dry_run:
        return EXIT_OK
    if machine is None:
        err.write("ERROR: no machine to attach to\n")
        return EXIT_RUNTIME
    stream: TextIO = out
    close: TextIO | None = None
    if getattr(ns, "output", None):
        try:
            close = stream = open(ns.output, "w", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            err.write(f"ERROR: failed to open output file '{ns.output}': {e.strerror}\n")
            return EXIT_USAGE
    try:
        activate = getattr(machine, "activate", None)
        if callable(activate):
            activate()
        output = make_output(ns.format, stream, err)
        sess = ProbeSession(prog, machine, output, err)
        try:
            n = sess.attach()
        except ProbeRuntimeError as e:
            err.write(e.diagnostic().render(text, filename))
            return EXIT_RUNTIME
        if ns.format == "json" or not getattr(ns, "quiet", False):
            output.attached_probes(n)
        try:
            sess.run_begin()
            if not sess.exit_requested and not sess.only_special:
                has_workload = run_workload is not None and (
                    getattr(ns, "scenario", None) or getattr(ns, "duration", None)
                    or not (hasattr(ns, "scenario") or hasattr(ns, "duration")))
                if has_workload:
                    assert run_workload is not None
                    run_workload(lambda: sess.exit_requested)
                else:
                    err.write("No workload given (--scenario or --duration): ending after BEGIN\n")
        except KeyboardInterrupt:
            pass
        finally:
            sess.finish()
        return sess.exit_code
    finally:
        if close is not None:
            close.close()
