"""The attach surface: tracepoints, kprobes/kretprobes and kernel stacks.

One mechanism serves probes, breakpoints and watchpoints (see ARCHITECTURE.md).

Tracepoints
    Declared once from ``data/tracepoints.json`` (the kernel's category, name, fields and
    ``TP_printk`` format) and fired where the kernel fires them.  A call site reads::

        if _tp_mm_page_alloc.enabled:
            _tp_mm_page_alloc.fire(pfn=pfn, order=order, gfp_flags=gfp, migratetype=mt)

    which costs one attribute test when nothing is attached (the kernel's static key is
    a NOP; this is the closest cheap Python equivalent, measured in ``bench/``).
    Only tracepoints that a ``sim/`` module *declares* with :func:`declare_tracepoint`
    are listed to users; the JSON holds more for later issues.

kprobes / kretprobes / fentry / fexit
    Kernel functions are ordinary module-level functions decorated with :func:`kfunc`,
    which registers them by their kernel name and returns the function unchanged, so a
    detached probe costs nothing.  Attaching swaps every binding of the function in the
    ``mmdbg.sim`` modules for an instrumented wrapper (the Python analogue of patching a
    static key); detaching the last handler puts the original back.  Attach by name:
    ``attach_kprobe("__alloc_pages", handler)``.

Stacks
    :func:`kstack` walks the live Python frames and keeps those whose code object is a
    registered kernel function, rendered ``name+OFFSET`` where OFFSET is the line offset
    inside the function.  Nothing is recorded until someone asks.

Which machine?
    The kernel has one kernel; a Python process may hold several simulated machines.
    ``Machine.activate()`` makes a machine *current* (like ``current`` in the kernel) and
    every handler is attached for one machine: events from another machine do not reach it.

Handlers receive an :class:`Event`.  A kprobe handler may set ``ev.override`` to make the
probed function return that value without running (bpftrace's ``override()``).  A tracepoint
handler that needs no Event (no stack, retval or override) can be attached with
:meth:`Tracepoint.attach_raw` and is called as ``handler(machine, fields_dict)``; compiled
probes use it when they can (``bench/bench_probe.py`` measures both surfaces).
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from importlib import resources
from types import CodeType, FunctionType, SimpleNamespace
from typing import Any

_current: Any = None  # the active Machine


def current_machine() -> Any:
    """The machine whose kernel code is running (``None`` before any boot)."""
    return _current


def set_current_machine(machine: Any) -> None:
    global _current
    _current = machine


_NO_OVERRIDE = object()


class Event:
    """What a handler sees: the probe, the machine, args, retval and the stack on demand."""

    __slots__ = ("args", "entry", "machine", "override", "probe", "retval")

    def __init__(self, probe: Any, machine: Any, args: Any, entry: bool = False) -> None:
        self.probe = probe
        self.machine = machine
        self.args = args
        self.entry = entry  # a kprobe at function entry: the probed frame is not live yet
        self.retval: Any = None
        self.override: Any = _NO_OVERRIDE

    # -- context read from the machine -------------------------------------------------
    @property
    def cpu(self) -> int:
        return self.machine.smp_processor_id()

    @property
    def task(self) -> Any:
        return self.machine.current

    @property
    def nsecs(self) -> int:
        return self.machine.clock.ns

    @property
    def has_override(self) -> bool:
        return self.override is not _NO_OVERRIDE

    def kstack(self, limit: int = 127) -> list[str]:
        stack = kstack(limit, sys._getframe(1))
        if self.entry and self.retval is None:
            stack.insert(0, f"{self.probe.name}+0")  # the probed function, about to run
            del stack[limit:]
        return stack

    def kframes(self, limit: int = 127) -> list[KFrame]:
        return kframes(limit, sys._getframe(1))


class Attachment:
    """A handler attached to a tracepoint or kernel function; ``detach()`` removes it."""

    __slots__ = ("handler", "kind", "machine", "raw", "target")

    def __init__(self, target: Any, kind: str, handler: Callable[..., Any], machine: Any,
                 raw: bool = False):
        self.target = target
        self.kind = kind
        self.handler = handler
        self.machine = machine
        self.raw = raw  # a tracepoint handler called as handler(machine, fields_dict)

    def detach(self) -> None:
        self.target._detach(self)


# ---------------------------------------------------------------------------------------
# Tracepoints


class TraceArgs:
    """A tracepoint's fields as attributes (``ev.args.order``); ``vars(args)`` is the record."""

    def __repr__(self) -> str:
        return f"TraceArgs({self.__dict__!r})"


class TraceField(SimpleNamespace):
    name: str
    type: str
    pointer: bool


_new = object.__new__
_NO_FAST = object()  # a machine no event comes from: the fast path is off


class Tracepoint:
    """One kernel tracepoint: ``category:name`` with its fields and print format.

    ``fire`` is a per-tracepoint function (set once in ``__init__``, never replaced), so
    ``tp.fire(field=value, ...)`` is a plain call.  When exactly one *raw* handler is attached
    (:meth:`attach_raw`) it goes straight to ``handler(machine, fields)`` with no
    :class:`Event` or :class:`TraceArgs` built; otherwise every handler attached for the
    current machine is called in attach order, Event handlers with one shared :class:`Event`.
    """

    __slots__ = (
        "_handlers",
        "_htuple",
        "_set_fast",
        "category",
        "declared",
        "enabled",
        "field_names",
        "fields",
        "fire",
        "name",
        "printk",
        "proto",
    )

    def __init__(self, category: str, name: str, fields: list[TraceField], printk: str,
                 proto: str = "") -> None:
        self.category = category
        self.name = name
        self.fields = fields
        self.field_names = tuple(f.name for f in fields)
        self.printk = printk
        self.proto = proto
        self.enabled = False
        self.declared = False
        self._handlers: list[Attachment] = []
        self._htuple: tuple[Attachment, ...] = ()
        self.fire, self._set_fast = _make_fire(self)

    @property
    def full_name(self) -> str:
        return f"{self.category}:{self.name}"

    def __repr__(self) -> str:
        return f"<Tracepoint {self.full_name}>"

    def attach(self, handler: Callable[[Event], Any], machine: Any = None) -> Attachment:
        """Call ``handler(ev)`` with an :class:`Event` for each event on ``machine``."""
        att = Attachment(self, "tracepoint", handler, machine or _current)
        self._handlers.append(att)
        self._changed()
        return att

    def attach_raw(self, handler: Callable[[Any, dict[str, Any]], Any],
                   machine: Any = None) -> Attachment:
        """Call ``handler(machine, fields)`` for each event on ``machine``: ``fields`` is the
        dict of the tracepoint's fields (shared with other handlers: read it, never change it).
        No Event is built, so the handler has no stack, retval or override."""
        att = Attachment(self, "tracepoint", handler, machine or _current, raw=True)
        self._handlers.append(att)
        self._changed()
        return att

    def _detach(self, att: Attachment) -> None:
        if att in self._handlers:
            self._handlers.remove(att)
        self._changed()

    def _changed(self) -> None:
        hs = self._htuple = tuple(self._handlers)
        self.enabled = bool(hs)
        if len(hs) == 1:  # one handler: fire() calls it without the loop
            att = hs[0]
            self._set_fast(att.machine, att.handler if att.raw else _event_caller(self, att.handler))
        else:
            self._set_fast(_NO_FAST, None)

    def _fire_all(self, m: Any, fields: dict[str, Any]) -> None:
        """Deliver one event to every handler attached for machine ``m``."""
        ev = None
        for att in self._htuple:
            if att.machine is m:
                if att.raw:
                    att.handler(m, fields)
                else:
                    if ev is None:
                        ev = _tp_event(self, m, fields)
                    att.handler(ev)


def _tp_event(tp: Tracepoint, m: Any, fields: dict[str, Any]) -> Event:
    """``Event(tp, m, args)`` for a tracepoint, without the ``__init__`` call."""
    args = TraceArgs()
    args.__dict__ = fields
    ev = _new(Event)
    ev.probe = tp
    ev.machine = m
    ev.args = args
    ev.entry = False
    ev.retval = None
    ev.override = _NO_OVERRIDE
    return ev


def _event_caller(tp: Tracepoint, handler: Callable[[Event], Any]) -> Callable[[Any, Any], None]:
    """A raw-convention caller for one Event handler (the single-handler fast path)."""

    def call(m: Any, fields: dict[str, Any]) -> None:
        handler(_tp_event(tp, m, fields))

    return call


def _make_fire(tp: Tracepoint) -> tuple[Callable[..., None], Callable[[Any, Any], None]]:
    fast_m: Any = _NO_FAST
    fast_h: Any = None
    fire_all = tp._fire_all

    def fire(**fields: Any) -> None:
        """Deliver one event to the handlers attached for the current machine."""
        m = _current
        if m is fast_m:
            fast_h(m, fields)
        else:
            fire_all(m, fields)

    def set_fast(m: Any, h: Any) -> None:
        nonlocal fast_m, fast_h
        fast_m, fast_h = m, h

    return fire, set_fast


def _load_tracepoints() -> dict[str, Tracepoint]:
    text = resources.files("mmdbg.sim").joinpath("data/tracepoints.json").read_text("utf-8")
    out: dict[str, Tracepoint] = {}
    for rec in json.loads(text):
        fields = [TraceField(name=f["name"], type=f["type"], pointer=bool(f.get("pointer")))
                  for f in rec["fields"]]
        tp = Tracepoint(rec["category"], rec["name"], fields, rec.get("printk", ""),
                        rec.get("proto", ""))
        out[tp.full_name] = tp
    return out


TRACEPOINTS: dict[str, Tracepoint] = _load_tracepoints()


def declare_tracepoint(full_name: str) -> Tracepoint:
    """Mark a tracepoint as fired by the simulation and return it (module import time)."""
    tp = TRACEPOINTS[full_name]
    tp.declared = True
    return tp


def declared_tracepoints() -> list[Tracepoint]:
    return sorted((tp for tp in TRACEPOINTS.values() if tp.declared), key=lambda t: t.full_name)


def find_tracepoint(name: str) -> Tracepoint | None:
    """``kmem:mm_page_alloc`` or a unique bare ``mm_page_alloc``; declared ones only."""
    tp = TRACEPOINTS.get(name)
    if tp is not None:
        return tp if tp.declared else None
    hits = [t for t in TRACEPOINTS.values() if t.declared and t.name == name]
    return hits[0] if len(hits) == 1 else None


# ---------------------------------------------------------------------------------------
# Kernel functions, kprobes and kretprobes


class KernelFunction:
    """A registered kernel function: its kernel name, source location and parameters."""

    __slots__ = (
        "_entry",
        "_return",
        "_wrapper",
        "aliases",
        "code",
        "file",
        "func",
        "lineno",
        "module",
        "name",
        "params",
        "patched",
        "size",
    )

    def __init__(self, name: str, func: FunctionType, aliases: tuple[str, ...]) -> None:
        self.name = name
        self.func = func
        self.code: CodeType = func.__code__
        self.module = func.__module__
        self.aliases = aliases
        self.lineno = self.code.co_firstlineno
        last = max((ln for _, _, ln in self.code.co_lines() if ln), default=self.lineno)
        self.size = last - self.lineno + 1
        self.file = _display_file(self.code.co_filename)
        sig = inspect.signature(func)
        self.params: list[tuple[str, str]] = [
            (p.name, _annot(p.annotation)) for p in sig.parameters.values()
        ]
        self._entry: list[Attachment] = []
        self._return: list[Attachment] = []
        self._wrapper: FunctionType | None = None
        self.patched: list[tuple[Any, str]] = []

    def __repr__(self) -> str:
        return f"<kfunc {self.name} at {self.file}:{self.lineno}>"

    @property
    def param_names(self) -> list[str]:
        return [p for p, _ in self.params]

    def bind_args(self, a: tuple, k: dict) -> dict[str, Any]:
        names = self.param_names
        out = dict(zip(names, a))
        out.update(k)
        for n in names:  # defaults
            if n not in out:
                d = inspect.signature(self.func).parameters[n].default
                out[n] = None if d is inspect.Parameter.empty else d
        return out

    # -- attach / detach ---------------------------------------------------------------
    def attach(self, handler: Callable[[Event], Any], *, ret: bool = False,
               machine: Any = None) -> Attachment:
        att = Attachment(self, "kretprobe" if ret else "kprobe", handler, machine or _current)
        (self._return if ret else self._entry).append(att)
        self._patch()
        return att

    def _detach(self, att: Attachment) -> None:
        for lst in (self._entry, self._return):
            if att in lst:
                lst.remove(att)
        if not self._entry and not self._return:
            self._unpatch()

    def _patch(self) -> None:
        if self._wrapper is not None:
            return
        self._wrapper = _make_wrapper(self)
        orig = self.func
        for mod in list(sys.modules.values()):
            mname = getattr(mod, "__name__", "") or ""
            if not mname.startswith("mmdbg."):
                continue
            d = getattr(mod, "__dict__", None)
            if not d:
                continue
            for key, val in list(d.items()):
                if val is orig:
                    d[key] = self._wrapper
                    self.patched.append((d, key))

    def _unpatch(self) -> None:
        for d, key in self.patched:
            if d.get(key) is self._wrapper:
                d[key] = self.func
        self.patched.clear()
        self._wrapper = None


def _make_wrapper(kf: KernelFunction) -> FunctionType:
    orig = kf.func
    entry = kf._entry
    ret = kf._return

    def kprobe_wrapper(*a: Any, **k: Any) -> Any:
        m = _current
        ev = Event(kf, m, _KArgs(kf, a, k), True)
        for att in tuple(entry):
            if att.machine is m:
                att.handler(ev)
        if ev.override is not _NO_OVERRIDE:
            return ev.override
        r = orig(*a, **k)
        if ret:
            ev.retval = r
            for att in tuple(ret):
                if att.machine is m:
                    att.handler(ev)
        return r

    kprobe_wrapper.__name__ = orig.__name__
    kprobe_wrapper.__qualname__ = orig.__qualname__
    kprobe_wrapper.__doc__ = orig.__doc__
    kprobe_wrapper.__wrapped__ = orig  # type: ignore[attr-defined]
    return kprobe_wrapper  # type: ignore[return-value]


class _KArgs:
    """kprobe arguments: by parameter name (``args.order``) and by position (``arg0``)."""

    __slots__ = ("_a", "_k", "_kf", "_map")

    def __init__(self, kf: KernelFunction, a: tuple, k: dict) -> None:
        self._kf = kf
        self._a = a
        self._k = k
        self._map: dict[str, Any] | None = None

    def _bound(self) -> dict[str, Any]:
        if self._map is None:
            self._map = self._kf.bind_args(self._a, self._k)
        return self._map

    def __getattr__(self, name: str) -> Any:
        try:
            return self._bound()[name]
        except KeyError:
            raise AttributeError(name) from None

    def arg(self, i: int) -> Any:
        names = self._kf.param_names
        if i < len(self._a):
            return self._a[i]
        if i < len(names):
            return self._bound().get(names[i])
        return 0

    def as_dict(self) -> dict[str, Any]:
        return dict(self._bound())


KFUNCS: dict[str, KernelFunction] = {}
_BY_CODE: dict[CodeType, KernelFunction] = {}


def kfunc(fn: Any = None, *, name: str | None = None, aliases: tuple[str, ...] = ()) -> Any:
    """Register a kernel function by its kernel name (and older names as aliases)."""

    def reg(f: FunctionType) -> FunctionType:
        kf = KernelFunction(name or f.__name__, f, tuple(aliases))
        KFUNCS[kf.name] = kf
        for al in aliases:
            KFUNCS.setdefault(al, kf)
        _BY_CODE[f.__code__] = kf
        return f

    return reg(fn) if fn is not None else reg


def find_kfunc(name: str) -> KernelFunction | None:
    return KFUNCS.get(name)


def attach_kprobe(name: str, handler: Callable[[Event], Any], *, ret: bool = False,
                  machine: Any = None) -> Attachment:
    kf = KFUNCS.get(name)
    if kf is None:
        raise KeyError(name)
    return kf.attach(handler, ret=ret, machine=machine)


# ---------------------------------------------------------------------------------------
# Stacks


class KFrame:
    """One simulated kernel frame: the function, the line, and its live locals."""

    __slots__ = ("frame", "kf", "lineno")

    def __init__(self, kf: KernelFunction, frame: Any) -> None:
        self.kf = kf
        self.frame = frame
        self.lineno = frame.f_lineno

    @property
    def offset(self) -> int:
        return self.lineno - self.kf.lineno

    @property
    def symbol(self) -> str:
        return f"{self.kf.name}+{self.offset}"

    def locals(self) -> dict[str, Any]:
        return dict(self.frame.f_locals)


def kframes(limit: int = 127, frame: Any = None) -> list[KFrame]:
    """Kernel frames of the running simulation, innermost first."""
    f = frame if frame is not None else sys._getframe(1)
    out: list[KFrame] = []
    by_code = _BY_CODE
    while f is not None and len(out) < limit:
        kf = by_code.get(f.f_code)
        if kf is not None:
            out.append(KFrame(kf, f))
        f = f.f_back
    return out


def kstack(limit: int = 127, frame: Any = None) -> list[str]:
    """``["__rmqueue_smallest+12", "rmqueue+40", ...]``, innermost first."""
    return [kf.symbol for kf in kframes(limit, frame if frame is not None else sys._getframe(1))]


def _display_file(path: str) -> str:
    marker = "/mmdbg/sim/"
    i = path.replace("\\", "/").rfind(marker)
    return path[i + len(marker):] if i >= 0 else path


def _annot(a: Any) -> str:
    if a is inspect.Parameter.empty:
        return ""
    return a if isinstance(a, str) else getattr(a, "__name__", str(a))
