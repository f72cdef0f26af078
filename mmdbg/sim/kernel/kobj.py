"""Kernel objects by address: what a ``struct TYPE *`` pointer points at.

Probes (``((struct task_struct *)arg0)->comm``), ``struct TYPE ADDR`` and ``kmem ADDR`` need
the object a simulated kernel address designates.  ``struct page`` addresses are computed
(``vmemmap + pfn * 64``); every other object that has an ``addr`` (tasks, ``mm_struct``,
``vm_area_struct``, ``anon_vma``, ``address_space``, slab caches, memory cgroups, zones,
nodes) is found through an index of the objects reachable from the machine's globals,
rebuilt when an address is not in it.  Addresses are never reused by the simulation's
object allocator, so an index entry can be stale only for a freed object -- which is what
dereferencing a dangling pointer reads in the kernel too.

:func:`kobj` raises ``LookupError`` naming what is (or is not) at the address.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, STRUCT_PAGE_SIZE

VMEMMAP_START = 0xFFFFEA0000000000
# pg_data_t / struct zone addresses when the objects carry none (shell/kaddr.py agrees)
PGDAT_BELOW_NODE_END = 0x2C000
SIZEOF_ZONE = 0x6C0

_ALIASES = {"folio": "page", "pg_data_t": "pglist_data", "pglist": "pglist_data",
            "task": "task_struct", "mm": "mm_struct", "vma": "vm_area_struct",
            "memcg": "mem_cgroup"}


def pgdat_addr(pgdat: Any) -> int:
    a = getattr(pgdat, "addr", None)
    if isinstance(a, int) and a:
        return a
    end_pfn = pgdat.node_start_pfn + pgdat.node_spanned_pages
    return PAGE_OFFSET + (end_pfn << PAGE_SHIFT) - PGDAT_BELOW_NODE_END


def zone_addr(zone: Any) -> int:
    a = getattr(zone, "addr", None)
    if isinstance(a, int) and a:
        return a
    return pgdat_addr(zone.zone_pgdat) + zone.zone_idx * SIZEOF_ZONE


def _objects(m: Any) -> Iterator[tuple[int, Any]]:
    """(address, object) of everything addressable reachable from the machine."""
    for pgdat in getattr(m, "node_data", ()):
        yield pgdat_addr(pgdat), pgdat
    for z in getattr(m, "zones", ()):
        yield zone_addr(z), z
    tasks = list(getattr(m, "idle_tasks", ())) + list(getattr(m, "tasks", {}).values())
    for t in tasks:
        yield getattr(t, "addr", 0), t
        mm = getattr(t, "mm", None)
        if mm is None:
            continue
        yield getattr(mm, "addr", 0), mm
        mt = getattr(mm, "mm_mt", None)
        for v in list(getattr(mt, "vmas", ()) or ()):
            yield getattr(v, "addr", 0), v
            av = getattr(v, "anon_vma", None)
            if av is not None:
                yield getattr(av, "addr", 0), av
            f = getattr(v, "vm_file", None)
            mapping = getattr(f, "f_mapping", None) or getattr(f, "mapping", None)
            if mapping is not None:
                yield getattr(mapping, "addr", 0), mapping
    slub = getattr(m, "slub", None)
    for s in list(getattr(slub, "slab_caches", ()) or ()):
        yield getattr(s, "addr", 0), s
    memcg = getattr(m, "memcg", None)
    stack = [getattr(memcg, "root", None)]
    while stack:
        cg = stack.pop()
        if cg is None:
            continue
        yield getattr(cg, "addr", 0), cg
        stack.extend(getattr(cg, "children", ()) or ())


def _index(m: Any, rebuild: bool) -> dict[int, Any]:
    idx = getattr(m, "_kobj_index", None)
    if idx is None or rebuild:
        idx = {}
        for a, obj in _objects(m):
            if isinstance(a, int) and a:
                idx.setdefault(a, obj)
        m._kobj_index = idx
    return idx


def ktype_of(obj: Any) -> str:
    return getattr(type(obj), "ktype", "") or type(obj).__name__


def kobj(m: Any, struct: str, addr: int) -> Any:
    """The object of kernel type ``struct`` (``"task_struct"``, ``"struct page"`` ...) at
    ``addr``; LookupError when there is none."""
    name = struct.strip()
    if name.startswith("struct "):
        name = name[7:].strip()
    name = _ALIASES.get(name, name)
    addr = int(addr)
    if VMEMMAP_START <= addr < VMEMMAP_START + (1 << 40):
        pfn, off = divmod(addr - VMEMMAP_START, STRUCT_PAGE_SIZE)
        if name not in ("page", "") or off:
            raise LookupError(f"0x{addr:x} is in the vmemmap (struct page of pfn {pfn:#x}"
                              f"{f' + {off}' if off else ''}), not a {name}")
        if not m.pfn_valid(pfn):
            raise LookupError(f"pfn {pfn:#x} is beyond the memory map")
        return m.page(pfn)
    obj = _index(m, False).get(addr)
    if obj is None:
        obj = _index(m, True).get(addr)
    if obj is None:
        raise LookupError(f"no {name or 'kernel object'} at 0x{addr:x}")
    if name and ktype_of(obj) != name:
        raise LookupError(f"0x{addr:x} is a {ktype_of(obj)}, not a {name}")
    return obj
