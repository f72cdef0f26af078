"""KASAN (generic): the bug zoo, the report format, no false positives, kasan.fault=panic."""

from __future__ import annotations

import re

import pytest

import mmdbg
from mmdbg.sim import trace
from mmdbg.sim.kernel import module
from mmdbg.sim.mm import kmem_access as ka
from mmdbg.sim.mm import slab_common as sc
from mmdbg.sim.mm import slab_info, vmalloc
from mmdbg.workloads.modules import kasan_test


@pytest.fixture(scope="module")
def zoo():
    m = mmdbg.boot("mem=512M cpus=2 kasan=on")
    mod = module.load_module(m, "kasan_test")
    yield m, mod
    module.unload_module(m, "kasan_test")
    m.check_consistency()


@pytest.mark.parametrize("case", kasan_test.CASES)
def test_zoo_case_detected_with_right_type(zoo, case):
    m, mod = zoo
    got = mod.data["results"][case]
    assert got == [kasan_test.EXPECTED[case]], got
    assert re.search(rf"BUG: KASAN: {re.escape(got[0])} in {case}\+0x[0-9a-f]+/0x[0-9a-f]+ "
                     r"\[kasan_test\]", m.dmesg())


def test_zoo_ktap_lines(zoo):
    m, _ = zoo
    oks = [ln for ln in m.log_lines() if re.search(r"\] +ok \d+ ", ln)]
    assert len(oks) == len(kasan_test.CASES)
    assert "not ok" not in m.dmesg()


def _report(m) -> list[str]:
    lines = [ln[15:] for ln in m.log_lines()]
    start = max(i for i, ln in enumerate(lines) if ln.startswith("BUG: KASAN"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "=" * 66)
    return lines[start - 1:end + 1]


def test_report_format_slab_out_of_bounds():
    m = mmdbg.boot("mem=512M cpus=2 kasan=on")
    module.load_module(m, "kasan_test", "test=kmalloc_oob_right")
    r = _report(m)
    assert r[0] == "=" * 66
    assert re.fullmatch(r"BUG: KASAN: slab-out-of-bounds in kmalloc_oob_right\+0x\w+/0x\w+ "
                        r"\[kasan_test\]", r[1])
    assert re.fullmatch(r"Write of size 1 at addr ffff888[0-9a-f]{9} by task insmod/\d+", r[2])
    assert r[3] == ""
    assert r[4].startswith("CPU: 0 UID: 0 PID: ") and " Comm: insmod " in r[4]
    assert r[6:9] == ["Call Trace:", " <TASK>", " dump_stack_lvl+0x5d/0x80"]
    assert any(re.fullmatch(r" kasan_report\+0x\w+/0x\w+", x) for x in r)
    i = r.index("Allocated by task " + r[2].split("/")[-1] + ":")
    assert r[i + 1].startswith(" kasan_save_stack+") and r[i + 2].startswith(" kasan_save_track+")
    assert r[i + 3].startswith(" __kasan_kmalloc+") and r[i + 4].startswith(" __kmalloc_noprof+")
    assert "Freed by task" not in "\n".join(r)
    assert "The buggy address belongs to the object at ffff888" in "\n".join(r)
    assert " which belongs to the cache kmalloc-128 of size 128" in r
    assert "The buggy address is located 0 bytes to the right of" in r
    assert any(re.fullmatch(r" allocated 115-byte region \[ffff888\w+, ffff888\w+\)", x)
               for x in r)
    assert "page dumped because: kasan: bad access detected" in r
    assert "page_type: f5(slab)" in r
    j = r.index("Memory state around the buggy address:")
    rows = r[j + 1:j + 7]
    assert [x[0] for x in rows] == [" ", " ", ">", " ", " ", " "]
    assert re.fullmatch(r">ffff888\w{9}: (?:[0-9a-f]{2} ){15}[0-9a-f]{2}", rows[2])
    caret = rows[3]
    assert caret.strip() == "^"
    # the caret is under the first hex digit of the bad granule's shadow byte
    col = caret.index("^")
    assert rows[2][col:col + 2] == "03"
    assert "Disabling lock debugging due to kernel taint" in m.dmesg()
    assert "B" in m.taints


def test_only_first_report_without_multi_shot():
    m = mmdbg.boot("mem=512M cpus=2 kasan=on")
    m.activate()
    p = sc.kmalloc(16)
    sc.kfree(p)
    ka.read8(p)
    ka.read8(p)
    assert m.dmesg().count("BUG: KASAN:") == 1
    assert len(m.kasan.reports) == 2


def test_no_false_positives_on_clean_workload():
    m = mmdbg.boot("mem=512M cpus=2 kasan=on")
    module.load_module(m, "kmalloc_test", "size=100 count=300")
    m.activate()
    objs = [sc.kmalloc(n) for n in range(1, 3000, 7)]
    for p, n in zip(objs, range(1, 3000, 7)):
        ka.memset(p, 1, n)
        ka.kmem_read(p, n)
    for p in objs:
        sc.kfree(p)
    a = vmalloc.vmalloc(10000)
    ka.memset(a, 0, 10000)
    vmalloc.vfree(a)
    module.unload_module(m, "kmalloc_test")
    assert m.kasan.reports == []
    assert "KASAN" not in m.dmesg().split("initialized")[-1]
    m.check_consistency()


def test_kasan_report_is_a_probe_location_and_fault_panic():
    m = mmdbg.boot("mem=512M cpus=2 kasan=on kasan.fault=panic")
    m.activate()
    hits = []
    att = trace.attach_kprobe("kasan_report", lambda ev: hits.append(
        (ev.args.addr, ev.args.size, ev.args.is_write)))
    try:
        p = sc.kmalloc(8)
        ka.write64(p + 8, 1)
    finally:
        att.detach()
    assert hits == [(p + 8, 8, True)]
    assert m.stop_requested or getattr(m, "panicked", False)
    assert "Kernel panic - not syncing: kasan.fault=panic set ..." in m.dmesg()


def test_quarantine_delays_reuse():
    m = mmdbg.boot("mem=512M cpus=2 kasan=on")
    m.activate()
    p = sc.kmalloc(64)
    sc.kfree(p)
    assert m.kasan.in_quarantine(p)
    assert sc.kmalloc(64) != p
    assert "KASAN quarantine" in "\n".join(slab_info.kmem_S(m, "kmalloc-64"))
