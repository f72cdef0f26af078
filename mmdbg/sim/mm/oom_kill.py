"""The OOM killer (mm/oom_kill.c).

::

    __alloc_pages_may_oom (machine.hooks.out_of_memory) | mem_cgroup_oom | sysrq-f
      -> out_of_memory(oc)
           task_will_free_mem(current) -> mark_oom_victim(current)
           constrained_alloc -> totalpages ; check_panic_on_oom (vm.panic_on_oom 1/2)
           vm.oom_kill_allocating_task -> kill current
           select_bad_process -> oom_evaluate_task -> oom_badness (the kernel formula)
           oom_kill_process -> dump_header (Mem-Info or the memcg's meminfo, dump_tasks)
                            -> dump_oom_victim ("oom-kill:constraint=...")
                            -> __oom_kill_process ("Out of memory: Killed process ...",
                               SIGKILL, mark_oom_victim) ; memory.oom.group members
                            -> queue_oom_reaper -> oom_reap_task_mm

The report is the kernel's, line for line (reference/reports.md §1).  ``oom_badness`` is
``rss + swapents + pgtables_bytes/PAGE_SIZE + oom_score_adj * totalpages/1000``; the victim
is the highest score, a later task winning a tie (``points < chosen_points`` skips).

Simplification: the oom_reaper's work happens at once, inside ``__oom_kill_process``, rather
than 2 s later on the ``oom_reaper`` thread: a simulated allocation cannot sleep until
another task runs, so the memory must come back before the allocator retries.  The reaper's
messages and tracepoints (wake_reaper, start/finish_task_reaping) are the kernel's; the thread
``oom_reaper`` exists (created on first use) and is woken, finding nothing left to do.
``vm.panic_on_oom`` prints the kernel's panic line and stops the machine
(``machine.stop_requested``, ``machine.panicked``).
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.include.gfp import format_gfp
from mmdbg.sim.kernel.printk import KERN_ERR, KERN_INFO, KERN_WARNING
from mmdbg.sim.mm import vmstat
from mmdbg.sim.mm.vma import MM_ANONPAGES, MM_FILEPAGES, MM_SHMEMPAGES, MM_SWAPENTS
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

OOM_SCORE_ADJ_MIN = -1000
OOM_SCORE_ADJ_MAX = 1000
LONG_MIN = -(1 << 63)
LONG_MAX = (1 << 63) - 1
MMF_OOM_SKIP = 1 << 21
CONSTRAINT_NONE = "CONSTRAINT_NONE"
CONSTRAINT_CPUSET = "CONSTRAINT_CPUSET"
CONSTRAINT_MEMORY_POLICY = "CONSTRAINT_MEMORY_POLICY"
CONSTRAINT_MEMCG = "CONSTRAINT_MEMCG"

_tp_mark_victim = declare_tracepoint("oom:mark_victim")
_tp_wake_reaper = declare_tracepoint("oom:wake_reaper")
_tp_start_reaping = declare_tracepoint("oom:start_task_reaping")
_tp_finish_reaping = declare_tracepoint("oom:finish_task_reaping")
_tp_skip_reaping = declare_tracepoint("oom:skip_task_reaping")
declare_tracepoint("oom:reclaim_retry_zone")
declare_tracepoint("oom:compact_retry")


class OomControl:
    """``struct oom_control``."""

    ktype = "oom_control"

    def __init__(self, gfp_mask: int, order: int, memcg: Any = None, nodemask: Any = None,
                 zonelist: Any = None) -> None:
        self.zonelist = zonelist
        self.nodemask = nodemask
        self.memcg = memcg
        self.gfp_mask = gfp_mask
        self.order = order
        self.totalpages = 0
        self.chosen: Any = None
        self.chosen_points = LONG_MIN
        self.constraint = CONSTRAINT_NONE
        self.aborted = False


def K(pages: int) -> int:
    return pages << 2


def is_memcg_oom(oc: OomControl) -> bool:
    return oc.memcg is not None


def is_sysrq_oom(oc: OomControl) -> bool:
    return oc.order == -1


def oom_unkillable_task(p: Any) -> bool:
    return p.pid == 1 or p.is_kthread() or p.pid == 0


def find_lock_task_mm(m: Any, p: Any) -> Any:
    """The task or one of its threads that still has an mm."""
    if p.mm is not None:
        return p
    for t in sorted(m.tasks.values(), key=lambda t: t.pid):
        if t.tgid == p.tgid and t.mm is not None:
            return t
    return None


def _in_memcg(m: Any, p: Any, memcg: Any) -> bool:
    from mmdbg.sim.mm.memcontrol import task_memcg

    cg = task_memcg(m, p)
    while cg is not None:
        if cg is memcg:
            return True
        cg = cg.parent
    return False


@kfunc
def oom_badness(p: Any, totalpages: int) -> int:
    """The kernel's score: resident + swapped + page-table pages, shifted by oom_score_adj
    in units of totalpages/1000.  LONG_MIN for tasks that must not be killed."""
    m = current_machine()
    if oom_unkillable_task(p):
        return LONG_MIN
    t = find_lock_task_mm(m, p)
    if t is None:
        return LONG_MIN
    adj = t.oom_score_adj
    mm = t.mm
    if adj == OOM_SCORE_ADJ_MIN or mm.flags & MMF_OOM_SKIP or getattr(t, "in_vfork", False):
        return LONG_MIN
    points = mm.get_mm_rss() + mm.rss_stat[MM_SWAPENTS] + mm.pgtables_bytes // 4096
    adj *= totalpages // 1000
    return points + adj


def totalram_pages(m: Any) -> int:
    return sum(z.managed_pages for z in m.zones)


def constrained_alloc(m: Any, oc: OomControl) -> str:
    from mmdbg.sim.mm.memcontrol import mem_cgroup_get_max

    if is_memcg_oom(oc):
        oc.totalpages = mem_cgroup_get_max(m, oc.memcg) or 1
        return CONSTRAINT_MEMCG
    oc.totalpages = totalram_pages(m) + int(getattr(m, "total_swap_pages", 0))
    if oc.nodemask is not None and set(oc.nodemask) != set(range(len(m.node_data))):
        oc.totalpages = sum(m.node_data[n].node_present_pages for n in oc.nodemask) + \
            int(getattr(m, "total_swap_pages", 0))
        return CONSTRAINT_MEMORY_POLICY
    return CONSTRAINT_NONE


def _processes(m: Any) -> list[Any]:
    return [t for t in sorted(m.tasks.values(), key=lambda t: t.pid)
            if t.pid == t.tgid and not t.exit_state]


def oom_evaluate_task(m: Any, task: Any, oc: OomControl) -> bool:
    """One candidate; returns False to abort the scan (a victim is already dying)."""
    if oom_unkillable_task(task):
        return True
    if is_memcg_oom(oc) and not _in_memcg(m, task, oc.memcg):
        return True
    if not is_sysrq_oom(oc) and task.oom_victim:
        t = find_lock_task_mm(m, task)
        if t is None or t.mm.flags & MMF_OOM_SKIP:
            return True
        oc.chosen = None
        oc.chosen_points = LONG_MIN
        oc.aborted = True
        return False
    if getattr(task, "oom_task_origin", False):
        points = LONG_MAX
    else:
        points = oom_badness(task, oc.totalpages)
        if points == LONG_MIN or points < oc.chosen_points:
            return True
    oc.chosen = task
    oc.chosen_points = points
    return True


@kfunc
def select_bad_process(oc: OomControl) -> Any:
    m = current_machine()
    for p in _processes(m):
        if not oom_evaluate_task(m, p, oc):
            break
    return oc.chosen


# -- the report ----------------------------------------------------------------------------------
def dump_task_lines(m: Any, oc: OomControl) -> list[str]:
    out = ["Tasks state (memory values in pages):",
           "[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file rss_shmem pgtables_bytes "
           "swapents oom_score_adj name"]
    for p in _processes(m):
        if oom_unkillable_task(p):
            continue
        if is_memcg_oom(oc) and not _in_memcg(m, p, oc.memcg):
            continue
        t = find_lock_task_mm(m, p)
        if t is None:
            continue
        mm = t.mm
        r = mm.rss_stat
        out.append(f"[{t.pid:7d}] {t.uid:5d} {t.tgid:5d} {mm.total_vm:8d} {mm.get_mm_rss():8d} "
                   f"{r[MM_ANONPAGES]:8d} {r[MM_FILEPAGES]:8d} {r[MM_SHMEMPAGES]:9d} "
                   f"{mm.pgtables_bytes:8d} {r[MM_SWAPENTS]:8d}         "
                   f"{t.oom_score_adj:5d} {t.comm}")
    return out


@kfunc
def dump_tasks(oc: OomControl) -> None:
    m = current_machine()
    for line in dump_task_lines(m, oc):
        m.printk(line, level=KERN_INFO)


def mem_cgroup_print_oom_meminfo(m: Any, memcg: Any) -> None:
    from mmdbg.sim.fs.cgroupfs import memory_stat_text

    mem = memcg.memory
    m.printk(f"memory: usage {K(mem.usage)}kB, limit {K(mem.max)}kB, failcnt "
             f"{memcg.events['max']}", level=KERN_INFO)
    m.printk(f"swap: usage {K(memcg.swap.usage)}kB, limit {K(memcg.swap.max)}kB, failcnt "
             f"{memcg.swap_events['fail']}", level=KERN_INFO)
    m.printk(f"Memory cgroup stats for {memcg.path}:", level=KERN_INFO)
    for line in memory_stat_text(m, memcg).splitlines():
        m.printk(line, level=KERN_INFO)


@kfunc
def dump_header(oc: OomControl, victim: Any) -> None:
    from mmdbg.sim.include.gfp import gfp_zone
    from mmdbg.sim.mm.show_mem import SHOW_MEM_FILTER_NODES, __show_mem

    m = current_machine()
    cur = m.current
    m.printk(f"{cur.comm} invoked oom-killer: gfp_mask={oc.gfp_mask:#x}"
             f"({format_gfp(oc.gfp_mask)}), order={oc.order}, "
             f"oom_score_adj={cur.oom_score_adj}", level=KERN_WARNING)
    m.dump_stack()
    if is_memcg_oom(oc):
        mem_cgroup_print_oom_meminfo(m, oc.memcg)
    else:
        __show_mem(m, SHOW_MEM_FILTER_NODES, oc.nodemask, gfp_zone(oc.gfp_mask))
    if m.sysctl["vm.oom_dump_tasks"]:
        dump_tasks(oc)


def _mems_allowed(m: Any) -> str:
    n = len(m.node_data)
    return "0" if n == 1 else f"0-{n - 1}"


def dump_oom_victim(m: Any, oc: OomControl, victim: Any) -> None:
    from mmdbg.sim.mm.memcontrol import task_memcg

    nm = "(null)" if oc.nodemask is None else ",".join(str(n) for n in sorted(oc.nodemask))
    ctx = f",oom_memcg={oc.memcg.path}" if is_memcg_oom(oc) else ",global_oom"
    ctx += f",task_memcg={task_memcg(m, victim).path}"
    m.printk(f"oom-kill:constraint={oc.constraint},nodemask={nm},cpuset=/,"
             f"mems_allowed={_mems_allowed(m)}{ctx},task={victim.comm},pid={victim.pid},"
             f"uid={victim.uid}", level=KERN_INFO)


# -- killing and reaping --------------------------------------------------------------------------
@kfunc
def mark_oom_victim(tsk: Any) -> None:
    m = current_machine()
    if tsk.oom_victim:
        return
    tsk.oom_victim = True
    m.oom.victims += 1
    if _tp_mark_victim.enabled:
        mm = tsk.mm
        r = mm.rss_stat if mm is not None else [0, 0, 0, 0]
        _tp_mark_victim.fire(pid=tsk.pid, comm=tsk.comm,
                             total_vm=mm.total_vm if mm is not None else 0,
                             anon_rss=K(r[MM_ANONPAGES]), file_rss=K(r[MM_FILEPAGES]),
                             shmem_rss=K(r[MM_SHMEMPAGES]), uid=tsk.uid,
                             pgtables=(mm.pgtables_bytes >> 10) if mm is not None else 0,
                             oom_score_adj=tsk.oom_score_adj)


@kfunc
def __oom_kill_process(victim: Any, message: str) -> None:
    from mmdbg.sim.kernel.signal import SIGKILL, __send_signal_locked
    from mmdbg.sim.mm.memcontrol import memcg_memory_event, task_memcg

    m = current_machine()
    p = find_lock_task_mm(m, victim)
    if p is None:
        return
    mm = p.mm
    m.vm_events[vmstat.EV["oom_kill"]] += 1
    memcg_memory_event(task_memcg(m, p), "oom_kill")
    for t in sorted(m.tasks.values(), key=lambda t: t.pid):
        if t.tgid == p.tgid:
            __send_signal_locked(SIGKILL, None, t)
    mark_oom_victim(p)
    r = mm.rss_stat
    m.printk(f"{message}: Killed process {p.pid} ({p.comm}) total-vm:{K(mm.total_vm)}kB, "
             f"anon-rss:{K(r[MM_ANONPAGES])}kB, file-rss:{K(r[MM_FILEPAGES])}kB, "
             f"shmem-rss:{K(r[MM_SHMEMPAGES])}kB, UID:{p.uid} "
             f"pgtables:{mm.pgtables_bytes >> 10}kB oom_score_adj:{p.oom_score_adj}",
             level=KERN_ERR)
    # other processes sharing the mm die too (CLONE_VM without CLONE_THREAD)
    for t in sorted(m.tasks.values(), key=lambda t: t.pid):
        if t.mm is mm and t.tgid != p.tgid and not oom_unkillable_task(t) and \
                t.oom_score_adj != OOM_SCORE_ADJ_MIN:
            __send_signal_locked(SIGKILL, None, t)
    queue_oom_reaper(p)


def queue_oom_reaper(tsk: Any) -> None:
    m = current_machine()
    if _tp_wake_reaper.enabled:
        _tp_wake_reaper.fire(pid=tsk.pid)
    oom_reaper_run(m)
    oom_reap_task(tsk)
    m.oom.reaper_wait.wake_up(m)


@kfunc
def oom_reap_task(tsk: Any) -> None:
    m = current_machine()
    mm = tsk.mm
    if mm is None or mm.flags & MMF_OOM_SKIP:
        if _tp_skip_reaping.enabled:
            _tp_skip_reaping.fire(pid=tsk.pid)
        return
    oom_reap_task_mm(tsk, mm)
    mm.flags |= MMF_OOM_SKIP
    _ = m


@kfunc
def oom_reap_task_mm(tsk: Any, mm: Any) -> bool:
    """Unmap the victim's private memory now (__oom_reap_task_mm)."""
    from mmdbg.sim.mm import memory
    from mmdbg.sim.mm.vma import VM_HUGETLB, VM_PFNMAP, VM_SHARED

    m = current_machine()
    if _tp_start_reaping.enabled:
        _tp_start_reaping.fire(pid=tsk.pid)
    tlb = memory.tlb_gather_mmu(mm)
    for vma in reversed(list(mm.mm_mt.vmas)):
        if vma.vm_flags & (VM_HUGETLB | VM_PFNMAP):
            continue
        if vma.vm_file is None or not vma.vm_flags & VM_SHARED:
            memory.unmap_page_range(tlb, vma, vma.vm_start, vma.vm_end)
    memory.tlb_finish_mmu(tlb)
    r = mm.rss_stat
    m.printk(f"oom_reaper: reaped process {tsk.pid} ({tsk.comm}), now "
             f"anon-rss:{K(r[MM_ANONPAGES])}kB, file-rss:{K(r[MM_FILEPAGES])}kB, "
             f"shmem-rss:{K(r[MM_SHMEMPAGES])}kB", level=KERN_INFO)
    if _tp_finish_reaping.enabled:
        _tp_finish_reaping.fire(pid=tsk.pid)
    return True


def oom_reaper_run(m: Any) -> None:
    if m.oom.reaper is not None:
        return
    from mmdbg.sim.kernel.fork import kthread_create
    from mmdbg.sim.kernel.sched_core import Block

    def oom_reaper(mm: Any) -> Any:
        while True:
            yield Block(m.oom.reaper_wait)

    t = kthread_create(oom_reaper, "oom_reaper")
    t.state = 1
    m.oom.reaper_wait.waiters.append(t)
    m.oom.reaper = t


@kfunc
def oom_kill_process(oc: OomControl, message: str) -> None:
    from mmdbg.sim.kernel.signal import fatal_signal_pending
    from mmdbg.sim.mm.memcontrol import (
        cgroup_tasks,
        mem_cgroup_get_oom_group,
        memcg_memory_event,
    )

    m = current_machine()
    victim = oc.chosen
    if victim.flags & 0x4 or fatal_signal_pending(victim):  # PF_EXITING / task_will_free_mem
        mark_oom_victim(victim)
        queue_oom_reaper(victim)
        return
    dump_header(oc, victim)
    dump_oom_victim(m, oc, victim)
    oom_group = mem_cgroup_get_oom_group(m, victim, oc.memcg)
    __oom_kill_process(victim, message)
    if oom_group is not None:
        memcg_memory_event(oom_group, "oom_group_kill")
        m.printk(f"Tasks in {oom_group.path} are going to be killed due to memory.oom.group "
                 "set", level=KERN_INFO)
        for cg in oom_group.subtree():
            for t in cgroup_tasks(m, cg):
                if t is victim or t.oom_score_adj == OOM_SCORE_ADJ_MIN or t.pid == 1 or \
                        t.pid != t.tgid or t.oom_victim:
                    continue
                __oom_kill_process(t, message)


def check_panic_on_oom(m: Any, oc: OomControl) -> bool:
    v = m.sysctl["vm.panic_on_oom"]
    if not v:
        return False
    if v != 2 and oc.constraint != CONSTRAINT_NONE:
        return False
    if is_sysrq_oom(oc):
        return False
    dump_header(oc, None)
    panic(m, f"Out of memory: {'compulsory' if v == 2 else 'system-wide'} panic_on_oom is "
             "enabled")
    return True


def panic(m: Any, msg: str) -> None:
    """panic(): the kernel's line, then the machine stops (the debugger gets control)."""
    m.printk(f"Kernel panic - not syncing: {msg}", level=0)
    m.printk(f"---[ end Kernel panic - not syncing: {msg} ]---", level=0)
    m.panicked = True
    m.stop_requested = True


def task_will_free_mem(m: Any, t: Any) -> bool:
    from mmdbg.sim.kernel.signal import fatal_signal_pending

    if t is None or t.mm is None or t.mm.flags & MMF_OOM_SKIP:
        return False
    return bool(t.flags & 0x4) or fatal_signal_pending(t)


@kfunc
def out_of_memory(oc: OomControl) -> bool:
    """Pick and kill a victim; True when memory is on its way back."""
    m = current_machine()
    cur = m.current
    if getattr(m, "panicked", False):
        if cur is not None and not cur.oom_victim and not cur.is_kthread():
            from mmdbg.sim.kernel.signal import SIGKILL, send_sig

            send_sig(SIGKILL, cur)
            cur.oom_victim = True
            return True
        return False
    if cur is not None and cur.oom_victim and (cur.mm is None or cur.mm.flags & MMF_OOM_SKIP):
        return False  # a reaped victim's own allocations fail (tsk_is_oom_victim -> nopage)
    if task_will_free_mem(m, cur):
        mark_oom_victim(cur)
        queue_oom_reaper(cur)
        return True
    oc.constraint = constrained_alloc(m, oc)
    if not is_memcg_oom(oc) and check_panic_on_oom(m, oc):
        cur.oom_victim = False
        return out_of_memory(oc)
    if m.sysctl["vm.oom_kill_allocating_task"] and cur is not None and cur.mm is not None \
            and not oom_unkillable_task(cur) and cur.oom_score_adj != OOM_SCORE_ADJ_MIN:
        oc.chosen = cur
        oom_kill_process(oc, "Out of memory (oom_kill_allocating_task)")
        return True
    select_bad_process(oc)
    if oc.aborted:
        return True
    if oc.chosen is None:
        if not is_sysrq_oom(oc) and not is_memcg_oom(oc):
            dump_header(oc, None)
            panic(m, "System is deadlocked on memory")
        return False
    m.oom.last_victim = (oc.chosen.pid, oc.chosen.comm, oc.chosen_points)
    oom_kill_process(oc, "Memory cgroup out of memory" if is_memcg_oom(oc) else
                     "Out of memory")
    return True


def mem_cgroup_out_of_memory(memcg: Any, gfp_mask: int, order: int) -> bool:
    oc = OomControl(gfp_mask, order, memcg=memcg)
    return out_of_memory(oc)


def alloc_out_of_memory(gfp_mask: int, order: int, ac: Any) -> bool:
    """The machine.hooks.out_of_memory entry (__alloc_pages_may_oom)."""
    oc = OomControl(gfp_mask, order, nodemask=ac.nodemask, zonelist=ac.zonelist)
    return out_of_memory(oc)


class OomGlobals:
    def __init__(self) -> None:
        from mmdbg.sim.kernel.sched_core import WaitQueue

        self.reaper: Any = None
        self.reaper_wait = WaitQueue("oom_reaper")
        self.victims = 0
        self.last_victim: Any = None


def oom_init(m: Any) -> None:
    m.oom = OomGlobals()
    m.panicked = False


# -- /proc/PID/oom_score --------------------------------------------------------------------------
def proc_oom_score(m: Any, t: Any) -> int:
    """fs/proc/base.c: (1000 + badness * 1000 / totalpages) * 2 / 3, 0 when unkillable."""
    totalpages = totalram_pages(m) + int(getattr(m, "total_swap_pages", 0))
    m.activate()
    badness = oom_badness(t, totalpages)
    if badness == LONG_MIN:
        return 0
    # C division truncates toward zero
    q = abs(badness * 1000) // totalpages
    q = q if badness >= 0 else -q
    return (1000 + q) * 2 // 3
