"""kmemleak_test: the kernel's samples/kmemleak/kmemleak-test.c.

On load it makes orphan objects: two each of kmalloc(32), kmalloc(1024), kmalloc(2048),
kmalloc(4096) and five vmalloc(64) -- 13 leaks the next scans report.  It also adds ten
``struct test_node`` (416 bytes) to a list headed in module memory, and stores a
kmalloc(129) in a per-CPU variable: those are referenced while the module is loaded and
become orphans when ``rmmod`` removes the list head and the per-CPU variable without freeing
them (10 + one per CPU more leaks).
"""

from __future__ import annotations

from typing import Any

from mmdbg.workloads.modules.api import (
    ENOMEM,
    GFP_KERNEL,
    LIST_POISON1,
    LIST_POISON2,
    kmalloc,
    kzalloc,
    num_possible_cpus,
    pr_info,
    read64,
    vmalloc,
    write64,
)

MODULE_DESCRIPTION = "Kmemleak testing module"
GLOBALS = {"test_list": 16}  # struct list_head
PERCPU = {"kmemleak_test_pointer": 8}
TEST_NODE_SIZE = 25 * 8 + 16 + 25 * 8  # long header[25]; struct list_head list; long footer[25]
LIST_OFF = 25 * 8


def list_add_tail(new: int, head: int) -> None:
    prev = read64(head + 8)
    write64(new, head)
    write64(new + 8, prev)
    write64(prev, new)
    write64(head + 8, new)


def list_del(entry: int) -> None:
    nxt, prev = read64(entry), read64(entry + 8)
    write64(nxt + 8, prev)
    write64(prev, nxt)
    write64(entry, LIST_POISON1)
    write64(entry + 8, LIST_POISON2)


def kmemleak_test_init(mod: Any) -> int:
    pr_info("Kmemleak testing")
    for size in (32, 32, 1024, 1024, 2048, 2048, 4096, 4096):
        pr_info(f"kmalloc({size}) = {kmalloc(size, GFP_KERNEL):016x}")
    for _ in range(5):
        pr_info(f"vmalloc(64) = {vmalloc(64):016x}")
    head = mod.addr("test_list")
    write64(head, head)  # LIST_HEAD_INIT
    write64(head + 8, head)
    for _ in range(10):
        elem = kzalloc(TEST_NODE_SIZE, GFP_KERNEL)
        pr_info(f"kzalloc(sizeof(*elem)) = {elem:016x}")
        if not elem:
            return -ENOMEM
        lst = elem + LIST_OFF
        write64(lst, lst)
        write64(lst + 8, lst)
        list_add_tail(lst, head)
    for cpu in range(num_possible_cpus()):
        p = kmalloc(129, GFP_KERNEL)
        write64(mod.per_cpu_ptr("kmemleak_test_pointer", cpu), p)
        pr_info(f"kmalloc(129) = {p:016x}")
    return 0


def kmemleak_test_exit(mod: Any) -> None:
    head = mod.addr("test_list")
    e = read64(head)
    while e != head:
        nxt = read64(e)
        list_del(e)
        e = nxt


module_init = kmemleak_test_init
module_exit = kmemleak_test_exit
