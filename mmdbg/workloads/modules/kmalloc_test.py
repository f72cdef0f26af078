"""kmalloc_test: allocate N objects of a size with kmalloc, touch them, free them.

Parameters: ``size`` (bytes, default 64), ``count`` (default 16), ``keep`` (1: keep the
objects until rmmod instead of freeing them at once), ``cache`` (1: use a private cache
``kmalloc_test_cache`` instead of kmalloc).
"""

from __future__ import annotations

from typing import Any

from mmdbg.workloads.modules.api import (
    __GFP_ZERO,
    ENOMEM,
    GFP_KERNEL,
    SLAB_NO_MERGE,
    kfree,
    kmalloc,
    kmalloc_array,
    kmem_cache_alloc,
    kmem_cache_create,
    kmem_cache_destroy,
    kmem_cache_free,
    memset,
    pr_info,
    read64,
    write64,
)

PARAMS = {"size": 64, "count": 16, "keep": 0, "cache": 0}
GLOBALS = {"objs": 8, "cachep": 8}  # static void **objs; (the array is kmalloc'ed)


def kmalloc_test_alloc(mod: Any) -> int:
    cachep = mod.data.get("cachep")
    arr = kmalloc_array(mod.count, 8, GFP_KERNEL | __GFP_ZERO)
    if not arr:
        return -ENOMEM
    write64(mod.addr("objs"), arr)
    for i in range(mod.count):
        p = kmem_cache_alloc(cachep, GFP_KERNEL) if cachep else kmalloc(mod.size, GFP_KERNEL)
        if not p:
            return -ENOMEM
        memset(p, i & 0xFF, mod.size)
        write64(arr + 8 * i, p)
    return 0


def kmalloc_test_free(mod: Any) -> None:
    cachep = mod.data.get("cachep")
    arr = read64(mod.addr("objs"))
    if not arr:
        return
    for i in range(mod.count):
        p = read64(arr + 8 * i)
        if not p:
            continue
        if cachep:
            kmem_cache_free(cachep, p)
        else:
            kfree(p)
    kfree(arr)
    write64(mod.addr("objs"), 0)


def kmalloc_test_init(mod: Any) -> int:
    if mod.cache:
        mod.data["cachep"] = kmem_cache_create("kmalloc_test_cache", mod.size, 0, SLAB_NO_MERGE)
    ret = kmalloc_test_alloc(mod)
    pr_info(f"allocated {mod.count} objects of {mod.size} bytes", mod)
    if not mod.keep:
        kmalloc_test_free(mod)
        pr_info("freed them", mod)
    return ret


def kmalloc_test_exit(mod: Any) -> None:
    kmalloc_test_free(mod)
    if mod.data.get("cachep"):
        kmem_cache_destroy(mod.data.pop("cachep"))
    pr_info("unloaded", mod)


module_init = kmalloc_test_init
module_exit = kmalloc_test_exit
