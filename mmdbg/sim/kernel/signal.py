"""Signals (kernel/signal.c): queueing, fatal delivery, and the exits they cause.

A signal is queued on ``task.signal_pending``.  The default action of the signals modelled here
is to terminate (SIGSEGV, SIGBUS, SIGABRT also "dump core"); SIGCHLD is ignored; SIGSTOP and
SIGCONT stop and continue.  Delivery happens at the return to user space: after a fault
handler, a syscall, or when the scheduler resumes the task.  A fatal signal unwinds the
simulated program by raising :class:`TaskKilled` through its generator (the program cannot
catch it: it is a ``BaseException``), and the scheduler turns it into ``do_exit``.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.trace import current_machine, kfunc

SIGHUP = 1
SIGINT = 2
SIGQUIT = 3
SIGILL = 4
SIGTRAP = 5
SIGABRT = 6
SIGBUS = 7
SIGFPE = 8
SIGKILL = 9
SIGUSR1 = 10
SIGSEGV = 11
SIGUSR2 = 12
SIGPIPE = 13
SIGALRM = 14
SIGTERM = 15
SIGCHLD = 17
SIGCONT = 18
SIGSTOP = 19
SIGTSTP = 20

SIGNAL_NAMES = {
    SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
    SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL",
    SIGUSR1: "SIGUSR1", SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE",
    SIGALRM: "SIGALRM", SIGTERM: "SIGTERM", SIGCHLD: "SIGCHLD", SIGCONT: "SIGCONT",
    SIGSTOP: "SIGSTOP", SIGTSTP: "SIGTSTP",
}
SIG_BY_NAME = {v: k for k, v in SIGNAL_NAMES.items()}
SIG_BY_NAME.update({v[3:]: k for k, v in SIGNAL_NAMES.items()})
SIG_KERNEL_COREDUMP = {SIGQUIT, SIGILL, SIGTRAP, SIGABRT, SIGBUS, SIGFPE, SIGSEGV}
SIG_KERNEL_IGNORE = {SIGCHLD, SIGCONT}

SEGV_MAPERR = 1
SEGV_ACCERR = 2
BUS_ADRALN = 1
BUS_ADRERR = 2
SI_USER = 0
SI_KERNEL = 0x80

class TaskKilled(BaseException):
    """Unwinds a simulated program that received a fatal signal."""

    def __init__(self, sig: int, code: int = 0) -> None:
        super().__init__(f"killed by {SIGNAL_NAMES.get(sig, sig)}")
        self.sig = sig
        self.code = code


def parse_signal(text: str) -> int:
    """``9``, ``KILL``, ``SIGKILL`` (case-insensitive) -> 9; ValueError otherwise."""
    t = text.strip().upper()
    if t.isdigit():
        n = int(t)
        if 1 <= n <= 64:
            return n
        raise ValueError(f"invalid signal number {n}")
    if t in SIG_BY_NAME:
        return SIG_BY_NAME[t]
    raise ValueError(f"unknown signal '{text}'")


def sig_fatal(sig: int) -> bool:
    return sig not in SIG_KERNEL_IGNORE and sig not in (SIGSTOP, SIGTSTP)


@kfunc(aliases=("send_signal_locked", "do_send_sig_info"))
def __send_signal_locked(sig: int, info: Any, t: Any) -> int:
    """Queue ``sig`` on ``t`` and wake it if the signal is fatal."""
    m = current_machine()
    if t.exit_state or (t.is_kthread() and sig != SIGKILL):
        return 0
    if sig in SIG_KERNEL_IGNORE:
        if sig == SIGCONT:
            m.vm.sched.continue_task(t)
        return 0
    if sig in (SIGSTOP, SIGTSTP):
        m.vm.sched.stop_task(t)
        return 0
    if sig not in t.signal_pending:
        t.signal_pending.append(sig)
    if sig_fatal(sig):
        m.vm.sched.signal_wake_up(t)
    return 0


def send_sig(sig: int, t: Any) -> int:
    return __send_signal_locked(sig, None, t)


class SigInfo:
    __slots__ = ("addr", "code", "signo")

    def __init__(self, signo: int, code: int, addr: int) -> None:
        self.signo = signo
        self.code = code
        self.addr = addr


@kfunc
def force_sig_fault(sig: int, code: int, addr: int) -> int:
    """Deliver a synchronous fault signal to current (it cannot be blocked or ignored)."""
    m = current_machine()
    t = m.current
    t.last_siginfo = SigInfo(sig, code, addr)
    return __send_signal_locked(sig, t.last_siginfo, t)


def fatal_signal_pending(t: Any) -> bool:
    return any(sig_fatal(s) for s in t.signal_pending)


def deliver_pending(t: Any) -> None:
    """The return to user space: a pending fatal signal ends the program here."""
    if t.signal_pending:
        sig = next((s for s in t.signal_pending if sig_fatal(s)), None)
        if sig is not None:
            code = t.last_siginfo.code if t.last_siginfo is not None and \
                t.last_siginfo.signo == sig else 0
            raise TaskKilled(sig, code)
