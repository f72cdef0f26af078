"""Attach points: parse ``provider:target`` strings, expand wildcards, list probes (``-l``).

Providers and their aliases follow bpftrace (names are case-insensitive since 0.24):

==============  =========================  ==========================================
provider        aliases                    target
==============  =========================  ==========================================
begin / end     BEGIN, END                 -
tracepoint      t                          ``category:name`` (declared by the sim)
kprobe          k                          a registered kernel function
kretprobe       kr                         a registered kernel function
fentry          f, kfunc                   a kernel function, typed ``args``
fexit           fr, kretfunc               a kernel function, ``args`` and ``retval``
interval        i                          ``s:N``, ``ms:N``, ``us:N``, ``hz:N``, ``N``, ``1s``
profile         p                          the same units; fires on every simulated CPU
software        s                          ``page-faults[:N]``, ``minor-faults``, ...
watchpoint      w                          ``ADDR:LEN:MODE`` on simulated memory
==============  =========================  ==========================================

Everything the simulation cannot have (uprobes, USDT, hardware counters) is rejected with a
message saying so.  Resolution only reads :mod:`mmdbg.sim.trace`; attaching is done by
:mod:`mmdbg.probe.session`.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

from mmdbg.probe import types as T

PROVIDERS = {
    "begin": "begin", "end": "end",
    "tracepoint": "tracepoint", "t": "tracepoint",
    "kprobe": "kprobe", "k": "kprobe",
    "kretprobe": "kretprobe", "kr": "kretprobe",
    "fentry": "fentry", "f": "fentry", "kfunc": "fentry",
    "fexit": "fexit", "fr": "fexit", "kretfunc": "fexit",
    "interval": "interval", "i": "interval",
    "profile": "profile", "p": "profile",
    "software": "software", "s": "software",
    "watchpoint": "watchpoint", "w": "watchpoint",
}

UNSUPPORTED = {
    "uprobe": "uprobe probes are not supported: mmdbg simulates no user-space binaries",
    "uretprobe": "uretprobe probes are not supported: mmdbg simulates no user-space binaries",
    "u": "uprobe probes are not supported: mmdbg simulates no user-space binaries",
    "ur": "uretprobe probes are not supported: mmdbg simulates no user-space binaries",
    "usdt": "usdt probes are not supported: mmdbg simulates no user-space binaries",
    "hardware": "hardware probes are not supported: the simulated CPUs have no PMU",
    "h": "hardware probes are not supported: the simulated CPUs have no PMU",
    "rawtracepoint": "rawtracepoint probes are not supported; use tracepoint:",
    "rt": "rawtracepoint probes are not supported; use tracepoint:",
    "iter": "iter probes are not supported",
    "it": "iter probes are not supported",
    "self": "self probes are not supported",
    "asyncwatchpoint": "asyncwatchpoint probes are not supported; use watchpoint:",
    "aw": "asyncwatchpoint probes are not supported; use watchpoint:",
    "test": "test probes are not supported",
    "bench": "bench probes are not supported",
}

# bpftrace's software events: name -> (aliases, default sample period).
SOFTWARE_EVENTS: dict[str, tuple[tuple[str, ...], int]] = {
    "page-faults": (("faults",), 100),
    "minor-faults": ((), 100),
    "major-faults": ((), 1),
    "cpu-clock": (("cpu",), 1_000_000),
    "task-clock": ((), 1),
    "context-switches": (("cs",), 1000),
    "cpu-migrations": ((), 1),
    "alignment-faults": ((), 1),
    "emulation-faults": ((), 1),
    "dummy": ((), 1),
    "bpf-output": ((), 1),
}
SUPPORTED_SOFTWARE = ("page-faults", "minor-faults", "major-faults")

_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


class AttachError(Exception):
    def __init__(self, msg: str, hints: list[str] | None = None):
        super().__init__(msg)
        self.msg = msg
        self.hints = hints or []


@dataclass
class ResolvedProbe:
    """One attach point after wildcard expansion."""

    provider: str
    name: str  # the full probe name, what the ``probe`` builtin returns
    target: Any = None  # Tracepoint or KernelFunction
    func: str = ""  # what ``func`` returns
    period_ns: int = 0  # interval / profile
    event: str = ""  # software event name
    count: int = 0  # software sample period
    watch: tuple[int, int, str] = (0, 0, "")
    args_type: T.Ty | None = None  # the ``args`` record, if the provider has one
    retval_type: T.Ty | None = None
    nargs: int = 0  # how many argN exist (kprobes)
    extra: dict[str, Any] = field(default_factory=dict)


_LOADED = False


def _trace() -> Any:
    """The attach surface, with every ``mmdbg.sim`` module imported once.

    Kernel functions and tracepoints register themselves when their module is imported, so
    without this the set of probes would depend on what happened to be imported before (a
    booted machine imports only what boot needs).  A module that fails to import is skipped.
    """
    global _LOADED
    from mmdbg.sim import trace

    if not _LOADED:
        _LOADED = True
        import importlib
        import pkgutil

        import mmdbg.sim as sim

        for mod in pkgutil.walk_packages(sim.__path__, "mmdbg.sim."):
            try:
                importlib.import_module(mod.name)
            except Exception:
                continue
    return trace


def canonical_provider(word: str) -> str | None:
    return PROVIDERS.get(word) or PROVIDERS.get(word.lower())


def _suggest(name: str, candidates: list[str]) -> list[str]:
    near = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
    return [f"Did you mean: {', '.join(near)}?"] if near else []


def _split(raw: str) -> list[str]:
    """Split on ':' outside double quotes, dropping the quotes."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in raw:
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _is_wild(s: str) -> bool:
    return any(c in s for c in "*?[")


def tracepoint_args(tp: Any) -> T.Ty:
    return T.record_of([(f.name, T.from_c_type(f.type)) for f in tp.fields])


def kfunc_args(kf: Any) -> T.Ty:
    return T.record_of([(n, T.from_c_type(t) if t else T.ANY) for n, t in kf.params])


def kfunc_ret_type(kf: Any) -> T.Ty:
    ann = getattr(getattr(kf, "func", None), "__annotations__", {}).get("return")
    if isinstance(ann, str) and ann.strip():
        return T.from_c_type(ann)
    return T.INT64


def parse_period(unit_or_value: list[str], provider: str) -> int:
    """``["s", "1"]`` / ``["hz", "99"]`` / ``["1s"]`` / ``["100"]`` -> period in ns."""
    if len(unit_or_value) == 2:
        unit, value = unit_or_value
        if not value.isdigit() or int(value) == 0:
            raise AttachError(f"{provider} rate must be a positive integer: '{value}'")
        n = int(value)
        if unit == "hz":
            return max(1, 1_000_000_000 // n)
        if unit in _UNITS:
            return n * _UNITS[unit]
        raise AttachError(f"invalid {provider} unit '{unit}' (expected s, ms, us, ns or hz)")
    if len(unit_or_value) == 1:
        m = re.fullmatch(r"([0-9]+)(ns|us|ms|s)?", unit_or_value[0])
        if m and int(m.group(1)) > 0:
            return int(m.group(1)) * _UNITS[m.group(2) or "ns"]
        raise AttachError(f"invalid {provider} period '{unit_or_value[0]}'")
    raise AttachError(f"{provider} probes take UNIT:N, e.g. {provider}:s:1")


def resolve(raw: str, *, params: list[str] | None = None, unsafe: bool = False) -> list[ResolvedProbe]:
    """Resolve one attach point to zero or more probes; raise :class:`AttachError`."""
    text = raw
    if "$" in text and params is not None:
        text = re.sub(r"\$([0-9]+)", lambda m: _param(params, int(m.group(1))), text)
    parts = _split(text)
    word = parts[0]
    prov = canonical_provider(word)
    if prov is None:
        if word.lower() in UNSUPPORTED or word in UNSUPPORTED:
            raise AttachError(UNSUPPORTED.get(word, UNSUPPORTED.get(word.lower(), "")))
        names = sorted(set(PROVIDERS) | {"BEGIN", "END"})
        raise AttachError(f"Invalid probe type: {word}", _suggest(word, names))
    rest = parts[1:]
    if prov in ("begin", "end"):
        if rest:
            raise AttachError(f"{word} probes take no arguments")
        return [ResolvedProbe(prov, prov)]
    if prov == "tracepoint":
        return _resolve_tracepoint(rest)
    if prov in ("kprobe", "kretprobe", "fentry", "fexit"):
        return _resolve_kfunc(prov, rest, unsafe)
    if prov in ("interval", "profile"):
        period = parse_period(rest, prov)
        return [ResolvedProbe(prov, f"{prov}:{':'.join(rest)}", period_ns=period)]
    if prov == "software":
        return [_resolve_software(rest)]
    if prov == "watchpoint":
        return [_resolve_watchpoint(rest)]
    raise AttachError(f"Invalid probe type: {word}")  # pragma: no cover


def _param(params: list[str], i: int) -> str:
    return params[i - 1] if 0 < i <= len(params) else ""


def _resolve_tracepoint(rest: list[str]) -> list[ResolvedProbe]:
    tr = _trace()
    if len(rest) != 2 or not rest[0] or not rest[1]:
        raise AttachError("tracepoint probes take CATEGORY:NAME, e.g. tracepoint:kmem:mm_page_alloc")
    full = f"{rest[0]}:{rest[1]}"
    declared = [tp.full_name for tp in tr.declared_tracepoints()]
    if _is_wild(full):
        names = [n for n in declared if fnmatch.fnmatchcase(n, full)]
        if not names:
            raise AttachError(f"No tracepoints match '{full}'",
                              ["list them with: mmdbg -l 'tracepoint:*'"])
    else:
        names = [full]
    out = []
    for name in names:
        tp = tr.find_tracepoint(name) if ":" in name else None
        if tp is None or not getattr(tp, "declared", True):
            known = tr.TRACEPOINTS.get(name)
            if known is not None:
                raise AttachError(f"tracepoint {name} exists in Linux but the simulation does "
                                  "not fire it (yet)", ["list the simulated ones with: mmdbg -l 'tracepoint:*'"])
            raise AttachError(f"tracepoint not found: {name}", _suggest(name, declared))
        out.append(ResolvedProbe("tracepoint", f"tracepoint:{tp.full_name}", tp,
                                 args_type=tracepoint_args(tp)))
    return out


def _kfunc_names() -> list[str]:
    return sorted(_trace().KFUNCS)


def _resolve_kfunc(prov: str, rest: list[str], unsafe: bool) -> list[ResolvedProbe]:
    tr = _trace()
    if not rest or not rest[-1]:
        raise AttachError(f"{prov} probes take a function name, e.g. {prov}:__alloc_pages")
    if len(rest) > 2:
        raise AttachError(f"invalid {prov} attach point: too many ':' segments")
    if len(rest) == 2 and rest[0] not in ("vmlinux", "mmdbg") and not _is_wild(rest[0]):
        raise AttachError(f"kernel module '{rest[0]}' not found (the simulated kernel is one "
                          "image, 'vmlinux')")
    name = rest[-1]
    if prov in ("kprobe", "kretprobe") and re.fullmatch(r"0[xX][0-9a-fA-F]+", name):
        if not unsafe:
            raise AttachError(f"{prov} on a raw address requires --unsafe")
        raise AttachError(f"{prov} on a raw address is not supported: attach by function name")
    if "+" in name and prov in ("kprobe",):
        fn, off = name.split("+", 1)
        try:
            offset = int(off, 0)
        except ValueError:
            raise AttachError(f"invalid kprobe offset '{off}'") from None
        if offset != 0:
            raise AttachError("kprobe offsets are not supported: simulated functions are "
                              "probed at entry only")
        name = fn
    if _is_wild(name):
        seen: dict[int, Any] = {}
        for n in _kfunc_names():
            kf = tr.KFUNCS[n]
            if fnmatch.fnmatchcase(n, name) and id(kf) not in seen:
                seen[id(kf)] = kf
        kfs = sorted(seen.values(), key=lambda k: k.name)
        if not kfs:
            raise AttachError(f"No kernel functions match '{name}'",
                              ["list them with: mmdbg -l 'kprobe:*'"])
    else:
        kf = tr.find_kfunc(name)
        if kf is None:
            raise AttachError(f"No kernel function named '{name}' in the simulated kernel",
                              _suggest(name, _kfunc_names()))
        kfs = [kf]
    out = []
    for kf in kfs:
        rp = ResolvedProbe(prov, f"{prov}:{kf.name}", kf, func=kf.name, nargs=len(kf.params))
        if prov in ("fentry", "fexit"):
            rp.args_type = kfunc_args(kf)
        if prov in ("kretprobe", "fexit"):
            rp.retval_type = kfunc_ret_type(kf)
        out.append(rp)
    return out


def _resolve_software(rest: list[str]) -> ResolvedProbe:
    if not rest or len(rest) > 2 or not rest[0]:
        raise AttachError("software probes take EVENT[:COUNT], e.g. software:page-faults:1")
    ev = rest[0]
    canon = None
    for name, (aliases, _default) in SOFTWARE_EVENTS.items():
        if ev == name or ev in aliases:
            canon = name
    if canon is None:
        raise AttachError(f"Unknown software event: {ev}", _suggest(ev, list(SOFTWARE_EVENTS)))
    if canon not in SUPPORTED_SOFTWARE:
        raise AttachError(f"software:{canon} is not simulated (supported: "
                          f"{', '.join(SUPPORTED_SOFTWARE)})")
    count = SOFTWARE_EVENTS[canon][1]
    if len(rest) == 2 and rest[1]:
        if not rest[1].isdigit() or int(rest[1]) == 0:
            raise AttachError(f"software count must be a positive integer: '{rest[1]}'")
        count = int(rest[1])
    return ResolvedProbe("software", f"software:{canon}:{count}", event=canon, count=count)


def _resolve_watchpoint(rest: list[str]) -> ResolvedProbe:
    if len(rest) != 3:
        raise AttachError("watchpoint probes take ADDR:LEN:MODE, e.g. watchpoint:0xffff888000100000:8:w")
    addr_s, len_s, mode = rest
    try:
        addr = int(addr_s, 0)
    except ValueError:
        raise AttachError(f"invalid watchpoint address '{addr_s}'") from None
    if len_s not in ("1", "2", "4", "8"):
        raise AttachError(f"invalid watchpoint length '{len_s}' (1, 2, 4 or 8)")
    if not mode or any(c not in "rwx" for c in mode) or len(set(mode)) != len(mode) or (
            "x" in mode and len(mode) > 1):
        raise AttachError(f"invalid watchpoint mode '{mode}' (r, w, rw or x)")
    return ResolvedProbe("watchpoint", f"watchpoint:{addr_s}:{len_s}:{mode}",
                         watch=(addr, int(len_s), mode))


# --------------------------------------------------------------------------- listing


def all_probe_names() -> list[tuple[str, list[str]]]:
    """Every probe mmdbg can attach, with ``-lv`` detail lines, sorted by name."""
    tr = _trace()
    out: list[tuple[str, list[str]]] = []
    for tp in tr.declared_tracepoints():
        out.append((f"tracepoint:{tp.full_name}", [f"{f.type} {f.name}" for f in tp.fields]))
    seen: set[int] = set()
    for name in sorted(tr.KFUNCS):
        kf = tr.KFUNCS[name]
        if id(kf) in seen:
            continue
        seen.add(id(kf))
        params = [f"{t or 'unsigned long'} {n}" for n, t in kf.params]
        ret = kfunc_ret_type(kf)
        out.append((f"kprobe:{kf.name}", []))
        out.append((f"fentry:{kf.name}", [*params, f"{_c_name(ret)} retval"]))
    for ev in SUPPORTED_SOFTWARE:
        out.append((f"software:{ev}:", []))
    out.sort(key=lambda x: x[0])
    return out


def _c_name(t: T.Ty) -> str:
    if t.kind == "ptr":
        return f"{t.struct} *" if t.struct else "void *"
    return {"int64": "long", "uint64": "unsigned long", "int32": "int", "uint32": "unsigned int",
            "bool": "bool"}.get(t.name, t.name or "long")


def list_probes(pattern: str | None = None, verbose: bool = False) -> list[str]:
    """Lines of ``-l [PATTERN]`` / ``-lv`` output."""
    pat = pattern or "*"
    if ":" in pat:
        head, tail = pat.split(":", 1)
        canon = canonical_provider(head)
        if canon:
            pat = f"{canon}:{tail}"
    elif not _is_wild(pat):
        pat = f"*{pat}*"
    lines: list[str] = []
    for name, detail in all_probe_names():
        if fnmatch.fnmatchcase(name, pat) or (pat.startswith("kretprobe:") and name.startswith(
                "kprobe:") and fnmatch.fnmatchcase("kretprobe:" + name[7:], pat)):
            lines.append(name)
            if verbose:
                lines.extend("    " + d for d in detail)
    return lines
