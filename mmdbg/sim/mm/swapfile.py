"""Swap devices and slots (mm/swapfile.c): swapon/swapoff, the swap map, clusters, /proc/swaps.

A swap device (``swap_info_struct``, :class:`SwapInfo`) is a swap file on the simulated disk,
a partition, or a zram device.  Slot 0 holds the swap header; ``swap_map[offset]`` counts the
PTEs (and the swap cache, ``SWAP_HAS_CACHE``) that refer to a slot.  Slots are handed out a
cluster (512 slots) at a time: each CPU fills its current cluster sequentially, then takes a
free cluster, then falls back to scanning (the 6.15+ ``swap_alloc_fast``/``swap_alloc_slow``
shape).  Devices are used in priority order; a new device without a priority gets
``--least_priority`` (-2, -3, ...), as the kernel does.

A swap entry (``swp_entry_t``) is ``type << 58 | offset``; in a PTE it uses the x86 encoding
(``swp_entry_to_pte``: type in bits 59-63, the inverted offset in bits 9-58).  Swapped pages
keep their real bytes: ``si.data[offset]`` (or the zswap pool, or the zram device);
zero-filled pages are only a bit in ``zeromap`` (no I/O, ``swpout_zero``/``swpin_zero``).

Totals: ``machine.total_swap_pages``/``nr_swap_pages`` (SwapTotal/SwapFree, CommitLimit,
the OOM killer's totalpages) and ``machine.vm.total_swap_pages``.

Simplification: swapoff's ``try_to_unuse`` walks every process's page tables once and swaps
each entry of the device back in (no retries, no shmem); discard and bad blocks are not
modelled.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.mm import memcontrol
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.trace import current_machine, kfunc

SWAP_HAS_CACHE = 0x40
SWAP_MAP_MAX = 0x3E
SWAPFILE_CLUSTER = 512
SWP_TYPE_SHIFT = 58
SWP_OFFSET_MASK = (1 << SWP_TYPE_SHIFT) - 1
MAX_SWAPFILES = 32
SWP_USED = 1 << 0
SWP_WRITEOK = 1 << 1
SWP_SOLIDSTATE = 1 << 4
SWP_SYNCHRONOUS_IO = 1 << 12
_SWAPCACHE = 1 << pf.PG_swapcache
_DIRTY = 1 << pf.PG_dirty


def swp_entry(swp_type: int, offset: int) -> int:
    return swp_type << SWP_TYPE_SHIFT | offset


def swp_type(entry: int) -> int:
    return entry >> SWP_TYPE_SHIFT


def swp_offset(entry: int) -> int:
    return entry & SWP_OFFSET_MASK


class SwapInfo:
    """``struct swap_info_struct``."""

    ktype = "swap_info_struct"

    def __init__(self, m: Any, type_: int, name: str, maxpages: int, prio: int, kind: str,
                 bdev: Any) -> None:
        self.type = type_
        self.swap_file = name
        self.kind = kind  # "file" or "partition"
        self.prio = prio
        self.max = maxpages
        self.pages = maxpages - 1
        self.inuse_pages = 0
        self.flags = SWP_USED | SWP_WRITEOK | SWP_SOLIDSTATE
        self.swap_map = bytearray(maxpages)
        self.swap_map[0] = SWAP_MAP_MAX  # the header page is never handed out
        self.count_ext: dict[int, int] = {}  # counts beyond SWAP_MAP_MAX (continuation)
        self.data: dict[int, bytes] = {}
        self.zeromap: set[int] = set()
        self.shadows: dict[int, tuple] = {}
        self.bdev = bdev
        nclusters = (maxpages + SWAPFILE_CLUSTER - 1) // SWAPFILE_CLUSTER
        self.cluster_count = [0] * nclusters  # slots in use per cluster
        self.cluster_count[0] = 1
        from collections import deque

        self.free_clusters: deque[int] = deque(i for i in range(1, nclusters)
                                               if (i + 1) * SWAPFILE_CLUSTER <= maxpages)
        self.percpu_next: dict[int, int] = {0: 1}  # cpu -> next offset in its cluster
        self.scan_pos = 1
        self.swap_ra = 0

    def __repr__(self) -> str:
        return f"<swap_info_struct {self.type} {self.swap_file}>"

    def count(self, off: int) -> int:
        return (self.swap_map[off] & ~SWAP_HAS_CACHE) + self.count_ext.get(off, 0)


class SwapGlobals:
    def __init__(self) -> None:
        self.swap_info: list[SwapInfo | None] = []
        self.least_priority = -1
        self.cache: dict[int, int] = {}  # swap entry -> pfn (the swap cache)


def swap_init(m: Any) -> None:
    m.swap = SwapGlobals()
    m.total_swap_pages = 0
    m.nr_swap_pages = 0


def _set_totals(m: Any) -> None:
    total = sum(si.pages for si in m.swap.swap_info if si is not None and si.flags & SWP_WRITEOK)
    free = sum(si.pages - si.inuse_pages for si in m.swap.swap_info
               if si is not None and si.flags & SWP_WRITEOK)
    m.total_swap_pages = total
    m.nr_swap_pages = free
    m.vm.total_swap_pages = total


def swap_info(m: Any, entry: int) -> SwapInfo | None:
    t = swp_type(entry)
    if t >= len(m.swap.swap_info):
        return None
    return m.swap.swap_info[t]


# -- swapon / swapoff -------------------------------------------------------------------------
@kfunc(aliases=("__do_sys_swapon",))
def sys_swapon(path: str, size: int = 0, prio: int = -1, kind: str = "file",
               bdev: Any = None) -> int:
    """swapon(2): ``size`` bytes of ``path`` become swap (a partition, a file or zram).
    Returns 0 or -errno."""
    m = current_machine()
    g = m.swap
    if any(si is not None and si.swap_file == path for si in g.swap_info):
        return -errno.EBUSY
    maxpages = size >> 12
    if maxpages < 10:
        return -errno.EINVAL
    try:
        type_ = next(i for i, si in enumerate(g.swap_info) if si is None)
    except StopIteration:
        type_ = len(g.swap_info)
        if type_ >= MAX_SWAPFILES:
            return -errno.EPERM
        g.swap_info.append(None)
    if prio < 0:
        g.least_priority -= 1
        prio = g.least_priority
    if bdev is None:
        from mmdbg.sim.fs.ramfs import BlockDevice

        bdev = getattr(m.vm.fs, "disk", None) or BlockDevice("sda", 8, 0)
    si = SwapInfo(m, type_, path, maxpages, prio, kind, bdev)
    if getattr(bdev, "synchronous_io", False):
        si.flags |= SWP_SYNCHRONOUS_IO
    g.swap_info[type_] = si
    _set_totals(m)
    flags = "SS"
    m.printk(f"Adding {si.pages * 4}k swap on {path}.  Priority:{prio} extents:1 "
             f"across:{si.pages * 4}k {flags}")
    return 0


@kfunc(aliases=("__do_sys_swapoff",))
def sys_swapoff(path: str) -> int:
    """swapoff(2): bring every page of the device back into memory, then remove it."""
    m = current_machine()
    g = m.swap
    si = next((s for s in g.swap_info if s is not None and s.swap_file == path), None)
    if si is None:
        return -errno.EINVAL
    si.flags &= ~SWP_WRITEOK
    _set_totals(m)
    err = try_to_unuse(m, si)
    if err:
        si.flags |= SWP_WRITEOK
        _set_totals(m)
        return err
    g.swap_info[si.type] = None
    if si.prio < 0:
        for s in g.swap_info:
            if s is not None and s.prio < si.prio:
                s.prio += 1
        g.least_priority += 1
    _set_totals(m)
    return 0


def try_to_unuse(m: Any, si: SwapInfo) -> int:
    """Swap in every entry of ``si`` still referenced by a page table or the swap cache."""
    from mmdbg.sim.arch.x86.pgtable import pte_swp_offset, pte_swp_type
    from mmdbg.sim.kernel.vm_init import task_context
    from mmdbg.sim.mm import swap_state
    from mmdbg.sim.mm.debug_vm_mm import _walk_tables, live_mms

    for mm in live_mms(m):
        owner = next((t for t in sorted(m.tasks.values(), key=lambda t: t.pid) if t.mm is mm),
                     None)
        for base, t in _walk_tables(mm, []):
            for i in range(512):
                pte = t[i]
                if not pte or pte & 0x101 or pte_swp_type(pte) != si.type:
                    continue
                addr = base | i << 12
                vma = mm.mm_mt.find(addr)
                if vma is None or owner is None:
                    continue
                with task_context(m, owner):
                    ret = swap_state.unuse_pte(vma, addr, t, i, swp_entry(si.type,
                                                                           pte_swp_offset(pte)))
                if ret:
                    return -errno.ENOMEM
    for entry, pfn in sorted(m.swap.cache.items()):
        if swp_type(entry) == si.type:
            swap_state.delete_from_swap_cache(pfn)
            m.mem_map.flags[pfn] |= _DIRTY
            from mmdbg.sim.mm.filemap import folio_put

            folio_put(m, pfn)
    if si.inuse_pages:
        return -errno.EBUSY
    return 0


# -- slot allocation --------------------------------------------------------------------------
def _take_slot(si: SwapInfo, cpu: int) -> int | None:
    nxt = si.percpu_next.get(cpu)
    if nxt is not None:
        c = nxt // SWAPFILE_CLUSTER
        end = min((c + 1) * SWAPFILE_CLUSTER, si.max)
        while nxt < end and si.swap_map[nxt]:
            nxt += 1
        if nxt < end:
            si.percpu_next[cpu] = nxt + 1
            return nxt
    while si.free_clusters:
        c = si.free_clusters.popleft()
        if si.cluster_count[c]:
            continue
        off = c * SWAPFILE_CLUSTER
        si.percpu_next[cpu] = off + 1
        return off
    # swap_alloc_slow: scan the whole map
    n = si.max
    for k in range(n):
        off = (si.scan_pos + k) % n
        if off and not si.swap_map[off]:
            si.scan_pos = off + 1
            return off
    return None


@kfunc(aliases=("get_swap_pages", "folio_alloc_swap", "swap_alloc_fast"))
def get_swap_page_of_type(folio: int) -> int | None:
    """Allocate a slot on the highest-priority device with room; charges memcg swap."""
    m = current_machine()
    devs = sorted((si for si in m.swap.swap_info if si is not None and si.flags & SWP_WRITEOK),
                  key=lambda s: (-s.prio, s.type))
    for si in devs:
        if si.inuse_pages >= si.pages:
            continue
        off = _take_slot(si, m.cpu)
        if off is None:
            continue
        entry = swp_entry(si.type, off)
        if memcontrol.mem_cgroup_try_charge_swap(folio, entry):
            return None
        si.swap_map[off] = SWAP_HAS_CACHE
        si.inuse_pages += 1
        si.cluster_count[off // SWAPFILE_CLUSTER] += 1
        m.nr_swap_pages -= 1
        si.shadows.pop(off, None)
        return entry
    return None


def swap_range_free(m: Any, si: SwapInfo, off: int) -> None:
    """The last reference to a slot is gone: free it (and its stored contents)."""
    entry = swp_entry(si.type, off)
    si.swap_map[off] = 0
    si.count_ext.pop(off, None)
    si.data.pop(off, None)
    si.zeromap.discard(off)
    zs = getattr(m, "zswap", None)
    if zs is not None:
        zs.invalidate(m, entry)
    if getattr(si.bdev, "slot_free_notify", None) is not None:
        si.bdev.slot_free_notify(off)
    si.inuse_pages -= 1
    c = off // SWAPFILE_CLUSTER
    si.cluster_count[c] -= 1
    if not si.cluster_count[c] and c and (c + 1) * SWAPFILE_CLUSTER <= si.max:
        si.free_clusters.append(c)
    if si.flags & SWP_WRITEOK:
        m.nr_swap_pages += 1
    memcontrol.mem_cgroup_uncharge_swap(entry)


def swap_duplicate_entry(m: Any, entry: int) -> None:
    si = swap_info(m, entry)
    off = swp_offset(entry)
    c = si.swap_map[off] & ~SWAP_HAS_CACHE
    if c < SWAP_MAP_MAX - 1:
        si.swap_map[off] += 1
    else:
        si.count_ext[off] = si.count_ext.get(off, 0) + 1


def swap_entry_put(m: Any, entry: int) -> int:
    """Drop one PTE reference; returns the remaining count (cache not included)."""
    si = swap_info(m, entry)
    off = swp_offset(entry)
    if si.count_ext.get(off):
        si.count_ext[off] -= 1
        if not si.count_ext[off]:
            del si.count_ext[off]
    else:
        si.swap_map[off] -= 1
    cnt = si.count(off)
    if not cnt and not si.swap_map[off] & SWAP_HAS_CACHE:
        swap_range_free(m, si, off)
    return cnt


@kfunc(aliases=("swap_free_nr",))
def swap_free(entry: int) -> None:
    swap_entry_put(current_machine(), entry)


@kfunc
def put_swap_folio(folio: int, entry: int) -> None:
    """The swap cache lets go of the slot (SWAP_HAS_CACHE cleared)."""
    m = current_machine()
    si = swap_info(m, entry)
    off = swp_offset(entry)
    si.swap_map[off] &= ~SWAP_HAS_CACHE
    if not si.count(off):
        swap_range_free(m, si, off)


def _entry_of_pte(pte: int) -> int:
    from mmdbg.sim.arch.x86.pgtable import pte_swp_offset, pte_swp_type

    return swp_entry(pte_swp_type(pte), pte_swp_offset(pte))


@kfunc(aliases=("swap_duplicate_nr",))
def swap_duplicate(pte: int) -> None:
    """fork copies a swap PTE: one more reference to the slot (the vm.hooks entry)."""
    m = current_machine()
    entry = _entry_of_pte(pte)
    if swap_info(m, entry) is not None:
        swap_duplicate_entry(m, entry)


@kfunc(aliases=("free_swap_and_cache_nr",))
def free_swap_and_cache(pte: int) -> None:
    """A swap PTE is zapped: drop the reference; an unmapped cached copy goes too."""
    m = current_machine()
    entry = _entry_of_pte(pte)
    si = swap_info(m, entry)
    if si is None:
        return
    cnt = swap_entry_put(m, entry)
    if cnt:
        return
    pfn = m.swap.cache.get(entry)
    if pfn is not None and m.mem_map._mapcount[pfn] < 0:
        from mmdbg.sim.mm import swap_state
        from mmdbg.sim.mm.filemap import folio_put

        swap_state.delete_from_swap_cache(pfn)
        folio_put(m, pfn)


def vm_swap_full(m: Any) -> bool:
    return m.nr_swap_pages * 2 < m.total_swap_pages


@kfunc
def folio_free_swap(folio: int) -> bool:
    """Free the swap copy of a page that no PTE refers to through swap any more."""
    m = current_machine()
    fl = m.mem_map.flags
    if not fl[folio] & _SWAPCACHE:
        return False
    entry = m.mem_map.private[folio]
    si = swap_info(m, entry)
    if si.count(swp_offset(entry)):
        return False
    from mmdbg.sim.mm import swap_state

    swap_state.delete_from_swap_cache(folio)
    m.mem_map._refcount[folio] -= 1
    fl[folio] |= _DIRTY
    return True


# -- /proc/swaps and the shell ------------------------------------------------------------------
def proc_swaps(m: Any) -> str:
    """/proc/swaps (mm/swapfile.c swap_show)."""
    out = ["Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"]
    for si in m.swap.swap_info:
        if si is None or not si.flags & SWP_WRITEOK:
            continue
        name = si.swap_file
        length = len(name)
        size = si.pages * 4
        used = si.inuse_pages * 4
        out.append(f"{name}{' ' * (40 - length if length < 40 else 1)}"
                   f"{'partition' if si.kind != 'file' else 'file' + chr(9)}\t{size}\t"
                   f"{chr(9) if size < 10000000 else ''}{used}\t"
                   f"{chr(9) if used < 10000000 else ''}{si.prio}\n")
    return "".join(out)


def swapon_default(m: Any) -> None:
    """The ``swap=SIZE`` boot parameter: a swap file on the root disk."""
    size = int(getattr(m.config, "swap", 0) or 0)
    if size:
        sys_swapon("/swapfile", size)


def register(v: Any, m: Any) -> None:
    v.register("/proc/swaps", lambda: proc_swaps(m))


def swap_slots_of_pte_check(m: Any) -> None:
    """CONFIG_DEBUG_VM: every slot's count equals the swap PTEs naming it; the cache agrees."""
    from mmdbg.sim.arch.x86.pgtable import pte_swp_offset, pte_swp_type
    from mmdbg.sim.mm.debug_vm_mm import _walk_tables, live_mms

    if getattr(m, "swap", None) is None:
        return
    refs: dict[int, int] = {}
    for mm in live_mms(m):
        for _base, t in _walk_tables(mm, []):
            for i in range(512):
                pte = t[i]
                if pte and not pte & 0x101:
                    e = swp_entry(pte_swp_type(pte), pte_swp_offset(pte))
                    refs[e] = refs.get(e, 0) + 1
    fl = m.mem_map.flags
    for entry, pfn in m.swap.cache.items():
        assert fl[pfn] & _SWAPCACHE, f"swap cache pfn {pfn:#x} without PG_swapcache"
        assert m.mem_map.private.get(pfn) == entry, f"swap cache pfn {pfn:#x}: wrong entry"
        assert m.mem_map._refcount[pfn] >= 1, f"swap cache pfn {pfn:#x} has no reference"
    inuse_total = 0
    for si in m.swap.swap_info:
        if si is None:
            continue
        inuse = 0
        for off in range(1, si.max):
            v = si.swap_map[off]
            if not v:
                assert off not in si.data and off not in si.zeromap, \
                    f"swap {si.swap_file}: free slot {off} still holds data"
                continue
            inuse += 1
            e = swp_entry(si.type, off)
            assert si.count(off) == refs.get(e, 0), \
                f"swap {si.swap_file} slot {off}: count {si.count(off)} != {refs.get(e, 0)} PTEs"
            assert bool(v & SWAP_HAS_CACHE) == (e in m.swap.cache), \
                f"swap {si.swap_file} slot {off}: SWAP_HAS_CACHE disagrees with the swap cache"
        assert inuse == si.inuse_pages, \
            f"swap {si.swap_file}: inuse_pages {si.inuse_pages} != {inuse} slots in use"
        if si.flags & SWP_WRITEOK:
            inuse_total += si.pages - si.inuse_pages
    for e in refs:
        si = swap_info(m, e)
        assert si is not None and si.swap_map[swp_offset(e)], \
            f"swap PTE names free slot {e:#x}"
    assert m.nr_swap_pages == inuse_total, \
        f"nr_swap_pages {m.nr_swap_pages} != free slots {inuse_total}"
    from mmdbg.sim.mm import vmstat

    nr_sc = sum(n.vm_stat[vmstat.NS["nr_swapcached"]] for n in m.node_data)
    assert nr_sc == len(m.swap.cache), f"nr_swapcached {nr_sc} != swap cache {len(m.swap.cache)}"


@kfunc
def free_swap_cache(folio: int) -> None:
    """An unmapped page leaving a process (tlb batch free): drop its unused swap copy."""
    m = current_machine()
    fl = m.mem_map.flags
    if not fl[folio] & _SWAPCACHE:
        return
    entry = m.mem_map.private[folio]
    si = swap_info(m, entry)
    if si.count(swp_offset(entry)):
        return
    from mmdbg.sim.mm import swap_state

    swap_state.delete_from_swap_cache(folio)
    m.mem_map._refcount[folio] -= 1
