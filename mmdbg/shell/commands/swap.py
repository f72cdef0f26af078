"""Swap commands: ``swapon``, ``swapoff`` and ``zramctl`` (util-linux), one-shot.

``swapon`` with no argument (or ``--show``) lists the active swap areas as util-linux's
``swapon --show`` does; ``swapon [-p PRIO] [-s SIZE] PATH`` adds a swap file (a zram device
when PATH is ``/dev/zramN``, with its disksize).  ``zramctl`` lists the zram devices, or
configures one (``--size``, ``--algorithm``, ``--limit``) or resets it.
"""

from __future__ import annotations

import errno
import getopt
import os
from typing import Any

from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.registry import CommandContext, command


def _human(n: int) -> str:
    """util-linux size_to_human_string: 1024-based, one decimal when it matters."""
    units = "BKMGTPE"
    v = float(n)
    i = 0
    while v >= 1024 and i < len(units) - 1:
        v /= 1024
        i += 1
    if i == 0:
        return f"{n}B"
    s = f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{s}{units[i]}"


def swapon_show(m: Any) -> list[str]:
    rows = [("NAME", "TYPE", "SIZE", "USED", "PRIO")]
    for si in m.swap.swap_info:
        if si is None or not si.flags & 2:
            continue
        rows.append((si.swap_file, "partition" if si.kind != "file" else "file",
                     _human(si.pages * 4096), _human(si.inuse_pages * 4096), str(si.prio)))
    if len(rows) == 1:
        return []
    w = [max(len(r[i]) for r in rows) for i in range(5)]
    return [f"{r[0]:<{w[0]}} {r[1]:<{w[1]}} {r[2]:>{w[2]}} {r[3]:>{w[3]}} {r[4]:>{w[4]}}"
            .rstrip() for r in rows]


def _size(text: str) -> int:
    from mmdbg.workloads.programs import parse_size

    try:
        return parse_size(text)
    except Exception as e:
        raise UsageError(f"invalid size '{text}': {e}") from None


@command(
    "swapon",
    usage="[--show] | [-p PRIO] [-s SIZE] PATH",
    summary="enable a swap area, or list them",
    help="""\
    With no PATH (or --show) lists the swap areas: NAME, TYPE, SIZE, USED, PRIO.
    swapon PATH adds PATH as swap: a file on the simulated disk (-s SIZE, default 64M) or
    a zram device (/dev/zram0, sized by its disksize: see zramctl).  -p sets the priority
    (higher is used first; default: decreasing from -2).""",
    examples=(("Compressed swap in RAM:", "zramctl -s 256M -a zstd /dev/zram0"),
              ("", "swapon -p 100 /dev/zram0"), ("List:", "swapon --show")),
    options=("--show", "-p", "-s"),
)
def cmd_swapon(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.sim.kernel.vm_init import task_context
    from mmdbg.sim.mm.swapfile import sys_swapon

    m = ctx.machine
    try:
        opts, rest = getopt.gnu_getopt(args, "p:s:", ["show", "priority=", "size="])
    except getopt.GetoptError as e:
        raise UsageError(e.msg) from None
    prio, size = -1, 64 << 20
    for o, v in opts:
        if o in ("-p", "--priority"):
            try:
                prio = int(v)
            except ValueError:
                raise UsageError(f"invalid priority '{v}'") from None
        elif o in ("-s", "--size"):
            size = _size(v)
    if not rest:
        for line in swapon_show(m):
            ctx.print(line)
        return
    if len(rest) > 1:
        raise UsageError("one PATH at a time")
    path = rest[0]
    m.activate()
    if path.startswith("/dev/zram"):
        from mmdbg.sim.drivers.zram import zram_get, zram_swapon

        try:
            z = zram_get(m, path)
        except KeyError:
            raise CommandError(f"swapon: cannot open {path}: No such file or directory") \
                from None
        if not z.init_done:
            raise CommandError(f"swapon: {path}: read swap header failed")
        ret = zram_swapon(m, z.name, prio)
    else:
        kind = "partition" if path.startswith("/dev/") else "file"
        with task_context(m, m.tasks[1]):
            ret = sys_swapon(path, size, prio, kind=kind)
    if ret:
        raise CommandError(f"swapon: {path}: swapon failed: {os.strerror(-ret)}")


@command(
    "swapoff",
    usage="PATH",
    summary="disable a swap area",
    help="""\
    Brings every page of the swap area back into memory (try_to_unuse) and removes it.""",
    examples=(("", "swapoff /dev/zram0"),),
)
def cmd_swapoff(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.sim.kernel.vm_init import task_context
    from mmdbg.sim.mm.swapfile import sys_swapoff

    if len(args) != 1:
        raise UsageError()
    m = ctx.machine
    m.activate()
    with task_context(m, m.tasks[1]):
        ret = sys_swapoff(args[0])
    if ret:
        raise CommandError(f"swapoff: {args[0]}: swapoff failed: {os.strerror(-ret)}")


def zramctl_list(m: Any) -> list[str]:
    """``zramctl`` default columns: NAME ALGORITHM DISKSIZE DATA COMPR TOTAL STREAMS MOUNTPOINT."""
    rows = [("NAME", "ALGORITHM", "DISKSIZE", "DATA", "COMPR", "TOTAL", "STREAMS",
             "MOUNTPOINT")]
    for z in getattr(m, "zram_devices", []):
        if not z.init_done:
            continue
        f = [int(x) for x in m.read(f"/sys/block/{z.name}/mm_stat").split()]
        mount = "[SWAP]" if z.claimed() else ""
        rows.append((z.path, z.comp_algorithm, _human(z.disksize), _human(f[0]), _human(f[1]),
                     _human(f[2]), str(m.ncpus), mount))
    if len(rows) == 1:
        return []
    w = [max(len(r[i]) for r in rows) for i in range(8)]
    out = []
    for r in rows:
        out.append(f"{r[0]:<{w[0]}} {r[1]:<{w[1]}} {r[2]:>{w[2]}} {r[3]:>{w[3]}} "
                   f"{r[4]:>{w[4]}} {r[5]:>{w[5]}} {r[6]:>{w[6]}} {r[7]}".rstrip())
    return out


@command(
    "zramctl",
    usage="[-s SIZE] [-a ALGORITHM] [-l LIMIT] [-r] [DEVICE]",
    summary="set up and show zram devices",
    help="""\
    Without options lists the initialised zram devices (NAME ALGORITHM DISKSIZE DATA COMPR
    TOTAL STREAMS MOUNTPOINT).  With DEVICE: -a sets comp_algorithm, -l mem_limit, -s the
    disksize (which initialises the device); -r resets it (not while it is swap).""",
    examples=(("", "zramctl -s 128M -a lz4 /dev/zram0"), ("", "zramctl")),
    options=("-s", "-a", "-l", "-r", "--size", "--algorithm", "--reset"),
)
def cmd_zramctl(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.sim.drivers.zram import zram_get
    from mmdbg.sim.fs.vfs import KernelError

    m = ctx.machine
    try:
        opts, rest = getopt.gnu_getopt(args, "s:a:l:r", ["size=", "algorithm=", "limit=",
                                                         "reset"])
    except getopt.GetoptError as e:
        raise UsageError(e.msg) from None
    if not opts and not rest:
        for line in zramctl_list(m):
            ctx.print(line)
        return
    if len(rest) != 1:
        raise UsageError("one DEVICE")
    try:
        z = zram_get(m, rest[0])
    except KeyError:
        raise CommandError(f"zramctl: {rest[0]}: failed to open device") from None
    base = f"/sys/block/{z.name}/"
    steps = []
    for o, _v in opts:
        if o in ("-r", "--reset"):
            steps.append(("reset", "1"))
    for o, v in opts:
        if o in ("-a", "--algorithm"):
            steps.append(("comp_algorithm", v))
    for o, v in opts:
        if o in ("-l", "--limit"):
            steps.append(("mem_limit", str(_size(v))))
    for o, v in opts:
        if o in ("-s", "--size"):
            steps.append(("disksize", str(_size(v))))
    for f, v in steps:
        try:
            m.write(base + f, v)
        except KernelError as e:
            what = {"reset": "failed to reset", "comp_algorithm": "failed to set algorithm",
                    "mem_limit": "failed to set memory limit",
                    "disksize": "failed to set disksize"}[f]
            raise CommandError(f"zramctl: {z.path}: {what}: "
                               f"{os.strerror(e.err or errno.EINVAL)}") from None
