"""fork and copy-on-write: the CoW matrix, zero page, fork flags, rss after fork/exit."""

from __future__ import annotations

import pytest

import mmdbg
from mmdbg.sim.include.mm import MADV_DONTFORK, MADV_WIPEONFORK, MAP_ANONYMOUS, MAP_SHARED
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.uaccess import follow_pte
from mmdbg.sim.mm.vma import MM_ANONPAGES
from mmdbg.workloads.api import Process

N = 8


@pytest.fixture
def vm():
    m = mmdbg.boot("mem=256M cpus=2", seed=11)
    yield m
    m.check_consistency()


def pfn(p, a):
    return follow_pte(p.mm, a) >> 12 & 0xFFFFFFFFFF


def setup(vm):
    p = Process.start(vm, "/usr/bin/cow")
    a = p.mmap(N * 4096)
    for i in range(N):
        p.write_bytes(a + i * 4096, b"P%d" % i)
    c = p.fork()
    return p, c, a


def test_fork_shares_pages_read_only(vm):
    p, c, a = setup(vm)
    vm.check_consistency()
    for i in range(N):
        x = a + i * 4096
        assert pfn(p, x) == pfn(c, x)
        assert not follow_pte(p.mm, x) & 2 and not follow_pte(c.mm, x) & 2
        page = vm.page(pfn(p, x))
        assert page.page_mapcount() == 2 and page._refcount == 2
    assert c.mm.rss_stat[MM_ANONPAGES] == p.mm.rss_stat[MM_ANONPAGES]
    assert p.mm.rss_stat[MM_ANONPAGES] >= N
    # reads from both sides fault nothing and see the parent's data
    f0 = c.task.min_flt
    assert c.read_bytes(a, 2) == b"P0" and p.read_bytes(a, 2) == b"P0"
    assert c.task.min_flt == f0


def test_child_write_copies(vm):
    p, c, a = setup(vm)
    old = pfn(p, a)
    c.write_bytes(a, b"C0")
    assert pfn(c, a) != old and pfn(p, a) == old
    assert c.read_bytes(a, 2) == b"C0" and p.read_bytes(a, 2) == b"P0"
    assert vm.page(old).page_mapcount() == 1
    # the other pages are still shared
    assert pfn(p, a + 4096) == pfn(c, a + 4096)


def test_parent_write_copies(vm):
    p, c, a = setup(vm)
    old = pfn(c, a + 4096)
    p.write_bytes(a + 4096, b"Q1")
    assert pfn(p, a + 4096) != old and pfn(c, a + 4096) == old
    assert c.read_bytes(a + 4096, 2) == b"P1" and p.read_bytes(a + 4096, 2) == b"Q1"


def test_reuse_after_other_side_exits(vm):
    p, c, a = setup(vm)
    before = [pfn(p, a + i * 4096) for i in range(N)]
    reuse0 = vm.vm_events[vmstat.EV["pgreuse"]]
    c.exit(0)
    assert p.wait_now(c.pid) == (c.pid, 0)
    vm.check_consistency()
    for i in range(N):
        p.write_bytes(a + i * 4096, b"R")
    # nobody else maps the pages: written in place, no copy
    assert [pfn(p, a + i * 4096) for i in range(N)] == before
    assert vm.vm_events[vmstat.EV["pgreuse"]] - reuse0 == N


def test_copy_counts_and_frees(vm):
    p, c, a = setup(vm)
    base = p.mm.rss_stat[MM_ANONPAGES] - N
    free0 = vm.nr_free_pages() + vm.free_pcp_pages()
    for i in range(N):
        c.write_bytes(a + i * 4096, b"x")
    assert vm.nr_free_pages() + vm.free_pcp_pages() == free0 - N
    c.exit(0)
    p.wait_now()
    p.munmap(a, N * 4096)
    assert p.mm.rss_stat[MM_ANONPAGES] == base


def test_zero_page_then_write(vm):
    p = Process.start(vm, "/usr/bin/z")
    a = p.mmap(4 * 4096)
    base = p.mm.rss_stat[MM_ANONPAGES]
    assert p.read_bytes(a, 4) == bytes(4)
    assert pfn(p, a) == vm.vm.zero_pfn and follow_pte(p.mm, a) & 0x200  # special
    assert p.mm.rss_stat[MM_ANONPAGES] == base
    p.write_bytes(a, b"hi")
    assert pfn(p, a) != vm.vm.zero_pfn and p.mm.rss_stat[MM_ANONPAGES] == base + 1
    assert p.read_bytes(a, 4) == b"hi\0\0"


def test_shared_anon_is_shared_after_fork(vm):
    p = Process.start(vm, "/usr/bin/shm")
    a = p.mmap(2 * 4096, flags=MAP_SHARED | MAP_ANONYMOUS)
    p.write_bytes(a, b"one")
    c = p.fork()
    c.write_bytes(a, b"two")
    assert p.read_bytes(a, 3) == b"two"
    assert pfn(p, a) == pfn(c, a)
    assert p.mm.rss_stat[3] == 1 and c.mm.rss_stat[3] == 1  # MM_SHMEMPAGES


def test_dontfork_and_wipeonfork(vm):
    p = Process.start(vm, "/usr/bin/f")
    a = p.mmap(4096)
    b = p.mmap(4096)
    p.write_bytes(a, b"A")
    p.write_bytes(b, b"B")
    p.madvise(a, 4096, MADV_DONTFORK)
    p.madvise(b, 4096, MADV_WIPEONFORK)
    c = p.fork()
    assert c.mm.vma_lookup(a) is None
    assert c.mm.vma_lookup(b) is not None and c.read_bytes(b, 1) == b"\0"
    assert p.read_bytes(b, 1) == b"B"
