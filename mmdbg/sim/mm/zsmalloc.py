"""zsmalloc (mm/zsmalloc.c): the allocator behind zswap and zram for compressed objects.

A pool has 255 size classes, 32 bytes to PAGE_SIZE in steps of 16 (``ZS_MIN_ALLOC_SIZE``,
``ZS_SIZE_CLASS_DELTA``).  A class stores its objects in *zspages*: chains of 1 to
``ZS_MAX_PAGES_PER_ZSPAGE`` order-0 pages (CONFIG_ZSMALLOC_CHAIN_SIZE, 8 since 6.3) chosen by
``calculate_zspage_chain_size`` to waste the least; neighbouring classes with the same
pages-per-zspage and objects-per-zspage are merged (``can_merge``), as in ``zs_create_pool``.
The first class, from the top, that holds one object in one page is the *huge* class
(``zs_huge_class_size``: zram stores pages at least that big uncompressed).

``zs_malloc`` adds ``ZS_HANDLE_SIZE`` (8) to the request, picks the class and a zspage with a
free object (a new zspage from the buddy allocator otherwise: pages typed ``PGTY_zsmalloc``
on the ``_mapcount`` word, counted in the zone's ``NR_ZSPAGES``).  Objects hold their bytes in
the zspage's physical pages (``machine.physmem``), the handle in the first 8 bytes (non-huge
classes); ``zs_free`` gives the slot back and frees an empty zspage.

Simplifications: no compaction or page migration (``pages_compacted`` stays 0), handles are
integers rather than slab-allocated words, the fullness groups are reduced to "has a free
object or not" (allocation prefers the most recently used partial zspage).
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.mm import page_alloc, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.trace import current_machine, kfunc

PAGE_SIZE = 4096
ZS_HANDLE_SIZE = 8
ZS_MAX_PAGES_PER_ZSPAGE = 8  # CONFIG_ZSMALLOC_CHAIN_SIZE
ZS_MIN_ALLOC_SIZE = 32
CLASS_BITS = 8
ZS_SIZE_CLASS_DELTA = PAGE_SIZE >> CLASS_BITS
ZS_MAX_ALLOC_SIZE = PAGE_SIZE
ZS_SIZE_CLASSES = -(-(ZS_MAX_ALLOC_SIZE - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA) + 1
OBJ_ALLOCATED_TAG = 1
ZSMALLOC_MAPCOUNT = pf.page_type_value(pf.PGTY_zsmalloc)
_NR_ZSPAGES = vmstat.ZS["nr_zspages"]


def calculate_zspage_chain_size(class_size: int) -> int:
    if class_size & (class_size - 1) == 0:
        return 1
    min_waste = 1 << 30
    chain = 1
    for i in range(1, ZS_MAX_PAGES_PER_ZSPAGE + 1):
        waste = (i * PAGE_SIZE) % class_size
        if waste < min_waste:
            min_waste = waste
            chain = i
    return chain


def get_size_class_index(size: int) -> int:
    idx = 0
    if size > ZS_MIN_ALLOC_SIZE:
        idx = -(-(size - ZS_MIN_ALLOC_SIZE) // ZS_SIZE_CLASS_DELTA)
    return min(ZS_SIZE_CLASSES - 1, idx)


class SizeClass:
    """``struct size_class``."""

    ktype = "size_class"
    __slots__ = ("index", "objs_inuse", "objs_per_zspage", "pages_per_zspage", "partial",
                 "size", "zspages")

    def __init__(self, index: int, size: int, pages: int, objs: int) -> None:
        self.index = index
        self.size = size
        self.pages_per_zspage = pages
        self.objs_per_zspage = objs
        self.zspages = 0
        self.objs_inuse = 0
        self.partial: list[Zspage] = []  # zspages with a free object, most recent last

    def __repr__(self) -> str:
        return f"<size_class {self.index} size {self.size}>"

    @property
    def huge(self) -> bool:
        return self.pages_per_zspage == 1 and self.objs_per_zspage == 1


class Zspage:
    """``struct zspage``: the chain of pages and its free objects."""

    ktype = "zspage"
    __slots__ = ("cls", "free", "inuse", "pages")

    def __init__(self, cls: SizeClass, pages: list[int]) -> None:
        self.cls = cls
        self.pages = pages
        self.inuse = 0
        self.free = list(range(cls.objs_per_zspage - 1, -1, -1))  # pop() gives 0 first


class ZsPool:
    """``struct zs_pool``."""

    ktype = "zs_pool"

    def __init__(self, name: str) -> None:
        self.name = name
        self.size_class: list[SizeClass] = [None] * ZS_SIZE_CLASSES  # type: ignore[list-item]
        self.pages_allocated = 0
        self.pages_compacted = 0
        self.huge_class_size = 0
        self.handles: dict[int, tuple[Zspage, int, int]] = {}  # handle -> zspage, obj, len
        self.page_owner: dict[int, Zspage] = {}  # pfn -> zspage
        self.next_handle = 0xFFFF888100000000
        prev: SizeClass | None = None
        for i in range(ZS_SIZE_CLASSES - 1, -1, -1):
            size = min(ZS_MIN_ALLOC_SIZE + i * ZS_SIZE_CLASS_DELTA, ZS_MAX_ALLOC_SIZE)
            pages = calculate_zspage_chain_size(size)
            objs = pages * PAGE_SIZE // size
            if pages == 1 and objs == 1 and not self.huge_class_size:
                self.huge_class_size = size - (ZS_HANDLE_SIZE - 1)
            if prev is not None and prev.pages_per_zspage == pages and \
                    prev.objs_per_zspage == objs:
                self.size_class[i] = prev
                continue
            prev = SizeClass(i, size, pages, objs)
            self.size_class[i] = prev

    def __repr__(self) -> str:
        return f"<zs_pool {self.name}>"

    def classes(self) -> list[SizeClass]:
        out: list[SizeClass] = []
        for c in self.size_class:
            if not out or out[-1] is not c:
                out.append(c)
        return out


def zs_create_pool(name: str) -> ZsPool:
    m = current_machine()
    pool = ZsPool(name)
    pools = getattr(m, "zs_pools", None)
    if pools is None:
        pools = m.zs_pools = []
    pools.append(pool)
    return pool


def zs_destroy_pool(pool: ZsPool) -> None:
    m = current_machine()
    for h in list(pool.handles):
        zs_free(pool, h)
    if pool in getattr(m, "zs_pools", []):
        m.zs_pools.remove(pool)


def zs_huge_class_size(pool: ZsPool) -> int:
    return pool.huge_class_size


def zs_get_total_pages(pool: ZsPool) -> int:
    return pool.pages_allocated


def _alloc_zspage(m: Any, pool: ZsPool, cls: SizeClass, gfp: int) -> Zspage | None:
    pfns: list[int] = []
    for _ in range(cls.pages_per_zspage):
        pfn = page_alloc.alloc_pages(gfp, 0)
        if pfn is None:
            for p in pfns:
                _free_zs_page(m, p)
            return None
        m.mem_map._mapcount[pfn] = ZSMALLOC_MAPCOUNT  # __SetPageZsmalloc
        z = m.pfn_zone(pfn)
        z.vm_stat[_NR_ZSPAGES] += 1
        pfns.append(pfn)
    zspage = Zspage(cls, pfns)
    for p in pfns:
        pool.page_owner[p] = zspage
    pool.pages_allocated += len(pfns)
    cls.zspages += 1
    return zspage


def _free_zs_page(m: Any, pfn: int) -> None:
    m.mem_map._mapcount[pfn] = -1  # __ClearPageZsmalloc
    m.pfn_zone(pfn).vm_stat[_NR_ZSPAGES] -= 1
    page_alloc.__free_pages(pfn, 0)


def free_zspage(m: Any, pool: ZsPool, zspage: Zspage) -> None:
    cls = zspage.cls
    if zspage in cls.partial:
        cls.partial.remove(zspage)
    for p in zspage.pages:
        pool.page_owner.pop(p, None)
        _free_zs_page(m, p)
    pool.pages_allocated -= len(zspage.pages)
    cls.zspages -= 1


@kfunc
def zs_malloc(pool: ZsPool, size: int, gfp: int, nid: int = -1) -> int:
    """A handle to ``size`` bytes, or -EINVAL (0 bytes), -ENOSPC (over PAGE_SIZE), -ENOMEM."""
    m = current_machine()
    if not size:
        return -errno.EINVAL
    if size > ZS_MAX_ALLOC_SIZE:
        return -errno.ENOSPC
    cls = pool.size_class[get_size_class_index(size + ZS_HANDLE_SIZE)]
    if cls.partial:
        zspage = cls.partial[-1]
    else:
        zspage = _alloc_zspage(m, pool, cls, gfp)
        if zspage is None:
            return -errno.ENOMEM
        cls.partial.append(zspage)
    obj = zspage.free.pop()
    zspage.inuse += 1
    cls.objs_inuse += 1
    if not zspage.free:
        cls.partial.remove(zspage)
    handle = pool.next_handle
    pool.next_handle += 8
    pool.handles[handle] = (zspage, obj, 0)
    return handle


def _obj_span(zspage: Zspage, obj: int, skip: int, length: int) -> list[tuple[int, int, int]]:
    """(pfn, offset, n) pieces of an object's bytes ``[skip, skip+length)``."""
    start = obj * zspage.cls.size + skip
    out = []
    while length > 0:
        i, off = divmod(start, PAGE_SIZE)
        n = min(length, PAGE_SIZE - off)
        out.append((zspage.pages[i], off, n))
        start += n
        length -= n
    return out


def zs_obj_write(pool: ZsPool, handle: int, data: bytes) -> None:
    """Copy ``data`` into the object (zs_obj_write / zs_map_object + memcpy)."""
    m = current_machine()
    zspage, obj, _ = pool.handles[handle]
    pm = m.physmem
    skip = 0
    if not zspage.cls.huge:  # the object starts with its handle (obj_malloc)
        head = (handle | OBJ_ALLOCATED_TAG).to_bytes(8, "little")
        for pfn, off, n in _obj_span(zspage, obj, 0, ZS_HANDLE_SIZE):
            pm.write(pfn << 12 | off, head[:n])
            head = head[n:]
        skip = ZS_HANDLE_SIZE
    pos = 0
    for pfn, off, n in _obj_span(zspage, obj, skip, len(data)):
        pm.write(pfn << 12 | off, data[pos:pos + n])
        pos += n
    pool.handles[handle] = (zspage, obj, len(data))


def zs_obj_read(pool: ZsPool, handle: int) -> bytes:
    """The object's bytes (zs_obj_read_begin / zs_map_object)."""
    m = current_machine()
    zspage, obj, length = pool.handles[handle]
    skip = 0 if zspage.cls.huge else ZS_HANDLE_SIZE
    pm = m.physmem
    return b"".join(pm.read(pfn << 12 | off, n) for pfn, off, n in
                    _obj_span(zspage, obj, skip, length))


@kfunc
def zs_free(pool: ZsPool, handle: int) -> None:
    m = current_machine()
    zspage, obj, _ = pool.handles.pop(handle)
    cls = zspage.cls
    if not zspage.free:
        cls.partial.append(zspage)
    zspage.free.append(obj)
    zspage.inuse -= 1
    cls.objs_inuse -= 1
    if not zspage.inuse:
        free_zspage(m, pool, zspage)


def zs_pool_stats(pool: ZsPool) -> dict[str, int]:
    return {"pages_compacted": pool.pages_compacted}


@register_check
def check_zsmalloc(m: Any) -> None:
    """Every zspage page is allocated and PGTY_zsmalloc; nr_zspages equals the pools' pages."""
    pools = getattr(m, "zs_pools", None) or []
    total = 0
    mem_map = m.mem_map
    for pool in pools:
        n = 0
        for pfn, zspage in pool.page_owner.items():
            assert mem_map._mapcount[pfn] == ZSMALLOC_MAPCOUNT, \
                f"zspage pfn {pfn:#x} of {pool.name} is not PGTY_zsmalloc"
            assert mem_map._refcount[pfn] >= 1, f"zspage pfn {pfn:#x} has no reference"
            assert pfn in zspage.pages
            n += 1
        assert n == pool.pages_allocated, \
            f"zs_pool {pool.name}: pages_allocated {pool.pages_allocated} != {n}"
        used = sum(z.inuse for z in {id(z): z for _, z in pool.page_owner.items()}.values())
        assert used == len(pool.handles), \
            f"zs_pool {pool.name}: {len(pool.handles)} handles but {used} objects in use"
        total += n
    nr = sum(z.vm_stat[_NR_ZSPAGES] for z in m.zones)
    assert nr == total, f"nr_zspages {nr} != zsmalloc pages {total}"
