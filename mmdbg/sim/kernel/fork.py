"""Process creation (kernel/fork.c, kernel/kthread.c).

::

    kernel_clone -> copy_process -> copy_mm -> dup_mm -> dup_mmap
                       for each VMA: vm_area_dup, anon_vma_fork, vma_link, copy_page_range
                    -> wake_up_new_task

``dup_mmap`` skips ``VM_DONTCOPY`` VMAs, gives ``VM_WIPEONFORK`` VMAs an empty child, clears
``VM_LOCKED`` (mlock is not inherited), charges Committed_AS for accountable VMAs and copies
the page tables of VMAs that need it (``vma_needs_copy``: anonymous memory; file pages are
refaulted from the page cache).  ``CLONE_VM`` shares the mm (threads).

Kernel threads (``kthread_create``) have no mm, run kernel generators on the same scheduler
and are children of ``kthreadd`` (pid 2).  pid 1 is init.
"""

from __future__ import annotations

import errno
from collections.abc import Generator
from typing import Any

from mmdbg.sim.arch.x86 import tlb as x86_tlb
from mmdbg.sim.arch.x86.pgtable import pgd_alloc
from mmdbg.sim.kernel.sched import PF_KTHREAD, THREAD_SIZE, TaskStruct
from mmdbg.sim.kernel.sched_core import TaskSched
from mmdbg.sim.mm import memory
from mmdbg.sim.mm.debug_vm import register_check
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT
from mmdbg.sim.mm.mmap import vma_link
from mmdbg.sim.mm.rmap import anon_vma_fork
from mmdbg.sim.mm.util import security_vm_enough_memory, vm_unacct_memory
from mmdbg.sim.mm.vma import (
    _KOBJ_BASE,
    VM_ACCOUNT,
    VM_DONTCOPY,
    VM_LOCKED_MASK,
    VM_NOHUGEPAGE,
    VM_WIPEONFORK,
    MmStruct,
    kobj_addr,
    kobj_slab_alloc,
    kobj_slab_free,
    vm_area_dup,
    vm_stat_account,
)
from mmdbg.sim.mm.vmstat import NS
from mmdbg.sim.trace import current_machine, kfunc

CLONE_VM = 0x00000100
CLONE_FS = 0x00000200
CLONE_FILES = 0x00000400
CLONE_SIGHAND = 0x00000800
CLONE_VFORK = 0x00004000
CLONE_PARENT = 0x00008000
CLONE_THREAD = 0x00010000
SIGCHLD = 17
TASK_STRUCT_SIZE = 9856
PID_MAX = 4194304
VM_INIT_DEF_MASK = VM_NOHUGEPAGE
_NR_KERNEL_STACK = NS["nr_kernel_stack"]


def alloc_pid(m: Any) -> int:
    vm = m.vm
    pid = vm.last_pid
    while True:
        pid += 1
        if pid >= PID_MAX:
            pid = 300
        if pid not in m.tasks:
            vm.last_pid = pid
            return pid


def new_task(m: Any, pid: int, comm: str, parent: TaskStruct | None, flags: int = 0,
             tgid: int | None = None) -> TaskStruct:
    t = TaskStruct(pid, comm, tgid=tgid, uid=parent.uid if parent is not None else 0,
                   gid=parent.gid if parent is not None else 0, flags=flags, parent=parent)
    if parent is not None:
        t.euid = parent.euid
        t.oom_score_adj = parent.oom_score_adj
        t.rlim = dict(parent.rlim) if parent.rlim else None
        t.cgroup = parent.cgroup
        parent.children.append(t)
        if parent.thread is not None:
            t.thread = UserRegs(parent.thread.ip, parent.thread.sp)
    if flags & PF_KTHREAD:
        # kernel threads (kswapd, oom_reaper ...) are started at boot in the kernel; the
        # simulator starts them lazily, often from inside the allocator: they keep boot
        # (non-slab) addresses
        t.addr = kobj_addr(m, TASK_STRUCT_SIZE)
    else:
        kobj_slab_alloc(m, t, "task_struct", TASK_STRUCT_SIZE)  # alloc_task_struct_node
    t.stack = 0xFFFFC90000000000 + (pid << 15)
    account_kernel_stack(m, t, 1)
    t.start_time = m.clock.ns
    t.se = TaskSched(None)
    t.cpu = parent.cpu if parent is not None else 0
    m.tasks[pid] = t
    return t


def account_kernel_stack(m: Any, t: TaskStruct, account: int) -> None:
    """NR_KERNEL_STACK_KB (``KernelStack`` in /proc/meminfo): THREAD_SIZE per task from
    dup_task_struct to release_task_stack.  Simplification: counted on node 0, and the
    stack's pages are not allocated (``t.stack`` is an address only)."""
    if getattr(t, "stack_accounted", 0) == (account > 0):
        return
    t.stack_accounted = int(account > 0)
    m.node_data[0].vm_stat[_NR_KERNEL_STACK] += account * (THREAD_SIZE // 1024)


class UserRegs:
    """The saved user registers of a task (``task_pt_regs``): ip, sp, user cs."""

    __slots__ = ("cs", "ip", "sp")
    ktype = "pt_regs"

    def __init__(self, ip: int = 0, sp: int = 0) -> None:
        self.ip = ip
        self.sp = sp
        self.cs = 0x33

    def user_mode(self) -> bool:
        return True


# -- mm ---------------------------------------------------------------------------------------
def mm_alloc(m: Any) -> MmStruct | None:
    mm = MmStruct(m)
    mm.pgd = pgd_alloc(mm)
    if mm.pgd is None:
        kobj_slab_free(m, mm)  # free_mm
        return None
    return mm


@kfunc
def dup_mmap(mm: MmStruct, oldmm: MmStruct) -> int:
    """Copy every VMA of ``oldmm`` (and the page tables of the anonymous ones)."""
    m = current_machine()
    mm.total_vm = oldmm.total_vm
    mm.data_vm = oldmm.data_vm
    mm.exec_vm = oldmm.exec_vm
    mm.stack_vm = oldmm.stack_vm
    retval = 0
    for mpnt in list(oldmm.mm_mt.vmas):
        if mpnt.vm_flags & VM_DONTCOPY:
            vm_stat_account(mm, mpnt.vm_flags, -mpnt.pages)
            continue
        charge = 0
        if mpnt.vm_flags & VM_ACCOUNT:
            charge = mpnt.pages
            if security_vm_enough_memory(m, mm, charge):
                retval = -errno.ENOMEM
                break
        tmp = vm_area_dup(mpnt)
        tmp.vm_mm = mm
        tmp.vm_flags &= ~VM_LOCKED_MASK
        tmp.anon_vma_chain = []
        if tmp.vm_flags & VM_WIPEONFORK:
            tmp.anon_vma = None
        else:
            tmp.anon_vma = None
            anon_vma_fork(tmp, mpnt)
        vma_link(mm, tmp)
        if not tmp.vm_flags & VM_WIPEONFORK:
            retval = memory.copy_page_range(tmp, mpnt)
            if retval:
                break
        _ = charge
    x86_tlb.flush_tlb_mm(oldmm)
    return retval


@kfunc
def dup_mm(tsk: TaskStruct, oldmm: MmStruct) -> MmStruct | None:
    m = current_machine()
    mm = MmStruct(m)
    for f in ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
              "start_stack", "arg_start", "arg_end", "env_start", "env_end", "mmap_base",
              "mmap_legacy_base", "task_size", "flags"):
        setattr(mm, f, getattr(oldmm, f))
    mm.def_flags = oldmm.def_flags & VM_INIT_DEF_MASK
    mm.exe_file = oldmm.exe_file.get() if oldmm.exe_file is not None else None
    mm.owner = tsk
    mm.pgd = pgd_alloc(mm)
    if mm.pgd is None:
        kobj_slab_free(m, mm)  # free_mm
        return None
    if dup_mmap(mm, oldmm):
        from mmdbg.sim.kernel.exit import mmput

        mmput(mm)
        return None
    mm.hiwater_rss = mm.get_mm_rss()
    mm.hiwater_vm = mm.total_vm
    return mm


@kfunc
def copy_mm(clone_flags: int, tsk: TaskStruct) -> int:
    m = current_machine()
    oldmm = m.current.mm
    tsk.min_flt = tsk.maj_flt = 0
    tsk.nvcsw = tsk.nivcsw = 0
    tsk.mm = tsk.active_mm = None
    if oldmm is None:
        return 0
    if clone_flags & CLONE_VM:
        oldmm.mm_users += 1
        tsk.mm = tsk.active_mm = oldmm
        return 0
    mm = dup_mm(tsk, oldmm)
    if mm is None:
        return -errno.ENOMEM
    tsk.mm = tsk.active_mm = mm
    return 0


@kfunc
def copy_process(clone_flags: int, comm: str | None = None) -> Any:
    """Duplicate current into a new task (not yet runnable); the task or -errno."""
    m = current_machine()
    cur = m.current
    pid = alloc_pid(m)
    tgid = cur.tgid if clone_flags & CLONE_THREAD else None
    parent = cur.parent if clone_flags & (CLONE_PARENT | CLONE_THREAD) else cur
    p = new_task(m, pid, comm or cur.comm, parent, cur.flags & PF_KTHREAD, tgid)
    if clone_flags & CLONE_THREAD:
        p.tgid = cur.tgid
    p.exit_signal = -1 if clone_flags & CLONE_THREAD else (clone_flags & 0xFF or SIGCHLD)
    err = copy_mm(clone_flags, p)
    if err:
        parent.children.remove(p)
        del m.tasks[pid]
        kobj_slab_free(m, p)  # free_task
        return err
    m.clock.ns += 20_000  # task_struct, files, signal handlers ...
    return p


@kfunc(aliases=("_do_fork", "do_fork"))
def kernel_clone(clone_flags: int, program: Generator | None = None,
                 comm: str | None = None) -> int:
    """fork/clone: returns the child's pid (or -errno); the child runs ``program``."""
    m = current_machine()
    m.clock.ns += m.vm.cost.syscall
    p = copy_process(clone_flags, comm)
    if isinstance(p, int):
        return p
    p.se.gen = program
    if program is not None:
        m.vm.sched.wake_up_new_task(p)
    return p.pid


# -- kernel threads -----------------------------------------------------------------------------
@kfunc(aliases=("kthread_create_on_node",))
def kthread_create(threadfn: Any, name: str, cpu: int | None = None) -> TaskStruct:
    """A kernel thread running ``threadfn(machine)`` (a generator), child of kthreadd."""
    m = current_machine()
    pid = alloc_pid(m)
    t = new_task(m, pid, name, m.vm.kthreadd, PF_KTHREAD)
    t.se.gen = threadfn(m)
    if cpu is not None:
        t.cpu = cpu
    return t


def kthread_run(threadfn: Any, name: str, cpu: int | None = None) -> TaskStruct:
    m = current_machine()
    t = kthread_create(threadfn, name, cpu)
    t.state = 0
    if cpu is not None:
        m.vm.sched.enqueue(t, cpu, m.clock.ns)
    else:
        m.vm.sched.wake_up_new_task(t)
    return t


@register_check
def check_kobj_slab(m: Any) -> None:
    """Every live task, mm, VMA and anon_vma owns its address: a slab object it was given
    (still tracked, in a slab page of the right cache) or a boot address; no object freed
    to its cache is still in use."""
    vm = getattr(m, "vm", None)
    if vm is None:
        return
    objs = vm.kobj_objs
    bump_end = _KOBJ_BASE + vm.kobj_next
    slab_pages = getattr(m, "slab_pages", None) if getattr(m, "slab_alt", None) is None else None

    def owned(o: Any, what: str) -> None:
        ent = objs.get(o.addr)
        if ent is not None:
            assert ent[0] is o, f"{what} {o.addr:#x}: the slab object belongs to {ent[0]!r}"
        else:
            a = o.addr  # boot objects: the bump range, static (image) addresses
            assert a == 0 or _KOBJ_BASE <= a < bump_end or a >= 0xFFFFFFFF80000000, \
                f"{what} {a:#x} uses a freed slab object"

    for pid, t in m.tasks.items():
        owned(t, f"task {pid}")
        mm = t.mm  # (an exited task's active_mm may be gone: no lazy-TLB mm reference)
        if mm is not None and mm is not getattr(m, "init_mm", None):
            owned(mm, "mm_struct")
            for v in mm.mm_mt.vmas:
                owned(v, "vm_area_struct")
                for av in v.anon_vma_chain:
                    owned(av, "anon_vma")
    if slab_pages is not None:
        kfence = getattr(m, "kfence", None)
        for a, (o, s) in objs.items():
            if kfence is not None and kfence.is_kfence_address(a):
                continue
            slab = slab_pages.get((a - PAGE_OFFSET) >> PAGE_SHIFT)
            assert slab is not None and slab.slab_cache is s, \
                f"{o!r} at {a:#x} is not an object of {s.name}"


_ = (THREAD_SIZE, vm_unacct_memory)
