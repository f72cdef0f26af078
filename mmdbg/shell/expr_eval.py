"""Expressions for ``p``, ``struct``, ``watch`` and breakpoint conditions: gdb's C subset,
parsed and evaluated against the simulated kernel.

Names resolve to the selected frame's arguments and locals, then kernel globals
(``jiffies``, ``node_data``, ``current``, ...), sysctls, GFP flags and vmstat items.  Fields
are read by their kernel names (``page->_refcount``, ``zone->free_area[3].nr_free``); a
``struct page *`` is held as a pfn (:class:`PagePtr`) and ``(struct T *) ADDR`` as a
:class:`TypedAddr` that :func:`resolve_object` turns into the object at that address
(pages in the vmemmap, zones and nodes at the addresses ``shell/kaddr.py`` gives, tasks,
mm_structs and VMAs at their ``addr``).  Printing the results is ``commands/inspect.py``'s.
"""

from __future__ import annotations

import re
from typing import Any

from mmdbg.probe.values import to_int
from mmdbg.shell import kaddr
from mmdbg.shell.debugger import object_address
from mmdbg.shell.errors import CommandError
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, STRUCT_PAGE_SIZE, VMEMMAP_START

# ---------------------------------------------------------------------------------------
# tasks


def all_tasks(m: Any) -> list[Any]:
    out = list(getattr(m, "idle_tasks", []))
    tasks = getattr(m, "tasks", {}) or {}
    vals = tasks.values() if isinstance(tasks, dict) else tasks
    out += sorted(vals, key=lambda t: t.pid)
    return out


def find_task(m: Any, pid: int) -> Any:
    for t in all_tasks(m):
        if t.pid == pid:
            return t
    return None


def task_addr(t: Any) -> int:
    a = getattr(t, "addr", 0)
    if isinstance(a, int) and a:
        return a
    # init_task and the idle tasks live in the kernel image
    return 0xFFFFFFFF82A0C940 + 0x2C40 * int(getattr(t, "cpu", 0) or 0)


# ---------------------------------------------------------------------------------------
# values, parsing and evaluation


class PagePtr:
    """A ``struct page *`` held by the simulator as a pfn."""

    __slots__ = ("pfn",)

    def __init__(self, pfn: int) -> None:
        self.pfn = pfn

    @property
    def addr(self) -> int:
        return VMEMMAP_START + self.pfn * STRUCT_PAGE_SIZE

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PagePtr) and other.pfn == self.pfn

    def __hash__(self) -> int:
        return hash(self.pfn)


class TypedAddr:
    """``(struct T *) ADDR``: a pointer the shell resolves when it is dereferenced."""

    __slots__ = ("addr", "type")

    def __init__(self, type_: str, addr: int) -> None:
        self.type = type_
        self.addr = addr


_TOKEN = re.compile(r"""\s*(?:
    (?P<num>0[xX][0-9a-fA-F]+|\d+)[uUlL]*
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<hist>\$\d*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>()\[\].,?:])
)""", re.X)


def _tokens(text: str) -> list[tuple[str, str]]:
    pos = 0
    out = []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CommandError(f"A syntax error in expression, near `{text[pos:]}'.")
        pos = m.end()
        kind = m.lastgroup or "op"
        out.append((kind, m.group(kind)))
    out.append(("end", ""))
    return out


_BIN = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", ">", "<=", ">="),
        ("<<", ">>"), ("+", "-"), ("*", "/", "%")]


class _Parser:
    def __init__(self, session: Any, text: str) -> None:
        self.s = session
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self, val: str | None = None) -> tuple[str, str]:
        t = self.toks[self.i]
        if val is not None and t[1] != val:
            raise CommandError(f"A syntax error in expression, near `{self.rest()}'.")
        self.i += 1
        return t

    def rest(self) -> str:
        return " ".join(v for _, v in self.toks[self.i:]).strip()

    def parse(self) -> Any:
        v = self.ternary()
        if self.peek()[0] != "end":
            raise CommandError(f"A syntax error in expression, near `{self.rest()}'.")
        return v

    def ternary(self) -> Any:
        c = self.binary(0)
        if self.peek()[1] == "?":
            self.take()
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return a if _truth(c) else b
        return c

    def binary(self, level: int) -> Any:
        if level == len(_BIN):
            return self.unary()
        v = self.binary(level + 1)
        while self.peek()[0] == "op" and self.peek()[1] in _BIN[level]:
            op = self.take()[1]
            r = self.binary(level + 1)
            v = _binop(op, v, r)
        return v

    def unary(self) -> Any:
        k, v = self.peek()
        if k == "op" and v in ("-", "~", "!", "*", "&", "+"):
            self.take()
            x = self.unary()
            if v == "-":
                return -int_value(x)
            if v == "+":
                return int_value(x)
            if v == "~":
                return ~int_value(x)
            if v == "!":
                return int(not _truth(x))
            if v == "*":
                return deref(self.s.machine, x)
            return object_address(x) or int_value(x)
        if k == "op" and v == "(" and self._is_cast():
            self.take()
            ty = []
            while self.peek()[1] != ")":
                ty.append(self.take()[1])
            self.take(")")
            x = self.unary()
            return _cast(" ".join(ty), x)
        return self.postfix(self.primary())

    def _is_cast(self) -> bool:
        k, v = self.toks[self.i + 1]
        if v in ("struct", "unsigned", "long", "int", "char", "void", "gfp_t", "pg_data_t"):
            return True
        return k == "id" and v.endswith("_t") and self.toks[self.i + 2][1] in ("*", ")")

    def primary(self) -> Any:
        k, v = self.take()
        if k == "num":
            return int(v, 0)
        if k == "str":
            return bytes(v[1:-1], "utf-8").decode("unicode_escape")
        if k == "hist":
            n = int(v[1:]) if v[1:] else None
            val = self.s.history_value(n)
            if val is None:
                raise CommandError("History is empty." if not self.s.values
                                   else f"History has not yet reached {v}.")
            ctype, value = val
            if ctype == "struct page *" and value >= VMEMMAP_START:
                return PagePtr((value - VMEMMAP_START) // STRUCT_PAGE_SIZE)
            return value
        if k == "id":
            if self.peek()[1] == "(":
                self.take()
                args = []
                if self.peek()[1] != ")":
                    args.append(self.ternary())
                    while self.peek()[1] == ",":
                        self.take()
                        args.append(self.ternary())
                self.take(")")
                return _call(self.s, v, args)
            return lookup_name(self.s, v)
        if v == "(":
            x = self.ternary()
            self.take(")")
            return x
        raise CommandError(f"A syntax error in expression, near `{v} {self.rest()}'.")

    def postfix(self, x: Any) -> Any:
        while True:
            _k, v = self.peek()
            if v in (".", "->"):
                self.take()
                name = self.take()[1]
                x = get_field(self.s.machine, x, name)
            elif v == "[":
                self.take()
                idx = self.ternary()
                self.take("]")
                x = index(x, idx)
            else:
                return x


def _truth(v: Any) -> bool:
    return bool(int_value(v)) if not isinstance(v, str) else bool(v)


def int_value(v: Any) -> int:
    """An integer or pointer value; a value with no address is an error (gdb's message)."""
    if v is None or isinstance(v, int):
        return to_int(v)
    if isinstance(v, PagePtr | TypedAddr):
        return v.addr
    a = object_address(v)
    if a:
        return a
    raise CommandError(f"Attempt to take contents of a non-pointer value ({type_name(v)}).")


def _binop(op: str, a: Any, b: Any) -> Any:
    if op in ("==", "!=") and (isinstance(a, str) or isinstance(b, str)):
        return int((a == b) == (op == "=="))
    x, y = int_value(a), int_value(b)
    if op in ("/", "%") and y == 0:
        raise CommandError("Division by zero")
    return {"||": lambda: int(bool(x) or bool(y)), "&&": lambda: int(bool(x) and bool(y)),
            "|": lambda: x | y, "^": lambda: x ^ y, "&": lambda: x & y,
            "==": lambda: int(x == y), "!=": lambda: int(x != y), "<": lambda: int(x < y),
            ">": lambda: int(x > y), "<=": lambda: int(x <= y), ">=": lambda: int(x >= y),
            "<<": lambda: x << y, ">>": lambda: x >> y, "+": lambda: x + y,
            "-": lambda: x - y, "*": lambda: x * y, "/": lambda: int(x / y),
            "%": lambda: x % y}[op]()


def _cast(ty: str, x: Any) -> Any:
    t = ty.replace(" ", "")
    if t.endswith("*"):
        name = t.rstrip("*").removeprefix("struct")
        addr = int_value(x)
        if name == "page" and addr >= VMEMMAP_START:
            return PagePtr((addr - VMEMMAP_START) // STRUCT_PAGE_SIZE)
        return TypedAddr(name, addr)
    v = int_value(x)
    bits = 32 if t in ("int", "unsignedint", "gfp_t", "unsigned") else 64
    v &= (1 << bits) - 1
    if not t.startswith("unsigned") and t != "gfp_t" and v >= 1 << (bits - 1):
        v -= 1 << bits
    return v


def type_name(v: Any) -> str:
    if isinstance(v, PagePtr):
        return "struct page *"
    kt = getattr(type(v), "ktype", None)
    if kt:
        return f"struct {kt}"
    if isinstance(v, TypedAddr):
        return f"struct {v.type} *"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "long"
    if isinstance(v, str):
        return "char []"
    if isinstance(v, list | tuple):
        return "array"
    return type(v).__name__


def index(x: Any, i: Any) -> Any:
    n = int_value(i)
    if isinstance(x, dict):
        if n in x:
            return x[n]
        raise CommandError(f"no element {n}")
    try:
        return x[n]
    except (IndexError, KeyError):
        raise CommandError(f"no such vector element: {n}") from None
    except TypeError:
        raise CommandError(f"cannot subscript something of type `{type_name(x)}'") from None


def deref(m: Any, x: Any) -> Any:
    if isinstance(x, PagePtr):
        return m.page(x.pfn)
    if isinstance(x, TypedAddr):
        obj = resolve_object(m, x.type, x.addr)
        if obj is None:
            raise CommandError(f"Cannot access memory at address 0x{x.addr:x}")
        return obj
    if isinstance(x, int):
        return int.from_bytes(read_kernel(m, x, 8), "little")
    if getattr(type(x), "ktype", None):
        return x
    raise CommandError(f"Attempt to take contents of a non-pointer value ({type_name(x)}).")


def get_field(m: Any, x: Any, name: str) -> Any:
    if isinstance(x, PagePtr | TypedAddr):
        x = deref(m, x)
    if isinstance(x, int) or x is None:
        raise CommandError(f"There is no member named {name}.")
    aliases = getattr(type(x), "kfield_aliases", None) or {}
    attr = aliases.get(name, name)
    try:
        v = getattr(x, attr)
    except AttributeError:
        raise CommandError(f"There is no member named {name}.") from None
    if callable(v) and not getattr(type(v), "ktype", None):
        raise CommandError(f"There is no member named {name}.")
    if getattr(type(x), "ktype", "") == "page" and name in ("compound_head",) and v:
        return PagePtr(((v & ~1) - VMEMMAP_START) // STRUCT_PAGE_SIZE)
    return v


def read_kernel(m: Any, addr: int, size: int) -> bytes:
    """Bytes at a kernel virtual address (direct map) or a physical one."""
    max_phys = m.mem_map.max_pfn << PAGE_SHIFT
    if PAGE_OFFSET <= addr < PAGE_OFFSET + max_phys:
        return m.physmem.read(addr - PAGE_OFFSET, size)
    raise CommandError(f"Cannot access memory at address 0x{addr:x}")


_GLOBALS = {
    "jiffies": lambda m: m.clock.jiffies,
    "totalram_pages": lambda m: m.totalram_pages,
    "max_pfn": lambda m: m.max_pfn,
    "node_data": lambda m: m.node_data,
    "contig_page_data": lambda m: m.node_data[0],
    "init_task": lambda m: m.idle_tasks[0],
    "current": lambda m: m.current,
    "nr_cpu_ids": lambda m: m.ncpus,
    "vm_event_states": lambda m: m.vm_events,
    "vm_zone_stat": lambda m: [m.global_zone_page_state(i) for i in range(len(m.zones[0].vm_stat))],
    "vm_node_stat": lambda m: [m.global_node_page_state(i)
                               for i in range(len(m.node_data[0].vm_stat))],
    "totalreserve_pages": lambda m: m.totalreserve_pages,
    "gfp_allowed_mask": lambda m: m.gfp_allowed_mask,
}


def lookup_name(session: Any, name: str) -> Any:
    m = session.machine
    dbg = session.debugger
    if dbg is not None and dbg.stop is not None and dbg.stop.frames:
        fr = dbg.stop.frames[dbg.selected]
        vals = fr.all_values()
        if name in vals:
            v = vals[name]
            if isinstance(v, int) and not isinstance(v, bool) and name in (
                    "page", "folio", "head") and v >= 0:
                return PagePtr(v)
            return v
    if name in _GLOBALS:
        return _GLOBALS[name](m)
    key = f"vm.{name.removeprefix('sysctl_')}"
    if key in m.sysctl:
        return m.sysctl[key]
    if name == "NULL":
        return 0
    from mmdbg.sim.include.gfp import GFP_NAMES

    if name in GFP_NAMES:
        return GFP_NAMES[name]
    from mmdbg.sim.mm import vmstat

    for table in ("NS", "ZS", "EV"):
        t = getattr(vmstat, table, None)
        if isinstance(t, dict) and name.lower() in t:
            return t[name.lower()]
    raise CommandError(f'No symbol "{name}" in current context.')


def _call(session: Any, name: str, args: list[Any]) -> Any:
    m = session.machine
    if name == "pfn_to_page" and len(args) == 1:
        return PagePtr(int_value(args[0]))
    if name == "page_to_pfn" and len(args) == 1:
        a = args[0]
        return a.pfn if isinstance(a, PagePtr) else getattr(a, "pfn", int_value(a))
    if name in ("virt_to_page", "virt_to_pfn") and len(args) == 1:
        pfn = (int_value(args[0]) - PAGE_OFFSET) >> PAGE_SHIFT
        return PagePtr(pfn) if name == "virt_to_page" else pfn
    if name == "page_address" and len(args) == 1:
        a = args[0]
        pfn = a.pfn if isinstance(a, PagePtr | type(m.page(0))) else int_value(a)
        return PAGE_OFFSET + (pfn << PAGE_SHIFT)
    if name == "page_zone" and len(args) == 1:
        a = args[0]
        pfn = a.pfn if hasattr(a, "pfn") else int_value(a)
        return m.pfn_zone(pfn)
    if name == "NODE_DATA" and len(args) == 1:
        return m.node_data[int_value(args[0])]
    if name == "find_task_by_vpid" and len(args) == 1:
        return find_task(m, int_value(args[0]))
    if name == "sizeof":
        raise CommandError("sizeof is not supported.")
    raise CommandError(f'No symbol "{name}" in current context (functions: pfn_to_page, '
                       "page_to_pfn, virt_to_page, page_address, page_zone, NODE_DATA, "
                       "find_task_by_vpid).")


def evaluate(session: Any, text: str) -> Any:
    return _Parser(session, text).parse()


def resolve_object(m: Any, ktype: str, addr: int) -> Any:
    """The kernel object of type ``ktype`` at ``addr`` (None if there is none)."""
    if ktype == "page":
        if VMEMMAP_START <= addr < VMEMMAP_START + m.mem_map.max_pfn * STRUCT_PAGE_SIZE:
            return m.page((addr - VMEMMAP_START) // STRUCT_PAGE_SIZE)
        return None
    if ktype == "zone":
        return kaddr.find_zone(m, addr)
    if ktype in ("pglist_data", "pg_data_t"):
        return next((p for p in m.node_data if kaddr.pgdat_addr(p) == addr), None)
    if ktype == "free_area":
        for z in m.zones:
            for o in range(len(z.free_area)):
                if kaddr.free_area_addr(z, o) == addr:
                    return z.free_area[o]
        return None
    if ktype == "task_struct":
        return next((t for t in all_tasks(m) if task_addr(t) == addr), None)
    if ktype == "mm_struct":
        for t in all_tasks(m):
            mm = getattr(t, "mm", None)
            if mm is not None and getattr(mm, "addr", None) == addr:
                return mm
        return None
    if ktype == "vm_area_struct":
        for t in all_tasks(m):
            mm = getattr(t, "mm", None)
            for vma in mm_vmas(mm):
                if getattr(vma, "addr", None) == addr:
                    return vma
        return None
    kobj = getattr(m, "kobj", None)
    if callable(kobj):
        try:
            return kobj(ktype, addr)
        except Exception:
            return None
    return None


def mm_vmas(mm: Any) -> list[Any]:
    if mm is None:
        return []
    tree = getattr(mm, "mm_mt", None)
    for attr in ("values", "vmas", "__iter__"):
        f = getattr(tree, attr, None)
        if callable(f):
            try:
                return list(f())
            except Exception:
                continue
    return []
