"""perf's software fault events, counted where the kernel counts them.

``page-faults`` (PERF_COUNT_SW_PAGE_FAULTS) is counted on entry to the x86 user fault handler
(``do_user_addr_fault``; ``handle_mm_fault`` or ``exc_page_fault`` if the simulation has no
such function).  ``minor-faults``/``major-faults`` follow ``mm_account_fault()`` in
mm/memory.c: nothing for a fault that will be retried (VM_FAULT_RETRY) or failed
(VM_FAULT_ERROR), major when the result has VM_FAULT_MAJOR or the fault is a retry
(FAULT_FLAG_TRIED), minor otherwise.  If the simulation registers ``mm_account_fault`` it is
probed directly; otherwise ``handle_mm_fault``'s return value is classified the same way.

Used by ``software:`` probes (sampled every N events) and by ``--stat`` (every event).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

VM_FAULT_MAJOR = 0x4
VM_FAULT_RETRY = 0x400
VM_FAULT_ERROR = 0x1 | 0x2 | 0x10 | 0x20 | 0x40 | 0x800
FAULT_FLAG_TRIED = 1 << 5

EVENT_ALIASES = {"page-faults": "page-faults", "faults": "page-faults",
                 "minor-faults": "minor-faults", "major-faults": "major-faults"}


def _is_major(ret: int, flags: int) -> bool | None:
    """None: not accounted; True/False: major/minor (mm_account_fault)."""
    if ret & VM_FAULT_RETRY or ret & VM_FAULT_ERROR:
        return None
    return bool(ret & VM_FAULT_MAJOR) or bool(flags & FAULT_FLAG_TRIED)


def attach_software_event(machine: Any, event: str, period: int,
                          handler: Callable[[Any], None]) -> Any:
    """Attach ``handler`` to every ``period``-th ``event``; return a detachable attachment.

    Raises LookupError when the simulation has no function to count the event at.
    """
    from mmdbg.sim import trace

    event = EVENT_ALIASES.get(event, event)
    every = max(1, int(period))
    state = [0]

    def sample(ev: Any) -> None:
        state[0] += 1
        if state[0] % every == 0:
            handler(ev)

    if event == "page-faults":
        for fn in ("do_user_addr_fault", "handle_mm_fault", "exc_page_fault"):
            kf = trace.find_kfunc(fn)
            if kf is not None:
                return kf.attach(sample, ret=False, machine=machine)
        raise LookupError("the simulation has no page fault handler to count")
    if event not in ("minor-faults", "major-faults"):
        raise LookupError(f"software event {event} is not simulated")
    want_major = event == "major-faults"
    acct = trace.find_kfunc("mm_account_fault")
    if acct is not None:
        def on_account(ev: Any) -> None:
            a = ev.args
            if getattr(a, "regs", 1) is None:  # GUP faults are not perf events
                return
            major = _is_major(int(getattr(a, "ret", 0) or 0), int(getattr(a, "flags", 0) or 0))
            if major is not None and major == want_major:
                sample(ev)

        return acct.attach(on_account, ret=False, machine=machine)
    hmf = trace.find_kfunc("handle_mm_fault")
    if hmf is None:
        raise LookupError("the simulation has no page fault handler to count")

    def on_return(ev: Any) -> None:
        try:
            ret = int(ev.retval or 0)
        except (TypeError, ValueError):
            return
        if getattr(ev.args, "regs", 1) is None:
            return
        major = _is_major(ret, int(getattr(ev.args, "flags", 0) or 0))
        if major is not None and major == want_major:
            sample(ev)

    return hmf.attach(on_return, ret=True, machine=machine)
