"""The probe language's abstract syntax tree: plain dataclasses with source positions.

Every node carries a :class:`Loc` (1-based line and column, end column exclusive, the way
bpftrace reports ``FILE:LINE:COL-COL``).  The parser builds these nodes; the checker annotates
expressions with a type (``Expr.ty``); the code generator reads both.  ``dump()`` prints the
tree in the indented style of ``bpftrace -d ast`` (one space per level), which ``mmdbg -d``
shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


@dataclass(frozen=True)
class Loc:
    """A source span: ``line:col`` to ``end_line:end_col`` (end exclusive, 1-based)."""

    line: int = 0
    col: int = 0
    end_line: int = 0
    end_col: int = 0

    def __bool__(self) -> bool:
        return self.line > 0

    def join(self, other: Loc) -> Loc:
        if not self:
            return other
        if not other:
            return self
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Loc(start[0], start[1], end[0], end[1])


NOLOC = Loc()


@dataclass(kw_only=True)
class Node:
    loc: Loc = field(default=NOLOC, compare=False, repr=False)


# --------------------------------------------------------------------------- expressions


@dataclass(kw_only=True)
class Expr(Node):
    ty: Any = field(default=None, compare=False, repr=False)  # set by the checker


@dataclass
class Int(Expr):
    value: int
    text: str = ""


@dataclass
class Str(Expr):
    value: str


@dataclass
class Bool(Expr):
    value: bool


@dataclass
class Var(Expr):
    """A scratch variable ``$name``."""

    name: str


@dataclass
class Param(Expr):
    """A positional parameter ``$N``."""

    index: int


@dataclass
class ParamCount(Expr):
    """``$#``, the number of positional parameters."""


@dataclass
class Ident(Expr):
    """A bare identifier: a builtin (``pid``), a ``#define``, an enum/GFP constant, a
    zero-argument macro, or a keyword argument such as ``perf`` in ``kstack(perf)``."""

    name: str


@dataclass
class MapRef(Expr):
    """``@name`` (``keys`` is None) or ``@name[k1, k2, ...]``."""

    name: str
    keys: list[Expr] | None = None


@dataclass
class Call(Expr):
    name: str
    args: list[Expr]
    name_loc: Loc = field(default=NOLOC, compare=False, repr=False)


@dataclass
class Binary(Expr):
    op: str
    left: Expr
    right: Expr


@dataclass
class Unary(Expr):
    """``!`` ``~`` ``-`` ``*`` (dereference) ``&`` (address of)."""

    op: str
    operand: Expr


@dataclass
class IncDec(Expr):
    """``x++`` / ``++x`` / ``x--`` / ``--x`` on a variable or map element."""

    op: str  # "++" or "--"
    target: Expr
    prefix: bool


@dataclass
class Ternary(Expr):
    cond: Expr
    then: Expr
    other: Expr


@dataclass
class Elvis(Expr):
    """``a ?: b``: ``a`` if it is true, else ``b``."""

    value: Expr
    other: Expr


@dataclass
class Field(Expr):
    """``obj.name`` or ``obj->name``; a numeric ``name`` is a tuple index."""

    obj: Expr
    name: str
    arrow: bool = False


@dataclass
class Index(Expr):
    obj: Expr
    index: Expr


@dataclass
class Tuple(Expr):
    items: list[Expr]


@dataclass
class Record(Expr):
    fields: list[tuple[str, Expr]]


@dataclass
class TypeName(Node):
    """A C-ish type: ``int64``, ``struct page *``, ``string[16]``."""

    kind: str  # "named", "struct", "union", "enum"
    name: str
    pointer: int = 0
    array: int | None = None

    def __str__(self) -> str:
        base = self.name if self.kind == "named" else f"{self.kind} {self.name}"
        if self.array is not None:
            base += f"[{self.array}]"
        return base + (" " + "*" * self.pointer if self.pointer else "")


@dataclass
class Cast(Expr):
    type: TypeName
    operand: Expr


@dataclass
class SizeOf(Expr):
    type: TypeName | None = None
    operand: Expr | None = None


@dataclass
class BlockExpr(Expr):
    """A macro expansion: statements, then the value of the trailing expression."""

    stmts: list[Stmt]
    value: Expr | None
    macro: str = ""


# --------------------------------------------------------------------------- statements


@dataclass(kw_only=True)
class Stmt(Node):
    pass


@dataclass
class ExprStmt(Stmt):
    expr: Expr


@dataclass
class Assign(Stmt):
    """``target = value``; ``target`` is a Var, a MapRef, or ``Ident('_')`` (discard)."""

    target: Expr
    value: Expr


@dataclass
class CompoundAssign(Stmt):
    target: Expr
    op: str  # "+", "-", "<<", ...
    value: Expr


@dataclass
class Let(Stmt):
    var: Var
    type: TypeName | None = None
    value: Expr | None = None


@dataclass
class Block(Stmt):
    stmts: list[Stmt]


@dataclass
class If(Stmt):
    cond: Expr
    then: Block
    other: Block | If | None = None


@dataclass
class While(Stmt):
    cond: Expr
    body: Block


@dataclass
class Unroll(Stmt):
    count: Expr
    body: Block


@dataclass
class ForMap(Stmt):
    var: Var
    map: MapRef
    body: Block


@dataclass
class ForRange(Stmt):
    var: Var
    start: Expr
    stop: Expr
    body: Block


@dataclass
class Return(Stmt):
    value: Expr | None = None


@dataclass
class Break(Stmt):
    pass


@dataclass
class Continue(Stmt):
    pass


# --------------------------------------------------------------------------- top level


@dataclass
class AttachPoint(Node):
    raw: str


@dataclass
class Probe(Node):
    attach: list[AttachPoint]
    pred: Expr | None
    body: Block


@dataclass
class MacroParam(Node):
    kind: str  # "var", "map", "ident"
    name: str


@dataclass
class Macro(Node):
    name: str
    params: list[MacroParam]
    body: Block


@dataclass
class MapDecl(Node):
    name: str
    kind: str
    size: int


@dataclass
class ConfigItem(Node):
    key: str
    value: int | str | bool


@dataclass
class CItem(Node):
    """A C-section line: ``#include``, ``#define`` or a struct definition, kept as text."""

    kind: str  # "preproc" or "definition"
    text: str


@dataclass
class Program(Node):
    shebang: str | None = None
    c_items: list[CItem] = field(default_factory=list)
    config: list[ConfigItem] = field(default_factory=list)
    imports: list[Str] = field(default_factory=list)
    macros: list[Macro] = field(default_factory=list)
    map_decls: list[MapDecl] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)

    @property
    def defines(self) -> dict[str, str]:
        """Object-like ``#define NAME value`` lines (function-like ones are ignored)."""
        out: dict[str, str] = {}
        for item in self.c_items:
            if item.kind != "preproc":
                continue
            parts = item.text.split(None, 2)
            if len(parts) >= 2 and parts[0] == "#define" and "(" not in parts[1]:
                out[parts[1]] = parts[2].strip() if len(parts) > 2 else ""
        return out


# --------------------------------------------------------------------------- dump


def dump(node: Any, indent: int = 0) -> str:
    """An indented tree, one space per level, like ``bpftrace -d ast``."""
    lines: list[str] = []
    _dump(node, indent, lines)
    return "\n".join(lines) + "\n"


def _label(node: Node) -> str:
    name = type(node).__name__
    if isinstance(node, Int):
        return f"int: {node.value}"
    if isinstance(node, Str):
        return f"string: {node.value!r}"
    if isinstance(node, Bool):
        return f"bool: {'true' if node.value else 'false'}"
    if isinstance(node, Var):
        return f"variable: {node.name}"
    if isinstance(node, Param):
        return f"param: ${node.index}"
    if isinstance(node, Ident):
        return f"identifier: {node.name}"
    if isinstance(node, MapRef):
        return f"map: {node.name}"
    if isinstance(node, Call):
        return f"call: {node.name}"
    if isinstance(node, Binary | Unary):
        return f"{node.op}"
    if isinstance(node, IncDec):
        return f"{node.op} ({'pre' if node.prefix else 'post'})"
    if isinstance(node, Field):
        return f"{'->' if node.arrow else '.'}{node.name}"
    if isinstance(node, AttachPoint):
        return node.raw
    if isinstance(node, Cast):
        return f"({node.type})"
    if isinstance(node, ConfigItem):
        return f"config: {node.key} = {node.value}"
    if isinstance(node, Macro):
        return f"macro: {node.name}"
    if isinstance(node, MacroParam):
        return node.name
    if isinstance(node, CItem):
        return f"c_{node.kind}: {node.text.splitlines()[0] if node.text else ''}"
    if isinstance(node, MapDecl):
        return f"map_decl: {node.name} = {node.kind}({node.size})"
    return name.lower()


def _dump(node: Any, indent: int, out: list[str]) -> None:
    if node is None:
        return
    if isinstance(node, list):
        for n in node:
            _dump(n, indent, out)
        return
    if isinstance(node, tuple):  # record field (name, expr)
        out.append(" " * indent + f"{node[0]}:")
        _dump(node[1], indent + 1, out)
        return
    if isinstance(node, TypeName):
        out.append(" " * indent + f"type: {node}")
        return
    if not isinstance(node, Node):
        return
    out.append(" " * indent + _label(node))
    if isinstance(node, Program):
        for part in (node.c_items, node.config, node.macros, node.map_decls, node.probes):
            _dump(part, indent + 1, out)
        return
    if isinstance(node, Probe):
        _dump(node.attach, indent + 1, out)
        if node.pred is not None:
            out.append(" " * (indent + 1) + "predicate")
            _dump(node.pred, indent + 2, out)
        _dump(node.body.stmts, indent + 1, out)
        return
    for f in fields(node):
        if f.name in ("loc", "ty", "name", "op", "raw", "value", "text", "index", "prefix",
                      "arrow", "kind", "key", "size", "macro"):
            if f.name == "value" and isinstance(node.value, Node):
                _dump(node.value, indent + 1, out)
            if f.name == "index" and isinstance(node.index, Node):
                _dump(node.index, indent + 1, out)
            continue
        val = getattr(node, f.name)
        if isinstance(val, Block):
            _dump(val.stmts, indent + 1, out)
        else:
            _dump(val, indent + 1, out)
