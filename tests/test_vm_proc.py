"""/proc/PID views: maps, smaps (Rss/Pss with sharing), smaps_rollup, status, statm, pagemap,
oom_score_adj."""

from __future__ import annotations

import errno
import re

import pytest

import mmdbg
from mmdbg.sim.fs.proc_pid import (
    PM_FILE,
    PM_MMAP_EXCLUSIVE,
    PM_PRESENT,
    PM_SOFT_DIRTY,
    pagemap_entries,
)
from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.mm.uaccess import follow_pte
from mmdbg.workloads.api import Process

PAGE = 4096


@pytest.fixture
def vm():
    m = mmdbg.boot("mem=256M cpus=2", seed=17)
    yield m
    m.check_consistency()


def smaps_of(vm, pid, addr):
    text = vm.read(f"/proc/{pid}/smaps")
    blocks = re.split(r"(?m)^(?=[0-9a-f]+-[0-9a-f]+ )", text)
    for b in blocks:
        if b.startswith(f"{addr:08x}-"):
            return {k: int(v) for k, v in re.findall(r"(?m)^(\w+):\s+(\d+) kB$", b)}, b
    raise AssertionError(f"no VMA at {addr:#x}")


def test_maps_format(vm):
    p = Process.start(vm, "/usr/bin/cat")
    lines = vm.read(f"/proc/{p.pid}/maps").splitlines()
    assert lines[0].endswith(" /usr/bin/cat")
    assert lines[0].index("/usr/bin/cat") == 73  # names start at column 74
    assert re.fullmatch(r"[0-9a-f]{12}-[0-9a-f]{12} r--p 00000000 08:01 \d+ +/usr/bin/cat",
                        lines[0])
    assert any(ln.endswith("[stack]") and " rw-p " in ln for ln in lines)
    assert any(ln.endswith("[vdso]") for ln in lines)
    assert any(ln.endswith("libc.so.6") and " r-xp " in ln for ln in lines)
    a = p.mmap(3 * PAGE)
    anon = next(ln for ln in vm.read(f"/proc/{p.pid}/maps").splitlines()
            if ln.startswith(f"{a:08x}-"))
    assert anon == f"{a:08x}-{a + 3 * PAGE:08x} rw-p 00000000 00:00 0 "
    p.brk(p.brk(0) + PAGE)
    assert "[heap]" in vm.read(f"/proc/{p.pid}/maps")


def test_smaps_rss_pss_with_sharing(vm):
    p = Process.start(vm, "/usr/bin/pss")
    a = p.mmap(4 * PAGE)
    p.touch(a, 4 * PAGE)
    st, block = smaps_of(vm, p.pid, a)
    assert st["Rss"] == 16 and st["Pss"] == 16 and st["Private_Dirty"] == 16
    assert st["Anonymous"] == 16 and st["Size"] == 16
    assert block.rstrip().endswith("VmFlags: rd wr mr mw me ac sd")
    c = p.fork()
    st, _ = smaps_of(vm, p.pid, a)
    assert st["Rss"] == 16 and st["Pss"] == 8 and st["Shared_Dirty"] == 16
    c.touch(a, PAGE)  # the child copies one page
    st, _ = smaps_of(vm, p.pid, a)
    assert st["Pss"] == 4 + 3 * 2 and st["Private_Dirty"] == 4 and st["Shared_Dirty"] == 12
    roll = vm.read(f"/proc/{p.pid}/smaps_rollup")
    assert roll.splitlines()[0].endswith(" [rollup]")
    assert re.search(r"(?m)^Pss_Anon:\s+\d+ kB$", roll)
    total_rss = sum(int(x) for x in re.findall(r"(?m)^Rss:\s+(\d+) kB",
                                               vm.read(f"/proc/{p.pid}/smaps")))
    assert f"Rss:{total_rss:>13} kB" in roll.replace("Rss:            ", "Rss:")  or \
        int(re.search(r"(?m)^Rss:\s+(\d+)", roll).group(1)) == total_rss


def test_status_and_statm(vm):
    p = Process.start(vm, "/usr/bin/st")
    a = p.mmap(64 * PAGE)
    p.touch(a, 64 * PAGE)
    s = vm.read(f"/proc/{p.pid}/status")
    kv = dict(re.findall(r"(?m)^(\w+):\t\s*(\d+) kB$", s))
    mm = p.mm
    assert int(kv["VmSize"]) == mm.total_vm * 4
    assert int(kv["VmRSS"]) == mm.get_mm_rss() * 4
    assert int(kv["RssAnon"]) >= 256
    assert int(kv["VmPTE"]) == mm.pgtables_bytes // 1024
    assert int(kv["VmStk"]) == 132
    assert re.search(r"(?m)^VmPeak:\t +\d+ kB$", s)
    assert "Name:\tst\n" in s and "State:\tR (running)" in s
    size, resident, _shared, _text, lib, data, dt = map(int,
                                                      vm.read(f"/proc/{p.pid}/statm").split())
    assert size == mm.total_vm and resident == mm.get_mm_rss() and lib == 0 and dt == 0
    assert data == mm.data_vm + mm.stack_vm
    p.munmap(a, 64 * PAGE)
    hwm = int(re.search(r"VmHWM:\t +(\d+)", vm.read(f"/proc/{p.pid}/status")).group(1))
    assert hwm >= int(kv["VmRSS"])  # high-water mark survives the unmap
    kt = vm.read("/proc/2/status")
    assert "Kthread:\t1" in kt and "VmSize" not in kt


def test_pagemap_decodes_to_the_pfn(vm):
    p = Process.start(vm, "/usr/bin/pm")
    a = p.mmap(4 * PAGE)
    p.touch(a, PAGE)
    p.read_bytes(a + PAGE, 1)  # zero page
    e = pagemap_entries(vm, p.pid, a, 3)
    pfn = follow_pte(p.mm, a) >> 12 & 0xFFFFFFFFFF
    assert e[0] & PM_PRESENT and e[0] & ((1 << 55) - 1) == pfn
    assert e[0] & PM_MMAP_EXCLUSIVE and e[0] & PM_SOFT_DIRTY and not e[0] & PM_FILE
    assert e[1] & PM_PRESENT and e[1] & ((1 << 55) - 1) == vm.vm.zero_pfn
    assert not e[2] & PM_PRESENT and e[2] == PM_SOFT_DIRTY  # unfaulted page of a new VMA
    code = next(v for v in p.mm.vmas() if v.vm_flags & 4 and v.vm_file is not None)
    # a resident text page is a file page, mapped only here
    ent = [x for x in pagemap_entries(vm, p.pid, code.vm_start, code.pages) if x & PM_PRESENT]
    assert ent and all(x & PM_FILE for x in ent)
    with pytest.raises(KernelError):
        vm.read(f"/proc/{p.pid}/pagemap")


def test_oom_score_adj(vm):
    p = Process.start(vm, "/usr/bin/o")
    path = f"/proc/{p.pid}/oom_score_adj"
    assert vm.read(path) == "0\n"
    vm.write(path, "-500")
    assert vm.read(path) == "-500\n" and p.task.oom_score_adj == -500
    for bad in ("1001", "x", "-1001"):
        with pytest.raises(KernelError) as ei:
            vm.write(path, bad)
        assert ei.value.err == errno.EINVAL
    assert vm.read(path) == "-500\n"
    c = p.fork()
    assert c.task.oom_score_adj == -500


def test_proc_listing_and_missing_pid(vm):
    p = Process.start(vm, "/usr/bin/l")
    assert str(p.pid) in vm.vfs.listdir("/proc")
    with pytest.raises(FileNotFoundError):
        vm.read("/proc/99999/maps")
    assert vm.read(f"/proc/{p.pid}/cmdline") == "/usr/bin/l\0"
    stat = vm.read(f"/proc/{p.pid}/stat").split()
    assert stat[1] == "(l)" and len(stat) == 52
