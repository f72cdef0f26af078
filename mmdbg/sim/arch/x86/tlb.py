"""The TLB and the simulated MMU (arch/x86/mm/tlb.c, the hardware page walker).

Each CPU has a :class:`TlbState` (``cpu_tlbstate``): the loaded mm and a translation cache
``vpn -> PTE word``.  Capacity is ``TLB_ENTRIES`` (a second-level TLB's 1536 entries), fully
associative with FIFO replacement.  There is no PCID: loading another mm's page tables
(``switch_mm_irqs_off``) flushes every entry, as CR3 writes do without PCID.

The MMU (:func:`mmu_translate`): a TLB hit whose cached entry allows the access gives the
physical address; otherwise the walker reads the tables, sets Accessed (and Dirty on a
write) in the PTE as the hardware does, and caches the entry; a missing or forbidding entry
raises a page fault (``exc_page_fault``) and the access is retried after the handler, as the
CPU re-executes the faulting instruction.

Flushes follow ``flush_tlb_mm_range``: a range of more than ``tlb_single_page_flush_ceiling``
(33) pages flushes everything, otherwise one INVLPG per page; other CPUs that have the mm
loaded get a shootdown IPI (``native_flush_tlb_multi`` -> ``flush_tlb_func``).  A CPU that
has the mm loaded only lazily (it runs a kernel thread) is skipped unless page tables were
freed, and flushes at its next switch.  Counters: ``hits``, ``misses``, ``flushes`` (full),
``flush_one`` (single entries), ``shootdowns`` (IPIs sent) and ``shootdowns_received``.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.arch.x86.pgtable import (
    _PAGE_ACCESSED,
    _PAGE_DIRTY,
    _PAGE_NX,
    _PAGE_PRESENT,
    _PAGE_RW,
    _PAGE_USER,
    PTE_PFN_MASK,
)
from mmdbg.sim.trace import current_machine, kfunc

TLB_ENTRIES = 1536
TLB_FLUSH_ALL = -1
tlb_single_page_flush_ceiling = 33

# x86 page-fault error code bits (arch/x86/include/asm/trap_pf.h)
X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_RSVD = 1 << 3
X86_PF_INSTR = 1 << 4
X86_PF_PK = 1 << 5
X86_PF_SHSTK = 1 << 6


class TlbState:
    """``struct tlb_state`` of one CPU plus the translation cache and its counters."""

    __slots__ = ("cpu", "entries", "flush_one", "flushes", "hits", "is_lazy", "loaded_mm",
                 "misses", "need_flush", "ring", "ring_pos", "shootdowns", "shootdowns_received")
    ktype = "tlb_state"

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.entries: dict[int, int] = {}
        self.ring = [-1] * TLB_ENTRIES  # replacement order (FIFO over insertions)
        self.ring_pos = 0
        self.loaded_mm: Any = None
        self.is_lazy = False
        self.need_flush = False
        self.hits = 0
        self.misses = 0
        self.flushes = 0
        self.flush_one = 0
        self.shootdowns = 0
        self.shootdowns_received = 0

    def __repr__(self) -> str:
        return f"<tlb_state cpu{self.cpu} {len(self.entries)} entries>"


def tlb_stats(m: Any) -> dict[str, int]:
    out = {"hits": 0, "misses": 0, "flushes": 0, "flush_one": 0, "shootdowns": 0,
           "shootdowns_received": 0}
    for t in m.vm.tlb:
        for k in out:
            out[k] += getattr(t, k)
    return out


# -- context switch --------------------------------------------------------------------------
@kfunc
def switch_mm_irqs_off(prev: Any, next: Any, tsk: Any) -> None:
    """Load ``next``'s page tables on this CPU (CR3 write: the TLB is flushed)."""
    m = current_machine()
    cpu = m.cpu
    ts = m.vm.tlb[cpu]
    if ts.loaded_mm is next:
        if ts.is_lazy:
            ts.is_lazy = False
            if ts.need_flush:
                _local_flush_all(ts)
        return
    if ts.loaded_mm is not None:
        ts.loaded_mm.cpu_bitmap.discard(cpu)
    ts.loaded_mm = next
    ts.is_lazy = False
    if next is not None:
        next.cpu_bitmap.add(cpu)
    _local_flush_all(ts)


def enter_lazy_tlb(m: Any, cpu: int) -> None:
    """A kernel thread runs: keep the previous mm loaded, lazily."""
    ts = m.vm.tlb[cpu]
    if ts.loaded_mm is not None and not ts.is_lazy:
        # from an active mm: the TLB is in sync.  Already lazy (one kernel thread after
        # another): a shootdown skipped meanwhile must stay pending.
        ts.is_lazy = True
        ts.need_flush = False


def _local_flush_all(ts: TlbState) -> None:
    if ts.entries:
        ts.entries.clear()
    ts.flushes += 1
    ts.need_flush = False


# -- flushing --------------------------------------------------------------------------------
@kfunc
def flush_tlb_func(info: Any) -> None:
    """Flush this CPU's entries for ``info`` (a local flush or the IPI handler)."""
    m = _trace._current
    ts = m.vm.tlb[info.cpu]
    if ts.loaded_mm is not info.mm:
        return
    if info.end == TLB_FLUSH_ALL or (info.end - info.start) >> 12 > tlb_single_page_flush_ceiling:
        _local_flush_all(ts)
        return
    e = ts.entries
    for vpn in range(info.start >> 12, info.end >> 12):
        if e.pop(vpn, None) is not None:
            pass
        ts.flush_one += 1


class FlushTlbInfo:
    """``struct flush_tlb_info``."""

    __slots__ = ("cpu", "end", "freed_tables", "mm", "new_tlb_gen", "start", "stride_shift")
    ktype = "flush_tlb_info"

    def __init__(self, mm: Any, start: int, end: int, stride_shift: int, freed_tables: bool,
                 gen: int) -> None:
        self.mm = mm
        self.start = start
        self.end = end
        self.stride_shift = stride_shift
        self.freed_tables = freed_tables
        self.new_tlb_gen = gen
        self.cpu = 0


@kfunc
def native_flush_tlb_multi(cpumask: list[int], info: FlushTlbInfo) -> None:
    """Send flush IPIs (TLB shootdowns) to the CPUs in ``cpumask`` and run them there."""
    m = current_machine()
    me = m.cpu
    tlbs = m.vm.tlb
    for cpu in cpumask:
        ts = tlbs[cpu]
        if ts.is_lazy and not info.freed_tables:
            ts.need_flush = True  # should_flush_tlb(): a lazy CPU flushes at its next switch
            continue
        tlbs[me].shootdowns += 1
        ts.shootdowns_received += 1
        info.cpu = cpu
        flush_tlb_func(info)
    info.cpu = me


@kfunc
def flush_tlb_mm_range(mm: Any, start: int, end: int, stride_shift: int = 12,
                       freed_tables: bool = False) -> None:
    m = _trace._current
    ctx = mm.context
    ctx.tlb_gen += 1
    info = FlushTlbInfo(mm, start, end, stride_shift, freed_tables, ctx.tlb_gen)
    me = m.cpu
    bm = mm.cpu_bitmap
    others = [c for c in sorted(bm) if c != me] if len(bm) > 1 or me not in bm else None
    if m.vm.tlb[me].loaded_mm is mm:
        info.cpu = me
        flush_tlb_func(info)
    if others:
        native_flush_tlb_multi(others, info)


def flush_tlb_mm(mm: Any) -> None:
    flush_tlb_mm_range(mm, 0, TLB_FLUSH_ALL, 12, False)


def flush_tlb_range(vma: Any, start: int, end: int) -> None:
    flush_tlb_mm_range(vma.vm_mm, start, end, 12, False)


def flush_tlb_page(vma: Any, addr: int) -> None:
    flush_tlb_mm_range(vma.vm_mm, addr, addr + 4096, 12, False)


@kfunc
def flush_tlb_kernel_range(start: int, end: int) -> None:
    """Flush kernel translations in [start, end) on every CPU (vunmap, the lazy vmap purge).

    The simulated TLB caches user translations only, so this drops any entry in the range and
    changes no counter."""
    m = _trace._current
    lo, hi = start >> 12, (end + 4095) >> 12
    for ts in m.vm.tlb:
        for vpn in [v for v in ts.entries if lo <= v < hi]:
            del ts.entries[vpn]


def flush_tlb_fix_spurious_fault(vma: Any, addr: int) -> None:
    """A stale, less permissive entry caused the fault: drop it on this CPU only."""
    m = current_machine()
    ts = m.vm.tlb[m.cpu]
    ts.entries.pop(addr >> 12, None)
    ts.flush_one += 1


# -- the MMU ---------------------------------------------------------------------------------
class PageFault(Exception):
    """Raised by the walker; carries the x86 error code (internal to the MMU loop)."""


_A = _PAGE_ACCESSED
_AD = _PAGE_ACCESSED | _PAGE_DIRTY
_RW = _PAGE_RW
_P = _PAGE_PRESENT
_U = _PAGE_USER
_NX = _PAGE_NX
_PFN = PTE_PFN_MASK


def walk_and_fill(m: Any, mm: Any, ts: TlbState, addr: int, write: bool, user: bool,
                  exec_: bool) -> int:
    """The hardware walk: return the PTE word (after A/D) or a negative error code."""
    t = mm.pgd
    for s in mm.paging.upper_shifts:
        t = t[addr >> s & 511]
        if t is None:
            return -((X86_PF_WRITE if write else 0) | (X86_PF_USER if user else 0)
                     | (X86_PF_INSTR if exec_ else 0)) - 1  # -(_err(..., False) + 1)
    vpn = addr >> 12
    i = vpn & 511
    pte = t[i]
    if not pte & _P or (user and not pte & _U) or (write and not pte & _RW) or \
            (exec_ and pte & _NX):
        return -((X86_PF_PROT if pte & _P else 0) | (X86_PF_WRITE if write else 0)
                 | (X86_PF_USER if user else 0) | (X86_PF_INSTR if exec_ else 0)) - 1
    new = pte | (_AD if write else _A)
    if new != pte:
        t[i] = new
    e = ts.entries
    if vpn not in e:
        ring = ts.ring
        pos = ts.ring_pos
        old = ring[pos]
        if old >= 0 and len(e) >= TLB_ENTRIES:
            e.pop(old, None)
        ring[pos] = vpn
        ts.ring_pos = pos + 1 if pos + 1 < TLB_ENTRIES else 0
    e[vpn] = new
    return new


def _err(write: bool, user: bool, exec_: bool, prot: bool) -> int:
    code = 0
    if prot:
        code |= X86_PF_PROT
    if write:
        code |= X86_PF_WRITE
    if user:
        code |= X86_PF_USER
    if exec_:
        code |= X86_PF_INSTR
    return code


def mmu_translate(m: Any, addr: int, write: bool = False, user: bool = True,
                  exec_: bool = False) -> int:
    """Translate a virtual address of the current task: TLB, walk, fault and retry.

    Returns the physical address.  A fault the kernel cannot resolve ends in a signal
    (raised by the fault handler) or, for kernel-mode accesses, in -EFAULT raised as
    :class:`UserAccessFault`.
    """
    ts = m.vm.tlb[m.cpu]
    pte = ts.entries.get(addr >> 12)
    if pte is not None and (not write or (pte & _AD == _AD and pte & _RW)) and \
            not (exec_ and pte & _NX):
        ts.hits += 1
        return (pte & _PFN) | (addr & 0xFFF)
    ts.misses += 1
    return _translate_slow(m, ts, addr, write, user, exec_)


def _translate_slow(m: Any, ts: TlbState, addr: int, write: bool, user: bool, exec_: bool) -> int:
    fault = _FAULT[0] if _FAULT else _fault_mod()
    for _ in range(8):
        mm = ts.loaded_mm
        if mm is None or addr >= mm.task_size:
            code = _err(write, user, exec_, False)
        else:
            pte = walk_and_fill(m, mm, ts, addr, write, user, exec_)
            if pte >= 0:
                return (pte & _PFN) | (addr & 0xFFF)
            code = -pte - 1
        fault.raise_page_fault(m, addr, code)
        ts = m.vm.tlb[m.cpu]
    raise RuntimeError(f"page fault at {addr:#x} not resolved after retries")


_FAULT: list[Any] = []


def _fault_mod() -> Any:
    if not _FAULT:
        from mmdbg.sim.arch.x86 import fault

        _FAULT.append(fault)
    return _FAULT[0]


class UserAccessFault(Exception):
    """A kernel-mode access to a user address that cannot be satisfied (-EFAULT)."""
