"""mmap family semantics: errno values, VMA split/merge, munmap + TLB, brk, stack, mremap,
madvise, mlock, overcommit, SIGSEGV."""

from __future__ import annotations

import errno
import re

import pytest

import mmdbg
from mmdbg.sim.arch.x86.tlb import tlb_stats
from mmdbg.sim.include.mm import (
    MADV_DONTNEED,
    MADV_FREE,
    MADV_HUGEPAGE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_FIXED_NOREPLACE,
    MAP_NORESERVE,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MREMAP_MAYMOVE,
    PROT_EXEC,
    PROT_NONE,
    PROT_READ,
    PROT_WRITE,
)
from mmdbg.sim.kernel.signal import SIGSEGV, TaskKilled
from mmdbg.sim.mm.uaccess import follow_pte
from mmdbg.sim.mm.vma import MM_ANONPAGES, VM_ACCOUNT, VM_HUGEPAGE, VM_LOCKED
from mmdbg.workloads.api import Process

ANON = MAP_PRIVATE | MAP_ANONYMOUS
PAGE = 4096


@pytest.fixture
def vm():
    m = mmdbg.boot("mem=256M cpus=2", seed=13)
    yield m
    m.check_consistency()


@pytest.fixture
def p(vm):
    return Process.start(vm, "/usr/bin/t")


def errno_of(fn, *a, **k):
    with pytest.raises(OSError) as ei:
        fn(*a, **k)
    return ei.value.errno


def test_mmap_errors(p):
    assert errno_of(p.mmap, 0) == errno.EINVAL
    assert errno_of(p.mmap, PAGE, flags=MAP_ANONYMOUS) == errno.EINVAL  # no SHARED/PRIVATE
    assert errno_of(p.mmap, PAGE, flags=ANON | MAP_FIXED, addr=0x10001) == errno.EINVAL
    assert errno_of(p.mmap, PAGE, flags=MAP_PRIVATE) == errno.EBADF  # file mapping, no file
    assert errno_of(p.mmap, 1 << 48) == errno.ENOMEM
    assert errno_of(p.mmap, PAGE, prot=0x100) == errno.EINVAL
    a = p.mmap(4 * PAGE)
    assert errno_of(p.mmap, PAGE, flags=ANON | MAP_FIXED_NOREPLACE, addr=a + PAGE) == \
        errno.EEXIST
    p.create_file("/data/ro", 8192)
    fd = p.open("/data/ro", "r")
    assert errno_of(p.mmap, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd) == errno.EACCES
    assert errno_of(p.munmap, a + 1, PAGE) == errno.EINVAL
    assert errno_of(p.mprotect, a, PAGE, 0x1000) == errno.EINVAL
    p.close(fd)


def test_map_fixed_replaces(p):
    a = p.mmap(4 * PAGE)
    p.write_bytes(a + PAGE, b"old")
    b = p.mmap(PAGE, flags=ANON | MAP_FIXED, addr=a + PAGE)
    assert b == a + PAGE
    assert p.read_bytes(b, 3) == b"\0\0\0"


def test_partial_munmap_splits(vm, p):
    a = p.mmap(10 * PAGE)
    p.touch(a, 10 * PAGE)
    n0 = p.mm.map_count
    p.munmap(a + 3 * PAGE, 2 * PAGE)
    assert p.mm.map_count == n0 + 1
    left, right = p.mm.vma_lookup(a), p.mm.vma_lookup(a + 5 * PAGE)
    assert (left.vm_start, left.vm_end) == (a, a + 3 * PAGE)
    assert (right.vm_start, right.vm_end) == (a + 5 * PAGE, a + 10 * PAGE)
    assert right.vm_pgoff == (a >> 12) + 5
    assert p.mm.vma_lookup(a + 3 * PAGE) is None
    with pytest.raises(TaskKilled):
        p.touch(a + 3 * PAGE, 1)


def test_mprotect_splits_and_merges(p):
    a = p.mmap(8 * PAGE)
    n0 = p.mm.map_count
    p.mprotect(a + 2 * PAGE, 2 * PAGE, PROT_READ)
    assert p.mm.map_count == n0 + 2
    assert p.mm.vma_lookup(a + 2 * PAGE).vm_flags & 3 == 1
    p.mprotect(a + 2 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE)
    assert p.mm.map_count == n0  # merged back
    v = p.mm.vma_lookup(a)
    assert (v.vm_start, v.vm_end) == (a, a + 8 * PAGE)
    assert errno_of(p.mprotect, a - 16 * PAGE, 20 * PAGE, PROT_READ) == errno.ENOMEM


def test_mprotect_then_write_is_sigsegv(vm, p):
    a = p.mmap(2 * PAGE)
    p.write_bytes(a, b"ok")
    p.mprotect(a, PAGE, PROT_READ)
    assert p.read_bytes(a, 2) == b"ok"
    with pytest.raises(TaskKilled) as ei:
        p.write_bytes(a, b"no")
    assert ei.value.sig == SIGSEGV
    assert p.task.exit_code & 0x7F == SIGSEGV
    line = [ln for ln in vm.log_lines() if "segfault" in ln][-1]
    assert re.search(rf"t\[{p.pid}\]: segfault at {a:x} ip [0-9a-f]{{16}} sp [0-9a-f]{{16}} "
                     r"error 7 in t\[[0-9a-f]+,[0-9a-f]+\+[0-9a-f]+\] likely on CPU \d "
                     r"\(core \d, socket 0\)$", line), line
    assert [ln for ln in vm.log_lines() if "Code: " in ln]


def test_prot_none_and_exec(p):
    a = p.mmap(2 * PAGE)
    p.mprotect(a, PAGE, PROT_NONE)
    with pytest.raises(TaskKilled):
        p.read_bytes(a, 1)


def test_exec_nx_faults(vm, p):
    a = p.mmap(PAGE)
    p.touch(a, PAGE)
    with pytest.raises(TaskKilled):
        p.execute(a)
    assert "error 15" in [ln for ln in vm.log_lines() if "segfault" in ln][-1]


def test_exec_allowed_with_prot_exec(p):
    a = p.mmap(PAGE, PROT_READ | PROT_WRITE | PROT_EXEC)
    p.touch(a, PAGE)
    p.execute(a)


def test_munmap_frees_and_flushes_tlb(vm, p):
    a = p.mmap(16 * PAGE)
    p.touch(a, 16 * PAGE)
    rss = p.mm.rss_stat[MM_ANONPAGES]
    ts = vm.vm.tlb[p.task.cpu]
    assert any(a >> 12 <= v < (a >> 12) + 16 for v in ts.entries)
    free0 = vm.nr_free_pages() + vm.free_pcp_pages()
    flushes0 = tlb_stats(vm)["flush_one"] + tlb_stats(vm)["flushes"]
    p.munmap(a, 16 * PAGE)
    assert p.mm.rss_stat[MM_ANONPAGES] == rss - 16
    assert vm.nr_free_pages() + vm.free_pcp_pages() >= free0 + 16
    assert not any(a >> 12 <= v < (a >> 12) + 16 for v in ts.entries)
    assert tlb_stats(vm)["flush_one"] + tlb_stats(vm)["flushes"] > flushes0


def test_tlb_shootdown_for_shared_mm(vm, p):
    """A thread (CLONE_VM) on the other CPU holds the mm: unmapping sends an IPI."""
    from mmdbg.sim.kernel.fork import CLONE_THREAD, CLONE_VM, kernel_clone
    from mmdbg.sim.kernel.vm_init import task_context

    a = p.mmap(4 * PAGE)
    p.touch(a, 4 * PAGE)
    with task_context(vm, p.task):
        tid = kernel_clone(CLONE_VM | CLONE_THREAD, None)
    th = vm.tasks[tid]
    other = 1 - p.task.cpu
    with task_context(vm, th, cpu=other):
        pass
    vm.vm.tlb[other].loaded_mm = p.mm  # the thread runs there
    vm.vm.tlb[other].is_lazy = False
    p.mm.cpu_bitmap.add(other)
    vm.vm.tlb[other].entries[a >> 12] = follow_pte(p.mm, a)
    s0 = tlb_stats(vm)["shootdowns"]
    p.munmap(a, 4 * PAGE)
    assert tlb_stats(vm)["shootdowns"] == s0 + 1
    assert a >> 12 not in vm.vm.tlb[other].entries
    vm.vm.tlb[other].is_lazy = True
    with task_context(vm, th):
        from mmdbg.sim.kernel.exit import do_exit

        do_exit(0)


def test_brk_grows_and_shrinks(p):
    start = p.brk(0)
    assert p.brk(start + 3 * PAGE) == start + 3 * PAGE
    heap = p.mm.vma_lookup(start)
    assert heap is not None and heap.vm_flags & VM_ACCOUNT
    p.write_bytes(start + 2 * PAGE, b"heap")
    assert p.brk(start + PAGE) == start + PAGE
    assert p.mm.vma_lookup(start + 2 * PAGE) is None
    assert p.brk(start - PAGE) == start + PAGE  # below start_brk: refused, old break
    assert p.sbrk(0) == start + PAGE


def test_stack_grows_down(vm, p):
    stack = next(v for v in p.mm.vmas() if v.vm_flags & 0x100)
    start = stack.vm_start
    stk0 = p.mm.stack_vm
    p.write_bytes(start - 5 * PAGE, b"deep")
    assert stack.vm_start == start - 5 * PAGE
    assert p.mm.stack_vm == stk0 + 5
    with pytest.raises(TaskKilled):
        p.write_bytes(start - (9 << 20), b"too deep")  # beyond RLIMIT_STACK (8 MiB)


def test_mremap_grow_and_move(p):
    a = p.mmap(2 * PAGE)
    p.write_bytes(a, b"keep me")
    p.mmap(PAGE, flags=ANON | MAP_FIXED, addr=a + 2 * PAGE)  # blocks growing in place
    b = p.mremap(a, 2 * PAGE, 8 * PAGE, MREMAP_MAYMOVE)
    assert b != a
    assert p.read_bytes(b, 7) == b"keep me"
    assert p.mm.vma_lookup(a) is None
    assert errno_of(p.mremap, b, 8 * PAGE, 64 * PAGE, 0) in (errno.ENOMEM,)
    c = p.mremap(b, 8 * PAGE, 4 * PAGE)
    assert c == b and p.mm.vma_lookup(b).vm_end == b + 4 * PAGE


def test_madvise(vm, p):
    a = p.mmap(4 * PAGE)
    p.write_bytes(a, b"gone")
    p.madvise(a, 4 * PAGE, MADV_DONTNEED)
    assert follow_pte(p.mm, a) == 0
    assert p.read_bytes(a, 4) == bytes(4)
    p.write_bytes(a + PAGE, b"lazy")
    p.madvise(a, 4 * PAGE, MADV_FREE)
    smaps = vm.read(f"/proc/{p.pid}/smaps")
    assert re.search(r"LazyFree:\s+4 kB", smaps)
    p.madvise(a + PAGE, PAGE, MADV_HUGEPAGE)
    assert p.mm.vma_lookup(a + PAGE).vm_flags & VM_HUGEPAGE
    assert not p.mm.vma_lookup(a).vm_flags & VM_HUGEPAGE
    assert True
    assert errno_of(p.madvise, a, PAGE, 99) == errno.EINVAL
    assert errno_of(p.madvise, a + 1, PAGE, MADV_DONTNEED) == errno.EINVAL


def test_populate_and_mlock(vm, p):
    rss0 = p.mm.rss_stat[MM_ANONPAGES]
    a = p.mmap(8 * PAGE, flags=ANON | MAP_POPULATE)
    assert p.mm.rss_stat[MM_ANONPAGES] == rss0 + 8
    b = p.mmap(4 * PAGE)
    p.mlock(b, 4 * PAGE)
    assert p.mm.locked_vm == 4 and p.mm.vma_lookup(b).vm_flags & VM_LOCKED
    assert "VmLck:\t      16 kB" in vm.read(f"/proc/{p.pid}/status")
    assert "Mlocked:              16 kB" in vm.read("/proc/meminfo")
    p.munlock(b, 4 * PAGE)
    assert p.mm.locked_vm == 0
    p.munmap(a, 8 * PAGE)


def test_overcommit_modes(vm, p):
    total = vm.totalram_pages * PAGE
    # 0 (heuristic): one request bigger than RAM + swap fails, smaller ones pass
    assert errno_of(p.mmap, total + (64 << 20)) == errno.ENOMEM
    a = p.mmap(total // 2)
    p.munmap(a, total // 2)
    assert "__vm_enough_memory: pid: " in vm.dmesg()
    # MAP_NORESERVE is not accounted
    c0 = vm.vm_committed_as
    b = p.mmap(total + (64 << 20), flags=ANON | MAP_NORESERVE)
    assert vm.vm_committed_as == c0
    p.munmap(b, total + (64 << 20))
    # 1 (always): anything goes
    vm.write("/proc/sys/vm/overcommit_memory", "1")
    big = p.mmap(4 * total)
    p.munmap(big, 4 * total)
    # 2 (never): Committed_AS may not pass CommitLimit; NORESERVE is ignored
    vm.write("/proc/sys/vm/overcommit_memory", "2")
    limit_kb = int(re.search(r"CommitLimit:\s+(\d+)", vm.read("/proc/meminfo")).group(1))
    assert errno_of(p.mmap, limit_kb * 1024) == errno.ENOMEM
    assert errno_of(p.mmap, limit_kb * 1024, flags=ANON | MAP_NORESERVE) == errno.ENOMEM
    small = p.mmap(16 * PAGE)
    committed = int(re.search(r"Committed_AS:\s+(\d+)", vm.read("/proc/meminfo")).group(1))
    assert committed == vm.vm_committed_as * 4 and committed < limit_kb
    # read-only private mappings are not accounted
    ro = p.mmap(limit_kb * 1024, PROT_READ)
    p.munmap(ro, limit_kb * 1024)
    p.munmap(small, 16 * PAGE)
    vm.write("/proc/sys/vm/overcommit_memory", "0")
