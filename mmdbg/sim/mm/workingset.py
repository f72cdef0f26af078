"""Workingset detection (mm/workingset.c): shadow entries and refault distances.

When reclaim evicts a page-cache or swap-cache page it leaves a *shadow entry* where the page
was (the file's ``address_space.shadows`` or the swap slot): the memcg, the node, the lruvec's
``nonresident_age`` at eviction, and whether the page was part of the workingset.  When the
page is faulted back in, the *refault distance* -- how many evictions and activations
happened meanwhile -- is compared with the workingset size the lruvec could have given it
(``workingset_test_recent``).  A short distance means the page would have stayed in memory
with a little more room: it starts on the active list (``workingset_activate_*``), and if it
was workingset before, counts as a restore (``workingset_restore_*``) and makes that LRU type
more expensive to reclaim.  Every refault with a shadow counts ``workingset_refault_*``.

Simplification: the shadow is a Python tuple rather than a packed xarray value, and the
shadow-node shrinker (``workingset_nodes``) is not modelled.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.swap import (
    LRU_ACTIVE_ANON,
    LRU_ACTIVE_FILE,
    LRU_INACTIVE_ANON,
    LRU_INACTIVE_FILE,
    folio_lruvec,
    lru_note_cost_refault,
)
from mmdbg.sim.trace import current_machine, kfunc

_WS = 1 << pf.PG_workingset
_ACTIVE = 1 << pf.PG_active
_SWAPBACKED = 1 << pf.PG_swapbacked
_NS = vmstat.NS


def workingset_age_nonresident(lruvec: Any, nr_pages: int) -> None:
    while lruvec is not None:
        lruvec.nonresident_age += nr_pages
        parent = lruvec.memcg.parent
        lruvec = parent.lruvecs[lruvec.pgdat.node_id] if parent is not None else None


@kfunc
def workingset_eviction(folio: int, target_memcg: Any) -> tuple:
    """Age the lruvec and return the shadow to store in place of the evicted page."""
    m = current_machine()
    lruvec = folio_lruvec(m, folio)
    workingset_age_nonresident(lruvec, 1)
    return (lruvec.memcg.id, lruvec.pgdat.node_id, lruvec.nonresident_age,
            bool(m.mem_map.flags[folio] & _WS))


def _lruvec_of_shadow(m: Any, shadow: tuple) -> Any:
    memcg_id, nid, _, _ = shadow
    for cg in m.memcg.root.subtree():
        if cg.id == memcg_id:
            return cg.lruvecs[nid]
    return m.memcg.root.lruvecs[nid]


def _lru_size(lruvec: Any, lru: int) -> int:
    """Hierarchical list size (lruvec_page_state of a memcg lruvec includes children)."""
    memcg = lruvec.memcg
    nid = lruvec.pgdat.node_id
    if memcg.is_root():
        return lruvec.pgdat.vm_stat[_NS["nr_inactive_anon"] + lru]
    return sum(len(c.lruvecs[nid].lists[lru]) for c in memcg.subtree())


def workingset_test_recent(m: Any, shadow: tuple, file: bool) -> tuple[bool, bool]:
    """(recent, workingset): would the page have stayed with a little more memory?"""
    from mmdbg.sim.mm.memcontrol import mem_cgroup_get_nr_swap_pages

    lruvec = _lruvec_of_shadow(m, shadow)
    eviction = shadow[2]
    refault_distance = lruvec.nonresident_age - eviction
    size = _lru_size(lruvec, LRU_ACTIVE_FILE)
    if not file:
        size += _lru_size(lruvec, LRU_INACTIVE_FILE)
    if mem_cgroup_get_nr_swap_pages(m, lruvec.memcg) > 0:
        size += _lru_size(lruvec, LRU_ACTIVE_ANON)
        if file:
            size += _lru_size(lruvec, LRU_INACTIVE_ANON)
    return refault_distance <= size, shadow[3]


def _count(m: Any, lruvec: Any, name: str) -> None:
    lruvec.pgdat.vm_stat[_NS[name]] += 1
    lruvec.memcg.count_event(name, 1)


@kfunc
def workingset_refault(folio: int, shadow: tuple) -> None:
    """A page comes back (page cache add or swap-in) where a shadow was: maybe activate it."""
    m = current_machine()
    flags = m.mem_map.flags
    file = not flags[folio] & _SWAPBACKED
    kind = "file" if file else "anon"
    lruvec = folio_lruvec(m, folio)
    _count(m, lruvec, f"workingset_refault_{kind}")
    recent, workingset = workingset_test_recent(m, shadow, file)
    if not recent:
        return
    flags[folio] |= _ACTIVE
    workingset_age_nonresident(lruvec, 1)
    _count(m, lruvec, f"workingset_activate_{kind}")
    if workingset:
        flags[folio] |= _WS
        lru_note_cost_refault(m, folio)
        _count(m, lruvec, f"workingset_restore_{kind}")


@kfunc
def workingset_activation(folio: int) -> None:
    """folio_mark_accessed activated a page: that ages the lruvec too."""
    m = current_machine()
    if folio in m.lru_where:
        workingset_age_nonresident(m.lru_where[folio][0], 1)


_ = LRU_INACTIVE_ANON
