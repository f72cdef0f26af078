"""Memory cgroups (mm/memcontrol.c, mm/page_counter.c): charging, limits, protection, events.

A :class:`MemCgroup` has the kernel's ``page_counter`` pair (``memory`` and ``swap``), one
``lruvec`` per node, its ``memory.events`` counters, and local event/statistics counters that
``memory.stat`` sums over the subtree.  Pages point at their memcg through the ``memcg_data``
column (``folio->memcg_data``); the root cgroup charges too (it has no limit), so every user
page is on exactly one memcg's lruvec.

Charging (``mem_cgroup_charge -> charge_memcg -> try_charge_memcg``) follows the kernel:
``page_counter_try_charge`` up the hierarchy; over ``memory.max`` -> ``memory.events max``,
``try_to_free_mem_cgroup_pages`` on the cgroup over its limit, up to MAX_RECLAIM_RETRIES
tries, then ``mem_cgroup_oom`` (the OOM killer restricted to the cgroup, with the kernel's
report); when that killed something the charge is retried.  Over ``memory.high`` the task
reclaims the excess and sleeps a penalty (``mem_cgroup_handle_over_high``,
``calculate_high_delay``, at most 2 s) once it accumulated MEMCG_CHARGE_BATCH pages over.
``memory.min``/``memory.low`` give effective protection (``effective_protection``: siblings
that together claim more than their parent's protection share it in proportion to their
protected usage); reclaim skips protected cgroups (low: unless nothing else is reclaimable,
counting ``memory.events low``).  Swap is charged per slot (``swap_cgroup``) against
``memory.swap.max``.

Kernel memory (``__GFP_ACCOUNT``, 6.x): a task outside the root (not a kthread) charges
through its cgroup's ``obj_cgroup``.  Page allocations (``__memcg_kmem_charge_page`` from
``__alloc_pages``) charge ``1 << order`` pages with ``try_charge_memcg`` (reclaim, then the
memcg OOM killer for orders up to PAGE_ALLOC_COSTLY_ORDER) and leave ``memcg_data`` pointing at
the objcg (``PageMemcgKmem``); ``free_pages_prepare`` uncharges them before its bad-page
check.  Slab objects (``SLAB_ACCOUNT`` caches, the ``kmalloc-cg-*`` caches, ``__GFP_ACCOUNT``
allocations) charge ``obj_full_size`` bytes (``s->size`` + the objcg pointer) through
``obj_cgroup_charge``: whole pages are charged and the remainder kept as pre-charged bytes,
which a free returns and gives back as pages once more than a page is held
(``refill_obj_stock``).  memory.stat ``kernel`` is MEMCG_KMEM (pages and slab),
``slab_reclaimable``/``slab_unreclaimable``/``slab`` the object bytes, ``pagetables`` the
charged page-table pages.  A removed cgroup's objcgs move to the parent
(``memcg_reparent_objcgs``).  The v1 ``kmem`` counter is kept as ``memcg_account_kmem``
does (``memory.kmem.usage_in_bytes``); 6.x has no kmem limit.

Simplifications: no per-CPU charge stock (charges are exact; the objcg byte stock is one per
objcg, never drained to another CPU), no charge moving, no socket accounting, no
``set_active_memcg`` for interrupts; the v1 interface shows the same counters through the v1
file names.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.include.gfp import (
    __GFP_DIRECT_RECLAIM,
    __GFP_HIGH,
    __GFP_NOFAIL,
    __GFP_NORETRY,
    __GFP_RETRY_MAYFAIL,
)
from mmdbg.sim.mm.swap import KIND_ANON, KIND_FILE, KIND_SHMEM, NR_LRU_LISTS, Lruvec
from mmdbg.sim.trace import current_machine, kfunc

PAGE_COUNTER_MAX = (1 << 63) // 4096 - 1  # LONG_MAX / PAGE_SIZE
MAX_RECLAIM_RETRIES = 16
MEMCG_CHARGE_BATCH = 64
HZ = 1000
MEMCG_MAX_HIGH_DELAY_JIFFIES = 2 * HZ
MEMCG_DELAY_PRECISION_SHIFT = 20
MEMCG_DELAY_SCALING_SHIFT = 14
PAGE_SIZE = 4096
PAGE_ALLOC_COSTLY_ORDER = 3
MEMCG_DATA_KMEM = 2
SLAB_ACCOUNT = 1 << 15  # include/linux/slab.h (mm/slab.py)
SLAB_RECLAIM_ACCOUNT = 1 << 19
MEMCG_EVENTS = ("low", "high", "max", "oom", "oom_kill", "oom_group_kill", "sock_throttled")


class PageCounter:
    """``struct page_counter`` (pages)."""

    __slots__ = ("elow", "emin", "failcnt", "high", "low", "max", "min", "usage", "watermark")
    ktype = "page_counter"

    def __init__(self) -> None:
        self.usage = 0
        self.max = PAGE_COUNTER_MAX
        self.high = PAGE_COUNTER_MAX
        self.low = 0
        self.min = 0
        self.watermark = 0
        self.failcnt = 0
        self.emin = 0
        self.elow = 0


class ObjCgroup:
    """``struct obj_cgroup``: what kernel memory is charged through; survives its memcg's
    removal by pointing at the parent (``memcg_reparent_objcgs``).

    ``nr_pages`` is what the slab side charged in pages, ``stock`` its pre-charged bytes not
    used by live objects (the per-CPU obj_stock and ``nr_charged_bytes`` folded together).
    """

    __slots__ = ("memcg", "nr_pages", "stock")
    ktype = "obj_cgroup"
    is_objcg = True  # PageMemcgKmem for the page allocator

    def __init__(self, memcg: MemCgroup) -> None:
        self.memcg = memcg
        self.nr_pages = 0
        self.stock = 0

    def __repr__(self) -> str:
        return f"<obj_cgroup of {self.memcg.path}>"


class MemCgroup:
    """``struct mem_cgroup``."""

    ktype = "mem_cgroup"

    def __init__(self, m: Any, name: str, parent: MemCgroup | None) -> None:
        self.machine = m
        self.name = name
        self.parent = parent
        self.children: list[MemCgroup] = []
        self.path = "/" if parent is None else (parent.path.rstrip("/") + "/" + name)
        self.id = m.memcg.next_id
        m.memcg.next_id += 1
        self.memory = PageCounter()
        self.swap = PageCounter()
        self.kmem = PageCounter()
        self.events = dict.fromkeys(MEMCG_EVENTS, 0)  # hierarchical
        self.events_local = dict.fromkeys(MEMCG_EVENTS, 0)
        self.swap_events = {"high": 0, "max": 0, "fail": 0}
        self.lru_pages = [0] * NR_LRU_LISTS  # local
        self.kind_pages = [0, 0, 0]  # anon, file, shmem pages on this memcg's lists
        self.vmev: dict[str, int] = {}  # local vm events (memory.stat's counters)
        self.lruvecs = [Lruvec(pgdat, self) for pgdat in m.node_data]
        self.oom_group = 0
        self.oom_kill_disable = 0
        self.under_oom = 0
        self.swappiness = m.sysctl.get("vm.swappiness", 60)
        self.kernel_pages = 0  # MEMCG_KMEM (local)
        self.slab_bytes = [0, 0]  # NR_SLAB_RECLAIMABLE_B, NR_SLAB_UNRECLAIMABLE_B (local)
        self.objcg = ObjCgroup(self)
        self.objcg_list = [self.objcg]  # its own and those reparented to it
        m.memcg.objcgs.append(self.objcg)
        self.online = True

    def __repr__(self) -> str:
        return f"<mem_cgroup {self.path}>"

    def count_event(self, name: str, n: int) -> None:
        self.vmev[name] = self.vmev.get(name, 0) + n

    def subtree(self) -> list[MemCgroup]:
        """Pre-order walk (mem_cgroup_iter)."""
        out = [self]
        for c in self.children:
            out.extend(c.subtree())
        return out

    def ancestors(self) -> list[MemCgroup]:
        out = []
        c: MemCgroup | None = self
        while c is not None:
            out.append(c)
            c = c.parent
        return out

    def is_root(self) -> bool:
        return self.parent is None


class MemcgGlobals:
    def __init__(self) -> None:
        self.next_id = 1
        self.root: Any = None
        self.swap_cgroup: dict[tuple[int, int], MemCgroup] = {}  # swap entry -> memcg
        self.objcgs: list[ObjCgroup] = []  # every obj_cgroup ever made (for the checks)
        self.kmem_pages: dict[int, int] = {}  # pfn -> pages charged by __memcg_kmem_charge_page
        # slab_obj_exts: object address -> (objcg, obj_full_size, vmstat index)
        self.obj_exts: dict[int, tuple[ObjCgroup, int, int]] = {}


def mem_cgroup_init(m: Any) -> None:
    m.memcg = MemcgGlobals()
    m.memcg.root = MemCgroup(m, "", None)
    h = m.hooks
    h.memcg_kmem_charge = _h_kmem_charge
    h.memcg_kmem_uncharge = _h_kmem_uncharge
    h.memcg_slab_post_alloc_hook = _h_slab_post_alloc
    h.memcg_slab_free_hook = _h_slab_free


def root_mem_cgroup(m: Any) -> MemCgroup:
    return m.memcg.root


def task_memcg(m: Any, t: Any) -> MemCgroup:
    cg = getattr(t, "cgroup", None) if t is not None else None
    return cg if isinstance(cg, MemCgroup) and cg.online else m.memcg.root


def get_mem_cgroup_from_mm(m: Any, mm: Any) -> MemCgroup:
    cur = m.current
    if mm is None or (cur is not None and cur.mm is mm):
        return task_memcg(m, cur)
    for t in sorted(m.tasks.values(), key=lambda t: t.pid):
        if t.mm is mm:
            return task_memcg(m, t)
    return m.memcg.root


# -- cgroup directories -------------------------------------------------------------------------
def mem_cgroup_create(m: Any, path: str) -> MemCgroup:
    """mkdir /sys/fs/cgroup/PATH (parents must exist)."""
    import errno

    from mmdbg.sim.fs.vfs import KernelError

    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        raise KernelError(errno.EEXIST, "File exists")
    parent = m.memcg.root
    for p in parts[:-1]:
        nxt = next((c for c in parent.children if c.name == p), None)
        if nxt is None:
            raise KernelError(errno.ENOENT, "No such file or directory")
        parent = nxt
    if any(c.name == parts[-1] for c in parent.children) or parts[-1].startswith(
            ("cgroup.", "memory.")):
        raise KernelError(errno.EEXIST, "File exists")
    cg = MemCgroup(m, parts[-1], parent)
    cg.swappiness = parent.swappiness
    parent.children.append(cg)
    return cg


def mem_cgroup_lookup(m: Any, path: str) -> MemCgroup | None:
    cg = m.memcg.root
    for p in [p for p in path.strip("/").split("/") if p]:
        cg = next((c for c in cg.children if c.name == p), None)
        if cg is None:
            return None
    return cg


def mem_cgroup_remove(m: Any, path: str) -> None:
    """rmdir: only an empty cgroup (no tasks, no children) goes; its charges move up."""
    import errno

    from mmdbg.sim.fs.vfs import KernelError

    cg = mem_cgroup_lookup(m, path)
    if cg is None or cg.is_root():
        raise KernelError(errno.ENOENT if cg is None else errno.EBUSY)
    if cg.children or cgroup_tasks(m, cg):
        raise KernelError(errno.EBUSY, "Device or resource busy")
    cg.online = False
    # reparent the pages still charged (mem_cgroup_reparent / lru reparenting)
    from mmdbg.sim.mm import swap as lru

    parent = cg.parent
    for lv in cg.lruvecs:
        for lst in lv.lists:
            for pfn in list(lst):
                w = lru.lruvec_del_folio(m, pfn)
                m.mem_map.memcg_data[pfn] = parent
                lru.lruvec_add_folio(m, parent.lruvecs[lv.pgdat.node_id], pfn)
                _ = w
    for pfn, owner in list(m.mem_map.memcg_data.items()):
        if owner is cg:
            m.mem_map.memcg_data[pfn] = parent
    for k, v in list(m.memcg.swap_cgroup.items()):
        if v is cg:
            m.memcg.swap_cgroup[k] = parent
    memcg_reparent_objcgs(cg, parent)
    parent.memory.watermark = max(parent.memory.watermark, parent.memory.usage)
    cg.memory.usage = cg.swap.usage = cg.kmem.usage = 0
    parent.children.remove(cg)


def cgroup_tasks(m: Any, cg: MemCgroup) -> list[Any]:
    return [t for t in sorted(m.tasks.values(), key=lambda t: t.pid)
            if task_memcg(m, t) is cg and not t.is_kthread() and not t.exit_state]


def cgroup_attach_task(m: Any, cg: MemCgroup, pid: int) -> None:
    """echo PID > cgroup.procs: the whole thread group moves (charges stay, as in v2)."""
    import errno

    from mmdbg.sim.fs.vfs import KernelError

    t = m.tasks.get(pid)
    if t is None or t.exit_state:
        raise KernelError(errno.ESRCH, "No such process")
    if t.is_kthread():
        raise KernelError(errno.EINVAL)
    for x in list(m.tasks.values()):
        if x.tgid == t.tgid:
            x.cgroup = None if cg.is_root() else cg


# -- page counters ------------------------------------------------------------------------------
def page_counter_try_charge(counters: list[PageCounter], nr: int) -> PageCounter | None:
    """Charge every level or none; returns the counter that failed (None = success)."""
    done = []
    for c in counters:
        new = c.usage + nr
        if new > c.max:
            c.failcnt += 1
            for d in done:
                d.usage -= nr
            return c
        c.usage = new
        if new > c.watermark:
            c.watermark = new
        done.append(c)
    return None


def page_counter_charge(counters: list[PageCounter], nr: int) -> None:
    for c in counters:
        c.usage += nr
        if c.usage > c.watermark:
            c.watermark = c.usage


def page_counter_uncharge(counters: list[PageCounter], nr: int) -> None:
    for c in counters:
        c.usage -= nr


def mem_cgroup_margin(memcg: MemCgroup) -> int:
    return max(0, min(c.memory.max - c.memory.usage for c in memcg.ancestors()))


@kfunc
def memcg_memory_event(memcg: MemCgroup, event: str) -> None:
    memcg.events_local[event] += 1
    for c in memcg.ancestors():
        c.events[event] += 1
        if event in ("oom_kill", "oom_group_kill", "low", "max", "high", "oom") and \
                c is not memcg:
            pass


# -- charging -------------------------------------------------------------------------------------
@kfunc(aliases=("try_charge",))
def try_charge_memcg(memcg: MemCgroup, gfp_mask: int, nr_pages: int) -> int:
    """Charge ``nr_pages`` to ``memcg``: reclaim, then OOM, over memory.max. 0 or -ENOMEM."""
    if memcg.parent is None:  # the root: no limit (page_counter_charge, inlined)
        c = memcg.memory
        usage = c.usage + nr_pages
        c.usage = usage
        if usage > c.watermark:
            c.watermark = usage
        return 0
    from mmdbg.sim.kernel.signal import fatal_signal_pending
    from mmdbg.sim.mm import vmscan

    m = current_machine()
    nr_retries = MAX_RECLAIM_RETRIES
    passed_oom = False
    chain = [c.memory for c in memcg.ancestors()]
    while True:
        failed = page_counter_try_charge(chain, nr_pages)
        if failed is None:
            break
        over = next(c for c in memcg.ancestors() if c.memory is failed)
        if not gfp_mask & __GFP_DIRECT_RECLAIM:  # !gfpflags_allow_blocking()
            return _nomem(m, memcg, gfp_mask, nr_pages, chain, over)
        memcg_memory_event(over, "max")
        reclaimed = vmscan.try_to_free_mem_cgroup_pages(over, nr_pages, gfp_mask, True)
        if mem_cgroup_margin(over) >= nr_pages:
            continue
        if gfp_mask & __GFP_NORETRY:
            return _nomem(m, memcg, gfp_mask, nr_pages, chain, None)
        if reclaimed and nr_retries > 0:
            nr_retries -= 1
            continue
        if nr_retries > 0:
            nr_retries -= 1
            continue
        if gfp_mask & __GFP_RETRY_MAYFAIL:
            return _nomem(m, memcg, gfp_mask, nr_pages, chain, None)
        cur = m.current
        if passed_oom and cur is not None and fatal_signal_pending(cur):
            return _nomem(m, memcg, gfp_mask, nr_pages, chain, None)
        if mem_cgroup_oom(over, gfp_mask, get_order(nr_pages)):
            passed_oom = True
            nr_retries = MAX_RECLAIM_RETRIES
            continue
        return _nomem(m, memcg, gfp_mask, nr_pages, chain, None)
    # over memory.high: reclaim and throttle on the way back to user space
    if any(c.memory.usage > c.memory.high for c in memcg.ancestors()):
        for c in memcg.ancestors():
            if c.memory.usage > c.memory.high:
                memcg_memory_event(c, "high")
        t = m.current
        if t is not None and not t.is_kthread():
            t.memcg_nr_pages_over_high = getattr(t, "memcg_nr_pages_over_high", 0) + nr_pages
            if t.memcg_nr_pages_over_high > MEMCG_CHARGE_BATCH:
                mem_cgroup_handle_over_high(gfp_mask)
    return 0


def get_order(nr_pages: int) -> int:
    """get_order(nr_pages * PAGE_SIZE)."""
    return max(0, (nr_pages - 1).bit_length())


def _nomem(m: Any, memcg: MemCgroup, gfp_mask: int, nr_pages: int, chain: list,
           unraised: MemCgroup | None) -> int:
    """nomem/force: __GFP_NOFAIL and __GFP_HIGH (atomic) charges go over the limit."""
    if not gfp_mask & (__GFP_NOFAIL | __GFP_HIGH):
        return -12
    if unraised is not None:  # the MEMCG_MAX event not raised yet (no reclaim was tried)
        memcg_memory_event(unraised, "max")
    page_counter_charge(chain, nr_pages)
    return 0


def calculate_overage(usage: int, high: int) -> int:
    if usage <= high:
        return 0
    high = max(high, 1)
    return ((usage - high) << MEMCG_DELAY_PRECISION_SHIFT) // high


def calculate_high_delay(memcg: MemCgroup, nr_pages: int) -> int:
    """The penalty in jiffies for ``nr_pages`` charged over memory.high (quadratic)."""
    max_overage = 0
    for c in memcg.ancestors():
        max_overage = max(max_overage, calculate_overage(c.memory.usage, c.memory.high))
    if not max_overage:
        return 0
    penalty = max_overage * max_overage * HZ
    penalty >>= MEMCG_DELAY_PRECISION_SHIFT + MEMCG_DELAY_SCALING_SHIFT
    penalty = penalty * nr_pages // MEMCG_CHARGE_BATCH
    return min(penalty, MEMCG_MAX_HIGH_DELAY_JIFFIES)


@kfunc
def mem_cgroup_handle_over_high(gfp_mask: int) -> int:
    """Reclaim what is over memory.high, then sleep the penalty; returns the sleep in ns."""
    from mmdbg.sim.kernel.sched_core import io_schedule_timeout
    from mmdbg.sim.mm import vmscan

    m = current_machine()
    t = m.current
    nr_pages = getattr(t, "memcg_nr_pages_over_high", 0)
    if not nr_pages:
        return 0
    t.memcg_nr_pages_over_high = 0
    memcg = task_memcg(m, t)
    for c in memcg.ancestors():
        if c.memory.usage > c.memory.high:
            vmscan.try_to_free_mem_cgroup_pages(c, c.memory.usage - c.memory.high, gfp_mask,
                                                True)
    penalty = calculate_high_delay(memcg, nr_pages)
    if penalty <= HZ // 100:
        return 0
    ns = penalty * 1_000_000
    t.memcg_high_delay_ns = getattr(t, "memcg_high_delay_ns", 0) + ns
    io_schedule_timeout(m, ns)
    return ns


@kfunc(aliases=("__mem_cgroup_charge", "charge_memcg"))
def mem_cgroup_charge(folio: int, mm: Any, gfp: int) -> int:
    """Charge a new user page to the cgroup of ``mm`` (current's for page cache)."""
    m = current_machine()
    memcg = m.memcg.root
    if memcg.children:  # with only the root cgroup every task is in it
        memcg = get_mem_cgroup_from_mm(m, mm)
    ret = try_charge_memcg(memcg, gfp, 1)
    if ret:
        return ret
    m.mem_map.memcg_data[folio] = memcg  # commit_charge
    vmev = memcg.vmev  # count_event("pgpgin", 1)
    vmev["pgpgin"] = vmev.get("pgpgin", 0) + 1
    return 0


def vm_mem_cgroup_charge(folio: int, mm: Any, gfp: int) -> bool:
    """The ``vm.hooks.mem_cgroup_charge`` shape: True when charged."""
    return mem_cgroup_charge(folio, mm, gfp) == 0


@kfunc(aliases=("__mem_cgroup_uncharge",))
def mem_cgroup_uncharge(folio: int) -> None:
    m = current_machine()
    memcg = m.mem_map.memcg_data.pop(folio, None)
    if memcg is None:
        return
    c = memcg  # page_counter_uncharge up the hierarchy
    while c is not None:
        c.memory.usage -= 1
        c = c.parent
    vmev = memcg.vmev  # count_event("pgpgout", 1)
    vmev["pgpgout"] = vmev.get("pgpgout", 0) + 1


def mem_cgroup_swapin_charge_folio(folio: int, mm: Any, gfp: int, entry: tuple[int, int]) -> int:
    """Swap-in charges the cgroup that owned the swap slot (if still online)."""
    m = current_machine()
    memcg = m.memcg.swap_cgroup.get(entry)
    if memcg is None or not memcg.online:
        memcg = get_mem_cgroup_from_mm(m, mm)
    ret = try_charge_memcg(memcg, gfp, 1)
    if ret:
        return ret
    m.mem_map.memcg_data[folio] = memcg
    memcg.count_event("pgpgin", 1)
    return 0


# -- kernel memory (__GFP_ACCOUNT) -----------------------------------------------------------------
def current_obj_cgroup(m: Any) -> ObjCgroup | None:
    """The objcg kernel memory of ``current`` is charged to: None for the root cgroup and
    kthreads (without ``set_active_memcg``)."""
    t = m.current
    if t is None:
        return None
    memcg = getattr(t, "active_memcg", None)
    if memcg is None:
        if t.mm is None or t.is_kthread():
            return None
        memcg = task_memcg(m, t)
    while memcg is not None and not memcg.is_root():
        if memcg.online:
            return memcg.objcg
        memcg = memcg.parent
    return None


def memcg_account_kmem(memcg: MemCgroup, nr_pages: int) -> None:
    """MEMCG_KMEM, and the v1 ``kmem`` page counter up the hierarchy."""
    memcg.kernel_pages += nr_pages
    c: MemCgroup | None = memcg
    while c is not None:
        k = c.kmem
        k.usage += nr_pages
        if k.usage > k.watermark:
            k.watermark = k.usage
        c = c.parent


@kfunc
def obj_cgroup_charge_pages(objcg: ObjCgroup, gfp: int, nr_pages: int) -> int:
    memcg = objcg.memcg
    ret = try_charge_memcg(memcg, gfp, nr_pages)
    if ret:
        return ret
    memcg_account_kmem(memcg, nr_pages)
    return 0


@kfunc
def obj_cgroup_uncharge_pages(objcg: ObjCgroup, nr_pages: int) -> None:
    memcg = objcg.memcg
    memcg_account_kmem(memcg, -nr_pages)
    c: MemCgroup | None = memcg  # refill_stock -> page_counter_uncharge
    while c is not None:
        c.memory.usage -= nr_pages
        c = c.parent


@kfunc(aliases=("memcg_kmem_charge_page",))
def __memcg_kmem_charge_page(page: int, gfp: int, order: int) -> int:
    """Charge an __GFP_ACCOUNT page allocation: 0 or -ENOMEM (the page is then freed)."""
    m = current_machine()
    objcg = current_obj_cgroup(m)
    if objcg is None:
        return 0
    nr = 1 << order
    ret = obj_cgroup_charge_pages(objcg, gfp, nr)
    if ret:
        return ret
    m.mem_map.memcg_data[page] = objcg  # objcg | MEMCG_DATA_KMEM
    m.memcg.kmem_pages[page] = nr
    return 0


@kfunc(aliases=("memcg_kmem_uncharge_page",))
def __memcg_kmem_uncharge_page(page: int, order: int) -> None:
    m = current_machine()
    objcg = m.mem_map.memcg_data.get(page)
    if not isinstance(objcg, ObjCgroup):  # !folio_memcg_kmem()
        return
    nr = m.memcg.kmem_pages.pop(page, 1 << order)
    obj_cgroup_uncharge_pages(objcg, nr)
    del m.mem_map.memcg_data[page]


def _h_kmem_charge(pfn: int, gfp: int, order: int) -> bool:
    return __memcg_kmem_charge_page(pfn, gfp, order) == 0


def _h_kmem_uncharge(pfn: int, order: int) -> None:
    __memcg_kmem_uncharge_page(pfn, order)


def obj_full_size(s: Any) -> int:
    """What one object costs its cgroup: the slot and the objcg pointer in slab_obj_exts."""
    return s.size + 8


def cache_vmstat_idx(s: Any) -> int:
    """0: NR_SLAB_RECLAIMABLE_B, 1: NR_SLAB_UNRECLAIMABLE_B."""
    return 0 if s.flags & SLAB_RECLAIM_ACCOUNT else 1


@kfunc(aliases=("refill_obj_stock",))
def obj_cgroup_refill(objcg: ObjCgroup, nr_bytes: int, allow_uncharge: bool) -> None:
    objcg.stock += nr_bytes
    if allow_uncharge and objcg.stock > PAGE_SIZE:
        nr_pages = objcg.stock >> 12
        objcg.stock &= PAGE_SIZE - 1
        objcg.nr_pages -= nr_pages
        obj_cgroup_uncharge_pages(objcg, nr_pages)


@kfunc
def obj_cgroup_charge(objcg: ObjCgroup, gfp: int, size: int) -> int:
    """Charge ``size`` bytes: from the pre-charged bytes, else whole pages (the rest kept)."""
    if objcg.stock >= size:  # consume_obj_stock
        objcg.stock -= size
        return 0
    nr_pages = size >> 12
    nr_bytes = size & (PAGE_SIZE - 1)
    if nr_bytes:
        nr_pages += 1
    ret = obj_cgroup_charge_pages(objcg, gfp, nr_pages)
    if ret:
        return ret
    objcg.nr_pages += nr_pages
    if nr_bytes:
        obj_cgroup_refill(objcg, PAGE_SIZE - nr_bytes, False)
    return 0


@kfunc
def obj_cgroup_uncharge(objcg: ObjCgroup, size: int) -> None:
    obj_cgroup_refill(objcg, size, True)


def mod_objcg_state(objcg: ObjCgroup, idx: int, nr: int) -> None:
    objcg.memcg.slab_bytes[idx] += nr


@kfunc(aliases=("memcg_slab_post_alloc_hook",))
def __memcg_slab_post_alloc_hook(s: Any, flags: int, obj: int) -> bool:
    """Charge one new object of an accounted allocation; False fails the allocation."""
    m = s.machine
    objcg = current_obj_cgroup(m)
    if objcg is None:
        return True
    size = obj_full_size(s)
    if obj_cgroup_charge(objcg, flags, size):
        return False
    if not s.flags & SLAB_ACCOUNT and not m.slab_hooked:
        # an __GFP_ACCOUNT object in an unaccounted cache: kfree must see it from now on
        from mmdbg.sim.mm import slab_common

        slab_common.set_hooked(m, True)
    idx = cache_vmstat_idx(s)
    m.memcg.obj_exts[obj] = (objcg, size, idx)
    mod_objcg_state(objcg, idx, size)
    return True


@kfunc(aliases=("memcg_slab_free_hook",))
def __memcg_slab_free_hook(s: Any, obj: int) -> None:
    m = s.machine
    ext = m.memcg.obj_exts.pop(obj, None)
    if ext is None:
        return
    objcg, size, idx = ext
    obj_cgroup_uncharge(objcg, size)
    mod_objcg_state(objcg, idx, -size)


def _h_slab_post_alloc(s: Any, flags: int, obj: int) -> bool:
    return __memcg_slab_post_alloc_hook(s, flags, obj)


def _h_slab_free(s: Any, obj: int) -> None:
    __memcg_slab_free_hook(s, obj)


def memcg_reparent_objcgs(memcg: MemCgroup, parent: MemCgroup) -> None:
    """rmdir: the cgroup's objcgs (and their kernel memory statistics) move to the parent."""
    for objcg in memcg.objcg_list:
        objcg.memcg = parent
    parent.objcg_list.extend(memcg.objcg_list)
    memcg.objcg_list = []
    parent.kernel_pages += memcg.kernel_pages
    memcg.kernel_pages = 0
    for i in (0, 1):
        parent.slab_bytes[i] += memcg.slab_bytes[i]
        memcg.slab_bytes[i] = 0


def memcg_kmem_state(m: Any, memcg: MemCgroup) -> dict[str, int]:
    """Hierarchical kernel-memory statistics in bytes for memory.stat."""
    from mmdbg.sim.mm import page_flags as pf

    sub = memcg.subtree()
    ids = {id(c) for c in sub}
    pagetables = 0
    mc = m.mem_map._mapcount
    data = m.mem_map.memcg_data
    for pfn, nr in m.memcg.kmem_pages.items():
        objcg = data.get(pfn)
        if objcg is not None and id(objcg.memcg) in ids and \
                pf.page_type_of(mc[pfn]) == pf.PGTY_table:
            pagetables += nr
    return {"kernel": sum(c.kernel_pages for c in sub) * PAGE_SIZE,
            "pagetables": pagetables * PAGE_SIZE,
            "slab_reclaimable": sum(c.slab_bytes[0] for c in sub),
            "slab_unreclaimable": sum(c.slab_bytes[1] for c in sub)}


# -- swap charging --------------------------------------------------------------------------------
@kfunc(aliases=("__mem_cgroup_try_charge_swap",))
def mem_cgroup_try_charge_swap(folio: int, entry: tuple[int, int]) -> int:
    m = current_machine()
    memcg = m.mem_map.memcg_data.get(folio) or m.memcg.root
    if not memcg.is_root():
        failed = page_counter_try_charge([c.swap for c in memcg.ancestors()], 1)
        if failed is not None:
            over = next(c for c in memcg.ancestors() if c.swap is failed)
            over.swap_events["max"] += 1
            over.swap_events["fail"] += 1
            return -12
    else:
        c = memcg.swap  # page_counter_charge, inlined
        c.usage += 1
        if c.usage > c.watermark:
            c.watermark = c.usage
    m.memcg.swap_cgroup[entry] = memcg
    return 0


@kfunc(aliases=("__mem_cgroup_uncharge_swap",))
def mem_cgroup_uncharge_swap(entry: tuple[int, int]) -> None:
    m = current_machine()
    memcg = m.memcg.swap_cgroup.pop(entry, None)
    while memcg is not None:  # page_counter_uncharge up the hierarchy
        memcg.swap.usage -= 1
        memcg = memcg.parent


def mem_cgroup_get_nr_swap_pages(m: Any, memcg: MemCgroup) -> int:
    nr = int(getattr(m, "nr_swap_pages", 0))
    for c in memcg.ancestors():
        if not c.is_root():
            nr = min(nr, c.swap.max - c.swap.usage)
    return max(nr, 0)


def mem_cgroup_swap_full(m: Any, memcg: MemCgroup) -> bool:
    total = int(getattr(m, "total_swap_pages", 0))
    if int(getattr(m, "nr_swap_pages", 0)) * 2 < total:
        return True
    if memcg.parent is None:  # only the root: no swap.max to check
        return False
    for c in memcg.ancestors():
        if not c.is_root() and c.swap.max < PAGE_COUNTER_MAX and c.swap.usage * 2 >= c.swap.max:
            return True
    return False


def mem_cgroup_get_max(m: Any, memcg: MemCgroup) -> int:
    """totalpages of a memcg OOM: memory.max + (swap limit if swappiness)."""
    mx = memcg.memory.max
    if memcg.swappiness:
        swap = min(memcg.swap.max, int(getattr(m, "total_swap_pages", 0)))
        mx += swap
    return mx


# -- protection -----------------------------------------------------------------------------------
def effective_protection(usage: int, parent_usage: int, setting: int, parent_effective: int,
                         siblings_protected: int) -> int:
    """mm/page_counter.c: protection a cgroup really gets given its siblings' claims."""
    protected = min(usage, setting)
    if siblings_protected > parent_effective:
        return protected * parent_effective // siblings_protected
    return protected


@kfunc(aliases=("page_counter_calculate_protection",))
def mem_cgroup_calculate_protection(root: MemCgroup | None, memcg: MemCgroup) -> None:
    """Set memcg.memory.emin/elow for a reclaim rooted at ``root`` (global: the root)."""
    c = memcg.memory
    if root is None or memcg is root:
        c.emin = c.elow = 0
        return
    parent = memcg.parent
    if parent is root or parent is None:
        c.emin = c.min
        c.elow = c.low
        return
    pc = parent.memory
    sib_min = sum(min(s.memory.usage, s.memory.min) for s in parent.children)
    sib_low = sum(min(s.memory.usage, s.memory.low) for s in parent.children)
    c.emin = effective_protection(c.usage, pc.usage, c.min, pc.emin, sib_min)
    c.elow = effective_protection(c.usage, pc.usage, c.low, pc.elow, sib_low)


def mem_cgroup_below_min(root: MemCgroup, memcg: MemCgroup) -> bool:
    return memcg is not root and memcg.memory.usage <= memcg.memory.emin


def mem_cgroup_below_low(root: MemCgroup, memcg: MemCgroup) -> bool:
    return memcg is not root and memcg.memory.usage <= memcg.memory.elow


def effective_protections(m: Any, root: MemCgroup | None = None) -> dict[str, tuple[int, int]]:
    """Path -> (emin, elow) in pages for the whole tree (pre-order), for tests and the shell."""
    root = root or m.memcg.root
    out = {}
    for cg in root.subtree():
        mem_cgroup_calculate_protection(root, cg)
        out[cg.path] = (cg.memory.emin, cg.memory.elow)
    return out


# -- OOM ------------------------------------------------------------------------------------------
@kfunc
def mem_cgroup_oom(memcg: MemCgroup, gfp_mask: int, order: int) -> bool:
    """The memcg is at memory.max and reclaim failed: kill something inside it."""
    from mmdbg.sim.mm import oom_kill

    if order > 3:
        return False
    memcg_memory_event(memcg, "oom")
    if memcg.oom_kill_disable:
        memcg.under_oom = 1
        return False
    return oom_kill.mem_cgroup_out_of_memory(memcg, gfp_mask, order)


def mem_cgroup_get_oom_group(m: Any, victim: Any, oom_domain: MemCgroup | None) -> MemCgroup | None:
    """The highest ancestor (up to the OOM domain) with memory.oom.group set."""
    memcg = task_memcg(m, victim)
    if oom_domain is None:
        oom_domain = m.memcg.root
    if memcg is m.memcg.root:
        return None
    found = None
    c: MemCgroup | None = memcg
    while c is not None:
        if c.oom_group:
            found = c
        if c is oom_domain:
            break
        c = c.parent
    return found


# -- statistics -----------------------------------------------------------------------------------
def memcg_page_state(m: Any, memcg: MemCgroup) -> dict[str, int]:
    """Hierarchical page counts (pages) for memory.stat, recounted from the lruvecs."""
    from mmdbg.sim.mm import page_flags as pf

    flags = m.mem_map.flags
    mc = m.mem_map._mapcount
    dirty = 1 << pf.PG_dirty
    wb = 1 << pf.PG_writeback
    swapcache = 1 << pf.PG_swapcache
    out = dict.fromkeys(("anon", "file", "shmem", "file_mapped", "file_dirty", "file_writeback",
                         "swapcached", "inactive_anon", "active_anon", "inactive_file",
                         "active_file", "unevictable"), 0)
    for cg in memcg.subtree():
        for i, name in enumerate(("inactive_anon", "active_anon", "inactive_file",
                                  "active_file", "unevictable")):
            out[name] += cg.lru_pages[i]
        out["anon"] += cg.kind_pages[KIND_ANON]
        out["shmem"] += cg.kind_pages[KIND_SHMEM]
        out["file"] += cg.kind_pages[KIND_FILE] + cg.kind_pages[KIND_SHMEM]
        for lv in cg.lruvecs:
            for lst in lv.lists:
                for pfn in lst:
                    f = flags[pfn]
                    if f & swapcache:
                        out["swapcached"] += 1
                        continue
                    kind = m.lru_where[pfn][2]
                    if kind == KIND_ANON:
                        continue
                    if mc[pfn] >= 0:
                        out["file_mapped"] += 1
                    if f & dirty and kind == KIND_FILE:
                        out["file_dirty"] += 1
                    if f & wb:
                        out["file_writeback"] += 1
    # swap-cache pages are counted in "anon" by the kernel only while mapped; keep it simple
    out["anon"] -= 0
    return out


def memcg_events(memcg: MemCgroup) -> dict[str, int]:
    out: dict[str, int] = {}
    for cg in memcg.subtree():
        for k, v in cg.vmev.items():
            out[k] = out.get(k, 0) + v
    return out


_ = KIND_FILE
