"""Kernel virtual addresses of the simulator's structures, for display.

crash prints the address of every structure it shows (``ZONE ... ADDR: ffff88803ffd6d00``,
``FREE_AREA_STRUCT``).  ``struct page`` addresses are real in the simulator (vmemmap,
``mm_types.pfn_to_page_addr``); ``pg_data_t``, ``struct zone`` and ``free_area`` are Python
objects without one yet.  Until ``sim/`` gives them an ``addr`` attribute (which this module
prefers when present), they get stable addresses laid out like x86_64 6.x: each node's
``pglist_data`` in the direct map near the top of the node (where the kernel's memblock
allocation puts it), ``node_zones[]`` at its start, ``free_area[]`` inside each zone.  The
values are deterministic and distinct, which is what a user needs to tell objects apart.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT

PGDAT_BELOW_NODE_END = 0x2C000  # pglist_data sits this far below the end of its node
SIZEOF_ZONE = 0x6C0
OFFSETOF_ZONE_FREE_AREA = 0xC0
SIZEOF_FREE_AREA = 0x68  # MIGRATE_TYPES list_heads (16 bytes each) + nr_free
SIZEOF_LIST_HEAD = 0x10


def pgdat_addr(pgdat: Any) -> int:
    addr = getattr(pgdat, "addr", None)
    if isinstance(addr, int) and addr:
        return addr
    end_pfn = pgdat.node_start_pfn + pgdat.node_spanned_pages
    return PAGE_OFFSET + (end_pfn << PAGE_SHIFT) - PGDAT_BELOW_NODE_END


def zone_addr(zone: Any) -> int:
    addr = getattr(zone, "addr", None)
    if isinstance(addr, int) and addr:
        return addr
    return pgdat_addr(zone.zone_pgdat) + zone.zone_idx * SIZEOF_ZONE


def free_area_addr(zone: Any, order: int) -> int:
    return zone_addr(zone) + OFFSETOF_ZONE_FREE_AREA + order * SIZEOF_FREE_AREA


def free_list_addr(zone: Any, order: int, migratetype: int) -> int:
    return free_area_addr(zone, order) + migratetype * SIZEOF_LIST_HEAD


def find_zone(machine: Any, addr: int) -> Any:
    """The zone whose ``struct zone`` address is ``addr`` (None if none is)."""
    for z in machine.zones:
        if zone_addr(z) == addr:
            return z
    return None
