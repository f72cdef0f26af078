"""--trace (ftrace text lines) and --stat (perf stat's table)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from mmdbg.probe.ftrace import (
    FtraceSession,
    PrintFormat,
    TraceError,
    run_trace_cli,
    select_tracepoints,
    trace_line,
)
from mmdbg.probe.perfstat import PerfStat, run_stat_cli
from tests.probe.conftest import boot

TRACEPOINTS = json.loads((Path(__file__).resolve().parents[2] / "mmdbg" / "sim" / "data" /
                          "tracepoints.json").read_text())


def test_every_print_format_compiles_and_renders() -> None:
    for rec in TRACEPOINTS:
        fields = {f["name"]: f["type"] for f in rec["fields"]}
        pf = PrintFormat(rec["printk"], fields)
        pf.render({n: ("" if "char" in t else 0) for n, t in fields.items()})


def test_mm_page_alloc_format_like_the_kernel() -> None:
    rec = next(r for r in TRACEPOINTS if r["name"] == "mm_page_alloc")
    pf = PrintFormat(rec["printk"], {f["name"]: f["type"] for f in rec["fields"]})
    assert pf.render({"pfn": 0x1234, "order": 0, "gfp_flags": 0x100cca | 0x100,
                      "migratetype": 1}) == (
        "page=ffffea0000048d00 pfn=0x1234 order=0 migratetype=1 "
        "gfp_flags=GFP_HIGHUSER_MOVABLE|__GFP_ZERO")
    # a failed allocation: pfn == -1UL prints a NULL page and pfn 0
    assert pf.render({"pfn": -1, "order": 3, "gfp_flags": 0, "migratetype": 0}) == (
        "page=0000000000000000 pfn=0x0 order=3 migratetype=0 gfp_flags=none")


def test_trace_line_columns() -> None:
    assert trace_line("cat", 1234, 2, 12345_678901_000, "mm_page_free", "x") == (
        "             cat-1234    [002] ..... 12345.678901: mm_page_free: x\n")
    assert trace_line("cat", 1234, 2, 1_500_000, "e", "x", irq_info=False) == (
        "             cat-1234    [002]      0.001500: e: x\n")


def test_session_lines_and_header() -> None:
    m = boot()
    out = io.StringIO()
    s = FtraceSession(m, "kmem:mm_page_alloc,kmem:mm_page_free", out)
    assert s.attach() == 2
    pfn = m.alloc_pages("GFP_KERNEL", 1)
    m.free_pages(pfn, 1)
    s.detach()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("          <idle>-0       [000] .....     0.000000: mm_page_alloc: page=")
    assert lines[0].endswith(f"pfn={pfn:#x} order=1 migratetype=0 gfp_flags=GFP_KERNEL")
    assert lines[1].endswith(f"mm_page_free: page={0xffffea0000000000 + pfn * 64:016x} "
                             f"pfn={pfn:#x} order=1")
    assert s.header().splitlines()[2] == "# entries-in-buffer/entries-written: 2/2   #P:2"


def test_select_tracepoints_and_errors() -> None:
    names = [tp.full_name for tp in select_tracepoints("kmem:mm_page_free*, t:kmem:mm_page_alloc")]
    assert names == ["kmem:mm_page_alloc", "kmem:mm_page_free", "kmem:mm_page_free_batched"]
    with pytest.raises(TraceError, match="no simulated tracepoint matches 'vmscan:nope'"):
        select_tracepoints("vmscan:nope")


def test_run_trace_cli() -> None:
    m = boot()
    out, err = io.StringIO(), io.StringIO()
    rc = run_trace_cli("kmem:mm_page_alloc", m, lambda until: m.alloc_pages("GFP_KERNEL", 0),
                       out, err, irq_info=False, header=True)
    assert rc == 0 and err.getvalue() == ""
    text = out.getvalue()
    assert text.startswith("# tracer: nop\n#\n# entries-in-buffer/entries-written: 1/1   #P:2\n")
    assert "#           TASK-PID     CPU#     TIMESTAMP  FUNCTION\n" in text
    assert run_trace_cli("nope:*", m, lambda until: None, out, err) == 2


def test_perf_stat_table() -> None:
    m = boot()
    out, err = io.StringIO(), io.StringIO()

    def workload(until):
        for _ in range(3):
            m.alloc_pages("GFP_KERNEL", 0)

    assert run_stat_cli("kmem:mm_page_alloc,no:such", m, workload, out, err, "scenario t") == 0
    assert out.getvalue() == (
        "\n Performance counter stats for 'scenario t':\n\n"
        + "                 3      kmem:mm_page_alloc".ljust(91) + "\n"
        + "   <not supported>      no:such".ljust(91) + "\n"
        + "\n       0.000000000 seconds time elapsed\n\n")
    with pytest.raises(ValueError, match="no events given"):
        PerfStat(m, " ,")
