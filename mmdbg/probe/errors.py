"""Diagnostics in bpftrace's format.

::

    stdin:1:14-17: ERROR: Unknown function: foo
    BEGIN { @x = foo(1); }
                 ~~~

The location is ``FILE:LINE:COL-COL`` with 1-based columns and an exclusive end; the source
line follows with tabs expanded to 4 spaces, then ``~`` markers under the span.  A span over
several lines prints as ``FILE:L1-L2:`` followed by those lines and no marker.  A hint
(``HINT: ...``) follows its error.  Nothing in this package lets a Python traceback reach the
user: every failure is one of the exceptions below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmdbg.probe.ast import NOLOC, Loc

ERROR = "ERROR"
WARNING = "WARNING"


@dataclass
class Diagnostic:
    severity: str
    msg: str
    loc: Loc = NOLOC
    hints: list[str] = field(default_factory=list)

    def render(self, source: str, filename: str) -> str:
        return render_diagnostic(self, source, filename)


def _expand_tabs(line: str) -> tuple[str, list[int]]:
    """The line with tabs as 4 spaces, and a map from 0-based column to expanded column."""
    out: list[str] = []
    cols: list[int] = []
    pos = 0
    for ch in line:
        cols.append(pos)
        if ch == "\t":
            out.append("    ")
            pos += 4
        else:
            out.append(ch)
            pos += 1
    cols.append(pos)
    return "".join(out), cols


def render_diagnostic(d: Diagnostic, source: str, filename: str) -> str:
    lines = source.splitlines() or [""]
    loc = d.loc
    parts: list[str] = []
    if not loc:
        parts.append(f"{filename}: {d.severity}: {d.msg}" if filename else f"{d.severity}: {d.msg}")
    elif loc.end_line > loc.line:
        parts.append(f"{filename}:{loc.line}-{loc.end_line}: {d.severity}: {d.msg}")
        for n in range(loc.line, min(loc.end_line, len(lines)) + 1):
            parts.append(_expand_tabs(lines[n - 1])[0] if n - 1 < len(lines) else "")
    else:
        end_col = max(loc.end_col, loc.col + 1)
        parts.append(f"{filename}:{loc.line}:{loc.col}-{end_col}: {d.severity}: {d.msg}")
        text = lines[loc.line - 1] if 0 < loc.line <= len(lines) else ""
        expanded, cols = _expand_tabs(text)
        start = cols[min(loc.col - 1, len(cols) - 1)]
        stop_idx = end_col - 1
        stop = cols[stop_idx] if stop_idx < len(cols) else cols[-1] + (stop_idx - len(cols) + 1)
        parts.append(expanded)
        parts.append(" " * start + "~" * max(1, stop - start))
    for h in d.hints:
        parts.append(f"HINT: {h}")
    return "\n".join(parts) + "\n"


class ProbeError(Exception):
    """Base of every error this package reports to a user."""


class ProbeCompileError(ProbeError):
    """Parse or semantic errors, each with a location (exit status 2 in the CLI)."""

    def __init__(self, diagnostics: list[Diagnostic], source: str = "", filename: str = "stdin"):
        self.diagnostics = diagnostics
        self.source = source
        self.filename = filename
        super().__init__(self.render())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == ERROR]

    def render(self) -> str:
        return "".join(d.render(self.source, self.filename) for d in self.diagnostics)


class ProbeRuntimeError(ProbeError):
    """A fatal error while a probe runs (loop cap, instruction budget, bad attach)."""

    def __init__(self, msg: str, loc: Loc = NOLOC, hints: list[str] | None = None):
        self.msg = msg
        self.loc = loc
        self.hints = hints or []
        super().__init__(msg)

    def diagnostic(self) -> Diagnostic:
        return Diagnostic(ERROR, self.msg, self.loc, list(self.hints))


class ProbeExit(Exception):
    """Raised inside a handler by ``exit()``/``stop()`` after recording the request."""
