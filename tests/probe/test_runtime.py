"""Run-time semantics of compiled probes against a booted simulated machine."""

from __future__ import annotations

from tests.probe.conftest import alloc, run_program


def test_tracepoint_count_by_comm_and_args(machine) -> None:
    r = run_program("tracepoint:kmem:mm_page_alloc { @[comm] = count(); @o[args.order] = count(); }",
                    lambda m: (alloc(m, 3, 0), alloc(m, 2, 1)), machine=machine)
    assert r.out == "\n\n@[swapper/0]: 5\n@o[1]: 2\n@o[0]: 3\n"


def test_predicates_classic_and_modern(machine) -> None:
    r = run_program("t:kmem:mm_page_alloc /args->order == 1/ { @a = count(); }"
                    " t:kmem:mm_page_alloc /args.order == 0/ { @b = count(); }",
                    lambda m: (alloc(m, 3, 0), alloc(m, 2, 1)), machine=machine)
    assert r.out == "\n\n@a: 2\n@b: 3\n"


def test_kprobe_args_kretprobe_retval_and_func(machine) -> None:
    r = run_program("kprobe:__alloc_pages { @ord[arg1] = count(); @f[func] = count(); }"
                    " kretprobe:__alloc_pages /retval != 0/ { @ok = count(); }"
                    " fentry:__alloc_pages { @typed[args.order] = count(); }"
                    " fexit:__alloc_pages { @fx = count(); }",
                    lambda m: alloc(m, 4, 2), machine=machine)
    assert r.out == ("\n\n@f[__alloc_pages]: 4\n@fx: 4\n@ok: 4\n@ord[2]: 4\n@typed[2]: 4\n")


def test_probe_builtin_expands_wildcards(machine) -> None:
    r = run_program("tracepoint:kmem:mm_page_a* { @[probe] = count(); }",
                    lambda m: alloc(m, 2), machine=machine)
    assert "@[tracepoint:kmem:mm_page_alloc]: 2\n" in r.out


def test_builtins_values(machine) -> None:
    r = run_program('BEGIN { printf("%d %d %d %s %d %d %d\\n", pid, tid, uid, comm, cpu, '
                    "elapsed, $#); }", machine=machine, params=("a", "b"))
    assert r.out.startswith("0 0 0 swapper/0 0 0 2\n")


def test_positional_params_int_and_string() -> None:
    r = run_program('BEGIN { printf("%d %s %d|%s|\\n", $1 + 1, $2, $3, str($4)); }',
                    params=("41", "hello"))
    assert r.out == "42 hello 0||\n\n\n"


def test_rand_uses_the_machine_rng_deterministically() -> None:
    a = run_program("BEGIN { @r = rand; }").out
    b = run_program("BEGIN { @r = rand; }").out
    assert a == b and a.startswith("\n\n@r: ")


def test_bpf_integer_semantics() -> None:
    r = run_program('BEGIN { printf("%d %d %d %d %d %d %d\\n", 7 / 0, 7 % 0, -7 / 2, -7 % 2, '
                    "1 << 64, (uint8)257, (int8)255); }")
    assert r.out == "0 7 -3 -1 1 1 -1\n\n\n"
    assert "Division by zero" not in r.err  # warnings are the CLI's to print


def test_multiplication_wraps_to_64_bits() -> None:
    r = run_program("BEGIN { $x = 3; unroll(100) { $x = $x * $x; } @ok = $x != 0; }")
    assert r.rc == 0 and "@ok:" in r.out


def test_control_flow_and_operators() -> None:
    r = run_program("""BEGIN {
        $s = 0;
        for ($i : 0..10) { if ($i == 3) { continue; } if ($i > 6) { break; } $s += $i; }
        $w = 0; while ($w < 5) { $w++; }
        $t = $w > 4 ? "big" : "small";
        $e = 0 ?: 9;
        $x = 5; $y = $x++; $z = ++$x;
        @m[1] = 1; @m[2] = 2; $sum = 0; for ($kv : @m) { $sum += $kv.0 * 10 + $kv.1; }
        printf("%d %d %s %d %d %d %d %d\\n", $s, $w, $t, $e, $y, $z, $x, $sum);
    }""")
    assert r.out.startswith("18 5 big 9 5 7 7 33\n")


def test_map_incdec_and_compound() -> None:
    r = run_program("BEGIN { @a++; @a++; @b[1] += 5; @b[1] -= 2; @c = @a++ + ++@a; @d--; }")
    assert r.out == "\n\n@a: 4\n@b[1]: 3\n@c: 6\n@d: -1\n"


def test_macros_are_hygienic_and_take_vars_by_reference() -> None:
    r = run_program("""
        macro add_one($x) { $x + 1 }
        macro bump($v) { $v = $v + 10; $v }
        macro tmp($x) { $t = 100; $x + $t }
        macro count_into(@m) { @m = count(); 0 }
        BEGIN {
            $t = 1; $a = 5;
            $b = bump($a);
            printf("%d %d %d %d\\n", add_one(1), $a, $b, tmp($t));
            printf("%d\\n", $t);
            count_into(@hits);
        }""")
    assert r.out == "2 15 15 101\n1\n\n\n@hits: 1\n"


def test_while_cap_is_a_runtime_error() -> None:
    r = run_program("BEGIN { $i = 0; while (1) { $i++; } }",
                    config={"max_while_iterations": 50})
    assert r.rc == 1
    assert r.err.startswith("stdin:1:17-36: ERROR: while loop ran more than 50 iterations in one "
                            "event; raise config max_while_iterations or bound the loop\n")


def test_instruction_budget_is_a_runtime_error() -> None:
    r = run_program("BEGIN { for ($i : 0..100000) { @x = 1; } }", config={"max_event_insns": 500})
    assert r.rc == 1
    assert "per-event instruction budget exceeded (500 instructions)" in r.err


def test_map_key_limit_warns_once_and_keeps_old_keys() -> None:
    r = run_program("BEGIN { for ($i : 0..10) { @m[$i] = count(); } @m[0] = count(); }",
                    config={"max_map_keys": 3})
    assert r.rc == 0
    assert r.err.count("WARNING: Map full; can't update element.") == 1
    assert "`let @m = hash(6)`" in r.err
    assert r.out == "\n\n@m[1]: 1\n@m[2]: 1\n@m[0]: 2\n"


def test_map_declaration_sets_the_limit() -> None:
    r = run_program("let @m = hash(2); BEGIN { for ($i : 0..5) { @m[$i] = 1; } }")
    assert r.out == "\n\n@m[0]: 1\n@m[1]: 1\n"


def test_exit_runs_end_and_stops_events(machine) -> None:
    r = run_program("t:kmem:mm_page_alloc { @n = count(); if (@n == 2) { exit(); } }"
                    " END { printf(\"end %d\\n\", @n); }",
                    lambda m: alloc(m, 5), machine=machine)
    assert r.out == "end 2\n\n\n@n: 2\n"
    assert r.session.exit_requested


def test_exit_code() -> None:
    r = run_program("BEGIN { exit(3); printf(\"not reached\\n\"); }")
    assert r.rc == 3 and "not reached" not in r.out


def test_kernel_object_fields(machine) -> None:
    r = run_program('BEGIN { printf("%s %d\\n", curtask->comm, curtask->pid); '
                    "@p = curtask->parent; }", machine=machine)
    assert r.out.startswith("swapper/0 0\n")


def test_bad_kernel_field_is_a_runtime_error(machine) -> None:
    r = run_program("BEGIN { @x = curtask->no_such_field; }", machine=machine)
    assert r.rc == 1
    assert "task_struct has no field 'no_such_field'" in r.err or "no field 'no_such_field'" in r.err


def test_override_makes_alloc_fail(machine) -> None:
    got: list[object] = []
    r = run_program("kprobe:__alloc_pages /arg1 == 3/ { override(0); @inj = count(); }",
                    lambda m: got.extend([m.alloc_pages("GFP_KERNEL", 3), m.alloc_pages("GFP_KERNEL", 0)]),
                    unsafe=True, machine=machine)
    assert got[0] is None and got[1] is not None
    assert r.out == "\n\n@inj: 1\n"


def test_stop_prints_the_location_and_ends(machine) -> None:
    r = run_program("kprobe:get_page_from_freelist { stop(); }", lambda m: alloc(m, 3),
                    unsafe=True, machine=machine)
    assert r.rc == 0
    assert r.err.startswith("Stopped by stop() in kprobe:get_page_from_freelist at ")
    assert "pid 0 (swapper/0)" in r.err


def test_system_prints_instead_of_running() -> None:
    r = run_program('BEGIN { system("rm -rf %s", "/"); }', unsafe=True)
    assert r.out == "system() would run: rm -rf /\n\n\n"


def test_signal_without_machine_support_warns() -> None:
    r = run_program("BEGIN { signal(\"SIGKILL\"); }", unsafe=True)
    assert r.rc == 0


def test_software_fault_classification_follows_mm_account_fault() -> None:
    from mmdbg.probe.software import _is_major

    assert _is_major(0, 0) is False                 # minor
    assert _is_major(0x4, 0) is True                # VM_FAULT_MAJOR
    assert _is_major(0, 1 << 5) is True             # FAULT_FLAG_TRIED: a retried fault
    assert _is_major(0x400, 0) is None              # VM_FAULT_RETRY: accounted on completion
    assert _is_major(0x2, 0) is None                # VM_FAULT_SIGBUS: an error


def test_software_events_sample_every_nth(monkeypatch) -> None:
    from types import SimpleNamespace

    from mmdbg.probe import software
    from mmdbg.sim import trace

    handlers: list = []

    class FakeKfunc:
        def attach(self, handler, ret=False, machine=None):
            handlers.append((handler, ret))
            return SimpleNamespace(detach=lambda: None)

    monkeypatch.setattr(trace, "find_kfunc",
                        lambda name: FakeKfunc() if name == "handle_mm_fault" else None)
    seen: list = []
    software.attach_software_event(None, "faults", 3, seen.append)
    software.attach_software_event(None, "major-faults", 1, seen.append)
    (pf, pf_ret), (maj, maj_ret) = handlers
    assert (pf_ret, maj_ret) == (False, True)
    for i in range(7):
        pf(i)
    assert seen == [2, 5]
    ev = SimpleNamespace(retval=0x4, args=SimpleNamespace(flags=0, regs=object()))
    maj(ev)
    maj(SimpleNamespace(retval=0, args=SimpleNamespace(flags=0, regs=object())))
    assert seen == [2, 5, ev]
    import pytest

    with pytest.raises(LookupError):
        software.attach_software_event(None, "cpu-clock", 1, seen.append)


def test_join_str_and_string_functions() -> None:
    r = run_program('BEGIN { join(("a", "b"), ","); printf("%s %d %d %d\\n", str("abcdef", 3), '
                    'strncmp("abc", "abd", 2), strcontains("hello", "ell"), strlen("four")); }')
    assert r.out == "a,b\nab.. 0 1 4\n\n\n"


def test_gfp_constants_are_known() -> None:
    r = run_program('BEGIN { printf("%d %gr\\n", GFP_KERNEL, GFP_KERNEL | __GFP_ZERO); }')
    assert r.out == "3264 GFP_KERNEL|__GFP_ZERO\n\n\n"


def test_defines_and_enums_from_the_c_section() -> None:
    r = run_program('#define LIMIT 7\n#define NAME "x"\nenum e { A, B = 5, C };\n'
                    'BEGIN { printf("%d %s %d %d\\n", LIMIT, NAME, B, C); }')
    assert r.out == "7 x 5 6\n\n\n"


def test_json_error_records() -> None:
    r = run_program("BEGIN { for ($i : 0..3) { @m[$i] = 1; } warnf(\"w %d\", 1); while (1) { } }",
                    fmt="json", config={"max_map_keys": 1, "max_while_iterations": 5})
    lines = r.out.splitlines()
    assert lines[0].startswith('{"type": "helper_error", "msg": "Map full; can\'t update element.')
    assert lines[0].endswith('"helper": "map_update_elem", "retcode": -7, "filename": "stdin", '
                             '"line": 1, "col": 27}')
    assert lines[1] == '{"type": "warnf", "msg": "w 1", "filename": "stdin", "line": 1, "col": 41}'
    assert lines[2].startswith('{"type": "runtime_error", "msg": "while loop ran more than 5')
    assert r.rc == 1


def test_args_record_and_typed_fentry_args(machine) -> None:
    r = run_program("t:kmem:mm_page_free { print(args); exit(); }"
                    " fentry:__alloc_pages { @o = args.order; @g = args.gfp_mask; }",
                    lambda m: m.free_pages(m.alloc_pages("GFP_KERNEL", 1), 1), machine=machine)
    first = r.out.splitlines()[0]
    assert first.startswith("{ .pfn = ") and first.endswith(", .order = 1 }")
    assert r.out.endswith("@g: 3264\n@o: 1\n")
