"""The LRU lists and their page-level operations (mm/swap.c, include/linux/mm_inline.h).

Every evictable user page (anonymous, shmem, page cache) is on exactly one LRU list of one
``lruvec``: the one of its memory cgroup on its node (``folio_lruvec``).  A lruvec has the
kernel's five lists -- inactive/active anon, inactive/active file, unevictable -- each an
``OrderedDict`` used as an ordered set of pfns: the *head* (where new pages go) is the end,
the *tail* (what reclaim scans first) is the beginning; add, delete, rotate and take-oldest are
O(1).  ``lru_where[pfn]`` remembers (lruvec, list, kind) so a page is taken off the right list
even when its flags or mapping changed since it was added.

Counters follow the kernel: the node's ``nr_inactive_anon``.. ``nr_unevictable`` and the zone's
``nr_zone_*`` items (which /proc/meminfo's Active/Inactive lines and Mem-Info print), and the
memcg's own list sizes.  ``PG_lru``, ``PG_active``, ``PG_unevictable`` are set as the kernel
sets them, so ``dump_page`` and ``kpageflags`` show them.

Simplifications: no per-CPU folio batches (``folio_batch``/``lru_add_drain``): a page reaches
its list at once; the LRU holds no page reference (reclaim runs to completion between two
preemption points, so nothing can free a page under it).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.mm_types import PAGEBLOCK_ORDER
from mmdbg.sim.mm.vma import VM_LOCKED, VM_SPECIAL
from mmdbg.sim.trace import current_machine, kfunc

LRU_INACTIVE_ANON = 0
LRU_ACTIVE_ANON = 1
LRU_INACTIVE_FILE = 2
LRU_ACTIVE_FILE = 3
LRU_UNEVICTABLE = 4
NR_LRU_LISTS = 5
LRU_NAMES = ("inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable")
EVICTABLE_LRUS = (LRU_INACTIVE_ANON, LRU_ACTIVE_ANON, LRU_INACTIVE_FILE, LRU_ACTIVE_FILE)

# page kinds for memcg statistics
KIND_ANON = 0
KIND_FILE = 1
KIND_SHMEM = 2

_NR_LRU_BASE = vmstat.NS["nr_inactive_anon"]  # node items 0..4 follow the lru enum
_NR_ZONE_LRU_BASE = vmstat.ZS["nr_zone_inactive_anon"]
_PGACTIVATE = vmstat.EV["pgactivate"]
_PGDEACTIVATE = vmstat.EV["pgdeactivate"]
_PGLAZYFREE = vmstat.EV["pglazyfree"]
_PGROTATED = vmstat.EV["pgrotated"]

_LRU = 1 << pf.PG_lru
_ACTIVE = 1 << pf.PG_active
_REFERENCED = 1 << pf.PG_referenced
_UNEVICTABLE = 1 << pf.PG_unevictable
_SWAPBACKED = 1 << pf.PG_swapbacked
_MLOCKED = 1 << pf.PG_mlocked
_WORKINGSET = 1 << pf.PG_workingset
_RECLAIM = 1 << pf.PG_reclaim
_DIRTY = 1 << pf.PG_dirty


class Lruvec:
    """``struct lruvec``: the five lists of one (memcg, node), and the reclaim cost state."""

    ktype = "lruvec"

    def __init__(self, pgdat: Any, memcg: Any) -> None:
        self.pgdat = pgdat
        self.memcg = memcg
        self.lists: list[OrderedDict[int, None]] = [OrderedDict() for _ in range(NR_LRU_LISTS)]
        self.anon_cost = 0
        self.file_cost = 0
        self.nonresident_age = 0  # workingset: evictions + activations
        self.refaults = [0, 0]  # snapshot of workingset_activate_{anon,file}
        self.flags = 0

    def __repr__(self) -> str:
        return f"<lruvec memcg {self.memcg.path} node {self.pgdat.node_id}>"

    def lru_size(self, lru: int) -> int:
        return len(self.lists[lru])


def folio_is_file_lru(flags: int) -> bool:
    return not flags & _SWAPBACKED


def folio_lru_list(flags: int) -> int:
    """Which list a page with these flags belongs on (folio_lru_list)."""
    if flags & _UNEVICTABLE:
        return LRU_UNEVICTABLE
    lru = LRU_INACTIVE_ANON if flags & _SWAPBACKED else LRU_INACTIVE_FILE
    if flags & _ACTIVE:
        lru += 1
    return lru


# filemap / memcontrol import this module: bound on first use (_late_imports)
_AddressSpace: Any = None
_memcontrol: Any = None


def _late_imports() -> None:
    global _AddressSpace, _memcontrol
    from mmdbg.sim.mm import memcontrol
    from mmdbg.sim.mm.filemap import AddressSpace

    _AddressSpace = AddressSpace
    _memcontrol = memcontrol


def folio_kind(m: Any, pfn: int) -> int:
    mp = m.mem_map.mapping.get(pfn)
    if mp is None:
        return KIND_ANON
    if _AddressSpace is None:
        _late_imports()
    if isinstance(mp, _AddressSpace):
        return KIND_SHMEM if mp.host.shmem else KIND_FILE
    return KIND_ANON


def folio_memcg(m: Any, pfn: int) -> Any:
    memcg = m.mem_map.memcg_data.get(pfn)
    return memcg if memcg is not None else m.memcg.root


def folio_lruvec(m: Any, pfn: int) -> Lruvec:
    nid = m.zones[m.zone_of_block[pfn >> PAGEBLOCK_ORDER]].node
    return folio_memcg(m, pfn).lruvecs[nid]


def update_lru_size(m: Any, lruvec: Lruvec, pfn: int, lru: int, kind: int, n: int) -> None:
    lruvec.pgdat.vm_stat[_NR_LRU_BASE + lru] += n
    m.zones[m.zone_of_block[pfn >> PAGEBLOCK_ORDER]].vm_stat[_NR_ZONE_LRU_BASE + lru] += n
    lruvec.memcg.lru_pages[lru] += n
    lruvec.memcg.kind_pages[kind] += n


def lruvec_add_folio(m: Any, lruvec: Lruvec, pfn: int, tail: bool = False) -> None:
    # folio_lru_list, folio_kind and update_lru_size inlined (the fault and reclaim hot path)
    mem_map = m.mem_map
    flags = mem_map.flags
    f = flags[pfn]
    if f & _UNEVICTABLE:
        lru = LRU_UNEVICTABLE
    elif f & _SWAPBACKED:
        lru = LRU_ACTIVE_ANON if f & _ACTIVE else LRU_INACTIVE_ANON
    else:
        lru = LRU_ACTIVE_FILE if f & _ACTIVE else LRU_INACTIVE_FILE
    mp = mem_map.mapping.get(pfn)
    kind = KIND_ANON
    if mp is not None:
        if _AddressSpace is None:
            _late_imports()
        if isinstance(mp, _AddressSpace):
            kind = KIND_SHMEM if mp.host.shmem else KIND_FILE
    lst = lruvec.lists[lru]
    lst[pfn] = None
    if tail:
        lst.move_to_end(pfn, last=False)
    flags[pfn] = f | _LRU
    m.lru_where[pfn] = (lruvec, lru, kind)
    lruvec.pgdat.vm_stat[_NR_LRU_BASE + lru] += 1
    m.zones[m.zone_of_block[pfn >> PAGEBLOCK_ORDER]].vm_stat[_NR_ZONE_LRU_BASE + lru] += 1
    memcg = lruvec.memcg
    memcg.lru_pages[lru] += 1
    memcg.kind_pages[kind] += 1


def lruvec_del_folio(m: Any, pfn: int) -> tuple[Lruvec, int, int] | None:
    w = m.lru_where.pop(pfn, None)
    if w is None:
        return None
    lruvec, lru, kind = w
    del lruvec.lists[lru][pfn]
    m.mem_map.flags[pfn] &= ~_LRU
    # update_lru_size(m, lruvec, pfn, lru, kind, -1), inlined
    lruvec.pgdat.vm_stat[_NR_LRU_BASE + lru] -= 1
    m.zones[m.zone_of_block[pfn >> PAGEBLOCK_ORDER]].vm_stat[_NR_ZONE_LRU_BASE + lru] -= 1
    memcg = lruvec.memcg
    memcg.lru_pages[lru] -= 1
    memcg.kind_pages[kind] -= 1
    return w


def folio_evictable(m: Any, pfn: int) -> bool:
    return not m.mem_map.flags[pfn] & _MLOCKED


# -- adding ---------------------------------------------------------------------------------
@kfunc(aliases=("lru_cache_add", "lru_add_fn", "lru_add"))
def folio_add_lru(folio: int) -> None:
    """Put a new page on its LRU list (inactive, or active if it was recently evicted and
    refaulted with PG_workingset/PG_active set by workingset_refault)."""
    m = current_machine()
    if folio in m.lru_where:
        return
    folio_putback_lru(m, folio)


@kfunc(aliases=("lru_cache_add_inactive_or_unevictable",))
def folio_add_lru_vma(folio: int, vma: Any) -> None:
    """A page mapped into ``vma`` for the first time: mlocked VMAs keep it unevictable."""
    if vma is not None and vma.vm_flags & (VM_LOCKED | VM_SPECIAL) == VM_LOCKED:
        m = current_machine()
        m.mem_map.flags[folio] = (m.mem_map.flags[folio] & ~_ACTIVE) | _UNEVICTABLE
        lruvec_add_folio(m, folio_lruvec(m, folio), folio)
        return
    folio_add_lru(folio)


def folio_release(folio: int) -> None:
    """The last reference is going: off the LRU, uncharged (the vm.hooks.folio_release hook)."""
    m = current_machine()
    if folio in m.lru_where:
        lruvec_del_folio(m, folio)
    mem_map = m.mem_map
    mem_map.flags[folio] &= ~(_ACTIVE | _UNEVICTABLE | _REFERENCED | _WORKINGSET | _RECLAIM)
    if folio in mem_map.memcg_data:
        if _memcontrol is None:
            _late_imports()
        _memcontrol.mem_cgroup_uncharge(folio)


# -- moving between lists ---------------------------------------------------------------------
def _move(m: Any, pfn: int, set_flags: int, clear_flags: int, tail: bool = False) -> None:
    w = lruvec_del_folio(m, pfn)
    flags = m.mem_map.flags
    flags[pfn] = (flags[pfn] | set_flags) & ~clear_flags
    if w is not None:
        lruvec_add_folio(m, w[0], pfn, tail)


@kfunc(aliases=("activate_page", "folio_activate_fn"))
def folio_activate(folio: int) -> None:
    m = current_machine()
    flags = m.mem_map.flags
    f = flags[folio]
    if f & _LRU and not f & (_ACTIVE | _UNEVICTABLE):
        _move(m, folio, _ACTIVE, 0)
        m.vm_events[_PGACTIVATE] += 1
        memcg = folio_memcg(m, folio)
        memcg.count_event("pgactivate", 1)


@kfunc(aliases=("mark_page_accessed",))
def folio_mark_accessed(folio: int) -> None:
    """inactive,unreferenced -> inactive,referenced -> active,unreferenced (the second
    access of a page-cache page activates it)."""
    m = current_machine()
    flags = m.mem_map.flags
    f = flags[folio]
    if not f & _REFERENCED:
        flags[folio] = f | _REFERENCED
    elif f & _UNEVICTABLE:
        pass
    elif not f & _ACTIVE:
        if f & _LRU:
            folio_activate(folio)
        else:
            flags[folio] |= _ACTIVE
        flags[folio] &= ~_REFERENCED
        from mmdbg.sim.mm.workingset import workingset_activation

        workingset_activation(folio)


@kfunc(aliases=("deactivate_page", "lru_deactivate_fn"))
def folio_deactivate(folio: int) -> None:
    """MADV_COLD: move an active page to the inactive list."""
    m = current_machine()
    f = m.mem_map.flags[folio]
    if f & _LRU and f & _ACTIVE and not f & _UNEVICTABLE:
        _move(m, folio, 0, _ACTIVE | _REFERENCED)
        m.vm_events[_PGDEACTIVATE] += 1
        folio_memcg(m, folio).count_event("pgdeactivate", 1)


@kfunc(aliases=("mark_page_lazyfree", "lru_lazyfree_fn"))
def folio_mark_lazyfree(folio: int) -> None:
    """MADV_FREE: a clean anon page moves to the inactive *file* list (no swap needed)."""
    m = current_machine()
    f = m.mem_map.flags[folio]
    if f & _LRU and not f & _UNEVICTABLE:
        _move(m, folio, 0, _ACTIVE | _REFERENCED | _SWAPBACKED)
        folio_memcg(m, folio).count_event("pglazyfree", 1)


def folio_rotate_reclaimable(folio: int) -> None:
    """Writeback finished on a page reclaim wanted: move it to the inactive tail."""
    m = current_machine()
    f = m.mem_map.flags[folio]
    if f & _LRU and not f & (_ACTIVE | _UNEVICTABLE):
        _move(m, folio, 0, _RECLAIM, tail=True)
        m.vm_events[_PGROTATED] += 1


def folio_putback_lru(m: Any, folio: int) -> None:
    """Re-add an isolated page to the list its flags name (move_folios_to_lru); also the
    body of folio_add_lru: unevictable if mlocked, on its memcg's lruvec of its node."""
    mem_map = m.mem_map
    flags = mem_map.flags
    f = flags[folio]
    if f & _MLOCKED:  # not folio_evictable
        flags[folio] = (f & ~_ACTIVE) | _UNEVICTABLE
    else:
        flags[folio] = f & ~_UNEVICTABLE
    memcg = mem_map.memcg_data.get(folio)  # folio_lruvec, inlined
    if memcg is None:
        memcg = m.memcg.root
    lruvec_add_folio(m, memcg.lruvecs[m.zones[m.zone_of_block[folio >> PAGEBLOCK_ORDER]].node],
                     folio)


@kfunc
def lru_note_cost(lruvec: Lruvec, file: bool, nr_io: int, nr_rotated: int) -> None:
    """Reclaim I/O and rotations make a list "expensive" (get_scan_count balances on it)."""
    cost = nr_io * 32 + nr_rotated
    while lruvec is not None:
        if file:
            lruvec.file_cost += cost
        else:
            lruvec.anon_cost += cost
        lrusize = sum(len(lst) for lst in lruvec.lists[:4])
        if lruvec.file_cost + lruvec.anon_cost > lrusize // 4:
            lruvec.file_cost //= 2
            lruvec.anon_cost //= 2
        parent = lruvec.memcg.parent
        lruvec = parent.lruvecs[lruvec.pgdat.node_id] if parent is not None else None


def lru_note_cost_refault(m: Any, folio: int) -> None:
    w = m.lru_where.get(folio)
    lruvec = w[0] if w is not None else folio_lruvec(m, folio)
    lru_note_cost(lruvec, folio_is_file_lru(m.mem_map.flags[folio]), 1, 0)


_ = _DIRTY
