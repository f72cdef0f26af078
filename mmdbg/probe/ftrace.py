"""``mmdbg --trace 'kmem:*,vmscan:mm_vmscan_*'``: events as ftrace's text lines.

trace-cmd record + report in one: every event of the selected tracepoints is written as the
kernel's ``trace``/``trace_pipe`` line::

             cat-1234    [002] ..... 12345.678901: mm_page_alloc: page=ffffea0000048d00 pfn=0x1234 order=0 migratetype=1 gfp_flags=GFP_HIGHUSER_MOVABLE

TASK right-aligned in 16 columns, ``-PID`` left-aligned in 7, ``[CPU]`` as ``%03d``, the five
latency flag characters (irqs-off, need-resched, hard/softirq, preempt depth,
migrate-disable; the simulation runs probes with interrupts on and no preemption, so they are
``.....``), ``%5lu.%06lu`` seconds, the event name, then the tracepoint's ``TP_printk`` output
rendered from its print format in ``tracepoints.json``.  ``irq_info=False`` drops the flags
column, as ``echo 0 > options/irq-info`` does.

The print format is evaluated by a small C-expression interpreter: ``REC->field``, integer
literals with ``UL`` suffixes, casts, arithmetic, comparisons, ``?:``, and the helpers the memory
manager's events use: ``__print_flags``, ``__print_symbolic``, ``show_gfp_flags``,
``__get_str``, ``pfn_to_page``, ``MAJOR``/``MINOR``, ``IS_ERR_VALUE``.  An unknown helper
prints its first argument in hex.  Pointers print unhashed (``%p`` as 16 hex digits), as the
kernel does with ``no_hash_pointers``, so runs stay reproducible.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any, TextIO

MASK64 = (1 << 64) - 1
VMEMMAP_START = 0xFFFFEA0000000000

HEADER = """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}
#
#                                _-----=> irqs-off/BH-disabled
#                               / _----=> need-resched
#                              | / _---=> hardirq/softirq
#                              || / _--=> preempt-depth
#                              ||| / _-=> migrate-disable
#                              |||| /     delay
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
"""

HEADER_NOIRQ = """# tracer: nop
#
# entries-in-buffer/entries-written: {n}/{n}   #P:{cpus}
#
#           TASK-PID     CPU#     TIMESTAMP  FUNCTION
#              | |         |         |         |
"""


class TraceError(ValueError):
    pass


# --------------------------------------------------------------------------- C expressions

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<str>"(?:\\.|[^"\\])*")
  | (?P<num>0[xX][0-9a-fA-F]+[uUlL]*|[0-9]+[uUlL]*)
  | (?P<id>[A-Za-z_]\w*)
  | (?P<op>->|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^~!<>?:(),{}\[\].])
""", re.X)

_TYPE_WORDS = {"unsigned", "signed", "int", "long", "short", "char", "void", "struct", "const",
               "bool", "gfp_t", "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "size_t",
               "__force", "unsigned_long", "enum", "union", "dev_t", "ino_t", "pgoff_t",
               "uintptr_t", "typeof", "__u32", "__u64", "isolate_mode_t", "vm_flags_t"}


class _Str(str):
    """A string value inside the interpreter (as opposed to a format)."""


class CExpr:
    """Parse once, evaluate many times against a record dict."""

    def __init__(self, text: str):
        self.toks: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise TraceError(f"cannot parse print format argument: {text!r}")
            if m.lastgroup != "ws":
                self.toks.append((m.lastgroup or "", m.group()))
            pos = m.end()
        self.i = 0
        self.node = self.ternary()
        if self.i != len(self.toks):
            raise TraceError(f"trailing tokens in print format argument: {text!r}")

    # -- parser -------------------------------------------------------------------------
    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.toks[j][1] if j < len(self.toks) else ""

    def take(self, want: str | None = None) -> str:
        if self.i >= len(self.toks):
            raise TraceError("unexpected end of print format argument")
        t = self.toks[self.i][1]
        if want is not None and t != want:
            raise TraceError(f"expected {want!r}, got {t!r}")
        self.i += 1
        return t

    def ternary(self) -> Any:
        cond = self.binary(0)
        if self.peek() == "?":
            self.take()
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return ("?", cond, a, b)
        return cond

    _PREC = [("||",), ("&&",), ("|",), ("^",), ("&",), ("==", "!="), ("<", "<=", ">", ">="),
             ("<<", ">>"), ("+", "-"), ("*", "/", "%")]

    def binary(self, level: int) -> Any:
        if level == len(self._PREC):
            return self.unary()
        left = self.binary(level + 1)
        while self.peek() in self._PREC[level] and self.peek():
            op = self.take()
            left = (op, left, self.binary(level + 1))
        return left

    def _is_cast(self) -> bool:
        if self.peek() != "(":
            return False
        j, depth = self.i + 1, 0
        words = 0
        while j < len(self.toks):
            kind, t = self.toks[j]
            if t == ")":
                return words > 0 and depth == 0
            if t == "*":
                j += 1
                continue
            if kind != "id" or (t not in _TYPE_WORDS and not (j > 0 and self.toks[j - 1][1] in (
                    "struct", "enum", "union"))):
                return False
            words += 1
            j += 1
        return False

    def unary(self) -> Any:
        t = self.peek()
        if t in ("!", "~", "-", "+"):
            self.take()
            return ("u" + t, self.unary())
        if t in ("*", "&"):
            self.take()
            return self.unary()
        if self._is_cast():
            self.take("(")
            ptr = False
            while self.peek() != ")":
                ptr = self.take() == "*" or ptr
            self.take(")")
            return ("cast", ptr, self.unary())
        return self.postfix()

    def postfix(self) -> Any:
        node = self.primary()
        while self.peek() in ("->", ".", "["):
            t = self.take()
            if t == "[":
                idx = self.ternary()
                self.take("]")
                node = ("index", node, idx)
            else:
                node = ("field", node, self.take())
        return node

    def primary(self) -> Any:
        kind, t = self.toks[self.i] if self.i < len(self.toks) else ("", "")
        if kind == "num":
            self.take()
            digits = t.rstrip("uUlL")
            return ("num", int(digits, 16) if digits[:2].lower() == "0x" else int(digits, 8)
                    if len(digits) > 1 and digits.startswith("0") else int(digits),
                    "u" in t.lower() and "l" in t.lower())
        if kind == "str":
            self.take()
            return ("str", _Str(bytes(t[1:-1], "utf-8").decode("unicode_escape")))
        if t == "(":
            self.take()
            node = self.ternary()
            self.take(")")
            return node
        if t == "{":
            self.take()
            items = []
            while self.peek() != "}":
                items.append(self.ternary())
                if self.peek() == ",":
                    self.take()
            self.take("}")
            return ("list", items)
        if kind == "id":
            self.take()
            if self.peek() == "(":
                self.take()
                args = []
                while self.peek() != ")":
                    args.append(self.ternary())
                    if self.peek() == ",":
                        self.take()
                self.take(")")
                return ("call", t, args)
            return ("id", t)
        raise TraceError(f"unexpected token {t!r} in print format")

    # -- evaluation ---------------------------------------------------------------------
    def eval(self, rec: dict[str, Any]) -> Any:
        return _eval(self.node, rec)


def _ival(v: Any) -> int:
    """An integer as ftrace's filters see values: a string by its truth, anything else by
    :func:`~mmdbg.probe.values.kaddr` (no ``int()`` parsing, unlike ``to_int``)."""
    if isinstance(v, str):
        return 1 if v else 0
    from mmdbg.probe.values import kaddr

    return kaddr(v)


def _eval(n: Any, rec: dict[str, Any]) -> Any:
    op = n[0]
    if op == "num":
        return n[1]
    if op == "str":
        return n[1]
    if op == "id":
        name = n[1]
        if name in ("NULL", "false"):
            return 0
        if name == "true":
            return 1
        if name == "vmemmap_base":
            return VMEMMAP_START
        return rec.get(name, 0)
    if op == "field":
        base = n[1]
        if base == ("id", "REC"):
            return rec.get(n[2], 0)
        obj = _eval(base, rec)
        return getattr(obj, n[2], 0)
    if op == "index":
        obj, idx = _eval(n[1], rec), _ival(_eval(n[2], rec))
        try:
            return obj[idx]
        except (TypeError, IndexError, KeyError):
            return 0
    if op == "cast":
        return _eval(n[2], rec)
    if op == "?":
        return _eval(n[2], rec) if _truth(_eval(n[1], rec)) else _eval(n[3], rec)
    if op == "list":
        return [_eval(x, rec) for x in n[1]]
    if op == "call":
        return _call(n[1], [_eval(a, rec) for a in n[2]], rec)
    if op.startswith("u"):
        v = _eval(n[1], rec)
        if op == "u!":
            return int(not _truth(v))
        if op == "u~":
            return ~_ival(v) & MASK64
        if op == "u-":
            return -_ival(v)
        return _ival(v)
    a, b = _eval(n[1], rec), _eval(n[2], rec)
    if op == "&&":
        return int(_truth(a) and _truth(b))
    if op == "||":
        return int(_truth(a) or _truth(b))
    x, y = _ival(a), _ival(b)
    if op in ("==", "!=", "<", "<=", ">", ">="):
        x, y = x & MASK64, y & MASK64  # C's usual conversions with the unsigned long fields
        return int({"==": x == y, "!=": x != y, "<": x < y, "<=": x <= y, ">": x > y,
                    ">=": x >= y}[op])
    if op == "+":
        return x + y
    if op == "-":
        return x - y
    if op == "*":
        return (x * y) & MASK64
    if op == "/":
        return x // y if y else 0
    if op == "%":
        return x % y if y else 0
    if op == "<<":
        return (x << (y & 63)) & MASK64
    if op == ">>":
        return (x & MASK64) >> (y & 63)
    return {"&": x & y, "|": x | y, "^": x ^ y}[op]


def _truth(v: Any) -> bool:
    return bool(v) if not isinstance(v, int) else (v & MASK64) != 0


def _flags(value: int, delim: str, table: list[Any]) -> str:
    value &= MASK64
    names: list[str] = []
    for pair in table:
        if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
            continue
        mask = _ival(pair[0]) & MASK64
        if not value:
            break
        if mask and value & mask == mask:
            names.append(pair[1])
            value &= ~mask
    if value:
        names.append(f"{value:#x}")
    return delim.join(names)


def _symbolic(value: int, table: list[Any]) -> str:
    for pair in table:
        if isinstance(pair, list) and len(pair) == 2 and _ival(pair[0]) == value:
            return str(pair[1])
    return f"{value:#x}"


def _call(name: str, args: list[Any], rec: dict[str, Any]) -> Any:
    if name == "__print_flags" and len(args) >= 2:
        return _Str(_flags(_ival(args[0]), str(args[1]), args[2:]))
    if name == "__print_symbolic" and args:
        return _Str(_symbolic(_ival(args[0]), args[1:]))
    if name == "show_gfp_flags" and args:
        from mmdbg.probe.printf import gfp_string

        v = _ival(args[0])
        return _Str(gfp_string(v) if v else "none")
    if name == "__get_str" and args:
        return _Str(str(args[0]) if not isinstance(args[0], int) else "")
    if name == "pfn_to_page" and args:
        return VMEMMAP_START + _ival(args[0]) * 64
    if name == "MAJOR" and args:
        return _ival(args[0]) >> 20
    if name == "MINOR" and args:
        return _ival(args[0]) & ((1 << 20) - 1)
    if name == "IS_ERR_VALUE" and args:
        return int((_ival(args[0]) & MASK64) >= MASK64 - 4094)
    if name == "IS_ENABLED":
        return 1
    return _Str(f"{_ival(args[0]) if args else 0:#x}")


# --------------------------------------------------------------------------- printk formats

_KSPEC = re.compile(r"%(?P<flags>[-+ #0]*)(?P<width>[0-9]+)?(?:\.(?P<prec>[0-9]+))?"
                    r"(?P<len>hh|h|ll|l|z|t|j|L)?(?P<conv>[diouxXcsp%])")


def _kformat(fmt: str, values: list[Any]) -> str:
    out: list[str] = []
    i = pos = 0
    while True:
        m = _KSPEC.search(fmt, pos)
        if m is None:
            out.append(fmt[pos:])
            break
        out.append(fmt[pos:m.start()])
        pos = m.end()
        conv = m.group("conv")
        if conv == "%":
            out.append("%")
            continue
        v = values[i] if i < len(values) else 0
        i += 1
        flags, width, prec = m.group("flags"), m.group("width") or "", m.group("prec")
        spec = "%" + flags + width + ("." + prec if prec is not None else "")
        if conv == "p":
            ext = re.match(r"[A-Za-z]*", fmt[pos:])
            ext_s = ext.group() if ext else ""
            pos += len(ext_s)
            out.append(_pointer(v, ext_s))
        elif conv == "s":
            out.append((spec + "s") % (v if isinstance(v, str) else f"{_ival(v):#x}"))
        elif conv == "c":
            out.append((spec + "c") % chr(_ival(v) & 0xFF))
        else:
            x = _ival(v)
            signed = conv in "di"
            bits = 64 if m.group("len") in ("l", "ll", "z", "t", "j", "L") else 32
            x &= (1 << bits) - 1
            if signed and x >> (bits - 1):
                x -= 1 << bits
            out.append((spec + ("d" if conv in "diu" else conv)) % x)
    return "".join(out)


def _pointer(v: Any, ext: str) -> str:
    x = _ival(v) & MASK64
    if ext.startswith("G") and ext[1:2] == "g":
        from mmdbg.probe.printf import gfp_string

        return gfp_string(x)
    if ext[:1] in ("S", "s", "B", "F", "f"):
        return f"{x:#x}" if x else "0x0"
    return f"{x:016x}"


def _split_printk(printk: str) -> tuple[str, list[str]]:
    """``"fmt", a, b`` -> (decoded fmt, ["a", "b"]), splitting at top-level commas."""
    text = printk.strip()
    m = re.match(r'"((?:\\.|[^"\\])*)"\s*(,|$)', text)
    if not m:
        raise TraceError("print format does not start with a string")
    fmt = bytes(m.group(1), "utf-8").decode("unicode_escape")
    rest = text[m.end():]
    args: list[str] = []
    depth, cur, quoted = 0, [], False
    prev = ""
    for ch in rest:
        if ch == '"' and prev != "\\":
            quoted = not quoted
        if not quoted:
            if ch in "({[":
                depth += 1
            elif ch in ")}]":
                depth -= 1
            elif ch == "," and depth == 0:
                args.append("".join(cur).strip())
                cur = []
                prev = ch
                continue
        cur.append(ch)
        prev = ch
    if "".join(cur).strip():
        args.append("".join(cur).strip())
    return fmt, args


class PrintFormat:
    """A tracepoint's TP_printk, compiled once."""

    def __init__(self, printk: str, field_types: dict[str, str] | None = None):
        text = re.sub(r"\(\(struct page \*\)vmemmap_base\) \+ \(([^()]*(?:\([^()]*\))?[^()]*)\)",
                      r"pfn_to_page(\1)", printk)
        self.fmt, arg_texts = _split_printk(text)
        self.args = [CExpr(a) for a in arg_texts]
        self.unsigned = {n for n, t in (field_types or {}).items()
                         if "unsigned" in t or t.startswith(("u", "size_t", "gfp_t", "dev_t",
                                                             "ino_t", "pgoff_t"))}

    def render(self, fields: dict[str, Any]) -> str:
        rec = {k: (v & MASK64 if k in self.unsigned and isinstance(v, int) else v)
               for k, v in fields.items()}
        return _kformat(self.fmt, [a.eval(rec) for a in self.args])


# --------------------------------------------------------------------------- the session


def select_tracepoints(spec: str) -> list[Any]:
    """``'kmem:*,vmscan:mm_vmscan_*'`` -> the declared tracepoints, in name order."""
    from mmdbg.sim import trace

    declared = trace.declared_tracepoints()
    out: list[Any] = []
    for pat in (p.strip() for p in spec.split(",")):
        if not pat:
            continue
        if pat.startswith(("tracepoint:", "t:")):
            pat = pat.split(":", 1)[1]
        if ":" not in pat:
            pat = "*:" + pat
        hits = [tp for tp in declared if fnmatch.fnmatchcase(tp.full_name, pat)]
        if not hits:
            raise TraceError(f"no simulated tracepoint matches '{pat}' (list them with: mmdbg -l "
                             "'tracepoint:*')")
        out.extend(tp for tp in hits if tp not in out)
    return sorted(out, key=lambda t: t.full_name)


def trace_line(comm: str, pid: int, cpu: int, ns: int, event: str, text: str,
               irq_info: bool = True) -> str:
    secs, rem = divmod(ns, 1_000_000_000)
    flags = "....." if irq_info else ""
    return f"{comm:>16}-{pid:<7} [{cpu:03d}] {flags} {secs:5d}.{rem // 1000:06d}: {event}: {text}\n"


class FtraceSession:
    """Attach to tracepoints and write one ftrace line per event."""

    def __init__(self, machine: Any, spec: str, out: TextIO, *, irq_info: bool = True):
        self.machine = machine
        self.out = out
        self.irq_info = irq_info
        self.tracepoints = select_tracepoints(spec)
        self.formats = {tp.full_name: PrintFormat(tp.printk, {f.name: f.type for f in tp.fields})
                        for tp in self.tracepoints}
        self.attachments: list[Any] = []
        self.count = 0

    def header(self) -> str:
        cpus = getattr(self.machine, "ncpus", 1)
        return (HEADER if self.irq_info else HEADER_NOIRQ).format(n=self.count, cpus=cpus)

    def _handler(self, tp: Any) -> Callable[[Any], None]:
        fmt = self.formats[tp.full_name]
        name = tp.name
        irq = self.irq_info
        write = self.out.write

        def on_event(ev: Any) -> None:
            task = ev.task
            pid = getattr(task, "pid", 0) if task is not None else 0
            # trace_find_cmdline(): pid 0 is always shown as <idle>
            comm = getattr(task, "comm", "<...>") if pid else "<idle>"
            try:
                text = fmt.render(vars(ev.args))
            except Exception as e:  # never let a bad format reach the simulated kernel
                text = f"<print format failed: {type(e).__name__}>"
            self.count += 1
            write(trace_line(comm, pid, ev.cpu, ev.nsecs, name, text, irq))

        return on_event

    def attach(self) -> int:
        for tp in self.tracepoints:
            self.attachments.append(tp.attach(self._handler(tp), machine=self.machine))
        return len(self.attachments)

    def detach(self) -> None:
        for a in self.attachments:
            a.detach()
        self.attachments = []


def run_trace_cli(spec: str, machine: Any, run_workload: Callable[[Callable[[], bool]], None],
                  out: TextIO, err: TextIO, *, irq_info: bool = True, header: bool = False) -> int:
    """``mmdbg --trace SPEC``: attach, run the workload, detach; 0, or 2 on a bad SPEC."""
    try:
        sess = FtraceSession(machine, spec, out if not header else _Buffer(), irq_info=irq_info)
    except TraceError as e:
        err.write(f"ERROR: {e}\n")
        return 2
    sess.attach()
    try:
        run_workload(lambda: False)
    except KeyboardInterrupt:
        pass
    finally:
        sess.detach()
    if header:
        out.write(sess.header() + sess.out.getvalue())  # type: ignore[attr-defined]
    return 0


class _Buffer:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, s: str) -> int:
        self.parts.append(s)
        return len(s)

    def getvalue(self) -> str:
        return "".join(self.parts)
