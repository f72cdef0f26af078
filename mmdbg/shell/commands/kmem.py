"""crash's ``kmem``: memory usage (-i), buddy free lists (-f, -F), zones (-z), pages (-p).

Layouts follow crash's ``memory.c`` (``dump_kmeminfo``, ``dump_free_pages_zones_v2``,
``dump_zone_free_area``, ``dump_zone_stats``, ``dump_mem_map``), column for column, with
trailing blanks trimmed.  Differences, each for the simulator's sake:

* ``kmem -f`` prints one row per order (the ``free_area`` and its block count summed over
  migratetypes) instead of one row per ``free_list[migratetype]``; ``kmem -F`` lists every
  ``free_list[migratetype]`` with its pages and names the migratetype, which crash leaves
  the reader to infer from the list's position.
* ``kmem -p`` appends the page type (``buddy``, ``slab``, ``table``), which lives in
  ``page_type`` since 6.12, to the decoded flag names.
* ``pg_data_t``/``struct zone``/``free_area`` addresses come from ``shell/kaddr.py``.
"""

from __future__ import annotations

import getopt
from typing import Any

from mmdbg.shell import kaddr
from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.fmt import VADDR_PRLEN, center, pages_to_size, parse_number
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim.include.gfp import MIGRATE_TYPES, MIGRATETYPE_NAMES
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.mm_types import (
    NR_PAGE_ORDERS,
    PAGE_OFFSET,
    PAGE_SHIFT,
    PAGE_SIZE,
    STRUCT_PAGE_SIZE,
    VMEMMAP_START,
    pfn_to_page_addr,
)
from mmdbg.sim.mm.mmzone import pindex_to_order


@command(
    "kmem",
    usage="-i | -f [pfn|address] | -F | -z | -p [-P] [pfn|address ...] | -s [CACHE ...] | "
          "-S CACHE | address",
    summary="kernel memory",
    help="""\
    Displays the state of the simulated kernel's memory, as crash's kmem does.

      -i  Memory usage summary: a PAGES / TOTAL / PERCENTAGE table of total, free and
          used memory, buffers, page cache and slab, huge pages, swap and the commit
          limit.  The numbers are the kernel's counters (totalram_pages, NR_FREE_PAGES ...).
      -f  The buddy allocator's free lists: for every node and zone, the zone's size and
          free pages, then each order's free_area with its number of free blocks and
          pages.  The last line checks the free pages found on the lists against the
          zones' NR_FREE_PAGES counters: "(verified)", or "(found N)" if they disagree.
          With a pfn or address, says which free block holds that page, if any.
      -F  Like -f, but one entry per free_list[migratetype], followed by the struct page
          address of every block on the list (head first, as the kernel walks it).
      -z  Per-zone statistics: spanned and present pages, the min/low/high watermarks
          and the zone's VM_STAT counters.
      -p  One line per struct page: PAGE (its address), PHYSICAL, MAPPING, INDEX, CNT (the
          refcount) and FLAGS (hex, then the names of the set flags and the page type).
          Arguments are page frame numbers (decimal or 0x hex), struct page addresses
          (0xffffea...), direct-map addresses (0xffff888...) or values of the history
          ($1, see "help call"); with -P, physical addresses.  With no argument, every
          page of the mem_map.
      -s  The slab caches, as crash prints them: CACHE (the kmem_cache address), OBJSIZE,
          ALLOCATED and TOTAL objects, SLABS, SSIZE (the slab size) and NAME; with cache
          names, only those.
      -S  One cache in detail: its per-CPU slab and partial slabs, then its node partial
          (and, with slub_debug=U, full) slabs, each slab with its objects, free or
          [allocated] (in a CPU's freelist, in the KASAN quarantine).
      address  With no option: what the address is -- a struct page (vmemmap), a page of
          the direct map (free buddy block, slab or in-use page), a zone, a free_area, a
          task, a kernel function (by the addresses break prints).""",
    examples=(("Memory usage:", "kmem -i"),
              ("The buddy free lists, zone by zone:", "kmem -f"),
              ("Free blocks of order 10 only:", "kmem -f | grep -E '^ 10 '"),
              ("Zone sizes, watermarks and counters:", "kmem -z"),
              ("The struct page of pfn 4096, by pfn and by address:",
               "kmem -p 4096 0xffffea0000040000"),
              ("The kmalloc-64 cache:", "kmem -s kmalloc-64"),
              ("Its slabs and objects, free or [allocated], per CPU and node:",
               "kmem -S kmalloc-64")),
    options=("-i", "-f", "-F", "-z", "-p", "-P", "-s", "-S"),
)
def cmd_kmem(ctx: CommandContext, args: list[str]) -> None:
    try:
        opts, rest = getopt.gnu_getopt(args, "ifFzpPsS")
    except getopt.GetoptError as e:
        raise UsageError(e.msg) from None
    flags = [o for o, _ in opts]
    modes = [f for f in flags if f != "-P"]
    if not modes and rest:  # kmem ADDRESS: what is this address (shell/commands/inspect.py)
        from mmdbg.shell.commands.inspect import identify

        for a in rest:
            try:
                addr = parse_number(a)
            except ValueError:
                raise UsageError(f"invalid address: {a}") from None
            for ln in identify(ctx.machine, addr):
                ctx.print(ln)
        return
    if len(set(modes)) != 1:
        raise UsageError("specify one of -i, -f, -F, -z, -p, -s, -S" if not modes
                         else "only one of -i, -f, -F, -z, -p, -s, -S at a time")
    mode = modes[0]
    if mode in ("-s", "-S"):  # the slab caches (shell/commands/slab.py)
        from mmdbg.shell.commands.slab import kmem_slab

        for ln in kmem_slab(ctx.machine, mode, rest):
            ctx.print(ln)
        return
    physical = "-P" in flags
    m = ctx.machine
    if mode == "-p":
        pfns = [resolve_page(m, a, physical=physical, session=ctx.session) for a in rest]
        lines = kmem_p(m, pfns if rest else range(m.mem_map.max_pfn))
    elif mode in ("-f", "-F") and rest:
        if mode == "-F" or len(rest) != 1:
            raise UsageError("-f takes one pfn or address")
        lines = kmem_f_search(m, resolve_page(m, rest[0], physical=physical,
                                              session=ctx.session), rest[0])
    else:
        if rest or physical:
            raise UsageError(f"{mode} takes no argument")
        lines = {"-i": kmem_i, "-f": kmem_f, "-F": kmem_F, "-z": kmem_z}[mode](m)
    for ln in lines:
        ctx.print(ln)


# ---------------------------------------------------------------------------------------
# kmem -i


def _node_stat(m: Any, name: str) -> int:
    i = vmstat.NS.get(name)
    return m.global_node_page_state(i) if i is not None else 0


def _attr_pages(obj: Any, *names: str) -> int:
    """A page count a later subsystem may add to the machine (0 until then)."""
    for n in names:
        v = getattr(obj, n, None)
        if callable(v):
            v = v()
        if isinstance(v, int):
            return v
        if v is not None and isinstance(getattr(v, "count", None), int):
            return v.count  # a percpu_counter-like object
    return 0


def totalram_pages(m: Any) -> int:
    v = getattr(m, "totalram_pages", None)
    return v if isinstance(v, int) else sum(z.managed_pages for z in m.zones)


def kmeminfo(m: Any) -> dict[str, int]:
    """The numbers behind ``kmem -i``, in pages, named as crash's rows."""
    total = totalram_pages(m)
    free = m.nr_free_pages()
    buffers = _attr_pages(m, "nr_blockdev_pages")
    cached = max(0, _node_stat(m, "nr_file_pages") - _node_stat(m, "nr_swapcached") - buffers)
    slab = _node_stat(m, "nr_slab_reclaimable") + _node_stat(m, "nr_slab_unreclaimable")
    huge_total = _attr_pages(m, "hugetlb_total_pages")
    huge_free = _attr_pages(m, "hugetlb_free_pages")
    swap_total = _attr_pages(m, "total_swap_pages")
    swap_free = _attr_pages(m, "nr_swap_pages") if swap_total else 0
    kbytes = m.sysctl.get("vm.overcommit_kbytes", 0)
    if kbytes:
        allowed = kbytes >> (PAGE_SHIFT - 10)
    else:
        allowed = (total - huge_total) * m.sysctl.get("vm.overcommit_ratio", 50) // 100
    allowed += swap_total
    committed = max(0, _attr_pages(m, "vm_committed_as", "committed_as"))
    return {
        "TOTAL MEM": total, "FREE": free, "USED": total - free, "BUFFERS": buffers,
        "CACHED": cached, "SLAB": slab, "TOTAL HUGE": huge_total, "HUGE FREE": huge_free,
        "TOTAL SWAP": swap_total, "SWAP USED": swap_total - swap_free, "SWAP FREE": swap_free,
        "COMMIT LIMIT": allowed, "COMMITTED": committed,
    }


def kmem_i(m: Any) -> list[str]:
    v = kmeminfo(m)

    def total_row(label: str) -> str:
        return f"{label:>13}  {v[label]:7d}  {pages_to_size(v[label]):>11}         ----"

    def pct_row(label: str, of: str, of_label: str) -> str:
        pct = v[label] * 100 // v[of] if v[of] else 0
        return f"{label:>13}  {v[label]:7d}  {pages_to_size(v[label]):>11}  {pct:3d}% of {of_label}"

    out = ["                 PAGES        TOTAL      PERCENTAGE", total_row("TOTAL MEM")]
    out += [pct_row(k, "TOTAL MEM", "TOTAL MEM") for k in ("FREE", "USED", "BUFFERS",
                                                           "CACHED", "SLAB")]
    out += ["", total_row("TOTAL HUGE"), pct_row("HUGE FREE", "TOTAL HUGE", "TOTAL HUGE")]
    out += ["", total_row("TOTAL SWAP"), pct_row("SWAP USED", "TOTAL SWAP", "TOTAL SWAP"),
            pct_row("SWAP FREE", "TOTAL SWAP", "TOTAL SWAP")]
    out += ["", total_row("COMMIT LIMIT")]
    out.append(pct_row("COMMITTED", "COMMIT LIMIT", "TOTAL LIMIT") if v["COMMIT LIMIT"]
               else total_row("COMMITTED"))
    return out


# ---------------------------------------------------------------------------------------
# kmem -f / -F

ZONE_HDR = ("ZONE  NAME        SIZE    FREE  " + center("MEM_MAP", VADDR_PRLEN)
            + "  START_PADDR  START_MAPNR")
AREA_HDR = "AREA    SIZE  FREE_AREA_STRUCT  BLOCKS  PAGES"
AREA_HDR3 = "AREA    SIZE  FREE_AREA_STRUCT"


def _zone_line(z: Any) -> str:
    pgdat = z.zone_pgdat
    mem_map = pfn_to_page_addr(z.zone_start_pfn) if z.spanned_pages else 0
    mapnr = z.zone_start_pfn - pgdat.node_start_pfn if mem_map else 0
    line = (f"{z.zone_idx:3d}   {z.name:<9} {z.spanned_pages:6d}  {z.nr_free_pages:6d}  "
            + center(f"{mem_map:x}", VADDR_PRLEN) + "  "
            + center(f"{z.zone_start_pfn << PAGE_SHIFT:x}", 11, rjust=True) + "  "
            + center(str(mapnr), 11, rjust=True))
    return line.rstrip()


def _area_prefix(order: int) -> str:
    return f"{order:3d}  {f'{(PAGE_SIZE << order) // 1024}k':>7}  "


def _walk_zones(m: Any, body: Any) -> tuple[list[str], int, int]:
    """The node/zone skeleton shared by -f and -F; ``body(zone)`` returns (lines, found)."""
    out: list[str] = []
    total = found = 0
    for n, pgdat in enumerate(m.node_data):
        for i, z in enumerate(pgdat.node_zones):
            if i == 0:
                if n:
                    out += ["", "-" * 74]
                    out.append("")
                out += ["NODE", f" {pgdat.node_id:2d}"]
            if i > 0:
                out.append("")
            out += [ZONE_HDR.rstrip(), _zone_line(z)]
            total += z.nr_free_pages
            if z.nr_free_pages:
                lines, f = body(z)
                out += lines
                found += f
    return out, total, found


def _verify_line(total: int, found: int) -> str:
    return f"nr_free_pages: {total}  " + ("(verified)" if total == found else f"(found {found})")


def kmem_f(m: Any) -> list[str]:
    def body(z: Any) -> tuple[list[str], int]:
        lines = [AREA_HDR]
        found = 0
        for order in range(NR_PAGE_ORDERS):
            blocks = sum(len(lst) for lst in z.free_area[order].free_list)
            pages = blocks << order
            found += pages
            lines.append(_area_prefix(order) + f"{kaddr.free_area_addr(z, order):16x}  "
                         + f"{blocks:6d} {pages:6d}")
        return lines, found

    out, total, found = _walk_zones(m, body)
    return [*out, "", _verify_line(total, found)]


def kmem_F(m: Any) -> list[str]:
    def body(z: Any) -> tuple[list[str], int]:
        lines: list[str] = []
        found = 0
        for order in range(NR_PAGE_ORDERS):
            for mt in range(MIGRATE_TYPES):
                lst = z.free_area[order].free_list[mt]
                lines.append(AREA_HDR3 + "  MIGRATETYPE")
                lines.append(_area_prefix(order) + f"{kaddr.free_list_addr(z, order, mt):16x}  "
                             + MIGRATETYPE_NAMES[mt])
                lines += [f"{pfn_to_page_addr(pfn):x}" for pfn in reversed(lst)]
                found += len(lst) << order
        return lines, found

    out, total, found = _walk_zones(m, body)
    return [*out, "", _verify_line(total, found)]


def _ordinal(n: int) -> str:
    if 10 <= n % 100 <= 20:
        suf = "th"
    else:
        suf = {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suf}"


def kmem_f_search(m: Any, pfn: int, arg: str) -> list[str]:
    """``kmem -f ADDR``: the free block holding ``pfn`` (crash's search mode)."""
    mm = m.mem_map
    z = m.pfn_zone(pfn)
    for order in range(NR_PAGE_ORDERS):
        head = pfn & ~((1 << order) - 1)
        if z is None or not z.zone_spans_pfn(head):
            break
        if mm._mapcount[head] == pf.PAGE_BUDDY_MAPCOUNT_VALUE and mm.order[head] >= order:
            order = mm.order[head]
            head = pfn & ~((1 << order) - 1)
            blocks = sum(len(lst) for lst in z.free_area[order].free_list)
            out = ["NODE", f" {z.node:2d}", ZONE_HDR.rstrip(), _zone_line(z), AREA_HDR,
                   _area_prefix(order) + f"{kaddr.free_area_addr(z, order):16x}  "
                   + f"{blocks:6d} {blocks << order:6d}"]
            line = f"{pfn_to_page_addr(head):x}  "
            if order:
                line += (f"({pfn_to_page_addr(pfn):x} is {_ordinal(pfn - head + 1)} of "
                         f"{1 << order} pages)")
            return [*out, line.rstrip()]
    where = _pcp_location(m, pfn)
    page = f"{pfn_to_page_addr(pfn):x}"
    if where:
        return [f"{page}  (not in the buddy free lists: on {where})"]
    raise CommandError(f"kmem: {arg}: page {page} (pfn {pfn}) is not free")


def _pcp_location(m: Any, pfn: int) -> str:
    z = m.pfn_zone(pfn)
    if z is None:
        return ""
    for cpu, pcp in enumerate(z.per_cpu_pageset):
        for pindex, lst in enumerate(pcp.lists):
            order = pindex_to_order(pindex)
            if pfn & ~((1 << order) - 1) in lst:
                return f"cpu {cpu}'s per-cpu list of zone {z.name}, order {order}"
    return ""


# ---------------------------------------------------------------------------------------
# kmem -z

ZONE_STAT_ENUM = {"nr_free_cma": "NR_FREE_CMA_PAGES"}  # enum names that differ from vmstat's


def kmem_z(m: Any) -> list[str]:
    names = [ZONE_STAT_ENUM.get(n, n.upper()) for n in vmstat.ZONE_STAT_ITEMS]
    width = max(len(n) for n in names)
    out: list[str] = []
    for n, pgdat in enumerate(m.node_data):
        for i, z in enumerate(pgdat.node_zones):
            out.append(f'NODE: {n}  ZONE: {i}  ADDR: {kaddr.zone_addr(z):x}  NAME: "{z.name}"')
            if not z.spanned_pages:
                out += ["  [unpopulated]", ""]
                continue
            line = f"  SIZE: {z.spanned_pages}"
            if z.present_pages < z.spanned_pages:
                line += f"  PRESENT: {z.present_pages}"
            wm = z._watermark
            line += f"  MIN/LOW/HIGH: {wm[0]}/{wm[1]}/{wm[2]}"
            out += [line, "  VM_STAT:"]
            out += [f"{name:>{width}}: {z.vm_stat[k]}" for k, name in enumerate(names)]
            out += ["", ""]
    while out and out[-1] == "":
        out.pop()
    return out


# ---------------------------------------------------------------------------------------
# kmem -p

PAGE_HDR = (center("PAGE", VADDR_PRLEN) + " " + "PHYSICAL".rjust(9) + " "
            + center("MAPPING", VADDR_PRLEN, rjust=True) + " "
            + center("INDEX", 8, rjust=True) + "CNT FLAGS")
_SIM_ONLY_FLAGS = 1 << pf.PG_tail_sim


def resolve_page(m: Any, arg: str, *, physical: bool = False, session: Any = None) -> int:
    """A pfn from a pfn, a struct page address, a direct-map address or (-P) a physical one.

    ``$N`` (or ``$``) takes the value from gdb's value history (``call`` results).
    """
    if arg.startswith("$") and session is not None:
        n = arg[1:]
        val = session.history_value(int(n)) if n.isdigit() else (
            session.history_value() if not n else None)
        if val is None:
            raise CommandError(f"kmem: {arg}: no such value in the history")
        v = val[1]
        if v == 0:
            raise CommandError(f"kmem: {arg} is NULL")
    else:
        try:
            v = parse_number(arg)
        except ValueError:
            raise UsageError(f"invalid pfn or address: {arg}") from None
    max_pfn = m.mem_map.max_pfn
    if physical:
        pfn = v >> PAGE_SHIFT
    elif VMEMMAP_START <= v < VMEMMAP_START + max_pfn * STRUCT_PAGE_SIZE:
        if (v - VMEMMAP_START) % STRUCT_PAGE_SIZE:
            raise CommandError(f"kmem: {arg}: not the address of a struct page")
        pfn = (v - VMEMMAP_START) // STRUCT_PAGE_SIZE
    elif PAGE_OFFSET <= v < PAGE_OFFSET + (max_pfn << PAGE_SHIFT):
        pfn = (v - PAGE_OFFSET) >> PAGE_SHIFT
    else:
        pfn = v
    if not 0 <= pfn < max_pfn:
        raise CommandError(f"kmem: {arg}: invalid page frame number or address "
                           f"(this machine has pfns 0 to {max_pfn - 1:#x})")
    return pfn


def _as_addr(v: Any) -> int:
    if isinstance(v, int):
        return v
    addr = getattr(v, "addr", None)
    return addr if isinstance(addr, int) else 0


def page_line(m: Any, pfn: int) -> str:
    p = m.page(pfn)
    flags = p.flags & ~_SIM_ONLY_FLAGS
    names = ",".join(p.flag_names())
    line = (f"{p.addr:016x} {pfn << PAGE_SHIFT:>9x} {_as_addr(p.mapping):>16x} "
            f"{_as_addr(p.index) & 0xFFFFFFFFFFFFFFFF:>8x} {p._refcount:>2d} {flags:x} {names}")
    return line.rstrip()


def kmem_p(m: Any, pfns: Any) -> list[str]:
    return [PAGE_HDR, *(page_line(m, pfn) for pfn in pfns)]
