"""Runtime values and their bpftrace text and JSON forms.

Probe values are plain Python values: ``int``, ``bool``, ``str``, ``tuple`` (bpftrace tuples),
plus :class:`Record` (``(a=1, b=2)`` and ``args``), :class:`Stack` (``kstack``/``ustack``) and
simulated kernel objects, which print as the pointer they stand for (``0x...``, taken from the
object's ``addr``-like attribute; see :func:`kaddr`).

Text follows bpftrace's ``output/text.cpp``: tuples ``(1, a)`` with ``", "``, records
``{ .a = 1, .b = x }``, arrays ``[1,2]``, booleans ``true``/``false``, pointers ``0x..``, stacks
one frame per line indented 8 spaces between newlines.  JSON follows ``output/json.cpp``:
objects spaced ``{"a": 1, "b": 2}``, arrays unspaced ``[1,2]``, control characters as
``\\u00XX``, integers a double cannot hold exactly written as strings.
"""

from __future__ import annotations

from typing import Any

from mmdbg.probe import types as T


class Stack(tuple):
    """A kernel or user stack: frame strings, innermost first."""

    __slots__ = ()
    mode = "bpftrace"

    def text(self) -> str:
        if self.mode == "perf":
            return "\n" + "".join(f"\t{_perf_frame(f)}\n" for f in self) + "\n"
        return "\n" + "".join(f"        {f}\n" for f in self)


class PerfStack(Stack):
    __slots__ = ()
    mode = "perf"


class RawStack(Stack):
    __slots__ = ()
    mode = "raw"

    def text(self) -> str:
        return "\n" + "".join(f"{f}\n" for f in self)


def _perf_frame(f: str) -> str:
    return f"0 {f}"


class Record:
    """An immutable named tuple value: ``(a=1, b="x")`` or a probe's ``args``."""

    __slots__ = ("names", "values")

    def __init__(self, names: tuple[str, ...], values: tuple[Any, ...]):
        self.names = names
        self.values = values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and (self.names, self.values) == (other.names, other.values)

    def __hash__(self) -> int:
        return hash((self.names, self.values))

    def __lt__(self, other: Record) -> bool:
        return self.values < other.values

    def __getitem__(self, i: int) -> Any:
        return self.values[i]

    def __repr__(self) -> str:
        return f"Record({dict(zip(self.names, self.values))!r})"


_ADDR_ATTRS = ("addr", "address", "kaddr", "vaddr")


def kaddr(obj: Any) -> int:
    """The simulated kernel address a Python kernel object stands for (0 if unknown)."""
    if obj is None:
        return 0
    if isinstance(obj, bool):
        return int(obj)
    if isinstance(obj, int):
        return obj
    for a in _ADDR_ATTRS:
        v = getattr(obj, a, None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    index = getattr(type(obj), "__index__", None)
    if index is not None:
        try:
            return int(index(obj))
        except Exception:
            return 0
    return 0


def to_int(v: Any) -> int:
    """A value as an integer (arithmetic, ``%d``): ints as they are, bools as 0/1, None as 0,
    whatever ``int()`` takes (numeric strings, floats) through it, anything else by
    :func:`kaddr`.  ftrace's evaluator and the shell's ``p`` differ only in what they do with
    strings and non-pointers, and build on this for the rest."""
    if v is None or isinstance(v, int):
        return kaddr(v)
    try:
        return int(v)
    except (TypeError, ValueError):
        return kaddr(v)


def is_kobj(v: Any) -> bool:
    return not isinstance(v, int | str | tuple | Record | bytes | list | float) and v is not None


def text_of(v: Any, ty: T.Ty | None = None) -> str:
    """bpftrace's text form of one value (what ``print`` and ``%s`` show)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if ty is not None and ty.kind == "ptr":
            return f"0x{v & 0xFFFFFFFFFFFFFFFF:x}"
        return str(v)
    if isinstance(v, str):
        return v
    if isinstance(v, Stack):
        return v.text()
    if isinstance(v, tuple):
        items = ty.items if ty is not None and ty.kind == "tuple" else ()
        return "(" + ", ".join(text_of(x, items[i] if i < len(items) else None)
                               for i, x in enumerate(v)) + ")"
    if isinstance(v, Record):
        if not v.names:
            return "{}"
        ftys = dict(ty.fields) if ty is not None and ty.kind == "record" else {}
        return "{ " + ", ".join(f".{n} = {text_of(x, ftys.get(n))}"
                                for n, x in zip(v.names, v.values)) + " }"
    if isinstance(v, list):
        return "[" + ",".join(text_of(x) for x in v) + "]"
    if isinstance(v, bytes | bytearray):
        return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in v)
    if v is None:
        return "0"
    return f"0x{kaddr(v):x}"


def json_str(s: str) -> str:
    out = ['"']
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\r":
            out.append("\\r")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) <= 0x1F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def json_int(v: int) -> str:
    s = str(v)
    try:
        exact = int(float(v)) == v
    except OverflowError:
        exact = False
    return s if exact else json_str(s)


def json_of(v: Any, ty: T.Ty | None = None) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return json_int(v)
    if isinstance(v, str):
        return json_str(v)
    if isinstance(v, Stack):
        return json_str(v.text())
    if isinstance(v, tuple | list):
        items = ty.items if ty is not None and ty.kind == "tuple" else ()
        return "[" + ",".join(json_of(x, items[i] if i < len(items) else None)
                              for i, x in enumerate(v)) + "]"
    if isinstance(v, Record):
        return "{" + ", ".join(f"{json_str(n)}: {json_of(x)}" for n, x in zip(v.names, v.values)) + "}"
    if isinstance(v, bytes | bytearray):
        return "[" + ",".join(str(b) for b in v) + "]"
    if v is None:
        return "null"
    return json_int(kaddr(v))


def key_text(k: Any, ty: T.Ty | None = None) -> str:
    """A map key as printed inside ``@m[...]``: tuple parentheses dropped."""
    s = text_of(k, ty)
    if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
        s = s[1:-1]
    return s


def json_key(k: Any, ty: T.Ty | None = None) -> str:
    """A map key in JSON: the text form, tuple parentheses dropped, every space removed."""
    s = text_of(k, ty)
    if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
        s = s[1:-1]
    return s.replace(" ", "")
