"""File I/O system calls (fs/read_write.c, fs/sync.c, mm/fadvise.c, mm/readahead.c).

``ksys_read``/``ksys_write`` use and advance the file position, ``ksys_pread64``/
``ksys_pwrite64`` do not; both go through the page cache (``filemap_read``,
``generic_perform_write``).  ``vfs_fsync_range`` writes back the file's dirty pages and waits
for the disk (``fdatasync`` is the same here: there is no inode metadata to write);
``ksys_sync`` wakes the flusher and writes every dirty inode, waiting for the disk.
``generic_fadvise``: ``POSIX_FADV_NORMAL`` restores the disk's ``ra_pages``, ``SEQUENTIAL``
doubles it, ``RANDOM`` sets FMODE_RANDOM (no readahead), ``WILLNEED`` starts reading the
range without waiting, ``DONTNEED`` starts writeback of the range (WB_SYNC_NONE) and drops
its clean, unmapped pages (``invalidate_mapping_pages``).

Each call costs ``cost.syscall`` plus the copy of the bytes (charged by the page cache).
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.fs.ramfs import FMODE_RANDOM, File
from mmdbg.sim.mm import filemap, readahead
from mmdbg.sim.trace import current_machine, kfunc

POSIX_FADV_NORMAL = 0
POSIX_FADV_RANDOM = 1
POSIX_FADV_SEQUENTIAL = 2
POSIX_FADV_WILLNEED = 3
POSIX_FADV_DONTNEED = 4
POSIX_FADV_NOREUSE = 5
LLONG_MAX = (1 << 63) - 1


def _syscall(m: Any) -> None:
    m.clock.ns += m.vm.cost.syscall


@kfunc(aliases=("vfs_read",))
def ksys_read(file: File, count: int) -> bytes:
    m = current_machine()
    _syscall(m)
    if count < 0:
        raise OSError(errno.EINVAL, "read: Invalid argument")
    data = filemap.filemap_read(file, file.f_pos, count)
    file.f_pos += len(data)
    return data


@kfunc(aliases=("vfs_write",))
def ksys_write(file: File, data: bytes) -> int:
    m = current_machine()
    _syscall(m)
    if "a" in file.f_mode:
        file.f_pos = file.f_inode.i_size
    n = filemap.generic_perform_write(file, file.f_pos, bytes(data))
    file.f_pos += n
    return n


@kfunc
def ksys_pread64(file: File, count: int, pos: int) -> bytes:
    m = current_machine()
    _syscall(m)
    if pos < 0 or count < 0:
        raise OSError(errno.EINVAL, "pread: Invalid argument")
    return filemap.filemap_read(file, pos, count)


@kfunc
def ksys_pwrite64(file: File, data: bytes, pos: int) -> int:
    m = current_machine()
    _syscall(m)
    if pos < 0:
        raise OSError(errno.EINVAL, "pwrite: Invalid argument")
    return filemap.generic_perform_write(file, pos, bytes(data))


@kfunc(aliases=("do_fsync", "vfs_fsync"))
def vfs_fsync_range(file: File, start: int = 0, end: int = LLONG_MAX,
                    datasync: bool = False) -> int:
    """fsync/fdatasync: write the range back and wait for the disk; pages written."""
    m = current_machine()
    _syscall(m)
    return filemap.filemap_write_and_wait_range(file.f_mapping, start, end)


@kfunc
def ksys_sync() -> int:
    """sync(2): every dirty page of every file reaches the disk before it returns."""
    from mmdbg.sim.fs import fs_writeback

    m = current_machine()
    _syscall(m)
    return fs_writeback.ksys_sync_inodes(m)


@kfunc(aliases=("mapping_try_invalidate", "invalidate_mapping_pages"))
def invalidate_mapping_pages(mapping: Any, start: int, end: int) -> int:
    """Drop the clean, unlocked, unmapped pages of [start, end] (page indexes) from the cache;
    dirty, under-writeback, mapped or otherwise referenced pages stay.  Pages dropped."""
    m = current_machine()
    mm = m.mem_map
    fl = mm.flags
    keep = 1 << 4 | 1 << 1  # PG_dirty | PG_writeback
    n = 0
    for idx in sorted(i for i in mapping.i_pages if start <= i <= end):
        pfn = mapping.i_pages[idx]
        if fl[pfn] & keep or mm._refcount[pfn] != 1 or mm._mapcount[pfn] >= 0:
            continue
        if idx in mapping.io_pending and readahead.folio_locked(m, mapping, idx):
            continue
        filemap.filemap_remove_folio(pfn)
        n += 1
    return n


@kfunc(aliases=("ksys_fadvise64_64", "vfs_fadvise"))
def generic_fadvise(file: File, offset: int, length: int, advice: int) -> int:
    """posix_fadvise(2); returns 0 or -errno."""
    m = current_machine()
    _syscall(m)
    if advice not in range(6) or offset < 0 or length < 0:
        return -errno.EINVAL
    mapping = file.f_mapping
    if mapping.host.shmem:
        return 0
    end = LLONG_MAX if not length else offset + length - 1
    bdev = mapping.host.i_sb.s_bdev
    bdi_ra = bdev.ra_pages if bdev is not None else 0
    ra = readahead.file_ra(file)
    if advice == POSIX_FADV_NORMAL:
        ra.ra_pages = bdi_ra
        file.f_flags &= ~FMODE_RANDOM
    elif advice == POSIX_FADV_RANDOM:
        file.f_flags |= FMODE_RANDOM
    elif advice == POSIX_FADV_SEQUENTIAL:
        ra.ra_pages = bdi_ra * 2
        file.f_flags &= ~FMODE_RANDOM
    elif advice == POSIX_FADV_WILLNEED:
        start_index = offset >> 12
        end_index = min(end, mapping.host.i_size - 1) >> 12
        if end_index >= start_index:
            readahead.force_page_cache_ra(mapping, ra, start_index, end_index - start_index + 1)
    elif advice == POSIX_FADV_DONTNEED:
        from mmdbg.sim.mm.page_writeback import WB_SYNC_NONE

        filemap.filemap_fdatawrite_range(mapping, offset, end, WB_SYNC_NONE)
        start_index = (offset + 4095) >> 12
        end_index = end >> 12
        if end != LLONG_MAX and (end & 4095) != 4095:
            end_index -= 1  # only whole pages
        if end_index >= start_index:
            invalidate_mapping_pages(mapping, start_index, end_index)
    return 0
