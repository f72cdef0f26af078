"""The probe language: a bpftrace dialect compiled to Python and attached to the simulation.

Passes, as in bpftrace: ``grammar/probe.lark`` -> :mod:`.parser` -> :mod:`.ast` ->
:mod:`.checker` -> :mod:`.codegen` -> :mod:`.runtime` / :mod:`.output`, driven by
:mod:`.session` and the command line in :mod:`.cli`.

Typical use from Python (tests, the REPL)::

    from mmdbg.probe import compile_program, ProbeSession, make_output
    prog = compile_program('tracepoint:kmem:mm_page_alloc { @[comm] = count(); }')
    sess = ProbeSession(prog, machine, make_output("text", sys.stdout, sys.stderr), sys.stderr)
    sess.attach(); sess.run_begin()
    ...  # run the simulation
    sess.finish()
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mmdbg.probe.errors import ProbeCompileError, ProbeError, ProbeRuntimeError

__all__ = [
    "ProbeCompileError",
    "ProbeError",
    "ProbeRuntimeError",
    "ProbeSession",
    "compile_program",
    "make_output",
]


def compile_program(source: str, filename: str = "stdin", *, params: Sequence[str] = (),
                    unsafe: bool = False, config: Mapping[str, Any] | None = None,
                    env: Mapping[str, str] | None = None) -> Any:
    """Parse, check and compile a program; raise :class:`ProbeCompileError` on any error.

    ``params`` are the positional parameters ``$1..$N``; ``config`` overrides ``config = {}``
    values (e.g. ``{"max_map_keys": 10}``); ``env`` is where ``BPFTRACE_*`` variables are read
    (default: the process environment).
    """
    from mmdbg.probe.checker import check
    from mmdbg.probe.codegen import CompiledProgram
    from mmdbg.probe.errors import ERROR, Diagnostic
    from mmdbg.probe.parser import parse

    try:
        program = parse(source, filename)
        checked = check(program, source, filename, params=list(params), unsafe=unsafe,
                        config=config, env=env)
        return CompiledProgram(checked)
    except ProbeCompileError:
        raise
    except RecursionError:
        raise ProbeCompileError([Diagnostic(ERROR, "program too complex (nested too deeply)")],
                                source, filename) from None


def __getattr__(name: str) -> Any:
    if name == "ProbeSession":
        from mmdbg.probe.session import ProbeSession

        return ProbeSession
    if name == "make_output":
        from mmdbg.probe.output import make_output

        return make_output
    raise AttributeError(name)
