"""Processes and address spaces: crash's ``ps``, ``vm``, ``vtop``, ``ptov``, ``pte``, ``rd``,
and ``spawn``/``kill`` to start and signal simulated programs (``run`` advances time).

Layouts follow reference/crash-drgn-gdb.md §1.3-1.9 with 64-bit column widths.  ``rd -u`` and
``vtop`` read the *context* task: the one named by the last ``vm PID``/``vtop -c PID``/``set
-p PID``-like selection (``ctx.session.vm_pid``), else the newest user task.
"""

from __future__ import annotations

import shlex
from typing import Any

from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.fmt import parse_number
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim.arch.x86 import pgtable as pt
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, pfn_to_page_addr
from mmdbg.sim.mm.vma import vm_flags_string

PS_HEADER = "   PID    PPID  CPU       TASK        ST  %MEM     VSZ    RSS  COMM"


def _hex_number(word: str) -> int:
    """An address, pte or flags argument: hex as crash reads it, with or without ``0x``."""
    return parse_number(word if word.startswith("0x") else "0x" + word)


def _tasks(m: Any) -> list[Any]:
    return list(m.idle_tasks) + [m.tasks[p] for p in sorted(m.tasks)]


def _find_task(m: Any, word: str) -> Any:
    try:
        pid = parse_number(word) if word.startswith("0x") else int(word)
    except ValueError:
        raise UsageError(f"invalid pid: {word}") from None
    if pid in m.tasks:
        return m.tasks[pid]
    for t in _tasks(m):
        if t.addr == pid:
            return t
    raise CommandError(f"invalid task or pid value: {word}")


def _context_task(ctx: CommandContext) -> Any:
    m = ctx.machine
    pid = getattr(ctx.session, "vm_pid", None)
    if pid is not None and pid in m.tasks and m.tasks[pid].mm is not None:
        return m.tasks[pid]
    users = [t for t in m.tasks.values() if t.mm is not None and t.pid != 1]
    if users:
        return max(users, key=lambda t: t.pid)
    if 1 in m.tasks and m.tasks[1].mm is not None:
        return m.tasks[1]
    raise CommandError("no user task to take the context from (spawn one first)")


def _header(t: Any) -> str:
    return f'PID: {t.pid:<6} TASK: {t.addr:016x}  CPU: {t.cpu:<3} COMMAND: "{t.comm}"'


# -- ps -------------------------------------------------------------------------------------------
@command(
    "ps",
    usage="[-k|-u] [-S] [pid|command ...]",
    summary="display process status information",
    help="""\
    One line per task, as crash's ps: PID, PPID, CPU, TASK (the task_struct address), ST
    (RU running, IN sleeping, UN uninterruptible, ST stopped, ZO zombie), %MEM (RSS of
    total RAM), VSZ and RSS in KiB, and COMM.  Kernel threads are shown as [name]; ">"
    marks the task current on its CPU.  The idle tasks swapper/N come first.
      -k  kernel threads only        -u  user tasks only
      -S  count the tasks in each state
    Arguments select tasks by pid or by command name.""",
    examples=(("Every task:", "ps"), ("User tasks:", "ps -u"),
              ("By name:", "ps stress-ng-vm")),
    options=("-k", "-u", "-S"),
)
def cmd_ps(ctx: CommandContext, args: list[str]) -> None:
    m = ctx.machine
    flags = {a for a in args if a.startswith("-")}
    if flags - {"-k", "-u", "-S"}:
        raise UsageError(f"invalid option: {sorted(flags - {'-k', '-u', '-S'})[0]}")
    sel = [a for a in args if not a.startswith("-")]
    tasks = _tasks(m)
    if "-k" in flags:
        tasks = [t for t in tasks if t.is_kthread() or t.pid == 0]
    if "-u" in flags:
        tasks = [t for t in tasks if not t.is_kthread() and t.pid != 0]
    if sel:
        tasks = [t for t in tasks if str(t.pid) in sel or t.comm in sel]
        if not tasks:
            raise CommandError(f"ps: no such task: {' '.join(sel)}")
    if "-S" in flags:
        counts: dict[str, int] = {}
        for t in tasks:
            counts[t.state_char()] = counts.get(t.state_char(), 0) + 1
        for st in sorted(counts):
            ctx.print(f"  {st}: {counts[st]}")
        return
    ctx.print(PS_HEADER)
    total = m.totalram_pages or 1
    for t in tasks:
        cur = m.cpu_curr[t.cpu] is t if 0 <= t.cpu < m.ncpus else False
        mm = t.mm
        rss = mm.get_mm_rss() if mm is not None else 0
        vsz = mm.total_vm << 2 if mm is not None else 0
        comm = f"[{t.comm}]" if t.is_kthread() or t.pid == 0 else t.comm
        ctx.print(f"{'>' if cur else ' '}{t.pid:>6} "
                  f"{t.parent.pid if t.parent is not None else 0:>6} {t.cpu:>3}  "
                  f"{t.addr:016x}  {t.state_char():2}  {100 * rss / total:4.1f} {vsz:>7} "
                  f"{rss << 2:>6}  {comm}")


# -- vm ---------------------------------------------------------------------------------------------
def _vma_file(v: Any) -> str:
    from mmdbg.sim.fs.proc_pid import vma_name

    return vma_name(v)


@command(
    "vm",
    usage="[-p] [-f VM_FLAGS] [pid ...]",
    summary="virtual memory information",
    help="""\
    The address space of a task (default: the context task), as crash's vm: the task
    header, then MM (the mm_struct address), PGD (the page directory, kernel virtual), RSS
    and TOTAL_VM, then one line per VMA: its vm_area_struct address, START, END, FLAGS
    (vm_flags in hex) and FILE (the backing file or [heap]/[stack]/[vdso] ...).
      -p        under each VMA, every page: VIRTUAL and PHYSICAL, or "FILE: path OFFSET: n"
                for a file page not mapped, "SWAP: ..." for a swap entry, or
                "(not mapped)"
      -f FLAGS  decode a vm_flags value: 8100073: (READ|WRITE|MAYREAD|...)""",
    examples=(("The context task:", "vm"), ("Pages of pid 3:", "vm -p 3"),
              ("Decode flags:", "vm -f 0x8100073")),
    options=("-p", "-f"),
)
def cmd_vm(ctx: CommandContext, args: list[str]) -> None:
    m = ctx.machine
    pages = False
    pids = []
    it = iter(args)
    for a in it:
        if a == "-p":
            pages = True
        elif a == "-f":
            v = next(it, None)
            if v is None:
                raise UsageError("-f needs a value")
            try:
                flags = _hex_number(v)
            except ValueError:
                raise UsageError(f"invalid flags: {v}") from None
            ctx.print(f"{flags:x}: ({vm_flags_string(flags)})")
            return
        elif a.startswith("-"):
            raise UsageError(f"invalid option: {a}")
        else:
            pids.append(a)
    tasks = [_find_task(m, p) for p in pids] or [_context_task(ctx)]
    for i, t in enumerate(tasks):
        if i:
            ctx.print()
        ctx.print(_header(t))
        mm = t.mm
        if mm is None:
            continue
        ctx.session.vm_pid = t.pid
        pgd = pt.table_virt(mm.pgd[pt.PT_PFN])
        ctx.print("       MM               PGD          RSS    TOTAL_VM")
        ctx.print(f"{mm.addr:016x}  {pgd:016x}  {mm.get_mm_rss() << 2:>6}k  {mm.total_vm << 2:>8}k")
        ctx.print("      VMA           START       END     FLAGS FILE")
        for v in mm.vmas():
            ctx.print(f"{v.addr:016x} {v.vm_start:12x} {v.vm_end:12x} {v.vm_flags:8x} "
                      f"{_vma_file(v)}".rstrip())
            if pages:
                _vm_pages(ctx, m, v)
                ctx.print("      VMA           START       END     FLAGS FILE")


def _vm_pages(ctx: CommandContext, m: Any, v: Any) -> None:
    from mmdbg.sim.mm.uaccess import follow_pte

    ctx.print("VIRTUAL           PHYSICAL")
    for a in range(v.vm_start, v.vm_end, 4096):
        pte = follow_pte(v.vm_mm, a)
        if pte & 0x101:
            ctx.print(f"{a:<16x}  {(pte & pt.PTE_PFN_MASK):x}")
        elif pte:
            ctx.print(f"{a:<16x}  SWAP: type {pt.pte_swp_type(pte)}  "
                      f"OFFSET: {pt.pte_swp_offset(pte)}")
        elif v.vm_file is not None:
            off = (v.vm_pgoff << 12) + (a - v.vm_start)
            ctx.print(f"{a:<16x}  FILE: {v.vm_file.path}  OFFSET: {off:x}")
        else:
            ctx.print(f"{a:<16x}  (not mapped)")


# -- vtop / ptov / pte -----------------------------------------------------------------------------
def _kmem_p_line(m: Any, pfn: int) -> list[str]:
    p = m.page(pfn)
    mapping = p.mapping
    maddr = getattr(mapping, "addr", 0) if mapping else 0
    if mapping is not None and type(mapping).__name__ == "AnonVma":
        maddr |= 1
    return ["      PAGE        PHYSICAL      MAPPING       INDEX CNT FLAGS",
            f"{pfn_to_page_addr(pfn):016x} {pfn << PAGE_SHIFT:9x} {maddr:16x} {p.index:>11x} "
            f"{p._refcount:>3} {p.flags:x} {','.join(p.flag_names())}".rstrip()]


def _decode_pte(value: int) -> list[str]:
    if value and not value & (pt._PAGE_PRESENT | pt._PAGE_PROTNONE):
        return ["      PTE        SWAP  OFFSET",
                f"{value:16x}  {pt.pte_swp_type(value):4}  {pt.pte_swp_offset(value)}"]
    flags = "|".join(pt.pte_decode_flags(value)) or "none"
    return ["      PTE         PHYSICAL  FLAGS",
            f"{value:16x}  {value & pt.PTE_PFN_MASK:9x}  ({flags})"]


@command(
    "vtop",
    usage="[-c pid] [-u|-k] address ...",
    summary="virtual to physical",
    help="""\
    Translates a virtual address with the page-table walk, as crash's vtop: VIRTUAL and
    PHYSICAL, then one line per level (PGD, [P4D,] PUD, PMD, PTE: the entry's physical
    address => its value) and PAGE, the leaf decoded (PTE PHYSICAL FLAGS), the VMA, and the
    page's struct page line.  A swapped-out page shows its swap type and offset.
      -c pid  use that task's page tables (default: the context task)
      -u|-k   force a user / kernel address (kernel: vmalloc and module addresses walk
              init_mm's tables from swapper_pg_dir; the direct map is arithmetic)""",
    examples=(("Translate a user address of pid 3:", "vtop -c 3 7f0000001000"),),
    options=("-c", "-u", "-k"),
)
def cmd_vtop(ctx: CommandContext, args: list[str]) -> None:
    m = ctx.machine
    task = None
    force = None
    addrs = []
    it = iter(args)
    for a in it:
        if a == "-c":
            w = next(it, None)
            if w is None:
                raise UsageError("-c needs a pid")
            task = _find_task(m, w)
        elif a in ("-u", "-k"):
            force = a
        elif a.startswith("-"):
            raise UsageError(f"invalid option: {a}")
        else:
            try:
                addrs.append(_hex_number(a))
            except ValueError:
                raise UsageError(f"invalid address: {a}") from None
    if not addrs:
        raise UsageError()
    for i, addr in enumerate(addrs):
        if i:
            ctx.print()
        kernel = force == "-k" or (force is None and addr >= PAGE_OFFSET)
        if kernel:
            _vtop_kernel(ctx, m, addr)
            continue
        t = task or _context_task(ctx)
        ctx.session.vm_pid = t.pid
        _vtop_user(ctx, m, t, addr)


def _vtop_kernel(ctx: CommandContext, m: Any, addr: int) -> None:
    from mmdbg.sim.mm import vmalloc

    if getattr(m, "init_mm", None) is not None and (
            vmalloc.is_vmalloc_addr(addr) or vmalloc.MODULES_VADDR <= addr < vmalloc.MODULES_END):
        _vtop_init_mm(ctx, m, addr)
        return
    paddr = addr - PAGE_OFFSET
    if not 0 <= paddr < m.mem_map.max_pfn << PAGE_SHIFT:
        raise CommandError(f"vtop: {addr:x}: not a direct-map address (only the direct map "
                           "is translated for kernel addresses)")
    ctx.print("VIRTUAL           PHYSICAL")
    ctx.print(f"{addr:<16x}  {paddr:x}")
    ctx.print()
    ctx.print("(direct map: PAGE_OFFSET + physical; kernel page tables are not simulated)")
    ctx.print()
    for line in _kmem_p_line(m, paddr >> PAGE_SHIFT):
        ctx.print(line)


def _vtop_init_mm(ctx: CommandContext, m: Any, addr: int) -> None:
    """A vmalloc/module address: crash's walk of init_mm's tables from swapper_pg_dir."""
    from mmdbg.sim.mm.init_mm import SWAPPER_PG_DIR

    walk = pt.walk_entries(m.init_mm, addr)
    leaf = walk[-1][2] if walk[-1][0] == "PTE" else 0
    present = bool(leaf & pt._PAGE_PRESENT)
    ctx.print("VIRTUAL           PHYSICAL")
    phys = f"{(leaf & pt.PTE_PFN_MASK) | (addr & 0xFFF):x}" if present else "(not mapped)"
    ctx.print(f"{addr:<16x}  {phys}")
    ctx.print()
    ctx.print(f"PGD DIRECTORY: {SWAPPER_PG_DIR:x}")
    for name, eaddr, value, _table in walk:
        ctx.print(f"{name:>6}: {eaddr:x} => {value:x}")
    if present:
        ctx.print(f"  PAGE: {leaf & pt.PTE_PFN_MASK:x}")
        ctx.print()
        for line in _decode_pte(leaf):
            ctx.print(line)
        ctx.print()
        for line in _kmem_p_line(m, (leaf & pt.PTE_PFN_MASK) >> PAGE_SHIFT):
            ctx.print(line)


def _vtop_user(ctx: CommandContext, m: Any, t: Any, addr: int) -> None:
    mm = t.mm
    if mm is None:
        raise CommandError(f"vtop: pid {t.pid} ({t.comm}) has no user address space")
    walk = pt.walk_entries(mm, addr)
    leaf = walk[-1][2] if walk[-1][0] == "PTE" else 0
    present = bool(leaf & pt._PAGE_PRESENT)
    ctx.print("VIRTUAL           PHYSICAL")
    phys = f"{(leaf & pt.PTE_PFN_MASK) | (addr & 0xFFF):x}" if present else "(not mapped)"
    ctx.print(f"{addr:<16x}  {phys}")
    ctx.print()
    for name, eaddr, value, _table in walk:
        ctx.print(f"{name:>6}: {eaddr:x} => {value:x}")
    if present:
        ctx.print(f"  PAGE: {leaf & pt.PTE_PFN_MASK:x}")
    if walk[-1][0] == "PTE" and leaf:
        ctx.print()
        for line in _decode_pte(leaf):
            ctx.print(line)
    v = mm.vma_lookup(addr)
    if v is not None:
        ctx.print()
        ctx.print("      VMA           START       END     FLAGS FILE")
        ctx.print(f"{v.addr:016x} {v.vm_start:12x} {v.vm_end:12x} {v.vm_flags:8x} "
                  f"{_vma_file(v)}".rstrip())
    if present:
        ctx.print()
        for line in _kmem_p_line(m, (leaf & pt.PTE_PFN_MASK) >> PAGE_SHIFT):
            ctx.print(line)


@command(
    "ptov",
    usage="physical ...",
    summary="physical to virtual",
    help="""\
    The direct-map (kernel virtual) address of a physical address: PAGE_OFFSET +
    physical, as crash's ptov prints it.""",
    examples=(("A physical address:", "ptov 56e000"),),
)
def cmd_ptov(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError()
    ctx.print("VIRTUAL           PHYSICAL")
    for a in args:
        try:
            p = _hex_number(a)
        except ValueError:
            raise UsageError(f"invalid physical address: {a}") from None
        ctx.print(f"{PAGE_OFFSET + p:x}  {p:x}")


@command(
    "pte",
    usage="value ...",
    summary="translate a page table entry",
    help="""\
    Decodes a raw x86_64 page-table entry: the physical frame and the flags (PRESENT, RW,
    USER, PWT, PCD, ACCESSED, DIRTY, PSE, GLOBAL, SPECIAL, UFFD_WP, SOFT_DIRTY, NX), or, for
    a swap entry, its type and offset.""",
    examples=(("A writable anonymous page:", "pte 8000000001234867"),
              ("A swap entry:", "pte 7ffffffffff0b000")),
)
def cmd_pte(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError()
    for i, a in enumerate(args):
        try:
            v = _hex_number(a)
        except ValueError:
            raise UsageError(f"invalid pte value: {a}") from None
        if i:
            ctx.print()
        for line in _decode_pte(v):
            ctx.print(line)


# -- rd ---------------------------------------------------------------------------------------------
@command(
    "rd",
    usage="[-u|-p] [-8|-16|-32|-64] [-x] address [count]",
    summary="read memory",
    help="""\
    Displays memory, as crash's rd: ADDRESS: words... ASCII.  The address is kernel
    virtual (the direct map) by default, physical with -p, user virtual in the context task
    with -u (read through its page tables without faulting: a page that is not resident
    ends the dump).  COUNT is a number of units (default 1); -8/-16/-32/-64 set the unit
    (default 64 bits); -x leaves out the ASCII column.  A page-table page reads as its
    entries.""",
    examples=(("Two words of a user stack:", "rd -u 7ffd4b702000 2"),
              ("A page table's first entries:", "rd -p 1c601000 4")),
    options=("-u", "-p", "-8", "-16", "-32", "-64", "-x"),
)
def cmd_rd(ctx: CommandContext, args: list[str]) -> None:
    m = ctx.machine
    space = "k"
    size = 8
    ascii_col = True
    rest = []
    for a in args:
        if a in ("-u", "-p"):
            space = a[1]
        elif a in ("-8", "-16", "-32", "-64"):
            size = int(a[1:]) // 8
        elif a == "-x":
            ascii_col = False
        elif a.startswith("-"):
            raise UsageError(f"invalid option: {a}")
        else:
            rest.append(a)
    if not 1 <= len(rest) <= 2:
        raise UsageError()
    try:
        addr = _hex_number(rest[0])
        count = parse_number(rest[1]) if len(rest) == 2 else 1
    except ValueError:
        raise UsageError("bad address or count") from None
    nbytes = size * count
    m.activate()
    if space == "u":
        from mmdbg.sim.mm.uaccess import access_remote_vm

        t = _context_task(ctx)
        data = access_remote_vm(m, t.mm, addr, nbytes)
        if data is None:
            raise CommandError(f"rd: invalid user virtual address: {addr:x}  type: "
                               '"64-bit UVADDR" (not resident)')
    else:
        paddr = addr if space == "p" else addr - PAGE_OFFSET
        if not 0 <= paddr < m.mem_map.max_pfn << PAGE_SHIFT or \
                (space == "k" and addr < PAGE_OFFSET):
            kind = "physical" if space == "p" else "kernel virtual"
            raise CommandError(f"rd: invalid {kind} address: {addr:x}")
        data = _read_phys(m, paddr, nbytes)
    per_line = 16 // size if size < 8 else 2
    if size == 1:
        per_line = 16
    for off in range(0, nbytes, per_line * size):
        chunk = data[off:off + per_line * size]
        words = [int.from_bytes(chunk[i:i + size], "little")
                 for i in range(0, len(chunk), size)]
        text = " ".join(f"{w:0{size * 2}x}" for w in words)
        line = f"{addr + off:x}:  {text}"
        if ascii_col:
            pad = " " * ((per_line - len(words)) * (size * 2 + 1))
            asc = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
            line += f"{pad}   {asc}"
        ctx.print(line)


def _read_phys(m: Any, paddr: int, n: int) -> bytes:
    out = bytearray()
    while n > 0:
        pfn, off = divmod(paddr, 4096)
        k = min(n, 4096 - off)
        tb = pt.table_bytes(m, pfn)
        out += tb[off:off + k] if tb is not None else m.physmem.read(paddr, k)
        paddr += k
        n -= k
    return bytes(out)


# -- spawn / kill -----------------------------------------------------------------------------------
@command(
    "spawn",
    usage="SCENARIO[:KEY=VALUE,...] | COMMAND LINE",
    summary="start a scenario or a simulated program",
    raw=True,
    help="""\
    Starts a named scenario (see "scenario list") or a simulated program with its usual
    command line: stress-ng --vm N --vm-bytes SIZE [--vm-keep] [--vm-hang S], stress-ng
    --mmap N --mmap-bytes SIZE, stress-ng --bigheap N, memhog SIZE, dd if=.. of=.. bs=..
    count=.., cat FILE, ls [DIR], sleep S.  Prints the new pid; "run" advances time.""",
    examples=(("A scenario:", "spawn anon-touch:size=64M,hold=1"),
              ("stress-ng:", "spawn stress-ng --vm 2 --vm-bytes 256M")),
)
def cmd_spawn(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.workloads import scenarios
    from mmdbg.workloads.programs import PROGRAMS, start_command
    from mmdbg.workloads.programs import UsageError as WUsage

    line = (ctx.argtext or " ".join(args)).strip()
    if not line:
        raise UsageError()
    m = ctx.machine
    first = shlex.split(line)[0]
    try:
        if first.split(":", 1)[0] in scenarios.SCENARIOS and \
                first.rsplit("/", 1)[-1] not in PROGRAMS:
            p = scenarios.start(m, first)
        else:
            p = start_command(m, line)
    except WUsage as e:
        raise CommandError(f"spawn: {e}") from None
    except OSError as e:
        raise CommandError(f"spawn: {e}") from None
    ctx.session.vm_pid = p.pid
    ctx.print(f"[{p.pid}] {p.task.comm}")


@command(
    "kill",
    usage="[-SIGNAL] pid ...",
    summary="send a signal to a task",
    help="""\
    Sends SIGNAL (default SIGTERM) to each task, as kill(1): -9, -KILL or -SIGKILL.  The
    signal is delivered when the task next runs ("run"); init ignores it.""",
    examples=(("Kill pid 5:", "kill -9 5"),),
)
def cmd_kill(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.sim.kernel import signal as ksignal
    from mmdbg.sim.kernel.vm_init import task_context

    m = ctx.machine
    sig = ksignal.SIGTERM
    pids = []
    for a in args:
        if a.startswith("-") and len(a) > 1:
            try:
                sig = ksignal.parse_signal(a[1:])
            except ValueError as e:
                raise UsageError(str(e)) from None
        else:
            pids.append(a)
    if not pids:
        raise UsageError()
    for w in pids:
        t = _find_task(m, w)
        if t.pid == 1:
            ctx.error(f"kill: ({t.pid}) - init ignores signals it does not handle")
            continue
        with task_context(m, m.tasks[1]):
            ksignal.send_sig(sig, t)
