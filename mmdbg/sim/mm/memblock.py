"""memblock: the boot-time physical memory allocator (mm/memblock.c).

Holds the usable RAM ranges from e820 and the early reservations that are never handed to
the buddy allocator: the first MiB (x86 reserves it for real-mode trampolines and firmware),
the kernel image (text, rodata, data, bss), the ``mem_map`` of each node and the per-CPU
areas.  ``memblock_alloc`` allocates top-down below the node's end, as the kernel does.

The kernel image is laid out at 16 MiB with the section sizes of a distribution x86_64
kernel (reference/proc-samples-linux-6.18/iomem); the sizes are fixed, not computed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

SZ_1M = 1 << 20
KERNEL_SECTIONS = [
    ("Kernel code", 0x01000000, 0x02276F48),
    ("Kernel rodata", 0x02400000, 0x02E0D000),
    ("Kernel data", 0x03000000, 0x0327C180),
    ("Kernel bss", 0x03B32000, 0x03C56000),
]
KERNEL_START = 0x01000000
KERNEL_END = 0x03C56000


@dataclass
class Region:
    base: int
    size: int
    name: str = ""
    nid: int = -1

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass
class Memblock:
    memory: list[Region] = field(default_factory=list)
    reserved: list[Region] = field(default_factory=list)

    def add(self, base: int, size: int) -> None:
        self.memory.append(Region(base, size, "System RAM"))

    def reserve(self, base: int, size: int, name: str) -> None:
        self.reserved.append(Region(base, size, name))
        self.reserved.sort(key=lambda r: r.base)

    def is_reserved(self, addr: int) -> bool:
        return any(r.base <= addr < r.end for r in self.reserved)

    def alloc_top_down(self, size: int, limit_lo: int, limit_hi: int, name: str,
                       align: int = 4096) -> int:
        """memblock_alloc_range_nid, top-down: the highest free range below ``limit_hi``."""
        for mem in sorted(self.memory, key=lambda r: -r.base):
            hi = min(mem.end, limit_hi)
            lo = max(mem.base, limit_lo)
            cand = (hi - size) & ~(align - 1)
            while cand >= lo:
                clash = [r for r in self.reserved if r.base < cand + size and cand < r.end]
                if not clash:
                    self.reserve(cand, size, name)
                    return cand
                cand = (min(r.base for r in clash) - size) & ~(align - 1)
        raise MemoryError(f"memblock: cannot allocate {size} bytes for {name}")

    def free_ranges(self, lo_pfn: int, hi_pfn: int) -> list[tuple[int, int]]:
        """Unreserved RAM page ranges inside [lo_pfn, hi_pfn) (for_each_free_mem_range)."""
        out: list[tuple[int, int]] = []
        for mem in self.memory:
            s = max((mem.base + 0xFFF) >> 12, lo_pfn)
            e = min(mem.end >> 12, hi_pfn)
            if s >= e:
                continue
            cur = s
            for r in self.reserved:
                rs = r.base >> 12
                re_ = (r.end + 0xFFF) >> 12
                if re_ <= cur or rs >= e:
                    continue
                if rs > cur:
                    out.append((cur, rs))
                cur = max(cur, re_)
            if cur < e:
                out.append((cur, e))
        return out

    def reserved_bytes(self) -> int:
        return sum(r.size for r in self.reserved)
