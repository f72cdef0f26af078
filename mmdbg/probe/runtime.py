"""What compiled probes call at run time: maps, aggregation buckets, builtins, safe field reads.

Maps are dicts: a scalar map is keyed by ``()``, a one-key map by the key itself, a multi-key
map by a tuple.  Values are ints (count/sum/min/max and plain integer maps), two-element lists
``[count, total]`` (avg/stats), dicts ``{bucket: count}`` (hist/lhist), or any probe value.
Aggregations are not per-CPU: the simulation is deterministic and single-threaded, so the sum
over CPUs is kept directly.

Probes cannot change the simulated machine: every read of a kernel object goes through
:func:`field`, which only reads attributes of objects whose classes live in ``mmdbg.sim``
(never a name starting with ``__``), so no probe can reach host Python.  The only writes are the
unsafe builtins (``override``, ``signal``, ``stop``), which ask the machine to act.

BPF integer semantics that matter for programs are kept: ``x / 0 == 0``, ``x % 0 == x``,
division truncates toward zero, shifts use the low 6 bits of the count, and ``*`` and ``<<``
wrap to 64 bits so a loop cannot build unbounded Python integers.
"""

from __future__ import annotations

import array
import datetime
import types
from collections.abc import Callable
from typing import Any

from mmdbg.probe import values as V
from mmdbg.probe.ast import NOLOC, Loc
from mmdbg.probe.errors import ProbeRuntimeError

MASK64 = (1 << 64) - 1
SIGN64 = 1 << 63
VMEMMAP_START = 0xFFFFEA0000000000  # x86_64: struct page *page = vmemmap + pfn
STRUCT_PAGE_SIZE = 64


class Fatal(ProbeRuntimeError):
    """A runtime error that ends the run (loop cap, instruction budget, bad field)."""


class Stop(Exception):
    pass


class Return(Exception):
    pass


# --------------------------------------------------------------------------- arithmetic


def wrap(x: int) -> int:
    """Signed 64-bit wrap-around."""
    return ((x + SIGN64) & MASK64) - SIGN64


def div(a: Any, b: Any) -> int:
    a, b = int(a), int(b)
    if b == 0:
        return 0
    q = abs(a) // abs(b)
    return -q if (a < 0) != (b < 0) else q


def mod(a: Any, b: Any) -> int:
    a, b = int(a), int(b)
    if b == 0:
        return a
    return a - b * div(a, b)


def shl(a: Any, b: Any) -> int:
    return wrap(int(a) << (int(b) & 63))


def shr(a: Any, b: Any) -> int:
    return int(a) >> (int(b) & 63)


def mul(a: Any, b: Any) -> int:
    return wrap(int(a) * int(b))


def cast(x: Any, bits: int, signed: bool) -> int:
    x = V.kaddr(x) if not isinstance(x, int) else int(x)
    if bits >= 64:
        x &= MASK64
        return x - (1 << 64) if signed and x & SIGN64 else x
    mask = (1 << bits) - 1
    x &= mask
    if signed and x & (1 << (bits - 1)):
        x -= 1 << bits
    return x


# --------------------------------------------------------------------------- histograms


def hist_index(v: Any, k: int) -> int:
    """bpftrace's log2 bucket index with 2**k sub-buckets per power of two (0: negative)."""
    v = int(v)
    if v < 0:
        return 0
    if v > MASK64:
        v = MASK64
    n = 1 << k
    if v < n:
        return v + 1
    p = v.bit_length() - 1
    return 1 + (p - k + 1) * n + ((v - (1 << p)) >> (p - k))


def lhist_index(v: Any, lo: int, hi: int, step: int) -> int:
    v = int(v)
    if v < lo:
        return 0
    if v > hi:
        return 1 + (hi - lo) // step
    return 1 + (v - lo) // step


def avg_of(pair: list[int] | None) -> int:
    if not pair or not pair[0]:
        return 0
    return div(pair[1], pair[0])


# --------------------------------------------------------------------------- kernel reads

_READABLE_EXTRA = (types.SimpleNamespace,)
_SEQUENCES = (list, tuple, str, bytes, bytearray, array.array)


def _readable(obj: Any) -> bool:
    mod = getattr(type(obj), "__module__", "") or ""
    return mod.startswith("mmdbg.sim") or isinstance(obj, _READABLE_EXTRA)


class _NoTask:
    """The idle task, for events that fire with no current task."""

    pid = tgid = uid = gid = 0
    comm = "swapper/0"
    mm = None


NOTASK = _NoTask()


def to_value(v: Any) -> Any:
    if isinstance(v, bool | int | str | tuple | V.Record):
        return v
    if isinstance(v, float):
        return int(v)
    if v is None:
        return 0
    return v


class Runtime:
    """State shared by one program's probes: maps, output, config, the machine."""

    def __init__(self, checked: Any, machine: Any, output: Any, err: Any,
                 on_exit: Callable[[], None] | None = None):
        self.checked = checked
        self.machine = machine
        self.out = output
        self.err = err
        self.config = checked.config
        self.infos = sorted(checked.maps.values(), key=lambda m: m.index)
        self.maps: list[dict[Any, Any]] = [{} for _ in self.infos]
        self.limits = [m.max_entries for m in self.infos]
        self.full_warned: set[int] = set()
        self.exit_requested = False
        self.exit_code = 0
        self.error: ProbeRuntimeError | None = None
        self.stopped_at: str | None = None
        self.start_ns = self.now()
        self.on_exit = on_exit
        self.on_stop: Callable[[Any, str], None] | None = None
        self.locs: list[Loc] = []
        self.overrides = 0

    # -- machine facts ------------------------------------------------------------------
    def now(self) -> int:
        clock = getattr(self.machine, "clock", None)
        return int(getattr(clock, "ns", 0) or 0)

    @property
    def ncpus(self) -> int:
        for name in ("nr_cpu_ids", "ncpus", "nr_cpus"):
            v = getattr(self.machine, name, None)
            if isinstance(v, int):
                return v
        cpus = getattr(self.machine, "cpus", None)
        try:
            return len(cpus) if cpus is not None else 1
        except TypeError:
            return 1

    def numaid(self, cpu: int) -> int:
        f = getattr(self.machine, "cpu_to_node", None)
        try:
            return int(f(cpu) if callable(f) else f[cpu])  # type: ignore[index]
        except Exception:
            return 0

    def rand(self) -> int:
        rng = getattr(self.machine, "rng", None)
        if rng is None:
            import random

            rng = self.machine_rng = getattr(self, "machine_rng", random.Random(0))
        return rng.getrandbits(32)

    def jiffies(self, ev: Any) -> int:
        hz = getattr(self.machine, "HZ", 250)
        return 4294937296 + ev.nsecs * hz // 1_000_000_000  # INITIAL_JIFFIES + elapsed

    def username(self, uid: int) -> str:
        return "root" if uid == 0 else str(uid)

    def kobj(self, struct: str, addr: int) -> Any:
        if not addr:
            return None
        name = struct.split(" ", 1)[1] if " " in struct else struct
        f = getattr(self.machine, "kobj", None)
        if not callable(f):
            if name == "page" and VMEMMAP_START <= addr < VMEMMAP_START + (1 << 40):
                return self.pfn_to_page((addr - VMEMMAP_START) // STRUCT_PAGE_SIZE)
            raise Fatal(f"can not dereference address 0x{addr:x}: the machine has no kobj() "
                        "resolver", self.cur_loc)
        try:
            return f(name, addr)
        except Exception as e:  # the resolver says what is wrong
            raise Fatal(f"can not read {struct or 'memory'} at 0x{addr:x}: {e}", self.cur_loc) from None

    cur_loc: Loc = NOLOC

    # -- page helpers (kernel-named mmdbg extensions) -----------------------------------
    def pfn_to_page(self, pfn: Any) -> Any:
        pfn = int(pfn) if isinstance(pfn, int) else V.kaddr(pfn)
        if pfn < 0:
            return None
        valid = getattr(self.machine, "pfn_valid", None)
        if callable(valid) and not valid(pfn):
            return None
        return self.machine.page(pfn)

    def page_to_pfn(self, page: Any) -> int:
        if page is None:
            return 0
        if isinstance(page, int):
            return (page - VMEMMAP_START) // STRUCT_PAGE_SIZE if page >= VMEMMAP_START else page
        return int(getattr(page, "pfn", 0))

    def page_zone(self, page: Any) -> Any:
        if page is None or page is False:
            return None
        pfn = self.page_to_pfn(page) if not isinstance(page, int) or page >= VMEMMAP_START else page
        f = getattr(self.machine, "pfn_zone", None)
        return f(pfn) if callable(f) else None

    # -- safe reads ---------------------------------------------------------------------
    def field(self, obj: Any, name: str, struct: str, loc: int) -> Any:
        if obj is None or obj is False:
            return 0
        if isinstance(obj, int):
            if obj == 0:
                return 0
            self.cur_loc = self.locs[loc]
            obj = self.kobj(struct, obj)
            if obj is None:
                return 0
        if not _readable(obj):
            raise Fatal(f"can not read field '{name}' of a value of type "
                        f"{type(obj).__name__}", self.locs[loc])
        aliases = getattr(type(obj), "kfield_aliases", None)
        if aliases and name in aliases:
            name = aliases[name]
        try:
            v = getattr(obj, name)
        except AttributeError:
            tname = struct or type(obj).__name__
            raise Fatal(f"{tname} has no field '{name}'", self.locs[loc]) from None
        except Exception as e:
            raise Fatal(f"reading field '{name}' failed: {type(e).__name__}", self.locs[loc]) from None
        if callable(v) and not _readable(v):
            raise Fatal(f"'{name}' is not a field of {struct or type(obj).__name__}", self.locs[loc])
        return to_value(v)

    def index(self, obj: Any, i: Any, loc: int) -> Any:
        if obj is None or isinstance(obj, int):
            return 0
        if not (isinstance(obj, _SEQUENCES) or _readable(obj)):
            raise Fatal(f"can not index a value of type {type(obj).__name__}", self.locs[loc])
        try:
            v = obj[int(i)]
        except (IndexError, KeyError, TypeError, ValueError):
            return 0
        return to_value(v)

    def args_record(self, args: Any, names: tuple[str, ...]) -> V.Record:
        return V.Record(names, tuple(to_value(getattr(args, n, 0)) for n in names))

    def args_record_fields(self, fields: dict[str, Any], names: tuple[str, ...]) -> V.Record:
        """:meth:`args_record` for a raw tracepoint handler's fields dict."""
        return V.Record(names, tuple(to_value(fields.get(n, 0)) for n in names))

    # -- builtins -----------------------------------------------------------------------
    def kstack(self, ev: Any, limit: int | None, mode: str, ptype: str = "") -> V.Stack:
        try:
            frames = list(ev.kstack(limit or 127))
        except Exception:
            frames = []
        if ptype in ("kprobe", "fentry"):
            # At a kprobe the probed function is the innermost frame (its entry, +0); the
            # attach surface calls handlers before the function's own frame exists.
            name = getattr(getattr(ev, "probe", None), "name", "")
            if name and not (frames and frames[0].split("+", 1)[0] == name):
                frames.insert(0, f"{name}+0")
        cls = {"perf": V.PerfStack, "raw": V.RawStack}.get(mode or self.config["stack_mode"], V.Stack)
        return cls(frames[: limit or 127])

    def ksym(self, addr: Any) -> str:
        if isinstance(addr, str):
            return addr
        f = getattr(self.machine, "ksym", None)
        a = V.kaddr(addr)
        if callable(f):
            try:
                s = f(a)
                if s:
                    return str(s)
            except Exception:
                pass
        return f"0x{a:x}"

    def kaddr(self, name: str) -> int:
        f = getattr(self.machine, "kallsyms_lookup_name", None) or getattr(self.machine, "kaddr", None)
        if callable(f):
            try:
                return int(f(name) or 0)
            except Exception:
                return 0
        return 0

    def to_str(self, v: Any, n: Any = None) -> str:
        limit = self.config["max_strlen"]
        if n is not None:
            limit = max(0, min(int(n), limit))
        if isinstance(v, bytes | bytearray):
            s = bytes(v).split(b"\0", 1)[0].decode("utf-8", "replace")
        elif isinstance(v, str):
            s = v
        else:
            s = V.text_of(v)
        if len(s) >= limit:
            s = s[: max(0, limit - 1)] + self.config["str_trunc_trailer"]
        return s

    def strftime(self, fmt: str, ns: Any) -> str:
        ns = int(ns)
        base = getattr(self.machine, "boot_epoch_ns", 0) or 0
        t = datetime.datetime.fromtimestamp(0, datetime.UTC) + datetime.timedelta(
            microseconds=(base + ns) // 1000)
        f = fmt.replace("%f", f"{(base + ns) // 1000 % 1_000_000:06d}")
        try:
            return t.strftime(f)
        except ValueError:
            return f

    # -- output -------------------------------------------------------------------------
    def printf(self, text: str) -> None:
        self.out.printf(text)

    def print_value(self, v: Any, ty: Any) -> None:
        self.out.value(v, ty)

    def print_map(self, i: int, top: Any = 0, div_: Any = 0) -> None:
        self.out.map(self.infos[i], self.maps[i], int(top or 0), int(div_ or 0))

    def time(self, fmt: str | None, ev: Any) -> None:
        self.out.time(self.strftime(fmt if fmt is not None else "%H:%M:%S\n", ev.nsecs))

    def join(self, v: Any, sep: str = " ") -> None:
        items = v if isinstance(v, list | tuple) else [v]
        self.out.join(sep.join(V.text_of(x) for x in items))

    def diag(self, severity: str, msg: str, loc: int, kind: str = "") -> None:
        """errorf()/warnf() and runtime warnings, with the probe's source location."""
        from mmdbg.probe.errors import Diagnostic

        d = Diagnostic(severity, msg, self.locs[loc])
        if not kind:
            kind = "errorf" if severity == "ERROR" else "warnf"
        self.out.diagnostic(d.render(self.checked.source, self.checked.filename), severity, msg,
                            d.loc, self.checked.filename, kind)

    # -- maps ---------------------------------------------------------------------------
    def map_full(self, i: int, loc: int) -> None:
        if i in self.full_warned:
            return
        self.full_warned.add(i)
        self.diag("WARNING", "Map full; can't update element. Try increasing max_map_keys "
                  "config or manually setting the max entries in a map declaration e.g. "
                  f"`let {self.infos[i].name} = hash({self.limits[i] * 2})`", loc, "helper_error")

    def zero_map(self, i: int) -> None:
        m = self.maps[i]
        kind = self.infos[i].agg
        for k in m:
            if kind in ("avg", "stats"):
                m[k] = [0, 0]
            elif kind in ("hist", "lhist"):
                m[k] = {}
            else:
                m[k] = 0

    def incdec(self, i: int, key: Any, delta: int, prefix: bool, loc: int) -> int:
        m = self.maps[i]
        old = m.get(key)
        if old is None:
            if len(m) >= self.limits[i]:
                self.map_full(i, loc)
                return 0
            old = 0
        m[key] = old + delta
        return old + delta if prefix else old

    def delete(self, i: int, key: Any) -> bool:
        m = self.maps[i]
        if key in m:
            del m[key]
            return True
        return False

    # -- control ------------------------------------------------------------------------
    def exit(self, code: Any = 0) -> None:
        if not self.exit_requested:
            self.exit_requested = True
            self.exit_code = int(code) & 0xFF
            if self.on_exit is not None:
                self.on_exit()

    def fatal(self, e: ProbeRuntimeError) -> None:
        if self.error is None:
            self.error = e
            d = e.diagnostic()
            self.out.diagnostic(d.render(self.checked.source, self.checked.filename), d.severity,
                                d.msg, d.loc, self.checked.filename, "runtime_error")
        self.exit(1)

    def internal(self, e: BaseException, loc: int) -> None:
        self.fatal(Fatal(f"probe failed: {type(e).__name__}: {e}", self.locs[loc]))

    def signal(self, sig: Any, ev: Any) -> None:
        from mmdbg.probe.unsafe import send_signal

        send_signal(self, sig, ev)

    def system(self, text: str) -> None:
        self.out.syscall(f"system() would run: {text}")

    def stop(self, ev: Any, probe: str) -> None:
        from mmdbg.probe.unsafe import stop_here

        stop_here(self, ev, probe)
