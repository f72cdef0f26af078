"""mm/slab.c (removed in 6.8): the SLAB allocator, selected at boot with ``slab=slab``.

Modelled after v6.4:

* per-CPU *array caches* (``struct array_cache``: ``avail``, ``limit``, ``batchcount``,
  ``touched``, ``entry[]``): ``____cache_alloc`` pops ``ac->entry[--ac->avail]``, ``___cache_free``
  pushes ``ac->entry[ac->avail++]`` or first calls ``cache_flusharray`` (``batchcount`` objects
  to the node's shared array, else back to their slabs with ``free_block``);
* ``cache_alloc_refill``: up to ``batchcount`` objects (16 while the array is untouched) from
  the node's shared array, else from ``slabs_partial`` then ``slabs_free``, else
  ``cache_grow_begin`` (a new slab from the buddy allocator, with the next *colour* offset);
* per-node ``struct kmem_cache_node``: ``slabs_partial``/``slabs_full``/``slabs_free``,
  ``free_objects``, ``free_limit`` (free slabs beyond it go back to the buddy allocator),
  the shared array (``limit = sharedfactor * batchcount``) and, with more than one node, the
  *alien* caches (a free of a remote node's object goes to ``alien[node]``, 12 entries, drained
  to that node's shared array or slabs when full);
* ``enable_cpucache`` sizing (limit 120/54/24/8/1 by object size, batchcount (limit+1)/2,
  sharedfactor 8 on SMP), tunable by writing ``NAME LIMIT BATCHCOUNT SHARED`` to
  /proc/slabinfo; ``cache_reap`` (the kernel's 2 s work) drains untouched arrays and trims the
  free slabs when called;
* geometry: ``calculate_slab_order`` with the freelist index array on the slab (1 byte per
  object), or inside a free object (OBJFREELIST_SLAB); colour = left-over / cache line;
* kmalloc caches ``kmalloc-32`` ... ``kmalloc-4M`` (KMALLOC_SHIFT_LOW 5, KMALLOC_SHIFT_HIGH 22
  with 4 KiB pages), plus 96 and 192; there is no large-kmalloc path below 4 MiB.

Simplified: the freelist index array is not written into the slab's bytes (the slab's free
objects are a Python list, the last element being the next one handed out); no OFF_SLAB
management (the index array is always on the slab or in an object); no DEBUG_SLAB, no
KASAN/KFENCE/kmemleak (refused at boot with ``slab=slab``), no memcg accounting.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.include.gfp import (
    __GFP_ACCOUNT,
    __GFP_COMP,
    __GFP_DMA,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_KERNEL,
)
from mmdbg.sim.mm import page_alloc, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE
from mmdbg.sim.mm.slab import (
    ALIGN,
    NUMA_NO_NODE,
    ON_FULL,
    ON_NONE,
    ON_PARTIAL,
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_HWCACHE_ALIGN,
    SLAB_KMALLOC,
    SLAB_PANIC,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_TYPESAFE_BY_RCU,
    KmemCache,
    KmemCacheNode,
    Slab,
    cache_line_size,
)
from mmdbg.sim.trace import kfunc

NR_SLAB_RECLAIMABLE = vmstat.NS["nr_slab_reclaimable"]
NR_SLAB_UNRECLAIMABLE = vmstat.NS["nr_slab_unreclaimable"]
SLAB_MAPCOUNT = pf.PAGE_SLAB_MAPCOUNT_VALUE

BATCHREFILL_LIMIT = 16
SLAB_OBJ_MAX_NUM = 255          # freelist_idx_t is one byte with 4 KiB pages
FREELIST_IDX_SIZE = 1
SLAB_MAX_ORDER_HI = 1           # slab_max_order when the machine has more than 32 MiB
KMALLOC_MAX_ORDER = 10
KMALLOC_SHIFT_LOW = 5
KMALLOC_SHIFT_HIGH = 22
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
ALIEN_LIMIT = 12
REAPTIMEOUT_AC = 2 * 10**9      # ns

MGMT_ON_SLAB = "on-slab"
MGMT_OBJFREELIST = "objfreelist"


class ArrayCache:
    """``struct array_cache``: ``entry`` holds the objects; ``avail`` is ``len(entry)``."""

    __slots__ = ("batchcount", "entry", "limit", "touched")
    ktype = "array_cache"

    def __init__(self, limit: int, batchcount: int) -> None:
        self.limit = limit
        self.batchcount = batchcount
        self.touched = 0
        self.entry: list[int] = []

    @property
    def avail(self) -> int:
        return len(self.entry)


class SlabNode(KmemCacheNode):
    """``struct kmem_cache_node`` of mm/slab.c: ``partial`` is ``slabs_partial``, ``full`` is
    ``slabs_full``; ``nr_slabs`` is ``total_slabs``."""

    __slots__ = (
        "alien",
        "colour_next",
        "free_limit",
        "free_objects",
        "nid",
        "shared",
        "slabs_free",
    )

    def __init__(self, nid: int) -> None:
        super().__init__()
        self.nid = nid
        self.slabs_free: list[Slab] = []
        self.free_objects = 0
        self.free_limit = 0
        self.colour_next = 0
        self.shared: ArrayCache | None = None
        self.alien: list[ArrayCache | None] = []

    @property
    def free_slabs(self) -> int:
        return len(self.slabs_free)


class SlabCache(KmemCache):
    """``struct kmem_cache`` of include/linux/slab_def.h (on top of the common fields)."""

    __slots__ = ("array_cache", "batchcount", "colour", "colour_off", "gfporder", "limit",
                 "mgmt", "num", "shared")

    def __init__(self, name: str, object_size: int) -> None:
        super().__init__(name, object_size)
        self.array_cache: list[ArrayCache] = []
        self.batchcount = 0
        self.limit = 0
        self.shared = 0
        self.num = 0
        self.gfporder = 0
        self.colour = 0
        self.colour_off = 0
        self.mgmt = MGMT_ON_SLAB


class SlabState:
    """The allocator's globals, with the fields slab_common, slab_info and kmem_files read."""

    def __init__(self, m: Any) -> None:
        self.slab_caches: list[KmemCache] = []
        self.by_name: dict[str, KmemCache] = {}
        self.kmalloc_caches: list[list[KmemCache | None]] = []
        self.shrinkers: list[Any] = []
        self.state = "DOWN"
        self.kmem_cache: KmemCache | None = None
        self.kmem_cache_node: KmemCache | None = None
        self.slab_merge = False
        self.slub_debug = 0
        self.slub_debug_blocks: list[Any] = []
        self.slab_max_order = int(m.config.extra.get("slab_max_order", SLAB_MAX_ORDER_HI))
        self.slub_min_order = 0
        self.slub_max_order = self.slab_max_order
        self.slub_min_objects = 0


# ---------------------------------------------------------------------------------------
# Geometry


def cache_estimate(order: int, size: int, mgmt: str) -> tuple[int, int]:
    slab_size = PAGE_SIZE << order
    if mgmt == MGMT_OBJFREELIST:
        return slab_size // size, slab_size % size
    num = slab_size // (size + FREELIST_IDX_SIZE)
    return num, slab_size - num * size - num * FREELIST_IDX_SIZE


def calculate_slab_order(st: SlabState, size: int, flags: int, mgmt: str) -> tuple[int, int, int]:
    """(order, num, left_over) as mm/slab.c picks them."""
    best = (0, 0, 0)
    for order in range(KMALLOC_MAX_ORDER + 1):
        num, remainder = cache_estimate(order, size, mgmt)
        if not num:
            continue
        if num > SLAB_OBJ_MAX_NUM:
            break
        best = (order, num, remainder)
        if flags & SLAB_RECLAIM_ACCOUNT:
            break
        if order >= st.slab_max_order:
            break
        if remainder * 8 <= PAGE_SIZE << order:
            break
    return best


def setup_cache_geometry(st: SlabState, s: SlabCache) -> bool:
    size = ALIGN(s.object_size, 8)
    size = ALIGN(size, s.align)
    s.size = size
    s.inuse = size
    mgmt = MGMT_ON_SLAB
    if s.ctor is None and not s.flags & SLAB_TYPESAFE_BY_RCU:
        order, num, left = calculate_slab_order(st, size, s.flags, MGMT_OBJFREELIST)
        if num and num * FREELIST_IDX_SIZE <= s.object_size:
            mgmt = MGMT_OBJFREELIST
    if mgmt == MGMT_ON_SLAB:
        order, num, left = calculate_slab_order(st, size, s.flags, MGMT_ON_SLAB)
    if not num:
        return False
    s.mgmt = mgmt
    s.num, s.gfporder = num, order
    s.oo = s.min = (order, num)
    s.colour_off = max(cache_line_size, s.align)
    s.colour = left // s.colour_off
    return True


def enable_cpucache(m: Any, s: SlabCache) -> None:
    """The kernel's default tunables for a cache of this object size."""
    if s.size > 131072:
        limit = 1
    elif s.size > PAGE_SIZE:
        limit = 8
    elif s.size > 1024:
        limit = 24
    elif s.size > 256:
        limit = 54
    else:
        limit = 120
    shared = 8 if s.size <= PAGE_SIZE and m.ncpus > 1 else 0
    do_tune_cpucache(s, limit, (limit + 1) // 2, shared)


@kfunc
def do_tune_cpucache(s: SlabCache, limit: int, batchcount: int, shared: int) -> int:
    """New array caches of the given size: the old ones are drained back to the slabs."""
    m = s.machine
    if s.array_cache:
        drain_cpu_caches(s)
    s.limit, s.batchcount, s.shared = limit, batchcount, shared
    s.array_cache = [ArrayCache(limit, batchcount) for _ in range(m.ncpus)]
    nnodes = len(m.node_data)
    for n in s.node:
        n.shared = ArrayCache(shared * batchcount, 0xBAADF00D) if shared else None
        alimit = ALIEN_LIMIT if limit > 1 else limit
        n.alien = [ArrayCache(alimit, 0xBAADF00D) if i != n.nid else None
                   for i in range(nnodes)] if nnodes > 1 else []
        ncpus_node = sum(1 for c in range(m.ncpus) if m.cpu_to_node[c] == n.nid)
        n.free_limit = (1 + ncpus_node) * batchcount + s.num
    return 0


# ---------------------------------------------------------------------------------------
# Slabs


def _stat_item(s: KmemCache) -> int:
    return NR_SLAB_RECLAIMABLE if s.flags & SLAB_RECLAIM_ACCOUNT else NR_SLAB_UNRECLAIMABLE


@kfunc
def cache_grow_begin(s: SlabCache, flags: int, nodeid: int) -> Slab | None:
    """A new slab from the buddy allocator, its objects at the next colour offset."""
    m = s.machine
    gfp = (flags & ~(__GFP_ZERO | __GFP_ACCOUNT)) | s.allocflags
    if s.gfporder:
        gfp |= __GFP_COMP
    pfn = page_alloc.alloc_pages_node(nodeid, gfp, s.gfporder) if nodeid != NUMA_NO_NODE \
        else page_alloc.alloc_pages(gfp, s.gfporder)
    if pfn is None:
        return None
    zone = m.pfn_zone(pfn)
    node = zone.node if zone is not None else 0
    n = s.node[node]
    offset = n.colour_next
    n.colour_next += 1
    if n.colour_next >= s.colour:
        n.colour_next = 0
    slab = Slab(s, pfn, s.gfporder, s.num, node)
    slab.s_mem += offset * s.colour_off
    m.mem_map._mapcount[pfn] = SLAB_MAPCOUNT
    pm = m.physmem
    pages = pm.pages
    for p in range(pfn, pfn + (1 << s.gfporder)):
        if p not in pages:
            pm.new_page(p)
        m.slab_pages[p] = slab
    m.node_data[node].vm_stat[_stat_item(s)] += 1 << s.gfporder
    objs = [slab.s_mem + i * s.size for i in range(s.num)]
    if s.ctor is not None:
        for o in objs:
            s.ctor(o)
    objs.reverse()
    slab.freelist = objs
    return slab


def cache_grow_end(s: SlabCache, slab: Slab | None) -> None:
    if slab is None:
        return
    n = s.node[slab.node]
    n.nr_slabs += 1
    n.total_objects += slab.objects
    _list_add(n, slab)
    n.free_objects += s.num - slab.inuse


def _list_del(n: SlabNode, slab: Slab) -> None:
    lst = (n.partial if slab.on_list == ON_PARTIAL else n.full if slab.on_list == ON_FULL
           else n.slabs_free)
    lst.remove(slab)


def _list_add(n: SlabNode, slab: Slab) -> None:
    """fixup_slab_list / free_block's list placement by the slab's active count."""
    if slab.inuse == slab.objects:
        slab.on_list = ON_FULL
        n.full.append(slab)
    elif slab.inuse == 0:
        slab.on_list = ON_NONE
        n.slabs_free.insert(0, slab)
    else:
        slab.on_list = ON_PARTIAL
        n.partial.append(slab)


def _destroy_slab(s: SlabCache, slab: Slab) -> None:
    m = s.machine
    n = s.node[slab.node]
    n.nr_slabs -= 1
    n.total_objects -= slab.objects
    for p in range(slab.pfn, slab.pfn + (1 << slab.order)):
        m.slab_pages.pop(p, None)
    m.mem_map._mapcount[slab.pfn] = -1
    m.node_data[slab.node].vm_stat[_stat_item(s)] -= 1 << slab.order
    slab.freelist = []
    page_alloc.__free_pages(slab.pfn, slab.order)


@kfunc
def free_block(s: SlabCache, objs: list[int], node: int) -> None:
    """Objects back to their slabs; free slabs beyond ``free_limit`` to the buddy allocator."""
    m = s.machine
    n = s.node[node]
    for objp in objs:
        slab = m.slab_pages[(objp - PAGE_OFFSET) >> PAGE_SHIFT]
        _list_del(n, slab)
        slab.freelist.append(objp)
        slab.inuse -= 1
        n.free_objects += 1
        _list_add(n, slab)
    while n.free_objects > n.free_limit and n.slabs_free:
        slab = n.slabs_free.pop()
        n.free_objects -= s.num
        _destroy_slab(s, slab)


def _alloc_block(s: SlabCache, ac: ArrayCache, slab: Slab, batchcount: int) -> int:
    while slab.inuse < s.num and batchcount > 0:
        batchcount -= 1
        ac.entry.append(slab.freelist.pop())
        slab.inuse += 1
    return batchcount


def _get_first_slab(n: SlabNode) -> Slab | None:
    if n.partial:
        return n.partial[0]
    if n.slabs_free:
        return n.slabs_free[0]
    return None


def _transfer(to: ArrayCache, frm: ArrayCache, maximum: int) -> int:
    nr = min(frm.avail, maximum, to.limit - to.avail)
    if nr <= 0:
        return 0
    to.entry.extend(frm.entry[-nr:])
    del frm.entry[-nr:]
    return nr


@kfunc
def cache_alloc_refill(s: SlabCache, flags: int) -> int:
    m = s.machine
    node = m.cpu_to_node[m.cpu]
    ac = s.array_cache[m.cpu]
    batchcount = ac.batchcount
    if not ac.touched and batchcount > BATCHREFILL_LIMIT:
        batchcount = BATCHREFILL_LIMIT
    n = s.node[node]
    shared = n.shared
    if n.free_objects or (shared is not None and shared.avail):
        if shared is not None and _transfer(ac, shared, batchcount):
            shared.touched = 1
        else:
            while batchcount > 0:
                slab = _get_first_slab(n)
                if slab is None:
                    break
                _list_del(n, slab)
                batchcount = _alloc_block(s, ac, slab, batchcount)
                _list_add(n, slab)
            n.free_objects -= ac.avail
    if not ac.avail:
        slab = cache_grow_begin(s, flags, node)
        if slab is not None:
            _alloc_block(s, ac, slab, batchcount)
        cache_grow_end(s, slab)
        if not ac.avail:
            return 0
    ac.touched = 1
    return ac.entry.pop()


@kfunc
def ____cache_alloc_node(s: SlabCache, flags: int, nodeid: int) -> int:
    """An object from a given node's slabs (bypassing the per-CPU arrays)."""
    n = s.node[nodeid]
    slab = _get_first_slab(n)
    if slab is None:
        slab = cache_grow_begin(s, flags, nodeid)
        if slab is None:
            return 0
        obj = slab.freelist.pop()
        slab.inuse += 1
        cache_grow_end(s, slab)
        return obj
    _list_del(n, slab)
    obj = slab.freelist.pop()
    slab.inuse += 1
    n.free_objects -= 1
    _list_add(n, slab)
    return obj


@kfunc
def ____cache_alloc(s: SlabCache, flags: int) -> int:
    ac = s.array_cache[s.machine.cpu]
    if ac.entry:
        ac.touched = 1
        return ac.entry.pop()
    return cache_alloc_refill(s, flags)


@kfunc
def cache_flusharray(s: SlabCache, ac: ArrayCache) -> None:
    m = s.machine
    node = m.cpu_to_node[m.cpu]
    n = s.node[node]
    batchcount = ac.batchcount
    sh = n.shared
    if sh is not None and sh.limit - sh.avail:
        batchcount = min(batchcount, sh.limit - sh.avail)
        sh.entry.extend(ac.entry[:batchcount])
    else:
        free_block(s, ac.entry[:batchcount], node)
    del ac.entry[:batchcount]


@kfunc
def cache_free_alien(s: SlabCache, objp: int, slab_node: int) -> None:
    m = s.machine
    n = s.node[m.cpu_to_node[m.cpu]]
    alien = n.alien[slab_node]
    if alien.avail >= alien.limit:
        __drain_alien_cache(s, alien, slab_node)
    alien.entry.append(objp)


def __drain_alien_cache(s: SlabCache, ac: ArrayCache, node: int) -> None:
    rn = s.node[node]
    if rn.shared is not None:
        _transfer(rn.shared, ac, ac.limit)
    if ac.entry:
        free_block(s, list(ac.entry), node)
        ac.entry.clear()


@kfunc
def ___cache_free(s: SlabCache, objp: int) -> None:
    m = s.machine
    slab = m.slab_pages.get((objp - PAGE_OFFSET) >> PAGE_SHIFT)
    if len(s.node) > 1 and slab.node != m.cpu_to_node[m.cpu]:
        cache_free_alien(s, objp, slab.node)
        return
    ac = s.array_cache[m.cpu]
    if ac.avail >= ac.limit:
        cache_flusharray(s, ac)
    ac.entry.append(objp)


def cached_objects(s: SlabCache) -> set[int]:
    """Objects free in the per-CPU, shared and alien arrays (free for ``kmem -s``)."""
    out = {o for ac in s.array_cache for o in ac.entry}
    for n in s.node:
        if n.shared is not None:
            out.update(n.shared.entry)
        for al in n.alien:
            if al is not None:
                out.update(al.entry)
    return out


def drain_array(s: SlabCache, n: SlabNode, ac: ArrayCache | None, force: bool) -> None:
    """cache_reap's trim of one array: untouched arrays give back a fifth of their limit."""
    if ac is None or not ac.entry:
        return
    if ac.touched and not force:
        ac.touched = 0
        return
    tofree = ac.avail if force else (ac.limit + 4) // 5
    if tofree > ac.avail:
        tofree = (ac.avail + 1) // 2
    free_block(s, ac.entry[:tofree], n.nid)
    del ac.entry[:tofree]


def drain_freelist(s: SlabCache, n: SlabNode, tofree: int) -> int:
    nr = 0
    while nr < tofree and n.slabs_free:
        slab = n.slabs_free.pop()
        n.free_objects -= s.num
        _destroy_slab(s, slab)
        nr += 1
    return nr


def drain_cpu_caches(s: SlabCache) -> None:
    m = s.machine
    for cpu, ac in enumerate(s.array_cache):
        if ac.entry:
            free_block(s, list(ac.entry), m.cpu_to_node[cpu])
            ac.entry.clear()
    for n in s.node:
        for nid, al in enumerate(n.alien):
            if al is not None and al.entry:
                __drain_alien_cache(s, al, nid)
    for n in s.node:
        drain_array(s, n, n.shared, True)


@kfunc
def cache_reap(m: Any) -> None:
    """The periodic reaper (every 2 s per CPU in the kernel): drain alien caches, trim
    untouched arrays, give back some free slabs."""
    m.activate()
    for s in m.slub.slab_caches:
        for n in s.node:
            for nid, al in enumerate(n.alien):
                if al is not None and al.entry:
                    __drain_alien_cache(s, al, nid)
        for cpu, ac in enumerate(s.array_cache):
            drain_array(s, s.node[m.cpu_to_node[cpu]], ac, False)
        for n in s.node:
            drain_array(s, n, n.shared, False)
            if n.slabs_free:
                drain_freelist(s, n, (n.free_limit + 5 * s.num - 1) // (5 * s.num))


# ---------------------------------------------------------------------------------------
# The backend interface slab_common dispatches to


def _cpu_node(m: Any) -> int:
    return m.cpu_to_node[m.cpu]


def cache_alloc(s: SlabCache, flags: int, node: int) -> int:
    m = s.machine
    if node == NUMA_NO_NODE or node == _cpu_node(m):
        obj = ____cache_alloc(s, flags)
    else:
        obj = ____cache_alloc_node(s, flags, node)
    if obj and flags & __GFP_ZERO:
        m.physmem.write(obj - PAGE_OFFSET, bytes(s.object_size))
    return obj


def cache_free(s: KmemCache, x: int) -> None:
    m = _trace._current
    slab = m.slab_pages.get((x - PAGE_OFFSET) >> PAGE_SHIFT)
    if slab is None or slab.slab_cache is not s or (x - slab.s_mem) % s.size \
            or not 0 <= (x - slab.s_mem) // s.size < slab.objects:
        m.printk(f"kmem_cache_free: invalid pointer 0x{x:016x}"
                 f" ({s.name})", level=3)
        m.warn_on()
        return
    ___cache_free(s, x)


def create_cache(m: Any, name: str, size: int, align: int, flags: int, ctor: Any) -> SlabCache:
    from mmdbg.sim.mm.slab_common import calculate_alignment

    st = m.slub
    s = SlabCache(name, size)
    s.flags = flags & ~SLAB_PANIC
    s.align = calculate_alignment(flags, align, size)
    s.ctor = ctor
    s.machine = m
    if flags & SLAB_CACHE_DMA:
        s.allocflags |= __GFP_DMA
    if flags & SLAB_RECLAIM_ACCOUNT:
        s.allocflags |= __GFP_RECLAIMABLE
    if not setup_cache_geometry(st, s):
        raise KernelError(22, f"kmem_cache_create({name}) failed")
    s.node = [SlabNode(i) for i in range(len(m.node_data))]
    enable_cpucache(m, s)
    st.slab_caches.append(s)
    st.by_name[name] = s
    if st.state == "FULL":
        s.addr = cache_alloc(st.kmem_cache, GFP_KERNEL, NUMA_NO_NODE)
    return s


def destroy_cache(m: Any, s: SlabCache) -> bool:
    """__kmem_cache_shutdown: False if objects are still allocated."""
    shrink_cache(s)
    return not any(n.nr_slabs for n in s.node)


def shrink_cache(s: SlabCache) -> int:
    drain_cpu_caches(s)
    ret = 0
    for n in s.node:
        drain_freelist(s, n, 1 << 30)
        ret += bool(n.full or n.partial)
    return 1 if ret else 0


KMALLOC_SIZES = [(96, "96"), (192, "192")] + [
    (1 << i, (f"{1 << (i - 20)}M" if i >= 20 else f"{1 << (i - 10)}k" if i >= 10
              else str(1 << i))) for i in range(KMALLOC_SHIFT_LOW, KMALLOC_SHIFT_HIGH + 1)]


def kmalloc_size_class(size: int) -> int:
    """kmalloc_index() for SLAB: the smallest size class holding ``size``."""
    if size <= 32:
        return 32
    if 64 < size <= 96:
        return 96
    if 128 < size <= 192:
        return 192
    return 1 << (size - 1).bit_length()


def kmalloc_cache(m: Any, size: int, flags: int) -> SlabCache:
    from mmdbg.sim.mm.slab_common import kmalloc_type

    return m.slab_kmalloc[kmalloc_type(flags)][kmalloc_size_class(size)]


def do_kmalloc(m: Any, size: int, flags: int, node: int) -> tuple[int, int]:
    """(object, bytes_alloc); sizes above 4 MiB fail as in the kernel."""
    if size > KMALLOC_MAX_CACHE_SIZE:
        m.warn_on()
        return 0, 0
    s = kmalloc_cache(m, size, flags)
    return cache_alloc(s, flags, node), s.size


def do_kfree(m: Any, x: int) -> bool:
    slab = m.slab_pages.get((x - PAGE_OFFSET) >> PAGE_SHIFT)
    if slab is None:
        return False
    cache_free(slab.slab_cache, x)
    return True


def do_ksize(m: Any, x: int) -> int:
    slab = m.slab_pages.get((x - PAGE_OFFSET) >> PAGE_SHIFT)
    return slab.slab_cache.object_size if slab is not None else 0


def kmem_cache_init(m: Any, boot_caches: list[tuple[str, int, int, int]],
                    static_base: int) -> None:
    from mmdbg.sim.mm.slab_common import KMALLOC_TYPE_PREFIX, NR_KMALLOC_TYPES

    st = m.slub = SlabState(m)
    m.slab_pages = {}
    st.kmem_cache = create_cache(m, "kmem_cache", 256, 64, SLAB_HWCACHE_ALIGN, None)
    st.state = "PARTIAL"
    m.slab_kmalloc = []
    for typ in range(NR_KMALLOC_TYPES):
        flags = SLAB_KMALLOC | (SLAB_RECLAIM_ACCOUNT if typ == 1 else SLAB_CACHE_DMA
                                if typ == 2 else SLAB_ACCOUNT if typ == 3 else 0)
        by_size = {}
        for size, short in KMALLOC_SIZES:
            by_size[size] = create_cache(m, KMALLOC_TYPE_PREFIX[typ] + short, size,
                                         size if not size & (size - 1) else 8, flags, None)
        m.slab_kmalloc.append(by_size)
    st.kmalloc_caches = [list(d.values()) for d in m.slab_kmalloc]
    st.state = "UP"
    for name, size, align, flags in boot_caches:
        create_cache(m, name, size, align, flags, None)
    for i, s in enumerate(st.slab_caches):
        s.addr = static_base + i * 0x100
    st.state = "FULL"


# ---------------------------------------------------------------------------------------
# /proc/slabinfo


def get_slabinfo(s: SlabCache) -> dict[str, int]:
    total = sum(n.nr_slabs for n in s.node)
    free_slabs = sum(n.free_slabs for n in s.node)
    free_objs = sum(n.free_objects for n in s.node)
    shared_avail = sum(n.shared.avail for n in s.node if n.shared is not None)
    num_objs = total * s.num
    return {"active_objs": num_objs - free_objs, "num_objs": num_objs,
            "active_slabs": total - free_slabs, "num_slabs": total,
            "shared_avail": shared_avail, "limit": s.limit, "batchcount": s.batchcount,
            "shared": s.shared, "objects_per_slab": s.num, "cache_order": s.gfporder}


def slabinfo_lines(m: Any) -> list[str]:
    from mmdbg.sim.mm.slab_common import format_slabinfo_line

    out = ["slabinfo - version: 2.1",
           "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
           " : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs>"
           " <num_slabs> <sharedavail>"]
    for s in reversed(m.slub.slab_caches):
        i = get_slabinfo(s)
        out.append(format_slabinfo_line(s.name, i["active_objs"], i["num_objs"], s.size,
                                        s.num, 1 << s.gfporder, i["active_slabs"],
                                        i["num_slabs"], s.limit, s.batchcount, s.shared,
                                        i["shared_avail"]))
    return out


def slabinfo_write(m: Any, text: str) -> None:
    """``echo 'NAME LIMIT BATCHCOUNT SHARED' > /proc/slabinfo`` (mm/slab.c slabinfo_write)."""
    m.activate()
    f = text.split()
    if len(f) != 4:
        raise KernelError(22, "Invalid argument")
    try:
        limit, batchcount, shared = (int(x) for x in f[1:])
    except ValueError:
        raise KernelError(22, "Invalid argument") from None
    s = m.slub.by_name.get(f[0])
    if s is None:
        raise KernelError(22, "Invalid argument")
    if limit < 1 or batchcount < 1 or batchcount > limit or shared < 0:
        return
    do_tune_cpucache(s, limit, batchcount, shared)


# ---------------------------------------------------------------------------------------
# Invariants


@register_check
def check_slab(m: Any) -> None:
    """register_check: every object is in exactly one place (a slab's free list, a per-CPU,
    shared or alien array, or allocated), node counters agree with the slab lists, slab
    pages are PGTY_slab and counted in nr_slab_*."""
    st = getattr(m, "slub", None)
    if not isinstance(st, SlabState):
        return
    per_node = [[0, 0] for _ in m.node_data]
    for p, sl in m.slab_pages.items():
        if sl.pfn == p:
            assert m.mem_map._mapcount[p] == SLAB_MAPCOUNT, f"slab pfn {p:#x} not PGTY_slab"
            per_node[sl.node][0 if sl.slab_cache.flags & SLAB_RECLAIM_ACCOUNT else 1] += \
                1 << sl.order
    for pgdat in m.node_data:
        rec, unrec = per_node[pgdat.node_id]
        assert pgdat.vm_stat[NR_SLAB_RECLAIMABLE] == rec, "nr_slab_reclaimable mismatch"
        assert pgdat.vm_stat[NR_SLAB_UNRECLAIMABLE] == unrec, "nr_slab_unreclaimable mismatch"
    for s in st.slab_caches:
        where: dict[int, str] = {}

        def put(o: int, what: str, s: SlabCache = s, where: dict[int, str] = where) -> None:
            assert o not in where, f"{s.name}: object {o:#x} both in {where[o]} and {what}"
            where[o] = what
            sl = m.slab_pages.get((o - PAGE_OFFSET) >> PAGE_SHIFT)
            assert sl is not None and sl.slab_cache is s, f"{s.name}: {o:#x} not in a slab"
            assert (o - sl.s_mem) % s.size == 0 and 0 <= (o - sl.s_mem) // s.size < sl.objects

        for cpu, ac in enumerate(s.array_cache):
            assert ac.avail <= ac.limit, f"{s.name} cpu{cpu}: avail > limit"
            for o in ac.entry:
                put(o, f"cpu{cpu} array")
        for n in s.node:
            slabs = n.partial + n.full + n.slabs_free
            assert n.nr_slabs == len(slabs), f"{s.name} node{n.nid}: total_slabs mismatch"
            assert n.free_objects == sum(len(sl.freelist) for sl in slabs), \
                f"{s.name} node{n.nid}: free_objects {n.free_objects} mismatch"
            for sl in n.full:
                assert not sl.freelist and sl.inuse == sl.objects
            for sl in n.slabs_free:
                assert sl.inuse == 0
            for sl in n.partial:
                assert 0 < sl.inuse < sl.objects
            for sl in slabs:
                assert sl.inuse == sl.objects - len(sl.freelist), f"{s.name}: inuse mismatch"
                assert sl.node == n.nid
                for o in sl.freelist:
                    put(o, f"slab {sl.pfn:#x}")
            if n.shared is not None:
                assert n.shared.avail <= n.shared.limit
                for o in n.shared.entry:
                    put(o, f"node{n.nid} shared")
            for nid, al in enumerate(n.alien):
                if al is not None:
                    for o in al.entry:
                        put(o, f"node{n.nid} alien[{nid}]")
                        assert m.slab_pages[(o - PAGE_OFFSET) >> PAGE_SHIFT].node == nid
