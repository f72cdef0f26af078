"""Files of the kernel allocators and memory debuggers (issue 6).

``/proc/slabinfo`` (mode 0400, SLUB 2.1 format), ``/sys/kernel/slab/CACHE/*`` (mm/slub.c's
sysfs attributes), ``/proc/vmallocinfo``, ``/proc/modules``, ``/sys/kernel/debug/kmemleak``,
``/sys/kernel/debug/kfence/{stats,objects}``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import Any

from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.mm import slab as sl
from mmdbg.sim.mm import slub

SO_ALL = 1 << 0
SO_PARTIAL = 1 << 1
SO_CPU = 1 << 2
SO_OBJECTS = 1 << 3
SO_TOTAL = 1 << 4


def show_slab_objects(s: sl.KmemCache, flags: int) -> str:
    """mm/slub.c show_slab_objects(): the total, then `` N<node>=<n>`` per node."""
    nodes = [0] * len(s.node)
    total = 0
    if flags & SO_CPU:
        for c in s.cpu_slab:
            slab = c.slab
            if slab is not None:
                x = slab.objects if flags & SO_TOTAL else slab.inuse if flags & SO_OBJECTS else 1
                total += x
                nodes[slab.node] += x
            for p in c.partial:
                x = p.objects if flags & SO_TOTAL else p.inuse if flags & SO_OBJECTS else 1
                total += x
                nodes[p.node] += x
    if flags & SO_ALL:
        for nid, n in enumerate(s.node):
            if flags & SO_TOTAL:
                x = n.total_objects
            elif flags & SO_OBJECTS:
                x = n.total_objects - slub.count_partial_free(n)
            else:
                x = n.nr_slabs
            total += x
            nodes[nid] += x
    elif flags & SO_PARTIAL:
        for nid, n in enumerate(s.node):
            if flags & SO_TOTAL:
                x = sum(p.objects for p in n.partial)
            elif flags & SO_OBJECTS:
                x = sum(p.inuse for p in n.partial)
            else:
                x = n.nr_partial
            total += x
            nodes[nid] += x
    out = str(total) + "".join(f" N{nid}={v}" for nid, v in enumerate(nodes) if v)
    return out + "\n"


def _flag(bit: int) -> Callable[[sl.KmemCache], str]:
    return lambda s: f"{1 if s.flags & bit else 0}\n"


def _slabs_cpu_partial(s: sl.KmemCache) -> str:
    objects = sum(p.objects - p.inuse for c in s.cpu_slab for p in c.partial)
    slabs = sum(len(c.partial) for c in s.cpu_slab)
    out = f"{objects}({slabs})"
    for cpu, c in enumerate(s.cpu_slab):
        if c.partial:
            out += f" C{cpu}={sum(p.objects - p.inuse for p in c.partial)}({len(c.partial)})"
    return out + "\n"


def _ctor(s: sl.KmemCache) -> str:
    if s.ctor is None:
        return ""
    return f"{getattr(s.ctor, '__name__', 'ctor')}+0x0/0x1\n"


SLAB_ATTRS: dict[str, Callable[[sl.KmemCache], str]] = {
    "aliases": lambda s: f"{max(s.refcount - 1, 0)}\n",
    "align": lambda s: f"{s.align}\n",
    "cache_dma": _flag(sl.SLAB_CACHE_DMA),
    "cpu_partial": lambda s: f"{s.cpu_partial}\n",
    "cpu_slabs": lambda s: show_slab_objects(s, SO_CPU),
    "ctor": _ctor,
    "destroy_by_rcu": _flag(sl.SLAB_TYPESAFE_BY_RCU),
    "hwcache_align": _flag(sl.SLAB_HWCACHE_ALIGN),
    "min_partial": lambda s: f"{s.min_partial}\n",
    "object_size": lambda s: f"{s.object_size}\n",
    "objects": lambda s: show_slab_objects(s, SO_ALL | SO_OBJECTS),
    "objects_partial": lambda s: show_slab_objects(s, SO_PARTIAL | SO_OBJECTS),
    "objs_per_slab": lambda s: f"{s.oo[1]}\n",
    "order": lambda s: f"{s.oo[0]}\n",
    "partial": lambda s: show_slab_objects(s, SO_PARTIAL),
    "poison": _flag(sl.SLAB_POISON),
    "reclaim_account": _flag(sl.SLAB_RECLAIM_ACCOUNT),
    "red_zone": _flag(sl.SLAB_RED_ZONE),
    "remote_node_defrag_ratio": lambda s: "100\n",
    "sanity_checks": _flag(sl.SLAB_CONSISTENCY_CHECKS),
    "skip_kfence": _flag(sl.SLAB_SKIP_KFENCE),
    "slab_size": lambda s: f"{s.size}\n",
    "slabs": lambda s: show_slab_objects(s, SO_ALL),
    "slabs_cpu_partial": _slabs_cpu_partial,
    "store_user": _flag(sl.SLAB_STORE_USER),
    "total_objects": lambda s: show_slab_objects(s, SO_ALL | SO_TOTAL),
    "trace": _flag(sl.SLAB_TRACE),
    "usersize": lambda s: f"{s.usersize}\n",
    "failslab": _flag(sl.SLAB_FAILSLAB),
}


def register(vfs: Any, m: Any) -> None:
    from mmdbg.sim.kernel import module
    from mmdbg.sim.mm import kfence, kmemleak, slab_common, vmalloc

    def cache_of(name: str) -> sl.KmemCache:
        s = m.slub.by_name.get(name)
        if s is None:
            raise FileNotFoundError(errno.ENOENT, "No such file or directory",
                                    f"/sys/kernel/slab/{name}")
        return s

    alloc = getattr(m.config, "slab", "slub")
    if alloc != "slob":  # SLOB had no /proc/slabinfo
        vfs.register("/proc/slabinfo", lambda: slab_common.proc_slabinfo(m),
                     lambda text: slab_common.slabinfo_write(m, text), mode=0o600)
    vfs.enumerate_param("cache", lambda: [s.name for s in m.slub.slab_caches])
    def attr_reader(fn: Callable[[sl.KmemCache], str]) -> Callable[[str], str]:
        return lambda cache: fn(cache_of(cache))

    for attr, fn in SLAB_ATTRS.items() if alloc == "slub" else ():  # SLUB's sysfs only
        vfs.register(f"/sys/kernel/slab/{{cache}}/{attr}", attr_reader(fn), mode=0o444)

    def validate_write(text: str, cache: str) -> None:
        if text.strip().startswith("1"):
            slub.validate_slab_cache(cache_of(cache))
        else:
            raise KernelError(errno.EINVAL)

    def shrink_write(text: str, cache: str) -> None:
        if text.strip().startswith("1"):
            slab_common.kmem_cache_shrink(cache_of(cache))
        else:
            raise KernelError(errno.EINVAL)

    if alloc == "slub":
        vfs.register("/sys/kernel/slab/{cache}/validate", lambda cache: "", validate_write,
                     mode=0o200)
        vfs.register("/sys/kernel/slab/{cache}/shrink", lambda cache: "", shrink_write,
                     mode=0o200)
    vfs.register("/proc/vmallocinfo", lambda: vmalloc.proc_vmallocinfo(m), mode=0o400)
    vfs.register("/proc/modules",
                 lambda: "".join(line + "\n" for line in module.proc_modules_lines(m)))
    if m.kmemleak is not None:
        vfs.register("/sys/kernel/debug/kmemleak", lambda: kmemleak.read_kmemleak(m),
                     lambda text: kmemleak.write_kmemleak(m, text), mode=0o644)
    if m.kfence is not None:
        vfs.register("/sys/kernel/debug/kfence/stats", lambda: kfence.stats_text(m))
        vfs.register("/sys/kernel/debug/kfence/objects", lambda: kfence.objects_text(m))
