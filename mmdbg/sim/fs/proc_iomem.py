"""/proc/iomem (kernel/resource.c r_show): the physical address resource tree.

The tree is built the way x86 boot builds ``iomem_resource``: one top-level resource per
e820 entry (``System RAM`` / ``Reserved``), the kernel image sections (``Kernel code``,
``rodata``, ``data``, ``bss``, from memblock's layout) nested under the System RAM range that
holds them, ``System ROM`` under the low reserved range, and the fixed platform resources of
a QEMU/KVM PC: the 32-bit PCI window between the end of low RAM and the IOAPIC, the IOAPIC,
the HPET and the local APIC.  Each line is ``"%*s%0*llx-%0*llx : %s"``: two spaces per depth,
addresses zero-padded to 8 hex digits (longer when needed), inclusive end, as root sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmdbg.sim.arch.x86.e820 import E820_RAM, FOUR_G
from mmdbg.sim.mm.memblock import KERNEL_SECTIONS
from mmdbg.sim.trace import kfunc

PCI_WINDOW_END = 0xFEBFFFFF
PLATFORM_RESOURCES: list[tuple[int, int, str, list[tuple[int, int, str]]]] = [
    (0xFEC00000, 0xFEC003FF, "IOAPIC 0", []),
    (0xFED00000, 0xFED003FF, "HPET 0", [(0xFED00000, 0xFED003FF, "PNP0103:00")]),
    (0xFEE00000, 0xFEE00FFF, "Local APIC", []),
]
SYSTEM_ROM = (0xF0000, 0xFFFFF, "System ROM")


@dataclass
class Resource:
    """``struct resource``: [start, end] inclusive, a name and children."""

    start: int
    end: int
    name: str
    children: list[Resource] = field(default_factory=list)

    def contains(self, other: Resource) -> bool:
        return self.start <= other.start and other.end <= self.end


def insert_resource(parent: Resource, new: Resource) -> None:
    """Place ``new`` under the deepest resource that contains it, keeping children sorted."""
    for child in parent.children:
        if child.contains(new) and (child.start, child.end) != (new.start, new.end):
            insert_resource(child, new)
            return
    parent.children.append(new)
    parent.children.sort(key=lambda r: (r.start, -r.end))


def iomem_resource(m: Any) -> Resource:
    """Build the resource tree of the machine's physical address space."""
    root = Resource(0, (1 << 64) - 1, "PCI mem")
    low_ram_end = 0
    for e in m.e820:
        root.children.append(Resource(e.start, e.end - 1, e.type))
        if e.type == E820_RAM and e.end <= FOUR_G:
            low_ram_end = max(low_ram_end, e.end)
    root.children.sort(key=lambda r: (r.start, -r.end))
    if low_ram_end and low_ram_end <= PCI_WINDOW_END:
        insert_resource(root, Resource(low_ram_end, PCI_WINDOW_END, "PCI Bus 0000:00"))
    for start, end, name, kids in PLATFORM_RESOURCES:
        res = Resource(start, end, name)
        insert_resource(root, res)
        for ks, ke, kn in kids:
            res.children.append(Resource(ks, ke, kn))
    rom_s, rom_e, rom_n = SYSTEM_ROM
    if any(r.start <= rom_s and rom_e <= r.end and r.name != E820_RAM for r in root.children):
        insert_resource(root, Resource(rom_s, rom_e, rom_n))
    for name, start, end in KERNEL_SECTIONS:
        insert_resource(root, Resource(start, end - 1, name))
    return root


@kfunc
def r_show(m: Any) -> str:
    """The text of /proc/iomem."""
    out: list[str] = []

    def walk(res: Resource, depth: int) -> None:
        for r in res.children:
            out.append(f"{' ' * (depth * 2)}{r.start:08x}-{r.end:08x} : {r.name}\n")
            walk(r, depth + 1)

    walk(iomem_resource(m), 0)
    return "".join(out)
