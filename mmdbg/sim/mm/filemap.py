"""The page cache (mm/filemap.c, the shmem fault of mm/shmem.c).

Each inode has an ``address_space`` (:class:`AddressSpace`): ``i_pages`` maps a page index to
the pfn caching it, ``i_mmap`` lists the VMAs mapping the file (the file rmap).  A page-cache
page holds one reference for the cache and one per PTE mapping it; it is counted in the node's
``nr_file_pages`` (and ``nr_shmem`` for shmem), carries ``mapping``/``index`` in the struct
page columns, and ``PG_uptodate`` once its contents are read.

Reads (``filemap_read``): ``filemap_get_pages`` takes the cached pages from the read position;
a miss calls ``page_cache_sync_ra`` (mm/readahead.c), a ``PG_readahead`` page calls
``page_cache_async_ra``; a page whose disk read is still in flight makes the reader wait for
it.  A miss costs the disk's latency, a hit only the copy.  ``prev_pos`` in the file's
``file_ra_state`` records where the read ended.

Faults: ``filemap_fault`` -- a cached page is a minor fault (``do_async_mmap_readahead`` on a
``PG_readahead`` page), a miss is a major fault (``pgmajfault``) that reads through
``do_sync_mmap_readahead``: nothing extra under MADV_RANDOM, a sequential window under
MADV_SEQUENTIAL, otherwise read-around (``ra_pages`` centred on the fault, the last quarter
async) until ``mmap_miss`` says the file is read randomly.  ``filemap_map_pages``
(fault-around) maps cached pages, skipping ``PG_readahead`` and still-locked ones;
``filemap_page_mkwrite`` dirties the page of a shared writable mapping.

Writes (``generic_perform_write``): a partial write of an uncached page reads it first; the
page is marked dirty (``filemap_dirty_folio``) and the writer is throttled
(``balance_dirty_pages_ratelimited``).  ``filemap_write_and_wait_range`` (fsync, msync)
starts writeback of the dirty pages and waits for the disk (mm/page-writeback.c).

Simplifications: order-0 folios, no folio locks (an in-flight read is a completion time in
``io_pending``, an in-flight write one in ``wb_pending``).
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.include.gfp import __GFP_ZERO, GFP_HIGHUSER_MOVABLE
from mmdbg.sim.include.mm import VM_FAULT_MAJOR, VM_FAULT_NOPAGE, VM_FAULT_OOM, VM_FAULT_SIGBUS
from mmdbg.sim.mm import page_alloc, page_writeback, readahead, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.mm_types import PAGEBLOCK_ORDER
from mmdbg.sim.mm.vma import VM_RAND_READ, VM_SEQ_READ, kobj_addr
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

NR_FILE_PAGES = vmstat.NS["nr_file_pages"]
NR_SHMEM = vmstat.NS["nr_shmem"]
NR_FILE_DIRTY = vmstat.NS["nr_dirty"]
NR_DIRTIED = vmstat.NS["nr_dirtied"]
NR_WRITTEN = vmstat.NS["nr_written"]
PGPGIN = vmstat.EV["pgpgin"]
PGPGOUT = vmstat.EV["pgpgout"]
PGMAJFAULT = vmstat.PGMAJFAULT
RA_PAGES = 32

_UPTODATE = 1 << pf.PG_uptodate
_DIRTY = 1 << pf.PG_dirty
_SWAPBACKED = 1 << pf.PG_swapbacked
_WRITEBACK = 1 << pf.PG_writeback
_READAHEAD = 1 << pf.PG_readahead
MMAP_LOTSAMISS = readahead.MMAP_LOTSAMISS
NR_WRITEBACK = vmstat.NS["nr_writeback"]

_tp_add = declare_tracepoint("filemap:mm_filemap_add_to_page_cache")
_tp_del = declare_tracepoint("filemap:mm_filemap_delete_from_page_cache")
_tp_fault = declare_tracepoint("filemap:mm_filemap_fault")
_tp_map_pages = declare_tracepoint("filemap:mm_filemap_map_pages")
_tp_get_pages = declare_tracepoint("filemap:mm_filemap_get_pages")


class AddressSpace:
    """``struct address_space``."""

    ktype = "address_space"

    def __init__(self, host: Any) -> None:
        self.host = host
        self.i_pages: dict[int, int] = {}
        self.i_mmap: list[Any] = []
        self.io_pending: dict[int, int] = {}  # index -> ns its read completes
        self.wb_pending: dict[int, int] = {}  # index -> ns its write completes
        self.writeback_index = 0
        self.gfp_mask = GFP_HIGHUSER_MOVABLE
        self.a_ops = "shmem_aops" if host.shmem else "simplefs_aops"
        self.addr = 0
        m = current_machine()
        if m is not None and getattr(m, "vm", None) is not None:
            self.addr = kobj_addr(m, 200)

    def __repr__(self) -> str:
        return f"<address_space of {self.host!r}>"

    @property
    def nrpages(self) -> int:
        return len(self.i_pages)


def _dev(mapping: AddressSpace) -> int:
    major, minor = mapping.host.s_dev
    return major << 20 | minor


def _nodestat(m: Any, pfn: int) -> list[int]:
    return m.vm.nodestat[pfn >> PAGEBLOCK_ORDER]


# -- the cache itself ------------------------------------------------------------------------
@kfunc
def filemap_get_folio(mapping: AddressSpace, index: int) -> int | None:
    """The cached page at ``index`` (no reference taken), or None."""
    return mapping.i_pages.get(index)


@kfunc
def filemap_add_folio(mapping: AddressSpace, folio: int, index: int, gfp: int) -> int:
    """Insert a new page into the cache; the cache takes its own reference."""
    m = current_machine()
    mem_map = m.mem_map
    mem_map.mapping[folio] = mapping
    mem_map.index[folio] = index
    mem_map._refcount[folio] += 1
    mapping.i_pages[index] = folio
    m.vm.cached_mappings[id(mapping)] = mapping
    st = _nodestat(m, folio)
    st[NR_FILE_PAGES] += 1
    if mapping.host.shmem:
        mem_map.flags[folio] |= _SWAPBACKED
        st[NR_SHMEM] += 1
    if _tp_add.enabled:
        _tp_add.fire(pfn=folio, i_ino=mapping.host.i_ino, index=index, s_dev=_dev(mapping),
                     order=0)
    m.vm.hooks.filemap_add_folio(folio, mapping, index)  # memcg charge, workingset, LRU
    return 0


@kfunc(aliases=("__filemap_remove_folio", "delete_from_page_cache"))
def filemap_remove_folio(folio: int) -> None:
    """Take a page out of the cache and drop the cache's reference."""
    m = current_machine()
    mem_map = m.mem_map
    mapping = mem_map.mapping.get(folio)
    index = mem_map.index.get(folio, 0)
    if _tp_del.enabled:
        _tp_del.fire(pfn=folio, i_ino=mapping.host.i_ino, index=index, s_dev=_dev(mapping),
                     order=0)
    del mapping.i_pages[index]
    if not mapping.i_pages:
        m.vm.cached_mappings.pop(id(mapping), None)
    st = _nodestat(m, folio)
    st[NR_FILE_PAGES] -= 1
    if mapping.host.shmem:
        st[NR_SHMEM] -= 1
    if mem_map.flags[folio] & _WRITEBACK:  # truncate waited for it (folio_wait_writeback)
        page_writeback.folio_end_writeback(folio)
    mapping.io_pending.pop(index, None)
    mapping.wb_pending.pop(index, None)
    if mem_map.flags[folio] & _DIRTY:
        mem_map.flags[folio] &= ~_DIRTY
        if not mapping.host.shmem:
            st[NR_FILE_DIRTY] -= 1
    mem_map.mapping.pop(folio, None)
    mem_map.index.pop(folio, None)
    mem_map.flags[folio] &= ~(_UPTODATE | _SWAPBACKED | _READAHEAD)
    folio_put(m, folio)


def folio_put(m: Any, folio: int) -> None:
    """Drop one reference; the last one frees the page (the LRU hook sees it first)."""
    refc = m.mem_map._refcount
    r = refc[folio]
    if r > 1:
        refc[folio] = r - 1
        return
    m.vm.hooks.folio_release(folio)
    page_alloc.__free_pages(folio, 0)


def _charge_io(m: Any, ns: int) -> None:
    from mmdbg.sim.kernel import sched_core

    sched_core.io_schedule_timeout(m, ns)


page_cache_ra_unbounded = readahead.page_cache_ra_unbounded
_fill_from_disk = readahead._fill_from_disk
RA_PAGES = readahead.VM_READAHEAD_PAGES


@kfunc
def do_sync_mmap_readahead(vmf: Any) -> int:
    """A fault missed the cache: read a sequential window (VM_SEQ_READ), nothing extra
    (VM_RAND_READ), or ``ra_pages`` around the fault with the last quarter marked for async
    readahead -- unless this file's faults mostly miss (``mmap_miss`` > MMAP_LOTSAMISS)."""
    vma = vmf.vma
    file = vma.vm_file
    mapping = file.f_mapping
    ra = readahead.file_ra(file)
    if vma.vm_flags & VM_RAND_READ or not ra.ra_pages:
        return 0
    if vma.vm_flags & VM_SEQ_READ:
        return readahead.page_cache_sync_ra(file, mapping, vmf.pgoff, ra.ra_pages)
    if ra.mmap_miss < MMAP_LOTSAMISS * 10:
        ra.mmap_miss += 1
    if ra.mmap_miss > MMAP_LOTSAMISS:
        return 0
    ra.start = max(0, vmf.pgoff - ra.ra_pages // 2)
    ra.size = ra.ra_pages
    ra.async_size = ra.ra_pages // 4
    return readahead.ra_submit(mapping, ra)


@kfunc
def do_async_mmap_readahead(vmf: Any, folio: int) -> int:
    """A fault found its page cached: a hit lowers ``mmap_miss``; a ``PG_readahead`` page
    starts the next window."""
    m = current_machine()
    vma = vmf.vma
    file = vma.vm_file
    ra = readahead.file_ra(file)
    if vma.vm_flags & VM_RAND_READ or not ra.ra_pages:
        return 0
    if ra.mmap_miss:
        ra.mmap_miss -= 1
    if m.mem_map.flags[folio] & _READAHEAD:
        return readahead.page_cache_async_ra(file, file.f_mapping, folio, vmf.pgoff,
                                             ra.ra_pages)
    return 0


def _read_one(m: Any, mapping: AddressSpace, index: int) -> int | None:
    """filemap_create_folio + filemap_read_folio: read one page and wait for it."""
    readahead.page_cache_ra_unbounded(mapping, index, 1)
    pfn = mapping.i_pages.get(index)
    if pfn is not None:
        readahead.folio_wait_locked(m, mapping, index)
    return pfn


@kfunc
def filemap_fault(vmf: Any) -> int:
    """Find (or read) the page for ``vmf->pgoff``; returns it in ``vmf->page`` with a ref.
    A miss is a major fault and waits for the disk; a hit is minor."""
    m = current_machine()
    vma = vmf.vma
    mapping = vma.vm_file.f_mapping
    host = mapping.host
    if _tp_fault.enabled:
        _tp_fault.fire(i_ino=host.i_ino, s_dev=_dev(mapping), index=vmf.pgoff)
    if vmf.pgoff >= (host.i_size + 4095) // 4096:
        return VM_FAULT_SIGBUS
    ret = 0
    pfn = mapping.i_pages.get(vmf.pgoff)
    if pfn is not None:
        do_async_mmap_readahead(vmf, pfn)
    else:
        m.vm_events[PGMAJFAULT] += 1
        ret = VM_FAULT_MAJOR
        do_sync_mmap_readahead(vmf)
        pfn = mapping.i_pages.get(vmf.pgoff)
        if pfn is None:
            pfn = _read_one(m, mapping, vmf.pgoff)
            if pfn is None:
                return VM_FAULT_OOM
    readahead.folio_wait_locked(m, mapping, vmf.pgoff)
    m.mem_map._refcount[pfn] += 1
    vmf.page = pfn
    return ret


@kfunc
def shmem_fault(vmf: Any) -> int:
    """Shared anonymous memory: the page comes zeroed from the allocator, never the disk."""
    m = current_machine()
    mapping = vmf.vma.vm_file.f_mapping
    pfn = mapping.i_pages.get(vmf.pgoff)
    if pfn is None:
        if vmf.pgoff >= (mapping.host.i_size + 4095) // 4096:
            return VM_FAULT_SIGBUS
        pfn = page_alloc.alloc_pages(GFP_HIGHUSER_MOVABLE | __GFP_ZERO, 0)
        if pfn is None:
            return VM_FAULT_OOM
        m.mem_map.flags[pfn] |= _UPTODATE
        filemap_add_folio(mapping, pfn, vmf.pgoff, GFP_HIGHUSER_MOVABLE)
        # the allocation reference becomes the caller's (the mapping's) reference
    else:
        m.mem_map._refcount[pfn] += 1
    vmf.page = pfn
    return 0


@kfunc
def filemap_map_pages(vmf: Any, start_pgoff: int, end_pgoff: int) -> int:
    """Fault-around: map every cached, up-to-date page in [start, end] not mapped yet."""
    from mmdbg.sim.mm.memory import set_pte_range

    m = current_machine()
    vma = vmf.vma
    mapping = vma.vm_file.f_mapping
    if _tp_map_pages.enabled:
        _tp_map_pages.fire(i_ino=mapping.host.i_ino, s_dev=_dev(mapping), index=start_pgoff,
                           last_index=end_pgoff)
    pages = mapping.i_pages
    flags = m.mem_map.flags
    refc = m.mem_map._refcount
    table = vmf.pte
    ret = 0
    last = (mapping.host.i_size + 4095) // 4096 - 1
    for pgoff in range(start_pgoff, min(end_pgoff, last) + 1):
        pfn = pages.get(pgoff)
        if pfn is None or flags[pfn] & _READAHEAD or not flags[pfn] & _UPTODATE:
            continue
        if pgoff in mapping.io_pending and readahead.folio_locked(m, mapping, pgoff):
            continue
        addr = vma.vm_start + ((pgoff - vma.vm_pgoff) << 12)
        idx = addr >> 12 & 511
        if table[idx]:
            continue
        refc[pfn] += 1
        set_pte_range(vmf, pfn, addr, idx, False)
        if addr == vmf.address:
            ret = VM_FAULT_NOPAGE
    return ret


@kfunc(aliases=("filemap_dirty_folio", "set_page_dirty"))
def folio_mark_dirty(folio: int) -> bool:
    """Set PG_dirty; a disk file's page is accounted (``__folio_mark_dirty``)."""
    m = current_machine()
    flags = m.mem_map.flags
    if flags[folio] & _DIRTY:
        return False
    flags[folio] |= _DIRTY
    mapping = m.mem_map.mapping.get(folio)
    if isinstance(mapping, AddressSpace) and not mapping.host.shmem:
        page_writeback.__folio_mark_dirty(folio, mapping)
    return True


@kfunc
def filemap_page_mkwrite(vmf: Any) -> int:
    """A write to a shared file mapping: the page becomes dirty before the PTE is writable."""
    folio_mark_dirty(vmf.page)
    vmf.vma.vm_file.f_inode.mtime_ns = current_machine().clock.ns
    return 0


# -- read(2), write(2), msync/fsync ------------------------------------------------------------
@kfunc
def filemap_get_pages(file: Any, pos: int, count: int) -> list[int]:
    """The cached pages from ``pos`` on (at least one, read from the disk on a miss); stops
    after a ``PG_readahead`` page, which starts async readahead."""
    m = current_machine()
    mapping = file.f_mapping
    index = pos >> 12
    last_index = (pos + count + 4095) >> 12
    if _tp_get_pages.enabled:
        _tp_get_pages.fire(i_ino=mapping.host.i_ino, s_dev=_dev(mapping), index=index,
                           last_index=last_index - 1)
    batch = _get_read_batch(m, mapping, index, last_index - 1)
    if not batch:
        readahead.page_cache_sync_ra(file, mapping, index, last_index - index)
        batch = _get_read_batch(m, mapping, index, last_index - 1)
    if not batch:
        pfn = _read_one(m, mapping, index)
        return [pfn] if pfn is not None else []
    pfn = batch[-1]
    if m.mem_map.flags[pfn] & _READAHEAD:
        idx = m.mem_map.index[pfn]
        readahead.page_cache_async_ra(file, mapping, pfn, idx, last_index - idx)
    for i in range(len(batch)):
        readahead.folio_wait_locked(m, mapping, index + i)
    return batch


def _get_read_batch(m: Any, mapping: AddressSpace, index: int, last: int) -> list[int]:
    out = []
    pages = mapping.i_pages
    flags = m.mem_map.flags
    while index <= last:
        pfn = pages.get(index)
        if pfn is None:
            break
        out.append(pfn)
        if flags[pfn] & _READAHEAD:
            break
        index += 1
    return out


@kfunc(aliases=("generic_file_read_iter", "generic_file_buffered_read"))
def filemap_read(file: Any, pos: int, count: int) -> bytes:
    """Copy file bytes through the page cache (the kernel then copies them to user)."""
    m = current_machine()
    mapping = file.f_mapping
    size = mapping.host.i_size
    end = min(size, pos + count)
    if pos >= end:
        return b""
    ra = readahead.file_ra(file)
    out = bytearray()
    copy_ns = m.vm.cost.page_copy
    last_pos = ra.prev_pos
    while pos < end:
        batch = filemap_get_pages(file, pos, end - pos)
        if not batch:
            break
        # a read touching the page the previous one ended in marks it accessed only once
        if pos >> 12 != (last_pos - 1) >> 12:
            m.vm.hooks.folio_mark_accessed(batch[0])
        for pfn in batch:
            if pos >= end:
                break
            off = pos & 4095
            n = min(4096 - off, end - pos)
            out += m.physmem.read((pfn << 12) + off, n)
            m.clock.ns += copy_ns * n // 4096
            pos += n
        last_pos = pos
    ra.prev_pos = last_pos
    return bytes(out)


def _get_page_for_write(m: Any, mapping: AddressSpace, index: int, off: int,
                        n: int) -> int | None:
    """write_begin: the cached page, or a new one -- read from the disk first when the write
    covers only part of it and the file has data there."""
    pfn = mapping.i_pages.get(index)
    if pfn is not None:
        readahead.folio_wait_locked(m, mapping, index)
        return pfn
    host = mapping.host
    if index * 4096 < host.i_size and n < 4096 and host.i_sb.s_bdev is not None:
        return _read_one(m, mapping, index)
    pfn = page_alloc.alloc_pages(mapping.gfp_mask, 0)
    if pfn is None:
        return None
    if index * 4096 < host.i_size and n < 4096:
        _fill_from_disk(m, host, pfn, index)
    else:
        m.physmem.clear_pages(pfn, 1)
        m.mem_map.flags[pfn] |= _UPTODATE
    filemap_add_folio(mapping, pfn, index, mapping.gfp_mask)
    m.mem_map._refcount[pfn] -= 1
    return pfn


@kfunc
def generic_perform_write(file: Any, pos: int, data: bytes) -> int:
    """Copy bytes into page-cache pages and mark them dirty; returns bytes written."""
    m = current_machine()
    mapping = file.f_mapping
    host = mapping.host
    copy_ns = m.vm.cost.page_copy
    i = 0
    while i < len(data):
        index, off = divmod(pos + i, 4096)
        n = min(4096 - off, len(data) - i)
        pfn = _get_page_for_write(m, mapping, index, off, n)
        if pfn is None:
            break
        m.physmem.write((pfn << 12) + off, data[i:i + n])
        m.clock.ns += copy_ns * n // 4096
        folio_mark_dirty(pfn)
        m.vm.hooks.folio_mark_accessed(pfn)
        i += n
        host.i_size = max(host.i_size, pos + i)
        m.vm.hooks.balance_dirty_pages_ratelimited(mapping)
    host.mtime_ns = m.clock.ns
    return i


@kfunc
def folio_mkclean(folio: int) -> None:
    """Write-protect and clean every PTE mapping the page (before it is written back)."""
    from mmdbg.sim.arch.x86 import tlb
    from mmdbg.sim.arch.x86.pgtable import _PAGE_DIRTY, _PAGE_RW, pte_table_lookup
    from mmdbg.sim.mm.rmap import rmap_walk

    for vma, addr in rmap_walk(folio):
        t = pte_table_lookup(vma.vm_mm, addr)
        i = addr >> 12 & 511
        t[i] = t[i] & ~(_PAGE_RW | _PAGE_DIRTY)
        tlb.flush_tlb_page(vma, addr)


def _pte_dirty_to_page(m: Any, mapping: AddressSpace, lstart: int, lend: int) -> None:
    """Dirty bits still in PTEs move to the page first (as the kernel's writeback sees them)."""
    from mmdbg.sim.arch.x86.pgtable import _PAGE_DIRTY, pte_table_lookup

    for vma in list(mapping.i_mmap):
        for idx, pfn in list(mapping.i_pages.items()):
            if not lstart >> 12 <= idx <= lend >> 12:
                continue
            a = vma.vm_start + ((idx - vma.vm_pgoff) << 12)
            if not vma.vm_start <= a < vma.vm_end:
                continue
            t = pte_table_lookup(vma.vm_mm, a)
            if t is not None and t[a >> 12 & 511] & _PAGE_DIRTY and \
                    (t[a >> 12 & 511] >> 12) & 0xFFFFFFFFFF == pfn:
                folio_mark_dirty(pfn)


@kfunc(aliases=("__filemap_fdatawrite_range", "filemap_fdatawrite"))
def filemap_fdatawrite_range(mapping: AddressSpace, lstart: int, lend: int,
                             sync_mode: int = page_writeback.WB_SYNC_ALL) -> Any:
    """Start writeback of the dirty pages in [lstart, lend]; returns the submitted batch."""
    m = current_machine()
    if mapping.host.shmem:
        return page_writeback.WbBatch()
    _pte_dirty_to_page(m, mapping, lstart, lend)
    wbc = page_writeback.WritebackControl(sync_mode=sync_mode, range_start=lstart,
                                          range_end=lend)
    return page_writeback.write_cache_pages(mapping, wbc)


@kfunc(aliases=("__filemap_fdatawait_range",))
def filemap_fdatawait_range(mapping: AddressSpace, lstart: int, lend: int) -> int:
    """Wait for every page of the range under writeback (ours or the flusher's)."""
    m = current_machine()
    lo, hi = lstart >> 12, lend >> 12
    waiting = sorted((i, d) for i, d in mapping.wb_pending.items() if lo <= i <= hi)
    if not waiting:
        return 0
    readahead.io_wait_until(m, max(d for _, d in waiting))
    flags = m.mem_map.flags
    for idx, _ in waiting:
        pfn = mapping.i_pages.get(idx)
        if pfn is not None and flags[pfn] & _WRITEBACK:
            page_writeback.folio_end_writeback(pfn)
        mapping.wb_pending.pop(idx, None)
    return len(waiting)


@kfunc(aliases=("file_write_and_wait_range",))
def filemap_write_and_wait_range(mapping: AddressSpace, lstart: int, lend: int) -> int:
    """Write back the dirty pages in [lstart, lend] and wait (fsync, msync(MS_SYNC)); returns
    the pages written."""
    if mapping.host.shmem:
        return 0
    batch = filemap_fdatawrite_range(mapping, lstart, lend)
    filemap_fdatawait_range(mapping, lstart, lend)
    return len(batch)


@kfunc(aliases=("truncate_inode_pages_range",))
def truncate_inode_pages(mapping: AddressSpace, lstart: int) -> None:
    """Drop every cached page from ``lstart`` on (pages still mapped keep their PTE refs)."""
    m = current_machine()
    for idx in sorted(i for i in mapping.i_pages if i >= (lstart + 4095) >> 12):
        pfn = mapping.i_pages[idx]
        filemap_remove_folio(pfn)
    _ = m
