"""Swap: swapon and /proc/swaps, slots and PTE swap entries, contents survive a round trip."""

from __future__ import annotations

from mmdbg.sim.kernel.vm_init import task_context
from mmdbg.sim.mm import swapfile
from mmdbg.sim.mm.vma import MM_SWAPENTS
from tests.pressure_util import boot, hog, meminfo, vmstat


def test_proc_swaps_format():
    m = boot("mem=128M cpus=2 swap=64M")
    assert m.read("/proc/swaps") == (
        "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"
        "/swapfile                               file\t\t65532\t\t0\t\t-2\n")
    mi = meminfo(m)
    assert mi["SwapTotal"] == 65532 and mi["SwapFree"] == 65532
    assert "Adding 65532k swap on /swapfile.  Priority:-2 extents:1 across:65532k SS" in m.dmesg()


def test_swapon_priorities_and_swapoff():
    m = boot("mem=128M cpus=2")
    with task_context(m, m.tasks[2]):
        assert swapfile.sys_swapon("/dev/sdb1", 32 << 20, kind="partition") == 0
        assert swapfile.sys_swapon("/swap2", 32 << 20, prio=5) == 0
    text = m.read("/proc/swaps").splitlines()
    assert text[1].startswith("/dev/sdb1") and "partition" in text[1] and text[1].endswith("-2")
    assert text[2].endswith("\t5")
    with task_context(m, m.tasks[2]):
        assert swapfile.sys_swapoff("/swap2") == 0
    assert len(m.read("/proc/swaps").splitlines()) == 2
    m.check_consistency()


def test_swapped_pages_keep_their_bytes_and_accounting():
    m = boot("mem=128M cpus=2 swap=128M")
    p = hog(m, 130 << 20, value=0x5C, hold=1.0)
    m.run(500_000_000)
    mm = p.task.mm
    assert mm.rss_stat[MM_SWAPENTS] > 0, "some PTEs are swap entries (MM_SWAPENTS)"
    v = vmstat(m)
    assert v["pswpout"] > 0
    mi = meminfo(m)
    assert mi["SwapTotal"] - mi["SwapFree"] > 0
    m.check_consistency()
    # read everything back: the contents come back from swap
    addr = p.task.hog_addr
    for off in range(0, 130 << 20, 1 << 20):
        assert p.read_bytes(addr + off, 1) == b"\x5c"
    assert vmstat(m)["pswpin"] > 0
    m.check_consistency()


def test_fork_shares_swap_entries_and_exit_frees_slots():
    m = boot("mem=128M cpus=2 swap=128M")
    p = hog(m, 120 << 20, hold=0.2)
    m.run(300_000_000)
    def child(q):
        yield
        return 0

    p.fork(child)
    m.check_consistency()
    m.run()
    m.check_consistency()
    mi = meminfo(m)
    # only init's own swapped-out pages are left
    assert mi["SwapTotal"] - mi["SwapFree"] == 4 * m.tasks[1].mm.rss_stat[MM_SWAPENTS]
