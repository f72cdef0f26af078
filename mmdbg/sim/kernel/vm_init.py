"""Processes and virtual memory at boot (the mm/sched part of init/main.c start_kernel).

:func:`vm_init` gives the machine its process and VM globals (``machine.vm``): the paging mode,
the shared zero page, per-CPU TLBs and ``cr2``, the scheduler, the root file system, the
overcommit counter, the cost model and :class:`VmHooks` -- the points where later subsystems
(LRU and reclaim, swap, memcg, writeback) plug into the fault and unmap paths.  It creates
``kthreadd`` (pid 2) and ``init`` (pid 1); init executes ``/sbin/init`` the first time a user
process is started (so a machine nobody runs programs on allocates nothing at boot).

:func:`spawn` starts a program the way ``call_usermodehelper`` does: a child of init that
execs a binary and then runs a generator.  :func:`task_context` runs kernel code on behalf of a
task from plain Python (tests, the shell): it makes the task current on its CPU and loads its
page tables, and puts things back afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

from mmdbg.sim.arch.x86.pgtable import Paging
from mmdbg.sim.arch.x86.tlb import TlbState
from mmdbg.sim.include.mm import VM_FAULT_SIGBUS
from mmdbg.sim.kernel.sched import PF_KTHREAD, TASK_RUNNING, TaskStruct
from mmdbg.sim.kernel.sched_core import Block, Cost, WaitChild, WaitQueue, sched_init
from mmdbg.sim.mm.mm_types import PAGEBLOCK_ORDER

ZERO_PAGE_PHYS = 0x03B36000  # empty_zero_page, in the kernel image's .bss
FAULT_AROUND_BYTES = 65536
INIT_TASK_ADDR = 0xFFFFFFFF82A0C940


class VmHooks:
    """Where later subsystems attach to the process/VM paths (defaults do nothing)."""

    def __init__(self) -> None:
        self.mem_cgroup_charge: Callable[[int, Any, int], bool] = lambda folio, mm, gfp: True
        self.folio_add_lru_vma: Callable[[int, Any], None] = lambda folio, vma: None
        self.folio_release: Callable[[int], None] = lambda folio: None
        self.do_swap_page: Callable[[Any], int] = _no_swap
        self.free_swap_and_cache: Callable[[int], None] = lambda pte: None
        self.swap_duplicate: Callable[[int], None] = lambda pte: None
        self.balance_dirty_pages_ratelimited: Callable[[Any], None] = lambda mapping: None
        self.lazyfree_folio: Callable[[int], None] = lambda folio: None
        self.madvise_cold_or_pageout: Callable[..., None] = lambda vma, s, e, out: None
        # page cache -> LRU/memcg/workingset and accesses (issue 7: reclaim)
        self.filemap_add_folio: Callable[[int, Any, int], None] = lambda folio, mapping, i: None
        self.folio_mark_accessed: Callable[[int], None] = lambda folio: None
        self.free_swap_cache: Callable[[int], None] = lambda folio: None


def _no_swap(vmf: Any) -> int:
    from mmdbg.sim.trace import current_machine

    current_machine().printk(f"do_swap_page: swap entry {vmf.orig_pte:#x} but no swap "
                             "subsystem", level=4)
    return VM_FAULT_SIGBUS


class VmGlobals:
    """``machine.vm``: the kernel globals of processes and address spaces."""

    def __init__(self, m: Any) -> None:
        self.paging = Paging(m.config.la57)
        self.zero_pfn = ZERO_PAGE_PHYS >> 12
        self.pgtables: dict[int, Any] = {}
        self.kobj_next = 0
        # kernel objects from their slab caches (vma.kobj_slab_alloc): on once boot is done
        self.kobj_slab = False
        self.kobj_objs: dict[int, tuple[Any, Any]] = {}  # slab address -> (object, cache)
        self.kobj_avc: dict[tuple[Any, Any], list[int]] = {}  # (vma, anon_vma) -> avcs
        self.mm_ctx_next = 0
        self.last_pid = 2
        self.tlb = [TlbState(c) for c in range(m.ncpus)]
        self.cr2 = [0] * m.ncpus
        self.total_swap_pages = 0
        self.fault_around_bytes = FAULT_AROUND_BYTES
        self.cost = Cost()
        self.hooks = VmHooks()
        self.mlock_count: dict[int, int] = {}
        self.binaries: dict[str, Any] = {}
        self.cached_mappings: dict[int, Any] = {}  # address_spaces with pages (for checks)
        self.nodestat: list[list[int]] = []
        self.fs: Any = None
        self.sched: Any = None
        self.kthreadd: TaskStruct | None = None
        self.init_wq = WaitQueue("init")


def vm_init(m: Any) -> None:
    from mmdbg.sim.fs import proc_sys
    from mmdbg.sim.fs.ramfs import FileSystem
    from mmdbg.sim.kernel.fork import new_task
    from mmdbg.sim.mm import debug_vm_mm  # noqa: F401 -- registers the VM checks

    m.vm = vm = VmGlobals(m)
    m.vm_committed_as = 0  # the kernel's vm_committed_as, in pages (Committed_AS)
    nblocks = len(m.zone_of_block)
    for b in range(nblocks):
        zi = m.zone_of_block[b]
        node = m.zones[zi].node if zi >= 0 else 0
        vm.nodestat.append(m.node_data[node].vm_stat)
    vm.sched = sched_init(m)
    from mmdbg.sim.kernel.fork import account_kernel_stack

    for cpu, idle in enumerate(m.idle_tasks):  # init_task and the per-CPU idle tasks
        idle.addr = INIT_TASK_ADDR + cpu * 0x40000 if cpu else INIT_TASK_ADDR
        if cpu:  # fork_idle() stacks are counted; init_task's is the static init_stack
            account_kernel_stack(m, idle, 1)
    vm.fs = FileSystem(m)
    m.sysctl.setdefault("kernel.randomize_va_space", 2)
    proc_sys.LIMITS.setdefault("kernel.randomize_va_space", (0, 2))
    m.sysctl.setdefault("vm.fault_around_bytes", FAULT_AROUND_BYTES)
    # pid 2 and pid 1 (init runs /sbin/init lazily, see ensure_init)
    kt = new_task(m, 2, "kthreadd", None, PF_KTHREAD)
    kt.se.gen = _kthreadd(m)
    vm.kthreadd = kt
    init = new_task(m, 1, "init", None, 0)
    init.se.gen = None
    kt.parent = kt.real_parent = None
    from mmdbg.sim.mm import vmscan  # issue 7: LRU, reclaim, swap, memcg, OOM

    vmscan.pressure_init(m)


def _kthreadd(m: Any) -> Generator:
    wq = WaitQueue("kthreadd")
    while True:
        yield Block(wq)


def init_program(m: Any) -> Generator:
    """/sbin/init: reap every child, forever."""
    while True:
        yield WaitChild(-1)


def ensure_init(m: Any) -> TaskStruct:
    """Give init its address space (execve /sbin/init) the first time it is needed."""
    from mmdbg.sim.fs.exec import do_execve, install_binary

    init = m.tasks[1]
    if init.mm is None and init.se.gen is None:
        install_binary(m, "/sbin/init")
        with task_context(m, init):
            err = do_execve("/sbin/init", ["/sbin/init"], ["HOME=/", "TERM=linux"])
            if err:
                raise RuntimeError(f"cannot start init: {err}")
        init.se.gen = init_program(m)
        init.state = TASK_RUNNING
        m.vm.sched.wake_up_new_task(init)
    return init


@contextmanager
def task_context(m: Any, t: TaskStruct, cpu: int | None = None) -> Iterator[TaskStruct]:
    """Run kernel code as ``t`` (current on its CPU, its mm loaded)."""
    from mmdbg.sim.arch.x86 import tlb

    m.activate()
    if cpu is None:
        cpu = t.cpu if 0 <= t.cpu < m.ncpus else 0
    saved_cpu = m.cpu
    prev = m.cpu_curr[cpu]
    m.cpu = cpu
    m.cpu_curr[cpu] = t
    if t.mm is not None:
        tlb.switch_mm_irqs_off(None, t.mm, t)
    try:
        yield t
    finally:
        m.cpu_curr[cpu] = prev
        if prev.mm is not None and prev.mm.pgd is not None:
            tlb.switch_mm_irqs_off(None, prev.mm, prev)
        else:
            tlb.enter_lazy_tlb(m, cpu)
        m.cpu = saved_cpu


def spawn(m: Any, path: str, argv: list[str] | None = None,
          program: Callable[[TaskStruct], Generator] | None = None,
          envp: list[str] | None = None, parent: TaskStruct | None = None,
          comm: str | None = None, run: bool = True) -> TaskStruct:
    """Start ``path`` as a new process (a child of ``parent``, init by default).

    ``program(task)`` returns the generator the task runs after the exec; without one the
    task is created but never scheduled (drive it with :func:`task_context`).  Raises
    OSError with the errno if the exec fails.
    """
    from mmdbg.sim.fs.exec import do_execve, install_binary
    from mmdbg.sim.kernel.fork import alloc_pid, new_task

    m.activate()
    init = ensure_init(m)
    parent = parent or init
    install_binary(m, path)
    pid = alloc_pid(m)
    t = new_task(m, pid, comm or path.rsplit("/", 1)[-1], parent, 0)
    t.cpu = m.vm.sched.select_task_rq(t, True)
    with task_context(m, t):
        err = do_execve(path, list(argv or [path]), list(envp or ["HOME=/root", "PATH=/bin"]))
    if err:
        from mmdbg.sim.kernel.exit import release_task

        with task_context(m, t):
            from mmdbg.sim.kernel.exit import exit_mm

            exit_mm()
        release_task(t)
        raise OSError(-err, f"execve {path}: {__import__('os').strerror(-err)}")
    if comm:
        t.comm = comm[:15]
    if program is not None:
        t.se.gen = program(t)
        if run:
            m.vm.sched.wake_up_new_task(t)
    return t


_ = PAGEBLOCK_ORDER
