"""gdb's breakpoint commands: break, tbreak, condition, ignore, commands, delete, disable,
enable, watch, rwatch, awatch and "info breakpoints".

A breakpoint is a kprobe (``break __alloc_pages``), a kretprobe (``break
kretprobe:__alloc_pages``: stops when the function returns, with its value) or a tracepoint
(``break kmem:mm_page_alloc``) whose handler parks the simulation (``shell/debugger.py``).
Conditions are probe-language expressions (``args.order >= 3 && comm == "init"``), compiled
by the probe compiler.  Messages and the ``info breakpoints`` table are gdb's.
"""

from __future__ import annotations

import re
from typing import Any

from mmdbg.shell.debugger import Breakpoint, Watch, body_line, get_debugger, info_subcommand
from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.fmt import parse_value
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim import trace

_LOC_HELP = """\
    LOCATION is one of:
      FUNCTION               a kernel function, at its entry (__alloc_pages,
                             handle_mm_fault); its arguments are args.NAME
      kprobe:FUNCTION        the same (arguments are also arg0, arg1 ...)
      kretprobe:FUNCTION     when FUNCTION returns (retval is its value)
      FILE:LINE              the kernel function whose body holds that line
                             (mm/page_alloc.py:700)
      tracepoint:CAT:NAME    a tracepoint (also CAT:NAME); its fields are args.NAME

    COND is an expression of the probe language, evaluated each time the location is
    reached: args.order >= 3, comm == "init", pid == 42 && args.gfp_mask & 0x40,
    retval == 0 (kretprobe).  The simulation stops only when it is true."""


def _dbg(ctx: CommandContext) -> Any:
    return get_debugger(ctx.session)


# ---------------------------------------------------------------------------------------
# locations and conditions


def resolve_location(text: str) -> tuple[str, str, Any]:
    """(kind, canonical name, target) for a breakpoint location; CommandError if unknown."""
    loc = text.strip()
    if loc.startswith("*"):
        raise CommandError("Breakpoints at addresses are not supported: give a kernel "
                           "function or a tracepoint.")
    for prefix, kind in (("kprobe:", "entry"), ("fentry:", "entry"), ("kretprobe:", "return"),
                         ("fexit:", "return")):
        if loc.startswith(prefix):
            name = loc[len(prefix):]
            kf = trace.find_kfunc(name)
            if kf is None:
                raise CommandError(_no_function(name))
            return kind, kf.name, kf
    if loc.startswith("tracepoint:") or loc.startswith("t:"):
        name = loc.split(":", 1)[1]
        tp = trace.find_tracepoint(name)
        if tp is None:
            raise CommandError(f'No tracepoint "{name}" in the simulated kernel '
                               f'(list them with "probes -l tracepoint:*").')
        return "tracepoint", tp.full_name, tp
    m = re.fullmatch(r"([\w/.-]+\.py):(\d+)", loc)
    if m:
        return _file_line(m.group(1), int(m.group(2)))
    kf = trace.find_kfunc(loc)
    if kf is not None:
        return "entry", kf.name, kf
    tp = trace.find_tracepoint(loc)
    if tp is not None:
        return "tracepoint", tp.full_name, tp
    raise CommandError(_no_function(loc))


def _no_function(name: str) -> str:
    import difflib

    near = difflib.get_close_matches(name, list(trace.KFUNCS), n=3, cutoff=0.7)
    hint = f" (did you mean: {', '.join(near)}?)" if near else ""
    return f'Function "{name}" not defined.{hint}'


def _file_line(path: str, line: int) -> tuple[str, str, Any]:
    path = path.removeprefix("mmdbg/sim/").removeprefix("sim/")
    best = None
    for kf in set(trace.KFUNCS.values()):
        if kf.file == path and kf.lineno <= line < kf.lineno + kf.size:
            if best is None or kf.lineno > best.lineno:
                best = kf
    if best is None:
        raise CommandError(f"No kernel function at {path}:{line}.")
    return "entry", best.name, best


def condition_location(kind: str, name: str, cond: str) -> str:
    if kind == "tracepoint":
        return f"tracepoint:{name}"
    if kind == "return":
        return f"fexit:{name}"
    return f"kprobe:{name}" if re.search(r"\barg\d+\b", cond) else f"fentry:{name}"


def compile_cond(ctx: CommandContext, kind: str, name: str, cond: str) -> Any:
    from mmdbg.probe.errors import ProbeCompileError
    from mmdbg.probe.expr import compile_condition

    try:
        return compile_condition(condition_location(kind, name, cond), cond, ctx.machine)
    except ProbeCompileError as e:
        raise CommandError(e.render().rstrip("\n")) from None


def _split_if(text: str) -> tuple[str, str]:
    m = re.match(r"^(\S+)(?:\s+if\b\s*(.*))?$", text.strip(), re.S)
    if not m:
        raise UsageError()
    return m.group(1), (m.group(2) or "").strip()


def _bp_number(dbg: Any, word: str) -> Breakpoint:
    try:
        n = int(word.lstrip("$"))
    except ValueError:
        raise CommandError(f'Convenience variable must have integer value.\n'
                           f'Bad breakpoint argument: \'{word}\'') from None
    bp = dbg.breakpoints.get(n)
    if bp is None:
        raise CommandError(f"No breakpoint number {n}.")
    return bp


def _numbers(dbg: Any, args: list[str]) -> list[Breakpoint]:
    out = []
    for a in args:
        m = re.fullmatch(r"(\d+)-(\d+)", a)
        if m:
            for n in range(int(m.group(1)), int(m.group(2)) + 1):
                if n in dbg.breakpoints:
                    out.append(dbg.breakpoints[n])
            continue
        out.append(_bp_number(dbg, a))
    return out


# ---------------------------------------------------------------------------------------
# break / tbreak


def _make_break(ctx: CommandContext, temporary: bool) -> None:
    text = ctx.argtext.strip()
    if not text:
        dbg = _dbg(ctx)
        if dbg.stop is not None and dbg.stop.frames:
            text = dbg.stop.frames[dbg.selected].kf.name
        else:
            raise UsageError("a location is needed (no default location: nothing is stopped)")
    loc, cond = _split_if(text)
    kind, name, target = resolve_location(loc)
    dbg = _dbg(ctx)
    compiled = compile_cond(ctx, kind, name, cond) if cond else None
    bp = Breakpoint(dbg.new_number(), "breakpoint", name, kind, target,
                    disp="del" if temporary else "keep", cond_text=cond, cond=compiled,
                    temporary=temporary)
    dbg.add(bp)
    head = "Temporary breakpoint" if temporary else "Breakpoint"
    if kind == "tracepoint":
        ctx.print(f"{head} {bp.number} at tracepoint {name}")
    else:
        ret = " (on return)" if kind == "return" else ""
        ctx.print(f"{head} {bp.number} at {bp.address()}: file {target.file}, "
                  f"line {body_line(target)}.{ret}")


@command(
    "break",
    raw=True,
    aliases=("b", "br"),
    usage="[LOCATION] [if COND]",
    summary="set a breakpoint",
    help="Stops the simulation when LOCATION is reached and COND (if given) is true, with\n"
         "the whole machine consistent: the probed function has not started yet, so every\n"
         "counter and list is as it was before the call.  The stop prints gdb's line,\n"
         "\"Breakpoint N, FUNCTION (ARGS) at FILE:LINE\", and the source line; then bt,\n"
         "frame, info locals, p, kmem, vtop ... inspect the machine, and continue, step,\n"
         "next or finish go on.\n\n" + _LOC_HELP + "\n\n"
         "With no LOCATION, the function of the selected frame of a stopped simulation.",
    examples=(("Stop in the page allocator for orders 3 and up:",
               "break __alloc_pages if args.order >= 3"),
              ("Stop when an allocation fails:", "break kretprobe:__alloc_pages if retval == 0"),
              ("Stop on a tracepoint:", "break kmem:mm_page_alloc if args.order > 0")),
)
def cmd_break(ctx: CommandContext, args: list[str]) -> None:
    _make_break(ctx, temporary=False)


@command(
    "tbreak",
    raw=True,
    aliases=("tb",),
    usage="[LOCATION] [if COND]",
    summary="set a temporary breakpoint",
    help="Like break, but the breakpoint is deleted when it is first hit (Disp \"del\").\n\n"
         + _LOC_HELP,
    examples=(("Stop at the next page fault only:", "tbreak handle_mm_fault"),),
)
def cmd_tbreak(ctx: CommandContext, args: list[str]) -> None:
    _make_break(ctx, temporary=True)


# ---------------------------------------------------------------------------------------
# condition / ignore / commands


@command(
    "condition",
    raw=True,
    usage="N [COND]",
    summary="set or remove a breakpoint's condition",
    help="""\
    Makes breakpoint N stop only when COND (a probe-language expression) is true; with no
    COND, removes the condition ("Breakpoint N now unconditional.").""",
    examples=(("Only order-3 and larger allocations:", "condition 1 args.order >= 3"),
              ("Remove it:", "condition 1")),
)
def cmd_condition(ctx: CommandContext, args: list[str]) -> None:
    text = ctx.argtext.strip()
    if not text:
        raise UsageError("Argument required (breakpoint number).")
    parts = text.split(None, 1)
    dbg = _dbg(ctx)
    bp = _bp_number(dbg, parts[0])
    if len(parts) == 1:
        bp.cond, bp.cond_text = None, ""
        ctx.print(f"Breakpoint {bp.number} now unconditional.")
        return
    if bp.is_watchpoint:
        raise CommandError("Watchpoint conditions are not supported.")
    bp.cond = compile_cond(ctx, bp.kind, bp.location, parts[1])
    bp.cond_text = parts[1].strip()


@command(
    "ignore",
    usage="N COUNT",
    summary="ignore the next COUNT crossings of a breakpoint",
    help="""\
    Breakpoint N does not stop the next COUNT times it is reached (with its condition
    true); hits are still counted.""",
    examples=(("Skip five allocations:", "ignore 1 5"),),
)
def cmd_ignore(ctx: CommandContext, args: list[str]) -> None:
    if len(args) != 2:
        raise UsageError("Argument required (a breakpoint number and a count).")
    bp = _bp_number(_dbg(ctx), args[0])
    try:
        count = int(args[1], 0)
    except ValueError:
        raise UsageError(f"bad count: {args[1]}") from None
    bp.ignore_count = max(0, count)
    ctx.print(ignore_message(bp.number, bp.ignore_count))


def ignore_message(n: int, count: int) -> str:
    if count == 0:
        return f"Will stop next time breakpoint {n} is reached."
    if count == 1:
        return f"Will ignore next crossing of breakpoint {n}."
    return f"Will ignore next {count} crossings of breakpoint {n}."


@command(
    "commands",
    usage="[N]",
    summary="commands to run when a breakpoint is hit",
    help="""\
    Reads shell commands, one per line, up to a line saying just "end", and runs them each
    time breakpoint N (default: the last one set) stops the simulation.  A first line
    "silent" suppresses the stop banner.  A command that resumes (continue, step, next,
    finish) ends the list: the simulation goes on.  "commands N" followed directly by
    "end" removes the commands.""",
    examples=(("Commands for breakpoint 1: type them on the next lines (silent, bt, "
                "continue), then \"end\":", "commands 1"),),
)
def cmd_commands(ctx: CommandContext, args: list[str]) -> None:
    dbg = _dbg(ctx)
    if len(args) > 1:
        raise UsageError()
    if args:
        bps = _numbers(dbg, args)
    else:
        if not dbg.breakpoints:
            raise CommandError("No breakpoints specified.")
        bps = [dbg.breakpoints[max(dbg.breakpoints)]]
    lines: list[str] = []
    sess = ctx.session
    if sess.echo is False and getattr(sess, "interactive", False):
        ctx.print(f"Type commands for breakpoint(s) {', '.join(str(b.number) for b in bps)}, "
                  "one per line.", 'End with a line saying just "end".')
    ctx.out.flush()

    def collect(line: str) -> bool:
        t = line.strip()
        if t == "end":
            for b in bps:
                b.commands = list(lines)
            return True
        if t:
            lines.append(t)
        return False

    sess.collector = collect


# ---------------------------------------------------------------------------------------
# delete / disable / enable


@command(
    "delete",
    aliases=("d",),
    usage="[breakpoints] [N ...]",
    summary="delete breakpoints",
    help="Deletes the breakpoints and watchpoints numbered N (ranges such as 2-4 work); with\n"
         "no number, all of them.",
    examples=(("Delete breakpoint 2:", "delete 2"), ("Delete all:", "delete")),
)
def cmd_delete(ctx: CommandContext, args: list[str]) -> None:
    dbg = _dbg(ctx)
    if args and args[0] in ("breakpoints", "br", "b"):
        args = args[1:]
    bps = _numbers(dbg, args) if args else list(dbg.breakpoints.values())
    for bp in bps:
        dbg.delete(bp)


@command(
    "disable",
    usage="[N ...]",
    summary="disable breakpoints",
    help="Disables breakpoints and watchpoints (all with no number); they stay in the table\n"
         "with Enb \"n\" and cost nothing until enabled.",
    examples=(("Disable breakpoint 1:", "disable 1"),),
)
def cmd_disable(ctx: CommandContext, args: list[str]) -> None:
    dbg = _dbg(ctx)
    if args and args[0] in ("breakpoints", "br", "b"):
        args = args[1:]
    for bp in _numbers(dbg, args) if args else list(dbg.breakpoints.values()):
        dbg.set_enabled(bp, False)


@command(
    "enable",
    usage="[once | delete | count N] [N ...]",
    summary="enable breakpoints",
    help="""\
    Enables breakpoints and watchpoints (all with no number).
      once      disable the breakpoint after it next stops (Disp "dis")
      delete    delete it after it next stops (Disp "del")
      count N   disable it after N more stops""",
    examples=(("Enable 1 for one stop:", "enable once 1"),),
)
def cmd_enable(ctx: CommandContext, args: list[str]) -> None:
    dbg = _dbg(ctx)
    disp = None
    count = 0
    if args and args[0] in ("breakpoints", "br", "b"):
        args = args[1:]
    if args and args[0] in ("once", "delete"):
        disp = "dis" if args[0] == "once" else "del"
        args = args[1:]
    elif args and args[0] == "count":
        if len(args) < 2:
            raise UsageError("Argument required (hit count).")
        try:
            count = int(args[1])
        except ValueError:
            raise UsageError(f"bad count: {args[1]}") from None
        args = args[2:]
    for bp in _numbers(dbg, args) if args else list(dbg.breakpoints.values()):
        if disp is not None:
            bp.disp = disp
        if count:
            bp.enable_count = count
            bp.disp = "dis"
        dbg.set_enabled(bp, True)


# ---------------------------------------------------------------------------------------
# info breakpoints


@info_subcommand("breakpoints", "breakpoints and watchpoints, with hit counts",
                 aliases=("b", "br", "break"))
def info_breakpoints(ctx: CommandContext, args: list[str]) -> None:
    _table(ctx, args, watch_only=False)


@info_subcommand("watchpoints", "watchpoints only", aliases=("wat", "watch"))
def info_watchpoints(ctx: CommandContext, args: list[str]) -> None:
    _table(ctx, args, watch_only=True)


def _table(ctx: CommandContext, args: list[str], watch_only: bool) -> None:
    dbg = _dbg(ctx)
    bps = _numbers(dbg, args) if args else sorted(dbg.breakpoints.values(),
                                                   key=lambda b: b.number)
    if watch_only:
        bps = [b for b in bps if b.is_watchpoint]
    if not bps:
        ctx.print("No watchpoints." if watch_only else "No breakpoints or watchpoints.")
        return
    ctx.print(f"{'Num':<7} {'Type':<14} Disp Enb {'Address':<18} What")
    for bp in bps:
        ctx.print(f"{bp.number:<7} {bp.type:<14} {bp.disp:<4} {'y' if bp.enabled else 'n':<3} "
                  f"{bp.address():<18} {bp.what()}".rstrip())
        if bp.cond_text:
            ctx.print(f"\tstop only if {bp.cond_text}")
        if bp.hits:
            ctx.print(f"\tbreakpoint already hit {bp.hits} time{'s' if bp.hits != 1 else ''}")
        if bp.ignore_count:
            ctx.print(f"\tWill ignore next {bp.ignore_count} crossings of breakpoint.")
        if bp.enable_count:
            ctx.print(f"\tdisable after next {bp.enable_count} hits")
        for line in bp.commands:
            ctx.print(f"        {line}")


# ---------------------------------------------------------------------------------------
# watchpoints


_WATCH_HELP = """\
    Stops the simulation when a value changes (watch), is read (rwatch) or either
    (awatch), printing gdb's "Old value = ... / New value = ..." (or "Value = ...") and
    where the kernel was.

    What can be watched:
      page PFN|ADDR FIELD      a field of a struct page: _refcount, _mapcount, flags,
                               private, mapping, index (PFN is a page frame number, ADDR
                               a 0xffffea... struct page address)
      EXPR                     any expression "p" can print (zone->free_area[3].nr_free,
                               node_data[0]->node_zones[2].vm_stat[0])
      -l ADDR[,LEN] | -l ADDR LEN
                               simulated memory: LEN bytes (default 8, at most 8) at a
                               direct-map address (0xffff888...) or, with -p, a physical
                               address

    A field or expression is checked each time a kernel function is entered or returns
    (a software watchpoint: the simulation runs slower while one exists); memory is
    watched on every access by the simulated kernel.  rwatch and awatch need memory
    (-l): reads of struct fields cannot be seen."""


def _watch(ctx: CommandContext, args: list[str], wtype: str) -> None:
    from mmdbg.sim.mm.mm_types import PAGE_OFFSET

    text = ctx.argtext.strip()
    if not text:
        raise UsageError("Argument required (expression to compute).")
    dbg = _dbg(ctx)
    m = ctx.machine
    words = text.split()
    phys_mode = False
    if words[0] in ("-l", "-location", "-p"):
        phys_mode = words[0] == "-p" or (len(words) > 1 and words[1] == "-p")
        rest = [w for w in words[1:] if w not in ("-p",)]
        spec = " ".join(rest).replace(",", " ").split()
        if not spec or len(spec) > 2:
            raise UsageError()
        try:
            addr = parse_value(ctx.session, spec[0])
            length = int(spec[1], 0) if len(spec) > 1 else 8
        except ValueError:
            raise UsageError(f"bad address or length: {' '.join(spec)}") from None
        if not 1 <= length <= 8:
            raise CommandError("Watching more than 8 bytes is not supported "
                               "(a hardware watchpoint covers 1, 2, 4 or 8 bytes).")
        if phys_mode:
            paddr = addr
        elif addr >= PAGE_OFFSET and addr < PAGE_OFFSET + (m.mem_map.max_pfn << 12):
            paddr = addr - PAGE_OFFSET
        else:
            raise CommandError(f"Cannot watch address 0x{addr:x}: give a direct-map address "
                               "(0xffff888...) or a physical one with -p.")
        pm_ref = m

        def read(paddr: int = paddr, length: int = length) -> int:
            return int.from_bytes(_raw_read(pm_ref.physmem, paddr, length), "little")

        expr = f"-location *(unsigned long *) 0x{addr:x}" if length == 8 else \
            f"-location 0x{addr:x},{length}"
        w = Watch(expr, read, lambda v: str(v) if v is not None else "<unreadable>",
                  phys=(paddr, length))
    else:
        if wtype != "hw watchpoint":
            raise CommandError("Expression cannot be implemented with read/access watchpoint.")
        expr, read, fmt = _watch_expr(ctx, text)
        w = Watch(expr, read, fmt)
    from mmdbg.shell.debugger import Breakpoint as BP

    bp = BP(dbg.new_number(), wtype, w.expr, "watch", None, watch=w)
    dbg.add(bp)
    title = {"hw watchpoint": "Hardware watchpoint",
             "read watchpoint": "Hardware read watchpoint",
             "acc watchpoint": "Hardware access (read/write) watchpoint"}[wtype]
    ctx.print(f"{title} {bp.number}: {w.expr}")


def _raw_read(pm: Any, paddr: int, size: int) -> bytes:
    """Read simulated memory without triggering read watchpoints."""
    out = bytearray()
    while size > 0:
        pfn, off = divmod(paddr, 4096)
        n = min(size, 4096 - off)
        pg = pm.pages.get(pfn)
        out += pg[off:off + n] if pg is not None else bytes(n)
        paddr += n
        size -= n
    return bytes(out)


_PAGE_FIELDS = ("_refcount", "_mapcount", "flags", "private", "mapping", "index", "page_type",
                "compound_head", "memcg_data")


def _watch_expr(ctx: CommandContext, text: str) -> tuple[str, Any, Any]:
    from mmdbg.sim.mm.mm_types import STRUCT_PAGE_SIZE, VMEMMAP_START

    m = ctx.machine
    words = text.split()
    if words[0] == "page":
        if len(words) != 3:
            raise UsageError("watch page PFN|ADDR FIELD")
        try:
            v = parse_value(ctx.session, words[1])
        except ValueError:
            raise UsageError(f"bad page: {words[1]}") from None
        pfn = (v - VMEMMAP_START) // STRUCT_PAGE_SIZE if v >= VMEMMAP_START else v
        if not m.pfn_valid(pfn):
            raise CommandError(f"Cannot access memory at address 0x{v:x}")
        field = words[2]
        if field not in _PAGE_FIELDS:
            raise CommandError(f"There is no member named {field}. "
                               f"(struct page fields: {', '.join(_PAGE_FIELDS)})")
        mref = m

        def read(pfn: int = pfn, field: str = field) -> Any:
            return getattr(mref.page(pfn), field)

        def fmt(v: Any) -> str:
            if field == "flags" and isinstance(v, int):
                return f"0x{v:x}"
            return str(v) if isinstance(v, int) else repr(v)

        return f"page {pfn} {field}", read, fmt
    from mmdbg.shell.commands.inspect import format_scalar
    from mmdbg.shell.expr_eval import evaluate

    sess = ctx.session
    evaluate(sess, text)  # errors now, not at the first check

    def read_expr() -> Any:
        v = evaluate(sess, text)
        return v if isinstance(v, int | str | bool) or v is None else id(v)

    return text, read_expr, format_scalar


@command("watch", raw=True, usage="EXPR | page PFN FIELD | -l ADDR[,LEN]",
         summary="stop when a value changes", help=_WATCH_HELP,
         examples=(("The reference count of pfn 4096:", "watch page 4096 _refcount"),
                   ("Free blocks of order 3 in zone Normal:",
                    "watch node_data[0]->node_zones[2].free_area[3].nr_free"),
                   ("Eight bytes of memory:", "watch -l 0xffff888001000000")),
         options=("-l", "-location", "-p"))
def cmd_watch(ctx: CommandContext, args: list[str]) -> None:
    _watch(ctx, args, "hw watchpoint")


@command("rwatch", usage="-l ADDR[,LEN]", summary="stop when memory is read",
         help=_WATCH_HELP, examples=(("Reads of 8 bytes:", "rwatch -l 0xffff888001000000"),),
         options=("-l", "-p"))
def cmd_rwatch(ctx: CommandContext, args: list[str]) -> None:
    _watch(ctx, args, "read watchpoint")


@command("awatch", usage="-l ADDR[,LEN]", summary="stop when memory is read or written",
         help=_WATCH_HELP, examples=(("Any access:", "awatch -l 0xffff888001000000,4"),),
         options=("-l", "-p"))
def cmd_awatch(ctx: CommandContext, args: list[str]) -> None:
    _watch(ctx, args, "acc watchpoint")
