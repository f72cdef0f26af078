"""Error message snapshots from the checker, in bpftrace's diagnostic format."""

from __future__ import annotations

import pytest

from mmdbg.probe import compile_program
from tests.probe.conftest import compile_error


def test_unknown_function_marks_the_name() -> None:
    assert compile_error("BEGIN { @x = foo(1); }") == (
        "stdin:1:14-17: ERROR: Unknown function: foo\n"
        "BEGIN { @x = foo(1); }\n"
        "             ~~~\n")


def test_unknown_function_suggests_near_names() -> None:
    assert "HINT: Did you mean: print, printf?" in compile_error('BEGIN { prinft("x"); }')


def test_unknown_kprobe_suggests_near_names() -> None:
    out = compile_error("kprobe:__alloc_pagez { }")
    assert out.startswith(
        "stdin:1:1-21: ERROR: No kernel function named '__alloc_pagez' in the simulated kernel\n"
        "kprobe:__alloc_pagez { }\n"
        "~~~~~~~~~~~~~~~~~~~~\n"
        "HINT: Did you mean: __alloc_pages, ")
    assert out.count("\n") == 4


def test_unknown_tracepoint_and_undeclared_one() -> None:
    out = compile_error("tracepoint:kmem:mm_page_alloc_zonelocked { }")
    assert "ERROR: tracepoint not found: kmem:mm_page_alloc_zonelocked" in out
    assert "HINT: Did you mean: kmem:mm_page_alloc_zone_locked" in out
    out = compile_error("tracepoint:kmem:kmalloc_not_a_thing { }")
    assert "tracepoint not found" in out


def test_tracepoint_known_to_linux_but_not_fired_by_the_sim() -> None:
    from mmdbg.sim import trace

    names = [n for n, tp in trace.TRACEPOINTS.items() if not tp.declared]
    assert names, "every tracepoint is declared; pick another example"
    out = compile_error(f"tracepoint:{names[0]} {{ }}")
    assert "exists in Linux but the simulation does not fire it (yet)" in out


def test_unknown_args_field_lists_the_real_ones() -> None:
    assert compile_error("t:kmem:mm_page_alloc { @[args.ordr] = count(); }") == (
        "stdin:1:26-35: ERROR: tracepoint:kmem:mm_page_alloc has no args field 'ordr'\n"
        "t:kmem:mm_page_alloc { @[args.ordr] = count(); }\n"
        "                         ~~~~~~~~~\n"
        "HINT: its fields are: pfn, order, gfp_flags, migratetype\n")


@pytest.mark.parametrize(("src", "msg"), [
    ('BEGIN { printf("%d\\n", "s"); }',
     "printf: %d specifier expects a value of type integer (string supplied)"),
    ('BEGIN { printf("%d %d\\n", 1); }',
     "printf: Not enough arguments for format string (1 supplied, 2 expected)"),
    ('BEGIN { printf("%d\\n", 1, 2); }',
     "printf: Too many arguments for format string (2 supplied, 1 expected)"),
    ('BEGIN { printf("%f\\n", 1); }', "printf: %f is not supported"),
    ('BEGIN { printf("%q\\n", 1); }', "printf: Unknown format string token: %q"),
    ('BEGIN { $x = 1; $x = "a"; }',
     "Type mismatch for $x: trying to assign value of type 'string' when variable already "
     "contains a value of type 'int64'"),
    ('BEGIN { @x = 1; @x = "a"; }',
     "Type mismatch for @x: trying to assign value of type 'string' when map already contains "
     "a value of type 'int64'"),
    ('BEGIN { @x[1] = 1; @x["a"] = 1; }',
     "Argument mismatch for @x: trying to access with arguments: 'string' when map expects "
     "arguments: 'int64'"),
    ("BEGIN { @x = count(); @x = sum(1); }",
     "Type mismatch for @x: trying to assign value of type 'sum_t' when map already contains a "
     "value of type 'count_t'"),
    ("BEGIN { $x = count(); }", "count() should be directly assigned to a map"),
    ("BEGIN { count(); }", "count() should be directly assigned to a map"),
    ("BEGIN { print($y); }", "Undefined or undeclared variable: $y"),
    ("BEGIN { print(@nope); }", "Undefined map: @nope"),
    ('BEGIN { if ("a" == 1) { } }', "Type mismatch for '==': comparing 'string' with 'int64'"),
    ('BEGIN { $x = "a" + 1; }', "The + operator can not be used on expressions of types string, int64"),
    ("BEGIN { unroll(101) { } }", "unroll maximum value is 100"),
    ("BEGIN { unroll(0) { } }", "unroll minimum value is 1"),
    ("BEGIN { $n = 3; unroll($n) { } }", "unroll count must be an integer literal"),
    ("BEGIN { @h = hist(1, 6); }", "hist: bits must be an integer literal between 0 and 5"),
    ("BEGIN { @h = lhist(1, 0, 100000, 1); }", "lhist() too many buckets, will be > 1000"),
    ("BEGIN { @h = lhist(1, 10, 5, 1); }", "lhist() min must be less than max"),
    ("BEGIN { @h = lhist(1, 0, 10, 0); }", "lhist() step must be >= 1"),
    ("BEGIN { for ($i : 0..3) { exit(); } }", "exit() is not allowed inside a loop"),
    ("BEGIN { break; }", "'break' statement is not in a loop"),
    ("BEGIN { @x = args.foo; }", "The args builtin can only be used with tracepoint, fentry and fexit"),
    ("kprobe:__alloc_pages { @x = retval; }", "The retval builtin can only be used with kretprobe and fexit"),
    ("t:kmem:mm_page_alloc { @x = arg0; }", "The arg0 builtin can only be used with kprobe probes"),
    ("BEGIN { @x = func; }", "The func builtin can only be used with kprobe"),
    ("BEGIN { @x = nope; }", "Unknown identifier: 'nope'"),
    ("BEGIN { @x = arg0->flags; }", "The arg0 builtin can only be used with kprobe probes"),
    ("kprobe:__alloc_pages { @x = arg0->flags; }",
     "Can not access field 'flags' on expression of type 'uint64'"),
    ("BEGIN { $t = (1, 2); @x = $t.5; }", "Invalid tuple index: 5. Found 2 elements in tuple."),
    ("BEGIN { @x = curtask->__class__; }", "Access to the field '__class__' is not allowed"),
    ("config = { max_map_kyes = 3 } BEGIN { }", "Unrecognized config variable: max_map_kyes"),
    ("config = { stack_mode = wat } BEGIN { }", "Invalid value for stack_mode: 'wat'"),
    ("kprobe:nosuchfn+0 { }", "No kernel function named 'nosuchfn'"),
    ("kprobe:__alloc_pages+8 { }", "kprobe offsets are not supported"),
    ("uprobe:/bin/bash:readline { }", "uprobe probes are not supported"),
    ("hardware:cycles { }", "hardware probes are not supported"),
    ("nosuch:thing { }", "Invalid probe type: nosuch"),
    ("interval:xs:1 { }", "invalid interval unit 'xs'"),
    ("software:cpu-clock { }", "software:cpu-clock is not simulated"),
    ("software:pagefaults { }", "Unknown software event: pagefaults"),
    ("watchpoint:0x1000:3:w { }", "invalid watchpoint length '3'"),
    ("BEGIN { @x = 99999999999999999999999; }", "integer literal is too large"),
    ("macro m($a) { m($a) } BEGIN { m(1); }", "Recursive macro call: m"),
    ("macro m($a) { $a } BEGIN { m(1, 2); }", "Macro 'm' takes 1 argument (2 provided)"),
    ("BEGIN { exit(1, 2); }", "exit() takes at most one argument (2 provided)"),
    ("BEGIN { @x = (int64)\"a\"; }", "Cannot cast from string to int64"),
    ("BEGIN { print(@m, 1); }", "Undefined map: @m"),
    ("BEGIN { $x = &$y; }", "address-of operator"),
    ("", "No probes to attach"),
    ('import "x.bt"; BEGIN { }', 'import "x.bt" is not supported yet'),
])
def test_error_messages(src: str, msg: str) -> None:
    assert msg in compile_error(src)


@pytest.mark.parametrize(("src", "fn"), [
    ('BEGIN { system("ls"); }', "system"),
    ("BEGIN { signal(9); }", "signal"),
    ("kprobe:__alloc_pages { override(0); }", "override"),
    ("BEGIN { stop(); }", "stop"),
])
def test_unsafe_builtins_need_unsafe(src: str, fn: str) -> None:
    out = compile_error(src)
    assert f"ERROR: {fn}() is an unsafe function being used in safe mode" in out
    assert "HINT: run with --unsafe to allow it" in out
    compile_program(src, unsafe=True, env={})


def test_several_errors_are_reported_together() -> None:
    out = compile_error("BEGIN { @a = foo(); @b = bar(); }")
    assert out.count("ERROR:") == 2


def test_map_typed_by_a_later_probe_may_be_read_in_end() -> None:
    compile_program('END { printf("%d\\n", @c); } kprobe:__alloc_pages { @c = count(); }', env={})


def test_config_env_wins_over_script() -> None:
    prog = compile_program("config = { max_map_keys = 5 } BEGIN { }",
                           env={"BPFTRACE_MAX_MAP_KEYS": "7"})
    assert prog.checked.config["max_map_keys"] == 7
    prog = compile_program("config = { BPFTRACE_MAX_MAP_KEYS = 9 } BEGIN { }", env={})
    assert prog.checked.config["max_map_keys"] == 9


def test_wildcard_expansion_counts_probes() -> None:
    prog = compile_program("tracepoint:kmem:mm_page_* { @[probe] = count(); } BEGIN { }", env={})
    names = [r.name for r in prog.checked.probes[0].resolved]
    assert "tracepoint:kmem:mm_page_alloc" in names and "tracepoint:kmem:mm_page_free" in names
    assert prog.checked.probe_count == len(names) + 1


def test_missing_probes_config() -> None:
    prog = compile_program("config = { missing_probes = ignore } kprobe:nope_a, kprobe:__alloc_pages { }",
                           env={})
    assert [r.name for r in prog.checked.probes[0].resolved] == ["kprobe:__alloc_pages"]


def test_warning_for_division_by_literal_zero() -> None:
    prog = compile_program("BEGIN { @x = 1 / 0; }", env={})
    assert [w.msg for w in prog.checked.warnings] == ["Division by zero: the result is 0, as in BPF"]
