"""Kernel memory reports: __show_mem (mm/show_mem.c) and dump_page (mm/debug.c).

Placeholder versions; the full formats of reference/reports.md §1.2 and §6.1 are built on
these names.
"""

from __future__ import annotations

from typing import Any


def __show_mem(m: Any) -> None:
    m.printk("Mem-Info:")


def dump_page(m: Any, pfn: int, reason: str) -> None:
    p = m.page(pfn)
    m.printk(f"page: refcount:{p._refcount} mapcount:{p.page_mapcount()} mapping:0000000000000000"
             f" index:{p.index:#x} pfn:{pfn:#x}")
    m.printk(f"page dumped because: {reason}")
