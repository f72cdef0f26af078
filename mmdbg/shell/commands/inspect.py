"""Inspection, crash's and gdb's way: bt, frame, up, down, info, p, struct, set PID (via
``set``), foreach, search, wr, sysctl, alias, source, and ``kmem ADDR`` (``identify``).

The stack of a stopped simulation is the live Python frames of the parked sim thread,
filtered to kernel functions (``trace.kframes``): each frame shows the kernel function, its
arguments and line, and ``info locals`` reads the frame's local variables.  At a breakpoint
the probed function has been entered but has not started: frame #0 then has arguments and
no locals yet.

``p`` and ``struct`` read kernel objects by their kernel field names (``page->_refcount``,
``zone->free_area[3].nr_free``, ``node_data[0]->node_zones[2]``); the expressions are parsed
and evaluated by ``shell/expr_eval.py``, and this module prints what they give.
"""

from __future__ import annotations

import getopt
import os
import re
from typing import Any

from mmdbg.shell import kaddr
from mmdbg.shell.debugger import (
    INFO_ALIASES,
    INFO_COMMANDS,
    STOPPED,
    format_value,
    frame_line,
    get_debugger,
    info_subcommand,
    is_machine,
    object_address,
    source_line,
)
from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.expr_eval import (
    PagePtr,
    TypedAddr,
    all_tasks,
    evaluate,
    find_task,
    int_value,
    mm_vmas,
    resolve_object,
    task_addr,
    type_name,
)
from mmdbg.shell.fmt import parse_number, parse_value
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim import trace
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, STRUCT_PAGE_SIZE, VMEMMAP_START

# ---------------------------------------------------------------------------------------
# the current context (crash's "set PID")


def context_task(session: Any) -> Any:
    """The task commands default to: the one chosen with "set PID", else ``current``."""
    m = session.machine
    pid = getattr(session, "context_pid", None)
    if pid is not None:
        t = find_task(m, pid)
        if t is not None:
            return t
    dbg = session.debugger
    if dbg is not None and dbg.stop is not None and dbg.stop.task is not None:
        return dbg.stop.task
    return getattr(m, "current", None)


def task_header(t: Any) -> str:
    return (f"PID: {t.pid:<6} TASK: {task_addr(t):016x}  CPU: {getattr(t, 'cpu', 0):<3} "
            f'COMMAND: "{t.comm}"')


_STATE_NAMES = {"RU": "TASK_RUNNING", "IN": "TASK_INTERRUPTIBLE", "UN": "TASK_UNINTERRUPTIBLE",
                "ST": "TASK_STOPPED", "ZO": "EXIT_ZOMBIE", "DE": "EXIT_DEAD"}


def set_context(ctx: CommandContext, args: list[str]) -> None:
    """``set PID`` / ``set -c CPU`` / ``set -p``: choose the current context."""
    m = ctx.machine
    sess = ctx.session
    if args[0] == "-p":
        sess.context_pid = None
        t = context_task(sess)
    elif args[0] == "-c":
        if len(args) != 2:
            raise UsageError("set -c CPU")
        cpu = int(args[1])
        if not 0 <= cpu < len(m.cpu_curr):
            raise CommandError(f"set: invalid cpu: {cpu}")
        t = m.cpu_curr[cpu]
        sess.context_pid = t.pid
    else:
        try:
            v = parse_number(args[0])
        except ValueError:
            raise UsageError(f"not a pid or task address: {args[0]}") from None
        t = find_task(m, v) if v < 1 << 32 else None
        if t is None:
            t = next((x for x in all_tasks(m) if task_addr(x) == v), None)
        if t is None:
            raise CommandError(f"set: invalid task or pid value: {args[0]}")
        sess.context_pid = t.pid
    ctx.print(f"    PID: {t.pid}", f'COMMAND: "{t.comm}"', f"   TASK: {task_addr(t):x}",
              f"    CPU: {getattr(t, 'cpu', 0)}",
              f"  STATE: {_STATE_NAMES.get(_state_char(t), 'TASK_RUNNING')}")


def _state_char(t: Any) -> str:
    try:
        return t.state_char()
    except Exception:  # sched.py's state_char() may not run (name mangling); do it here
        if getattr(t, "exit_state", 0) & 0x20:
            return "ZO"
        s = getattr(t, "state", 0)
        return "RU" if s == 0 else "UN" if s & 2 else "ST" if s & 4 else "IN"


# ---------------------------------------------------------------------------------------
# bt, frame, up, down


def _frames(ctx: CommandContext) -> list[Any]:
    dbg = get_debugger(ctx.session)
    return dbg.frames() if dbg.state == STOPPED else []


def _entered_from(dbg: Any) -> str:
    job = dbg.job
    if job is None or job.done:
        return ""
    if job.describe == "run":
        return "[entered from the simulation's run loop]"
    return f"[entered from the shell: {job.describe}]"


def _user_op(frames: list[Any]) -> str:
    """The user-side operation that entered the kernel, if a frame shows one."""
    for fr in reversed(frames):
        v = fr.all_values()
        regs = v.get("regs")
        if regs is not None and getattr(type(regs), "ktype", "") == "pt_regs":
            addr = v.get("address")
            if callable(getattr(regs, "user_mode", None)) and regs.user_mode():
                where = f" at address 0x{addr:x}" if isinstance(addr, int) else ""
                return f"[user page fault{where}, ip 0x{regs.ip:x}]"
    return ""


@command(
    "bt",
    aliases=("backtrace", "where"),
    usage="[-a | PID]",
    summary="backtrace of the stopped simulation",
    help="""\
    Prints the simulated kernel stack of the current task when the simulation is stopped
    (breakpoint, watchpoint, step): the task header, then one line per kernel frame,
    innermost first, "#N  FUNCTION (ARGS) at FILE:LINE", then how the kernel was entered
    (the shell command, the run loop, or a user page fault with its address).
      -a   every CPU's current task (only the stopped one has a kernel stack)
      PID  that task (a task that is not on the stopped CPU shows no kernel frames)
    Nothing stopped: "No stack.", as gdb says.""",
    examples=(("At a breakpoint:", "bt"), ("Only the allocator frames:", "bt | grep alloc")),
    options=("-a",),
)
def cmd_bt(ctx: CommandContext, args: list[str]) -> None:
    dbg = get_debugger(ctx.session)
    m = ctx.machine
    stopped = dbg.state == STOPPED and dbg.stop is not None
    if args and args[0] == "-a":
        tasks = list(getattr(m, "cpu_curr", []))
    elif args:
        try:
            t = find_task(m, int(args[0]))
        except ValueError:
            raise UsageError(f"bad pid: {args[0]}") from None
        if t is None:
            raise CommandError(f"bt: invalid task or pid value: {args[0]}")
        tasks = [t]
    else:
        if not stopped:
            raise CommandError("No stack.")
        tasks = [dbg.stop.task if dbg.stop.task is not None else context_task(ctx.session)]
    for i, t in enumerate(tasks):
        if i:
            ctx.print("")
        if t is not None:
            ctx.print(task_header(t))
        if stopped and t is dbg.stop.task:
            frames = dbg.frames()
            for n, fr in enumerate(frames):
                ctx.print(f"{'>' if n == dbg.selected and n else ' '}#{n:<2} {frame_line(fr)}")
            extra = _user_op(frames) or _entered_from(dbg)
            if extra:
                ctx.print(f"    {extra}")
        else:
            ctx.print("    (not in the kernel: no kernel frames)")


def _select(ctx: CommandContext, n: int) -> None:
    dbg = get_debugger(ctx.session)
    frames = _frames(ctx)
    if not frames:
        raise CommandError("No stack.")
    if not 0 <= n < len(frames):
        raise CommandError(f"No frame at level {n}.")
    dbg.selected = n
    fr = frames[n]
    ctx.print(f"#{n}  {frame_line(fr)}")
    sl = source_line(fr)
    if sl:
        ctx.print(sl)


@command(
    "frame",
    aliases=("f",),
    usage="[N]",
    summary="select and print a stack frame",
    help="Selects frame N of the stopped simulation's stack (0 is the innermost) and prints\n"
         "it with its source line; with no N, prints the selected frame.  info locals, p and\n"
         "finish then work on that frame.",
    examples=(("The caller of the stopped function:", "frame 1"),),
)
def cmd_frame(ctx: CommandContext, args: list[str]) -> None:
    dbg = get_debugger(ctx.session)
    if len(args) > 1:
        raise UsageError()
    try:
        n = int(args[0]) if args else dbg.selected
    except ValueError:
        raise UsageError(f"bad frame number: {args[0]}") from None
    _select(ctx, n)


@command("up", usage="[N]", summary="select the caller's frame",
         help="Selects the frame N levels up (towards the outermost caller), default 1.",
         examples=(("One level up:", "up"),))
def cmd_up(ctx: CommandContext, args: list[str]) -> None:
    dbg = get_debugger(ctx.session)
    n = int(args[0]) if args and args[0].isdigit() else 1
    frames = _frames(ctx)
    if frames and dbg.selected == len(frames) - 1:
        raise CommandError("Initial frame selected; you cannot go up.")
    _select(ctx, min(dbg.selected + n, max(0, len(frames) - 1)))


@command("down", usage="[N]", summary="select the callee's frame",
         help="Selects the frame N levels down (towards frame 0), default 1.",
         examples=(("One level down:", "down"),))
def cmd_down(ctx: CommandContext, args: list[str]) -> None:
    dbg = get_debugger(ctx.session)
    n = int(args[0]) if args and args[0].isdigit() else 1
    if dbg.selected == 0 and _frames(ctx):
        raise CommandError("Bottom (innermost) frame selected; you cannot go down.")
    _select(ctx, max(dbg.selected - n, 0))


# ---------------------------------------------------------------------------------------
# info


@command(
    "info",
    aliases=("i",),
    usage="breakpoints | watchpoints | locals | args | frame | probes | SUBCOMMAND",
    summary="information about the debugger's state",
    help="gdb's info command.  \"info\" alone lists the subcommands.",
    examples=(("The breakpoint table:", "info breakpoints"),
              ("Locals of the selected frame:", "info locals")),
    options=("breakpoints", "watchpoints", "locals", "args", "frame"),
)
def cmd_info(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        for name in sorted(INFO_COMMANDS):
            ctx.print(f"info {name:<14} -- {INFO_COMMANDS[name][1]}")
        return
    sub = INFO_ALIASES.get(args[0], args[0])
    if sub not in INFO_COMMANDS:
        hits = [n for n in INFO_COMMANDS if n.startswith(args[0])]
        if len(hits) == 1:
            sub = hits[0]
        else:
            raise CommandError(f'Undefined info command: "{args[0]}".  Try "help info".')
    INFO_COMMANDS[sub][0](ctx, args[1:])


def _selected_frame(ctx: CommandContext) -> Any:
    frames = _frames(ctx)
    if not frames:
        raise CommandError("No frame selected.")
    return frames[get_debugger(ctx.session).selected]


@info_subcommand("locals", "local variables of the selected frame")
def info_locals(ctx: CommandContext, args: list[str]) -> None:
    fr = _selected_frame(ctx)
    loc = {k: v for k, v in fr.locals().items() if not is_machine(v)}
    if not loc:
        ctx.print("No locals." if fr.pyframe is not None else
                  "No locals.  (the function has been entered but has not started; "
                  "\"info args\" shows its arguments)")
        return
    for k, v in loc.items():
        ctx.print(f"{k} = {format_value(k, v)}")


@info_subcommand("args", "arguments of the selected frame")
def info_args(ctx: CommandContext, args: list[str]) -> None:
    fr = _selected_frame(ctx)
    shown = {k: v for k, v in fr.args.items() if not is_machine(v)}
    if not shown:
        ctx.print("No arguments.")
    for k, v in shown.items():
        ctx.print(f"{k} = {format_value(k, v)}")


@info_subcommand("frame", "the selected frame")
def info_frame(ctx: CommandContext, args: list[str]) -> None:
    dbg = get_debugger(ctx.session)
    fr = _selected_frame(ctx)
    frames = dbg.frames()
    n = dbg.selected
    ctx.print(f"Stack level {n}, frame in {fr.kf.name} ({fr.kf.file}:{fr.lineno});")
    if n + 1 < len(frames):
        ctx.print(f" called by frame at level {n + 1} ({frames[n + 1].kf.name})")
    if n > 0:
        ctx.print(f" caller of frame at level {n - 1} ({frames[n - 1].kf.name})")
    ctx.print(f" source file {fr.kf.module.replace('.', '/')}.py, function at line "
              f"{fr.kf.lineno}")
    names = [k for k in fr.args if not is_machine(fr.args[k])]
    ctx.print(f" Arglist: {', '.join(names) if names else '(none)'}")


@info_subcommand("program", "the simulation's state")
def info_program(ctx: CommandContext, args: list[str]) -> None:
    dbg = get_debugger(ctx.session)
    if dbg.state == STOPPED and dbg.stop is not None:
        st = dbg.stop
        why = {"breakpoint": f"at breakpoint {st.bp.number}" if st.bp else "at a breakpoint",
               "watchpoint": f"at watchpoint {st.bp.number}" if st.bp else "at a watchpoint",
               "signal": "by SIGINT (Ctrl-C)", "step": "after a step",
               "finish": "after finish"}.get(st.reason, st.reason)
        ctx.print(f"The simulation is stopped {why}, at {st.time_ns} ns.")
    elif dbg.running:
        ctx.print("The simulation is running.")
    else:
        ctx.print("The program being debugged is not being run.")


# -- printing values ---------------------------------------------------------------------

_PAGE_FIELDS = ("flags", "_refcount", "_mapcount", "mapping", "index", "private",
                "compound_head", "memcg_data")
_SKIP_FIELDS = {"machine", "m", "_m", "zone_pgdat"}
_HEX_FIELDS = ("flags", "addr", "gfp", "start", "end", "mask", "pgd", "brk", "base", "_code",
               "_data", "_stack", "vm_page_prot", "pgoff")
MAX_ELEMENTS = 16


def struct_fields(obj: Any) -> list[str]:
    cls = type(obj)
    explicit = getattr(cls, "kfields", None)
    if explicit:
        return list(explicit)
    if getattr(cls, "ktype", "") == "page":
        return list(_PAGE_FIELDS)
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for s in getattr(klass, "__slots__", ()):
            if isinstance(s, str) and s not in names:
                names.append(s)
    d = getattr(obj, "__dict__", None)
    if d:
        names += [k for k in d if k not in names]
    out = []
    for n in names:
        if n in _SKIP_FIELDS or n.startswith("__"):
            continue
        if n.startswith("_") and n not in ("_refcount", "_mapcount", "_watermark"):
            continue
        if not hasattr(obj, n):
            continue
        out.append(n)
    return out


def format_scalar(v: Any, name: str = "", hexa: bool = False) -> str:
    if v is None:
        return "0x0"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if hexa or (name and any(h in name for h in _HEX_FIELDS)) or v >= 1 << 47:
            return f"0x{v & 0xFFFFFFFFFFFFFFFF:x}"
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace('"', '\\"') + '"'
    if isinstance(v, PagePtr | TypedAddr):
        return f"0x{v.addr:x}"
    a = object_address(v)
    if a:
        return f"0x{a:x}"
    return f"<{type_name(v)}>"


def format_struct(v: Any, indent: int = 0, hexa: bool = False, depth: int = 0,
                  only: list[str] | None = None) -> list[str]:
    """gdb's pretty print of a kernel object, crash's struct layout."""
    pad = "  " * (indent + 1)
    fields = only if only is not None else struct_fields(v)
    lines = []
    for i, f in enumerate(fields):
        aliases = getattr(type(v), "kfield_aliases", None) or {}
        try:
            val = getattr(v, aliases.get(f, f))
        except AttributeError:
            raise CommandError(f"There is no member named {f}.") from None
        comma = "," if i < len(fields) - 1 else ""
        sub = format_member(f, val, indent + 1, hexa, depth)
        sub[0] = f"{pad}{f} = {sub[0]}"
        sub[-1] += comma
        lines += sub
    return ["{", *lines, "  " * indent + "}"]


def format_member(name: str, val: Any, indent: int, hexa: bool, depth: int) -> list[str]:
    if isinstance(val, list | tuple):
        items = list(val)
        if all(isinstance(x, int | bool | str) or x is None for x in items):
            shown = ", ".join(format_scalar(x, name, hexa) for x in items[:MAX_ELEMENTS * 4])
            more = "..." if len(items) > MAX_ELEMENTS * 4 else ""
            return ["{" + shown + more + "}"]
        if depth >= 1:
            return [f"{{<{len(items)} elements>}}"]
        out = ["{"]
        pad = "  " * (indent + 1)
        for j, x in enumerate(items[:MAX_ELEMENTS]):
            sub = format_member(name, x, indent + 1, hexa, depth + 1)
            sub[0] = pad + sub[0]
            if j < min(len(items), MAX_ELEMENTS) - 1 or len(items) > MAX_ELEMENTS:
                sub[-1] += ","
            out += sub
        if len(items) > MAX_ELEMENTS:
            out.append(f"{pad}...")
        out.append("  " * indent + "}")
        return out
    if isinstance(val, dict) or type(val).__name__ == "deque":
        n = len(val)
        return [f"{{<list: {n} entr{'y' if n == 1 else 'ies'}>}}"]
    kt = getattr(type(val), "ktype", None)
    if kt and not object_address(val) and depth < 1:
        return format_struct(val, indent, hexa, depth + 1)
    return [format_scalar(val, name, hexa)]


def format_value_lines(v: Any, hexa: bool = False) -> list[str]:
    if isinstance(v, PagePtr):
        return [f"(struct page *) 0x{v.addr:x}"]
    if isinstance(v, TypedAddr):
        return [f"(struct {v.type} *) 0x{v.addr:x}"]
    kt = getattr(type(v), "ktype", None)
    if kt:
        return format_struct(v, 0, hexa)
    if isinstance(v, list | tuple):
        return format_member("", v, 0, hexa, 0)
    return [format_scalar(v, "", hexa)]


@command(
    "p",
    aliases=("px", "pd", "eval"),
    usage="[/x|/d] EXPR",
    summary="print the value of an expression",
    help="""\
    Evaluates a C expression over the simulated kernel and prints it gdb's way, numbered
    in the value history: "$1 = 3".  Names are, in order: the arguments and locals of the
    selected frame (when stopped), the value history ($, $N), kernel globals (jiffies,
    totalram_pages, max_pfn, node_data, contig_page_data, current, init_task,
    vm_event_states, min_free_kbytes and the other vm sysctls), GFP flag names and NULL.

    Members are read by their kernel names with . or ->; pointers can be made with casts:
    *(struct page *)0xffffea0000040000, ((struct zone *)0xffff...)->free_area[3].nr_free.
    Helpers: pfn_to_page(pfn), page_to_pfn(page), virt_to_page(addr), page_address(page),
    page_zone(page), NODE_DATA(nid), find_task_by_vpid(pid).  /x prints in hex (px too).""",
    examples=(("The order being allocated, at a breakpoint in __alloc_pages:", "p order"),
              ("A struct page:", "p *pfn_to_page(4096)"),
              ("Free blocks of order 3 in node 0's Normal zone:",
               "p node_data[0]->node_zones[2].free_area[3].nr_free"),
              ("In hex:", "p/x jiffies")),
    raw=True,
)
def cmd_p(ctx: CommandContext, args: list[str]) -> None:
    text = ctx.argtext.strip()
    hexa = ctx.name == "px"
    m = re.match(r"^/([xdut])\s*", text)
    if m:
        hexa = m.group(1) == "x"
        text = text[m.end():]
    if not text:
        raise UsageError()
    v = evaluate(ctx.session, text)
    lines = format_value_lines(v, hexa)
    if isinstance(v, int) and not isinstance(v, bool):
        n = ctx.session.record_value("long", v)
    elif isinstance(v, PagePtr):
        n = ctx.session.record_value("struct page *", v.addr)
    else:
        n = ctx.session.record_value(type_name(v), int_value(v) if _addressable(v) else 0)
    lines[0] = f"${n} = {lines[0]}"
    ctx.print(*lines)


def _addressable(v: Any) -> bool:
    try:
        int_value(v)
        return True
    except CommandError:
        return False


@command(
    "struct",
    aliases=("union", "ptype", "whatis"),
    usage="TYPE[.MEMBER[,MEMBER]] [ADDRESS | PFN] [COUNT]",
    summary="print a kernel structure",
    help="""\
    Prints the kernel object of type TYPE at ADDRESS with gdb's "member = value" layout,
    or only the MEMBERs given after a dot.  Types: page (ADDRESS a 0xffffea... struct page
    address, or a pfn), zone, pglist_data, free_area (addresses as kmem -z and kmem -f
    print them), task_struct, mm_struct, vm_area_struct (their addr), and any object the
    simulation can find by address.  COUNT prints that many consecutive struct pages.
    With no ADDRESS, prints the members of the type and their current types.""",
    examples=(("A struct page by address:", "struct page 0xffffea0000040000"),
              ("Two fields of four pages:", "struct page._refcount,flags 4096 4"),
              ("The members of struct zone:", "struct zone")),
)
def cmd_struct(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError()
    spec = args[0].removeprefix("struct").strip() or (args[1] if len(args) > 1 else "")
    if args[0] == "struct":
        args = args[1:]
    name, _, members = spec.partition(".")
    only = [x for x in members.split(",") if x] or None
    m = ctx.machine
    if len(args) < 2:
        sample = _sample(m, name)
        if sample is None:
            raise CommandError(f"struct: invalid data structure reference: {name}")
        ctx.print(f"struct {name} {{")
        for f in only or struct_fields(sample):
            aliases = getattr(type(sample), "kfield_aliases", None) or {}
            v = getattr(sample, aliases.get(f, f), None)
            ctx.print(f"    {_ctype(f, v)};")
        ctx.print("}")
        return
    try:
        addr = parse_value(ctx.session, args[1])
        count = int(args[2], 0) if len(args) > 2 else 1
    except ValueError:
        raise UsageError(f"bad address or count: {' '.join(args[1:])}") from None
    if name == "page" and addr < VMEMMAP_START:
        addr = VMEMMAP_START + addr * STRUCT_PAGE_SIZE
    for i in range(count):
        a = addr + i * (STRUCT_PAGE_SIZE if name == "page" else 0)
        obj = resolve_object(m, name, a)
        if obj is None:
            raise CommandError(f"struct: invalid kernel virtual address: {a:x}  type: "
                               f"\"struct {name}\"" if _sample(m, name) is not None else
                               f"struct: invalid data structure reference: {name}")
        lines = format_struct(obj, 0, False, 0, only)
        lines[0] = f"struct {name} {lines[0]}"
        ctx.print(*lines)


def _ctype(f: str, v: Any) -> str:
    if isinstance(v, bool):
        return f"bool {f}"
    if isinstance(v, int):
        return f"unsigned long {f}" if "flags" in f or "addr" in f else f"long {f}"
    if isinstance(v, str):
        return f"char {f}[]"
    if isinstance(v, list | tuple):
        inner = type_name(v[0]) if v else "long"
        return f"{inner} {f}[{len(v)}]"
    kt = getattr(type(v), "ktype", None)
    if kt:
        return f"struct {kt} *{f}" if object_address(v) else f"struct {kt} {f}"
    return f"void *{f}"


def _sample(m: Any, name: str) -> Any:
    if name == "page":
        return m.page(0)
    if name == "zone":
        return m.zones[0]
    if name in ("pglist_data", "pg_data_t"):
        return m.node_data[0]
    if name == "free_area":
        return m.zones[0].free_area[0]
    if name == "task_struct":
        return m.idle_tasks[0]
    if name == "per_cpu_pages":
        return m.zones[0].per_cpu_pageset[0]
    for t in all_tasks(m):
        mm = getattr(t, "mm", None)
        if mm is not None:
            if name == "mm_struct":
                return mm
            if name == "vm_area_struct":
                v = mm_vmas(mm)
                if v:
                    return v[0]
    return None


# ---------------------------------------------------------------------------------------
# kmem ADDR: what an address is


def identify(m: Any, addr: int) -> list[str]:
    """drgn's identify_address(), crash's "kmem ADDR": one line per thing found."""
    out: list[str] = []
    max_pfn = m.mem_map.max_pfn
    if VMEMMAP_START <= addr < VMEMMAP_START + max_pfn * STRUCT_PAGE_SIZE:
        pfn, off = divmod(addr - VMEMMAP_START, STRUCT_PAGE_SIZE)
        out.append(f"struct page: pfn {pfn} (0x{pfn:x}){f' +0x{off:x}' if off else ''}")
        out += _page_state(m, pfn)
        return out
    if PAGE_OFFSET <= addr < PAGE_OFFSET + (max_pfn << PAGE_SHIFT):
        pfn, off = divmod(addr - PAGE_OFFSET, 1 << PAGE_SHIFT)
        for z in m.zones:
            for o in range(len(z.free_area)):
                if kaddr.free_area_addr(z, o) <= addr < kaddr.free_area_addr(z, o) + 0x68:
                    out.append(f"free_area[{o}] of zone {z.name} (node {z.node})")
                    return out
            if kaddr.zone_addr(z) <= addr < kaddr.zone_addr(z) + kaddr.SIZEOF_ZONE:
                out.append(f"struct zone {z.name} (node {z.node}) +0x{addr - kaddr.zone_addr(z):x}")
                return out
        for t in all_tasks(m):
            if task_addr(t) == addr:
                out.append(f"task: {t.pid} ({t.comm})")
            mm = getattr(t, "mm", None)
            if mm is not None and getattr(mm, "addr", None) == addr:
                out.append(f"mm_struct of task {t.pid} ({t.comm})")
        slab = _slab_object(m, addr)
        if slab:
            out.append(slab)
        out.append(f"direct map: physical 0x{addr - PAGE_OFFSET:x}, pfn {pfn} (0x{pfn:x}) "
                   f"+0x{off:x}")
        out += _page_state(m, pfn)
        return out
    from mmdbg.sim.mm.slab_info import identify_vmalloc

    vm_lines = identify_vmalloc(m, addr) if addr >= 0xFFFFC90000000000 else []
    if vm_lines:  # a vmalloc area, a module's memory, a task's stack (issue 6)
        return out + vm_lines
    if addr >= 0xFFFFFFFF80000000:
        from mmdbg.shell.debugger import kfunc_address

        best = None
        for kf in set(trace.KFUNCS.values()):
            a = kfunc_address(kf)
            if a <= addr < a + 16 and (best is None or a > kfunc_address(best)):
                best = kf
        if best is not None:
            out.append(f"function symbol: {best.name}+0x{addr - kfunc_address(best):x} "
                       f"({best.file}:{best.lineno})")
        else:
            out.append("kernel text/data")
        for t in all_tasks(m):
            if task_addr(t) == addr:
                out.append(f"task: {t.pid} ({t.comm})")
        return out
    if 0xFFFFC90000000000 <= addr < 0xFFFFE90000000000:
        out.append("vmalloc area")
        return out
    if addr < 0x00007FFFFFFFFFFF:
        out.append("user virtual address (see vtop)")
        return out
    out.append("not a simulated kernel address")
    return out


def _slab_object(m: Any, addr: int) -> str:
    f = getattr(m, "identify_slab", None) or getattr(m, "slab_object_info", None)
    if callable(f):
        try:
            r = f(addr)
        except Exception:
            return ""
        return str(r) if r else ""
    return ""


def _page_state(m: Any, pfn: int) -> list[str]:
    if not m.pfn_valid(pfn):
        return ["  (beyond the mem_map)"]
    # a free buddy block holding the page
    for order in range(0, 11):
        head = pfn & ~((1 << order) - 1)
        if not m.pfn_valid(head):
            break
        p = m.page(head)
        if p.PageBuddy and p.order == order:
            z = m.pfn_zone(head)
            zn = z.name if z is not None else "?"
            return [f"  free buddy block: order {order} at pfn {head} in zone {zn}, "
                    f"page {pfn - head} of {1 << order}"]
    p = m.page(pfn)
    kinds = []
    if getattr(p, "PageSlab", False):
        kinds.append("slab page")
    if getattr(p, "PageReserved", False):
        kinds.append("reserved")
    if p._refcount:
        kinds.append(f"in use, refcount {p._refcount}")
    elif not kinds:
        kinds.append("refcount 0 (on a per-cpu list, or unused)")
    if p._mapcount >= 0 and p._mapcount < 1 << 30:
        kinds.append(f"mapped {p._mapcount + 1} time{'s' if p._mapcount else ''}")
    return ["  page: " + ", ".join(kinds)]


# ---------------------------------------------------------------------------------------
# foreach, search, wr, sysctl, alias, source


@command(
    "foreach",
    usage="[PID | COMM | user | kernel | active ...] COMMAND [ARGS]",
    summary="run a command for many tasks",
    help="""\
    Runs COMMAND once for each selected task, with that task as the context ("set PID")
    and crash's context header before each run.  Selectors: pids, command names, "user"
    (user tasks), "kernel" (kernel threads), "active" (each CPU's current task); none
    selects every task.  COMMAND is any shell command that uses the context: bt, vm,
    pmap, ps, set.""",
    examples=(("The stack of the CPUs' current tasks:", "foreach active bt"),
              ("The memory map of every user task:", "foreach user pmap")),
)
def cmd_foreach(ctx: CommandContext, args: list[str]) -> None:
    m = ctx.machine
    sess = ctx.session
    reg = sess.registry
    i = 0
    while i < len(args) and reg.lookup(args[i]) is None:
        i += 1
    if i == len(args):
        raise UsageError("no command given")
    sel, cmdline = args[:i], " ".join(args[i:])
    tasks = all_tasks(m)
    if sel:
        chosen = []
        for t in tasks:
            for s in sel:
                if (s.isdigit() and t.pid == int(s)) or t.comm == s or \
                        (s == "user" and not t.is_kthread()) or \
                        (s == "kernel" and t.is_kthread()) or \
                        (s == "active" and t in getattr(m, "cpu_curr", [])):
                    chosen.append(t)
                    break
        tasks = chosen
    saved = getattr(sess, "context_pid", None)
    try:
        for n, t in enumerate(tasks):
            if n:
                ctx.print("")
            if args[i] != "bt":
                ctx.print(task_header(t))
            sess.context_pid = t.pid
            ctx.out.flush()
            sess.execute(cmdline if args[i] != "bt" else f"bt {t.pid}")
    finally:
        sess.context_pid = saved


@command(
    "search",
    usage="[-p] [-s START] [-e END | -l LENGTH] [-c] [-w|-h|-b] VALUE ...",
    summary="search simulated memory for a value",
    help="""\
    Searches the simulated machine's memory for 64-bit VALUEs (-w 32-bit, -h 16-bit, -b
    8-bit) or, with -c, for strings, and prints each hit as crash does: "ADDRESS: VALUE".
    Addresses are kernel virtual (direct map) unless -p asks for physical ones.  -s/-e/-l
    limit the range.  Only memory that has been written is searched (pages never written
    read as zeros, so a search for 0 finds nothing).""",
    examples=(("A pattern written with wr:", "search deadbeef"),
              ("A string:", "search -c hello")),
    options=("-p", "-s", "-e", "-l", "-c", "-w", "-h", "-b"),
)
def cmd_search(ctx: CommandContext, args: list[str]) -> None:
    try:
        opts, rest = getopt.gnu_getopt(args, "ps:e:l:cwhbk")
    except getopt.GetoptError as e:
        raise UsageError(e.msg) from None
    o = dict(opts)
    if not rest:
        raise UsageError("no value given")
    m = ctx.machine
    phys = "-p" in o
    base = 0 if phys else PAGE_OFFSET
    size = 2 if "-h" in o else 4 if "-w" in o else 1 if "-b" in o else 8
    try:
        start = parse_number(o["-s"]) if "-s" in o else base
        end = parse_number(o["-e"]) if "-e" in o else (
            start + parse_number(o["-l"]) if "-l" in o else base + (m.mem_map.max_pfn << 12))
    except ValueError:
        raise UsageError("bad -s/-e/-l value") from None
    start -= base
    end -= base
    needles: list[tuple[bytes, str]] = []
    for v in rest:
        if "-c" in o:
            needles.append((v.encode(), v))
        else:
            try:
                n = parse_number(v)
            except ValueError:
                raise UsageError(f"bad value: {v}") from None
            needles.append(((n & ((1 << (8 * size)) - 1)).to_bytes(size, "little"),
                            f"{n & ((1 << (8 * size)) - 1):x}"))
    pages = m.physmem.pages
    for pfn in sorted(pages):
        pa = pfn << PAGE_SHIFT
        if pa + 4096 <= start or pa >= end:
            continue
        data = bytes(pages[pfn])
        for needle, shown in needles:
            i = data.find(needle)
            while i >= 0:
                a = pa + i
                if start <= a < end and ("-c" in o or i % size == 0):
                    ctx.print(f"{a + base:x}: {shown}")
                i = data.find(needle, i + 1)


@command(
    "wr",
    usage="[-p] [-8|-16|-32|-64] ADDRESS VALUE",
    summary="write a value to simulated memory",
    help="""\
    Writes VALUE (64 bits by default) at ADDRESS, a kernel virtual address in the direct
    map (0xffff888...) or, with -p, a physical address, as crash's wr does: silently.
    Only memory contents change; the kernel's structures (struct page, free lists, page
    tables) are not memory in the simulation and cannot be corrupted this way.""",
    examples=(("A pattern at the start of pfn 4096:", "wr 0xffff888001000000 0xdeadbeef"),),
    options=("-p", "-8", "-16", "-32", "-64"),
)
def cmd_wr(ctx: CommandContext, args: list[str]) -> None:
    size = 8
    phys = False
    rest = []
    for a in args:
        if a in ("-8", "-16", "-32", "-64"):
            size = int(a[1:]) // 8
        elif a == "-p":
            phys = True
        else:
            rest.append(a)
    if len(rest) != 2:
        raise UsageError()
    m = ctx.machine
    try:
        addr = parse_value(ctx.session, rest[0])
        val = parse_value(ctx.session, rest[1])
    except ValueError:
        raise UsageError("bad address or value") from None
    paddr = addr if phys else addr - PAGE_OFFSET
    if not 0 <= paddr < m.mem_map.max_pfn << PAGE_SHIFT or (not phys and addr < PAGE_OFFSET):
        raise CommandError(f"wr: invalid kernel virtual address: {addr:x}" if not phys
                           else f"wr: invalid physical address: {addr:x}")
    m.activate()
    m.physmem.write(paddr, (val & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))


@command(
    "sysctl",
    usage="[-a] [-w] NAME[=VALUE] ...",
    summary="read or write kernel parameters (/proc/sys)",
    help="""\
    sysctl(8) on the simulated machine: "sysctl vm.min_free_kbytes" prints "NAME = VALUE";
    "sysctl -w vm.swappiness=10" (or just NAME=VALUE) writes through /proc/sys, with the
    kernel's checks; -a prints every parameter.""",
    examples=(("One value:", "sysctl vm.min_free_kbytes"),
              ("Write one:", "sysctl -w vm.swappiness=10"),
              ("All vm parameters:", "sysctl -a | grep ^vm")),
    options=("-a", "-w", "-n"),
)
def cmd_sysctl(ctx: CommandContext, args: list[str]) -> None:
    m = ctx.machine
    names = [a for a in args if not a.startswith("-")]
    flags = {a for a in args if a.startswith("-")}
    if "-a" in flags or not names:
        if "-a" not in flags:
            raise UsageError()
        paths = sorted(p for p in m.vfs.all_paths() if p.startswith("/proc/sys/"))
        for p in paths:
            try:
                val = m.read(p).strip()
            except OSError:
                continue
            ctx.print(f"{p[len('/proc/sys/'):].replace('/', '.')} = {val}")
        return
    for a in names:
        name, eq, val = a.partition("=")
        path = "/proc/sys/" + name.replace(".", "/")
        if eq:
            try:
                m.write(path, val.strip() + "\n")
            except FileNotFoundError:
                raise CommandError(f"sysctl: cannot stat {path}: No such file or directory") \
                    from None
            except OSError as e:
                raise CommandError(f'sysctl: setting key "{name}": '
                                   f'{os.strerror(e.errno or 22)}') from None
        try:
            text = m.read(path).strip()
        except FileNotFoundError:
            raise CommandError(f"sysctl: cannot stat {path}: No such file or directory") \
                from None
        except OSError as e:
            raise CommandError(f"sysctl: {path}: {os.strerror(e.errno or 5)}") from None
        ctx.print(text if "-n" in flags else f"{name} = {text}")


@command(
    "alias",
    usage="[NAME [COMMAND ...]]",
    summary="define or list command aliases",
    help="""\
    With no argument, lists the aliases: the built-in ones (other names of commands) and
    those defined in this session.  "alias NAME COMMAND ..." makes NAME run COMMAND with
    its arguments, followed by whatever is typed after NAME.  "alias NAME" shows one.""",
    examples=(("A short name:", "alias kf kmem -f"), ("List them:", "alias")),
)
def cmd_alias(ctx: CommandContext, args: list[str]) -> None:
    sess = ctx.session
    if not args:
        ctx.print("ORIGIN   ALIAS    COMMAND")
        for c in sorted(sess.registry.commands.values(), key=lambda c: c.name):
            for a in c.aliases:
                ctx.print(f"builtin  {a:<8} {c.name}")
        for name, body in sorted(sess.aliases.items()):
            ctx.print(f"runtime  {name:<8} {body}")
        return
    name = args[0]
    if len(args) == 1:
        if name in sess.aliases:
            ctx.print(f"runtime  {name:<8} {sess.aliases[name]}")
            return
        cmd = sess.registry.lookup(name)
        if cmd is not None and name != cmd.name:
            ctx.print(f"builtin  {name:<8} {cmd.name}")
            return
        raise CommandError(f"alias: {name}: not found")
    if sess.registry.lookup(name) is not None:
        raise CommandError(f"alias: cannot redefine the command \"{name}\"")
    body = ctx.argtext.strip()[len(name):].strip()
    sess.aliases[name] = body
    ctx.print(f"runtime  {name:<8} {body}")


@command(
    "source",
    aliases=("<",),
    usage="FILE",
    summary="run the commands in a file",
    help="""\
    Runs the shell commands in FILE (a file on the host), one per line, as if typed;
    comments and blank lines are skipped.  Breakpoint stops and errors are reported
    and the next line still runs.""",
    examples=(("A saved session:", "source docs/examples/first-session.cmd"),),
)
def cmd_source(ctx: CommandContext, args: list[str]) -> None:
    if len(args) != 1:
        raise UsageError()
    path = os.path.expanduser(args[0])
    if ctx.session.is_virtual_path(path):
        raise CommandError(f"source: {path}: commands are read from host files only")
    depth = getattr(ctx.session, "_source_depth", 0)
    if depth > 8:
        raise CommandError("source: nested too deeply")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CommandError(f"source: {args[0]}: {e.strerror}") from None
    ctx.session._source_depth = depth + 1
    try:
        for line in lines:
            ctx.session.execute(line)
            if ctx.session.quit_requested:
                break
    finally:
        ctx.session._source_depth = depth
