"""Checking calls to builtin functions (a mixin of :class:`~mmdbg.probe.checker.Checker`).

One case per function: argument counts and types, map arguments (``print(@m)``,
``clear(@m)``, ``delete(@m, key)``), printf format strings (parsed once here and kept for
code generation), stack modes and limits, and the unsafe gate.
"""

from __future__ import annotations

from typing import Any

from mmdbg.probe import ast as A
from mmdbg.probe import types as T
from mmdbg.probe.builtins import (
    AGGREGATIONS,
    ARGN,
    BUILTIN_VARS,
    KNOWN_FUNCS,
    UNSAFE_FUNCS,
    UNSUPPORTED_FUNCS,
    nargs_msg,
    near,
)
from mmdbg.probe.printf import FormatError, Formatter, check_arg, parse_format


class CallChecks:
    """Builtin function calls; relies on the Checker's expr/error/map helpers."""

    # provided by Checker
    error: Any
    expr: Any
    builtin: Any
    const_int: Any
    map_keys: Any
    _map: Any
    notes: dict[int, Any]
    unsafe: bool
    program: A.Program

    def call(self, e: A.Call, ctx: Any, statement: bool) -> T.Ty:
        name = e.name
        args = e.args
        n = len(args)
        if name in UNSAFE_FUNCS and not self.unsafe:
            self.error(f"{name}() is an unsafe function being used in safe mode", e.loc,
                       ["run with --unsafe to allow it"])
        if name in AGGREGATIONS:
            self.error(f"{name}() should be directly assigned to a map", e.loc)
            return T.ANY
        if name in UNSUPPORTED_FUNCS:
            self.error(UNSUPPORTED_FUNCS[name], e.loc)
            return T.ANY
        zero_arg = name in BUILTIN_VARS or name in ("args", "retval") or ARGN.fullmatch(name)
        if zero_arg and name not in ("kstack", "ustack") and name not in ("nsecs",):
            if n:
                self.error(f"{name} takes no arguments", e.loc)
            return self.builtin(e, name, ctx)
        if name in ("printf", "errorf", "warnf", "system"):
            return self.call_printf(e, ctx)
        if name == "print":
            return self.call_print(e, ctx)
        if name in ("clear", "zero"):
            if n != 1:
                self.error(nargs_msg(name, 1, 1, n), e.loc)
                return T.NONE
            self.map_arg(e, args[0], ctx, whole=True)
            return T.NONE
        if name in ("delete", "has_key"):
            if name == "delete" and n == 1:
                a = args[0]
                if not (isinstance(a, A.MapRef) and a.keys is not None):
                    self.error("delete() expects a map element, e.g. delete(@m[key]), or "
                               "delete(@m, key)", a.loc)
                    return T.BOOL
                info = self._map(a.name, a.loc)
                self.map_keys(a, ctx, info)
                self.notes[id(e)] = info
                return T.BOOL
            if n != 2:
                self.error(nargs_msg(name, 2, 2, n), e.loc)
                return T.BOOL
            info = self.map_arg(e, args[0], ctx, whole=True)
            if info is not None:
                key = A.MapRef(info.name, [args[1]], loc=args[1].loc)
                self.map_keys(key, ctx, info)
                self.notes[id(e)] = (info, "flatten" if self.notes.get(id(key)) == "flatten" else "")
            return T.BOOL
        if name == "len":
            if n != 1:
                self.error(nargs_msg(name, 1, 1, n), e.loc)
                return T.INT64
            a = args[0]
            if isinstance(a, A.MapRef) and a.keys is None:
                self.map_arg(e, a, ctx, whole=True)
                return T.INT64
            t = self.expr(a, ctx)
            if t.kind not in ("stack", "str", "any", "tuple"):
                self.error(f"len() expects a map, a stack or a string ({t} provided)", a.loc)
            return T.INT64
        if name == "exit":
            if n > 1:
                self.error(f"exit() takes at most one argument ({n} provided)", e.loc)
            if n == 1 and not self.expr(args[0], ctx).is_int:
                self.error("exit() expects an integer exit code", args[0].loc)
            if ctx.loops:
                self.error("exit() is not allowed inside a loop", e.loc)
            return T.NONE
        if name == "stop":
            if n:
                self.error(f"stop() takes no arguments ({n} provided)", e.loc)
            return T.NONE
        if name in ("kstack", "ustack"):
            if n > 2:
                self.error(f"{name}() takes at most two arguments", e.loc)
            mode, limit = "", None
            for a in args:
                if isinstance(a, A.Ident) and a.name in ("bpftrace", "perf", "raw"):
                    mode = a.name
                else:
                    limit = self.const_int(a, ctx)
                    if limit is None or not 1 <= limit <= 1024:
                        self.error(f"{name}: the stack limit must be an integer between 1 and 1024",
                                   a.loc)
            self.notes[id(e)] = ("stack", name, mode, limit)
            if name == "ustack":
                ctx.uses_task = True
            return T.STACK if name == "kstack" else T.USTACK
        if name == "nsecs":
            if n > 1 or (n == 1 and not (isinstance(args[0], A.Ident) and args[0].name in (
                    "monotonic", "boot", "tai", "sw_tai"))):
                self.error("nsecs() takes an optional clock: monotonic, boot, tai or sw_tai", e.loc)
            self.notes[id(e)] = ("builtin", "nsecs")
            return T.UINT64
        if name == "str":
            if not 1 <= n <= 2:
                self.error(nargs_msg(name, 1, 2, n), e.loc)
                return T.STRING
            self.expr(args[0], ctx)
            if n == 2 and not self.expr(args[1], ctx).is_int:
                self.error("str(): the length must be an integer", args[1].loc)
            return T.STRING
        if name in ("ksym", "kaddr", "kptr", "strlen", "bswap", "signal", "signal_thread",
                    "override", "strerror", "is_err"):
            if n != 1:
                self.error(nargs_msg(name, 1, 1, n), e.loc)
                return T.ANY
            t = self.expr(args[0], ctx)
            if name == "kaddr":
                if not isinstance(args[0], A.Str):
                    self.error("kaddr() expects a string literal", args[0].loc)
                return T.UINT64
            if name == "strlen":
                if not t.is_str:
                    self.error(f"strlen() expects a string ({t} provided)", args[0].loc)
                return T.INT64
            if name in ("signal", "signal_thread"):
                if not (t.is_int or (isinstance(args[0], A.Str))):
                    self.error("signal() expects a signal number or name", args[0].loc)
                return T.NONE
            if name == "override":
                if ctx.providers - {"kprobe"}:
                    self.error("override() can only be used in kprobe probes", e.loc)
                if not t.is_int:
                    self.error(f"override() expects an integer return value ({t} provided)", args[0].loc)
                return T.NONE
            if name == "strerror":
                return T.STRING
            if name == "is_err":
                return T.BOOL
            if not t.is_int:
                self.error(f"{name}() expects an integer ({t} provided)", args[0].loc)
            return T.KSYM if name == "ksym" else T.INT64 if name != "kptr" else t
        if name in ("pfn_to_page", "page_to_pfn", "page_zone"):
            if n != 1:
                self.error(nargs_msg(name, 1, 1, n), e.loc)
                return T.ANY
            t = self.expr(args[0], ctx)
            if not t.is_int:
                self.error(f"{name}() expects a pfn or a struct page pointer ({t} provided)",
                           args[0].loc)
            return {"pfn_to_page": T.ptr("struct page"), "page_to_pfn": T.UINT64,
                    "page_zone": T.ptr("struct zone")}[name]
        if name in ("strncmp", "strcontains", "strstr"):
            want = 3 if name == "strncmp" else 2
            if n != want:
                self.error(nargs_msg(name, want, want, n), e.loc)
                return T.INT64
            for a in args[:2]:
                t = self.expr(a, ctx)
                if not t.is_str:
                    self.error(f"{name}() expects strings ({t} provided)", a.loc)
            if name == "strncmp" and not self.expr(args[2], ctx).is_int:
                self.error("strncmp(): the length must be an integer", args[2].loc)
            return T.BOOL if name == "strcontains" else T.INT64
        if name == "join":
            if not 1 <= n <= 2:
                self.error(nargs_msg(name, 1, 2, n), e.loc)
                return T.NONE
            self.expr(args[0], ctx)
            if n == 2 and not isinstance(args[1], A.Str):
                self.error("join(): the separator must be a string literal", args[1].loc)
            return T.NONE
        if name == "time":
            if n > 1 or (n == 1 and not isinstance(args[0], A.Str)):
                self.error("time() takes an optional format string literal", e.loc)
            return T.NONE
        if name == "strftime":
            if n != 2 or not isinstance(args[0], A.Str):
                self.error("strftime() takes a format string literal and a time in ns", e.loc)
                return T.TIMESTAMP
            if not self.expr(args[1], ctx).is_int:
                self.error("strftime(): the time must be an integer (ns)", args[1].loc)
            return T.TIMESTAMP
        if name in {m.name for m in self.program.macros}:  # pragma: no cover - expanded earlier
            return T.ANY
        self.error(f"Unknown function: {name}", e.name_loc or e.loc, near(name, KNOWN_FUNCS))
        return T.ANY

    def map_arg(self, call: A.Call, a: A.Expr, ctx: Any, whole: bool) -> Any:
        if not (isinstance(a, A.MapRef) and a.keys is None):
            self.error(f"{call.name}() expects a map argument, e.g. {call.name}(@m)", a.loc)
            if isinstance(a, A.Expr):
                self.expr(a, ctx)
            return None
        info = self._map(a.name, a.loc)
        self.notes[id(a)] = "whole"
        return info

    def call_printf(self, e: A.Call, ctx: Any) -> T.Ty:
        if not e.args or not isinstance(e.args[0], A.Str):
            self.error(f"{e.name}() requires a format string literal as its first argument", e.loc)
            for a in e.args:
                self.expr(a, ctx)
            return T.NONE
        fmt = e.args[0]
        fmt.ty = T.STRING
        try:
            parts = parse_format(fmt.value)
        except FormatError as err:
            self.error(str(err), fmt.loc)
            return T.NONE
        types = [self.expr(a, ctx) for a in e.args[1:]]
        f = Formatter(parts, types)
        if f.nspecs != len(types):
            label = e.name
            if f.nspecs > len(types):
                self.error(f"{label}: Not enough arguments for format string ({len(types)} supplied, "
                           f"{f.nspecs} expected)", e.loc)
            else:
                self.error(f"{label}: Too many arguments for format string ({len(types)} supplied, "
                           f"{f.nspecs} expected)", e.loc)
            return T.NONE
        specs = [p for p in parts if not isinstance(p, str)]
        for spec, t, a in zip(specs, types, e.args[1:]):
            if t.kind in ("none", "agg"):
                self.error(f"{e.name}: argument of type {t} can not be printed", a.loc)
                continue
            msg = check_arg(spec, t)
            if msg:
                self.error(msg.replace("printf:", f"{e.name}:"), a.loc)
        self.notes[id(e)] = f
        return T.NONE

    def call_print(self, e: A.Call, ctx: Any) -> T.Ty:
        args = e.args
        if not 1 <= len(args) <= 3:
            self.error(nargs_msg("print", 1, 3, len(args)), e.loc)
            return T.NONE
        a = args[0]
        if isinstance(a, A.MapRef) and a.keys is None:
            info = self._map(a.name, a.loc)
            self.notes[id(a)] = "whole"
            for extra in args[1:]:
                if not self.expr(extra, ctx).is_int:
                    self.error("print(): top and div must be integers", extra.loc)
            self.notes[id(e)] = ("map", info)
            return T.NONE
        if len(args) > 1:
            self.error("print(): top and div can only be used when printing a whole map", args[1].loc)
        t = self.expr(a, ctx)
        if t.kind in ("none", "agg"):
            self.error(f"print() can not print a value of type {t}", a.loc)
        self.notes[id(e)] = ("value", t)
        return T.NONE
