"""kasan_test: a KASAN bug zoo after mm/kasan/kasan_test_c.c (needs ``kasan=on``).

``insmod kasan_test test=NAME`` runs one case (``test=all``, the default, runs them all; a
comma-separated list runs several).  Each case makes one bad access, free or allocation the
way the kernel's KUnit case does; KASAN reports it in dmesg.  As the KUnit suite does, the
module turns on ``kasan_multi_shot`` while it runs, and prints a KTAP-style ``ok N NAME``
(a report was seen) or ``not ok N NAME`` line per case.  ``EXPECTED`` lists the bug type each
case must produce.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm.kasan import kasan_enable_multi_shot, kasan_restore_multi_shot
from mmdbg.workloads.modules.api import (
    EINVAL,
    GFP_KERNEL,
    PAGE_SIZE,
    SLAB_NO_MERGE,
    alloc_pages,
    free_pages,
    kfree,
    kmalloc,
    kmem_cache_alloc,
    kmem_cache_create,
    kmem_cache_destroy,
    kmem_cache_free,
    krealloc,
    machine,
    memset,
    page_address,
    pr_info,
    read8,
    stack_frame,
    stack_frame_end,
    vfree,
    vmalloc,
    write8,
)

PARAMS = {"test": "all"}
GLOBALS = {"global_array": 10}
KASAN_GRANULE_SIZE = 8
KMALLOC_MAX_CACHE_SIZE = 8192

EXPECTED = {
    "kmalloc_oob_right": "slab-out-of-bounds",
    "kmalloc_oob_left": "slab-out-of-bounds",
    "kmalloc_big_oob_right": "slab-out-of-bounds",
    "kmalloc_large_oob_right": "slab-out-of-bounds",
    "kmalloc_large_uaf": "use-after-free",
    "kmalloc_large_invalid_free": "invalid-free",
    "krealloc_less_oob": "slab-out-of-bounds",
    "kmalloc_uaf": "slab-use-after-free",
    "kmalloc_uaf_memset": "slab-use-after-free",
    "kmalloc_double_free": "double-free",
    "kmalloc_invalid_free": "invalid-free",
    "kmem_cache_oob": "slab-out-of-bounds",
    "kmem_cache_double_free": "double-free",
    "kmem_cache_invalid_free": "invalid-free",
    "page_alloc_uaf": "use-after-free",
    "vmalloc_oob": "vmalloc-out-of-bounds",
    "kasan_global_oob_right": "global-out-of-bounds",
    "kasan_stack_oob": "stack-out-of-bounds",
}


def kmalloc_oob_right(mod: Any) -> None:
    size = 128 - KASAN_GRANULE_SIZE - 5
    ptr = kmalloc(size, GFP_KERNEL)
    write8(ptr + size, ord("x"))
    kfree(ptr)


def kmalloc_oob_left(mod: Any) -> None:
    size = 15
    ptr = kmalloc(size, GFP_KERNEL)
    read8(ptr - 1)
    kfree(ptr)


def kmalloc_big_oob_right(mod: Any) -> None:
    size = KMALLOC_MAX_CACHE_SIZE - 256
    ptr = kmalloc(size, GFP_KERNEL)
    write8(ptr + size, 0)
    kfree(ptr)


def kmalloc_large_oob_right(mod: Any) -> None:
    size = KMALLOC_MAX_CACHE_SIZE + 10
    ptr = kmalloc(size, GFP_KERNEL)
    write8(ptr + size, 0)
    kfree(ptr)


def kmalloc_large_uaf(mod: Any) -> None:
    size = KMALLOC_MAX_CACHE_SIZE + 10
    ptr = kmalloc(size, GFP_KERNEL)
    kfree(ptr)
    read8(ptr)


def kmalloc_large_invalid_free(mod: Any) -> None:
    size = KMALLOC_MAX_CACHE_SIZE + 10
    ptr = kmalloc(size, GFP_KERNEL)
    kfree(ptr + 1)
    kfree(ptr)


def krealloc_less_oob(mod: Any) -> None:
    ptr1 = kmalloc(235, GFP_KERNEL)
    ptr2 = krealloc(ptr1, 201, GFP_KERNEL)
    write8(ptr2 + 201, ord("x"))
    kfree(ptr2)


def kmalloc_uaf(mod: Any) -> None:
    size = 10
    ptr = kmalloc(size, GFP_KERNEL)
    kfree(ptr)
    read8(ptr + 8)


def kmalloc_uaf_memset(mod: Any) -> None:
    size = 33
    ptr = kmalloc(size, GFP_KERNEL)
    kfree(ptr)
    memset(ptr, 0, size)


def kmalloc_double_free(mod: Any) -> None:
    ptr = kmalloc(128, GFP_KERNEL)
    kfree(ptr)
    kfree(ptr)


def kmalloc_invalid_free(mod: Any) -> None:
    ptr = kmalloc(128, GFP_KERNEL)
    kfree(ptr + 1)
    kfree(ptr)


def kmem_cache_oob(mod: Any) -> None:
    size = 200
    cache = kmem_cache_create("test_cache", size, 0, SLAB_NO_MERGE)
    p = kmem_cache_alloc(cache, GFP_KERNEL)
    read8(p + size)
    kmem_cache_free(cache, p)
    kmem_cache_destroy(cache)


def kmem_cache_double_free(mod: Any) -> None:
    cache = kmem_cache_create("test_cache", 200, 0, SLAB_NO_MERGE)
    p = kmem_cache_alloc(cache, GFP_KERNEL)
    kmem_cache_free(cache, p)
    kmem_cache_free(cache, p)
    kmem_cache_destroy(cache)


def kmem_cache_invalid_free(mod: Any) -> None:
    cache = kmem_cache_create("test_cache", 200, 0, SLAB_NO_MERGE)
    p = kmem_cache_alloc(cache, GFP_KERNEL)
    kmem_cache_free(cache, p + 1)
    kmem_cache_free(cache, p)
    kmem_cache_destroy(cache)


def page_alloc_uaf(mod: Any) -> None:
    pfn = alloc_pages(GFP_KERNEL, 0)
    free_pages(pfn, 0)
    read8(page_address(pfn))


def vmalloc_oob(mod: Any) -> None:
    size = 3618
    v_ptr = vmalloc(size)
    memset(v_ptr, 0, size)
    read8(v_ptr + size)
    vfree(v_ptr)


def kasan_global_oob_right(mod: Any) -> None:
    i = 3
    read8(mod.addr("global_array") + 10 + i)


def kasan_stack_oob(mod: Any) -> None:
    frame = stack_frame(mod, [("stack_array", 10)])
    read8(frame["stack_array"] + 10)
    stack_frame_end(frame)


CASES = list(EXPECTED)


def kasan_test_init(mod: Any) -> int:
    m = machine()
    if m.kasan is None:
        pr_info("KASAN is off: boot with kasan=on", mod)
        return -EINVAL
    names = CASES if mod.test == "all" else mod.test.split(",")
    unknown = [n for n in names if n not in EXPECTED]
    if unknown:
        pr_info(f"unknown test {unknown[0]}", mod)
        return -EINVAL
    mod.data["multishot"] = kasan_enable_multi_shot(m)
    results = mod.data.setdefault("results", {})
    pr_info(f"    # Subtest: kasan\n    1..{len(names)}")
    for i, name in enumerate(names, 1):
        before = len(m.kasan.reports)
        globals()[name](mod)
        got = [r["bug_type"] for r in m.kasan.reports[before:]]
        results[name] = got
        ok = EXPECTED[name] in got
        pr_info(f"    {'ok' if ok else 'not ok'} {i} {name}")
    kasan_restore_multi_shot(m, mod.data["multishot"])
    return 0


def kasan_test_exit(mod: Any) -> None:
    pass


module_init = kasan_test_init
module_exit = kasan_test_exit
del PAGE_SIZE
