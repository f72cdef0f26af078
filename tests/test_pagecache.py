"""Page cache, readahead and writeback (issue 7 points 1-3): kernel semantics."""

from __future__ import annotations

import pytest

import mmdbg
from mmdbg.shell.session import run_commands
from mmdbg.sim.fs import read_write
from mmdbg.sim.mm import page_writeback as pw
from mmdbg.sim.mm import readahead as ra_mod
from mmdbg.sim.mm.readahead import FileRaState, get_init_ra_size, get_next_ra_size
from mmdbg.sim.trace import find_tracepoint
from mmdbg.workloads import scenarios
from mmdbg.workloads.api import Process

PG_READAHEAD = 1 << 16
PG_DIRTY = 1 << 4
PG_WRITEBACK = 1 << 1


@pytest.fixture
def m():
    m = mmdbg.boot("mem=256M cpus=2", seed=0)
    yield m
    m.check_consistency()


def meminfo(m):
    return {ln.split(":")[0]: int(ln.split()[1]) for ln in m.read("/proc/meminfo").splitlines()
            if ln.split()[1].isdigit()}


def vmstat(m):
    return {k: int(v) for k, v in (ln.split() for ln in m.read("/proc/vmstat").splitlines())}


def proc_with_file(m, size, path="/data/f"):
    p = Process.start(m, "/usr/bin/t", ["t"])
    p.create_file(path, size)
    return p, p.open(path)


def test_ra_size_formulas():
    assert [get_init_ra_size(n, 32) for n in (1, 2, 4, 8, 16, 64)] == [4, 4, 8, 16, 32, 32]
    ra = FileRaState()
    sizes = []
    ra.size = 4
    for _ in range(5):
        ra.size = get_next_ra_size(ra, 32)
        sizes.append(ra.size)
    assert sizes == [8, 16, 32, 32, 32]
    assert get_next_ra_size(FileRaState(), 512) == 0
    r = FileRaState()
    r.size = 16
    assert get_next_ra_size(r, 512) == 64  # 4x below max/16


def test_sequential_read_ramps_window_up(m):
    p, fd = proc_with_file(m, 1 << 20)
    f = p.fds[fd]
    windows = []
    for _ in range(64):
        p.read(fd, 4096)
        if not windows or windows[-1] != (f.f_ra.start, f.f_ra.size):
            windows.append((f.f_ra.start, f.f_ra.size))
    assert windows == [(0, 4), (4, 8), (12, 16), (28, 32), (60, 32), (92, 32)]
    assert f.f_ra.async_size == 32


def test_read_ahead_kb_bounds_the_window(m):
    m.write("/sys/block/sda/queue/read_ahead_kb", "64")
    assert m.read("/sys/block/sda/queue/read_ahead_kb") == "64\n"
    p, fd = proc_with_file(m, 1 << 20)
    f = p.fds[fd]
    assert f.f_ra.ra_pages == 16
    sizes = set()
    for _ in range(64):
        p.read(fd, 4096)
        sizes.add(f.f_ra.size)
    assert max(sizes) == 16


def test_pg_readahead_marker_triggers_async_ra(m):
    p, fd = proc_with_file(m, 1 << 20)
    mapping = p.fds[fd].f_mapping
    p.read(fd, 4096)  # window 0..3, async_size 3: the mark is on page 1
    flags = m.mem_map.flags
    assert [bool(flags[mapping.i_pages[i]] & PG_READAHEAD) for i in range(4)] == \
        [False, True, False, False]
    tp = find_tracepoint("filemap:mm_filemap_add_to_page_cache")
    added = []
    att = tp.attach(lambda ev: added.append(ev.args.index))
    try:
        p.read(fd, 4096)  # page 1: a hit on the marker -> page_cache_async_ra
    finally:
        att.detach()
    assert added == list(range(4, 12))
    assert not flags[mapping.i_pages[1]] & PG_READAHEAD
    assert flags[mapping.i_pages[4]] & PG_READAHEAD  # async_size == size: mark at the start


def test_fadvise_random_and_willneed_and_madv_random(m):
    p, fd = proc_with_file(m, 1 << 20)
    p.fadvise(fd, 0, 0, read_write.POSIX_FADV_RANDOM)
    p.pread(fd, 4096, 40 * 4096)
    mapping = p.fds[fd].f_mapping
    assert sorted(mapping.i_pages) == [40]
    p.fadvise(fd, 0, 16 * 4096, read_write.POSIX_FADV_WILLNEED)
    assert sorted(mapping.i_pages) == [*range(16), 40]
    p.fadvise(fd, 0, 0, read_write.POSIX_FADV_SEQUENTIAL)
    assert p.fds[fd].f_ra.ra_pages == 64
    p.pread(fd, 16 * 4096, 0)  # waits for the WILLNEED read (locked pages are not dropped)
    p.fadvise(fd, 0, 0, read_write.POSIX_FADV_DONTNEED)
    assert not mapping.i_pages
    with pytest.raises(OSError):
        p.fadvise(fd, 0, 0, 9)
    # mmap faults: MADV_RANDOM reads only the faulting page, the default reads around it
    from mmdbg.sim.include.mm import MADV_RANDOM, MAP_PRIVATE, PROT_READ

    addr = p.mmap(1 << 20, PROT_READ, MAP_PRIVATE, fd)
    p.madvise(addr, 1 << 20, MADV_RANDOM)
    p.touch(addr + 100 * 4096, 1, write=False)
    assert sorted(mapping.i_pages) == [100]
    p.madvise(addr, 1 << 20, 0)  # MADV_NORMAL: read-around of ra_pages=64 centred on 200
    p.touch(addr + 200 * 4096, 1, write=False)
    assert sorted(mapping.i_pages)[1:] == list(range(168, 232))
    p.munmap(addr, 1 << 20)


def test_hits_and_misses_differ_in_simulated_time(m):
    p, fd = proc_with_file(m, 256 << 10)
    v0 = vmstat(m)
    t0 = m.clock.ns
    p.pread(fd, 4096, 0)
    miss = m.clock.ns - t0
    t0 = m.clock.ns
    p.pread(fd, 4096, 4096 * 2)
    hit = m.clock.ns - t0
    assert miss >= 80_000 and hit < 2_000, (miss, hit)
    assert vmstat(m)["pgpgin"] - v0["pgpgin"] == 16  # 4 pages read ahead, in KiB
    # a fault: major on a miss (waits for the disk), minor on a hit
    from mmdbg.sim.include.mm import MAP_PRIVATE, PROT_READ

    addr = p.mmap(256 << 10, PROT_READ, MAP_PRIVATE, fd)
    maj0 = vmstat(m)["pgmajfault"]
    t0 = m.clock.ns
    p.touch(addr + 40 * 4096, 1, write=False)
    major = m.clock.ns - t0
    assert vmstat(m)["pgmajfault"] == maj0 + 1
    t0 = m.clock.ns
    p.touch(addr + 2 * 4096, 1, write=False)
    minor = m.clock.ns - t0
    assert vmstat(m)["pgmajfault"] == maj0 + 1
    assert major > 50 * minor


def test_drop_caches(m):
    p, fd = proc_with_file(m, 1 << 20)
    p.read(fd, 1 << 20)
    wfd = p.open("/data/w", "w")
    p.write(wfd, b"d" * 8192)
    cached = meminfo(m)["Cached"]
    v0 = vmstat(m)
    m.write("/proc/sys/vm/drop_caches", "1")
    v1 = vmstat(m)
    assert v1["drop_pagecache"] == v0["drop_pagecache"] + 1
    assert v1["drop_slab"] == v0["drop_slab"]
    assert not p.fds[fd].f_mapping.i_pages  # clean, unmapped: dropped
    assert len(p.fds[wfd].f_mapping.i_pages) == 2  # dirty pages stay
    assert meminfo(m)["Cached"] <= cached - 1024
    assert m.log_lines()[-1].endswith(f"bash ({m.vm.last_pid + 1}): drop_caches: 1")
    m.write("/proc/sys/vm/drop_caches", "2")
    assert vmstat(m)["drop_slab"] == v0["drop_slab"] + 1
    m.write("/proc/sys/vm/drop_caches", "4")
    n = len(m.log_lines())
    m.write("/proc/sys/vm/drop_caches", "3")
    assert len(m.log_lines()) == n  # silenced by 4
    with pytest.raises(OSError):
        m.write("/proc/sys/vm/drop_caches", "5")


def test_dirty_thresholds(m):
    avail = m.nr_free_pages() - m.totalreserve_pages + 1  # no file LRU yet
    bg, thresh = pw.domain_dirty_limits(m)
    assert thresh == 20 * 4096 // 100 * avail // 4096
    assert bg == 10 * 4096 // 100 * avail // 4096
    assert pw.dirty_freerun_ceiling(thresh, bg) == (thresh + bg) // 2
    assert pw.dirty_setpoint(thresh, bg) == (thresh + (thresh + bg) // 2) // 2
    v = vmstat(m)
    assert (v["nr_dirty_background_threshold"], v["nr_dirty_threshold"]) == (bg, thresh)
    m.write("/proc/sys/vm/dirty_bytes", str(40 << 20))
    m.write("/proc/sys/vm/dirty_background_bytes", str(40 << 20))
    assert pw.domain_dirty_limits(m) == (5120, 10240)  # bg >= thresh: halved
    # the cubic position control: 1.0 at the setpoint, 2.0 far below, 0 at the limit
    assert pw.pos_ratio_polynom(1000, 1000, 2000) == 1024
    assert pw.wb_position_ratio(2000, 1000, 2000) == 0
    assert pw.pos_ratio_polynom(1000, 0, 2000) == 2042  # (limit - setpoint) | 1
    assert pw.dirty_poll_interval(0, 1 << 12) == 64


def test_fsync_writes_back_and_meminfo_dirty_writeback(m):
    p = Process.start(m, "/usr/bin/t", ["t"])
    fd = p.open("/data/w", "w")
    p.write(fd, b"x" * (1 << 20))
    mi = meminfo(m)
    assert mi["Dirty"] == 1024 and mi["Writeback"] == 0
    mapping = p.fds[fd].f_mapping
    assert all(m.mem_map.flags[pfn] & PG_DIRTY for pfn in mapping.i_pages.values())
    v0 = vmstat(m)
    t0 = m.clock.ns
    p.fsync(fd)
    assert m.clock.ns - t0 >= 256 * 8_000  # the disk time
    assert meminfo(m)["Dirty"] == 0 and meminfo(m)["Writeback"] == 0
    assert not any(m.mem_map.flags[pfn] & (PG_DIRTY | PG_WRITEBACK)
                   for pfn in mapping.i_pages.values())
    v1 = vmstat(m)
    assert v1["nr_written"] - v0["nr_written"] == 256
    assert v1["pgpgout"] - v0["pgpgout"] == 1024
    assert mapping.host.disk_read(3) == b"x" * 4096
    p.pwrite(fd, b"y" * 10, 4096 * 300)  # sparse: a partial page past the old end
    assert meminfo(m)["Dirty"] == 4
    p.sync()
    assert meminfo(m)["Dirty"] == 0
    assert p.pread(fd, 12, 4096 * 300 - 2) == b"\0\0" + b"y" * 10


def test_writeback_is_visible_while_in_flight(m):
    def prog(p):
        fd = p.open("/data/bg", "w")
        for _ in range(32):
            p.write(fd, b"z" * (1 << 20))
            yield
        yield p.sleep(0.5)

    Process.start(m, "/usr/bin/bgw", ["bgw"], prog)
    seen = 0
    for _ in range(100):
        m.run(2_000_000)
        seen = max(seen, meminfo(m)["Writeback"])
    assert seen > 0  # the flusher's requests take disk time
    m.run()
    assert meminfo(m)["Writeback"] == 0


def test_periodic_writeback_after_expire(m):
    def prog(p):
        fd = p.open("/data/small", "w")
        p.write(fd, b"y" * 65536)
        yield p.sleep(40)

    Process.start(m, "/usr/bin/w", ["w"], prog)
    m.run(25_000_000_000)
    assert meminfo(m)["Dirty"] == 64  # younger than dirty_expire_centisecs (30 s)
    m.run(11_000_000_000)
    assert meminfo(m)["Dirty"] == 0
    assert any(t.comm == "kworker/u8:1+fl" for t in m.tasks.values())


def test_dirty_throttle_scenario(m):
    events = []
    att = find_tracepoint("writeback:balance_dirty_pages").attach(
        lambda ev: events.append(dict(vars(ev.args))))
    try:
        p = scenarios.start(m, "dirty-throttle:size=64M")
        m.run()
    finally:
        att.detach()
    assert p.task.exit_code == 0
    assert getattr(p.task, "dirty_paused_ns", 0) > 10_000_000
    assert events and all(e["pause"] <= pw.MAX_PAUSE for e in events)
    bg, _ = pw.domain_dirty_limits(m)
    assert all(e["dirty"] > (e["limit"] + bg) // 2 or e["pause"] <= 0 for e in events)
    v = vmstat(m)
    assert v["nr_dirtied"] == v["nr_written"] == 16384
    assert meminfo(m)["Dirty"] == 0


def test_page_cache_thrash_scenario():
    m = mmdbg.boot("mem=96M cpus=2", seed=0)
    p = scenarios.start(m, "page-cache-thrash:size=112M,passes=2")
    m.run()
    assert p.task.exit_code == 0
    v = vmstat(m)
    assert v["workingset_refault_file"] > 20000
    assert v["pgpgin"] >= 2 * 112 * 1024 - 4096
    m.check_consistency()


def test_vmtouch_and_fincore(m):
    m.vm.fs.create("/data/f", 3 << 20, pattern=True)
    out = run_commands(m, "vmtouch /data/f")
    assert "  Resident Pages: 0/768  0/3M  0%\n" in out
    assert out.startswith("           Files: 1\n     Directories: 0\n")
    out = run_commands(m, "vmtouch -t /data/f\nfincore /data/f")
    assert "   Touched Pages: 768 (3M)\n" in out
    assert "RES PAGES SIZE FILE\n 3M   768   3M /data/f\n" in out
    out = run_commands(m, "vmtouch -e /data/f\nvmtouch /data/f")
    assert "   Evicted Pages: 768 (3M)\n" in out and "Resident Pages: 0/768" in out
    out = run_commands(m, "fincore /nope")
    assert "fincore: failed to open: /nope: No such file or directory" in out
    _ = ra_mod
