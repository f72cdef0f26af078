"""Execution control and inspection: breakpoints, stops, frames, watchpoints, probes, the
study-plan commands, and the transcripts of docs/debugger.md.

Everything goes through ``Session`` with the debugger's sim thread, as the REPL and command
files do.  The ``machine`` fixture checks consistency afterwards; the breakpoint state test
checks it at every stop.
"""

from __future__ import annotations

import io
import re
import signal
import threading
import time
from pathlib import Path

import pytest

import mmdbg
from mmdbg.shell import Session
from mmdbg.shell.debugger import STOPPED, body_line, get_debugger
from mmdbg.sim import trace

DOCS = Path(__file__).resolve().parent.parent / "docs"


def session(machine) -> tuple[Session, io.StringIO]:
    buf = io.StringIO()
    s = Session(machine, buf, buf, echo=True)
    get_debugger(s)
    return s, buf


def run(machine, text: str) -> str:
    s, buf = session(machine)
    s.run_lines(text.strip().splitlines())
    dbg = s.debugger
    if dbg.state == STOPPED:  # leave nothing parked
        s.execute("delete")
        s.execute("continue")
    return buf.getvalue()


def hog(p):
    a = p.mmap(1 << 20)
    yield from p.touch_chunks(a, 1 << 20)
    yield p.sleep(0.01)


def with_hog(machine):
    from mmdbg.workloads.api import spawn_program

    spawn_program(machine, "hog", hog)


def loose(text: str) -> str:
    """Line numbers, source lines and page addresses vary as the kernel files change."""
    text = re.sub(r"\.py:\d+", ".py:LINE", text)
    text = re.sub(r"line \d+\.", "line LINE.", text)
    text = re.sub(r"(?m)^\d+\t.*$", "LINE\tSOURCE", text)
    return re.sub(r"0xffffea[0-9a-f]+", "0xffffeaPAGE", text)


# ---------------------------------------------------------------------------------------
# breakpoints


def test_conditional_breakpoint_stops_with_gdb_banner(machine):
    kf = trace.find_kfunc("__alloc_pages")
    out = run(machine, """
break __alloc_pages if args.order >= 3
call __alloc_pages(GFP_KERNEL, 0)
call __alloc_pages(GFP_KERNEL, 3)
""")
    where = f"{kf.file}:{body_line(kf)}"
    assert "Breakpoint 1 at 0xffffffff81" in out
    assert f": file {kf.file}, line {body_line(kf)}." in out
    assert ("\nBreakpoint 1, __alloc_pages (gfp_mask=0xcc0, order=3, preferred_nid=0, "
            f"nodemask=0x0) at {where}\n") in out
    # the order-0 call did not stop
    assert out.count("Breakpoint 1, ") == 1


def test_bt_finish_continue_and_value_history(machine):
    s, buf = session(machine)
    s.run_lines(["break get_page_from_freelist if args.order == 2",
                 "call alloc_pages(GFP_KERNEL, 2)", "bt"])
    out = buf.getvalue()
    assert re.search(r"#0  get_page_from_freelist \(gfp_mask=0xcc0, order=2, .*\n"
                     r" #1  __alloc_pages \(gfp_mask=0xcc0, order=2, .*\n"
                     r" #2  alloc_pages \(gfp_mask=0xcc0, order=2\) at mm/page_alloc.py:\d+\n"
                     r"    \[entered from the shell: call alloc_pages\(GFP_KERNEL, 2\)\]", out)
    assert out.splitlines()[-6].startswith("PID: 0      TASK: ")
    s.run_lines(["finish"])
    out = buf.getvalue()
    assert "Run till exit from #0  get_page_from_freelist (gfp_mask=0xcc0, order=2" in out
    m = re.search(r"Value returned is \$1 = \(struct page \*\) (0xffffea[0-9a-f]+)", out)
    assert m
    s.run_lines(["continue"])
    assert buf.getvalue().endswith(f"Continuing.\n$2 = (struct page *) {m.group(1)}\n\n")
    assert s.debugger.state != STOPPED


def test_frames_locals_and_print(machine):
    s, buf = session(machine)
    s.run_lines(["break get_page_from_freelist", "call __alloc_pages(GFP_KERNEL, 1)",
                 "info locals", "info args", "up", "info locals", "p order", "p/x gfp_mask",
                 "p ac->highest_zoneidx", "frame 5", "down", "down"])
    out = buf.getvalue()
    assert "No locals.  (the function has been entered but has not started" in out
    assert "gfp_mask = 0xcc0\norder = 1\nalloc_flags = 0x1\n" in out
    assert re.search(r"#1  __alloc_pages \(gfp_mask=0xcc0, order=1, .*\n\d+\t", out)
    assert "\nalloc_flags = 0x1\n" in out.split("mmdbg> up")[1]
    assert "$1 = 1\n" in out and "$2 = 0xcc0\n" in out and "$3 = 2\n" in out
    assert "No frame at level 5." in out
    assert "Bottom (innermost) frame selected; you cannot go down." in out
    s.run_lines(["delete", "continue"])


def test_tbreak_ignore_disable_enable_and_table(machine):
    out = run(machine, """
tbreak __alloc_pages
info breakpoints
call __alloc_pages(GFP_KERNEL, 0)
continue
info breakpoints
break __alloc_pages
ignore 2 1
condition 2 args.order > 0
info breakpoints
call __alloc_pages(GFP_KERNEL, 1)
call __alloc_pages(GFP_KERNEL, 1)
continue
disable 2
call __alloc_pages(GFP_KERNEL, 1)
enable once 2
info breakpoints
condition 2
ignore 7 1
""")
    assert "Temporary breakpoint 1 at 0xffffffff81" in out
    assert re.search(r"1       breakpoint     del  y   0xffffffff81[0-9a-f]+ in __alloc_pages "
                     r"at mm/page_alloc.py:\d+\n", out)
    assert "\nTemporary breakpoint 1, __alloc_pages (gfp_mask=0xcc0, order=0" in out
    assert "Will ignore next crossing of breakpoint 2." in out
    assert "\tstop only if args.order > 0\n" in out
    # first order-1 call ignored, the second stops; disabled: no stop
    assert out.count("\nBreakpoint 2, ") == 1
    assert "2       breakpoint     dis  y " in out
    assert "\tbreakpoint already hit 2 times\n" in out
    assert "Breakpoint 2 now unconditional." in out
    assert "No breakpoint number 7." in out


def test_kretprobe_breakpoint_and_tracepoint_breakpoint(machine):
    out = run(machine, """
break kretprobe:__alloc_pages if retval != 0
call __alloc_pages(GFP_KERNEL, 0)
continue
delete
break kmem:mm_page_alloc if args.order == 2
call __alloc_pages(GFP_KERNEL, 2)
bt
""")
    assert "(on return)" in out
    assert re.search(r"Breakpoint 1, __alloc_pages .*\nValue returned is \$1 = "
                     r"\(struct page \*\) 0xffffea", out)
    assert "Breakpoint 2 at tracepoint kmem:mm_page_alloc" in out
    assert re.search(r"Breakpoint 2, tracepoint:kmem:mm_page_alloc \(pfn=0x[0-9a-f]+, order=2",
                     out)


def test_bad_locations_and_conditions(machine):
    out = run(machine, """
break __alloc_pagez
break __alloc_pages if args.ordr > 1
break __alloc_pages if args.order >
info breakpoints
finish
bt
""")
    assert 'Function "__alloc_pagez" not defined. (did you mean: __alloc_pages' in out
    assert "condition:1:1-10: ERROR: fentry:__alloc_pages has no args field 'ordr'" in out
    assert "No breakpoints or watchpoints." in out
    assert "The program is not being run." in out
    assert "No stack." in out


def test_step_next_and_until_in_a_workload(machine):
    with_hog(machine)
    out = run(machine, """
break do_anonymous_page
run
step
bt
next
delete
until __free_pages
""")
    assert "\nBreakpoint 1, do_anonymous_page (vmf=<vm_fault>) at mm/memory.py:" in out
    after = out.split("mmdbg> step\n")[1]
    first = after.splitlines()[0]
    assert re.match(r"\w+ \(.*\) at [\w/]+\.py:\d+$", first)
    assert "[user page fault at address 0x" in out


def test_watchpoint_on_a_struct_page_field(machine):
    s, buf = session(machine)
    s.run_lines(["call __alloc_pages(GFP_KERNEL, 0)"])
    pfn = (s.history_value(1)[1] - 0xFFFFEA0000000000) // 64
    s.run_lines([f"watch page {pfn} _refcount", "call __free_pages($1, 0)", "bt"])
    out = buf.getvalue()
    assert f"Hardware watchpoint 1: page {pfn} _refcount" in out
    assert "\nOld value = 1\nNew value = 0\n" in out
    assert "__free_pages" in out.split("mmdbg> bt")[1]
    s.run_lines(["delete", "continue", "info watchpoints"])
    assert buf.getvalue().endswith("No watchpoints.\n\n")


def test_memory_watchpoints(machine):
    out = run(machine, """
watch -l 0xffff888001000000
wr 0xffff888001000000 0x1122
continue
rwatch -l 0xffff888001000000,2
awatch -l 0x1000000 4
watch zone
rwatch page 1 flags
""")
    assert "\nOld value = 0\nNew value = 4386\n" in out
    assert "Hardware read watchpoint 2: -location 0xffff888001000000,2" in out
    assert "Cannot watch address 0x1000000" in out
    assert "Expression cannot be implemented with read/access watchpoint." in out


def test_commands_silent_continue(machine):
    s, buf = session(machine)
    s.run_lines(["break __alloc_pages if args.order == 1", "commands", "silent",
                 "p order", "continue", "end", "call __alloc_pages(GFP_KERNEL, 1)",
                 "call __alloc_pages(GFP_KERNEL, 1)", "info breakpoints"])
    out = buf.getvalue()
    assert "Breakpoint 1, " not in out
    assert out.count("$1 = 1") == 1 and "$3 = 1" in out
    assert "        silent\n        p order\n        continue\n" in out
    assert s.debugger.state != STOPPED


def test_machine_consistent_at_every_stop():
    """The breakpoint state test: check_consistency() at each stop of a workload."""
    m = mmdbg.boot("mem=1G cpus=2", seed=3)
    with_hog(m)
    s, buf = session(m)
    dbg = s.debugger
    for loc in ("__alloc_pages", "get_page_from_freelist", "do_anonymous_page",
                "handle_mm_fault", "free_frozen_pages", "kmem:mm_page_alloc"):
        s.execute(f"break {loc}")
    s.execute("run 20ms")
    stops = 0
    while dbg.state == STOPPED and stops < 150:
        m.check_consistency()
        stops += 1
        s.execute("continue")
    assert stops >= 50, buf.getvalue()[-2000:]
    s.execute("delete")
    if dbg.state == STOPPED:
        s.execute("continue")
    m.check_consistency()


def test_ctrl_c_stops_the_simulation_not_the_shell(machine):
    s, buf = session(machine)
    dbg = s.debugger
    state = {"stop": False}

    def runner(ns):
        machine.clock.ns += ns
        pfn = machine.alloc_pages("GFP_KERNEL", 0)
        machine.free_pages(pfn, 0)
        time.sleep(0.002)
        return "idle" if state["stop"] else "duration"

    dbg.sim_runner = runner
    main = threading.main_thread().ident
    t = threading.Timer(0.3, lambda: signal.pthread_kill(main, signal.SIGINT))
    t.start()
    s.execute("run")
    t.join()
    out = buf.getvalue()
    assert "\nProgram received signal SIGINT, Interrupt.\n" in out
    assert dbg.state == STOPPED
    machine.check_consistency()
    state["stop"] = True
    s.execute("continue")
    assert dbg.state != STOPPED
    assert re.search(r"\[simulation ran \d+\.\d{9} s; clock at", buf.getvalue())


def test_live_probe_stop_and_maps(machine):
    with_hog(machine)
    out = run(machine, """
tracepoint:kmem:mm_page_alloc { @allocs[args.order] = count(); }
kprobe:do_anonymous_page { @n = count(); if (@n == 10) { stop(); } }
run
bt
probes
print @n
clear @n
print @n
detach 2
probes
detach 9
""")
    assert out.count("Attached 1 probe") == 2
    assert "Stopped by stop() in kprobe:do_anonymous_page" in out
    assert "\n #0  do_anonymous_page (vmf=<vm_fault>) at mm/memory.py:" in out
    assert re.search(r"  1  attached +\d+  tracepoint:kmem:mm_page_alloc", out)
    assert "@n: 10\n" in out
    assert "detach: no probe program 9" in out


def test_probe_compile_error_is_reported(machine):
    out = run(machine, "kprobe:__alloc_pages { @x = nosuch(); }\nprobes")
    assert "stdin:1:" in out and "ERROR" in out
    assert "No probe programs attached." in out


# ---------------------------------------------------------------------------------------
# inspection commands


def test_kmem_address_struct_and_p(machine):
    out = run(machine, """
kmem 0xffffea0000040000
kmem 0xffff888001000000
p *pfn_to_page(4096)
struct page._refcount,flags 4096 2
p node_data[0]->node_zones[1].free_area[10].nr_free
p jiffies + 1
p nosuch
struct nosuch 0x1
""")
    z = machine.zones[1]
    assert "struct page: pfn 4096 (0x1000)" in out
    assert "direct map: physical 0x1000000, pfn 4096 (0x1000) +0x0" in out
    assert re.search(r"\$1 = \{\n  flags = 0x[0-9a-f]+,\n  _refcount = 1,\n  _mapcount = -1,", out)
    assert out.count("struct page {\n  _refcount = 1,\n  flags = 0x") == 2
    assert f"$2 = {z.free_area[10].nr_free}\n" in out
    assert 'No symbol "nosuch" in current context.' in out
    assert "struct: invalid data structure reference: nosuch" in out


def test_set_context_foreach_search_wr_sysctl_alias_source(machine, tmp_path):
    f = tmp_path / "cmds"
    f.write_text("p 1 + 2\n# comment\nsysctl vm.swappiness\n")
    out = run(machine, f"""
set 0
set 99
wr 0xffff888001000008 0xcafe
search -s 0xffff888001000000 -l 4096 cafe
search -c nothing-here
sysctl -w vm.swappiness=33
sysctl vm.nosuch
alias kf kmem -f
kf | head -1
alias
source {f}
foreach active bt
""")
    assert '    PID: 0\nCOMMAND: "swapper/0"\n' in out
    assert "set: invalid task or pid value: 99" in out
    assert "ffff888001000008: cafe\n" in out
    assert "vm.swappiness = 33\n" in out
    assert "sysctl: cannot stat /proc/sys/vm/nosuch: No such file or directory" in out
    assert "runtime  kf       kmem -f" in out
    assert "NODE\n" in out
    assert "$1 = 3\n" in out and out.count("vm.swappiness = 33") == 2
    assert 'PID: 0      TASK: ffffffff82a0c940  CPU: 0   COMMAND: "swapper/0"' in out


def test_info_and_help_pages(machine):
    out = run(machine, "info\ninfo nosuch\ninfo program\nhelp break\nhelp finish")
    assert "info breakpoints    -- breakpoints and watchpoints, with hit counts" in out
    assert 'Undefined info command: "nosuch".' in out
    assert "The program being debugged is not being run." in out
    assert "SYNOPSIS\n  break [LOCATION] [if COND]" in out
    assert "Run till exit" not in out.split("help finish")[0]


def test_internal_error_keeps_the_shell_and_machine(machine, monkeypatch):
    from mmdbg.shell.commands import inspect as insp

    monkeypatch.setattr(insp, "identify", lambda m, a: 1 / 0)
    out = run(machine, "kmem 0xffffea0000040000\np 2")
    assert "mmdbg: kmem: internal error: ZeroDivisionError" in out
    assert "$1 = 2" in out


# ---------------------------------------------------------------------------------------
# study-plan commands


def test_free_vmstat_numastat_pmap(machine):
    with_hog(machine)
    machine.run(3_000_000)
    out = run(machine, "free\nfree -m\nvmstat\nnumastat\npmap 3\npmap -x 3\npmap 999")
    lines = out.splitlines()
    i = lines.index("mmdbg> free")
    assert lines[i + 1] == ("               total        used        free      shared  buff/cache"
                            "   available")
    assert re.fullmatch(r"Mem: {4}( +\d+){6}", lines[i + 2])
    assert len(lines[i + 2].split("Mem:")[0] + "Mem:") + 0 == 4
    assert lines[i + 3].startswith("Swap:")
    assert " r  b   swpd   free   buff  cache   si   so    bi    bo   in   cs us sy id wa st gu" \
        in out
    assert re.search(r"numa_hit\s+\d+", out)
    assert "3:   hog" in out and "[ stack ]" in out and " total " in out
    assert "Address           Kbytes     RSS   Dirty Mode  Mapping" in out
    assert re.search(r"\n0000[0-9a-f]{12}    1024    1024    1024 rw--- \[ anon \]\n", out)
    assert "pmap: process 999 not found" in out


def test_perf_stat_and_trace_cmd(machine):
    with_hog(machine)
    out = run(machine, """
trace-cmd record -e kmem:mm_page_alloc run 1ms
perf stat -e page-faults,kmem:mm_page_alloc run 2ms
trace-cmd report | head -3
trace-cmd record -e nosuch:event run 1ms
""")
    assert " Performance counter stats for 'run 2ms':" in out
    assert re.search(r"\n +\d+      page-faults +\n", out)
    assert re.search(r"CPUs 0-1: \d+ events recorded", out)
    rep = out.split("trace-cmd report | head -3\n")[1]
    assert rep.startswith("cpus=2\n")
    assert re.search(r"^ +hog-3 +\[\d{3}\] \d+\.\d{6}: mm_page_alloc: page=", rep, re.M)
    assert "trace-cmd: no simulated tracepoint matches" in out


def test_thp_sysfs_write_is_recorded(machine):
    out = run(machine, """
cat /sys/kernel/mm/transparent_hugepage/enabled
echo always > /sys/kernel/mm/transparent_hugepage/enabled
cat /sys/kernel/mm/transparent_hugepage/enabled
echo sometimes > /sys/kernel/mm/transparent_hugepage/enabled
cat /sys/kernel/mm/transparent_hugepage/defrag
""")
    assert "always [madvise] never\n" in out
    assert "[always] madvise never\n" in out
    assert "echo: write error: Invalid argument" in out
    assert "always defer defer+madvise [madvise] never" in out
    assert machine.thp["enabled"] == "always"


# ---------------------------------------------------------------------------------------
# docs/debugger.md: every transcript replays


def _doc_blocks():
    text = (DOCS / "debugger.md").read_text()
    return re.findall(r"```mmdbg-session\n(.*?)```", text, re.S)


@pytest.mark.parametrize("block", _doc_blocks(), ids=lambda b: b.splitlines()[0][7:40])
def test_docs_transcripts(block):
    m = mmdbg.boot("mem=1G cpus=2")
    s, buf = session(m)
    cmds = [ln[len("mmdbg> "):] for ln in block.splitlines() if ln.startswith("mmdbg> ")]
    s.run_lines(cmds)
    assert loose(buf.getvalue().rstrip("\n")) == loose(block.rstrip("\n"))
    if s.debugger.state == STOPPED:
        s.run_lines(["delete", "continue"])
    m.check_consistency()
