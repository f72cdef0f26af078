"""Named scenarios: a documented reproduction that starts programs on a machine.

``NAME[:key=value,...]`` selects a scenario and its parameters (``anon-touch:size=512M``).
:func:`list_scenarios` lists them, :func:`get` finds one, :func:`parse_spec` checks the
parameters (an unknown scenario or parameter, or a bad value, is a :class:`UsageError` that
says what is valid) and :func:`start` launches it.  A scenario's main task carries the
scenario's name as its ``comm`` (what ``ps`` shows).

================  =========================================================================
``anon-touch``    map ``size`` of anonymous memory and write every page (one page fault each)
``fork-cow``      the parent writes ``size``, forks; the child writes ``child_pages`` of it
                  (copy-on-write faults) and exits; the parent exits after the child
``file-map``      create a ``size`` file, map it read-only and read every page (page-cache
                  faults with fault-around), optionally ``shared`` and written back (msync)
``stress-vm``     ``stress-ng --vm N --vm-bytes SIZE --timeout T``
``segv``          write to a page made read-only with mprotect: SIGSEGV and the dmesg line
================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from mmdbg.sim.include.mm import (
    MAP_PRIVATE,
    MAP_SHARED,
    MS_SYNC,
    PROT_READ,
    PROT_WRITE,
)
from mmdbg.workloads.api import Process
from mmdbg.workloads.programs import UsageError, parse_seconds, parse_size, start_command

ParamParser = Callable[[str], Any]


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "yes", "true", "on", "y"):
        return True
    if t in ("0", "no", "false", "off", "n"):
        return False
    raise UsageError(f"invalid boolean '{text}' (expected yes/no)")


def _int(text: str) -> int:
    try:
        v = int(text, 0)
    except ValueError:
        raise UsageError(f"invalid number '{text}'") from None
    if v < 0:
        raise UsageError(f"invalid number '{text}' (must not be negative)")
    return v


@dataclass(frozen=True)
class Param:
    name: str
    default: str
    parse: ParamParser
    doc: str


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    doc: str
    params: tuple[Param, ...]
    start: Callable[[Any, dict[str, Any]], Process]
    cmdline: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def usage(self) -> str:
        ps = ",".join(f"{p.name}={p.default}" for p in self.params)
        return f"{self.name}" + (f"[:{ps}]" if ps else "")

    def help(self) -> str:
        lines = [f"{self.name} -- {self.summary}", "", self.doc.strip(), "", "parameters:"]
        for p in self.params:
            lines.append(f"  {p.name:<12} {p.doc} (default {p.default})")
        if not self.params:
            lines.append("  (none)")
        return "\n".join(lines)


SCENARIOS: dict[str, Scenario] = {}


def register(s: Scenario) -> Scenario:
    SCENARIOS[s.name] = s
    return s


def list_scenarios() -> list[Scenario]:
    return [SCENARIOS[k] for k in sorted(SCENARIOS)]


def get(name: str) -> Scenario:
    s = SCENARIOS.get(name)
    if s is None:
        raise UsageError(f"unknown scenario '{name}' (available: {', '.join(sorted(SCENARIOS))})")
    return s


def parse_spec(spec: str) -> tuple[Scenario, dict[str, Any]]:
    """``name[:k=v,...]`` -> (scenario, parsed parameters with defaults filled in)."""
    name, _, rest = spec.strip().partition(":")
    s = get(name)
    given: dict[str, str] = {}
    if rest:
        for item in rest.split(","):
            k, eq, v = item.partition("=")
            k = k.strip()
            if not eq or not k:
                raise UsageError(f"{name}: bad parameter '{item}' (expected key=value; "
                                 f"usage: {s.usage()})")
            if k in given:
                raise UsageError(f"{name}: parameter '{k}' given twice")
            given[k] = v.strip()
    names = {p.name for p in s.params}
    for k in given:
        if k not in names:
            raise UsageError(f"{name}: unknown parameter '{k}' (valid: "
                             f"{', '.join(p.name for p in s.params) or 'none'}; usage: {s.usage()})")
    out: dict[str, Any] = {}
    for p in s.params:
        try:
            out[p.name] = p.parse(given.get(p.name, p.default))
        except UsageError as e:
            raise UsageError(f"{name}: {p.name}: {e}") from None
    return s, out


def start(machine: Any, spec: str) -> Process:
    """Start the scenario ``spec`` on ``machine`` (run it with ``machine.run()``)."""
    s, params = parse_spec(spec)
    machine.activate()
    return s.start(machine, params)


# -- the scenarios ---------------------------------------------------------------------------------
def _anon_touch(m: Any, a: dict[str, Any]) -> Process:
    size = a["size"]

    def prog(p: Process) -> Generator:
        addr = p.mmap(size, PROT_READ | PROT_WRITE)
        yield from p.touch_chunks(addr, size, True, 0xA7)
        if a["hold"]:
            yield p.sleep(a["hold"])
        p.munmap(addr, size)
        return 0

    return Process.start(m, "/usr/bin/anon-touch", ["anon-touch", str(size)], prog)


def _fork_cow(m: Any, a: dict[str, Any]) -> Process:
    size = a["size"]
    child_pages = min(a["child_pages"], size >> 12) if a["child_pages"] else size >> 12

    def child(p: Process) -> Generator:
        addr = p.task.cow_addr
        yield from p.touch_chunks(addr, child_pages << 12, False)
        yield from p.touch_chunks(addr, child_pages << 12, True, 0xC0)
        return 0

    def prog(p: Process) -> Generator:
        addr = p.mmap(size)
        yield from p.touch_chunks(addr, size, True, 0x9A)
        p.task.cow_addr = addr
        c = p.fork(child)
        c.task.cow_addr = addr
        yield p.wait(c.pid)
        if a["parent_writes"]:
            yield from p.touch_chunks(addr, size, True, 0x9B)
        p.munmap(addr, size)
        return 0

    return Process.start(m, "/usr/bin/fork-cow", ["fork-cow"], prog)


def _file_map(m: Any, a: dict[str, Any]) -> Process:
    size = a["size"]
    path = a["path"]
    shared = a["shared"]

    def prog(p: Process) -> Generator:
        if not p.m.vm.fs.exists(path):
            p.create_file(path, size)
        fd = p.open(path, "r+" if shared else "r")
        prot = PROT_READ | (PROT_WRITE if shared else 0)
        addr = p.mmap(size, prot, MAP_SHARED if shared else MAP_PRIVATE, fd)
        p.close(fd)
        yield from p.touch_chunks(addr, size, False)
        if shared:
            yield from p.touch_chunks(addr, size, True, 0x77)
            p.msync(addr, size, MS_SYNC)
        if a["hold"]:
            yield p.sleep(a["hold"])
        p.munmap(addr, size)
        return 0

    return Process.start(m, "/usr/bin/file-map", ["file-map", path], prog)


def _stress_vm(m: Any, a: dict[str, Any]) -> Process:
    cmd = f"stress-ng --vm {a['workers']} --vm-bytes {a['bytes']} --timeout {a['timeout']}"
    if a["keep"]:
        cmd += " --vm-keep"
    return start_command(m, cmd)


def _segv(m: Any, a: dict[str, Any]) -> Process:
    def prog(p: Process) -> Generator:
        addr = p.mmap(4 * 4096)
        p.touch(addr, 4 * 4096)
        p.mprotect(addr, 4096, PROT_READ)
        yield
        p.write_bytes(addr + 16, b"boom")  # SIGSEGV: the task dies here
        return 0

    return Process.start(m, "/usr/bin/segv", ["segv"], prog)


def _size(t: str) -> int:
    return parse_size(t)


def _secs(t: str) -> float:
    return parse_seconds(t)


register(Scenario(
    "anon-touch", "map and touch N MiB of anonymous memory",
    """One process (comm "anon-touch") maps `size` bytes of private anonymous memory and
writes one byte in every page: one minor fault per page (do_anonymous_page), RssAnon grows
to `size`, then the mapping is unmapped and the pages are freed.  `hold` keeps the memory
mapped for a while so it can be inspected (ps, vm, /proc/PID/smaps).""",
    (Param("size", "64M", _size, "bytes to map and touch"),
     Param("hold", "0", _secs, "seconds to sleep before unmapping")),
    _anon_touch))

register(Scenario(
    "fork-cow", "parent touches memory, forks, the child writes it (copy-on-write)",
    """The parent (comm "fork-cow") writes `size` bytes, forks; copy_page_range
write-protects both sides.  The child reads `child_pages` pages (no faults: shared) then
writes them: one do_wp_page -> wp_page_copy per page.  The parent waits; with
`parent_writes` it then writes everything again -- pages the child copied are exclusive
again and reused (wp_page_reuse, pgreuse in /proc/vmstat).""",
    (Param("size", "16M", _size, "bytes the parent maps and writes"),
     Param("child_pages", "0", _int, "pages the child writes (0: all)"),
     Param("parent_writes", "yes", _bool, "parent writes after the child exits")),
    _fork_cow))

register(Scenario(
    "file-map", "map a file and read it through the page cache",
    """Creates `path` (`size` bytes of deterministic contents) on the simulated disk, maps it
and reads every page: filemap_fault reads ahead 32 pages at a time from the disk (major
faults), do_fault_around maps 16 cached pages per fault.  With `shared` the mapping is
MAP_SHARED and writable: writes go through do_shared_fault/page_mkwrite and msync(MS_SYNC)
writes them back.""",
    (Param("size", "8M", _size, "file size"),
     Param("path", "/data/file.bin", str, "file to create and map"),
     Param("shared", "no", _bool, "MAP_SHARED, write and msync"),
     Param("hold", "0", _secs, "seconds to keep the mapping")),
    _file_map))

register(Scenario(
    "stress-vm", "stress-ng --vm workers",
    """`stress-ng --vm WORKERS --vm-bytes BYTES --timeout T`: each stress-ng-vm worker maps,
writes, reads and unmaps its memory in a loop until the timeout.""",
    (Param("workers", "2", _int, "number of vm workers"),
     Param("bytes", "32M", str, "--vm-bytes per worker"),
     Param("timeout", "0.05", str, "seconds to run"),
     Param("keep", "no", _bool, "--vm-keep")),
    _stress_vm))

register(Scenario(
    "segv", "a write to read-only memory: SIGSEGV",
    """The process maps 4 pages, makes the first read-only with mprotect and writes to it:
access_error -> bad_area_access_error -> SIGSEGV (SEGV_ACCERR), and dmesg shows
"segv[PID]: segfault at ADDR ip ... sp ... error 7 in segv[...]".""",
    (),
    _segv))


class LoadedScenario:
    """A scenario started on a machine (what the shell's ``scenario load`` keeps)."""

    def __init__(self, machine: Any, scenario: Scenario, process: Process) -> None:
        self.machine = machine
        self.scenario = scenario
        self.process = process


def load_scenario(name: str, params: dict[str, str] | None = None, machine: Any = None,
                  seed: int = 0, cmdline: str = "mem=1G cpus=2") -> LoadedScenario:
    """Boot a machine (unless given) and start scenario ``name`` with string ``params``.
    The machine gets ``cmdline`` plus the scenario's own options (``Scenario.cmdline``,
    e.g. ``kasan=on``), which win."""
    import mmdbg

    spec = name + (":" + ",".join(f"{k}={v}" for k, v in (params or {}).items())
                   if params else "")
    s, parsed = parse_spec(spec)
    if machine is None:
        machine = mmdbg.boot(f"{cmdline} {s.cmdline}".strip(), seed)
    machine.activate()
    return LoadedScenario(machine, s, s.start(machine, parsed))


# issue 7: page-cache scenarios (page-cache-thrash, dirty-throttle) and memory-pressure
# scenarios (oom-global, oom-adj, memcg-oom, swap-storm)
from mmdbg.workloads import pagecache as _pagecache  # noqa: E402,F401
from mmdbg.workloads import pressure as _pressure  # noqa: E402,F401

# issue 6: kernel-memory debugging scenarios (slab-leak, use-after-free, kfence-oob)
from mmdbg.workloads import slab_scenarios as _slab_scenarios  # noqa: E402,F401

# issue 7: zswap and memcg-protection scenarios
from mmdbg.workloads import zswap_scenarios as _zswap_scenarios  # noqa: E402,F401
