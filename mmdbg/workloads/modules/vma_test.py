"""vma_test: walk the VMAs of a task (``pid=N``) and print them, as a learner's first module.

Prints ``vm_start-vm_end flags`` for each VMA of the task's mm, like the classic
"print the memory map from a module" exercise.  ``pid=0`` (default) uses the first user task.
"""

from __future__ import annotations

from typing import Any

from mmdbg.workloads.modules.api import EINVAL, machine, pr_info

PARAMS = {"pid": 0}


def vma_test_walk(mod: Any, mm: Any) -> int:
    n = 0
    vmas = getattr(mm, "mm_mt", None) or getattr(mm, "vmas", None) or []
    for vma in vmas:
        flags = getattr(vma, "vm_flags", 0)
        pr_info(f"vma {vma.vm_start:#014x}-{vma.vm_end:#014x} flags {flags:#x}", mod)
        n += 1
    return n


def vma_test_init(mod: Any) -> int:
    m = machine()
    tasks = getattr(m, "tasks", {})
    task = tasks.get(mod.pid) if mod.pid else next(
        (t for t in tasks.values() if getattr(t, "mm", None) is not None), None)
    if task is None or getattr(task, "mm", None) is None:
        pr_info(f"no user task with pid {mod.pid}", mod)
        return -EINVAL if mod.pid else 0
    n = vma_test_walk(mod, task.mm)
    pr_info(f"{task.comm}[{task.pid}]: {n} vmas", mod)
    return 0


def vma_test_exit(mod: Any) -> None:
    pass


module_init = vma_test_init
module_exit = vma_test_exit
