"""The prompt_toolkit REPL in-process: pipe input, DummyOutput (reference/ecosystem.md §1.5).

Completion, multi-line probe entry, the prompt and toolbar, history, Ctrl-C and Ctrl-D, and
the Pygments lexer.  Enter is "\\r"; Ctrl-C "\\x03"; Ctrl-D "\\x04".
"""

from __future__ import annotations

import asyncio
import io
import signal
import threading
import time
from pathlib import Path

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.completion import CompleteEvent
from prompt_toolkit.document import Document
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

import mmdbg
from mmdbg.shell import Session
from mmdbg.shell.completion import MmdbgCompleter
from mmdbg.shell.debugger import STOPPED, get_debugger
from mmdbg.shell.repl import (
    block_complete,
    history_path,
    make_prompt_session,
    prompt_text,
    run_repl,
    toolbar_text,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def pipe():
    with create_pipe_input() as inp, create_app_session(input=inp, output=DummyOutput()):
        yield inp


def new_session(machine):
    buf = io.StringIO()
    return Session(machine, buf, buf), buf


def completions(session, text: str) -> list[str]:
    c = MmdbgCompleter(session)
    return [x.text for x in c.get_completions(Document(text), CompleteEvent())]


# ---------------------------------------------------------------------------------------
# completion


def test_complete_commands_and_providers(machine):
    s, _ = new_session(machine)
    got = completions(s, "km")
    assert "kmem" in got
    assert "kprobe:" in completions(s, "kpr")
    assert "continue" in completions(s, "cont")


def test_complete_kernel_functions_and_tracepoints(machine):
    s, _ = new_session(machine)
    assert "__alloc_pages" in completions(s, "break __alloc_p")
    assert "kprobe:__alloc_pages" in completions(s, "kprobe:__alloc_p")
    assert "tracepoint:kmem:mm_page_alloc" in completions(s, "tracepoint:kmem:mm_page_al")
    assert "kmem:mm_page_free" in completions(s, "trace-cmd record -e kmem:mm_page_f")


def test_complete_args_fields(machine):
    s, _ = new_session(machine)
    assert completions(s, "kprobe:__alloc_pages { @[args.or") == ["order"]
    got = completions(s, "tracepoint:kmem:mm_page_alloc /args.")
    assert {"pfn", "order", "gfp_flags", "migratetype"} <= set(got)
    assert "order" in completions(s, "break __alloc_pages if args.o")


def test_complete_pids_paths_options_help(machine):
    s, _ = new_session(machine)
    assert "0" in completions(s, "set ")
    assert "/proc/meminfo" in completions(s, "cat /proc/mem")
    assert "/proc/sys/" in completions(s, "cat /proc/s")
    assert "/sys/kernel/mm/transparent_hugepage/" in completions(s, "echo always > /sys/kernel/mm/t")
    assert "-i" in completions(s, "kmem -")
    assert "kmem" in completions(s, "help km")
    assert "breakpoints" in completions(s, "info br")


def test_complete_map_names_and_breakpoint_numbers(machine):
    s, _ = new_session(machine)
    s.execute("tracepoint:kmem:mm_page_alloc { @allocs[comm] = count(); }")
    s.execute("break __alloc_pages")
    assert completions(s, "print @al") == ["@allocs"]
    assert "1" in completions(s, "delete ")
    s.execute("detach all")
    s.execute("delete")


def test_tab_completion_through_the_prompt(pipe, machine):
    s, _ = new_session(machine)
    ps = make_prompt_session(s, history=InMemoryHistory())

    async def go():
        task = asyncio.ensure_future(ps.prompt_async())
        pipe.send_text("break __alloc_pages_slo")
        await asyncio.sleep(0.05)
        pipe.send_text("\t")
        await asyncio.sleep(0.3)
        pipe.send_text("\r")
        return await task

    text = asyncio.run(go())
    assert text == "break __alloc_pages_slowpath"


# ---------------------------------------------------------------------------------------
# multi-line entry, prompt, toolbar, history


def test_block_complete():
    assert block_complete("kmem -i")
    assert not block_complete("kprobe:x {")
    assert not block_complete('kprobe:x { printf("}")')
    assert block_complete('kprobe:x { printf("{"); }')
    assert not block_complete("kprobe:x { /* } */")
    assert block_complete("kprobe:x { // {\n}")
    assert not block_complete('BEGIN { printf("abc')


def test_multiline_probe_entry(pipe, machine):
    s, _ = new_session(machine)
    ps = make_prompt_session(s, history=InMemoryHistory())
    pipe.send_text("tracepoint:kmem:mm_page_alloc {\r  @allocs[comm] = count();\r}\r")
    text = ps.prompt()  # the new line keeps the indentation of the previous one
    assert [ln.strip() for ln in text.split("\n")] == [
        "tracepoint:kmem:mm_page_alloc {", "@allocs[comm] = count();", "}"]


def test_repl_runs_multiline_program_and_commands(pipe, machine):
    s, buf = new_session(machine)
    pipe.send_text("tracepoint:kmem:mm_page_alloc {\r @n = count();\r}\r"
                   "call __alloc_pages(GFP_KERNEL, 1)\rprint @n\rprobes\r\x04")
    rc = run_repl(s, history=InMemoryHistory(), show_banner=False)
    out = buf.getvalue()
    assert rc == 0
    assert "Attached 1 probe" in out and "@n: 1\n" in out
    assert "  1  attached         1  tracepoint:kmem:mm_page_alloc { @n = count(); }" in out


def test_prompt_and_toolbar_follow_the_state(pipe, machine):
    s, _buf = new_session(machine)
    dbg = get_debugger(s)
    assert prompt_text(s) == "mmdbg> "
    tb = toolbar_text(s)
    assert tb.startswith(" t=0.000000000s | idle | task swapper/0[0] | free ")
    s.execute("break __alloc_pages")
    s.execute("call __alloc_pages(GFP_KERNEL, 0)")
    assert dbg.state == STOPPED
    assert prompt_text(s) == "mmdbg(stopped)> "
    assert "| stopped (breakpoint 1) |" in toolbar_text(s)
    s.execute("commands 1")
    assert prompt_text(s) == ">"
    s.execute("end")
    s.execute("delete")
    s.execute("continue")
    assert prompt_text(s) == "mmdbg> "


def test_history_file(pipe, machine, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert history_path() == tmp_path / "mmdbg" / "history"
    s, _ = new_session(machine)
    pipe.send_text("kmem -i\r\x04")
    run_repl(s, history=FileHistory(str(tmp_path / "h")), show_banner=False)
    assert "+kmem -i" in (tmp_path / "h").read_text()


def test_ctrl_c_at_prompt_and_ctrl_d_quits(pipe, machine):
    s, buf = new_session(machine)
    pipe.send_text("kmem -\x03p 1 + 1\r\x04")
    assert run_repl(s, history=InMemoryHistory(), show_banner=False) == 0
    assert buf.getvalue() == "$1 = 2\n"


def test_quit_status_and_errors_keep_the_shell(pipe, machine):
    s, buf = new_session(machine)
    pipe.send_text("kmme -i\rkmem -x\rp 3\rquit 4\r")
    assert run_repl(s, history=InMemoryHistory(), show_banner=False) == 4
    out = buf.getvalue()
    assert "unknown command: kmme (did you mean: kmem?)" in out
    assert "Usage:" in out and "$1 = 3" in out


def test_ctrl_c_during_run_stops_the_simulation(pipe, machine):
    """A foreground run in the REPL: SIGINT stops the simulation, the shell goes on."""
    s, buf = new_session(machine)
    dbg = get_debugger(s)
    state = {"stop": False}

    def runner(ns):
        machine.clock.ns += ns
        machine.free_pages(machine.alloc_pages("GFP_KERNEL", 0), 0)
        time.sleep(0.002)
        return "idle" if state["stop"] else "duration"

    dbg.sim_runner = runner
    main = threading.main_thread().ident
    threading.Timer(0.4, lambda: signal.pthread_kill(main, signal.SIGINT)).start()

    def later():
        state["stop"] = True

    pipe.send_text("run\r")
    t = threading.Timer(1.0, lambda: (later(), pipe.send_text("bt\rcontinue\r\x04")))
    t.start()
    run_repl(s, history=InMemoryHistory(), show_banner=False)
    t.join()
    out = buf.getvalue()
    assert "Program received signal SIGINT, Interrupt." in out
    assert "Continuing." in out and "[simulation ran " in out
    machine.check_consistency()


# ---------------------------------------------------------------------------------------
# the Pygments lexer


def test_lexer_covers_scripts_and_round_trips():
    from pygments.lexers import get_lexer_by_name
    from pygments.token import Error

    lexer = get_lexer_by_name("mmdbg")
    sources = [p.read_text() for p in (ROOT / "docs" / "examples").glob("*")]
    sources += [p.read_text() for p in (ROOT / "scripts").glob("*.bt")]
    sources.append((ROOT / "docs" / "debugger.md").read_text())
    for src in sources:
        toks = list(lexer.get_tokens(src))
        assert not [t for t in toks if t[0] is Error]
        assert "".join(v for _, v in toks) == src if src.endswith("\n") else True


def test_lexer_token_kinds():
    from pygments.token import Keyword, Name

    from mmdbg.shell.lexer import MmdbgLexer

    toks = list(MmdbgLexer().get_tokens("break __alloc_pages if args.order >= 3\n"
                                        "kprobe:__alloc_pages { @[comm] = count(); }\n"))
    kinds = {v: t for t, v in toks}
    assert kinds["break"] in Keyword
    assert kinds["kprobe"] is Keyword.Namespace and kinds["__alloc_pages"] in Name
    assert kinds["@"] is Name.Variable.Global
    assert kinds["count"] is Name.Builtin


def test_pygmentize_entry_point():
    from pygments.lexers import find_lexer_class_for_filename

    assert find_lexer_class_for_filename("x.mmbt").__name__ == "MmdbgLexer"


def test_no_terminal_keeps_the_batch_path(tmp_path):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "mmdbg"], input="p 6 * 7\nbreak nosuch\n",
                       capture_output=True, text=True, timeout=60,
                       env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert r.stdout == "$1 = 42\n"
    assert 'Function "nosuch" not defined.' in r.stderr


def test_broken_pipe_exits_quietly(tmp_path):
    import subprocess
    import sys

    f = tmp_path / "cmds"
    f.write_text("help all\n" * 20)
    p = subprocess.Popen([sys.executable, "-m", "mmdbg", "-x", str(f)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 0
    assert "internal error" not in err and "Traceback" not in err


def test_banner_mentions_machine(machine):
    from mmdbg.shell.repl import banner

    s, _ = new_session(machine)
    assert banner(s).startswith(f"mmdbg {mmdbg.__version__}: simulated machine 'mem=1G cpus=2'")
