"""Semantic analysis: names, probe arguments, types, verifier limits and the unsafe gate.

The checker plays the part of bpftrace's semantic and resource analysers.  It

* resolves every attach point (:mod:`mmdbg.probe.probes`), expanding wildcards;
* expands macros (:mod:`mmdbg.probe.macros`);
* resolves identifiers: builtins (``pid``, ``comm``, ``args``, ``arg0``...), ``#define``
  and C enum constants, and the kernel's GFP/migratetype/zone constants;
* infers a type for every expression and checks it (printf specifiers, map key and value
  types fixed by first use, variables fixed by first assignment, string/int mixing);
* enforces the verifier's limits: ``unroll`` 1..100, ``hist`` bits 0..5, at most 1000
  ``lhist`` buckets, string literal length (``max_strlen``), a static per-probe instruction
  estimate under ``max_event_insns``, ``exit()`` not inside loops;
* rejects ``system``/``signal``/``override``/``stop`` without ``--unsafe``.

Maps are typed in a first silent pass over the whole program, so ``END`` may print a map
that a later probe fills.  All errors are collected and raised together as one
:class:`~mmdbg.probe.errors.ProbeCompileError`.

Simplification: scratch variables are scoped to their probe (bpftrace >= 0.22 scopes them to
the block); reading a variable before any assignment to it in source order is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmdbg.probe import ast as A
from mmdbg.probe import probes as P
from mmdbg.probe import types as T
from mmdbg.probe.builtins import (
    AGGREGATIONS,
    ARGN_PROVIDERS,
    ARGS_PROVIDERS,
    BUILTIN_VARS,
    FUNC_PROVIDERS,
    RETVAL_PROVIDERS,
    nargs_msg,
    near,
)
from mmdbg.probe.builtins import ARGN as _ARGN
from mmdbg.probe.calls import CallChecks
from mmdbg.probe.config import CONFIG_DEFAULTS, env_value, set_config
from mmdbg.probe.errors import ERROR, WARNING, Diagnostic, ProbeCompileError
from mmdbg.probe.macros import Expander, MacroError

MAX_EXPR_DEPTH = 100
MAX_INT = (1 << 64) - 1

@dataclass
class MapInfo:
    """What the checker knows about one ``@map``."""

    name: str
    index: int
    keys: list[T.Ty] | None = None  # [] for a scalar map; None until first use
    value: T.Ty | None = None
    max_entries: int = 4096
    loc: A.Loc = A.NOLOC
    assigned: bool = False
    referenced: bool = False

    @property
    def agg(self) -> str:
        return self.value.agg if self.value is not None and self.value.kind == "agg" else ""

    @property
    def scalar(self) -> bool:
        return self.keys == []

    @property
    def key_type(self) -> T.Ty | None:
        if not self.keys:
            return None
        return self.keys[0] if len(self.keys) == 1 else T.tuple_of(self.keys)


@dataclass
class CheckedProbe:
    index: int
    probe: A.Probe
    resolved: list[P.ResolvedProbe]
    vars: dict[str, T.Ty]
    cost: int
    has_loops: bool
    uses_task: bool = False


@dataclass
class CheckedProgram:
    program: A.Program
    source: str
    filename: str
    probes: list[CheckedProbe]
    maps: dict[str, MapInfo]
    config: dict[str, Any]
    params: list[str]
    unsafe: bool
    notes: dict[int, Any]
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def probe_count(self) -> int:
        return sum(len(p.resolved) for p in self.probes)


class _Ctx:
    def __init__(self, resolved: list[P.ResolvedProbe]):
        self.resolved = resolved
        self.providers = {r.provider for r in resolved}
        self.vars: dict[str, T.Ty] = {}
        self.declared: set[str] = set()
        self.loops = 0
        self.has_loops = False
        self.uses_task = False


def _kernel_constants() -> dict[str, int]:
    out: dict[str, int] = {"PAGE_SIZE": 4096, "PAGE_SHIFT": 12, "true": 1, "false": 0,
                           "NULL": 0, "MAX_ORDER": 10, "NR_PAGE_ORDERS": 11}
    try:
        from mmdbg.sim.include import gfp
    except ImportError:  # pragma: no cover
        return out
    for name in dir(gfp):
        if re.fullmatch(r"_*(GFP|MIGRATE|ZONE)_[A-Z0-9_]+", name):
            val = getattr(gfp, name)
            if isinstance(val, int) and not isinstance(val, bool):
                out[name] = val
    return out


def _enum_constants(text: str) -> dict[str, int]:
    m = re.match(r"\s*enum\s+\w+\s*\{(.*)\}\s*;\s*$", text, re.S)
    out: dict[str, int] = {}
    if not m:
        return out
    val = -1
    for part in m.group(1).split(","):
        part = part.strip()
        if not part:
            continue
        if "=" in part:
            name, expr = (x.strip() for x in part.split("=", 1))
            try:
                val = int(expr, 0)
            except ValueError:
                val = out.get(expr, val + 1)
        else:
            name = part
            val += 1
        if re.fullmatch(r"[A-Za-z_]\w*", name):
            out[name] = val
    return out


class Checker(CallChecks):
    def __init__(self, program: A.Program, source: str, filename: str = "stdin", *,
                 params: list[str] | None = None, unsafe: bool = False,
                 config: Mapping[str, Any] | None = None,
                 env: Mapping[str, str] | None = None):
        self.program = program
        self.source = source
        self.filename = filename
        self.params = list(params or [])
        self.unsafe = unsafe
        self.overrides = dict(config or {})
        self.env = dict(os.environ if env is None else env)
        self.diags: list[Diagnostic] = []
        self.notes: dict[int, Any] = {}
        self.maps: dict[str, MapInfo] = {}
        self.silent = False
        self.config: dict[str, Any] = dict(CONFIG_DEFAULTS)
        self.constants: dict[str, int | str] = {}
        self.broken: set[int] = set()

    # ------------------------------------------------------------------ diagnostics
    def error(self, msg: str, loc: A.Loc, hints: list[str] | None = None) -> None:
        if not self.silent:
            self.diags.append(Diagnostic(ERROR, msg, loc, hints or []))

    def warning(self, msg: str, loc: A.Loc) -> None:
        if not self.silent:
            self.diags.append(Diagnostic(WARNING, msg, loc))

    # ------------------------------------------------------------------ entry
    def run(self) -> CheckedProgram:
        self._config()
        self._constants()
        expander = Expander(self.program.macros, self.diags)
        probes: list[tuple[A.Probe, list[P.ResolvedProbe]]] = []
        for probe in self.program.probes:
            try:
                expanded = expander.expand_probe(probe)
            except MacroError as e:
                self.diags.append(e.diag)
                continue
            depth = _depth(expanded)
            if depth > MAX_EXPR_DEPTH:
                self.error(f"expression nested too deeply ({depth} levels; the limit is "
                           f"{MAX_EXPR_DEPTH})", probe.loc)
                continue
            before = len(self.diags)
            resolved = self._resolve(probe)
            if len([d for d in self.diags[before:] if d.severity == ERROR]):
                self.broken.add(id(expanded))
            probes.append((expanded, resolved))
        for imp in self.program.imports:
            self.error(f'import "{imp.value}" is not supported yet; paste the file\'s probes and '
                       "macros into this program", imp.loc)
        for decl in self.program.map_decls:
            if decl.kind not in ("hash", "lruhash", "percpuhash", "percpulruhash"):
                self.error(f"Invalid map type: {decl.kind} (expected hash, lruhash, percpuhash "
                           "or percpulruhash)", decl.loc)
            if decl.size < 1:
                self.error("Map size must be at least 1", decl.loc)
            info = self._map(decl.name, A.NOLOC, referenced=False)
            info.max_entries = decl.size
        # pass 1: learn map types silently; pass 2: check for real
        self.silent = True
        for probe, resolved in probes:
            self._check_probe(probe, resolved)
        self.silent = False
        checked: list[CheckedProbe] = []
        for i, (probe, resolved) in enumerate(probes):
            # a probe whose attach point failed is checked silently: its body's errors would
            # only be consequences ("args can only be used with ...")
            self.silent = id(probe) in self.broken
            ctx = self._check_probe(probe, resolved)
            self.silent = False
            cost = _cost(probe)
            if cost > self.config["max_event_insns"]:
                self.error(f"probe is too large: about {cost} instructions, the per-event budget "
                           f"is {self.config['max_event_insns']} (config max_event_insns)", probe.loc)
            checked.append(CheckedProbe(i, probe, resolved, ctx.vars, cost, ctx.has_loops,
                                        ctx.uses_task))
        for info in self.maps.values():
            if info.referenced and not info.assigned and info.value is None:
                self.error(f"Undefined map: {info.name}", info.loc)
        total = sum(len(r) for _, r in probes)
        if total > self.config["max_probes"]:
            self.error(f"Can not attach more than {self.config['max_probes']} probes ({total} "
                       "requested); raise config max_probes", A.NOLOC)
        if not self.program.probes and not self.diags:
            self.error("No probes to attach", A.NOLOC)
        errors = [d for d in self.diags if d.severity == ERROR]
        if errors:
            raise ProbeCompileError(self.diags, self.source, self.filename)
        return CheckedProgram(self.program, self.source, self.filename, checked, self.maps,
                              self.config, self.params, self.unsafe, self.notes,
                              [d for d in self.diags if d.severity == WARNING])

    # ------------------------------------------------------------------ config
    def _config(self) -> None:
        for item in self.program.config:
            self._set_config(item.key, item.value, item.loc)
        for k, v in self.env.items():
            if k.startswith("BPFTRACE_") and k[9:].lower() in CONFIG_DEFAULTS:
                self._set_config(k[9:].lower(), env_value(v), A.NOLOC, from_env=True)
        for k, v in self.overrides.items():
            self._set_config(k, v, A.NOLOC)

    def _set_config(self, key: str, value: Any, loc: A.Loc, from_env: bool = False) -> None:
        err = set_config(self.config, key, value)
        if err is not None:
            self.error(err[0], loc, err[1])

    def _constants(self) -> None:
        self.constants.update(_kernel_constants())
        for item in self.program.c_items:
            if item.kind == "definition":
                self.constants.update(_enum_constants(item.text))
        for name, text in self.program.defines.items():
            text = text.strip()
            try:
                self.constants[name] = int(text.rstrip("uUlL") or "0", 0)
            except ValueError:
                m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"', text)
                if m:
                    self.constants[name] = m.group(1)
                elif text in self.constants:
                    self.constants[name] = self.constants[text]

    # ------------------------------------------------------------------ probes
    def _resolve(self, probe: A.Probe) -> list[P.ResolvedProbe]:
        out: list[P.ResolvedProbe] = []
        for ap in probe.attach:
            try:
                out.extend(P.resolve(ap.raw, params=self.params, unsafe=self.unsafe))
            except P.AttachError as e:
                if self.config["missing_probes"] == "ignore":
                    continue
                if self.config["missing_probes"] == "warn":
                    self.warning(e.msg, ap.loc)
                    continue
                self.error(e.msg, ap.loc, e.hints)
        return out

    def _check_probe(self, probe: A.Probe, resolved: list[P.ResolvedProbe]) -> _Ctx:
        ctx = _Ctx(resolved)
        if probe.pred is not None:
            t = self.expr(probe.pred, ctx)
            if not (t.is_int or t.kind == "str"):
                self.error(f"Invalid type for predicate: {t}", probe.pred.loc)
        self.block(probe.body, ctx)
        return ctx

    # ------------------------------------------------------------------ statements
    def block(self, b: A.Block, ctx: _Ctx) -> None:
        for s in b.stmts:
            self.stmt(s, ctx)

    def stmt(self, s: A.Stmt, ctx: _Ctx) -> None:
        if isinstance(s, A.ExprStmt):
            e = s.expr
            if isinstance(e, A.Call) and e.name in AGGREGATIONS:
                self.error(f"{e.name}() should be directly assigned to a map", e.loc)
                return
            self.expr(e, ctx, statement=True)
        elif isinstance(s, A.Assign):
            self.assign(s, ctx)
        elif isinstance(s, A.CompoundAssign):
            self.compound(s, ctx)
        elif isinstance(s, A.Let):
            name = s.var.name
            if name in ctx.declared or name in ctx.vars:
                self.error(f"Variable {_vname(name)} was already declared", s.var.loc)
            ctx.declared.add(name)
            declared_ty = self.type_of_name(s.type) if s.type is not None else None
            if declared_ty is not None:
                ctx.vars[name] = declared_ty
            if s.value is not None:
                self.assign(A.Assign(s.var, s.value, loc=s.loc), ctx)
        elif isinstance(s, A.Block):
            self.block(s, ctx)
        elif isinstance(s, A.If):
            t = self.expr(s.cond, ctx)
            if not (t.is_int or t.kind == "str"):
                self.error(f"Invalid condition in if(): {t}", s.cond.loc)
            self.block(s.then, ctx)
            if isinstance(s.other, A.If):
                self.stmt(s.other, ctx)
            elif s.other is not None:
                self.block(s.other, ctx)
        elif isinstance(s, A.While):
            t = self.expr(s.cond, ctx)
            if not t.is_int:
                self.error(f"Invalid condition in while(): {t}", s.cond.loc)
            self.loop(s.body, ctx)
        elif isinstance(s, A.Unroll):
            n = self.const_int(s.count, ctx)
            if n is None:
                self.error("unroll count must be an integer literal", s.count.loc)
            elif n > 100:
                self.error("unroll maximum value is 100", s.count.loc)
            elif n < 1:
                self.error("unroll minimum value is 1", s.count.loc)
            else:
                self.notes[id(s)] = n
            self.loop(s.body, ctx)
        elif isinstance(s, A.ForRange):
            for e in (s.start, s.stop):
                t = self.expr(e, ctx)
                if not t.is_int:
                    self.error(f"Loop range bounds must be integers ({t} supplied)", e.loc)
            self.loop(s.body, ctx, s.var, T.INT64)
        elif isinstance(s, A.ForMap):
            info = self._map(s.map.name, s.map.loc)
            if info.value is None:
                kv = T.tuple_of([T.ANY, T.ANY])
            else:
                if info.keys == []:
                    self.error(f"Loop expression must be a map with keys: {s.map.name} is a scalar map",
                               s.map.loc)
                key = info.key_type or T.ANY
                kv = T.tuple_of([key, self.read_value_type(info, s.map.loc)])
            self.notes[id(s)] = info
            self.loop(s.body, ctx, s.var, kv)
        elif isinstance(s, A.Return):
            if s.value is not None:
                self.error("return with a value is only allowed in functions; use 'return;'",
                           s.value.loc)
        elif isinstance(s, A.Break | A.Continue):
            if ctx.loops == 0:
                word = "break" if isinstance(s, A.Break) else "continue"
                self.error(f"'{word}' statement is not in a loop", s.loc)
        else:  # pragma: no cover
            self.error(f"unsupported statement {type(s).__name__}", s.loc)

    def loop(self, body: A.Block, ctx: _Ctx, var: A.Var | None = None,
             ty: T.Ty | None = None) -> None:
        """Check a loop body; a for-loop variable is scoped to its loop (bpftrace >= 0.22)."""
        saved = ctx.vars.get(var.name) if var is not None else None
        if var is not None and ty is not None:
            ctx.vars[var.name] = ty
            var.ty = ty
        ctx.loops += 1
        ctx.has_loops = True
        self.block(body, ctx)
        ctx.loops -= 1
        if var is not None:
            if saved is None:
                ctx.vars.pop(var.name, None)
            else:
                ctx.vars[var.name] = saved

    def bind_var(self, var: A.Var, ty: T.Ty, ctx: _Ctx) -> None:
        old = ctx.vars.get(var.name)
        if old is not None and not T.compatible(old, ty):
            self.error(f"Type mismatch for {_vname(var.name)}: trying to assign value of type "
                       f"'{ty}' when variable already contains a value of type '{old}'", var.loc)
            return
        ctx.vars[var.name] = ty if old is None or old.kind == "any" else old
        var.ty = ctx.vars[var.name]

    def assign(self, s: A.Assign, ctx: _Ctx) -> None:
        tgt, val = s.target, s.value
        if isinstance(tgt, A.MapRef):
            if isinstance(val, A.Call) and val.name in AGGREGATIONS:
                self.aggregation(tgt, val, ctx)
                return
            vt = self.expr(val, ctx)
            self.map_assign(tgt, vt, val.loc, ctx)
            return
        vt = self.expr(val, ctx)
        if vt.kind == "none":
            self.error("Value has no type (the function returns nothing)", val.loc)
            return
        if vt.kind == "agg":
            self.error("aggregations can only be assigned to a map", val.loc)
            return
        if isinstance(tgt, A.Var):
            self.bind_var(tgt, vt, ctx)
        elif isinstance(tgt, A.Ident) and tgt.name == "_":
            pass
        else:
            self.error("Invalid assignment target; assign to a $variable, a @map or _",
                       tgt.loc)

    def compound(self, s: A.CompoundAssign, ctx: _Ctx) -> None:
        vt = self.expr(s.value, ctx)
        if not vt.is_int:
            self.error(f"The {s.op}= operator can not be used with a value of type {vt}", s.value.loc)
        tgt = s.target
        if isinstance(tgt, A.Var):
            old = ctx.vars.get(tgt.name)
            if old is None:
                self.error(f"Undefined or undeclared variable: {_vname(tgt.name)}", tgt.loc)
            elif not old.is_int:
                self.error(f"The {s.op}= operator can not be used on {_vname(tgt.name)} of type {old}",
                           tgt.loc)
            tgt.ty = old or T.INT64
        elif isinstance(tgt, A.MapRef):
            self.map_assign(tgt, T.INT64, tgt.loc, ctx, arith=True)
        else:
            self.error("Invalid assignment target", tgt.loc)

    # ------------------------------------------------------------------ maps
    def _map(self, name: str, loc: A.Loc, referenced: bool = True) -> MapInfo:
        info = self.maps.get(name)
        if info is None:
            info = MapInfo(name, len(self.maps), loc=loc,
                           max_entries=self.config["max_map_keys"])
            self.maps[name] = info
        if referenced:
            info.referenced = True
            if not info.loc:
                info.loc = loc
        return info

    def map_keys(self, ref: A.MapRef, ctx: _Ctx, info: MapInfo) -> None:
        if ref.keys is None:
            kts: list[T.Ty] = []
        else:
            kts = []
            keys = ref.keys
            for k in keys:
                kt = self.expr(k, ctx)
                if kt.kind in ("none", "agg"):
                    self.error(f"Invalid map key type: {kt}", k.loc)
                kts.append(kt)
            if len(kts) == 1 and kts[0].kind == "tuple":
                kts = list(kts[0].items)
                self.notes[id(ref)] = "flatten"
        if info.keys is None:
            info.keys = kts
            return
        if not kts and info.keys:
            self.error(f"{ref.name} used as a map without keys (scalar map), previously used with "
                       "keys", ref.loc)
            return
        if kts and not info.keys:
            self.error(f"{ref.name} used as a map with keys, previously used without keys "
                       "(scalar map)", ref.loc)
            return
        if len(kts) != len(info.keys) or not all(T.compatible(a, b) for a, b in zip(info.keys, kts)):
            have = ", ".join(str(t) for t in kts)
            want = ", ".join(str(t) for t in info.keys)
            self.error(f"Argument mismatch for {ref.name}: trying to access with arguments: "
                       f"'{have}' when map expects arguments: '{want}'", ref.loc)
            return
        info.keys = [T.merge(a, b) for a, b in zip(info.keys, kts)]

    def map_assign(self, ref: A.MapRef, vt: T.Ty, loc: A.Loc, ctx: _Ctx, arith: bool = False) -> None:
        info = self._map(ref.name, ref.loc)
        self.map_keys(ref, ctx, info)
        info.assigned = True
        ref.ty = vt
        if vt.kind == "none":
            self.error("Value has no type (the function returns nothing)", loc)
            return
        if info.value is None:
            info.value = vt
            return
        if arith and info.value.kind == "agg" and info.value.agg in ("count", "sum"):
            self.error(f"Type mismatch for {ref.name}: trying to do arithmetic on a "
                       f"{info.value} map; use {info.value.agg}() instead", loc)
            return
        if not T.compatible(info.value, vt):
            self.error(f"Type mismatch for {ref.name}: trying to assign value of type '{vt}' when "
                       f"map already contains a value of type '{info.value}'", loc)
            return
        info.value = T.merge(info.value, vt)

    def aggregation(self, ref: A.MapRef, call: A.Call, ctx: _Ctx) -> None:
        name = call.name
        lo, hi = AGGREGATIONS[name]
        n = len(call.args)
        if not lo <= n <= hi:
            self.error(nargs_msg(name, lo, hi, n), call.loc)
            return
        extra: tuple = ()
        if n >= 1:
            t = self.expr(call.args[0], ctx)
            if not t.is_int:
                self.error(f"{name}() expects an integer ({t} provided)", call.args[0].loc)
        if name == "hist":
            k = 0
            if n == 2:
                kv = self.const_int(call.args[1], ctx)
                if kv is None or not 0 <= kv <= 5:
                    self.error("hist: bits must be an integer literal between 0 and 5", call.args[1].loc)
                else:
                    k = kv
            extra = (k,)
        elif name == "lhist":
            vals = [self.const_int(a, ctx) for a in call.args[1:]]
            if any(v is None for v in vals):
                bad = next(a for a, v in zip(call.args[1:], vals) if v is None)
                self.error("lhist() min, max and step must be integer literals", bad.loc)
            else:
                lo_, hi_, step = vals  # type: ignore[misc]
                if step < 1:
                    self.error("lhist() step must be >= 1", call.args[3].loc)
                elif lo_ < 0:
                    self.error("lhist() min must be non-negative", call.args[1].loc)
                elif lo_ >= hi_:
                    self.error("lhist() min must be less than max", call.args[1].loc)
                elif (hi_ - lo_) // step > 1000:
                    self.error("lhist() too many buckets, will be > 1000", call.loc)
                else:
                    extra = (lo_, hi_, step)
        call.ty = T.agg(name, extra)
        info = self._map(ref.name, ref.loc)
        if info.value is not None and info.value.kind == "agg" and info.value.agg == name \
                and info.value.extra and extra and info.value.extra != extra:
            self.error(f"{ref.name}: {name}() called with different arguments than before", call.loc)
        self.map_assign(ref, call.ty, call.loc, ctx)

    def read_value_type(self, info: MapInfo, loc: A.Loc) -> T.Ty:
        v = info.value
        if v is None:
            return T.ANY
        if v.kind == "agg":
            if v.agg in ("hist", "lhist", "stats"):
                self.error(f"{info.name} is a {v.agg}() map; its value can only be printed "
                           "(print, or at exit)", loc)
                return T.ANY
            return T.UINT64 if v.agg == "count" else T.INT64
        return v

    # ------------------------------------------------------------------ expressions
    def const_int(self, e: A.Expr, ctx: _Ctx) -> int | None:
        if isinstance(e, A.Int):
            e.ty = T.INT64
            return e.value
        if isinstance(e, A.Unary) and e.op == "-" and isinstance(e.operand, A.Int):
            e.ty = T.INT64
            return -e.operand.value
        if isinstance(e, A.Param):
            v = self.param_value(e.index)
            self.expr(e, ctx)
            return v if isinstance(v, int) else None
        if isinstance(e, A.Ident) and isinstance(self.constants.get(e.name), int):
            self.expr(e, ctx)
            return self.constants[e.name]  # type: ignore[return-value]
        return None

    def param_value(self, i: int) -> int | str:
        if i == 0:
            return self.filename
        if 0 < i <= len(self.params):
            p = self.params[i - 1]
            try:
                return int(p, 0)
            except ValueError:
                return p
        return 0

    def type_of_name(self, t: A.TypeName) -> T.Ty:
        if t.pointer:
            if t.kind in ("struct", "union"):
                return T.ptr(f"{t.kind} {t.name}")
            return T.ptr("")
        if t.kind in ("struct", "union"):
            return T.ptr(f"{t.kind} {t.name}")
        if t.kind == "enum":
            return T.INT64
        if t.name == "string":
            return T.STRING
        if t.name in T.INT_WIDTHS:
            return T.int_type(t.name)
        self.error(f"Unknown type: {t}", t.loc)
        return T.ANY

    def expr(self, e: A.Expr, ctx: _Ctx, statement: bool = False) -> T.Ty:
        t = self._expr(e, ctx, statement)
        e.ty = t
        return t

    def _expr(self, e: A.Expr, ctx: _Ctx, statement: bool) -> T.Ty:
        if isinstance(e, A.Int):
            if e.value > MAX_INT:
                self.error("integer literal is too large (more than 64 bits)", e.loc)
            return T.INT64
        if isinstance(e, A.Str):
            if len(e.value) > self.config["max_strlen"]:
                self.error(f"String is too long: {len(e.value)} characters, max_strlen is "
                           f"{self.config['max_strlen']}", e.loc)
            return T.STRING
        if isinstance(e, A.Bool):
            return T.BOOL
        if isinstance(e, A.Var):
            if e.name not in ctx.vars:
                if e.name in ctx.declared:
                    self.error(f"Variable used before it was assigned: {_vname(e.name)}", e.loc)
                else:
                    self.error(f"Undefined or undeclared variable: {_vname(e.name)}", e.loc)
                return T.ANY
            return ctx.vars[e.name]
        if isinstance(e, A.Param):
            v = self.param_value(e.index)
            return T.INT64 if isinstance(v, int) else T.STRING
        if isinstance(e, A.ParamCount):
            return T.INT64
        if isinstance(e, A.Ident):
            return self.ident(e, ctx)
        if isinstance(e, A.MapRef):
            info = self._map(e.name, e.loc)
            self.map_keys(e, ctx, info)
            return self.read_value_type(info, e.loc)
        if isinstance(e, A.Call):
            return self.call(e, ctx, statement)
        if isinstance(e, A.Binary):
            return self.binary(e, ctx)
        if isinstance(e, A.Unary):
            t = self.expr(e.operand, ctx)
            if e.op == "!":
                if not (t.is_int or t.kind == "str"):
                    self.error(f"Invalid operand of type {t} for '!'", e.loc)
                return T.BOOL
            if e.op in ("-", "~"):
                if not t.is_int:
                    self.error(f"The {e.op} operator can not be used on expressions of type {t}",
                               e.loc)
                return T.INT64
            if e.op == "*":
                if not t.is_int:
                    self.error(f"Can not dereference a value of type {t}", e.loc)
                return T.ANY
            self.error("The address-of operator (&) is not supported", e.loc)
            return T.ANY
        if isinstance(e, A.IncDec):
            tgt = e.target
            if isinstance(tgt, A.Var):
                old = ctx.vars.get(tgt.name)
                if old is None:
                    self.error(f"Undefined or undeclared variable: {_vname(tgt.name)}", tgt.loc)
                elif not old.is_int:
                    self.error(f"The {e.op} operator can not be used on {_vname(tgt.name)} of type "
                               f"{old}", tgt.loc)
                tgt.ty = old or T.INT64
            elif isinstance(tgt, A.MapRef):
                self.map_assign(tgt, T.INT64, tgt.loc, ctx, arith=True)
            else:
                self.error(f"The {e.op} operator must be applied to a map or variable", e.loc)
            return T.INT64
        if isinstance(e, A.Ternary):
            c = self.expr(e.cond, ctx)
            if not (c.is_int or c.kind == "str"):
                self.error(f"Invalid condition in ternary: {c}", e.cond.loc)
            a, b = self.expr(e.then, ctx), self.expr(e.other, ctx)
            if not T.compatible(a, b) or a.kind == "none":
                self.error(f"Ternary operator must return the same type: have '{a}' and '{b}'", e.loc)
            return T.merge(a, b)
        if isinstance(e, A.Elvis):
            a, b = self.expr(e.value, ctx), self.expr(e.other, ctx)
            if not T.compatible(a, b):
                self.error(f"Ternary operator must return the same type: have '{a}' and '{b}'", e.loc)
            return T.merge(a, b)
        if isinstance(e, A.Field):
            return self.field(e, ctx)
        if isinstance(e, A.Index):
            t = self.expr(e.obj, ctx)
            it = self.expr(e.index, ctx)
            if not it.is_int:
                self.error(f"The array index must be an integer ({it} supplied)", e.index.loc)
            if t.kind == "tuple":
                n = self.const_int(e.index, ctx)
                if n is None:
                    self.error("Tuples can only be indexed with an integer literal", e.index.loc)
                    return T.ANY
                if not 0 <= n < len(t.items):
                    self.error(f"Invalid tuple index: {n}. Found {len(t.items)} elements in tuple.",
                               e.index.loc)
                    return T.ANY
                self.notes[id(e)] = ("tuple", n)
                return t.items[n]
            if t.kind in ("ptr", "any", "str", "stack"):
                return T.ANY
            self.error(f"The [] operator can not be used on expressions of type {t}", e.loc)
            return T.ANY
        if isinstance(e, A.Tuple):
            items = [self.expr(x, ctx) for x in e.items]
            for x, t in zip(e.items, items):
                if t.kind in ("none", "agg"):
                    self.error(f"Invalid tuple element of type {t}", x.loc)
            return T.tuple_of(items)
        if isinstance(e, A.Record):
            names = [n for n, _ in e.fields]
            if len(set(names)) != len(names):
                self.error("Duplicate field name in record", e.loc)
            return T.record_of([(n, self.expr(x, ctx)) for n, x in e.fields])
        if isinstance(e, A.Cast):
            t = self.expr(e.operand, ctx)
            target = self.type_of_name(e.type)
            if e.type.kind in ("struct", "union") and not e.type.pointer:
                self.error(f"Cannot cast to a struct by value; cast to a pointer: ({e.type} *)",
                           e.loc)
            if not t.is_int and not (target.kind == "str" and t.is_str):
                self.error(f"Cannot cast from {t} to {e.type}", e.loc)
            return target
        if isinstance(e, A.SizeOf):
            if e.operand is not None:
                self.expr(e.operand, ctx)
            return T.UINT64
        if isinstance(e, A.BlockExpr):
            for s in e.stmts:
                self.stmt(s, ctx)
            if e.value is None:
                return T.NONE
            return self.expr(e.value, ctx, statement)
        self.error(f"unsupported expression {type(e).__name__}", e.loc)  # pragma: no cover
        return T.ANY

    def binary(self, e: A.Binary, ctx: _Ctx) -> T.Ty:
        a = self.expr(e.left, ctx)
        b = self.expr(e.right, ctx)
        op = e.op
        if op in ("==", "!="):
            if (a.kind in ("str", "ksym", "time") and b.is_int and b.kind != "any") or (
                    b.kind in ("str", "ksym", "time") and a.is_int and a.kind != "any"):
                self.error(f"Type mismatch for '{op}': comparing '{a}' with '{b}'", e.loc)
            elif a.kind in ("tuple", "record", "stack", "agg", "none") or b.kind in (
                    "tuple", "record", "stack", "agg", "none"):
                if not (a.kind == b.kind and T.compatible(a, b)):
                    self.error(f"Type mismatch for '{op}': comparing '{a}' with '{b}'", e.loc)
            return T.BOOL
        if op in ("&&", "||"):
            for side, t in ((e.left, a), (e.right, b)):
                if not (t.is_int or t.kind == "str"):
                    self.error(f"The {op} operator can not be used on expressions of type {t}",
                               side.loc)
            return T.BOOL
        if not (a.is_int and b.is_int):
            self.error(f"The {op} operator can not be used on expressions of types {a}, {b}", e.loc)
        if op in ("<", "<=", ">", ">="):
            return T.BOOL
        if op in ("/", "%") and isinstance(e.right, A.Int) and e.right.value == 0:
            self.warning("Division by zero: the result is 0, as in BPF", e.right.loc)
        return T.INT64 if (a.kind != "ptr" or op not in ("+", "-")) else a

    def ident(self, e: A.Ident, ctx: _Ctx) -> T.Ty:
        name = e.name
        if name in BUILTIN_VARS or name in ("args", "retval") or _ARGN.fullmatch(name):
            return self.builtin(e, name, ctx)
        if name in self.constants:
            v = self.constants[name]
            self.notes[id(e)] = ("const", v)
            return T.INT64 if isinstance(v, int) else T.STRING
        if name in {m.name for m in self.program.macros}:
            self.error(f"Macro '{name}' takes arguments; call it as {name}(...)", e.loc)
            return T.ANY
        self.error(f"Unknown identifier: '{name}'", e.loc, near(name, list(BUILTIN_VARS) + [
            "args", "retval", "arg0"] + [k for k in self.constants if not k.startswith("_")]))
        return T.ANY

    def builtin(self, e: A.Expr, name: str, ctx: _Ctx) -> T.Ty:
        provs = ctx.providers
        self.notes[id(e)] = ("builtin", name)
        where = ", ".join(sorted(provs)) or "no probe"
        if name == "args":
            bad = provs - set(ARGS_PROVIDERS)
            if bad or not ctx.resolved:
                self.error("The args builtin can only be used with tracepoint, fentry and fexit "
                           f"probes ({where} used here)", e.loc)
                return T.ANY
            return ctx.resolved[0].args_type or T.ANY
        if name == "retval":
            bad = provs - set(RETVAL_PROVIDERS)
            if bad or not ctx.resolved:
                self.error("The retval builtin can only be used with kretprobe and fexit probes "
                           f"({where} used here)", e.loc)
                return T.ANY
            return ctx.resolved[0].retval_type or T.INT64
        m = _ARGN.fullmatch(name)
        if m:
            bad = provs - set(ARGN_PROVIDERS)
            if bad or not ctx.resolved:
                self.error(f"The {name} builtin can only be used with kprobe probes ({where} used "
                           "here); fentry/fexit and tracepoints use args", e.loc)
                return T.ANY
            self.notes[id(e)] = ("argn", int(m.group(1)))
            return T.UINT64
        if name == "func":
            bad = provs - set(FUNC_PROVIDERS)
            if bad:
                self.error("The func builtin can only be used with kprobe, kretprobe, fentry and "
                           f"fexit probes ({where} used here)", e.loc)
        if name in ("pid", "tid", "uid", "gid", "comm", "curtask", "cgroup", "username", "ppid",
                    "pcomm", "ustack"):
            ctx.uses_task = True
        if name == "cpid":
            self.error("cpid is not available: mmdbg runs no child command (-c)", e.loc)
        return BUILTIN_VARS[name]

    def field(self, e: A.Field, ctx: _Ctx) -> T.Ty:
        name = e.name
        if isinstance(e.obj, A.Ident) and e.obj.name == "args":
            t = self.expr(e.obj, ctx)
            if t.kind != "record":
                return T.ANY
            for r in ctx.resolved:
                at = r.args_type
                if at is not None and at.field_type(name) is None:
                    names = ", ".join(n for n, _ in at.fields) or "(none)"
                    self.error(f"{r.name} has no args field '{name}'", e.loc,
                               [f"its fields are: {names}"])
                    return T.ANY
            self.notes[id(e)] = ("args", name)
            return t.field_type(name) or T.ANY
        t = self.expr(e.obj, ctx)
        if name.isdigit():
            if t.kind == "tuple":
                n = int(name)
                if n >= len(t.items):
                    self.error(f"Invalid tuple index: {n}. Found {len(t.items)} elements in tuple.",
                               e.loc)
                    return T.ANY
                self.notes[id(e)] = ("tuple", n)
                return t.items[n]
            if t.kind == "any":
                self.notes[id(e)] = ("dyn_index", int(name))
                return T.ANY
            self.error(f"Can not access index '{name}' on expression of type '{t}'", e.loc)
            return T.ANY
        if t.kind == "record":
            ft = t.field_type(name)
            if ft is None:
                names = ", ".join(n for n, _ in t.fields)
                self.error(f"Record does not contain a field named '{name}'", e.loc,
                           [f"its fields are: {names}"] if names else [])
                return T.ANY
            idx = [n for n, _ in t.fields].index(name)
            self.notes[id(e)] = ("record", idx)
            return ft
        if name.startswith("__") and name.endswith("__"):
            self.error(f"Access to the field '{name}' is not allowed (Python special names are "
                       "reserved)", e.loc)
            return T.ANY
        if t.kind in ("ptr", "any"):
            self.notes[id(e)] = ("kobj", name, t.struct if t.kind == "ptr" else "")
            return T.ANY
        self.error(f"Can not access field '{name}' on expression of type '{t}'", e.loc,
                   ["cast it to a struct pointer first, e.g. ((struct page *)arg0)->flags"]
                   if t.is_int else [])
        return T.ANY

    # ------------------------------------------------------------------ calls
def _vname(name: str) -> str:
    return name.split("#", 1)[0]


def _children(node: Any) -> list[Any]:
    import dataclasses

    out: list[Any] = []
    if isinstance(node, list | tuple):
        return list(node)
    if not isinstance(node, A.Node):
        return out
    for f in dataclasses.fields(node):
        if f.name in ("loc", "ty"):
            continue
        v = getattr(node, f.name)
        if isinstance(v, A.Node | list | tuple):
            out.append(v)
    return out


def _depth(root: Any) -> int:
    """Nesting depth of an AST, computed without recursion."""
    best = 0
    stack = [(root, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, A.Node):
            best = max(best, d)
            d += 1
        for ch in _children(node):
            stack.append((ch, d))
    return best


def _cost(root: Any) -> int:
    """A static instruction estimate: one per AST node."""
    n = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, A.Node):
            n += 1
        stack.extend(_children(node))
    return n


def check(program: A.Program, source: str, filename: str = "stdin", **kw: Any) -> CheckedProgram:
    return Checker(program, source, filename, **kw).run()
