"""Helpers for the probe-language tests: compile, attach to a small machine, run, capture."""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from mmdbg.probe import ProbeSession, compile_program, make_output


@dataclass
class Run:
    out: str
    err: str
    rc: int
    session: Any


def boot(cmdline: str = "mem=64M cpus=2") -> Any:
    from mmdbg.sim.machine import boot as _boot

    return _boot(cmdline, seed=0).activate()


def run_program(src: str, drive: Callable[[Any], None] | None = None, *, fmt: str = "text",
                params: tuple[str, ...] = (), unsafe: bool = False,
                config: dict[str, Any] | None = None, machine: Any = None) -> Run:
    """Compile ``src``, attach it to a fresh machine, run BEGIN, ``drive(machine)``, finish."""
    m = machine if machine is not None else boot()
    prog = compile_program(src, params=params, unsafe=unsafe, config=config, env={})
    out, err = io.StringIO(), io.StringIO()
    sess = ProbeSession(prog, m, make_output(fmt, out, err), err)
    sess.attach()
    sess.run_begin()
    if drive is not None and not sess.exit_requested:
        drive(m)
    sess.finish()
    return Run(out.getvalue(), err.getvalue(), sess.exit_code, sess)


def compile_error(src: str, **kw: Any) -> str:
    """The rendered diagnostics of a program that must not compile."""
    from mmdbg.probe.errors import ProbeCompileError

    with pytest.raises(ProbeCompileError) as ei:
        compile_program(src, env={}, **kw)
    return ei.value.render()


def alloc(m: Any, n: int, order: int = 0, gfp: str = "GFP_KERNEL") -> list[int]:
    pfns = []
    for _ in range(n):
        pfn = m.alloc_pages(gfp, order)
        if pfn is not None:
            pfns.append(pfn)
    return pfns


@pytest.fixture
def machine() -> Any:
    return boot()
