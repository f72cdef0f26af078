"""Helpers shared by the memory-pressure tests (issue 7)."""

from __future__ import annotations

from typing import Any

import mmdbg
from mmdbg.workloads.api import Process


def boot(cmdline: str = "mem=128M cpus=2", overcommit: bool = True) -> Any:
    m = mmdbg.boot(cmdline, seed=0)
    if overcommit:
        m.write("/proc/sys/vm/overcommit_memory", "1")
    return m


def hog(m: Any, size: int, name: str = "hog", value: int = 0x41, hold: float = 0,
        start: bool = True, reread: int = 0) -> Process:
    def prog(p: Process) -> Any:
        addr = p.mmap(size)
        p.task.hog_addr = addr
        yield from p.touch_chunks(addr, size, True, value)
        if reread:
            yield from p.touch_chunks(addr, reread, False)
        if hold:
            yield p.sleep(hold)
        return 0

    return Process.start(m, f"/usr/bin/{name}", [name], prog, run=start)


def vmstat(m: Any) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in m.read("/proc/vmstat").splitlines())}


def meminfo(m: Any) -> dict[str, int]:
    out = {}
    for ln in m.read("/proc/meminfo").splitlines():
        k, v = ln.split(":", 1)
        out[k] = int(v.split()[0])
    return out
