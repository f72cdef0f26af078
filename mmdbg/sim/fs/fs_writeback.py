"""The flusher (fs/fs-writeback.c): ``wb_workfn`` writing dirty inodes back to the disk.

One ``bdi_writeback`` for the root disk (bdi ``8:0``) and its flusher, a kernel thread named
like the kernel's worker (``kworker/u8:1+flush-8:0``) created the first time a file page is
dirtied.  ``__mark_inode_dirty`` puts an inode on ``b_dirty`` with its ``dirtied_when`` and
arms the periodic wakeup.  The flusher (``wb_do_writeback``) runs

* queued work (``wb_queue_work``: ``sync``, ``vmscan`` from reclaim meeting dirty pages);
* ``wb_check_old_data_flush`` every ``dirty_writeback_centisecs`` (reason ``periodic``,
  ``for_kupdate``): inodes dirtied more than ``dirty_expire_centisecs`` ago;
* ``wb_check_background_flush`` while ``nr_dirty`` is over the background threshold (reason
  ``background``; ``balance_dirty_pages`` wakes it).

``wb_writeback`` moves eligible inodes to ``b_io`` (``queue_io``) and writes each in chunks
of ``MIN_WRITEBACK_PAGES`` (``__writeback_single_inode`` -> ``do_writepages``), sleeping until
the disk completes each chunk (pages stay ``PG_writeback`` meanwhile), then ends writeback,
measures the bandwidth (``wb_update_bandwidth``) and requeues an inode that still has dirty
pages.  ``sync(2)`` writes every dirty inode with WB_SYNC_ALL in the caller and waits.
Tracepoints: ``writeback_mark_inode_dirty``, ``writeback_queue``, ``writeback_exec``,
``writeback_start``, ``writeback_queue_io``, ``writeback_single_inode_start``,
``writeback_single_inode``, ``writeback_written``, ``writeback_pages_written``,
``writeback_wake_background``.

Simplifications: no per-superblock or per-cgroup writeback, no ``b_more_io``/``b_dirty_time``
lists, inode metadata is not written (only data pages).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from mmdbg.sim.kernel.sched_core import Block, IoWait, Sleep, WaitQueue
from mmdbg.sim.mm import vmstat
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

I_DIRTY_SYNC = 1 << 0
I_DIRTY_DATASYNC = 1 << 1
I_DIRTY_PAGES = 1 << 2
I_SYNC = 1 << 7
WB_REASON = {"background": 0, "vmscan": 1, "sync": 2, "periodic": 3, "laptop_timer": 4,
             "fs_free_space": 5, "forker_thread": 6, "foreign_flush": 7}
MIN_WRITEBACK_PAGES = 4096 >> (12 - 10)  # 1024 pages
BDI_NAME = "8:0"
SB_DEV = 8 << 20 | 1
NS = vmstat.NS

_tp_mark = declare_tracepoint("writeback:writeback_mark_inode_dirty")
_tp_queue = declare_tracepoint("writeback:writeback_queue")
_tp_exec = declare_tracepoint("writeback:writeback_exec")
_tp_start = declare_tracepoint("writeback:writeback_start")
_tp_written = declare_tracepoint("writeback:writeback_written")
_tp_pages_written = declare_tracepoint("writeback:writeback_pages_written")
_tp_wake_bg = declare_tracepoint("writeback:writeback_wake_background")
_tp_queue_io = declare_tracepoint("writeback:writeback_queue_io")
_tp_sis = declare_tracepoint("writeback:writeback_single_inode_start")
_tp_si = declare_tracepoint("writeback:writeback_single_inode")


class WbWritebackWork:
    """``struct wb_writeback_work``."""

    ktype = "wb_writeback_work"

    def __init__(self, nr_pages: int, reason: str, sync_mode: int = 0, for_kupdate: int = 0,
                 for_background: int = 0, range_cyclic: int = 1) -> None:
        self.nr_pages = nr_pages
        self.reason = reason
        self.sync_mode = sync_mode
        self.for_kupdate = for_kupdate
        self.for_background = for_background
        self.range_cyclic = range_cyclic


class BdiWriteback:
    """``struct bdi_writeback`` of the root disk."""

    ktype = "bdi_writeback"

    def __init__(self) -> None:
        self.thread: Any = None
        self.wq = WaitQueue("flush-8:0")
        self.work_list: deque[WbWritebackWork] = deque()
        self.b_dirty: dict[Any, None] = {}  # inodes, oldest dirtied_when first
        self.b_io: deque[Any] = deque()
        self.running = False
        self.last_old_flush = 0
        self.avg_write_bandwidth = 100 << (20 - 12)  # INIT_BW, pages/s
        self.write_bandwidth = self.avg_write_bandwidth
        self.dirty_ratelimit = self.avg_write_bandwidth
        self.dirty_exceeded = False
        self.pages_written = 0

    def __repr__(self) -> str:
        return f"<bdi_writeback {BDI_NAME} dirty inodes={len(self.b_dirty)}>"


def bdi_wb(m: Any) -> BdiWriteback:
    wb = getattr(m, "wb", None)
    if wb is None:
        wb = m.wb = BdiWriteback()
    return wb


def writeback_in_progress(m: Any) -> bool:
    return bdi_wb(m).running


def _flusher(m: Any) -> Any:
    wb = bdi_wb(m)
    if wb.thread is None:
        from mmdbg.sim.kernel.fork import kthread_run

        wb.thread = kthread_run(lambda mm: wb_workfn(mm), "kworker/u8:1+flush-8:0")
    return wb.thread


def wb_wakeup(m: Any) -> None:
    """Wake the flusher now (from its idle wait or its periodic sleep)."""
    wb = bdi_wb(m)
    t = _flusher(m)
    if t in wb.wq.waiters:
        wb.wq.wake_up(m)
    else:
        m.vm.sched.wake_up_process(t)


# -- dirty inodes --------------------------------------------------------------------------------
@kfunc(aliases=("mark_inode_dirty",))
def __mark_inode_dirty(inode: Any, flags: int) -> None:
    """The inode has dirty pages: put it on ``b_dirty`` (age from now) and make sure the flusher
    will look at it within ``dirty_writeback_centisecs``."""
    m = current_machine()
    if inode.i_sb.s_bdev is None:
        return
    if _tp_mark.enabled:
        _tp_mark.fire(name=BDI_NAME, ino=inode.i_ino, state=inode.i_state, flags=flags)
    if inode.i_state & flags == flags:
        return
    was_dirty = inode.i_state & I_DIRTY_PAGES
    inode.i_state |= flags
    if not was_dirty:
        wb = bdi_wb(m)
        inode.dirtied_when = m.clock.ns
        first = not wb.b_dirty
        wb.b_dirty[inode] = None
        if first and wb.thread is None:
            _flusher(m)  # wb_wakeup_delayed: the worker sleeps for the writeback interval


def inode_clear_dirty_pages(inode: Any) -> None:
    """No dirty page left: the inode leaves ``b_dirty``."""
    if inode.i_state & I_DIRTY_PAGES:
        inode.i_state &= ~I_DIRTY_PAGES
        wb = getattr(current_machine(), "wb", None)
        if wb is not None:
            wb.b_dirty.pop(inode, None)


# -- queueing work -------------------------------------------------------------------------------
def _fire(tp: Any, work: WbWritebackWork) -> None:
    tp.fire(name=BDI_NAME, nr_pages=work.nr_pages, sb_dev=0, sync_mode=work.sync_mode,
            for_kupdate=work.for_kupdate, range_cyclic=work.range_cyclic,
            for_background=work.for_background, reason=WB_REASON[work.reason], cgroup_ino=1)


@kfunc
def wb_queue_work(m: Any, work: WbWritebackWork) -> None:
    if _tp_queue.enabled:
        _fire(_tp_queue, work)
    bdi_wb(m).work_list.append(work)
    wb_wakeup(m)


@kfunc(aliases=("wakeup_flusher_threads_bdi",))
def wakeup_flusher_threads(m: Any, reason: str) -> None:
    """Write everything dirty now (reclaim met dirty pages, sync)."""
    from mmdbg.sim.mm.page_writeback import NR_FILE_DIRTY, global_node_state

    wb = bdi_wb(m)
    if any(w.reason == reason for w in wb.work_list):
        return
    wb_queue_work(m, WbWritebackWork(global_node_state(m, NR_FILE_DIRTY), reason))


@kfunc
def wb_start_background_writeback(m: Any) -> None:
    if _tp_wake_bg.enabled:
        _tp_wake_bg.fire(name=BDI_NAME, cgroup_ino=1)
    wb_wakeup(m)


def wb_over_bg_thresh(m: Any) -> bool:
    from mmdbg.sim.mm.page_writeback import NR_FILE_DIRTY, global_dirty_limits, global_node_state

    bg, _ = global_dirty_limits(m)
    return global_node_state(m, NR_FILE_DIRTY) > bg


# -- the flusher -----------------------------------------------------------------------------------
@kfunc
def queue_io(m: Any, work: WbWritebackWork, dirtied_before: int) -> int:
    """Move the inodes dirtied before ``dirtied_before`` from b_dirty to b_io."""
    wb = bdi_wb(m)
    moved = 0
    for inode in list(wb.b_dirty):
        if work.for_kupdate and inode.dirtied_when > dirtied_before:
            continue
        if inode not in wb.b_io:
            wb.b_io.append(inode)
            moved += 1
    if _tp_queue_io.enabled:
        _tp_queue_io.fire(name=BDI_NAME, older=dirtied_before // 1_000_000,
                          age=(m.clock.ns - dirtied_before) // 1_000_000, moved=moved,
                          reason=WB_REASON[work.reason], cgroup_ino=1)
    return moved


def _fire_si(tp: Any, inode: Any, m: Any, nr_to_write: int, wrote: int) -> None:
    tp.fire(name=BDI_NAME, ino=inode.i_ino, state=inode.i_state,
            dirtied_when=inode.dirtied_when // 1_000_000,
            writeback_index=getattr(inode.i_mapping, "writeback_index", 0),
            nr_to_write=nr_to_write, wrote=wrote, cgroup_ino=1)


def writeback_sb_inodes(m: Any, work: WbWritebackWork) -> Any:
    """Write the inodes on b_io, a chunk each; a generator (the flusher sleeps on the disk).
    Returns the pages written."""
    from mmdbg.sim.mm.page_writeback import (
        WritebackControl,
        end_writeback_batch,
        write_cache_pages,
    )

    wb = bdi_wb(m)
    wrote = 0
    while wb.b_io:
        if work.nr_pages <= 0:
            break
        if work.for_background and not wb_over_bg_thresh(m):
            break
        inode = wb.b_io.popleft()
        if not inode.i_state & I_DIRTY_PAGES:
            continue
        chunk = min(work.nr_pages, MIN_WRITEBACK_PAGES) if work.sync_mode == 0 else \
            work.nr_pages
        wbc = WritebackControl(nr_to_write=chunk, sync_mode=work.sync_mode,
                               for_kupdate=work.for_kupdate,
                               for_background=work.for_background, range_cyclic=1)
        if _tp_sis.enabled:
            _fire_si(_tp_sis, inode, m, chunk, 0)
        inode.i_state |= I_SYNC
        start = m.clock.ns
        batch = write_cache_pages(inode.i_mapping, wbc)
        n = len(batch)
        if batch.done > m.clock.ns:
            yield IoWait(batch.done - m.clock.ns)
        end_writeback_batch(m, batch)
        inode.i_state &= ~I_SYNC
        wb_update_bandwidth(m, n, m.clock.ns - start)
        if _tp_si.enabled:
            _fire_si(_tp_si, inode, m, chunk, n)
        wrote += n
        work.nr_pages -= n
        wb.pages_written += n
        if inode.i_state & I_DIRTY_PAGES and n:
            wb.b_io.append(inode)  # requeue_io: more to write
    return wrote


def wb_update_bandwidth(m: Any, pages: int, elapsed_ns: int) -> None:
    """Smooth the measured write bandwidth (pages/s) over the flusher's chunks."""
    if pages < 8 or elapsed_ns <= 0:
        return
    wb = bdi_wb(m)
    bw = pages * 1_000_000_000 // elapsed_ns
    wb.write_bandwidth = bw
    wb.avg_write_bandwidth = (wb.avg_write_bandwidth * 3 + bw) // 4
    wb.dirty_ratelimit = wb.avg_write_bandwidth


@kfunc
def wb_writeback(m: Any, work: WbWritebackWork) -> Any:
    """Write dirty inodes for one work item (a generator); returns the pages written."""
    wb = bdi_wb(m)
    if _tp_start.enabled:
        _fire(_tp_start, work)
    expire = m.sysctl["vm.dirty_expire_centisecs"] * 10_000_000
    wrote = 0
    while work.nr_pages > 0:
        if (work.for_background or work.for_kupdate) and wb.work_list:
            break
        if work.for_background and not wb_over_bg_thresh(m):
            break
        dirtied_before = m.clock.ns - expire if work.for_kupdate else m.clock.ns
        if not wb.b_io:
            queue_io(m, work, dirtied_before)
        if not wb.b_io:
            break
        n = yield from writeback_sb_inodes(m, work)
        wrote += n
        if not n and not wb.b_io:
            break
    wb.b_io.clear()
    if _tp_written.enabled:
        _fire(_tp_written, work)
    return wrote


def wb_check_old_data_flush(m: Any) -> Any:
    from mmdbg.sim.mm.page_writeback import NR_FILE_DIRTY, global_node_state

    wb = bdi_wb(m)
    interval = m.sysctl["vm.dirty_writeback_centisecs"] * 10_000_000
    if not interval or m.clock.ns < wb.last_old_flush + interval:
        return 0
    wb.last_old_flush = m.clock.ns
    nr = global_node_state(m, NR_FILE_DIRTY)
    if not nr:
        return 0
    return (yield from wb_writeback(m, WbWritebackWork(nr, "periodic", for_kupdate=1)))


def wb_check_background_flush(m: Any) -> Any:
    if not wb_over_bg_thresh(m):
        return 0
    return (yield from wb_writeback(m, WbWritebackWork(1 << 62, "background",
                                                       for_background=1)))


def wb_do_writeback(m: Any) -> Any:
    wb = bdi_wb(m)
    wb.running = True
    wrote = 0
    try:
        while wb.work_list:
            work = wb.work_list.popleft()
            if _tp_exec.enabled:
                _fire(_tp_exec, work)
            wrote += yield from wb_writeback(m, work)
        wrote += yield from wb_check_old_data_flush(m)
        wrote += yield from wb_check_background_flush(m)
    finally:
        wb.running = False
    return wrote


def wb_workfn(m: Any) -> Any:
    """The flusher's loop: do the work, then sleep until the next period (or, with nothing
    dirty, until woken)."""
    wb = bdi_wb(m)
    if not wb.last_old_flush:
        wb.last_old_flush = m.clock.ns
    while True:
        wrote = yield from wb_do_writeback(m)
        if _tp_pages_written.enabled and wrote:
            _tp_pages_written.fire(pages=wrote)
        interval = m.sysctl["vm.dirty_writeback_centisecs"] * 10_000_000
        if wb.work_list:
            yield
        elif wb.b_dirty and interval:
            yield Sleep(max(wb.last_old_flush + interval - m.clock.ns, 1_000_000))
        else:
            yield Block(wb.wq)


# -- sync(2), fsync(2) ----------------------------------------------------------------------------
@kfunc(aliases=("sync_inodes_sb", "iterate_supers"))
def ksys_sync_inodes(m: Any) -> int:
    """Write every dirty inode (WB_SYNC_ALL) and wait; returns the pages written."""
    from mmdbg.sim.mm.filemap import filemap_write_and_wait_range

    wb = bdi_wb(m)
    n = 0
    for inode in list(wb.b_dirty):
        n += filemap_write_and_wait_range(inode.i_mapping, 0, (1 << 63) - 1)
    # pages the flusher still has in flight
    for mapping in list(m.vm.cached_mappings.values()):
        if mapping.wb_pending:
            filemap_write_and_wait_range(mapping, 0, (1 << 63) - 1)
    return n


def sync_all(m: Any) -> int:
    return ksys_sync_inodes(m)


_ = NS
