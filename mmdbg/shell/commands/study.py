"""The commands a Linux memory-management course has learners type, on the simulated machine:
``free``, ``vmstat``, ``numastat``, ``pmap``, ``perf stat`` and ``trace-cmd``.

Each prints what the real tool prints (procps-ng 4's free/vmstat/pmap, numactl's numastat,
perf 6's ``perf stat``, trace-cmd's report), computed from the simulated kernel's counters,
files and page tables.  Time is simulated time: ``vmstat 1 5`` runs the simulation for one
simulated second between samples.  A PROGRAM for perf stat and trace-cmd record is a shell
command line run while counting (``run 1s``, ``call __alloc_pages(GFP_KERNEL, 3)``), or a
scenario name when scenarios exist.
"""

from __future__ import annotations

import getopt
import re
from typing import Any

from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.expr_eval import all_tasks, find_task
from mmdbg.shell.registry import CommandContext, command


def meminfo(m: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in m.read("/proc/meminfo").splitlines():
        mt = re.match(r"(\S+):\s+(\d+)", line)
        if mt:
            out[mt.group(1)] = int(mt.group(2))
    return out


def proc_vmstat(m: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    try:
        text = m.read("/proc/vmstat")
    except OSError:
        return out
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if v.strip().lstrip("-").isdigit():
            out[k] = int(v)
    return out


# ---------------------------------------------------------------------------------------
# free


@command(
    "free",
    usage="[-b|-k|-m|-g|-h] [-w] [-t]",
    summary="amount of free and used memory (procps free)",
    help="""\
    procps-ng's free on the simulated machine, from /proc/meminfo: total, used, free,
    shared, buff/cache and available memory, and swap.  Units: -k KiB (default), -b bytes,
    -m MiB, -g GiB, -h human-readable; -w shows buffers and cache apart; -t adds a total
    line.  "used" is total - free - buff/cache, as procps computes it.""",
    examples=(("In MiB:", "free -m"),),
    options=("-b", "-k", "-m", "-g", "-h", "-w", "-t"),
)
def cmd_free(ctx: CommandContext, args: list[str]) -> None:
    try:
        opts, rest = getopt.getopt(args, "bkmghwt")
    except getopt.GetoptError as e:
        raise UsageError(e.msg) from None
    if rest:
        raise UsageError()
    o = [k for k, _ in opts]
    mi = meminfo(ctx.machine)
    total = mi.get("MemTotal", 0)
    free = mi.get("MemFree", 0)
    buffers = mi.get("Buffers", 0)
    cache = mi.get("Cached", 0) + mi.get("SReclaimable", 0)
    shared = mi.get("Shmem", 0)
    avail = mi.get("MemAvailable", free)
    used = total - free - buffers - cache
    if used < 0:
        used = total - free
    stotal, sfree = mi.get("SwapTotal", 0), mi.get("SwapFree", 0)

    def unit(kb: int) -> str:
        if "-b" in o:
            return str(kb * 1024)
        if "-m" in o:
            return str(kb >> 10)
        if "-g" in o:
            return str(kb >> 20)
        if "-h" in o:
            return _human(kb)
        return str(kb)

    wide = "-w" in o
    if wide:
        ctx.print("               total        used        free      shared     buffers"
                  "       cache   available")
        rows = [("Mem:", [total, used, free, shared, buffers, cache, avail])]
    else:
        ctx.print("               total        used        free      shared  buff/cache"
                  "   available")
        rows = [("Mem:", [total, used, free, shared, buffers + cache, avail])]
    rows.append(("Swap:", [stotal, stotal - sfree, sfree]))
    if "-t" in o:
        rows.append(("Total:", [total + stotal, used + stotal - sfree, free + sfree]))
    for label, vals in rows:
        ctx.print(f"{label:<8}" + "".join(f"{unit(v):>12}" for v in vals))


def _human(kb: int) -> str:
    b = kb * 1024
    for suffix, shift in (("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if b >= 1 << shift:
            v = b / (1 << shift)
            return f"{v:.1f}{suffix}" if v < 10 else f"{round(v)}{suffix}"
    return f"{b}B"


# ---------------------------------------------------------------------------------------
# vmstat


_VMSTAT_HEAD = ("procs -----------memory---------- ---swap-- -----io---- -system-- "
                "-------cpu-------",
                " r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy id "
                "wa st gu")


def _vmstat_sample(m: Any) -> dict[str, int]:
    mi = meminfo(m)
    vs = proc_vmstat(m)
    live = [t for t in all_tasks(m) if t.pid and not getattr(t, "exit_state", 0)]
    running = sum(1 for t in live if getattr(t, "state", 0) == 0)
    blocked = sum(1 for t in live if getattr(t, "state", 0) & 0x2)
    return {"r": running, "b": blocked,
            "swpd": mi.get("SwapTotal", 0) - mi.get("SwapFree", 0),
            "free": mi.get("MemFree", 0), "buff": mi.get("Buffers", 0),
            "cache": mi.get("Cached", 0) + mi.get("SReclaimable", 0),
            "pswpin": vs.get("pswpin", 0), "pswpout": vs.get("pswpout", 0),
            "pgpgin": vs.get("pgpgin", 0), "pgpgout": vs.get("pgpgout", 0),
            "ns": m.clock.ns}


def _vmstat_line(cur: dict[str, int], prev: dict[str, int] | None) -> str:
    secs = 1.0
    if prev is not None:
        secs = max((cur["ns"] - prev["ns"]) / 1e9, 1e-9)

    def rate(k: str) -> int:
        d = cur[k] - (prev[k] if prev is not None else 0)
        return int(d / secs) if prev is not None else d

    si, so = rate("pswpin") * 4, rate("pswpout") * 4
    bi, bo = rate("pgpgin"), rate("pgpgout")
    return (f"{cur['r']:2d} {cur['b']:2d} {cur['swpd']:6d} {cur['free']:6d} {cur['buff']:6d} "
            f"{cur['cache']:6d} {si:4d} {so:4d} {bi:5d} {bo:5d} {0:4d} {0:4d} "
            f"{0:2d} {0:2d} {100:2d} {0:2d} {0:2d} {0:2d}")


@command(
    "vmstat",
    usage="[-s] [DELAY [COUNT]]",
    summary="virtual memory statistics (procps vmstat)",
    help="""\
    procps-ng's vmstat: one line of memory, swap and io figures (the first since boot);
    with DELAY, a line every DELAY *simulated* seconds (the simulation runs in between),
    COUNT lines in all (default: 1 without DELAY, else until Ctrl-C or the simulation has
    nothing left to run).  -s prints the event counters as a table.  The cpu columns
    are not simulated (id 100).""",
    examples=(("Once:", "vmstat"), ("Five samples, one simulated second apart:", "vmstat 1 5"),
              ("Counters:", "vmstat -s")),
    options=("-s",),
)
def cmd_vmstat(ctx: CommandContext, args: list[str]) -> None:
    m = ctx.machine
    if args and args[0] == "-s":
        mi = meminfo(m)
        vs = proc_vmstat(m)
        for k, label in (("MemTotal", "total memory"), ("MemFree", "free memory"),
                         ("Buffers", "buffer memory"), ("Cached", "swap cache")
                         if False else ("Cached", "cache"),
                         ("SwapTotal", "total swap"), ("SwapFree", "free swap")):
            ctx.print(f"{mi.get(k, 0):>13} K {label}")
        for k in ("pgpgin", "pgpgout", "pswpin", "pswpout", "pgfault", "pgmajfault",
                  "pgalloc_normal", "pgfree", "oom_kill"):
            if k in vs:
                ctx.print(f"{vs[k]:>13} {k}")
        return
    try:
        delay = float(args[0]) if args else None
        count = int(args[1]) if len(args) > 1 else (1 if delay is None else 0)
    except ValueError:
        raise UsageError(f"bad delay or count: {' '.join(args)}") from None
    if len(args) > 2 or (delay is not None and delay <= 0):
        raise UsageError()
    for line in _VMSTAT_HEAD:
        ctx.print(line)
    prev = None
    n = 0
    run = getattr(m, "run", None)
    while True:
        cur = _vmstat_sample(m)
        ctx.print(_vmstat_line(cur, prev))
        ctx.out.flush()
        n += 1
        if delay is None or (count and n >= count):
            return
        if not callable(run):
            raise CommandError("vmstat: the machine cannot run by itself (no machine.run)")
        r = run(int(delay * 1e9))
        prev = cur
        if r == "idle" and not count:
            return


# ---------------------------------------------------------------------------------------
# numastat


_NUMA_ROWS = ("numa_hit", "numa_miss", "numa_foreign", "interleave_hit", "local_node",
              "other_node")


@command(
    "numastat",
    usage="[-m]",
    summary="NUMA allocation statistics per node (numactl numastat)",
    help="""\
    numastat's default table: per node, allocations satisfied on the intended node
    (numa_hit), elsewhere (numa_miss / numa_foreign), interleaved, and from a local or
    remote CPU; the counters are the zones' NUMA events summed per node.  -m shows
    per-node meminfo in MB.""",
    examples=(("The table:", "numastat"),),
    options=("-m",),
)
def cmd_numastat(ctx: CommandContext, args: list[str]) -> None:
    m = ctx.machine
    nodes = list(m.node_data)
    if args and args[0] == "-m":
        ctx.print("")
        ctx.print("Per-node system memory usage (in MBs):")
        ctx.print(f"{'':<24}" + "".join(f"{'Node ' + str(p.node_id):>16}" for p in nodes)
                  + f"{'Total':>16}")
        ctx.print(f"{'':<24}" + "".join(f"{'-' * 15:>16}" for _ in nodes) + f"{'-' * 15:>16}")
        from mmdbg.sim.mm import vmstat

        rows = (("MemTotal", lambda p: sum(z.managed_pages for z in p.node_zones)),
                ("MemFree", lambda p: sum(z.vm_stat[vmstat.NR_FREE_PAGES]
                                          for z in p.node_zones)))
        for name, f in rows:
            vals = [f(p) * 4 / 1024 for p in nodes]
            ctx.print(f"{name:<24}" + "".join(f"{v:>16.2f}" for v in vals) +
                      f"{sum(vals):>16.2f}")
        return
    if args:
        raise UsageError()
    from mmdbg.sim.mm import vmstat

    items = getattr(vmstat, "NUMA_STAT_ITEMS", ())
    ctx.print(f"{'':<27}" + "".join(f"{'node' + str(p.node_id):>16}" for p in nodes).lstrip()
              if False else " " * 27 + "".join(f"{'node' + str(p.node_id):<16}"
                                                for p in nodes).rstrip())
    for row in _NUMA_ROWS:
        vals = []
        for p in nodes:
            v = 0
            if row in items:
                i = list(items).index(row)
                v = sum(z.vm_numa_event[i] for z in p.node_zones)
            vals.append(v)
        ctx.print(f"{row:<16}" + "".join(f"{v:>16}" for v in vals))


# ---------------------------------------------------------------------------------------
# pmap


def _vmas(mm: Any) -> list[Any]:
    tree = getattr(mm, "mm_mt", None)
    try:
        return list(tree) if tree is not None else []
    except TypeError:
        return []


def _vma_name(v: Any, t: Any) -> str:
    f = getattr(v, "vm_file", None)
    if f is not None:
        path = getattr(f, "path", None) or getattr(getattr(f, "f_path", None), "name", None)
        if path:
            return str(path).rsplit("/", 1)[-1]
        return str(getattr(f, "name", "[ anon ]"))
    if getattr(v, "special_name", None):
        return v.special_name
    mm = v.vm_mm
    if getattr(mm, "start_brk", 0) <= v.vm_start < getattr(mm, "brk", 0) or (
            v.vm_start <= getattr(mm, "brk", -1) <= v.vm_end and mm.brk > mm.start_brk):
        return "[ anon ]"
    if v.vm_start <= getattr(mm, "start_stack", -1) < v.vm_end:
        return "[ stack ]"
    if getattr(v, "anon_name", None):
        return f"[ anon:{v.anon_name} ]"
    return "[ anon ]"


def _mode(flags: int, shared: bool = False) -> str:
    return ("r" if flags & 1 else "-") + ("w" if flags & 2 else "-") + \
        ("x" if flags & 4 else "-") + ("s" if flags & 8 else "-") + "-"


def _rss_dirty(mm: Any, v: Any) -> tuple[int, int]:
    from mmdbg.sim.arch.x86.pgtable import pte_dirty, pte_present, pte_table_lookup

    rss = dirty = 0
    a = v.vm_start
    while a < v.vm_end:
        nxt = min(((a >> 21) + 1) << 21, v.vm_end)
        table = pte_table_lookup(mm, a)
        if table is not None:
            for addr in range(a, nxt, 4096):
                pte = table[addr >> 12 & 511]
                if pte and pte_present(pte):
                    rss += 1
                    if pte_dirty(pte):
                        dirty += 1
        a = nxt
    return rss * 4, dirty * 4


@command(
    "pmap",
    usage="[-x] [PID ...]",
    summary="memory map of a process (procps pmap)",
    help="""\
    procps-ng's pmap: each VMA of the process, address, size, mode and mapping; -x adds
    the resident and dirty kilobytes of each mapping, counted from its page tables, and
    the totals.""",
    examples=(("The map of pid 1:", "pmap 1"), ("With RSS and dirty pages:", "pmap -x 1")),
    options=("-x",),
)
def cmd_pmap(ctx: CommandContext, args: list[str]) -> None:
    ext = "-x" in args
    pids = [a for a in args if a != "-x"]
    if not pids:  # crash-style: the current context ("set PID", foreach)
        from mmdbg.shell.commands.inspect import context_task

        t = context_task(ctx.session)
        if t is None or not t.pid:
            raise UsageError("a PID is needed (the current context is the idle task)")
        pids = [str(t.pid)]
    if any(a.startswith("-") for a in pids):
        raise UsageError()
    m = ctx.machine
    for a in pids:
        try:
            t = find_task(m, int(a))
        except ValueError:
            raise UsageError(f"bad pid: {a}") from None
        if t is None or t.pid == 0:
            raise CommandError(f"pmap: process {a} not found")
        mm = getattr(t, "mm", None)
        argv = getattr(t, "argv", None) or getattr(mm, "argv", None)
        cmdline = " ".join(argv) if argv else t.comm
        ctx.print(f"{t.pid}:   {cmdline}")
        if mm is None:
            continue
        total = trss = tdirty = 0
        if ext:
            ctx.print("Address           Kbytes     RSS   Dirty Mode  Mapping")
        for v in _vmas(mm):
            kb = (v.vm_end - v.vm_start) >> 10
            total += kb
            name = _vma_name(v, t)
            mode = _mode(v.vm_flags)
            if ext:
                rss, dirty = _rss_dirty(mm, v)
                trss += rss
                tdirty += dirty
                ctx.print(f"{v.vm_start:016x} {kb:>7} {rss:>7} {dirty:>7} {mode} {name}")
            else:
                ctx.print(f"{v.vm_start:016x} {kb:>6}K {mode} {name}")
        if ext:
            ctx.print("---------------- ------- ------- ------- ")
            ctx.print(f"total kB         {total:>7} {trss:>7} {tdirty:>7}")
        else:
            ctx.print(f" total {total:>16}K")


# ---------------------------------------------------------------------------------------
# perf stat, trace-cmd


def _run_program(ctx: CommandContext, words: list[str]) -> str:
    """Run PROGRAM (a shell command line, or a scenario name); return its label."""
    sess = ctx.session
    line = " ".join(words)
    if not words:
        raise UsageError("a PROGRAM to run is needed (e.g. \"run 1s\")")
    if sess.registry.lookup(words[0]) is None:
        from mmdbg.shell.commands import exec as ex

        mod = ex._scenarios_module()
        names = [n for n, _ in ex._scenario_names(mod)] if mod is not None else []
        if words[0].split(":")[0] in names:
            sess.execute(f"scenario load {words[0]}")
            sess.execute("run")
            return f"scenario {words[0]}"
        raise CommandError(f"{words[0]}: not a shell command or a scenario "
                           "(give a command line such as \"run 1s\")")
    dbg = sess.debugger
    if dbg is not None and dbg.on_sim_thread():
        # already on the sim thread (perf/trace-cmd are kernel commands): run inline
        cmd = sess.registry.lookup(words[0])
        from mmdbg.shell.registry import CommandContext as Ctx

        c = Ctx(sess, cmd, words[0], ctx.out, line[len(words[0]):].strip())
        import shlex

        if cmd.name in ("run", "continue"):
            from mmdbg.shell.commands.exec import parse_duration, sim_run

            dur = parse_duration(words[1]) if len(words) > 1 else None
            sim_run(dbg, dur, ctx.out)
        else:
            cmd.func(c, shlex.split(line)[1:] if not cmd.raw else [c.argtext])
    else:
        sess.execute(line)
    return line


@command(
    "perf",
    usage="stat -e EVENT[,EVENT...] PROGRAM ...",
    summary="count events while a program runs (perf stat)",
    help="""\
    perf stat: counts EVENTs while PROGRAM runs and prints perf's table, the elapsed time
    being simulated time.  Events: page-faults (faults), minor-faults, major-faults and any
    simulated tracepoint (kmem:mm_page_alloc).  PROGRAM is a shell command line ("run 1s",
    "call __alloc_pages(GFP_KERNEL, 3)") or a scenario name.""",
    examples=(("Faults over one simulated second:", "perf stat -e page-faults run 1s"),),
    options=("stat", "-e"),
)
def cmd_perf(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.probe.perfstat import PerfStat

    if not args or args[0] != "stat":
        raise UsageError("only \"perf stat\" is simulated")
    rest = args[1:]
    events: list[str] = []
    while rest and rest[0].startswith("-"):
        if rest[0] == "-e" and len(rest) > 1:
            events += rest[1].split(",")
            rest = rest[2:]
        elif rest[0].startswith("-e") and len(rest[0]) > 2:
            events += rest[0][2:].split(",")
            rest = rest[1:]
        elif rest[0] == "--":
            rest = rest[1:]
            break
        else:
            raise UsageError(f"unknown option: {rest[0]}")
    if not events:
        events = ["page-faults", "minor-faults", "major-faults"]
    m = ctx.machine
    stat = PerfStat(m, events)
    stat.start()
    try:
        label = _run_program(ctx, rest)
    finally:
        stat.stop()
    ctx.out.write(stat.report(label))


def _trace_state(session: Any) -> dict[str, Any]:
    st = getattr(session, "trace_cmd", None)
    if st is None:
        st = session.trace_cmd = {"lines": [], "cpus": 1, "events": ""}
    return st


@command(
    "trace-cmd",
    usage="record -e EVENT [-e EVENT ...] [PROGRAM ...] | report | list [PATTERN]",
    summary="record and report tracepoint events (trace-cmd)",
    help="""\
    trace-cmd on the simulated kernel: "record -e kmem:* -e mm_page_alloc PROGRAM" enables
    those tracepoints while PROGRAM (a shell command line such as "run 1s", or a scenario)
    runs, and keeps the events; "report" prints them in ftrace's text format (task-pid,
    [cpu], timestamp, event: fields), the way "trace-cmd report" does.  Without PROGRAM,
    record runs the simulation until it has nothing left to run ("run").  "list"
    shows the events that can be recorded.""",
    examples=(("Page allocator events over 10 ms:",
               "trace-cmd record -e kmem:mm_page_alloc -e kmem:mm_page_free run 10ms"),
              ("Then:", "trace-cmd report | head")),
    options=("record", "report", "list", "-e"),
)
def cmd_trace_cmd(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.probe.ftrace import FtraceSession, TraceError

    if not args:
        raise UsageError()
    st = _trace_state(ctx.session)
    sub = args[0]
    m = ctx.machine
    if sub == "list":
        from mmdbg.sim import trace

        pat = args[1] if len(args) > 1 else "*"
        import fnmatch

        for tp in trace.declared_tracepoints():
            if fnmatch.fnmatchcase(tp.full_name, pat if ":" in pat else "*:" + pat):
                ctx.print(tp.full_name)
        return
    if sub == "report":
        if not st["lines"] and not st["events"]:
            raise CommandError("trace-cmd: nothing recorded yet (trace-cmd record -e EVENT "
                               "PROGRAM)")
        ctx.print(f"cpus={st['cpus']}")
        for line in st["lines"]:
            ctx.write(line)
        return
    if sub != "record":
        raise UsageError(f"unknown subcommand: {sub}")
    rest = args[1:]
    specs: list[str] = []
    while rest and rest[0].startswith("-"):
        if rest[0] == "-e" and len(rest) > 1:
            specs.append(rest[1])
            rest = rest[2:]
        elif rest[0].startswith("-e") and len(rest[0]) > 2:
            specs.append(rest[0][2:])
            rest = rest[1:]
        else:
            raise UsageError(f"unknown option: {rest[0]}")
    if not specs:
        raise UsageError("no events given (-e kmem:mm_page_alloc)")
    buf: list[str] = []

    class _Sink:
        def write(self, s: str) -> int:
            buf.append(s)
            return len(s)

    try:
        fs = FtraceSession(m, ",".join(specs), _Sink(), irq_info=False)
    except TraceError as e:
        raise CommandError(f"trace-cmd: {e}") from None
    fs.attach()
    try:
        _run_program(ctx, rest or ["run"])
    finally:
        fs.detach()
    st["lines"] = [_report_line(ln) for ln in buf]
    st["cpus"] = getattr(m, "ncpus", 1)
    st["events"] = ",".join(specs)
    ctx.print(f"CPU{'s' if st['cpus'] > 1 else ''} 0-{st['cpus'] - 1}: {len(buf)} events "
              "recorded (\"trace-cmd report\" prints them)")


def _report_line(line: str) -> str:
    """ftrace's trace line -> trace-cmd report's: ``comm-pid [cpu] secs: event: text``."""
    mt = re.match(r"^(\s*.+?)-(\d+)\s+\[(\d+)\]\s+(\d+\.\d+): (.*)$", line.rstrip("\n"), re.S)
    if not mt:
        return line
    comm, pid, cpu, ts, rest = mt.groups()
    return f"{comm.strip():>16}-{pid:<5} [{cpu}] {ts}: {rest}\n"
