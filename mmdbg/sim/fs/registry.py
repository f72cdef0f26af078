"""Subsystems that contribute files to the virtual tree, in registration order.

Each entry is ``register(vfs, machine)``; a module adds itself here so the machine's file
tree is assembled in one place (procfs, sysctl, sysfs, cgroupfs, debugfs ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mmdbg.sim.drivers import zram
from mmdbg.sim.fs import cgroupfs, kmem_files, proc, proc_pid, proc_sys, sysfs_mm
from mmdbg.sim.fs import drop_caches as _drop_caches  # noqa: F401 -- the sysctl handler
from mmdbg.sim.mm import readahead, zswap

REGISTRARS: list[Callable[[Any, Any], None]] = [
    proc_sys.register,
    proc.register,
    sysfs_mm.register,
    proc_pid.register,  # issue 3: /proc/PID
    kmem_files.register,  # issue 6: slabinfo, /sys/kernel/slab, vmallocinfo, kmemleak ...
    cgroupfs.register,  # issue 7: /sys/fs/cgroup, /proc/swaps, /proc/PID/oom_score
    readahead.register,  # issue 7: /sys/block/sda/queue/read_ahead_kb
    zswap.register,  # issue 7: zswap setup, /sys/module/zswap/parameters, debugfs stats
    zram.register,  # issue 7: /sys/block/zram0
]
