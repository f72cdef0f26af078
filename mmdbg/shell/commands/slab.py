"""Slab and module commands: ``slabtop``, ``insmod``, ``rmmod``, ``lsmod``.

``kmem -s [CACHE ...]`` and ``kmem -S CACHE`` belong to the ``kmem`` command
(shell/commands/kmem.py); :func:`kmem_slab` is the hook it calls for those two options, and
``kmem ADDR`` reaches slab objects through ``machine.identify_slab``.
"""

from __future__ import annotations

import getopt
from typing import Any

from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim.kernel import module
from mmdbg.sim.mm import slab_info


def kmem_slab(m: Any, opt: str, args: list[str]) -> list[str]:
    """``kmem -s [CACHE ...]`` / ``kmem -S CACHE``: lines to print (hook for kmem.py)."""
    try:
        if opt == "-s":
            return slab_info.kmem_s(m, args or None)
        if opt == "-S":
            if len(args) != 1:
                raise UsageError("-S takes one cache name")
            return slab_info.kmem_S(m, args[0])
    except KeyError as e:
        raise CommandError(f"kmem: invalid kmem_cache name: {e.args[0]}") from None
    raise UsageError(f"unknown option {opt}")


@command(
    "slabtop",
    usage="[-o] [-d SECONDS [-i COUNT]] [-s SORT] [-n LINES]",
    summary="display kernel slab cache information",
    help="""\
    Prints what procps' slabtop prints: the summary of active and total objects, slabs,
    caches and sizes, then one line per cache from /proc/slabinfo.  By default once (as
    slabtop -o); with -d, refreshing in simulated time.

      -o          once (the default).
      -d SECONDS  refresh: print, run the simulation SECONDS of simulated time (0.5, 2s,
                  100ms), print again ... COUNT times in all (-i, default 5).  A breakpoint
                  or Ctrl-C ends the refreshing where the simulation stopped.
      -s SORT     sort by o (objects, default), a (active objects), s (object size),
                  n (name), b (objects per slab), c (cache size), l (slabs), u (use %).
      -n LINES    only the first LINES caches.""",
    examples=(("The ten biggest caches by memory:", "slabtop -s c -n 10"),
              ("Watch a leak grow, once per simulated second:", "slabtop -d 1 -i 4 -n 5")),
    options=("-o", "-d", "-i", "-s", "-n"),
)
def cmd_slabtop(ctx: CommandContext, args: list[str]) -> None:
    try:
        opts, rest = getopt.getopt(args, "od:i:s:n:")
    except getopt.GetoptError as e:
        raise UsageError(e.msg) from None
    if rest:
        raise UsageError()
    sort, limit, delay, count, once = "o", 0, None, 5, False
    for o, v in opts:
        if o == "-s":
            if v not in "oasnbclu" or len(v) != 1:
                raise UsageError(f"invalid sort criterion: {v}")
            sort = v
        elif o in ("-n", "-i"):
            try:
                n = int(v)
            except ValueError:
                raise UsageError(f"invalid {'line' if o == '-n' else 'iteration'} count: "
                                 f"{v}") from None
            if n < (0 if o == "-n" else 1):
                raise UsageError(f"invalid count: {v}")
            if o == "-n":
                limit = n
            else:
                count = n
        elif o == "-d":
            delay = _parse_delay(v)
        elif o == "-o":
            once = True
    if getattr(ctx.machine.config, "slab", "slub") == "slob":  # SLOB had no /proc/slabinfo
        raise CommandError("slabtop: fopen /proc/slabinfo: No such file or directory")
    if delay is None or once:
        for line in slab_info.slabtop(ctx.machine, sort, limit):
            ctx.print(line)
        return
    _slabtop_refresh(ctx, sort, limit, delay, count)


def _parse_delay(v: str) -> int:
    from mmdbg.shell.commands.exec import parse_duration

    try:
        ns = int(float(v) * 1_000_000_000)
    except ValueError:
        try:
            ns = parse_duration(v)
        except ValueError:
            raise UsageError(f"invalid delay: {v}") from None
    if ns <= 0:
        raise UsageError(f"invalid delay: {v}")
    return ns


def _slabtop_refresh(ctx: CommandContext, sort: str, limit: int, delay: int,
                     count: int) -> None:
    """Print, run ``delay`` of simulated time on the debugger's sim thread, print ..."""
    from mmdbg.shell.commands.exec import format_ns, machine_runner
    from mmdbg.shell.debugger import IDLE, get_debugger

    dbg = get_debugger(ctx.session)
    if dbg.state != IDLE:
        raise CommandError("slabtop -d: the simulation is running or stopped (continue it, "
                           "or use slabtop -o)")
    runner = machine_runner(dbg)
    if runner is None:
        raise CommandError("slabtop -d: the machine cannot run by itself (no scheduler)")
    for i in range(count):
        m = ctx.session.machine
        if i:
            ctx.print("")
        ctx.print(f"slabtop: clock at {format_ns(m.clock.ns)}")
        for line in slab_info.slabtop(m, sort, limit):
            ctx.print(line)
        if i == count - 1:
            break
        dbg.start(lambda m=m: runner(delay), "slabtop")
        dbg.run_foreground(ctx.session.out)
        if dbg.state != IDLE:  # a breakpoint, a watchpoint, Ctrl-C: the debugger has it
            return


@command(
    "insmod",
    usage="MODULE [PARAM=VALUE ...]",
    summary="load a kernel module",
    help="""\
    Loads a simulated kernel module and runs its init function, as insmod does.  MODULE is
    a shipped module (kmalloc_test, kmemleak_test, kasan_test, vma_test) or the path of a
    Python file written as docs/modules.md shows.  Parameters are module_params.""",
    examples=(("Allocate 100 objects of 200 bytes and keep them:",
               "insmod kmalloc_test size=200 count=100 keep=1"),
              ("The KASAN bug zoo, one case (boot with kasan=on):",
               "insmod kasan_test test=kmalloc_uaf")),
)
def cmd_insmod(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError()
    try:
        module.load_module(ctx.machine, args[0], " ".join(args[1:]) or None)
    except module.ModuleError as e:
        raise CommandError(f"insmod: ERROR: {e}") from None


@command(
    "rmmod",
    usage="MODULE",
    summary="unload a kernel module",
    help="Runs the module's exit function and frees its memory, as rmmod does.",
    examples=(("Unload the kmemleak test (its list becomes orphans):", "rmmod kmemleak_test"),),
)
def cmd_rmmod(ctx: CommandContext, args: list[str]) -> None:
    if len(args) != 1:
        raise UsageError()
    try:
        module.unload_module(ctx.machine, args[0])
    except module.ModuleError as e:
        raise CommandError(f"rmmod: {e}") from None


@command(
    "lsmod",
    usage="",
    summary="show loaded kernel modules",
    help="Lists the loaded modules as lsmod does (from /proc/modules).",
    examples=(("Loaded modules:", "lsmod"),),
)
def cmd_lsmod(ctx: CommandContext, args: list[str]) -> None:
    if args:
        raise UsageError()
    for line in module.lsmod_lines(ctx.machine):
        ctx.print(line)
