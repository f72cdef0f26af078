"""kallsyms (kernel/kallsyms.c): kernel symbol addresses and names.

Every kernel function (``@kfunc``) has a stable text address in the kernel image,
``0xffffffff81000000`` plus a hash of its module and name (16-byte aligned), the address
``info breakpoints`` shows; its size is the ``/0x..`` of stack traces.  A few data symbols the
simulation has fixed addresses for are listed too (``init_task``, ``vmemmap_base``,
``page_offset_base``).

``kallsyms_lookup_name(name)`` is the address (0 if unknown, as the kernel returns);
``kallsyms_lookup(addr)`` the ``(name, offset, size)`` of the function containing ``addr``
(None outside every one); ``sprint_symbol(addr)`` the ``name+0xOFF/0xSIZE`` text.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim import trace

KERNEL_TEXT = 0xFFFFFFFF81000000
TEXT_MASK = 0xFFFFF0

DATA_SYMBOLS: dict[str, int] = {
    "init_task": 0xFFFFFFFF82A0C940,
    "page_offset_base": 0xFFFFFFFF82A01040,
    "vmemmap_base": 0xFFFFFFFF82A01048,
    "vmalloc_base": 0xFFFFFFFF82A01050,
}

_table: tuple[int, list[tuple[int, str, int]]] | None = None


def _stable_hash(s: str) -> int:
    h = 0xCBF29CE484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def kfunc_address(kf: Any) -> int:
    """The text address of kernel function ``kf`` (stable across runs and machines)."""
    return KERNEL_TEXT + (_stable_hash(kf.module + "." + kf.name) & TEXT_MASK)


def _symbols() -> list[tuple[int, str, int]]:
    """(address, name, size) of every kernel function, sorted by address then name."""
    global _table
    n = len(trace.KFUNCS)
    if _table is None or _table[0] != n:
        seen: dict[int, Any] = {}
        for kf in trace.KFUNCS.values():
            seen.setdefault(id(kf), kf)
        syms = sorted((kfunc_address(kf), kf.name, max(1, int(getattr(kf, "size", 1))))
                      for kf in seen.values())
        _table = (n, syms)
    return _table[1]


def kallsyms_lookup_name(name: str) -> int:
    """The address of symbol ``name`` (a kernel function, an alias, or a data symbol); 0 if
    there is none."""
    kf = trace.find_kfunc(name)
    if kf is not None:
        return kfunc_address(kf)
    return DATA_SYMBOLS.get(name, 0)


def kallsyms_lookup(addr: int) -> tuple[str, int, int] | None:
    """``(name, offset, size)`` of the symbol containing ``addr`` (None if none does)."""
    for name, a in DATA_SYMBOLS.items():
        if addr == a:
            return name, 0, 8
    best: tuple[int, str, int] | None = None
    for a, name, size in _symbols():
        if a > addr:
            break
        if addr < a + size:
            best = (a, name, size)  # the last (highest) start wins on overlap
    if best is None:
        return None
    a, name, size = best
    return name, addr - a, size


def sprint_symbol(addr: int) -> str:
    """``name+0xOFF/0xSIZE`` (``%pS``), or the hex address when no symbol contains it."""
    r = kallsyms_lookup(addr)
    if r is None:
        return f"0x{addr:x}"
    name, off, size = r
    return f"{name}+0x{off:x}/0x{size:x}"
