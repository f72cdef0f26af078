"""gdb's execution control: run, continue, step, next, finish, until, advance, interrupt,
and scenarios (``scenario list|load|restart``).

The simulation runs on the debugger's sim thread (``shell/debugger.py``).  In the
foreground (the default) these commands return at the next stop -- a breakpoint, a
watchpoint, the end of a step, Ctrl-C -- or when the run ends; with a trailing ``&`` (gdb's
background execution) they return at once, the simulation runs while you type, and the stop
is reported above the prompt.

Stepping has no source lines to go by: ``step`` goes to the next kernel-function entry,
``next`` to the next entry that is not inside the current function (its callees run
through), ``finish`` to the return of the selected frame.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from mmdbg.shell.commands.breakpoints import ignore_message, resolve_location
from mmdbg.shell.debugger import (
    IDLE,
    RUNNING,
    STOPPED,
    Breakpoint,
    Stop,
    frame_line,
    get_debugger,
)
from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.registry import CommandContext, command

SLICE_NS = 10_000_000  # the simulation runs in 10 ms slices; Ctrl-C is seen between them
DEFAULT_RUN_NS = 10_000_000_000  # "run" with no duration: up to 10 s of simulated time

_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "sec": 1_000_000_000,
          "m": 60_000_000_000, "min": 60_000_000_000}


def parse_duration(text: str) -> int:
    """``10ms``, ``1.5s``, ``500us``, ``100ns`` -> nanoseconds (ValueError otherwise)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(ns|us|ms|s|sec|m|min)", text.strip())
    if not m:
        raise ValueError(text)
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_ns(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d} s"


def _background(args: list[str]) -> tuple[list[str], bool]:
    if args and args[-1] == "&":
        return args[:-1], True
    if args and args[-1].endswith("&"):
        return [*args[:-1], args[-1][:-1]], True
    return args, False


def _need_stopped(dbg: Any) -> None:
    if dbg.state == RUNNING:
        raise CommandError("The simulation is running.  Stop it first (interrupt or Ctrl-C).")
    if dbg.state != STOPPED:
        raise CommandError("The program is not being run.")


# ---------------------------------------------------------------------------------------
# running the machine


def machine_runner(dbg: Any) -> Any:
    """The function that advances the simulation: ``machine.run(duration_ns)``."""
    if dbg.sim_runner is not None:
        return dbg.sim_runner
    run = getattr(dbg.machine, "run", None)
    if callable(run):
        return run
    return None


def sim_run(dbg: Any, duration: int | None, out: Any) -> None:
    """The sim thread's job for run/continue: slices, with Ctrl-C seen between them."""
    m = dbg.machine
    runner = machine_runner(dbg)
    if runner is None:
        raise CommandError("The simulated machine cannot run by itself yet (it has no "
                           "scheduler: machine.run).  Kernel work can still be started "
                           "from the shell, e.g. \"call __alloc_pages(GFP_KERNEL, 3)\".")
    start = m.clock.ns
    limit = duration if duration is not None else DEFAULT_RUN_NS
    stuck = 0
    while True:
        elapsed = m.clock.ns - start
        if elapsed >= limit:
            break
        t0 = m.clock.ns
        r = runner(min(SLICE_NS, limit - elapsed))
        if dbg._interrupt:
            dbg._park(Stop("signal"), sys._getframe())
            continue
        if r in ("idle", False):
            break  # every user task has exited, nothing can happen any more
        stuck = stuck + 1 if m.clock.ns == t0 else 0
        if stuck >= 3:
            break
    out.write(f"[simulation ran {format_ns(m.clock.ns - start)}; "
              f"clock at {format_ns(m.clock.ns)}]\n")
    out.flush()


def start_run(ctx: CommandContext, duration: int | None, background: bool) -> None:
    dbg = get_debugger(ctx.session)
    if machine_runner(dbg) is None:
        sim_run(dbg, duration, ctx.session.out)  # raises the explanation
    out = ctx.session.out
    dbg.start(lambda: sim_run(dbg, duration, out), "run")
    dbg.wait_or_monitor(background)


@command(
    "run",
    aliases=("r",),
    usage="[DURATION] [&]",
    summary="run the simulation",
    help="""\
    Runs the simulated machine for DURATION of simulated time (10ms, 1.5s, 200us; default:
    until it has nothing left to run, at most 10 s), or until a breakpoint, a watchpoint
    or Ctrl-C stops it.  With "&", runs in the background: the prompt comes back at once
    and the stop is reported when it happens ("interrupt" stops it).

    When a scenario is loaded and the simulation is stopped, "run" restarts the scenario
    from the beginning with the same seed: the same stops happen again.""",
    examples=(("One simulated second:", "run 1s"),
              ("In the background:", "run 5s &")),
)
def cmd_run(ctx: CommandContext, args: list[str]) -> None:
    args, bg = _background(args)
    dbg = get_debugger(ctx.session)
    duration = None
    if args:
        try:
            duration = parse_duration(args[0])
        except ValueError:
            raise UsageError(f"bad duration: {args[0]} (examples: 10ms, 1s)") from None
    if dbg.state == RUNNING:
        raise CommandError("The simulation is already running.")
    if dbg.state == STOPPED:
        if dbg.scenario is None:
            raise CommandError("The simulation is already started (stopped): use \"continue\""
                               ", or load a scenario to restart from the beginning.")
        restart_scenario(ctx)
    start_run(ctx, duration, bg)


@command(
    "continue",
    aliases=("c", "cont", "fg"),
    usage="[N | DURATION] [&]",
    summary="continue the stopped simulation",
    help="""\
    Resumes the simulation where it stopped.  With a number N, the breakpoint that stopped
    it is ignored N-1 more times (gdb's "continue N").  With a duration (10ms, 1s), or when
    nothing is stopped, runs the simulation like "run".  "&" resumes in the background.""",
    examples=(("Go on to the next stop:", "continue"),
              ("Skip the next four hits of this breakpoint:", "continue 5")),
)
def cmd_continue(ctx: CommandContext, args: list[str]) -> None:
    args, bg = _background(args)
    dbg = get_debugger(ctx.session)
    if len(args) > 1:
        raise UsageError()
    duration = None
    count = None
    if args:
        if re.fullmatch(r"\d+", args[0]):
            count = int(args[0])
        else:
            try:
                duration = parse_duration(args[0])
            except ValueError:
                raise UsageError(f"bad argument: {args[0]}") from None
    if dbg.in_commands:
        dbg.pending_resume = ("continue", None)
        return
    if dbg.state == RUNNING:
        raise CommandError("The simulation is running.")
    if dbg.state == IDLE:
        start_run(ctx, duration, bg)
        return
    bp = dbg.stop.bp if dbg.stop is not None else None
    if count is not None and count > 1 and bp is not None and bp.number > 0:
        bp.ignore_count = count - 1
        ctx.print(f"{ignore_message(bp.number, count - 1)}  Continuing.")
    else:
        ctx.print("Continuing.")
    ctx.out.flush()
    dbg.go("continue", background=bg)


def _stepper(ctx: CommandContext, args: list[str], mode: str) -> None:
    dbg = get_debugger(ctx.session)
    args, bg = _background(args)
    n = 1
    if args:
        try:
            n = int(args[0])
        except ValueError:
            raise UsageError(f"bad count: {args[0]}") from None
    if dbg.in_commands:
        dbg.pending_resume = (mode, None)
        return
    _need_stopped(dbg)
    for i in range(n):
        dbg.resume(mode)
        if bg and i == n - 1:
            dbg.wait_or_monitor(True)
            return
        res = dbg.wait()
        if not isinstance(res, Stop):
            dbg._report_job_end(res)
            return
        last = i == n - 1
        if last or res.reason != "step":
            dbg.report_stop(res, ctx.session.out)
            if dbg._run_commands(res):
                dbg.run_foreground(ctx.session.out)
            return


@command(
    "step",
    aliases=("s",),
    usage="[N]",
    summary="run to the next kernel function entry",
    help="""\
    Lets the stopped simulation go on until it enters the next kernel function (N times),
    wherever that is: a callee of the current function, or the next function its caller
    calls.  The stop prints the function, its arguments and its first line.""",
    examples=(("Into the next function:", "step"),),
)
def cmd_step(ctx: CommandContext, args: list[str]) -> None:
    _stepper(ctx, args, "step")


@command(
    "next",
    aliases=("n",),
    usage="[N]",
    summary="run to the next kernel function entry, over calls",
    help="""\
    Like step, but the functions the selected one calls run through: the simulation stops
    at the next kernel function entered at the same depth or above (after the selected
    function returns, typically the next function its caller calls).""",
    examples=(("Over the current function:", "next"),),
)
def cmd_next(ctx: CommandContext, args: list[str]) -> None:
    _stepper(ctx, args, "next")


@command(
    "finish",
    aliases=("fin",),
    usage="",
    summary="run until the selected frame returns",
    help="""\
    Runs until the selected frame (see frame, up, down) returns, then prints where the
    simulation is and the value returned, numbered in the value history ("Value returned
    is $1 = (struct page *) 0xffffea...").""",
    examples=(("Out of __alloc_pages, with the page it returns:", "finish"),),
)
def cmd_finish(ctx: CommandContext, args: list[str]) -> None:
    dbg = get_debugger(ctx.session)
    args, bg = _background(args)
    if args:
        raise UsageError()
    if dbg.in_commands:
        dbg.pending_resume = ("finish", None)
        return
    _need_stopped(dbg)
    frames = dbg.frames()
    if not frames:
        raise CommandError('"finish" not meaningful in the outermost frame.')
    fr = frames[dbg.selected]
    ctx.print(f"Run till exit from #{dbg.selected}  {frame_line(fr)}")
    ctx.out.flush()
    dbg.go("finish", background=bg)


@command(
    "until",
    raw=True,
    aliases=("u",),
    usage="[LOCATION]",
    summary="run until a location (or like next)",
    help="""\
    With no argument, like next.  With a LOCATION (a kernel function or tracepoint, as for
    break), runs until it is reached, without leaving a breakpoint behind.""",
    examples=(("Until the next free:", "until __free_pages"),),
)
def cmd_until(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        _stepper(ctx, args, "next")
        return
    _advance(ctx, " ".join(args))


@command(
    "advance",
    raw=True,
    usage="LOCATION",
    summary="run until a location",
    help="Runs until LOCATION (a kernel function or tracepoint) is reached, as until does.",
    examples=(("Until the buddy allocator:", "advance __rmqueue_smallest"),),
)
def cmd_advance(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError("Argument required (a location).")
    _advance(ctx, " ".join(args))


def _advance(ctx: CommandContext, loc: str) -> None:
    dbg = get_debugger(ctx.session)
    kind, name, target = resolve_location(loc)
    bp = Breakpoint(dbg.hidden_number(), "breakpoint", name, kind, target, disp="del",
                    temporary=True)
    dbg.add(bp)
    if dbg.state == IDLE:
        start_run(ctx, None, False)
    else:
        _need_stopped(dbg)
        dbg.go("continue")
    if bp.number in dbg.breakpoints:
        dbg.delete(bp)


@command(
    "interrupt",
    usage="",
    summary="stop a simulation running in the background",
    help="Stops a simulation started with \"run &\" or \"continue &\" at its next kernel\n"
         "function entry, as Ctrl-C does in the foreground.",
    examples=(("Stop it:", "interrupt"),),
)
def cmd_interrupt(ctx: CommandContext, args: list[str]) -> None:
    dbg = get_debugger(ctx.session)
    if dbg.state != RUNNING:
        raise CommandError("The simulation is not running.")
    dbg.interrupt()


# ---------------------------------------------------------------------------------------
# scenarios


def _scenarios_module() -> Any:
    try:
        import importlib

        return importlib.import_module("mmdbg.workloads.scenarios")
    except ImportError:
        return None


def _scenario_names(mod: Any) -> list[tuple[str, str]]:
    for attr in ("list_scenarios", "available", "names"):
        f = getattr(mod, attr, None)
        if callable(f):
            out = []
            for item in f():
                if isinstance(item, str):
                    out.append((item, _doc_of(mod, item)))
                else:
                    name = getattr(item, "name", None) or item[0]
                    out.append((name, getattr(item, "summary", "") or _doc_of(mod, name)))
            return out
    table = getattr(mod, "SCENARIOS", None) or getattr(mod, "REGISTRY", None)
    if isinstance(table, dict):
        return [(k, _summary(v)) for k, v in sorted(table.items())]
    return []


def _summary(v: Any) -> str:
    s = getattr(v, "summary", None) or getattr(v, "description", None) or \
        (getattr(v, "__doc__", None) or "")
    return str(s).strip().splitlines()[0] if s else ""


def _doc_of(mod: Any, name: str) -> str:
    table = getattr(mod, "SCENARIOS", None)
    if isinstance(table, dict) and name in table:
        return _summary(table[name])
    return ""


def parse_scenario_spec(spec: str) -> tuple[str, dict[str, str]]:
    name, _, rest = spec.partition(":")
    params: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        k, eq, v = item.partition("=")
        if not eq:
            raise UsageError(f"bad scenario parameter: {item} (expected key=value)")
        params[k.strip()] = v.strip()
    return name, params


def _load(ctx: CommandContext, name: str, params: dict[str, str]) -> None:
    """Boot the scenario's machine (same seed) and install its workload."""
    mod = _scenarios_module()
    if mod is None:
        raise CommandError("No scenarios yet: mmdbg.workloads.scenarios does not exist.")
    dbg = get_debugger(ctx.session)
    loader = None
    for attr in ("load_scenario", "load", "setup"):
        loader = getattr(mod, attr, None)
        if callable(loader):
            break
    if loader is None:
        raise CommandError("mmdbg.workloads.scenarios has no load function.")
    old = ctx.session.machine
    try:
        res = loader(name, params, machine=None, seed=old.seed) if _accepts(loader, "seed") \
            else loader(name, params)
    except (KeyError, ValueError) as e:
        raise CommandError(f"scenario: {e}") from None
    machine = getattr(res, "machine", None) or (res if hasattr(res, "clock") else None)
    if machine is None:
        raise CommandError("scenario: the loader returned no machine")
    ctx.session.machine = machine
    runner = getattr(res, "run", None)
    if callable(runner) and runner is not getattr(machine, "run", None):
        dbg.sim_runner = runner
    dbg.scenario = (name, params)
    dbg.rearm_all()


def _accepts(fn: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def restart_scenario(ctx: CommandContext) -> None:
    dbg = get_debugger(ctx.session)
    if dbg.state == STOPPED:
        dbg.kill()
    name, params = dbg.scenario
    _load(ctx, name, params)
    ctx.print(f"Restarting scenario {name} (seed {ctx.session.machine.seed}).")


@command(
    "scenario",
    usage="list | load NAME[:KEY=VALUE,...] | restart | show",
    summary="named reproductions: load, run, restart",
    help="""\
    A scenario is a named, documented reproduction: a machine configuration, programs and
    the outcome it demonstrates (an OOM kill, a leak ...).
      list           the scenarios, one line each
      load NAME      boot its machine (with this session's seed) and install its workload;
                     parameters override its defaults: load oom:mem=256M,procs=4
      restart        boot it again from the beginning, same seed: the same stops happen
      show           what is loaded
    Breakpoints and watchpoints carry over to the new machine.""",
    examples=(("List them:", "scenario list"),),
    options=("list", "load", "restart", "show"),
)
def cmd_scenario(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError()
    sub = args[0]
    dbg = get_debugger(ctx.session)
    if sub == "list":
        mod = _scenarios_module()
        if mod is None:
            raise CommandError("No scenarios yet: mmdbg.workloads.scenarios does not exist.")
        for name, summary in _scenario_names(mod):
            ctx.print(f"{name:<24} {summary}".rstrip())
        return
    if sub == "load":
        if len(args) != 2:
            raise UsageError()
        if dbg.state == RUNNING:
            raise CommandError("The simulation is running.")
        if dbg.state == STOPPED:
            dbg.kill()
        name, params = parse_scenario_spec(args[1])
        _load(ctx, name, params)
        ctx.print(f"Scenario {name} loaded (seed {ctx.session.machine.seed}); "
                  "\"run\" starts it.")
        return
    if sub == "restart":
        if dbg.scenario is None:
            raise CommandError("No scenario loaded.")
        restart_scenario(ctx)
        return
    if sub == "show":
        if dbg.scenario is None:
            ctx.print("No scenario loaded.")
        else:
            name, params = dbg.scenario
            extra = ",".join(f"{k}={v}" for k, v in params.items())
            ctx.print(f"{name}{':' + extra if extra else ''} (seed {ctx.session.machine.seed})")
        return
    raise UsageError(f"unknown subcommand: {sub}")
