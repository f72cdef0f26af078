"""``echo 1|2|3 > /proc/sys/vm/drop_caches`` (fs/drop_caches.c).

1 drops the clean, unmapped page cache of every file (``drop_pagecache_sb`` ->
``invalidate_mapping_pages``: dirty, under-writeback and mapped pages stay; no workingset
shadow is left), 2 frees reclaimable slab objects (``drop_slab``: the shrinker registry until
little is freed), 3 both.  Counts ``drop_pagecache``/``drop_slab`` in /proc/vmstat and logs
``COMM (PID): drop_caches: N`` once; bit 4 silences that message from then on.  The writer is
the current user task, or ``bash`` (with the next pid) for a write from the debugger.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.fs.proc_sys import sysctl_handler
from mmdbg.sim.mm import vmstat
from mmdbg.sim.trace import kfunc


@kfunc
def drop_pagecache_sb(m: Any) -> int:
    from mmdbg.sim.fs.read_write import invalidate_mapping_pages

    n = 0
    for mapping in list(m.vm.cached_mappings.values()):
        if mapping.host.shmem:
            continue
        n += invalidate_mapping_pages(mapping, 0, 1 << 62)
    return n


@kfunc(aliases=("drop_caches_sysctl_handler",))
def drop_caches(m: Any, value: int) -> None:
    from mmdbg.sim.mm.slab_common import drop_slab

    if value & 1:
        drop_pagecache_sb(m)
        m.vm_events[vmstat.EV["drop_pagecache"]] += 1
    if value & 2:
        if getattr(m, "slub", None) is not None:
            drop_slab(m)  # counts drop_slab
        else:
            m.vm_events[vmstat.EV["drop_slab"]] += 1
    stfu = getattr(m, "drop_caches_stfu", 0) | (value & 4)
    m.drop_caches_stfu = stfu
    if not stfu:
        t = m.current
        if t is not None and t.pid > 1 and not t.is_kthread():
            comm, pid = t.comm, t.pid
        else:
            comm, pid = "bash", m.vm.last_pid + 1
        m.printk(f"{comm} ({pid}): drop_caches: {value}", level=6)


@sysctl_handler("vm.drop_caches")
def _drop_caches(m: Any, value: int) -> None:
    drop_caches(m, value)
