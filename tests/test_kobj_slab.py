"""Kernel objects from their slab caches: task_struct, mm_struct, vm_area_struct, anon_vma,
anon_vma_chain are allocated by fork/exec/mmap/faults and freed at reap/mmdrop/munmap."""

from __future__ import annotations

import io

import mmdbg
from mmdbg.shell.session import Session
from mmdbg.sim.kernel.vm_init import ensure_init
from mmdbg.sim.mm import slab_info
from mmdbg.workloads.api import Process, spawn_program

CACHES = ("task_struct", "mm_struct", "vm_area_struct", "anon_vma", "anon_vma_chain")


def run(m, line: str) -> str:
    buf = io.StringIO()
    Session(m, out=buf).run_lines([line])
    return buf.getvalue()


def slabinfo_active(m) -> dict[str, int]:
    out = {}
    for ln in m.read("/proc/slabinfo").splitlines()[2:]:
        f = ln.split()
        if f[0] in CACHES:
            out[f[0]] = int(f[1])
    return out


def allocated(m) -> dict[str, int]:
    return {n: slab_info.cache_counts(m.slub.by_name[n])["allocated"] for n in CACHES}


def test_boot_allocates_none_of_them():
    m = mmdbg.boot("mem=256M cpus=2")
    assert slabinfo_active(m) == dict.fromkeys(CACHES, 0)
    assert all(not t.addr or t.addr >= 0xFFFF88F000000000 for t in m.tasks.values())


def test_spawned_program_shows_in_slabinfo_and_goes_away_when_reaped():
    m = mmdbg.boot("mem=256M cpus=2")
    seen = {}

    def prog(p):
        a = p.mmap(1 << 20)
        p.touch(a, 1 << 20)
        c = p.fork()
        c.touch(a, 4096)  # CoW: the child's anon_vma and chains
        seen.update(slabinfo_active(m))
        seen["allocated"] = allocated(m)
        c.exit(0)
        yield p.wait(c.pid)
        yield p.sleep(0.01)

    ensure_init(m)  # init's exec: its mm_struct and VMAs
    base = allocated(m)
    spawn_program(m, "kobj", prog)
    m.run()
    assert all(seen[n] > 0 for n in ("task_struct", "mm_struct", "vm_area_struct"))
    during = seen["allocated"]
    assert during["task_struct"] >= base["task_struct"] + 1
    assert during["mm_struct"] >= base["mm_struct"] + 1
    assert during["vm_area_struct"] > base["vm_area_struct"]
    assert during["anon_vma"] > base["anon_vma"]
    assert during["anon_vma_chain"] > base["anon_vma_chain"]
    after = allocated(m)
    assert 1 in m.tasks and all(pid <= 2 for pid in m.tasks)  # the program was reaped
    assert after == base  # everything the program and its child allocated is freed
    m.check_consistency()


def test_objects_have_slab_addresses_named_by_kmem():
    m = mmdbg.boot("mem=256M cpus=2")
    p = Process.start(m, "/usr/bin/a.out")
    t = p.task
    a = p.mmap(1 << 16)
    p.touch(a, 4096)
    vma = p.mm.vma_lookup(a)
    for obj, cache in ((t, "task_struct"), (p.mm, "mm_struct"), (vma, "vm_area_struct"),
                       (vma.anon_vma, "anon_vma")):
        out = run(m, f"kmem {obj.addr:x}")
        lines = out.splitlines()
        i = next(i for i, ln in enumerate(lines) if ln.startswith("CACHE "))
        assert lines[i + 1].split()[-1] == cache, out
        assert f"[{obj.addr:x}]" in out and "allocated" in out
    assert f"{t.addr:x}" in run(m, "ps")
    m.check_consistency()


def test_munmap_frees_vma_and_exit_frees_everything_exactly_once():
    m = mmdbg.boot("mem=256M cpus=2")
    p0 = Process.start(m, "/usr/bin/a.out")  # starts init too
    base = allocated(m)
    p = Process.start(m, "/usr/bin/b.out")
    mid = allocated(m)
    a = p.mmap(1 << 20)
    p.touch(a, 1 << 20)
    assert allocated(m)["vm_area_struct"] == mid["vm_area_struct"] + 1
    p.munmap(a, 1 << 20)
    assert allocated(m) == mid  # the VMA, its anon_vma and chain are back
    p.exit(0)
    with_zombie = allocated(m)
    assert with_zombie["task_struct"] == base["task_struct"] + 1  # until reaped
    assert with_zombie["mm_struct"] == base["mm_struct"]  # mmdrop at exit
    m.check_consistency()
    _ = p0


def test_kmemleak_does_not_report_them():
    m = mmdbg.boot("mem=256M cpus=2 kmemleak=on")
    p = Process.start(m, "/usr/bin/a.out")
    a = p.mmap(1 << 20)
    p.touch(a, 1 << 20)
    m.clock.ns += 10 * 10**9
    m.write("/sys/kernel/debug/kmemleak", "scan")
    m.write("/sys/kernel/debug/kmemleak", "scan")
    assert m.read("/sys/kernel/debug/kmemleak") == ""
    assert "suspected memory leaks" not in m.dmesg()
    m.check_consistency()
