"""Hygienic macro expansion (bpftrace 0.25's ``macro name($v, @m, e) { body }``).

A call ``name(args)`` (or a bare ``name`` for a zero-argument macro) is replaced by a
:class:`~mmdbg.probe.ast.BlockExpr`: the macro's statements, then the value of its trailing
expression.  Parameters:

* ``$v`` receives a variable by reference: the body's ``$v`` becomes the caller's variable.
  Passed any other expression, ``$v`` is a fresh variable initialised with its value.
* ``@m`` receives a map: the body's ``@m`` becomes the caller's map.
* a bare identifier receives an expression, substituted where the identifier appears.

Variables the body introduces are renamed per expansion (``$x`` -> ``$x#macro.N``, a name a
user cannot type), so a macro never clobbers its caller's variables.  Recursion is an error.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

from mmdbg.probe import ast as A
from mmdbg.probe.errors import ERROR, Diagnostic

MAX_EXPANSION_DEPTH = 32


class MacroError(Exception):
    def __init__(self, diag: Diagnostic):
        super().__init__(diag.msg)
        self.diag = diag


class Expander:
    def __init__(self, macros: list[A.Macro], diags: list[Diagnostic]):
        self.macros: dict[str, A.Macro] = {}
        self.diags = diags
        self.counter = 0
        for m in macros:
            if m.name in self.macros:
                diags.append(Diagnostic(ERROR, f"Redefinition of macro: {m.name}", m.loc))
            self.macros[m.name] = m
        self.stack: list[str] = []

    # -- public -------------------------------------------------------------------------
    def expand_probe(self, probe: A.Probe) -> A.Probe:
        if not self.macros:
            return probe
        pred = self._expr(probe.pred) if probe.pred is not None else None
        body = self._block(probe.body)
        return A.Probe(probe.attach, pred, body, loc=probe.loc)

    # -- walkers ------------------------------------------------------------------------
    def _block(self, b: A.Block) -> A.Block:
        return A.Block([self._stmt(s) for s in b.stmts], loc=b.loc)

    def _stmt(self, s: A.Stmt) -> A.Stmt:
        return self._generic(s)  # type: ignore[return-value]

    def _expr(self, e: A.Expr) -> A.Expr:
        return self._generic(e)  # type: ignore[return-value]

    def _generic(self, node: Any) -> Any:
        if isinstance(node, A.Call) and node.name in self.macros:
            args = [self._generic(a) for a in node.args]
            return self._expand(node.name, args, node)
        if isinstance(node, A.Ident) and node.name in self.macros:
            if self.macros[node.name].params:
                return node  # the checker reports "needs arguments"
            return self._expand(node.name, [], node)
        if isinstance(node, list):
            return [self._generic(x) for x in node]
        if isinstance(node, tuple):
            return tuple(self._generic(x) for x in node)
        if not isinstance(node, A.Node):
            return node
        changes = {}
        for f in dataclasses.fields(node):
            if f.name in ("loc", "ty"):
                continue
            val = getattr(node, f.name)
            if isinstance(val, A.Node | list | tuple):
                changes[f.name] = self._generic(val)
        return dataclasses.replace(node, **changes) if changes else node

    def _expand(self, name: str, args: list[A.Expr], call: A.Expr) -> A.Expr:
        macro = self.macros[name]
        if name in self.stack or len(self.stack) >= MAX_EXPANSION_DEPTH:
            raise MacroError(Diagnostic(ERROR, f"Recursive macro call: {name}", call.loc))
        if len(args) != len(macro.params):
            raise MacroError(Diagnostic(
                ERROR, f"Macro '{name}' takes {len(macro.params)} argument"
                       f"{'' if len(macro.params) == 1 else 's'} ({len(args)} provided)", call.loc))
        self.counter += 1
        tag = f"#{name}.{self.counter}"
        var_map: dict[str, str] = {}
        map_map: dict[str, str] = {}
        ident_map: dict[str, A.Expr] = {}
        prelude: list[A.Stmt] = []
        for p, a in zip(macro.params, args):
            if p.kind == "var":
                if isinstance(a, A.Var):
                    var_map[p.name] = a.name
                else:
                    fresh = p.name + tag
                    var_map[p.name] = fresh
                    prelude.append(A.Assign(A.Var(fresh, loc=a.loc), a, loc=a.loc))
            elif p.kind == "map":
                if not (isinstance(a, A.MapRef) and a.keys is None):
                    raise MacroError(Diagnostic(
                        ERROR, f"Macro '{name}' expects a map for parameter {p.name}", a.loc))
                map_map[p.name] = a.name
            else:
                ident_map[p.name] = a
        body = copy.deepcopy(macro.body)
        body = _Renamer(var_map, map_map, ident_map, tag).block(body)
        stmts = prelude + body.stmts
        value: A.Expr | None = None
        if stmts and isinstance(stmts[-1], A.ExprStmt):
            value = stmts.pop().expr  # type: ignore[union-attr]
        self.stack.append(name)
        try:
            stmts = [self._stmt(s) for s in stmts]
            value = self._expr(value) if value is not None else None
        finally:
            self.stack.pop()
        return A.BlockExpr(stmts, value, name, loc=call.loc)


class _Renamer:
    def __init__(self, var_map: dict[str, str], map_map: dict[str, str],
                 ident_map: dict[str, A.Expr], tag: str):
        self.var_map = var_map
        self.map_map = map_map
        self.ident_map = ident_map
        self.tag = tag

    def block(self, b: A.Block) -> A.Block:
        return self.node(b)

    def node(self, n: Any) -> Any:
        if isinstance(n, list):
            return [self.node(x) for x in n]
        if isinstance(n, tuple):
            return tuple(self.node(x) for x in n)
        if isinstance(n, A.Var):
            return A.Var(self.var_map.get(n.name, n.name + self.tag), loc=n.loc)
        if isinstance(n, A.MapRef):
            keys = self.node(n.keys) if n.keys is not None else None
            return A.MapRef(self.map_map.get(n.name, n.name), keys, loc=n.loc)
        if isinstance(n, A.Ident) and n.name in self.ident_map:
            return copy.deepcopy(self.ident_map[n.name])
        if not isinstance(n, A.Node):
            return n
        for f in dataclasses.fields(n):
            if f.name in ("loc", "ty"):
                continue
            val = getattr(n, f.name)
            if isinstance(val, A.Node | list | tuple):
                setattr(n, f.name, self.node(val))
        return n
