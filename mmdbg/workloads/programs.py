"""Simulated versions of familiar programs, started with their usual command lines.

=============================================  ===============================================
``stress-ng --vm N --vm-bytes SIZE``           N ``stress-ng-vm`` workers: mmap SIZE, write
``[--vm-keep] [--vm-hang S] [--timeout T]``    every page, read it back, munmap (not with
                                               ``--vm-keep``); ``--vm-hang S`` sleeps S seconds
                                               (0: forever) before unmapping
``stress-ng --mmap N --mmap-bytes SIZE``       N ``stress-ng-mmap`` workers: mmap, touch,
                                               mprotect, munmap page by page in random order
``stress-ng --bigheap N``                      N ``stress-ng-bigheap`` workers growing the
                                               heap with brk 64 KiB at a time, touching it,
                                               starting over when brk fails
``memhog [-rN] SIZE``                          numactl's memhog: map SIZE and write it, N times
``dd if=SRC of=DST bs=SIZE count=N``           /dev/zero, /dev/null or files, through the
                                               page cache
``cat FILE``, ``ls [DIR]``, ``sleep SECONDS``
=============================================  ===============================================

Sizes take the usual suffixes (``K``, ``M``, ``G``; stress-ng also ``%`` of RAM).  Parsing a
bad command line raises :class:`UsageError` with the program's usage line.  Randomness (page
order in ``--mmap``) comes from the machine's seeded RNG.
"""

from __future__ import annotations

import errno
import shlex
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from mmdbg.sim.include.mm import MAP_ANONYMOUS, MAP_PRIVATE, PROT_READ, PROT_WRITE
from mmdbg.workloads.api import Process

FOREVER = 86400.0
PAGE_WRITE_NS = 250  # memset of 4 KiB, cache-cold (reference/performance.md §1)
PAGE_READ_NS = 150


class UsageError(ValueError):
    """A bad command line or scenario parameter: the message says what to type."""


def parse_size(text: str, total: int | None = None, what: str = "size") -> int:
    t = text.strip()
    if t.endswith("%"):
        if total is None:
            raise UsageError(f"invalid {what} '{text}'")
        try:
            return int(total * float(t[:-1]) / 100) & ~4095
        except ValueError:
            raise UsageError(f"invalid {what} '{text}'") from None
    mult = 1
    suf = t[-1:].lower()
    if suf in "kmgt" and suf:
        mult = 1 << {"k": 10, "m": 20, "g": 30, "t": 40}[suf]
        t = t[:-1]
    if t.lower().endswith("b") and t[:-1].isdigit():
        t = t[:-1]
    try:
        n = int(float(t) * mult) if "." in t else int(t, 0) * mult
    except ValueError:
        raise UsageError(f"invalid {what} '{text}' (expected a number with K/M/G suffix)") \
            from None
    if n <= 0:
        raise UsageError(f"invalid {what} '{text}' (must be positive)")
    return n


def parse_seconds(text: str, what: str = "time") -> float:
    t = text.strip().lower()
    mult = 1.0
    for suf, f in (("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9), ("s", 1.0), ("m", 60.0),
                   ("h", 3600.0)):
        if t.endswith(suf):
            mult = f
            t = t[:-len(suf)]
            break
    try:
        v = float(t) * mult
    except ValueError:
        raise UsageError(f"invalid {what} '{text}' (expected seconds, e.g. 2 or 500ms)") \
            from None
    if v < 0:
        raise UsageError(f"invalid {what} '{text}'")
    return v


@dataclass
class Command:
    """A parsed command line: what to exec and the generator the process runs."""

    path: str
    argv: list[str]
    program: Callable[[Process], Generator]
    comm: str


# -- stress-ng --------------------------------------------------------------------------------
STRESS_USAGE = ("usage: stress-ng [--vm N --vm-bytes SIZE [--vm-keep] [--vm-hang S]] "
                "[--mmap N --mmap-bytes SIZE] [--bigheap N] [--timeout T]")


def _vm_worker(size: int, keep: bool, hang: float | None, deadline: float) -> Callable:
    def worker(p: Process) -> Generator:
        p.task.comm = "stress-ng-vm"
        m = p.m
        addr = None
        while m.clock.ns < deadline:
            if addr is None:
                try:
                    addr = p.mmap(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS)
                except OSError:
                    yield p.sleep(0.01)
                    continue
            # stress-ng writes and then checks every byte: a page costs a memset/memcmp
            yield from p.touch_chunks(addr, size, True, 0xA5, page_ns=PAGE_WRITE_NS)
            yield from p.touch_chunks(addr, size, False, page_ns=PAGE_READ_NS)
            if hang is not None:
                yield p.sleep(FOREVER if hang == 0 else hang)
            if not keep:
                p.munmap(addr, size)
                addr = None
            yield
        return 0

    return worker


def _mmap_worker(size: int, deadline: float) -> Callable:
    def worker(p: Process) -> Generator:
        p.task.comm = "stress-ng-mmap"
        m = p.m
        npages = max(1, size >> 12)
        while m.clock.ns < deadline:
            try:
                addr = p.mmap(npages << 12)
            except OSError:
                yield p.sleep(0.01)
                continue
            yield from p.touch_chunks(addr, npages << 12, True, 0x5A)
            p.mprotect(addr, npages << 12, PROT_READ)
            yield from p.touch_chunks(addr, npages << 12, False)
            order = list(range(npages))
            m.rng.shuffle(order)
            for i, pg in enumerate(order):
                p.munmap(addr + (pg << 12), 4096)
                if i % 64 == 63:
                    yield
            yield
        return 0

    return worker


def _bigheap_worker(growth: int, limit: int | None, deadline: float) -> Callable:
    def worker(p: Process) -> Generator:
        p.task.comm = "stress-ng-bigheap"
        m = p.m
        start = p.brk(0)
        while m.clock.ns < deadline:
            cur = p.brk(0)
            if limit is not None and cur - start + growth > limit:
                p.brk(start)
                yield
                continue
            new = p.brk(cur + growth)
            if new != cur + growth:
                p.brk(start)  # realloc failed: free everything and start over
                yield p.sleep(0.001)
                continue
            p.touch(cur, growth, True, 0x42)
            yield
        return 0

    return worker


def parse_stress_ng(argv: list[str], m: Any) -> Command:
    opts: dict[str, str | None] = {}
    flags = {"--vm-keep"}
    i = 1
    known = {"--vm", "--vm-bytes", "--vm-keep", "--vm-hang", "--mmap", "--mmap-bytes",
             "--bigheap", "--bigheap-growth", "--bigheap-bytes", "--timeout", "-t", "--metrics",
             "--metrics-brief", "-q", "--quiet", "-v", "--verbose"}
    while i < len(argv):
        a = argv[i]
        key, eq, val = a.partition("=")
        if key not in known:
            raise UsageError(f"stress-ng: unrecognized option '{a}'\n{STRESS_USAGE}")
        if key in flags or key in ("--metrics", "--metrics-brief", "-q", "--quiet", "-v",
                                   "--verbose"):
            opts[key] = None
            i += 1
            continue
        if not eq:
            if i + 1 >= len(argv):
                raise UsageError(f"stress-ng: option '{key}' requires an argument\n{STRESS_USAGE}")
            val = argv[i + 1]
            i += 2
        else:
            i += 1
        opts[key] = val
    total = m.totalram_pages << 12

    def count(key: str) -> int:
        v = opts.get(key)
        if v is None:
            return 0
        try:
            n = int(v)
        except ValueError:
            raise UsageError(f"stress-ng: invalid number '{v}' for {key}") from None
        if n < 0:
            raise UsageError(f"stress-ng: invalid number '{v}' for {key}")
        return n if n else m.ncpus

    nvm, nmmap, nbig = count("--vm"), count("--mmap"), count("--bigheap")
    if not (nvm or nmmap or nbig):
        raise UsageError(f"stress-ng: no stressor specified\n{STRESS_USAGE}")
    timeout = parse_seconds(opts["--timeout"] if opts.get("--timeout") is not None
                            else opts.get("-t") or str(FOREVER), "timeout")
    vm_bytes = parse_size(opts.get("--vm-bytes") or "256M", total, "--vm-bytes")
    mmap_bytes = parse_size(opts.get("--mmap-bytes") or "256M", total, "--mmap-bytes")
    growth = parse_size(opts.get("--bigheap-growth") or "64K", total, "--bigheap-growth")
    big_limit = parse_size(opts["--bigheap-bytes"], total) if opts.get("--bigheap-bytes") \
        else None
    hang = parse_seconds(opts["--vm-hang"], "--vm-hang") if "--vm-hang" in opts else None
    keep = "--vm-keep" in opts
    if vm_bytes < 4096 or mmap_bytes < 4096:
        raise UsageError("stress-ng: --vm-bytes/--mmap-bytes must be at least 4K")

    def main(p: Process) -> Generator:
        m = p.m
        deadline = m.clock.ns + timeout * 1e9
        kids = []
        for _ in range(nvm):
            kids.append(p.fork(_vm_worker(vm_bytes, keep, hang, deadline)))
        for _ in range(nmmap):
            kids.append(p.fork(_mmap_worker(mmap_bytes, deadline)))
        for _ in range(nbig):
            kids.append(p.fork(_bigheap_worker(growth, big_limit, deadline)))
        p.print(f"stress-ng: info:  [{p.pid}] dispatching hogs: "
                + ", ".join(f"{n} {name}" for n, name in ((nvm, "vm"), (nmmap, "mmap"),
                                                         (nbig, "bigheap")) if n))
        for _ in kids:
            yield p.wait()
        p.print(f"stress-ng: info:  [{p.pid}] successful run completed")
        return 0

    return Command("/usr/bin/stress-ng", argv, main, "stress-ng")


# -- the others ----------------------------------------------------------------------------------
def parse_memhog(argv: list[str], m: Any) -> Command:
    usage = "usage: memhog [-rNUM] SIZE"
    reps = 1
    size = None
    for a in argv[1:]:
        if a.startswith("-r"):
            try:
                reps = int(a[2:])
            except ValueError:
                raise UsageError(f"memhog: invalid repeat '{a}'\n{usage}") from None
        elif a.startswith("-"):
            raise UsageError(f"memhog: unknown option '{a}'\n{usage}")
        else:
            size = parse_size(a, m.totalram_pages << 12)
    if size is None:
        raise UsageError(usage)

    def main(p: Process) -> Generator:
        for _ in range(reps):
            addr = p.mmap(size)
            yield from p.touch_chunks(addr, size, True, 0xFF)
            p.munmap(addr, size)
            yield
        return 0

    return Command("/usr/bin/memhog", argv, main, "memhog")


def parse_dd(argv: list[str], m: Any) -> Command:
    usage = "usage: dd if=SRC of=DST [bs=SIZE] [count=N]"
    kv = {}
    for a in argv[1:]:
        k, eq, v = a.partition("=")
        if not eq or k not in ("if", "of", "bs", "count"):
            raise UsageError(f"dd: unrecognized operand '{a}'\n{usage}")
        kv[k] = v
    src = kv.get("if", "/dev/zero")
    dst = kv.get("of", "/dev/null")
    bs = parse_size(kv.get("bs", "512"), what="bs")
    count = int(kv["count"]) if "count" in kv and kv["count"].isdigit() else None
    if "count" in kv and count is None:
        raise UsageError(f"dd: invalid number '{kv['count']}'")

    def main(p: Process) -> Generator:
        fi = None if src == "/dev/zero" else p.open(src, "r")
        fo = None if dst == "/dev/null" else p.open(dst, "w")
        n = 0
        total = 0
        while count is None or n < count:
            data = bytes(bs) if fi is None else p.read(fi, bs)
            if not data:
                break
            if fo is not None:
                p.write(fo, data)
            total += len(data)
            n += 1
            yield
        for fd in (fi, fo):
            if fd is not None:
                p.close(fd)
        p.print(f"{n}+0 records in\n{n}+0 records out\n{total} bytes copied")
        return 0

    return Command("/usr/bin/dd", argv, main, "dd")


def parse_cat(argv: list[str], m: Any) -> Command:
    if len(argv) < 2:
        raise UsageError("usage: cat FILE...")
    files = argv[1:]

    def main(p: Process) -> Generator:
        rc = 0
        for f in files:
            try:
                fd = p.open(f, "r")
            except OSError:
                p.print(f"cat: {f}: No such file or directory")
                rc = 1
                continue
            while True:
                data = p.read(fd, 65536)
                if not data:
                    break
                p.task.tty_write(data.decode("latin-1"))
                yield
            p.close(fd)
        return rc

    return Command("/usr/bin/cat", argv, main, "cat")


def parse_ls(argv: list[str], m: Any) -> Command:
    dirs = argv[1:] or ["/"]

    def main(p: Process) -> Generator:
        rc = 0
        for d in dirs:
            try:
                names = p.listdir(d)
            except OSError:
                p.print(f"ls: cannot access '{d}': No such file or directory")
                rc = 2
                continue
            if len(dirs) > 1:
                p.print(f"{d}:")
            for n in names:
                p.print(n)
        yield
        return rc

    return Command("/usr/bin/ls", argv, main, "ls")


def parse_sleep(argv: list[str], m: Any) -> Command:
    if len(argv) != 2:
        raise UsageError("usage: sleep SECONDS")
    secs = parse_seconds(argv[1], "time interval")

    def main(p: Process) -> Generator:
        yield p.sleep(secs)
        return 0

    return Command("/usr/bin/sleep", argv, main, "sleep")


PROGRAMS: dict[str, Callable[[list[str], Any], Command]] = {
    "stress-ng": parse_stress_ng,
    "memhog": parse_memhog,
    "dd": parse_dd,
    "cat": parse_cat,
    "ls": parse_ls,
    "sleep": parse_sleep,
}


def parse_command(cmdline: str | list[str], m: Any) -> Command:
    argv = shlex.split(cmdline) if isinstance(cmdline, str) else list(cmdline)
    if not argv:
        raise UsageError("empty command line")
    name = argv[0].rsplit("/", 1)[-1]
    parser = PROGRAMS.get(name)
    if parser is None:
        raise UsageError(f"{argv[0]}: command not found (simulated programs: "
                         f"{', '.join(sorted(PROGRAMS))})")
    return parser(argv, m)


def start_command(m: Any, cmdline: str | list[str], run: bool = True) -> Process:
    """Parse and start a command line; returns its process."""
    cmd = parse_command(cmdline, m)
    return Process.start(m, cmd.path, cmd.argv, cmd.program, comm=cmd.comm, run=run)


_ = errno
