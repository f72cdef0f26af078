"""zswap and memcg-protection scenarios (issue 7), and page contents for workloads.

====================  ====================================================================
``zswap``             the same pressure without then with zswap: pswpout vs zswpout, the
                      compression ratio of the chosen page contents
``memcg-protection``  memory.low keeps one group's working set while its sibling is squeezed
====================  ====================================================================

Workloads choose what their pages hold (:func:`fill_chunks`): ``zeros`` (swapped as a bit in
the swap zeromap), ``text`` (slices of English-like text, 1.6-2.5x compressible), ``random``
(incompressible: zswap rejects it as ``reject_compress_poor``) or ``mixed`` (a third each).
The bytes come from ``machine.rng`` so runs are reproducible.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mmdbg.workloads.api import CHUNK_PAGES, Process
from mmdbg.workloads.programs import parse_size
from mmdbg.workloads.scenarios import Param, Scenario, register

CONTENTS = ("zeros", "text", "random", "mixed")
_WORDS = (
    "the", "of", "and", "to", "in", "is", "that", "it", "was", "for", "on", "are", "as",
    "with", "his", "they", "at", "be", "this", "from", "have", "or", "by", "one", "had", "not",
    "but", "what", "all", "were", "when", "we", "there", "can", "an", "your", "which", "their",
    "said", "if", "do", "will", "each", "about", "how", "up", "out", "them", "then", "she",
    "many", "some", "so", "these", "would", "other", "into", "has", "more", "her", "two",
    "like", "him", "see", "time", "could", "no", "make", "than", "first", "been", "its", "who",
    "now", "people", "my", "made", "over", "did", "down", "only", "way", "find", "use", "may",
    "water", "long", "little", "very", "after", "words", "called", "just", "where", "most",
    "know", "memory", "page", "kernel", "swap", "reclaim", "zone", "node", "slab", "cache",
    "process", "thread", "file", "write", "read", "fault", "lock", "list", "free", "order",
    "buddy", "compress", "pool", "entry", "device", "block", "inode",
)


def _corpus(m: Any) -> bytes:
    """256 KiB of English-like text: sentences from a small stock, a quarter of their words
    replaced (lz4 ~1.6x, lzo ~1.9x, zstd and deflate ~2.5x on a page, as with real text)."""
    c = getattr(m, "_text_corpus", None)
    if c is None:
        rng = m.rng
        stock = [[rng.choice(_WORDS) for _ in range(rng.randrange(6, 18))] for _ in range(96)]
        out: list[str] = []
        n = 0
        while n < 256 << 10:
            words = [rng.choice(_WORDS) if rng.random() < 0.25 else w
                     for w in rng.choice(stock)]
            sent = " ".join(words)
            s = sent[0].upper() + sent[1:] + (". " if rng.random() < 0.85 else ".\n")
            out.append(s)
            n += len(s)
        c = m._text_corpus = "".join(out).encode()
    return c


def page_content(m: Any, kind: str, index: int = 0) -> bytes:
    """4096 bytes of ``kind`` (zeros, text, random, mixed) from the machine's RNG."""
    if kind == "mixed":
        kind = ("text", "random", "zeros")[index % 3]
    if kind == "zeros":
        return bytes(4096)
    if kind == "random":
        return m.rng.randbytes(4096)
    if kind == "text":
        c = _corpus(m)
        off = m.rng.randrange(0, len(c) - 4096)
        return c[off:off + 4096]
    raise ValueError(f"unknown page content '{kind}' (expected one of {', '.join(CONTENTS)})")


def fill_chunks(p: Process, addr: int, length: int, content: str,
                chunk_pages: int = CHUNK_PAGES) -> Generator:
    """``yield from`` this: write whole pages of ``content`` over [addr, addr+length)."""
    m = p.m
    npages = length >> 12
    i = 0
    while i < npages:
        end = min(npages, i + chunk_pages)
        if content == "zeros":
            p.touch(addr + (i << 12), (end - i) << 12, True, 0)
        else:
            for k in range(i, end):
                p.write_bytes(addr + (k << 12), page_content(m, content, k))
        i = end
        yield


def _content(t: str) -> str:
    from mmdbg.shell.errors import UsageError

    if t not in CONTENTS:
        raise UsageError(f"expected one of {', '.join(CONTENTS)}")
    return t


def _size0(t: str) -> int:
    return 0 if t.strip() == "0" else parse_size(t)


def _vm(m: Any) -> dict[str, int]:
    return {k: int(v) for k, v in (ln.split() for ln in m.read("/proc/vmstat").splitlines())}


# -- zswap -----------------------------------------------------------------------------------------
def zswap_report(m: Any) -> dict[str, Any]:
    """The pool's figures now: stored pages, pool bytes, compression ratio."""
    from mmdbg.sim.mm.zswap import debugfs_stats

    st = debugfs_stats(m)
    pool = st["pool_total_size"]
    st["ratio"] = round(st["stored_pages"] * 4096 / pool, 2) if pool else 0.0
    return st


def _zswap(m: Any, a: dict[str, Any]) -> Process:
    m.write("/proc/sys/vm/overcommit_memory", "1")
    if a["compressor"]:
        m.write("/sys/module/zswap/parameters/compressor", a["compressor"])
    size, passes, content = a["size"], a["passes"], a["content"]
    snap: dict[str, Any] = {}

    def worker(c: Process) -> Generator:
        addr = c.mmap(size)
        yield from fill_chunks(c, addr, size, content)
        snap.update(zswap_report(c.m))
        for _ in range(passes):
            yield from c.touch_chunks(addr, size, False)
        return 0

    def driver(p: Process) -> Generator:
        rows = []
        for mode in ("N", "Y"):
            p.m.write("/sys/module/zswap/parameters/enabled", mode)
            before = _vm(p.m)
            t0 = p.m.clock.ns
            snap.clear()
            child = p.fork(worker)
            yield p.wait(child.pid)
            after = _vm(p.m)
            d = {k: after[k] - before[k] for k in ("pswpout", "pswpin", "zswpout", "zswpin",
                                                   "zswpwb", "swpout_zero", "pgmajfault")}
            rows.append((mode, d, (p.m.clock.ns - t0) / 1e6, dict(snap)))
        for mode, d, ms, _st in rows:
            p.print(f"zswap {'on ' if mode == 'Y' else 'off'}: pswpout {d['pswpout']} "
                    f"pswpin {d['pswpin']} zswpout {d['zswpout']} zswpin {d['zswpin']} "
                    f"zswpwb {d['zswpwb']} swpout_zero {d['swpout_zero']} "
                    f"majfault {d['pgmajfault']} time {ms:.1f} ms")
        st = rows[1][3]
        p.print(f"zswap pool ({p.m.zswap.compressor}, {content} pages): stored_pages "
                f"{st.get('stored_pages', 0)} pool_total_size {st.get('pool_total_size', 0)} "
                f"ratio {st.get('ratio', 0.0)} reject_compress_poor "
                f"{st.get('reject_compress_poor', 0)} pool_limit_hit "
                f"{st.get('pool_limit_hit', 0)}")
        p.task.zswap_rows = rows
        return 0

    return Process.start(m, "/usr/bin/zswap-demo", ["zswap-demo"], driver)


register(Scenario(
    "zswap", "the same memory pressure without and with zswap",
    """A process writes `size` of `content` pages (zeros, text, random or mixed) and reads
them `passes` times, first with /sys/module/zswap/parameters/enabled=N, then =Y.  Without
zswap every reclaimed page is written to the swap device (pswpout) and read back (pswpin,
major faults); with it, compressible pages go to the compressed pool (zswpout/zswpin) and
only rejects reach the device.  Zero pages never reach either (swpout_zero).  The output
compares the counters and prints the pool's compression ratio (stored_pages * 4096 /
pool_total_size) for the chosen `compressor`.""",
    (Param("size", "96M", parse_size, "bytes the process writes"),
     Param("passes", "1", int, "times it reads them back"),
     Param("content", "text", _content, "zeros, text, random or mixed"),
     Param("compressor", "", str, "zswap compressor (default: the boot one)")),
    _zswap, cmdline="mem=128M swap=256M"))


# -- memcg-protection ------------------------------------------------------------------------------
def _memcg_protection(m: Any, a: dict[str, Any]) -> Process:
    from mmdbg.sim.fs.cgroupfs import cgroup_mkdir

    m.write("/proc/sys/vm/overcommit_memory", "1")
    cgroup_mkdir(m, "/sys/fs/cgroup/protected")
    cgroup_mkdir(m, "/sys/fs/cgroup/bulk")
    m.write("/sys/fs/cgroup/protected/memory.low", str(a["low"]))
    ws = a["ws"]

    def protected(p: Process) -> Generator:
        addr = p.mmap(ws)
        yield from p.touch_chunks(addr, ws, True, 0x50)
        p.task.ws_addr = addr
        for _ in range(a["rounds"]):
            yield p.sleep(0.02)
            yield from p.touch_chunks(addr, ws, False)
        for cg in ("protected", "bulk"):
            st = dict(ln.split() for ln in
                      p.m.read(f"/sys/fs/cgroup/{cg}/memory.stat").splitlines())
            cur = int(p.m.read(f"/sys/fs/cgroup/{cg}/memory.current"))
            p.print(f"{cg}: memory.current {cur >> 20}M pgmajfault {st['pgmajfault']} "
                    f"pswpin {st['pswpin']} pswpout {st['pswpout']}")
        return 0

    def bulk(p: Process) -> Generator:
        addr = p.mmap(a["bulk"])
        yield from p.touch_chunks(addr, a["bulk"], True, 0x62)
        yield from p.touch_chunks(addr, a["bulk"], False)
        return 0

    def start_in(path: str, name: str, prog: Any) -> Process:
        p = Process.start(m, f"/usr/bin/{name}", [name], prog, run=False)
        m.write(f"/sys/fs/cgroup/{path}/cgroup.procs", str(p.pid))
        m.vm.sched.wake_up_new_task(p.task)
        return p

    prot = start_in("protected", "protected", protected)
    start_in("bulk", "bulk", bulk)
    return prot


register(Scenario(
    "memcg-protection", "memory.low keeps one group's working set while a sibling is squeezed",
    """Two sibling cgroups: /protected (memory.low=`low`) runs a process that writes `ws`
and keeps re-reading it; /bulk runs one that writes `bulk`, more than the machine has.
Global reclaim (kswapd, direct reclaim) calls mem_cgroup_calculate_protection: /protected's
usage is below its effective low (elow = min(usage, low) for a child of the root), so
shrink_node_memcgs skips it (memcg_low_skipped) and takes /bulk's pages instead; /bulk
swaps, /protected keeps its working set resident (few major faults), and its memory.events
counts "low" only if reclaim had to break into the protection (memcg_low_reclaim).""",
    (Param("ws", "40M", parse_size, "working set of the protected group"),
     Param("low", "48M", _size0, "memory.low of /protected (0: no protection)"),
     Param("bulk", "160M", parse_size, "what the bulk group writes"),
     Param("rounds", "4", int, "times the protected process re-reads its working set")),
    _memcg_protection, cmdline="mem=128M swap=256M"))
