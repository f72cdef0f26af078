"""Generate Python source for each probe block, ``compile()`` it once, bind it to a runtime.

For every probe block the generator writes a factory ``mk_pN(PROBE, FUNC, PTYPE)`` returning
the handler ``pN(ev)`` that the attach surface calls with an :class:`mmdbg.sim.trace.Event`.
``PROBE``/``FUNC`` differ per attach point of the block (a wildcard expands to many), so they
are closure constants, not per-event work.  The hot path of
``tracepoint:kmem:mm_page_alloc { @[comm] = count(); }`` is a task lookup, one dict probe
and one store.

A tracepoint-only probe whose body needs nothing from the Event but its fields, the task, the
cpu and the clock also gets ``pN.raw = pNr(m, a)``: the same body generated a second time with
``a`` the fields dict (``a['pfn']``) and the task read as ``m.cpu_curr[m.cpu]``.  The session
attaches it with ``Tracepoint.attach_raw`` so no Event is built per event.

Nothing the user typed is embedded in the generated text except through ``repr()`` of a
decoded string or integer: variables become ``v0, v1 ...``, maps ``M0, M1 ...``, and every
other object (formats, types, field names, locations) lives in a constants table ``K`` that
the source only indexes.  The only attribute names written literally are tracepoint/kernel
parameter names that the checker matched against the simulation's declared fields.  The code
runs with ``__builtins__`` reduced to ``len``, ``Exception`` and ``KeyError``.

Every handler catches its own errors: a :class:`~mmdbg.probe.runtime.Fatal` (loop cap,
instruction budget, bad kernel read) or any unexpected exception is reported with the probe's
source location and ends the run; nothing propagates into the simulated kernel.
"""

from __future__ import annotations

import keyword
import re
from typing import Any

from mmdbg.probe import ast as A
from mmdbg.probe import runtime as R
from mmdbg.probe import types as T
from mmdbg.probe import values as V
from mmdbg.probe.checker import CheckedProbe, CheckedProgram
from mmdbg.probe.errors import ERROR, Diagnostic, ProbeCompileError

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EV = re.compile(r"\bev\b")

STRUCT_SIZES = {
    "struct page": 64, "struct list_head": 16, "struct rb_node": 24, "struct callback_head": 16,
    "struct llist_node": 8, "struct hlist_node": 16, "struct hlist_head": 8,
}

_ARITH = {"+": "({a} + {b})", "-": "({a} - {b})", "*": "_mul({a}, {b})", "/": "_div({a}, {b})",
          "%": "_mod({a}, {b})", "<<": "_shl({a}, {b})", ">>": "_shr({a}, {b})",
          "&": "({a} & {b})", "|": "({a} | {b})", "^": "({a} ^ {b})"}
_CMP = {"==", "!=", "<", "<=", ">", ">="}


def _safe_attr(name: str) -> bool:
    return bool(_IDENT.fullmatch(name)) and not keyword.iskeyword(name) and not name.startswith("_")


def zero_of(ty: T.Ty | None) -> Any:
    if ty is None:
        return 0
    if ty.kind in ("str", "ksym", "time"):
        return ""
    if ty.kind == "tuple":
        return tuple(zero_of(t) for t in ty.items)
    if ty.kind == "record":
        return V.Record(tuple(n for n, _ in ty.fields), tuple(zero_of(t) for _, t in ty.fields))
    if ty.kind == "bool":
        return False
    if ty.kind == "stack":
        return V.Stack(())
    return 0


class _ProbeGen:
    def __init__(self, gen: CodeGen, cp: CheckedProbe, raw: bool = False):
        self.g = gen
        self.cp = cp
        # raw: generate ``pNr(m, a)`` for Tracepoint.attach_raw (``a`` is the fields dict);
        # anything that needs the Event sets needs_ev and the raw handler is dropped.
        self.raw = raw
        self.needs_ev = False
        self.vars: dict[str, str] = {}
        self.lines: list[str] = []
        self.uses_task = False
        self.uses_args = False
        self.closure = 0  # > 0 inside a macro closure
        self.tmp = 0

    # -- helpers ------------------------------------------------------------------------
    def var(self, name: str) -> str:
        if name not in self.vars:
            self.vars[name] = f"v{len(self.vars)}"
        return self.vars[name]

    def temp(self, prefix: str = "_t") -> str:
        self.tmp += 1
        return f"{prefix}{self.tmp}"

    def emit(self, ind: int, line: str) -> None:
        self.lines.append("    " * ind + line)

    def note(self, node: Any) -> Any:
        return self.g.notes.get(id(node))

    def K(self, obj: Any) -> str:
        return self.g.const(obj)

    def L(self, node: A.Node) -> int:
        return self.g.loc(node.loc)

    # -- maps ---------------------------------------------------------------------------
    def map_index(self, name: str) -> int:
        return self.g.checked.maps[name].index

    def key_expr(self, ref: A.MapRef) -> str:
        if ref.keys is None or not ref.keys:
            return "()"
        if len(ref.keys) == 1:
            return self.ex(ref.keys[0])
        return "(" + ", ".join(self.ex(k) for k in ref.keys) + ",)"

    def map_read(self, ref: A.MapRef) -> str:
        info = self.g.checked.maps[ref.name]
        m = f"M{info.index}"
        key = self.key_expr(ref)
        if info.agg == "avg":
            return f"_avg_of({m}.get({key}))"
        if info.agg in ("count", "sum", "min", "max"):
            return f"{m}.get({key}, 0)"
        if info.value is None or info.value.kind == "agg":
            return f"{m}.get({key}, 0)"
        default = zero_of(info.value)
        if isinstance(default, int | str) and not isinstance(default, bool):
            return f"{m}.get({key}, {default!r})"
        return f"{m}.get({key}, {self.K(default)})"

    def store(self, ind: int, ref: A.MapRef, value: str) -> None:
        i = self.map_index(ref.name)
        k = self.temp("_k")
        self.emit(ind, f"{k} = {self.key_expr(ref)}")
        self.emit(ind, f"if {k} in M{i} or len(M{i}) < L{i}:")
        self.emit(ind + 1, f"M{i}[{k}] = {value}")
        self.emit(ind, "else:")
        self.emit(ind + 1, f"rt.map_full({i}, {self.L(ref)})")

    def update(self, ind: int, ref: A.MapRef, fresh: str, combine: str) -> str:
        """``v = M.get(k)``; new keys get ``fresh``, old ones ``combine`` (using ``_v``)."""
        i = self.map_index(ref.name)
        k, v = self.temp("_k"), self.temp("_v")
        self.emit(ind, f"{k} = {self.key_expr(ref)}")
        self.emit(ind, f"{v} = M{i}.get({k})")
        self.emit(ind, f"if {v} is None:")
        self.emit(ind + 1, f"if len(M{i}) < L{i}:")
        self.emit(ind + 2, f"M{i}[{k}] = {v} = {fresh}")
        self.emit(ind + 1, "else:")
        self.emit(ind + 2, f"rt.map_full({i}, {self.L(ref)})")
        if combine:
            self.emit(ind, "else:")
            self.emit(ind + 1, f"M{i}[{k}] = {v} = {combine.format(v=v)}")
        return v

    def bump(self, ind: int, ref: A.MapRef, delta: str) -> None:
        """``M[k] += delta``, the hot path of count()/sum(): one lookup, one store."""
        i = self.map_index(ref.name)
        k = self.temp("_k")
        self.emit(ind, f"{k} = {self.key_expr(ref)}")
        self.emit(ind, "try:")
        self.emit(ind + 1, f"M{i}[{k}] += {delta}")
        self.emit(ind, "except KeyError:")
        self.emit(ind + 1, f"if len(M{i}) < L{i}:")
        self.emit(ind + 2, f"M{i}[{k}] = {delta}")
        self.emit(ind + 1, "else:")
        self.emit(ind + 2, f"rt.map_full({i}, {self.L(ref)})")

    def aggregate(self, ind: int, ref: A.MapRef, call: A.Call) -> None:
        name = call.name
        if name == "count":
            self.bump(ind, ref, "1")
            return
        x = self.temp("_x")
        self.emit(ind, f"{x} = {self.ex(call.args[0])}")
        if name == "sum":
            self.bump(ind, ref, x)
        elif name == "min":
            self.update(ind, ref, x, f"{x} if {x} < {{v}} else {{v}}")
        elif name == "max":
            self.update(ind, ref, x, f"{x} if {x} > {{v}} else {{v}}")
        elif name in ("avg", "stats"):
            v = self.update(ind, ref, "[0, 0]", "")
            self.emit(ind, f"if {v} is not None:")
            self.emit(ind + 1, f"{v}[0] += 1")
            self.emit(ind + 1, f"{v}[1] += {x}")
        elif name in ("hist", "lhist"):
            extra = self.g.checked.maps[ref.name].value.extra  # type: ignore[union-attr]
            if name == "hist":
                b = f"_hist_index({x}, {extra[0] if extra else 0})"
            else:
                b = f"_lhist_index({x}, {extra[0]}, {extra[1]}, {extra[2]})"
            v = self.update(ind, ref, "{}", "")
            bi = self.temp("_b")
            self.emit(ind, f"if {v} is not None:")
            self.emit(ind + 1, f"{bi} = {b}")
            self.emit(ind + 1, f"{v}[{bi}] = {v}.get({bi}, 0) + 1")

    # -- statements ---------------------------------------------------------------------
    def block(self, stmts: list[A.Stmt], ind: int) -> None:
        start = len(self.lines)
        for s in stmts:
            self.st(s, ind)
        if len(self.lines) == start:
            self.emit(ind, "pass")

    def loop_budget(self, ind: int, body: A.Block, node: A.Node) -> None:
        from mmdbg.probe.checker import _cost

        cost = _cost(body) + 1
        budget = self.g.checked.config["max_event_insns"]
        self.emit(ind, f"_n += {cost}")
        self.emit(ind, f"if _n > {budget}:")
        msg = (f"per-event instruction budget exceeded ({budget} instructions); raise config "
               "max_event_insns or bound the loop")
        self.emit(ind + 1, f"raise _Fatal({self.K(msg)}, LOCS[{self.L(node)}])")

    def st(self, s: A.Stmt, ind: int) -> None:
        if isinstance(s, A.ExprStmt):
            self.expr_stmt(s.expr, ind)
        elif isinstance(s, A.Assign):
            tgt = s.target
            if isinstance(tgt, A.MapRef):
                if isinstance(s.value, A.Call) and isinstance(s.value.ty, T.Ty) and s.value.ty.kind == "agg":
                    self.aggregate(ind, tgt, s.value)
                else:
                    self.store(ind, tgt, self.ex(s.value))
            elif isinstance(tgt, A.Var):
                self.emit(ind, f"{self.var(tgt.name)} = {self.ex(s.value)}")
            else:  # _ = expr
                self.expr_stmt(s.value, ind)
        elif isinstance(s, A.CompoundAssign):
            val = self.ex(s.value)
            tgt = s.target
            if isinstance(tgt, A.Var):
                v = self.var(tgt.name)
                self.emit(ind, f"{v} = {_ARITH[s.op].format(a=v, b=val)}")
            else:
                x = self.temp("_x")
                self.emit(ind, f"{x} = {val}")
                self.update(ind, tgt, _ARITH[s.op].format(a="0", b=x),  # type: ignore[arg-type]
                            _ARITH[s.op].format(a="{v}", b=x))
        elif isinstance(s, A.Let):
            if s.value is not None:
                self.emit(ind, f"{self.var(s.var.name)} = {self.ex(s.value)}")
            else:
                self.var(s.var.name)
        elif isinstance(s, A.Block):
            self.block(s.stmts, ind)
        elif isinstance(s, A.If):
            self.emit(ind, f"if {self.ex(s.cond)}:")
            self.block(s.then.stmts, ind + 1)
            other = s.other
            while other is not None:
                if isinstance(other, A.If):
                    self.emit(ind, f"elif {self.ex(other.cond)}:")
                    self.block(other.then.stmts, ind + 1)
                    other = other.other
                else:
                    self.emit(ind, "else:")
                    self.block(other.stmts, ind + 1)
                    other = None
        elif isinstance(s, A.While):
            it = self.temp("_w")
            cap = self.g.checked.config["max_while_iterations"]
            self.emit(ind, f"{it} = 0")
            self.emit(ind, f"while {self.ex(s.cond)}:")
            self.emit(ind + 1, f"{it} += 1")
            self.emit(ind + 1, f"if {it} > {cap}:")
            msg = (f"while loop ran more than {cap} iterations in one event; raise config "
                   "max_while_iterations or bound the loop")
            self.emit(ind + 2, f"raise _Fatal({self.K(msg)}, LOCS[{self.L(s)}])")
            self.loop_budget(ind + 1, s.body, s)
            self.block(s.body.stmts, ind + 1)
        elif isinstance(s, A.Unroll):
            n = self.note(s) or 1
            self.emit(ind, f"for _ in _range({n}):")
            self.loop_budget(ind + 1, s.body, s)
            self.block(s.body.stmts, ind + 1)
        elif isinstance(s, A.ForRange):
            v = self.var(s.var.name)
            self.emit(ind, f"for {v} in _range(_int({self.ex(s.start)}), _int({self.ex(s.stop)})):")
            self.loop_budget(ind + 1, s.body, s)
            self.block(s.body.stmts, ind + 1)
        elif isinstance(s, A.ForMap):
            info = self.g.checked.maps[s.map.name]
            v = self.var(s.var.name)
            kv = self.temp("_kv")
            self.emit(ind, f"for {kv} in _list(M{info.index}.items()):")
            conv = f"{kv}[1]"
            if info.agg == "avg":
                conv = f"_avg_of({kv}[1])"
            self.emit(ind + 1, f"{v} = ({kv}[0], {conv})")
            self.loop_budget(ind + 1, s.body, s)
            self.block(s.body.stmts, ind + 1)
        elif isinstance(s, A.Return):
            self.emit(ind, "raise _Return()" if self.closure else "return")
        elif isinstance(s, A.Break):
            self.emit(ind, "break")
        elif isinstance(s, A.Continue):
            self.emit(ind, "continue")
        else:  # pragma: no cover
            raise self.g.error(f"cannot compile {type(s).__name__}", s.loc)

    def expr_stmt(self, e: A.Expr, ind: int) -> None:
        if isinstance(e, A.IncDec):
            op = "+" if e.op == "++" else "-"
            if isinstance(e.target, A.Var):
                v = self.var(e.target.name)
                self.emit(ind, f"{v} = {v} {op} 1")
            else:
                self.update(ind, e.target, f"{op}1" if op == "-" else "1",  # type: ignore[arg-type]
                            "{v} " + op + " 1")
            return
        if isinstance(e, A.BlockExpr):
            self.block(e.stmts, ind)
            if e.value is not None:
                self.expr_stmt(e.value, ind)
            return
        code = self.ex(e)
        if code and code != "None":
            self.emit(ind, code)

    # -- expressions --------------------------------------------------------------------
    def ex(self, e: A.Expr) -> str:
        if isinstance(e, A.Int):
            return repr(e.value)
        if isinstance(e, A.Str):
            return repr(e.value)
        if isinstance(e, A.Bool):
            return "True" if e.value else "False"
        if isinstance(e, A.Var):
            return self.var(e.name)
        if isinstance(e, A.Param):
            from mmdbg.probe.checker import Checker

            v = Checker.param_value(_ParamView(self.g.checked), e.index)  # type: ignore[arg-type]
            return repr(v)
        if isinstance(e, A.ParamCount):
            return repr(len(self.g.checked.params))
        if isinstance(e, A.Ident):
            return self.ident(e)
        if isinstance(e, A.MapRef):
            return self.map_read(e)
        if isinstance(e, A.Call):
            return self.call(e)
        if isinstance(e, A.Binary):
            a, b = self.ex(e.left), self.ex(e.right)
            if e.op in _CMP:
                return f"({a} {e.op} {b})"
            if e.op == "&&":
                return f"_bool({a} and {b})"
            if e.op == "||":
                return f"_bool({a} or {b})"
            return _ARITH[e.op].format(a=a, b=b)
        if isinstance(e, A.Unary):
            a = self.ex(e.operand)
            if e.op == "!":
                return f"(not {a})"
            if e.op == "-":
                return f"(-{a})"
            if e.op == "~":
                return f"(~{a})"
            return a  # '*' on a kernel object: the object itself
        if isinstance(e, A.IncDec):
            return self.incdec_expr(e)
        if isinstance(e, A.Ternary):
            return f"({self.ex(e.then)} if {self.ex(e.cond)} else {self.ex(e.other)})"
        if isinstance(e, A.Elvis):
            return f"({self.ex(e.value)} or {self.ex(e.other)})"
        if isinstance(e, A.Field):
            return self.field(e)
        if isinstance(e, A.Index):
            note = self.note(e)
            obj = self.ex(e.obj)
            if note and note[0] == "tuple":
                return f"{obj}[{note[1]}]"
            return f"rt.index({obj}, {self.ex(e.index)}, {self.L(e)})"
        if isinstance(e, A.Tuple):
            if not e.items:
                return "()"
            return "(" + ", ".join(self.ex(x) for x in e.items) + ",)"
        if isinstance(e, A.Record):
            names = tuple(n for n, _ in e.fields)
            vals = "(" + ", ".join(self.ex(x) for _, x in e.fields) + ",)"
            return f"_Record({self.K(names)}, {vals})"
        if isinstance(e, A.Cast):
            return self.cast(e)
        if isinstance(e, A.SizeOf):
            return repr(self.sizeof(e))
        if isinstance(e, A.BlockExpr):
            return self.block_expr(e)
        raise self.g.error(f"cannot compile {type(e).__name__}", e.loc)  # pragma: no cover

    def incdec_expr(self, e: A.IncDec) -> str:
        op = "+" if e.op == "++" else "-"
        if isinstance(e.target, A.Var):
            v = self.var(e.target.name)
            if e.prefix:
                return f"({v} := {v} {op} 1)"
            return f"(({v} := {v} {op} 1) {'-' if op == '+' else '+'} 1)"
        i = self.map_index(e.target.name)  # type: ignore[union-attr]
        key = self.key_expr(e.target)  # type: ignore[arg-type]
        return (f"rt.incdec({i}, {key}, {1 if op == '+' else -1}, {bool(e.prefix)}, "
                f"{self.L(e)})")

    def ident(self, e: A.Ident) -> str:
        note = self.note(e)
        if note is None:  # pragma: no cover - the checker annotated every identifier
            raise self.g.error(f"unresolved identifier {e.name}", e.loc)
        if note[0] == "const":
            return repr(note[1])
        if note[0] == "argn":
            self.uses_args = True
            self.needs_ev = True
            return f"a.arg({note[1]})"
        return self.builtin(note[1], e)

    def builtin(self, name: str, node: A.Node) -> str:
        if name in ("pid", "tid", "uid", "gid", "comm", "curtask", "cgroup", "username",
                    "ppid", "pcomm"):
            self.uses_task = True
        if name == "pid":
            return "t.tgid"
        if name == "tid":
            return "t.pid"
        if name == "uid":
            return "_getattr(t, 'uid', 0)"
        if name == "gid":
            return "_getattr(t, 'gid', 0)"
        if name == "comm":
            return "t.comm"
        if name == "curtask":
            return "t"
        if name == "cgroup":
            return "_getattr(t, 'cgroup_id', 0)"
        if name == "username":
            return "rt.username(_getattr(t, 'uid', 0))"
        if name == "ppid":
            return "_getattr(_getattr(t, 'real_parent', None) or _getattr(t, 'parent', None), 'tgid', 0)"
        if name == "pcomm":
            return "_getattr(_getattr(t, 'real_parent', None) or _getattr(t, 'parent', None), 'comm', '')"
        if name == "cpu":
            return "m.cpu" if self.raw else "ev.cpu"
        if name == "ncpus":
            return "rt.ncpus"
        if name == "numaid":
            return "rt.numaid(m.cpu)" if self.raw else "rt.numaid(ev.cpu)"
        if name == "nsecs":
            return "m.clock.ns" if self.raw else "ev.nsecs"
        if name == "elapsed":
            return "(m.clock.ns - rt.start_ns)" if self.raw else "(ev.nsecs - rt.start_ns)"
        if name == "jiffies":
            return "rt.jiffies(ev)"
        if name == "kstack":
            return "rt.kstack(ev, None, '', PTYPE)"
        if name == "ustack":
            return "_USTACK"
        if name == "func":
            return "FUNC"
        if name == "probe":
            return "PROBE"
        if name == "probetype":
            return "PTYPE"
        if name == "rand":
            return "rt.rand()"
        if name == "usermode":
            return "0"
        if name == "args":
            self.uses_args = True
            at = self.cp.resolved[0].args_type if self.cp.resolved else None
            names = tuple(n for n, _ in at.fields) if at is not None else ()
            if self.raw:
                return f"rt.args_record_fields(a, {self.K(names)})"
            return f"rt.args_record(a, {self.K(names)})"
        if name == "retval":
            return "ev.retval"
        raise self.g.error(f"unsupported builtin {name}", node.loc)  # pragma: no cover

    def field(self, e: A.Field) -> str:
        note = self.note(e)
        if note is None:  # pragma: no cover
            raise self.g.error(f"unresolved field {e.name}", e.loc)
        kind = note[0]
        if kind == "args":
            self.uses_args = True
            name = note[1]
            if self.raw:
                if _safe_attr(name):
                    return f"a[{name!r}]"
                return f"_dget(a, {self.K(name)}, 0)"
            if _safe_attr(name):
                return f"a.{name}"
            return f"_getattr(a, {self.K(name)}, 0)"
        obj = self.ex(e.obj)
        if kind in ("tuple", "record"):
            return f"{obj}[{note[1]}]"
        if kind == "dyn_index":
            return f"rt.index({obj}, {note[1]}, {self.L(e)})"
        # kernel object field, read safely
        return f"rt.field({obj}, {self.K(note[1])}, {self.K(note[2])}, {self.L(e)})"

    def cast(self, e: A.Cast) -> str:
        x = self.ex(e.operand)
        t = e.type
        if t.pointer or t.kind in ("struct", "union"):
            return x
        if t.name == "bool":
            return f"_bool({x})"
        if t.name == "string":
            return f"rt.to_str({x})"
        bits, signed = T.INT_WIDTHS.get(t.name, (64, True))
        return f"_cast({x}, {bits}, {signed})"

    def sizeof(self, e: A.SizeOf) -> int:
        if e.type is not None:
            t = e.type
            if t.pointer:
                return 8
            if t.kind in ("struct", "union"):
                key = f"{t.kind} {t.name}"
                if key not in STRUCT_SIZES:
                    raise self.g.error(f"sizeof: the size of {key} is not known", e.loc)
                return STRUCT_SIZES[key]
            if t.name == "string":
                return self.g.checked.config["max_strlen"]
            bits, _ = T.INT_WIDTHS.get(t.name, (64, True))
            return max(1, bits // 8)
        ty = e.operand.ty if e.operand is not None else None
        return _size_of_type(ty, self.g.checked.config["max_strlen"])

    def block_expr(self, e: A.BlockExpr) -> str:
        if not e.stmts:
            return self.ex(e.value) if e.value is not None else "None"
        # A macro with statements used as a value: a nested function sharing the probe's
        # variables (nonlocal), called in place.
        fn = self.temp("_macro")
        saved = self.lines
        self.lines = []
        self.closure += 1
        self.block(e.stmts, 1)
        val = self.ex(e.value) if e.value is not None else "None"
        self.emit(1, f"return {val}")
        self.closure -= 1
        body = self.lines
        self.lines = saved
        self.g.closures.setdefault(id(self), []).append((fn, body))
        return f"{fn}()"

    def call(self, e: A.Call) -> str:
        name = e.name
        args = e.args
        note = self.note(e)
        if isinstance(note, tuple) and note and note[0] == "builtin":
            return self.builtin(note[1], e)
        if name in ("printf", "errorf", "warnf", "system"):
            fmt = self.K(note)
            vals = "(" + "".join(self.ex(a) + ", " for a in args[1:]) + ")"
            if name == "printf":
                return f"rt.printf({fmt}({vals}))"
            if name == "system":
                return f"rt.system({fmt}({vals}))"
            sev = "ERROR" if name == "errorf" else "WARNING"
            return f"rt.diag({sev!r}, {fmt}({vals}), {self.L(e)})"
        if name == "print":
            if note[0] == "map":
                i = note[1].index
                extra = ", ".join(self.ex(a) for a in args[1:])
                return f"rt.print_map({i}{', ' + extra if extra else ''})"
            return f"rt.print_value({self.ex(args[0])}, {self.K(note[1])})"
        if name == "clear":
            return f"M{self.map_index(args[0].name)}.clear()"  # type: ignore[attr-defined]
        if name == "zero":
            return f"rt.zero_map({self.map_index(args[0].name)})"  # type: ignore[attr-defined]
        if name == "delete":
            if len(args) == 1:
                ref = args[0]
                return f"rt.delete({self.map_index(ref.name)}, {self.key_expr(ref)})"  # type: ignore[attr-defined,arg-type]
            info = note[0]
            return f"rt.delete({info.index}, {self.ex(args[1])})"
        if name == "has_key":
            info, _flat = note
            return f"({self.ex(args[1])} in M{info.index})"
        if name == "len":
            a = args[0]
            if isinstance(a, A.MapRef) and a.keys is None:
                return f"_len(M{self.map_index(a.name)})"
            return f"_len({self.ex(a)})"
        if name == "exit":
            code = self.ex(args[0]) if args else "0"
            return f"_exit({code})"
        if name == "stop":
            return "_stop(ev, PROBE)"
        if name in ("kstack", "ustack"):
            _, which, mode, limit = note
            if which == "ustack":
                return "_USTACK"
            return f"rt.kstack(ev, {limit!r}, {mode!r}, PTYPE)"
        if name == "str":
            if isinstance(args[0], A.Param) and not 0 <= args[0].index <= len(self.g.checked.params):
                return repr("")  # an unset positional parameter reads as "" in str()
            n = self.ex(args[1]) if len(args) > 1 else "None"
            return f"rt.to_str({self.ex(args[0])}, {n})"
        if name == "ksym":
            return f"rt.ksym({self.ex(args[0])})"
        if name == "kaddr":
            return f"rt.kaddr({self.ex(args[0])})"
        if name == "kptr":
            return self.ex(args[0])
        if name == "strlen":
            return f"_len({self.ex(args[0])})"
        if name == "bswap":
            return f"_bswap({self.ex(args[0])})"
        if name == "strerror":
            return f"_strerror({self.ex(args[0])})"
        if name == "is_err":
            return f"_is_err({self.ex(args[0])})"
        if name == "strncmp":
            return f"_strncmp({self.ex(args[0])}, {self.ex(args[1])}, {self.ex(args[2])})"
        if name == "strcontains":
            return f"({self.ex(args[1])} in {self.ex(args[0])})"
        if name == "strstr":
            return f"{self.ex(args[0])}.find({self.ex(args[1])})"
        if name == "join":
            sep = args[1].value if len(args) > 1 else " "  # type: ignore[attr-defined]
            return f"rt.join({self.ex(args[0])}, {sep!r})"
        if name == "time":
            fmt = repr(args[0].value) if args else "None"  # type: ignore[attr-defined]
            return f"rt.time({fmt}, ev)"
        if name == "strftime":
            return f"rt.strftime({args[0].value!r}, {self.ex(args[1])})"  # type: ignore[attr-defined]
        if name in ("pfn_to_page", "page_to_pfn", "page_zone"):
            return f"rt.{name}({self.ex(args[0])})"
        if name in ("signal", "signal_thread"):
            return f"rt.signal({self.ex(args[0])}, ev)"
        if name == "override":
            return f"_override(ev, {self.ex(args[0])})"
        raise self.g.error(f"cannot compile call to {name}()", e.loc)  # pragma: no cover

    # -- the handler --------------------------------------------------------------------
    def generate(self, raw_gen: _ProbeGen | None = None) -> list[str]:
        """The factory ``mk_pN``; with ``raw_gen`` it adds ``pN.raw`` when one can be made."""
        out = [f"def mk_p{self.cp.index}(PROBE, FUNC, PTYPE):"]
        out.extend(self.handler())
        raw = raw_gen.generate_raw() if raw_gen is not None else None
        if raw:
            out.extend(raw)
            out.append(f"    p{self.cp.index}.raw = p{self.cp.index}r")
        out.append(f"    return p{self.cp.index}")
        out.append("")
        return out

    def generate_raw(self) -> list[str] | None:
        """``pNr(m, a)`` for a tracepoint-only probe that reads nothing but its fields, the
        task and maps (no Event needed), or None."""
        if not self.cp.resolved or any(rp.provider != "tracepoint" for rp in self.cp.resolved):
            return None
        lines = self.handler()
        if self.needs_ev or any(_EV.search(line) for line in lines[1:]):
            return None
        return lines

    def handler(self) -> list[str]:
        cp = self.cp
        self.block(cp.probe.body.stmts, 3)
        body = self.lines
        self.lines = []
        pred = None
        if cp.probe.pred is not None:
            pred = self.ex(cp.probe.pred)
        out = [f"    def p{cp.index}r(m, a):" if self.raw else f"    def p{cp.index}(ev):"]
        names = list(self.vars.values())
        if names:
            out.append("        " + " = ".join(names) + " = 0")
        out.append("        try:")
        if self.raw:
            if self.uses_task:  # Machine.current, read directly
                out.append("            t = (_c[m.cpu] if (_c := m.cpu_curr) else None) or _NOTASK")
        else:
            if self.uses_task:
                out.append("            t = ev.task or _NOTASK")
            if self.uses_args:
                out.append("            a = ev.args")
        if cp.has_loops:
            out.append("            _n = 0")
        for fn, fbody in self.g.closures.get(id(self), []):
            out.append(f"            def {fn}():")
            shared = names + (["_n"] if cp.has_loops else [])
            if shared:
                out.append("                nonlocal " + ", ".join(shared))
            out.extend("            " + line for line in fbody)
        if pred is not None:
            out.append(f"            if not ({pred}):")
            out.append("                return")
        out.extend(body)
        out.append("        except (_StopProbe, _Return):")
        out.append("            pass")
        out.append("        except _Fatal as e:")
        out.append("            rt.fatal(e)")
        out.append("        except Exception as e:")
        out.append(f"            rt.internal(e, {self.L(cp.probe)})")
        return out


class _ParamView:
    def __init__(self, checked: CheckedProgram):
        self.params = checked.params
        self.filename = checked.filename


def _size_of_type(ty: T.Ty | None, strlen: int) -> int:
    if ty is None:
        return 8
    if ty.kind == "bool":
        return 1
    if ty.kind == "int":
        m = re.search(r"(\d+)$", ty.name)
        return int(m.group(1)) // 8 if m else 8
    if ty.kind in ("str", "ksym"):
        return strlen
    if ty.kind == "tuple":
        return sum(_size_of_type(t, strlen) for t in ty.items)
    if ty.kind == "record":
        return sum(_size_of_type(t, strlen) for _, t in ty.fields)
    return 8


class CodeGen:
    def __init__(self, checked: CheckedProgram):
        self.checked = checked
        self.notes = checked.notes
        self.consts: list[Any] = []
        self.const_ids: dict[int, int] = {}
        self.locs: list[A.Loc] = []
        self.closures: dict[int, list[tuple[str, list[str]]]] = {}

    def error(self, msg: str, loc: A.Loc) -> ProbeCompileError:
        return ProbeCompileError([Diagnostic(ERROR, msg, loc)], self.checked.source,
                                 self.checked.filename)

    def const(self, obj: Any) -> str:
        key = id(obj)
        if key not in self.const_ids or self.consts[self.const_ids[key]] is not obj:
            self.const_ids[key] = len(self.consts)
            self.consts.append(obj)
        return f"K[{self.const_ids[key]}]"

    def loc(self, loc: A.Loc) -> int:
        self.locs.append(loc)
        return len(self.locs) - 1

    def source(self) -> str:
        lines = ["# generated by mmdbg.probe.codegen", ""]
        gens = []  # kept alive: closures are keyed by id(generator)
        for cp in self.checked.probes:
            g, rg = _ProbeGen(self, cp), _ProbeGen(self, cp, raw=True)
            gens += (g, rg)
            lines.extend(g.generate(rg))
        return "\n".join(lines) + "\n"


def _override(ev: Any, value: Any) -> None:
    """bpftrace's ``override(rc)``.  ``override(0)`` on a function that returns an object or
    ``None`` (the simulation's NULL, e.g. ``__alloc_pages`` -> ``int | None``) returns None."""
    if value == 0:
        ann = getattr(getattr(getattr(ev, "probe", None), "func", None), "__annotations__", {})
        ret = ann.get("return", "")
        if isinstance(ret, str) and ("None" in ret or "Optional" in ret):
            value = None
    ev.override = value


def _exit_factory(rt: R.Runtime) -> Any:
    def _exit(code: Any = 0) -> None:
        rt.exit(code)
        raise R.Stop()

    return _exit


def _stop_factory(rt: R.Runtime) -> Any:
    def _stop(ev: Any, probe: str) -> None:
        rt.stop(ev, probe)
        raise R.Stop()

    return _stop


def _strncmp(a: Any, b: Any, n: Any) -> int:
    a, b = str(a)[: int(n)], str(b)[: int(n)]
    return 0 if a == b else (1 if a > b else -1)


def _bswap(x: Any) -> int:
    return int.from_bytes((int(x) & R.MASK64).to_bytes(8, "little"), "big")


def _strerror(x: Any) -> str:
    import os

    try:
        return os.strerror(abs(int(x)))
    except (ValueError, OverflowError):
        return f"Unknown error {x}"


def _is_err(x: Any) -> bool:
    v = V.kaddr(x) & R.MASK64
    return v >= (1 << 64) - 4095


def _int(x: Any) -> int:
    if isinstance(x, int):
        return x
    return V.kaddr(x)


class CompiledProgram:
    """A checked program's generated source and code object, ready to bind to a runtime."""

    def __init__(self, checked: CheckedProgram):
        self.checked = checked
        gen = CodeGen(checked)
        self.source = gen.source()
        self.consts = gen.consts
        self.locs = gen.locs
        try:
            self.code = compile(self.source, f"<probe:{checked.filename}>", "exec")
        except (SyntaxError, RecursionError, MemoryError, ValueError) as e:
            raise ProbeCompileError([Diagnostic(ERROR, f"program too complex to compile ({type(e).__name__})")],
                                    checked.source, checked.filename) from None

    def bind(self, rt: R.Runtime) -> dict[int, Any]:
        """Execute the module for ``rt``; return ``{probe index: factory}``."""
        rt.locs = self.locs
        ns: dict[str, Any] = {
            "__builtins__": {"len": len, "Exception": Exception, "KeyError": KeyError},
            "rt": rt, "K": self.consts, "LOCS": self.locs,
            "_Fatal": R.Fatal, "_StopProbe": R.Stop, "_Return": R.Return,
            "_div": R.div, "_mod": R.mod, "_shl": R.shl, "_shr": R.shr, "_mul": R.mul,
            "_cast": R.cast, "_hist_index": R.hist_index, "_lhist_index": R.lhist_index,
            "_avg_of": R.avg_of, "_Record": V.Record, "_NOTASK": R.NOTASK,
            "_USTACK": V.Stack(()), "_bool": bool, "_len": len, "_range": range, "_list": list,
            "_getattr": _safe_getattr, "_dget": _safe_dget, "_int": _int, "_override": _override,
            "_exit": _exit_factory(rt), "_stop": _stop_factory(rt), "_strncmp": _strncmp,
            "_bswap": _bswap, "_strerror": _strerror, "_is_err": _is_err,
        }
        for info in rt.infos:
            ns[f"M{info.index}"] = rt.maps[info.index]
            ns[f"L{info.index}"] = rt.limits[info.index]
        exec(self.code, ns)  # the generated module: only factories, no user text
        return {cp.index: ns[f"mk_p{cp.index}"] for cp in self.checked.probes}


def _safe_getattr(obj: Any, name: str, default: Any) -> Any:
    if name.startswith("__") and name.endswith("__"):
        return default
    return R.to_value(getattr(obj, name, default))


def _safe_dget(fields: dict[str, Any], name: str, default: Any) -> Any:
    """:func:`_safe_getattr` for a raw handler's fields dict."""
    if name.startswith("__") and name.endswith("__"):
        return default
    return R.to_value(fields.get(name, default))


def compile_checked(checked: CheckedProgram) -> CompiledProgram:
    return CompiledProgram(checked)
