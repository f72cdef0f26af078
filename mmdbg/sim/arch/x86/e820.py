"""The BIOS-e820 physical memory map of a PC-like x86_64 machine (arch/x86/kernel/e820.c).

Layout for ``mem=SIZE`` (as QEMU's pc machine builds it):

* ``0x0-0xfff`` reserved (real-mode IVT/BDA), ``0x1000-0x9fbff`` usable, ``0x9fc00-0xfffff``
  reserved (EBDA, VGA, option and system ROMs);
* usable RAM from 1 MiB up to ``SIZE`` when ``SIZE`` <= 3.5 GiB, otherwise up to 3 GiB with
  the rest placed above 4 GiB (the 32-bit PCI hole sits at 3-4 GiB).
"""

from __future__ import annotations

from dataclasses import dataclass

E820_RAM = "System RAM"
E820_RESERVED = "Reserved"

LOWMEM_SPLIT = 0xE0000000  # QEMU: below 3.5 GiB everything stays low
LOWMEM_LIMIT = 0xC0000000  # otherwise 3 GiB low, the rest above 4 GiB
FOUR_G = 1 << 32


@dataclass(frozen=True)
class E820Entry:
    start: int
    end: int  # exclusive
    type: str

    @property
    def size(self) -> int:
        return self.end - self.start


def e820_table(mem: int) -> list[E820Entry]:
    low = mem if mem <= LOWMEM_SPLIT else LOWMEM_LIMIT
    high = mem - low
    t = [
        E820Entry(0x0, 0x1000, E820_RESERVED),
        E820Entry(0x1000, 0x9FC00, E820_RAM),
        E820Entry(0x9FC00, 0x100000, E820_RESERVED),
        E820Entry(0x100000, low, E820_RAM),
    ]
    if low < LOWMEM_LIMIT:
        t.append(E820Entry(0xFEFFC000, 0xFF000000, E820_RESERVED))
    t.append(E820Entry(0xFFFC0000, 0x100000000, E820_RESERVED))
    if high:
        t.append(E820Entry(FOUR_G, FOUR_G + high, E820_RAM))
    return t


def ram_ranges(table: list[E820Entry]) -> list[tuple[int, int]]:
    """Usable RAM as page-frame ranges [start_pfn, end_pfn), partial pages dropped."""
    out = []
    for e in table:
        if e.type == E820_RAM:
            s = (e.start + 0xFFF) >> 12
            en = e.end >> 12
            if en > s:
                out.append((s, en))
    return out


def e820_print(table: list[E820Entry]) -> list[str]:
    """The ``BIOS-e820: [mem 0x...-0x...] usable`` boot lines."""
    kinds = {E820_RAM: "usable", E820_RESERVED: "reserved"}
    return [f"BIOS-e820: [mem 0x{e.start:016x}-0x{e.end - 1:016x}] {kinds[e.type]}"
            for e in table]
