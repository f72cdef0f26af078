"""Issue 6 scenarios: slab-leak (kmemleak, slab_memleak.bt), use-after-free (KASAN, panic
stop), kfence-oob (KFENCE sampling on simulated time)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mmdbg
from mmdbg.sim.kernel import module
from mmdbg.workloads import scenarios

ROOT = Path(__file__).resolve().parents[1]


def leaks(m) -> list[tuple[int, int]]:
    return [(int(a, 16), int(s)) for a, s in re.findall(
        r"unreferenced object 0x([0-9a-f]+) \(size (\d+)\):", m.read("/sys/kernel/debug/kmemleak"))]


def test_slab_leak_found_by_the_kmemleak_thread_exactly():
    ls = scenarios.load_scenario("slab-leak", {"duration": "12", "rate": "20"})
    m = ls.machine
    assert m.config.kmemleak  # the scenario's own boot options
    assert any(t.comm == "kmemleak" for t in m.tasks.values())
    m.write("/sys/kernel/debug/kmemleak", "scan=3")  # the thread scans now, then every 3 s
    assert m.run() == "idle"
    found = leaks(m)
    assert len(found) >= 10
    text = m.read("/sys/kernel/debug/kmemleak")
    # only the lost contexts: 64 bytes, first word the request's seq, a multiple of leak_every
    for addr, size in found:
        assert size == 64
        seq = int.from_bytes(m.physmem.read(addr - 0xFFFF888000000000, 8), "little")
        assert seq % 8 == 0, hex(addr)
    assert "    [<" in text and "buggy_map_ctx+0x" in text and "[buggy_drv]" in text
    assert re.search(r"\[ +\d+\.\d+\] kmemleak: \d+ new suspected memory leaks", m.dmesg())
    # the pending requests (and their contexts) are referenced from module memory: unloading
    # frees them and leaves exactly the same leaks
    module.unload_module(m, "buggy_drv")
    assert "buggy_drv" not in m.modules
    m.check_consistency()


def test_slab_leak_first_scan_never_reports_and_manual_scans():
    m = mmdbg.boot("mem=512M cpus=2 kmemleak=on")
    scenarios.start(m, "slab-leak:duration=8")
    m.run()
    m.write("/sys/kernel/debug/kmemleak", "scan")
    assert leaks(m) == []  # first scan: every object's checksum changed
    m.write("/sys/kernel/debug/kmemleak", "scan")
    assert len(leaks(m)) >= 5  # seen unchanged and unreferenced, at least 5 s old
    m.check_consistency()


def test_slab_memleak_script_names_the_leaking_stack():
    from tests.probe.conftest import boot, run_program

    m = boot("mem=256M cpus=2")

    def drive(m):
        scenarios.start(m, "slab-leak:duration=5,rate=20")
        m.run()

    r = run_program((ROOT / "scripts" / "slab_memleak.bt").read_text(), drive, machine=m)
    assert r.rc == 0 and r.err == ""
    blocks = re.findall(r"@outstanding\[\n(.*?)\]: (\d+)\n", r.out, re.S)
    counts = {("buggy_map_ctx" in st): int(n) for st, n in blocks}
    # about 100 requests: 4 pending (with their 4 contexts), one context in 8 lost
    assert counts[False] == 4
    assert counts[True] >= 4 + 10
    assert re.search(r"@outstanding_bytes\[\n[^]]*buggy_map_ctx[^]]*\]: \d+\n", r.out)


def test_use_after_free_found_by_kasan():
    m = mmdbg.boot("mem=512M cpus=2 kasan=on")
    scenarios.start(m, "use-after-free:duration=0.2")
    assert m.run() == "idle"
    d = m.dmesg()
    assert "BUG: KASAN: slab-use-after-free in buggy_poll_session+0x" in d
    assert re.search(r"Read of size 4 at addr [0-9a-f]+ by task buggy_drv/\d+", d)
    alloc = d[d.index("Allocated by task"):d.index("Freed by task")]
    assert "buggy_open_session" in alloc
    free = d[d.index("Freed by task"):]
    assert "buggy_close_session" in free[:600]
    assert "which belongs to the cache kmalloc-128 of size 128" in d
    assert d.count("BUG: KASAN") == 1  # one report without kasan_multi_shot
    module.unload_module(m, "buggy_drv")
    m.check_consistency()


def test_use_after_free_panic_stops_at_the_access():
    m = mmdbg.boot("mem=512M cpus=2 kasan=on kasan.fault=panic")
    scenarios.start(m, "use-after-free")
    assert m.run() == "stopped"
    assert m.panicked and m.clock.ns < 100_000_000
    assert m.stop_where.startswith("buggy_poll_session+0x")
    assert m.stop_task.comm == "buggy_drv"


def test_batch_cli_prints_the_panic_stop(tmp_path):
    cmds = tmp_path / "c.cmd"
    cmds.write_text("dmesg | grep -c 'BUG: KASAN'\n")
    r = subprocess.run([sys.executable, "-m", "mmdbg", "--machine", "kasan=on kasan.fault=panic",
                        "--scenario", "use-after-free", "-x", str(cmds)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0
    err = r.stderr.splitlines()
    assert err[0] == "mmdbg: Kernel panic - not syncing: kasan.fault=panic set ..."
    assert re.fullmatch(r"mmdbg: stopped at buggy_poll_session\+0x\w+/0x\w+ \[buggy_drv\] "
                        r"\(.*buggy_drv\.py:\d+\), cpu \d, pid \d+ \(buggy_drv\), "
                        r"time 0\.\d{9} s", err[1])
    assert "\n1\n" in r.stdout


def test_kfence_oob_found_by_sampling_eventually():
    m = mmdbg.boot("mem=512M cpus=2 kfence.sample_interval=100")
    scenarios.start(m, "kfence-oob:duration=1")
    m.run()
    d = m.dmesg()
    bugs = re.findall(r"BUG: KFENCE: (out-of-bounds write|memory corruption) in "
                      r"buggy_fill_buffer\+0x\w+/0x\w+ \[buggy_drv\]", d)
    # one sampled allocation per 100 ms of simulated time, each caught one way or the other
    assert 5 <= len(bugs) <= 11
    assert "out-of-bounds write" in bugs
    assert re.search(r"Out-of-bounds write at 0x[0-9a-f]+ \(1024B right of kfence-#\d+\):", d)
    # nothing before the first gate opened: time has to pass for KFENCE to sample
    first = float(re.search(r"\[ *(\d+\.\d+)\] BUG: KFENCE", d).group(1))
    assert first >= 0.1
    m.check_consistency()


def test_kfence_oob_silent_without_kfence():
    m = mmdbg.boot("mem=512M cpus=2")
    scenarios.start(m, "kfence-oob:duration=0.2")
    m.run()
    assert "BUG:" not in m.dmesg()


def test_scenarios_listed_with_help():
    names = [s.name for s in scenarios.list_scenarios()]
    for n in ("slab-leak", "use-after-free", "kfence-oob"):
        assert n in names
        assert "buggy_drv" in scenarios.get(n).help()
