from __future__ import annotations

from mmdbg.sim.include.gfp import GFP_KERNEL


def test_alloc_free_roundtrip(machine):
    machine.drain_all_pages()
    free0 = machine.nr_free_pages()
    pfn = machine.alloc_pages(GFP_KERNEL, 3)
    assert pfn is not None and pfn % 8 == 0
    machine.check_consistency()
    machine.free_pages(pfn, 3)
    machine.drain_all_pages()
    assert machine.nr_free_pages() == free0
