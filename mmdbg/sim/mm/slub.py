"""The SLUB allocator (mm/slub.c, Linux 6.18).

What is modelled, with the kernel's names:

* cache layout: ``calculate_sizes`` (free pointer placement, red zones, ``SLAB_STORE_USER``
  tracks, the kmalloc original size, KASAN metadata and redzone), ``calculate_order`` with
  ``slub_min_objects``/``slub_max_order``/``slub_min_order``, ``set_cpu_partial`` and
  ``set_min_partial``;
* slabs from the buddy allocator (``allocate_slab`` tries ``s->oo`` with ``__GFP_NORETRY``, then
  ``s->min``), ``PGTY_slab`` on the head page, ``NR_SLAB_RECLAIMABLE``/``UNRECLAIMABLE`` node
  counters (kept in pages here; the kernel's ``*_B`` items are bytes shown as pages);
* the allocation paths: the per-CPU lockless freelist (fast path), ``___slab_alloc`` refilling
  from the CPU slab's remote frees, the per-CPU partial list, the node partial list
  (``get_partial_node`` also moves up to ``cpu_partial_slabs / 2`` slabs to the CPU partial
  list), other nodes (``get_any_partial``), and ``new_slab``;
* the free paths: to the CPU freelist when the object's slab is the CPU slab, otherwise
  ``__slab_free`` (remote free to a frozen slab, full slab to the CPU partial list with
  ``put_cpu_partial``, empty slab discarded when the node already has ``min_partial``);
* ``slub_debug`` (F, Z, P, U, T; global or per cache): debug caches allocate and free one object
  at a time under the node lock (``alloc_single_from_partial``, ``free_to_partial_list``) with
  the kernel's checks and reports (``check_object``, ``on_freelist``, ``object_err``,
  ``slab_err``, ``print_trailer``, ``FIX ...`` lines);
* ``kmem_cache_shrink``, ``flush_all``, ``validate_slab_cache``, ``kmem_cache_destroy``'s
  "still has objects" report.

The debugging tools hook in where the kernel calls them: ``slab_post_alloc_hook`` (zeroing,
KASAN, kmemleak, memcg) and ``slab_free_hook`` (kmemleak, KASAN quarantine); they are
``machine.kasan``/``machine.kmemleak``/``machine.kfence`` (``None`` when off).  A cache whose
objects need no hook and no debugging has ``s.fast`` set, and kmalloc/kfree then do their
work inline (slab_common.py).

Not modelled: sheaves (6.18's per-CPU object arrays, used by a few caches such as
``maple_node``), ``cmpxchg`` races (there is no concurrency inside kernel code here),
``SLUB_TINY``, freelist randomisation, ``init_on_alloc``/``init_on_free``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.include.gfp import (
    __GFP_ACCOUNT,
    __GFP_DIRECT_RECLAIM,
    __GFP_NOFAIL,
    __GFP_NORETRY,
    __GFP_NOWARN,
    __GFP_RECLAIMABLE,
    __GFP_THISNODE,
    __GFP_ZERO,
    GFP_DMA,
    GFP_DMA32,
    format_gfp,
)
from mmdbg.sim.include.gfp import __GFP_COMP as _GFP_COMP
from mmdbg.sim.kernel.printk import KERN_ERR, KERN_INFO
from mmdbg.sim.lib import stackdepot
from mmdbg.sim.mm import page_alloc, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE
from mmdbg.sim.mm.slab import (
    __OBJECT_POISON,
    ALIGN,
    DEBUG_DEFAULT_FLAGS,
    KASAN_ALLOC_META_SIZE,
    KASAN_FREE_META_SIZE,
    MAX_OBJS_PER_PAGE,
    MAX_PARTIAL,
    MIN_PARTIAL,
    NUMA_NO_NODE,
    ON_CPU_PARTIAL,
    ON_FULL,
    ON_NONE,
    ON_PARTIAL,
    PAGE_ALLOC_COSTLY_ORDER,
    POISON_END,
    POISON_FREE,
    POISON_INUSE,
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_CACHE_DMA32,
    SLAB_CONSISTENCY_CHECKS,
    SLAB_DEBUG_FLAGS,
    SLAB_KASAN,
    SLAB_KMALLOC,
    SLAB_NO_USER_FLAGS,
    SLAB_NOLEAKTRACE,
    SLAB_POISON,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_RED_ZONE,
    SLAB_STORE_USER,
    SLAB_TRACE,
    SLAB_TYPESAFE_BY_RCU,
    SLUB_RED_ACTIVE,
    SLUB_RED_INACTIVE,
    TRACK_ALLOC,
    TRACK_FREE,
    TRACK_SIZE,
    KmemCache,
    KmemCacheCpu,
    KmemCacheNode,
    Slab,
    check_valid_pointer,
    fls,
    freeptr_outside_object,
    get_info_end,
    get_order,
    order_objects,
    size_from_object,
    slub_debug_orig_size,
)
from mmdbg.sim.trace import kfunc

_NR_SLAB_RECLAIMABLE = vmstat.NS["nr_slab_reclaimable"]
_NR_SLAB_UNRECLAIMABLE = vmstat.NS["nr_slab_unreclaimable"]
_SLAB_MAPCOUNT = pf.PAGE_SLAB_MAPCOUNT_VALUE
_MASK64 = (1 << 64) - 1

# Frames of the allocator itself, left out of saved stacks (the kernel's skipnr)
SLAB_INTERNAL = (
    "set_track", "set_track_prepare", "alloc_debug_processing", "free_debug_processing",
    "___slab_alloc", "__slab_alloc", "slab_alloc_node", "free_to_partial_list", "__slab_free",
    "do_slab_free", "slab_free", "slab_post_alloc_hook", "slab_free_hook",
    "alloc_single_from_partial", "alloc_single_from_new_slab",
)


class SlubState:
    """The allocator's globals: the cache list, the debug settings and the boot parameters."""

    def __init__(self, m: Any) -> None:
        cfg = m.config
        extra = cfg.extra
        self.slab_caches: list[KmemCache] = []  # creation order; slabinfo prints newest first
        self.by_name: dict[str, KmemCache] = {}
        self.slub_min_order = int(extra.get("slub_min_order", 0))
        self.slub_max_order = int(extra.get("slub_max_order", PAGE_ALLOC_COSTLY_ORDER))
        self.slub_min_objects = int(extra.get("slub_min_objects", 0))
        self.slab_merge = bool(extra.get("slab_merge", False))
        self.slub_debug, self.slub_debug_blocks = parse_slub_debug(cfg.slub_debug)
        self.state = "DOWN"
        self.shrinkers: list[Any] = []
        self.kmalloc_caches: list[list[KmemCache | None]] = []


# ---------------------------------------------------------------------------------------
# slub_debug= parsing (parse_slub_debug_flags, setup_slub_debug, kmem_cache_flags)

_DEBUG_LETTERS = {"f": SLAB_CONSISTENCY_CHECKS, "z": SLAB_RED_ZONE, "p": SLAB_POISON,
                  "u": SLAB_STORE_USER, "t": SLAB_TRACE, "a": 0, "o": 0}


def parse_slub_debug_block(block: str) -> tuple[int, list[str] | None]:
    """One ``;``-separated block: ``FZ,kmalloc-64,dentry`` -> (flags, slab names or None)."""
    if block.startswith(","):
        return DEBUG_DEFAULT_FLAGS, [n for n in block[1:].split(",") if n]
    opts, comma, rest = block.partition(",")
    flags = 0
    for ch in opts:
        c = ch.lower()
        if c == "-":
            flags = 0
        elif c in _DEBUG_LETTERS:
            flags |= _DEBUG_LETTERS[c]
    return flags, ([n for n in rest.split(",") if n] if comma else None)


def parse_slub_debug(text: str | None) -> tuple[int, list[tuple[int, list[str]]]]:
    """setup_slub_debug(): the global flags and the per-slab blocks."""
    if text is None:
        return 0, []
    if text == "":
        return DEBUG_DEFAULT_FLAGS, []
    global_flags = DEBUG_DEFAULT_FLAGS
    changed = False
    blocks: list[tuple[int, list[str]]] = []
    for block in text.split(";"):
        if not block:
            continue
        flags, slabs = parse_slub_debug_block(block)
        if slabs is None:
            global_flags = flags
            changed = True
        else:
            blocks.append((flags, slabs))
    if blocks and not changed:
        global_flags = 0
    return global_flags, blocks


def kmem_cache_flags(st: SlubState, flags: int, name: str) -> int:
    """Apply ``slub_debug`` to a new cache's flags (a glob ``*`` matches a prefix)."""
    if flags & SLAB_NO_USER_FLAGS:
        return flags
    local = st.slub_debug
    if flags & SLAB_NOLEAKTRACE:
        local &= ~SLAB_STORE_USER
    for bflags, names in st.slub_debug_blocks:
        for pat in names:
            if (pat.endswith("*") and name.startswith(pat[:-1])) or name == pat:
                return flags | bflags
    return flags | local


# ---------------------------------------------------------------------------------------
# Cache geometry


def calc_slab_order(size: int, min_order: int, max_order: int, fract_leftover: int) -> int:
    order = min_order
    while order <= max_order:
        slab_size = PAGE_SIZE << order
        if slab_size % size <= slab_size // fract_leftover:
            break
        order += 1
    return order


def calculate_order(st: SlubState, size: int, ncpus: int) -> int:
    """The slab order for objects of ``size`` bytes (mm/slub.c calculate_order)."""
    min_objects = st.slub_min_objects
    if not min_objects:
        min_objects = 4 * (fls(ncpus) + 1)
    max_objects = max(order_objects(st.slub_max_order, size), 1)
    min_objects = min(min_objects, max_objects)
    min_order = max(st.slub_min_order, get_order(min_objects * size))
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE:
        return get_order(size * MAX_OBJS_PER_PAGE) - 1
    fraction = 16
    while fraction > 1:
        order = calc_slab_order(size, min_order, st.slub_max_order, fraction)
        if order <= st.slub_max_order:
            return order
        fraction //= 2
    order = get_order(size)
    return order if order <= 10 else -1


def optimal_redzone(object_size: int) -> int:
    """mm/kasan/generic.c: the KASAN redzone for an object size."""
    for limit, rz in ((64 - 16, 16), (128 - 32, 32), (512 - 64, 64), (4096 - 128, 128),
                      ((1 << 14) - 256, 256), ((1 << 15) - 512, 512), ((1 << 16) - 1024, 1024)):
        if object_size <= limit:
            return rz
    return 2048


def kasan_cache_create(s: KmemCache, size: int) -> int:
    """Generic KASAN: alloc meta after the object, free meta inside it when it fits."""
    s.flags |= SLAB_KASAN
    s.kasan_info["alloc_meta_offset"] = size
    size += KASAN_ALLOC_META_SIZE
    if s.flags & SLAB_TYPESAFE_BY_RCU or s.ctor is not None \
            or s.object_size < KASAN_FREE_META_SIZE:
        s.kasan_info["free_meta_offset"] = size
        size += KASAN_FREE_META_SIZE
    else:
        s.kasan_info["free_meta_offset"] = 0
    optimal = min(s.object_size + optimal_redzone(s.object_size), 2 << 20)
    return max(size, optimal)


def kasan_metadata_size(s: KmemCache, in_object: bool) -> int:
    if not s.flags & SLAB_KASAN:
        return 0
    info = s.kasan_info
    if in_object:
        return 0 if info["free_meta_offset"] else KASAN_FREE_META_SIZE
    return KASAN_ALLOC_META_SIZE + (KASAN_FREE_META_SIZE if info["free_meta_offset"] else 0)


def calculate_sizes(m: Any, s: KmemCache) -> bool:
    """Lay out one object slot and choose the order (mm/slub.c calculate_sizes)."""
    st = m.slub
    flags = s.flags
    size = ALIGN(s.object_size, 8)
    if flags & SLAB_POISON and not flags & SLAB_TYPESAFE_BY_RCU and s.ctor is None:
        s.flags |= __OBJECT_POISON
    else:
        s.flags &= ~__OBJECT_POISON
    if flags & SLAB_RED_ZONE and size == s.object_size:
        size += 8
    s.inuse = size
    if ((flags & SLAB_TYPESAFE_BY_RCU and s.freeptr_offset < 0) or flags & SLAB_POISON
            or s.ctor is not None
            or (flags & SLAB_RED_ZONE and (s.object_size < 8 or slub_debug_orig_size(s)))):
        s.offset = size
        size += 8
    elif flags & SLAB_TYPESAFE_BY_RCU:
        s.offset = s.freeptr_offset
    else:
        s.offset = (s.object_size // 2) & ~7
    if flags & SLAB_STORE_USER:
        size += 2 * TRACK_SIZE
        if flags & SLAB_KMALLOC:
            size += 4
    if m.kasan is not None and not flags & SLAB_NOLEAKTRACE:
        size = kasan_cache_create(s, size)
    if flags & SLAB_RED_ZONE:
        size += 8
        s.red_left_pad = ALIGN(8, s.align)
        size += s.red_left_pad
    size = ALIGN(size, s.align)
    s.size = size
    order = calculate_order(st, size, m.ncpus)
    if order < 0:
        return False
    s.allocflags = _GFP_COMP
    if s.flags & SLAB_CACHE_DMA:
        s.allocflags |= GFP_DMA
    if s.flags & SLAB_CACHE_DMA32:
        s.allocflags |= GFP_DMA32
    if s.flags & SLAB_RECLAIM_ACCOUNT:
        s.allocflags |= __GFP_RECLAIMABLE
    s.oo = (order, order_objects(order, size))
    s.min = (get_order(size), order_objects(get_order(size), size))
    return s.oo[1] > 0


def set_cpu_partial(s: KmemCache) -> None:
    if s.debug:
        nr = 0
    elif s.size >= PAGE_SIZE:
        nr = 6
    elif s.size >= 1024:
        nr = 24
    elif s.size >= 256:
        nr = 52
    else:
        nr = 120
    s.cpu_partial = nr
    s.cpu_partial_slabs = (nr * 2 + s.oo[1] - 1) // s.oo[1] if nr else 0


def set_min_partial(s: KmemCache, min_: int) -> None:
    s.min_partial = max(MIN_PARTIAL, min(MAX_PARTIAL, min_))


def update_fast(m: Any, s: KmemCache) -> None:
    """Decide whether kmalloc/kfree may handle this cache inline (no hook wants a say)."""
    s.debug = bool(s.flags & SLAB_DEBUG_FLAGS)
    s.fast = not (s.debug or s.ctor is not None or s.flags & SLAB_ACCOUNT
                  or m.kasan is not None or m.kmemleak is not None or m.kfence is not None
                  or m.slab_hooked)


@kfunc(name="do_kmem_cache_create", aliases=("kmem_cache_open", "__kmem_cache_create"))
def do_kmem_cache_create(s: KmemCache, flags: int) -> bool:
    m = _trace._current
    s.flags = kmem_cache_flags(m.slub, flags, s.name)
    # get_random_long() for the freelist hardening: derived from the seed and the name
    # rather than drawn from machine.rng, so creating caches does not shift the random
    # stream every other subsystem replays from
    s.random = int.from_bytes(hashlib.blake2b(f"{m.seed}:{s.name}".encode(),
                                              digest_size=8).digest(), "little")
    if not calculate_sizes(m, s):
        return False
    update_fast(m, s)
    set_min_partial(s, fls(s.size) // 2 - 1 if s.size else 0)
    set_cpu_partial(s)
    s.machine = m
    s.cpu_slab = [KmemCacheCpu() for _ in range(m.ncpus)]
    s.node = [KmemCacheNode() for _ in m.node_data]
    return True


# ---------------------------------------------------------------------------------------
# Object memory (the allocator's own accesses, never checked by KASAN: metadata_access)


def mem_read(m: Any, addr: int, n: int) -> bytes:
    return m.physmem.read(addr - PAGE_OFFSET, n)


def mem_write(m: Any, addr: int, data: bytes) -> None:
    m.physmem.write(addr - PAGE_OFFSET, data)


def mem_set(m: Any, addr: int, val: int, n: int) -> None:
    if n > 0:
        m.physmem.write(addr - PAGE_OFFSET, bytes((val,)) * n)


def set_freepointer(s: KmemCache, obj: int, fp: int) -> None:
    """Store the (hardened) free pointer ``fp`` in ``obj``."""
    fpa = obj + s.offset
    s.machine.slab_qv[(fpa - PAGE_OFFSET) >> PAGE_SHIFT][(fpa & 4095) >> 3] = \
        fp ^ s.random ^ fpa


def get_freepointer(s: KmemCache, obj: int) -> int:
    fpa = obj + s.offset
    qv = s.machine.slab_qv.get((fpa - PAGE_OFFSET) >> PAGE_SHIFT)
    if qv is None:
        return 0
    return qv[(fpa & 4095) >> 3] ^ s.random ^ fpa


def build_freelist_bytes(s: KmemCache, objs: list[int]) -> None:
    """Write the chain for a list whose last element is the head: each points to the one
    before it, the first to NULL."""
    prev = 0
    for o in objs:
        set_freepointer(s, o, prev)
        prev = o


# ---------------------------------------------------------------------------------------
# Slab pages


def slab_pgdat_stat(s: KmemCache) -> int:
    return _NR_SLAB_RECLAIMABLE if s.flags & SLAB_RECLAIM_ACCOUNT else _NR_SLAB_UNRECLAIMABLE


def alloc_slab_page(flags: int, node: int, order: int) -> int | None:
    if node == NUMA_NO_NODE:
        return page_alloc.alloc_pages(flags, order)
    return page_alloc.alloc_pages_node(node, flags, order)


@kfunc
def allocate_slab(s: KmemCache, flags: int, node: int) -> Slab | None:
    """Pages for a new slab: ``s->oo`` first (no retry, no warning), then ``s->min``."""
    m = s.machine
    flags = (flags & ~(__GFP_ZERO | __GFP_ACCOUNT)) | s.allocflags
    order, objects = s.oo
    alloc_gfp = (flags | __GFP_NOWARN | __GFP_NORETRY) & ~__GFP_NOFAIL
    if order > s.min[0]:
        alloc_gfp &= ~__GFP_DIRECT_RECLAIM
    pfn = alloc_slab_page(alloc_gfp, node, order)
    if pfn is None:
        order, objects = s.min
        pfn = alloc_slab_page(flags, node, order)
        if pfn is None:
            return None
        s.stats["ORDER_FALLBACK"] = s.stats.get("ORDER_FALLBACK", 0) + 1
    zone = m.pfn_zone(pfn)
    slab = Slab(s, pfn, order, objects, zone.node if zone is not None else 0)
    mm = m.mem_map
    mm._mapcount[pfn] = _SLAB_MAPCOUNT  # __folio_set_slab
    pm = m.physmem
    pages = pm.pages
    qv = m.slab_qv
    sp = m.slab_pages
    for p in range(pfn, pfn + (1 << order)):
        pg = pages.get(p)
        if pg is None:
            pg = pm.new_page(p)
        qv[p] = memoryview(pg).cast("Q")
        sp[p] = slab
    m.node_data[slab.node].vm_stat[slab_pgdat_stat(s)] += 1 << order
    # setup_slab_debug + kasan_poison_slab + setup_object for each object
    if s.flags & SLAB_POISON:
        mem_set(m, slab.s_mem, POISON_INUSE, PAGE_SIZE << order)
    if m.kasan is not None:
        m.kasan.poison_slab(s, slab)
    start = slab.s_mem + s.red_left_pad
    objs = [start + i * s.size for i in range(objects)]
    for o in objs:
        setup_object(s, o)
    objs.reverse()  # the first object is the head
    slab.freelist = objs
    build_freelist_bytes(s, objs)
    return slab


def setup_object(s: KmemCache, obj: int) -> None:
    if s.debug:
        setup_object_debug(s, obj)
    m = s.machine
    if m.kasan is not None:
        m.kasan.init_slab_obj(s, obj)
    if s.ctor is not None:
        if m.kasan is not None:
            m.kasan.unpoison_object_data(s, obj)
            s.ctor(obj)
            m.kasan.poison_object_data(s, obj)
        else:
            s.ctor(obj)


@kfunc
def new_slab(s: KmemCache, flags: int, node: int) -> Slab | None:
    return allocate_slab(s, flags & ~__GFP_ZERO, node)


@kfunc(aliases=("__free_slab",))
def free_slab(s: KmemCache, slab: Slab) -> None:
    m = s.machine
    if s.debug and s.flags & SLAB_CONSISTENCY_CHECKS:
        slab_pad_check(s, slab)
    pfn, order = slab.pfn, slab.order
    qv = m.slab_qv
    sp = m.slab_pages
    for p in range(pfn, pfn + (1 << order)):
        v = qv.pop(p, None)
        if v is not None:
            v.release()
        sp.pop(p, None)
    m.mem_map._mapcount[pfn] = -1  # __folio_clear_slab
    m.node_data[slab.node].vm_stat[slab_pgdat_stat(s)] -= 1 << order
    slab.on_list = ON_NONE
    slab.freelist = []
    if m.kasan is not None:
        m.kasan.free_slab_pages(pfn, order)
    page_alloc.__free_pages(pfn, order)


@kfunc
def discard_slab(s: KmemCache, slab: Slab) -> None:
    n = s.node[slab.node]
    n.nr_slabs -= 1
    n.total_objects -= slab.objects
    free_slab(s, slab)


def add_partial(n: KmemCacheNode, slab: Slab, tail: bool) -> None:
    if tail:
        n.partial.append(slab)
    else:
        n.partial.insert(0, slab)
    slab.on_list = ON_PARTIAL
    slab.cpu = -1


def remove_partial(n: KmemCacheNode, slab: Slab) -> None:
    n.partial.remove(slab)
    slab.on_list = ON_NONE


def add_full(s: KmemCache, n: KmemCacheNode, slab: Slab) -> None:
    if s.flags & SLAB_STORE_USER:
        n.full.append(slab)
        slab.on_list = ON_FULL


def remove_full(s: KmemCache, n: KmemCacheNode, slab: Slab) -> None:
    if s.flags & SLAB_STORE_USER and slab.on_list == ON_FULL:
        n.full.remove(slab)
        slab.on_list = ON_NONE


def stat(s: KmemCache, item: str) -> None:
    st = s.stats
    st[item] = st.get(item, 0) + 1


# ---------------------------------------------------------------------------------------
# Allocation


def node_match(slab: Slab, node: int) -> bool:
    return node == NUMA_NO_NODE or slab.node == node


def get_freelist(slab: Slab) -> list[int]:
    """Take the slab's free list for the CPU (the slab stays/becomes frozen)."""
    fl = slab.freelist
    slab.freelist = []
    slab.inuse = slab.objects
    slab.frozen = 1
    return fl


def put_cpu_partial(s: KmemCache, slab: Slab, drain: bool) -> None:
    m = s.machine
    c = s.cpu_slab[m.cpu]
    to_put: list[Slab] = []
    if c.partial and drain and len(c.partial) >= s.cpu_partial_slabs:
        to_put = c.partial
        c.partial = []
    c.partial.append(slab)
    slab.on_list = ON_CPU_PARTIAL
    slab.cpu = m.cpu
    if to_put:
        __put_partials(s, to_put)
        stat(s, "CPU_PARTIAL_DRAIN")


def __put_partials(s: KmemCache, slabs: list[Slab]) -> None:
    discard: list[Slab] = []
    for slab in reversed(slabs):  # the list head first
        n = s.node[slab.node]
        slab.on_list = ON_NONE
        if not slab.inuse and n.nr_partial >= s.min_partial:
            discard.append(slab)
        else:
            add_partial(n, slab, True)
            stat(s, "FREE_ADD_PARTIAL")
    for slab in discard:
        stat(s, "DEACTIVATE_EMPTY")
        discard_slab(s, slab)
        stat(s, "FREE_SLAB")


def get_partial_node(s: KmemCache, n: KmemCacheNode, gfpflags: int,
                     orig_size: int) -> tuple[Slab | None, int]:
    """Take slabs from a node's partial list: one for the CPU (or, for a debug cache, one
    object), and more for the CPU partial list up to ``cpu_partial_slabs / 2``."""
    if not n.partial:
        return None, 0
    partial = None
    partial_slabs = 0
    for slab in list(n.partial):
        if s.debug:
            obj = alloc_single_from_partial(s, n, slab, orig_size)
            if obj:
                return slab, obj
            continue
        remove_partial(n, slab)
        if partial is None:
            partial = slab
            stat(s, "ALLOC_FROM_PARTIAL")
            if s.cpu_partial_slabs == 0:
                break
        else:
            put_cpu_partial(s, slab, False)
            stat(s, "CPU_PARTIAL_NODE")
            partial_slabs += 1
            if partial_slabs > s.cpu_partial_slabs // 2:
                break
    return partial, 0


def get_partial(s: KmemCache, node: int, gfpflags: int, orig_size: int) -> tuple[Slab | None, int]:
    m = s.machine
    searchnode = m.numa_node_id() if node == NUMA_NO_NODE else node
    slab, obj = get_partial_node(s, s.node[searchnode], gfpflags, orig_size)
    if slab is not None or (node != NUMA_NO_NODE and gfpflags & __GFP_THISNODE):
        return slab, obj
    # get_any_partial: other nodes, only those with more than min_partial slabs
    for nid, n in enumerate(s.node):
        if nid != searchnode and n.nr_partial > s.min_partial:
            slab, obj = get_partial_node(s, n, gfpflags, orig_size)
            if slab is not None:
                return slab, obj
    return None, 0


def alloc_single_from_partial(s: KmemCache, n: KmemCacheNode, slab: Slab, orig_size: int) -> int:
    obj = slab.freelist.pop()
    slab.inuse += 1
    if not alloc_debug_processing(s, slab, obj, orig_size):
        if slab.on_list == ON_PARTIAL:
            remove_partial(n, slab)
        return 0
    if slab.inuse == slab.objects:
        remove_partial(n, slab)
        add_full(s, n, slab)
    return obj


def alloc_single_from_new_slab(s: KmemCache, slab: Slab, orig_size: int) -> int:
    n = s.node[slab.node]
    obj = slab.freelist.pop()
    slab.inuse = 1
    if not alloc_debug_processing(s, slab, obj, orig_size):
        return 0
    if slab.inuse == slab.objects:
        add_full(s, n, slab)
    else:
        add_partial(n, slab, False)
    n.nr_slabs += 1
    n.total_objects += slab.objects
    return obj


def deactivate_slab(s: KmemCache, slab: Slab, freelist: list[int]) -> None:
    """Give a CPU slab back to its node, splicing the CPU freelist to its free list."""
    n = s.node[slab.node]
    tail = False
    if slab.freelist:
        stat(s, "DEACTIVATE_REMOTE_FREES")
        tail = True
    if freelist:
        set_freepointer(s, freelist[0], slab.freelist[-1] if slab.freelist else 0)
        slab.freelist = slab.freelist + freelist
        slab.inuse -= len(freelist)
    slab.frozen = 0
    slab.cpu = -1
    slab.on_list = ON_NONE
    if not slab.inuse and n.nr_partial >= s.min_partial:
        stat(s, "DEACTIVATE_EMPTY")
        discard_slab(s, slab)
        stat(s, "FREE_SLAB")
    elif slab.freelist:
        add_partial(n, slab, tail)
        stat(s, "DEACTIVATE_TO_TAIL" if tail else "DEACTIVATE_TO_HEAD")
    else:
        stat(s, "DEACTIVATE_FULL")


@kfunc
def ___slab_alloc(s: KmemCache, gfpflags: int, node: int, addr: int, c: KmemCacheCpu,
                  orig_size: int) -> int:
    """The slow path: refill the CPU freelist, or take a partial slab, or a new one."""
    m = s.machine
    slab = c.slab
    if slab is not None:
        if not node_match(slab, node):
            stat(s, "ALLOC_NODE_MISMATCH")
            fl = c.freelist
            c.slab = None
            c.freelist = []
            deactivate_slab(s, slab, fl)
        else:
            if c.freelist:
                return _load_freelist(s, c)
            fl = get_freelist(slab)
            if fl:
                stat(s, "ALLOC_REFILL")
                c.freelist = fl
                return _load_freelist(s, c)
            c.slab = None  # full: it is on no list now
            slab.frozen = 0
            slab.cpu = -1
            stat(s, "DEACTIVATE_BYPASS")
    # new_slab: the per-CPU partial list
    while c.partial:
        slab = c.partial.pop()
        if node_match(slab, node):
            c.slab = slab
            slab.on_list = ON_NONE
            slab.cpu = m.cpu
            c.freelist = get_freelist(slab)
            stat(s, "CPU_PARTIAL_ALLOC")
            return _load_freelist(s, c)
        __put_partials(s, [slab])
    while True:
        slab, obj = get_partial(s, node, gfpflags, orig_size)
        if slab is not None:
            if s.debug:
                if s.flags & SLAB_STORE_USER:
                    set_track(s, obj, TRACK_ALLOC, addr)
                return obj
            fl = get_freelist(slab)
            break
        slab = new_slab(s, gfpflags, node)
        if slab is None:
            slab_out_of_memory(s, gfpflags, node)
            return 0
        stat(s, "ALLOC_SLAB")
        if s.debug:
            obj = alloc_single_from_new_slab(s, slab, orig_size)
            if not obj:
                continue
            if s.flags & SLAB_STORE_USER:
                set_track(s, obj, TRACK_ALLOC, addr)
            return obj
        n = s.node[slab.node]
        n.nr_slabs += 1
        n.total_objects += slab.objects
        fl = get_freelist(slab)
        break
    if c.slab is not None:
        old, oldfl = c.slab, c.freelist
        c.slab = None
        c.freelist = []
        deactivate_slab(s, old, oldfl)
        stat(s, "CPUSLAB_FLUSH")
    c.slab = slab
    slab.cpu = m.cpu
    c.freelist = fl
    return _load_freelist(s, c)


def _load_freelist(s: KmemCache, c: KmemCacheCpu) -> int:
    c.tid += 1
    return c.freelist.pop()


def __slab_alloc(s: KmemCache, gfpflags: int, node: int, addr: int, c: KmemCacheCpu,
                 orig_size: int) -> int:
    return ___slab_alloc(s, gfpflags, node, addr, c, orig_size)


def slab_out_of_memory(s: KmemCache, gfpflags: int, nid: int) -> None:
    m = s.machine
    if gfpflags & __GFP_NOWARN:
        return
    m.printk(f"SLUB: Unable to allocate memory on CPU {m.cpu} (of node {m.numa_node_id()}) "
             f"on node {nid}, gfp={gfpflags:#x}({format_gfp(gfpflags)})", level=4)
    m.printk(f"  cache: {s.name}, object size: {s.object_size}, buffer size: {s.size}, "
             f"default order: {s.oo[0]}, min order: {s.min[0]}", level=4)
    for nid2, n in enumerate(s.node):
        nfree = sum(sl.objects - sl.inuse for sl in n.partial)
        m.printk(f"  node {nid2}: slabs: {n.nr_slabs}, objs: {n.total_objects}, free: {nfree}",
                 level=4)


@kfunc
def slab_alloc_node(s: KmemCache, gfpflags: int, node: int, addr: int, orig_size: int) -> int:
    """Allocate one object: KFENCE sampling, the CPU freelist, the slow path, the hooks."""
    m = s.machine
    obj = 0
    if m.kfence is not None:
        obj = m.kfence.kfence_alloc(s, orig_size, gfpflags)
        if obj:
            return slab_post_alloc_hook(s, gfpflags, obj, orig_size, kfence=True)
    c = s.cpu_slab[m.cpu]
    fl = c.freelist
    if fl and c.slab is not None and (node == NUMA_NO_NODE or c.slab.node == node):
        obj = fl.pop()
        c.tid += 1
    else:
        obj = ___slab_alloc(s, gfpflags, node, addr, c, orig_size)
        if not obj:
            return 0
    return slab_post_alloc_hook(s, gfpflags, obj, orig_size)


@kfunc
def slab_post_alloc_hook(s: KmemCache, flags: int, obj: int, orig_size: int,
                         kfence: bool = False) -> int:
    m = s.machine
    if flags & __GFP_ZERO and not kfence:
        mem_set(m, obj, 0, s.object_size)
    if m.kasan is not None and not kfence:
        m.kasan.kasan_slab_alloc(s, obj, flags)
    if m.kmemleak is not None and not s.flags & SLAB_NOLEAKTRACE:
        m.kmemleak.kmemleak_alloc(obj, s.object_size, 1, flags)
    if (flags & __GFP_ACCOUNT or s.flags & SLAB_ACCOUNT) and not \
            m.hooks.memcg_slab_post_alloc_hook(s, flags, obj):
        slab_free(s, m.slab_pages.get((obj - PAGE_OFFSET) >> PAGE_SHIFT), obj, 0)
        return 0
    return obj


# ---------------------------------------------------------------------------------------
# Freeing


@kfunc
def slab_free_hook(s: KmemCache, x: int, init: bool) -> bool:
    """False: the object is not to be freed now (KASAN quarantine, or a reported bug)."""
    m = s.machine
    if m.kmemleak is not None and not s.flags & SLAB_NOLEAKTRACE:
        m.kmemleak.kmemleak_free(x)
    if (s.flags & SLAB_ACCOUNT) or m.slab_hooked:
        m.hooks.memcg_slab_free_hook(s, x)
    if m.kasan is not None:
        return not m.kasan.kasan_slab_free(s, x, init)
    return True


@kfunc
def slab_free(s: KmemCache, slab: Slab | None, x: int, addr: int) -> None:
    m = s.machine
    if slab is None:
        return
    if m.kfence is not None and m.kfence.is_kfence_address(x):
        m.kfence.kfence_free(x)
        return
    if not s.fast and not slab_free_hook(s, x, False):
        return
    do_slab_free(s, slab, x, x, 1, addr)


@kfunc
def do_slab_free(s: KmemCache, slab: Slab, head: int, tail: int, cnt: int, addr: int) -> None:
    m = s.machine
    c = s.cpu_slab[m.cpu]
    if slab is c.slab and not s.debug:
        fl = c.freelist
        if fl and fl[-1] == head:
            freelist_double_free(s, head)
            return
        set_freepointer(s, head, fl[-1] if fl else 0)
        fl.append(head)
        c.tid += 1
        return
    __slab_free(s, slab, head, tail, cnt, addr)


def freelist_double_free(s: KmemCache, obj: int) -> None:
    """CONFIG_SLAB_FREELIST_HARDENED's BUG_ON(object == fp) in set_freepointer()."""
    m = s.machine
    m.printk("------------[ cut here ]------------", level=KERN_ERR)
    m.printk("kernel BUG at mm/slub.c:475!", level=KERN_ERR)
    m.printk("Oops: invalid opcode: 0000 [#1] SMP NOPTI", level=4)
    m.add_taint("D")
    m.dump_stack()
    _panic(m, "kernel BUG: double free (naive detection)")


@kfunc
def __slab_free(s: KmemCache, slab: Slab, head: int, tail: int, cnt: int, addr: int) -> None:
    if s.debug:
        free_to_partial_list(s, slab, head, tail, cnt, addr)
        return
    if head in slab.freelist:  # the kernel would silently corrupt the chain; refuse
        freelist_double_free(s, head)
        return
    prior = bool(slab.freelist)
    set_freepointer(s, tail, slab.freelist[-1] if slab.freelist else 0)
    slab.freelist.append(head)
    slab.inuse -= cnt
    was_frozen = slab.frozen
    if was_frozen:
        stat(s, "FREE_FROZEN")
        return
    if not prior:
        # a full slab got a free object: onto this CPU's partial list
        put_cpu_partial(s, slab, True)
        stat(s, "CPU_PARTIAL_FREE")
        return
    if slab.on_list != ON_PARTIAL:
        return  # on some CPU's partial list
    n = s.node[slab.node]
    if not slab.inuse and n.nr_partial >= s.min_partial:
        remove_partial(n, slab)
        stat(s, "FREE_REMOVE_PARTIAL")
        stat(s, "FREE_SLAB")
        discard_slab(s, slab)


@kfunc
def free_to_partial_list(s: KmemCache, slab: Slab, head: int, tail: int, cnt: int,
                         addr: int) -> None:
    n = s.node[slab.node]
    handle = set_track_prepare(s) if s.flags & SLAB_STORE_USER else 0
    slab_free_ = None
    if free_debug_processing(s, slab, head, addr, handle):
        prior = bool(slab.freelist)
        slab.inuse -= cnt
        set_freepointer(s, tail, slab.freelist[-1] if slab.freelist else 0)
        slab.freelist.append(head)
        if slab.inuse == 0 and n.nr_partial >= s.min_partial:
            slab_free_ = slab
        if not prior:
            remove_full(s, n, slab)
            if slab_free_ is None:
                add_partial(n, slab, True)
                stat(s, "FREE_ADD_PARTIAL")
        elif slab_free_ is not None:
            remove_partial(n, slab)
            stat(s, "FREE_REMOVE_PARTIAL")
    if slab_free_ is not None:
        stat(s, "FREE_SLAB")
        n.nr_slabs -= 1
        n.total_objects -= slab.objects
        free_slab(s, slab)


# ---------------------------------------------------------------------------------------
# Flushing, shrinking, destroying


def flush_slab(s: KmemCache, c: KmemCacheCpu) -> None:
    slab = c.slab
    if slab is None:
        return
    fl = c.freelist
    c.slab = None
    c.freelist = []
    deactivate_slab(s, slab, fl)
    stat(s, "CPUSLAB_FLUSH")


@kfunc
def flush_cpu_slab(s: KmemCache, cpu: int) -> None:
    c = s.cpu_slab[cpu]
    flush_slab(s, c)
    if c.partial:
        parts = c.partial
        c.partial = []
        __put_partials(s, parts)


@kfunc
def flush_all(s: KmemCache) -> None:
    for cpu in range(len(s.cpu_slab)):
        flush_cpu_slab(s, cpu)


@kfunc(name="__kmem_cache_shrink")
def __kmem_cache_shrink(s: KmemCache) -> int:
    """Discard empty slabs and sort the partial lists fullest first."""
    flush_all(s)
    if s.machine.kasan is not None:
        s.machine.kasan.quarantine_remove_cache(s)
    ret = 0
    for n in s.node:
        empty = [sl for sl in n.partial if sl.inuse == 0]
        for sl in empty:
            remove_partial(n, sl)
            discard_slab(s, sl)
        rest = sorted(n.partial, key=lambda sl: -sl.inuse)
        n.partial = rest
        if n.nr_slabs:
            ret = 1
    return ret


@kfunc
def __kmem_cache_shutdown(s: KmemCache) -> int:
    """Free every slab; 1 when objects remain (reported as the kernel does)."""
    m = s.machine
    flush_all(s)
    if m.kasan is not None:
        m.kasan.quarantine_remove_cache(s)
    busy = 0
    for n in s.node:
        for sl in list(n.partial):
            if not sl.inuse:
                remove_partial(n, sl)
                discard_slab(s, sl)
            else:
                list_slab_objects(s, sl)
        for sl in list(n.full):
            list_slab_objects(s, sl)
        if n.nr_slabs:
            busy = 1
    return busy


def list_slab_objects(s: KmemCache, slab: Slab) -> None:
    m = s.machine
    slab_bug(s, "Objects remaining on __kmem_cache_shutdown()")
    print_slab_info(s, slab)
    free = set(slab.freelist)
    for i in range(slab.objects):
        p = slab.s_mem + i * s.size + s.red_left_pad
        if p not in free:
            m.printk(f"Object 0x{p:016x} @offset={p - slab.s_mem}", level=KERN_ERR)
            print_tracking(s, p)


# ---------------------------------------------------------------------------------------
# Debugging (SLAB_CONSISTENCY_CHECKS, SLAB_RED_ZONE, SLAB_POISON, SLAB_STORE_USER, SLAB_TRACE)


def hex_dump_lines(prefix: str, addr: int, data: bytes) -> list[str]:
    """print_hex_dump(DUMP_PREFIX_ADDRESS, rowsize 16, groupsize 1, ascii)."""
    out = []
    for i in range(0, len(data), 16):
        row = data[i:i + 16]
        hx = " ".join(f"{b:02x}" for b in row)
        asc = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        out.append(f"{prefix}{addr + i:016x}: {hx.ljust(49)}{asc}")
    return out


def print_section(s: KmemCache, text: str, addr: int, length: int, level: int = KERN_ERR) -> None:
    m = s.machine
    for line in hex_dump_lines(text, addr, mem_read(m, addr, length)):
        m.printk(line, level=level)


def _track_addr(s: KmemCache, obj: int, which: int) -> int:
    return obj + get_info_end(s) + which * TRACK_SIZE


def set_track_prepare(s: KmemCache) -> int:
    return stackdepot.depot(s.machine).save(stackdepot.save_stack(SLAB_INTERNAL))


def set_track(s: KmemCache, obj: int, which: int, addr: int, handle: int = 0) -> None:
    """struct track { addr; handle; cpu; pid; when } written into the object's metadata."""
    m = s.machine
    if not handle:
        handle = set_track_prepare(s)
    if not addr:
        st = stackdepot.depot(m).fetch(handle)
        addr = stackdepot.frame_addr(st[0]) if st else 0
    t = m.current
    rec = (addr.to_bytes(8, "little") + handle.to_bytes(4, "little")
           + m.cpu.to_bytes(4, "little") + (t.pid if t else 0).to_bytes(4, "little")
           + bytes(4) + m.clock.jiffies.to_bytes(8, "little"))
    mem_write(m, _track_addr(s, obj, which), rec)


def get_track(s: KmemCache, obj: int, which: int) -> dict[str, int]:
    raw = mem_read(s.machine, _track_addr(s, obj, which), TRACK_SIZE)
    return {"addr": int.from_bytes(raw[0:8], "little"),
            "handle": int.from_bytes(raw[8:12], "little"),
            "cpu": int.from_bytes(raw[12:16], "little"),
            "pid": int.from_bytes(raw[16:20], "little"),
            "when": int.from_bytes(raw[24:32], "little")}


def init_tracking(s: KmemCache, obj: int) -> None:
    if s.flags & SLAB_STORE_USER:
        mem_set(s.machine, _track_addr(s, obj, TRACK_ALLOC), 0, 2 * TRACK_SIZE)


def print_track(s: KmemCache, what: str, t: dict[str, int], pr_time: int) -> None:
    m = s.machine
    if not t["addr"]:
        return
    m.printk(f"{what} in {stackdepot.lookup_symbol(t['addr'])} age={pr_time - t['when']} "
             f"cpu={t['cpu']} pid={t['pid']}", level=KERN_ERR)
    if t["handle"]:
        for line in stackdepot.depot(m).print_lines(t["handle"]):
            m.printk(line, level=KERN_ERR)
    else:
        m.printk("object allocation/free stack trace missing", level=KERN_ERR)


def print_tracking(s: KmemCache, obj: int) -> None:
    if not s.flags & SLAB_STORE_USER:
        return
    now = s.machine.clock.jiffies
    print_track(s, "Allocated", get_track(s, obj, TRACK_ALLOC), now)
    print_track(s, "Freed", get_track(s, obj, TRACK_FREE), now)


def print_slab_info(s: KmemCache, slab: Slab) -> None:
    from mmdbg.sim.mm.show_mem import format_page_flags, page_flags_word

    m = s.machine
    fp = slab.freelist[-1] if slab.freelist else 0
    m.printk(f"Slab 0x{slab.addr:016x} objects={slab.objects} used={slab.inuse} "
             f"fp=0x{fp:016x} flags={format_page_flags(page_flags_word(m, slab.pfn))}",
             level=KERN_ERR)


def slab_bug(s: KmemCache | None, text: str) -> None:
    m = s.machine if s is not None else _trace._current
    m.printk("=" * 77, level=KERN_ERR)
    m.printk(f"BUG {s.name if s else '<unknown>'} ({m.taint_string()}): {text}", level=KERN_ERR)
    m.printk("-" * 77, level=KERN_ERR)
    m.printk("", level=KERN_ERR)


def slab_fix(s: KmemCache, text: str) -> None:
    s.machine.printk(f"FIX {s.name}: {text}", level=KERN_ERR)


def print_trailer(s: KmemCache, slab: Slab, p: int) -> None:
    m = s.machine
    print_tracking(s, p)
    print_slab_info(s, slab)
    m.printk(f"Object 0x{p:016x} @offset={p - slab.s_mem} fp=0x{get_freepointer(s, p):016x}",
             level=KERN_ERR)
    m.printk("", level=KERN_ERR)
    if s.flags & SLAB_RED_ZONE:
        print_section(s, "Redzone  ", p - s.red_left_pad, s.red_left_pad)
    elif p > slab.s_mem + 16:
        print_section(s, "Bytes b4 ", p - 16, 16)
    print_section(s, "Object   ", p, min(s.object_size, PAGE_SIZE))
    if s.flags & SLAB_RED_ZONE:
        print_section(s, "Redzone  ", p + s.object_size, s.inuse - s.object_size)
    off = get_info_end(s)
    if s.flags & SLAB_STORE_USER:
        off += 2 * TRACK_SIZE
    if slub_debug_orig_size(s):
        off += 4
    off += kasan_metadata_size(s, False)
    if off != size_from_object(s):
        print_section(s, "Padding  ", p + off, size_from_object(s) - off)


def object_err(s: KmemCache, slab: Slab, obj: int, reason: str) -> None:
    m = s.machine
    slab_bug(s, reason)
    if not obj or not check_valid_pointer(s, slab, obj):
        print_slab_info(s, slab)
        m.printk(f"Invalid pointer 0x{obj:016x}", level=KERN_ERR)
    else:
        print_trailer(s, slab, obj)
    m.add_taint("B")
    m.warn_on()
    m.slab_errors += 1


def slab_err(s: KmemCache, slab: Slab, text: str) -> None:
    m = s.machine
    slab_bug(s, text)
    print_slab_info(s, slab)
    m.add_taint("B")
    m.warn_on()
    m.slab_errors += 1


def init_object(s: KmemCache, obj: int, val: int) -> None:
    m = s.machine
    poison_size = s.object_size
    if s.flags & SLAB_RED_ZONE:
        mem_set(m, obj - s.red_left_pad, val, s.red_left_pad)
        if slub_debug_orig_size(s) and val == SLUB_RED_ACTIVE:
            poison_size = get_orig_size(s, obj)
    if s.flags & __OBJECT_POISON:
        mem_set(m, obj, POISON_FREE, poison_size - 1)
        mem_set(m, obj + poison_size - 1, POISON_END, 1)
    if s.flags & SLAB_RED_ZONE:
        mem_set(m, obj + poison_size, val, s.inuse - poison_size)


def _orig_size_addr(s: KmemCache, obj: int) -> int:
    return obj + get_info_end(s) + 2 * TRACK_SIZE


def set_orig_size(s: KmemCache, obj: int, orig_size: int) -> None:
    if slub_debug_orig_size(s):
        mem_write(s.machine, _orig_size_addr(s, obj), orig_size.to_bytes(4, "little"))


def get_orig_size(s: KmemCache, obj: int) -> int:
    if not slub_debug_orig_size(s):
        return s.object_size
    return int.from_bytes(mem_read(s.machine, _orig_size_addr(s, obj), 4), "little")


def check_bytes_and_report(s: KmemCache, slab: Slab, obj: int, what: str, start: int,
                           value: int, nbytes: int, slab_obj_print: bool) -> bool:
    m = s.machine
    if nbytes <= 0:
        return True
    data = mem_read(m, start, nbytes)
    fault = next((i for i, b in enumerate(data) if b != value), -1)
    if fault < 0:
        return True
    end = nbytes
    while end > fault and data[end - 1] == value:
        end -= 1
    m.printk(f"[{what} overwritten] 0x{start + fault:016x}-0x{start + end - 1:016x} "
             f"@offset={start + fault - slab.s_mem}. First byte 0x{data[fault]:x} instead of "
             f"0x{value:x}", level=KERN_ERR)
    if slab_obj_print:
        object_err(s, slab, obj, "Object corrupt")
    slab_fix(s, f"Restoring {what} 0x{start + fault:016x}-0x{start + end - 1:016x}=0x{value:x}")
    mem_set(m, start + fault, value, end - fault)
    return False


def check_pad_bytes(s: KmemCache, slab: Slab, p: int) -> bool:
    off = get_info_end(s)
    if s.flags & SLAB_STORE_USER:
        off += 2 * TRACK_SIZE
        if s.flags & SLAB_KMALLOC:
            off += 4
    off += kasan_metadata_size(s, False)
    if size_from_object(s) == off:
        return True
    return check_bytes_and_report(s, slab, p, "Object padding", p + off, POISON_INUSE,
                                  size_from_object(s) - off, True)


def slab_pad_check(s: KmemCache, slab: Slab) -> None:
    if not s.flags & SLAB_POISON:
        return
    m = s.machine
    length = PAGE_SIZE << slab.order
    remainder = length % s.size
    if not remainder:
        return
    pad = slab.s_mem + length - remainder
    data = mem_read(m, pad, remainder)
    fault = next((i for i, b in enumerate(data) if b != POISON_INUSE), -1)
    if fault < 0:
        return
    end = remainder
    while end > fault and data[end - 1] == POISON_INUSE:
        end -= 1
    slab_bug(s, f"Padding overwritten. 0x{pad + fault:016x}-0x{pad + end - 1:016x} "
                f"@offset={pad + fault - slab.s_mem}")
    print_section(s, "Padding ", pad, remainder)
    print_slab_info(s, slab)
    m.add_taint("B")
    m.warn_on()
    m.slab_errors += 1
    slab_fix(s, f"Restoring slab padding 0x{pad + fault:016x}-0x{pad + end - 1:016x}"
                f"=0x{POISON_INUSE:x}")
    mem_set(m, pad + fault, POISON_INUSE, end - fault)


def check_object(s: KmemCache, slab: Slab, obj: int, val: int) -> bool:
    p = obj
    endobject = obj + s.object_size
    ret = True
    if s.flags & SLAB_RED_ZONE:
        if not check_bytes_and_report(s, slab, obj, "Left Redzone", obj - s.red_left_pad, val,
                                      s.red_left_pad, ret):
            ret = False
        if not check_bytes_and_report(s, slab, obj, "Right Redzone", endobject, val,
                                      s.inuse - s.object_size, ret):
            ret = False
        if slub_debug_orig_size(s) and val == SLUB_RED_ACTIVE:
            orig = get_orig_size(s, obj)
            if s.object_size > orig and not check_bytes_and_report(
                    s, slab, obj, "kmalloc Redzone", p + orig, val, s.object_size - orig, ret):
                ret = False
    elif s.flags & SLAB_POISON and s.object_size < s.inuse:
        if not check_bytes_and_report(s, slab, p, "Alignment padding", endobject, POISON_INUSE,
                                      s.inuse - s.object_size, ret):
            ret = False
    if s.flags & SLAB_POISON:
        if val != SLUB_RED_ACTIVE and s.flags & __OBJECT_POISON:
            kms = kasan_metadata_size(s, True)
            if kms < s.object_size - 1 and not check_bytes_and_report(
                    s, slab, p, "Poison", p + kms, POISON_FREE, s.object_size - kms - 1, ret):
                ret = False
            if kms < s.object_size and not check_bytes_and_report(
                    s, slab, p, "End Poison", p + s.object_size - 1, POISON_END, 1, ret):
                ret = False
        if not check_pad_bytes(s, slab, p):
            ret = False
    if (freeptr_outside_object(s) or val != SLUB_RED_ACTIVE) and \
            not check_valid_pointer(s, slab, get_freepointer(s, p)):
        object_err(s, slab, p, "Freepointer corrupt")
        set_freepointer(s, p, 0)
        ret = False
    return ret


def check_slab(s: KmemCache, slab: Slab) -> bool:
    maxobj = order_objects(slab.order, s.size)
    if slab.objects > maxobj:
        slab_err(s, slab, f"objects {slab.objects} > max {maxobj}")
        return False
    if slab.inuse > slab.objects:
        slab_err(s, slab, f"inuse {slab.inuse} > max {slab.objects}")
        return False
    slab_pad_check(s, slab)
    return True


def on_freelist(s: KmemCache, slab: Slab, search: int) -> bool:
    """Is ``search`` on the slab's free list?  Walks the chain in memory, as the kernel."""
    nr = 0
    obj = 0
    fp = slab.freelist[-1] if slab.freelist else 0
    while fp and nr <= slab.objects:
        if fp == search:
            return True
        if not check_valid_pointer(s, slab, fp):
            if obj:
                object_err(s, slab, obj, "Freechain corrupt")
                set_freepointer(s, obj, 0)
                idx = slab.freelist.index(obj) if obj in slab.freelist else 0
                slab.freelist = slab.freelist[idx:]
            else:
                slab_err(s, slab, "Freepointer corrupt")
                slab.freelist = []
                slab.inuse = slab.objects
                slab_fix(s, "Freelist cleared")
                return False
            break
        obj = fp
        fp = get_freepointer(s, obj)
        nr += 1
    if slab.inuse != slab.objects - nr:
        slab_err(s, slab, f"Wrong object count. Counter is {slab.inuse} but counted were "
                          f"{slab.objects - nr}")
        slab.inuse = slab.objects - nr
        slab_fix(s, "Object count adjusted")
    return search == 0


def trace_obj(s: KmemCache, slab: Slab, obj: int, alloc: bool) -> None:
    if s.flags & SLAB_TRACE:
        m = s.machine
        fp = slab.freelist[-1] if slab.freelist else 0
        m.printk(f"TRACE {s.name} {'alloc' if alloc else 'free'} 0x{obj:016x} "
                 f"inuse={slab.inuse} fp=0x{fp:016x}", level=KERN_INFO)
        if not alloc:
            print_section(s, "Object ", obj, s.object_size, level=KERN_INFO)
        m.dump_stack()


def setup_object_debug(s: KmemCache, obj: int) -> None:
    if not s.flags & (SLAB_STORE_USER | SLAB_RED_ZONE | __OBJECT_POISON):
        return
    init_object(s, obj, SLUB_RED_INACTIVE)
    init_tracking(s, obj)


@kfunc
def alloc_debug_processing(s: KmemCache, slab: Slab, obj: int, orig_size: int) -> bool:
    if s.flags & SLAB_CONSISTENCY_CHECKS:
        ok = check_slab(s, slab)
        if ok and not check_valid_pointer(s, slab, obj):
            object_err(s, slab, obj, "Freelist Pointer check fails")
            ok = False
        if ok and not check_object(s, slab, obj, SLUB_RED_INACTIVE):
            ok = False
        if not ok:
            slab_fix(s, "Marking all objects used")
            slab.inuse = slab.objects
            slab.freelist = []
            slab.frozen = 1
            return False
    trace_obj(s, slab, obj, True)
    set_orig_size(s, obj, orig_size)
    init_object(s, obj, SLUB_RED_ACTIVE)
    return True


@kfunc
def free_debug_processing(s: KmemCache, slab: Slab, obj: int, addr: int, handle: int) -> bool:
    ok = True
    if s.flags & SLAB_CONSISTENCY_CHECKS:
        ok = check_slab(s, slab)
        if ok and slab.inuse < 1:
            slab_err(s, slab, f"Slab has {slab.inuse} allocated objects but 1 are to be freed")
            ok = False
        if ok:
            if not check_valid_pointer(s, slab, obj):
                slab_err(s, slab, f"Invalid object pointer 0x{obj:016x}")
                ok = False
            elif on_freelist(s, slab, obj):
                object_err(s, slab, obj, "Object already free")
                ok = False
            elif not check_object(s, slab, obj, SLUB_RED_ACTIVE):
                ok = False
    if ok:
        if s.flags & SLAB_STORE_USER:
            set_track(s, obj, TRACK_FREE, addr, handle)
        trace_obj(s, slab, obj, False)
        init_object(s, obj, SLUB_RED_INACTIVE)
        return True
    slab_fix(s, f"Object at 0x{obj:016x} not freed")
    return False


def validate_slab(s: KmemCache, slab: Slab) -> int:
    """validate_slab(): check every object of a slab; returns the number of errors."""
    before = s.machine.slab_errors
    if not check_slab(s, slab) or not on_freelist(s, slab, 0):
        return s.machine.slab_errors - before + 1
    free = set(slab.freelist)
    for i in range(slab.objects):
        p = slab.s_mem + i * s.size + s.red_left_pad
        val = SLUB_RED_INACTIVE if p in free else SLUB_RED_ACTIVE
        if s.debug:
            check_object(s, slab, p, val)
    return s.machine.slab_errors - before


@kfunc
def validate_slab_cache(s: KmemCache) -> int:
    flush_all(s)
    errors = 0
    for n in s.node:
        for slab in list(n.partial):
            errors += validate_slab(s, slab)
        for slab in list(n.full):
            errors += validate_slab(s, slab)
    return errors


def _panic(m: Any, reason: str) -> None:
    fn = getattr(m, "panic", None)
    if callable(fn):
        fn(reason)
    else:
        m.stop_requested = True


# ---------------------------------------------------------------------------------------
# Reading the state (slabinfo, sysfs, kmem -s/-S)


def count_partial_free(n: KmemCacheNode) -> int:
    return sum(sl.objects - sl.inuse for sl in n.partial)


def get_slabinfo(s: KmemCache) -> dict[str, int]:
    """What /proc/slabinfo prints: objects on partial lists are the only free ones counted."""
    nr_slabs = sum(n.nr_slabs for n in s.node)
    nr_objs = sum(n.total_objects for n in s.node)
    nr_free = sum(count_partial_free(n) for n in s.node)
    return {"active_objs": nr_objs - nr_free, "num_objs": nr_objs, "active_slabs": nr_slabs,
            "num_slabs": nr_slabs, "objects_per_slab": s.oo[1], "cache_order": s.oo[0]}


def all_slabs(s: KmemCache) -> list[tuple[Slab, str]]:
    """Every slab of the cache with where it is: ``cpuN``, ``cpuN-partial``, ``partial``,
    ``full`` (debug-tracked) or ``full-untracked`` (full, on no list)."""
    m = s.machine
    out: list[tuple[Slab, str]] = []
    seen: set[int] = set()
    for cpu, c in enumerate(s.cpu_slab):
        if c.slab is not None:
            out.append((c.slab, f"cpu{cpu}"))
            seen.add(c.slab.pfn)
        for sl in reversed(c.partial):
            out.append((sl, f"cpu{cpu}-partial"))
            seen.add(sl.pfn)
    for n in s.node:
        for sl in n.partial:
            out.append((sl, "partial"))
            seen.add(sl.pfn)
        for sl in n.full:
            out.append((sl, "full"))
            seen.add(sl.pfn)
    rest = sorted({id(sl): sl for sl in m.slab_pages.values()
                   if sl.slab_cache is s and sl.pfn not in seen}.values(), key=lambda x: x.pfn)
    out.extend((sl, "full") for sl in rest)
    return out


def free_objects(s: KmemCache, slab: Slab, where: str) -> set[int]:
    """The free objects of a slab: its free list plus, for a CPU slab, the CPU freelist."""
    free = set(slab.freelist)
    if where.startswith("cpu") and not where.endswith("partial"):
        free.update(s.cpu_slab[int(where[3:])].freelist)
    if hasattr(s, "array_cache"):  # slab=slab: objects parked in the CPU/shared/alien arrays
        from mmdbg.sim.mm import slab_c

        free.update(o for o in slab_c.cached_objects(s) if s.machine.slab_pages.get(
            (o - PAGE_OFFSET) >> PAGE_SHIFT) is slab)
    return free


def object_state(m: Any, addr: int) -> dict[str, Any] | None:
    """What ``kmem ADDR`` says about a slab address: cache, object, allocated or free."""
    slab = m.slab_pages.get((addr - PAGE_OFFSET) >> PAGE_SHIFT)
    if slab is None:
        return None
    s = slab.slab_cache
    idx = (addr - slab.s_mem) // s.size
    if idx >= slab.objects:
        return {"cache": s, "slab": slab, "object": None, "state": "slab padding",
                "offset": addr - slab.s_mem}
    obj = slab.s_mem + idx * s.size + s.red_left_pad
    where = next((w for sl, w in all_slabs(s) if sl is slab), "full")
    free = obj in free_objects(s, slab, where)
    if not free and m.kasan is not None and m.kasan.in_quarantine(obj):
        state = "free (quarantined)"
    else:
        state = "free" if free else "allocated"
    return {"cache": s, "slab": slab, "object": obj, "state": state, "where": where,
            "offset": addr - obj}


@register_check
def check_slub(m: Any) -> None:
    """register_check: slab counts agree, every slab page is PGTY_slab and allocated, every
    free list agrees with the free pointers in memory, no object is free twice."""
    if getattr(m, "slub", None) is None or getattr(m, "slab_alt", None) is not None:
        return  # slab=slab / slab=slob check themselves
    mm = m.mem_map
    per_node: dict[int, list[int]] = {}
    seen: dict[int, Slab] = {}
    for p, sl in m.slab_pages.items():
        if sl.pfn == p:
            seen[id(sl)] = sl
            assert mm._mapcount[p] == _SLAB_MAPCOUNT, f"slab pfn {p:#x} is not PGTY_slab"
            assert mm._refcount[p] > 0, f"slab pfn {p:#x} has no reference"
        else:
            assert mm.compound_head[p] == sl.pfn, f"slab tail pfn {p:#x} not compound"
        assert sl.pfn <= p < sl.pfn + (1 << sl.order)
    for sl in seen.values():
        v = per_node.setdefault(sl.node, [0, 0])
        v[0 if sl.slab_cache.flags & SLAB_RECLAIM_ACCOUNT else 1] += 1 << sl.order
    large = getattr(m, "large_kmalloc", {})
    for pfn, (order, _size) in large.items():
        v = per_node.setdefault(m.pfn_zone(pfn).node, [0, 0])
        v[1] += 1 << order
    for pgdat in m.node_data:
        rec, unrec = per_node.get(pgdat.node_id, [0, 0])
        assert pgdat.vm_stat[_NR_SLAB_RECLAIMABLE] == rec, \
            f"node {pgdat.node_id} nr_slab_reclaimable {pgdat.vm_stat[_NR_SLAB_RECLAIMABLE]}" \
            f" != {rec}"
        assert pgdat.vm_stat[_NR_SLAB_UNRECLAIMABLE] == unrec, \
            f"node {pgdat.node_id} nr_slab_unreclaimable " \
            f"{pgdat.vm_stat[_NR_SLAB_UNRECLAIMABLE]} != {unrec}"
    by_cache: dict[int, list[Slab]] = {}
    for sl in seen.values():
        by_cache.setdefault(id(sl.slab_cache), []).append(sl)
    for s in m.slub.slab_caches:
        slabs = by_cache.get(id(s), [])
        nslabs = sum(n.nr_slabs for n in s.node)
        assert nslabs == len(slabs), f"{s.name}: nr_slabs {nslabs} != {len(slabs)} slabs"
        assert sum(n.total_objects for n in s.node) == sum(sl.objects for sl in slabs), \
            f"{s.name}: total_objects mismatch"
        cpu_free: set[int] = set()
        for cpu, c in enumerate(s.cpu_slab):
            if c.freelist:
                assert c.slab is not None, f"{s.name} cpu{cpu}: freelist without a slab"
                _check_chain(s, c.freelist, f"cpu{cpu} freelist")
                for o in c.freelist:
                    assert check_valid_pointer(s, c.slab, o), \
                        f"{s.name} cpu{cpu}: {o:#x} not an object of the CPU slab"
                cpu_free.update(c.freelist)
            if c.slab is not None:
                assert c.slab.frozen, f"{s.name} cpu{cpu}: CPU slab not frozen"
        for sl in slabs:
            _check_chain(s, sl.freelist, f"slab {sl.pfn:#x}")
            assert len(set(sl.freelist)) == len(sl.freelist), \
                f"{s.name}: slab {sl.pfn:#x} has an object free twice"
            for o in sl.freelist:
                assert o not in cpu_free, f"{s.name}: {o:#x} free on two lists"
                assert check_valid_pointer(s, sl, o), f"{s.name}: bad free object {o:#x}"
            assert sl.inuse == sl.objects - len(sl.freelist), \
                f"{s.name}: slab {sl.pfn:#x} inuse {sl.inuse} != " \
                f"{sl.objects} - {len(sl.freelist)}"
            if sl.on_list == ON_PARTIAL:
                assert sl in s.node[sl.node].partial
        for n in s.node:
            for sl in n.partial:
                assert sl.on_list == ON_PARTIAL and not sl.frozen, \
                    f"{s.name}: slab {sl.pfn:#x} on the partial list in the wrong state"


def _check_chain(s: KmemCache, lst: list[int], what: str) -> None:
    prev = 0
    for o in lst:
        fp = get_freepointer(s, o)
        assert fp == prev, (f"{s.name} {what}: free pointer of {o:#x} is {fp:#x}, "
                            f"expected {prev:#x}")
        prev = o


# Keep the names the kernel uses for the same functions visible to probes.
slab_alloc = slab_alloc_node
__all__ = ["SLUB_RED_INACTIVE", "SlubState", "__slab_alloc", "slab_alloc"]
