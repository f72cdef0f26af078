"""A shell session: runs command lines one at a time against one machine.

:class:`Session` is the seam every front end uses: the non-interactive CLI (``-x FILE``, piped
stdin), the plain ``input()`` loop used until the prompt_toolkit REPL exists, the REPL itself
later, and the tests.  One call, :meth:`Session.execute`, runs one line:

1. blank lines and comments (``#``, ``//``) are skipped;
2. the first word is looked up in the registry (an unknown word gets crash's treatment:
   ``mmdbg: unknown command: kmme (did you mean: kmem?)``);
3. ``| grep PATTERN`` filters and a trailing ``> FILE`` are split off (``pipeline.py``);
4. the command runs; a :class:`UsageError` prints the usage, a :class:`CommandError` its
   message, and any other exception one line naming it (``set debug on`` adds the
   traceback).  The session always survives to run the next line.

Errors go to ``err`` (stderr in the CLI) and results to ``out``; both may be the same stream.
The session keeps what outlives a line: gdb's value history (``$1``), variables set with
``set`` (``debug``), and whether ``quit`` was asked for.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import shlex
import sys
import traceback
from collections.abc import Iterable
from typing import Any, TextIO

from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.pipeline import ParsedLine, Redirect, apply_filters, parse_line
from mmdbg.shell.registry import Command, CommandContext, Registry, load_commands

PROMPT = "mmdbg> "

# Status of the last line, as a shell would report it.
OK = 0
FAILED = 1  # a CommandError, an unknown command, an internal error
USAGE = 2  # bad arguments


class Session:
    """Run shell command lines against ``machine``, writing to ``out`` and ``err``."""

    def __init__(self, machine: Any, out: TextIO | None = None, err: TextIO | None = None,
                 *, registry: Registry | None = None, echo: bool = False,
                 prompt: str = PROMPT) -> None:
        self.machine = machine
        self.out: TextIO = out if out is not None else sys.stdout
        self.err: TextIO = err if err is not None else self.out
        self.registry = registry if registry is not None else load_commands()
        self.echo = echo
        self.prompt = prompt
        self.variables: dict[str, Any] = {"debug": False}
        self.values: list[tuple[str, int]] = []  # gdb value history: $1 is values[0]
        self.quit_requested = False
        self.exit_status = 0  # "quit N" sets it
        self.last_status = OK
        self.errors = 0  # lines that failed, for batch reports and tests
        # Execution control (shell/debugger.py), created on first use; while it exists,
        # commands that run kernel code go through its sim thread (runner).
        self.debugger: Any = None
        self.runner: Any = None  # callable(cmd, ctx, args), replaces cmd.func(ctx, args)
        # A multi-line reader (gdb's "commands N ... end"): takes each line until it
        # returns True (done); the REPL shows its prompt (collector_prompt).
        self.collector: Any = None
        self.collector_prompt = ">"
        self.aliases: dict[str, str] = {}  # crash's "alias NAME COMMAND"
        self.context_pid: int | None = None  # crash's context ("set PID"); None: current
        self.interactive = False  # at a terminal (the REPL sets it)

    # -- running lines -----------------------------------------------------------------
    def execute(self, line: str) -> int:
        """Run one command line; return its status (OK, FAILED or USAGE)."""
        if self.collector is not None:
            if self.echo:
                self.out.write(f"{self.collector_prompt}{line.strip()}\n")
            if self.collector(line):
                self.collector = None
            return OK
        text = line.strip()
        if not text or text.startswith("#") or text.startswith("//"):
            return OK
        if self.echo:
            self.out.write(f"{self.prompt}{text}\n")
        status = self._execute(text)
        if self.echo:
            self.out.write("\n")
        self.last_status = status
        if status != OK:
            self.errors += 1
        self.out.flush()
        return status

    def run_lines(self, lines: Iterable[str]) -> int:
        """Run lines until they end or ``quit``; return the exit status to report."""
        for line in lines:
            self.execute(line.rstrip("\n"))
            if self.quit_requested:
                break
        return self.exit_status

    def _execute(self, text: str) -> int:
        text = self.expand_alias(text)
        name = text.split(None, 1)[0]
        cmd = self.registry.lookup(name)
        if cmd is None and "/" in name[1:] and self.registry.lookup(name.split("/", 1)[0]):
            # gdb's format suffix: "p/x expr", "x/4gx addr"
            head = name.split("/", 1)[0]
            text = f"{head} /{text[len(head) + 1:]}"
            name = head
            cmd = self.registry.lookup(name)
        if cmd is None:
            cmd = self.registry.fallback_for(text)
            if cmd is None:
                return self._unknown(name)
            ctx = CommandContext(self, cmd, cmd.name, self.out, text)
            return self._call(cmd, ctx, [text])
        if cmd.raw:
            parsed = ParsedLine(text)
        else:
            try:
                parsed = parse_line(text)
            except CommandError as e:
                self.error(e.msg)
                return FAILED
        rest = parsed.command[len(name):].strip()
        if cmd.raw:
            args = [rest] if rest else []
        else:
            try:
                args = shlex.split(rest)
            except ValueError as e:
                self.error(f"{name}: {str(e).lower()}")
                return USAGE
        buffered = bool(parsed.filters or parsed.redirect)
        out: TextIO = io.StringIO() if buffered else self.out
        ctx = CommandContext(self, cmd, name, out, rest)
        status = self._call(cmd, ctx, args)
        if buffered:
            try:
                result = apply_filters(parsed.filters, out.getvalue())  # type: ignore[attr-defined]
            except CommandError as e:
                self.error(e.msg)
                return FAILED
            if parsed.redirect is not None:
                if status == OK:
                    status = self._redirect(name, parsed.redirect, result)
            else:
                self.out.write(result)
        return status

    def expand_alias(self, text: str) -> str:
        """crash's aliases: the first word replaced by its definition (once)."""
        if not self.aliases:
            return text
        parts = text.split(None, 1)
        body = self.aliases.get(parts[0])
        if body is None or self.registry.lookup(parts[0]) is not None:
            return text
        return body + (" " + parts[1] if len(parts) > 1 else "")

    def _call(self, cmd: Command, ctx: CommandContext, args: list[str]) -> int:
        try:
            if self.runner is not None:
                self.runner(cmd, ctx, args)
            else:
                cmd.func(ctx, args)
        except KeyboardInterrupt:
            raise
        except Exception as e:
            return self.report_exception(cmd, ctx, e)
        return OK

    def report_exception(self, cmd: Command, ctx: CommandContext, e: BaseException) -> int:
        """Report what a command raised (usage, its own error, or a bug); return the status."""
        try:
            raise e
        except UsageError as e:
            if ctx.out is self.out:
                self.out.flush()
            lines = [f"{ctx.name}: {e.msg}"] if e.msg else []
            lines += ["Usage:", f"  {cmd.synopsis}", f'Enter "help {cmd.name}" for details.']
            self.error("\n".join(lines))
            return USAGE
        except CommandError as e:
            if e.msg:
                self.error(e.msg)
            return FAILED
        except (KeyboardInterrupt, BrokenPipeError):
            raise  # Ctrl-C; "mmdbg ... | head": the CLI exits quietly
        except Exception as e:  # a bug in mmdbg: one line, the shell goes on
            self.error(f"mmdbg: {ctx.name}: internal error: {type(e).__name__}: {e}"
                       + ("" if self.variables.get("debug")
                          else ' (enter "set debug on" to see the traceback)'))
            if self.variables.get("debug"):
                self.error(traceback.format_exc().rstrip("\n"))
            return FAILED

    def _unknown(self, name: str) -> int:
        near = self.registry.suggest(name)
        hint = f" (did you mean: {', '.join(near)}?)" if near else ""
        self.error(f"mmdbg: unknown command: {name}{hint}")
        return FAILED

    # -- output ------------------------------------------------------------------------
    def error(self, text: str) -> None:
        """Write an error message, keeping its place relative to normal output."""
        if self.err is not self.out:
            self.out.flush()
        self.err.write(text.rstrip("\n") + "\n")
        self.err.flush()

    # Absolute paths under these roots always mean the simulated machine's files: a
    # redirection there must never reach the host's /proc, /sys or /dev.
    VIRTUAL_ROOTS = frozenset({"proc", "sys", "dev"})

    def is_virtual_path(self, path: str) -> bool:
        """True for absolute paths in the simulated kernel's file tree (/proc, /sys ...)."""
        p = path.strip()
        if not p.startswith("/"):
            return False
        top = posixpath.normpath("/" + p.lstrip("/")).lstrip("/").split("/", 1)[0]
        roots = set(self.VIRTUAL_ROOTS)
        vfs = getattr(self.machine, "vfs", None)
        if vfs is not None:
            roots.update(k.lstrip("/").split("/", 1)[0] for k in getattr(vfs, "static", {}))
        return top in roots

    def _redirect(self, name: str, r: Redirect, text: str) -> int:
        if r.path.strip() == "/dev/null":
            return OK
        if self.is_virtual_path(r.path):
            return self._write_virtual(name, r.path, text)
        real = os.path.realpath(os.path.expanduser(r.path))
        if real.lstrip("/").split("/", 1)[0] in self.VIRTUAL_ROOTS:
            self.error(f"mmdbg: {r.path}: refusing to write to the host's {real}")
            return FAILED
        try:
            with open(real, "a" if r.append else "w") as f:
                f.write(text)
        except OSError as e:
            self.error(f"mmdbg: {r.path}: {e.strerror}")
            return FAILED
        return OK

    def _write_virtual(self, name: str, path: str, text: str) -> int:
        """``CMD > /proc/...``: open the file (bash's errors), then write (the kernel's)."""
        vfs = self.machine.vfs
        try:
            f, _ = vfs.lookup(path)
        except OSError as e:
            self.error(f"mmdbg: {path}: {e.strerror}")
            return FAILED
        if f.writer is None:
            self.error(f"mmdbg: {path}: {os.strerror(errno.EACCES)}")
            return FAILED
        try:
            self.machine.write(path, text)
        except OSError as e:
            self.error(f"{name}: write error: {os.strerror(e.errno or errno.EIO)}")
            return FAILED
        return OK

    # -- value history (gdb's $1, $2 ...) --------------------------------------------
    def record_value(self, ctype: str, value: int) -> int:
        """Append to the value history; return its number (``$N``)."""
        self.values.append((ctype, value))
        return len(self.values)

    def history_value(self, n: int | None = None) -> tuple[str, int] | None:
        """``$N`` (or ``$`` for the last value); None if there is no such value."""
        if not self.values:
            return None
        if n is None:
            return self.values[-1]
        return self.values[n - 1] if 1 <= n <= len(self.values) else None


def interactive_loop(session: Session, *, input_fn: Any = input) -> int:
    """The plain line loop used at a terminal until the prompt_toolkit REPL exists.

    Ctrl-D (EOF) quits, Ctrl-C abandons the current line.
    """
    while not session.quit_requested:
        try:
            line = input_fn(session.prompt)
        except EOFError:
            session.out.write("\n")
            break
        except KeyboardInterrupt:
            session.out.write("\n")
            continue
        try:
            session.execute(line)
        except KeyboardInterrupt:
            session.error("Quit")
    return session.exit_status


def run_commands(machine: Any, text: str | Iterable[str], **kw: Any) -> str:
    """Run command lines and return everything they printed (errors included).

    A convenience for tests and Python users: ``run_commands(m, "kmem -i")``.
    """
    buf = io.StringIO()
    s = Session(machine, buf, buf, **kw)
    s.run_lines(text.splitlines() if isinstance(text, str) else text)
    return buf.getvalue()
