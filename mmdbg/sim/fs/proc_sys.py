"""/proc/sys/vm: sysctls (kernel/sysctl.c proc_dointvec_minmax, mm/page_alloc.c handlers).

Reads print the value and a newline.  Writes parse like ``proc_dointvec``: optional
whitespace, an optional sign, decimal digits, optional trailing whitespace; anything else,
or a value outside ``[min, max]``, is ``-EINVAL`` and leaves the value unchanged.  Writing
``min_free_kbytes`` or ``watermark_scale_factor`` recomputes the watermarks as the kernel's
handlers do (``setup_per_zone_wmarks``).  Handlers that later subsystems own
(``drop_caches`` ...) are registered through :func:`sysctl_handler`.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable
from typing import Any

from mmdbg.sim.fs.vfs import VFS, KernelError

INT_MAX = (1 << 31) - 1

# name -> (min, max); None = unbounded int
LIMITS: dict[str, tuple[int, int]] = {
    "vm.min_free_kbytes": (0, INT_MAX),
    "vm.watermark_scale_factor": (1, 3000),
    "vm.watermark_boost_factor": (0, INT_MAX),
    "vm.percpu_pagelist_high_fraction": (0, INT_MAX),
    "vm.overcommit_memory": (0, 2),
    "vm.overcommit_ratio": (0, INT_MAX),
    "vm.overcommit_kbytes": (0, 1 << 62),
    "vm.swappiness": (0, 200),
    "vm.vfs_cache_pressure": (0, INT_MAX),
    "vm.dirty_background_ratio": (0, 100),
    "vm.dirty_ratio": (0, 100),
    "vm.dirty_background_bytes": (0, 1 << 62),
    "vm.dirty_bytes": (0, 1 << 62),
    "vm.dirty_expire_centisecs": (0, INT_MAX),
    "vm.dirty_writeback_centisecs": (0, INT_MAX),
    "vm.panic_on_oom": (0, 2),
    "vm.oom_kill_allocating_task": (0, INT_MAX),
    "vm.oom_dump_tasks": (0, INT_MAX),
    "vm.page-cluster": (0, 31),
    "vm.drop_caches": (1, 4),
    "vm.compaction_proactiveness": (0, 100),
    "vm.extfrag_threshold": (0, 1000),
    "vm.zone_reclaim_mode": (0, INT_MAX),
    "vm.admin_reserve_kbytes": (0, 1 << 62),
    "vm.user_reserve_kbytes": (0, 1 << 62),
    "vm.stat_interval": (0, INT_MAX),
    "vm.max_map_count": (0, INT_MAX),
    "vm.mmap_min_addr": (0, 1 << 62),
}

# name -> handler(machine, new_value) run after a successful write
HANDLERS: dict[str, Callable[[Any, int], None]] = {}


def sysctl_handler(name: str) -> Callable[[Callable[[Any, int], None]], Callable[[Any, int], None]]:
    def deco(fn: Callable[[Any, int], None]) -> Callable[[Any, int], None]:
        HANDLERS[name] = fn
        return fn

    return deco


# proc_get_long(): an optional '-', then strtoul with base 0 (0x hex, leading-0 octal,
# decimal), ended by whitespace; no '+'.
_INT = re.compile(r"\s*(-?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\s*")


def parse_int(text: str) -> int:
    mt = _INT.fullmatch(text)
    if not mt:
        raise KernelError(errno.EINVAL)
    value = int(mt.group(2), 16 if mt.group(2)[:2].lower() == "0x" else
                8 if mt.group(2).startswith("0") else 10)
    return -value if mt.group(1) else value


@sysctl_handler("vm.min_free_kbytes")
def _min_free_kbytes(m: Any, value: int) -> None:
    from mmdbg.sim.mm.page_alloc import setup_per_zone_wmarks

    m.user_min_free_kbytes = value
    setup_per_zone_wmarks(m)


@sysctl_handler("vm.watermark_scale_factor")
def _wsf(m: Any, value: int) -> None:
    from mmdbg.sim.mm.page_alloc import setup_per_zone_wmarks

    setup_per_zone_wmarks(m)


@sysctl_handler("vm.percpu_pagelist_high_fraction")
def _pcp_frac(m: Any, value: int) -> None:
    from mmdbg.sim.mm.page_alloc import zone_set_pageset_high_and_batch

    if value and value < 8:
        raise KernelError(errno.EINVAL)
    for z in m.zones:
        zone_set_pageset_high_and_batch(z, 0)


def sysctl_write(m: Any, name: str, text: str) -> None:
    """Write a sysctl by dotted name; the machine is unchanged on any error."""
    if name not in m.sysctl:
        raise KernelError(errno.ENOENT, "No such file or directory")
    value = parse_int(text)
    lo, hi = LIMITS.get(name, (-(1 << 63), 1 << 63))
    if not lo <= value <= hi:
        raise KernelError(errno.EINVAL)
    old = m.sysctl[name]
    m.sysctl[name] = value
    handler = HANDLERS.get(name)
    if handler is not None:
        try:
            handler(m, value)
        except KernelError:
            m.sysctl[name] = old
            raise


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def register(v: VFS, m: Any) -> None:
    for name in m.sysctl:
        def reader(name: str = name) -> str:
            return f"{m.sysctl[name]}\n"

        def writer(text: str, name: str = name) -> None:
            sysctl_write(m, name, text)

        mode = 0o200 if name == "vm.drop_caches" else 0o644
        v.register(sysctl_path(name), reader, writer, mode=mode)
