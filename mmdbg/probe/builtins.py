"""The probe language's builtin names: variables, functions, aggregations, unsafe ones.

Shared by the checker (:mod:`.checker`, :mod:`.calls`) and the documentation.  Types are
those of :mod:`.types`; which probes may use ``args``/``retval``/``argN``/``func`` follows
bpftrace.
"""

from __future__ import annotations

import difflib
import re

from mmdbg.probe import types as T

AGGREGATIONS = {"count": (0, 0), "sum": (1, 1), "avg": (1, 1), "min": (1, 1), "max": (1, 1),
                "stats": (1, 1), "hist": (1, 2), "lhist": (4, 4)}
UNSAFE_FUNCS = {"system", "signal", "signal_thread", "override", "stop"}
UNSUPPORTED_FUNCS = {
    "cat": "cat() would read host files; not supported",
    "usym": "usym() is not supported: no user-space symbols are simulated",
    "uaddr": "uaddr() is not supported: no user-space symbols are simulated",
    "ustack_build_id": "not supported",
    "tseries": "tseries() is not supported yet",
    "buf": "buf() is not supported yet",
    "path": "path() is not supported",
    "ntop": "ntop() is not supported (no network stack is simulated)",
    "pton": "pton() is not supported (no network stack is simulated)",
    "macaddr": "macaddr() is not supported (no network stack is simulated)",
    "skboutput": "skboutput() is not supported (no network stack is simulated)",
    "socket_cookie": "socket_cookie() is not supported (no network stack is simulated)",
    "write_user": "write_user() is not supported: no user memory is writable from probes",
    "unwatch": "unwatch() is not supported",
    "reg": "reg() is not supported: simulated functions have no registers",
    "uptr": "uptr() is not supported: no user-space memory is simulated",
    "cgroup_path": "cgroup_path() is not supported yet",
    "cgroupid": "cgroupid() is not supported yet",
    "percpu_kaddr": "percpu_kaddr() is not supported yet",
    "offsetof": "offsetof() is not supported yet",
    "fail": "fail() is not supported",
}

# Builtin variables and their types.  "args", "retval", "argN" depend on the probe.
BUILTIN_VARS: dict[str, T.Ty] = {
    "pid": T.UINT32, "tid": T.UINT32, "uid": T.UINT32, "gid": T.UINT32,
    "comm": T.STRING, "cpu": T.UINT32, "ncpus": T.UINT32, "numaid": T.UINT32,
    "nsecs": T.UINT64, "elapsed": T.UINT64, "jiffies": T.UINT64,
    "kstack": T.STACK, "ustack": T.USTACK, "func": T.KSYM, "probe": T.STRING,
    "curtask": T.ptr("struct task_struct"), "cgroup": T.UINT64, "rand": T.UINT32,
    "usermode": T.UINT8, "username": T.STRING, "ppid": T.UINT32, "pcomm": T.STRING,
    "cpid": T.UINT32, "probetype": T.STRING,
}
FUNC_PROVIDERS = ("kprobe", "kretprobe", "fentry", "fexit")
ARGS_PROVIDERS = ("tracepoint", "fentry", "fexit")
RETVAL_PROVIDERS = ("kretprobe", "fexit")
ARGN_PROVIDERS = ("kprobe",)

ARGN = re.compile(r"arg([0-9]+)")


KNOWN_FUNCS = sorted(set(AGGREGATIONS) | UNSAFE_FUNCS | {
    "printf", "print", "time", "join", "str", "ksym", "kaddr", "strftime", "len", "has_key",
    "delete", "clear", "zero", "exit", "kstack", "ustack", "nsecs", "strncmp", "strcontains",
    "strlen", "errorf", "warnf", "kptr", "bswap", "strerror", "is_err", "strstr", "pfn_to_page",
    "page_to_pfn", "page_zone"})


def near(name: str, candidates: list[str]) -> list[str]:
    near = difflib.get_close_matches(name, candidates, n=3, cutoff=0.7)
    return [f"Did you mean: {', '.join(near)}?"] if near else []


def nargs_msg(name: str, lo: int, hi: int, n: int) -> str:
    if lo == hi:
        want = "no arguments" if lo == 0 else f"{lo} argument{'s' if lo != 1 else ''}"
        return f"{name}() requires {want} ({n} provided)"
    return f"{name}() requires {lo} to {hi} arguments ({n} provided)"
