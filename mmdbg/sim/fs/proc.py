"""procfs memory files: /proc/meminfo, buddyinfo, pagetypeinfo, zoneinfo, vmstat, iomem.

The renderers live next to this module, one per kernel source file: ``proc_meminfo``
(fs/proc/meminfo.c), ``proc_vmstat`` (mm/vmstat.c: vmstat, zoneinfo, buddyinfo,
pagetypeinfo) and ``proc_iomem`` (kernel/resource.c).  ``register`` adds them to the
machine's virtual file tree with the kernel's modes (pagetypeinfo is root-only, 0400).
Every read renders the file from the machine's live data structures.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.fs import proc_iomem, proc_meminfo, proc_vmstat
from mmdbg.sim.fs.vfs import VFS

# path -> (renderer(machine) -> text, mode)
PROC_FILES: dict[str, tuple[Any, int]] = {
    "/proc/meminfo": (proc_meminfo.meminfo_proc_show, 0o444),
    "/proc/buddyinfo": (proc_vmstat.frag_show, 0o444),
    "/proc/pagetypeinfo": (proc_vmstat.pagetypeinfo_show, 0o400),
    "/proc/zoneinfo": (proc_vmstat.zoneinfo_show, 0o444),
    "/proc/vmstat": (proc_vmstat.vmstat_show, 0o444),
    "/proc/iomem": (proc_iomem.r_show, 0o444),
}


def register(v: VFS, m: Any) -> None:
    for path, (show, mode) in PROC_FILES.items():
        def reader(show: Any = show) -> str:
            return show(m)

        v.register(path, reader, None, mode=mode)
