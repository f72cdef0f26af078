"""The interactive shell: prompt_toolkit's PromptSession over a :class:`~mmdbg.shell.Session`.

``mmdbg`` at a terminal lands here (``cli.py`` calls :func:`run_repl`); without a terminal
the batch path (command files, piped input) runs the same commands without this module.

* **Prompt** ``mmdbg> ``, ``mmdbg(stopped)> `` while the simulation is parked at a stop,
  ``mmdbg(running)> `` while it runs in the background (``run &``); ``>`` while gdb's
  ``commands N`` reads its lines.
* **History** in ``$XDG_STATE_HOME/mmdbg/history`` (``~/.local/state/mmdbg/history``), with
  suggestions from it.
* **Completion** (Tab): ``completion.py``.  **Highlighting**: ``lexer.py``.
* **Multi-line probe programs**: Enter inserts a newline while a ``{`` block is open (outside
  strings and comments) and runs the program when the braces balance.
* **Bottom toolbar**: simulated time, running/stopped, the current task, free memory.
* **Ctrl-C** stops a running simulation (a foreground ``run`` as a signal, a background one
  as a key press) and otherwise clears the line; the shell stays.  **Ctrl-D** quits.
* Output from the simulation (probe programs, stops of a background run) appears above the
  prompt without disturbing the line being typed (``patch_stdout``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application import get_app_or_none
from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory, History, InMemoryHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.patch_stdout import patch_stdout

import mmdbg
from mmdbg.shell.completion import MmdbgCompleter
from mmdbg.shell.debugger import RUNNING, STOPPED, get_debugger
from mmdbg.shell.lexer import MmdbgLexer

CONTINUATION = "....> "


def history_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                             "state")
    return Path(base) / "mmdbg" / "history"


def make_history(path: Path | None = None) -> History:
    p = path or history_path()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch(exist_ok=True)
        return FileHistory(str(p))
    except OSError:
        return InMemoryHistory()


def block_complete(text: str) -> bool:
    """True when every ``{`` outside strings and comments is closed (and no string or
    ``/* */`` comment is left open): the input can run."""
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\":
                    i += 1
                elif text[i] == "\n":
                    break
                i += 1
            if i >= n:
                return False
        elif c == "/" and i + 1 < n and text[i + 1] == "/":
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        elif c == "/" and i + 1 < n and text[i + 1] == "*":
            j = text.find("*/", i + 2)
            if j < 0:
                return False
            i = j + 2
            continue
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    return depth <= 0


def prompt_text(session: Any) -> str:
    if session.collector is not None:
        return session.collector_prompt
    dbg = session.debugger
    if dbg is not None and dbg.state == STOPPED:
        return "mmdbg(stopped)> "
    if dbg is not None and dbg.state == RUNNING:
        return "mmdbg(running)> "
    return "mmdbg> "


def toolbar_text(session: Any) -> str:
    m = session.machine
    ns = int(getattr(getattr(m, "clock", None), "ns", 0) or 0)
    dbg = session.debugger
    state = "idle"
    if dbg is not None:
        state = {RUNNING: "running", STOPPED: "stopped"}.get(dbg.state, "idle")
        if dbg.state == STOPPED and dbg.stop is not None:
            st = dbg.stop
            if st.bp is not None and st.bp.number > 0:
                state = f"stopped (breakpoint {st.bp.number})" if st.reason == "breakpoint" \
                    else f"stopped (watchpoint {st.bp.number})"
            elif st.reason == "signal":
                state = "stopped (SIGINT)"
    task = None
    try:
        from mmdbg.shell.commands.inspect import context_task

        task = context_task(session)
    except Exception:
        task = getattr(m, "current", None)
    who = f"{task.comm}[{task.pid}]" if task is not None else "-"
    try:
        free_mb = m.nr_free_pages() * 4 // 1024
    except Exception:
        free_mb = 0
    return (f" t={ns // 1_000_000_000}.{ns % 1_000_000_000:09d}s | {state} | task {who} | "
            f"free {free_mb} MB ")


def make_prompt_session(session: Any, *, history: History | None = None,
                        **kw: Any) -> PromptSession:
    """The PromptSession the REPL uses (tests build it with pipe input and DummyOutput)."""
    dbg = get_debugger(session)

    def needs_more() -> bool:
        app = get_app_or_none()
        if app is None or session.collector is not None:
            return False
        return not block_complete(app.current_buffer.text)

    kb = KeyBindings()

    @kb.add("c-c", filter=Condition(lambda: dbg.state == RUNNING))
    def _(event: Any) -> None:  # a background run: Ctrl-C stops the simulation
        dbg.interrupt()

    ps: PromptSession = PromptSession(
        message=lambda: prompt_text(session),
        multiline=Condition(needs_more),
        prompt_continuation=lambda width, line_no, soft_wrap: CONTINUATION,
        history=history if history is not None else make_history(),
        auto_suggest=AutoSuggestFromHistory(),
        completer=MmdbgCompleter(session),
        complete_while_typing=False,
        lexer=PygmentsLexer(MmdbgLexer),
        bottom_toolbar=lambda: FormattedText([("class:bottom-toolbar",
                                               toolbar_text(session))]),
        refresh_interval=0.5,
        key_bindings=kb,
        **kw,
    )

    def redraw() -> None:
        app = ps.app
        if app.is_running:
            app.invalidate()

    dbg.on_change = redraw
    return ps


def execute_input(session: Any, text: str) -> None:
    """Run what the prompt returned: one probe program, or one command per line."""
    from mmdbg.shell.commands.probes import is_probe_program

    if session.collector is None and is_probe_program(text):
        session.execute(text)
        return
    for line in text.split("\n"):
        session.execute(line)
        if session.quit_requested:
            return


def banner(session: Any) -> str:
    m = session.machine
    cmdline = getattr(m.config, "cmdline", "") or "mem=1G cpus=2"
    return (f"mmdbg {mmdbg.__version__}: simulated machine '{cmdline}', seed {m.seed}.  "
            'Enter "help" for the commands, Ctrl-D or "quit" to leave.')


def run_repl(session: Any, *, input: Any = None, output: Any = None,
             history: History | None = None, show_banner: bool = True) -> int:
    """The interactive loop; returns the exit status (``quit N``)."""
    kw: dict[str, Any] = {}
    if input is not None:
        kw["input"] = input
    if output is not None:
        kw["output"] = output
    session.interactive = True
    dbg = get_debugger(session)
    ps = make_prompt_session(session, history=history, **kw)
    saved = session.out, session.err
    if show_banner:
        session.out.write(banner(session) + "\n")
        session.out.flush()
    try:
        with patch_stdout(raw=True):
            if saved[0] is sys.__stdout__ or saved[0] is getattr(sys, "_mmdbg_stdout", None):
                session.out = sys.stdout
            if saved[1] is sys.__stderr__:
                session.err = sys.stderr
            while not session.quit_requested:
                try:
                    text = ps.prompt()
                except KeyboardInterrupt:
                    if dbg.state == RUNNING:
                        dbg.interrupt()
                    continue
                except EOFError:
                    if session.collector is not None:
                        session.collector("end")
                        session.collector = None
                        continue
                    break
                try:
                    execute_input(session, text)
                except KeyboardInterrupt:
                    if dbg.state == RUNNING:
                        dbg.interrupt()
                        dbg.run_foreground(session.out)
                    else:
                        session.error("Quit")
    finally:
        session.out, session.err = saved
        dbg.on_change = None
    return session.exit_status
