"""kmemleak: kmemleak_test's lost objects, exactly, after the scans the kernel needs."""

from __future__ import annotations

import re

import pytest

import mmdbg
from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.kernel import module
from mmdbg.sim.mm import kmemleak

SEC = 1_000_000_000


def leaks(m) -> list[str]:
    return re.findall(r"unreferenced object 0x([0-9a-f]+) \(size (\d+)\):",
                      m.read("/sys/kernel/debug/kmemleak"))


def test_kmemleak_test_finds_exactly_the_lost_objects():
    m = mmdbg.boot("mem=512M cpus=2 kmemleak=on")
    mod = module.load_module(m, "kmemleak_test")
    printed = re.findall(r"(kmalloc\((\d+)\)|vmalloc\(64\)|kzalloc\(sizeof\(\*elem\)\)) = "
                         r"([0-9a-f]+)", m.dmesg())
    orphans = {int(a, 16) for _call, _sz, a in printed[:13]}
    # the first scan sees new objects (their checksum changed): nothing is reported yet
    m.write("/sys/kernel/debug/kmemleak", "scan")
    assert leaks(m) == []
    # objects younger than 5 s are not reported either
    m.clock.advance(1 * SEC)
    m.write("/sys/kernel/debug/kmemleak", "scan")
    assert leaks(m) == []
    m.clock.advance(5 * SEC)
    m.write("/sys/kernel/debug/kmemleak", "scan")
    found = leaks(m)
    assert {int(a, 16) for a, _ in found} == orphans
    assert sorted(int(s) for _, s in found) == sorted([32, 32, 1024, 1024, 2048, 2048, 4096,
                                                       4096, 64, 64, 64, 64, 64])
    assert "kmemleak: 13 new suspected memory leaks (see /sys/kernel/debug/kmemleak)" \
        in m.dmesg()
    # the list elements and per-CPU objects are referenced while the module is loaded
    elems = {int(a, 16) for _c, _s, a in printed[13:]}
    assert len(elems) == 10 + m.ncpus
    module.unload_module(m, "kmemleak_test")
    del mod
    m.clock.advance(6 * SEC)
    m.write("/sys/kernel/debug/kmemleak", "scan")
    m.clock.advance(6 * SEC)
    m.write("/sys/kernel/debug/kmemleak", "scan")
    found = {int(a, 16) for a, _ in leaks(m)}
    assert found == orphans | elems
    m.check_consistency()


def test_report_format_and_dump_and_clear():
    m = mmdbg.boot("mem=512M cpus=2 kmemleak=on")
    module.load_module(m, "kmemleak_test")
    m.clock.advance(6 * SEC)
    m.write("/sys/kernel/debug/kmemleak", "scan")
    m.write("/sys/kernel/debug/kmemleak", "scan")
    text = m.read("/sys/kernel/debug/kmemleak").splitlines()
    assert re.fullmatch(r"unreferenced object 0xffff888[0-9a-f]{9} \(size 32\):", text[0])
    assert re.fullmatch(r'  comm "insmod", pid \d+, jiffies \d+', text[1])
    assert text[2] == "  hex dump (first 32 bytes):"
    assert re.fullmatch(r"    (?:[0-9a-f]{2} ){15}[0-9a-f]{2}  .{16}", text[3])
    assert re.fullmatch(r"  backtrace \(crc [0-9a-f]+\):", text[5])
    assert re.fullmatch(r"    \[<ffffffff8[0-9a-f]{7}>\] __kmalloc_noprof\+0x\w+/0x\w+", text[6])
    assert re.fullmatch(r"    \[<ffffffff[0-9a-f]{8}>\] kmemleak_test_init\+0x\w+/0x\w+ "
                        r"\[kmemleak_test\]", text[7])
    addr = text[0].split()[2]
    m.write("/sys/kernel/debug/kmemleak", f"dump={addr}")
    assert f"kmemleak: Object {addr} (size 32):" in m.dmesg()
    assert "kmemleak:   min_count = 1" in m.dmesg()
    m.write("/sys/kernel/debug/kmemleak", "clear")
    assert m.read("/sys/kernel/debug/kmemleak") == ""
    m.clock.advance(6 * SEC)
    m.write("/sys/kernel/debug/kmemleak", "scan")
    assert m.read("/sys/kernel/debug/kmemleak") == ""


def test_no_leaks_on_clean_modules_and_bad_writes():
    m = mmdbg.boot("mem=512M cpus=2 kmemleak=on")
    # kept objects are referenced from the module's global (through a kmalloc'ed array)
    module.load_module(m, "kmalloc_test", "size=200 count=40 keep=1")
    module.load_module(m, "vma_test")
    for _ in range(3):
        m.clock.advance(6 * SEC)
        m.write("/sys/kernel/debug/kmemleak", "scan")
    assert leaks(m) == []
    module.unload_module(m, "kmalloc_test")
    for _ in range(2):
        m.clock.advance(6 * SEC)
        m.write("/sys/kernel/debug/kmemleak", "scan")
    assert leaks(m) == []
    with pytest.raises(KernelError):
        m.write("/sys/kernel/debug/kmemleak", "bogus")


def test_scan_thread_on_simulated_time():
    m = mmdbg.boot("mem=512M cpus=2 kmemleak=on")
    module.load_module(m, "kmemleak_test")
    k = m.kmemleak
    m.clock.advance(61 * SEC)
    kmemleak.kmemleak_poll(m)
    assert k.scans == 1
    kmemleak.kmemleak_poll(m)
    assert k.scans == 1
    m.clock.advance(600 * SEC)
    kmemleak.kmemleak_poll(m)
    assert k.scans == 2 and len(leaks(m)) == 13
