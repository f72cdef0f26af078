"""The unsafe builtins' effects on the simulated machine (only compiled with ``--unsafe``).

* ``signal(SIG)`` sends a signal to the simulated current task, through the machine's
  ``send_signal(task, sig)`` (or ``kill(pid, sig)``).  Nothing is ever sent to a host process.
* ``override(RC)`` is compiled inline: it sets ``ev.override`` so the probed kernel function
  returns ``RC`` without running (fault injection).
* ``system(fmt, ...)`` only prints the command it would run (see ``Runtime.system``).
* ``stop()`` (an mmdbg extension) parks the simulation like a breakpoint.  With a stop hook
  installed (the REPL), the hook decides; in batch mode the stop location is printed on stderr
  and the run ends as if ``exit()`` had been called.
"""

from __future__ import annotations

import signal as _signal
from typing import Any


def signal_number(sig: Any) -> int:
    if isinstance(sig, str):
        name = sig.upper()
        if not name.startswith("SIG"):
            name = "SIG" + name
        num = getattr(_signal.Signals, name, None) if hasattr(_signal.Signals, name) else None
        if num is None:
            raise ValueError(f"unknown signal: {sig}")
        return int(num)
    return int(sig)


def send_signal(rt: Any, sig: Any, ev: Any) -> None:
    from mmdbg.probe.runtime import Fatal

    try:
        num = signal_number(sig)
    except ValueError as e:
        raise Fatal(str(e), rt.cur_loc) from None
    if not 1 <= num <= 64:
        raise Fatal(f"invalid signal number: {num}", rt.cur_loc)
    m = rt.machine
    task = ev.task
    for name in ("send_signal", "send_sig"):
        f = getattr(m, name, None)
        if callable(f):
            f(task, num)
            return
    f = getattr(m, "kill", None)
    if callable(f):
        f(getattr(task, "tgid", 0), num)
        return
    if not getattr(rt, "_signal_warned", False):
        rt._signal_warned = True
        rt.err.write(f"WARNING: signal({num}) to pid {getattr(task, 'tgid', 0)} dropped: the "
                     "machine has no signal delivery\n")


def stop_location(ev: Any) -> str:
    try:
        frames = ev.kframes(1)
    except Exception:
        frames = []
    probe = getattr(ev, "probe", None)
    kf = probe if hasattr(probe, "code") and hasattr(probe, "file") else None
    if kf is not None and not (frames and frames[0].kf is kf):
        # a kprobe/kretprobe runs outside the probed function's own frame
        where = f"{kf.name} ({kf.file}:{kf.lineno})"
        if frames:
            f = frames[0]
            where += f", called from {f.symbol} ({f.kf.file}:{f.lineno})"
        return where
    if frames:
        f = frames[0]
        return f"{f.symbol} ({f.kf.file}:{f.lineno})"
    return "no kernel frame"


def stop_here(rt: Any, ev: Any, probe: str) -> None:
    where = stop_location(ev)
    task = ev.task
    who = ""
    if task is not None:
        who = f", pid {getattr(task, 'tgid', 0)} ({getattr(task, 'comm', '?')})"
    try:
        cpu = ev.cpu
    except Exception:
        cpu = 0
    text = f"Stopped by stop() in {probe} at {where}, cpu {cpu}{who}, time {ev.nsecs} ns"
    rt.stopped_at = text
    if rt.on_stop is not None:
        rt.on_stop(ev, text)
        return
    rt.err.write(text + "\n")
    req = getattr(rt.machine, "request_stop", None)
    if callable(req):
        try:
            req(text)
        except TypeError:
            req()
    rt.exit(0)
