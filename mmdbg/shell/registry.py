"""The command registry: one table of commands that every front end shares.

A command family is a module in ``mmdbg/shell/commands/`` that declares its commands with the
:func:`command` decorator::

    @command("kmem", usage="-i | -f | -F | -z | -p [pfn|address ...]",
             summary="kernel memory",
             help="...", examples=[("Memory usage summary:", "kmem -i")],
             options=("-i", "-f", "-F", "-z", "-p"))
    def cmd_kmem(ctx: CommandContext, args: list[str]) -> None:
        ...

The function receives a :class:`CommandContext` (machine, output stream, session state) and the
argument words; it writes its output with ``ctx.write``/``ctx.print`` and raises
:class:`~mmdbg.shell.errors.UsageError` or :class:`~mmdbg.shell.errors.CommandError` for user
mistakes.  The session layer (``session.py``) handles everything around it: splitting the line,
``| grep`` filters, ``> FILE`` redirection, error reporting.  The REPL (completion, highlighting,
help), command files (``-x``), piped stdin and the tests all go through this one table.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from mmdbg.shell.session import Session

CommandFunc = Callable[["CommandContext", list[str]], None]


@dataclass
class Command:
    """One shell command: its names, one-line usage, help page and implementation."""

    name: str
    func: CommandFunc
    usage: str = ""  # synopsis without the name: "-i | -f | -z | -p [pfn|address ...]"
    summary: str = ""  # the NAME line: "kmem - kernel memory"
    help: str = ""  # DESCRIPTION text (paragraphs, option lists)
    aliases: tuple[str, ...] = ()
    examples: tuple[tuple[str, str], ...] = ()  # (what it shows, command line)
    options: tuple[str, ...] = ()  # option words, for completion
    family: str = ""  # the module that registered it
    raw: bool = False  # True: the whole line goes to the command (no | or > parsing)
    hidden: bool = False  # not listed by "help" (still runnable, still has help)

    @property
    def synopsis(self) -> str:
        return f"{self.name} {self.usage}".rstrip()

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


@dataclass
class HelpTopic:
    """A help page that is not a command (``help input``, ``help output``)."""

    name: str
    text: str


class CommandContext:
    """What a command sees: the machine, where to write, and the session it runs in."""

    __slots__ = ("argtext", "command", "name", "out", "session")

    def __init__(self, session: Session, command: Command, name: str, out: TextIO,
                 argtext: str = "") -> None:
        self.session = session
        self.command = command
        self.name = name  # the name as typed (an alias, possibly)
        self.out = out
        self.argtext = argtext  # the arguments as typed, before quote removal

    @property
    def machine(self) -> Any:
        return self.session.machine

    def write(self, text: str) -> None:
        self.out.write(text)

    def error(self, text: str) -> None:
        """Report an error now, in order with the output (the command goes on)."""
        if self.out is self.session.out:
            self.out.flush()
        self.session.error(text)

    def print(self, *lines: str) -> None:
        """Write each argument as one line (an empty call writes an empty line)."""
        if not lines:
            self.out.write("\n")
        for line in lines:
            self.out.write(line + "\n")


@dataclass
class Registry:
    commands: dict[str, Command] = field(default_factory=dict)  # primary names
    by_name: dict[str, Command] = field(default_factory=dict)  # names and aliases
    topics: dict[str, HelpTopic] = field(default_factory=dict)
    # (claims(line) -> bool, command): lines whose first word is not a command name but
    # that a command takes whole, e.g. a probe program "kprobe:__alloc_pages { ... }"
    fallbacks: list[tuple[Callable[[str], bool], Command]] = field(default_factory=list)

    def register(self, cmd: Command) -> Command:
        for n in cmd.names:
            if n in self.by_name:
                other = self.by_name[n]
                raise ValueError(f"shell command name {n!r} of {cmd.family or cmd.name} "
                                 f"is already taken by {other.family or other.name}")
        self.commands[cmd.name] = cmd
        for n in cmd.names:
            self.by_name[n] = cmd
        return cmd

    def add_topic(self, name: str, text: str) -> None:
        self.topics[name] = HelpTopic(name, text)

    def lookup(self, name: str) -> Command | None:
        return self.by_name.get(name)

    def add_fallback(self, claims: Callable[[str], bool], cmd: Command) -> None:
        """Route lines that start with no command name, but that ``claims``, to ``cmd``.

        Like crash's fall-through to gdb: the REPL's probe programs (``kprobe:... { }``)
        and, later, ``struct.member ADDR`` use it.  ``cmd`` receives the whole line as its
        single argument (``ctx.argtext``), pipes and redirection not split off.
        """
        self.fallbacks.append((claims, cmd))

    def fallback_for(self, line: str) -> Command | None:
        for claims, cmd in self.fallbacks:
            if claims(line):
                return cmd
        return None

    def visible(self) -> list[Command]:
        """Commands listed by ``help``, sorted by name."""
        return sorted((c for c in self.commands.values() if not c.hidden), key=lambda c: c.name)

    def all_names(self) -> list[str]:
        """Every name and alias (what completion offers)."""
        return sorted(self.by_name)

    def suggest(self, name: str, n: int = 3) -> list[str]:
        """Near names for a mistyped command, closest first (``kmme`` -> ``kmem``)."""
        names = self.all_names()
        hits = difflib.get_close_matches(name, names, n=n, cutoff=0.6)
        if not hits:
            hits = [c for c in names if c.startswith(name)][:n] if name else []
        return hits


REGISTRY = Registry()


def command(name: str, *, usage: str = "", summary: str = "", help: str = "",
            aliases: Iterable[str] = (), examples: Iterable[tuple[str, str]] = (),
            options: Iterable[str] = (), raw: bool = False, hidden: bool = False,
            registry: Registry | None = None) -> Callable[[CommandFunc], CommandFunc]:
    """Decorator: register ``func`` as the shell command ``name``."""

    def deco(func: CommandFunc) -> CommandFunc:
        cmd = Command(name=name, func=func, usage=usage, summary=summary,
                      help=_dedent(help), aliases=tuple(aliases), examples=tuple(examples),
                      options=tuple(options), family=func.__module__, raw=raw, hidden=hidden)
        (registry or REGISTRY).register(cmd)
        return func

    return deco


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


_loaded = False


def load_commands() -> Registry:
    """Import every family module in ``mmdbg.shell.commands`` (once) and return REGISTRY.

    Families are discovered, not listed, so adding ``commands/vm.py`` is all it takes to add
    the ``vm`` family; modules load in name order so registration is deterministic.
    """
    global _loaded
    if not _loaded:
        from mmdbg.shell import commands as pkg

        _loaded = True
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
            if not info.name.startswith("_"):
                importlib.import_module(f"{pkg.__name__}.{info.name}")
    return REGISTRY
