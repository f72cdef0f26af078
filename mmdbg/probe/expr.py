"""Compile one probe-language expression on its own: breakpoint conditions.

The debugger's ``break __alloc_pages if args.order >= 3`` uses the probe language for its
condition, compiled by the same parser, checker and code generator as a whole program: the
condition becomes the predicate of a one-probe program whose action counts a hit::

    fentry:__alloc_pages /args.order >= 3/ { @hit = count(); }

so it sees the same builtins (``args.FIELD``, ``arg0``, ``retval``, ``comm``, ``pid``,
``tid``, ``cpu``, ``nsecs`` ...) with the same types and error messages.  Errors are
reported against the condition text alone (columns relative to it, ``condition:1:6-9:``).

``location`` is an attach point in the language's syntax: ``fentry:FUNC`` (arguments by
name), ``kprobe:FUNC`` (``arg0``..), ``fexit:FUNC`` (arguments and ``retval``),
``tracepoint:CAT:NAME``.
"""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

from mmdbg.probe.errors import Diagnostic, ProbeCompileError

FILENAME = "condition"


class Condition:
    """A compiled condition: ``cond(ev)`` is True when the event satisfies it.

    A runtime error inside the condition (a bad read) makes ``cond(ev)`` return True and
    sets :attr:`error` (gdb stops when it cannot evaluate a breakpoint condition).
    """

    def __init__(self, text: str, location: str, handler: Any, rt: Any, hits: dict) -> None:
        self.text = text
        self.location = location
        self._handler = handler
        self._rt = rt
        self._hits = hits
        self.error: str | None = None

    def __call__(self, ev: Any) -> bool:
        hits = self._hits
        hits.clear()
        self._rt.error = None
        self._rt.exit_requested = False
        self._handler(ev)
        if self._rt.error is not None:
            self.error = self._rt.error.msg
            return True
        self.error = None
        return bool(hits)


def compile_condition(location: str, text: str, machine: Any = None) -> Condition:
    """Compile ``text`` as a condition on the attach point ``location``.

    Raises :class:`ProbeCompileError` whose ``render()`` shows the condition alone.
    """
    from mmdbg.probe import compile_program
    from mmdbg.probe.output import make_output
    from mmdbg.probe.runtime import Runtime

    cond = " ".join(text.split("\n")).strip()
    prefix = f"{location} /"
    source = f"{prefix}{cond}/ {{ @hit = count(); }}"
    try:
        prog = compile_program(source, FILENAME)
    except ProbeCompileError as e:
        raise _relocate(e, cond, len(prefix)) from None
    buf = io.StringIO()
    rt = Runtime(prog.checked, machine, make_output("text", buf, buf), buf)
    factories = prog.bind(rt)
    cp = prog.checked.probes[0]
    rp = cp.resolved[0]
    handler = factories[cp.index](rp.name, rp.func, rp.provider)
    return Condition(cond, location, handler, rt, rt.maps[0])


def _relocate(e: ProbeCompileError, cond: str, offset: int) -> ProbeCompileError:
    diags = []
    for d in e.diagnostics:
        loc = d.loc
        if loc and loc.line == 1 and loc.col > offset and loc.col <= offset + len(cond) + 1:
            loc = replace(loc, col=loc.col - offset,
                          end_col=min(max(loc.end_col - offset, loc.col - offset + 1),
                                      len(cond) + 1))
            diags.append(Diagnostic(d.severity, d.msg, loc, list(d.hints)))
        else:
            diags.append(Diagnostic(d.severity, d.msg, type(loc)(), list(d.hints)))
    return ProbeCompileError(diags, cond, FILENAME)
