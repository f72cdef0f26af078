"""GFP flags with the kernel's names and bit numbers (include/linux/gfp_types.h, 6.18).

``gfp_zone()`` and ``gfp_migratetype()`` follow include/linux/gfp.h; ``format_gfp()`` renders
a mask the way ``show_gfp_flags()``/``__print_flags`` do in tracepoints and warn_alloc:
composite names first (``GFP_KERNEL``), then the remaining single bits, joined with ``|``.
"""

from __future__ import annotations

___GFP_BITS = [
    "DMA", "HIGHMEM", "DMA32", "MOVABLE", "RECLAIMABLE", "HIGH", "IO", "FS", "ZERO",
    "UNUSED_BIT", "DIRECT_RECLAIM", "KSWAPD_RECLAIM", "WRITE", "NOWARN", "RETRY_MAYFAIL",
    "NOFAIL", "NORETRY", "MEMALLOC", "COMP", "NOMEMALLOC", "HARDWALL", "THISNODE",
    "ACCOUNT", "ZEROTAGS", "NO_OBJ_EXT",
]

__GFP_DMA = 1 << 0
__GFP_HIGHMEM = 1 << 1
__GFP_DMA32 = 1 << 2
__GFP_MOVABLE = 1 << 3
__GFP_RECLAIMABLE = 1 << 4
__GFP_HIGH = 1 << 5
__GFP_IO = 1 << 6
__GFP_FS = 1 << 7
__GFP_ZERO = 1 << 8
__GFP_DIRECT_RECLAIM = 1 << 10
__GFP_KSWAPD_RECLAIM = 1 << 11
__GFP_WRITE = 1 << 12
__GFP_NOWARN = 1 << 13
__GFP_RETRY_MAYFAIL = 1 << 14
__GFP_NOFAIL = 1 << 15
__GFP_NORETRY = 1 << 16
__GFP_MEMALLOC = 1 << 17
__GFP_COMP = 1 << 18
__GFP_NOMEMALLOC = 1 << 19
__GFP_HARDWALL = 1 << 20
__GFP_THISNODE = 1 << 21
__GFP_ACCOUNT = 1 << 22
__GFP_ZEROTAGS = 1 << 23
__GFP_NO_OBJ_EXT = 1 << 24

__GFP_RECLAIM = __GFP_DIRECT_RECLAIM | __GFP_KSWAPD_RECLAIM
GFP_ZONEMASK = __GFP_DMA | __GFP_HIGHMEM | __GFP_DMA32 | __GFP_MOVABLE
GFP_MOVABLE_MASK = __GFP_RECLAIMABLE | __GFP_MOVABLE

GFP_ATOMIC = __GFP_HIGH | __GFP_KSWAPD_RECLAIM
GFP_KERNEL = __GFP_RECLAIM | __GFP_IO | __GFP_FS
GFP_KERNEL_ACCOUNT = GFP_KERNEL | __GFP_ACCOUNT
GFP_NOWAIT = __GFP_KSWAPD_RECLAIM | __GFP_NOWARN
GFP_NOIO = __GFP_RECLAIM
GFP_NOFS = __GFP_RECLAIM | __GFP_IO
GFP_USER = __GFP_RECLAIM | __GFP_IO | __GFP_FS | __GFP_HARDWALL
GFP_DMA = __GFP_DMA
GFP_DMA32 = __GFP_DMA32
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_HIGHUSER_MOVABLE = GFP_HIGHUSER | __GFP_MOVABLE
GFP_TRANSHUGE_LIGHT = (GFP_HIGHUSER_MOVABLE | __GFP_COMP | __GFP_NOMEMALLOC | __GFP_NOWARN) & ~__GFP_RECLAIM
GFP_TRANSHUGE = GFP_TRANSHUGE_LIGHT | __GFP_DIRECT_RECLAIM

# Every name a user may type (call __alloc_pages(GFP_KERNEL|__GFP_ZERO, 3), kmem -g ...).
GFP_NAMES: dict[str, int] = {
    "GFP_TRANSHUGE": GFP_TRANSHUGE,
    "GFP_TRANSHUGE_LIGHT": GFP_TRANSHUGE_LIGHT,
    "GFP_HIGHUSER_MOVABLE": GFP_HIGHUSER_MOVABLE,
    "GFP_HIGHUSER": GFP_HIGHUSER,
    "GFP_USER": GFP_USER,
    "GFP_KERNEL_ACCOUNT": GFP_KERNEL_ACCOUNT,
    "GFP_KERNEL": GFP_KERNEL,
    "GFP_NOFS": GFP_NOFS,
    "GFP_ATOMIC": GFP_ATOMIC,
    "GFP_NOIO": GFP_NOIO,
    "GFP_NOWAIT": GFP_NOWAIT,
    "GFP_DMA": GFP_DMA,
    "GFP_DMA32": GFP_DMA32,
    "__GFP_RECLAIM": __GFP_RECLAIM,
}
# __print_flags table order: composites above, then single bits (show_gfp_flags).
_SINGLE = [(f"__GFP_{n}", 1 << i) for i, n in enumerate(___GFP_BITS) if n != "UNUSED_BIT"]
GFP_PRINT_TABLE: list[tuple[str, int]] = list(GFP_NAMES.items()) + [
    (n, v) for n, v in _SINGLE if n != "__GFP_RECLAIM"
]
GFP_NAMES.update(dict(_SINGLE))
GFP_NAMES["GFP_NOWAIT"] = GFP_NOWAIT
GFP_NAMES["0"] = 0


def format_gfp(mask: int) -> str:
    """``GFP_KERNEL|__GFP_ZERO`` style, as the kernel's __print_flags(show_gfp_flags)."""
    if not mask:
        return "none"
    names = []
    rest = mask
    for name, bits in GFP_PRINT_TABLE:
        if bits and rest & bits == bits:
            names.append(name)
            rest &= ~bits
    if rest:
        names.append(f"0x{rest:x}")
    return "|".join(names)


def format_gfp_warn(mask: int) -> str:
    """warn_alloc's ``gfp_mask(%#x(%pGg))`` second half: the same names."""
    return format_gfp(mask)


def parse_gfp(text: str) -> int:
    """``GFP_KERNEL|__GFP_ZERO`` or a number; raises ValueError naming the bad part."""
    total = 0
    for part in text.replace(" ", "").split("|"):
        if not part:
            raise ValueError(f"empty GFP flag in '{text}'")
        if part in GFP_NAMES:
            total |= GFP_NAMES[part]
            continue
        try:
            total |= int(part, 0)
        except ValueError:
            raise ValueError(f"unknown GFP flag '{part}'") from None
    return total


# zone_type enum (include/linux/mmzone.h, x86_64 with ZONE_DEVICE)
ZONE_DMA = 0
ZONE_DMA32 = 1
ZONE_NORMAL = 2
ZONE_MOVABLE = 3
ZONE_DEVICE = 4
MAX_NR_ZONES = 5
ZONE_NAMES = ["DMA", "DMA32", "Normal", "Movable", "Device"]


def gfp_zone(flags: int) -> int:
    """The highest zone an allocation may use (the kernel's GFP_ZONE_TABLE lookup).

    x86_64 has no highmem, so __GFP_HIGHMEM means ZONE_NORMAL, and __GFP_MOVABLE with it
    (or alone) means ZONE_MOVABLE.  Invalid combinations (DMA|DMA32) are BUG()s in the kernel;
    here they resolve to the lowest zone named.
    """
    if flags & __GFP_DMA:
        return ZONE_DMA
    if flags & __GFP_DMA32:
        return ZONE_DMA32
    if flags & __GFP_MOVABLE:
        return ZONE_MOVABLE
    return ZONE_NORMAL


# migratetypes (include/linux/mmzone.h)
MIGRATE_UNMOVABLE = 0
MIGRATE_MOVABLE = 1
MIGRATE_RECLAIMABLE = 2
MIGRATE_PCPTYPES = 3
MIGRATE_HIGHATOMIC = 3
MIGRATE_CMA = 4
MIGRATE_ISOLATE = 5
MIGRATE_TYPES = 6
MIGRATETYPE_NAMES = ["Unmovable", "Movable", "Reclaimable", "HighAtomic", "CMA", "Isolate"]


def gfp_migratetype(flags: int) -> int:
    """__GFP_MOVABLE -> MOVABLE, __GFP_RECLAIMABLE -> RECLAIMABLE, else UNMOVABLE."""
    return (flags & GFP_MOVABLE_MASK) >> 3


def gfpflags_allow_blocking(flags: int) -> bool:
    return bool(flags & __GFP_DIRECT_RECLAIM)
