"""interval/profile probes on the machine's timers, watchpoints, and their absence."""

from __future__ import annotations

import io
from typing import Any

import pytest

from mmdbg.probe import ProbeSession, compile_program, make_output
from mmdbg.probe.errors import ProbeRuntimeError
from tests.probe.conftest import boot


class Timers:
    """Wraps a machine, adding the timer and watchpoint API the probes use."""

    def __init__(self, m: Any):
        self._m = m
        self.timers: list[tuple[int, Any]] = []
        self.watches: list[tuple[int, int, str, Any]] = []
        self.cancelled = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._m, name)

    def add_timer(self, ns: int, cb: Any) -> Any:
        self.timers.append((ns, cb))
        outer = self

        class Handle:
            def cancel(self) -> None:
                outer.cancelled += 1

        return Handle()

    def add_watchpoint(self, addr: int, length: int, mode: str, cb: Any) -> Any:
        self.watches.append((addr, length, mode, cb))
        return None


def start(src: str, m: Any) -> tuple[ProbeSession, io.StringIO]:
    out = io.StringIO()
    sess = ProbeSession(compile_program(src, env={}), m, make_output("text", out, out), out)
    sess.attach()
    sess.run_begin()
    return sess, out


def test_interval_fires_on_the_timer_and_is_cancelled() -> None:
    m = Timers(boot())
    sess, out = start('interval:ms:100 { @ticks = count(); printf("tick %d\\n", cpu); }'
                      " i:1s { exit(); }", m)
    assert [ns for ns, _ in m.timers] == [100_000_000, 1_000_000_000]
    m.timers[0][1]()
    m.timers[0][1]()
    m.timers[1][1]()
    assert sess.exit_requested and m.cancelled == 2
    sess.finish()
    assert out.getvalue() == "tick 0\ntick 0\n\n\n@ticks: 2\n"


def test_profile_fires_on_every_cpu() -> None:
    m = Timers(boot("mem=64M cpus=3"))
    sess, out = start("profile:hz:99 { @[cpu] = count(); }", m)
    assert m.timers[0][0] == 1_000_000_000 // 99
    m.timers[0][1]()
    sess.finish()
    assert out.getvalue() == "\n\n@[0]: 1\n@[1]: 1\n@[2]: 1\n"


def test_watchpoint_uses_the_machine() -> None:
    m = Timers(boot())
    sess, out = start("watchpoint:0xffff888000100000:8:w { @hits = count(); }", m)
    assert m.watches[0][:3] == (0xFFFF888000100000, 8, "w")
    m.watches[0][3]()
    sess.finish()
    assert out.getvalue() == "\n\n@hits: 1\n"


def test_missing_machine_support_is_an_attach_error() -> None:
    class NoTimers:
        def __init__(self, m: Any) -> None:
            self._m = m

        def __getattr__(self, name: str) -> Any:
            if name == "add_timer":
                raise AttributeError(name)
            return getattr(self._m, name)

    prog = compile_program("interval:s:1 { }", env={})
    out = io.StringIO()
    sess = ProbeSession(prog, NoTimers(boot()), make_output("text", out, out), out)
    with pytest.raises(ProbeRuntimeError, match=r"machine.add_timer"):
        sess.attach()
