"""memcg kernel-memory accounting: __GFP_ACCOUNT pages, accounted slab objects, limits."""

from __future__ import annotations

from mmdbg.sim.fs.cgroupfs import cgroup_mkdir, cgroup_rmdir
from mmdbg.sim.include.gfp import (
    __GFP_ACCOUNT,
    __GFP_NOWARN,
    GFP_ATOMIC,
    GFP_KERNEL,
    GFP_KERNEL_ACCOUNT,
    GFP_NOWAIT,
)
from mmdbg.sim.kernel.vm_init import task_context
from mmdbg.sim.mm import memcontrol as mc
from mmdbg.sim.mm import page_alloc, slab_common
from mmdbg.sim.mm.slab import SLAB_ACCOUNT, SLAB_RECLAIM_ACCOUNT
from tests.pressure_util import boot, hog

CG = "/sys/fs/cgroup"


def _stat(m, cg="box"):
    return {k: int(v) for k, v in (ln.split() for ln in
                                   m.read(f"{CG}/{cg}/memory.stat").splitlines())}


def _cur(m, cg="box"):
    return int(m.read(f"{CG}/{cg}/memory.current"))


def _setup(cmd="mem=128M cpus=2", max_=None):
    m = boot(cmd)
    cgroup_mkdir(m, f"{CG}/box")
    if max_:
        m.write(f"{CG}/box/memory.max", max_)
    p = hog(m, 4096, hold=100.0, start=False)
    m.write(f"{CG}/box/cgroup.procs", str(p.pid))
    m.vm.sched.wake_up_new_task(p.task)
    m.run(20_000_000)
    return m, p


def test_account_page_charged_and_uncharged_at_free():
    m, p = _setup()
    cur0, st0 = _cur(m), _stat(m)
    with task_context(m, p.task):
        pfn = page_alloc.alloc_pages(GFP_KERNEL_ACCOUNT, 2)
    objcg = m.page(pfn).memcg_data
    assert isinstance(objcg, mc.ObjCgroup) and objcg.memcg.path == "/box"
    assert _cur(m) == cur0 + 4 * 4096
    assert _stat(m)["kernel"] == st0["kernel"] + 4 * 4096
    assert m.read(f"{CG}/box/memory.kmem.usage_in_bytes") == f"{_stat(m)['kernel']}\n"
    m.check_consistency()
    page_alloc.__free_pages(pfn, 2)  # any context: the page remembers its objcg
    assert m.bad_pages == 0 and "Bad page" not in m.dmesg()
    assert pfn not in m.mem_map.memcg_data
    assert _cur(m) == cur0 and _stat(m)["kernel"] == st0["kernel"]
    m.check_consistency()


def test_root_and_unaccounted_allocations_are_not_charged():
    m, p = _setup()
    cur0 = _cur(m)
    pfn = page_alloc.alloc_pages(GFP_KERNEL_ACCOUNT, 0)  # no task: nothing to charge
    with task_context(m, p.task):
        plain = page_alloc.alloc_pages(GFP_KERNEL, 0)
    assert pfn not in m.mem_map.memcg_data and plain not in m.mem_map.memcg_data
    assert _cur(m) == cur0
    page_alloc.__free_pages(pfn, 0)
    page_alloc.__free_pages(plain, 0)
    m.check_consistency()


def test_still_charged_user_page_is_still_a_bad_page():
    # the kmem uncharge must not hide a user page freed while charged
    m, p = _setup()
    with task_context(m, p.task):
        pfn = page_alloc.alloc_pages(GFP_KERNEL, 0)
    m.mem_map.memcg_data[pfn] = mc.task_memcg(m, p.task)
    page_alloc.__free_pages(pfn, 0)
    assert "page still charged to cgroup" in m.dmesg()


def test_page_tables_are_charged_to_the_faulting_task():
    m, _ = _setup()
    q = hog(m, 16 << 20, name="big", hold=1.0, start=False)
    m.write(f"{CG}/box/cgroup.procs", str(q.pid))
    m.vm.sched.wake_up_new_task(q.task)
    m.run(100_000_000)
    st = _stat(m)
    assert st["pagetables"] >= 8 * 4096  # 16 MiB of PTEs
    assert st["kernel"] >= st["pagetables"]
    m.run()
    m.check_consistency()


def test_kmalloc_account_uses_cg_cache_and_charges_object_bytes():
    m, p = _setup()
    cur0, st0 = _cur(m), _stat(m)
    stock0 = mc.mem_cgroup_lookup(m, "/box").objcg.stock  # left by the hog's VMA, anon_vma
    objs = []
    with task_context(m, p.task):
        objs.append(slab_common.kmalloc(100, GFP_KERNEL_ACCOUNT))
    s = m.slab_pages[(objs[0] - 0xFFFF888000000000) >> 12].slab_cache
    assert s.name == "kmalloc-cg-128"
    st = _stat(m)
    assert st["slab_unreclaimable"] - st0["slab_unreclaimable"] == 136  # s->size + objcg ptr
    assert st["slab"] == st["slab_reclaimable"] + st["slab_unreclaimable"]
    assert st["kernel"] - st0["kernel"] == (0 if stock0 >= 136 else 4096) == _cur(m) - cur0
    with task_context(m, p.task):
        for _ in range(40):
            objs.append(slab_common.kmalloc(100, GFP_KERNEL_ACCOUNT))
    # 41 * 136 = 5576 bytes: whole pages charged beyond the pre-charged bytes, the rest kept
    assert _stat(m)["slab_unreclaimable"] - st0["slab_unreclaimable"] == 41 * 136
    assert _cur(m) == cur0 + -(-(41 * 136 - stock0) // 4096) * 4096
    m.check_consistency()
    for o in objs:
        slab_common.kfree(o)
    st = _stat(m)
    assert st["slab_unreclaimable"] == st0["slab_unreclaimable"]
    # refill_obj_stock gives pages back once more than a page is pre-charged
    assert _cur(m) - cur0 in (0, 4096)
    m.check_consistency()


def test_slab_account_cache_and_gfp_account_on_plain_cache():
    m, p = _setup()
    st0 = _stat(m)
    exts0 = dict(m.memcg.obj_exts)  # the hog's own kernel objects (VMA, anon_vma ...)
    rec = slab_common.kmem_cache_create("test_rec", 200, 0, SLAB_ACCOUNT | SLAB_RECLAIM_ACCOUNT)
    plain = slab_common.kmem_cache_create("test_plain", 64, 0, 0)
    with task_context(m, p.task):
        a = slab_common.kmem_cache_alloc(rec, GFP_KERNEL)
        b = slab_common.kmem_cache_alloc(plain, GFP_KERNEL_ACCOUNT)
        c = slab_common.kmem_cache_alloc(plain, GFP_KERNEL)
    st = _stat(m)
    assert st["slab_reclaimable"] - st0["slab_reclaimable"] == rec.size + 8
    assert st["slab_unreclaimable"] - st0["slab_unreclaimable"] == plain.size + 8
    m.check_consistency()
    slab_common.kmem_cache_free(rec, a)
    slab_common.kmem_cache_free(plain, b)  # the free hook sees an unaccounted cache too
    slab_common.kmem_cache_free(plain, c)
    st = _stat(m)
    assert st["slab_reclaimable"] == st0["slab_reclaimable"]
    assert st["slab_unreclaimable"] == st0["slab_unreclaimable"]
    assert m.memcg.obj_exts == exts0
    m.check_consistency()


def test_kmem_over_memory_max_reclaims_then_ooms_then_fails():
    m, p = _setup(max_="1M")
    pages = []
    with task_context(m, p.task):
        for _ in range(400):
            pfn = page_alloc.alloc_pages(GFP_KERNEL_ACCOUNT | __GFP_NOWARN, 0)
            if pfn is None:
                break
            pages.append(pfn)
    assert len(pages) <= 256  # stopped at the limit (the OOM victim's own page went)
    assert _cur(m) <= 1 << 20
    ev = dict(ln.split() for ln in m.read(f"{CG}/box/memory.events").splitlines())
    assert int(ev["max"]) > 0 and int(ev["oom"]) >= 1 and ev["oom_kill"] == "1"
    assert "memory: usage 1024kB, limit 1024kB" in m.dmesg()
    assert "Memory cgroup stats for /box:" in m.dmesg()
    assert f"Memory cgroup out of memory: Killed process {p.pid}" in m.dmesg()
    m.run()
    assert not p.alive
    # kernel memory outlives the task that charged it (and so does the objcg's pre-charged
    # page of the task's freed kernel objects: VMAs, anon_vmas)
    objcg = mc.mem_cgroup_lookup(m, "/box").objcg
    assert objcg.nr_pages <= 1
    assert _stat(m)["kernel"] == (len(pages) + objcg.nr_pages) * 4096 == _cur(m)
    for pfn in pages:
        page_alloc.__free_pages(pfn, 0)
    assert _stat(m)["kernel"] == objcg.nr_pages * 4096 == _cur(m)
    m.check_consistency()


def test_nowait_fails_and_atomic_forces_over_the_limit():
    m, p = _setup(max_="64K")
    with task_context(m, p.task):
        held = []
        while True:
            pfn = page_alloc.alloc_pages(GFP_NOWAIT | __GFP_ACCOUNT, 0)
            if pfn is None:
                break
            held.append(pfn)
        assert _cur(m) <= 64 << 10
        ev = dict(ln.split() for ln in m.read(f"{CG}/box/memory.events").splitlines())
        assert ev["oom"] == "0" and int(ev["max"]) == 0  # no reclaim tried: no max event
        forced = page_alloc.alloc_pages(GFP_ATOMIC | __GFP_ACCOUNT, 0)
    assert forced is not None and _cur(m) > 64 << 10
    ev = dict(ln.split() for ln in m.read(f"{CG}/box/memory.events").splitlines())
    assert ev["max"] == "1"
    for pfn in [*held, forced]:
        page_alloc.__free_pages(pfn, 0)
    m.check_consistency()


def test_rmdir_reparents_kernel_memory():
    m = boot("mem=128M cpus=2")
    cgroup_mkdir(m, f"{CG}/a")
    cgroup_mkdir(m, f"{CG}/a/b")
    p = hog(m, 4096, hold=0.01, start=False)
    m.write(f"{CG}/a/b/cgroup.procs", str(p.pid))
    with task_context(m, p.task):
        pfn = page_alloc.alloc_pages(GFP_KERNEL_ACCOUNT, 1)
        obj = slab_common.kmalloc(512, GFP_KERNEL_ACCOUNT)
    m.write(f"{CG}/cgroup.procs", str(p.pid))
    m.vm.sched.wake_up_new_task(p.task)
    m.run()
    cgroup_rmdir(m, f"{CG}/a/b")
    st = _stat(m, "a")
    assert st["kernel"] == 3 * 4096 and st["slab_unreclaimable"] == 520
    assert m.page(pfn).memcg_data.memcg.path == "/a"
    m.check_consistency()
    page_alloc.__free_pages(pfn, 1)
    slab_common.kfree(obj)
    # the objcg keeps its pre-charged bytes (4096 - 520 + 520 is not more than a page)
    assert _cur(m, "a") == _stat(m, "a")["kernel"] == 4096
    m.check_consistency()
