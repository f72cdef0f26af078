"""Hardware data breakpoints (kernel/events/hw_breakpoint.c, arch/x86/kernel/hw_breakpoint.c).

``machine.add_watchpoint(addr, length, mode, callback, pid=None)`` registers a data
breakpoint on the virtual range ``[addr, addr + length)`` (length 1, 2, 4 or 8, aligned as
x86's debug registers require it: the range is rounded down to ``length``).  ``mode`` is
``"r"``, ``"w"`` or ``"rw"`` (``x`` is refused: simulated code has no instruction
addresses).  The callback runs after the access that touched the range, like the #DB trap
after the instruction, with ``(bp, addr, size, write)``.

What is watched is what simulated code accesses through the memory accessors:

* user addresses (below ``TASK_SIZE``): the user accesses of simulated programs
  (``uaccess.user_read``/``user_write``/``touch_range``) and the kernel's
  ``copy_from_user``/``copy_to_user`` -- any process, or only ``pid``'s threads;
* kernel addresses: ``kmem_access`` reads and writes (``read64``, ``kmem_write``, ``memset``
  ...) of kernel code.

Accesses the simulation does not make byte by byte (zeroing a new page, copy-on-write copies,
DMA from the simulated disk) are not seen, as a hardware breakpoint does not see DMA.  Like
``perf_event`` breakpoints, at most four are active per machine (``HBP_NUM``).

Cost: every accessor tests the module-level list :data:`ACTIVE`; with no breakpoint it is
empty and nothing else happens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HBP_NUM = 4
HW_BREAKPOINT_R = 1
HW_BREAKPOINT_W = 2
HW_BREAKPOINT_RW = HW_BREAKPOINT_R | HW_BREAKPOINT_W
USER_TOP = 1 << 47

# every registered breakpoint of every machine (empty: the accessors do nothing)
ACTIVE: list[HwBreakpoint] = []


class HwBreakpoint:
    """``struct perf_event`` of a data breakpoint (``attr.bp_addr``, ``bp_len``, ``bp_type``)."""

    ktype = "perf_event"

    def __init__(self, machine: Any, addr: int, length: int, bp_type: int,
                 callback: Callable[..., Any], pid: int | None = None) -> None:
        self.machine = machine
        self.bp_addr = addr
        self.bp_len = length
        self.bp_type = bp_type
        self.callback = callback
        self.pid = pid
        self.hits = 0
        self.firing = False

    @property
    def start(self) -> int:
        return self.bp_addr & ~(self.bp_len - 1)

    def overlaps(self, addr: int, size: int) -> bool:
        s = self.start
        return addr < s + self.bp_len and s < addr + size

    def unregister(self) -> None:
        """unregister_hw_breakpoint()."""
        if self in ACTIVE:
            ACTIVE.remove(self)

    cancel = remove = detach = unregister


def parse_mode(mode: str) -> int:
    if not mode or any(c not in "rw" for c in mode) or len(set(mode)) != len(mode):
        raise ValueError(f"invalid watchpoint mode '{mode}' (r, w or rw)")
    return (HW_BREAKPOINT_R if "r" in mode else 0) | (HW_BREAKPOINT_W if "w" in mode else 0)


def register_hw_breakpoint(machine: Any, addr: int, length: int, mode: str | int,
                           callback: Callable[..., Any], pid: int | None = None) -> HwBreakpoint:
    """register_user_hw_breakpoint / register_wide_hw_breakpoint: ValueError on a bad request,
    OSError(ENOSPC) when the machine's four debug registers are in use."""
    import errno

    bp_type = parse_mode(mode) if isinstance(mode, str) else int(mode)
    if length not in (1, 2, 4, 8):
        raise ValueError(f"invalid watchpoint length {length} (1, 2, 4 or 8)")
    if not bp_type & HW_BREAKPOINT_RW:
        raise ValueError("a watchpoint must watch reads, writes or both")
    if sum(1 for b in ACTIVE if b.machine is machine) >= HBP_NUM:
        raise OSError(errno.ENOSPC, f"all {HBP_NUM} hardware breakpoint slots are in use")
    bp = HwBreakpoint(machine, int(addr), length, bp_type, callback, pid)
    ACTIVE.append(bp)
    return bp


def hw_breakpoint_check(m: Any, addr: int, size: int, write: bool) -> None:
    """Called by the memory accessors after an access, only while :data:`ACTIVE` is not empty."""
    for bp in list(ACTIVE):
        _maybe_fire(bp, m, addr, size, write)


def hw_breakpoint_check_pages(m: Any, start: int, end: int, write: bool) -> None:
    """``touch_range``'s accesses: one byte at the start of every page of [start, end)."""
    for bp in list(ACTIVE):
        if bp.machine is not m:
            continue
        s = bp.start
        for p in sorted({s & ~0xFFF, (s + bp.bp_len - 1) & ~0xFFF}):
            if start & ~0xFFF <= p < end:
                _maybe_fire(bp, m, p, 1, write)


def _maybe_fire(bp: HwBreakpoint, m: Any, addr: int, size: int, write: bool) -> None:
    if bp.machine is not m or bp.firing or not bp.bp_type & (
            HW_BREAKPOINT_W if write else HW_BREAKPOINT_R):
        return
    user = addr < USER_TOP
    if (bp.start < USER_TOP) != user or not bp.overlaps(addr, size):
        return
    if user and bp.pid is not None:
        t = m.current
        if t is None or getattr(t, "tgid", None) != bp.pid:
            return
    bp.hits += 1
    bp.firing = True  # a callback that reads the range must not recurse
    try:
        bp.callback(bp, addr, size, write)
    finally:
        bp.firing = False
