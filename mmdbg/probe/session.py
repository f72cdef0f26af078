"""Running a compiled program against a machine: attach, BEGIN, events, exit, END, maps.

The lifecycle is bpftrace's (§9 of reference/bpftrace.md):

1. :meth:`ProbeSession.attach` binds every attach point through the attach surface
   (:mod:`mmdbg.sim.trace`) and reports the count (the banner).  Any attach failure detaches
   what was attached and raises :class:`~mmdbg.probe.errors.ProbeRuntimeError`.
2. :meth:`run_begin` runs the ``begin`` probes.
3. Events arrive while the caller runs the simulation.  ``exit()``, ``stop()`` or a fatal
   runtime error set ``exit_requested`` and detach every probe at once, so nothing fires after
   the program asked to end.
4. :meth:`finish` detaches, runs the ``end`` probes, prints ``"\\n\\n"`` (text mode) and every
   non-empty map sorted by name (unless ``print_maps_on_exit`` is off).

``interval``/``profile`` probes use the machine's timer (``machine.add_timer(ns, callback)``),
``software`` fault events come from :mod:`mmdbg.probe.software`, and
``watchpoint`` probes use ``machine.add_watchpoint(addr, len, mode, callback)``.  A machine
that lacks one of these gets a clear attach error naming the missing method.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any, TextIO

from mmdbg.probe.codegen import CompiledProgram
from mmdbg.probe.errors import ProbeRuntimeError
from mmdbg.probe.output import Output
from mmdbg.probe.probes import ResolvedProbe
from mmdbg.probe.runtime import Runtime


class SpecialEvent:
    """The event context of begin/end/interval/profile/watchpoint probes."""

    __slots__ = ("_cpu", "_frame", "_task", "args", "machine", "override", "probe", "retval")

    def __init__(self, machine: Any, probe: str, cpu: int | None = None, task: Any = None,
                 frame: Any = None):
        self.machine = machine
        self.probe = probe
        self.args = None
        self.retval = 0
        self.override = None
        self._cpu = cpu
        self._task = task
        self._frame = frame  # watchpoints: the Python frame of the access (kstack)

    @property
    def cpu(self) -> int:
        if self._cpu is not None:
            return self._cpu
        f = getattr(self.machine, "smp_processor_id", None)
        try:
            return int(f()) if callable(f) else 0
        except Exception:
            return 0

    @property
    def task(self) -> Any:
        if self._task is not None:
            return self._task
        return getattr(self.machine, "current", None)

    @property
    def nsecs(self) -> int:
        clock = getattr(self.machine, "clock", None)
        return int(getattr(clock, "ns", 0) or 0)

    def kstack(self, limit: int = 127) -> list[str]:
        if self._frame is None:
            return []
        from mmdbg.sim import trace

        return trace.kstack(limit, self._frame)

    def kframes(self, limit: int = 127) -> list[Any]:
        if self._frame is None:
            return []
        from mmdbg.sim import trace

        return trace.kframes(limit, self._frame)


class _Detachable:
    def __init__(self, fn: Callable[[], None]):
        self.fn = fn

    def detach(self) -> None:
        self.fn()


def _call_optional(obj: Any, names: tuple[str, ...], *args: Any) -> bool:
    for n in names:
        f = getattr(obj, n, None)
        if callable(f):
            f(*args)
            return True
    return False


def _index_or_call(obj: Any, i: int) -> Any:
    """``machine.cpu_curr[i]`` whether the machine offers a list or a function."""
    if obj is None:
        return None
    try:
        return obj(i) if callable(obj) else obj[i]
    except Exception:
        return None


def _raw_ok(machine: Any) -> bool:
    """Raw tracepoint handlers read the task, cpu and clock as :class:`~mmdbg.sim.trace.Event`
    does through ``Machine.current``/``smp_processor_id()`` (``cpu_curr[cpu]``, ``cpu``), so
    only a :class:`~mmdbg.sim.machine.Machine` with the stock methods gets them."""
    from mmdbg.sim.machine import Machine

    cls = type(machine)
    return (isinstance(machine, Machine) and cls.current is Machine.__dict__["current"]
            and cls.smp_processor_id is Machine.smp_processor_id)


class ProbeSession:
    """One program attached to one machine."""

    def __init__(self, compiled: CompiledProgram, machine: Any, output: Output, err: TextIO):
        self.compiled = compiled
        self.checked = compiled.checked
        self.machine = machine
        self.output = output
        self.err = err
        self.rt = Runtime(self.checked, machine, output, err, on_exit=self._on_exit)
        self.factories = compiled.bind(self.rt)
        self.attachments: list[Any] = []
        self.begin: list[tuple[str, Callable[[Any], None]]] = []
        self.end: list[tuple[str, Callable[[Any], None]]] = []
        self.attached = False
        self.finished = False

    # -- state --------------------------------------------------------------------------
    @property
    def exit_requested(self) -> bool:
        return self.rt.exit_requested

    @property
    def exit_code(self) -> int:
        return 1 if self.rt.error is not None else self.rt.exit_code

    @property
    def only_special(self) -> bool:
        """True when the program has only begin/end probes (it exits by itself)."""
        return all(r.provider in ("begin", "end") for cp in self.checked.probes for r in cp.resolved)

    def _on_exit(self) -> None:
        self.detach()

    # -- attach -------------------------------------------------------------------------
    def attach(self) -> int:
        count = 0
        try:
            for cp in self.checked.probes:
                factory = self.factories[cp.index]
                for rp in cp.resolved:
                    handler = factory(rp.name, rp.func, rp.provider)
                    self._attach_one(rp, handler)
                    count += 1
        except ProbeRuntimeError:
            self.detach()
            raise
        except Exception as e:
            self.detach()
            raise ProbeRuntimeError(f"attaching failed: {type(e).__name__}: {e}") from None
        self.attached = True
        return count

    def _attach_one(self, rp: ResolvedProbe, handler: Callable[[Any], None]) -> None:
        m = self.machine
        p = rp.provider
        if p == "begin":
            self.begin.append((rp.name, handler))
        elif p == "end":
            self.end.append((rp.name, handler))
        elif p == "tracepoint":
            raw = getattr(handler, "raw", None)
            if raw is not None and _raw_ok(m) and hasattr(rp.target, "attach_raw"):
                # handler(machine, fields): no Event built per event (codegen made it)
                self.attachments.append(rp.target.attach_raw(raw, machine=m))
            else:
                self.attachments.append(rp.target.attach(handler, machine=m))
        elif p in ("kprobe", "fentry"):
            self.attachments.append(rp.target.attach(handler, ret=False, machine=m))
        elif p in ("kretprobe", "fexit"):
            self.attachments.append(rp.target.attach(handler, ret=True, machine=m))
        elif p in ("interval", "profile"):
            self.attachments.append(self._timer(rp, handler))
        elif p == "software":
            self.attachments.append(self._software(rp, handler))
        elif p == "watchpoint":
            self.attachments.append(self._watchpoint(rp, handler))
        else:  # pragma: no cover - the checker only resolves the providers above
            raise ProbeRuntimeError(f"cannot attach {rp.name}")

    def _timer(self, rp: ResolvedProbe, handler: Callable[[Any], None]) -> Any:
        m = self.machine
        add = getattr(m, "add_timer", None)
        if not callable(add):
            raise ProbeRuntimeError(f"{rp.name}: the machine has no timers (machine.add_timer) "
                                    "to drive interval/profile probes")
        if rp.provider == "interval":
            def fire(*_a: Any) -> None:
                handler(SpecialEvent(m, rp.name))
        else:
            def fire(*_a: Any) -> None:
                for cpu in range(max(1, self.rt.ncpus)):
                    task = _index_or_call(getattr(m, "cpu_curr", None), cpu)
                    handler(SpecialEvent(m, rp.name, cpu=cpu, task=task))

        handle = add(rp.period_ns, fire)

        def cancel() -> None:
            if handle is not None and _call_optional(handle, ("cancel", "remove", "detach")):
                return
            _call_optional(m, ("remove_timer", "del_timer", "cancel_timer"), handle)

        return _Detachable(cancel)

    def _software(self, rp: ResolvedProbe, handler: Callable[[Any], None]) -> Any:
        from mmdbg.probe.software import attach_software_event

        try:
            return attach_software_event(self.machine, rp.event, rp.count, handler)
        except LookupError as e:
            raise ProbeRuntimeError(f"{rp.name}: {e}") from None

    def _watchpoint(self, rp: ResolvedProbe, handler: Callable[[Any], None]) -> Any:
        m = self.machine
        add = getattr(m, "add_watchpoint", None)
        if not callable(add):
            raise ProbeRuntimeError(f"{rp.name}: the machine has no watchpoint support "
                                    "(machine.add_watchpoint)")
        addr, length, mode = rp.watch

        def fire(*_a: Any) -> None:
            handler(SpecialEvent(m, rp.name, frame=sys._getframe(1)))

        handle = add(addr, length, mode, fire)

        def remove() -> None:
            if handle is not None and _call_optional(handle, ("remove", "cancel", "detach")):
                return
            _call_optional(m, ("remove_watchpoint", "del_watchpoint"), handle)

        return _Detachable(remove)

    def detach(self) -> None:
        atts, self.attachments = self.attachments, []
        for a in reversed(atts):
            with contextlib.suppress(Exception):  # detaching must never fail the run
                a.detach()

    # -- run ----------------------------------------------------------------------------
    def run_begin(self) -> None:
        for name, h in self.begin:
            if self.rt.exit_requested:
                break
            h(SpecialEvent(self.machine, name))

    def finish(self) -> None:
        """Detach, run END probes, print the maps (once)."""
        if self.finished:
            return
        self.finished = True
        self.detach()
        for name, h in self.end:
            h(SpecialEvent(self.machine, name))
        self.output.end()
        if self.checked.config["print_maps_on_exit"]:
            self.print_maps()

    def print_maps(self) -> None:
        for info in sorted(self.rt.infos, key=lambda m: m.name):
            self.rt.print_map(info.index)
