"""Page-cache tools: ``vmtouch`` (resident pages, touch, evict) and util-linux ``fincore``.

``vmtouch FILE...`` counts the cached pages of each file of the simulated disk; ``-t`` reads
every page into the cache (the kernel's readahead, waiting for the disk), ``-e`` evicts them
with ``POSIX_FADV_DONTNEED`` (dirty pages are started to the disk and stay, mapped pages
stay).  The summary is vmtouch's; ``Elapsed`` is simulated time.  ``fincore FILE...`` prints
util-linux's default table (RES PAGES SIZE FILE).
"""

from __future__ import annotations

from typing import Any

from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.registry import CommandContext, command


def _vmtouch_size(n: int) -> str:
    """vmtouch's pretty_print_size: integer units, no decimals."""
    for suffix in ("", "K", "M"):
        if n < 1024:
            return f"{n}{suffix}"
        n //= 1024
    return f"{n}G"


def _human(n: int) -> str:
    """util-linux size_to_human_string (SIZE_SUFFIX_1LETTER): 0B, 4K, 1.5M ..."""
    if n < 1024:
        return f"{n}B"
    units = "KMGTPE"
    exp = 0
    v = float(n)
    while v >= 1024 and exp < len(units):
        v /= 1024
        exp += 1
    r = round(v, 1)
    if r >= 1024 and exp < len(units):
        r = round(r / 1024, 1)
        exp += 1
    s = f"{r:.1f}".rstrip("0").rstrip(".")
    return f"{s}{units[exp - 1]}"


def _inodes(ctx: CommandContext, paths: list[str], tool: str) -> list[tuple[str, Any]]:
    fs = ctx.machine.vm.fs
    out = []
    for p in paths:
        try:
            out.append((p, fs.lookup(p)))
        except OSError:
            ctx.error(f"{tool}: {p}: No such file or directory" if tool == "vmtouch" else
                      f"{tool}: failed to open: {p}: No such file or directory")
    return out


@command(
    "vmtouch",
    usage="[-t|-e] FILE ...",
    summary="show, load (-t) or evict (-e) the page cache of files",
    help="""\
    Without options, counts how many pages of each file are in the page cache (what
    mincore(2) reports) and prints vmtouch's summary.  -t touches every page: missing pages
    are read from the disk through readahead, the simulated time passes ("Elapsed").  -e
    evicts the file's pages with posix_fadvise(POSIX_FADV_DONTNEED): clean unmapped pages
    leave the cache, dirty ones are started to the disk, mapped ones stay.""",
    examples=(("Read a whole file (made by spawn file-map) into the page cache:", "vmtouch -t /data/file.bin"),
              ("How much of it is cached:", "vmtouch /data/file.bin"),
              ("Evict it again:", "vmtouch -e /data/file.bin")),
    options=("-t", "-e", "-v"),
)
def cmd_vmtouch(ctx: CommandContext, args: list[str]) -> None:
    touch = evict = False
    files: list[str] = []
    for a in args:
        if a == "-t":
            touch = True
        elif a == "-e":
            evict = True
        elif a.startswith("-") and a != "-":
            raise UsageError(f"vmtouch: invalid option -- '{a.lstrip('-')[:1]}'")
        else:
            files.append(a)
    if not files:
        raise UsageError("vmtouch: no files or directories specified")
    if touch and evict:
        raise UsageError("vmtouch: invalid option combination: -t and -e")
    m = ctx.machine
    m.activate()
    inodes = _inodes(ctx, files, "vmtouch")
    start = m.clock.ns
    total = resident = 0
    for _, inode in inodes:
        npages = (inode.i_size + 4095) >> 12
        total += npages
        if touch:
            _touch(m, inode)
        elif evict:
            _evict(m, inode)
        else:
            resident += len(inode.i_mapping.i_pages)
    elapsed = (m.clock.ns - start) / 1e9
    ctx.write(f"{'Files':>16}: {len(inodes)}\n")
    ctx.write(f"{'Directories':>16}: 0\n")
    if touch:
        ctx.write(f"{'Touched Pages':>16}: {total} ({_vmtouch_size(total * 4096)})\n")
    elif evict:
        ctx.write(f"{'Evicted Pages':>16}: {total} ({_vmtouch_size(total * 4096)})\n")
    else:
        pct = f"{100.0 * resident / total:.3g}%" if total else ""
        ctx.write(f"{'Resident Pages':>16}: {resident}/{total}  "
                  f"{_vmtouch_size(resident * 4096)}/{_vmtouch_size(total * 4096)}  {pct}\n")
    ctx.write(f"{'Elapsed':>16}: {elapsed:.5g} seconds\n")
    if len(inodes) != len(files):
        raise CommandError("")


def _open(m: Any, inode: Any) -> Any:
    from mmdbg.sim.fs.ramfs import File

    return File(inode, "r")


def _touch(m: Any, inode: Any) -> None:
    """Read every page into the cache and wait for the disk (the time passes)."""
    from mmdbg.sim.mm import readahead

    f = _open(m, inode)
    try:
        npages = (inode.i_size + 4095) >> 12
        mapping = inode.i_mapping
        ra = readahead.file_ra(f)
        idx = 0
        while idx < npages:
            chunk = min(readahead.IO_PAGES, npages - idx)
            readahead.force_page_cache_ra(mapping, ra, idx, chunk)
            idx += chunk
        last = max(mapping.io_pending.values(), default=0)
        if last > m.clock.ns:
            m.clock.ns = last
        mapping.io_pending.clear()
        for pfn in list(mapping.i_pages.values()):
            m.vm.hooks.folio_mark_accessed(pfn)
    finally:
        f.put()


def _evict(m: Any, inode: Any) -> None:
    from mmdbg.sim.fs.read_write import POSIX_FADV_DONTNEED, generic_fadvise

    f = _open(m, inode)
    try:
        generic_fadvise(f, 0, 0, POSIX_FADV_DONTNEED)
    finally:
        f.put()


@command(
    "fincore",
    usage="FILE ...",
    summary="count the page-cache pages of files (util-linux fincore)",
    help="""\
    Prints, for each file, the memory its cached pages use (RES), their number (PAGES),
    the file size (SIZE) and the name, as util-linux fincore(1) does by default.""",
    examples=(("The cached part of a file:", "fincore /data/file.bin"),),
)
def cmd_fincore(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError("fincore: no file specified")
    m = ctx.machine
    m.activate()
    inodes = _inodes(ctx, args, "fincore")
    rows = [("RES", "PAGES", "SIZE", "FILE")]
    for path, inode in inodes:
        n = len(inode.i_mapping.i_pages)
        rows.append((_human(n * 4096), str(n), _human(inode.i_size), path))
    if len(rows) > 1:
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            ctx.write(f"{r[0]:>{w[0]}} {r[1]:>{w[1]}} {r[2]:>{w[2]}} {r[3]}\n")
    if len(inodes) != len(args):
        raise CommandError("")
