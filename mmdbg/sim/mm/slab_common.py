"""Allocator-independent slab code (mm/slab_common.c): caches, kmalloc, /proc/slabinfo.

* ``kmem_cache_create``/``kmem_cache_destroy``/``kmem_cache_shrink`` (merging only with
  ``slab_merge``: the 6.18 samples come from a kernel built with CONFIG_SLAB_MERGE_DEFAULT=n,
  as Debian's is, so every cache is listed under its own name);
* the kmalloc caches: ``kmalloc-{8..8k,96,192}`` and the ``kmalloc-rcl-``, ``dma-kmalloc-``
  and ``kmalloc-cg-`` variants, created in the kernel's order and with its flags and
  alignment (a power-of-two kmalloc cache is aligned to its size);
* ``kmalloc``/``kzalloc``/``kcalloc``/``kmalloc_array``/``krealloc``/``kfree``/``ksize``/
  ``kmem_cache_alloc``/``kmem_cache_zalloc``/``kmem_cache_free`` and the bulk versions; sizes
  above ``KMALLOC_MAX_CACHE_SIZE`` (8 KiB) come straight from the page allocator
  (``PGTY_large_kmalloc``, counted in ``nr_slab_unreclaimable``);
* tracepoints ``kmem:kmalloc``, ``kmem:kfree``, ``kmem:kmem_cache_alloc``,
  ``kmem:kmem_cache_free`` with the fields of data/tracepoints.json;
* the shrinker registry (``shrinker_alloc``/``shrinker_register``/``shrinker_free``,
  ``shrink_slab``, ``drop_slab``);
* ``kmem_cache_init(machine)``: boot creates ``kmem_cache``, ``kmem_cache_node``, the kmalloc
  caches and the well-known caches of a 6.18 x86_64 kernel (sizes from the samples).

Fast path: ``kmalloc`` and ``kfree`` handle a cache with ``s.fast`` set (no debugging, no
hooks) inline -- a size-class table lookup and one ``list.pop``/``list.append`` plus the
free-pointer store -- and call the full ``slab_alloc_node``/``slab_free`` otherwise.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.include.gfp import (
    __GFP_ACCOUNT,
    __GFP_COMP,
    __GFP_DMA,
    __GFP_NOWARN,
    __GFP_RECLAIMABLE,
    __GFP_ZERO,
    GFP_KERNEL,
)
from mmdbg.sim.lib import stackdepot
from mmdbg.sim.mm import page_alloc, slub, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, PAGE_SIZE
from mmdbg.sim.mm.slab import (
    ALIGN,
    ARCH_KMALLOC_MINALIGN,
    NUMA_NO_NODE,
    SLAB_ACCOUNT,
    SLAB_CACHE_DMA,
    SLAB_HWCACHE_ALIGN,
    SLAB_KMALLOC,
    SLAB_MERGE_SAME,
    SLAB_NEVER_MERGE,
    SLAB_NO_MERGE,
    SLAB_NOLEAKTRACE,
    SLAB_PANIC,
    SLAB_RECLAIM_ACCOUNT,
    SLAB_TYPESAFE_BY_RCU,
    ZERO_SIZE_PTR,
    KmemCache,
    cache_line_size,
    get_order,
)
from mmdbg.sim.trace import declare_tracepoint, kfunc

_tp_kmalloc = declare_tracepoint("kmem:kmalloc")
_tp_kfree = declare_tracepoint("kmem:kfree")
_tp_cache_alloc = declare_tracepoint("kmem:kmem_cache_alloc")
_tp_cache_free = declare_tracepoint("kmem:kmem_cache_free")

BOOT_CACHE_STATIC = 0xFFFFFFFF83400000  # where the boot caches' struct kmem_cache live
KMALLOC_SHIFT_LOW = 3
KMALLOC_SHIFT_HIGH = PAGE_SHIFT + 1
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
KMALLOC_MAX_SIZE = 1 << (10 + PAGE_SHIFT)  # MAX_PAGE_ORDER + PAGE_SHIFT

KMALLOC_NORMAL = 0
KMALLOC_RECLAIM = 1
KMALLOC_DMA = 2
KMALLOC_CGROUP = 3
NR_KMALLOC_TYPES = 4
KMALLOC_TYPE_PREFIX = ("kmalloc-", "kmalloc-rcl-", "dma-kmalloc-", "kmalloc-cg-")
KMALLOC_NOT_NORMAL_BITS = __GFP_RECLAIMABLE | __GFP_DMA | __GFP_ACCOUNT

# kmalloc_info[]: index -> (size, short name); index 1 and 2 are the odd sizes
KMALLOC_INFO = [(0, "0"), (96, "96"), (192, "192"), (8, "8"), (16, "16"), (32, "32"),
                (64, "64"), (128, "128"), (256, "256"), (512, "512"), (1024, "1k"),
                (2048, "2k"), (4096, "4k"), (8192, "8k")]
# kmalloc_size_index[(size - 1) / 8] for sizes up to 192
KMALLOC_SIZE_INDEX = [3, 4, 5, 5, 6, 6, 6, 6, 1, 1, 1, 1, 7, 7, 7, 7, 2, 2, 2, 2, 2, 2, 2, 2]

# Well-known caches created at boot, in the order of the 6.18 sample's slabinfo
# (name, object size, align, flags).  Sizes are x86_64's.
_ACC = SLAB_ACCOUNT
BOOT_CACHES: list[tuple[str, int, int, int]] = [
    ("vmap_area", 72, 8, 0),
    ("mm_struct", 1600, 64, SLAB_HWCACHE_ALIGN | _ACC),
    ("maple_node", 256, 256, 0),
    ("radix_tree_node", 584, 8, SLAB_RECLAIM_ACCOUNT | _ACC),
    ("pool_workqueue", 512, 256, 0),
    ("pid", 192, 64, SLAB_HWCACHE_ALIGN | _ACC),
    ("anon_vma", 104, 8, SLAB_TYPESAFE_BY_RCU | _ACC),
    ("anon_vma_chain", 64, 8, _ACC),
    ("task_struct", 4288, 64, _ACC),
    ("sighand_cache", 2112, 64, SLAB_HWCACHE_ALIGN | SLAB_TYPESAFE_BY_RCU | _ACC),
    ("signal_cache", 1152, 64, SLAB_HWCACHE_ALIGN | _ACC),
    ("files_cache", 704, 64, SLAB_HWCACHE_ALIGN | _ACC),
    ("vm_area_struct", 192, 8, SLAB_TYPESAFE_BY_RCU | _ACC),
    ("names_cache", 4096, 64, SLAB_HWCACHE_ALIGN),
    ("dentry", 192, 64, SLAB_RECLAIM_ACCOUNT | SLAB_HWCACHE_ALIGN | _ACC),
    ("inode_cache", 624, 8, SLAB_RECLAIM_ACCOUNT | _ACC),
    ("filp", 192, 64, SLAB_HWCACHE_ALIGN | SLAB_TYPESAFE_BY_RCU | _ACC),
    ("shmem_inode_cache", 752, 8, _ACC),
    ("proc_inode_cache", 696, 8, SLAB_RECLAIM_ACCOUNT | _ACC),
    ("buffer_head", 104, 8, SLAB_RECLAIM_ACCOUNT),
    ("mm_slot", 40, 8, 0),
]


def _init_size_table() -> list[int]:
    out = [0] * (KMALLOC_MAX_CACHE_SIZE + 1)
    for size in range(1, KMALLOC_MAX_CACHE_SIZE + 1):
        if size <= 192:
            out[size] = KMALLOC_SIZE_INDEX[(size - 1) // 8]
        else:
            out[size] = (size - 1).bit_length()
    return out


KMALLOC_INDEX_OF = _init_size_table()


def kmalloc_index(size: int) -> int:
    if not size:
        return 0
    return KMALLOC_INDEX_OF[size] if size <= KMALLOC_MAX_CACHE_SIZE else -1


def kmalloc_type(flags: int) -> int:
    if not flags & KMALLOC_NOT_NORMAL_BITS:
        return KMALLOC_NORMAL
    if flags & __GFP_DMA:
        return KMALLOC_DMA
    if flags & __GFP_RECLAIMABLE:
        return KMALLOC_RECLAIM
    return KMALLOC_CGROUP


def calculate_alignment(flags: int, align: int, size: int) -> int:
    if flags & SLAB_HWCACHE_ALIGN:
        ralign = cache_line_size
        while size <= ralign // 2:
            ralign //= 2
        align = max(align, ralign)
    align = max(align, 8)
    return ALIGN(align, 8)


# ---------------------------------------------------------------------------------------
# Creating and destroying caches


def slab_unmergeable(s: KmemCache) -> bool:
    return bool(s.flags & SLAB_NEVER_MERGE or s.ctor is not None or s.usersize
                or s.refcount < 0)


def find_mergeable(m: Any, size: int, align: int, flags: int, name: str,
                   ctor: Any) -> KmemCache | None:
    st = m.slub
    if not st.slab_merge or ctor is not None:
        return None
    flags = slub.kmem_cache_flags(st, flags, name)
    if flags & SLAB_NEVER_MERGE:
        return None
    size = ALIGN(size, 8)
    align = calculate_alignment(flags, align, size)
    size = ALIGN(size, align)
    for s in reversed(st.slab_caches):
        if slab_unmergeable(s) or size > s.size:
            continue
        if (flags & SLAB_MERGE_SAME) != (s.flags & SLAB_MERGE_SAME):
            continue
        if s.size - size >= 8 or s.size & (align - 1):
            continue
        return s
    return None


def _new_cache(m: Any, name: str, size: int, align: int, flags: int, ctor: Any,
               useroffset: int = 0, usersize: int = 0, freeptr_offset: int = -1) -> KmemCache:
    s = KmemCache(name, size)
    s.freeptr_offset = freeptr_offset
    s.align = calculate_alignment(flags, align, size)
    s.ctor = ctor
    s.useroffset = useroffset
    s.usersize = usersize
    if not slub.do_kmem_cache_create(s, flags):
        raise KernelError(22, f"kmem_cache_create({name}) failed")
    st = m.slub
    st.slab_caches.append(s)
    st.by_name[name] = s
    if st.state == "FULL":
        s.addr = kmem_cache_alloc(st.kmem_cache, GFP_KERNEL)
    return s


@kfunc(aliases=("__kmem_cache_create_args", "kmem_cache_create_usercopy"))
def kmem_cache_create(name: str, size: int, align: int = 0, flags: int = 0,
                      ctor: Any = None, freeptr_offset: int = -1) -> KmemCache | None:
    """Create a cache (or, with ``slab_merge``, alias a compatible one)."""
    m = _trace._current
    st = m.slub
    if not name or size < 1 or size > KMALLOC_MAX_SIZE or (align & (align - 1)):
        m.printk(f"kmem_cache_create({name}) failed with error -22", level=3)
        m.warn_on()
        return None
    if name in st.by_name:
        m.printk(f"kmem_cache_create(): cache name {name} already exists", level=3)
    if m.slab_alt is not None:  # slab=slab / slab=slob
        try:
            return m.slab_alt.create_cache(m, name, size, align, flags, ctor)
        except KernelError:
            if flags & SLAB_PANIC:
                raise
            return None
    s = find_mergeable(m, size, align, flags, name, ctor)
    if s is not None:
        s.refcount += 1
        s.object_size = max(s.object_size, size)
        s.inuse = max(s.inuse, ALIGN(size, 8))
        s.aliases.append(name)
        st.by_name.setdefault(name, s)
        return s
    try:
        return _new_cache(m, name, size, align, flags, ctor, freeptr_offset=freeptr_offset)
    except KernelError:
        if flags & SLAB_PANIC:
            raise
        return None


@kfunc
def kmem_cache_destroy(s: KmemCache | None) -> None:
    if s is None:
        return
    m = _trace._current
    st = m.slub
    s.refcount -= 1
    if s.refcount > 0:
        return
    caller = stackdepot.caller_ip(("kmem_cache_destroy",))
    err = (not m.slab_alt.destroy_cache(m, s)) if m.slab_alt is not None else \
        slub.__kmem_cache_shutdown(s)
    if err:
        m.printk("------------[ cut here ]------------", level=4)
        m.printk(f"kmem_cache_destroy {s.name}: Slab cache still has objects when called from "
                 f"{stackdepot.lookup_symbol(caller)}", level=4)
        m.warn_on()
        return  # the kernel leaks the cache rather than freeing live objects
    if s in st.slab_caches:
        st.slab_caches.remove(s)
    for k in [k for k, v in st.by_name.items() if v is s]:
        del st.by_name[k]
    if s.addr and st.kmem_cache is not None:
        kmem_cache_free(st.kmem_cache, s.addr)
        s.addr = 0


@kfunc
def kmem_cache_shrink(s: KmemCache) -> int:
    alt = _trace._current.slab_alt
    return alt.shrink_cache(s) if alt is not None else slub.__kmem_cache_shrink(s)


def kmem_cache_size(s: KmemCache) -> int:
    return s.object_size


# ---------------------------------------------------------------------------------------
# Object allocation


@kfunc(name="kmem_cache_alloc_noprof", aliases=("kmem_cache_alloc", "kmem_cache_alloc_lru"))
def kmem_cache_alloc(s: KmemCache, gfpflags: int = GFP_KERNEL) -> int:
    """Allocate one object of ``s`` (0 on failure)."""
    m = _trace._current
    if s.fast and not gfpflags & (__GFP_ZERO | __GFP_ACCOUNT):
        c = s.cpu_slab[m.cpu]
        fl = c.freelist
        if fl:
            obj = fl.pop()
            if _tp_cache_alloc.enabled:
                _fire_cache_alloc(s, obj, gfpflags, NUMA_NO_NODE)
            return obj
    if m.slab_alt is not None:
        obj = m.slab_alt.cache_alloc(s, gfpflags, NUMA_NO_NODE)
    else:
        obj = slub.slab_alloc_node(s, gfpflags, NUMA_NO_NODE, 0, s.object_size)
    if _tp_cache_alloc.enabled:
        _fire_cache_alloc(s, obj, gfpflags, NUMA_NO_NODE)
    return obj


@kfunc(name="kmem_cache_alloc_node_noprof", aliases=("kmem_cache_alloc_node",))
def kmem_cache_alloc_node(s: KmemCache, gfpflags: int, node: int) -> int:
    alt = _trace._current.slab_alt
    obj = alt.cache_alloc(s, gfpflags, node) if alt is not None else \
        slub.slab_alloc_node(s, gfpflags, node, 0, s.object_size)
    if _tp_cache_alloc.enabled:
        _fire_cache_alloc(s, obj, gfpflags, node)
    return obj


def kmem_cache_zalloc(s: KmemCache, flags: int = GFP_KERNEL) -> int:
    return kmem_cache_alloc(s, flags | __GFP_ZERO)


def _fire_cache_alloc(s: KmemCache, obj: int, gfp: int, node: int) -> None:
    _tp_cache_alloc.fire(call_site=stackdepot.caller_ip(_INTERNAL), ptr=obj, name=s.name,
                         bytes_req=s.object_size, bytes_alloc=s.size, gfp_flags=gfp,
                         node=node, accounted=bool(gfp & __GFP_ACCOUNT or s.flags & SLAB_ACCOUNT))


@kfunc
def kmem_cache_free(s: KmemCache, x: int) -> None:
    m = _trace._current
    if _tp_cache_free.enabled:
        _tp_cache_free.fire(call_site=stackdepot.caller_ip(_INTERNAL), ptr=x, name=s.name)
    slab = m.slab_pages.get((x - PAGE_OFFSET) >> PAGE_SHIFT)
    if slab is None:
        if m.kfence is not None and m.kfence.is_kfence_address(x):
            m.kfence.kfence_free(x)
            return
        if m.slab_alt is not None:
            m.slab_alt.cache_free(s, x)
            return
        _bad_free(m, x, "kmem_cache_free")
        return
    if slab.slab_cache is not s:
        m.printk(f"kmem_cache_free: Wrong slab cache. {s.name} but object is from "
                 f"{slab.slab_cache.name}", level=3)
        m.warn_on()
        _slab_free_object(m, slab.slab_cache, slab, x, False)
        return
    _slab_free_object(m, s, slab, x, s.fast)


def _slab_free_object(m: Any, s: KmemCache, slab: Any, x: int, fast: bool) -> None:
    """do_slab_free(): push onto this CPU's freelist when the object's slab is the CPU slab
    (the fast path, inlined by both kmem_cache_free and kfree in the kernel), else the slow
    path (or the SLAB/SLOB allocator chosen at boot)."""
    if fast:
        c = s.cpu_slab[m.cpu]
        fl = c.freelist
        if slab is c.slab and (not fl or fl[-1] != x):
            fpa = x + s.offset
            m.slab_qv[(fpa - PAGE_OFFSET) >> PAGE_SHIFT][(fpa & 4095) >> 3] = \
                (fl[-1] if fl else 0) ^ s.random ^ fpa
            fl.append(x)
            return
    if m.slab_alt is not None:
        m.slab_alt.cache_free(s, x)
        return
    slub.slab_free(s, slab, x, 0)


def kmem_cache_alloc_bulk(s: KmemCache, flags: int, size: int) -> list[int]:
    out = []
    for _ in range(size):
        obj = kmem_cache_alloc(s, flags)
        if not obj:
            for o in out:
                kmem_cache_free(s, o)
            return []
        out.append(obj)
    return out


def kmem_cache_free_bulk(s: KmemCache | None, objs: list[int]) -> None:
    for o in objs:
        if s is None:
            kfree(o)
        else:
            kmem_cache_free(s, o)


_INTERNAL = ("__kmalloc_noprof", "kmem_cache_alloc_noprof", "kfree", "kmem_cache_free",
             "__do_kmalloc_node", "kmalloc_large", "__kmalloc_large_node", "krealloc",
             "kzalloc", "kcalloc", "kmalloc_array", "kmem_cache_alloc_node_noprof",
             "free_large_kmalloc", "kvfree", "kvmalloc_node", "kfree_sensitive",
             "kmem_cache_zalloc", "kmemdup")


def kmalloc_slab(m: Any, size: int, flags: int) -> KmemCache:
    return m.slub.kmalloc_caches[kmalloc_type(flags)][KMALLOC_INDEX_OF[size]]


@kfunc(name="__kmalloc_noprof",
       aliases=("kmalloc", "__kmalloc", "kmalloc_noprof", "__kmalloc_cache_noprof",
                "kmalloc_trace", "__kmalloc_node_noprof"))
def kmalloc(size: int, flags: int = GFP_KERNEL) -> int:
    """kmalloc(): an object of at least ``size`` bytes from the right kmalloc cache.

    Returns the object's address, ``ZERO_SIZE_PTR`` (16) for size 0, 0 on failure.
    """
    m = _trace._current
    if 0 < size <= 8192 and not flags & _SLOW_GFP:
        s = m.kmalloc_normal[size]
        if s.fast:
            fl = s.cpu_slab[m.cpu].freelist
            if fl:
                obj = fl.pop()
                if _tp_kmalloc.enabled:
                    _fire_kmalloc(obj, size, s.size, flags, NUMA_NO_NODE)
                return obj
    return __do_kmalloc_node(size, flags, NUMA_NO_NODE, 0)


_SLOW_GFP = __GFP_ZERO | KMALLOC_NOT_NORMAL_BITS


def _fire_kmalloc(obj: int, req: int, alloc: int, gfp: int, node: int) -> None:
    _tp_kmalloc.fire(call_site=stackdepot.caller_ip(_INTERNAL), ptr=obj, bytes_req=req,
                     bytes_alloc=alloc, gfp_flags=gfp, node=node)


@kfunc
def __do_kmalloc_node(size: int, flags: int, node: int, caller: int) -> int:
    m = _trace._current
    if m.slab_alt is not None and size:
        obj, alloc = m.slab_alt.do_kmalloc(m, size, flags, node)
        if _tp_kmalloc.enabled:
            _fire_kmalloc(obj, size, alloc, flags, node)
        return obj
    if size > KMALLOC_MAX_CACHE_SIZE:
        return __kmalloc_large_node(size, flags, node)
    if not size:
        if _tp_kmalloc.enabled:
            _fire_kmalloc(ZERO_SIZE_PTR, 0, 0, flags, node)
        return ZERO_SIZE_PTR
    s = kmalloc_slab(m, size, flags)
    obj = slub.slab_alloc_node(s, flags, node, caller, size)
    if obj and m.kasan is not None and not (m.kfence is not None and m.kfence.in_pool(obj)):
        m.kasan.kasan_kmalloc(s, obj, size, flags)
    if _tp_kmalloc.enabled:
        _fire_kmalloc(obj, size, s.size, flags, node)
    return obj


@kfunc(name="__kmalloc_node_track_caller_noprof", aliases=("kmalloc_node",))
def kmalloc_node(size: int, flags: int, node: int) -> int:
    return __do_kmalloc_node(size, flags, node, 0)


@kfunc(name="__kmalloc_large_node_noprof",
       aliases=("kmalloc_large", "__kmalloc_large_noprof", "___kmalloc_large_node"))
def __kmalloc_large_node(size: int, flags: int, node: int) -> int:
    """A kmalloc too big for the caches: pages straight from the buddy allocator."""
    m = _trace._current
    order = get_order(size)
    if order > 10:
        if not flags & __GFP_NOWARN:
            m.warn_on()
        return 0
    gfp = flags | __GFP_COMP
    pfn = page_alloc.alloc_pages(gfp, order) if node == NUMA_NO_NODE else \
        page_alloc.alloc_pages_node(node, gfp, order)
    ptr = 0
    if pfn is not None:
        m.mem_map._mapcount[pfn] = pf.page_type_value(pf.PGTY_large_kmalloc)
        m.large_kmalloc[pfn] = (order, size)
        m.node_data[m.pfn_zone(pfn).node].vm_stat[_NR_SLAB_UNRECLAIMABLE] += 1 << order
        ptr = PAGE_OFFSET + (pfn << PAGE_SHIFT)
        if m.kasan is not None:
            m.kasan.kasan_kmalloc_large(ptr, size, flags)
        if m.kmemleak is not None:
            m.kmemleak.kmemleak_alloc(ptr, size, 1, flags)
    if _tp_kmalloc.enabled:
        _fire_kmalloc(ptr, size, PAGE_SIZE << order, flags, node)
    return ptr


_NR_SLAB_UNRECLAIMABLE = vmstat.NS["nr_slab_unreclaimable"]
_LARGE_KMALLOC = pf.page_type_value(pf.PGTY_large_kmalloc)


@kfunc
def free_large_kmalloc(pfn: int, obj: int) -> None:
    m = _trace._current
    info = m.large_kmalloc.get(pfn)
    if info is None or obj != PAGE_OFFSET + (pfn << PAGE_SHIFT):
        _bad_free(m, obj, "kfree")
        return
    order, _size = info
    if m.kmemleak is not None:
        m.kmemleak.kmemleak_free(obj)
    if m.kasan is not None and not m.kasan.kasan_kfree_large(obj):
        return
    del m.large_kmalloc[pfn]
    m.mem_map._mapcount[pfn] = -1
    m.node_data[m.pfn_zone(pfn).node].vm_stat[_NR_SLAB_UNRECLAIMABLE] -= 1 << order
    page_alloc.__free_pages(pfn, order)


def _bad_free(m: Any, x: int, fn: str) -> None:
    """A free of something that is no slab object: KASAN reports it, else a warning."""
    if m.kasan is not None:
        m.kasan.kasan_report_invalid_free(x, stackdepot.caller_ip(_INTERNAL), "invalid-free")
        return
    m.printk(f"{fn}: invalid pointer 0x{x:016x}", level=3)
    m.warn_on()


@kfunc
def kfree(x: int) -> None:
    """Free a kmalloc'ed (or any slab) object; NULL and ZERO_SIZE_PTR are ignored."""
    m = _trace._current
    if x <= ZERO_SIZE_PTR:
        return
    if _tp_kfree.enabled:
        _tp_kfree.fire(call_site=stackdepot.caller_ip(_INTERNAL), ptr=x)
    slab = m.slab_pages.get((x - PAGE_OFFSET) >> PAGE_SHIFT)
    if slab is not None:
        s = slab.slab_cache
        _slab_free_object(m, s, slab, x, s.fast)
        return
    _kfree_nonslab(m, x)


def _kfree_nonslab(m: Any, x: int) -> None:
    if m.slab_alt is not None:
        if not m.slab_alt.do_kfree(m, x):
            _bad_free(m, x, "kfree")
        return
    if m.kfence is not None and m.kfence.is_kfence_address(x):
        m.kfence.kfence_free(x)
        return
    pfn = (x - PAGE_OFFSET) >> PAGE_SHIFT
    if 0 <= pfn < m.mem_map.max_pfn:
        head = m.mem_map.compound_head[pfn]
        hp = head if head >= 0 else pfn
        if m.mem_map._mapcount[hp] == _LARGE_KMALLOC:
            free_large_kmalloc(hp, x)
            return
    _bad_free(m, x, "kfree")


def kfree_sensitive(x: int) -> None:
    m = _trace._current
    n = ksize(x)
    if n:
        slub.mem_set(m, x, 0, n)
    kfree(x)


@kfunc(name="__ksize", aliases=("ksize",))
def ksize(objp: int) -> int:
    """The usable size of a kmalloc'ed object (its cache's object size)."""
    m = _trace._current
    if objp <= ZERO_SIZE_PTR:
        return 0
    slab = m.slab_pages.get((objp - PAGE_OFFSET) >> PAGE_SHIFT)
    if slab is not None:
        s = slab.slab_cache
        if m.kasan is not None:
            m.kasan.unpoison_range(objp, s.object_size)
        return s.object_size
    if m.kfence is not None and m.kfence.is_kfence_address(objp):
        return m.kfence.kfence_ksize(objp)
    if m.slab_alt is not None:
        return m.slab_alt.do_ksize(m, objp)
    pfn = (objp - PAGE_OFFSET) >> PAGE_SHIFT
    info = m.large_kmalloc.get(pfn)
    return PAGE_SIZE << info[0] if info else 0


def kzalloc(size: int, flags: int = GFP_KERNEL) -> int:
    return kmalloc(size, flags | __GFP_ZERO)


def kmalloc_array(n: int, size: int, flags: int = GFP_KERNEL) -> int:
    if size and n > (2 ** 64 - 1) // size:
        return 0
    return kmalloc(n * size, flags)


def kcalloc(n: int, size: int, flags: int = GFP_KERNEL) -> int:
    return kmalloc_array(n, size, flags | __GFP_ZERO)


@kfunc(name="krealloc_noprof", aliases=("krealloc",))
def krealloc(p: int, new_size: int, flags: int = GFP_KERNEL) -> int:
    """Resize: keep the object when it is big enough, else copy into a new one."""
    m = _trace._current
    if not new_size:
        kfree(p)
        return ZERO_SIZE_PTR
    ks = 0
    if p > ZERO_SIZE_PTR:
        slab = m.slab_pages.get((p - PAGE_OFFSET) >> PAGE_SHIFT)
        if slab is not None:
            ks = slab.slab_cache.object_size
        elif m.kfence is not None and m.kfence.is_kfence_address(p):
            ks = m.kfence.kfence_ksize(p)
        elif m.slab_alt is not None:
            ks = m.slab_alt.do_ksize(m, p)
        else:
            info = m.large_kmalloc.get((p - PAGE_OFFSET) >> PAGE_SHIFT)
            ks = PAGE_SIZE << info[0] if info else 0
    if ks and new_size <= ks:
        if m.kasan is not None:
            m.kasan.kasan_krealloc(p, new_size, ks)
        return p
    ret = kmalloc(new_size, flags & ~__GFP_ZERO)
    if ret and p > ZERO_SIZE_PTR:
        n = min(ks, new_size)
        slub.mem_write(m, ret, slub.mem_read(m, p, n))
        if flags & __GFP_ZERO and new_size > n:
            slub.mem_set(m, ret + n, 0, new_size - n)
        kfree(p)
    elif ret and flags & __GFP_ZERO:
        slub.mem_set(m, ret, 0, new_size)
    return ret


def kmemdup(src: bytes, flags: int = GFP_KERNEL) -> int:
    m = _trace._current
    p = kmalloc(len(src), flags)
    if p:
        slub.mem_write(m, p, src)
    return p


# ---------------------------------------------------------------------------------------
# Shrinkers (mm/shrinker.c)


SHRINK_STOP = -1
SHRINK_EMPTY = -2
DEFAULT_SEEKS = 2
SHRINK_BATCH = 128


class Shrinker:
    """``struct shrinker``: ``count_objects(sc)`` and ``scan_objects(sc)`` callbacks."""

    ktype = "shrinker"

    def __init__(self, name: str, flags: int = 0) -> None:
        self.name = name
        self.flags = flags
        self.count_objects: Any = None
        self.scan_objects: Any = None
        self.seeks = DEFAULT_SEEKS
        self.batch = 0
        self.nr_deferred = 0
        self.private_data: Any = None
        self.registered = False


class ShrinkControl:
    ktype = "shrink_control"

    def __init__(self, gfp_mask: int, nid: int, nr_to_scan: int = 0) -> None:
        self.gfp_mask = gfp_mask
        self.nid = nid
        self.nr_to_scan = nr_to_scan
        self.nr_scanned = 0
        self.memcg = None


def shrinker_alloc(flags: int, name: str) -> Shrinker:
    return Shrinker(name, flags)


def shrinker_register(shrinker: Shrinker) -> None:
    m = _trace._current
    if shrinker not in m.slub.shrinkers:
        m.slub.shrinkers.append(shrinker)
    shrinker.registered = True


def shrinker_free(shrinker: Shrinker | None) -> None:
    if shrinker is None:
        return
    m = _trace._current
    if shrinker in m.slub.shrinkers:
        m.slub.shrinkers.remove(shrinker)
    shrinker.registered = False


@kfunc
def do_shrink_slab(shrinkctl: ShrinkControl, shrinker: Shrinker, priority: int) -> int:
    """How many objects to scan: (freeable >> priority) * 4 / seeks, in batches."""
    freeable = shrinker.count_objects(shrinkctl)
    if freeable == 0 or freeable == SHRINK_EMPTY:
        return freeable
    nr = shrinker.nr_deferred
    shrinker.nr_deferred = 0
    if shrinker.seeks:
        delta = (freeable >> priority) * 4 // shrinker.seeks
    else:
        delta = freeable // 2
    total_scan = min(nr // 2 + delta, 2 * freeable)
    batch = shrinker.batch or SHRINK_BATCH
    freed = 0
    scanned = 0
    while total_scan >= batch or total_scan >= freeable:
        nr_to_scan = min(batch, total_scan)
        shrinkctl.nr_to_scan = nr_to_scan
        shrinkctl.nr_scanned = nr_to_scan
        ret = shrinker.scan_objects(shrinkctl)
        if ret == SHRINK_STOP:
            break
        freed += ret
        total_scan -= shrinkctl.nr_scanned
        scanned += shrinkctl.nr_scanned
        if total_scan <= 0:
            break
    m = _trace._current
    m.vm_events[vmstat.EV["slabs_scanned"]] += scanned
    shrinker.nr_deferred = max(0, total_scan)
    return freed


@kfunc
def shrink_slab(gfp_mask: int, nid: int, memcg: Any, priority: int) -> int:
    m = _trace._current
    freed = 0
    for shr in list(m.slub.shrinkers):
        sc = ShrinkControl(gfp_mask, nid)
        sc.memcg = memcg
        ret = do_shrink_slab(sc, shr, priority)
        if ret == SHRINK_EMPTY:
            ret = 0
        freed += ret
    return freed


def drop_slab(m: Any) -> int:
    """echo 2 > /proc/sys/vm/drop_caches: shrink until little is freed."""
    m.activate()
    total = 0
    for _ in range(10):
        freed = 0
        for nid in range(len(m.node_data)):
            freed += shrink_slab(GFP_KERNEL, nid, None, 0)
        total += freed
        if freed <= 10:
            break
    m.vm_events[vmstat.EV["drop_slab"]] += 1
    return total


# ---------------------------------------------------------------------------------------
# Boot


def _default_hooks(m: Any) -> None:
    h = m.hooks
    if not hasattr(h, "memcg_slab_post_alloc_hook"):
        h.memcg_slab_post_alloc_hook = lambda s, flags, obj: True
    if not hasattr(h, "memcg_slab_free_hook"):
        h.memcg_slab_free_hook = lambda s, obj: None


def create_kmalloc_caches(m: Any) -> None:
    st = m.slub
    st.kmalloc_caches = [[None] * len(KMALLOC_INFO) for _ in range(NR_KMALLOC_TYPES)]
    for typ in range(NR_KMALLOC_TYPES):
        flags = SLAB_KMALLOC
        if typ == KMALLOC_RECLAIM:
            flags |= SLAB_RECLAIM_ACCOUNT
        elif typ == KMALLOC_CGROUP:
            flags |= SLAB_ACCOUNT
        elif typ == KMALLOC_DMA:
            flags |= SLAB_CACHE_DMA
        else:
            flags |= SLAB_NO_MERGE
        for idx in range(1, len(KMALLOC_INFO)):
            size, short = KMALLOC_INFO[idx]
            align = max(ARCH_KMALLOC_MINALIGN, size & -size)
            s = _new_cache(m, KMALLOC_TYPE_PREFIX[typ] + short, size, align, flags, None)
            st.kmalloc_caches[typ][idx] = s
    normal = st.kmalloc_caches[KMALLOC_NORMAL]
    m.kmalloc_normal = [normal[KMALLOC_INDEX_OF[n]] if n else normal[3]
                        for n in range(KMALLOC_MAX_CACHE_SIZE + 1)]


def kmem_cache_init(m: Any) -> None:
    """Boot: the allocator's own caches, the kmalloc caches and the well-known ones."""
    m.activate()
    m.slab_alt = None
    if getattr(m.config, "slab", "slub") != "slub":
        _kmem_cache_init_alt(m)
        return
    m.slub = slub.SlubState(m)
    m.slab_pages = {}
    m.slab_qv = {}
    m.large_kmalloc = {}
    m.slab_errors = 0
    m.slab_hooked = False
    for attr in ("kasan", "kmemleak", "kfence"):
        if not hasattr(m, attr):
            setattr(m, attr, None)
    _default_hooks(m)
    from mmdbg.sim.mm import vmalloc
    from mmdbg.sim.mm.kasan import kasan_init
    from mmdbg.sim.mm.kfence import kfence_init
    from mmdbg.sim.mm.kmemleak import kmemleak_init

    vmalloc.vmalloc_init(m)
    kasan_init(m)
    kmemleak_init(m)
    kfence_init(m)
    st = m.slub
    st.kmem_cache = _new_cache(m, "kmem_cache", 256, 64, SLAB_HWCACHE_ALIGN | SLAB_NOLEAKTRACE,
                               None)
    st.kmem_cache_node = _new_cache(m, "kmem_cache_node", 128, 64,
                                    SLAB_HWCACHE_ALIGN | SLAB_NOLEAKTRACE, None)
    st.state = "PARTIAL"
    create_kmalloc_caches(m)
    st.state = "UP"
    for name, size, align, flags in BOOT_CACHES:
        # 6.18 gives its RCU caches a free pointer inside the object (kmem_cache_create_rcu)
        fpo = (size // 2) & ~7 if flags & SLAB_TYPESAFE_BY_RCU else -1
        _new_cache(m, name, size, align, flags | SLAB_PANIC, None, freeptr_offset=fpo)
    # The kernel copies its boot caches into kmem_cache objects (bootstrap()); here the
    # boot caches keep static addresses in the kernel's .data, so that booting allocates no
    # page (the machine's memory state after boot stays the buddy allocator's alone).
    # Caches created afterwards live in objects of the kmem_cache cache.
    for i, s in enumerate(st.slab_caches):
        s.addr = BOOT_CACHE_STATIC + i * 0x100
    st.state = "FULL"
    from mmdbg.sim.kernel import module
    from mmdbg.sim.mm import slab_info

    module.module_init(m)
    m.identify_slab = lambda addr: slab_info.identify_slab(m, addr)  # for the shell's kmem ADDR
    m.printk(f"SLUB: HWalign={cache_line_size}, Order={st.slub_min_order}-"
             f"{st.slub_max_order}, MinObjects={st.slub_min_objects}, CPUs={m.ncpus}, "
             f"Nodes={len(m.node_data)}")
    if st.slub_debug or st.slub_debug_blocks:
        m.printk("**********************************************************", level=4)
        m.printk("**   NOTICE NOTICE NOTICE NOTICE NOTICE NOTICE NOTICE   **", level=4)
        m.printk("**                                                      **", level=4)
        m.printk("** This system shows unhashed kernel memory addresses   **", level=4)
        m.printk("** via the console, logs, and other interfaces. This    **", level=4)
        m.printk("** might reduce the security of your system.            **", level=4)
        m.printk("**********************************************************", level=4)


class _NoFastCache:
    fast = False


def _kmem_cache_init_alt(m: Any) -> None:
    """slab=slab (mm/slab.c) or slab=slob (mm/slob.c) behind the same API: slab_common's
    entry points hand over to ``m.slab_alt`` after their SLUB fast paths (never taken:
    ``m.kmalloc_normal`` holds no fast cache)."""
    from mmdbg.sim.config import ConfigError
    from mmdbg.sim.kernel import module
    from mmdbg.sim.mm import slab_c, slob, vmalloc

    cfg = m.config
    which = cfg.slab
    for key, on in (("kasan", cfg.kasan), ("kmemleak", cfg.kmemleak),
                    ("kfence.sample_interval", cfg.kfence_sample_interval),
                    ("slub_debug", cfg.slub_debug is not None)):
        if on:
            raise ConfigError("slab", f"slab={which} cannot be combined with {key}: this "
                              "simulation implements the memory debuggers for SLUB only")
    m.slab_alt = slab_c if which == "slab" else slob
    m.slab_qv = {}
    m.large_kmalloc = {}
    m.slab_errors = 0
    m.slab_hooked = False
    m.kasan = m.kmemleak = m.kfence = None
    _default_hooks(m)
    vmalloc.vmalloc_init(m)
    m.slab_alt.kmem_cache_init(m, BOOT_CACHES, BOOT_CACHE_STATIC)
    m.kmalloc_normal = [_NoFastCache] * (KMALLOC_MAX_CACHE_SIZE + 1)
    module.module_init(m)
    if which == "slab":
        from mmdbg.sim.mm import slab_info

        m.identify_slab = lambda addr: slab_info.identify_slab(m, addr)


def set_hooked(m: Any, hooked: bool) -> None:
    """A subsystem (memcg) wants slab_post_alloc_hook/slab_free_hook for every object."""
    m.slab_hooked = hooked
    refresh_fast(m)


def refresh_fast(m: Any) -> None:
    if getattr(m, "slab_alt", None) is not None:
        return
    for s in m.slub.slab_caches:
        slub.update_fast(m, s)


def find_cache(m: Any, name: str) -> KmemCache | None:
    return m.slub.by_name.get(name)


# ---------------------------------------------------------------------------------------
# /proc/slabinfo


def slabinfo_lines(m: Any) -> list[str]:
    if getattr(m, "slab_alt", None) is not None:
        return m.slab_alt.slabinfo_lines(m)
    out = ["slabinfo - version: 2.1",
           "# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab>"
           " : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs>"
           " <num_slabs> <sharedavail>"]
    for s in reversed(m.slub.slab_caches):
        i = slub.get_slabinfo(s)
        out.append(format_slabinfo_line(s.name, i["active_objs"], i["num_objs"], s.size,
                                        i["objects_per_slab"], 1 << i["cache_order"],
                                        i["active_slabs"], i["num_slabs"]))
    return out


def format_slabinfo_line(name: str, active_objs: int, num_objs: int, objsize: int,
                         objperslab: int, pagesperslab: int, active_slabs: int,
                         num_slabs: int, limit: int = 0, batchcount: int = 0,
                         shared: int = 0, sharedavail: int = 0) -> str:
    """cache_show(): ``%-17s %6lu %6lu %6u %4u %4d : tunables %4u %4u %4u : slabdata
    %6lu %6lu %6lu``."""
    return (f"{name:<17} {active_objs:6d} {num_objs:6d} {objsize:6d} {objperslab:4d} "
            f"{pagesperslab:4d} : tunables {limit:4d} {batchcount:4d} {shared:4d} : slabdata "
            f"{active_slabs:6d} {num_slabs:6d} {sharedavail:6d}")


def proc_slabinfo(m: Any) -> str:
    return "".join(line + "\n" for line in slabinfo_lines(m))


def slabinfo_write(m: Any, text: str) -> None:
    """SLUB has no tunables: writing /proc/slabinfo fails with -EIO (slab=slab: tunes)."""
    if getattr(m, "slab_alt", None) is not None and hasattr(m.slab_alt, "slabinfo_write"):
        m.slab_alt.slabinfo_write(m, text)
        return
    raise KernelError(5, "Input/output error")


__all__ = ["SLAB_TYPESAFE_BY_RCU", "kmem_cache_init"]
