"""Readahead (mm/readahead.c): the on-demand window of a file read sequentially.

Each open file has a ``file_ra_state`` (``file.f_ra``): ``start``/``size`` of the current
window, ``async_size`` (how many pages before its end the next window is started),
``ra_pages`` (the maximum, from the disk's ``read_ahead_kb``: 128 KiB = 32 pages),
``mmap_miss`` and ``prev_pos``.

* ``page_cache_sync_ra`` -- a read missed the cache.  At the start of the file, for a read
  bigger than the window or right after the previous read, a new window of
  ``get_init_ra_size(req, max)`` pages starts at the missing index (4 pages for a 1-page
  read with the default 32-page maximum) with ``async_size = size - req``; otherwise the
  cache history before the index says how long the sequential run already is; a lone
  random read reads just what was asked.
* ``page_cache_ra_unbounded`` allocates the missing pages, puts them in the cache and marks
  the page ``size - async_size`` into the window with ``PG_readahead`` (``PG_reclaim``'s
  bit); one request per ``MAX_IO_PAGES`` contiguous pages goes to the disk.
* ``page_cache_async_ra`` -- a read hit a ``PG_readahead`` page: the next window starts
  where the current one ends, ``get_next_ra_size`` (x4 while small, x2, then the maximum):
  4 -> 8 -> 16 -> 32 -> 32 ... pages, read without the reader waiting for it.
* ``force_page_cache_ra`` -- ``POSIX_FADV_RANDOM`` files read exactly what is asked;
  ``POSIX_FADV_WILLNEED``/``MADV_WILLNEED`` read a range in 2 MiB chunks.

The disk queue is modelled (``BlockDevice.submit``): a request completes at a simulated time;
pages read ahead are in the cache at once but stay "locked" until their request completes
(``mapping.io_pending``): a reader that reaches one first waits for the remaining time
(``folio_wait_locked``), fault-around skips it.  A synchronous miss makes the reader wait for
its request (and any queued before it).

Simplifications: order-0 folios only (``page_cache_ra_order`` never allocates large folios),
no ``blk_cgroup_congested``, ``bdi->io_pages`` is a constant 256 pages.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import page_alloc, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.trace import current_machine, kfunc

VM_READAHEAD_PAGES = 32  # SZ_128K / PAGE_SIZE
IO_PAGES = 256  # bdi->io_pages (max_sectors_kb = 1024)
MMAP_LOTSAMISS = 100
PGPGIN = vmstat.EV["pgpgin"]
_UPTODATE = 1 << pf.PG_uptodate
_READAHEAD = 1 << pf.PG_readahead
_WRITEBACK = 1 << pf.PG_writeback


class FileRaState:
    """``struct file_ra_state``."""

    ktype = "file_ra_state"

    def __init__(self, ra_pages: int = VM_READAHEAD_PAGES) -> None:
        self.start = 0
        self.size = 0
        self.async_size = 0
        self.ra_pages = ra_pages
        self.mmap_miss = 0
        self.prev_pos = -1

    def __repr__(self) -> str:
        return (f"<file_ra_state start={self.start} size={self.size} "
                f"async_size={self.async_size} ra_pages={self.ra_pages}>")


def file_ra_state_init(file: Any) -> FileRaState:
    """The state of a newly opened file: ``ra_pages`` from its disk (``file_ra_state_init``)."""
    bdev = file.f_inode.i_sb.s_bdev
    ra = FileRaState(bdev.ra_pages if bdev is not None else 0)
    file.f_ra = ra
    return ra


def file_ra(file: Any) -> FileRaState:
    ra = getattr(file, "f_ra", None)
    return ra if ra is not None else file_ra_state_init(file)


def get_init_ra_size(size: int, max_pages: int) -> int:
    """The first window for a read of ``size`` pages."""
    newsize = 1 << (max(size, 1) - 1).bit_length()  # roundup_pow_of_two
    if newsize <= max_pages // 32:
        return newsize * 4
    if newsize <= max_pages // 4:
        return newsize * 2
    return max_pages


def get_next_ra_size(ra: FileRaState, max_pages: int) -> int:
    """The window after ``ra.size``: x4 while below max/16, x2 up to max/2, then max."""
    cur = ra.size
    if cur < max_pages // 16:
        return 4 * cur
    if cur <= max_pages // 2:
        return 2 * cur
    return max_pages


def ractl_max_pages(ra: FileRaState, req_size: int) -> int:
    max_pages = ra.ra_pages
    if req_size > max_pages and max_pages < IO_PAGES:
        max_pages = min(req_size, IO_PAGES)
    return max_pages


def _last_index(mapping: Any) -> int:
    return (mapping.host.i_size + 4095) >> 12


def _fill_from_disk(m: Any, host: Any, pfn: int, index: int) -> None:
    data = host.disk_read(index)
    pm = m.physmem
    if data is None or not any(data):
        pm.clear_pages(pfn, 1)
    else:
        pm.set_page(pfn, data)
    m.mem_map.flags[pfn] |= _UPTODATE


@kfunc
def read_pages(mapping: Any, indexes: list[int]) -> int:
    """Submit one read request for contiguous new pages; the completion time in ns."""
    m = current_machine()
    bdev = mapping.host.i_sb.s_bdev
    if not indexes or bdev is None:
        return m.clock.ns
    done = bdev.submit(task_now(m), len(indexes), False)
    pending = mapping.io_pending
    for i in indexes:
        pending[i] = done
    m.vm_events[PGPGIN] += 8 * len(indexes)
    return done


@kfunc
def page_cache_ra_unbounded(mapping: Any, index: int, nr_to_read: int,
                            lookahead_size: int = 0) -> int:
    """Read ``nr_to_read`` pages from ``index`` into the cache, skipping cached ones; the page
    ``nr_to_read - lookahead_size`` in gets ``PG_readahead``.  Returns the pages added."""
    from mmdbg.sim.mm.filemap import filemap_add_folio

    m = current_machine()
    host = mapping.host
    last = _last_index(mapping)
    flags = m.mem_map.flags
    mark = nr_to_read - lookahead_size if lookahead_size else -1
    batch: list[int] = []
    n = 0
    for i in range(nr_to_read):
        idx = index + i
        if idx >= last:
            break
        if idx in mapping.i_pages:
            read_pages(mapping, batch)
            batch = []
            continue
        pfn = page_alloc.alloc_pages(mapping.gfp_mask, 0)
        if pfn is None:
            break
        _fill_from_disk(m, host, pfn, idx)
        if i == mark:
            flags[pfn] |= _READAHEAD
        filemap_add_folio(mapping, pfn, idx, mapping.gfp_mask)
        m.mem_map._refcount[pfn] -= 1  # the allocation reference: the cache keeps its own
        batch.append(idx)
        n += 1
        if len(batch) >= _max_io(host):
            read_pages(mapping, batch)
            batch = []
    read_pages(mapping, batch)
    return n


def _max_io(host: Any) -> int:
    from mmdbg.sim.fs.ramfs import MAX_IO_PAGES

    return MAX_IO_PAGES


@kfunc
def do_page_cache_ra(mapping: Any, index: int, nr_to_read: int, lookahead_size: int) -> int:
    """Clip the window at the end of the file, then read it."""
    isize = mapping.host.i_size
    if isize == 0:
        return 0
    end_index = (isize - 1) >> 12
    if index > end_index:
        return 0
    if nr_to_read > end_index - index:
        nr_to_read = end_index - index + 1
    return page_cache_ra_unbounded(mapping, index, nr_to_read, lookahead_size)


@kfunc
def force_page_cache_ra(mapping: Any, ra: FileRaState, index: int, nr_to_read: int) -> int:
    """Read exactly ``[index, index + nr_to_read)`` (bounded by the device), in 2 MiB chunks."""
    nr_to_read = min(nr_to_read, max(IO_PAGES, ra.ra_pages))
    n = 0
    while nr_to_read:
        chunk = min(512, nr_to_read)
        n += do_page_cache_ra(mapping, index, chunk, 0)
        index += chunk
        nr_to_read -= chunk
    return n


@kfunc(aliases=("page_cache_ra_order",))
def ra_submit(mapping: Any, ra: FileRaState) -> int:
    return do_page_cache_ra(mapping, ra.start, ra.size, ra.async_size)


def page_cache_prev_miss(mapping: Any, index: int, max_scan: int) -> int:
    """The first index not cached going back from ``index`` (-1 when all were cached)."""
    pages = mapping.i_pages
    for _ in range(max_scan):
        if index not in pages:
            return index
        if index == 0:
            return -1
        index -= 1
    return index


def page_cache_next_miss(mapping: Any, index: int, max_scan: int) -> int:
    pages = mapping.i_pages
    for _ in range(max_scan):
        if index not in pages:
            return index
        index += 1
    return index


@kfunc(aliases=("page_cache_sync_readahead", "ondemand_readahead"))
def page_cache_sync_ra(file: Any, mapping: Any, index: int, req_count: int) -> int:
    """A read of ``req_count`` pages missed at ``index``: start or continue a window."""
    from mmdbg.sim.fs.ramfs import FMODE_RANDOM

    ra = file_ra(file) if file is not None else FileRaState()
    do_forced_ra = file is not None and file.f_flags & FMODE_RANDOM
    if not ra.ra_pages:
        if file is None:
            return 0
        req_count = 1
        do_forced_ra = True
    if do_forced_ra:
        return force_page_cache_ra(mapping, ra, index, req_count)
    max_pages = ractl_max_pages(ra, req_count)
    prev_index = ra.prev_pos >> 12 if ra.prev_pos >= 0 else -1
    if not index or req_count > max_pages or index - prev_index <= 1:
        ra.start = index
        ra.size = get_init_ra_size(req_count, max_pages)
        ra.async_size = ra.size - req_count if ra.size > req_count else ra.size >> 1
        return ra_submit(mapping, ra)
    miss = page_cache_prev_miss(mapping, index - 1, max_pages)
    contig_count = index - miss - 1
    if contig_count <= req_count:
        # a standalone, small random read: read it as is, leave the state alone
        return do_page_cache_ra(mapping, index, req_count, 0)
    if miss == -1:
        contig_count *= 2  # cached from the start: a long-running stream
    ra.start = index
    ra.size = min(contig_count + req_count, max_pages)
    ra.async_size = 1
    return ra_submit(mapping, ra)


@kfunc(aliases=("page_cache_async_readahead",))
def page_cache_async_ra(file: Any, mapping: Any, folio: int, index: int,
                        req_count: int) -> int:
    """A read reached the ``PG_readahead`` page ``folio`` at ``index``: read the next window
    before it is needed."""
    m = current_machine()
    ra = file_ra(file) if file is not None else FileRaState()
    if not ra.ra_pages:
        return 0
    flags = m.mem_map.flags
    if flags[folio] & _WRITEBACK:  # the same bit is PG_reclaim
        return 0
    flags[folio] &= ~_READAHEAD
    max_pages = ractl_max_pages(ra, req_count)
    expected = ra.start + ra.size - ra.async_size
    if index == expected:
        ra.start += ra.size
        ra.size = max(ra.size, get_next_ra_size(ra, max_pages))
        ra.async_size = ra.size
        return ra_submit(mapping, ra)
    # a marked page without a matching window (interleaved streams): ask the cache
    start = page_cache_next_miss(mapping, index + 1, max_pages)
    if not start or start - index > max_pages:
        return 0
    ra.start = start
    ra.size = start - index + req_count
    ra.size = get_next_ra_size(ra, max_pages)
    ra.async_size = ra.size
    return ra_submit(mapping, ra)


def task_now(m: Any) -> int:
    """The current task's time: the clock plus the I/O wait it has already incurred in this
    step (the sleep itself happens when the step ends)."""
    t = m.vm.sched.current_step
    if t is not None and t is m.cpu_curr[m.cpu]:
        return m.clock.ns + t.se.pending_block_ns
    return m.clock.ns


def io_wait_until(m: Any, when: int) -> int:
    """Sleep (D state) until simulated time ``when``; the ns added."""
    wait = when - task_now(m)
    if wait <= 0:
        return 0
    from mmdbg.sim.kernel import sched_core

    sched_core.io_schedule_timeout(m, wait)
    return wait


def folio_wait_locked(m: Any, mapping: Any, index: int) -> int:
    """Wait until the read bringing page ``index`` in has completed; the ns waited."""
    done = mapping.io_pending.pop(index, None)
    if done is None:
        return 0
    return io_wait_until(m, done)


def folio_locked(m: Any, mapping: Any, index: int) -> bool:
    """Is the page's read still in flight (fault-around skips it)?"""
    done = mapping.io_pending.get(index)
    if done is None:
        return False
    if done <= task_now(m):
        del mapping.io_pending[index]
        return False
    return True


def ra_pages_set(m: Any, ra_kb: int) -> None:
    """/sys/block/sda/queue/read_ahead_kb: the disk's ``ra_pages`` for files opened later."""
    m.vm.fs.disk.ra_pages = ra_kb >> 2


def register(v: Any, m: Any) -> None:
    import errno

    from mmdbg.sim.fs.proc_sys import parse_int
    from mmdbg.sim.fs.vfs import KernelError

    disk = m.vm.fs.disk

    def read_kb() -> str:
        return f"{disk.ra_pages << 2}\n"

    def write_kb(text: str) -> None:
        value = parse_int(text)
        if value < 0 or value > (1 << 31) - 1:
            raise KernelError(errno.EINVAL)
        ra_pages_set(m, value)

    v.register(f"/sys/block/{disk.name}/queue/read_ahead_kb", read_kb, write_kb)
