"""Lazy TLB mode: a shootdown skipped while a CPU runs kernel threads stays pending."""

from __future__ import annotations

import mmdbg
from mmdbg.sim.arch.x86 import tlb
from tests.pressure_util import hog


def test_second_kernel_thread_keeps_the_pending_flush():
    m = mmdbg.boot("mem=128M cpus=2")
    ts = m.vm.tlb[0]
    ts.loaded_mm = object()  # some user mm, left loaded while kernel threads run
    tlb.enter_lazy_tlb(m, 0)
    assert ts.is_lazy and not ts.need_flush
    ts.need_flush = True  # a shootdown skipped this lazy CPU
    tlb.enter_lazy_tlb(m, 0)  # the next kernel thread on this CPU
    assert ts.need_flush, "the skipped flush was forgotten"
    ts.loaded_mm = None
    ts.is_lazy = ts.need_flush = False


def test_reclaim_of_a_lazily_loaded_mm_leaves_no_stale_tlb_entry():
    m = mmdbg.boot("mem=64M cpus=2 swap=128M")
    hog(m, 72 << 20)  # kswapd swaps out init's pages while CPU 0 keeps init's mm lazily
    m.run()
    m.check_consistency()
