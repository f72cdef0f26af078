"""SLUB and kmalloc: geometry, size classes, accounting, views, debugging (issue 6)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import mmdbg
from mmdbg.sim import trace
from mmdbg.sim.include.gfp import (
    __GFP_RECLAIMABLE,
    GFP_DMA,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
)
from mmdbg.sim.mm import kmem_access as ka
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import slab_common as sc
from mmdbg.sim.mm import slab_info, slub, vmstat
from mmdbg.sim.mm.mm_types import PAGE_OFFSET
from mmdbg.sim.mm.slab import SLAB_NO_MERGE, virt_to_slab

SAMPLES = Path("/work/shared/reference/proc-samples-linux-6.18")
NR_UNRECL = vmstat.NS["nr_slab_unreclaimable"]


def unreclaimable(m) -> int:
    return sum(n.vm_stat[NR_UNRECL] for n in m.node_data)


def test_slabinfo_line_format_reproduces_the_sample():
    """cache_show()'s widths, checked against every line of a real 6.18 /proc/slabinfo."""
    lines = (SAMPLES / "slabinfo").read_text().splitlines()
    for line in lines[2:]:
        f = line.split()
        nums = [int(x) for x in (f[1:6] + f[8:11] + f[13:16])]
        again = sc.format_slabinfo_line(f[0], nums[0], nums[1], nums[2], nums[3], nums[4],
                                        nums[8], nums[9], nums[5], nums[6], nums[7], nums[10])
        assert again == line


def test_slabinfo_header_and_order(machine):
    text = machine.read("/proc/slabinfo")
    lines = text.splitlines()
    sample = (SAMPLES / "slabinfo").read_text().splitlines()
    assert lines[:2] == sample[:2]
    names = [ln.split()[0] for ln in lines[2:]]
    # newest first: the bootstrap caches are last, kmalloc-96 then -192 before kmalloc-8
    assert names[-2:] == ["kmem_cache_node", "kmem_cache"]
    assert names.index("kmalloc-96") > names.index("kmalloc-192") > names.index("kmalloc-8")
    for ln in lines[2:]:
        assert re.fullmatch(r"\S+ +\d+ +\d+ +\d+ +\d+ +\d+ : tunables +0 +0 +0 : slabdata"
                            r" +\d+ +\d+ +0", ln), ln


def test_cache_geometry_matches_6_18_sample():
    """objsize, objperslab and pagesperslab of every cache the sample also has (2 CPUs)."""
    m = mmdbg.boot("mem=1G cpus=2")
    mine = {ln.split()[0]: ln.split()[3:6] for ln in m.read("/proc/slabinfo").splitlines()[2:]}
    common = 0
    for ln in (SAMPLES / "slabinfo").read_text().splitlines()[2:]:
        f = ln.split()
        if f[0] in mine:
            common += 1
            assert mine[f[0]] == f[3:6], f[0]
    assert common >= 70


@pytest.mark.parametrize("size,name", [(1, "kmalloc-8"), (8, "kmalloc-8"), (9, "kmalloc-16"),
                                       (65, "kmalloc-96"), (96, "kmalloc-96"),
                                       (97, "kmalloc-128"), (129, "kmalloc-192"),
                                       (193, "kmalloc-256"), (1000, "kmalloc-1k"),
                                       (8192, "kmalloc-8k")])
def test_kmalloc_size_classes(machine, size, name):
    machine.activate()
    p = sc.kmalloc(size)
    assert virt_to_slab(machine, p).slab_cache.name == name
    assert sc.ksize(p) >= size
    sc.kfree(p)


@pytest.mark.parametrize("gfp,prefix", [(GFP_KERNEL_ACCOUNT, "kmalloc-cg-"),
                                        (GFP_KERNEL | __GFP_RECLAIMABLE, "kmalloc-rcl-"),
                                        (GFP_KERNEL | GFP_DMA, "dma-kmalloc-")])
def test_kmalloc_type_variants(machine, gfp, prefix):
    machine.activate()
    p = sc.kmalloc(64, gfp)
    s = virt_to_slab(machine, p).slab_cache
    assert s.name == prefix + "64"
    if prefix == "dma-kmalloc-":
        assert machine.pfn_zone((p - PAGE_OFFSET) >> 12).name == "DMA"
    sc.kfree(p)


def test_zero_size_and_null(machine):
    machine.activate()
    assert sc.kmalloc(0) == 16
    sc.kfree(16)
    sc.kfree(0)
    assert sc.ksize(16) == 0


def test_objects_have_real_bytes_and_kzalloc_zeroes(machine):
    machine.activate()
    p = sc.kmalloc(64)
    ka.memset(p, 0xAB, 64)
    sc.kfree(p)
    q = sc.kzalloc(64)
    assert q == p  # LIFO per-CPU freelist
    assert ka.kmem_read(q, 64) == bytes(64)
    sc.kfree(q)


def test_free_pointer_is_in_object_memory(machine):
    """After a free the object holds the (hardened) free pointer to the previous head."""
    machine.activate()
    a, b = sc.kmalloc(128), sc.kmalloc(128)
    sc.kfree(a)
    sc.kfree(b)
    s = virt_to_slab(machine, b).slab_cache
    assert slub.get_freepointer(s, b) == a
    raw = int.from_bytes(ka.kmem_read(b + s.offset, 8), "little")
    assert raw != a and raw == a ^ s.random ^ (b + s.offset)


def test_slab_pages_typed_and_counted(machine):
    machine.activate()
    before = unreclaimable(machine)
    objs = [sc.kmalloc(2048) for _ in range(64)]  # kmalloc-2k: order 3, 16 per slab
    slabs = {virt_to_slab(machine, p).pfn for p in objs}
    assert len(slabs) >= 4
    for pfn in slabs:
        assert machine.mem_map._mapcount[pfn] == pf.PAGE_SLAB_MAPCOUNT_VALUE
        assert machine.page(pfn).PageSlab
    assert unreclaimable(machine) - before == 8 * len(slabs)
    mi = machine.read("/proc/meminfo")
    sunrec = int(re.search(r"SUnreclaim:\s+(\d+) kB", mi).group(1))
    assert sunrec == unreclaimable(machine) * 4
    for p in objs:
        sc.kfree(p)
    sc.kmem_cache_shrink(machine.slub.by_name["kmalloc-2k"])
    assert unreclaimable(machine) == before


def test_reclaimable_cache_counts_in_sreclaimable(machine):
    machine.activate()
    p = sc.kmalloc(100, GFP_KERNEL | __GFP_RECLAIMABLE)
    mi = machine.read("/proc/meminfo")
    assert int(re.search(r"SReclaimable:\s+(\d+) kB", mi).group(1)) > 0
    sc.kfree(p)


def test_large_kmalloc_from_page_allocator(machine):
    machine.activate()
    before = unreclaimable(machine)
    p = sc.kmalloc(20000)
    pfn = (p - PAGE_OFFSET) >> 12
    assert p % 4096 == 0 and virt_to_slab(machine, p) is None
    assert machine.mem_map._mapcount[pfn] == pf.page_type_value(pf.PGTY_large_kmalloc)
    assert unreclaimable(machine) - before == 8
    assert sc.ksize(p) == 32768
    sc.kfree(p)
    assert unreclaimable(machine) == before
    assert machine.mem_map._mapcount[pfn] == -1


def test_krealloc_and_kcalloc(machine):
    machine.activate()
    p = sc.kmalloc(10)
    ka.kmem_write(p, b"0123456789")
    assert sc.krealloc(p, 12) == p  # fits in kmalloc-16
    q = sc.krealloc(p, 100)
    assert q != p and ka.kmem_read(q, 10) == b"0123456789"
    sc.kfree(q)
    r = sc.kcalloc(10, 30)
    assert ka.kmem_read(r, 300) == bytes(300)
    sc.kfree(r)


def test_tracepoints_fields(machine):
    machine.activate()
    seen = []
    atts = [trace.TRACEPOINTS[n].attach(lambda ev, n=n: seen.append((n, vars(ev.args))))
            for n in ("kmem:kmalloc", "kmem:kfree", "kmem:kmem_cache_alloc",
                      "kmem:kmem_cache_free")]
    try:
        p = sc.kmalloc(50)
        sc.kfree(p)
        s = machine.slub.by_name["dentry"]
        o = sc.kmem_cache_alloc(s)
        sc.kmem_cache_free(s, o)
    finally:
        for a in atts:
            a.detach()
    names = [n for n, _ in seen]
    assert names == ["kmem:kmalloc", "kmem:kfree", "kmem:kmem_cache_alloc",
                     "kmem:kmem_cache_free"]
    for n, fields in seen:
        assert set(fields) == set(trace.TRACEPOINTS[n].field_names)
    assert seen[0][1]["bytes_req"] == 50 and seen[0][1]["bytes_alloc"] == 64
    assert seen[0][1]["ptr"] == p and seen[1][1]["ptr"] == p
    assert seen[2][1]["name"] == "dentry" and seen[2][1]["accounted"] is True


def test_kmem_cache_create_destroy_and_leak_warning(machine):
    machine.activate()
    s = sc.kmem_cache_create("test_objs", 200, 0, SLAB_NO_MERGE)
    assert "test_objs" in machine.read("/proc/slabinfo")
    objs = [sc.kmem_cache_alloc(s) for _ in range(30)]
    assert machine.read("/sys/kernel/slab/test_objs/object_size") == "200\n"
    assert machine.read("/sys/kernel/slab/test_objs/objs_per_slab") == "20\n"
    for o in objs:
        sc.kmem_cache_free(s, o)
    sc.kmem_cache_destroy(s)
    assert "test_objs" not in machine.read("/proc/slabinfo")
    s2 = sc.kmem_cache_create("leaky", 64, 0, SLAB_NO_MERGE)
    sc.kmem_cache_alloc(s2)
    sc.kmem_cache_destroy(s2)
    assert "kmem_cache_destroy leaky: Slab cache still has objects" in machine.dmesg()
    assert "Objects remaining on __kmem_cache_shutdown()" in machine.dmesg()


def test_sysfs_attributes(machine):
    machine.activate()
    objs = [sc.kmalloc(192) for _ in range(50)]
    base = "/sys/kernel/slab/kmalloc-192/"
    assert machine.read(base + "slab_size") == "192\n"
    assert machine.read(base + "order") == "0\n"
    assert machine.read(base + "red_zone") == "0\n"
    assert machine.read(base + "store_user") == "0\n"
    assert machine.read(base + "aliases") == "0\n"
    slabs = int(machine.read(base + "slabs").split()[0])
    assert slabs == 3 and machine.read(base + "slabs") == "3 N0=3\n"
    assert machine.read(base + "cpu_slabs").startswith("1")
    assert "kmalloc-192" in machine.vfs.listdir("/sys/kernel/slab")
    for o in objs:
        sc.kfree(o)


def test_per_cpu_slabs_and_remote_free(machine):
    machine.activate()
    s = machine.slub.by_name["kmalloc-256"]
    a = [sc.kmalloc(256) for _ in range(40)]
    machine.cpu = 1
    for p in a:
        sc.kfree(p)  # frees to slabs that are not CPU 1's
    machine.cpu = 0
    assert s.cpu_slab[1].partial or any(sl.on_list for sl in s.node[0].partial)
    slub.check_slub(machine)
    b = [sc.kmalloc(256) for _ in range(40)]
    assert len(set(b)) == 40
    for p in b:
        sc.kfree(p)


def test_kmem_s_and_S_and_identify(machine):
    machine.activate()
    objs = [sc.kmalloc(512) for _ in range(20)]
    lines = slab_info.kmem_s(machine, ["kmalloc-512"])
    assert lines[0] == slab_info.KMEM_S_HEADER
    f = lines[1].split()
    assert f[1:5] == ["512", "20", "32", "2"] and f[5:] == ["8k", "kmalloc-512"]
    detail = "\n".join(slab_info.kmem_S(machine, "kmalloc-512"))
    assert "CPU 0 SLAB:" in detail and f"[{objs[-1]:016x}]" in detail
    sc.kfree(objs[-1])
    ident = machine.identify_slab(objs[-1] + 5)
    assert "kmalloc-512" in ident and "free" in ident and "(+5)" in ident
    assert "allocated" in machine.identify_slab(objs[0])
    for p in objs[:-1]:
        sc.kfree(p)


def test_slabtop_one_shot(machine):
    out = slab_info.slabtop(machine, "c", 5)
    assert out[0].startswith(" Active / Total Objects (% used)    : ")
    assert out[6] == "  OBJS ACTIVE  USE OBJ SIZE  SLABS OBJ/SLAB CACHE SIZE NAME"
    assert len(out) == 12


# -- slub_debug ---------------------------------------------------------------------------


def test_slub_debug_layout_and_poison():
    m = mmdbg.boot("mem=1G cpus=2 slub_debug=FZPU,kmalloc-64")
    m.activate()
    s = m.slub.by_name["kmalloc-64"]
    assert m.slub.by_name["kmalloc-128"].size == 128  # only the named cache
    assert m.read("/sys/kernel/slab/kmalloc-64/red_zone") == "1\n"
    assert s.red_left_pad == 64 and s.offset >= s.inuse
    p = sc.kmalloc(50)
    assert ka.kmem_read(p, 50) == b"\x6b" * 49 + b"\xa5"  # POISON_FREE, POISON_END
    assert ka.kmem_read(p + 50, 14) == b"\xcc" * 14  # kmalloc redzone (SLUB_RED_ACTIVE)
    sc.kfree(p)
    assert ka.kmem_read(p - 8, 8) == b"\xbb" * 8  # left redzone, inactive
    m.check_consistency()


def test_slub_debug_detects_redzone_overwrite_and_double_free():
    m = mmdbg.boot("mem=1G cpus=2 slub_debug=FZPU")
    m.activate()
    p = sc.kmalloc(64)
    ka.write8(p + 64, 0x41)
    sc.kfree(p)
    log = m.dmesg()
    assert "[Right Redzone overwritten] 0x" in log
    assert "First byte 0x41 instead of 0xcc" in log
    assert "BUG kmalloc-64 (Not tainted): Object corrupt" in log
    assert re.search(r"Allocated in \S+ age=\d+ cpu=0 pid=0", log)
    assert "FIX kmalloc-64: Restoring Right Redzone" in log
    q, r = sc.kmalloc(32), sc.kmalloc(32)
    sc.kfree(q)
    sc.kfree(q)
    assert "BUG kmalloc-32 (Tainted: BW): Object already free" in m.dmesg()
    sc.kfree(r)
    sc.kfree(r)  # the last object of its slab: the in-use count check fires first
    assert "Slab has 0 allocated objects but 1 are to be freed" in m.dmesg()
    assert "FIX kmalloc-32: Object at 0x" in m.dmesg()
    m.check_consistency()


def test_slub_debug_trace_and_validate():
    m = mmdbg.boot("mem=1G cpus=2 slub_debug=T,kmalloc-16")
    m.activate()
    p = sc.kmalloc(16)
    sc.kfree(p)
    assert f"TRACE kmalloc-16 alloc 0x{p:016x} inuse=1" in m.dmesg()
    m.write("/sys/kernel/slab/kmalloc-16/validate", "1")
    m.check_consistency()


def test_order_fallback_and_shrink(machine):
    machine.activate()
    s = machine.slub.by_name["kmalloc-1k"]
    objs = [sc.kmalloc(1024) for _ in range(200)]
    for p in objs:
        sc.kfree(p)
    n_before = s.node[0].nr_slabs
    sc.kmem_cache_shrink(s)
    assert s.node[0].nr_slabs < n_before
    assert s.node[0].nr_slabs == 0
