"""Fault-path types and flags (include/linux/mm.h, include/linux/mm_types.h, mman.h).

``struct vm_fault``, ``vm_operations_struct``, ``FAULT_FLAG_*``, ``VM_FAULT_*`` and the
mmap/mprotect/madvise/mremap/msync/mlock flag values of the x86_64 ABI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# enum fault_flag
FAULT_FLAG_WRITE = 1 << 0
FAULT_FLAG_MKWRITE = 1 << 1
FAULT_FLAG_ALLOW_RETRY = 1 << 2
FAULT_FLAG_RETRY_NOWAIT = 1 << 3
FAULT_FLAG_KILLABLE = 1 << 4
FAULT_FLAG_TRIED = 1 << 5
FAULT_FLAG_USER = 1 << 6
FAULT_FLAG_REMOTE = 1 << 7
FAULT_FLAG_INSTRUCTION = 1 << 8
FAULT_FLAG_INTERRUPTIBLE = 1 << 9
FAULT_FLAG_UNSHARE = 1 << 10
FAULT_FLAG_ORIG_PTE_VALID = 1 << 11
FAULT_FLAG_VMA_LOCK = 1 << 12
FAULT_FLAG_DEFAULT = FAULT_FLAG_ALLOW_RETRY | FAULT_FLAG_KILLABLE | FAULT_FLAG_INTERRUPTIBLE

# vm_fault_t
VM_FAULT_OOM = 0x000001
VM_FAULT_SIGBUS = 0x000002
VM_FAULT_MAJOR = 0x000004
VM_FAULT_HWPOISON = 0x000010
VM_FAULT_HWPOISON_LARGE = 0x000020
VM_FAULT_SIGSEGV = 0x000040
VM_FAULT_NOPAGE = 0x000100
VM_FAULT_LOCKED = 0x000200
VM_FAULT_RETRY = 0x000400
VM_FAULT_FALLBACK = 0x000800
VM_FAULT_DONE_COW = 0x001000
VM_FAULT_NEEDDSYNC = 0x002000
VM_FAULT_COMPLETED = 0x004000
VM_FAULT_ERROR = (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV | VM_FAULT_HWPOISON
                  | VM_FAULT_HWPOISON_LARGE | VM_FAULT_FALLBACK)

# uapi/asm-generic/mman-common.h, mman.h (x86_64 values)
PROT_NONE = 0x0
PROT_READ = 0x1
PROT_WRITE = 0x2
PROT_EXEC = 0x4
PROT_SEM = 0x8
PROT_GROWSDOWN = 0x01000000
PROT_GROWSUP = 0x02000000

MAP_SHARED = 0x01
MAP_PRIVATE = 0x02
MAP_SHARED_VALIDATE = 0x03
MAP_TYPE = 0x0F
MAP_FIXED = 0x10
MAP_ANONYMOUS = 0x20
MAP_32BIT = 0x40
MAP_GROWSDOWN = 0x0100
MAP_DENYWRITE = 0x0800
MAP_EXECUTABLE = 0x1000
MAP_LOCKED = 0x2000
MAP_NORESERVE = 0x4000
MAP_POPULATE = 0x8000
MAP_NONBLOCK = 0x10000
MAP_STACK = 0x20000
MAP_HUGETLB = 0x40000
MAP_SYNC = 0x80000
MAP_FIXED_NOREPLACE = 0x100000
MAP_UNINITIALIZED = 0x4000000
MAP_FAILED = -1

MAP_FLAG_NAMES = {
    "MAP_SHARED": MAP_SHARED, "MAP_PRIVATE": MAP_PRIVATE, "MAP_FIXED": MAP_FIXED,
    "MAP_ANONYMOUS": MAP_ANONYMOUS, "MAP_ANON": MAP_ANONYMOUS, "MAP_GROWSDOWN": MAP_GROWSDOWN,
    "MAP_LOCKED": MAP_LOCKED, "MAP_NORESERVE": MAP_NORESERVE, "MAP_POPULATE": MAP_POPULATE,
    "MAP_NONBLOCK": MAP_NONBLOCK, "MAP_STACK": MAP_STACK, "MAP_HUGETLB": MAP_HUGETLB,
    "MAP_FIXED_NOREPLACE": MAP_FIXED_NOREPLACE, "MAP_SHARED_VALIDATE": MAP_SHARED_VALIDATE,
}
PROT_NAMES = {"PROT_NONE": PROT_NONE, "PROT_READ": PROT_READ, "PROT_WRITE": PROT_WRITE,
              "PROT_EXEC": PROT_EXEC}

MREMAP_MAYMOVE = 1
MREMAP_FIXED = 2
MREMAP_DONTUNMAP = 4

MS_ASYNC = 1
MS_INVALIDATE = 2
MS_SYNC = 4

MCL_CURRENT = 1
MCL_FUTURE = 2
MCL_ONFAULT = 4
MLOCK_ONFAULT = 0x01

MADV_NORMAL = 0
MADV_RANDOM = 1
MADV_SEQUENTIAL = 2
MADV_WILLNEED = 3
MADV_DONTNEED = 4
MADV_FREE = 8
MADV_REMOVE = 9
MADV_DONTFORK = 10
MADV_DOFORK = 11
MADV_MERGEABLE = 12
MADV_UNMERGEABLE = 13
MADV_HUGEPAGE = 14
MADV_NOHUGEPAGE = 15
MADV_DONTDUMP = 16
MADV_DODUMP = 17
MADV_WIPEONFORK = 18
MADV_KEEPONFORK = 19
MADV_COLD = 20
MADV_PAGEOUT = 21
MADV_POPULATE_READ = 22
MADV_POPULATE_WRITE = 23
MADV_NAMES = {
    "MADV_NORMAL": MADV_NORMAL, "MADV_RANDOM": MADV_RANDOM, "MADV_SEQUENTIAL": MADV_SEQUENTIAL,
    "MADV_WILLNEED": MADV_WILLNEED, "MADV_DONTNEED": MADV_DONTNEED, "MADV_FREE": MADV_FREE,
    "MADV_REMOVE": MADV_REMOVE, "MADV_DONTFORK": MADV_DONTFORK, "MADV_DOFORK": MADV_DOFORK,
    "MADV_MERGEABLE": MADV_MERGEABLE, "MADV_UNMERGEABLE": MADV_UNMERGEABLE,
    "MADV_HUGEPAGE": MADV_HUGEPAGE, "MADV_NOHUGEPAGE": MADV_NOHUGEPAGE,
    "MADV_DONTDUMP": MADV_DONTDUMP, "MADV_DODUMP": MADV_DODUMP,
    "MADV_WIPEONFORK": MADV_WIPEONFORK, "MADV_KEEPONFORK": MADV_KEEPONFORK,
    "MADV_COLD": MADV_COLD, "MADV_PAGEOUT": MADV_PAGEOUT,
    "MADV_POPULATE_READ": MADV_POPULATE_READ, "MADV_POPULATE_WRITE": MADV_POPULATE_WRITE,
}


class VmOperations:
    """``struct vm_operations_struct``: the callbacks a file mapping provides."""

    __slots__ = ("fault", "map_pages", "name", "page_mkwrite")
    ktype = "vm_operations_struct"

    def __init__(self, name: str, fault: Callable[..., int] | None = None,
                 map_pages: Callable[..., int] | None = None,
                 page_mkwrite: Callable[..., int] | None = None) -> None:
        self.name = name
        self.fault = fault
        self.map_pages = map_pages
        self.page_mkwrite = page_mkwrite

    def __repr__(self) -> str:
        return f"<vm_operations_struct {self.name}>"


class VmFault:
    """``struct vm_fault``: what the fault handlers pass down."""

    __slots__ = ("address", "cow_page", "flags", "orig_pte", "page", "pgoff", "pte", "pte_idx",
                 "real_address", "vma")
    ktype = "vm_fault"

    def __init__(self, vma: Any, address: int, flags: int) -> None:
        self.vma = vma
        self.real_address = address
        self.address = page = address & ~0xFFF
        self.flags = flags
        self.pgoff = ((page - vma.vm_start) >> 12) + vma.vm_pgoff
        self.pte: Any = None  # the PTE table (array) holding the entry
        self.pte_idx = (address >> 12) & 511
        self.orig_pte = 0
        self.page: int | None = None
        self.cow_page: int | None = None

    def __repr__(self) -> str:
        return f"<vm_fault {self.real_address:#x} flags {self.flags:#x}>"
