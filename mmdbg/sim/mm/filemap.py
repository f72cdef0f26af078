"""A minimal page cache (mm/filemap.c, the shmem fault of mm/shmem.c).

Each inode has an ``address_space`` (:class:`AddressSpace`): ``i_pages`` maps a page index to
the pfn caching it, ``i_mmap`` lists the VMAs mapping the file (the file rmap).  A page-cache
page holds one reference for the cache and one per PTE mapping it; it is counted in the node's
``nr_file_pages`` (and ``nr_shmem`` for shmem), carries ``mapping``/``index`` in the struct
page columns, and ``PG_uptodate`` once its contents are read.

The fault side: ``filemap_fault`` (read the page, a major fault when it came from the disk),
``filemap_map_pages`` (fault-around: map pages already cached around the fault) and
``filemap_page_mkwrite`` (a shared writable mapping dirties the page).  Reads miss into a
simple read-around of ``ra_pages`` (32 pages, the default 128 KiB ``read_ahead_kb``) centred
on the fault, as ``do_sync_mmap_readahead`` does for a mapping without MADV_RANDOM/SEQUENTIAL.

Simplifications (the reclaim issue brings the rest): no LRU lists, no async readahead marks,
no writeback daemon -- dirty pages are written by ``msync``/``fsync``
(``filemap_write_and_wait_range``) or stay dirty; no folio locking.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.include.gfp import __GFP_ZERO, GFP_HIGHUSER_MOVABLE
from mmdbg.sim.include.mm import VM_FAULT_MAJOR, VM_FAULT_NOPAGE, VM_FAULT_OOM, VM_FAULT_SIGBUS
from mmdbg.sim.mm import page_alloc, vmstat
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
    if mem_map.flags[folio] & _DIRTY:
        mem_map.flags[folio] &= ~_DIRTY
        st[NR_FILE_DIRTY] -= 1
    mem_map.mapping.pop(folio, None)
    mem_map.index.pop(folio, None)
    mem_map.flags[folio] &= ~(_UPTODATE | _SWAPBACKED)
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


@kfunc
def page_cache_ra_unbounded(mapping: AddressSpace, index: int, nr_to_read: int) -> int:
    """Read ``nr_to_read`` pages from ``index`` into the cache in one I/O; pages read."""
    m = current_machine()
    host = mapping.host
    last = (host.i_size + 4095) // 4096
    idxs = [i for i in range(index, min(index + nr_to_read, last)) if i not in mapping.i_pages]
    if not idxs:
        return 0
    n = 0
    for i in idxs:
        pfn = page_alloc.alloc_pages(mapping.gfp_mask, 0)
        if pfn is None:
            break
        _fill_from_disk(m, host, pfn, i)
        filemap_add_folio(mapping, pfn, i, mapping.gfp_mask)
        m.mem_map._refcount[pfn] -= 1  # the allocation reference: the cache keeps its own
        n += 1
    if n and host.i_sb.s_bdev is not None:
        _charge_io(m, host.i_sb.s_bdev.read_cost(n))
        m.vm_events[PGPGIN] += 8 * n
    return n


def _fill_from_disk(m: Any, host: Any, pfn: int, index: int) -> None:
    data = host.disk_read(index)
    pm = m.physmem
    if data is None or not any(data):
        pm.clear_pages(pfn, 1)
    else:
        pm.pages[pfn] = bytearray(data)
    m.mem_map.flags[pfn] |= _UPTODATE


@kfunc
def do_sync_mmap_readahead(vmf: Any) -> int:
    """Read around the faulting index (or just it, under MADV_RANDOM)."""
    vma = vmf.vma
    mapping = vma.vm_file.f_mapping
    if vma.vm_flags & VM_RAND_READ:
        return page_cache_ra_unbounded(mapping, vmf.pgoff, 1)
    if vma.vm_flags & VM_SEQ_READ:
        return page_cache_ra_unbounded(mapping, vmf.pgoff, RA_PAGES)
    start = max(0, vmf.pgoff - RA_PAGES // 2)
    return page_cache_ra_unbounded(mapping, start, RA_PAGES)


@kfunc
def filemap_fault(vmf: Any) -> int:
    """Find (or read) the page for ``vmf->pgoff``; returns it in ``vmf->page`` with a ref."""
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
    if pfn is None:
        do_sync_mmap_readahead(vmf)
        pfn = mapping.i_pages.get(vmf.pgoff)
        if pfn is None:
            return VM_FAULT_OOM
        ret = VM_FAULT_MAJOR
        m.vm_events[PGMAJFAULT] += 1
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
        if pfn is None or not flags[pfn] & _UPTODATE:
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


@kfunc
def folio_mark_dirty(folio: int) -> bool:
    m = current_machine()
    flags = m.mem_map.flags
    if flags[folio] & _DIRTY:
        return False
    flags[folio] |= _DIRTY
    mapping = m.mem_map.mapping.get(folio)
    if isinstance(mapping, AddressSpace) and not mapping.host.shmem:
        st = _nodestat(m, folio)
        st[NR_FILE_DIRTY] += 1
        st[NR_DIRTIED] += 1
    return True


@kfunc
def filemap_page_mkwrite(vmf: Any) -> int:
    """A write to a shared file mapping: the page becomes dirty before the PTE is writable."""
    folio_mark_dirty(vmf.page)
    vmf.vma.vm_file.f_inode.mtime_ns = current_machine().clock.ns
    return 0


# -- read(2), write(2), msync/fsync ------------------------------------------------------------
def _get_page_for_io(m: Any, mapping: AddressSpace, index: int, for_write: bool) -> int | None:
    pfn = mapping.i_pages.get(index)
    if pfn is not None:
        return pfn
    if not for_write:
        page_cache_ra_unbounded(mapping, index, RA_PAGES)
        return mapping.i_pages.get(index)
    pfn = page_alloc.alloc_pages(mapping.gfp_mask, 0)
    if pfn is None:
        return None
    host = mapping.host
    if index * 4096 < host.i_size:
        _fill_from_disk(m, host, pfn, index)
        if host.i_sb.s_bdev is not None:
            _charge_io(m, host.i_sb.s_bdev.read_cost(1))
    else:
        m.physmem.clear_pages(pfn, 1)
        m.mem_map.flags[pfn] |= _UPTODATE
    filemap_add_folio(mapping, pfn, index, mapping.gfp_mask)
    m.mem_map._refcount[pfn] -= 1
    return pfn


@kfunc
def filemap_read(file: Any, pos: int, count: int) -> bytes:
    """Copy file bytes through the page cache (the kernel then copies them to user)."""
    m = current_machine()
    mapping = file.f_mapping
    size = mapping.host.i_size
    end = min(size, pos + count)
    if pos >= end:
        return b""
    if _tp_get_pages.enabled:
        _tp_get_pages.fire(i_ino=mapping.host.i_ino, s_dev=_dev(mapping), index=pos >> 12,
                           last_index=(end - 1) >> 12)
    out = bytearray()
    while pos < end:
        index, off = divmod(pos, 4096)
        n = min(4096 - off, end - pos)
        pfn = _get_page_for_io(m, mapping, index, False)
        if pfn is None:
            break
        out += m.physmem.read((pfn << 12) + off, n)
        m.vm.hooks.folio_mark_accessed(pfn)
        pos += n
    return bytes(out)


@kfunc
def generic_perform_write(file: Any, pos: int, data: bytes) -> int:
    """Copy bytes into page-cache pages and mark them dirty; returns bytes written."""
    m = current_machine()
    mapping = file.f_mapping
    host = mapping.host
    i = 0
    while i < len(data):
        index, off = divmod(pos + i, 4096)
        n = min(4096 - off, len(data) - i)
        pfn = _get_page_for_io(m, mapping, index, True)
        if pfn is None:
            break
        m.physmem.write((pfn << 12) + off, data[i:i + n])
        folio_mark_dirty(pfn)
        m.vm.hooks.balance_dirty_pages_ratelimited(mapping)
        i += n
    host.i_size = max(host.i_size, pos + i)
    host.mtime_ns = m.clock.ns
    return i


@kfunc(aliases=("folio_clear_dirty_for_io",))
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


@kfunc
def filemap_write_and_wait_range(mapping: AddressSpace, lstart: int, lend: int) -> int:
    """Write back the dirty pages in [lstart, lend] (msync(MS_SYNC), fsync)."""
    m = current_machine()
    host = mapping.host
    if host.shmem:
        return 0
    flags = m.mem_map.flags
    # dirty bits still in PTEs move to the page first (as the kernel's writeback sees them)
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
    dirty = sorted(idx for idx, pfn in mapping.i_pages.items()
                   if flags[pfn] & _DIRTY and lstart >> 12 <= idx <= lend >> 12)
    if not dirty:
        return 0
    for idx in dirty:
        pfn = mapping.i_pages[idx]
        folio_mkclean(pfn)
        host.disk_write(idx, m.physmem.page_bytes(pfn))
        flags[pfn] &= ~_DIRTY
        st = _nodestat(m, pfn)
        st[NR_FILE_DIRTY] -= 1
        st[NR_WRITTEN] += 1
    m.vm_events[PGPGOUT] += 8 * len(dirty)
    if host.i_sb.s_bdev is not None:
        _charge_io(m, host.i_sb.s_bdev.write_cost(len(dirty)))
    return 0


@kfunc(aliases=("truncate_inode_pages_range",))
def truncate_inode_pages(mapping: AddressSpace, lstart: int) -> None:
    """Drop every cached page from ``lstart`` on (pages still mapped keep their PTE refs)."""
    m = current_machine()
    for idx in sorted(i for i in mapping.i_pages if i >= (lstart + 4095) >> 12):
        pfn = mapping.i_pages[idx]
        filemap_remove_folio(pfn)
    _ = m
