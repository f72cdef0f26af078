"""Kernel test modules, loaded with ``insmod NAME [param=value ...]`` (sim/kernel/module.py).

Shipped: ``kmalloc_test`` (allocate and free N objects of a size), ``kmemleak_test`` (the
kernel's samples/kmemleak/kmemleak-test.c: some allocations deliberately lost),
``kasan_test`` (a bug zoo: ``test=NAME`` selects the bug), ``vma_test`` (walk a task's VMAs).
``api.py`` is what a module imports.  docs/modules.md shows how to write one.
"""
