"""KASAN, generic mode (mm/kasan/): shadow memory, allocator hooks, access checks, reports.

``kasan=on`` on the command line gives the machine a :class:`~.generic.Kasan` as
``machine.kasan`` before the slab caches are created (so their layout has KASAN's metadata
and redzones, as ``kasan_cache_create`` gives them).  Parameters: ``kasan.fault=report|panic|
panic_on_write``, ``kasan_multi_shot``.  ``kasan_report`` is a kernel function: attach a
probe or set a breakpoint on it.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm.kasan.generic import Kasan, kasan_report
from mmdbg.sim.mm.kasan.shadow import KASAN_SHADOW_OFFSET, kasan_mem_to_shadow

__all__ = ["KASAN_SHADOW_OFFSET", "Kasan", "kasan_init", "kasan_mem_to_shadow", "kasan_report"]


def kasan_init(m: Any) -> None:
    """kasan_init(): on when the command line says ``kasan=on``."""
    if not m.config.kasan:
        m.kasan = None
        return
    m.kasan = Kasan(m)
    m.printk("kasan: KernelAddressSanitizer initialized (generic)")


def kasan_enable_multi_shot(m: Any) -> bool:
    """kasan_save_enable_multi_shot(): returns the previous setting."""
    k = m.kasan
    if k is None:
        return False
    old = k.multi_shot
    k.multi_shot = True
    return old


def kasan_restore_multi_shot(m: Any, enabled: bool) -> None:
    if m.kasan is not None:
        m.kasan.multi_shot = enabled
