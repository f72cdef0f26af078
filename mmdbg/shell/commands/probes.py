"""Live probe programs in the shell: type a bpftrace program, it attaches.

A line (or a ``{ ... }`` block entered over several lines) that starts like a probe program
-- ``kprobe:__alloc_pages { @[comm] = count(); }``, ``tracepoint:kmem:mm_page_alloc /args.order
> 2/ { printf(...) }``, ``BEGIN { ... }`` -- is compiled by the probe compiler and attached
to the machine; it stays attached while the simulation runs, its output appearing as events
happen (above the prompt in the REPL).  ``probes`` lists them with ids and hit counts,
``detach ID|all`` removes them (running END and printing their maps, as bpftrace does on
exit), ``print @map`` and ``clear @map`` work on their maps at any time.

In the shell, ``stop()`` parks the simulation like a breakpoint (the probe language's stop
hook), so a probe can be a breakpoint with any condition the language can express.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from mmdbg.shell.debugger import Stop, get_debugger, info_subcommand
from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.registry import REGISTRY, CommandContext, command

_PROBE_START = re.compile(
    r"""^\s*(?:BEGIN|END|begin|end|config\s*=|macro\s|let\s|
    (?:kprobe|kretprobe|fentry|fexit|tracepoint|rawtracepoint|interval|profile|software|
       watchpoint|hardware|uprobe|uretprobe|usdt|k|kr|f|fr|t|i|s|w|h)
    :[^\s{]*)""", re.X)


def is_probe_program(line: str) -> bool:
    """Does this line start a probe program (rather than a shell command)?"""
    return bool(_PROBE_START.match(line)) and "{" in line


@dataclass
class LiveProbe:
    id: int
    source: str
    sess: Any
    hits: list[int] = field(default_factory=lambda: [0])
    state: str = "attached"  # attached | exited | detached
    nprobes: int = 0


def _table(session: Any) -> dict[int, LiveProbe]:
    t = getattr(session, "live_probes", None)
    if t is None:
        t = session.live_probes = {}
        session.next_probe_id = 1
    return t


def attach_program(ctx: CommandContext, source: str) -> LiveProbe:
    from mmdbg.probe import ProbeCompileError, compile_program, make_output
    from mmdbg.probe.errors import ProbeRuntimeError
    from mmdbg.probe.session import ProbeSession

    sess = ctx.session
    try:
        prog = compile_program(source, "stdin", unsafe=True)
    except ProbeCompileError as e:
        raise CommandError(e.render().rstrip("\n")) from None
    for w in prog.checked.warnings:
        sess.error(w.render(source, "stdin").rstrip("\n"))
    m = ctx.machine
    m.activate()
    out = _Out(sess)
    ps = ProbeSession(prog, m, make_output("text", out, _Err(sess)), _Err(sess))
    table = _table(sess)
    lp = LiveProbe(sess.next_probe_id, " ".join(source.split()), ps)
    counter = lp.hits

    def counting(factory: Any) -> Any:
        def make(*a: Any) -> Any:
            h = factory(*a)

            def handler(ev: Any) -> None:
                counter[0] += 1
                h(ev)

            return handler

        return make

    ps.factories = {k: counting(f) for k, f in ps.factories.items()}
    dbg = get_debugger(sess)

    def on_stop(ev: Any, text: str) -> None:
        if dbg.on_sim_thread():
            from mmdbg.sim import trace

            entry = None
            probe = getattr(ev, "probe", None)
            if isinstance(probe, trace.KernelFunction) and getattr(ev, "retval", None) is None:
                try:
                    entry = (probe, ev.args.as_dict())
                except Exception:
                    entry = None
            dbg._park(Stop("probe", ev=ev, message=[text]), sys._getframe(1), entry=entry)
        else:
            sess.error(text)

    ps.rt.on_stop = on_stop

    def on_exit() -> None:
        ps.detach()
        lp.state = "exited"
        ps.finish()

    ps.rt.on_exit = on_exit
    try:
        lp.nprobes = ps.attach()
    except ProbeRuntimeError as e:
        raise CommandError(e.diagnostic().render(source, "stdin").rstrip("\n")) from None
    sess.next_probe_id += 1
    table[lp.id] = lp
    ps.output.attached_probes(lp.nprobes)
    ps.run_begin()
    if ps.only_special and lp.state == "attached":
        lp.state = "exited"
        ps.finish()
    out.flush()
    return lp


class _Out:
    """The probe output stream: the session's stdout at the time of the write."""

    def __init__(self, session: Any) -> None:
        self.session = session

    def write(self, s: str) -> int:
        self.session.out.write(s)
        return len(s)

    def flush(self) -> None:
        self.session.out.flush()


class _Err(_Out):
    def write(self, s: str) -> int:
        self.session.err.write(s)
        return len(s)


def _program_command(ctx: CommandContext, args: list[str]) -> None:
    src = ctx.argtext if ctx.argtext else " ".join(args)
    attach_program(ctx, src)


_PROGRAM_CMD = REGISTRY.lookup("probe-program")
if _PROGRAM_CMD is None:
    command("probe-program", usage="PROGRAM", summary="attach a probe program",
            help="Any line starting like a probe program (kprobe:..., tracepoint:..., BEGIN"
                 " ...) is attached as one; see \"help probes\".",
            examples=(("Count allocations by order:",
                       "tracepoint:kmem:mm_page_alloc { @[args.order] = count(); }"),),
            raw=True, hidden=True)(_program_command)
    REGISTRY.add_fallback(is_probe_program, REGISTRY.commands["probe-program"])


@command(
    "probes",
    usage="[-l [PATTERN] | -lv [PATTERN]]",
    summary="list the attached probe programs",
    help="""\
    Probe programs in bpftrace's language are typed directly at the prompt; a "{" block
    may span several lines and is attached when its braces balance:

        mmdbg> tracepoint:kmem:mm_page_alloc /args.order >= 3/ {
        ....>     @big[comm] = count();
        ....> }

    Their output appears while the simulation runs.  stop() parks the simulation like a
    breakpoint.  "probes" lists them: ID, state, hits (handler runs) and the program;
    "detach ID|all" removes them, "print @map" and "clear @map" work on their maps.
    -l [PATTERN] lists the probes the simulation offers (as bpftrace -l), -lv with their
    arguments.""",
    examples=(("Count page allocations by order:",
               "tracepoint:kmem:mm_page_alloc { @[args.order] = count(); }"),
              ("The attached programs:", "probes"),
              ("Kernel functions of the allocator:", "probes -l 'kprobe:*alloc_pages*'")),
    options=("-l", "-lv"),
)
def cmd_probes(ctx: CommandContext, args: list[str]) -> None:
    if args and args[0] in ("-l", "-lv"):
        from mmdbg.probe.probes import list_probes

        pattern = args[1] if len(args) > 1 else None
        for line in list_probes(pattern, args[0] == "-lv"):
            ctx.print(line)
        return
    if args:
        raise UsageError()
    table = _table(ctx.session)
    if not table:
        ctx.print("No probe programs attached.")
        return
    ctx.print(f"{'ID':>3}  {'STATE':<9} {'HITS':>8}  PROGRAM")
    for lp in table.values():
        src = lp.source if len(lp.source) <= 70 else lp.source[:67] + "..."
        ctx.print(f"{lp.id:>3}  {lp.state:<9} {lp.hits[0]:>8}  {src}")


@info_subcommand("probes", "attached probe programs")
def info_probes(ctx: CommandContext, args: list[str]) -> None:
    cmd_probes(ctx, args)


@command(
    "detach",
    usage="ID ... | all",
    summary="detach probe programs",
    help="Detaches the probe programs with these ids (see \"probes\"), or all of them: END\n"
         "probes run and the maps are printed, as when bpftrace exits.",
    examples=(("Detach program 1:", "detach 1"), ("All of them:", "detach all")),
)
def cmd_detach(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError()
    table = _table(ctx.session)
    if args == ["all"]:
        ids = list(table)
    else:
        try:
            ids = [int(a) for a in args]
        except ValueError:
            raise UsageError(f"bad id: {' '.join(args)}") from None
    for i in ids:
        lp = table.get(i)
        if lp is None:
            raise CommandError(f"detach: no probe program {i}")
        if lp.state == "attached":
            lp.sess.finish()
        lp.state = "detached"
        del table[i]


def _find_map(ctx: CommandContext, name: str) -> tuple[LiveProbe, int]:
    table = _table(ctx.session)
    for lp in reversed(list(table.values())):
        for info in lp.sess.rt.infos:
            if info.name == name:
                return lp, info.index
    raise CommandError(f"Unknown map: {name}")


@command(
    "print",
    raw=True,
    usage="@MAP",
    summary="print a probe map (or an expression, as p)",
    help="\"print @map\" prints a map of an attached (or exited, not yet detached) probe\n"
         "program in bpftrace's format.  Anything else is printed as \"p\" does.",
    examples=(("A map:", "print @allocs"),),
)
def cmd_print(ctx: CommandContext, args: list[str]) -> None:
    text = ctx.argtext.strip()
    if text.startswith("@"):
        lp, idx = _find_map(ctx, text.split()[0])
        lp.sess.rt.print_map(idx)
        ctx.session.out.flush()
        return
    from mmdbg.shell.commands.inspect import cmd_p

    cmd_p(ctx, args)


@command(
    "clear",
    usage="@MAP",
    summary="empty a probe map",
    help="Removes every entry of a probe program's map, as bpftrace's clear() does.",
    examples=(("Start counting again:", "clear @allocs"),),
)
def cmd_clear(ctx: CommandContext, args: list[str]) -> None:
    if len(args) != 1 or not args[0].startswith("@"):
        raise UsageError()
    lp, idx = _find_map(ctx, args[0])
    lp.sess.rt.maps[idx].clear()
