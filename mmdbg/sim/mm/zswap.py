"""zswap (mm/zswap.c, 6.12+): a compressed cache in front of the swap device.

``swap_writeout`` (page_io) offers every non-zero page to :func:`zswap_store` before the
device (zero-filled pages never get here: the swap zeromap takes them first).  A store
checks, in the kernel's order:

1. ``enabled``;
2. the memcg's ``memory.zswap.max`` (``obj_cgroup_may_zswap``; over it, ``shrink_memcg``
   writes one of the group's entries back or the store fails);
3. the pool limit (``zswap_check_limits``): at ``max_pool_percent`` of RAM the pool is *full*
   (``pool_limit_hit``), and it stays full -- every store rejected -- until it has shrunk to
   ``accept_threshold_percent`` of the limit (hysteresis);
4. compression of the page's real bytes with the pool's compressor (``reject_compress_fail``;
   output over PAGE_SIZE is ``reject_compress_poor``), then ``zs_malloc`` in the pool's
   zsmalloc (``reject_alloc_fail``).

A stored page counts ``zswpout`` and is put on the zswap LRU; a rejected one goes on to the
device (``pswpout``), and when the pool is full the shrink work is queued: ``shrink_worker``
(a kernel thread, ``zswap-shrink``) writes the oldest entries back to their swap slots
(``zswap_writeback_entry``: ``zswpwb``, ``written_back_pages``, ``pswpout``) until the pool
is below the accept threshold.  Entries get a second chance (``referenced``) as in
``shrink_memcg_cb``.  ``zswap_load`` on swap-in decompresses (``zswpin``), marks the page
dirty and drops the entry (loads are exclusive since 6.9); ``zswap_invalidate`` runs when a
slot is freed.

Changing ``compressor`` creates a new pool that becomes current; entries stay in the old pool
until they go, then the old pool is destroyed (``zswap_pool_put``).

Files: ``/sys/module/zswap/parameters/{enabled,shrinker_enabled,compressor,max_pool_percent,
accept_threshold_percent}`` and ``/sys/kernel/debug/zswap/*``; meminfo ``Zswap``/``Zswapped``;
memcg ``memory.zswap.current/max/writeback`` and memory.stat ``zswap``/``zswapped``.

Simplifications: one global LRU instead of the per-memcg, per-node list_lru (the shrink
worker walks it oldest first regardless of memcg); the compressed size is accounted per memcg
(``memory.zswap.current``) but not charged to ``memory.current``; entries are not slab
objects (``reject_kmemcache_fail`` stays 0); writeback writes the decompressed bytes to the
slot directly instead of through a temporary swap-cache folio; the memcg-aware zswap
shrinker (``shrinker_enabled``) is a parameter only -- writeback happens when the pool fills.
"""

from __future__ import annotations

import errno
from collections import OrderedDict
from typing import Any

from mmdbg.sim import config
from mmdbg.sim.include.gfp import (
    __GFP_HIGHMEM,
    __GFP_KSWAPD_RECLAIM,
    __GFP_MOVABLE,
    __GFP_NORETRY,
    __GFP_NOWARN,
)
from mmdbg.sim.lib import crypto_comp
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm import vmstat, zsmalloc
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.trace import current_machine, kfunc

PAGE_SIZE = 4096
EV = vmstat.EV
MAX_RECLAIM_RETRIES = 16
PAGE_COUNTER_MAX = (1 << 63) // 4096 - 1
CONFIG_ZSWAP_COMPRESSOR_DEFAULT = "lzo"
ZSWAP_GFP = __GFP_NORETRY | __GFP_NOWARN | __GFP_KSWAPD_RECLAIM | __GFP_HIGHMEM | __GFP_MOVABLE
_DIRTY = 1 << pf.PG_dirty
STATS = ("pool_limit_hit", "reject_reclaim_fail", "reject_alloc_fail", "reject_kmemcache_fail",
         "reject_compress_fail", "reject_compress_poor", "written_back_pages")


def _uint(key: str, lo: int = 0, hi: int = (1 << 32) - 1) -> Any:
    def parse(v: str | None) -> int:
        try:
            n = int(v or "", 10)
        except ValueError:
            raise config.ConfigError(key, f"invalid value '{v}' (expected an integer)") from None
        if not lo <= n <= hi:
            raise config.ConfigError(key, f"value {n} out of range [{lo}, {hi}]")
        return n

    return parse


config.register_param("zswap.compressor", lambda v: v or "")
config.register_param("zswap.max_pool_percent", _uint("zswap.max_pool_percent"))
config.register_param("zswap.accept_threshold_percent", _uint("zswap.accept_threshold_percent",
                                                              0, 100))
config.register_param("zswap.shrinker_enabled",
                      lambda v: config._bool("zswap.shrinker_enabled", v))


class ZswapEntry:
    """``struct zswap_entry``."""

    ktype = "zswap_entry"
    __slots__ = ("handle", "length", "memcg", "pool", "referenced", "swpentry")

    def __init__(self, swpentry: int, pool: ZswapPool, handle: int, length: int,
                 memcg: Any) -> None:
        self.swpentry = swpentry
        self.pool = pool
        self.handle = handle
        self.length = length
        self.memcg = memcg
        self.referenced = True

    def __repr__(self) -> str:
        return f"<zswap_entry {self.swpentry:#x} len {self.length} {self.pool.tfm_name}>"


class ZswapPool:
    """``struct zswap_pool``: one compressor and its zsmalloc pool."""

    ktype = "zswap_pool"

    def __init__(self, m: Any, name: str) -> None:
        self.tfm_name = name
        self.acomp = crypto_comp.crypto_alloc_acomp(name)
        self.zs_pool = zsmalloc.zs_create_pool(f"zswap{len(m.zswap_pools_made)}")
        m.zswap_pools_made.append(name)
        self.nr_entries = 0

    def __repr__(self) -> str:
        return f"<zswap_pool {self.tfm_name}>"


class Zswap:
    """``machine.zswap``: the module parameters, pools, tree, LRU and statistics."""

    def __init__(self, m: Any) -> None:
        self.machine = m
        x = m.config.extra
        self.enabled = bool(m.config.zswap_enabled)
        self.shrinker_enabled = bool(x.get("zswap.shrinker_enabled", False))
        self.compressor = x.get("zswap.compressor") or CONFIG_ZSWAP_COMPRESSOR_DEFAULT
        self.max_pool_percent = x.get("zswap.max_pool_percent", 20)
        self.accept_thr_percent = x.get("zswap.accept_threshold_percent", 90)
        self.pools: list[ZswapPool] = []  # the first is current
        self.tree: dict[int, ZswapEntry] = {}  # swap entry -> zswap entry (the xarrays)
        self.lru: OrderedDict[int, ZswapEntry] = OrderedDict()
        self.stats = dict.fromkeys(STATS, 0)
        self.stored_pages = 0
        self.pool_reached_full = False
        self.memcg_bytes: dict[Any, list[int]] = {}  # memcg -> [bytes, pages] (local)
        self.shrink_pending = 0  # queued shrink work requests
        self.shrink_task: Any = None
        self.shrink_wq: Any = None

    # -- the page_io hooks -------------------------------------------------------------
    def store(self, m: Any, folio: int, entry: int) -> bool:
        return zswap_store(folio)

    def load(self, m: Any, folio: int, entry: int) -> bytes | None:
        return zswap_load(folio, entry)

    def invalidate(self, m: Any, entry: int) -> None:
        if entry in self.tree:
            zswap_invalidate(entry)

    # -- figures -------------------------------------------------------------------------
    @property
    def pool_pages(self) -> int:
        return zswap_total_pages(self.machine)

    @property
    def current_pool(self) -> ZswapPool | None:
        return self.pools[0] if self.pools else None

    def compressed_bytes(self) -> int:
        return sum(e.length for e in self.tree.values())

    def memcg_usage(self, memcg: Any) -> tuple[int, int]:
        """(compressed bytes, pages stored) of ``memcg`` and its descendants."""
        b = p = 0
        for cg in memcg.subtree():
            v = self.memcg_bytes.get(cg)
            if v is not None:
                b += v[0]
                p += v[1]
        return b, p

    def shrink(self) -> int:
        """Run the shrink work now (tests, the shell); returns pages written back."""
        self.machine.activate()
        before = self.stats["written_back_pages"]
        shrink_worker()
        return self.stats["written_back_pages"] - before


# -- setup ---------------------------------------------------------------------------------------
def default_compressor() -> str:
    if crypto_comp.crypto_has_acomp(CONFIG_ZSWAP_COMPRESSOR_DEFAULT):
        return CONFIG_ZSWAP_COMPRESSOR_DEFAULT
    return "lz4"


def zswap_setup(m: Any) -> Zswap:
    """zswap_setup (late_initcall): parameters from the command line, the first pool."""
    if getattr(m, "zswap", None) is not None:
        return m.zswap
    m.zswap_pools_made = []
    zs = m.zswap = Zswap(m)
    if not crypto_comp.crypto_has_acomp(zs.compressor):
        dflt = default_compressor()
        why = crypto_comp.unavailable_reason(zs.compressor)
        m.printk(f"zswap: compressor {zs.compressor} not available, using default {dflt}",
                 level=3)
        if zs.compressor in ("lzo", "lzo-rle") and why:
            m.printk(f"zswap: {why}", level=3)
        zs.compressor = dflt
    if zs.enabled:
        _pool_create(m, zs)
    return zs


def _pool_create(m: Any, zs: Zswap) -> ZswapPool | None:
    try:
        pool = ZswapPool(m, zs.compressor)
    except KeyError as e:
        m.printk(f"zswap: pool creation failed: {e.args[0]}", level=3)
        return None
    if not zs.pools:
        m.printk(f"zswap: loaded using pool {pool.tfm_name}/zsmalloc")
    zs.pools.insert(0, pool)
    return pool


def zswap_total_pages(m: Any) -> int:
    zs = getattr(m, "zswap", None)
    if zs is None:
        return 0
    return sum(zsmalloc.zs_get_total_pages(p.zs_pool) for p in zs.pools)


def zswap_max_pages(m: Any) -> int:
    return m.totalram_pages * m.zswap.max_pool_percent // 100


def zswap_accept_thr_pages(m: Any) -> int:
    return zswap_max_pages(m) * m.zswap.accept_thr_percent // 100


def zswap_check_limits(m: Any) -> bool:
    """True if the pool is (still) full."""
    zs = m.zswap
    cur = zswap_total_pages(m)
    mx = zswap_max_pages(m)
    if cur >= mx:
        zs.stats["pool_limit_hit"] += 1
        zs.pool_reached_full = True
    elif zs.pool_reached_full and cur <= zswap_accept_thr_pages(m):
        zs.pool_reached_full = False
    return zs.pool_reached_full


# -- memcg ---------------------------------------------------------------------------------------
def memcg_zswap_max(memcg: Any) -> int:
    return getattr(memcg, "zswap_max", PAGE_COUNTER_MAX)


def mem_cgroup_zswap_writeback_enabled(memcg: Any) -> bool:
    return all(getattr(c, "zswap_writeback", 1) for c in memcg.ancestors())


def obj_cgroup_may_zswap(m: Any, memcg: Any) -> bool:
    """Is every ancestor (short of the root) under its memory.zswap.max?"""
    zs = m.zswap
    for c in memcg.ancestors():
        if c.is_root():
            break
        mx = memcg_zswap_max(c)
        if mx >= PAGE_COUNTER_MAX:
            continue
        if mx == 0:
            return False
        if zs.memcg_usage(c)[0] // PAGE_SIZE >= mx:
            return False
    return True


def _charge(zs: Zswap, memcg: Any, length: int, n: int) -> None:
    v = zs.memcg_bytes.setdefault(memcg, [0, 0])
    v[0] += length
    v[1] += n
    if not v[1]:
        del zs.memcg_bytes[memcg]


# -- store / load / invalidate -------------------------------------------------------------------
def zswap_compress(m: Any, zs: Zswap, folio: int, pool: ZswapPool) -> tuple[int, int] | None:
    """Compress the page into the pool: (handle, length) or None (a reject counted)."""
    comp = pool.acomp
    try:
        dst = comp.compress(m.physmem.page_bytes(folio))
    except crypto_comp.CompressError:
        zs.stats["reject_compress_fail"] += 1
        return None
    finally:
        crypto_comp.charge(m, comp)
    dlen = len(dst)
    handle = zsmalloc.zs_malloc(pool.zs_pool, dlen, ZSWAP_GFP, -1)
    if handle < 0:
        zs.stats["reject_compress_poor" if handle == -errno.ENOSPC else "reject_alloc_fail"] += 1
        return None
    zsmalloc.zs_obj_write(pool.zs_pool, handle, dst)
    return handle, dlen


def zswap_store_page(m: Any, zs: Zswap, folio: int, swpentry: int, memcg: Any,
                     pool: ZswapPool) -> bool:
    r = zswap_compress(m, zs, folio, pool)
    if r is None:
        return False
    handle, length = r
    old = zs.tree.get(swpentry)
    if old is not None:
        zswap_entry_free(m, old)
    e = ZswapEntry(swpentry, pool, handle, length, memcg)
    zs.tree[swpentry] = e
    pool.nr_entries += 1
    _charge(zs, memcg, length, 1)
    zs.stored_pages += 1
    zs.lru[swpentry] = e
    return True


@kfunc
def zswap_store(folio: int) -> bool:
    """Compress a swap-cache page into the pool instead of writing it; True if stored."""
    from mmdbg.sim.mm.swap import folio_memcg

    m = current_machine()
    zs = m.zswap
    swpentry = m.mem_map.private[folio]
    ret = False
    if zs.enabled and zs.pools:
        memcg = folio_memcg(m, folio)
        ok = True
        if not obj_cgroup_may_zswap(m, memcg) and shrink_memcg(memcg):
            ok = False
        if ok and not zswap_check_limits(m):
            if zswap_store_page(m, zs, folio, swpentry, memcg, zs.pools[0]):
                m.vm_events[EV["zswpout"]] += 1
                memcg.count_event("zswpout", 1)
                ret = True
        if not ret and zs.pool_reached_full:
            queue_shrink_work(m)
    if not ret:  # check_old: a stale entry would be written back over the new data
        old = zs.tree.get(swpentry)
        if old is not None:
            zswap_entry_free(m, old)
    return ret


@kfunc
def zswap_load(folio: int, swpentry: int) -> bytes | None:
    """Swap-in: the page's bytes from the pool (the entry is freed), or None."""
    m = current_machine()
    zs = m.zswap
    e = zs.tree.get(swpentry)
    if e is None:
        return None
    data = zswap_decompress(m, e)
    m.vm_events[EV["zswpin"]] += 1
    e.memcg.count_event("zswpin", 1)
    if m.mem_map.flags[folio] & (1 << pf.PG_swapcache):
        m.mem_map.flags[folio] |= _DIRTY  # the swap cache owns the only copy now
        zswap_entry_free(m, e)
    return data


def zswap_decompress(m: Any, e: ZswapEntry) -> bytes:
    comp = e.pool.acomp
    src = zsmalloc.zs_obj_read(e.pool.zs_pool, e.handle)
    crypto_comp.charge(m, comp, decompress=True)
    return comp.decompress(src, PAGE_SIZE)


@kfunc
def zswap_invalidate(swpentry: int) -> None:
    """The swap slot is freed: drop its entry."""
    m = current_machine()
    e = m.zswap.tree.get(swpentry)
    if e is not None:
        zswap_entry_free(m, e)


def zswap_entry_free(m: Any, e: ZswapEntry) -> None:
    zs = m.zswap
    del zs.tree[e.swpentry]
    zs.lru.pop(e.swpentry, None)
    zsmalloc.zs_free(e.pool.zs_pool, e.handle)
    _charge(zs, e.memcg, -e.length, -1)
    zs.stored_pages -= 1
    pool = e.pool
    pool.nr_entries -= 1
    if not pool.nr_entries and zs.pools and pool is not zs.pools[0] and pool in zs.pools:
        zs.pools.remove(pool)  # zswap_pool_put: the last reference to an old pool
        zsmalloc.zs_destroy_pool(pool.zs_pool)


# -- writeback -----------------------------------------------------------------------------------
@kfunc
def zswap_writeback_entry(e: ZswapEntry) -> int:
    """Decompress an entry and write it to its swap slot; 0 or -errno."""
    from mmdbg.sim.mm.page_io import swap_writepage_raw

    m = current_machine()
    if e.swpentry in m.swap.cache:  # the page is in memory: __read_swap_cache_async found it
        return -errno.EEXIST
    data = zswap_decompress(m, e)
    m.vm_events[EV["zswpwb"]] += 1
    e.memcg.count_event("zswpwb", 1)
    swpentry = e.swpentry
    zswap_entry_free(m, e)
    swap_writepage_raw(m, swpentry, data)
    return 0


def shrink_memcg_cb(m: Any, e: ZswapEntry) -> bool:
    """One LRU entry: second chance, else write it back.  True if written back."""
    zs = m.zswap
    if e.referenced:
        e.referenced = False
        zs.lru.move_to_end(e.swpentry)
        return False
    if not mem_cgroup_zswap_writeback_enabled(e.memcg):
        zs.lru.move_to_end(e.swpentry)
        return False
    if zswap_writeback_entry(e):
        zs.stats["reject_reclaim_fail"] += 1
        if e.swpentry in zs.lru:
            zs.lru.move_to_end(e.swpentry)
        return False
    zs.stats["written_back_pages"] += 1
    return True


@kfunc
def shrink_memcg(memcg: Any) -> int:
    """Write back one entry charged to ``memcg`` (or below); 0 on success, else -errno."""
    m = current_machine()
    zs = m.zswap
    if not mem_cgroup_zswap_writeback_enabled(memcg):
        return -errno.ENOENT
    members = set(id(c) for c in memcg.subtree())
    for e in list(zs.lru.values()):
        if id(e.memcg) in members:
            return 0 if shrink_memcg_cb(m, e) else -errno.EAGAIN
    return -errno.ENOENT


@kfunc
def shrink_worker() -> None:
    """The pool hit its limit: write back until it is below the accept threshold.  Each
    step visits one LRU entry (shrink_memcg's ``nr_to_walk = 1``); a step that writes nothing
    back -- a second chance included -- is a failure, and MAX_RECLAIM_RETRIES end the work."""
    m = current_machine()
    zs = m.zswap
    thr = zswap_accept_thr_pages(m)
    failures = 0
    while zs.lru:
        e = next(iter(zs.lru.values()))
        if not shrink_memcg_cb(m, e):
            failures += 1
            if failures == MAX_RECLAIM_RETRIES:
                break
        if zswap_total_pages(m) <= thr:
            break


def queue_shrink_work(m: Any) -> None:
    """queue_work(shrink_wq, &zswap_shrink_work) from a rejected store.

    In the kernel the work runs on another CPU between two rejected stores (each of which
    then waits for a disk write), so every rejection while the pool is full gets a run of the
    worker.  The simulation counts the requests and the ``zswap-shrink`` kernel thread runs
    the worker that many times when it is scheduled."""
    zs = m.zswap
    zs.shrink_pending += 1
    if zs.shrink_task is None:
        from mmdbg.sim.kernel.fork import kthread_create
        from mmdbg.sim.kernel.sched_core import WaitQueue

        zs.shrink_wq = WaitQueue("zswap-shrink")
        t = kthread_create(_shrink_thread, "zswap-shrink")
        t.state = 1
        t.se.wait = None
        zs.shrink_task = t
        zs.shrink_wq.waiters.append(t)
    if zs.shrink_wq.waiters:
        zs.shrink_wq.wake_up(m)


def _shrink_thread(m: Any) -> Any:
    from mmdbg.sim.kernel.sched_core import Block

    zs = m.zswap
    while True:
        if not zs.shrink_pending:
            yield Block(zs.shrink_wq)
            continue
        n, zs.shrink_pending = zs.shrink_pending, 0
        for _ in range(n):
            if not zs.lru:
                break
            shrink_worker()
        yield


# -- files ---------------------------------------------------------------------------------------
def _kstrtobool(text: str) -> bool:
    t = text.strip()
    if t[:1] in ("1", "y", "Y"):
        return True
    if t[:1] in ("0", "n", "N"):
        return False
    if t[:2].lower() == "on":
        return True
    if t[:2].lower() == "of":
        return False
    from mmdbg.sim.fs.vfs import KernelError

    raise KernelError(errno.EINVAL)


def _kstrtouint(text: str, lo: int = 0, hi: int = (1 << 32) - 1) -> int:
    from mmdbg.sim.fs.vfs import KernelError

    t = text.strip()
    try:
        n = int(t, 0) if t.lower().startswith("0x") else int(t, 10)
    except ValueError:
        raise KernelError(errno.EINVAL) from None
    if not lo <= n <= hi:
        raise KernelError(errno.EINVAL)
    return n


def zswap_enabled_param_set(m: Any, text: str) -> None:
    zs = m.zswap
    val = _kstrtobool(text)
    if val and not zs.pools and _pool_create(m, zs) is None:
        from mmdbg.sim.fs.vfs import KernelError

        raise KernelError(errno.ENODEV)
    zs.enabled = val


def zswap_compressor_param_set(m: Any, text: str) -> None:
    """__zswap_param_set: a new current pool with the compressor (-ENOENT if unknown)."""
    from mmdbg.sim.fs.vfs import KernelError

    zs = m.zswap
    name = text.strip()
    if not crypto_comp.crypto_has_acomp(name):
        m.printk(f"zswap: compressor {name} not available", level=3)
        raise KernelError(errno.ENOENT)
    if name == zs.compressor and ((zs.pools and zs.pools[0].tfm_name == name) or not zs.pools):
        return
    zs.compressor = name
    if not zs.pools:
        return  # no pool yet: the parameter is used when zswap is enabled
    old = next((p for p in zs.pools if p.tfm_name == name), None)
    if old is not None:
        zs.pools.remove(old)
        zs.pools.insert(0, old)
    else:
        pool = ZswapPool(m, name)
        zs.pools.insert(0, pool)
    for p in list(zs.pools[1:]):
        if not p.nr_entries:
            zs.pools.remove(p)
            zsmalloc.zs_destroy_pool(p.zs_pool)


def _set_attr(name: str, lo: int = 0, hi: int = (1 << 32) - 1) -> Any:
    def w(m: Any, text: str) -> None:
        setattr(m.zswap, name, _kstrtouint(text, lo, hi))

    return w


PARAMS: dict[str, tuple[Any, Any]] = {
    "enabled": (lambda zs: "Y" if zs.enabled else "N", zswap_enabled_param_set),
    "shrinker_enabled": (lambda zs: "Y" if zs.shrinker_enabled else "N",
                         lambda m, t: setattr(m.zswap, "shrinker_enabled", _kstrtobool(t))),
    "compressor": (lambda zs: zs.compressor, zswap_compressor_param_set),
    "max_pool_percent": (lambda zs: str(zs.max_pool_percent), _set_attr("max_pool_percent")),
    "accept_threshold_percent": (lambda zs: str(zs.accept_thr_percent),
                                 _set_attr("accept_thr_percent", 0, 100)),
}


def debugfs_stats(m: Any) -> dict[str, int]:
    zs = m.zswap
    out = dict(zs.stats)
    out["pool_total_size"] = zswap_total_pages(m) * PAGE_SIZE
    out["stored_pages"] = zs.stored_pages
    return out


def register(v: Any, m: Any) -> None:
    """/sys/module/zswap/parameters/* and /sys/kernel/debug/zswap/* (sets zswap up first)."""
    zswap_setup(m)
    for name, (reader, writer) in PARAMS.items():
        def r(reader: Any = reader) -> str:
            return f"{reader(m.zswap)}\n"

        def w(text: str, writer: Any = writer) -> None:
            writer(m, text)

        v.register(f"/sys/module/zswap/parameters/{name}", r, w, mode=0o644)
    for name in (*STATS, "pool_total_size", "stored_pages"):
        def rs(name: str = name) -> str:
            return f"{debugfs_stats(m)[name]}\n"

        v.register(f"/sys/kernel/debug/zswap/{name}", rs)


# memcg files (cgroupfs.FILES entries)
def memcg_zswap_current(m: Any, cg: Any) -> str:
    zs = getattr(m, "zswap", None)
    return f"{zs.memcg_usage(cg)[0] if zs is not None else 0}\n"


def memcg_zswap_max_show(m: Any, cg: Any) -> str:
    mx = memcg_zswap_max(cg)
    return "max\n" if mx >= PAGE_COUNTER_MAX else f"{mx * PAGE_SIZE}\n"


def memcg_zswap_max_write(m: Any, cg: Any, text: str) -> None:
    from mmdbg.sim.fs.cgroupfs import page_counter_memparse

    cg.zswap_max = page_counter_memparse(text)


def memcg_zswap_writeback_write(m: Any, cg: Any, text: str) -> None:
    from mmdbg.sim.fs.vfs import KernelError

    t = text.strip()
    if t not in ("0", "1"):
        raise KernelError(errno.EINVAL)
    cg.zswap_writeback = int(t)


@register_check
def check_zswap(m: Any) -> None:
    """Every entry sits on an in-use slot with no other copy; counters agree."""
    zs = getattr(m, "zswap", None)
    if zs is None:
        return
    from mmdbg.sim.mm.swapfile import swap_info, swp_offset

    assert zs.stored_pages == len(zs.tree), \
        f"zswap stored_pages {zs.stored_pages} != {len(zs.tree)} entries"
    assert len(zs.lru) == len(zs.tree), "zswap LRU and tree disagree"
    per_pool: dict[int, int] = {}
    for swpentry, e in zs.tree.items():
        si = swap_info(m, swpentry)
        off = swp_offset(swpentry)
        assert si is not None and si.swap_map[off], f"zswap entry {swpentry:#x} on a free slot"
        assert off not in si.data and off not in si.zeromap, \
            f"zswap entry {swpentry:#x} also stored on {si.swap_file}"
        assert e.handle in e.pool.zs_pool.handles, f"zswap entry {swpentry:#x}: stale handle"
        assert e.pool in zs.pools, f"zswap entry {swpentry:#x} in a destroyed pool"
        per_pool[id(e.pool)] = per_pool.get(id(e.pool), 0) + 1
    for p in zs.pools:
        assert p.nr_entries == per_pool.get(id(p), 0) == len(p.zs_pool.handles), \
            f"zswap pool {p.tfm_name}: nr_entries {p.nr_entries} disagrees"
    b = sum(v[0] for v in zs.memcg_bytes.values())
    assert b == zs.compressed_bytes(), "zswap memcg bytes disagree with the entries"
