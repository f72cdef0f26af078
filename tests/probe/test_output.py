"""Output snapshots: every aggregation in text and JSON, byte for byte (bpftrace 0.24+)."""

from __future__ import annotations

import json

import pytest

from mmdbg.probe.output import bar_width, build_hist, hist_rows
from tests.probe.conftest import run_program


def out_of(src: str, **kw) -> str:
    r = run_program(src, **kw)
    assert r.err == "" and r.rc == 0, r.err
    return r.out


def test_count_sum_min_max_scalar_and_keyed_sorted_by_value() -> None:
    out = out_of("""BEGIN {
        @c = count(); @c = count();
        @k["b"] = count(); @k["a"] = count(); @k["a"] = count(); @k["c"] = count();
        @s[1] = sum(10); @s[2] = sum(-3); @s[1] = sum(5);
        @lo = min(7); @lo = min(-2); @hi = max(7); @hi = max(3);
    }""")
    assert out == ("\n\n"
                   "@c: 2\n"
                   "@hi: 7\n"
                   "@k[b]: 1\n"
                   "@k[c]: 1\n"
                   "@k[a]: 2\n"
                   "@lo: -2\n"
                   "@s[2]: -3\n"
                   "@s[1]: 15\n")


def test_avg_and_stats() -> None:
    out = out_of("""BEGIN {
        @a = avg(10); @a = avg(21);
        @s = stats(10); @s = stats(21);
        @ks[1] = stats(4); @ks[2] = stats(1); @ka["x"] = avg(-7); @ka["y"] = avg(3);
    }""")
    assert out == ("\n\n"
                   "@a: 15\n"
                   "@ka[x]: -7\n"
                   "@ka[y]: 3\n"
                   "@ks[2]: { .count = 1, .average = 1, .total = 1 }\n"
                   "@ks[1]: { .count = 1, .average = 4, .total = 4 }\n"
                   "@s: { .count = 2, .average = 15, .total = 31 }\n")


HIST_0_TO_8 = (
    "@h:\n"
    "[0]                    1 |@@@@@@@@@@@@@                                       |\n"
    "[1]                    1 |@@@@@@@@@@@@@                                       |\n"
    "[2, 4)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |\n"
    "[4, 8)                 4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
    "[8, 16)                1 |@@@@@@@@@@@@@                                       |\n"
    "\n")


def test_hist_rows_labels_and_bars() -> None:
    out = out_of("BEGIN { for ($i : 0..9) { @h = hist($i); } }")
    assert out == "\n\n" + HIST_0_TO_8


def test_hist_negative_gap_and_kilo_mega_labels() -> None:
    out = out_of("BEGIN { @h = hist(-1); @h = hist(3); @h = hist(1500); @h = hist(1048576); }")
    lines = out.splitlines()
    assert lines[2] == "@h:"
    assert lines[3] == "(..., 0)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"
    assert lines[4].startswith("[0]                    0 |")
    assert lines[6] == "[2, 4)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"
    labels = [ln.split()[0] + (" " + ln.split()[1] if ln.startswith("[") and "," in ln.split()[0] else "")
              for ln in lines[3:-1] if ln]
    assert "[512, 1K)" in labels and "[1K, 2K)" in labels and "[1M, 2M)" in labels
    assert lines[-2] == "[1M, 2M)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"
    assert out.endswith("|\n\n")


def test_hist_first_row_lower_bound() -> None:
    out = out_of("BEGIN { @h = hist(5); @h = hist(6); }")
    assert out == ("\n\n@h:\n"
                   "[4, 8)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n\n")


def test_hist_with_k_bits() -> None:
    out = out_of("BEGIN { for ($i : 0..12) { @h = hist($i, 1); } }")
    assert out == ("\n\n@h:\n"
                   "[0]                    1 |@@@@@@@@@@@@@                                       |\n"
                   "[1]                    1 |@@@@@@@@@@@@@                                       |\n"
                   "[2]                    1 |@@@@@@@@@@@@@                                       |\n"
                   "[3]                    1 |@@@@@@@@@@@@@                                       |\n"
                   "[4, 6)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |\n"
                   "[6, 8)                 2 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |\n"
                   "[8, 12)                4 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "\n")


def test_keyed_hist_sorted_by_total_count() -> None:
    out = out_of('BEGIN { @h["big"] = hist(1); @h["big"] = hist(1); @h["small"] = hist(2); }')
    assert out == ("\n\n@h[small]:\n"
                   "[2, 4)                 1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "\n"
                   "@h[big]:\n"
                   "[1]                    2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "\n")


def test_lhist_under_and_overflow() -> None:
    out = out_of("BEGIN { @l = lhist(-5, 0, 100, 10); @l = lhist(55, 0, 100, 10);"
                 " @l = lhist(100, 0, 100, 10); @l = lhist(150, 0, 100, 10); }")
    assert out == ("\n\n@l:\n"
                   "(..., 0)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |\n"
                   "[0, 10)                0 |                                                    |\n"
                   "[10, 20)               0 |                                                    |\n"
                   "[20, 30)               0 |                                                    |\n"
                   "[30, 40)               0 |                                                    |\n"
                   "[40, 50)               0 |                                                    |\n"
                   "[50, 60)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@                          |\n"
                   "[60, 70)               0 |                                                    |\n"
                   "[70, 80)               0 |                                                    |\n"
                   "[80, 90)               0 |                                                    |\n"
                   "[90, 100)              0 |                                                    |\n"
                   "[100, ...)             2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "\n")


def test_lhist_step_one_prints_single_values_and_kilo_steps() -> None:
    out = out_of("BEGIN { @a = lhist(1, 0, 4, 1); @a = lhist(2, 0, 4, 1);"
                 " @b = lhist(1500, 0, 4096, 1024); @b = lhist(3000, 0, 4096, 1024); }")
    assert out == ("\n\n@a:\n"
                   "[1]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "[2]                    1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "\n"
                   "@b:\n"
                   "[1K, 2K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "[2K, 3K)               1 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|\n"
                   "\n")


def test_bar_width_uses_single_precision() -> None:
    assert bar_width(1, 3) == 17
    assert bar_width(2, 3) == 34
    assert bar_width(3, 3) == 52
    assert bar_width(0, 3) == 0
    assert bar_width(1, 52) == 1
    rows = hist_rows(build_hist({1: 1, 2: 3}, 0))
    assert rows.splitlines()[0] == "[0]                    1 |" + "@" * 17 + " " * 35 + "|"


def test_keys_tuples_strings_and_values() -> None:
    out = out_of("""BEGIN {
        @t["x", 3] = 1; @t["a b", 1] = 2;
        @v[1] = (1, "a"); @n[1] = (1, (2, 3));
        @r = (a=1, b="x");
        @b = 1 == 1; @str[5] = "five"; @str[3] = "three";
        @neg[-1] = 1; @neg[2] = 0;
    }""")
    assert out == ("\n\n"
                   "@b: true\n"
                   "@n[1]: (1, (2, 3))\n"
                   "@neg[2]: 0\n"
                   "@neg[-1]: 1\n"
                   "@r: { .a = 1, .b = x }\n"
                   "@str[3]: three\n"
                   "@str[5]: five\n"
                   "@t[x, 3]: 1\n"
                   "@t[a b, 1]: 2\n"
                   "@v[1]: (1, a)\n")


def test_print_map_top_and_div_and_values() -> None:
    out = out_of("""BEGIN {
        @m[1] = sum(1); @m[2] = sum(20); @m[3] = sum(30);
        print(@m, 2); print(@m, 0, 10); print(5); print("s"); print((1, "a"));
        print(@m[3]); clear(@m);
    }""")
    assert out == ("@m[2]: 20\n@m[3]: 30\n"
                   "@m[1]: 0\n@m[2]: 2\n@m[3]: 3\n"
                   "5\ns\n(1, a)\n30\n"
                   "\n\n")


def test_zero_delete_and_has_key() -> None:
    out = out_of("""BEGIN {
        @c[1] = count(); @c[2] = count(); @h = hist(3);
        zero(@c); zero(@h);
        @d[1] = 1; @d[2] = 2; delete(@d, 1); delete(@d[2]); @d[3] = 3;
        printf("%d %d\\n", has_key(@d, 3), has_key(@d, 1));
    }""")
    assert out == "1 0\n\n\n@c[1]: 0\n@c[2]: 0\n@d[3]: 3\n@h:\n\n"


def test_stack_keys_print_as_multiline_blocks(machine) -> None:
    from tests.probe.conftest import alloc

    r = run_program("kprobe:get_page_from_freelist { @[kstack(2)] = count(); }", lambda m: alloc(m, 1),
                    machine=machine)
    lines = r.out.splitlines()
    assert lines[2] == "@["
    assert lines[3].startswith("        get_page_from_freelist+")
    assert lines[5].startswith("]: 1")


def json_lines(src: str) -> list[dict]:
    out = out_of(src, fmt="json")
    lines = out.splitlines()
    for ln in lines:
        json.loads(ln)  # every record is valid JSON on one line
    return lines


def test_json_records_byte_exact() -> None:
    lines = json_lines("""BEGIN {
        printf("hi %d\\n", 5); print((1, "x"));
        @a = count(); @b[1, "x"] = 2; @b[2, "y z"] = 3;
        @h = hist(5); @h = hist(-1); @l = lhist(150, 0, 100, 10);
        @s = stats(4); @av[1] = avg(6); @str = "q\\"\\n";
    }""")
    assert lines == [
        '{"type": "printf", "data": "hi 5\\n"}',
        '{"type": "value", "data": [1,"x"]}',
        '{"type": "map", "data": {"@a": 1}}',
        '{"type": "stats", "data": {"@av": {"1": 6}}}',
        '{"type": "map", "data": {"@b": {"1,x": 2, "2,yz": 3}}}',
        '{"type": "hist", "data": {"@h": [{"max": -1, "count": 1}, {"min": 0, "max": 0, "count": 0},'
        ' {"min": 1, "max": 1, "count": 0}, {"min": 2, "max": 3, "count": 0},'
        ' {"min": 4, "max": 7, "count": 1}]}}'.replace(", {", ",{"),
        '{"type": "hist", "data": {"@l": [{"min": 100, "count": 1}]}}',
        '{"type": "stats", "data": {"@s": {"count": 1, "average": 4, "total": 4}}}',
        '{"type": "map", "data": {"@str": "q\\"\\n"}}',
    ]


def test_json_keyed_hist_and_big_integers() -> None:
    lines = json_lines('BEGIN { @h["k"] = hist(2); @big = 9007199254740993; @small = 9007199254740992; }')
    assert lines == [
        '{"type": "map", "data": {"@big": "9007199254740993"}}',
        '{"type": "hist", "data": {"@h": {"k": [{"min": 2, "max": 3, "count": 1}]}}}',
        '{"type": "map", "data": {"@small": 9007199254740992}}',
    ]


def test_json_banner_and_no_end_newlines() -> None:
    import io

    from mmdbg.probe.output import JsonOutput, TextOutput

    o, e = io.StringIO(), io.StringIO()
    JsonOutput(o, e).attached_probes(3)
    JsonOutput(o, e).end()
    assert o.getvalue() == '{"type":"attached_probes", "count":3}\n'
    TextOutput(o, e).attached_probes(1)
    TextOutput(o, e).attached_probes(2)
    assert e.getvalue() == "Attached 1 probe\nAttached 2 probes\n"


@pytest.mark.parametrize(("fmt", "args", "want"), [
    ("%d|%5d|%-5d|%05d", "1, 2, 3, 4", "1|    2|3    |00004"),
    ("%x %X %o %u", "255, 255, 8, -1", "ff FF 10 18446744073709551615"),
    ("%s|%10s|%-4s|%.2s", '"a", "b", "c", "xyz"', "a|         b|c   |xy"),
    ("%c%c", "72, 105", "Hi"),
    ("%p", "4096", "0x1000"),
    ("%lu %lld %hhd %zu", "1, 2, 3, 4", "1 2 3 4"),
    ("100%%", "", "100%"),
    ("%s", "(1, \"a\")", "(1, a)"),
    ("%d", "1 == 1", "1"),
    ("%s", "1 == 1", "true"),
    ("%gr", "3264", "GFP_KERNEL"),
    ("%gr", "3264 | 256", "GFP_KERNEL|__GFP_ZERO"),
    ("%gr", "0x2000000", "0x2000000"),
    ("[%gr]", "0", "[]"),
    ("%rx", '"AB"', "\\x41\\x42"),
    ("%rh", '"AB"', "41 42"),
    ("%r", '"a\\tb"', "a\\x09b"),
])
def test_printf_conversions(fmt: str, args: str, want: str) -> None:
    sep = ", " if args else ""
    out = out_of(f'BEGIN {{ printf("{fmt}\\n"{sep}{args}); }}')
    assert out == want + "\n\n\n"


def test_time_join_and_strftime_use_the_simulated_clock() -> None:
    out = out_of('BEGIN { time("%H:%M:%S\\n"); time(); printf("%s\\n", strftime("%Y-%m-%d %f", 1500000)); }')
    assert out == "00:00:00\n00:00:00\n1970-01-01 001500\n\n\n"


def test_print_maps_on_exit_off_and_env_config() -> None:
    out = out_of("config = { print_maps_on_exit = false } BEGIN { @x = 1; }")
    assert out == "\n\n"
