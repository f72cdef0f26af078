"""CONFIG_DEBUG_VM for reclaim, swap and memcg (registered with ``register_check``).

* LRU: every page on a list is allocated, has PG_lru, is on the list its flags and memcg name,
  and each node/zone/memcg list counter equals a recount; no page has PG_lru off the lists;
* swap: each slot's count equals the swap PTEs naming it, SWAP_HAS_CACHE agrees with the swap
  cache, ``inuse_pages``/``nr_swap_pages``/``nr_swapcached`` equal recounts;
* memcg: each cgroup's ``memory.current`` equals the pages charged to its subtree
  (``memcg_data``, ``__GFP_ACCOUNT`` pages and the slab objcg pages; each objcg's pages hold
  its live objects plus its byte stock; ``kernel`` equals the kmem charged) and
  ``memory.swap.current`` the swap slots charged to it.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.mm.swap import NR_LRU_LISTS, folio_lru_list

_LRU = 1 << pf.PG_lru


@register_check
def check_lru(m: Any) -> None:
    where = getattr(m, "lru_where", None)
    if where is None:
        return
    mem_map = m.mem_map
    fl = mem_map.flags
    node_cnt = [[0] * NR_LRU_LISTS for _ in m.node_data]
    zone_cnt: dict[int, list[int]] = {}
    seen = 0
    for cg in m.memcg.root.subtree():
        cnt = [0] * NR_LRU_LISTS
        for lv in cg.lruvecs:
            for lru, lst in enumerate(lv.lists):
                for pfn in lst:
                    seen += 1
                    w = where.get(pfn)
                    assert w is not None and w[0] is lv and w[1] == lru, \
                        f"LRU pfn {pfn:#x}: lru_where disagrees with {lv!r} list {lru}"
                    assert fl[pfn] & _LRU, f"LRU pfn {pfn:#x} without PG_lru"
                    assert mem_map._refcount[pfn] > 0, f"LRU pfn {pfn:#x} has refcount 0"
                    assert folio_lru_list(fl[pfn]) == lru, \
                        f"LRU pfn {pfn:#x}: flags say list {folio_lru_list(fl[pfn])}, on {lru}"
                    owner = mem_map.memcg_data.get(pfn) or m.memcg.root
                    assert owner is cg, f"LRU pfn {pfn:#x} on {cg.path}, charged to {owner.path}"
                    z = m.pfn_zone(pfn)
                    assert z.node == lv.pgdat.node_id, f"LRU pfn {pfn:#x} on the wrong node"
                    node_cnt[z.node][lru] += 1
                    zone_cnt.setdefault(id(z), [0] * NR_LRU_LISTS)[lru] += 1
                    cnt[lru] += 1
        assert cnt == cg.lru_pages, f"memcg {cg.path}: lru sizes {cg.lru_pages} != {cnt}"
    assert seen == len(where), f"lru_where has {len(where)} pages, lists hold {seen}"
    base = vmstat.NS["nr_inactive_anon"]
    for pgdat in m.node_data:
        got = pgdat.vm_stat[base:base + NR_LRU_LISTS]
        assert list(got) == node_cnt[pgdat.node_id], \
            f"node {pgdat.node_id} LRU counters {list(got)} != recount {node_cnt[pgdat.node_id]}"
    zb = vmstat.ZS["nr_zone_inactive_anon"]
    for z in m.zones:
        got = list(z.vm_stat[zb:zb + NR_LRU_LISTS])
        assert got == zone_cnt.get(id(z), [0] * NR_LRU_LISTS), \
            f"zone {z.name} node {z.node} LRU counters {got} != recount"
    stray = [i for i, f in enumerate(fl) if f & _LRU and i not in where]
    assert not stray, f"pfn {stray[0]:#x} has PG_lru but is on no list"


@register_check
def check_swap(m: Any) -> None:
    from mmdbg.sim.mm.swapfile import swap_slots_of_pte_check

    swap_slots_of_pte_check(m)


@register_check
def check_memcg(m: Any) -> None:
    mg = getattr(m, "memcg", None)
    if mg is None:
        return
    local: dict[int, int] = {}
    kmem: dict[int, int] = {}
    data = m.mem_map.memcg_data
    for cg in data.values():
        if hasattr(cg, "lruvecs"):
            local[id(cg)] = local.get(id(cg), 0) + 1
    for pfn, nr in mg.kmem_pages.items():  # __GFP_ACCOUNT pages
        objcg = data.get(pfn)
        assert getattr(objcg, "is_objcg", False), f"kmem pfn {pfn:#x} without its objcg"
        assert m.mem_map._refcount[pfn] > 0, f"kmem pfn {pfn:#x} charged but free"
        kmem[id(objcg.memcg)] = kmem.get(id(objcg.memcg), 0) + nr
    live: dict[int, int] = {}
    for objcg, size, _ in mg.obj_exts.values():
        live[id(objcg)] = live.get(id(objcg), 0) + size
    for objcg in mg.objcgs:  # slab: the pages charged hold the live objects and the stock
        assert objcg.nr_pages * 4096 == objcg.stock + live.get(id(objcg), 0), \
            f"{objcg!r}: {objcg.nr_pages} pages != {objcg.stock} stock + live objects"
        kmem[id(objcg.memcg)] = kmem.get(id(objcg.memcg), 0) + objcg.nr_pages
    for cg in mg.root.subtree():
        assert cg.kernel_pages == kmem.get(id(cg), 0), \
            f"memcg {cg.path}: kernel {cg.kernel_pages} pages != {kmem.get(id(cg), 0)} charged"
        local[id(cg)] = local.get(id(cg), 0) + kmem.get(id(cg), 0)
    swap_local: dict[int, int] = {}
    for cg in mg.swap_cgroup.values():
        swap_local[id(cg)] = swap_local.get(id(cg), 0) + 1

    def rec(cg: Any) -> tuple[int, int]:
        mem = local.get(id(cg), 0)
        sw = swap_local.get(id(cg), 0)
        for c in cg.children:
            a, b = rec(c)
            mem += a
            sw += b
        if not cg.is_root():
            assert cg.memory.usage == mem, \
                f"memcg {cg.path}: memory.current {cg.memory.usage} pages != {mem} charged"
            assert cg.swap.usage == sw, \
                f"memcg {cg.path}: swap.current {cg.swap.usage} pages != {sw} slots"
        return mem, sw

    rec(mg.root)
