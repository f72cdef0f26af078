"""Hostile and random input: only reported errors, and nothing reaches host Python."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmdbg.probe import compile_program
from mmdbg.probe.errors import ProbeCompileError
from tests.probe.conftest import run_program

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

TOKENS = [
    "BEGIN", "END", "kprobe:__alloc_pages", "kretprobe:__alloc_pages", "t:kmem:mm_page_alloc",
    "tracepoint:kmem:*", "interval:s:1", "{", "}", "(", ")", "[", "]", ";", ",", "/", "=", "==",
    "+", "-", "*", "%", "<<", ">>", "&&", "||", "!", "~", "?", ":", "?:", "..", ".", "->",
    "++", "--", "+=", "<<=", "$x", "$y", "$1", "$#", "@", "@m", "@h", "1", "0x10", "1s",
    '"s"', '"%d\\n"', "pid", "comm", "args", "order", "retval", "arg0", "count()", "hist",
    "lhist", "printf", "print", "exit", "if", "else", "while", "for", "unroll", "let",
    "return", "break", "macro", "config", "(struct page *)", "(uint8)", "kstack", "sizeof",
    "true", "false", "#include <x>", "\n", " ", "/*c*/", "//c\n", "_", "str", "delete",
]


def compile_or_error(src: str) -> None:
    try:
        compile_program(src, env={})
    except ProbeCompileError as e:
        text = e.render()
        assert "ERROR:" in text
        assert "Traceback" not in text


@FUZZ
@given(st.text(max_size=200))
def test_random_text_never_crashes(src: str) -> None:
    compile_or_error(src)


@FUZZ
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_soup_never_crashes(toks: list[str]) -> None:
    compile_or_error(" ".join(toks))


EXPRS = st.recursive(
    st.sampled_from(["1", "$x", "@m", "pid", "nsecs", '"s"', "(1, 2)", "@k[1]", "0", "-1"]),
    lambda sub: st.one_of(
        st.tuples(sub, st.sampled_from(["+", "-", "*", "/", "%", "<<", ">>", "&", "|", "^",
                                        "==", "!=", "<", ">=", "&&", "||"]), sub).map(" ".join),
        sub.map(lambda e: f"({e})"),
        sub.map(lambda e: f"!{e}"),
        st.tuples(sub, sub, sub).map(lambda t: f"{t[0]} ? {t[1]} : {t[2]}"),
    ),
    max_leaves=12,
)


@FUZZ
@given(st.lists(EXPRS, min_size=1, max_size=4))
def test_random_programs_compile_run_or_report(exprs: list[str]) -> None:
    body = " ".join(f"$x = {e};" if i % 2 else f"@m = {e};" for i, e in enumerate(exprs))
    src = f"BEGIN {{ $x = 1; @m = 1; @k[1] = 1; {body} exit(); }}"
    try:
        prog = compile_program(src, env={})
    except ProbeCompileError:
        return
    assert_only_generated_names(prog.source)
    r = run_program(src)
    assert r.rc in (0, 1)
    assert "Traceback" not in r.err


_NAME_OK = re.compile(r"(v\d+|_[a-z][a-z_]*\d*|_[A-Z][A-Za-z]*|M\d+|L\d+|K|LOCS|rt|ev|t|a|e|PROBE|FUNC|"
                      r"PTYPE|mk_p\d+|p\d+|len|Exception)")
_ATTRS_OK = {"printf", "print_map", "print_value", "map_full", "task", "args", "nsecs", "cpu",
             "tgid", "pid", "comm", "fatal", "internal", "field", "index", "kstack",
             "to_str", "order", "pfn", "gfp_flags", "migratetype", "arg", "retval", "clear",
             "incdec", "delete", "zero_map", "get", "items", "start_ns", "rand", "system",
             "diag", "ksym", "kaddr", "join", "time", "strftime", "signal", "args_record",
             "numaid", "ncpus", "jiffies", "username", "find", "pfn_to_page", "page_to_pfn",
             "page_zone"}


def assert_only_generated_names(source: str) -> None:
    """User text reaches generated code only as literals: every name is one codegen makes."""
    import ast

    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Name):
            assert _NAME_OK.fullmatch(node.id), node.id
        elif isinstance(node, ast.Attribute):
            assert node.attr in _ATTRS_OK, node.attr
        elif isinstance(node, ast.Import | ast.ImportFrom | ast.Global | ast.Lambda):
            raise AssertionError(type(node).__name__)


HOSTILE_STRINGS = [
    '"); import os; os.system("touch /tmp/pwned"); ("',
    "'''; raise SystemExit; '''",
    '\\"\\"\\"; __import__(\\"os\\")',
    "{__import__('os')}",
    "\\n\\x00\\x7f\\\\",
    "%s%s%s%n",
]


@pytest.mark.parametrize("s", HOSTILE_STRINGS)
def test_hostile_strings_are_data(s: str) -> None:
    src = f'BEGIN {{ @m["{s}"] = 1; $v = "{s}"; printf("%s\\n", $v); }}'
    try:
        prog = compile_program(src, env={})
    except ProbeCompileError:
        return
    assert_only_generated_names(prog.source)
    r = run_program(src)
    assert r.rc == 0
    assert "import" not in r.err


@pytest.mark.parametrize("ident", [
    "__import__", "__builtins__", "exec", "eval", "open", "os", "sys", "globals", "rt", "K",
    "M0", "ev", "t", "a", "v0", "_exit", "LOCS", "_Fatal",
])
def test_identifiers_never_reach_host_names(ident: str) -> None:
    out = None
    try:
        compile_program(f"BEGIN {{ @x = {ident}; }}", env={})
    except ProbeCompileError as e:
        out = e.render()
    assert out is not None and f"Unknown identifier: '{ident}'" in out


@pytest.mark.parametrize("field", ["__class__", "__globals__", "__dict__", "__init__",
                                   "__builtins__", "__subclasses__"])
def test_dunder_fields_are_rejected(field: str) -> None:
    with pytest.raises(ProbeCompileError, match="is not allowed"):
        compile_program(f"BEGIN {{ @x = curtask->{field}; }}", env={})


def test_variable_and_map_names_are_mangled() -> None:
    prog = compile_program("BEGIN { $__import__ = 1; @__builtins__ = $__import__; "
                           "$rt = 2; @K = $rt; }", env={})
    assert_only_generated_names(prog.source)
    r = run_program("BEGIN { $__import__ = 1; @__builtins__ = $__import__; $rt = 2; @K = $rt; }")
    assert r.out == "\n\n@K: 2\n@__builtins__: 1\n"


def test_field_reads_only_touch_simulation_objects() -> None:
    from mmdbg.probe.runtime import Fatal, Runtime

    class Fake:
        pass

    rt = Runtime.__new__(Runtime)
    rt.locs = [None]
    with pytest.raises(Fatal):
        rt.field(Fake(), "x", "", 0)
    with pytest.raises(Fatal):
        rt.field(re, "compile", "", 0)


def test_huge_inputs_are_refused_cleanly() -> None:
    with pytest.raises(ProbeCompileError):
        compile_program("BEGIN { @x = " + "1+" * 5000 + "1; }", env={})
    with pytest.raises(ProbeCompileError):
        compile_program("BEGIN { " + "{ " * 500 + "} " * 500 + "}", env={})
    long = "x" * 2000
    with pytest.raises(ProbeCompileError, match="String is too long"):
        compile_program(f'BEGIN {{ $s = "{long}"; }}', env={})
