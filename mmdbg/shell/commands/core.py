"""The shell's own commands: ``help``, ``quit`` and ``set``, plus the ``input``/``output``
help topics."""

from __future__ import annotations

import textwrap

import mmdbg
from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.fmt import columns
from mmdbg.shell.registry import REGISTRY, Command, CommandContext, command

HELP_FOOTER = [
    'For help on any command above, enter "help <command>".',
    'For help on input options, enter "help input".',
    'For help on output options, enter "help output".',
]


def help_page(cmd: Command) -> list[str]:
    """crash's man-page layout: NAME, SYNOPSIS, DESCRIPTION (with EXAMPLES)."""
    lines = ["NAME", f"  {cmd.name} - {cmd.summary}", "", "SYNOPSIS", f"  {cmd.synopsis}"]
    if cmd.aliases:
        lines += ["", "ALIASES", "  " + ", ".join(cmd.aliases)]
    if cmd.help:
        lines += ["", "DESCRIPTION"]
        lines += [("  " + ln) if ln else "" for ln in cmd.help.splitlines()]
    if cmd.examples:
        lines += ["", "EXAMPLES"]
        for i, (what, example) in enumerate(cmd.examples):
            if i:
                lines.append("")
            lines += [f"  {ln}" for ln in textwrap.wrap(what, 94)]
            lines += ["", f"    mmdbg> {example}"]
    return lines


@command(
    "help",
    aliases=("?",),
    usage="[command | input | output | all]",
    summary="get help",
    help="""\
    With no argument, lists every command.  With a command name (or an alias), prints that
    command's page: NAME, SYNOPSIS, DESCRIPTION and EXAMPLES.  "help input" describes where
    commands can come from (command files, piped input, comments); "help output" how to
    filter and redirect what a command prints.  "help all" prints every page.""",
    examples=(("List the commands:", "help"),
              ("The page of the kmem command:", "help kmem"),
              ("Pipes and redirection:", "help output")),
)
def cmd_help(ctx: CommandContext, args: list[str]) -> None:
    reg = ctx.session.registry
    if not args:
        ctx.print("")
        for ln in columns([c.name for c in reg.visible()]):
            ctx.print(ln)
        ctx.print("")
        ctx.print(f"mmdbg version: {mmdbg.__version__}    "
                  f"kernel: {_release()} (simulated)")
        for ln in HELP_FOOTER:
            ctx.print(ln)
        return
    for i, name in enumerate(args):
        if i:
            ctx.print("")
        if name == "all":
            for j, c in enumerate(reg.visible()):
                if j:
                    ctx.print("", "-" * 79, "")
                ctx.print(*help_page(c))
            continue
        cmd = reg.lookup(name)
        if cmd is not None:
            ctx.print(*help_page(cmd))
        elif name in reg.topics:
            ctx.print(*reg.topics[name].text.splitlines())
        else:
            near = reg.suggest(name)
            hint = f" (did you mean: {', '.join(near)}?)" if near else ""
            raise CommandError(f'help: no command or help topic named "{name}"{hint}')


def _release() -> str:
    from mmdbg.sim.machine import UTS_RELEASE

    return UTS_RELEASE


@command(
    "quit",
    aliases=("q", "exit"),
    usage="[status]",
    summary="exit this session",
    help="""\
    Leaves mmdbg.  In a command file or piped input, the remaining lines are not run.
    The optional status is the process exit status (default 0), as gdb's "quit EXPR".
    At the terminal, Ctrl-D does the same.""",
    examples=(("Leave:", "quit"),),
)
def cmd_quit(ctx: CommandContext, args: list[str]) -> None:
    if len(args) > 1:
        raise UsageError()
    status = 0
    if args:
        try:
            status = int(args[0], 0)
        except ValueError:
            raise UsageError(f"invalid exit status: {args[0]}") from None
    ctx.session.exit_status = status & 0xFF
    ctx.session.quit_requested = True


# -- set -------------------------------------------------------------------------------

_BOOL_WORDS = {"on": True, "off": False, "1": True, "0": False, "yes": True, "no": False,
               "true": True, "false": False}

# name -> (description, kind)
VARIABLES: dict[str, tuple[str, str]] = {
    "debug": ("on: an internal error in a command also prints the Python traceback", "bool"),
}


@command(
    "set",
    usage="[-v] | variable [value] | PID | -c CPU | -p",
    summary="set a shell variable, or the current context",
    help="""\
    With no argument (or -v), lists the shell's variables and their values.  With a
    variable and a value, sets it; with a variable alone, shows it.

    As in crash, "set PID" (or a task address) makes that task the current context of the
    commands that default to one (bt, vm, pmap ...), "set -c CPU" the task running on a
    CPU, and "set -p" goes back to the task the simulation is stopped in.

    Variables:
      debug  on|off   Show the Python traceback when a command fails with an internal
                      error (default off: one line naming the error).""",
    examples=(("Show the variables:", "set"),
              ("Get tracebacks for internal errors:", "set debug on")),
    options=("-v",),
)
def cmd_set(ctx: CommandContext, args: list[str]) -> None:
    vars_ = ctx.session.variables
    if args and (args[0] in ("-c", "-p") or args[0][:1].isdigit()):
        from mmdbg.shell.commands.inspect import set_context

        set_context(ctx, args)
        return
    if not args or args == ["-v"]:
        for name in sorted(VARIABLES):
            ctx.print(f"{name:>10}: {_show(vars_.get(name))}")
        return
    name = args[0]
    if name not in VARIABLES:
        raise UsageError(f"unknown variable: {name}")
    if len(args) == 1:
        ctx.print(f"{name:>10}: {_show(vars_.get(name))}")
        return
    if len(args) != 2:
        raise UsageError()
    word = args[1].lower()
    if word not in _BOOL_WORDS:
        raise UsageError(f"{name}: expected on or off, not {args[1]!r}")
    vars_[name] = _BOOL_WORDS[word]


def _show(v: object) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


# -- help topics -----------------------------------------------------------------------

REGISTRY.add_topic("input", """\
Where commands come from:

  mmdbg                          at a terminal: one command per line at the mmdbg> prompt
  mmdbg -x FILE                  run the commands in FILE, then exit (commands are echoed
                                 after the prompt, with a blank line after each output)
  echo 'kmem -i' | mmdbg         read commands from standard input when it is not a
                                 terminal (not echoed; add --echo for a transcript)

In all three:
  - blank lines, and lines starting with "#" or "//", are ignored;
  - arguments may be quoted ('...' or "...");
  - an unknown command or a bad argument prints a message and the next line still runs;
  - "quit" (or "q", "exit") ends the session; "quit N" exits with status N.""")

REGISTRY.add_topic("output", """\
What a command prints can be filtered and redirected, as in crash:

  COMMAND | grep [-v] [-i] [-w] [-c] [-F] [-n] PATTERN
                          keep the lines matching PATTERN (a Python regular expression)
  COMMAND | head [-n N]   the first N lines (default 10); also head -N
  COMMAND | tail [-n N]   the last N lines
  COMMAND | wc [-l|-w|-c] count lines, words, characters
  COMMAND > FILE          write the output to FILE instead (>> FILE appends)

Filters chain (kmem -f | grep -v " 0$" | head -5) and a redirection may follow them.
A redirection to a path under /proc or /sys writes to the simulated machine, as bash does
on a real one:

  echo 8192 > /proc/sys/vm/min_free_kbytes

Any other path is a file on the host.  A "|" or ">" inside quotes or parentheses is part
of the command: call alloc_pages(GFP_KERNEL|__GFP_ZERO, 0) is not a pipe.""")
