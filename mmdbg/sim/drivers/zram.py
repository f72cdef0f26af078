"""zram (drivers/block/zram/zram_drv.c): a compressed RAM block device, /dev/zram0.

Set ``comp_algorithm`` and ``disksize`` under ``/sys/block/zram0/`` (or call
:func:`zram_setup`), then ``swapon /dev/zram0``: the device is a swap partition whose
``rw_page`` compresses each page into its own zsmalloc pool (``zram_write_page``) and
decompresses it on swap-in (``zram_read_page``).  The device is synchronous
(``SWP_SYNCHRONOUS_IO``: no swap readahead) and frees a slot's object when the slot is freed
(``swap_slot_free_notify`` -> ``zram_slot_free_notify``, ``notify_free``).

Pages whose words are all the same value are not compressed (``page_same_filled``:
``same_pages``, the value kept in the slot); pages that compress to at least the pool's
``huge_class_size`` are stored uncompressed (``huge_pages``).  ``mem_limit`` caps the pool
(a write over it fails: ``failed_writes``), ``mem_used_max`` is the pool's high-water mark.

Files: ``disksize``, ``initstate``, ``reset``, ``comp_algorithm``, ``max_comp_streams``,
``mem_limit`` (write-only), ``mem_used_max`` (write-only, ``0`` resets), ``mm_stat`` and
``io_stat`` in the kernel's formats.

Simplifications: one device (zram0, no ``hot_add``), no writeback to a backing device, no
recompression, no idle tracking; the time a page takes is the compressor's CPU cost.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.config import memparse
from mmdbg.sim.include.gfp import __GFP_HIGHMEM, __GFP_MOVABLE, __GFP_NOWARN, GFP_NOIO
from mmdbg.sim.lib import crypto_comp
from mmdbg.sim.mm import zsmalloc
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.trace import current_machine, kfunc

PAGE_SIZE = 4096
ZRAM_MAJOR = 252
CONFIG_ZRAM_DEF_COMP = "lzo-rle"
ZRAM_GFP = GFP_NOIO | __GFP_NOWARN | __GFP_HIGHMEM | __GFP_MOVABLE


def _default_comp() -> str:
    for a in (CONFIG_ZRAM_DEF_COMP, "lz4", "zstd"):
        if crypto_comp.crypto_has_acomp(a):
            return a
    return "deflate"


class ZramSlot:
    """One ``zram_table_entry``: a handle and size, or the fill value of a same page."""

    __slots__ = ("element", "handle", "huge", "same", "size")

    def __init__(self) -> None:
        self.handle = 0
        self.size = 0
        self.same = False
        self.huge = False
        self.element = 0


class Zram:
    """``struct zram`` and its gendisk (the swap code sees it as a block device)."""

    ktype = "zram"
    synchronous_io = True

    def __init__(self, m: Any, minor: int = 0) -> None:
        self.machine = m
        self.name = f"zram{minor}"
        self.major = ZRAM_MAJOR
        self.minor = minor
        self.disksize = 0
        self.comp_algorithm = _default_comp()
        self.comp: Any = None
        self.mem_pool: zsmalloc.ZsPool | None = None
        self.table: dict[int, ZramSlot] = {}
        self.limit_pages = 0
        self._reset_stats()

    def _reset_stats(self) -> None:
        self.stats = dict.fromkeys(
            ("compr_data_size", "pages_stored", "same_pages", "huge_pages",
             "huge_pages_since", "max_used_pages", "failed_reads", "failed_writes",
             "notify_free", "num_reads", "num_writes"), 0)

    def __repr__(self) -> str:
        return f"<zram {self.name}>"

    @property
    def path(self) -> str:
        return f"/dev/{self.name}"

    @property
    def init_done(self) -> bool:
        return self.mem_pool is not None

    def claimed(self) -> bool:
        """Is the device open as swap (reset and disksize changes get -EBUSY)?"""
        sw = getattr(self.machine, "swap", None)
        return sw is not None and any(si is not None and si.bdev is self
                                      for si in sw.swap_info)

    # -- the block device interface used by page_io and swapfile -----------------------
    def rw_page(self, m: Any, index: int, data: bytes | None, is_write: bool) -> Any:
        if is_write:
            ret = zram_write_page(self, data, index)
            if ret:
                self.stats["failed_writes"] += 1
            self.stats["num_writes"] += 1
            return self.comp.compress_ns if self.comp is not None else 0
        out = zram_read_page(self, index)
        self.stats["num_reads"] += 1
        return out, self.comp.decompress_ns if self.comp is not None else 0

    def slot_free_notify(self, index: int) -> None:
        zram_slot_free_notify(self, index)

    def write_cost(self, npages: int) -> int:
        return 0

    def read_cost(self, npages: int) -> int:
        return 0


# -- the I/O path --------------------------------------------------------------------------------
def page_same_filled(data: bytes) -> int | None:
    """The repeated unsigned long if every word of the page is the same, else None."""
    first = data[:8]
    if data == first * (PAGE_SIZE // 8):
        return int.from_bytes(first, "little")
    return None


def update_used_max(zram: Zram, pages: int) -> None:
    if pages > zram.stats["max_used_pages"]:
        zram.stats["max_used_pages"] = pages


def zram_slot_free(zram: Zram, index: int) -> None:
    s = zram.table.pop(index, None)
    if s is None:
        return
    st = zram.stats
    if s.same:
        st["same_pages"] -= 1
    else:
        zsmalloc.zs_free(zram.mem_pool, s.handle)
        st["compr_data_size"] -= s.size
        if s.huge:
            st["huge_pages"] -= 1
    st["pages_stored"] -= 1


@kfunc
def zram_write_page(zram: Zram, data: bytes | None, index: int) -> int:
    """Store one page at ``index``; 0 or -errno."""
    if not zram.init_done:
        return -errno.EIO
    m = current_machine()
    data = bytes(data) if data is not None else bytes(PAGE_SIZE)
    zram_slot_free(zram, index)
    st = zram.stats
    element = page_same_filled(data)
    if element is not None:
        s = ZramSlot()
        s.same = True
        s.element = element
        zram.table[index] = s
        st["same_pages"] += 1
        st["pages_stored"] += 1
        return 0
    comp = zram.comp
    try:
        dst = comp.compress(data)
    except crypto_comp.CompressError as e:
        m.printk(f"zram: Compression failed! err={e}", level=3)
        return -errno.EINVAL
    finally:
        crypto_comp.charge(m, comp)
    pool = zram.mem_pool
    huge = len(dst) >= zsmalloc.zs_huge_class_size(pool)
    if huge:  # write_incompressible_page
        dst = data
    handle = zsmalloc.zs_malloc(pool, len(dst), ZRAM_GFP, -1)
    if handle < 0:
        return handle
    alloced = zsmalloc.zs_get_total_pages(pool)
    update_used_max(zram, alloced)
    if zram.limit_pages and alloced > zram.limit_pages:
        zsmalloc.zs_free(pool, handle)
        return -errno.ENOMEM
    zsmalloc.zs_obj_write(pool, handle, dst)
    s = ZramSlot()
    s.handle = handle
    s.size = len(dst)
    s.huge = huge
    zram.table[index] = s
    st["compr_data_size"] += len(dst)
    st["pages_stored"] += 1
    if huge:
        st["huge_pages"] += 1
        st["huge_pages_since"] += 1
    return 0


@kfunc
def zram_read_page(zram: Zram, index: int) -> bytes:
    m = current_machine()
    s = zram.table.get(index)
    if s is None:
        return bytes(PAGE_SIZE)
    if s.same:
        return s.element.to_bytes(8, "little") * (PAGE_SIZE // 8)
    src = zsmalloc.zs_obj_read(zram.mem_pool, s.handle)
    if s.huge:
        return src
    crypto_comp.charge(m, zram.comp, decompress=True)
    try:
        return zram.comp.decompress(src, PAGE_SIZE)
    except crypto_comp.CompressError as e:
        zram.stats["failed_reads"] += 1
        m.printk(f"zram: Decompression failed! err={e}, page={index}", level=3)
        return bytes(PAGE_SIZE)


@kfunc
def zram_slot_free_notify(zram: Zram, index: int) -> None:
    zram.stats["notify_free"] += 1
    zram_slot_free(zram, index)


# -- setup and files -----------------------------------------------------------------------------
def _err(e: int) -> Exception:
    from mmdbg.sim.fs.vfs import KernelError

    return KernelError(e)


def disksize_store(zram: Zram, text: str) -> None:
    try:
        size = memparse(text.strip())
    except ValueError:
        raise _err(errno.EINVAL) from None
    size = (size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    if not size:
        raise _err(errno.EINVAL)
    if zram.init_done:
        zram.machine.printk("zram: Cannot change disksize for initialized device", level=6)
        raise _err(errno.EBUSY)
    zram.comp = crypto_comp.crypto_alloc_acomp(zram.comp_algorithm)
    zram.mem_pool = zsmalloc.zs_create_pool(zram.name)
    zram.disksize = size


def comp_algorithm_store(zram: Zram, text: str) -> None:
    name = text.strip()
    if zram.init_done:
        zram.machine.printk("zram: Can't change algorithm for initialized device", level=6)
        raise _err(errno.EBUSY)
    if not crypto_comp.crypto_has_acomp(name):
        raise _err(errno.EINVAL)
    zram.comp_algorithm = name


def comp_algorithm_show(zram: Zram) -> str:
    """zcomp_available_show: every algorithm, the selected one in brackets."""
    return "".join(f"[{a}] " if a == zram.comp_algorithm else f"{a} "
                   for a in crypto_comp.available()) + "\n"


@kfunc
def zram_reset_device(zram: Zram) -> None:
    for index in list(zram.table):
        zram_slot_free(zram, index)
    if zram.mem_pool is not None:
        zsmalloc.zs_destroy_pool(zram.mem_pool)
    zram.mem_pool = None
    zram.comp = None
    zram.disksize = 0
    zram.limit_pages = 0
    zram._reset_stats()
    zram.comp_algorithm = _default_comp()


def reset_store(zram: Zram, text: str) -> None:
    try:
        v = int(text.strip(), 0)
    except ValueError:
        raise _err(errno.EINVAL) from None
    if not v:
        raise _err(errno.EINVAL)
    if zram.claimed():
        raise _err(errno.EBUSY)
    zram_reset_device(zram)


def mem_limit_store(zram: Zram, text: str) -> None:
    try:
        limit = memparse(text.strip())
    except ValueError:
        raise _err(errno.EINVAL) from None
    zram.limit_pages = (limit + PAGE_SIZE - 1) >> 12


def mem_used_max_store(zram: Zram, text: str) -> None:
    t = text.strip()
    if t != "0":
        raise _err(errno.EINVAL)
    if zram.init_done:
        zram.stats["max_used_pages"] = zsmalloc.zs_get_total_pages(zram.mem_pool)


def mm_stat_show(zram: Zram) -> str:
    st = zram.stats
    mem_used = zsmalloc.zs_get_total_pages(zram.mem_pool) if zram.init_done else 0
    compacted = zram.mem_pool.pages_compacted if zram.init_done else 0
    cols = (st["pages_stored"] * PAGE_SIZE, st["compr_data_size"], mem_used * PAGE_SIZE,
            zram.limit_pages * PAGE_SIZE, st["max_used_pages"] * PAGE_SIZE, st["same_pages"],
            compacted, st["huge_pages"], st["huge_pages_since"])
    return " ".join(f"{c:8d}" for c in cols) + "\n"


def io_stat_show(zram: Zram) -> str:
    st = zram.stats
    return f"{st['failed_reads']:8d} {st['failed_writes']:8d} {0:8d} {st['notify_free']:8d}\n"


def zram_add(m: Any) -> Zram:
    """``zram_add``: the device exists from boot (the module is built in)."""
    devs = getattr(m, "zram_devices", None)
    if devs is None:
        devs = m.zram_devices = []
    z = Zram(m, len(devs))
    devs.append(z)
    return z


def zram_get(m: Any, name: str = "zram0") -> Zram:
    name = name.removeprefix("/dev/")
    for z in getattr(m, "zram_devices", []):
        if z.name == name:
            return z
    raise KeyError(name)


def zram_setup(m: Any, disksize: int | str, comp_algorithm: str | None = None,
               mem_limit: int | str | None = None, name: str = "zram0") -> Zram:
    """What zramctl does: set the algorithm, the limit and the size (the Python API)."""
    m.activate()
    z = zram_get(m, name)
    if comp_algorithm:
        comp_algorithm_store(z, comp_algorithm)
    if mem_limit is not None:
        mem_limit_store(z, str(mem_limit))
    disksize_store(z, str(disksize))
    return z


def zram_swapon(m: Any, name: str = "zram0", prio: int = 100) -> int:
    """``swapon -p PRIO /dev/zram0``: 0 or -errno."""
    from mmdbg.sim.kernel.vm_init import task_context
    from mmdbg.sim.mm.swapfile import sys_swapon

    m.activate()
    z = zram_get(m, name)
    if not z.init_done:
        return -errno.EINVAL
    with task_context(m, m.tasks[1]):
        return sys_swapon(z.path, z.disksize, prio, kind="partition", bdev=z)


FILES: dict[str, tuple[Any, Any, int]] = {
    "disksize": (lambda z: f"{z.disksize}\n", disksize_store, 0o644),
    "initstate": (lambda z: f"{int(z.init_done)}\n", None, 0o444),
    "reset": (None, reset_store, 0o200),
    "comp_algorithm": (comp_algorithm_show, comp_algorithm_store, 0o644),
    "max_comp_streams": (lambda z: f"{z.machine.ncpus}\n", lambda z, t: None, 0o644),
    "mem_limit": (None, mem_limit_store, 0o200),
    "mem_used_max": (None, mem_used_max_store, 0o200),
    "mm_stat": (mm_stat_show, None, 0o444),
    "io_stat": (io_stat_show, None, 0o444),
}


def register(v: Any, m: Any) -> None:
    """/sys/block/zram0/* (creates the device first)."""
    if not getattr(m, "zram_devices", None):
        zram_add(m)
    for z in m.zram_devices:
        for name, (reader, writer, mode) in FILES.items():
            def r(reader: Any = reader, z: Any = z) -> str:
                return reader(z)

            def w(text: str, writer: Any = writer, z: Any = z) -> None:
                writer(z, text)

            v.register(f"/sys/block/{z.name}/{name}", r if reader else None,
                       w if writer else None, mode=mode)


@register_check
def check_zram(m: Any) -> None:
    """Stats agree with the table; a device used as swap keeps only slots in use."""
    for z in getattr(m, "zram_devices", []) or []:
        st = z.stats
        assert st["pages_stored"] == len(z.table), f"{z.name}: pages_stored disagrees"
        assert st["same_pages"] == sum(1 for s in z.table.values() if s.same), \
            f"{z.name}: same_pages disagrees"
        assert st["compr_data_size"] == sum(s.size for s in z.table.values()), \
            f"{z.name}: compr_data_size disagrees"
        if z.mem_pool is not None:
            assert len(z.mem_pool.handles) == sum(1 for s in z.table.values() if not s.same), \
                f"{z.name}: zsmalloc objects disagree with the table"
        sw = getattr(m, "swap", None)
        si = next((s for s in sw.swap_info if s is not None and s.bdev is z), None) \
            if sw is not None else None
        if si is not None:
            for index in z.table:
                assert si.swap_map[index], f"{z.name}: slot {index} stored but free in swap"
