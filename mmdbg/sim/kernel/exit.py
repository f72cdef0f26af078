"""Process exit and reaping (kernel/exit.c, the mm teardown of kernel/fork.c).

::

    do_exit -> exit_mm -> mmput -> __mmput -> exit_mmap ; mmdrop -> __mmdrop
                                                           (pgd_free, check_mm)
            -> exit_notify (children go to init; the parent is told)
    wait4   -> try_reap -> release_task

``check_mm`` prints ``BUG: Bad rss-counter state`` when the rss counters of a dying mm are
not zero (the sign of a simulated kernel bug), as the kernel does.
"""

from __future__ import annotations

import contextlib
import errno
from typing import Any

from mmdbg.sim.arch.x86 import tlb as x86_tlb
from mmdbg.sim.arch.x86.pgtable import pgd_free
from mmdbg.sim.kernel.sched import (
    EXIT_DEAD,
    EXIT_ZOMBIE,
    PF_EXITING,
    PF_KTHREAD,
    TASK_DEAD,
    TaskStruct,
)
from mmdbg.sim.mm.mmap import check_mm, exit_mmap
from mmdbg.sim.mm.vma import kobj_slab_free
from mmdbg.sim.trace import current_machine, kfunc


@kfunc
def mmput(mm: Any) -> None:
    """Drop a user of ``mm``; the last one tears the address space down."""
    mm.mm_users -= 1
    if mm.mm_users == 0:
        __mmput(mm)


@kfunc
def __mmput(mm: Any) -> None:
    exit_mmap(mm)
    if mm.exe_file is not None:
        mm.exe_file.put()
        mm.exe_file = None
    mmdrop(mm)


def mmdrop(mm: Any) -> None:
    mm.mm_count -= 1
    if mm.mm_count == 0:
        __mmdrop(mm)


@kfunc
def __mmdrop(mm: Any) -> None:
    m = current_machine()
    # CPUs still holding the mm lazily switch to init_mm before its tables go away
    for ts in m.vm.tlb:
        if ts.loaded_mm is mm:
            ts.loaded_mm = None
            ts.is_lazy = False
            ts.entries.clear()
            ts.flushes += 1
    mm.cpu_bitmap.clear()
    pgd_free(mm, mm.pgd)
    mm.pgd = None
    check_mm(mm)
    kobj_slab_free(m, mm)  # free_mm -> kmem_cache_free(mm_cachep)


@kfunc
def exit_mm() -> None:
    m = current_machine()
    t = m.current
    mm = t.mm
    if mm is None:
        return
    t.mm = None
    x86_tlb.enter_lazy_tlb(m, m.cpu)
    mmput(mm)


@kfunc
def do_exit(code: int) -> None:
    """The current task exits with wait status ``code``."""
    m = current_machine()
    tsk = m.current
    if tsk.pid == 1 and tsk.mm is not None:
        m.printk(f"Kernel panic - not syncing: Attempted to kill init! exitcode=0x{code:08x}",
                 level=0)
    tsk.flags |= PF_EXITING
    tsk.exit_code = code
    exit_mm()
    exit_notify(tsk)
    tsk.state = TASK_DEAD
    m.vm.sched.dequeue_dead(tsk)
    if tsk.se is not None and tsk.se.gen is not None:
        with contextlib.suppress(BaseException):
            tsk.se.gen.close()


def child_reaper(m: Any) -> TaskStruct | None:
    return m.tasks.get(1)


@kfunc
def exit_notify(tsk: TaskStruct) -> None:
    m = current_machine()
    reaper = child_reaper(m)
    for c in list(tsk.children):
        tsk.children.remove(c)
        c.parent = c.real_parent = reaper
        if reaper is not None:
            reaper.children.append(c)
            if c.exit_state == EXIT_ZOMBIE:
                m.vm.sched.child_exited(reaper)
    parent = tsk.parent
    autoreap = tsk.flags & PF_KTHREAD or tsk.exit_signal == -1 or parent is None
    if autoreap:
        release_task(tsk)
        return
    tsk.exit_state = EXIT_ZOMBIE
    m.vm.sched.child_exited(parent)


@kfunc
def release_task(p: TaskStruct) -> None:
    m = current_machine()
    p.exit_state = EXIT_DEAD
    from mmdbg.sim.kernel.fork import account_kernel_stack

    account_kernel_stack(m, p, -1)  # put_task_stack -> release_task_stack
    if p.parent is not None and p in p.parent.children:
        p.parent.children.remove(p)
    m.tasks.pop(p.pid, None)
    kobj_slab_free(m, p)  # put_task_struct -> free_task -> free_task_struct


def try_reap(m: Any, parent: TaskStruct, pid: int = -1) -> tuple[int, int] | None:
    """wait4(pid): (pid, status) of a zombie child, (-ECHILD, 0) if there is no such
    child, None if the caller has to wait."""
    kids = [c for c in parent.children if pid in (-1, c.pid)]
    if not kids:
        return None if parent.pid == 1 else (-errno.ECHILD, 0)
    for c in kids:
        if c.exit_state == EXIT_ZOMBIE:
            status = c.exit_code
            parent.min_flt_children = getattr(parent, "min_flt_children", 0) + c.min_flt
            release_task(c)
            return c.pid, status
    return None
