"""Scenarios in the shell: list, load, run to a breakpoint, restart with the same seed and get
the same stops; and a background ``run &`` in the REPL reporting its stop above the prompt."""

from __future__ import annotations

import io
import re
import sys
import threading
import time

import pytest
from prompt_toolkit.application import create_app_session
from prompt_toolkit.data_structures import Size
from prompt_toolkit.history import InMemoryHistory
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output.vt100 import Vt100_Output

import mmdbg
from mmdbg.shell import Session
from mmdbg.shell.debugger import IDLE, STOPPED, get_debugger
from mmdbg.shell.repl import run_repl


def new_session():
    buf = io.StringIO()
    return Session(mmdbg.boot("mem=64M cpus=2", 0), buf, buf), buf


def cmd(s, buf, line: str) -> str:
    start = len(buf.getvalue())
    s.execute(line)
    return buf.getvalue()[start:]


def test_scenario_list_and_bad_loads():
    s, buf = new_session()
    out = cmd(s, buf, "scenario list")
    names = [ln.split()[0] for ln in out.splitlines()]
    assert {"anon-touch", "fork-cow", "file-map", "stress-vm", "segv", "oom-global",
            "memcg-oom"} <= set(names)
    assert "copy-on-write" in out
    assert "unknown scenario 'nope'" in cmd(s, buf, "scenario load nope")
    assert "unknown parameter 'bad'" in cmd(s, buf, "scenario load fork-cow:bad=1")
    assert cmd(s, buf, "scenario show") == "No scenario loaded.\n"


def stops(s, buf, n: int) -> list[str]:
    """The first ``n`` stops (breakpoint line, bt) of a run from the start."""
    out = [cmd(s, buf, "run")]
    for _ in range(n - 1):
        out.append(cmd(s, buf, "bt") + cmd(s, buf, "continue"))
    return out


def test_load_run_and_restart_reproduce_the_same_stops():
    s, buf = new_session()
    out = cmd(s, buf, "scenario load fork-cow:size=64K,child_pages=3")
    assert out == 'Scenario fork-cow loaded (seed 0); "run" starts it.\n'
    assert cmd(s, buf, "scenario show") == "fork-cow:size=64K,child_pages=3 (seed 0)\n"
    cmd(s, buf, "break wp_page_copy")
    first = stops(s, buf, 3)
    assert first[0].startswith("\nBreakpoint 1, wp_page_copy (vmf=")
    assert "fork-cow" in first[1]
    s.machine.check_consistency()
    dbg = get_debugger(s)
    assert dbg.state == STOPPED
    # "run" while stopped restarts the loaded scenario (same seed): the same stops again
    again = cmd(s, buf, "run")
    assert again.startswith("Restarting scenario fork-cow (seed 0).\n")
    assert again[len("Restarting scenario fork-cow (seed 0).\n"):] == first[0]
    second = [first[0]]
    for _ in range(2):
        second.append(cmd(s, buf, "bt") + cmd(s, buf, "continue"))
    assert second == first
    # three CoW copies in the child, then the scenario runs to its end
    rest = cmd(s, buf, "delete") + cmd(s, buf, "continue")
    assert "[simulation ran " in rest and dbg.state == IDLE
    assert "Breakpoint 1, wp_page_copy" not in rest
    s.machine.check_consistency()
    hits = cmd(s, buf, "info breakpoints")
    assert hits == "No breakpoints or watchpoints.\n"
    # "scenario restart" boots again too
    assert cmd(s, buf, "scenario restart") == "Restarting scenario fork-cow (seed 0).\n"
    assert s.machine.clock.ns < 5_000_000


def test_scenario_gets_its_machine_options():
    s, buf = new_session()
    cmd(s, buf, "scenario load memcg-oom")
    assert "mem=256M" in s.machine.config.cmdline


@pytest.fixture
def terminal():
    """A prompt_toolkit session whose terminal output is captured (vt100 escapes and all)."""
    screen = io.StringIO()
    out = Vt100_Output(screen, lambda: Size(rows=40, columns=120), term="xterm")
    with create_pipe_input() as inp, create_app_session(input=inp, output=out):
        yield inp, screen


def test_background_run_reports_the_stop_above_the_prompt(terminal, monkeypatch):
    inp, screen = terminal
    stream = io.StringIO()  # the session's stdout: the REPL routes it above the prompt
    monkeypatch.setattr(sys, "_mmdbg_stdout", stream, raising=False)
    s = Session(mmdbg.boot("mem=64M cpus=2", 0), stream, stream)
    dbg = get_debugger(s)
    inp.send_text("scenario load fork-cow:size=64K\rbreak wp_page_copy\rrun &\r")
    seen: dict[str, object] = {}

    def drive() -> None:
        deadline = time.monotonic() + 20
        while dbg.state != STOPPED and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)  # let the monitor print the stop
        seen["state"] = dbg.state
        inp.send_text("bt\rdelete\rcontinue\r\x04")

    t = threading.Thread(target=drive)
    t.start()
    rc = run_repl(s, history=InMemoryHistory(), show_banner=False)
    t.join()
    assert rc == 0 and seen["state"] == STOPPED
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue()).replace("\r", "")
    # the stop printed by the background monitor reached the terminal, above a prompt
    i = text.find("Breakpoint 1, wp_page_copy (vmf=")
    assert i >= 0, text[-2000:]
    assert "mmdbg> " in text[:i] and "mmdbg" in text[i:]
    assert stream.getvalue() == ""  # nothing bypassed the terminal
