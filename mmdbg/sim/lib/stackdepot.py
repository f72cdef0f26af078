"""Stack traces for debugging tools: lib/stackdepot.c and the kernel's symbol addresses.

SLUB's ``SLAB_STORE_USER`` tracks, KASAN's alloc/free tracks, KFENCE and kmemleak all save the
current kernel stack and print it later.  The kernel deduplicates stacks in the *stack depot*
and hands out a 32-bit handle; here :class:`StackDepot` does the same with tuples of frames.

A frame is the kernel function (``trace.kframes()``: only ``@kfunc`` functions are kernel
frames) plus its line offset.  It prints the way ``%pS`` prints a return address:
``name+0xOFF/0xSIZE`` and `` [module]`` for functions of a loadable module
(``mmdbg.workloads.modules.NAME``).  Each function gets a stable text address derived from its
name (CRC32), in the kernel image (``0xffffffff81000000``) or the module area
(``0xffffffffc0000000``), so backtraces with ``[<address>]`` are deterministic whatever the
import order.  Offsets are source-line offsets, not byte offsets (the sim has no machine code).
"""

from __future__ import annotations

import sys
import zlib
from typing import Any

from mmdbg.sim import trace

KERNEL_TEXT = 0xFFFFFFFF81000000
MODULES_VADDR = 0xFFFFFFFFC0000000
MODULE_PREFIX = "mmdbg.workloads.modules."

Frame = tuple[str, int, int, str]  # (function, offset, size, module or "")


def frame_module(kf: trace.KernelFunction) -> str:
    mod = kf.module or ""
    if mod.startswith(MODULE_PREFIX):
        return mod[len(MODULE_PREFIX):].split(".")[0]
    return ""


def symbol_base(name: str, module: str = "") -> int:
    """The (stable) start address of a kernel function's text."""
    h = zlib.crc32(f"{module}:{name}".encode())
    if module:
        return MODULES_VADDR + ((zlib.crc32(module.encode()) & 0xFFF) << 16) + (h & 0xFFF0)
    return KERNEL_TEXT + ((h & 0xFFFFFF) << 4)


def frame_addr(fr: Frame) -> int:
    return symbol_base(fr[0], fr[3]) + fr[1]


def format_frame(fr: Frame) -> str:
    """``%pS``: ``kfree+0x1c/0x40`` or ``kmalloc_oob_right+0x5/0x20 [kasan_test]``."""
    s = f"{fr[0]}+0x{fr[1]:x}/0x{fr[2]:x}"
    return f"{s} [{fr[3]}]" if fr[3] else s


def save_stack(skip_names: tuple[str, ...] = (), limit: int = 16, frame: Any = None) -> tuple:
    """stack_trace_save(): the kernel frames of the running code, innermost first.

    Frames whose function is in ``skip_names`` are left out wherever they are (the debugging
    tool's own functions, as ``stack_trace_save(..., skipnr)`` does, and allocator
    internals the kernel inlines).
    """
    out: list[Frame] = []
    f = frame if frame is not None else sys._getframe(1)
    by_code = trace._BY_CODE
    while f is not None and len(out) < limit:
        kf = by_code.get(f.f_code)
        if kf is not None and kf.name not in skip_names:
            out.append((kf.name, f.f_lineno - kf.lineno, kf.size, frame_module(kf)))
        f = f.f_back
    return tuple(out)


def caller_ip(skip_names: tuple[str, ...] = (), frame: Any = None) -> int:
    """``_RET_IP_``: the address in the first kernel frame outside ``skip_names``."""
    st = save_stack(skip_names, 1, frame if frame is not None else sys._getframe(1))
    return frame_addr(st[0]) if st else 0


def lookup_symbol(addr: int) -> str:
    """``%pS`` for an address made by :func:`frame_addr` (``0x...`` when unknown)."""
    for kf in trace.KFUNCS.values():
        mod = frame_module(kf)
        base = symbol_base(kf.name, mod)
        if base <= addr < base + max(kf.size, 1) + 1:
            return format_frame((kf.name, addr - base, kf.size, mod))
    return f"0x{addr:x}"


class StackDepot:
    """The stack depot: identical stacks stored once, referred to by a nonzero handle."""

    __slots__ = ("by_stack", "stacks")

    def __init__(self) -> None:
        self.stacks: list[tuple] = [()]
        self.by_stack: dict[tuple, int] = {}

    def save(self, stack: tuple) -> int:
        h = self.by_stack.get(stack)
        if h is None:
            h = len(self.stacks)
            self.stacks.append(stack)
            self.by_stack[stack] = h
        return h

    def fetch(self, handle: int) -> tuple:
        return self.stacks[handle] if 0 < handle < len(self.stacks) else ()

    def print_lines(self, handle: int, indent: str = " ") -> list[str]:
        """stack_depot_print(): one ``%pS`` line per frame."""
        return [indent + format_frame(fr) for fr in self.fetch(handle)]


def depot(m: Any) -> StackDepot:
    d = getattr(m, "stack_depot", None)
    if d is None:
        d = m.stack_depot = StackDepot()
    return d


def dump_stack_lines(m: Any, skip_names: tuple[str, ...] = (), frame: Any = None) -> list[str]:
    """dump_stack_lvl(): the CPU/task header, Hardware name and the Call Trace, with module
    names after module functions (what machine.dump_stack prints, plus `` [mod]``)."""
    from mmdbg.sim.machine import HARDWARE_NAME, UTS_RELEASE

    t = m.current
    uid = t.uid if t is not None else 0
    out = [f"CPU: {m.cpu} UID: {uid} PID: {t.pid if t else 0} Comm: "
           f"{t.comm[:20] if t else 'swapper/0'} {m.taint_string()} {UTS_RELEASE} #1 "
           "PREEMPT(voluntary) ",
           f"Hardware name: {HARDWARE_NAME}", "Call Trace:", " <TASK>",
           " dump_stack_lvl+0x5d/0x80"]
    st = save_stack(skip_names, 64, frame if frame is not None else sys._getframe(1))
    out += [" " + format_frame(fr) for fr in st]
    out.append(" </TASK>")
    return out
