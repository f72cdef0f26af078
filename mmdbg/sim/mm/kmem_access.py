"""Kernel memory accesses of simulated kernel code (what the compiler's instrumentation sees).

Kernel code that touches object memory -- test modules, and any subsystem that keeps real
bytes in its objects -- reads and writes through these helpers, as compiled kernel code
dereferences pointers: ``read64(addr)``, ``write8(addr, v)``, ``kmem_read(addr, n)``,
``kmem_write(addr, data)``, ``memset``, ``memcpy``.  Each access is checked first:

* KASAN (``machine.kasan``): ``kasan_check_read``/``kasan_check_write`` =
  ``__asan_loadN``/``__asan_storeN``; a bad access prints the KASAN report and, as in the
  kernel with ``kasan.fault=report``, the access still happens;
* KFENCE (``machine.kfence``): an access to a guard page or a freed KFENCE object is the page
  fault that KFENCE turns into its report;
* an address with nothing mapped behind it is the kernel's "unable to handle page fault"
  oops (:class:`KernelOops` is raised after the report; the module loader catches it).

Addresses are kernel virtual addresses: the direct map (``PAGE_OFFSET + phys``), vmalloc and
module space (through ``machine.vmap_pages``).
"""

from __future__ import annotations

import sys
from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.kernel import hw_breakpoint as _hbp
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT
from mmdbg.sim.trace import kfunc


class KernelOops(Exception):
    """A simulated kernel oops (page fault in kernel mode) in kernel code."""


def virt_to_phys(m: Any, addr: int) -> int | None:
    """Physical address behind a kernel virtual address, None when unmapped."""
    if PAGE_OFFSET <= addr < PAGE_OFFSET + (m.mem_map.max_pfn << PAGE_SHIFT):
        return addr - PAGE_OFFSET
    pfn = m.vmap_pages.get(addr >> PAGE_SHIFT)
    if pfn is None:
        return None
    return (pfn << PAGE_SHIFT) | (addr & 4095)


def _caller_ip() -> int:
    from mmdbg.sim.lib import stackdepot
    from mmdbg.sim.mm.kasan.report import REPORT_INTERNAL

    return stackdepot.caller_ip(REPORT_INTERNAL, sys._getframe(2))


@kfunc(name="__asan_load", aliases=("kasan_check_read",))
def kasan_check_read(addr: int, size: int) -> bool:
    m = _trace._current
    if m.kasan is None:
        return True
    return m.kasan.kasan_check_range(addr, size, False, 0)


@kfunc(name="__asan_store", aliases=("kasan_check_write",))
def kasan_check_write(addr: int, size: int) -> bool:
    m = _trace._current
    if m.kasan is None:
        return True
    return m.kasan.kasan_check_range(addr, size, True, 0)


def check_access(m: Any, addr: int, size: int, write: bool) -> None:
    if m.kasan is not None:
        m.kasan.kasan_check_range(addr, size, write, 0)
    if m.kfence is not None and m.kfence.in_pool(addr):
        m.kfence.kfence_handle_access(addr, size, write)


def _pages(m: Any, addr: int, size: int, write: bool) -> list[tuple[int, int, int]]:
    """(phys, offset in data, length) pieces, faulting on an unmapped page."""
    out = []
    i = 0
    while i < size:
        a = addr + i
        n = min(size - i, 4096 - (a & 4095))
        phys = virt_to_phys(m, a)
        if phys is None:
            page_fault_oops(m, a, write)
        out.append((phys, i, n))  # type: ignore[arg-type]
        i += n
    return out


@kfunc
def page_fault_oops(m: Any, addr: int, write: bool) -> None:
    """arch/x86/mm/fault.c: the oops for a kernel-mode fault on an unmapped address."""
    from mmdbg.sim.lib import stackdepot

    kind = "NULL pointer dereference" if addr < 4096 else "page fault"
    m.printk(f"BUG: unable to handle {kind} at address {addr:016x}"
             if kind == "page fault" else
             f"BUG: kernel {kind}, address: {addr:016x}", level=1)
    m.printk(f"#PF: supervisor {'write' if write else 'read'} access in kernel mode", level=1)
    m.printk("#PF: error_code(0x0002) - not-present page" if write else
             "#PF: error_code(0x0000) - not-present page", level=1)
    m.printk("Oops: Oops: 0000 [#1] SMP NOPTI", level=4)
    for line in stackdepot.dump_stack_lines(m, ("page_fault_oops", "_pages", "kmem_read",
                                                "kmem_write")):
        m.printk(line, level=4)
    m.add_taint("D")
    raise KernelOops(f"unable to handle page fault at {addr:#x}")


@kfunc
def kmem_read(addr: int, size: int) -> bytes:
    """Read ``size`` bytes of kernel memory (checked)."""
    m = _trace._current
    check_access(m, addr, size, False)
    out = bytearray()
    pm = m.physmem
    for phys, _i, n in _pages(m, addr, size, False):
        out += pm.read(phys, n)
    if _hbp.ACTIVE:
        _hbp.hw_breakpoint_check(m, addr, size, False)
    return bytes(out)


@kfunc
def kmem_write(addr: int, data: bytes) -> None:
    """Write bytes to kernel memory (checked)."""
    m = _trace._current
    check_access(m, addr, len(data), True)
    pm = m.physmem
    for phys, i, n in _pages(m, addr, len(data), True):
        pm.write(phys, data[i:i + n])
    if _hbp.ACTIVE:
        _hbp.hw_breakpoint_check(m, addr, len(data), True)


def read8(addr: int) -> int:
    return kmem_read(addr, 1)[0]


def read16(addr: int) -> int:
    return int.from_bytes(kmem_read(addr, 2), "little")


def read32(addr: int) -> int:
    return int.from_bytes(kmem_read(addr, 4), "little")


def read64(addr: int) -> int:
    return int.from_bytes(kmem_read(addr, 8), "little")


def write8(addr: int, v: int) -> None:
    kmem_write(addr, bytes((v & 0xFF,)))


def write16(addr: int, v: int) -> None:
    kmem_write(addr, (v & 0xFFFF).to_bytes(2, "little"))


def write32(addr: int, v: int) -> None:
    kmem_write(addr, (v & 0xFFFFFFFF).to_bytes(4, "little"))


def write64(addr: int, v: int) -> None:
    kmem_write(addr, (v & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little"))


@kfunc
def memset(addr: int, c: int, n: int) -> int:
    kmem_write(addr, bytes((c & 0xFF,)) * n)
    return addr


@kfunc
def memcpy(dst: int, src: int, n: int) -> int:
    kmem_write(dst, kmem_read(src, n))
    return dst


def read_string(addr: int, maxlen: int = 4096) -> str:
    data = kmem_read(addr, maxlen)
    return data.split(b"\0", 1)[0].decode("latin-1")


def write_string(addr: int, text: str) -> None:
    kmem_write(addr, text.encode("latin-1") + b"\0")
