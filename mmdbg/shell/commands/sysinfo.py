"""crash's ``sys``: the banner block describing the (simulated) system."""

from __future__ import annotations

import datetime
from typing import Any

from mmdbg.shell.errors import UsageError
from mmdbg.shell.fmt import pages_to_size
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim.machine import LINUX_BANNER, UTS_RELEASE

# The simulated machine has no wall clock: its DATE is this instant plus the simulated uptime,
# so the same run prints the same date.
SIM_BOOT_EPOCH = 1767225600  # Thu Jan  1 00:00:00 UTC 2026
NSEC_PER_SEC = 1_000_000_000


def sim_date(ns: int) -> str:
    """``Thu Jan  1 00:00:42 UTC 2026``: the simulated wall clock at ``ns`` after boot."""
    t = datetime.datetime.fromtimestamp(SIM_BOOT_EPOCH + ns // NSEC_PER_SEC,
                                        tz=datetime.UTC)
    return f"{t:%a %b} {t.day:2d} {t:%H:%M:%S} UTC {t.year}"


def uptime(ns: int) -> str:
    """crash's UPTIME: ``00:04:12`` or ``10 days, 14:14:39``."""
    s = ns // NSEC_PER_SEC
    days, s = divmod(s, 86400)
    hms = f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}"
    if days:
        return f"{days} day{'' if days == 1 else 's'}, {hms}"
    return hms


def sys_fields(m: Any) -> list[tuple[str, str]]:
    version = LINUX_BANNER[LINUX_BANNER.rfind("#"):]
    ntasks = len(m.idle_tasks) + sum(1 for t in m.tasks.values() if t not in m.idle_tasks)
    panic = getattr(m, "panic_msg", "") or ""
    return [
        ("KERNEL", f"vmlinux-{UTS_RELEASE}  (simulated)"),
        ("DUMPFILE", "(live simulation)"),
        ("CPUS", str(m.ncpus)),
        ("DATE", sim_date(m.clock.ns)),
        ("UPTIME", uptime(m.clock.ns)),
        ("LOAD AVERAGE", "0.00, 0.00, 0.00"),
        ("TASKS", str(ntasks)),
        ("NODENAME", "mmdbg"),
        ("RELEASE", UTS_RELEASE),
        ("VERSION", version),
        ("MACHINE", "x86_64  (simulated)"),
        ("MEMORY", pages_to_size(m.max_pfn)),
        ("NODES", str(len(m.node_data))),
        ("COMMAND LINE", m.config.cmdline),
        ("SEED", str(m.seed)),
        ("PANIC", f'"{panic}"'),
    ]


@command(
    "sys",
    usage="",
    summary="system data",
    help="""\
    Prints crash's system banner for the simulated machine: CPUs, the simulated date and
    uptime (the machine has no wall clock: DATE is Jan 1 2026 00:00 UTC plus the simulated
    uptime, so a run is reproducible), the kernel release, memory size and the PANIC string
    (empty until something panics).  mmdbg adds NODES, the kernel COMMAND LINE the machine
    booted with, and the SEED of its random number generator: "mmdbg --machine 'CMDLINE'
    --seed SEED" recreates it.""",
    examples=(("The system banner:", "sys"),),
)
def cmd_sys(ctx: CommandContext, args: list[str]) -> None:
    if args:
        raise UsageError(f"unsupported argument: {args[0]}")
    for label, value in sys_fields(ctx.machine):
        ctx.print(f"{label:>12}: {value}".rstrip())
