"""/proc memory files: exact kernel formats, numbers from the machine, sysctl writes, psutil.

Formats are checked against real Linux 6.18 files (tests/data/linux-6.18): every line of a
sample is re-printed with the kernel's format string to prove the rule, then the same rule
must reproduce every line mmdbg prints; "skeletons" (numbers blanked) compare line
structure and field order.  Numbers are recomputed here from the machine's data structures
with the kernel's formulas, independently of the renderers.
"""

from __future__ import annotations

import errno
import re
from math import isqrt
from pathlib import Path

import psutil
import pytest

import mmdbg
from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.include.gfp import (
    GFP_DMA,
    GFP_KERNEL,
    MIGRATETYPE_NAMES,
    ZONE_NAMES,
)
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.memblock import KERNEL_SECTIONS

SAMPLES = Path(__file__).resolve().parent / "data" / "linux-6.18"
DOC = Path(__file__).resolve().parent.parent / "docs" / "proc.md"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


_machines: dict[str, mmdbg.Machine] = {}


@pytest.fixture(scope="module", autouse=True)
def _drop_shared_machines():
    yield
    _machines.clear()  # a 16 GiB mem_map is ~100 MB: do not keep it for the whole session


def booted(cmdline: str) -> mmdbg.Machine:
    """A pristine machine per command line, shared by read-only tests (boots are cached)."""
    if cmdline not in _machines:
        _machines[cmdline] = mmdbg.boot(cmdline)
    m = _machines[cmdline]
    m.activate()
    return m


def meminfo(m) -> dict[str, int]:
    out = {}
    for line in m.read("/proc/meminfo").splitlines():
        name, rest = line.split(":", 1)
        out[name] = int(rest.split()[0])
    return out


def vmstat_dict(m) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split(" ") for line in m.read("/proc/vmstat").splitlines())}


def zoneinfo_zones(text: str) -> dict[tuple[int, str], dict[str, str]]:
    """{(node, zone): {field: value}} for the zone-level fields of /proc/zoneinfo."""
    zones: dict[tuple[int, str], dict[str, str]] = {}
    cur: dict[str, str] = {}
    for line in text.splitlines():
        mt = re.fullmatch(r"Node (\d+), zone +(\w+)", line)
        if mt:
            cur = zones.setdefault((int(mt.group(1)), mt.group(2)), {})
            continue
        mt = re.fullmatch(r"  pages free +(\d+)", line)
        if mt:
            cur["free"] = mt.group(1)
            continue
        mt = re.fullmatch(r" {8}(boost|min|low|high|promo|spanned|present|managed|cma) +(\d+)",
                          line)
        if mt:
            cur[mt.group(1)] = mt.group(2)
            continue
        mt = re.fullmatch(r" {8}protection: \((.*)\)", line)
        if mt:
            cur["protection"] = mt.group(1)
        mt = re.fullmatch(r"  start_pfn: +(\d+)", line)
        if mt:
            cur["start_pfn"] = mt.group(1)
    return zones


def skeleton(text: str) -> list[str]:
    """Lines with every number replaced by N (variable-width fields)."""
    return [re.sub(r"\d+", "N", line) for line in text.splitlines()]


def fixed_skeleton(text: str) -> list[str]:
    """Lines with each right-aligned number field (spaces + digits) replaced by its width."""
    return [re.sub(r" *>?\d+", lambda mo: f"<{len(mo.group())}>", line)
            for line in text.splitlines()]


def lowmem_reserve_expected(m, node) -> dict[int, list[int]]:
    ratio = [256, 256, 32, 0, 0]
    zones = node.node_zones
    out = {}
    for i in range(len(zones)):
        res = [0] * len(zones)
        managed = 0
        for j in range(i + 1, len(zones)):
            managed += zones[j].managed_pages
            if ratio[i] and managed:
                res[j] = managed // ratio[i]
        out[i] = res
    return out


def expected_watermarks(m, min_free_kbytes: int, wsf: int) -> dict[tuple[int, int], tuple]:
    """__setup_per_zone_wmarks: {(node, zone_idx): (min, low, high, promo)}."""
    pages_min = min_free_kbytes >> 2
    lowmem = sum(z.managed_pages for z in m.zones if z.zone_idx < 3)
    out = {}
    for z in m.zones:
        managed = z.managed_pages
        tmp = pages_min * managed // lowmem
        if z.zone_idx == 3:  # ZONE_MOVABLE
            wmin = min(max(managed // 1024, 32), 128)
        elif z.zone_idx == 4:  # ZONE_DEVICE
            wmin = 0
        else:
            wmin = tmp
        gap = 0 if z.zone_idx == 4 else max(tmp >> 2, managed * wsf // 10000)
        out[(z.node, z.zone_idx)] = (wmin, wmin + gap, wmin + 2 * gap, wmin + 3 * gap)
    return out


def default_min_free_kbytes(m) -> int:
    """init_per_zone_wmark_min at boot: watermarks are still 0, so every managed page of
    the zones up to Normal counts as lowmem."""
    lowmem_kbytes = sum(z.managed_pages for z in m.zones if z.zone_idx < 3) * 4
    return max(128, min(isqrt(lowmem_kbytes * 16), 262144))


# ---------------------------------------------------------------------------------------
# /proc/meminfo


def meminfo_reformat(line: str) -> str:
    """Re-print a meminfo line with fs/proc/meminfo.c's formats (show_val_kb is
    "%-16s%8lu kB"; HugePages_* are "%-16s%8lu" without a unit)."""
    mt = re.fullmatch(r"(\S+:)\s*(\d+)( kB)?", line)
    assert mt, line
    return f"{mt.group(1):<16}{int(mt.group(2)):>8}{mt.group(3) or ''}"


def test_meminfo_format_matches_linux_6_18():
    real = sample("meminfo").splitlines()
    assert [meminfo_reformat(line) for line in real] == real  # the rule is the kernel's
    for cmd in ("mem=1G", "mem=16G cpus=4", "mem=4G numa=fake=2 movablecore=256M"):
        ours = booted(cmd).read("/proc/meminfo")
        assert ours.endswith("\n")
        lines = ours.splitlines()
        assert [meminfo_reformat(line) for line in lines] == lines
        # same fields in the same order as the real file
        assert [line.split(":")[0] for line in lines] == [line.split(":")[0] for line in real]


def test_meminfo_values(machine):
    m = machine
    pfns = [m.alloc_pages(GFP_KERNEL, o) for o in (0, 3, 9, 10)]
    info = meminfo(m)
    managed = sum(z.managed_pages for z in m.zones)
    free = sum(z.vm_stat[vmstat.NR_FREE_PAGES] for z in m.zones)
    assert info["MemTotal"] == managed * 4
    assert info["MemFree"] == free * 4
    # si_mem_available with empty LRUs and slab: free - totalreserve
    totalreserve = 0
    for node in m.node_data:
        for z in node.node_zones:
            totalreserve += min(max(z.lowmem_reserve) + z.high_wmark_pages(), z.managed_pages)
    assert info["MemAvailable"] == max(free - totalreserve, 0) * 4
    assert info["CommitLimit"] == managed * 50 // 100 * 4
    assert info["VmallocTotal"] == 34359738367
    assert info["Percpu"] == m.ncpus * 256
    assert info["Hugepagesize"] == 2048
    for name in ("Cached", "SwapTotal", "SwapFree", "AnonPages", "Slab", "Committed_AS"):
        assert info[name] == 0, name
    # the direct map covers all of RAM: 1 GiB = 2 MiB in 4k pages (first MiB + head) + 511 x 2M
    assert info["DirectMap4k"] == 2048
    assert info["DirectMap2M"] == 511 * 2048
    assert info["DirectMap1G"] == 0
    for p, o in zip(pfns, (0, 3, 9, 10)):
        m.free_pages(p, o)


def test_meminfo_available_counts_file_and_slab(machine):
    m = machine
    node = m.node_data[0]
    ns = vmstat.NS
    node.vm_stat[ns["nr_active_file"]] += 3000
    node.vm_stat[ns["nr_inactive_file"]] += 1000
    node.vm_stat[ns["nr_file_pages"]] += 4000
    node.vm_stat[ns["nr_slab_reclaimable"]] += 500
    try:
        info = meminfo(m)
        wmark_low = sum(z.low_wmark_pages() for z in m.zones)
        free = m.nr_free_pages()
        pagecache = 4000 - min(4000 // 2, wmark_low)
        reclaimable = 500 - min(500 // 2, wmark_low)
        assert info["MemAvailable"] == (free - m.totalreserve_pages + pagecache
                                        + reclaimable) * 4
        assert info["Cached"] == 4000 * 4
        assert info["Active"] == info["Active(file)"] == 3000 * 4
        assert info["Inactive(file)"] == 1000 * 4
        assert info["KReclaimable"] == info["SReclaimable"] == info["Slab"] == 500 * 4
    finally:
        node.vm_stat[ns["nr_active_file"]] -= 3000
        node.vm_stat[ns["nr_inactive_file"]] -= 1000
        node.vm_stat[ns["nr_file_pages"]] -= 4000
        node.vm_stat[ns["nr_slab_reclaimable"]] -= 500


def test_meminfo_direct_map_and_la57():
    info = meminfo(booted("mem=16G"))
    # e820: [1M, 3G) and [4G, 17G): 4k for the first 2 MiB, 2M up to 1 GiB, 1G pages after
    assert info["DirectMap4k"] == 2048
    assert info["DirectMap2M"] == 511 * 2048
    assert info["DirectMap1G"] == (2 + 13) * 1024 * 1024
    assert meminfo(booted("mem=1G la57"))["VmallocTotal"] == (12800 << 30) - 1


# ---------------------------------------------------------------------------------------
# /proc/buddyinfo


def buddyinfo_reformat(line: str) -> str:
    """frag_show_print: "Node %d, zone %8s " then "%6lu " per order."""
    mt = re.fullmatch(r"Node (\d+), zone +(\w+) ((?: *\d+ ){11})", line)
    assert mt, repr(line)
    counts = [int(x) for x in mt.group(3).split()]
    return f"Node {int(mt.group(1))}, zone {mt.group(2):>8} " + "".join(
        f"{c:6d} " for c in counts)


def test_buddyinfo_format_and_counts():
    real = sample("buddyinfo").splitlines()
    assert [buddyinfo_reformat(line) for line in real] == real
    for cmd in ("mem=1G", "mem=8G", "mem=4G numa=fake=2 movablecore=256M"):
        m = booted(cmd)
        lines = m.read("/proc/buddyinfo").splitlines()
        assert [buddyinfo_reformat(line) for line in lines] == lines
        populated = [z for z in m.zones if z.present_pages]
        assert len(lines) == len(populated)
        for line, z in zip(lines, populated):
            assert line.startswith(f"Node {z.node}, zone {z.name:>8} ")
            assert [int(x) for x in line.split()[4:]] == [a.nr_free for a in z.free_area]
    # an 8 GiB single-node machine has the sample's three zones and the same layout
    assert fixed_skeleton(booted("mem=8G").read("/proc/buddyinfo")) == fixed_skeleton(
        sample("buddyinfo"))


def test_buddyinfo_follows_allocations(machine):
    m = machine
    dma = m.zones[0]
    before = [a.nr_free for a in dma.free_area]
    pfn = m.alloc_pages(GFP_KERNEL | GFP_DMA, 10)
    line = m.read("/proc/buddyinfo").splitlines()[0]
    assert [int(x) for x in line.split()[4:]] == [a.nr_free for a in dma.free_area]
    assert int(line.split()[-1]) == before[10] - 1
    m.free_pages(pfn, 10)
    line = m.read("/proc/buddyinfo").splitlines()[0]
    assert [int(x) for x in line.split()[4:]] == before


# ---------------------------------------------------------------------------------------
# /proc/pagetypeinfo


def test_pagetypeinfo_matches_linux_6_18_layout():
    m = booted("mem=8G")
    text = m.read("/proc/pagetypeinfo")
    assert fixed_skeleton(text) == fixed_skeleton(sample("pagetypeinfo"))
    lines = text.splitlines()
    # free counts equal the free list lengths, per migratetype and order
    names = [n for n in MIGRATETYPE_NAMES if n != "CMA"]
    row = 4
    for z in (z for z in m.node_data[0].node_zones if z.present_pages):
        for name in names:
            mt = MIGRATETYPE_NAMES.index(name)
            head = f"Node {0:4d}, zone {z.name:>8}, type {name:>12} "
            assert lines[row].startswith(head)
            counts = [int(x) for x in lines[row][len(head):].split()]
            assert counts == [len(a.free_list[mt]) for a in z.free_area]
            row += 1


def test_pagetypeinfo_block_counts_and_mode():
    m = booted("mem=4G")
    text = m.read("/proc/pagetypeinfo")
    blocks = {}
    for line in text.splitlines()[text.splitlines().index(""):]:
        mt = re.fullmatch(r"Node 0, zone +(\w+) ((?: +\d+ ){5})", line)
        if mt:
            blocks[mt.group(1)] = [int(x) for x in mt.group(2).split()]
    dma = m.zones[0]
    # pageblocks walked from zone_start_pfn, skipping the 3-4 GiB hole (no memory section)
    assert sum(blocks["DMA"]) == len(range(dma.zone_start_pfn, dma.zone_end_pfn, 512)) == 8
    assert sum(blocks["DMA32"]) == ((3 << 30) >> 12) // 512 - 8
    assert blocks["DMA32"][1] == sum(blocks["DMA32"])  # all Movable at boot
    assert m.vfs.lookup("/proc/pagetypeinfo")[0].mode == 0o400


def test_pagetypeinfo_lists_cma_when_machine_has_it():
    m = mmdbg.boot("mem=1G")
    m.cma_enabled = True
    lines = m.read("/proc/pagetypeinfo").splitlines()
    assert ("Node    0, zone      DMA, type          CMA" + "      0" * 11 + " ") in lines
    assert any(line.endswith("         CMA      Isolate ") for line in lines)
    assert "CmaTotal:              0 kB" in m.read("/proc/meminfo").splitlines()


# ---------------------------------------------------------------------------------------
# /proc/zoneinfo


def test_zoneinfo_matches_linux_6_18_layout():
    # 8 GiB, 2 CPUs, one node: DMA, DMA32, Normal populated, Movable and Device empty,
    # exactly as the sample
    assert skeleton(booted("mem=8G").read("/proc/zoneinfo")) == skeleton(sample("zoneinfo"))


def test_zoneinfo_lists_every_zone_and_per_node_stats_once():
    m = booted("mem=4G numa=fake=2 movablecore=256M cpus=3")
    text = m.read("/proc/zoneinfo")
    headers = [line for line in text.splitlines() if line.startswith("Node ")]
    assert headers == [f"Node {n}, zone {z:>8}" for n in range(2) for z in ZONE_NAMES]
    blocks = re.split(r"(?m)^(?=Node )", text)[1:]
    for block, z in zip(blocks, m.zones):
        node = m.node_data[z.node]
        first = next(x for x in node.node_zones if x.present_pages)
        assert ("  per-node stats\n" in block) == (z is first)
        assert ("  pagesets\n" in block) == bool(z.present_pages)
        if z.present_pages:
            assert block.count("    cpu: ") == m.ncpus == 3
            assert block.count("  vm stats threshold: ") == 3
            assert block.endswith(f"  start_pfn:           {z.zone_start_pfn}\n")
        else:
            assert block.splitlines()[-1].startswith("        protection: (")
    # node 1 has no DMA zone: its per-node stats sit under its DMA32 zone
    assert "Node 1, zone    DMA32\n  per-node stats\n" in text


def test_zoneinfo_values():
    m = booted("mem=4G numa=fake=2 movablecore=256M")
    zones = zoneinfo_zones(m.read("/proc/zoneinfo"))
    for z in m.zones:
        f = zones[(z.node, z.name)]
        assert int(f["free"]) == z.vm_stat[vmstat.NR_FREE_PAGES]
        assert int(f["spanned"]) == z.spanned_pages
        assert int(f["present"]) == z.present_pages
        assert int(f["managed"]) == z.managed_pages
        exp = lowmem_reserve_expected(m, m.node_data[z.node])[z.zone_idx]
        assert f["protection"] == ", ".join(map(str, exp))


@pytest.mark.parametrize("cmdline", ["mem=1G", "mem=4G", "mem=16G",
                                     "mem=2G numa=fake=2", "mem=2G movablecore=256M"])
def test_zoneinfo_watermarks_follow_kernel_formula(cmdline):
    m = booted(cmdline)
    mfk = default_min_free_kbytes(m)
    assert m.read("/proc/sys/vm/min_free_kbytes") == f"{mfk}\n"
    exp = expected_watermarks(m, mfk, 10)
    zones = zoneinfo_zones(m.read("/proc/zoneinfo"))
    for z in m.zones:
        f = zones[(z.node, z.name)]
        got = tuple(int(f[k]) for k in ("min", "low", "high", "promo"))
        assert got == exp[(z.node, z.zone_idx)], (cmdline, z)
        assert f["boost"] == "0"


def test_zoneinfo_pagesets_and_numa_events(machine):
    m = machine
    before = zoneinfo_zones(m.read("/proc/zoneinfo"))
    pfn = m.alloc_pages(GFP_KERNEL, 0)
    text = m.read("/proc/zoneinfo")
    dma32 = m.zones[1]
    block = text[text.index("Node 0, zone    DMA32"):text.index("Node 0, zone   Normal")]
    for cpu, pcp in enumerate(dma32.per_cpu_pageset):
        assert (f"    cpu: {cpu}\n              count:    {pcp.count}\n"
                f"              high:     {pcp.high}\n              batch:    {pcp.batch}\n"
                f"              high_min: {pcp.high_min}\n"
                f"              high_max: {pcp.high_max}\n"
                f"  vm stats threshold: {dma32.stat_threshold}\n") in block
    assert f"      numa_hit     {dma32.vm_numa_event[vmstat.NUMA_HIT]}\n" in block
    assert dma32.vm_numa_event[vmstat.NUMA_HIT] >= 1
    assert int(zoneinfo_zones(text)[(0, "DMA32")]["free"]) < int(before[(0, "DMA32")]["free"])
    m.free_pages(pfn, 0)


# ---------------------------------------------------------------------------------------
# /proc/vmstat


def test_vmstat_names_match_linux_6_18():
    real = sample("vmstat").splitlines()
    ours = booted("mem=1G").read("/proc/vmstat").splitlines()
    assert [line.split(" ")[0] for line in ours] == [line.split(" ")[0] for line in real]
    assert all(re.fullmatch(r"[a-z0-9_]+ \d+", line) for line in ours)
    assert ours[-1] == "nr_unstable 0"


def test_vmstat_values_and_allocation_counters(machine):
    m = machine
    v0 = vmstat_dict(m)
    assert v0["nr_free_pages"] == m.nr_free_pages()
    assert v0["nr_free_pages_blocks"] == sum(z.vm_stat[vmstat.NR_FREE_PAGES_BLOCKS]
                                             for z in m.zones)
    memmap = sum(-(-(n.node_spanned_pages * 64) // 4096) for n in m.node_data)
    assert v0["nr_memmap_boot_pages"] == memmap
    # dirty limits: available = free - totalreserve (+ file pages) + 1
    avail = m.nr_free_pages() - m.totalreserve_pages + 1
    assert v0["nr_dirty_threshold"] == 20 * 4096 // 100 * avail // 4096
    assert v0["nr_dirty_background_threshold"] == 10 * 4096 // 100 * avail // 4096
    p3 = m.alloc_pages(GFP_KERNEL, 3)
    p10 = m.alloc_pages(GFP_KERNEL | GFP_DMA, 10)
    v1 = vmstat_dict(m)
    assert v1["pgalloc_dma32"] - v0["pgalloc_dma32"] == 8
    assert v1["pgalloc_dma"] - v0["pgalloc_dma"] == 1024
    assert v1["pgalloc_normal"] == v0["pgalloc_normal"] == 0  # 1 GiB: no Normal zone
    assert v1["numa_hit"] - v0["numa_hit"] == 2
    assert v1["numa_local"] - v0["numa_local"] == 2
    m.free_pages(p3, 3)
    m.free_pages(p10, 10)
    v2 = vmstat_dict(m)
    assert v2["pgfree"] - v1["pgfree"] == 8 + 1024
    m.drain_all_pages()
    assert vmstat_dict(m)["nr_free_pages"] == v0["nr_free_pages"]  # boot pcp lists are empty


def test_vmstat_thp_items_in_thp_units_and_pgpgin_in_kb(machine):
    m = machine
    node = m.node_data[0]
    i = vmstat.NS["nr_anon_transparent_hugepages"]
    node.vm_stat[i] += 3 * 512
    m.vm_events[vmstat.EV["pgpgin"]] += 10  # sectors
    try:
        v = vmstat_dict(m)
        assert v["nr_anon_transparent_hugepages"] == 3
        assert v["pgpgin"] == 5
        assert meminfo(m)["AnonHugePages"] == 3 * 2048
        assert "      nr_anon_transparent_hugepages 3\n" in m.read("/proc/zoneinfo")
    finally:
        node.vm_stat[i] -= 3 * 512
        m.vm_events[vmstat.EV["pgpgin"]] -= 10


# ---------------------------------------------------------------------------------------
# /proc/iomem

IOMEM_LINE = re.compile(r"( *)([0-9a-f]{8,})-([0-9a-f]{8,}) : (.+)")


def iomem_tree(text: str) -> list[tuple[int, int, int, str]]:
    out = []
    for line in text.splitlines():
        mt = IOMEM_LINE.fullmatch(line)
        assert mt, repr(line)
        depth, rem = divmod(len(mt.group(1)), 2)
        assert rem == 0
        start, end = int(mt.group(2), 16), int(mt.group(3), 16)
        assert start <= end
        out.append((depth, start, end, mt.group(4)))
    return out


def check_nesting(tree: list[tuple[int, int, int, str]]) -> None:
    stack: list[tuple[int, int, int, str]] = []
    last_at_depth: dict[int, int] = {}
    for depth, s, e, name in tree:
        del stack[depth:]
        assert len(stack) == depth, name
        if stack:
            assert stack[-1][1] <= s and e <= stack[-1][2], (name, stack[-1])
        assert last_at_depth.get(depth, -1) < s, name  # siblings sorted, disjoint
        last_at_depth[depth] = e
        for d in [d for d in last_at_depth if d > depth]:
            del last_at_depth[d]
        stack.append((depth, s, e, name))


def test_iomem_format_and_tree():
    real = sample("iomem")
    check_nesting(iomem_tree(real))
    kernel_lines = [line for line in real.splitlines() if " : Kernel " in line]
    for cmd in ("mem=1G", "mem=16G", "mem=4G numa=fake=2"):
        m = booted(cmd)
        text = m.read("/proc/iomem")
        tree = iomem_tree(text)
        check_nesting(tree)
        # the kernel image sections: the same lines as the real 6.18 file, under System RAM
        assert [line for line in text.splitlines() if " : Kernel " in line] == kernel_lines
        top = [(s, e + 1, n) for d, s, e, n in tree if d == 0 and n in ("System RAM",
                                                                        "Reserved")]
        assert top == [(x.start, x.end, x.type) for x in m.e820]
        idx = text.splitlines().index(kernel_lines[0])
        assert text.splitlines()[idx - 1].startswith("00100000-") and \
            text.splitlines()[idx - 1].endswith(" : System RAM")
    text = booted("mem=16G").read("/proc/iomem")
    assert "100000000-43fffffff : System RAM" in text.splitlines()
    assert "c0000000-febfffff : PCI Bus 0000:00" in text.splitlines()
    for name, start, end in KERNEL_SECTIONS:
        assert f"  {start:08x}-{end - 1:08x} : {name}" in text.splitlines()


# ---------------------------------------------------------------------------------------
# /proc/sys/vm watermark sysctls


def snapshot(m):
    return ([list(z._watermark) for z in m.zones], [list(z.lowmem_reserve) for z in m.zones],
            m.totalreserve_pages, dict(m.sysctl), m.read("/proc/zoneinfo"))


def check_watermarks(m, mfk: int, wsf: int) -> None:
    exp = expected_watermarks(m, mfk, wsf)
    zones = zoneinfo_zones(m.read("/proc/zoneinfo"))
    for z in m.zones:
        f = zones[(z.node, z.name)]
        assert tuple(int(f[k]) for k in ("min", "low", "high", "promo")) == \
            exp[(z.node, z.zone_idx)]


@pytest.mark.parametrize("cmdline", ["mem=1G", "mem=4G numa=fake=2 movablecore=256M"])
def test_min_free_kbytes_write_recomputes_watermarks(cmdline):
    m = mmdbg.boot(cmdline)
    m.write("/proc/sys/vm/min_free_kbytes", "8192\n")
    assert m.read("/proc/sys/vm/min_free_kbytes") == "8192\n"
    check_watermarks(m, 8192, 10)
    m.write("/proc/sys/vm/min_free_kbytes", "  65536")
    check_watermarks(m, 65536, 10)
    info = meminfo(m)  # MemAvailable follows the new totalreserve_pages
    totalreserve = sum(min(max(z.lowmem_reserve) + z.high_wmark_pages(), z.managed_pages)
                       for z in m.zones)
    assert info["MemAvailable"] == (m.nr_free_pages() - totalreserve) * 4
    m.check_consistency()


def test_watermark_scale_factor_write_recomputes_watermarks(machine):
    m = machine
    mfk = int(m.read("/proc/sys/vm/min_free_kbytes"))
    m.write("/proc/sys/vm/watermark_scale_factor", "200")
    assert m.read("/proc/sys/vm/watermark_scale_factor") == "200\n"
    check_watermarks(m, mfk, 200)
    dma32 = m.zones[1]
    assert dma32.low_wmark_pages() - dma32.min_wmark_pages() == dma32.managed_pages * 200 // 10000
    m.write("/proc/sys/vm/watermark_scale_factor", "3000")
    check_watermarks(m, mfk, 3000)
    m.write("/proc/sys/vm/watermark_scale_factor", "1")
    check_watermarks(m, mfk, 1)


@pytest.mark.parametrize("path,text", [
    ("min_free_kbytes", "abc"),
    ("min_free_kbytes", ""),
    ("min_free_kbytes", "-1"),
    ("min_free_kbytes", "12.5"),
    ("min_free_kbytes", "8192k"),
    ("min_free_kbytes", "99999999999"),
    ("watermark_scale_factor", "0"),
    ("watermark_scale_factor", "3001"),
    ("watermark_scale_factor", "-10"),
    ("watermark_scale_factor", "ten"),
    ("watermark_scale_factor", "+10"),
    ("watermark_scale_factor", "0x"),
    ("watermark_scale_factor", "- 5"),
])
def test_bad_watermark_sysctl_writes_are_einval_and_change_nothing(machine, path, text):
    m = machine
    m.write("/proc/sys/vm/min_free_kbytes", "5000")  # a non-default starting point
    before = snapshot(m)
    with pytest.raises(KernelError) as ei:
        m.write(f"/proc/sys/vm/{path}", text)
    assert ei.value.errno == errno.EINVAL
    assert snapshot(m) == before


def test_sysctl_writes_parse_like_proc_dointvec(machine):
    m = machine
    for text, value in (("0x2000", 8192), ("010", 8), (" 4096\n", 4096), ("0", 0)):
        m.write("/proc/sys/vm/min_free_kbytes", text)
        assert m.read("/proc/sys/vm/min_free_kbytes") == f"{value}\n"
        check_watermarks(m, value, 10)


# ---------------------------------------------------------------------------------------
# the virtual /proc for real tools


@pytest.fixture
def procfs_path():
    saved = psutil.PROCFS_PATH
    yield
    psutil.PROCFS_PATH = saved


def test_export_and_psutil_virtual_memory(machine, tmp_path, procfs_path):
    m = machine
    held = [m.alloc_pages(GFP_KERNEL, 5) for _ in range(20)]
    out = m.export_proc(tmp_path)
    for name in ("meminfo", "vmstat", "zoneinfo", "buddyinfo", "pagetypeinfo", "iomem",
                 "sys/vm/min_free_kbytes"):
        assert (out / name).read_text() == m.read(f"/proc/{name}")
    psutil.PROCFS_PATH = str(out)
    vm = psutil.virtual_memory()
    managed = sum(z.managed_pages for z in m.zones)
    info = meminfo(m)
    assert vm.total == managed * 4096 == info["MemTotal"] * 1024
    assert vm.free == m.nr_free_pages() * 4096
    assert vm.available == info["MemAvailable"] * 1024 > 0
    assert vm.used == vm.total - vm.available
    assert vm.percent == round((vm.total - vm.available) / vm.total * 100, 1)
    assert vm.buffers == vm.cached == vm.shared == vm.active == vm.inactive == 0
    sw = psutil.swap_memory()
    assert (sw.total, sw.used, sw.free, sw.sin, sw.sout) == (0, 0, 0, 0, 0)
    for p in held:
        m.free_pages(p, 5)


# ---------------------------------------------------------------------------------------
# the documentation


def test_proc_doc_examples_run(capsys):
    text = DOC.read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert len(blocks) >= 4
    ns: dict = {"__name__": "docs.proc"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"proc.md[block {i}]", "exec"), ns)
    ns["m"].check_consistency()
    out = capsys.readouterr().out
    assert "Node 0, zone      DMA" in out and "refused: Invalid argument" in out
