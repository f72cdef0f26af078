"""Kernel memory reports: ``__show_mem`` (mm/show_mem.c) and ``dump_page`` (mm/debug.c).

``__show_mem`` prints the ``Mem-Info:`` block that warn_alloc ("page allocation failure"),
the OOM killer and sysrq-m print; ``dump_page`` prints one ``struct page`` the way
``bad_page`` ("BUG: Bad page state") and ``VM_BUG_ON_PAGE`` do.  Both follow Linux 6.18's
format strings (reference/reports.md §1.2, §6.1), line for line: each ``printk`` record is
one dmesg line, ``pr_cont`` pieces are joined.  ``si_mem_available`` and ``si_meminfo``
(also mm/show_mem.c) feed /proc/meminfo.

The configuration shown is the one of the 6.18 samples in reference/: CONFIG_NUMA (zone
lines start ``Node N``), CONFIG_TRANSPARENT_HUGEPAGE, CONFIG_HUGETLB_PAGE with the x86 1 GiB
and 2 MiB hstates, no CONFIG_MEMORY_FAILURE; CMA lines appear when the machine has CMA
(``machine.cma_enabled``).  Counters whose mechanism does not exist yet read 0; swap
totals come from ``machine.total_swap_pages``/``nr_swap_pages`` once a swap subsystem sets
them.

Simplifications: ``dump_page``'s ``raw:`` words are built from the ``mem_map`` columns with the
real ``struct page`` layout (flags, lru, mapping, index, private, _mapcount/_refcount,
memcg_data), but the free lists are ordered sets, not linked lists, so a page that is not on
an LRU list shows the ``list_del`` poison values in its ``lru`` words; pointers print
unhashed (as with ``no_hash_pointers``).
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.include.gfp import (
    MAX_NR_ZONES,
    MIGRATE_CMA,
    MIGRATE_HIGHATOMIC,
    MIGRATE_TYPES,
)
from mmdbg.sim.kernel.printk import KERN_WARNING
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.mm_types import NR_PAGE_ORDERS, pfn_to_page_addr
from mmdbg.sim.trace import kfunc

SHOW_MEM_FILTER_NODES = 0x0001
MAX_RECLAIM_RETRIES = 16
HPAGE_PMD_NR = 512

# x86 hstates in registration order (for_each_hstate): gigantic pages first, then PMD size.
HSTATE_SIZES_KB = (1 << 20, 2048)

NS = vmstat.NS
ZS = vmstat.ZS


def K(pages: int) -> int:
    """Pages to kB (PAGE_SHIFT - 10 = 2)."""
    return pages << 2


def node_state(m: Any, name: str) -> int:
    """global_node_page_state(item) by vmstat name."""
    i = NS[name]
    return sum(n.vm_stat[i] for n in m.node_data)


def zone_state(m: Any, name: str) -> int:
    """global_zone_page_state(item) by vmstat name."""
    i = ZS[name]
    return sum(z.vm_stat[i] for z in m.zones)


def totalram_pages(m: Any) -> int:
    return sum(z.managed_pages for z in m.zones)


def total_swap_pages(m: Any) -> int:
    """Swap space in pages; 0 until a swap device exists (mm/swapfile.c)."""
    return int(getattr(m, "total_swap_pages", 0))


def nr_swap_pages(m: Any) -> int:
    """Free swap slots (get_nr_swap_pages)."""
    return int(getattr(m, "nr_swap_pages", 0))


def total_swapcache_pages(m: Any) -> int:
    return node_state(m, "nr_swapcached")


@kfunc
def si_mem_available(m: Any) -> int:
    """Estimate of the pages available for starting new applications (MemAvailable)."""
    wmark_low = sum(z.low_wmark_pages() for z in m.zones)  # for_each_zone: every zone
    available = zone_state(m, "nr_free_pages") - m.totalreserve_pages
    pagecache = node_state(m, "nr_active_file") + node_state(m, "nr_inactive_file")
    pagecache -= min(pagecache // 2, wmark_low)
    available += pagecache
    reclaimable = node_state(m, "nr_slab_reclaimable") + node_state(
        m, "nr_kernel_misc_reclaimable")
    reclaimable -= min(reclaimable // 2, wmark_low)
    available += reclaimable
    return max(available, 0)


def si_meminfo(m: Any) -> dict[str, int]:
    """``struct sysinfo`` memory fields, in pages (mem_unit = PAGE_SIZE)."""
    return {
        "totalram": totalram_pages(m),
        "sharedram": node_state(m, "nr_shmem"),
        "freeram": zone_state(m, "nr_free_pages"),
        "bufferram": 0,  # nr_blockdev_pages(): no block devices yet
        "totalhigh": 0,
        "freehigh": 0,
        "totalswap": total_swap_pages(m),
        "freeswap": nr_swap_pages(m),
    }


# ---------------------------------------------------------------------------------------
# __show_mem


def show_mem_node_skip(m: Any, filt: int, nid: int, nodemask: Any) -> bool:
    """SHOW_MEM_FILTER_NODES: skip nodes outside ``nodemask`` (no mask: mems_allowed, i.e.
    every node, since there are no cpusets)."""
    if not filt & SHOW_MEM_FILTER_NODES or nodemask is None:
        return False
    return nid not in nodemask


_MT_LETTERS = "UMEHCI"  # show_migration_types(): U M E H [C] [I]


def show_migration_types(types: int) -> str:
    return "(" + "".join(_MT_LETTERS[i] for i in range(MIGRATE_TYPES) if types >> i & 1) + ") "


def _zones_shown(m: Any, filt: int, nodemask: Any, max_zone_idx: int) -> list[Any]:
    return [z for z in m.zones if z.present_pages and z.zone_idx <= max_zone_idx
            and not show_mem_node_skip(m, filt, z.node, nodemask)]


def show_free_areas(m: Any, filt: int, nodemask: Any, max_zone_idx: int) -> list[str]:
    """The body of Mem-Info, as dmesg lines."""
    out: list[str] = []
    zones = _zones_shown(m, filt, nodemask, max_zone_idx)
    free_pcp = sum(p.count for z in zones for p in z.per_cpu_pageset)

    def ns(name: str) -> int:
        return node_state(m, name)

    out += [
        f"active_anon:{ns('nr_active_anon')} inactive_anon:{ns('nr_inactive_anon')} "
        f"isolated_anon:{ns('nr_isolated_anon')}",
        f" active_file:{ns('nr_active_file')} inactive_file:{ns('nr_inactive_file')} "
        f"isolated_file:{ns('nr_isolated_file')}",
        f" unevictable:{ns('nr_unevictable')} dirty:{ns('nr_dirty')} "
        f"writeback:{ns('nr_writeback')}",
        f" slab_reclaimable:{ns('nr_slab_reclaimable')} "
        f"slab_unreclaimable:{ns('nr_slab_unreclaimable')}",
        f" mapped:{ns('nr_mapped')} shmem:{ns('nr_shmem')} "
        f"pagetables:{ns('nr_page_table_pages')}",
        f" sec_pagetables:{ns('nr_sec_page_table_pages')} bounce:0",
        f" kernel_misc_reclaimable:{ns('nr_kernel_misc_reclaimable')}",
        f" free:{zone_state(m, 'nr_free_pages')} free_pcp:{free_pcp} "
        f"free_cma:{zone_state(m, 'nr_free_cma')}",
    ]
    for pgdat in m.node_data:
        if show_mem_node_skip(m, filt, pgdat.node_id, nodemask):
            continue
        if not any(z.managed_pages for z in pgdat.node_zones[:max_zone_idx + 1]):
            continue
        v = pgdat.vm_stat

        def n(name: str, v: list[int] = v) -> int:
            return v[NS[name]]

        out.append(
            f"Node {pgdat.node_id} active_anon:{K(n('nr_active_anon'))}kB"
            f" inactive_anon:{K(n('nr_inactive_anon'))}kB"
            f" active_file:{K(n('nr_active_file'))}kB"
            f" inactive_file:{K(n('nr_inactive_file'))}kB"
            f" unevictable:{K(n('nr_unevictable'))}kB"
            f" isolated(anon):{K(n('nr_isolated_anon'))}kB"
            f" isolated(file):{K(n('nr_isolated_file'))}kB"
            f" mapped:{K(n('nr_mapped'))}kB"
            f" dirty:{K(n('nr_dirty'))}kB"
            f" writeback:{K(n('nr_writeback'))}kB"
            f" shmem:{K(n('nr_shmem'))}kB"
            f" shmem_thp:{K(n('nr_shmem_hugepages'))}kB"
            f" shmem_pmdmapped:{K(n('nr_shmem_pmdmapped'))}kB"
            f" anon_thp:{K(n('nr_anon_transparent_hugepages'))}kB"
            f" kernel_stack:{n('nr_kernel_stack')}kB"
            f" pagetables:{K(n('nr_page_table_pages'))}kB"
            f" sec_pagetables:{K(n('nr_sec_page_table_pages'))}kB"
            f" all_unreclaimable? {'yes' if pgdat.kswapd_failures >= MAX_RECLAIM_RETRIES else 'no'}"
            f" Balloon:{K(n('nr_balloon_pages'))}kB")
    for z in zones:
        zs = z.vm_stat
        zfree_pcp = sum(p.count for p in z.per_cpu_pageset)
        out.append(
            f"Node {z.node} {z.name}"
            f" free:{K(zs[ZS['nr_free_pages']])}kB"
            f" boost:{K(z.watermark_boost)}kB"
            f" min:{K(z.min_wmark_pages())}kB"
            f" low:{K(z.low_wmark_pages())}kB"
            f" high:{K(z.high_wmark_pages())}kB"
            f" reserved_highatomic:{K(z.nr_reserved_highatomic)}KB"
            f" free_highatomic:{K(nr_free_highatomic(z))}KB"
            f" active_anon:{K(zs[ZS['nr_zone_active_anon']])}kB"
            f" inactive_anon:{K(zs[ZS['nr_zone_inactive_anon']])}kB"
            f" active_file:{K(zs[ZS['nr_zone_active_file']])}kB"
            f" inactive_file:{K(zs[ZS['nr_zone_inactive_file']])}kB"
            f" unevictable:{K(zs[ZS['nr_zone_unevictable']])}kB"
            f" writepending:{K(zs[ZS['nr_zone_write_pending']])}kB"
            f" present:{K(z.present_pages)}kB"
            f" managed:{K(z.managed_pages)}kB"
            f" mlocked:{K(zs[ZS['nr_mlock']])}kB"
            f" bounce:0kB"
            f" free_pcp:{K(zfree_pcp)}kB"
            f" local_pcp:{K(z.per_cpu_pageset[m.cpu].count)}kB"
            f" free_cma:{K(zs[ZS['nr_free_cma']])}kB")
        out.append("lowmem_reserve[]:" + "".join(f" {r}" for r in z.lowmem_reserve))
    for z in zones:
        parts = [f"Node {z.node} {z.name}: "]
        total = 0
        for order in range(NR_PAGE_ORDERS):
            area = z.free_area[order]
            nr = area.nr_free
            total += nr << order
            parts.append(f"{nr}*{K(1) << order}kB ")
            if nr:
                types = 0
                for mt in range(MIGRATE_TYPES):
                    if area.free_list[mt]:
                        types |= 1 << mt
                parts.append(show_migration_types(types))
        parts.append(f"= {K(total)}kB")
        out.append("".join(parts))
    for pgdat in m.node_data:
        if show_mem_node_skip(m, filt, pgdat.node_id, nodemask):
            continue
        out += hugetlb_show_meminfo_node(m, pgdat.node_id)
    out.append(f"{node_state(m, 'nr_file_pages')} total pagecache pages")
    out += show_swap_cache_info(m)
    return out


def nr_free_highatomic(zone: Any) -> int:
    """zone->nr_free_highatomic: free pages on the MIGRATE_HIGHATOMIC lists."""
    return sum(len(zone.free_area[o].free_list[MIGRATE_HIGHATOMIC]) << o
               for o in range(NR_PAGE_ORDERS))


def hugetlb_show_meminfo_node(m: Any, nid: int) -> list[str]:
    """mm/hugetlb.c: one line per hstate; no hugetlb pool exists yet."""
    return [f"Node {nid} hugepages_total=0 hugepages_free=0 hugepages_surp=0 "
            f"hugepages_size={size}kB" for size in HSTATE_SIZES_KB]


def show_swap_cache_info(m: Any) -> list[str]:
    """mm/swap_state.c."""
    return [f"{total_swapcache_pages(m)} pages in swap cache",
            f"Free swap  = {K(nr_swap_pages(m))}kB",
            f"Total swap = {K(total_swap_pages(m))}kB"]


def show_mem_lines(m: Any, filt: int = 0, nodemask: Any = None,
                   max_zone_idx: int = MAX_NR_ZONES - 1) -> list[str]:
    """The whole Mem-Info block as lines (what __show_mem prints)."""
    out = ["Mem-Info:"]
    out += show_free_areas(m, filt, nodemask, max_zone_idx)
    populated = [z for z in m.zones if z.present_pages]
    total = sum(z.present_pages for z in populated)
    reserved = sum(z.present_pages - z.managed_pages for z in populated)
    out.append(f"{total} pages RAM")
    out.append("0 pages HighMem/MovableOnly")
    out.append(f"{reserved} pages reserved")
    if m.cma_enabled:
        out.append(f"{totalcma_pages(m)} pages cma reserved")
    return out


def totalcma_pages(m: Any) -> int:
    return sum(z.cma_pages for z in m.zones)


@kfunc
def __show_mem(m: Any, filt: int = 0, nodemask: Any = None,
               max_zone_idx: int = MAX_NR_ZONES - 1) -> None:
    """Print Mem-Info to dmesg.  ``show_mem()`` is ``__show_mem(m, 0, None, MAX_NR_ZONES-1)``;
    warn_alloc and the OOM killer pass SHOW_MEM_FILTER_NODES, the nodemask and gfp_zone()."""
    for line in show_mem_lines(m, filt, nodemask, max_zone_idx):
        m.printk(line, level=KERN_WARNING)


def show_mem(m: Any) -> None:
    __show_mem(m, 0, None, MAX_NR_ZONES - 1)


# ---------------------------------------------------------------------------------------
# dump_page (mm/debug.c, lib/vsprintf.c %pGp)

# include/linux/page-flags-layout.h for x86_64, SPARSEMEM_VMEMMAP (no section field),
# NODES_SHIFT 10, 5 zones (ZONES_SHIFT 3), LAST_CPUPID in page->flags (8 pid bits +
# 13 cpu bits for NR_CPUS=8192), no KASAN tag.
NODES_WIDTH = 10
ZONES_WIDTH = 3
LAST_CPUPID_WIDTH = 21
NODES_PGSHIFT = 64 - NODES_WIDTH
ZONES_PGSHIFT = NODES_PGSHIFT - ZONES_WIDTH
LAST_CPUPID_PGSHIFT = ZONES_PGSHIFT - LAST_CPUPID_WIDTH
LAST_CPUPID_MASK = (1 << LAST_CPUPID_WIDTH) - 1

# __def_pageflag_names order (include/trace/events/mmflags.h)
PAGEFLAG_PRINT_ORDER = (
    "locked", "waiters", "referenced", "uptodate", "dirty", "lru", "active", "workingset",
    "owner_priv_1", "owner_2", "arch_1", "reserved", "private", "private_2", "writeback",
    "head", "reclaim", "swapbacked", "unevictable", "dropbehind", "mlocked", "hwpoison",
    "idle", "young", "arch_2", "arch_3",
)
LIST_POISON1 = 0xDEAD000000000100
LIST_POISON2 = 0xDEAD000000000122
PAGE_MAPPING_ANON = 0x1


def page_flags_word(m: Any, pfn: int) -> int:
    """The full ``page->flags`` word: flag bits plus the node, zone and last_cpupid fields
    that the kernel keeps in its upper bits (derived here from the pfn)."""
    z = m.pfn_zone(pfn)
    node = z.node if z is not None else 0
    zidx = z.zone_idx if z is not None else 0
    flags = m.mem_map.flags[pfn] & pf.PAGE_FLAGS_MASK
    return (flags | node << NODES_PGSHIFT | zidx << ZONES_PGSHIFT
            | LAST_CPUPID_MASK << LAST_CPUPID_PGSHIFT)


def format_page_flags(flags: int) -> str:
    """``%pGp``: ``0x...(name|name|node=N|zone=Z|lastcpupid=0x...)``."""
    main = flags & pf.PAGE_FLAGS_MASK
    names: list[str] = []
    rest = main
    for name in PAGEFLAG_PRINT_ORDER:
        if not rest:
            break
        bit = 1 << pf.PAGEFLAG_NAMES.index(name)
        if rest & bit:
            names.append(name)
            rest &= ~bit
    if rest:
        names.append(f"{rest:#x}")
    fields = [f"node={flags >> NODES_PGSHIFT & ((1 << NODES_WIDTH) - 1)}",
              f"zone={flags >> ZONES_PGSHIFT & ((1 << ZONES_WIDTH) - 1)}",
              f"lastcpupid={flags >> LAST_CPUPID_PGSHIFT & LAST_CPUPID_MASK:#x}"]
    return f"{flags:#x}({'|'.join(names + fields)})"


def _ptr(v: Any) -> int:
    """A kernel pointer value for mapping/memcg fields: ints as they are, objects by their
    simulated address (``.addr``), anything else as NULL."""
    if v is None:
        return 0
    if isinstance(v, int):
        return v & 0xFFFFFFFFFFFFFFFF
    addr = getattr(v, "addr", 0)
    return int(addr) & 0xFFFFFFFFFFFFFFFF


def struct_page_words(m: Any, pfn: int) -> list[int]:
    """The eight 64-bit words of ``struct page`` for ``pfn`` (print_hex_dump of 64 bytes):
    flags, lru.next, lru.prev (or compound_head for a tail page), mapping, index, private,
    _mapcount|_refcount<<32, memcg_data."""
    mm = m.mem_map
    w = [0] * 8
    w[0] = page_flags_word(m, pfn)
    head = mm.compound_head[pfn]
    if head >= 0:
        w[1] = pfn_to_page_addr(head) | 1
        w[2] = 0
    else:
        nxt, prv = mm.lru_next[pfn], mm.lru_prev[pfn]
        w[1] = pfn_to_page_addr(nxt) + 8 if nxt >= 0 else LIST_POISON1
        w[2] = pfn_to_page_addr(prv) + 8 if prv >= 0 else LIST_POISON2
    w[3] = _ptr(mm.mapping.get(pfn))
    w[4] = mm.index.get(pfn, 0) & 0xFFFFFFFFFFFFFFFF
    w[5] = (mm.order[pfn] if mm._mapcount[pfn] == pf.PAGE_BUDDY_MAPCOUNT_VALUE
            else mm.private.get(pfn, 0)) & 0xFFFFFFFFFFFFFFFF
    w[6] = (mm._mapcount[pfn] & 0xFFFFFFFF) | (mm._refcount[pfn] & 0xFFFFFFFF) << 32
    w[7] = _ptr(mm.memcg_data.get(pfn))
    return w


def hex_rows(prefix: str, words: list[int]) -> list[str]:
    """print_hex_dump(prefix, DUMP_PREFIX_NONE, rowsize 32, groupsize 8): 4 words a row."""
    return [prefix + " ".join(f"{x:016x}" for x in words[i:i + 4])
            for i in range(0, len(words), 4)]


def dump_page_lines(m: Any, pfn: int, reason: str | None) -> list[str]:
    """What dump_page(page, reason) prints, as lines."""
    mm = m.mem_map
    if not 0 <= pfn < mm.max_pfn:
        # no struct page behind it: what the kernel prints for a poisoned memmap entry
        out = [f"page:{pfn_to_page_addr(max(pfn, 0)):016x} is uninitialized and poisoned"]
        return out + ([f"page dumped because: {reason}"] if reason else [])
    head = mm.compound_head[pfn]
    folio = head if head >= 0 else pfn
    idx = pfn - folio
    large = bool(mm.flags[folio] >> pf.PG_head & 1)
    out: list[str] = []
    mapcount_word = mm._mapcount[pfn]
    mapcount = 0 if pf.page_type_of(mapcount_word) is not None else mapcount_word + 1
    raw_mapping = mm.mapping.get(folio)
    mapping_val = _ptr(raw_mapping)
    anon = isinstance(raw_mapping, int) and bool(raw_mapping & PAGE_MAPPING_ANON)
    shown_mapping = 0 if anon else mapping_val  # folio_mapping(): NULL for anon folios
    index = (mm.index.get(folio, 0) + idx) & 0xFFFFFFFFFFFFFFFF
    out.append(f"page: refcount:{mm._refcount[folio]} mapcount:{mapcount} "
               f"mapping:{shown_mapping:016x} index:{index:#x} pfn:{pfn:#x}")
    if large:
        order = mm.order[folio]
        out.append(f"head: order:{order} mapcount:0 entire_mapcount:0 nr_pages_mapped:0 "
                   f"pincount:0")
    memcg = _ptr(mm.memcg_data.get(folio))
    if memcg:
        out.append(f"memcg:{memcg:x}")
    prefix = "anon " if anon else ""
    cma = (" CMA" if mm.pageblock_mt[pfn >> 9] == MIGRATE_CMA and m.cma_enabled else "")
    out.append(f"{prefix}flags: {format_page_flags(page_flags_word(m, folio))}{cma}")
    pgty = pf.page_type_of(mm._mapcount[folio])
    if pgty is not None:
        out.append(f"page_type: {pgty:x}({pf.PGTY_NAMES[pgty]})")
    out += hex_rows("raw: ", struct_page_words(m, pfn))
    if large:
        words = struct_page_words(m, folio)
        tail = struct_page_words(m, folio + 1)
        tail[0] |= mm.order[folio]  # folio->_flags_1 holds the order
        out += hex_rows("head: ", words + tail)
    if reason:
        out.append(f"page dumped because: {reason}")
    return out


@kfunc
def dump_page(m: Any, pfn: int, reason: str | None) -> None:
    """Print one struct page (mm/debug.c dump_page -> __dump_folio)."""
    for line in dump_page_lines(m, pfn, reason):
        m.printk(line, level=KERN_WARNING)

