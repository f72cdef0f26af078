"""printf-style formatting as bpftrace does it, parsed once at compile time.

Conversions: ``%d %i %u %o %x %X %c %s %p``, ``%r`` (buffer as escaped ASCII), ``%rx`` (every
byte as ``\\xNN``), ``%rh`` (hex bytes separated by spaces), and ``%gr`` — GFP flags rendered
the way the kernel's ``%pGg`` does (bpftrace 0.26): the names of ``__def_gfpflag_names``
joined with ``|``, composite names first, leftover bits as ``0x..``; zero prints nothing,
exactly like the kernel's ``format_flags()``.  Flags ``-+ #0``, a width and a precision are
honoured; the length modifiers ``hh h l ll j z t`` are accepted and ignored (every integer is
64 bits).  ``%f`` is rejected as in bpftrace (there are no floating-point numbers), and so is a
``*`` width.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mmdbg.probe import types as T
from mmdbg.probe.values import to_int

_SPEC = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>\*|[0-9]+)?(?:\.(?P<prec>\*|[0-9]*))?"
                   r"(?P<len>hh|h|ll|l|j|z|t)?(?P<conv>rx|rh|gr|[a-zA-Z%])?")

INT_CONVS = {"d", "i", "u", "o", "x", "X", "c", "p"}
STR_CONVS = {"s"}
BUF_CONVS = {"r", "rx", "rh"}
GFP_CONVS = {"gr"}
MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class Spec:
    flags: str
    width: int | None
    prec: int | None
    conv: str
    text: str  # the original "%-8d"


class FormatError(ValueError):
    pass


def parse_format(fmt: str) -> list[str | Spec]:
    """Split a format into literal text and :class:`Spec` parts; raise FormatError."""
    out: list[str | Spec] = []
    lit: list[str] = []
    i = 0
    while i < len(fmt):
        j = fmt.find("%", i)
        if j < 0:
            lit.append(fmt[i:])
            break
        lit.append(fmt[i:j])
        m = _SPEC.match(fmt, j)
        assert m is not None
        conv = m.group("conv")
        if conv == "%":
            lit.append("%")
            i = m.end()
            continue
        text = m.group(0)
        if conv is None:
            raise FormatError(f"printf: Incomplete format specifier '{text}' at the end of the format string"
                              if m.end() >= len(fmt) else
                              f"printf: Invalid format specifier '{fmt[j:m.end() + 1]}'")
        if conv in ("f", "F", "e", "E", "g", "G", "a", "A"):
            raise FormatError(f"printf: %{conv} is not supported: bpftrace has no floating-point numbers")
        if conv not in INT_CONVS | STR_CONVS | BUF_CONVS | GFP_CONVS:
            raise FormatError(f"printf: Unknown format string token: %{conv}")
        if m.group("width") == "*" or m.group("prec") == "*":
            raise FormatError("printf: '*' width and precision are not supported")
        if lit:
            out.append("".join(lit))
            lit = []
        width = int(m.group("width")) if m.group("width") else None
        prec_s = m.group("prec")
        prec = int(prec_s) if prec_s not in (None, "") else (0 if prec_s == "" else None)
        if (width is not None and width > 4096) or (prec is not None and prec > 4096):
            raise FormatError("printf: field width or precision larger than 4096")
        out.append(Spec(m.group("flags") or "", width, prec, conv, text))
        i = m.end()
    if lit:
        out.append("".join(lit))
    return out


def check_arg(spec: Spec, ty: T.Ty) -> str | None:
    """An error message if an argument of type ``ty`` does not fit the specifier."""
    if spec.conv in INT_CONVS or spec.conv in GFP_CONVS:
        if not ty.is_int:
            return (f"printf: %{spec.conv} specifier expects a value of type integer "
                    f"({_tyname(ty)} supplied)")
    if spec.conv in BUF_CONVS and ty.kind not in ("str", "any"):
        return f"printf: %{spec.conv} specifier expects a value of type buffer ({_tyname(ty)} supplied)"
    return None


def _tyname(ty: T.Ty) -> str:
    return "string" if ty.kind == "str" else str(ty)


# --------------------------------------------------------------------------- runtime


def _pad(s: str, spec: Spec) -> str:
    if spec.width is None or len(s) >= spec.width:
        return s
    if "-" in spec.flags:
        return s.ljust(spec.width)
    return s.rjust(spec.width)


def _int_conv(v: int, spec: Spec) -> str:
    conv = spec.conv
    if conv == "p":
        return _pad("0x%x" % (v & MASK64), spec)
    if conv == "c":
        return _pad(chr(v & 0xFF), spec)
    if conv == "u":
        v &= MASK64
        conv = "d"
    elif conv in ("x", "X", "o"):
        v &= MASK64
    elif conv == "i":
        conv = "d"
    fmt = "%" + spec.flags + (str(spec.width) if spec.width is not None else "")
    if spec.prec is not None:
        fmt += "." + str(spec.prec)
    return (fmt + conv) % v


def format_one(spec: Spec, v: Any, ty: T.Ty | None = None) -> str:
    conv = spec.conv
    if conv in ("d", "i", "u", "o", "x", "X", "c", "p"):
        return _int_conv(to_int(v), spec)
    if conv == "gr":
        return _pad(gfp_string(to_int(v)), spec)
    if conv in BUF_CONVS:
        data = v.encode("latin-1", "replace") if isinstance(v, str) else bytes(v or b"")
        if conv == "rx":
            s = "".join(f"\\x{b:02x}" for b in data)
        elif conv == "rh":
            s = " ".join(f"{b:02x}" for b in data)
        else:
            s = "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in data)
        return _pad(s, spec)
    from mmdbg.probe.values import text_of

    s = text_of(v, ty)
    if spec.prec is not None:
        s = s[: spec.prec]
    return _pad(s, spec)


class Formatter:
    """A compiled format: ``fmt(values) -> str``."""

    __slots__ = ("parts", "types")

    def __init__(self, parts: list[str | Spec], types: list[T.Ty] | None = None):
        self.parts = parts
        self.types = types or []

    @property
    def nspecs(self) -> int:
        return sum(1 for p in self.parts if isinstance(p, Spec))

    def __call__(self, values: tuple | list) -> str:
        out: list[str] = []
        i = 0
        types = self.types
        for p in self.parts:
            if isinstance(p, str):
                out.append(p)
            else:
                out.append(format_one(p, values[i], types[i] if i < len(types) else None))
                i += 1
        return "".join(out)


# --------------------------------------------------------------------------- GFP


def _gfp_table() -> list[tuple[str, int]]:
    try:
        from mmdbg.sim.include.gfp import GFP_PRINT_TABLE

        return list(GFP_PRINT_TABLE)
    except ImportError:  # pragma: no cover - the sim always ships it
        return []


_GFP_TABLE: list[tuple[str, int]] | None = None


def gfp_string(flags: int) -> str:
    """The kernel's ``%pGg``: names joined by ``|``, leftovers as hex, ``""`` for zero."""
    global _GFP_TABLE
    if _GFP_TABLE is None:
        _GFP_TABLE = _gfp_table()
    flags &= MASK64
    names: list[str] = []
    for name, mask in _GFP_TABLE:
        if not flags:
            break
        if mask and flags & mask == mask:
            names.append(name)
            flags &= ~mask
    if flags:
        names.append(f"{flags:#x}")
    return "|".join(names)
