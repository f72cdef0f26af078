"""Kernel modules: insmod/rmmod/lsmod, /proc/modules, parameters, no leak on unload."""

from __future__ import annotations

import pytest

from mmdbg.sim.kernel import module
from mmdbg.sim.mm import slab_info, vmalloc, vmstat


def footprint(m):
    """Objects in use per cache (counted on the free lists, as kmem -s does), vmalloc areas
    and pages, large kmallocs."""
    slab = {s.name: slab_info.cache_counts(s)["allocated"] for s in m.slub.slab_caches}
    return slab, len(m.vmalloc.busy), m.vmalloc_nr_pages, dict(m.large_kmalloc)


def test_insmod_lsmod_rmmod(machine):
    mod = module.load_module(machine, "kmalloc_test", "size=100 count=10 keep=1")
    assert mod.params == {"size": 100, "count": 10, "keep": 1, "cache": 0}
    line = machine.read("/proc/modules").strip()
    assert line.startswith("kmalloc_test ") and line.split()[2:5] == ["0", "-", "Live"]
    assert line.split()[5].startswith("0xffffffffa")
    assert module.lsmod_lines(machine)[0] == "Module                  Size  Used by"
    assert module.lsmod_lines(machine)[1].startswith("kmalloc_test ")
    assert "kmalloc_test: allocated 10 objects of 100 bytes" in machine.dmesg()
    with pytest.raises(module.ModuleError, match="File exists"):
        module.load_module(machine, "kmalloc_test")
    module.unload_module(machine, "kmalloc_test")
    assert machine.read("/proc/modules") == ""
    with pytest.raises(module.ModuleError, match="not currently loaded"):
        module.unload_module(machine, "kmalloc_test")


def test_bad_parameters_and_names(machine):
    with pytest.raises(module.ModuleError, match="Unknown parameter `bogus'"):
        module.load_module(machine, "kmalloc_test", "bogus=1")
    with pytest.raises(module.ModuleError, match="invalid for parameter `size'"):
        module.load_module(machine, "kmalloc_test", "size=big")
    with pytest.raises(module.ModuleError, match="No such file"):
        module.load_module(machine, "no_such_module")
    assert "kmalloc_test" in module.available_modules()
    assert machine.read("/proc/modules") == ""


def test_init_failure_unloads(machine):
    with pytest.raises(module.ModuleError, match="Invalid argument"):
        module.load_module(machine, "kasan_test")  # KASAN is off
    assert "KASAN is off" in machine.dmesg()
    assert machine.read("/proc/modules") == ""


@pytest.mark.parametrize("name,args", [("kmalloc_test", "size=300 count=50 keep=1"),
                                       ("kmalloc_test", "size=24 count=200 keep=1 cache=1"),
                                       ("kmalloc_test", "size=20000 count=3 keep=1"),
                                       ("vma_test", None)])
def test_load_unload_leaves_no_leak(machine, name, args):
    machine.activate()
    vmalloc.purge_vmap_area_lazy(machine)
    before = footprint(machine)
    module.load_module(machine, name, args)
    assert footprint(machine) != before or name == "vma_test"
    module.unload_module(machine, name)
    vmalloc.purge_vmap_area_lazy(machine)
    assert footprint(machine) == before
    assert "kmalloc_test_cache" not in machine.read("/proc/slabinfo")


def test_vmallocinfo_and_vmallocused(machine):
    machine.activate()
    a = vmalloc.vmalloc(5 * 4096 + 100)
    b = vmalloc.vzalloc(4096)
    info = machine.read("/proc/vmallocinfo").splitlines()
    mine = [ln for ln in info if ln.startswith(f"0x{a:016x}-")]
    assert len(mine) == 1
    f = mine[0].split()
    assert f[0] == f"0x{a:016x}-0x{a + 7 * 4096:016x}" and f[1] == str(7 * 4096)
    assert mine[0].endswith(" pages=6 vmalloc N0=6")
    assert b == a + 7 * 4096  # first fit after the guard page
    mi = machine.read("/proc/meminfo")
    assert f"VmallocUsed:    {(6 + 1) * 4:>8} kB" in mi
    vmalloc.vfree(a)
    info = machine.read("/proc/vmallocinfo")
    assert f"0x{a:016x}-0x{a + 7 * 4096:016x}   28672 unpurged vm_area" in info
    vmalloc.purge_vmap_area_lazy(machine)
    assert "unpurged" not in machine.read("/proc/vmallocinfo")
    vmalloc.vfree(b)
    assert machine.global_node_page_state(vmstat.NS["nr_slab_unreclaimable"]) >= 0
