"""User memory access (arch/x86/lib/usercopy, mm/maccess.c): through the simulated MMU.

``copy_to_user``/``copy_from_user`` are kernel-mode accesses: a page fault they take is a
``page_fault_kernel`` event and an unresolvable one returns -EFAULT instead of a signal.
``user_access`` is what a simulated program's own loads and stores do (user-mode faults,
SIGSEGV on a bad address).  ``access_remote_vm`` reads another task's memory without
faulting (for ``rd -u`` and /proc/PID/mem-like inspection).
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.arch.x86.tlb import UserAccessFault, _translate_slow, mmu_translate
from mmdbg.sim.kernel import hw_breakpoint as _hbp
from mmdbg.sim.trace import current_machine, kfunc


@kfunc(aliases=("_copy_to_user", "raw_copy_to_user"))
def copy_to_user(to: int, data: bytes) -> int:
    """Bytes not copied (0 on success), as the kernel's copy_to_user returns."""
    m = current_machine()
    pm = m.physmem
    i = 0
    n = len(data)
    try:
        while i < n:
            a = to + i
            k = min(4096 - (a & 0xFFF), n - i)
            pa = mmu_translate(m, a, True, False)
            pm.write(pa, data[i:i + k])
            i += k
    except UserAccessFault:
        return n - i
    if _hbp.ACTIVE:
        _hbp.hw_breakpoint_check(m, to, n, True)
    return 0


@kfunc(aliases=("_copy_from_user", "raw_copy_from_user"))
def copy_from_user(frm: int, n: int) -> bytes | int:
    """The bytes, or -EFAULT."""
    m = current_machine()
    pm = m.physmem
    out = bytearray()
    i = 0
    try:
        while i < n:
            a = frm + i
            k = min(4096 - (a & 0xFFF), n - i)
            pa = mmu_translate(m, a, False, False)
            out += pm.read(pa, k)
            i += k
    except UserAccessFault:
        return -errno.EFAULT
    if _hbp.ACTIVE:
        _hbp.hw_breakpoint_check(m, frm, n, False)
    return bytes(out)


def user_write(m: Any, addr: int, data: bytes) -> None:
    """A user-mode store (may fault, may raise TaskKilled for SIGSEGV)."""
    pm = m.physmem
    i = 0
    n = len(data)
    while i < n:
        a = addr + i
        k = min(4096 - (a & 0xFFF), n - i)
        pa = mmu_translate(m, a, True, True)
        pm.write(pa, data[i:i + k])
        i += k
    if _hbp.ACTIVE:
        _hbp.hw_breakpoint_check(m, addr, n, True)


def user_read(m: Any, addr: int, n: int) -> bytes:
    pm = m.physmem
    out = bytearray()
    i = 0
    while i < n:
        a = addr + i
        k = min(4096 - (a & 0xFFF), n - i)
        pa = mmu_translate(m, a, False, True)
        out += pm.read(pa, k)
        i += k
    if _hbp.ACTIVE:
        _hbp.hw_breakpoint_check(m, addr, n, False)
    return bytes(out)


def touch_range(m: Any, start: int, end: int, write: bool, value: int = 0x5A) -> int:
    """User accesses of one byte per page over [start, end) (what a program's loop over a
    buffer does); a write stores ``value`` in the page's first byte.  Returns pages touched."""
    ts = m.vm.tlb[m.cpu]
    entries = ts.entries
    pm = m.physmem
    pages = pm.pages
    n = 0
    a = start & ~0xFFF
    touch = m.vm.cost.touch
    clock = m.clock
    while a < end:
        pte = entries.get(a >> 12)
        if pte is not None and (not write or pte & 0x42 == 0x42):
            ts.hits += 1
            pa = pte & 0x000FFFFFFFFFF000
        else:
            ts.misses += 1
            pa = _translate_slow(m, ts, a, write, True, False) & ~0xFFF
            ts = m.vm.tlb[m.cpu]
            entries = ts.entries
        if write:
            pfn = pa >> 12
            pg = pages.get(pfn)
            if pg is None:
                pg = pm.new_page(pfn)
            pg[0] = value
        clock.ns += touch
        n += 1
        a += 4096
    if _hbp.ACTIVE:
        _hbp.hw_breakpoint_check_pages(m, start, end, write)
    return n


def follow_pte(mm: Any, addr: int) -> int:
    """The PTE word mapping ``addr`` in ``mm`` (0 if none), without faulting."""
    from mmdbg.sim.arch.x86.pgtable import pte_table_lookup

    if mm is None or mm.pgd is None:
        return 0
    t = pte_table_lookup(mm, addr)
    return t[addr >> 12 & 511] if t is not None else 0


def access_remote_vm(m: Any, mm: Any, addr: int, n: int) -> bytes | None:
    """Read ``n`` bytes of another address space without faulting (None if not resident)."""
    out = bytearray()
    i = 0
    while i < n:
        a = addr + i
        k = min(4096 - (a & 0xFFF), n - i)
        pte = follow_pte(mm, a)
        if not pte & 0x101:
            return None
        pfn = (pte >> 12) & 0xFFFFFFFFFF
        out += m.physmem.read((pfn << 12) | (a & 0xFFF), k)
        i += k
    return bytes(out)
