"""Parser conformance: every grammar rule, both classic and modern bpftrace syntax."""

from __future__ import annotations

import pytest

from mmdbg.probe import ast as A
from mmdbg.probe.errors import ProbeCompileError
from mmdbg.probe.parser import build_parser, is_incomplete, parse, parse_int, parse_string


def test_grammar_builds_in_strict_mode() -> None:
    pytest.importorskip("interegular")
    build_parser(strict=True)


def test_parser_cache_is_written_and_reused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    p1 = build_parser()
    files = list((tmp_path / "mmdbg").glob("probe-grammar-*.pickle"))
    assert len(files) == 1
    p2 = build_parser()  # loads from the cache
    src = "BEGIN { @x = 1; }"
    assert p1.parse(src) == p2.parse(src)


def body(src: str) -> list[A.Stmt]:
    return parse(src).probes[0].body.stmts


def expr(text: str) -> A.Expr:
    s = body(f"BEGIN {{ $x = {text}; }}")[0]
    assert isinstance(s, A.Assign)
    return s.value


def show(e: A.Expr) -> str:
    """A compact fully parenthesised rendering to check precedence."""
    if isinstance(e, A.Binary):
        return f"({show(e.left)} {e.op} {show(e.right)})"
    if isinstance(e, A.Unary):
        return f"({e.op}{show(e.operand)})"
    if isinstance(e, A.Int):
        return str(e.value)
    if isinstance(e, A.Ident):
        return e.name
    if isinstance(e, A.Var):
        return e.name
    if isinstance(e, A.Ternary):
        return f"({show(e.cond)} ? {show(e.then)} : {show(e.other)})"
    if isinstance(e, A.Elvis):
        return f"({show(e.value)} ?: {show(e.other)})"
    if isinstance(e, A.Cast):
        return f"(({e.type}){show(e.operand)})"
    if isinstance(e, A.Field):
        return f"{show(e.obj)}{'->' if e.arrow else '.'}{e.name}"
    if isinstance(e, A.Index):
        return f"{show(e.obj)}[{show(e.index)}]"
    if isinstance(e, A.Call):
        return f"{e.name}({', '.join(show(a) for a in e.args)})"
    if isinstance(e, A.MapRef):
        return e.name + ("" if e.keys is None else "[" + ", ".join(show(k) for k in e.keys) + "]")
    if isinstance(e, A.IncDec):
        return f"{e.op}{show(e.target)}" if e.prefix else f"{show(e.target)}{e.op}"
    if isinstance(e, A.Tuple):
        return "(" + ", ".join(show(x) for x in e.items) + ("," if len(e.items) == 1 else "") + ")"
    if isinstance(e, A.Str):
        return repr(e.value)
    return type(e).__name__


@pytest.mark.parametrize(("text", "want"), [
    ("1 + 2 * 3", "(1 + (2 * 3))"),
    ("1 * 2 + 3", "((1 * 2) + 3)"),
    ("1 - 2 - 3", "((1 - 2) - 3)"),
    ("1 << 2 + 3", "(1 << (2 + 3))"),
    ("1 < 2 == 3 > 4", "((1 < 2) == (3 > 4))"),
    ("1 & 2 == 2", "(1 & (2 == 2))"),
    ("1 | 2 ^ 3 & 4", "(1 | (2 ^ (3 & 4)))"),
    ("1 || 2 && 3", "(1 || (2 && 3))"),
    ("a ? b : c ? d : e", "(a ? b : (c ? d : e))"),
    ("a || b ? 1 : 2", "((a || b) ? 1 : 2)"),
    ("a ?: b", "(a ?: b)"),
    ("!a == b", "((!a) == b)"),
    ("-a * -b", "((-a) * (-b))"),
    ("~a & b", "((~a) & b)"),
    ("4096 << $o", "(4096 << $o)"),
    ("$a <= $b >= $c", "(($a <= $b) >= $c)"),
    ("$a >> 1 << 2", "(($a >> 1) << 2)"),
    ("(pid)*tid", "(pid * tid)"),
    ("(uint32)*$p", "((uint32)(*$p))"),
    ("(struct page *)arg0->flags", "((struct page *)arg0->flags)"),
    ("((struct page *)arg0)->_refcount", "((struct page *)arg0)->_refcount"),
    ("((struct page *)arg0).flags", "((struct page *)arg0).flags"),
    ("(unsigned long)$x + 1", "(((unsigned long)$x) + 1)"),
    ("args.order + 1", "(args.order + 1)"),
    ("args->order", "args->order"),
    ("curtask->mm->total_vm", "curtask->mm->total_vm"),
    ("$t.0 + $t.1", "($t.0 + $t.1)"),
    ("$a[1][2]", "$a[1][2]"),
    ("@m[1, \"x\"] + @n", "(@m[1, 'x'] + @n)"),
    ("@x++", "@x++"),
    ("--$y", "--$y"),
    ("count()", "count()"),
    ("kstack(perf, 3)", "kstack(perf, 3)"),
    ("(1, \"a\")", "(1, 'a')"),
    ("(1,)", "(1,)"),
    ("()", "()"),
    ("(1)", "1"),
])
def test_precedence_and_forms(text: str, want: str) -> None:
    assert show(expr(text)) == want


@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("42", 42), ("0x1F", 31), ("0XfF", 255), ("010", 8), ("1_000_000", 1000000),
    ("1e6", 1000000), ("2e3", 2000), ("10u", 10), ("10ul", 10), ("10ULL", 10), ("7l", 7),
    ("0x10ul", 16), ("1ns", 1), ("1us", 1000), ("5ms", 5_000_000), ("1s", 1_000_000_000),
    ("1m", 60_000_000_000), ("2h", 7_200_000_000_000), ("1d", 86_400_000_000_000),
])
def test_integer_literals(text: str, value: int) -> None:
    assert parse_int(text) == value
    e = expr(text)
    assert isinstance(e, A.Int) and e.value == value


@pytest.mark.parametrize(("text", "value"), [
    (r'"a\nb"', "a\nb"), (r'"t\tx"', "t\tx"), (r'"q\"q"', 'q"q'), (r'"b\\s"', "b\\s"),
    (r'"\101\102"', "AB"), (r'"\x41z"', "Az"), (r'"\0"', "\0"), (r'"\r"', "\r"), ('""', ""),
])
def test_string_escapes(text: str, value: str) -> None:
    assert parse_string(text) == value


def test_program_layout_c_section_config_and_probes() -> None:
    src = """#!/usr/bin/env bpftrace
#include <linux/mm.h>
#define ORDER_MAX 10
#ifndef BPFTRACE_HAVE_BTF
#endif
struct foo { int a; struct { int b; } c; };
enum color { RED, GREEN = 5, BLUE };
config = { max_map_keys = 100; stack_mode = perf; print_maps_on_exit = false }
import "other.bt";
macro twice($x) { $x * 2 }
let @big = hash(10000);
BEGIN, END { }
"""
    p = parse(src)
    assert p.shebang == "#!/usr/bin/env bpftrace"
    assert [c.kind for c in p.c_items] == ["preproc", "preproc", "preproc", "preproc",
                                          "definition", "definition"]
    assert p.defines == {"ORDER_MAX": "10"}
    assert [(c.key, c.value) for c in p.config] == [("max_map_keys", 100), ("stack_mode", "perf"),
                                                    ("print_maps_on_exit", False)]
    assert [i.value for i in p.imports] == ["other.bt"]
    assert [m.name for m in p.macros] == ["twice"]
    assert [(d.name, d.kind, d.size) for d in p.map_decls] == [("@big", "hash", 10000)]
    assert [a.raw for a in p.probes[0].attach] == ["BEGIN", "END"]


@pytest.mark.parametrize("raw", [
    "BEGIN", "END", "begin", "end", "kprobe:__alloc_pages", "k:__alloc_pages",
    "kretprobe:__alloc_pages", "kr:f", "tracepoint:kmem:mm_page_alloc", "t:kmem:*",
    "tracepoint:vmscan:mm_vmscan_*", "fentry:__alloc_pages", "fexit:vmlinux:__alloc_pages",
    "kfunc:f", "interval:s:1", "interval:1s", "i:ms:100", "profile:hz:99",
    "software:page-faults:1", "s:major-faults", "watchpoint:0xffff888000100000:8:w",
    "kprobe:$1", "kprobe:f+0x10", 'uprobe:"/a b/c":main', "kprobe:*alloc*",
])
def test_attach_point_forms(raw: str) -> None:
    p = parse(raw + " { }")
    assert [a.raw for a in p.probes[0].attach] == [raw]


def test_several_attach_points_trailing_comma_and_comments() -> None:
    p = parse("kprobe:a, /* x */ kprobe:b, // y\n kretprobe:c, { }")
    assert [a.raw for a in p.probes[0].attach] == ["kprobe:a", "kprobe:b", "kretprobe:c"]


def test_predicate_with_division_and_modern_syntax() -> None:
    p = parse("kprobe:f /pid / 2 == 1/ { @a = 1 } kprobe:g /args.x/{ }")
    pred = p.probes[0].pred
    assert show(pred) == "((pid / 2) == 1)"
    assert show(p.probes[1].pred) == "args.x"


def test_statements_classic_and_modern() -> None:
    src = """BEGIN {
        $x = 1; let $y; let $z: uint64 = 2; let $s: string;
        @m[1, 2] = 3; @n = 4; _ = 5;
        $x += 1; @m[1, 2] -= 1; @n <<= 2; @n >>= 1; $x *= 2; $x /= 2; $x %= 2;
        $x &= 1; $x |= 1; $x ^= 1;
        $x++; ++$x; $x--; --$x; @n++;
        if ($x) { } else if $y { } else { }
        if $x > 1 { $x = 2 }
        while ($x < 3) { $x++; break; }
        while $x < 3 { continue }
        unroll(3) { $x++ }
        unroll 2 { }
        for ($kv : @m) { }
        for $kv : @m { }
        for ($i : 0..10) { }
        for $i : 1..$x { }
        { $x = 1; }
        ;;
        return;
        exit();
    }"""
    kinds = [type(s).__name__ for s in body(src)]
    assert kinds == [
        "Assign", "Let", "Let", "Let", "Assign", "Assign", "Assign",
        "CompoundAssign", "CompoundAssign", "CompoundAssign", "CompoundAssign", "CompoundAssign",
        "CompoundAssign", "CompoundAssign", "CompoundAssign", "CompoundAssign", "CompoundAssign",
        "ExprStmt", "ExprStmt", "ExprStmt", "ExprStmt", "ExprStmt",
        "If", "If", "While", "While", "Unroll", "Unroll", "ForMap", "ForMap", "ForRange",
        "ForRange", "Block", "Return", "ExprStmt"]
    ops = [s.op for s in body(src) if isinstance(s, A.CompoundAssign)]
    assert ops == ["+", "-", "<<", ">>", "*", "/", "%", "&", "|", "^"]


def test_last_statement_needs_no_semicolon_and_records() -> None:
    s = body('BEGIN { @r = (a=1, b="x") }')
    rec = s[0].value
    assert isinstance(rec, A.Record) and [n for n, _ in rec.fields] == ["a", "b"]


def test_sizeof_forms() -> None:
    e = expr("sizeof(struct page)")
    assert isinstance(e, A.SizeOf) and str(e.type) == "struct page"
    e = expr("sizeof($y)")
    assert isinstance(e, A.SizeOf) and isinstance(e.operand, A.Var)


def test_positions_are_one_based_with_exclusive_end() -> None:
    p = parse("BEGIN {\n  @x = foo(1);\n}")
    call = p.probes[0].body.stmts[0].value
    assert (call.loc.line, call.loc.col, call.loc.end_col) == (2, 8, 14)
    assert (call.name_loc.col, call.name_loc.end_col) == (8, 11)


def err(src: str) -> str:
    with pytest.raises(ProbeCompileError) as ei:
        parse(src)
    return ei.value.render()


def test_syntax_error_snapshot() -> None:
    assert err("BEGIN { @x = ; }") == (
        "stdin:1:14-15: ERROR: syntax error, unexpected ;\n"
        "BEGIN { @x = ; }\n"
        "             ~\n")


def test_unterminated_string_and_eof() -> None:
    assert err('BEGIN { printf("hi); }') == (
        "stdin:1:16-17: ERROR: unterminated string\n"
        'BEGIN { printf("hi); }\n'
        "               ~\n")
    assert "unexpected end of file" in err("kprobe:f { @x = 1")


def test_bad_escape_and_octal_literal() -> None:
    assert "invalid escape character '\\q'" in err(r'BEGIN { $x = "\q"; }')
    assert "invalid octal literal: 09" in err("BEGIN { $x = 09; }")


def test_predicate_must_be_separated_from_attach_point() -> None:
    # bpftrace reads raw attach points: "kprobe:f/pid/" is one attach point, then "{".
    p = parse("kprobe:f/pid/ { }")
    assert p.probes[0].attach[0].raw == "kprobe:f/pid/"


def test_tuple_field_assignment_is_a_syntax_error() -> None:
    assert "syntax error" in err("BEGIN { $t = (1, 2); $t.0 = 1; }")


def test_tabs_are_expanded_in_the_context_line() -> None:
    out = err("BEGIN {\t@x = ; }")
    assert out.splitlines()[1] == "BEGIN {    @x = ; }"
    assert out.splitlines()[2] == " " * 16 + "~"


def test_is_incomplete() -> None:
    assert is_incomplete("kprobe:f {")
    assert is_incomplete('BEGIN { printf("x')
    assert is_incomplete("BEGIN { if (1) {")
    assert not is_incomplete("BEGIN { }")
    assert not is_incomplete("BEGIN { @x = ; }")


def test_nul_and_huge_nesting_are_reported() -> None:
    assert "NUL" in err("BEGIN { \0 }")
    assert "nested too deeply" in err("BEGIN { $x = " + "(" * 300 + "1" + ")" * 300 + "; }")
