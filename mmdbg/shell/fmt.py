"""Text helpers shared by the shell's commands: crash's column and size formats.

crash lays out its tables with ``mkstring()`` (a field of a given width, left-, right- or
centre-justified) and prints sizes with ``pages_to_size()`` (``7.5 GB``, ``816.3 MB``, a
trailing ``.0`` dropped).  These are the same rules, so tables line up as crash's do.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm.mm_types import PAGE_SIZE

VADDR_PRLEN = 16  # hex digits of a 64-bit kernel address


def center(text: str, width: int, *, rjust: bool = False) -> str:
    """crash's ``mkstring(CENTER)``: odd padding goes right, or left with ``RJUST``."""
    extra = width - len(text)
    if extra <= 0:
        return text
    left = extra // 2 + (extra % 2 if rjust else 0)
    return " " * left + text + " " * (extra - left)


def pages_to_size(pages: int, page_size: int = PAGE_SIZE) -> str:
    """crash's ``pages_to_size()``: ``0``, ``512 KB``, ``816.3 MB``, ``3 GB``."""
    if pages == 0:
        return "0"
    total = pages * page_size
    if total >= 1 << 30:
        s = f"{total / (1 << 30):.1f} GB"
    elif total >= 1 << 20:
        s = f"{total / (1 << 20):.1f} MB"
    else:
        s = f"{total // 1024} KB"
    return s.replace(".0 ", " ")


def columns(words: list[str], *, width: int = 15, ncols: int = 5) -> list[str]:
    """crash's help screen: ``words`` in ``ncols`` columns, filled column by column."""
    if not words:
        return []
    nrows = (len(words) + ncols - 1) // ncols
    lines = []
    for r in range(nrows):
        cells = [words[c * nrows + r] for c in range(ncols) if c * nrows + r < len(words)]
        lines.append("".join(f"{w:<{width}}" for w in cells).rstrip())
    return lines


def parse_number(text: str) -> int:
    """An integer as users type it: decimal, ``0x`` hex, or bare hex (crash style).

    ``1234`` is decimal; ``0x4d2`` and ``ffffea0000fa0000`` are hex (a bare word is hex
    only when it has a hex letter in it).  Raises ValueError otherwise.
    """
    t = text.strip()
    neg = t.startswith("-")
    if neg:
        t = t[1:]
    if not t:
        raise ValueError(text)
    if t.isdigit():
        return -int(t) if neg else int(t)
    try:
        n = int(t, 0)
    except ValueError:
        if not all(c in "0123456789abcdefABCDEF" for c in t):
            raise ValueError(text) from None
        n = int(t, 16)
    return -n if neg else n


def parse_value(session: Any, word: str) -> int:
    """:func:`parse_number`, plus ``$N`` and ``$`` for a value ``p`` recorded (the number it
    stands for).  Raises ValueError for anything else, or a ``$N`` there is no value for."""
    if word.startswith("$"):
        v = session.history_value(int(word[1:]) if word[1:] else None)
        if v is None:
            raise ValueError(word)
        return v[1]
    return parse_number(word)
