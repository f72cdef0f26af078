"""The scheduler (kernel/sched/core.c, a simplified fair class) over the machine's CPUs.

Tasks are Python generators: a ``yield`` is a preemption point, and the kernel code a task
calls between two yields runs on its CPU and advances that CPU's clock through the cost model
(``vm.cost``: syscall entry, fault entry, zeroing or copying a page, PTE zaps and copies...).
A bare ``yield`` lets the scheduler preempt; yielding a request blocks:

* :class:`Sleep` -- ``TASK_INTERRUPTIBLE`` until the time passes (nanosleep);
* :class:`IoWait` -- ``TASK_UNINTERRUPTIBLE`` for a while (also what disk reads charge);
* :class:`WaitChild` -- wait4(): the value sent back is ``(pid, status)``;
* :class:`Block` -- sleep on a :class:`WaitQueue` until ``wake_up``.

Time: every CPU has its own clock (``rq.clock``); the scheduler always advances the CPU that is
furthest behind, so CPUs run in parallel in simulated time and ``machine.clock`` is the clock of
the CPU running now (it can step back by less than one step between CPUs, as per-CPU
``local_clock()`` values do).  Each step costs at least ``cost.user_step`` (the user code between
two preemption points).  A task runs until it blocks or its slice (``sched_base_slice``,
3 ms) ends while another task waits on its CPU (``nivcsw``); an idle CPU pulls a waiting task
from the busiest run queue.  Context switches load the next mm (``switch_mm_irqs_off``, which
flushes the TLB) or keep the previous one lazily for a kernel thread.

``Scheduler.run(duration_ns)`` advances the machine until no user task is left (init and
kernel threads do not count), nothing can happen any more, a stop is requested
(``machine.stop_requested``) or the duration has passed.
"""

from __future__ import annotations

import contextlib
import heapq
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

from mmdbg.sim.kernel.sched import (
    __TASK_STOPPED,
    PF_KTHREAD,
    TASK_INTERRUPTIBLE,
    TASK_RUNNING,
    TASK_UNINTERRUPTIBLE,
    TaskStruct,
)
from mmdbg.sim.trace import kfunc

_TASK_STOPPED = __TASK_STOPPED

NSEC_PER_MSEC = 1_000_000


class Cost:
    """The cost model (ns).  Real-kernel anchors in reference/performance.md §1."""

    def __init__(self) -> None:
        self.syscall = 200  # getppid round trip
        self.fault = 600  # exception entry/exit and the handler's fixed work
        self.page_zero = 300  # clear_page of 4 KiB (cache-cold)
        self.page_copy = 400  # copy_page
        self.pte_zap = 100
        self.pte_copy = 100
        self.context_switch = 2000
        self.user_step = 1000  # the user code between two preemption points
        self.touch = 20  # a user access that hits the TLB


class Sleep:
    __slots__ = ("ns",)

    def __init__(self, ns: int) -> None:
        self.ns = int(ns)


class IoWait(Sleep):
    __slots__ = ()


class WaitChild:
    __slots__ = ("pid",)

    def __init__(self, pid: int = -1) -> None:
        self.pid = pid


class WaitQueue:
    """``wait_queue_head_t``."""

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.waiters: list[TaskStruct] = []

    def wake_up(self, m: Any) -> None:
        w, self.waiters = self.waiters, []
        for t in w:
            m.vm.sched.wake_up_process(t)


class Block:
    __slots__ = ("wq",)

    def __init__(self, wq: WaitQueue) -> None:
        self.wq = wq


class TaskSched:
    """The per-task scheduler state (the parts of sched_entity this model needs)."""

    __slots__ = ("gen", "on_rq", "pending_block_ns", "send_value", "slice_start",
                 "sum_exec_runtime", "wait", "wake_seq")

    def __init__(self, gen: Generator | None) -> None:
        self.gen = gen
        self.send_value: Any = None
        self.on_rq = False
        self.sum_exec_runtime = 0
        self.slice_start = 0
        self.pending_block_ns = 0
        self.wait: Any = None
        self.wake_seq = 0


class RunQueue:
    """``struct rq``: the CPU's queue, its current task and its clock."""

    ktype = "rq"

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.queue: deque[TaskStruct] = deque()
        self.curr: TaskStruct | None = None
        self.clock = 0
        self.nr_switches = 0

    @property
    def nr_running(self) -> int:
        return len(self.queue) + (1 if self.curr is not None else 0)

    def busy(self) -> bool:
        return self.curr is not None or bool(self.queue)


class Scheduler:
    def __init__(self, m: Any) -> None:
        self.m = m
        self.rqs = [RunQueue(c) for c in range(m.ncpus)]
        self.timers: list[tuple[int, int, int, TaskStruct]] = []
        self.seq = 0
        self.slice_ns = 3 * NSEC_PER_MSEC
        self.running = False
        self.current_step: TaskStruct | None = None

    # -- queueing ----------------------------------------------------------------------
    def select_task_rq(self, t: TaskStruct, fork: bool = False) -> int:
        """The idlest CPU (ties: the task's previous CPU, then the lowest number)."""
        best = None
        for rq in self.rqs:
            key = (rq.nr_running, 0 if rq.cpu == t.cpu else 1, rq.cpu)
            if best is None or key < best[0]:
                best = (key, rq.cpu)
        return best[1]  # type: ignore[index]

    def enqueue(self, t: TaskStruct, cpu: int, now: int) -> None:
        rq = self.rqs[cpu]
        if not rq.busy():
            rq.clock = max(rq.clock, now)
        t.cpu = cpu
        t.se.on_rq = True
        rq.queue.append(t)

    def wake_up_new_task(self, t: TaskStruct) -> None:
        t.state = TASK_RUNNING
        self.enqueue(t, self.select_task_rq(t, True), self.m.clock.ns)

    def wake_up_process(self, t: TaskStruct, at: int | None = None) -> bool:
        if t.se is None or t.se.on_rq or t.exit_state or t.state & _TASK_STOPPED:
            return False
        if t.state == TASK_RUNNING and self._is_curr(t):
            return False
        t.se.wake_seq += 1  # cancels a pending sleep timer
        t.se.wait = None
        t.state = TASK_RUNNING
        now = self.m.clock.ns if at is None else at
        self.enqueue(t, self.select_task_rq(t), now)
        return True

    def _is_curr(self, t: TaskStruct) -> bool:
        return any(rq.curr is t for rq in self.rqs)

    def sleep_until(self, t: TaskStruct, when: int, state: int) -> None:
        t.state = state
        self.seq += 1
        heapq.heappush(self.timers, (when, self.seq, t.se.wake_seq, t))

    def signal_wake_up(self, t: TaskStruct) -> None:
        """A fatal signal wakes an interruptible or killable sleeper (not a D-state I/O)."""
        if t.se is None or t.exit_state:
            return
        if t.state & TASK_INTERRUPTIBLE:
            if isinstance(t.se.wait, Block):
                with contextlib.suppress(ValueError):
                    t.se.wait.wq.waiters.remove(t)
            self.wake_up_process(t)

    def stop_task(self, t: TaskStruct) -> None:
        t.state |= _TASK_STOPPED
        for rq in self.rqs:
            if t in rq.queue:
                rq.queue.remove(t)
                t.se.on_rq = False

    def continue_task(self, t: TaskStruct) -> None:
        if t.state & _TASK_STOPPED:
            t.state &= ~_TASK_STOPPED
            if t.state == TASK_RUNNING and not self._is_curr(t) and t.se is not None:
                t.se.on_rq = False
                self.enqueue(t, self.select_task_rq(t), self.m.clock.ns)

    def dequeue_dead(self, t: TaskStruct) -> None:
        for rq in self.rqs:
            if t in rq.queue:
                rq.queue.remove(t)
            if rq.curr is t:
                rq.curr = None
        if t.se is not None:
            t.se.on_rq = False

    # -- context switch ----------------------------------------------------------------
    def context_switch(self, rq: RunQueue, prev: TaskStruct | None, nxt: TaskStruct) -> None:
        from mmdbg.sim.arch.x86 import tlb

        m = self.m
        m.cpu = rq.cpu
        rq.curr = nxt
        nxt.se.on_rq = False
        m.cpu_curr[rq.cpu] = nxt
        rq.nr_switches += 1
        if nxt.mm is not None:
            tlb.switch_mm_irqs_off(None, nxt.mm, nxt)
        else:
            tlb.enter_lazy_tlb(m, rq.cpu)
        rq.clock += m.vm.cost.context_switch
        nxt.se.slice_start = nxt.se.sum_exec_runtime
        nxt.cpu = rq.cpu

    def _put_prev(self, rq: RunQueue) -> None:
        rq.curr = None
        self.m.cpu_curr[rq.cpu] = self.m.idle_tasks[rq.cpu]
        from mmdbg.sim.arch.x86 import tlb

        tlb.enter_lazy_tlb(self.m, rq.cpu)

    # -- the loop ----------------------------------------------------------------------
    def user_tasks_alive(self) -> bool:
        return any(not t.flags & PF_KTHREAD and t.pid != 1 and not t.exit_state
                   and t.se is not None and t.se.gen is not None
                   for t in self.m.tasks.values())

    def _load_balance(self) -> None:
        idle = [rq for rq in self.rqs if not rq.busy()]
        if not idle:
            return
        for rq in idle:
            busiest = max(self.rqs, key=lambda r: (len(r.queue), -r.cpu))
            if len(busiest.queue) >= 1 and busiest.curr is not None:
                t = busiest.queue.pop()
                t.se.on_rq = False
                self.enqueue(t, rq.cpu, busiest.clock)

    def _fire_timers(self, upto: int) -> None:
        while self.timers and self.timers[0][0] <= upto:
            when, _, seq, t = heapq.heappop(self.timers)
            if t.se is None or seq != t.se.wake_seq or t.exit_state:
                continue
            if t.state & (TASK_INTERRUPTIBLE | TASK_UNINTERRUPTIBLE) and not t.se.on_rq:
                t.se.send_value = None
                self.wake_up_process(t, at=when)

    def run(self, duration_ns: int | None = None,
            until: Callable[[], bool] | None = None) -> str:
        """Advance the simulation; returns why it stopped ("idle", "duration", "stopped")."""
        m = self.m
        m.activate()
        now = max([m.clock.ns] + [rq.clock for rq in self.rqs])
        for rq in self.rqs:
            rq.clock = max(rq.clock, now)
        end = None if duration_ns is None else now + int(duration_ns)
        self.running = True
        reason = "idle"
        try:
            while True:
                if m.stop_requested:
                    reason = "stopped"
                    break
                if until is not None and until():
                    reason = "until"
                    break
                self._load_balance()
                busy = [rq for rq in self.rqs if rq.busy()]
                t_min = min((rq.clock for rq in busy), default=None)
                if m.timer_base.nr_active and self._run_timers(t_min, end):
                    continue
                if self.timers and (t_min is None or self.timers[0][0] <= t_min):
                    nxt_timer = self.timers[0][0]
                    if end is not None and nxt_timer > end:
                        reason = "duration"
                        break
                    if t_min is None and not self.user_tasks_alive():
                        reason = "idle"
                        break
                    self._fire_timers(nxt_timer)
                    continue
                if t_min is None:
                    reason = "idle"
                    break
                if not self.user_tasks_alive():
                    reason = "idle"
                    break
                if end is not None and t_min >= end:
                    reason = "duration"
                    break
                rq = min(busy, key=lambda r: (r.clock, r.cpu))
                self._step(rq)
        finally:
            self.running = False
            top = max(rq.clock for rq in self.rqs)
            if reason == "duration" and end is not None:
                top = max(top, end)
                for rq in self.rqs:
                    rq.clock = max(rq.clock, end) if not rq.busy() else rq.clock
            m.clock.ns = max(m.clock.ns, top)
            m.cpu = 0
        return reason

    def _run_timers(self, t_min: int | None, end: int | None) -> bool:
        """Fire the earliest kernel timer (kernel/timer.py) if it expires before the next
        scheduler event (and the run's end); never while nothing is left to run."""
        h = t_min
        if self.timers and (h is None or self.timers[0][0] < h):
            h = self.timers[0][0]
        if h is None:
            return False
        if end is not None and h > end:
            h = end
        tb = self.m.timer_base
        nx = tb.next_expiry()
        if nx is None or nx > h or not self.user_tasks_alive():
            return False
        return tb.run_due(h)

    def _step(self, rq: RunQueue) -> None:
        m = self.m
        if rq.curr is None:
            nxt = rq.queue.popleft()
            self.context_switch(rq, None, nxt)
        t = rq.curr
        assert t is not None
        m.cpu = rq.cpu
        m.cpu_curr[rq.cpu] = t
        m.clock.ns = rq.clock
        se = t.se
        start = m.clock.ns
        self.current_step = t
        req: Any = None
        from mmdbg.sim.kernel import exit as kexit
        from mmdbg.sim.kernel.signal import TaskKilled, deliver_pending

        try:
            if t.signal_pending and not t.flags & PF_KTHREAD:
                deliver_pending(t)
            if se.gen is None:
                req = Block(WaitQueue("no program"))
            else:
                v, se.send_value = se.send_value, None
                req = se.gen.send(v)
        except StopIteration as e:
            code = e.value if isinstance(e.value, int) else 0
            self._account(rq, t, start)
            kexit.do_exit((code & 0xFF) << 8)
            self._after_exit(rq)
            return
        except TaskKilled as k:
            self._account(rq, t, start)
            kexit.do_exit(k.sig | (0x80 if k.sig in (7, 11, 6, 3, 4, 8) else 0))
            self._after_exit(rq)
            return
        except OSError as e:
            # a simulated program that did not handle a failed system call exits with 1
            t.tty_write(f"{t.comm}: {e.strerror or e}\n")
            self._account(rq, t, start)
            kexit.do_exit(1 << 8)
            self._after_exit(rq)
            return
        finally:
            self.current_step = None
        self._account(rq, t, start)
        self._handle_request(rq, t, req)

    def _account(self, rq: RunQueue, t: TaskStruct, start: int) -> None:
        m = self.m
        if m.clock.ns - start < m.vm.cost.user_step:
            m.clock.ns = start + m.vm.cost.user_step
        d = m.clock.ns - start
        t.se.sum_exec_runtime += d
        t.stime += d
        rq.clock = m.clock.ns

    def _after_exit(self, rq: RunQueue) -> None:
        rq.curr = None
        self._put_prev(rq)

    def _block(self, rq: RunQueue, t: TaskStruct) -> None:
        t.nvcsw += 1
        self._put_prev(rq)

    def _handle_request(self, rq: RunQueue, t: TaskStruct, req: Any) -> None:
        se = t.se
        if se.pending_block_ns:
            ns, se.pending_block_ns = se.pending_block_ns, 0
            if req is None:
                self.sleep_until(t, rq.clock + ns, TASK_UNINTERRUPTIBLE)
                self._block(rq, t)
                return
            if isinstance(req, Sleep):
                req = type(req)(req.ns + ns)
            else:
                rq.clock += ns  # simplification: the CPU waits for the I/O
        if req is None:
            if rq.queue and se.sum_exec_runtime - se.slice_start >= self.slice_ns:
                t.nivcsw += 1
                rq.curr = None
                se.on_rq = True
                rq.queue.append(t)
                self._put_prev(rq)
            return
        if isinstance(req, Sleep):
            state = TASK_UNINTERRUPTIBLE if isinstance(req, IoWait) else TASK_INTERRUPTIBLE
            se.wait = req
            self.sleep_until(t, rq.clock + max(0, req.ns), state)
            self._block(rq, t)
            return
        if isinstance(req, WaitChild):
            from mmdbg.sim.kernel.exit import try_reap

            r = try_reap(self.m, t, req.pid)
            if r is not None:
                se.send_value = r
                return
            se.wait = req
            t.state = TASK_INTERRUPTIBLE
            self._block(rq, t)
            return
        if isinstance(req, Block):
            se.wait = req
            req.wq.waiters.append(t)
            t.state = TASK_INTERRUPTIBLE
            self._block(rq, t)
            return
        raise TypeError(f"{t.comm}[{t.pid}] yielded {req!r}: expected None, Sleep, IoWait, "
                        "WaitChild or Block")

    def child_exited(self, parent: TaskStruct) -> None:
        """do_notify_parent: wake a parent blocked in wait4()."""
        from mmdbg.sim.kernel.exit import try_reap

        se = parent.se
        if se is None or not isinstance(se.wait, WaitChild):
            return
        r = try_reap(self.m, parent, se.wait.pid)
        if r is not None:
            se.send_value = r
            se.wait = None
            self.wake_up_process(parent)


# -- helpers used by kernel code -----------------------------------------------------------
def io_schedule_timeout(m: Any, ns: int) -> None:
    """Wait for I/O: inside a scheduled step the task sleeps (D) after the step; outside the
    scheduler the clock simply advances."""
    sched = m.vm.sched
    t = sched.current_step
    if t is not None and t is m.cpu_curr[m.cpu]:
        t.se.pending_block_ns += ns
    else:
        m.clock.ns += ns


@kfunc(aliases=("try_to_wake_up",))
def wake_up_process(p: TaskStruct) -> bool:
    from mmdbg.sim.trace import current_machine

    return current_machine().vm.sched.wake_up_process(p)


def sched_init(m: Any) -> Scheduler:
    return Scheduler(m)
