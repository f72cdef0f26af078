"""Execution control: the simulation in a worker thread, stops, breakpoints, watchpoints.

gdb's model on a simulated kernel.  Kernel work (``run``, ``call``, writes to /proc ...)
runs on one *sim thread*; the shell's thread owns the terminal.  A stop -- a breakpoint, a
watchpoint, ``step``, ``finish``, Ctrl-C -- *parks* the sim thread where it is, inside the
kernel function, and hands control to the shell with a :class:`threading.Event`:

* the machine is consistent there: a breakpoint is a kprobe handler, which runs before the
  probed function does anything, and the other stops happen at kernel-function entries and
  returns, between the kernel's own steps;
* the live Python frames of the parked thread *are* the kernel stack (``bt``, ``frame N``,
  ``info locals`` read their arguments and locals);
* ``continue`` sets the resume event; the sim thread goes on exactly where it stopped.

Stepping uses ``sys.settrace`` on the sim thread only while a ``step``/``next``/``finish``
or a software watchpoint needs it, filtered to kernel functions (``trace._BY_CODE``), so a
plain ``run`` costs nothing.  Breakpoints use the attach surface (kprobes, kretprobes,
tracepoints); conditions are probe-language expressions compiled by ``mmdbg.probe.expr``.

The same engine serves the REPL (foreground runs, or background ones with ``&``), command
files and tests: a foreground command waits for the next stop, then prints gdb's banner.
"""

from __future__ import annotations

import contextlib
import linecache
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mmdbg.sim import trace

IDLE = "idle"  # no kernel work in progress
RUNNING = "running"
STOPPED = "stopped"

# names of the parameters that hold a gfp mask or flags (printed in hex, as gdb shows
# gfp_t values when the type is a bitwise enum) and those that are pages (pfns)
_HEX_PARAMS = ("gfp", "flags", "mask", "address", "addr", "start", "end", "ip", "sp",
               "pfn", "error_code", "vm_flags")
_PAGE_PARAMS = {"page", "folio", "head", "new", "old", "src", "dst"}
_PAGE_RETURNING = ("alloc_pages", "alloc_folio", "rmqueue", "get_page_from_freelist",
                   "__rmqueue", "alloc_anon_folio", "vma_alloc_folio", "alloc_slab_page",
                   "alloc_pages_node")


class SimKilled(BaseException):
    """Raised inside the sim thread to abandon a job (never while the kernel is mid-way)."""


# ---------------------------------------------------------------------------------------
# Breakpoints and watchpoints


@dataclass
class Breakpoint:
    number: int
    type: str  # "breakpoint", "hw watchpoint", "read watchpoint", "acc watchpoint"
    location: str  # what the user typed, canonicalised: "__alloc_pages", "kmem:mm_page_alloc"
    kind: str  # "entry", "return", "tracepoint", "watch"
    target: Any = None  # KernelFunction or Tracepoint
    disp: str = "keep"  # keep | del | dis
    enabled: bool = True
    cond_text: str = ""
    cond: Any = None
    ignore_count: int = 0
    hits: int = 0
    commands: list[str] = field(default_factory=list)
    enable_count: int = 0  # "enable count N": disable after N more hits
    attachment: Any = None
    watch: Any = None  # a Watch for watchpoints
    temporary: bool = False

    @property
    def is_watchpoint(self) -> bool:
        return self.kind == "watch"

    def what(self) -> str:
        if self.is_watchpoint:
            return self.watch.expr
        if self.kind == "tracepoint":
            return f"tracepoint:{self.location}"
        kf = self.target
        where = f"{kf.file}:{body_line(kf)}"
        if self.kind == "return":
            return f"in {kf.name} at {where} (on return)"
        return f"in {kf.name} at {where}"

    def address(self) -> str:
        if self.is_watchpoint or self.kind == "tracepoint":
            return ""
        return f"0x{kfunc_address(self.target):016x}"


class Watch:
    """What a watchpoint watches: a value read by ``read()`` (None: unreadable)."""

    def __init__(self, expr: str, read: Callable[[], Any], fmt: Callable[[Any], str],
                 *, phys: tuple[int, int] | None = None) -> None:
        self.expr = expr
        self.read = read
        self.fmt = fmt
        self.phys = phys  # (paddr, len) for memory watchpoints
        self.old: Any = None

    def snapshot(self) -> None:
        try:
            self.old = self.read()
        except Exception:
            self.old = None


# ---------------------------------------------------------------------------------------
# Frames of a stopped simulation


@dataclass
class Frame:
    """One kernel frame of the stopped sim thread (#0 may be a kprobe entry: no locals)."""

    kf: Any
    args: dict[str, Any]
    lineno: int
    pyframe: Any = None  # None for a function entered but not started (breakpoint)

    def locals(self) -> dict[str, Any]:
        if self.pyframe is None:
            return {}
        params = set(self.kf.param_names)
        return {k: v for k, v in self.pyframe.f_locals.items()
                if k not in params and not k.startswith("_")}

    def all_values(self) -> dict[str, Any]:
        d = dict(self.args)
        if self.pyframe is not None:
            d.update({k: v for k, v in self.pyframe.f_locals.items() if not k.startswith("__")})
        return d


@dataclass
class Stop:
    reason: str  # breakpoint, watchpoint, step, finish, signal, until, probe
    bp: Breakpoint | None = None
    ev: Any = None
    frames: list[Frame] = field(default_factory=list)
    value: Any = None  # finish: the returned value
    has_value: bool = False
    finish_from: Frame | None = None
    message: list[str] = field(default_factory=list)  # extra lines (watchpoint values)
    task: Any = None
    time_ns: int = 0


def body_line(kf: Any) -> int:
    """The first line of a kernel function's body (after decorators, def and docstring)."""
    first = kf.code.co_firstlineno
    lines = [ln for _, _, ln in kf.code.co_lines() if ln and ln > first]
    return min(lines) if lines else first


def kfunc_address(kf: Any) -> int:
    """A stable kernel text address for a function (for the Address column)."""
    return 0xFFFFFFFF81000000 + (_stable_hash(kf.module + "." + kf.name) & 0xFFFFF0)


def _stable_hash(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def format_value(name: str, v: Any) -> str:
    """An argument as gdb prints it in a frame line."""
    from mmdbg.sim.mm.mm_types import pfn_to_page_addr

    if v is None:
        return "0x0"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        lname = name.lower()
        if lname in _PAGE_PARAMS and v >= 0:
            return f"0x{pfn_to_page_addr(v):x}"
        if any(h in lname for h in _HEX_PARAMS):
            return f"0x{v & 0xFFFFFFFFFFFFFFFF:x}"
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    addr = object_address(v)
    if addr:
        return f"0x{addr:x}"
    kt = getattr(type(v), "ktype", None)
    if kt:
        return f"<{kt}>"
    if isinstance(v, list | tuple | dict):
        return f"<{type(v).__name__}[{len(v)}]>"
    return f"<{type(v).__name__}>"


def object_address(obj: Any) -> int:
    """The simulated kernel address of an object (0 when it has none)."""
    from mmdbg.shell import kaddr

    addr = getattr(obj, "addr", None)
    if isinstance(addr, int) and addr:
        return addr
    kt = getattr(type(obj), "ktype", None)
    try:
        if kt == "zone":
            return kaddr.zone_addr(obj)
        if kt == "pglist_data":
            return kaddr.pgdat_addr(obj)
    except Exception:
        return 0
    return 0


def is_machine(v: Any) -> bool:
    return type(v).__name__ == "Machine"


def frame_args(fr: Frame) -> str:
    return ", ".join(f"{k}={format_value(k, v)}" for k, v in fr.args.items() if not is_machine(v))


def frame_line(fr: Frame) -> str:
    """``__alloc_pages (gfp_mask=0xcc0, order=3, ...) at mm/page_alloc.py:680``"""
    return f"{fr.kf.name} ({frame_args(fr)}) at {fr.kf.file}:{fr.lineno}"


def source_line(fr: Frame) -> str:
    path = fr.kf.code.co_filename
    text = linecache.getline(path, fr.lineno).rstrip("\n")
    return f"{fr.lineno}\t{text}" if text else ""


def frames_from(pyframe: Any, entry: tuple[Any, dict[str, Any]] | None = None) -> list[Frame]:
    """The kernel frames of a parked sim thread, innermost first."""
    out: list[Frame] = []
    if entry is not None:
        kf, args = entry
        out.append(Frame(kf, args, body_line(kf), None))
    for kfr in trace.kframes(127, pyframe):
        f = kfr.frame
        args = {}
        loc = f.f_locals
        for p in kfr.kf.param_names:
            if p in loc:
                args[p] = loc[p]
        out.append(Frame(kfr.kf, args, f.f_lineno, f))
    return out


def returns_page(kf: Any) -> bool:
    ann = getattr(kf.func, "__annotations__", {}).get("return", "")
    ann = ann if isinstance(ann, str) else getattr(ann, "__name__", str(ann))
    return "int" in ann and any(s in kf.name for s in _PAGE_RETURNING)


def returns_void(kf: Any) -> bool:
    ann = getattr(kf.func, "__annotations__", {}).get("return", "")
    return ann in ("None", None) or ann is type(None)


# ---------------------------------------------------------------------------------------
# The engine


@dataclass
class Job:
    fn: Callable[[], Any]
    describe: str  # "call __alloc_pages(GFP_KERNEL, 3)" -- what entered the kernel
    on_error: Callable[[BaseException], None] | None = None
    error: BaseException | None = None
    done: bool = False
    result: Any = None


class Debugger:
    """Breakpoints, watchpoints and the sim thread of one shell session."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.breakpoints: dict[int, Breakpoint] = {}
        self.next_number = 1
        self.state = IDLE
        self.stop: Stop | None = None
        self.selected = 0  # frame number selected by frame/up/down
        self.job: Job | None = None
        self.background = False
        self.last_stop_bp: Breakpoint | None = None
        self.on_change: Callable[[], None] | None = None  # the REPL redraws its prompt
        # sim-thread state
        self._thread: threading.Thread | None = None
        self._sim_ident: int | None = None
        self._handoff = threading.Event()  # set by the sim thread: stopped or job done
        self._resume = threading.Event()  # set by the shell: go on
        self._mode = "continue"  # how to go on: continue | step | next | finish | until
        self._mode_arg: Any = None
        self._skip_code: Any = None  # step from a kprobe entry: skip that function's own call
        self._ref_depth = 0
        self._finish_frame: Any = None
        self._finish_ev: Any = None
        self._finish_att: Any = None
        self._finish_from: Any = None
        self._interrupt = False
        self._interrupt_atts: list[Any] = []
        self._in_commands = False
        self.pending_resume: tuple[str, Any] | None = None
        self._lock = threading.RLock()
        self.sim_runner: Callable[[int | None, Callable[[], bool]], Any] | None = None
        self.scenario: Any = None  # (name, params) of a loaded scenario
        self._hidden = 0
        session.debugger = self
        session.runner = self.run_command

    # -- machine -------------------------------------------------------------------------
    @property
    def machine(self) -> Any:
        return self.session.machine

    def on_sim_thread(self) -> bool:
        return threading.get_ident() == self._sim_ident

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def stopped(self) -> bool:
        return self.state == STOPPED

    def _changed(self) -> None:
        cb = self.on_change
        if cb is not None:
            with contextlib.suppress(Exception):
                cb()

    # -- breakpoints -------------------------------------------------------------------
    def new_number(self) -> int:
        n = self.next_number
        self.next_number += 1
        return n

    def add(self, bp: Breakpoint) -> Breakpoint:
        self.breakpoints[bp.number] = bp
        if bp.enabled:
            self._arm(bp)
        return bp

    def _arm(self, bp: Breakpoint) -> None:
        if bp.attachment is not None:
            return
        m = self.machine

        def handler(ev: Any, bp: Breakpoint = bp) -> None:
            self._hit(bp, ev, sys._getframe(1))

        if bp.kind == "entry":
            bp.attachment = bp.target.attach(handler, ret=False, machine=m)
        elif bp.kind == "return":
            bp.attachment = bp.target.attach(handler, ret=True, machine=m)
        elif bp.kind == "tracepoint":
            bp.attachment = bp.target.attach(handler, machine=m)
        elif bp.kind == "watch":
            bp.watch.snapshot()
            if bp.watch.phys is not None:
                bp.attachment = _PhysWatch(self, bp)
            else:
                bp.attachment = _SoftWatch()

    def _disarm(self, bp: Breakpoint) -> None:
        att, bp.attachment = bp.attachment, None
        if att is not None:
            with contextlib.suppress(Exception):
                att.detach()

    def hidden_number(self) -> int:
        self._hidden -= 1
        return self._hidden

    def delete(self, bp: Breakpoint) -> None:
        self._disarm(bp)
        self.breakpoints.pop(bp.number, None)

    def set_enabled(self, bp: Breakpoint, on: bool) -> None:
        bp.enabled = on
        if on:
            self._arm(bp)
        else:
            self._disarm(bp)

    def rearm_all(self) -> None:
        """After the machine was replaced (scenario restart): attach everything again."""
        for bp in self.breakpoints.values():
            self._disarm(bp)
            if bp.enabled:
                self._arm(bp)

    def soft_watches(self) -> list[Breakpoint]:
        return [b for b in self.breakpoints.values()
                if b.is_watchpoint and b.enabled and isinstance(b.attachment, _SoftWatch)]

    # -- hits (sim thread) ---------------------------------------------------------------
    def _hit(self, bp: Breakpoint, ev: Any, frame: Any) -> None:
        if not self.on_sim_thread() or not bp.enabled:
            return
        if bp.cond is not None:
            ok = bp.cond(ev)
            err = bp.cond.error
            if err:
                bp.hits += 1
                self._park(Stop("breakpoint", bp, ev, message=[
                    f"Error in testing condition for breakpoint {bp.number}:", err]),
                    frame, entry=self._entry_of(bp, ev))
                return
            if not ok:
                return
        bp.hits += 1
        if bp.ignore_count > 0:
            bp.ignore_count -= 1
            return
        if bp.enable_count > 0:
            bp.enable_count -= 1
            if bp.enable_count == 0:
                bp.disp = "keep"
                self.set_enabled(bp, False)
        if bp.disp == "dis":
            bp.disp = "keep"
            self.set_enabled(bp, False)
        stop = Stop("breakpoint", bp, ev)
        if bp.kind == "return":
            stop.value, stop.has_value = ev.retval, not returns_void(bp.target)
        self._park(stop, frame, entry=self._entry_of(bp, ev))

    @staticmethod
    def _entry_of(bp: Breakpoint, ev: Any) -> tuple[Any, dict[str, Any]] | None:
        if bp.kind not in ("entry", "return"):
            return None
        try:
            args = ev.args.as_dict()
        except Exception:
            args = {}
        return (bp.target, args)

    def _park(self, stop: Stop, pyframe: Any, entry: tuple[Any, dict] | None = None) -> None:
        """Stop the sim thread here until the shell resumes it (sim thread only)."""
        sys.settrace(None)
        self._detach_interrupt()
        self._interrupt = False
        with contextlib.suppress(Exception):
            self.machine.stop_requested = False
        stop.frames = frames_from(pyframe, entry)
        stop.task = getattr(self.machine, "current", None)
        stop.time_ns = int(getattr(getattr(self.machine, "clock", None), "ns", 0) or 0)
        self.stop = stop
        self.selected = 0
        self.state = STOPPED
        self._resume.clear()
        self._handoff.set()
        self._changed()
        self._resume.wait()
        # resumed
        mode = self._mode
        self.stop = None
        if mode == "kill":
            raise SimKilled()
        self._arm_thread(stop, entry)

    def _arm_thread(self, stop: Stop | None, entry: tuple[Any, dict] | None) -> None:
        """Install what the next resume needs on the sim thread (tracing for step & co)."""
        mode = self._mode
        self._skip_code = entry[0].code if entry is not None else None
        need_trace = mode in ("step", "next", "finish") or bool(self.soft_watches())
        if mode == "finish" and stop is not None:
            fr = stop.frames[self.selected] if stop.frames else None
            if fr is not None and fr.pyframe is None:
                # a function entered but not started: catch its return with a kretprobe
                target_ev = stop.ev

                def on_ret(ev: Any) -> None:
                    if ev is target_ev and self.on_sim_thread():
                        att, self._finish_att = self._finish_att, None
                        if att is not None:
                            att.detach()
                        self._park(Stop("finish", value=ev.retval,
                                        has_value=not returns_void(fr.kf), finish_from=fr),
                                   sys._getframe(1))

                self._finish_att = fr.kf.attach(on_ret, ret=True, machine=self.machine)
                self._finish_frame = None
                need_trace = bool(self.soft_watches())
            elif fr is not None:
                self._finish_frame = fr.pyframe
                self._finish_from = fr
        if need_trace:
            self._trace_count = 0
            sys.settrace(self._tracer)
            if mode == "finish" and self._finish_frame is not None:
                self._finish_frame.f_trace = self._local_tracer
                self._finish_frame.f_trace_lines = False
            for fr in (stop.frames if stop is not None else []):
                if fr.pyframe is not None and self.soft_watches():
                    fr.pyframe.f_trace = self._local_tracer
                    fr.pyframe.f_trace_lines = False

    # -- tracing (sim thread) --------------------------------------------------------------
    def _tracer(self, frame: Any, event: str, arg: Any) -> Any:
        if event != "call":
            return None
        kf = trace._BY_CODE.get(frame.f_code)
        if kf is None:
            return None
        if self._check_watches(frame.f_back, "call"):
            return None
        mode = self._mode
        if self._skip_code is not None and frame.f_code is self._skip_code:
            self._skip_code = None
            return self._local_or_none()
        self._skip_code = None
        if mode == "step" or self._interrupt:
            reason = "signal" if self._interrupt else "step"
            self._park(Stop(reason), frame)
            return self._local_or_none()
        if mode == "next":
            depth = len(trace.kframes(127, frame))
            if depth <= self._ref_depth:
                self._park(Stop("step"), frame)
                return self._local_or_none()
        return self._local_or_none()

    def _local_or_none(self) -> Any:
        if self.soft_watches():
            return self._local_tracer
        return None

    def _local_tracer(self, frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_lines = False
        if event != "return":
            return self._local_tracer
        if frame is self._finish_frame and self._mode == "finish":
            self._finish_frame = None
            fr = self._finish_from
            self._park(Stop("finish", value=arg, has_value=not returns_void(fr.kf),
                            finish_from=fr), frame.f_back)
            return None
        if trace._BY_CODE.get(frame.f_code) is not None:
            self._check_watches(frame, "return")
        return None

    def _check_watches(self, frame: Any, event: str) -> bool:
        for bp in self.soft_watches():
            w = bp.watch
            try:
                new = w.read()
            except Exception:
                new = None
            if new != w.old:
                old, w.old = w.old, new
                if self._watch_hit(bp, old, new, frame):
                    return True
        return False

    def _watch_hit(self, bp: Breakpoint, old: Any, new: Any, frame: Any,
                   read: bool = False) -> bool:
        if not self.on_sim_thread():
            return False
        w = bp.watch
        ev = _WatchEvent(self.machine, old, new)
        if bp.cond is not None and not bp.cond(ev):
            return False
        bp.hits += 1
        if bp.ignore_count > 0:
            bp.ignore_count -= 1
            return False
        if read:
            msg = [f"Value = {w.fmt(new)}"]
        else:
            msg = [f"Old value = {w.fmt(old)}", f"New value = {w.fmt(new)}"]
        self._park(Stop("watchpoint", bp, message=msg), frame)
        return True

    # -- Ctrl-C ----------------------------------------------------------------------------
    def interrupt(self) -> None:
        """Ask the running simulation to stop at the next kernel-function entry."""
        if self.state != RUNNING:
            return
        self._interrupt = True
        with contextlib.suppress(Exception):
            self.machine.stop_requested = True
        if not self._interrupt_atts:
            m = self.machine

            def on_entry(ev: Any) -> None:
                if self._interrupt and self.on_sim_thread():
                    self._park(Stop("signal", ev=ev), sys._getframe(1),
                               entry=(ev.probe, _safe_args(ev)))

            seen = set()
            for kf in list(trace.KFUNCS.values()):
                if id(kf) in seen:
                    continue
                seen.add(id(kf))
                with contextlib.suppress(Exception):
                    self._interrupt_atts.append(kf.attach(on_entry, machine=m))

    def _detach_interrupt(self) -> None:
        atts, self._interrupt_atts = self._interrupt_atts, []
        for a in atts:
            with contextlib.suppress(Exception):
                a.detach()

    # -- jobs ------------------------------------------------------------------------------
    def start(self, fn: Callable[[], Any], describe: str,
              on_error: Callable[[BaseException], None] | None = None) -> Job:
        """Start kernel work on a new sim thread (the machine must be idle)."""
        assert self.state == IDLE, self.state
        job = Job(fn, describe, on_error)
        self.job = job
        self._mode = "continue"
        self._interrupt = False
        self._handoff.clear()
        self.state = RUNNING
        t = threading.Thread(target=self._main, args=(job,), name="mmdbg-sim", daemon=True)
        self._thread = t
        t.start()
        self._changed()
        return job

    def _main(self, job: Job) -> None:
        self._sim_ident = threading.get_ident()
        try:
            self.machine.activate()
            self._arm_thread(None, None)
            job.result = job.fn()
        except SimKilled:
            pass
        except BaseException as e:  # reported by the shell
            job.error = e
        finally:
            sys.settrace(None)
            self._detach_interrupt()
            if self._finish_att is not None:
                with contextlib.suppress(Exception):
                    self._finish_att.detach()
                self._finish_att = None
            job.done = True
            self._sim_ident = None
            self.stop = None
            self.state = IDLE
            self._interrupt = False
            with contextlib.suppress(Exception):
                self.machine.stop_requested = False
            self._handoff.set()
            self._changed()

    def resume(self, mode: str = "continue", arg: Any = None) -> None:
        """Let the parked sim thread go on (shell thread)."""
        assert self.state == STOPPED
        stop = self.stop
        self._mode = mode
        self._mode_arg = arg
        if mode == "next" and stop is not None:
            self._ref_depth = len(stop.frames) - self.selected
        self._handoff.clear()
        self.state = RUNNING
        self._resume.set()
        self._changed()

    def wait(self) -> Stop | Job | None:
        """Wait (shell thread) for the sim thread to stop or finish its job.

        Ctrl-C while waiting interrupts the simulation (it stops at the next kernel
        function entry or run slice) instead of the shell.
        """
        while True:
            try:
                if self._handoff.wait(0.05):
                    break
            except KeyboardInterrupt:
                self.interrupt()
        self._handoff.clear()
        if self.state == STOPPED:
            return self.stop
        return self.job

    def kill(self) -> None:
        """Abandon the stopped job (used on quit): the sim thread unwinds."""
        if self.state == STOPPED:
            self._mode = "kill"
            self._handoff.clear()
            self._resume.set()
            self._handoff.wait(2)

    # -- commands that run kernel code --------------------------------------------------
    def run_command(self, cmd: Any, ctx: Any, args: list[str]) -> None:
        """The session's runner: kernel-running commands go to the sim thread."""
        if (cmd.name not in KERNEL_COMMANDS and not getattr(cmd, "kernel", False)) \
                or self.on_sim_thread() or self.state == STOPPED:
            cmd.func(ctx, args)
            return
        if self.state == RUNNING:
            from mmdbg.shell.errors import CommandError

            raise CommandError("The simulation is running: wait, or stop it with "
                               "\"interrupt\" (Ctrl-C).")
        text = f"{ctx.name} {ctx.argtext}".strip()

        def on_error(e: BaseException) -> None:
            self.session.report_exception(cmd, ctx, e)

        job = self.start(lambda: cmd.func(ctx, args), text, on_error)
        res = self.wait()
        if not isinstance(res, Stop):
            if job.error is not None:
                e, job.error = job.error, None
                raise e
            return
        self.run_foreground(self.session.out, first=res)

    def go(self, mode: str = "continue", arg: Any = None, *, background: bool = False) -> None:
        """Resume the stopped simulation; in the foreground, wait for the next stop."""
        self.resume(mode, arg)
        self.wait_or_monitor(background)

    def wait_or_monitor(self, background: bool) -> None:
        if background:
            self.background = True
            t = threading.Thread(target=self._monitor, name="mmdbg-monitor", daemon=True)
            t.start()
            return
        self.run_foreground(self.session.out)

    def _monitor(self) -> None:
        try:
            self.run_foreground(self.session.out)
        finally:
            self.background = False
            self._changed()

    # -- foreground control, reporting ----------------------------------------------------
    def run_foreground(self, out: Any, first: Stop | None = None) -> None:
        """Wait for the next stop or the end of the job and report it; run bp commands."""
        while True:
            if first is not None:
                res: Any = first
                first = None
            else:
                res = self.wait()
            if isinstance(res, Stop):
                self.report_stop(res, out)
                if self._run_commands(res):
                    continue
                return
            self._report_job_end(res)
            return

    def _run_commands(self, stop: Stop) -> bool:
        """Run the stopped breakpoint's commands; True if one of them resumed."""
        bp = stop.bp
        if bp is None or not bp.commands:
            return False
        self.pending_resume = None
        self._in_commands = True
        try:
            for line in bp.commands:
                if line.strip() == "silent":
                    continue
                self.session.execute(line)
                if self.pending_resume is not None:
                    break
        finally:
            self._in_commands = False
        if self.pending_resume is not None and self.state == STOPPED:
            mode, arg = self.pending_resume
            self.pending_resume = None
            self.resume(mode, arg)
            return True
        return False

    @property
    def in_commands(self) -> bool:
        return self._in_commands

    def _report_job_end(self, job: Job | None) -> None:
        if job is None:
            return
        if job.error is not None:
            if job.on_error is not None:
                job.on_error(job.error)
            else:
                e = job.error
                self.session.error(f"mmdbg: internal error: {type(e).__name__}: {e}")
                if self.session.variables.get("debug"):
                    self.session.error("".join(traceback.format_exception(e)).rstrip("\n"))
            job.error = None

    def report_stop(self, stop: Stop, out: Any) -> None:
        bp = stop.bp
        silent = bp is not None and bp.commands and bp.commands[0].strip() == "silent"
        lines: list[str] = []
        fr = stop.frames[0] if stop.frames else None
        if stop.reason == "breakpoint" and bp is not None and bp.number < 0:  # until/advance
            self.delete(bp)
            if fr is not None:
                lines.append(frame_line(fr))
            bp = None
        elif stop.reason == "breakpoint" and bp is not None:
            if stop.message and stop.message[0].startswith("Error in testing"):
                lines += stop.message
                stop.message = []
            head = "Temporary breakpoint" if bp.temporary else "Breakpoint"
            if bp.kind == "tracepoint":
                lines.append("")
                lines.append(f"{head} {bp.number}, tracepoint:{bp.location} "
                             f"({_tp_fields(stop.ev)})")
                if fr is not None:
                    lines.append(frame_line(fr))
            elif fr is not None:
                lines.append("")
                lines.append(f"{head} {bp.number}, {frame_line(fr)}")
                if bp.kind == "return" and stop.has_value:
                    lines.append(f"Value returned is {self._value_text(bp.target, stop.value)}")
            if bp.temporary or bp.disp == "del":
                self.delete(bp)
        elif stop.reason == "watchpoint" and bp is not None:
            lines.append("")
            lines.append(f"{_watch_title(bp)} {bp.number}: {bp.watch.expr}")
            lines.append("")
            lines += stop.message
            if fr is not None:
                lines.append(frame_line(fr))
        elif stop.reason == "signal":
            lines.append("")
            lines.append("Program received signal SIGINT, Interrupt.")
            if fr is not None:
                lines.append(frame_line(fr))
            else:
                lines.append(f"(between kernel events, at {stop.time_ns} ns)")
        elif stop.reason == "finish":
            if fr is not None:
                lines.append(frame_line(fr))
                sl = source_line(fr)
                if sl:
                    lines.append(sl)
            if stop.has_value and stop.finish_from is not None:
                lines.append(f"Value returned is "
                             f"{self._value_text(stop.finish_from.kf, stop.value)}")
            fr = None
        elif stop.reason == "probe":
            lines += stop.message
            if fr is not None:
                lines.append(frame_line(fr))
        else:  # step, until
            if fr is not None:
                lines.append(frame_line(fr))
        if fr is not None and stop.reason != "finish":
            sl = source_line(fr)
            if sl:
                lines.append(sl)
        if bp is not None:
            self.last_stop_bp = bp
        if silent:
            return
        for ln in lines:
            out.write(ln + "\n")
        out.flush()

    def _value_text(self, kf: Any, value: Any) -> str:
        from mmdbg.sim.mm.mm_types import pfn_to_page_addr

        if returns_page(kf):
            addr = pfn_to_page_addr(value) if isinstance(value, int) and value >= 0 else 0
            n = self.session.record_value("struct page *", addr)
            return f"${n} = (struct page *) 0x{addr:x}"
        if value is None:
            n = self.session.record_value("void *", 0)
            return f"${n} = 0x0"
        if isinstance(value, bool):
            n = self.session.record_value("bool", int(value))
            return f"${n} = {'true' if value else 'false'}"
        if isinstance(value, int):
            n = self.session.record_value("long", value)
            return f"${n} = {value}"
        addr = object_address(value)
        n = self.session.record_value("void *", addr)
        kt = getattr(type(value), "ktype", None)
        return f"${n} = ({'struct ' + kt + ' *' if kt else 'void *'}) 0x{addr:x}"

    # -- frames --------------------------------------------------------------------------
    def frames(self) -> list[Frame]:
        return self.stop.frames if self.stop is not None else []


def _safe_args(ev: Any) -> dict[str, Any]:
    try:
        return ev.args.as_dict()
    except Exception:
        return {}


def _tp_fields(ev: Any) -> str:
    if ev is None:
        return ""
    try:
        d = vars(ev.args)
    except TypeError:
        return ""
    return ", ".join(f"{k}={format_value(k, v)}" for k, v in d.items())


def _watch_title(bp: Breakpoint) -> str:
    return {"hw watchpoint": "Hardware watchpoint",
            "read watchpoint": "Hardware read watchpoint",
            "acc watchpoint": "Hardware access (read/write) watchpoint"}[bp.type]


class _WatchEvent:
    """What a watchpoint condition sees: no args; ``retval`` is the new value."""

    def __init__(self, machine: Any, old: Any, new: Any) -> None:
        self.machine = machine
        self.args = None
        self.retval = new if isinstance(new, int) else 0
        self.override = None
        self.probe = "watchpoint"

    @property
    def task(self) -> Any:
        return getattr(self.machine, "current", None)

    @property
    def cpu(self) -> int:
        return int(getattr(self.machine, "cpu", 0) or 0)

    @property
    def nsecs(self) -> int:
        return int(getattr(getattr(self.machine, "clock", None), "ns", 0) or 0)

    def kstack(self, limit: int = 127) -> list[str]:
        return trace.kstack(limit, sys._getframe(1))

    def kframes(self, limit: int = 127) -> list[Any]:
        return trace.kframes(limit, sys._getframe(1))


class _SoftWatch:
    """A software watchpoint: checked at kernel-function calls and returns (tracer)."""

    def detach(self) -> None:
        pass


class _PhysWatch:
    """A memory watchpoint: wraps the machine's PhysMem read/write while it exists."""

    def __init__(self, dbg: Debugger, bp: Breakpoint) -> None:
        self.dbg = dbg
        self.bp = bp
        self.pm = dbg.machine.physmem
        _PhysHook.install(self.pm).watches.append(self)

    def overlaps(self, paddr: int, size: int) -> bool:
        a, n = self.bp.watch.phys  # type: ignore[misc]
        return paddr < a + n and a < paddr + size

    def detach(self) -> None:
        hook = _PhysHook.of(self.pm)
        if hook is not None and self in hook.watches:
            hook.watches.remove(self)
            if not hook.watches:
                hook.uninstall()


class _PhysHook:
    """Instance-level wrappers of ``PhysMem.read``/``write`` (PhysMem has __slots__, so the
    hook swaps the machine's physmem for a subclass instance sharing the same pages)."""

    _hooks: dict[int, _PhysHook] = {}

    def __init__(self, pm: Any) -> None:
        self.pm = pm
        self.watches: list[_PhysWatch] = []
        self.orig_cls = type(pm)

    @classmethod
    def of(cls, pm: Any) -> _PhysHook | None:
        return cls._hooks.get(id(pm))

    @classmethod
    def install(cls, pm: Any) -> _PhysHook:
        hook = cls._hooks.get(id(pm))
        if hook is not None:
            return hook
        hook = cls(pm)
        cls._hooks[id(pm)] = hook
        base = type(pm)

        class WatchedPhysMem(base):  # type: ignore[valid-type, misc]
            __slots__ = ()

            def read(self, paddr: int, size: int) -> bytes:
                data = base.read(self, paddr, size)
                for w in list(hook.watches):
                    if w.bp.type in ("read watchpoint", "acc watchpoint") and w.overlaps(
                            paddr, size):
                        val = w.bp.watch.read()
                        w.dbg._watch_hit(w.bp, val, val, sys._getframe(1), read=True)
                return data

            def write(self, paddr: int, data: bytes) -> None:
                olds = [(w, w.bp.watch.read()) for w in hook.watches
                        if w.overlaps(paddr, len(data))]
                base.write(self, paddr, data)
                for w, old in olds:
                    new = w.bp.watch.read()
                    if new != old:
                        w.bp.watch.old = new
                        w.dbg._watch_hit(w.bp, old, new, sys._getframe(1))

        pm.__class__ = WatchedPhysMem
        return hook

    def uninstall(self) -> None:
        self.pm.__class__ = self.orig_cls
        self._hooks.pop(id(self.pm), None)


def get_debugger(session: Any) -> Debugger:
    """The session's debugger (created on first use)."""
    dbg = getattr(session, "debugger", None)
    if dbg is None:
        dbg = Debugger(session)
        session.debugger = dbg
    return dbg


# Commands whose work is kernel code: at the shell they run on the sim thread, so a
# breakpoint can stop them (others add theirs with Command attribute ``kernel = True``).
KERNEL_COMMANDS = {"call", "cat", "sysctl", "wr", "spawn", "kill", "insmod", "rmmod",
                   "perf", "trace-cmd", "vmstat"}


# "info SUBCOMMAND": gdb's prefix command; families register their subcommands here
# (name -> (function(ctx, args), one-line summary)); "info" lives in commands/inspect.py.
INFO_COMMANDS: dict[str, tuple[Callable[[Any, list[str]], None], str]] = {}
INFO_ALIASES: dict[str, str] = {}


def info_subcommand(name: str, summary: str, aliases: tuple[str, ...] = ()) -> Callable:
    def deco(fn: Callable[[Any, list[str]], None]) -> Callable[[Any, list[str]], None]:
        INFO_COMMANDS[name] = (fn, summary)
        for a in aliases:
            INFO_ALIASES[a] = name
        return fn

    return deco
