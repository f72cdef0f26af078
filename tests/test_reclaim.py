"""Reclaim: LRU lists and their counters, kswapd and direct reclaim, references."""

from __future__ import annotations

from mmdbg.sim.mm import swap as lru
from mmdbg.sim.mm.vmscan import get_scan_count, inactive_is_low
from tests.pressure_util import boot, hog, meminfo, vmstat


def test_anon_pages_are_on_the_inactive_anon_list():
    m = boot()
    hog(m, 8 << 20, hold=0.01)
    m.run(5_000_000)
    mi = meminfo(m)
    assert mi["Inactive(anon)"] >= 8 << 10
    assert mi["Active(anon)"] + mi["Inactive(anon)"] >= mi["AnonPages"]
    m.check_consistency()


def test_second_access_activates_page_cache_page():
    m = boot()
    m.vm.fs.create("/data/f", 4096 * 4, pattern=True)
    from mmdbg.workloads.api import Process

    p = Process.start(m, "/usr/bin/reader", ["reader"])
    fd = p.open("/data/f")
    p.read(fd, 4096)
    pfn = m.vm.fs.lookup("/data/f").i_mapping.i_pages[0]
    assert m.lru_where[pfn][1] == lru.LRU_INACTIVE_FILE
    p.read(fd, 4096)  # another page in between: filemap_read marks a page accessed only
    p.lseek(fd, 0)    # when the read does not start in the page the previous read ended in
    p.read(fd, 4096)  # PG_referenced -> activate
    assert m.lru_where[pfn][1] == lru.LRU_ACTIVE_FILE
    m.check_consistency()


def test_pressure_with_swap_reclaims_and_counts():
    m = boot("mem=128M cpus=2 swap=128M")
    hog(m, 150 << 20)
    assert m.run() == "idle"
    v = vmstat(m)
    assert v["pgscan_kswapd"] + v["pgscan_direct"] > 0
    assert v["pgsteal_anon"] > 0 and v["pswpout"] > 0
    assert v["pageoutrun"] > 0
    assert any(t.comm == "kswapd0" for t in m.tasks.values())
    m.check_consistency()


def test_swappiness_zero_and_no_swap_scan_only_file():
    m = boot("mem=128M cpus=2")
    hog(m, 8 << 20, hold=0.01)
    m.run(5_000_000)
    lv = m.memcg.root.lruvecs[0]
    from mmdbg.sim.mm.vmscan import ScanControl

    sc = ScanControl(priority=0)
    nr = get_scan_count(lv, sc)
    assert nr[lru.LRU_INACTIVE_ANON] == 0 and nr[lru.LRU_ACTIVE_ANON] == 0


def test_inactive_is_low_ratio():
    m = boot()
    lv = m.memcg.root.lruvecs[0]
    for i in range(3):
        lv.lists[lru.LRU_INACTIVE_ANON][10_000_000 + i] = None
    for i in range(5):
        lv.lists[lru.LRU_ACTIVE_ANON][20_000_000 + i] = None
    assert inactive_is_low(lv, lru.LRU_INACTIVE_ANON)  # 3 * 1 < 5
    for lst in lv.lists:
        lst.clear()
