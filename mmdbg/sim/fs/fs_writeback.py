"""The flusher (fs/fs-writeback.c): ``wb_workfn`` writing dirty page-cache pages back.

One writeback domain for the root disk (``8:0``) and one flusher kernel thread
(``kworker/u8:1+flush-8:0``, created on first use).  It wakes every
``dirty_writeback_centisecs`` (``wb_check_old_data_flush``, reason "periodic": pages seen dirty
for longer than ``dirty_expire_centisecs``), when ``balance_dirty_pages`` finds the node over the
background threshold (``wb_check_background_flush``: write until below it), and when reclaim
meets dirty pages it cannot write itself (``wakeup_flusher_threads``, reason "vmscan").

Simplification: pages are written synchronously inside the flusher's step (the write time is
charged to the flusher as I/O wait), so ``Writeback`` in meminfo stays 0; dirty times are
tracked per page from the first time the flusher sees it dirty.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.trace import declare_tracepoint, kfunc

_DIRTY = 1 << pf.PG_dirty
NS = vmstat.NS
_tp_start = declare_tracepoint("writeback:writeback_start")
_tp_written = declare_tracepoint("writeback:writeback_written")
_tp_wake_bg = declare_tracepoint("writeback:writeback_wake_background")
_tp_exec = declare_tracepoint("writeback:writeback_exec")
WB_BATCH = 1024


class BdiWriteback:
    def __init__(self) -> None:
        self.thread: Any = None
        self.work: list[str] = []
        self.first_seen: dict[tuple[int, int], int] = {}
        self.pages_written = 0


def _wb(m: Any) -> BdiWriteback:
    wb = getattr(m, "wb", None)
    if wb is None:
        wb = m.wb = BdiWriteback()
    return wb


def _flusher_run(m: Any) -> Any:
    wb = _wb(m)
    if wb.thread is None:
        from mmdbg.sim.kernel.fork import kthread_run

        wb.thread = kthread_run(lambda mm: wb_thread(mm), "kworker/u8:1+flush-8:0")
    return wb.thread


def wakeup_flusher_threads(m: Any, reason: str) -> None:
    wb = _wb(m)
    if reason not in wb.work:
        wb.work.append(reason)
    t = _flusher_run(m)
    m.vm.sched.wake_up_process(t)


def wb_start_background_writeback(m: Any) -> None:
    if _tp_wake_bg.enabled:
        _tp_wake_bg.fire(name="8:0", cgroup_ino=1)
    wakeup_flusher_threads(m, "background")


def _fire(tp: Any, reason: str, nr: int) -> None:
    tp.fire(name="8:0", nr_pages=nr, sb_dev=0, sync_mode=0, for_kupdate=int(reason == "periodic"),
            range_cyclic=1, for_background=int(reason == "background"), reason=reason,
            cgroup_ino=1)


@kfunc
def wb_writeback(m: Any, reason: str) -> int:
    """Write dirty pages: all of them over the background threshold (or for vmscan), the
    expired ones for a periodic flush."""
    from mmdbg.sim.mm.page_writeback import (
        global_dirty_limits,
        nr_dirty_pages,
        writeout_file_folio,
    )

    wb = _wb(m)
    if _tp_start.enabled:
        _fire(_tp_start, reason, 0)
    fl = m.mem_map.flags
    now = m.clock.ns
    expire = m.sysctl["vm.dirty_expire_centisecs"] * 10_000_000
    bg, _ = global_dirty_limits(m)
    written = 0
    for mapping in list(m.vm.cached_mappings.values()):
        if mapping.host.shmem:
            continue
        for idx, pfn in sorted(mapping.i_pages.items()):
            if not fl[pfn] & _DIRTY:
                continue
            key = (id(mapping), idx)
            seen = wb.first_seen.setdefault(key, now)
            if reason == "periodic" and now - seen < expire:
                continue
            if reason == "background" and nr_dirty_pages(m) <= bg:
                break
            writeout_file_folio(m, pfn)
            wb.first_seen.pop(key, None)
            written += 1
            if written >= WB_BATCH and reason != "sync":
                break
    wb.pages_written += written
    if _tp_written.enabled:
        _fire(_tp_written, reason, written)
    return written


def wb_thread(m: Any) -> Any:
    """wb_workfn on a kthread: do the queued work, then sleep until the next period."""
    from mmdbg.sim.kernel.sched_core import Sleep

    wb = _wb(m)
    while True:
        while wb.work:
            reason = wb.work.pop(0)
            if _tp_exec.enabled:
                _fire(_tp_exec, reason, 0)
            wb_writeback(m, reason)
            yield
        wb_writeback(m, "periodic")
        interval = m.sysctl["vm.dirty_writeback_centisecs"] * 10_000_000
        yield Sleep(interval or 5_000_000_000)


def sync_all(m: Any) -> int:
    """sync(2): write every dirty page now."""
    return wb_writeback(m, "sync")


_ = NS
