"""Swap I/O (mm/page_io.c): ``swap_writeout`` and ``swap_read_folio``.

Write: a zero-filled page only sets its bit in the device's zeromap (``swpout_zero``, no I/O);
otherwise zswap gets the first chance (``zswap_store``: compressed into the pool, ``zswpout``);
otherwise the page's bytes go to the device (``__swap_writepage``: the slot's stored copy, a
block-device write charged to the writer's clock, ``pswpout``).  Read mirrors it: zeromap ->
zero fill (``swpin_zero``), ``zswap_load`` (``zswpin``), or a device read (``pswpin``).
``pgpgin``/``pgpgout`` count sectors as the block layer does.

A zram device as swap receives the page through its own ``rw_page`` (compression happens
there); a swap file or partition just stores the bytes.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.swapfile import swap_info, swp_offset
from mmdbg.sim.trace import current_machine, kfunc

EV = vmstat.EV


def is_folio_zero_filled(m: Any, folio: int) -> bool:
    pg = m.physmem.pages.get(folio)
    return pg is None or not any(pg)


def _charge_io(m: Any, ns: int) -> None:
    from mmdbg.sim.kernel.sched_core import io_schedule_timeout

    io_schedule_timeout(m, ns)


@kfunc(aliases=("swap_writepage", "__swap_writepage_bdev"))
def swap_writeout(folio: int) -> int:
    """Write a swap-cache page to its slot; 0 on success."""
    m = current_machine()
    entry = m.mem_map.private[folio]
    si = swap_info(m, entry)
    off = swp_offset(entry)
    if is_folio_zero_filled(m, folio):
        si.zeromap.add(off)
        si.data.pop(off, None)
        zs = getattr(m, "zswap", None)
        if zs is not None:
            zs.invalidate(m, entry)
        m.vm_events[EV["swpout_zero"]] += 1
        return 0
    si.zeromap.discard(off)
    zs = getattr(m, "zswap", None)
    if zs is not None and zs.store(m, folio, entry):
        si.data.pop(off, None)
        return 0
    __swap_writepage(m, si, off, folio)
    return 0


def __swap_writepage(m: Any, si: Any, off: int, folio: int) -> None:
    _bdev_write_page(m, si, off, m.physmem.page_bytes(folio))
    from mmdbg.sim.mm.swap import folio_memcg

    folio_memcg(m, folio).count_event("pswpout", 1)


def swap_writepage_raw(m: Any, entry: int, data: bytes) -> None:
    """zswap writeback: put decompressed bytes on the backing device."""
    _bdev_write_page(m, swap_info(m, entry), swp_offset(entry), data)


def _bdev_write_page(m: Any, si: Any, off: int, data: bytes) -> None:
    """One page to the swap device (its rw_page, as zram has, or the block device)."""
    rw = getattr(si.bdev, "rw_page", None)
    if rw is not None:
        ns = rw(m, off, data, True)
    else:
        si.data[off] = data
        ns = si.bdev.write_cost(1)
    _charge_io(m, ns)
    m.vm_events[EV["pswpout"]] += 1
    m.vm_events[EV["pgpgout"]] += 8


@kfunc(aliases=("swap_readpage",))
def swap_read_folio(folio: int, entry: int) -> None:
    """Fill a new swap-cache page from its slot."""
    m = current_machine()
    si = swap_info(m, entry)
    off = swp_offset(entry)
    pm = m.physmem
    if off in si.zeromap:
        pm.clear_pages(folio, 1)
        m.vm_events[EV["swpin_zero"]] += 1
        return
    zs = getattr(m, "zswap", None)
    if zs is not None:
        data = zs.load(m, folio, entry)
        if data is not None:
            _set(pm, folio, data)
            return
    rw = getattr(si.bdev, "rw_page", None)
    if rw is not None:
        data, ns = rw(m, off, None, False)
    else:
        data = si.data.get(off)
        ns = si.bdev.read_cost(1)
    _set(pm, folio, data)
    _charge_io(m, ns)
    m.vm_events[EV["pswpin"]] += 1
    m.vm_events[EV["pgpgin"]] += 8
    from mmdbg.sim.mm.swap import folio_memcg

    folio_memcg(m, folio).count_event("pswpin", 1)


def _set(pm: Any, folio: int, data: bytes | None) -> None:
    if data is None or not any(data):
        pm.clear_pages(folio, 1)
    else:
        pm.set_page(folio, data)
