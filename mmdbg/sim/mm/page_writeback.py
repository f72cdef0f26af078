"""Dirty-page accounting and throttling (mm/page-writeback.c).

``domain_dirty_limits``: the dirtyable memory is free pages plus the file LRU minus the
reserves; ``dirty_ratio``/``dirty_bytes`` give the threshold, ``dirty_background_ratio``/
``dirty_background_bytes`` the background threshold (halved when not below the threshold).
``balance_dirty_pages_ratelimited`` runs after a task dirties pages: every ``ratelimit`` pages
(32 by default, ``ratelimit_pages``) it checks the global state; above the background
threshold it kicks the flusher (``wb_start_background_writeback``); above the *freerun*
point ``(thresh + bg_thresh) / 2`` it pauses the task in proportion to how far the dirty count
is past the setpoint, at most ``MAX_PAUSE`` (200 ms), as the kernel's position control does;
at the hard limit the pause is the maximum.  Tracepoints ``writeback:global_dirty_state`` and
``writeback:balance_dirty_pages``.

Simplification: one global writeback domain (no per-bdi/per-wb bandwidth estimation; the
task's rate is set by the distance to the setpoint only), no memcg dirty domains.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

HZ = 1000
MAX_PAUSE = HZ // 5  # 200 ms
RATELIMIT_PAGES = 32
NS = vmstat.NS
_DIRTY = 1 << pf.PG_dirty
_WRITEBACK = 1 << pf.PG_writeback

_tp_global = declare_tracepoint("writeback:global_dirty_state")
_tp_bdp = declare_tracepoint("writeback:balance_dirty_pages")
_tp_dirty_folio = declare_tracepoint("writeback:writeback_dirty_folio")


def global_dirtyable_memory(m: Any) -> int:
    free = sum(z.nr_free_pages for z in m.zones)
    file = sum(n.vm_stat[NS["nr_inactive_file"]] + n.vm_stat[NS["nr_active_file"]]
               for n in m.node_data)
    return max(free - m.totalreserve_pages, 0) + file


def domain_dirty_limits(m: Any) -> tuple[int, int]:
    """(background_thresh, thresh) in pages."""
    available = global_dirtyable_memory(m)
    s = m.sysctl
    if s["vm.dirty_bytes"]:
        thresh = -(-s["vm.dirty_bytes"] // 4096)
    else:
        thresh = s["vm.dirty_ratio"] * available // 100
    if s["vm.dirty_background_bytes"]:
        bg = -(-s["vm.dirty_background_bytes"] // 4096)
    else:
        bg = s["vm.dirty_background_ratio"] * available // 100
    if bg >= thresh:
        bg = thresh // 2
    t = m.current
    if t is not None and getattr(t, "policy", 0) in (1, 2):  # rt_task
        bg += bg // 4
        thresh += thresh // 4
    return bg, thresh


def global_dirty_limits(m: Any) -> tuple[int, int]:
    bg, thresh = domain_dirty_limits(m)
    m.global_stat[vmstat.GLOBAL_STAT_ITEMS.index("nr_dirty_threshold")] = thresh
    m.global_stat[vmstat.GLOBAL_STAT_ITEMS.index("nr_dirty_background_threshold")] = bg
    return bg, thresh


def dirty_freerun_ceiling(thresh: int, bg_thresh: int) -> int:
    return (thresh + bg_thresh) // 2


def nr_dirty_pages(m: Any) -> int:
    return sum(n.vm_stat[NS["nr_dirty"]] + n.vm_stat[NS["nr_writeback"]] for n in m.node_data)


def pos_ratio_pause(dirty: int, freerun: int, setpoint: int, limit: int) -> int:
    """Pause in jiffies for a task dirtying above freerun: grows as dirty approaches the
    limit (a linear stand-in for the kernel's cubic pos_ratio), MAX_PAUSE at the limit."""
    if dirty <= freerun:
        return 0
    if dirty >= limit:
        return MAX_PAUSE
    span = max(limit - freerun, 1)
    x = (dirty - freerun) / span
    return max(1, int(MAX_PAUSE * x * x * x + (4 if dirty >= setpoint else 1)))


@kfunc
def balance_dirty_pages(mapping: Any, pages_dirtied: int) -> int:
    """Throttle the current task against the dirty limits; returns the pause in jiffies."""
    from mmdbg.sim.kernel.sched_core import io_schedule_timeout

    m = current_machine()
    bg, thresh = global_dirty_limits(m)
    dirty = nr_dirty_pages(m)
    freerun = dirty_freerun_ceiling(thresh, bg)
    setpoint = (thresh + freerun) // 2
    if _tp_global.enabled:
        wb_ = sum(n.vm_stat[NS["nr_writeback"]] for n in m.node_data)
        _tp_global.fire(nr_dirty=dirty - wb_, nr_writeback=wb_, background_thresh=bg,
                        dirty_thresh=thresh, dirty_limit=thresh,
                        nr_dirtied=sum(n.vm_stat[NS["nr_dirtied"]] for n in m.node_data),
                        nr_written=sum(n.vm_stat[NS["nr_written"]] for n in m.node_data))
    if dirty > bg:
        from mmdbg.sim.fs.fs_writeback import wb_start_background_writeback

        wb_start_background_writeback(m)
    pause = pos_ratio_pause(dirty, freerun, setpoint, thresh)
    t = m.current
    if pause and t is not None and not t.is_kthread():
        if _tp_bdp.enabled:
            _tp_bdp.fire(bdi="8:0", limit=thresh, setpoint=setpoint, dirty=dirty,
                         wb_setpoint=setpoint, wb_dirty=dirty, dirty_ratelimit=0,
                         task_ratelimit=0, dirtied=pages_dirtied, dirtied_pause=pages_dirtied,
                         paused=0, pause=pause, period=pause, think=0, cgroup_ino=1)
        t.dirty_paused_ns = getattr(t, "dirty_paused_ns", 0) + pause * 1_000_000
        m.dirty_throttled = getattr(m, "dirty_throttled", 0) + 1
        io_schedule_timeout(m, pause * 1_000_000)
    return pause


@kfunc
def balance_dirty_pages_ratelimited(mapping: Any) -> None:
    """Called after a task dirtied a page (the vm.hooks entry)."""
    m = current_machine()
    t = m.current
    if t is None:
        return
    t.nr_dirtied = getattr(t, "nr_dirtied", 0) + 1
    if t.nr_dirtied >= RATELIMIT_PAGES:
        n = t.nr_dirtied
        t.nr_dirtied = 0
        balance_dirty_pages(mapping, n)


def writeout_file_folio(m: Any, folio: int) -> None:
    """Write one dirty page-cache page to its file now (reclaim's pageout, the flusher)."""
    from mmdbg.sim.kernel.sched_core import io_schedule_timeout
    from mmdbg.sim.mm.filemap import AddressSpace, folio_mkclean

    mapping = m.mem_map.mapping.get(folio)
    fl = m.mem_map.flags
    if not isinstance(mapping, AddressSpace) or not fl[folio] & _DIRTY:
        return
    folio_mkclean(folio)
    host = mapping.host
    host.disk_write(m.mem_map.index.get(folio, 0), m.physmem.page_bytes(folio))
    fl[folio] &= ~_DIRTY
    st = m.vm.nodestat[folio >> 9]
    st[NS["nr_dirty"]] -= 1
    st[NS["nr_written"]] += 1
    m.vm_events[vmstat.EV["pgpgout"]] += 8
    if host.i_sb.s_bdev is not None:
        io_schedule_timeout(m, host.i_sb.s_bdev.write_cost(1))


def wakeup_flusher_threads(m: Any, reason: str) -> None:
    from mmdbg.sim.fs.fs_writeback import wakeup_flusher_threads as wft

    wft(m, reason)


_ = (_WRITEBACK, _tp_dirty_folio)
