"""Dirty-page accounting, writeback of page-cache pages and dirty throttling (mm/page-writeback.c).

Accounting: ``__folio_mark_dirty`` sets ``PG_dirty`` and counts ``nr_dirty``/``nr_dirtied``
(``folio_account_dirtied``, the task's ``nr_dirtied``), fires ``writeback:writeback_dirty_folio``
and marks the inode dirty for the flusher (``__mark_inode_dirty``).  Writeback:
``write_cache_pages`` takes the dirty pages of a range in index order, cleans them
(``folio_clear_dirty_for_io``: write-protect the PTEs, ``nr_dirty``-1), sets ``PG_writeback``
(``nr_writeback``+1) and submits one disk request per run of up to 32 contiguous pages;
``folio_end_writeback`` runs when the request has completed (the flusher sleeps until then,
``fsync`` waits for it), clears ``PG_writeback``, counts ``nr_written`` and rotates a page
reclaim wanted (``PG_reclaim``) to the inactive tail.  So ``Writeback:`` in /proc/meminfo is
non-zero while the disk works.

Limits (``domain_dirty_limits``): dirtyable memory is free pages minus the reserves plus the
file LRU, plus one; ``thresh = dirty_ratio * PAGE_SIZE / 100 * available / PAGE_SIZE`` (or
``dirty_bytes``), ``bg_thresh`` likewise from the background knobs, halved when not below
``thresh``; real-time tasks get a quarter more.  ``balance_dirty_pages``: above
``bg_thresh`` the flusher is kicked; below the *freerun* ceiling ``(thresh + bg_thresh) / 2``
the task is not throttled and polls again after ``dirty_poll_interval`` pages; above it the
task's rate is ``dirty_ratelimit * pos_ratio`` with the kernel's cubic
``pos_ratio = 1 + ((setpoint - dirty) / (limit - setpoint))**3`` around
``setpoint = (limit + freerun) / 2`` (0 at the limit), and it sleeps
``period = HZ * pages_dirtied / task_ratelimit`` minus its think time, at most ``wb_max_pause``
(<= 200 ms).  Tracepoints ``writeback:global_dirty_state`` and ``writeback:balance_dirty_pages``.

Simplifications: one writeback domain and one bdi (no per-wb thresholds, no memcg domains, no
strictlimit); ``dirty_ratelimit`` is the flusher's measured write bandwidth (the kernel's
balanced rate for a single dirtier) and ``dirty_limit`` follows ``thresh`` at once; the pause is
taken after the current step of the task (its pauses within one step add up) rather than in
a loop that re-reads the counters.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

HZ = 1000
MAX_PAUSE = HZ // 5  # 200 ms
RATELIMIT_CALC_SHIFT = 10
INIT_BW = 100 << (20 - 12)  # 100 MB/s in pages
DIRTIED_PAUSE_INIT = 128 >> (12 - 10)  # current->nr_dirtied_pause at fork: 32 pages
NS = vmstat.NS
NR_FILE_DIRTY = NS["nr_dirty"]
NR_WRITEBACK = NS["nr_writeback"]
NR_DIRTIED = NS["nr_dirtied"]
NR_WRITTEN = NS["nr_written"]
PGPGOUT = vmstat.EV["pgpgout"]
WB_SYNC_NONE = 0
WB_SYNC_ALL = 1
_DIRTY = 1 << pf.PG_dirty
_WRITEBACK = 1 << pf.PG_writeback
_RECLAIM = 1 << pf.PG_reclaim

_tp_global = declare_tracepoint("writeback:global_dirty_state")
_tp_bdp = declare_tracepoint("writeback:balance_dirty_pages")
_tp_dirty_folio = declare_tracepoint("writeback:writeback_dirty_folio")
_tp_wait = declare_tracepoint("writeback:folio_wait_writeback")


class WritebackControl:
    """``struct writeback_control``."""

    ktype = "writeback_control"

    def __init__(self, nr_to_write: int = 1 << 62, sync_mode: int = WB_SYNC_NONE,
                 range_start: int = 0, range_end: int = (1 << 63) - 1, for_kupdate: int = 0,
                 for_background: int = 0, range_cyclic: int = 0) -> None:
        self.nr_to_write = nr_to_write
        self.pages_skipped = 0
        self.sync_mode = sync_mode
        self.range_start = range_start
        self.range_end = range_end
        self.for_kupdate = for_kupdate
        self.for_background = for_background
        self.range_cyclic = range_cyclic


class WbBatch:
    """The requests one ``do_writepages`` call submitted: (mapping, index, pfn) and the time
    the last of them completes."""

    def __init__(self) -> None:
        self.pages: list[tuple[Any, int, int, int]] = []  # mapping, index, pfn, done
        self.done = 0

    def __len__(self) -> int:
        return len(self.pages)


def _nodestat(m: Any, pfn: int) -> list[int]:
    return m.vm.nodestat[pfn >> 9]


def _bdi_name(mapping: Any) -> str:
    sb = mapping.host.i_sb
    return "8:0" if sb.s_bdev is not None else "(unknown)"


def global_node_state(m: Any, item: int) -> int:
    return sum(n.vm_stat[item] for n in m.node_data)


# -- limits ------------------------------------------------------------------------------------
def global_dirtyable_memory(m: Any) -> int:
    x = m.nr_free_pages()
    x -= min(x, m.totalreserve_pages)
    x += sum(n.vm_stat[NS["nr_inactive_file"]] + n.vm_stat[NS["nr_active_file"]]
             for n in m.node_data)
    return x + 1


def domain_dirty_limits(m: Any) -> tuple[int, int]:
    """(bg_thresh, thresh) in pages, as the kernel computes them for the global domain."""
    available = global_dirtyable_memory(m)
    s = m.sysctl
    ratio = s["vm.dirty_ratio"] * 4096 // 100
    bg_ratio = s["vm.dirty_background_ratio"] * 4096 // 100
    if s["vm.dirty_bytes"]:
        thresh = -(-s["vm.dirty_bytes"] // 4096)
    else:
        thresh = ratio * available // 4096
    if s["vm.dirty_background_bytes"]:
        bg = -(-s["vm.dirty_background_bytes"] // 4096)
    else:
        bg = bg_ratio * available // 4096
    if bg >= thresh:
        bg = thresh // 2
    t = m.current
    if t is not None and getattr(t, "policy", 0) in (1, 2, 6):  # rt_or_dl_task
        bg += bg // 4 + thresh // 32
        thresh += thresh // 4 + thresh // 32
    thresh = min(thresh, (1 << 32) - 1)
    if bg >= thresh:
        bg = thresh // 2
    return bg, thresh


@kfunc
def global_dirty_limits(m: Any) -> tuple[int, int]:
    bg, thresh = domain_dirty_limits(m)
    m.global_stat[vmstat.GLOBAL_STAT_ITEMS.index("nr_dirty_threshold")] = thresh
    m.global_stat[vmstat.GLOBAL_STAT_ITEMS.index("nr_dirty_background_threshold")] = bg
    if _tp_global.enabled:
        _tp_global.fire(nr_dirty=global_node_state(m, NR_FILE_DIRTY),
                        nr_writeback=global_node_state(m, NR_WRITEBACK),
                        background_thresh=bg, dirty_thresh=thresh, dirty_limit=thresh,
                        nr_dirtied=global_node_state(m, NR_DIRTIED),
                        nr_written=global_node_state(m, NR_WRITTEN))
    return bg, thresh


def dirty_freerun_ceiling(thresh: int, bg_thresh: int) -> int:
    return (thresh + bg_thresh) // 2


def dirty_setpoint(thresh: int, bg_thresh: int) -> int:
    """setpoint = (limit + freerun) / 2 (limit = thresh in this model)."""
    return (thresh + dirty_freerun_ceiling(thresh, bg_thresh)) // 2


def nr_dirty_pages(m: Any) -> int:
    """Dirty + under writeback: what balance_dirty_pages compares with the limits."""
    return global_node_state(m, NR_FILE_DIRTY) + global_node_state(m, NR_WRITEBACK)


def pos_ratio_polynom(setpoint: int, dirty: int, limit: int) -> int:
    """The kernel's cubic position control, fixed point (1 << RATELIMIT_CALC_SHIFT = 1.0)."""
    s = RATELIMIT_CALC_SHIFT
    x = int(((setpoint - dirty) << s) / ((limit - setpoint) | 1))
    pos = x
    pos = pos * x >> s
    pos = pos * x >> s
    pos += 1 << s
    return max(0, min(pos, 2 << s))


def wb_position_ratio(dirty: int, setpoint: int, limit: int) -> int:
    if dirty >= limit:
        return 0
    return pos_ratio_polynom(setpoint, dirty, limit)


def dirty_poll_interval(dirty: int, thresh: int) -> int:
    if thresh > dirty:
        return 1 << ((thresh - dirty).bit_length() - 1 >> 1)
    return 1


def wb_max_pause(bw: int, wb_dirty: int) -> int:
    t = wb_dirty // (1 + bw // (1 << (HZ // 8).bit_length()))  # roundup_pow_of_two(1+HZ/8)
    return min(t + 1, MAX_PAUSE)


def _wb(m: Any) -> Any:
    from mmdbg.sim.fs.fs_writeback import bdi_wb

    return bdi_wb(m)


# -- throttling ----------------------------------------------------------------------------------
@kfunc
def balance_dirty_pages(mapping: Any, pages_dirtied: int) -> int:
    """Throttle the current task against the dirty limits; returns the pause in jiffies (ms)."""
    from mmdbg.sim.fs.fs_writeback import wb_start_background_writeback, writeback_in_progress
    from mmdbg.sim.kernel.sched_core import io_schedule_timeout

    m = current_machine()
    t = m.current
    wb = _wb(m)
    now = m.clock.ns // 1_000_000
    bg, thresh = global_dirty_limits(m)
    nr_reclaimable = global_node_state(m, NR_FILE_DIRTY)
    dirty = nr_reclaimable + global_node_state(m, NR_WRITEBACK)
    if nr_reclaimable > bg and not writeback_in_progress(m):
        wb_start_background_writeback(m)
    freerun = dirty_freerun_ceiling(thresh, bg)
    if dirty <= freerun:
        t.dirty_paused_when = now
        t.nr_dirtied = 0
        t.nr_dirtied_pause = dirty_poll_interval(dirty, thresh)
        wb.dirty_exceeded = False
        return 0
    if not writeback_in_progress(m):
        wb_start_background_writeback(m)
    limit = thresh
    setpoint = (limit + freerun) // 2
    wb.dirty_exceeded = dirty > thresh
    pos_ratio = wb_position_ratio(dirty, setpoint, limit)
    dirty_ratelimit = max(wb.dirty_ratelimit, 1)
    task_ratelimit = dirty_ratelimit * pos_ratio >> RATELIMIT_CALC_SHIFT
    max_pause = wb_max_pause(wb.avg_write_bandwidth, dirty)
    min_pause = 1
    paused_when = getattr(t, "dirty_paused_when", 0)
    if task_ratelimit == 0:
        period = pause = max_pause
    else:
        period = HZ * pages_dirtied // task_ratelimit
        pause = period
        if paused_when:
            pause -= now - paused_when
        if pause < min_pause:
            if _tp_bdp.enabled:
                _fire_bdp(t, thresh, setpoint, dirty, dirty_ratelimit, task_ratelimit,
                          pages_dirtied, period, min(pause, 0), now - paused_when)
            if pause < -HZ:
                t.dirty_paused_when = now
                t.nr_dirtied = 0
            elif period:
                t.dirty_paused_when = paused_when + period
                t.nr_dirtied = 0
            elif t.nr_dirtied_pause <= pages_dirtied:
                t.nr_dirtied_pause += pages_dirtied
            return 0
        if pause > max_pause:
            now += min(pause - max_pause, max_pause)
            pause = max_pause
    if _tp_bdp.enabled:
        _fire_bdp(t, thresh, setpoint, dirty, dirty_ratelimit, task_ratelimit, pages_dirtied,
                  period, pause, now - paused_when if paused_when else 0)
    t.dirty_paused_ns = getattr(t, "dirty_paused_ns", 0) + pause * 1_000_000
    m.dirty_throttled = getattr(m, "dirty_throttled", 0) + 1
    io_schedule_timeout(m, pause * 1_000_000)
    t.dirty_paused_when = now + pause
    t.nr_dirtied = 0
    t.nr_dirtied_pause = dirty_poll_interval(dirty, thresh)
    return pause


def _fire_bdp(t: Any, thresh: int, setpoint: int, dirty: int, dirty_ratelimit: int,
              task_ratelimit: int, dirtied: int, period: int, pause: int, think: int) -> None:
    kb = 12 - 10  # KBps(x) = x << (PAGE_SHIFT - 10)
    _tp_bdp.fire(bdi="8:0", limit=thresh, setpoint=setpoint, dirty=dirty,
                 wb_setpoint=setpoint, wb_dirty=dirty, dirty_ratelimit=dirty_ratelimit << kb,
                 task_ratelimit=task_ratelimit << kb, dirtied=dirtied,
                 dirtied_pause=getattr(t, "nr_dirtied_pause", DIRTIED_PAUSE_INIT),
                 paused=0, pause=pause, period=period, think=think, cgroup_ino=1)


@kfunc(aliases=("balance_dirty_pages_ratelimited_flags",))
def balance_dirty_pages_ratelimited(mapping: Any) -> None:
    """After a task dirtied a page: every ``nr_dirtied_pause`` pages (8 once the limit was
    exceeded) check the limits."""
    m = current_machine()
    t = m.current
    if t is None or mapping.host.i_sb.s_bdev is None or t.is_kthread():
        return
    ratelimit = getattr(t, "nr_dirtied_pause", DIRTIED_PAUSE_INIT)
    if _wb(m).dirty_exceeded:
        ratelimit = min(ratelimit, 32 >> (12 - 10))
    if getattr(t, "nr_dirtied", 0) >= ratelimit:
        balance_dirty_pages(mapping, t.nr_dirtied)


# -- dirtying ------------------------------------------------------------------------------------
@kfunc(aliases=("folio_account_dirtied",))
def __folio_mark_dirty(folio: int, mapping: Any) -> None:
    """Account a page that became dirty and tag its inode for writeback."""
    m = current_machine()
    st = _nodestat(m, folio)
    st[NR_FILE_DIRTY] += 1
    st[NR_DIRTIED] += 1
    t = m.current
    if t is not None:
        t.nr_dirtied = getattr(t, "nr_dirtied", 0) + 1
    if _tp_dirty_folio.enabled:
        _tp_dirty_folio.fire(name=_bdi_name(mapping), ino=mapping.host.i_ino,
                             index=m.mem_map.index.get(folio, 0))
    from mmdbg.sim.fs.fs_writeback import I_DIRTY_PAGES, __mark_inode_dirty

    __mark_inode_dirty(mapping.host, I_DIRTY_PAGES)


@kfunc(aliases=("clear_page_dirty_for_io",))
def folio_clear_dirty_for_io(folio: int) -> bool:
    """Before writing: write-protect every PTE (the next write faults and redirties) and
    clear PG_dirty."""
    from mmdbg.sim.mm.filemap import folio_mkclean

    m = current_machine()
    fl = m.mem_map.flags
    if not fl[folio] & _DIRTY:
        return False
    folio_mkclean(folio)
    fl[folio] &= ~_DIRTY
    _nodestat(m, folio)[NR_FILE_DIRTY] -= 1
    return True


@kfunc(aliases=("set_page_writeback", "__folio_start_writeback"))
def folio_start_writeback(folio: int) -> None:
    m = current_machine()
    m.mem_map.flags[folio] |= _WRITEBACK
    _nodestat(m, folio)[NR_WRITEBACK] += 1


@kfunc(aliases=("end_page_writeback", "__folio_end_writeback"))
def folio_end_writeback(folio: int) -> None:
    """The write completed: clear PG_writeback; a page reclaim wanted goes to the inactive
    tail (``folio_rotate_reclaimable``)."""
    m = current_machine()
    fl = m.mem_map.flags
    if not fl[folio] & _WRITEBACK:
        return
    mapping = m.mem_map.mapping.get(folio)
    if mapping is not None and hasattr(mapping, "wb_pending"):
        mapping.wb_pending.pop(m.mem_map.index.get(folio, 0), None)
    if fl[folio] & _RECLAIM:
        from mmdbg.sim.mm.swap import folio_rotate_reclaimable

        folio_rotate_reclaimable(folio)
        fl[folio] &= ~_RECLAIM
    fl[folio] &= ~_WRITEBACK
    st = _nodestat(m, folio)
    st[NR_WRITEBACK] -= 1
    st[NR_WRITTEN] += 1


@kfunc(aliases=("wait_on_page_writeback",))
def folio_wait_writeback(folio: int) -> int:
    """Wait until the page's write has completed; returns the ns waited."""
    from mmdbg.sim.mm.readahead import io_wait_until

    m = current_machine()
    if not m.mem_map.flags[folio] & _WRITEBACK:
        return 0
    mapping = m.mem_map.mapping.get(folio)
    idx = m.mem_map.index.get(folio, 0)
    if _tp_wait.enabled and mapping is not None:
        _tp_wait.fire(name=_bdi_name(mapping), ino=mapping.host.i_ino, index=idx)
    done = mapping.wb_pending.get(idx, 0) if mapping is not None else 0
    wait = io_wait_until(m, done)
    folio_end_writeback(folio)
    return wait


# -- writing -----------------------------------------------------------------------------------
@kfunc(aliases=("writeback_iter", "do_writepages"))
def write_cache_pages(mapping: Any, wbc: WritebackControl) -> WbBatch:
    """Start writeback of the dirty pages of ``mapping`` in the wbc's range (index order),
    up to ``wbc.nr_to_write``; WB_SYNC_ALL first waits for pages already under writeback."""
    from mmdbg.sim.fs.ramfs import MAX_IO_PAGES
    from mmdbg.sim.mm.readahead import task_now

    m = current_machine()
    batch = WbBatch()
    host = mapping.host
    if host.shmem:
        return batch
    fl = m.mem_map.flags
    lo, hi = wbc.range_start >> 12, wbc.range_end >> 12
    idxs = sorted(i for i, pfn in mapping.i_pages.items() if fl[pfn] & _DIRTY and lo <= i <= hi)
    run: list[tuple[int, int]] = []

    def flush(run: list[tuple[int, int]]) -> None:
        if not run:
            return
        bdev = host.i_sb.s_bdev
        now = task_now(m)
        done = bdev.submit(now, len(run), True) if bdev is not None else now
        for idx, pfn in run:
            mapping.wb_pending[idx] = done
            batch.pages.append((mapping, idx, pfn, done))
        batch.done = max(batch.done, done)
        m.vm_events[PGPGOUT] += 8 * len(run)

    for idx in idxs:
        if wbc.nr_to_write <= 0:
            break
        pfn = mapping.i_pages[idx]
        if fl[pfn] & _WRITEBACK:
            if wbc.sync_mode == WB_SYNC_NONE:
                wbc.pages_skipped += 1
                continue
            folio_wait_writeback(pfn)
        if not folio_clear_dirty_for_io(pfn):
            continue
        folio_start_writeback(pfn)
        host.disk_write(idx, m.physmem.page_bytes(pfn))
        if run and (run[-1][0] != idx - 1 or len(run) >= MAX_IO_PAGES):
            flush(run)
            run = []
        run.append((idx, pfn))
        wbc.nr_to_write -= 1
    flush(run)
    if not any(fl[p] & _DIRTY for p in mapping.i_pages.values()):
        from mmdbg.sim.fs.fs_writeback import inode_clear_dirty_pages

        inode_clear_dirty_pages(host)
    return batch


def end_writeback_batch(m: Any, batch: WbBatch, upto: int | None = None) -> int:
    """Complete the requests of ``batch`` that are done by ``upto`` (default: all)."""
    n = 0
    fl = m.mem_map.flags
    for mapping, idx, pfn, done in batch.pages:
        if upto is not None and done > upto:
            continue
        if mapping.i_pages.get(idx) != pfn or not fl[pfn] & _WRITEBACK or \
                mapping.wb_pending.get(idx) != done:
            continue
        folio_end_writeback(pfn)
        n += 1
    return n


def writeout_file_folio(m: Any, folio: int) -> None:
    """Reclaim's pageout of a dirty page-cache page: written now, the reclaimer waits."""
    from mmdbg.sim.mm.filemap import AddressSpace
    from mmdbg.sim.mm.readahead import io_wait_until

    mapping = m.mem_map.mapping.get(folio)
    fl = m.mem_map.flags
    if not isinstance(mapping, AddressSpace) or not fl[folio] & _DIRTY or fl[folio] & _WRITEBACK:
        return
    idx = m.mem_map.index.get(folio, 0)
    wbc = WritebackControl(nr_to_write=1, range_start=idx << 12, range_end=(idx << 12) + 4095)
    batch = write_cache_pages(mapping, wbc)
    io_wait_until(m, batch.done)
    fl[folio] &= ~_RECLAIM
    end_writeback_batch(m, batch)


def wakeup_flusher_threads(m: Any, reason: str) -> None:
    from mmdbg.sim.fs.fs_writeback import wakeup_flusher_threads as wft

    wft(m, reason)


@register_check
def check_dirty_writeback(m: Any) -> None:
    """nr_dirty equals the dirty page-cache pages of disk files; every page-cache page under
    writeback is counted in nr_writeback and has a pending request."""
    vm = getattr(m, "vm", None)
    if vm is None:
        return
    fl = m.mem_map.flags
    dirty = wb = 0
    for mapping in vm.cached_mappings.values():
        if mapping.host.shmem:
            continue
        for idx, pfn in mapping.i_pages.items():
            if fl[pfn] & _DIRTY:
                dirty += 1
            if fl[pfn] & _WRITEBACK:
                wb += 1
                assert idx in mapping.wb_pending, \
                    f"pfn {pfn:#x} under writeback without a request"
    nr_dirty = global_node_state(m, NR_FILE_DIRTY)
    assert nr_dirty == dirty, f"nr_dirty {nr_dirty} != dirty page-cache recount {dirty}"
    nr_wb = global_node_state(m, NR_WRITEBACK)
    assert nr_wb >= wb, f"nr_writeback {nr_wb} < page-cache writeback recount {wb}"
