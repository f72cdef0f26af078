"""Slab allocator structures and flags (mm/slab.h, include/linux/slab.h, include/linux/slub_def.h).

``struct kmem_cache``, ``struct kmem_cache_cpu``, ``struct kmem_cache_node`` and ``struct slab``
with the kernel's field names, the ``SLAB_*`` cache flags (6.18 bit numbers) and the helpers
every slab user needs: ``virt_to_slab``, ``nearest_obj``, ``get_freepointer``.

Representation
    A slab is ``2**order`` pages from the buddy allocator (``__GFP_COMP``), its head page marked
    ``PGTY_slab`` on the ``_mapcount`` column.  ``machine.slab_pages`` maps *every* pfn of every
    slab to its :class:`Slab` (``virt_to_slab`` is one dict lookup).  Objects live at direct-map
    addresses inside the slab, with real bytes in ``machine.physmem``.

Free lists
    The kernel chains free objects through a *free pointer* stored in each free object at
    ``s->offset``.  Here the chain is stored twice: as the real 8-byte little-endian value in
    the object's bytes (so memory dumps, KASAN and kmemleak see what the kernel's memory holds)
    and as a Python list of object addresses whose *last* element is the list head (so the
    fast paths are one ``list.pop``/``list.append``).  ``check_consistency`` verifies that the
    two agree.  Free pointers are stored obfuscated as with CONFIG_SLAB_FREELIST_HARDENED
    (``ptr ^ s->random ^ ptr_addr``; the kernel also byte-swaps ``ptr_addr``, omitted here for
    speed -- the stored value is just as opaque).
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE

# include/linux/slab.h: enum _slab_flag_bits (6.18)
_SLAB_BITS = [
    "SLAB_CONSISTENCY_CHECKS", "SLAB_RED_ZONE", "SLAB_POISON", "SLAB_KMALLOC",
    "SLAB_HWCACHE_ALIGN", "SLAB_CACHE_DMA", "SLAB_CACHE_DMA32", "SLAB_STORE_USER", "SLAB_PANIC",
    "SLAB_TYPESAFE_BY_RCU", "SLAB_TRACE", "SLAB_DEBUG_OBJECTS", "SLAB_NOLEAKTRACE",
    "SLAB_NO_MERGE", "SLAB_FAILSLAB", "SLAB_ACCOUNT", "SLAB_KASAN", "SLAB_NO_USER_FLAGS",
    "SLAB_SKIP_KFENCE", "SLAB_RECLAIM_ACCOUNT", "__OBJECT_POISON", "__CMPXCHG_DOUBLE",
    "SLAB_NO_OBJ_EXT",
]
SLAB_FLAG_VALUES = {n: 1 << i for i, n in enumerate(_SLAB_BITS)}
SLAB_CONSISTENCY_CHECKS = 1 << 0
SLAB_RED_ZONE = 1 << 1
SLAB_POISON = 1 << 2
SLAB_KMALLOC = 1 << 3
SLAB_HWCACHE_ALIGN = 1 << 4
SLAB_CACHE_DMA = 1 << 5
SLAB_CACHE_DMA32 = 1 << 6
SLAB_STORE_USER = 1 << 7
SLAB_PANIC = 1 << 8
SLAB_TYPESAFE_BY_RCU = 1 << 9
SLAB_TRACE = 1 << 10
SLAB_DEBUG_OBJECTS = 1 << 11
SLAB_NOLEAKTRACE = 1 << 12
SLAB_NO_MERGE = 1 << 13
SLAB_FAILSLAB = 1 << 14
SLAB_ACCOUNT = 1 << 15
SLAB_KASAN = 1 << 16
SLAB_NO_USER_FLAGS = 1 << 17
SLAB_SKIP_KFENCE = 1 << 18
SLAB_RECLAIM_ACCOUNT = 1 << 19
__OBJECT_POISON = 1 << 20
__CMPXCHG_DOUBLE = 1 << 21
SLAB_NO_OBJ_EXT = 1 << 22
SLAB_MEM_SPREAD = 0  # gone since 6.9; accepted and ignored

SLAB_DEBUG_FLAGS = (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE
                    | SLAB_CONSISTENCY_CHECKS)
DEBUG_DEFAULT_FLAGS = SLAB_CONSISTENCY_CHECKS | SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER
SLAB_NEVER_MERGE = (SLAB_RED_ZONE | SLAB_POISON | SLAB_STORE_USER | SLAB_TRACE
                    | SLAB_TYPESAFE_BY_RCU | SLAB_NOLEAKTRACE | SLAB_FAILSLAB | SLAB_NO_MERGE
                    | SLAB_KASAN)
SLAB_MERGE_SAME = SLAB_RECLAIM_ACCOUNT | SLAB_CACHE_DMA | SLAB_CACHE_DMA32 | SLAB_ACCOUNT

# mm/slub.c poison values (include/linux/poison.h)
SLUB_RED_INACTIVE = 0xBB
SLUB_RED_ACTIVE = 0xCC
POISON_INUSE = 0x5A
POISON_FREE = 0x6B
POISON_END = 0xA5

MAX_OBJS_PER_PAGE = 32767
MIN_PARTIAL = 5
MAX_PARTIAL = 10
PAGE_ALLOC_COSTLY_ORDER = 3
TRACK_SIZE = 32  # struct track with CONFIG_STACKDEPOT on 64-bit
KASAN_ALLOC_META_SIZE = 16
KASAN_FREE_META_SIZE = 16
KASAN_NO_FREE_META = 0xFFFFFFFF
ZERO_SIZE_PTR = 16
NUMA_NO_NODE = -1
cache_line_size = 64
ARCH_KMALLOC_MINALIGN = 8
ARCH_SLAB_MINALIGN = 8

# enum track_item
TRACK_ALLOC = 0
TRACK_FREE = 1

# list membership of a slab (the kernel knows it from slab->frozen, the lists it is on, ...)
ON_NONE = 0       # full and not debug-tracked, or the CPU slab of some CPU
ON_PARTIAL = 1    # kmem_cache_node->partial
ON_FULL = 2       # kmem_cache_node->full (SLAB_STORE_USER only)
ON_CPU_PARTIAL = 3  # kmem_cache_cpu->partial


class Slab:
    """``struct slab``: the slab's pages, its free list and counters."""

    __slots__ = ("cpu", "freelist", "frozen", "inuse", "node", "objects", "on_list", "order",
                 "pfn", "s_mem", "slab_cache")
    ktype = "slab"

    def __init__(self, cache: KmemCache, pfn: int, order: int, objects: int, node: int) -> None:
        self.slab_cache = cache
        self.pfn = pfn
        self.order = order
        self.objects = objects
        self.inuse = 0
        self.freelist: list[int] = []
        self.frozen = 0
        self.node = node
        self.on_list = ON_NONE
        self.cpu = -1  # the CPU whose c->slab or c->partial holds it
        self.s_mem = PAGE_OFFSET + (pfn << PAGE_SHIFT)

    def __repr__(self) -> str:
        return f"<slab {self.slab_cache.name} pfn {self.pfn:#x} {self.inuse}/{self.objects}>"

    @property
    def addr(self) -> int:
        """The ``struct slab *`` (= ``struct page *`` of the head page) value."""
        from mmdbg.sim.mm.mm_types import pfn_to_page_addr

        return pfn_to_page_addr(self.pfn)

    @property
    def size_bytes(self) -> int:
        return PAGE_SIZE << self.order


class KmemCacheCpu:
    """``struct kmem_cache_cpu``: the lockless free list, the CPU slab and the partial list."""

    __slots__ = ("freelist", "partial", "slab", "stat", "tid")
    ktype = "kmem_cache_cpu"

    def __init__(self) -> None:
        self.freelist: list[int] = []
        self.slab: Slab | None = None
        self.partial: list[Slab] = []  # head is the last element
        self.tid = 0
        self.stat: dict[str, int] = {}


class KmemCacheNode:
    """``struct kmem_cache_node``: the node's partial (and debug full) slab lists."""

    __slots__ = ("full", "nr_slabs", "partial", "total_objects")
    ktype = "kmem_cache_node"

    def __init__(self) -> None:
        self.partial: list[Slab] = []  # head is index 0
        self.full: list[Slab] = []
        self.nr_slabs = 0
        self.total_objects = 0

    @property
    def nr_partial(self) -> int:
        return len(self.partial)


class KmemCache:
    """``struct kmem_cache`` (include/linux/slub_def.h)."""

    __slots__ = (
        "addr",
        "aliases",
        "align",
        "allocflags",
        "cpu_partial",
        "cpu_partial_slabs",
        "cpu_slab",
        "ctor",
        "debug",
        "fast",
        "flags",
        "freeptr_offset",
        "inuse",
        "kasan_info",
        "machine",
        "min",
        "min_partial",
        "name",
        "node",
        "object_size",
        "offset",
        "oo",
        "random",
        "red_left_pad",
        "refcount",
        "shrinker",
        "size",
        "stats",
        "useroffset",
        "usersize",
    )
    ktype = "kmem_cache"

    def __init__(self, name: str, object_size: int) -> None:
        self.name = name
        self.object_size = object_size
        self.size = object_size
        self.align = 8
        self.offset = 0
        self.inuse = object_size
        self.flags = 0
        self.ctor: Any = None
        self.oo = (0, 0)  # (order, objects)
        self.min = (0, 0)
        self.min_partial = MIN_PARTIAL
        self.cpu_partial = 0
        self.cpu_partial_slabs = 0
        self.red_left_pad = 0
        self.refcount = 1
        self.useroffset = 0
        self.usersize = 0
        self.allocflags = 0
        self.random = 0
        self.cpu_slab: list[KmemCacheCpu] = []
        self.node: list[KmemCacheNode] = []
        self.kasan_info = {"alloc_meta_offset": 0, "free_meta_offset": 0}
        self.aliases: list[str] = []
        self.addr = 0
        self.machine: Any = None
        self.fast = False   # no debugging and no hooks: kmalloc/kfree may take the fast path
        self.debug = False  # kmem_cache_debug(s): SLAB_DEBUG_FLAGS set
        self.stats: dict[str, int] = {}
        self.shrinker: Any = None
        self.freeptr_offset = -1  # kmem_cache_args.freeptr_offset (-1: not used)

    def __repr__(self) -> str:
        return f"<kmem_cache {self.name} size {self.size}>"

    @property
    def order(self) -> int:
        return self.oo[0]

    @property
    def objects_per_slab(self) -> int:
        return self.oo[1]


# ---------------------------------------------------------------------------------------
# Helpers (mm/slab.h)


def virt_to_slab(m: Any, addr: int) -> Slab | None:
    """The slab holding a direct-map address, or None."""
    return m.slab_pages.get((addr - PAGE_OFFSET) >> PAGE_SHIFT)


def obj_to_index(s: KmemCache, slab: Slab, obj: int) -> int:
    return (obj - s.red_left_pad - slab.s_mem) // s.size


def index_to_obj(s: KmemCache, slab: Slab, idx: int) -> int:
    return slab.s_mem + idx * s.size + s.red_left_pad


def nearest_obj(s: KmemCache, slab: Slab, x: int) -> int:
    """The object whose slot holds ``x`` (clamped to the last object)."""
    idx = max(0, min((x - slab.s_mem) // s.size, slab.objects - 1))
    return index_to_obj(s, slab, idx)


def check_valid_pointer(s: KmemCache, slab: Slab, obj: int) -> bool:
    if not obj:
        return True
    base = slab.s_mem
    o = obj - s.red_left_pad
    return base <= o < base + slab.objects * s.size and (o - base) % s.size == 0


def freeptr_outside_object(s: KmemCache) -> bool:
    return s.offset >= s.inuse


def get_info_end(s: KmemCache) -> int:
    """Offset (from the object) of the end of the free pointer/redzone area."""
    return s.inuse + 8 if freeptr_outside_object(s) else s.inuse


def slub_debug_orig_size(s: KmemCache) -> bool:
    return bool(s.flags & SLAB_STORE_USER and s.flags & SLAB_KMALLOC)


def size_from_object(s: KmemCache) -> int:
    return s.size - s.red_left_pad if s.flags & SLAB_RED_ZONE else s.size


def order_objects(order: int, size: int) -> int:
    return (PAGE_SIZE << order) // size


def get_order(size: int) -> int:
    """include/asm-generic/getorder.h"""
    size = (size - 1) >> PAGE_SHIFT
    order = 0
    while size:
        order += 1
        size >>= 1
    return order


def fls(x: int) -> int:
    return x.bit_length()


def ALIGN(x: int, a: int) -> int:
    return (x + a - 1) & ~(a - 1)


def slab_flags_names(flags: int) -> list[str]:
    return [n for n, v in SLAB_FLAG_VALUES.items() if flags & v]
