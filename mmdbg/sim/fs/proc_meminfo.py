"""/proc/meminfo (fs/proc/meminfo.c meminfo_proc_show, mm/hugetlb.c, arch/x86/mm/pat).

Fields, order and widths are Linux 6.18's for the configuration of the samples in
reference/proc-samples-linux-6.18 (CONFIG_ZSWAP, CONFIG_TRANSPARENT_HUGEPAGE,
CONFIG_HUGETLB_PAGE, x86_64 with 1 GiB direct-map pages; no CONFIG_MEMORY_FAILURE, no
CONFIG_UNACCEPTED_MEMORY).  ``CmaTotal``/``CmaFree`` appear when the machine has CMA.
Values come from the machine's counters (``zone.vm_stat``, ``pgdat.vm_stat``, managed
pages, watermarks); counters whose mechanism does not exist yet are 0 and start moving
when their subsystem updates them.

``DirectMap*`` comes from the x86 direct-map layout that ``init_mem_mapping`` builds for the
e820 RAM ranges: the first MiB (ISA) and each range's unaligned head and tail in 4 KiB
pages, 2 MiB pages up to a 1 GiB boundary, 1 GiB pages in between.  Later splits of large
pages (set_memory_ro/nx on the kernel image) are not modelled.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm.mm_types import VMALLOC_END, VMALLOC_START
from mmdbg.sim.mm.show_mem import (
    node_state,
    si_mem_available,
    si_meminfo,
    total_swapcache_pages,
    totalcma_pages,
    zone_state,
)
from mmdbg.sim.mm.zswap import zswap_total_pages
from mmdbg.sim.trace import kfunc

SZ_1M = 1 << 20
SZ_2M = 2 << 20
SZ_1G = 1 << 30
ISA_END_ADDRESS = 0x100000
# x86_64 vmalloc space: 32 TiB with 4-level paging, 12800 TiB with 5-level (la57)
VMALLOC_SIZE_L5 = 12800 << 40
HPAGE_PMD_SIZE_KB = 2048


def show_val_kb(label: str, pages: int) -> str:
    """``seq_put_decimal_ull_width(m, label, pages << 2, 8)`` + `` kB``."""
    return f"{label}{pages << 2:>8} kB\n"


def vmalloc_total_kb(m: Any) -> int:
    if m.config.la57:
        return (VMALLOC_SIZE_L5 - 1) >> 10
    return (VMALLOC_END - VMALLOC_START) >> 10


def vm_commit_limit(m: Any, totalram: int, totalswap: int) -> int:
    """mm/util.c: overcommit_kbytes if set, else (totalram - hugetlb) * ratio / 100; + swap."""
    kbytes = m.sysctl.get("vm.overcommit_kbytes", 0)
    if kbytes:
        allowed = kbytes >> 2
    else:
        allowed = totalram * m.sysctl.get("vm.overcommit_ratio", 50) // 100
    return allowed + totalswap


def vm_memory_committed(m: Any) -> int:
    """Committed_AS in pages: the vm_committed_as counter (0 until mmap accounting exists)."""
    return int(getattr(m, "vm_committed_as", 0))


def split_mem_range(start: int, end: int) -> tuple[int, int, int]:
    """Bytes of [start, end) mapped with 4K, 2M and 1G pages (arch/x86/mm/init.c)."""
    def up(x: int, a: int) -> int:
        return (x + a - 1) // a * a

    def down(x: int, a: int) -> int:
        return x // a * a

    k4 = m2 = g1 = 0
    if end <= start:
        return 0, 0, 0
    a = min(up(start, SZ_2M), end)          # 4K head up to 2M alignment
    k4 += a - start
    b = max(a, min(up(a, SZ_1G), down(end, SZ_2M)))  # 2M pages up to 1G alignment
    m2 += b - a
    c = max(b, down(end, SZ_1G))            # 1G pages
    g1 += c - b
    d = max(c, down(end, SZ_2M))            # 2M tail
    m2 += d - c
    k4 += end - d                           # 4K tail
    return k4, m2, g1


def direct_pages_count(m: Any) -> tuple[int, int, int]:
    """(4K pages, 2M pages, 1G pages) in the kernel's direct map."""
    k4, m2, g1 = ISA_END_ADDRESS, 0, 0  # init_memory_mapping(0, ISA_END_ADDRESS): 4K pages
    for s, e in m.ram_ranges:
        s, e = max(s << 12, ISA_END_ADDRESS), e << 12
        a, b, c = split_mem_range(s, e)
        k4 += a
        m2 += b
        g1 += c
    return k4 >> 12, m2 >> 21, g1 >> 30


def hugetlb_report_meminfo() -> str:
    """mm/hugetlb.c: the default (2 MiB) hstate; no hugetlb pool exists yet."""
    return ("HugePages_Total:       0\n"
            "HugePages_Free:        0\n"
            "HugePages_Rsvd:        0\n"
            "HugePages_Surp:        0\n"
            f"Hugepagesize:   {HPAGE_PMD_SIZE_KB:>8} kB\n"
            f"Hugetlb:        {0:>8} kB\n")


def arch_report_meminfo(m: Any) -> str:
    n4k, n2m, n1g = direct_pages_count(m)
    return (f"DirectMap4k:    {n4k << 2:>8} kB\n"
            f"DirectMap2M:    {n2m << 11:>8} kB\n"
            f"DirectMap1G:    {n1g << 20:>8} kB\n")


@kfunc
def meminfo_proc_show(m: Any) -> str:
    """The text of /proc/meminfo."""
    i = si_meminfo(m)
    committed = vm_memory_committed(m)
    swapcache = total_swapcache_pages(m)
    cached = max(node_state(m, "nr_file_pages") - swapcache - i["bufferram"], 0)
    lru = {name: node_state(m, name) for name in (
        "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file",
        "nr_unevictable")}
    available = si_mem_available(m)
    sreclaimable = node_state(m, "nr_slab_reclaimable")
    sunreclaim = node_state(m, "nr_slab_unreclaimable")
    out = [
        show_val_kb("MemTotal:       ", i["totalram"]),
        show_val_kb("MemFree:        ", i["freeram"]),
        show_val_kb("MemAvailable:   ", available),
        show_val_kb("Buffers:        ", i["bufferram"]),
        show_val_kb("Cached:         ", cached),
        show_val_kb("SwapCached:     ", swapcache),
        show_val_kb("Active:         ", lru["nr_active_anon"] + lru["nr_active_file"]),
        show_val_kb("Inactive:       ", lru["nr_inactive_anon"] + lru["nr_inactive_file"]),
        show_val_kb("Active(anon):   ", lru["nr_active_anon"]),
        show_val_kb("Inactive(anon): ", lru["nr_inactive_anon"]),
        show_val_kb("Active(file):   ", lru["nr_active_file"]),
        show_val_kb("Inactive(file): ", lru["nr_inactive_file"]),
        show_val_kb("Unevictable:    ", lru["nr_unevictable"]),
        show_val_kb("Mlocked:        ", zone_state(m, "nr_mlock")),
        show_val_kb("SwapTotal:      ", i["totalswap"]),
        show_val_kb("SwapFree:       ", i["freeswap"]),
        show_val_kb("Zswap:          ", zswap_total_pages(m)),
        show_val_kb("Zswapped:       ", getattr(getattr(m, "zswap", None), "stored_pages", 0)),
        show_val_kb("Dirty:          ", node_state(m, "nr_dirty")),
        show_val_kb("Writeback:      ", node_state(m, "nr_writeback")),
        show_val_kb("AnonPages:      ", node_state(m, "nr_anon_pages")),
        show_val_kb("Mapped:         ", node_state(m, "nr_mapped")),
        show_val_kb("Shmem:          ", i["sharedram"]),
        show_val_kb("KReclaimable:   ", sreclaimable
                    + node_state(m, "nr_kernel_misc_reclaimable")),
        show_val_kb("Slab:           ", sreclaimable + sunreclaim),
        show_val_kb("SReclaimable:   ", sreclaimable),
        show_val_kb("SUnreclaim:     ", sunreclaim),
        f"KernelStack:    {node_state(m, 'nr_kernel_stack'):>8} kB\n",
        show_val_kb("PageTables:     ", node_state(m, "nr_page_table_pages")),
        show_val_kb("SecPageTables:  ", node_state(m, "nr_sec_page_table_pages")),
        show_val_kb("NFS_Unstable:   ", 0),
        show_val_kb("Bounce:         ", 0),
        show_val_kb("WritebackTmp:   ", 0),
        show_val_kb("CommitLimit:    ", vm_commit_limit(m, i["totalram"], i["totalswap"])),
        show_val_kb("Committed_AS:   ", committed),
        f"VmallocTotal:   {vmalloc_total_kb(m):>8} kB\n",
        show_val_kb("VmallocUsed:    ", int(getattr(m, "vmalloc_nr_pages", 0))),
        show_val_kb("VmallocChunk:   ", 0),
        show_val_kb("Percpu:         ", m.percpu_bytes >> 12),
        show_val_kb("AnonHugePages:  ", node_state(m, "nr_anon_transparent_hugepages")),
        show_val_kb("ShmemHugePages: ", node_state(m, "nr_shmem_hugepages")),
        show_val_kb("ShmemPmdMapped: ", node_state(m, "nr_shmem_pmdmapped")),
        show_val_kb("FileHugePages:  ", node_state(m, "nr_file_hugepages")),
        show_val_kb("FilePmdMapped:  ", node_state(m, "nr_file_pmdmapped")),
    ]
    if m.cma_enabled:
        out.append(show_val_kb("CmaTotal:       ", totalcma_pages(m)))
        out.append(show_val_kb("CmaFree:        ", zone_state(m, "nr_free_cma")))
    out.append(show_val_kb("Balloon:        ", node_state(m, "nr_balloon_pages")))
    out.append(hugetlb_report_meminfo())
    out.append(arch_report_meminfo(m))
    return "".join(out)
