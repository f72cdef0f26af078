"""cgroupfs (kernel/cgroup/cgroup.c + mm/memcontrol.c files): /sys/fs/cgroup, the memory
controller's v2 files and the v1 names, plus /proc/PID/oom_score and /proc/swaps.

A directory is any cgroup; ``mkdir``/``rmdir`` are :func:`cgroup_mkdir`/:func:`cgroup_rmdir`
(the shell's ``mkdir``/``rmdir`` call them).  Files are resolved through a ``{cgpath}``
placeholder for nested paths, so directories made at run time appear without re-registering.

v2: ``cgroup.procs``, ``memory.current``, ``memory.peak``, ``memory.max``, ``memory.high``,
``memory.low``, ``memory.min``, ``memory.swap.current``, ``memory.swap.max``,
``memory.swap.events``, ``memory.oom.group``, ``memory.events``, ``memory.events.local``,
``memory.stat``.  v1: ``memory.limit_in_bytes``, ``memory.usage_in_bytes``,
``memory.max_usage_in_bytes``, ``memory.failcnt``, ``memory.oom_control``,
``memory.kmem.{usage_in_bytes,max_usage_in_bytes,failcnt}`` (no ``kmem.limit_in_bytes``:
6.1 removed it).  Values are bytes;
limits read ``max`` when unlimited (v1: PAGE_COUNTER_MAX * PAGE_SIZE).  Writes parse like
the kernel's ``page_counter_memparse`` (a number with K/M/G suffix, or ``max``) and are
rounded down to pages; a lower ``memory.max`` reclaims down to it (and OOM-kills if it cannot),
as ``memory_max_write`` does.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.fs.vfs import VFS, KernelError
from mmdbg.sim.mm import memcontrol as mc
from mmdbg.sim.mm import zswap

ROOT = "/sys/fs/cgroup"
_SUFFIX = {"k": 10, "m": 20, "g": 30, "t": 40}


def page_counter_memparse(text: str, max_token: str = "max") -> int:
    """Bytes -> pages (rounded down); ``max`` -> PAGE_COUNTER_MAX."""
    t = text.strip()
    if t == max_token:
        return mc.PAGE_COUNTER_MAX
    shift = 0
    if t and t[-1].lower() in _SUFFIX:
        shift = _SUFFIX[t[-1].lower()]
        t = t[:-1]
    if not t.isdigit():
        raise KernelError(errno.EINVAL)
    return min((int(t) << shift) >> 12, mc.PAGE_COUNTER_MAX)


def _bytes_or_max(pages: int) -> str:
    return "max\n" if pages >= mc.PAGE_COUNTER_MAX else f"{pages * 4096}\n"


def memory_stat_text(m: Any, memcg: Any) -> str:
    """memory.stat (memcg_stat_format): bytes, then event counts."""
    st = mc.memcg_page_state(m, memcg)
    ev = mc.memcg_events(memcg)
    zs = getattr(m, "zswap", None)
    zbytes, zpages = zs.memcg_usage(memcg) if zs is not None else (0, 0)
    km = mc.memcg_kmem_state(m, memcg)
    P = 4096
    rows = [
        ("anon", st["anon"] * P), ("file", st["file"] * P), ("kernel", km["kernel"]),
        ("kernel_stack", 0), ("pagetables", km["pagetables"]), ("sec_pagetables", 0), ("percpu", 0),
        ("sock", 0), ("vmalloc", 0), ("shmem", st["shmem"] * P), ("zswap", zbytes),
        ("zswapped", zpages * P), ("file_mapped", st["file_mapped"] * P),
        ("file_dirty", st["file_dirty"] * P), ("file_writeback", st["file_writeback"] * P),
        ("swapcached", st["swapcached"] * P), ("anon_thp", 0), ("file_thp", 0),
        ("shmem_thp", 0), ("inactive_anon", st["inactive_anon"] * P),
        ("active_anon", st["active_anon"] * P), ("inactive_file", st["inactive_file"] * P),
        ("active_file", st["active_file"] * P), ("unevictable", st["unevictable"] * P),
        ("slab_reclaimable", km["slab_reclaimable"]),
        ("slab_unreclaimable", km["slab_unreclaimable"]),
        ("slab", km["slab_reclaimable"] + km["slab_unreclaimable"]),
    ]
    for n in ("workingset_refault_anon", "workingset_refault_file", "workingset_activate_anon",
              "workingset_activate_file", "workingset_restore_anon", "workingset_restore_file",
              "workingset_nodereclaim", "pgdemote_kswapd", "pgdemote_direct",
              "pgdemote_khugepaged", "pgdemote_proactive"):
        rows.append((n, ev.get(n, 0)))
    rows.append(("pgscan", sum(ev.get(f"pgscan_{w}", 0) for w in
                               ("kswapd", "direct", "khugepaged", "proactive"))))
    rows.append(("pgsteal", sum(ev.get(f"pgsteal_{w}", 0) for w in
                                ("kswapd", "direct", "khugepaged", "proactive"))))
    for n in ("pswpin", "pswpout", "pgscan_kswapd", "pgscan_direct", "pgscan_khugepaged",
              "pgscan_proactive", "pgsteal_kswapd", "pgsteal_direct", "pgsteal_khugepaged",
              "pgsteal_proactive", "pgfault", "pgmajfault", "pgrefill", "pgactivate",
              "pgdeactivate", "pglazyfree", "pglazyfreed", "swpin_zero", "swpout_zero",
              "zswpin", "zswpout", "zswpwb", "thp_fault_alloc", "thp_collapse_alloc",
              "thp_swpout", "thp_swpout_fallback"):
        rows.append((n, ev.get(n, 0)))
    return "".join(f"{k} {v}\n" for k, v in rows)


def memory_stat_v1(m: Any, memcg: Any) -> str:
    st = mc.memcg_page_state(m, memcg)
    ev = mc.memcg_events(memcg)
    P = 4096
    base = [("cache", (st["file"] + st["swapcached"]) * P), ("rss", st["anon"] * P),
            ("rss_huge", 0), ("shmem", st["shmem"] * P),
            ("mapped_file", st["file_mapped"] * P), ("dirty", st["file_dirty"] * P),
            ("writeback", st["file_writeback"] * P),
            ("swap", memcg.swap.usage * P), ("swapcached", st["swapcached"] * P),
            ("pgpgin", ev.get("pgpgin", 0)), ("pgpgout", ev.get("pgpgout", 0)),
            ("pgfault", ev.get("pgfault", 0)), ("pgmajfault", ev.get("pgmajfault", 0)),
            ("inactive_anon", st["inactive_anon"] * P), ("active_anon", st["active_anon"] * P),
            ("inactive_file", st["inactive_file"] * P), ("active_file", st["active_file"] * P),
            ("unevictable", st["unevictable"] * P)]
    lim = min(c.memory.max for c in memcg.ancestors()) * P
    out = [f"{k} {v}\n" for k, v in base]
    out.append(f"hierarchical_memory_limit {lim}\n")
    out += [f"total_{k} {v}\n" for k, v in base]
    return "".join(out)


def _cg(m: Any, cgpath: str) -> Any:
    cg = mc.mem_cgroup_lookup(m, cgpath)
    if cg is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", cgpath)
    return cg


def _write_max(m: Any, cg: Any, text: str) -> None:
    """memory_max_write: set the limit, then reclaim (and OOM) down to it."""
    from mmdbg.sim.include.gfp import GFP_KERNEL
    from mmdbg.sim.mm import vmscan

    cg.memory.max = page_counter_memparse(text)
    retries = mc.MAX_RECLAIM_RETRIES
    while cg.memory.usage > cg.memory.max:
        if retries:
            if not vmscan.try_to_free_mem_cgroup_pages(cg, cg.memory.usage - cg.memory.max,
                                                       GFP_KERNEL, True):
                retries -= 1
            continue
        mc.memcg_memory_event(cg, "oom")
        if not mc.mem_cgroup_oom(cg, GFP_KERNEL, 0):
            break


def _procs(m: Any, cg: Any) -> str:
    return "".join(f"{t.pid}\n" for t in mc.cgroup_tasks(m, cg) if t.pid == t.tgid)


def _events(d: dict[str, int]) -> str:
    return "".join(f"{k} {d[k]}\n" for k in mc.MEMCG_EVENTS)


def _v1_limit(pages: int) -> str:
    return f"{min(pages, mc.PAGE_COUNTER_MAX) * 4096}\n"


def _set_field(counter_attr: str, field: str) -> Any:
    def w(m: Any, cg: Any, text: str) -> None:
        setattr(getattr(cg, counter_attr), field, page_counter_memparse(text))

    return w


def _oom_group_write(m: Any, cg: Any, text: str) -> None:
    t = text.strip()
    if t not in ("0", "1"):
        raise KernelError(errno.EINVAL)
    cg.oom_group = int(t)


def _procs_write(m: Any, cg: Any, text: str) -> None:
    try:
        pid = int(text.strip())
    except ValueError:
        raise KernelError(errno.EINVAL) from None
    mc.cgroup_attach_task(m, cg, pid)


def _peak_write(m: Any, cg: Any, text: str) -> None:
    cg.memory.watermark = cg.memory.usage


def _oom_control(m: Any, cg: Any) -> str:
    return (f"oom_kill_disable {cg.oom_kill_disable}\nunder_oom {cg.under_oom}\n"
            f"oom_kill {cg.events['oom_kill']}\n")


def _oom_control_write(m: Any, cg: Any, text: str) -> None:
    t = text.strip()
    if t not in ("0", "1"):
        raise KernelError(errno.EINVAL)
    cg.oom_kill_disable = int(t)


FILES: dict[str, tuple[Any, Any, bool]] = {
    # name: (reader(m, cg), writer(m, cg, text) or None, present in the root)
    "cgroup.procs": (_procs, _procs_write, True),
    "memory.current": (lambda m, cg: f"{cg.memory.usage * 4096}\n", None, False),
    "memory.peak": (lambda m, cg: f"{cg.memory.watermark * 4096}\n", _peak_write, False),
    "memory.max": (lambda m, cg: _bytes_or_max(cg.memory.max), _write_max, False),
    "memory.high": (lambda m, cg: _bytes_or_max(cg.memory.high),
                    _set_field("memory", "high"), False),
    "memory.low": (lambda m, cg: f"{cg.memory.low * 4096}\n", _set_field("memory", "low"),
                   False),
    "memory.min": (lambda m, cg: f"{cg.memory.min * 4096}\n", _set_field("memory", "min"),
                   False),
    "memory.swap.current": (lambda m, cg: f"{cg.swap.usage * 4096}\n", None, False),
    "memory.swap.max": (lambda m, cg: _bytes_or_max(cg.swap.max), _set_field("swap", "max"),
                        False),
    "memory.swap.events": (lambda m, cg: "".join(f"{k} {v}\n" for k, v in
                                                 cg.swap_events.items()), None, False),
    "memory.zswap.current": (lambda m, cg: zswap.memcg_zswap_current(m, cg), None, False),
    "memory.zswap.max": (lambda m, cg: zswap.memcg_zswap_max_show(m, cg),
                         lambda m, cg, t: zswap.memcg_zswap_max_write(m, cg, t), False),
    "memory.zswap.writeback": (lambda m, cg: f"{getattr(cg, 'zswap_writeback', 1)}\n",
                               lambda m, cg, t: zswap.memcg_zswap_writeback_write(m, cg, t),
                               False),
    "memory.oom.group": (lambda m, cg: f"{cg.oom_group}\n", _oom_group_write, False),
    "memory.events": (lambda m, cg: _events(cg.events), None, False),
    "memory.events.local": (lambda m, cg: _events(cg.events_local), None, False),
    "memory.stat": (memory_stat_text, None, True),
    # v1 names
    "memory.limit_in_bytes": (lambda m, cg: _v1_limit(cg.memory.max), _write_max, False),
    "memory.usage_in_bytes": (lambda m, cg: f"{cg.memory.usage * 4096}\n", None, False),
    "memory.max_usage_in_bytes": (lambda m, cg: f"{cg.memory.watermark * 4096}\n",
                                  _peak_write, False),
    "memory.failcnt": (lambda m, cg: f"{cg.memory.failcnt}\n", None, False),
    "memory.oom_control": (_oom_control, _oom_control_write, False),
    "memory.kmem.usage_in_bytes": (lambda m, cg: f"{cg.kmem.usage * 4096}\n", None, False),
    "memory.kmem.max_usage_in_bytes": (lambda m, cg: f"{cg.kmem.watermark * 4096}\n", None,
                                       False),
    "memory.kmem.failcnt": (lambda m, cg: f"{cg.kmem.failcnt}\n", None, False),
}


def cgroup_mkdir(m: Any, path: str) -> Any:
    """mkdir /sys/fs/cgroup/PATH."""
    p = path[len(ROOT):] if path.startswith(ROOT) else path
    return mc.mem_cgroup_create(m, p)


def cgroup_rmdir(m: Any, path: str) -> None:
    p = path[len(ROOT):] if path.startswith(ROOT) else path
    mc.mem_cgroup_remove(m, p)


def register(v: VFS, m: Any) -> None:
    from mmdbg.sim.mm import oom_kill, swapfile

    swapfile.register(v, m)
    for name, (reader, writer, in_root) in FILES.items():
        def r(reader: Any = reader) -> str:
            return reader(m, m.memcg.root)

        def rc(cgpath: str, reader: Any = reader) -> str:
            return reader(m, _cg(m, cgpath))

        def wc(text: str, cgpath: str, writer: Any = writer) -> None:
            cg = _cg(m, cgpath)
            if cg.is_root():
                raise KernelError(errno.EACCES, "Permission denied")
            writer(m, cg, text)

        if in_root:
            def wr(text: str, writer: Any = writer) -> None:
                writer(m, m.memcg.root, text)

            v.register(f"{ROOT}/{name}", r, wr if writer is not None else None)
        v.register(ROOT + "/{cgpath}/" + name, rc, wc if writer is not None else None)
    # nested directories: the placeholder matches one segment; deeper paths use a regex
    for f in v.dynamic:
        if f.pattern.startswith(ROOT + "/{cgpath}/"):
            import re

            f.regex = re.compile("^" + re.escape(ROOT) + "/(?P<cgpath>.+)/" +
                                 re.escape(f.pattern.rsplit("/", 1)[1]) + "$")
    v.enumerate_param("cgpath", lambda: [cg.path.strip("/") for cg in m.memcg.root.subtree()
                                         if not cg.is_root()])

    def oom_score(pid: str) -> str:
        t = m.tasks.get(int(pid)) if pid.isdigit() else None
        if t is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", pid)
        return f"{oom_kill.proc_oom_score(m, t)}\n"

    v.register("/proc/{pid}/oom_score", oom_score)
