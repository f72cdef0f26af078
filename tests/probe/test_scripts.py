"""Every tool in scripts/ compiles, and the ones the simulation can drive today run end to end.

A script whose probes the simulation does not provide yet (page faults, fork, TLB, OOM) is
skipped with the missing probes named; it starts running here as soon as the simulation
registers them.  Workload: a fixed sequence of page allocations and frees (the named
scenarios of issue 5 will replace it).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmdbg.probe import compile_program
from mmdbg.probe.errors import ProbeCompileError
from tests.probe.conftest import run_program

SCRIPTS = sorted((Path(__file__).resolve().parents[2] / "scripts").glob("*.bt"))
UNSAFE = {"fault_inject.bt", "stop_on_high_order.bt"}
PARAMS = {"fault_inject.bt": ("2",), "stop_on_high_order.bt": ("3",)}
MISSING = ("No kernel function named", "does not fire it", "tracepoint not found")


def workload(m) -> None:
    pfns = [m.alloc_pages("GFP_KERNEL", o) for o in (0, 0, 1, 2, 3)]
    m.alloc_pages("GFP_HIGHUSER_MOVABLE", 0)
    m.alloc_pages("GFP_DMA", 1)
    m.free_pages(pfns[0], 0)
    m.free_pages(pfns[2], 1)


def test_there_are_at_least_twelve_tools_with_headers() -> None:
    assert len(SCRIPTS) >= 12
    for path in SCRIPTS:
        text = path.read_text()
        assert text.startswith("#!"), path.name
        assert f" * {path.name} - " in text, f"{path.name}: header comment saying what it shows"


def _compile_or_skip(path: Path):
    name = path.name
    try:
        return compile_program(path.read_text(), str(path), params=PARAMS.get(name, ()),
                               unsafe=name in UNSAFE, env={})
    except ProbeCompileError as e:
        errors = e.errors
        if errors and all(any(m in d.msg for m in MISSING) for d in errors):
            pytest.skip("the simulation does not provide yet: " + "; ".join(d.msg for d in errors))
        raise


@pytest.mark.parametrize("path", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_script_compiles(path: Path) -> None:
    _compile_or_skip(path)


def run_script(name: str) -> tuple[str, str, int]:
    path = next(p for p in SCRIPTS if p.name == name)
    _compile_or_skip(path)
    r = run_program(path.read_text(), workload, params=PARAMS.get(name, ()),
                    unsafe=name in UNSAFE)
    return r.out, r.err, r.rc


def test_alloc_order() -> None:
    out, err, rc = run_script("alloc_order.bt")
    assert rc == 0 and err == ""
    assert out == ("19 pages requested\n\n\n"
                   "@order:\n"
                   "[0]                    3 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "[1]                    2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@                  |\n"
                   "[2]                    1 |@@@@@@@@@@@@@@@@@                                   |\n"
                   "[3]                    1 |@@@@@@@@@@@@@@@@@                                   |\n"
                   "\n")


def test_alloc_latency() -> None:
    out, err, rc = run_script("alloc_latency.bt")
    assert rc == 0 and err == ""
    heads = re.findall(r"^@ns\[(\d+)\]:$", out, re.M)
    assert sorted(heads) == ["0", "1", "2", "3"]
    counts = [int(m) for m in re.findall(r"^\S.*?\s+(\d+) \|", out, re.M)]
    assert sum(counts) == 7
    assert "@failed" not in out and "@start" not in out


def test_pagealloc_zone_migratetype() -> None:
    out, err, rc = run_script("pagealloc_zone_migratetype.bt")
    assert rc == 0 and err == ""
    # unmovable allocations steal movable pageblocks (boot frees all memory as movable; how
    # many steals remain for the driver depends on what boot-time slab setup already took)
    fallbacks = re.findall(r"^@fallbacks\[0, 1\]: (\d+)$", out, re.M)
    assert len(fallbacks) == 1 and int(fallbacks[0]) >= 1
    assert out.startswith("\n\n@fallbacks[0, 1]: ")
    assert out.endswith("@pages[DMA32, 1]: 1\n"
                        "@pages[DMA, 0]: 2\n"
                        "@pages[DMA32, 0]: 16\n")


def test_memleak() -> None:
    out, err, rc = run_script("memleak.bt")
    assert rc == 0 and err == ""
    norm = re.sub(r"\+\d+", "+N", out)
    assert norm.startswith("\n\n@outstanding[\n        __alloc_pages+N\n")
    assert sum(int(n) for n in re.findall(r"^\]: (\d+)$", out, re.M)) == 5
    # outstanding: order 0 + 2 + 3 (GFP_KERNEL), a movable order 0 and a DMA order 1
    assert out.endswith("@outstanding_bytes: 65536\n")


def test_fault_inject_needs_unsafe_and_fails_high_orders() -> None:
    with pytest.raises(ProbeCompileError, match="unsafe function"):
        compile_program((SCRIPTS[0].parent / "fault_inject.bt").read_text(), params=("2",),
                        env={})
    out, err, rc = run_script("fault_inject.bt")
    assert rc == 0 and err == ""
    assert out == ("Failing page allocations of order >= 2\n\n\n"
                   "@injected[2]: 1\n"
                   "@injected[3]: 1\n")


def test_stop_on_high_order() -> None:
    out, err, rc = run_script("stop_on_high_order.bt")
    assert rc == 0
    assert out == "order-3 allocation by swapper/0 (pid 0), gfp GFP_KERNEL\n\n\n"
    assert err.startswith("Stopped by stop() in kprobe:__alloc_pages at ")


def test_pcp_activity() -> None:
    out, err, rc = run_script("pcp_activity.bt")
    assert rc == 0 and err == ""
    assert "@allocs[0]: 7\n" in out
