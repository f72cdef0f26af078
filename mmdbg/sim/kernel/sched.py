"""Tasks (include/linux/sched.h ``task_struct``) and the per-CPU ``current``.

This module holds the task structure every subsystem reads (pid, tgid, comm, uid, mm ...)
and the idle tasks (``swapper/N``) that are ``current`` on a CPU when nothing else runs.
Process creation, the scheduler loop and signals build on it (kernel/fork.c, exit.c).
"""

from __future__ import annotations

from typing import Any

TASK_RUNNING = 0x0000
TASK_INTERRUPTIBLE = 0x0001
TASK_UNINTERRUPTIBLE = 0x0002
__TASK_STOPPED = 0x0004
TASK_STOPPED_BIT = __TASK_STOPPED  # a name that class bodies can use (no mangling)
EXIT_DEAD = 0x0010
EXIT_ZOMBIE = 0x0020
TASK_DEAD = 0x0080

PF_IDLE = 0x00000002
PF_EXITING = 0x00000004
PF_MEMALLOC = 0x00000800
PF_KTHREAD = 0x00200000

TASK_COMM_LEN = 16
THREAD_SIZE = 16384  # x86_64 kernel stack: 4 pages

KTHREAD_STACK_BASE = 0xFFFFC90000000000


class TaskStruct:
    """``struct task_struct``: the fields the memory manager and the debugger read."""

    ktype = "task_struct"
    kfield_aliases = {"__state": "state"}

    def __init__(self, pid: int, comm: str, *, tgid: int | None = None, uid: int = 0,
                 gid: int = 0, flags: int = 0, parent: TaskStruct | None = None) -> None:
        self.pid = pid
        self.tgid = pid if tgid is None else tgid
        self.comm = comm[: TASK_COMM_LEN - 1]
        self.uid = uid
        self.gid = gid
        self.euid = uid
        self.flags = flags
        self.state = TASK_RUNNING  # the kernel's ``__state``; see kfield_aliases
        self.exit_state = 0
        self.parent = parent
        self.real_parent = parent
        self.children: list[TaskStruct] = []
        self.mm: Any = None
        self.active_mm: Any = None
        self.oom_score_adj = 0
        self.oom_victim = False
        self.cpu = 0
        self.prio = 120
        self.static_prio = 120
        self.policy = 0
        self.stack: int = 0
        self.cgroup: Any = None
        self.min_flt = 0
        self.maj_flt = 0
        self.nvcsw = 0
        self.nivcsw = 0
        self.start_time = 0
        self.utime = 0
        self.stime = 0
        self.signal_pending: list[int] = []
        self.addr: int = 0
        # processes and scheduling (kernel/fork.c, kernel/sched_core.py, kernel/signal.py)
        self.exit_code = 0
        self.exit_signal = 17  # SIGCHLD
        self.thread: Any = None  # user registers (ip, sp) the fault path reports
        self.se: Any = None  # scheduler state (sched_core.TaskSched)
        self.last_siginfo: Any = None
        self.rlim: dict[int, int] | None = None
        self.personality_read_implies_exec = False
        self.perf_page_faults = 0  # perf software events: page-faults, minor-, major-faults
        self.perf_minor_faults = 0
        self.perf_major_faults = 0
        self.output: list[str] = []  # what the simulated program wrote to stdout/stderr

    def __repr__(self) -> str:
        return f"<task_struct {self.pid} {self.comm}>"

    def tty_write(self, text: str) -> None:
        """What the program writes to its terminal: kept on the task and copied to the
        machine's console (what ``mmdbg --scenario`` shows on stdout)."""
        self.output.append(text)
        from mmdbg.sim.trace import current_machine

        m = current_machine()
        if m is not None:
            m.console.append(text)

    def is_kthread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)

    def state_char(self) -> str:
        """The one-letter state ps/crash print (RU, IN, UN, ZO ...)."""
        if self.exit_state & EXIT_ZOMBIE:
            return "ZO"
        if self.exit_state & EXIT_DEAD:
            return "DE"
        s = self.state
        if s == TASK_RUNNING:
            return "RU"
        if s & TASK_UNINTERRUPTIBLE:
            return "UN"
        if s & TASK_STOPPED_BIT:
            return "ST"
        return "IN"
