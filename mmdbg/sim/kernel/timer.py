"""Timers (kernel/time/timer.c, kernel/time/hrtimer.c): periodic callbacks in simulated time.

``machine.add_timer(interval_ns, callback)`` arms a periodic timer whose first expiry is one
interval from now; it returns a :class:`Timer` whose ``cancel()`` (``del_timer``) disarms it.
The scheduler (:mod:`mmdbg.sim.kernel.sched_core`) runs expired timers between task steps: a
timer fires before the next scheduler event (a task step or a sleeper's wake-up) whose time is
not earlier than its expiry, with ``machine.clock`` set to the expiry and ``machine.cpu`` to
the timer's CPU (0: what ``interval:`` probes see).  Callbacks run in order of expiry, ties in
the order the timers were added, so the same seed fires the same timers at the same times.

Simplification: timers never keep an idle machine alive -- when no task can run any more the
run ends, as a batch run ends with its workload.  A timer that expired more than once while
nothing ran (a long sleep) fires once per missed period, as an hrtimer's overrun would be
counted, so ``interval:`` counts match simulated time.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any


class Timer:
    """``struct hrtimer`` of a periodic timer."""

    ktype = "hrtimer"
    __slots__ = ("base", "cpu", "expires", "function", "id", "interval", "queued")

    def __init__(self, base: TimerBase, interval_ns: int, function: Callable[..., Any],
                 expires: int, cpu: int, ident: int) -> None:
        self.base = base
        self.id = ident  # ties in expiry fire in the order the timers were added
        self.interval = interval_ns
        self.function = function
        self.expires = expires
        self.cpu = cpu
        self.queued = True

    def cancel(self) -> bool:
        """del_timer(): True if the timer was armed."""
        was, self.queued = self.queued, False
        if was:
            self.base.nr_active -= 1
        return was

    remove = detach = cancel


class TimerBase:
    """The machine's timer wheel (one, for every CPU: the simulation is single-threaded)."""

    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.heap: list[tuple[int, int, Timer]] = []
        self.seq = 0
        self.nr_active = 0
        self.running = False

    @property
    def pending(self) -> bool:
        return self.nr_active > 0

    def add_timer(self, interval_ns: int, function: Callable[..., Any], cpu: int = 0) -> Timer:
        interval_ns = int(interval_ns)
        if interval_ns <= 0:
            raise ValueError(f"timer interval must be positive: {interval_ns}")
        self.seq += 1
        t = Timer(self, interval_ns, function, self.m.clock.ns + interval_ns, cpu, self.seq)
        self.nr_active += 1
        self._queue(t)
        return t

    def _queue(self, t: Timer) -> None:
        heapq.heappush(self.heap, (t.expires, t.id, t))

    def next_expiry(self) -> int | None:
        heap = self.heap
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def run_due(self, upto: int) -> bool:
        """Fire the earliest timer if it expired by ``upto``; True if one fired."""
        nx = self.next_expiry()
        if nx is None or nx > upto or self.running:
            return False
        _, _, t = heapq.heappop(self.heap)
        m = self.m
        saved_cpu, saved_ns = m.cpu, m.clock.ns
        m.cpu = t.cpu
        m.clock.ns = t.expires
        t.expires += t.interval
        self._queue(t)
        self.running = True
        try:
            t.function()
        finally:
            self.running = False
            m.cpu = saved_cpu
            m.clock.ns = max(saved_ns, m.clock.ns)
        return True
