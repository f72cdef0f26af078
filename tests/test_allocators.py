"""slab=slub|slab|slob behind the same kmalloc/kmem_cache API (issue 6, point 2)."""

from __future__ import annotations

import re

import pytest

import mmdbg
from mmdbg.sim.config import ConfigError
from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.include.gfp import __GFP_ZERO, GFP_KERNEL
from mmdbg.sim.mm import slab_c, vmstat
from mmdbg.sim.mm import slab_common as sc
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SIZE

ALLOCATORS = ("slub", "slab", "slob")
NR_UNRECL = vmstat.NS["nr_slab_unreclaimable"]
NR_RECL = vmstat.NS["nr_slab_reclaimable"]


def slab_pages(m) -> int:
    return sum(n.vm_stat[NR_UNRECL] + n.vm_stat[NR_RECL] for n in m.node_data)


def boot(alloc: str, extra: str = ""):
    m = mmdbg.boot(f"mem=1G cpus=2 slab={alloc} {extra}".strip(), seed=0)
    m.activate()
    return m


def shrink_all(m) -> None:
    for s in list(m.slub.slab_caches):
        sc.kmem_cache_shrink(s)


def live_in_cache(m, s) -> int:
    """Objects of ``s`` the allocator considers handed out."""
    if m.slab_alt is None:
        from mmdbg.sim.mm import slab_info

        return slab_info.cache_counts(s)["allocated"]
    if m.slab_alt is slab_c:
        cached = sum(ac.avail for ac in s.array_cache)
        for n in s.node:
            cached += n.shared.avail if n.shared is not None else 0
            cached += sum(a.avail for a in n.alien if a is not None)
        inuse = sum(sl.inuse for n in s.node for sl in n.partial + n.full + n.slabs_free)
        return inuse - cached
    return len(m.slub.live)  # SLOB: every block of every cache (and small kmalloc)


@pytest.mark.parametrize("alloc", ALLOCATORS)
def test_random_sequence_never_hands_out_an_object_twice(alloc):
    m = boot(alloc)
    base = slab_pages(m)
    s = sc.kmem_cache_create("alloc_test", 72, 8, 0)
    rng = m.rng
    live: dict[int, int] = {}   # address -> size
    objs: list[int] = []        # objects of s
    for step in range(1500):
        m.cpu = rng.randrange(m.ncpus)
        r = rng.random()
        if r < 0.35:
            size = rng.choice((8, 24, 32, 64, 100, 200, 500, 1000, 3000, 5000, 9000))
            p = sc.kmalloc(size, GFP_KERNEL)
            assert p and sc.ksize(p) >= size
        elif r < 0.55:
            p = sc.kmem_cache_alloc(s, GFP_KERNEL)
            size = 72
            objs.append(p)
        else:
            if not live:
                continue
            p = rng.choice(sorted(live))
            del live[p]
            if p in objs:
                objs.remove(p)
                sc.kmem_cache_free(s, p)
            else:
                sc.kfree(p)
            continue
        for q, qs in live.items():   # no overlap with anything still allocated
            assert p + size <= q or q + qs <= p, f"step {step}: {p:#x} overlaps {q:#x}"
        live[p] = size
        if step % 500 == 0:
            m.check_consistency()
    if alloc == "slob":  # blocks: the cache's struct kmem_cache, objs, small kmallocs
        small = sum(1 for p, n in live.items() if p not in objs and n < PAGE_SIZE - 8)
        assert live_in_cache(m, s) == 1 + len(objs) + small
    else:
        assert live_in_cache(m, s) == len(objs)
    m.check_consistency()
    for p in sorted(live):
        if p in objs:
            sc.kmem_cache_free(s, p)
        else:
            sc.kfree(p)
    assert live_in_cache(m, s) == (1 if alloc == "slob" else 0)
    sc.kmem_cache_destroy(s)
    assert "alloc_test" not in m.slub.by_name
    shrink_all(m)
    m.check_consistency()
    assert slab_pages(m) == base, "every slab page goes back after a shrink"
    if alloc == "slob":
        assert not m.slub.pages and not m.slub.big


@pytest.mark.parametrize("alloc", ALLOCATORS)
def test_same_api_contents_zeroing_and_krealloc(alloc):
    m = boot(alloc)
    p = sc.kmalloc(40)
    sc.slub.mem_write(m, p, b"hello allocator")
    q = sc.krealloc(p, 3000)
    assert sc.slub.mem_read(m, q, 15) == b"hello allocator"
    z = sc.kzalloc(300)
    assert sc.slub.mem_read(m, z, 300) == bytes(300)
    assert sc.kmalloc(0) == 16 and sc.ksize(16) == 0
    for x in (q, z):
        sc.kfree(x)
    sc.kfree(0)
    m.check_consistency()


@pytest.mark.parametrize("alloc", ("slab", "slob"))
def test_memory_debuggers_are_refused_with_the_other_allocators(alloc):
    for opt in ("kasan=on", "kmemleak=on", "kfence.sample_interval=100", "slub_debug=FZ"):
        with pytest.raises(ConfigError) as e:
            mmdbg.boot(f"mem=1G slab={alloc} {opt}")
        assert e.value.key == "slab" and opt.split("=")[0] in str(e.value)


def test_invalid_free_is_reported_not_applied():
    for alloc in ("slab", "slob"):
        m = boot(alloc)
        p = sc.kmalloc(64)
        sc.kfree(p)
        sc.kfree(p + 8)     # not an object start
        assert "invalid pointer" in m.dmesg()
        m.check_consistency()


# ---------------------------------------------------------------------------------------
# slab=slab


SLABINFO_RE = re.compile(r"\S+ +\d+ +\d+ +\d+ +\d+ +\d+ : tunables +\d+ +\d+ +\d+ : slabdata"
                         r" +\d+ +\d+ +\d+")


def slabinfo(m) -> dict[str, list[int]]:
    out = {}
    for ln in m.read("/proc/slabinfo").splitlines()[2:]:
        f = ln.split()
        out[f[0]] = [int(x) for x in f[1:6] + f[8:11] + f[13:16]]
    return out


def test_slab_slabinfo_format_and_tunables():
    m = boot("slab")
    text = m.read("/proc/slabinfo")
    lines = text.splitlines()
    assert lines[0] == "slabinfo - version: 2.1"
    assert lines[1].startswith("# name            <active_objs> <num_objs> <objsize>")
    for ln in lines[2:]:
        assert SLABINFO_RE.fullmatch(ln), ln
    info = slabinfo(m)
    assert "kmalloc-8" not in info and "kmalloc-16" not in info  # KMALLOC_SHIFT_LOW is 5
    assert "kmalloc-4M" in info and "kmem_cache_node" not in info
    # enable_cpucache(): limit by object size, batchcount (limit+1)/2, sharedfactor 8 (SMP)
    assert info["kmalloc-32"][5:8] == [120, 60, 8]
    assert info["kmalloc-512"][5:8] == [54, 27, 8]
    assert info["kmalloc-2k"][5:8] == [24, 12, 8]
    assert info["kmalloc-8k"][5:8] == [8, 4, 0]
    assert info["kmalloc-32"][3:5] == [124, 1]   # on-slab index array: 4096 // 33
    # 200 allocations refill the array with 16 (untouched), 60, 48 (the rest of the first
    # slab: no grow while the array is not empty), 60, 60 objects (44 left over); 200 frees
    # fill it to its limit (120) three times, each flush moving a batch (60) to the shared
    # array, which shows as sharedavail
    objs = [sc.kmalloc(32) for _ in range(200)]
    assert m.slub.by_name["kmalloc-32"].array_cache[m.cpu].avail == 44
    for o in objs:
        sc.kfree(o)
    assert m.slub.by_name["kmalloc-32"].array_cache[m.cpu].avail == 64
    i = slabinfo(m)["kmalloc-32"]
    assert i[10] == 180, i
    assert i[1] == i[8] * 124 and i[0] == i[1] - sum(n.free_objects
                                                    for n in m.slub.by_name["kmalloc-32"].node)
    m.write("/proc/slabinfo", "kmalloc-32 32 16 4")
    assert slabinfo(m)["kmalloc-32"][5:8] == [32, 16, 4]
    assert slabinfo(m)["kmalloc-32"][10] == 0   # the old arrays were drained
    m.write("/proc/slabinfo", "kmalloc-32 8 16 0")   # batchcount > limit: ignored
    assert slabinfo(m)["kmalloc-32"][5:8] == [32, 16, 4]
    with pytest.raises(KernelError):
        m.write("/proc/slabinfo", "kmalloc-32 8")
    with pytest.raises(KernelError):
        m.write("/proc/slabinfo", "no-such-cache 8 4 0")
    with pytest.raises(FileNotFoundError):
        m.read("/sys/kernel/slab/kmalloc-32/objs_per_slab")
    m.check_consistency()


def test_slab_array_cache_is_lifo_and_refill_is_batched():
    m = boot("slab")
    s = sc.kmem_cache_create("lifo", 100, 8, 0)
    a = sc.kmem_cache_alloc(s)
    ac = s.array_cache[m.cpu]
    assert ac.avail == slab_c.BATCHREFILL_LIMIT - 1  # untouched array: refill of 16
    sc.kmem_cache_free(s, a)
    assert sc.kmem_cache_alloc(s) == a             # ac->entry[--ac->avail]
    m.check_consistency()


def test_slab_colouring_moves_objects_within_the_slab():
    m = boot("slab")
    s = sc.kmem_cache_create("colour", 320, 8, 0)
    assert s.colour == 4 and s.colour_off == 64 and s.num == 12
    objs = [sc.kmem_cache_alloc(s) for _ in range(s.num * 4)]
    firsts = sorted({m.slab_pages[(o - PAGE_OFFSET) >> 12].s_mem & (PAGE_SIZE - 1)
                     for o in objs})
    assert firsts == [i * 64 for i in range(min(4, s.colour))]
    for o in objs:
        sc.kmem_cache_free(s, o)
    sc.kmem_cache_destroy(s)
    m.check_consistency()


def test_slab_alien_cache_for_remote_frees():
    m = mmdbg.boot("mem=1G cpus=2 numa=fake=2 slab=slab", seed=0)
    m.activate()
    assert m.cpu_to_node[0] != m.cpu_to_node[1]
    s = sc.kmem_cache_create("alien", 64, 8, 0)
    m.cpu = 1
    objs = [sc.kmem_cache_alloc(s) for _ in range(20)]
    remote = m.cpu_to_node[1]
    assert all(m.slab_pages[(o - PAGE_OFFSET) >> 12].node == remote for o in objs)
    m.cpu = 0
    for o in objs:
        sc.kmem_cache_free(s, o)
    local = s.node[m.cpu_to_node[0]]
    alien = local.alien[remote]
    assert alien.limit == slab_c.ALIEN_LIMIT
    assert 0 < alien.avail <= alien.limit and s.array_cache[0].avail == 0
    m.check_consistency()
    slab_c.cache_reap(m)
    assert alien.avail == 0
    sc.kmem_cache_destroy(s)
    m.check_consistency()


# ---------------------------------------------------------------------------------------
# slab=slob


def test_slob_first_fit_headers_and_large_pages():
    m = boot("slob")
    st = m.slub
    a, b, c = sc.kmalloc(100), sc.kmalloc(100), sc.kmalloc(100)
    assert len(st.pages) == 1 and b - a == 112 and c - b == 112   # 8-byte header, 2-byte units
    assert sc.slub.mem_read(m, a - 8, 4) == (100).to_bytes(4, "little")
    sc.kfree(b)
    assert sc.kmalloc(60) == b                                     # first fit: the hole
    before = slab_pages(m)
    big = sc.kmalloc(3 * PAGE_SIZE)
    assert big & (PAGE_SIZE - 1) == 0 and slab_pages(m) == before + 4
    assert sc.ksize(big) == 4 * PAGE_SIZE and sc.ksize(a) == 100
    sc.kfree(big)
    assert slab_pages(m) == before
    for x in (a, b, c):
        sc.kfree(x)
    assert not st.pages and slab_pages(m) == 0
    with pytest.raises(FileNotFoundError):
        m.read("/proc/slabinfo")
    m.check_consistency()


def test_slob_lists_by_size():
    m = boot("slob")
    st = m.slub
    small, medium, large = sc.kmalloc(50), sc.kmalloc(500), sc.kmalloc(2000)
    assert len(st.free_slob_small) == len(st.free_slob_medium) == len(st.free_slob_large) == 1
    s = sc.kmem_cache_create("slob_big", 5000, 8, 0)
    o = sc.kmem_cache_alloc(s, GFP_KERNEL | __GFP_ZERO)
    assert o & (PAGE_SIZE - 1) == 0 and sc.slub.mem_read(m, o, 5000) == bytes(5000)
    sc.kmem_cache_free(s, o)
    for x in (small, medium, large):
        sc.kfree(x)
    sc.kmem_cache_destroy(s)
    assert not st.pages and not st.big
    m.check_consistency()


def test_shell_views_under_slab_and_slob():
    import io

    from mmdbg.shell.session import Session

    out = {}
    for alloc in ("slab", "slob"):
        m = mmdbg.boot(f"mem=256M cpus=2 slab={alloc}")
        buf = io.StringIO()
        Session(m, buf, buf).run_lines(["insmod kmalloc_test size=1000 count=5 keep=1 cache=1",
                                        "kmem -s kmalloc_test_cache", "slabtop -o",
                                        "rmmod kmalloc_test"])
        out[alloc] = buf.getvalue()
        m.check_consistency()
    # SLAB: the 3 objects parked in the CPU's array cache count as free, as crash shows them
    assert re.search(r" 1000 +5 +8 +2 +4k  kmalloc_test_cache", out["slab"])
    assert "kmalloc-cg-4M" in out["slab"]
    assert "slabtop: fopen /proc/slabinfo: No such file or directory" in out["slob"]
