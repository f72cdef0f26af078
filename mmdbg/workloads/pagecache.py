"""Page-cache scenarios (issue 7), registered in the scenario registry.

=====================  ======================================================================
``page-cache-thrash``  a file bigger than memory read sequentially again and again: every
                       pass evicts what the next needs, refaults climb
``dirty-throttle``     a writer much faster than the disk is paused by balance_dirty_pages
=====================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mmdbg.workloads.api import Process
from mmdbg.workloads.programs import parse_size
from mmdbg.workloads.scenarios import Param, Scenario, register

CHUNK = 256 << 10


def _size(t: str) -> int:
    return parse_size(t)


def _page_cache_thrash(m: Any, a: dict[str, Any]) -> Process:
    path, size, passes = a["path"], a["size"], a["passes"]

    def prog(p: Process) -> Generator:
        if not p.m.vm.fs.exists(path):
            p.create_file(path, size)
        fd = p.open(path)
        for _ in range(passes):
            p.lseek(fd, 0)
            while p.read(fd, CHUNK):
                yield
        p.close(fd)
        return 0

    return Process.start(m, "/usr/bin/page-cache-thrash", ["page-cache-thrash", path], prog)


def _dirty_throttle(m: Any, a: dict[str, Any]) -> Process:
    path, size = a["path"], a["size"]

    def prog(p: Process) -> Generator:
        fd = p.open(path, "w")
        buf = bytes([0x5A]) * CHUNK
        done = 0
        while done < size:
            done += p.write(fd, buf[:min(CHUNK, size - done)])
            yield
        if a["fsync"]:
            p.fsync(fd)
            yield
        p.close(fd)
        return 0

    return Process.start(m, "/usr/bin/dirty-throttle", ["dirty-throttle", path], prog)


register(Scenario(
    "page-cache-thrash", "a file bigger than memory re-read: the page cache thrashes",
    """`page-cache-thrash` reads `path` (`size` bytes, created if missing) from start to end
`passes` times with 256 KiB read(2) calls.  Readahead ramps its window up to read_ahead_kb
(page_cache_sync_ra, then page_cache_async_ra at each PG_readahead page); the file does not
fit, so reclaim evicts the oldest pages -- exactly those the next pass needs first.  Every
re-read misses (pgmajfault stays 0: these are read misses, counted in pgpgin), the evicted
pages' shadow entries make workingset_refault_file climb, and the refault distance is too
long for workingset_activate_file: the working set is simply bigger than memory.""",
    (Param("size", "320M", _size, "file size"),
     Param("passes", "2", int, "times the file is read"),
     Param("path", "/data/big.bin", str, "file to read")),
    _page_cache_thrash, cmdline="mem=256M"))

register(Scenario(
    "dirty-throttle", "a fast writer paused by balance_dirty_pages",
    """`dirty-throttle` writes `size` bytes to `path` with 256 KiB write(2) calls, far faster
than the disk takes them.  Past the background threshold (dirty_background_ratio) the flusher
(kworker/u8:1+flush-8:0, wb_workfn) writes back in the background; past the freerun point
(thresh + bg_thresh) / 2 balance_dirty_pages pauses the writer (writeback:balance_dirty_pages
shows pause, period, task_ratelimit) so that dirty pages stay near the setpoint instead of
reaching dirty_ratio.  Dirty and Writeback in /proc/meminfo are non-zero while it runs;
with `fsync` the file is on disk when the writer exits.""",
    (Param("size", "96M", _size, "bytes written"),
     Param("path", "/data/out.bin", str, "file written"),
     Param("fsync", "yes", lambda t: t.strip().lower() in ("1", "yes", "true", "on", "y"),
           "fsync before exiting")),
    _dirty_throttle, cmdline="mem=256M"))
