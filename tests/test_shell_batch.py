"""The shell's commands through a Session: exact formats, kernel numbers, error handling.

Every test drives the same code the CLI, command files and the REPL use
(``mmdbg.shell.Session``).  The ``machine`` fixture checks consistency afterwards.  Nothing
here may touch the host's /proc: writes go through the simulated machine only.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import mmdbg
from mmdbg.shell import Session, run_commands
from mmdbg.shell.errors import CommandError
from mmdbg.shell.pipeline import parse_line
from mmdbg.shell.registry import REGISTRY, Registry, command, load_commands
from mmdbg.shell.session import FAILED, OK, USAGE, interactive_loop
from mmdbg.sim.include.gfp import GFP_KERNEL
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.mm_types import pfn_to_page_addr

DOCS = Path(__file__).resolve().parent.parent / "docs"


def run(machine, text: str) -> str:
    return run_commands(machine, text)


def session(machine) -> tuple[Session, io.StringIO]:
    buf = io.StringIO()
    return Session(machine, buf, buf), buf


# ---------------------------------------------------------------------------------------
# errors: unknown commands, usage, internal errors


def test_unknown_command_suggests_and_next_command_runs(machine):
    out = run(machine, "kmme -i\nsys")
    lines = out.splitlines()
    assert lines[0] == "mmdbg: unknown command: kmme (did you mean: kmem?)"
    assert "        CPUS: 2" in lines


def test_unknown_command_without_near_name(machine):
    assert run(machine, "frobnicate") == "mmdbg: unknown command: frobnicate\n"


def test_bad_option_prints_usage(machine):
    s, buf = session(machine)
    assert s.execute("kmem -q") == USAGE
    assert buf.getvalue().splitlines() == [
        "kmem: option -q not recognized",
        "Usage:",
        "  kmem -i | -f [pfn|address] | -F | -z | -p [-P] [pfn|address ...] | -s [CACHE ...] | "
        "-S CACHE | address",
        'Enter "help kmem" for details.',
    ]
    assert s.execute("sys") == OK


@pytest.mark.parametrize("line", ["kmem", "kmem -i -z", "cat", "sys extra", "call",
                                  "set debug maybe", "quit a", "log -x", "kmem -p nonsense"])
def test_bad_arguments_are_usage_errors(machine, line):
    s, buf = session(machine)
    assert s.execute(line) == USAGE, buf.getvalue()
    assert "Usage:" in buf.getvalue()
    assert "Traceback" not in buf.getvalue()


def _boom_registry() -> Registry:
    reg = Registry()

    @command("boom", summary="fail", registry=reg)
    def boom(ctx, args):
        ctx.print("before")
        return 1 // 0

    reg.register(load_commands().lookup("set"))
    reg.register(load_commands().lookup("sys"))
    return reg


def test_internal_error_is_one_line_and_shell_goes_on(machine):
    buf = io.StringIO()
    s = Session(machine, buf, buf, registry=_boom_registry())
    assert s.execute("boom") == FAILED
    assert s.execute("sys") == OK
    lines = buf.getvalue().splitlines()
    assert lines[0] == "before"
    assert lines[1] == ('mmdbg: boom: internal error: ZeroDivisionError: integer division or '
                        'modulo by zero (enter "set debug on" to see the traceback)')
    assert lines[2].strip().startswith("KERNEL:")
    assert "Traceback" not in buf.getvalue()


def test_set_debug_on_shows_the_traceback(machine):
    buf = io.StringIO()
    s = Session(machine, buf, buf, registry=_boom_registry())
    s.execute("set debug on")
    s.execute("boom")
    text = buf.getvalue()
    assert "mmdbg: boom: internal error: ZeroDivisionError" in text
    assert "Traceback (most recent call last):" in text


def test_errors_go_to_err_and_results_to_out(machine):
    out, err = io.StringIO(), io.StringIO()
    s = Session(machine, out, err)
    s.run_lines(["kmme", "cat /proc/sys/vm/watermark_scale_factor", "cat /proc/nope"])
    assert out.getvalue() == "10\n"
    assert err.getvalue() == ("mmdbg: unknown command: kmme (did you mean: kmem?)\n"
                              "cat: /proc/nope: No such file or directory\n")
    assert s.errors == 2


def test_comments_blank_lines_and_quit(machine):
    s, buf = session(machine)
    status = s.run_lines(["# a comment", "", "   // another", "echo one", "quit 3", "echo two"])
    assert buf.getvalue() == "one\n"
    assert status == 3 and s.quit_requested


def test_echo_mode_prints_a_transcript(machine):
    buf = io.StringIO()
    s = Session(machine, buf, buf, echo=True)
    s.run_lines(["# not echoed", "echo hi", "cat /proc/sys/vm/watermark_scale_factor"])
    assert buf.getvalue() == ("mmdbg> echo hi\nhi\n\n"
                              "mmdbg> cat /proc/sys/vm/watermark_scale_factor\n10\n\n")


def test_unterminated_quote(machine):
    s, buf = session(machine)
    assert s.execute("echo 'abc") == USAGE
    assert buf.getvalue() == "echo: no closing quotation\n"


def test_interactive_loop_runs_lines_until_eof(machine):
    lines = iter(["echo hello", "kmme"])

    def fake_input(prompt):
        assert prompt == "mmdbg> "
        try:
            return next(lines)
        except StopIteration:
            raise EOFError from None

    s, buf = session(machine)
    assert interactive_loop(s, input_fn=fake_input) == 0
    assert buf.getvalue() == "hello\nmmdbg: unknown command: kmme (did you mean: kmem?)\n\n"


# ---------------------------------------------------------------------------------------
# pipes and redirection


def test_parse_line_keeps_bars_inside_parentheses_and_quotes():
    p = parse_line("call alloc_pages(GFP_KERNEL|__GFP_ZERO, 0)")
    assert p.command == "call alloc_pages(GFP_KERNEL|__GFP_ZERO, 0)" and not p.filters
    p = parse_line("echo 'a | grep b' | grep a")
    assert p.command == "echo 'a | grep b'" and p.filters == [["grep", "a"]]
    p = parse_line("kmem -f | grep -v ' 0$' | head -3 > /tmp/x")
    assert p.command == "kmem -f"
    assert p.filters == [["grep", "-v", " 0$"], ["head", "-3"]]
    assert p.redirect.path == "/tmp/x" and not p.redirect.append
    assert parse_line("log >> out.txt").redirect.append
    assert parse_line("echo 'x > y'").redirect is None
    assert parse_line("p a|b").command == "p a|b"  # not a known filter: not a pipe


def test_grep_head_tail_wc(machine):
    assert run(machine, "log | grep -c 'Linux version'") == "1\n"
    assert run(machine, "kmem -f | head -2") == "NODE\n  0\n"
    assert run(machine, "kmem -f | tail -n 1") == (
        f"nr_free_pages: {machine.nr_free_pages()}  (verified)\n")
    assert run(machine, "sys | grep -i ' cpus:' | wc -l") == "1\n"
    assert run(machine, "sys | grep -v :") == ""
    assert run(machine, "log | grep '[unclosed'").startswith("grep: invalid regular expression")


def test_redirect_to_a_host_file(machine, tmp_path):
    target = tmp_path / "out.txt"
    run(machine, f"echo one > {target}\necho two >> {target}\nsys | grep CPUS >> {target}")
    assert target.read_text() == "one\ntwo\n        CPUS: 2\n"


def test_redirect_never_reaches_the_hosts_proc(machine, tmp_path):
    s, buf = session(machine)
    # absolute /proc, /sys, /dev paths are the machine's
    for p in ("/proc/sys/vm/x", "//proc/x", "/tmp/../proc/sys/vm/x", "/sys/kernel/mm/x", "/dev/x"):
        assert s.is_virtual_path(p), p
    assert not s.is_virtual_path("/tmp/x") and not s.is_virtual_path("relative")
    # a host path that resolves into /proc is refused (the target does not exist anyway)
    link = tmp_path / "link"
    link.symlink_to("/proc/mmdbg-test-does-not-exist")
    assert s.execute(f"echo 1 > {link}") == FAILED
    assert "refusing to write to the host's /proc/mmdbg-test-does-not-exist" in buf.getvalue()
    assert s.execute("echo discarded > /dev/null") == OK


# ---------------------------------------------------------------------------------------
# cat / echo / ls on the virtual tree


def test_echo_cat_roundtrip_min_free_kbytes(machine):
    old = machine.sysctl["vm.min_free_kbytes"]
    dma32 = machine.zones[1]
    min_before = dma32.min_wmark_pages()
    out = run(machine, "cat /proc/sys/vm/min_free_kbytes\n"
                       "echo 16384 > /proc/sys/vm/min_free_kbytes\n"
                       "cat /proc/sys/vm/min_free_kbytes")
    assert out == f"{old}\n16384\n"
    assert machine.sysctl["vm.min_free_kbytes"] == 16384
    assert dma32.min_wmark_pages() > min_before  # the handler recomputed the watermarks


@pytest.mark.parametrize("bad", ["abc", "-1", "12x", "''", "1 2"])
def test_echo_bad_value_is_refused_and_leaves_value(machine, bad):
    old = machine.sysctl["vm.min_free_kbytes"]
    s, buf = session(machine)
    assert s.execute(f"echo {bad} > /proc/sys/vm/min_free_kbytes") == FAILED
    assert buf.getvalue() == "echo: write error: Invalid argument\n"
    assert machine.sysctl["vm.min_free_kbytes"] == old
    assert run(machine, "cat /proc/sys/vm/min_free_kbytes") == f"{old}\n"


def test_echo_out_of_range_watermark_scale_factor(machine):
    out = run(machine, "echo 0 > /proc/sys/vm/watermark_scale_factor\n"
                       "echo 3001 > /proc/sys/vm/watermark_scale_factor\n"
                       "cat /proc/sys/vm/watermark_scale_factor")
    assert out == "echo: write error: Invalid argument\n" * 2 + "10\n"


def test_echo_to_missing_or_readonly_file(machine):
    out = run(machine, "echo 1 > /proc/sys/vm/nope\necho 1 > /proc/sys/vm")
    assert out == ("mmdbg: /proc/sys/vm/nope: No such file or directory\n"
                   "mmdbg: /proc/sys/vm: Is a directory\n")


def test_echo_prints_without_redirect(machine):
    assert run(machine, "echo hello   world\necho -n x") == "hello world\nx"


def test_cat_errors(machine):
    out = run(machine, "cat /proc/nope\ncat /proc/sys/vm /proc/sys/vm/swappiness")
    assert out == ("cat: /proc/nope: No such file or directory\n"
                   "cat: /proc/sys/vm: Is a directory\n60\n")


def test_ls(machine):
    out = run(machine, "ls /proc/sys/vm").splitlines()
    assert "min_free_kbytes" in out and "watermark_scale_factor" in out
    assert "proc/" in run(machine, "ls /").splitlines()
    assert run(machine, "ls /proc/nope") == (
        "ls: cannot access '/proc/nope': No such file or directory\n")


# ---------------------------------------------------------------------------------------
# call


def test_call_alloc_prints_gdb_value_and_matches_the_kernel_path(machine):
    twin = mmdbg.boot(machine.config.cmdline, seed=machine.seed)
    expect = twin.alloc_pages(GFP_KERNEL, 3)
    out = run(machine, "call __alloc_pages(GFP_KERNEL, 3)")
    assert out == f"$1 = (struct page *) {pfn_to_page_addr(expect):#x}\n"
    assert re.fullmatch(r"\$1 = \(struct page \*\) 0xffffea[0-9a-f]{10}\n", out)


def test_call_free_by_value_history_and_by_pfn(machine):
    free0 = machine.nr_free_pages()
    s, buf = session(machine)
    s.run_lines(["call __alloc_pages(GFP_KERNEL, 3)", "call __free_pages($1, 3)",
                 "call alloc_pages(GFP_KERNEL|__GFP_ZERO, 0)"])
    addr = s.history_value(2)[1]
    pfn = (addr - pfn_to_page_addr(0)) // 64
    assert machine.page(pfn)._refcount == 1
    s.run_lines([f"call __free_pages({pfn}, 0)", "call drain_all_pages(NULL)"])
    assert machine.nr_free_pages() == free0
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and lines[1].startswith("$2 = (struct page *) 0xffffea")


def test_call_null_result(machine):
    out = run(machine, "call __alloc_pages(GFP_KERNEL|__GFP_NOWARN, 11)\n"
                       "call alloc_pages_node(0, GFP_KERNEL, 2)")
    lines = out.splitlines()
    assert lines[0] == "$1 = (struct page *) 0x0"
    assert lines[1].startswith("$2 = (struct page *) 0xffffea")


@pytest.mark.parametrize("line, message", [
    ("call foo(1)", 'No symbol "foo" in current context.'),
    ("call __alloc_pages(GFP_FOO, 0)", 'No symbol "GFP_FOO" in current context.'),
    ("call __alloc_pages(GFP_KERNEL)", "Too few arguments in function call."),
    ("call __free_pages(1, 2, 3)", "Too many arguments in function call."),
    ("call alloc_pages(GFP_KERNEL,, 0)", "A syntax error in expression, near `GFP_KERNEL,, 0'."),
    ("call alloc_pages GFP_KERNEL", "A syntax error in expression, near `alloc_pages GFP_KERNEL'."),
    ("call __free_pages($1, 0)", "History is empty."),
    ("call __free_pages(NULL, 0)", "Cannot access memory at address 0x0"),
    ("call __free_pages(0xffffea0000000001, 0)",
     "Cannot access memory at address 0xffffea0000000001"),
])
def test_call_errors_are_gdb_style(machine, line, message):
    s, buf = session(machine)
    assert s.execute(line) == FAILED
    assert buf.getvalue() == message + "\n"


def test_call_refuses_internal_functions(machine):
    out = run(machine, "call __rmqueue_smallest(0, 0, 0)")
    assert out.startswith("__rmqueue_smallest: not callable from the shell")
    assert "alloc_pages" in out


def test_call_expression_forms(machine):
    s, buf = session(machine)
    s.run_lines(["call alloc_pages((gfp_t)(GFP_KERNEL | __GFP_COMP), 1UL)",
                 "call __free_pages((struct page *)$, 1)"])
    assert buf.getvalue().startswith("$1 = (struct page *) 0xffffea")
    assert s.errors == 0


def test_call_sees_kprobes(machine):
    from mmdbg.sim import trace

    seen = []
    att = trace.attach_kprobe("__alloc_pages", lambda ev: seen.append(ev.args.order))
    try:
        run(machine, "call alloc_pages(GFP_KERNEL, 2)")
    finally:
        att.detach()
    assert seen == [2]


# ---------------------------------------------------------------------------------------
# kmem


def _kmem_i_rows(text: str) -> dict[str, int]:
    rows = {}
    for line in text.splitlines()[1:]:
        mt = re.match(r"^\s*([A-Z][A-Z ]+?)\s+(\d+)\s", line)
        if mt:
            rows[mt.group(1)] = int(mt.group(2))
    return rows


def test_kmem_i_numbers_are_the_kernel_counters(machine):
    machine.alloc_pages(GFP_KERNEL, 4)
    machine.alloc_pages(GFP_KERNEL, 0)
    out = run(machine, "kmem -i")
    rows = _kmem_i_rows(out)
    assert rows["TOTAL MEM"] == machine.totalram_pages
    assert rows["FREE"] == machine.nr_free_pages()
    assert rows["USED"] == machine.totalram_pages - machine.nr_free_pages()
    assert rows["SLAB"] == (machine.global_node_page_state(vmstat.NS["nr_slab_reclaimable"])
                            + machine.global_node_page_state(
                                vmstat.NS["nr_slab_unreclaimable"]))
    assert rows["COMMIT LIMIT"] == machine.totalram_pages * 50 // 100
    assert out.splitlines()[0] == "                 PAGES        TOTAL      PERCENTAGE"


def test_kmem_i_layout_is_crashs(machine):
    lines = run(machine, "kmem -i").splitlines()
    total = machine.totalram_pages
    free = machine.nr_free_pages()
    assert lines[1] == f"    TOTAL MEM  {total:7d}     962.2 MB         ----"
    assert lines[2] == f"         FREE  {free:7d}     962.2 MB  100% of TOTAL MEM"
    assert lines[3] == "         USED        0            0    0% of TOTAL MEM"
    assert lines[7:10] == ["", "   TOTAL HUGE        0            0         ----",
                           "    HUGE FREE        0            0    0% of TOTAL HUGE"]
    assert lines[-1] == "    COMMITTED        0            0    0% of TOTAL LIMIT"


def test_pages_to_size():
    from mmdbg.shell.fmt import pages_to_size

    assert pages_to_size(0) == "0"
    assert pages_to_size(1) == "4 KB"
    assert pages_to_size(1974231) == "7.5 GB"
    assert pages_to_size(208962) == "816.3 MB"
    assert pages_to_size(786432) == "3 GB"
    assert pages_to_size(262143) == "1024 MB"


def test_kmem_f_agrees_with_the_zone_counters(machine):
    machine.alloc_pages(GFP_KERNEL, 3)
    out = run(machine, "kmem -f")
    lines = out.splitlines()
    assert lines[:3] == ["NODE", "  0",
                         "ZONE  NAME        SIZE    FREE      MEM_MAP       START_PADDR  "
                         "START_MAPNR"]
    assert lines[-1] == f"nr_free_pages: {machine.nr_free_pages()}  (verified)"
    # each zone: FREE column, and the sum of its AREA rows
    zones = {}
    cur = None
    for ln in lines:
        mt = re.match(r"^\s+(\d)\s{3}(\w+)\s+(\d+)\s+(\d+)", ln)
        if mt:
            cur = machine.node_data[0].node_zones[int(mt.group(1))]
            assert mt.group(2) == cur.name and int(mt.group(3)) == cur.spanned_pages
            assert int(mt.group(4)) == cur.nr_free_pages
            zones[cur.name] = 0
            continue
        mt = re.match(r"^\s*(\d+)\s+(\d+)k\s+([0-9a-f]{16})\s+(\d+)\s+(\d+)$", ln)
        if mt:
            order, blocks, pages = int(mt.group(1)), int(mt.group(4)), int(mt.group(5))
            assert int(mt.group(2)) == 4 << order and pages == blocks << order
            assert blocks == sum(len(x) for x in cur.free_area[order].free_list)
            zones[cur.name] += pages
    assert zones["DMA32"] == machine.zones[1].nr_free_pages
    assert zones["DMA"] == machine.zones[0].nr_free_pages


def test_kmem_f_row_layout(machine):
    lines = run(machine, "kmem -f").splitlines()
    assert lines[3] == "  0   DMA         4095    3840  ffffea0000000040      1000          0"
    assert lines[4] == "AREA    SIZE  FREE_AREA_STRUCT  BLOCKS  PAGES"
    assert re.fullmatch(r"  0       4k  ffff8880[0-9a-f]{8}       0      0", lines[5])
    assert re.fullmatch(r" 10    4096k  ffff8880[0-9a-f]{8}       3   3072", lines[15])
    assert "  2   Normal         0       0         0               0            0" in lines


def test_kmem_f_with_an_address_finds_the_free_block(machine):
    z = machine.zones[1]
    head = next(reversed(z.free_area[10].free_list[1]))
    out = run(machine, f"kmem -f {head + 5}").splitlines()
    assert out[-1] == (f"{pfn_to_page_addr(head):x}  ({pfn_to_page_addr(head + 5):x} is 6th "
                       f"of 1024 pages)")
    assert out[-2].startswith(" 10    4096k")
    pfn = machine.alloc_pages(GFP_KERNEL, 0)
    assert "per-cpu list" in run(machine, f"kmem -f {pfn + 1}") or \
        "is not free" in run(machine, f"kmem -f {pfn + 1}")
    assert run(machine, f"kmem -f {pfn}") == (
        f"kmem: {pfn}: page {pfn_to_page_addr(pfn):x} (pfn {pfn}) is not free\n")


def test_kmem_F_lists_every_block(machine):
    out = run(machine, "kmem -F")
    z = machine.zones[1]
    heads = [f"{pfn_to_page_addr(p):x}" for p in reversed(z.free_area[10].free_list[1])]
    lines = out.splitlines()
    i = lines.index(heads[0])
    assert lines[i:i + len(heads)] == heads
    assert lines[i - 2] == "AREA    SIZE  FREE_AREA_STRUCT  MIGRATETYPE"
    assert re.fullmatch(r" 10    4096k  [0-9a-f]{16}  Movable", lines[i - 1])
    assert lines[-1].endswith("(verified)")


def test_kmem_z(machine):
    out = run(machine, "kmem -z")
    lines = out.splitlines()
    z = machine.zones[1]
    i = next(i for i, ln in enumerate(lines) if 'NAME: "DMA32"' in ln)
    assert re.fullmatch(r'NODE: 0  ZONE: 1  ADDR: ffff8880[0-9a-f]{8}  NAME: "DMA32"', lines[i])
    wm = z._watermark
    assert lines[i + 1] == f"  SIZE: {z.spanned_pages}  MIN/LOW/HIGH: {wm[0]}/{wm[1]}/{wm[2]}"
    assert lines[i + 2] == "  VM_STAT:"
    assert lines[i + 3] == f"        NR_FREE_PAGES: {z.nr_free_pages}"
    dma = lines[1]
    assert dma.startswith("  SIZE: 4095  PRESENT: 3998  MIN/LOW/HIGH: ")
    assert 'NODE: 0  ZONE: 2  ADDR: ' in out and "  [unpopulated]" in lines


def test_kmem_p_layout_and_argument_forms(machine):
    pfn = machine.alloc_pages(GFP_KERNEL, 0)
    addr = pfn_to_page_addr(pfn)
    virt = 0xFFFF888000000000 + (pfn << 12)
    out = run(machine, f"kmem -p {pfn} {addr:#x} {addr:x} {virt:#x}\nkmem -p -P {pfn << 12:#x}")
    lines = out.splitlines()
    header = "      PAGE        PHYSICAL      MAPPING       INDEX CNT FLAGS"
    line = f"{addr:016x} {pfn << 12:>9x}                0        0  1 0"
    assert lines == [header, line, line, line, line, header, line]


def test_kmem_p_flags_of_a_free_page(machine):
    head = next(reversed(machine.zones[1].free_area[10].free_list[1]))
    line = run(machine, f"kmem -p {head}").splitlines()[1]
    assert line.endswith("  0 0 buddy")


def test_kmem_p_invalid(machine):
    out = run(machine, "kmem -p 99999999\nkmem -p 0xffffea0000000008")
    assert out.startswith("kmem: 99999999: invalid page frame number or address")
    assert "kmem: 0xffffea0000000008: not the address of a struct page" in out


# ---------------------------------------------------------------------------------------
# sys, log, help


def test_sys_banner(machine):
    lines = run(machine, "sys").splitlines()
    fields = dict(ln.split(": ", 1) for ln in lines)
    assert fields["        CPUS"] == "2"
    assert fields["        DATE"] == "Thu Jan  1 00:00:00 UTC 2026"
    assert fields["      UPTIME"] == "00:00:00"
    assert fields["      MEMORY"] == "1 GB"
    assert fields["     RELEASE"] == "6.18.0-mmdbg"
    assert fields["COMMAND LINE"] == "mem=1G cpus=2"
    assert fields["       PANIC"] == '""'
    assert all(len(ln.split(": ", 1)[0]) == 12 for ln in lines)


def test_sys_uses_simulated_time(machine):
    from mmdbg.shell.commands.sysinfo import sim_date, uptime

    machine.clock.advance(90061 * 1_000_000_000)  # 1 day, 1:01:01
    out = run(machine, "sys | grep -E 'DATE|UPTIME'")
    assert out == "        DATE: Fri Jan  2 01:01:01 UTC 2026\n      UPTIME: 1 day, 01:01:01\n"
    assert uptime(3 * 86400 * 10**9) == "3 days, 00:00:00"
    assert sim_date(0) == "Thu Jan  1 00:00:00 UTC 2026"


def test_log(machine):
    lines = run(machine, "log").splitlines()
    assert lines[0].startswith("[    0.000000] Linux version 6.18.0-mmdbg")
    assert lines == machine.log_lines()
    assert run(machine, "log -t | head -1").startswith("Linux version")
    assert run(machine, "dmesg -m | head -1").startswith("<6>[    0.000000] Linux version")
    assert run(machine, "log -t -m | head -1").startswith("<6>Linux version")


def test_log_shows_allocation_failure_report(machine):
    run(machine, "call __alloc_pages(GFP_KERNEL, 11)")
    assert "WARNING" in run(machine, "log")


def test_help_lists_commands_in_columns(machine):
    out = run(machine, "help")
    names = out.split()
    for n in ("call", "cat", "echo", "help", "kmem", "log", "quit", "set", "sys"):
        assert n in names
    assert 'For help on any command above, enter "help <command>".' in out


def test_help_page(machine):
    lines = run(machine, "help kmem").splitlines()
    assert lines[:5] == ["NAME", "  kmem - kernel memory", "", "SYNOPSIS",
                         "  kmem -i | -f [pfn|address] | -F | -z | -p [-P] [pfn|address ...]"
                         " | -s [CACHE ...] | -S CACHE | address"]
    assert "DESCRIPTION" in lines and "EXAMPLES" in lines
    assert "    mmdbg> kmem -i" in lines
    assert run(machine, "help q").splitlines()[1] == "  quit - exit this session"
    assert run(machine, "help output").startswith("What a command prints")
    assert run(machine, "help kmme") == (
        'help: no command or help topic named "kmme" (did you mean: kmem?)\n')


def test_every_command_is_documented():
    reg = load_commands()
    for cmd in reg.commands.values():
        assert cmd.summary and cmd.help and cmd.examples, cmd.name
        for n in cmd.names:
            assert REGISTRY.lookup(n) is cmd


@pytest.mark.parametrize("name", sorted(load_commands().commands))
def test_help_examples_run(name):
    """Every example on every help page runs (errors on purpose are fine, usage errors not)."""
    m = mmdbg.boot("mem=1G cpus=2")
    s, buf = session(m)
    for _, example in load_commands().commands[name].examples:
        status = s.execute(example)
        out = buf.getvalue()
        assert status != USAGE, out
        assert "unknown command" not in out and "internal error" not in out, out
    m.check_consistency()


def test_registry_rejects_duplicate_names():
    reg = Registry()
    command("x", aliases=("y",), registry=reg)(lambda ctx, args: None)
    with pytest.raises(ValueError, match="already taken"):
        command("y", registry=reg)(lambda ctx, args: None)


def test_fallback_takes_lines_that_are_not_commands(machine):
    reg = Registry()

    @command("probe", summary="probe", raw=True, registry=reg)
    def probe(ctx, args):
        ctx.print(f"got {args!r} / {ctx.argtext!r}")

    reg.add_fallback(lambda line: line.split(None, 1)[0].startswith("kprobe:"),
                     reg.lookup("probe"))
    buf = io.StringIO()
    s = Session(machine, buf, buf, registry=reg)
    s.execute("kprobe:__alloc_pages /args.order > 2/ { @[comm] = count(); }")
    s.execute("kprob")
    line = "kprobe:__alloc_pages /args.order > 2/ { @[comm] = count(); }"
    assert buf.getvalue().splitlines() == [
        f"got {[line]!r} / {line!r}", "mmdbg: unknown command: kprob (did you mean: probe?)"]


def test_command_error_is_printed_verbatim(machine):
    reg = Registry()

    @command("e", registry=reg)
    def e(ctx, args):
        raise CommandError("exactly this")

    buf = io.StringIO()
    assert Session(machine, buf, buf, registry=reg).execute("e") == FAILED
    assert buf.getvalue() == "exactly this\n"


# ---------------------------------------------------------------------------------------
# docs/shell.md: every ```mmdbg block is a transcript that must still hold

BLOCK = re.compile(r"^```mmdbg\n(.*?)^```", re.S | re.M)


def _blocks():
    text = (DOCS / "shell.md").read_text()
    return BLOCK.findall(text)


def _match(expected: list[str], actual: list[str]) -> bool:
    """``...`` alone on a line matches any lines; inside a line, any text."""
    if not expected:
        return not actual
    head = expected[0]
    if head == "...":
        return any(_match(expected[1:], actual[i:]) for i in range(len(actual) + 1))
    if not actual:
        return False
    rx = ".*".join(re.escape(p) for p in head.split("..."))
    return re.fullmatch(rx, actual[0].rstrip()) is not None and _match(expected[1:], actual[1:])


def test_shell_doc_has_examples():
    assert len(_blocks()) >= 8


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_shell_doc_examples(index):
    block = _blocks()[index]
    lines = block.splitlines()
    cmdline = "mem=1G cpus=2"
    if lines and lines[0].startswith("# machine:"):
        cmdline = lines.pop(0).split(":", 1)[1].strip()
    m = mmdbg.boot(cmdline)
    s, buf = session(m)
    i = 0
    while i < len(lines):
        assert lines[i].startswith("mmdbg> "), f"block {index}: expected a command: {lines[i]}"
        cmd = lines[i][len("mmdbg> "):]
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("mmdbg> "):
            expected.append(lines[i].rstrip())
            i += 1
        start = len(buf.getvalue())
        s.execute(cmd)
        actual = buf.getvalue()[start:].splitlines()
        assert _match(expected, actual), (
            f"docs/shell.md block {index}, `{cmd}`:\nexpected:\n" + "\n".join(expected)
            + "\nactual:\n" + "\n".join(actual))
    m.check_consistency()
