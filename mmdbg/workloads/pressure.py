"""Memory-pressure scenarios (issue 7), registered in the scenario registry.

================  =========================================================================
``oom-global``    a hog grows until the OOM killer picks it; dmesg has the whole report
``oom-adj``       a small process with oom_score_adj=1000 dies instead of the hog
``memcg-oom``     a process in /sys/fs/cgroup/box over memory.max is killed, others survive
``swap-storm``    two processes whose working sets exceed RAM re-read them: pswpin/pswpout
================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mmdbg.workloads.api import Process
from mmdbg.workloads.programs import parse_size
from mmdbg.workloads.scenarios import Param, Scenario, register


def _size(t: str) -> int:
    return parse_size(t)


def _grower(m: Any, name: str, size: int, hold: float = 0, passes: int = 1,
            value: int = 0x41) -> Process:
    def prog(p: Process) -> Generator:
        addr = p.mmap(size)
        for i in range(passes):
            yield from p.touch_chunks(addr, size, i == 0, value)
        if hold:
            yield p.sleep(hold)
        return 0

    return Process.start(m, f"/usr/bin/{name}", [name], prog)


def _overcommit(m: Any) -> None:
    m.write("/proc/sys/vm/overcommit_memory", "1")


def _oom_global(m: Any, a: dict[str, Any]) -> Process:
    _overcommit(m)
    _grower(m, "idle-daemon", 4 << 20, hold=a["hold"])
    return _grower(m, "oom-global", a["size"])


def _oom_adj(m: Any, a: dict[str, Any]) -> Process:
    _overcommit(m)
    small = _grower(m, "victim", 8 << 20, hold=a["hold"])
    small.task.oom_score_adj = 1000
    return _grower(m, "oom-adj", a["size"], hold=a["hold"])


def _memcg_oom(m: Any, a: dict[str, Any]) -> Process:
    from mmdbg.sim.fs.cgroupfs import cgroup_mkdir

    cgroup_mkdir(m, "/sys/fs/cgroup/box")
    m.write("/sys/fs/cgroup/box/memory.max", str(a["max"]))
    _grower(m, "outside", 8 << 20, hold=0.1)

    def prog(p: Process) -> Generator:
        addr = p.mmap(a["size"])
        yield from p.touch_chunks(addr, a["size"], True, 0x42)
        return 0

    p = Process.start(m, "/usr/bin/memcg-oom", ["memcg-oom"], prog, run=False)
    m.write("/sys/fs/cgroup/box/cgroup.procs", str(p.pid))
    m.vm.sched.wake_up_new_task(p.task)
    return p


def _swap_storm(m: Any, a: dict[str, Any]) -> Process:
    _overcommit(m)
    _grower(m, "storm-b", a["size"], passes=a["passes"], value=0x22)
    return _grower(m, "swap-storm", a["size"], passes=a["passes"], value=0x11)


register(Scenario(
    "oom-global", "a hog grows until the OOM killer kills it (boot with mem=256M)",
    """`oom-global` maps `size` of anonymous memory (overcommit_memory=1) and writes it.
Reclaim finds nothing to free without swap; __alloc_pages_may_oom calls out_of_memory,
select_bad_process picks the biggest oom_badness and dmesg gets the kernel's report:
"invoked oom-killer", Mem-Info, the task table, "oom-kill:constraint=CONSTRAINT_NONE...",
"Out of memory: Killed process", then "oom_reaper: reaped process".""",
    (Param("size", "512M", _size, "bytes the hog writes"),
     Param("hold", "0.5", float, "seconds the idle daemon keeps its memory")),
    _oom_global, cmdline="mem=256M"))

register(Scenario(
    "oom-adj", "oom_score_adj=1000 makes a small process the victim",
    """A small process ("victim", 8 MiB) has oom_score_adj 1000: its badness gains
1000 * totalpages / 1000, more than the hog's resident size, so the OOM killer takes it
first; the hog keeps growing and is killed next.""",
    (Param("size", "512M", _size, "bytes the hog writes"),
     Param("hold", "1", float, "seconds the victim sleeps")),
    _oom_adj, cmdline="mem=256M"))

register(Scenario(
    "memcg-oom", "a cgroup over memory.max is OOM-killed, the rest survive",
    """Creates /sys/fs/cgroup/box with memory.max=`max`, moves `memcg-oom` into it and writes
`size`.  try_charge_memcg reclaims the group (no swap), then mem_cgroup_oom: the report
shows "memory: usage ..., limit ...", "Memory cgroup stats for /box:", the memcg's tasks and
"Memory cgroup out of memory: Killed process"; memory.events counts max, oom and oom_kill.""",
    (Param("max", "32M", _size, "memory.max of /box"),
     Param("size", "64M", _size, "bytes the process writes")),
    _memcg_oom, cmdline="mem=256M"))

register(Scenario(
    "swap-storm", "two working sets bigger than RAM: thrashing on swap",
    """Two processes each write `size` then re-read it `passes` times on a machine with swap:
kswapd and direct reclaim swap pages out (pswpout), every re-read faults them back
(pswpin, major faults, swap readahead), workingset_refault_anon climbs.""",
    (Param("size", "160M", _size, "working set per process"),
     Param("passes", "2", int, "times each process reads its memory")),
    _swap_storm, cmdline="mem=256M swap=512M"))
