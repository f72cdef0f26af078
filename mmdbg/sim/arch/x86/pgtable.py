"""x86_64 page tables, bit for bit (arch/x86/include/asm/pgtable*.h, arch/x86/mm/pgtable.c).

Entries are the hardware's 64-bit words: ``_PAGE_PRESENT`` (bit 0), ``_PAGE_RW`` (1),
``_PAGE_USER`` (2), ``_PAGE_PWT`` (3), ``_PAGE_PCD`` (4), ``_PAGE_ACCESSED`` (5),
``_PAGE_DIRTY`` (6), ``_PAGE_PSE`` (7, ``_PAGE_PAT`` on a 4K leaf), ``_PAGE_GLOBAL`` (8, also
``_PAGE_PROTNONE`` in a non-present entry), the software bits ``_PAGE_SPECIAL`` (9),
``_PAGE_UFFD_WP`` (10), ``_PAGE_SOFT_DIRTY`` (11), the frame number in bits 12-51 and
``_PAGE_NX`` (63).  Swap entries use the kernel's encoding (pgtable_64.h): type in bits 59-63,
the offset *inverted* in bits 9-58, and ``_PAGE_SWP_SOFT_DIRTY``/``_PAGE_SWP_UFFD_WP``/
``_PAGE_SWP_EXCLUSIVE`` in bits 1-3.  ``CONFIG_MEM_SOFT_DIRTY=y`` as on distribution kernels:
``pte_mkdirty`` sets ``_PAGE_SOFT_DIRTY`` too.

Paging depth: 4 levels (PGD -> PUD -> PMD -> PTE, the P4D folded into the PGD) by default,
5 levels (PGD -> P4D -> PUD -> PMD -> PTE) with ``la57`` on the command line.

Representation (reference/performance.md §4c): every table is one page taken from the buddy
allocator with ``GFP_PGTABLE_USER``, marked ``PGTY_table`` on the ``_mapcount`` column and
counted in the node's ``nr_page_table_pages``; ``mm->pgtables_bytes`` counts PTE, PMD and PUD
tables as the kernel does (the PGD and P4D are not in it).  An upper-level table is a Python
list of 513 slots: slots 0-511 hold the next-level table (or ``None`` for an empty entry),
slot 512 (``PT_PFN``) holds the table's own pfn, so the hardware value of an entry is
``child[PT_PFN] << 12 | _PAGE_TABLE``.  A PTE table is an ``array('Q', 513)``: slots 0-511 are
the raw PTE words, slot 512 is its pfn.  The kernel half of a user PGD (the entries copied from
``swapper_pg_dir``) is not modelled: user PGDs hold user mappings only.

Simplification: no huge entries yet (``_PAGE_PSE`` leaves at PMD/PUD level come with THP).
"""

from __future__ import annotations

from array import array
from typing import Any

from mmdbg.sim.include.gfp import __GFP_ACCOUNT, __GFP_ZERO, GFP_KERNEL
from mmdbg.sim.mm import page_alloc, vmstat
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT
from mmdbg.sim.trace import current_machine, kfunc

# -- bits (arch/x86/include/asm/pgtable_types.h) -------------------------------------------
_PAGE_BIT_PRESENT = 0
_PAGE_BIT_RW = 1
_PAGE_BIT_USER = 2
_PAGE_BIT_PWT = 3
_PAGE_BIT_PCD = 4
_PAGE_BIT_ACCESSED = 5
_PAGE_BIT_DIRTY = 6
_PAGE_BIT_PSE = 7
_PAGE_BIT_PAT = 7
_PAGE_BIT_GLOBAL = 8
_PAGE_BIT_SOFTW1 = 9
_PAGE_BIT_SOFTW2 = 10
_PAGE_BIT_SOFTW3 = 11
_PAGE_BIT_PAT_LARGE = 12
_PAGE_BIT_SOFTW4 = 57
_PAGE_BIT_SOFTW5 = 58
_PAGE_BIT_PKEY_BIT0 = 59
_PAGE_BIT_NX = 63
_PAGE_BIT_SPECIAL = _PAGE_BIT_SOFTW1
_PAGE_BIT_UFFD_WP = _PAGE_BIT_SOFTW2
_PAGE_BIT_SOFT_DIRTY = _PAGE_BIT_SOFTW3
_PAGE_BIT_SAVED_DIRTY = _PAGE_BIT_SOFTW5
_PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL

_PAGE_PRESENT = 1 << _PAGE_BIT_PRESENT
_PAGE_RW = 1 << _PAGE_BIT_RW
_PAGE_USER = 1 << _PAGE_BIT_USER
_PAGE_PWT = 1 << _PAGE_BIT_PWT
_PAGE_PCD = 1 << _PAGE_BIT_PCD
_PAGE_ACCESSED = 1 << _PAGE_BIT_ACCESSED
_PAGE_DIRTY = 1 << _PAGE_BIT_DIRTY
_PAGE_PSE = 1 << _PAGE_BIT_PSE
_PAGE_PAT = 1 << _PAGE_BIT_PAT
_PAGE_GLOBAL = 1 << _PAGE_BIT_GLOBAL
_PAGE_SPECIAL = 1 << _PAGE_BIT_SPECIAL
_PAGE_UFFD_WP = 1 << _PAGE_BIT_UFFD_WP
_PAGE_SOFT_DIRTY = 1 << _PAGE_BIT_SOFT_DIRTY
_PAGE_PAT_LARGE = 1 << _PAGE_BIT_PAT_LARGE
_PAGE_SAVED_DIRTY = 1 << _PAGE_BIT_SAVED_DIRTY
_PAGE_PROTNONE = 1 << _PAGE_BIT_PROTNONE
_PAGE_NX = 1 << _PAGE_BIT_NX

# swap-entry bits in a non-present PTE (pgtable_64.h / pgtable.h)
_PAGE_SWP_SOFT_DIRTY = _PAGE_RW
_PAGE_SWP_UFFD_WP = _PAGE_USER
_PAGE_SWP_EXCLUSIVE = _PAGE_PWT
SWP_TYPE_BITS = 5
SWP_OFFSET_FIRST_BIT = _PAGE_BIT_PROTNONE + 1
SWP_OFFSET_SHIFT = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS
MAX_SWAPFILES = 1 << SWP_TYPE_BITS

U64 = (1 << 64) - 1
__PHYSICAL_MASK_SHIFT = 52
PTE_PFN_MASK = ((1 << __PHYSICAL_MASK_SHIFT) - 1) & ~((1 << PAGE_SHIFT) - 1)
PTE_FLAGS_MASK = U64 & ~PTE_PFN_MASK
# the bits pte_modify() keeps (_PAGE_CHG_MASK)
_PAGE_CHG_MASK = (PTE_PFN_MASK | _PAGE_PCD | _PAGE_PWT | _PAGE_SPECIAL | _PAGE_ACCESSED
                  | _PAGE_DIRTY | _PAGE_SOFT_DIRTY | _PAGE_UFFD_WP | _PAGE_SAVED_DIRTY)

_PAGE_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_DIRTY
_KERNPG_TABLE = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY

# protections (pgtable_types.h, 6.x)
PAGE_NONE = _PAGE_ACCESSED | _PAGE_GLOBAL
PAGE_SHARED = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_SHARED_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED
PAGE_COPY_NOEXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_COPY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
PAGE_COPY = PAGE_COPY_NOEXEC
PAGE_READONLY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX
PAGE_READONLY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED
# __PAGE_KERNEL (no PTI, so _PAGE_GLOBAL stays): vmalloc/vmap mappings in init_mm
PAGE_KERNEL = _PAGE_PRESENT | _PAGE_RW | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_GLOBAL | _PAGE_NX

# arch/x86/mm/pgprot.c protection_map[], indexed by VM_READ|VM_WRITE|VM_EXEC|VM_SHARED
protection_map = (
    PAGE_NONE, PAGE_READONLY, PAGE_COPY, PAGE_COPY,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_COPY_EXEC, PAGE_COPY_EXEC,
    PAGE_NONE, PAGE_READONLY, PAGE_SHARED, PAGE_SHARED,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_SHARED_EXEC, PAGE_SHARED_EXEC,
)

# flag names in crash's order (vtop / pte): (bit, name), and the extra ones we decode
PTE_FLAG_NAMES = (
    (_PAGE_PRESENT, "PRESENT"), (_PAGE_RW, "RW"), (_PAGE_USER, "USER"), (_PAGE_PWT, "PWT"),
    (_PAGE_PCD, "PCD"), (_PAGE_ACCESSED, "ACCESSED"), (_PAGE_DIRTY, "DIRTY"),
    (_PAGE_PSE, "PSE"), (_PAGE_GLOBAL, "GLOBAL"), (_PAGE_SPECIAL, "SPECIAL"),
    (_PAGE_UFFD_WP, "UFFD_WP"), (_PAGE_SOFT_DIRTY, "SOFT_DIRTY"), (_PAGE_NX, "NX"),
)

PTRS_PER_TABLE = 512
PT_PFN = 512  # slot holding a table's own pfn
PMD_SHIFT = 21
PUD_SHIFT = 30
P4D_SHIFT = 39
PGDIR_SHIFT_4L = 39
PGDIR_SHIFT_5L = 48
PMD_SIZE = 1 << PMD_SHIFT
PUD_SIZE = 1 << PUD_SHIFT
# x86-64 user address space limits (arch/x86/include/asm/page_64_types.h)
TASK_SIZE_4L = (1 << 47) - (1 << PAGE_SHIFT)
TASK_SIZE_5L = (1 << 56) - (1 << PAGE_SHIFT)
DEFAULT_MAP_WINDOW = TASK_SIZE_4L

GFP_PGTABLE_KERNEL = GFP_KERNEL | __GFP_ZERO
GFP_PGTABLE_USER = GFP_PGTABLE_KERNEL | __GFP_ACCOUNT
_PT_TYPE = pf.PAGE_TABLE_MAPCOUNT_VALUE
_NR_PAGETABLE = vmstat.NS["nr_page_table_pages"]


# -- entry helpers (the kernel's inline functions) ------------------------------------------
def pte_none(pte: int) -> bool:
    return pte == 0


def pte_present(pte: int) -> bool:
    """Present to the kernel: P set, or a PROT_NONE entry (P clear, PROTNONE set)."""
    return bool(pte & (_PAGE_PRESENT | _PAGE_PROTNONE))


def pte_protnone(pte: int) -> bool:
    return pte & (_PAGE_PROTNONE | _PAGE_PRESENT) == _PAGE_PROTNONE


def pte_write(pte: int) -> bool:
    return bool(pte & _PAGE_RW)


def pte_dirty(pte: int) -> bool:
    return bool(pte & _PAGE_DIRTY)


def pte_young(pte: int) -> bool:
    return bool(pte & _PAGE_ACCESSED)


def pte_special(pte: int) -> bool:
    return bool(pte & _PAGE_SPECIAL)


def pte_soft_dirty(pte: int) -> bool:
    return bool(pte & _PAGE_SOFT_DIRTY)


def pte_exec(pte: int) -> bool:
    return not pte & _PAGE_NX


def pte_pfn(pte: int) -> int:
    return (pte & PTE_PFN_MASK) >> PAGE_SHIFT


def pfn_pte(pfn: int, prot: int) -> int:
    return (pfn << PAGE_SHIFT) & PTE_PFN_MASK | prot & PTE_FLAGS_MASK


def pte_mkwrite(pte: int) -> int:
    return pte | _PAGE_RW


def pte_wrprotect(pte: int) -> int:
    return pte & ~_PAGE_RW


def pte_mkdirty(pte: int) -> int:
    return pte | _PAGE_DIRTY | _PAGE_SOFT_DIRTY


def pte_mkclean(pte: int) -> int:
    return pte & ~_PAGE_DIRTY


def pte_mkyoung(pte: int) -> int:
    return pte | _PAGE_ACCESSED


def pte_mkold(pte: int) -> int:
    return pte & ~_PAGE_ACCESSED


def pte_mkspecial(pte: int) -> int:
    return pte | _PAGE_SPECIAL


def pte_clear_soft_dirty(pte: int) -> int:
    return pte & ~_PAGE_SOFT_DIRTY


def pte_modify(pte: int, newprot: int) -> int:
    """Change the protection bits, keeping the frame, A/D and software bits."""
    return pte & _PAGE_CHG_MASK | newprot & ~_PAGE_CHG_MASK


def vm_get_page_prot(vm_flags: int) -> int:
    """protection_map[vm_flags & (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED)]."""
    return protection_map[vm_flags & 0xF]


# -- swap entries ---------------------------------------------------------------------------
def is_swap_pte(pte: int) -> bool:
    return pte != 0 and not pte & (_PAGE_PRESENT | _PAGE_PROTNONE)


def swp_entry_to_pte(swp_type: int, offset: int) -> int:
    """__swp_entry(): type in the top 5 bits, ~offset shifted into bits 9..58."""
    val = ((~offset & U64) << SWP_OFFSET_SHIFT & U64) >> SWP_TYPE_BITS
    return val | (swp_type << (64 - SWP_TYPE_BITS)) & U64


def pte_swp_type(pte: int) -> int:
    return pte >> (64 - SWP_TYPE_BITS)


def pte_swp_offset(pte: int) -> int:
    return ((~pte & U64) << SWP_TYPE_BITS & U64) >> SWP_OFFSET_SHIFT


def pte_decode_flags(pte: int) -> list[str]:
    return [name for bit, name in PTE_FLAG_NAMES if pte & bit]


# -- paging geometry ------------------------------------------------------------------------
class Paging:
    """The machine's paging mode: level count, shifts and level names."""

    __slots__ = ("levels", "names", "pgdir_shift", "shifts", "task_size", "upper_shifts")

    def __init__(self, la57: bool) -> None:
        self.levels = 5 if la57 else 4
        self.pgdir_shift = PGDIR_SHIFT_5L if la57 else PGDIR_SHIFT_4L
        if la57:
            self.shifts = (PGDIR_SHIFT_5L, P4D_SHIFT, PUD_SHIFT, PMD_SHIFT, PAGE_SHIFT)
            self.names = ("PGD", "P4D", "PUD", "PMD", "PTE")
        else:
            self.shifts = (PGDIR_SHIFT_4L, PUD_SHIFT, PMD_SHIFT, PAGE_SHIFT)
            self.names = ("PGD", "PUD", "PMD", "PTE")
        self.task_size = TASK_SIZE_5L if la57 else TASK_SIZE_4L
        self.upper_shifts = self.shifts[:-1]  # the levels above the PTE table


def paging(m: Any) -> Paging:
    return m.vm.paging


def canonical(m: Any, addr: int) -> bool:
    bits = 57 if m.vm.paging.levels == 5 else 48
    top = addr >> (bits - 1)
    return top == 0 or top == (1 << (64 - bits + 1)) - 1


# -- table pages -----------------------------------------------------------------------------
def pagetable_alloc(m: Any, gfp: int = GFP_PGTABLE_USER) -> int | None:
    """Take a zeroed page for a table; __pagetable_ctor: PGTY_table + NR_PAGETABLE (kernel
    tables too, as in 6.x: init_mm's tables use GFP_PGTABLE_KERNEL, not memcg-accounted)."""
    pfn = page_alloc.alloc_pages(gfp, 0)
    if pfn is None:
        return None
    m.mem_map._mapcount[pfn] = _PT_TYPE
    m.node_data[m.pfn_zone(pfn).node].vm_stat[_NR_PAGETABLE] += 1
    return pfn


def pagetable_free(m: Any, pfn: int) -> None:
    """pagetable_dtor + pagetable_free: clear the type and give the page back."""
    m.mem_map._mapcount[pfn] = -1
    m.node_data[m.pfn_zone(pfn).node].vm_stat[_NR_PAGETABLE] -= 1
    m.vm.pgtables.pop(pfn, None)
    page_alloc.__free_pages(pfn, 0)


def _new_upper(m: Any, pfn: int) -> list:
    t: list = [None] * (PTRS_PER_TABLE + 1)
    t[PT_PFN] = pfn
    m.vm.pgtables[pfn] = t
    return t


def _new_leaf(m: Any, pfn: int) -> array:
    t = array("Q", bytes(8 * (PTRS_PER_TABLE + 1)))
    t[PT_PFN] = pfn
    m.vm.pgtables[pfn] = t
    return t


@kfunc(aliases=("_pgd_alloc",))
def pgd_alloc(mm: Any) -> list | None:
    m = current_machine()
    pfn = pagetable_alloc(m)
    if pfn is None:
        return None
    return _new_upper(m, pfn)


@kfunc
def pgd_free(mm: Any, pgd: list) -> None:
    pagetable_free(current_machine(), pgd[PT_PFN])


def _upper_alloc(mm: Any, parent: list, address: int, level: int) -> int:
    m = current_machine()
    pfn = pagetable_alloc(m, GFP_PGTABLE_KERNEL if mm is getattr(m, "init_mm", None)
                          else GFP_PGTABLE_USER)
    if pfn is None:
        return -12  # -ENOMEM
    if level >= mm.paging.levels - 3:  # PUD and PMD tables count in pgtables_bytes, P4D not
        mm.pgtables_bytes += PTRS_PER_TABLE * 8
    parent[address >> mm.paging.shifts[level - 1] & 511] = _new_upper(m, pfn)
    return 0


@kfunc
def __p4d_alloc(mm: Any, pgd: list, address: int) -> int:
    """Allocate the P4D table under ``pgd`` for ``address`` (5-level paging only)."""
    return _upper_alloc(mm, pgd, address, 1)


@kfunc
def __pud_alloc(mm: Any, p4d: list, address: int) -> int:
    """Allocate a PUD table under the P4D entry (the PGD with 4 levels)."""
    return _upper_alloc(mm, p4d, address, mm.paging.levels - 3)


@kfunc
def __pmd_alloc(mm: Any, pud: list, address: int) -> int:
    return _upper_alloc(mm, pud, address, mm.paging.levels - 2)


@kfunc(aliases=("pte_alloc_one",))
def __pte_alloc(mm: Any, pmd: list, address: int) -> int:
    """Allocate a PTE table and install it in the PMD entry for ``address``."""
    m = current_machine()
    pfn = pagetable_alloc(m)
    if pfn is None:
        return -12
    mm.pgtables_bytes += PTRS_PER_TABLE * 8
    pmd[address >> PMD_SHIFT & 511] = _new_leaf(m, pfn)
    return 0


@kfunc
def __pte_alloc_kernel(pmd: list, address: int) -> int:
    """mm/memory.c: a PTE table for init_mm (pte_alloc_one_kernel, GFP_PGTABLE_KERNEL).

    As in the kernel, a kernel PTE table is not counted in ``init_mm.pgtables_bytes``
    (no ``mm_inc_nr_ptes``), but its ctor counts it in NR_PAGETABLE (6.x)."""
    m = current_machine()
    pfn = pagetable_alloc(m, GFP_PGTABLE_KERNEL)
    if pfn is None:
        return -12
    pmd[address >> PMD_SHIFT & 511] = _new_leaf(m, pfn)
    return 0


def pte_table_alloc_kernel(mm: Any, addr: int) -> array | None:
    """The init_mm walk of vmap_pages_range: p4d/pud/pmd_alloc_track, pte_alloc_kernel_track
    (missing levels allocated, never freed); None on -ENOMEM."""
    shifts = mm.paging.shifts
    t = mm.pgd
    n = len(shifts) - 1
    for level in range(n):
        i = addr >> shifts[level] & 511
        if t[i] is None:
            if level == n - 1:
                err = globals()["__pte_alloc_kernel"](t, addr)
            else:
                err = globals()[_ALLOC_NAMES[n - 1 - level]](mm, t, addr)
            if err:
                return None
        t = t[i]
    return t  # type: ignore[return-value]


def table_entry_value(child: Any) -> int:
    """The hardware word in a parent entry that points at ``child``."""
    if child is None:
        return 0
    return child[PT_PFN] << PAGE_SHIFT | _PAGE_TABLE


def pte_table_alloc(mm: Any, addr: int) -> array | None:
    """Walk to the PTE table for ``addr``, allocating missing levels; None on -ENOMEM."""
    shifts = mm.paging.shifts
    t = mm.pgd
    n = len(shifts) - 1
    for level in range(n):
        i = addr >> shifts[level] & 511
        child = t[i]
        if child is None:
            # through the module globals, so kprobes on __pmd_alloc & co. see the call
            fn = globals()[_ALLOC_NAMES[n - 1 - level]]
            if fn(mm, t, addr):
                return None
            child = t[i]
        t = child
    return t  # type: ignore[return-value]


_ALLOC_NAMES = ("__pte_alloc", "__pmd_alloc", "__pud_alloc", "__p4d_alloc")


def pte_table_lookup(mm: Any, addr: int) -> array | None:
    """The PTE table covering ``addr`` or None (no allocation)."""
    t = mm.pgd
    shifts = mm.paging.shifts
    for s in shifts[:-1]:
        t = t[addr >> s & 511]
        if t is None:
            return None
    return t  # type: ignore[return-value]


def walk_entries(mm: Any, addr: int) -> list[tuple[str, int, int, Any]]:
    """The hardware walk for vtop: [(LEVEL, entry phys addr, entry value, table)], stops at an
    empty entry or at the PTE."""
    out = []
    t = mm.pgd
    names = mm.paging.names
    for level, s in enumerate(mm.paging.shifts):
        i = addr >> s & 511
        eaddr = (t[PT_PFN] << PAGE_SHIFT) + i * 8
        if level == len(names) - 1:
            out.append((names[level], eaddr, t[i], t))
            break
        child = t[i]
        out.append((names[level], eaddr, table_entry_value(child), t))
        if child is None:
            break
        t = child
    return out


def table_virt(pfn: int) -> int:
    return PAGE_OFFSET + (pfn << PAGE_SHIFT)


def table_bytes(m: Any, pfn: int) -> bytes | None:
    """The 4 KiB a page-table page holds (for ``rd -p``), or None if it is not a table."""
    t = m.vm.pgtables.get(pfn)
    if t is None:
        return None
    if isinstance(t, array):
        return t[:PTRS_PER_TABLE].tobytes()
    return array("Q", [table_entry_value(c) for c in t[:PTRS_PER_TABLE]]).tobytes()


def for_each_pte_table(mm: Any) -> list[tuple[int, array]]:
    """[(base address, PTE table)] for every PTE table of ``mm``, in address order."""
    out: list[tuple[int, array]] = []
    shifts = mm.paging.shifts

    def rec(t: Any, level: int, base: int) -> None:
        s = shifts[level]
        last = level == len(shifts) - 2
        for i in range(PTRS_PER_TABLE):
            c = t[i]
            if c is None:
                continue
            b = base | i << s
            if last:
                out.append((b, c))
            else:
                rec(c, level + 1, b)

    rec(mm.pgd, 0, 0)
    return out


def count_tables(mm: Any) -> tuple[int, int]:
    """(table pages including the PGD, bytes that count in pgtables_bytes)."""
    shifts = mm.paging.shifts
    n_levels = len(shifts)
    pages = 1
    counted = 0

    def rec(t: Any, level: int) -> None:
        nonlocal pages, counted
        for i in range(PTRS_PER_TABLE):
            c = t[i]
            if c is None:
                continue
            pages += 1
            if level + 1 >= n_levels - 3:
                counted += PTRS_PER_TABLE * 8
            if level + 1 < n_levels - 1:
                rec(c, level + 1)

    rec(mm.pgd, 0)
    return pages, counted
