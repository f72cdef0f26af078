"""Output handling around a command line: ``CMD | grep PATTERN`` and ``CMD > FILE``.

crash lets any command be piped or redirected (``help output``).  mmdbg does the cheap, useful
part itself, without a host shell:

* filters: ``grep [-v] [-i] [-c] [-w] [-F] [-n] PATTERN``, ``head [-n N]``, ``tail [-n N]``,
  ``wc [-l|-w|-c]``, chained in any number;
* one redirection at the end, ``> FILE`` or ``>> FILE``.  A path in the simulated kernel's
  file tree (``/proc/...``, ``/sys/...``) is *written to the machine*, as ``echo 8192 >
  /proc/sys/vm/min_free_kbytes`` does in bash; any other path is a file on the host.

A ``|`` or ``>`` counts only outside quotes and brackets, so ``call
alloc_pages(GFP_KERNEL|__GFP_ZERO, 0)`` is one command; and a ``|`` splits the line only when a
known filter follows it, so expressions such as ``a|b`` stay intact.
"""

from __future__ import annotations

import getopt
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

from mmdbg.shell.errors import CommandError

_OPEN = "([{"
_CLOSE = ")]}"


@dataclass
class Redirect:
    path: str
    append: bool = False


@dataclass
class ParsedLine:
    command: str  # the command part: "kmem -f"
    filters: list[list[str]] = field(default_factory=list)  # [["grep", "Normal"], ...]
    redirect: Redirect | None = None


def _top_level(line: str) -> list[tuple[int, str]]:
    """(index, char) of the characters outside quotes and brackets."""
    out = []
    depth = 0
    quote = ""
    i = 0
    while i < len(line):
        c = line[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth = max(0, depth - 1)
        elif depth == 0:
            out.append((i, c))
        i += 1
    return out


def _split_redirect(line: str) -> tuple[str, Redirect | None]:
    """Take a trailing ``> PATH`` / ``>> PATH`` off the line."""
    top = _top_level(line)
    for i, c in reversed(top):
        if c != ">":
            continue
        start = i - 1 if i > 0 and line[i - 1] == ">" else i
        if start > 0 and line[start - 1] in "-=<>!":  # ->, =>, >=, <> ... are not redirects
            return line, None
        target = line[i + 1:].strip()
        try:
            words = shlex.split(target)
        except ValueError:
            return line, None
        if len(words) != 1 or not line[:start].strip():
            return line, None
        return line[:start].rstrip(), Redirect(words[0], append=start != i)
    return line, None


def parse_line(line: str) -> ParsedLine:
    """Split ``kmem -f | grep Normal > out.txt`` into command, filters and redirection."""
    body, redirect = _split_redirect(line)
    cuts = []
    for i, c in _top_level(body):
        if c == "|" and (i + 1 >= len(body) or body[i + 1] != "|") and (
                i == 0 or body[i - 1] != "|"):
            rest = body[i + 1:].lstrip()
            word = rest.split(None, 1)[0] if rest.split() else ""
            if word in FILTERS:
                cuts.append(i)
    if not cuts:
        return ParsedLine(body.strip(), [], redirect)
    parts = []
    prev = 0
    for i in cuts:
        parts.append(body[prev:i])
        prev = i + 1
    parts.append(body[prev:])
    filters = []
    for p in parts[1:]:
        try:
            filters.append(shlex.split(p))
        except ValueError as e:
            raise CommandError(f"mmdbg: {p.strip()}: {e}") from None
    return ParsedLine(parts[0].strip(), filters, redirect)


# ---------------------------------------------------------------------------------------
# Filters: each takes the argument words (after the filter name) and the output lines.

Filter = Callable[[list[str], list[str]], list[str]]


def _opts(name: str, args: list[str], spec: str) -> tuple[dict[str, str], list[str]]:
    try:
        opts, rest = getopt.getopt(args, spec)
    except getopt.GetoptError as e:
        raise CommandError(f"{name}: {e.msg}") from None
    return {k: v for k, v in opts}, rest


def _count(name: str, args: list[str]) -> tuple[int, list[str]]:
    if args and re.fullmatch(r"-\d+", args[0]):  # head -5
        return int(args[0][1:]), args[1:]
    o, rest = _opts(name, args, "n:")
    try:
        n = int(o.get("-n", "10"))
    except ValueError:
        raise CommandError(f"{name}: invalid number of lines: {o['-n']!r}") from None
    return n, rest


def f_grep(args: list[str], lines: list[str]) -> list[str]:
    o, rest = _opts("grep", args, "viwcFnE")
    if len(rest) != 1:
        raise CommandError("Usage: grep [-v] [-i] [-w] [-c] [-F] [-n] PATTERN")
    pat = re.escape(rest[0]) if "-F" in o else rest[0]
    if "-w" in o:
        pat = rf"\b(?:{pat})\b"
    try:
        rx = re.compile(pat, re.I if "-i" in o else 0)
    except re.error as e:
        raise CommandError(f"grep: invalid regular expression: {e}") from None
    invert = "-v" in o
    hits = [(n, ln) for n, ln in enumerate(lines, 1) if bool(rx.search(ln)) != invert]
    if "-c" in o:
        return [str(len(hits))]
    if "-n" in o:
        return [f"{n}:{ln}" for n, ln in hits]
    return [ln for _, ln in hits]


def f_head(args: list[str], lines: list[str]) -> list[str]:
    n, _ = _count("head", args)
    return lines[:n] if n >= 0 else lines[:n or None]


def f_tail(args: list[str], lines: list[str]) -> list[str]:
    n, _ = _count("tail", args)
    return lines[-n:] if n > 0 else []


def f_wc(args: list[str], lines: list[str]) -> list[str]:
    o, _ = _opts("wc", args, "lwc")
    nl = len(lines)
    nw = sum(len(ln.split()) for ln in lines)
    nc = sum(len(ln) + 1 for ln in lines)
    if not o:
        return [f"{nl:7d} {nw:7d} {nc:7d}"]
    out = []
    if "-l" in o:
        out.append(str(nl))
    if "-w" in o:
        out.append(str(nw))
    if "-c" in o:
        out.append(str(nc))
    return [" ".join(out)]


FILTERS: dict[str, Filter] = {"grep": f_grep, "head": f_head, "tail": f_tail, "wc": f_wc}


def apply_filters(filters: list[list[str]], text: str) -> str:
    if not filters:
        return text
    lines = text.splitlines()
    for words in filters:
        lines = FILTERS[words[0]](words[1:], lines)
    return "".join(ln + "\n" for ln in lines)
