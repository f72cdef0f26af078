"""mm/slob.c (removed in 6.4): the SLOB allocator, selected at boot with ``slab=slob``.

Modelled after v6.3:

* memory is handed out in ``SLOB_UNIT``s (2 bytes: ``sizeof(slob_t)`` with 4 KiB pages) from
  single pages shared by *all* caches; each page keeps an address-ordered chain of free blocks
  and the count of its free units (``sp->units``);
* three lists of partially free pages: ``free_slob_small`` (requests < 256 bytes),
  ``free_slob_medium`` (< 1024) and ``free_slob_large``; ``slob_alloc`` walks the list
  *first-fit* (``slob_page_alloc`` splits the first block big enough, honouring alignment),
  rotates the list so the next search starts at the page that satisfied this one, and takes a
  new page from the buddy allocator when no page fits;
* ``slob_free`` puts the block back into its page's chain, coalescing with its neighbours; a
  page whose last block is freed goes back to the buddy allocator; a full page that gets a
  block back joins the list for that block's size;
* ``kmalloc`` prefixes each block with an 8-byte header holding the requested size (``kfree``
  and ``ksize`` read it back from memory); requests of ``PAGE_SIZE - 8`` bytes or more, and
  cache objects of ``PAGE_SIZE`` or more, come straight from the page allocator;
* all SLOB pages count as ``nr_slab_unreclaimable`` (SLOB had no reclaimable accounting).

SLOB has no per-cache slabs, no /proc/slabinfo and no /sys/kernel/slab.  ``kmem_cache_shrink``
does nothing (pages go back as soon as they are empty).  Simplified: the free chain lives in
Python lists (the ``slob_t`` words are not written into the free blocks); freeing a block that
is not allocated is reported (``kfree: invalid pointer``) instead of corrupting the chain;
``SLAB_TYPESAFE_BY_RCU`` objects are freed at once.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.include.gfp import __GFP_COMP, __GFP_ZERO, GFP_KERNEL
from mmdbg.sim.mm import page_alloc, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE
from mmdbg.sim.mm.slab import (
    ALIGN,
    NUMA_NO_NODE,
    SLAB_PANIC,
    SLAB_TYPESAFE_BY_RCU,
    KmemCache,
    get_order,
)
from mmdbg.sim.trace import kfunc

SLOB_UNIT = 2
SLOB_BREAK1 = 256
SLOB_BREAK2 = 1024
SLOB_MINALIGN = 8  # max(ARCH_KMALLOC_MINALIGN, ARCH_SLAB_MINALIGN)
SLOB_RCU_SIZE = 24  # sizeof(struct slob_rcu)
NR_SLAB_UNRECLAIMABLE = vmstat.NS["nr_slab_unreclaimable"]
SLAB_MAPCOUNT = pf.PAGE_SLAB_MAPCOUNT_VALUE


def SLOB_UNITS(size: int) -> int:
    return (size + SLOB_UNIT - 1) // SLOB_UNIT


UNITS_PER_PAGE = SLOB_UNITS(PAGE_SIZE)


class SlobPage:
    """A SLOB page (``struct slab`` of mm/slob.c): ``units`` free, ``free`` the chain of
    ``[offset_in_units, units]`` blocks in address order, ``lst`` the list it is on."""

    __slots__ = ("free", "lst", "node", "pfn", "units")
    ktype = "slab"

    def __init__(self, pfn: int, node: int) -> None:
        self.pfn = pfn
        self.node = node
        self.units = UNITS_PER_PAGE
        self.free: list[list[int]] = [[0, UNITS_PER_PAGE]]
        self.lst: list[SlobPage] | None = None

    @property
    def base(self) -> int:
        return PAGE_OFFSET + (self.pfn << PAGE_SHIFT)


class SlobState:
    """The allocator's globals (the cache registry slab_common reads, and SLOB's lists)."""

    def __init__(self) -> None:
        self.slab_caches: list[KmemCache] = []
        self.by_name: dict[str, KmemCache] = {}
        self.kmalloc_caches: list[list[KmemCache | None]] = []
        self.shrinkers: list[Any] = []
        self.state = "DOWN"
        self.kmem_cache: KmemCache | None = None
        self.slab_merge = False
        self.free_slob_small: list[SlobPage] = []
        self.free_slob_medium: list[SlobPage] = []
        self.free_slob_large: list[SlobPage] = []
        self.pages: dict[int, SlobPage] = {}
        self.big: dict[int, int] = {}        # pfn -> order: page-allocator objects
        self.live: dict[int, int] = {}       # block address -> units (allocated blocks)


def _list_for(st: SlobState, size: int) -> list[SlobPage]:
    if size < SLOB_BREAK1:
        return st.free_slob_small
    if size < SLOB_BREAK2:
        return st.free_slob_medium
    return st.free_slob_large


@kfunc
def slob_new_pages(gfp: int, order: int, node: int) -> int:
    """Pages for SLOB (counted as unreclaimable slab); 0 on failure."""
    m = _trace._current
    pfn = page_alloc.alloc_pages(gfp, order) if node == NUMA_NO_NODE else \
        page_alloc.alloc_pages_node(node, gfp, order)
    if pfn is None:
        return 0
    m.node_data[m.pfn_zone(pfn).node].vm_stat[NR_SLAB_UNRECLAIMABLE] += 1 << order
    pm = m.physmem
    pages = pm.pages
    for p in range(pfn, pfn + (1 << order)):
        if p not in pages:
            pm.new_page(p)
    return PAGE_OFFSET + (pfn << PAGE_SHIFT)


@kfunc
def slob_free_pages(b: int, order: int) -> None:
    m = _trace._current
    pfn = (b - PAGE_OFFSET) >> PAGE_SHIFT
    m.node_data[m.pfn_zone(pfn).node].vm_stat[NR_SLAB_UNRECLAIMABLE] -= 1 << order
    page_alloc.__free_pages(pfn, order)


@kfunc
def slob_page_alloc(sp: SlobPage, size: int, align: int, align_offset: int) -> tuple[int, bool]:
    """First fit inside one page: (block, page_removed_from_list) or (0, False)."""
    units = SLOB_UNITS(size)
    base = sp.base
    for i, (off, avail) in enumerate(sp.free):
        cur = base + off * SLOB_UNIT
        delta = 0
        if align:
            delta = (ALIGN(cur + align_offset, align) - align_offset - cur) // SLOB_UNIT
        if avail < units + delta:
            continue
        if delta:  # leave the unaligned head as a free block of its own
            sp.free[i] = [off, delta]
            i += 1
            off += delta
            avail -= delta
            sp.free.insert(i, [off, avail])
        if avail == units:
            del sp.free[i]
        else:
            sp.free[i] = [off + units, avail - units]
        sp.units -= units
        removed = False
        if not sp.units:
            sp.lst.remove(sp)
            sp.lst = None
            removed = True
        return base + off * SLOB_UNIT, removed
    return 0, False


@kfunc
def slob_alloc(size: int, gfp: int, align: int, node: int, align_offset: int) -> int:
    m = _trace._current
    st = m.slub
    lst = _list_for(st, size)
    units = SLOB_UNITS(size)
    b = 0
    for idx, sp in enumerate(lst):
        if node != NUMA_NO_NODE and sp.node != node:
            continue
        if sp.units < units:
            continue
        b, removed = slob_page_alloc(sp, size, align, align_offset)
        if not b:
            continue
        if not removed and idx:
            lst[:] = lst[idx:] + lst[:idx]  # list_rotate_to_front: next search starts here
        break
    if not b:
        addr = slob_new_pages(gfp & ~__GFP_ZERO, 0, node)
        if not addr:
            return 0
        pfn = (addr - PAGE_OFFSET) >> PAGE_SHIFT
        m.mem_map._mapcount[pfn] = SLAB_MAPCOUNT  # __folio_set_slab
        sp = SlobPage(pfn, m.pfn_zone(pfn).node)
        st.pages[pfn] = sp
        sp.lst = lst
        lst.insert(0, sp)
        b, _removed = slob_page_alloc(sp, size, align, align_offset)
    st.live[b] = units
    if gfp & __GFP_ZERO:
        m.physmem.write(b - PAGE_OFFSET, bytes(size))
    return b


@kfunc
def slob_free(block: int, size: int) -> None:
    m = _trace._current
    st = m.slub
    pfn = (block - PAGE_OFFSET) >> PAGE_SHIFT
    sp = st.pages[pfn]
    units = SLOB_UNITS(size)
    st.live.pop(block, None)
    off = (block & (PAGE_SIZE - 1)) // SLOB_UNIT
    if sp.units + units == UNITS_PER_PAGE:  # the page is free again
        if sp.lst is not None:
            sp.lst.remove(sp)
        del st.pages[pfn]
        m.mem_map._mapcount[pfn] = -1  # __folio_clear_slab
        slob_free_pages(sp.base, 0)
        return
    if sp.lst is None:  # a full page becomes partially free
        sp.units = units
        sp.free = [[off, units]]
        sp.lst = _list_for(st, size)
        sp.lst.insert(0, sp)
        return
    sp.units += units
    fl = sp.free
    i = 0
    while i < len(fl) and fl[i][0] < off:
        i += 1
    fl.insert(i, [off, units])
    if i + 1 < len(fl) and off + units == fl[i + 1][0]:  # merge with the next block
        fl[i][1] += fl.pop(i + 1)[1]
    if i and fl[i - 1][0] + fl[i - 1][1] == off:          # and with the previous one
        fl[i - 1][1] += fl.pop(i)[1]


# ---------------------------------------------------------------------------------------
# The backend interface slab_common dispatches to


def create_cache(m: Any, name: str, size: int, align: int, flags: int, ctor: Any) -> KmemCache:
    from mmdbg.sim.mm.slab_common import calculate_alignment

    st = m.slub
    s = KmemCache(name, size)
    s.flags = flags & ~SLAB_PANIC
    if flags & SLAB_TYPESAFE_BY_RCU:
        s.size += SLOB_RCU_SIZE
    s.align = calculate_alignment(flags, align, size)
    s.ctor = ctor
    s.machine = m
    st.slab_caches.append(s)
    st.by_name[name] = s
    if st.state == "FULL":
        s.addr = cache_alloc(st.kmem_cache, GFP_KERNEL, NUMA_NO_NODE)
    return s


def destroy_cache(m: Any, s: KmemCache) -> bool:
    return True  # SLOB does not know which objects belong to which cache


def shrink_cache(s: KmemCache) -> int:
    return 0


def cache_alloc(s: KmemCache, flags: int, node: int) -> int:
    """slob_alloc_node()"""
    m = s.machine
    if s.size < PAGE_SIZE:
        b = slob_alloc(s.size, flags, s.align, node, 0)
    else:
        order = get_order(s.size)
        b = slob_new_pages(flags | (__GFP_COMP if order else 0), order, node)
        if b:
            m.slub.big[(b - PAGE_OFFSET) >> PAGE_SHIFT] = order
            if flags & __GFP_ZERO:
                m.physmem.write(b - PAGE_OFFSET, bytes(s.size))
    if b and s.ctor is not None:
        s.ctor(b)
    return b


def _invalid(m: Any, fn: str, x: int) -> None:
    m.printk(f"{fn}: invalid pointer 0x{x:016x}", level=3)
    m.warn_on()


def cache_free(s: KmemCache, x: int) -> None:
    """kmem_cache_free() -> __kmem_cache_free(b, c->size)"""
    m = s.machine
    st = m.slub
    pfn = (x - PAGE_OFFSET) >> PAGE_SHIFT
    if s.size < PAGE_SIZE:
        if x not in st.live or pfn not in st.pages or st.live[x] != SLOB_UNITS(s.size):
            _invalid(m, "kmem_cache_free", x)
            return
        slob_free(x, s.size)
    else:
        order = st.big.get(pfn)
        if order is None or x & (PAGE_SIZE - 1):
            _invalid(m, "kmem_cache_free", x)
            return
        del st.big[pfn]
        slob_free_pages(x, order)


def do_kmalloc(m: Any, size: int, flags: int, node: int) -> tuple[int, int]:
    """__do_kmalloc_node(): (object, bytes_alloc)."""
    if size < PAGE_SIZE - SLOB_MINALIGN:
        align = SLOB_MINALIGN
        if not size & (size - 1):
            align = max(align, size)
        b = slob_alloc(size + SLOB_MINALIGN, flags, align, node, SLOB_MINALIGN)
        if not b:
            return 0, 0
        m.physmem.write(b - PAGE_OFFSET, size.to_bytes(4, "little"))
        return b + SLOB_MINALIGN, size
    order = get_order(size)
    if order > 10:
        m.warn_on()
        return 0, 0
    b = slob_new_pages(flags | (__GFP_COMP if order else 0), order, node)
    if b:
        m.slub.big[(b - PAGE_OFFSET) >> PAGE_SHIFT] = order
        if flags & __GFP_ZERO:
            m.physmem.write(b - PAGE_OFFSET, bytes(size))
    return b, PAGE_SIZE << order


def do_kfree(m: Any, x: int) -> bool:
    st = m.slub
    pfn = (x - PAGE_OFFSET) >> PAGE_SHIFT
    if pfn in st.pages:
        b = x - SLOB_MINALIGN
        if b not in st.live:
            return False
        size = int.from_bytes(m.physmem.read(b - PAGE_OFFSET, 4), "little")
        slob_free(b, size + SLOB_MINALIGN)
        return True
    order = st.big.get(pfn)
    if order is None or x & (PAGE_SIZE - 1):
        return False
    del st.big[pfn]
    slob_free_pages(x, order)
    return True


def do_ksize(m: Any, x: int) -> int:
    st = m.slub
    pfn = (x - PAGE_OFFSET) >> PAGE_SHIFT
    if pfn in st.pages:
        if x - SLOB_MINALIGN not in st.live:
            return 0
        size = int.from_bytes(m.physmem.read(x - SLOB_MINALIGN - PAGE_OFFSET, 4), "little")
        return SLOB_UNITS(size) * SLOB_UNIT
    order = st.big.get(pfn)
    return PAGE_SIZE << order if order is not None else 0


def kmem_cache_init(m: Any, boot_caches: list[tuple[str, int, int, int]],
                    static_base: int) -> None:
    st = m.slub = SlobState()
    m.slab_pages = {}
    st.kmem_cache = create_cache(m, "kmem_cache", 256, 64, 0, None)
    st.state = "UP"
    for name, size, align, flags in boot_caches:
        create_cache(m, name, size, align, flags, None)
    for i, s in enumerate(st.slab_caches):
        s.addr = static_base + i * 0x100
    st.state = "FULL"


def slabinfo_lines(m: Any) -> list[str]:
    raise KernelError(2, "No such file or directory")  # SLOB has no /proc/slabinfo


def stats(m: Any) -> dict[str, int]:
    """Pages, free bytes inside them and allocated blocks (for the comparison bench)."""
    st = m.slub
    return {"pages": len(st.pages) + sum(1 << o for o in st.big.values()),
            "free_bytes": sum(sp.units for sp in st.pages.values()) * SLOB_UNIT,
            "blocks": len(st.live)}


@register_check
def check_slob(m: Any) -> None:
    """register_check: each page's free chain is ordered, in bounds, sums to ``sp->units``
    and does not overlap an allocated block; list membership matches; page counts agree."""
    st = getattr(m, "slub", None)
    if not isinstance(st, SlobState):
        return
    per_page: dict[int, list[tuple[int, int]]] = {}
    for b, units in st.live.items():
        per_page.setdefault((b - PAGE_OFFSET) >> PAGE_SHIFT, []).append(
            ((b & (PAGE_SIZE - 1)) // SLOB_UNIT, units))
    for lname in ("free_slob_small", "free_slob_medium", "free_slob_large"):
        lst = getattr(st, lname)
        for sp in lst:
            assert sp.lst is lst and sp.units > 0, f"slob page {sp.pfn:#x} on {lname} wrongly"
            assert st.pages.get(sp.pfn) is sp
    for pfn, sp in st.pages.items():
        assert m.mem_map._mapcount[pfn] == SLAB_MAPCOUNT, f"slob pfn {pfn:#x} not PGTY_slab"
        assert (sp.lst is None) == (sp.units == 0), f"slob page {pfn:#x} list state"
        blocks = sorted([(o, u, "free") for o, u in sp.free]
                        + [(o, u, "used") for o, u in per_page.get(pfn, [])])
        end = 0
        for o, u, _what in blocks:
            assert o >= end and u > 0, f"slob page {pfn:#x}: blocks overlap at unit {o}"
            end = o + u
        assert end <= UNITS_PER_PAGE
        assert sum(u for _o, u in sp.free) == sp.units, f"slob page {pfn:#x}: units mismatch"
    assert set(per_page) <= set(st.pages), "allocated SLOB block outside a SLOB page"
    per_node = [0] * len(m.node_data)
    for pfn in st.pages:
        per_node[m.pfn_zone(pfn).node] += 1
    for pfn, order in st.big.items():
        per_node[m.pfn_zone(pfn).node] += 1 << order
    for pgdat in m.node_data:
        assert pgdat.vm_stat[NR_SLAB_UNRECLAIMABLE] == per_node[pgdat.node_id], \
            "nr_slab_unreclaimable mismatch"
