"""gdb's ``call``: run a kernel function of the simulated machine and print what it returns.

``call __alloc_pages(GFP_KERNEL, 3)`` prints ``$1 = (struct page *) 0xffffea0000fa0000`` as
gdb does, and the value is remembered: ``call __free_pages($1, 3)`` gives it back.

Only an allow-list of functions is callable, those whose arguments a user can type (integers,
GFP masks, pages): calling an arbitrary internal function could leave the machine
inconsistent.  Functions are looked up by kernel name in the attach surface
(``trace.KFUNCS``) and called through their module's globals, so a kprobe or breakpoint on
``__alloc_pages`` sees the call.  Arguments are small C expressions: integers, GFP flag names
joined with ``|``, ``NULL``, value history (``$``, ``$N``), casts such as ``(struct page *)``.
"""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from typing import Any

from mmdbg.shell import kaddr
from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim import trace
from mmdbg.sim.include.gfp import GFP_NAMES
from mmdbg.sim.mm.mm_types import (
    PAGE_OFFSET,
    PAGE_SHIFT,
    STRUCT_PAGE_SIZE,
    VMEMMAP_START,
    pfn_to_page_addr,
)

# Parameter kinds: how a typed value becomes the simulator's argument.
GFP = "gfp_t"
INT = "int"
UINT = "unsigned int"
PAGE = "struct page *"
ZONE = "struct zone *"
VADDR = "unsigned long"
NODEMASK = "nodemask_t *"


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any = None  # a callable(machine) or value for trailing optional parameters
    optional: bool = False


@dataclass(frozen=True)
class Callable_:
    """How the shell calls one kernel function: its C prototype and the simulator's."""

    params: tuple[Param, ...]
    returns: str  # "struct page *", "void", "unsigned long"
    machine_first: bool = False  # the simulator's function takes the machine first


def _local_nid(m: Any) -> int:
    return m.numa_node_id()


CALLABLE: dict[str, Callable_] = {
    "alloc_pages": Callable_((Param("gfp", GFP), Param("order", UINT)), PAGE),
    "__alloc_pages": Callable_(
        (Param("gfp", GFP), Param("order", UINT),
         Param("preferred_nid", INT, _local_nid, optional=True),
         Param("nodemask", NODEMASK, None, optional=True)), PAGE),
    "alloc_pages_node": Callable_((Param("nid", INT), Param("gfp_mask", GFP),
                                   Param("order", UINT)), PAGE),
    "__free_pages": Callable_((Param("page", PAGE), Param("order", UINT)), "void"),
    "free_pages": Callable_((Param("addr", VADDR), Param("order", UINT)), "void"),
    "__get_free_pages": Callable_((Param("gfp_mask", GFP), Param("order", UINT)), VADDR),
    "get_zeroed_page": Callable_((Param("gfp_mask", GFP),), VADDR),
    "drain_all_pages": Callable_((Param("zone", ZONE, 0, optional=True),), "void",
                                 machine_first=True),
    "drain_local_pages": Callable_((Param("zone", ZONE, 0, optional=True),), "void",
                                   machine_first=True),
}


@command(
    "call",
    usage="FUNCTION(ARGUMENTS)",
    summary="call a kernel function",
    help="""\
    Calls a function of the simulated kernel, as gdb's call does, and prints the value it
    returns in gdb's form, numbered in the value history: "$1 = (struct page *)
    0xffffea0000fa0000" (a NULL page is 0x0).  Void functions print nothing.

    The call goes through the kernel's real path (alloc_pages -> __alloc_pages ->
    get_page_from_freelist ...), so probes and breakpoints on those functions see it and
    failures are reported in the kernel log ("log").

    Arguments are C expressions: integers, GFP flags (GFP_KERNEL|__GFP_ZERO), NULL, casts
    ((struct page *)0xffffea...) and earlier values ($ for the last, $N for the Nth).  A
    struct page * argument also accepts a page frame number.  Trailing arguments the
    kernel's prototype has but a user rarely needs may be left out: __alloc_pages'
    preferred_nid (default: the current CPU's node) and nodemask (NULL); the zone of
    drain_all_pages and drain_local_pages (NULL: every zone).

    Callable functions:
      alloc_pages(gfp, order)              __alloc_pages(gfp, order[, nid[, nodemask]])
      alloc_pages_node(nid, gfp, order)    __free_pages(page, order)
      drain_all_pages([zone])              drain_local_pages([zone])
    and, once the simulator has them: free_pages(addr, order),
    __get_free_pages(gfp, order), get_zeroed_page(gfp).""",
    examples=(("Allocate an order-3 block (8 pages):", "call __alloc_pages(GFP_KERNEL, 3)"),
              ("Give it back, by value history:", "call __free_pages($1, 3)"),
              ("A zeroed page on node 0:", "call alloc_pages_node(0, GFP_KERNEL|__GFP_ZERO, 0)"),
              ("Empty the per-cpu page lists into the buddy allocator:",
               "call drain_all_pages(NULL)")),
)
def cmd_call(ctx: CommandContext, args: list[str]) -> None:
    text = ctx.argtext.strip()
    if not text:
        raise UsageError()
    mt = re.fullmatch(r"([A-Za-z_]\w*)\s*\((.*)\)\s*;?", text, re.S)
    if not mt:
        if re.fullmatch(r"[A-Za-z_]\w*", text):
            raise CommandError(_no_symbol(text) if not _kfunc(text)
                               else f'Function "{text}" needs arguments: call {text}(...)')
        raise CommandError(f"A syntax error in expression, near `{_near(text)}'.")
    name, argtext = mt.group(1), mt.group(2)
    kf = _kfunc(name)
    if kf is None:
        raise CommandError(_no_symbol(name))
    spec = CALLABLE.get(kf.name) or CALLABLE.get(name)
    if spec is None:
        raise CommandError(
            f"{name}: not callable from the shell (it takes kernel objects a user cannot "
            f"type); callable: {', '.join(callable_functions())}")
    m = ctx.machine
    exprs = _split_args(argtext)
    required = sum(1 for p in spec.params if not p.optional)
    if len(exprs) < required:
        raise CommandError("Too few arguments in function call.")
    if len(exprs) > len(spec.params):
        raise CommandError("Too many arguments in function call.")
    values = []
    for i, p in enumerate(spec.params):
        if i < len(exprs):
            v = _convert(m, p, evaluate(exprs[i], ctx.session))
        else:
            v = p.default(m) if callable(p.default) else p.default
            if p.kind == ZONE:
                v = None
        values.append(v)
    func = _module_function(kf)
    m.activate()
    ret = func(m, *values) if spec.machine_first else func(*values)
    _print_result(ctx, spec.returns, ret)


# ---------------------------------------------------------------------------------------


def callable_functions() -> list[str]:
    """The allow-listed functions the simulated kernel has now."""
    return sorted(n for n in CALLABLE if n in trace.KFUNCS)


def _kfunc(name: str) -> Any:
    return trace.KFUNCS.get(name)


def _no_symbol(name: str) -> str:
    return f'No symbol "{name}" in current context.'


def _near(text: str) -> str:
    return text.strip()[:40]


def _module_function(kf: Any) -> Any:
    """The function as its module's globals hold it now (a kprobe may have swapped it).

    Names starting with ``__`` are looked up in the module dict; from a class body Python
    would mangle them (DEVELOPING.md).
    """
    mod = sys.modules[kf.module]
    return vars(mod).get(kf.func.__name__, kf.func)


def _split_args(text: str) -> list[str]:
    if not text.strip():
        return []
    parts, depth, cur = [], 0, []
    for c in text:
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
    parts.append("".join(cur))
    for p in parts:
        if not p.strip():
            raise CommandError(f"A syntax error in expression, near `{_near(text)}'.")
    return [p.strip() for p in parts]


# -- expressions -----------------------------------------------------------------------

_CAST = re.compile(r"\(\s*(?:const\s+)?(?:struct\s+\w+\s*\*+|unsigned\s+(?:long\s+|int\s+)*"
                   r"(?:long|int)?|gfp_t|int|long|void\s*\*+|size_t|\w+_t)\s*\)")
_INT_SUFFIX = re.compile(r"\b(0[xX][0-9a-fA-F]+|\d+)(?:[uU]?[lL]{0,2}|[lL]{1,2}[uU]?)\b")
_HIST = re.compile(r"\$(\d*)")
_BINOPS = {ast.BitOr: lambda a, b: a | b, ast.BitAnd: lambda a, b: a & b,
           ast.BitXor: lambda a, b: a ^ b, ast.LShift: lambda a, b: a << b,
           ast.RShift: lambda a, b: a >> b, ast.Add: lambda a, b: a + b,
           ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
           ast.Div: lambda a, b: a // b, ast.FloorDiv: lambda a, b: a // b,
           ast.Mod: lambda a, b: a % b}


def evaluate(expr: str, session: Any) -> int:
    """A small C integer expression: GFP names, NULL, ints, $N, casts, | & ^ << >> + - * /."""
    src = _CAST.sub(" ", expr)
    src = _INT_SUFFIX.sub(r"\1", src)
    hist: dict[str, int] = {}

    def take(mt: re.Match) -> str:
        n = int(mt.group(1)) if mt.group(1) else None
        val = session.history_value(n)
        if val is None:
            raise CommandError("History is empty." if not session.values
                               else f"History has not yet reached ${mt.group(1)}.")
        key = f"_hist_{len(hist)}"
        hist[key] = val[1]
        return key

    src = _HIST.sub(take, src)
    try:
        tree = ast.parse(src.strip(), mode="eval")
    except SyntaxError:
        raise CommandError(f"A syntax error in expression, near `{_near(expr)}'.") from None

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(
                node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id in hist:
                return hist[node.id]
            if node.id == "NULL":
                return 0
            if node.id in GFP_NAMES:
                return GFP_NAMES[node.id]
            raise CommandError(_no_symbol(node.id))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            a, b = ev(node.left), ev(node.right)
            if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and b == 0:
                raise CommandError("Division by zero")
            return _BINOPS[type(node.op)](a, b)
        if isinstance(node, ast.UnaryOp):
            v = ev(node.operand)
            if isinstance(node.op, ast.Invert):
                return ~v
            if isinstance(node.op, ast.USub):
                return -v
            if isinstance(node.op, ast.UAdd):
                return v
        raise CommandError(f"A syntax error in expression, near `{_near(expr)}'.")

    return ev(tree)


def _convert(m: Any, p: Param, v: int) -> Any:
    if p.kind == PAGE:
        return page_pfn(m, v)
    if p.kind == ZONE:
        if v == 0:
            return None
        z = kaddr.find_zone(m, v)
        if z is None:
            raise CommandError(f"Cannot access memory at address {v:#x}")
        return z
    if p.kind == NODEMASK:
        if v:
            raise CommandError("nodemask: only NULL (every node) can be passed from the shell")
        return None
    if p.kind == UINT:
        return v & 0xFFFFFFFF
    if p.kind == GFP:
        return v & 0xFFFFFFFF
    if p.kind == INT:
        v &= 0xFFFFFFFF
        return v - (1 << 32) if v >= 1 << 31 else v
    return v & 0xFFFFFFFFFFFFFFFF


def page_pfn(m: Any, v: int) -> int:
    """A ``struct page *`` argument: a vmemmap address, or a pfn as a convenience."""
    max_pfn = m.mem_map.max_pfn
    if v == 0:  # NULL: the kernel would oops
        raise CommandError("Cannot access memory at address 0x0")
    if VMEMMAP_START <= v < VMEMMAP_START + max_pfn * STRUCT_PAGE_SIZE:
        if (v - VMEMMAP_START) % STRUCT_PAGE_SIZE == 0:
            return (v - VMEMMAP_START) // STRUCT_PAGE_SIZE
    elif 0 <= v < max_pfn:
        return v
    raise CommandError(f"Cannot access memory at address {v & 0xFFFFFFFFFFFFFFFF:#x}")


def _print_result(ctx: CommandContext, returns: str, ret: Any) -> None:
    if returns == "void":
        return
    if returns == PAGE:
        addr = pfn_to_page_addr(ret) if ret is not None else 0
        n = ctx.session.record_value(PAGE, addr)
        ctx.print(f"${n} = (struct page *) {addr:#x}")
        return
    if returns == VADDR:
        v = ret if isinstance(ret, int) else 0
        if v and v < PAGE_OFFSET:  # a simulator function returning a pfn
            v = PAGE_OFFSET + (v << PAGE_SHIFT)
        n = ctx.session.record_value(VADDR, v)
        ctx.print(f"${n} = {v}")
        return
    n = ctx.session.record_value(returns, int(ret or 0))
    ctx.print(f"${n} = {int(ret or 0)}")
