"""The simulated machine: boot, the kernel's global state, and the Python API.

``boot(cmdline, seed)`` builds a :class:`Machine` the way ``start_kernel`` does for memory:
e820 -> memblock -> NUMA nodes and zones -> ``mem_map`` -> ``memblock_free_all`` ->
watermarks and per-CPU lists -> zonelists; then the boot log is in ``dmesg``.

The machine owns everything the kernel keeps in globals (``node_data``, ``vm_events``,
sysctls, the printk buffer, the clock, the one seeded RNG).  Kernel functions in ``sim/`` find
it through ``trace.current_machine()``; :meth:`Machine.activate` makes a machine current, and
every public method here does so first, so several machines can live in one process.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from mmdbg.sim import trace
from mmdbg.sim.arch.x86 import e820
from mmdbg.sim.config import MachineConfig, parse_cmdline
from mmdbg.sim.include.gfp import MAX_NR_ZONES
from mmdbg.sim.kernel.printk import KERN_INFO, KERN_WARNING, PrintkBuffer
from mmdbg.sim.kernel.sched import PF_IDLE, PF_KTHREAD, TaskStruct
from mmdbg.sim.kernel.time import Clock
from mmdbg.sim.kernel.timer import TimerBase
from mmdbg.sim.mm import (
    mm_init,
    page_alloc,
    slab_params,  # noqa: F401  (registers slab/KASAN boot parameters)
    vmstat,
    zswap,  # noqa: F401  (registers the zswap.* boot parameters)
)
from mmdbg.sim.mm.memblock import KERNEL_END, KERNEL_START, SZ_1M, Memblock
from mmdbg.sim.mm.mm_types import (
    PAGEBLOCK_ORDER,
    STRUCT_PAGE_SIZE,
    MemMap,
    Page,
    pfn_to_page_addr,
)
from mmdbg.sim.mm.mmzone import LOWMEM_RESERVE_RATIO_DEFAULT, PglistData, Zone
from mmdbg.sim.mm.physmem import PhysMem

UTS_RELEASE = "6.18.0-mmdbg"
LINUX_BANNER = (f"Linux version {UTS_RELEASE} (mmdbg@sim) (gcc (Debian 12.2.0-14) 12.2.0, "
                "GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC")
HARDWARE_NAME = "mmdbg simulated PC (x86_64), BIOS 1.16.3-debian 04/01/2014"
PERCPU_UNIT = 256 << 10

SYSCTL_DEFAULTS: dict[str, int] = {
    "vm.min_free_kbytes": 0,
    "vm.watermark_scale_factor": 10,
    "vm.watermark_boost_factor": 15000,
    "vm.percpu_pagelist_high_fraction": 0,
    "vm.overcommit_memory": 0,
    "vm.overcommit_ratio": 50,
    "vm.overcommit_kbytes": 0,
    "vm.swappiness": 60,
    "vm.vfs_cache_pressure": 100,
    "vm.dirty_background_ratio": 10,
    "vm.dirty_ratio": 20,
    "vm.dirty_background_bytes": 0,
    "vm.dirty_bytes": 0,
    "vm.dirty_expire_centisecs": 3000,
    "vm.dirty_writeback_centisecs": 500,
    "vm.panic_on_oom": 0,
    "vm.oom_kill_allocating_task": 0,
    "vm.oom_dump_tasks": 1,
    "vm.page-cluster": 3,
    "vm.drop_caches": 0,
    "vm.compaction_proactiveness": 20,
    "vm.extfrag_threshold": 500,
    "vm.zone_reclaim_mode": 0,
    "vm.admin_reserve_kbytes": 8192,
    "vm.user_reserve_kbytes": 131072,
    "vm.stat_interval": 1,
    "vm.max_map_count": 65530,
    "vm.mmap_min_addr": 65536,
}


class Machine:
    """A booted simulated x86_64 machine with a Linux memory manager."""

    def __init__(self, config: MachineConfig, seed: int = 0) -> None:
        self.config = config
        self.seed = seed
        self.rng = random.Random(seed)
        self.clock = Clock()
        self.log = PrintkBuffer(self.clock)
        self.ncpus = config.cpus
        self.cpu = 0
        self.taints: set[str] = set()
        self.bad_pages = 0
        self.warnings = 0
        self.hooks = page_alloc.AllocHooks()
        self.ac_cache: dict = {}
        self.cma_enabled = False
        self.gfp_allowed_mask = (1 << 25) - 1
        self.physmem = PhysMem()
        self.sysctl: dict[str, int] = dict(SYSCTL_DEFAULTS)
        self.sysctl["vm.watermark_scale_factor"] = config.watermark_scale_factor
        self.lowmem_reserve_ratio = list(LOWMEM_RESERVE_RATIO_DEFAULT)
        self.totalreserve_pages = 0
        self.vm_events = [0] * len(vmstat.VM_EVENT_ITEMS)
        self.global_stat = [0] * len(vmstat.GLOBAL_STAT_ITEMS)
        self.node_data: list[PglistData] = []
        self.zones: list[Zone] = []
        self.cpu_to_node = [0] * self.ncpus
        self.idle_tasks: list[TaskStruct] = []
        self.cpu_curr: list[TaskStruct] = []
        self.tasks: dict[int, TaskStruct] = {}
        self.stop_requested = False
        self.console: list[str] = []  # what simulated programs wrote to their terminal
        self.stop_reason = ""  # why (request_stop), and where: self.stop_where
        self.stop_where = ""
        self.timer_base = TimerBase(self)  # kernel/timer.py: add_timer()
        self.vfs: Any = None
        self.vm: Any = None  # processes and VM globals (kernel/vm_init.py)
        self._boot()

    # -- boot --------------------------------------------------------------------------
    def _boot(self) -> None:
        self.activate()
        cfg = self.config
        self.printk(LINUX_BANNER)
        self.printk(f"Command line: {cfg.cmdline}")
        self.e820 = e820.e820_table(cfg.mem)
        self.printk("BIOS-provided physical RAM map:")
        for line in e820.e820_print(self.e820):
            self.printk(line)
        ram = e820.ram_ranges(self.e820)
        self.ram_ranges = ram
        max_pfn = ram[-1][1]
        # keep whole pageblocks in the memmap
        max_pfn = (max_pfn + (1 << PAGEBLOCK_ORDER) - 1) >> PAGEBLOCK_ORDER << PAGEBLOCK_ORDER
        self.max_pfn = ram[-1][1]
        self.printk(f"last_pfn = 0x{self.max_pfn:x} max_arch_pfn = 0x400000000")
        mb = Memblock()
        for s, e in ram:
            mb.add(s << 12, (e - s) << 12)
        mb.reserve(0, SZ_1M, "low 1M")
        mb.reserve(KERNEL_START, KERNEL_END - KERNEL_START, "kernel image")
        self.memblock = mb
        node_ranges = mm_init.split_nodes(ram, cfg.numa_nodes)
        if cfg.numa_nodes > 1:
            for nid, (s, e) in enumerate(node_ranges):
                self.printk(f"Faking node {nid} at [mem 0x{s << 12:016x}-0x{(e << 12) - 1:016x}]"
                            f" ({((e - s) << 12) >> 20}MB)")
        for cpu in range(self.ncpus):
            self.cpu_to_node[cpu] = cpu % cfg.numa_nodes
        self.mem_map = MemMap(max_pfn)
        mm_init.free_area_init(self, ram, node_ranges)
        for line in mm_init.zone_ranges_lines(self):
            self.printk(line)
        for pgdat in self.node_data:
            s, e = pgdat.node_start_pfn, pgdat.node_start_pfn + pgdat.node_spanned_pages
            self.printk(f"  node   {pgdat.node_id}: [mem 0x{s << 12:016x}-0x{(e << 12) - 1:016x}]")
            # the node's struct pages come from memblock, top-down inside the node
            size = (pgdat.node_spanned_pages * STRUCT_PAGE_SIZE + 0xFFF) & ~0xFFF
            mb.alloc_top_down(size, s << 12, e << 12, f"memmap node {pgdat.node_id}",
                              align=1 << 21 if size >= 1 << 21 else 4096)
        mb.alloc_top_down(self.ncpus * PERCPU_UNIT, node_ranges[0][0] << 12,
                          node_ranges[0][1] << 12, "percpu")
        self.percpu_bytes = self.ncpus * PERCPU_UNIT
        mm_init.memmap_init(self)
        freed = mm_init.memblock_free_all(self)
        self.totalram_pages = freed
        mm_init.build_all_zonelists(self)
        page_alloc.init_per_zone_wmark_min(self)
        nz = len(self.node_data)
        self.printk(f"Built {nz} zonelists, mobility grouping on.  Total pages: {freed}")
        physpages = sum(e - s for s, e in ram)
        reserved_k = (physpages - freed) * 4
        code = (0x02276F48 - KERNEL_START) >> 10
        rodata = (0x02E0D000 - 0x02400000) >> 10
        rwdata = (0x0327C180 - 0x03000000) >> 10
        bss = (0x03C56000 - 0x03B32000) >> 10
        self.printk(f"Memory: {freed * 4}K/{physpages * 4}K available ({code}K kernel code, "
                    f"{rwdata}K rwdata, {rodata}K rodata, 0K init, {bss}K bss, "
                    f"{reserved_k}K reserved, 0K cma-reserved)")
        for cpu in range(self.ncpus):
            t = TaskStruct(0, f"swapper/{cpu}", flags=PF_IDLE | PF_KTHREAD)
            t.cpu = cpu
            self.idle_tasks.append(t)
        self.cpu_curr = list(self.idle_tasks)
        self.printk(f"smp: Brought up {nz} node{'s' if nz > 1 else ''}, {self.ncpus} CPU"
                    f"{'s' if self.ncpus > 1 else ''}")
        from mmdbg.sim.mm import slab_common  # issue 6: SLUB, kmalloc, vmalloc, KASAN ...

        slab_common.kmem_cache_init(self)
        from mmdbg.sim.kernel import vm_init  # issue 3: processes, address spaces, scheduler

        vm_init.vm_init(self)
        from mmdbg.sim.mm import init_mm  # mm/init-mm.c: init_mm and swapper_pg_dir

        init_mm.init_mm_init(self)
        from mmdbg.sim.mm import kmemleak  # late_initcall: the kmemleak scan thread

        kmemleak.kmemleak_late_init(self)
        self.vm.kobj_slab = True  # tasks, mms, VMAs, anon_vmas from now on come from slab
        from mmdbg.sim.fs import vfs  # late: procfs renderers import the machine's subsystems

        self.vfs = vfs.build_vfs(self)

    # -- identity and context ----------------------------------------------------------
    def activate(self) -> Machine:
        """Make this machine the one whose kernel code runs (trace.current_machine())."""
        trace.set_current_machine(self)
        return self

    @property
    def current(self) -> TaskStruct:
        return self.cpu_curr[self.cpu] if self.cpu_curr else None  # type: ignore[return-value]

    def smp_processor_id(self) -> int:
        return self.cpu

    def numa_node_id(self) -> int:
        return self.cpu_to_node[self.cpu]

    # -- memory lookup -----------------------------------------------------------------
    def pfn_zone(self, pfn: int) -> Zone | None:
        """page_zone(): the zone whose span holds ``pfn`` (None outside every zone)."""
        b = pfn >> PAGEBLOCK_ORDER
        if pfn < 0 or b >= len(self.zone_of_block):
            return None
        i = self.zone_of_block[b]
        return self.zones[i] if i >= 0 else None

    def page(self, pfn: int) -> Page:
        return Page(self.mem_map, pfn)

    def pfn_valid(self, pfn: int) -> bool:
        return 0 <= pfn < self.mem_map.max_pfn

    def page_is_ram(self, pfn: int) -> bool:
        return any(s <= pfn < e for s, e in self.ram_ranges)

    def NODE_DATA(self, nid: int) -> PglistData:
        return self.node_data[nid]

    def populated_zones(self) -> list[Zone]:
        return [z for z in self.zones if z.present_pages]

    def global_zone_page_state(self, item: int) -> int:
        return sum(z.vm_stat[item] for z in self.zones)

    def global_node_page_state(self, item: int) -> int:
        return sum(n.vm_stat[item] for n in self.node_data)

    def nr_free_pages(self) -> int:
        return self.global_zone_page_state(vmstat.NR_FREE_PAGES)

    def free_pcp_pages(self) -> int:
        return sum(p.count for z in self.zones for p in z.per_cpu_pageset)

    # -- Python API: allocation --------------------------------------------------------
    def alloc_pages(self, gfp: int | str, order: int = 0, nid: int | None = None) -> int | None:
        """Allocate through the kernel path; returns the first pfn or None."""
        from mmdbg.sim.include.gfp import parse_gfp

        self.activate()
        mask = parse_gfp(gfp) if isinstance(gfp, str) else gfp
        if nid is None:
            return page_alloc.alloc_pages(mask, order)
        return _k_alloc_pages(mask, order, nid)

    def free_pages(self, pfn: int, order: int = 0) -> None:
        self.activate()
        _k_free_pages(pfn, order)

    def drain_all_pages(self) -> None:
        self.activate()
        page_alloc.drain_all_pages(self, None)

    # -- printk and reports ------------------------------------------------------------
    def printk(self, text: str, level: int = KERN_INFO) -> None:
        self.log.printk(text, level)

    def log_lines(self) -> list[str]:
        return self.log.lines()

    def dmesg(self) -> str:
        return self.log.text()

    def add_taint(self, flag: str) -> None:
        self.taints.add(flag)

    def taint_string(self) -> str:
        if not self.taints:
            return "Not tainted"
        return "Tainted: " + "".join(sorted(self.taints))

    def dump_stack(self, skip_innermost: int = 0) -> None:
        """dump_stack(): the CPU/task line, Hardware name and the kernel Call Trace."""
        t = self.current
        uid = t.uid if t is not None else 0
        self.printk(f"CPU: {self.cpu} UID: {uid} PID: {t.pid} Comm: {t.comm[:20]} "
                    f"{self.taint_string()} {UTS_RELEASE} #1 PREEMPT(voluntary) ",
                    level=KERN_WARNING)
        self.printk(f"Hardware name: {HARDWARE_NAME}", level=KERN_WARNING)
        self.printk("Call Trace:", level=KERN_WARNING)
        self.printk(" <TASK>", level=KERN_WARNING)
        self.printk(" dump_stack_lvl+0x5d/0x80", level=KERN_WARNING)
        for fr in trace.kframes()[skip_innermost:]:
            self.printk(f" {fr.kf.name}+0x{fr.offset:x}/0x{fr.kf.size:x}", level=KERN_WARNING)
        self.printk(" </TASK>", level=KERN_WARNING)

    def dump_page(self, pfn: int, reason: str) -> None:
        from mmdbg.sim.mm.show_mem import dump_page

        dump_page(self, pfn, reason)

    def show_mem(self) -> None:
        from mmdbg.sim.mm import show_mem

        getattr(show_mem, "__show_mem")(self)  # a "__" name cannot be spelled in a class

    def warn_on(self) -> None:
        """WARN_ON() in the calling kernel function: ``WARNING: CPU: ... at FILE:LINE``."""
        t = self.current
        self.warnings += 1
        frames = trace.kframes()
        where = ""
        if frames:
            fr = frames[0]
            where = f" at {fr.kf.file}:{fr.lineno} {fr.kf.name}+0x{fr.offset:x}/0x{fr.kf.size:x}"
        self.printk("------------[ cut here ]------------", level=KERN_WARNING)
        self.printk(f"WARNING: CPU: {self.cpu} PID: {t.pid}{where}", level=KERN_WARNING)
        self.printk("Modules linked in:", level=KERN_WARNING)
        self.add_taint("W")
        self.dump_stack()
        self.printk("---[ end trace 0000000000000000 ]---", level=KERN_WARNING)

    # -- files -------------------------------------------------------------------------
    def read(self, path: str) -> str:
        """Read a virtual /proc or /sys file (raises FileNotFoundError / KernelError)."""
        self.activate()
        return self.vfs.read(path)

    def write(self, path: str, text: str) -> None:
        """Write a virtual file as ``echo text > path`` would (raises KernelError on -E...)."""
        self.activate()
        self.vfs.write(path, text)

    def export_proc(self, directory: str | Path) -> Path:
        """Write the whole virtual /proc to ``directory`` for real tools (psutil.PROCFS_PATH)."""
        self.activate()
        return self.vfs.export(Path(directory), "/proc")

    # -- processes (issue 3) -------------------------------------------------------------
    def run(self, duration_ns: int | None = None) -> str:
        """Advance the simulation until every user task has exited, nothing can happen any
        more, a stop is requested or ``duration_ns`` of simulated time has passed."""
        self.activate()
        return self.vm.sched.run(duration_ns)

    # -- invariants --------------------------------------------------------------------
    def check_consistency(self) -> None:
        """CONFIG_DEBUG_VM: raise AssertionError naming the first broken invariant."""
        from mmdbg.sim.mm.debug_vm import check_consistency

        self.activate()
        check_consistency(self)

    def struct_page_addr(self, pfn: int) -> int:
        return pfn_to_page_addr(pfn)

    # -- debugging and probes: timers, watchpoints, signals, stops, symbols --------------
    def add_timer(self, interval_ns: int, callback: Any, cpu: int = 0) -> Any:
        """A periodic timer in simulated time (kernel/timer.py); ``.cancel()`` disarms it."""
        return self.timer_base.add_timer(interval_ns, callback, cpu)

    def add_watchpoint(self, addr: int, length: int, mode: str, callback: Any,
                       pid: int | None = None) -> Any:
        """A data breakpoint on ``[addr, addr+length)`` (kernel/hw_breakpoint.py); the
        callback gets ``(bp, addr, size, write)``; ``.remove()`` unregisters it."""
        from mmdbg.sim.kernel.hw_breakpoint import register_hw_breakpoint

        return register_hw_breakpoint(self, addr, length, mode, callback, pid)

    def send_signal(self, task: Any, sig: int) -> int:
        """send_sig(): queue ``sig`` on the simulated ``task``."""
        from mmdbg.sim.kernel.signal import send_sig

        self.activate()
        return send_sig(int(sig), task)

    def kill(self, pid: int, sig: int) -> int:
        """kill(2) from outside: 0, or -ESRCH when no such task."""
        t = self.tasks.get(int(pid))
        if t is None:
            return -3
        return self.send_signal(t, sig)

    def request_stop(self, reason: str = "") -> None:
        """Stop the simulation at the next scheduling point (the debugger takes over; a
        batch run ends).  ``stop_reason``/``stop_where`` say why and in which function."""
        frames = trace.kframes(1)
        self.stop_where = (f"{frames[0].kf.name} ({frames[0].kf.file}:{frames[0].lineno})"
                           if frames else "")
        self.stop_reason = reason
        self.stop_requested = True

    def panic(self, reason: str) -> None:
        """What kernel code calls after printing its panic line: the machine stops."""
        self.panicked = True
        self.panic_msg = reason
        self.request_stop(f"Kernel panic - not syncing: {reason}")

    def kobj(self, struct: str, addr: int) -> Any:
        """The kernel object of type ``struct`` at ``addr`` (kernel/kobj.py)."""
        from mmdbg.sim.kernel.kobj import kobj

        return kobj(self, struct, addr)

    def ksym(self, addr: int) -> str:
        """The name of the kernel function containing ``addr`` ("" if none)."""
        from mmdbg.sim.kernel.kallsyms import kallsyms_lookup

        r = kallsyms_lookup(int(addr))
        return r[0] if r is not None else ""

    def kallsyms_lookup_name(self, name: str) -> int:
        from mmdbg.sim.kernel.kallsyms import kallsyms_lookup_name

        return kallsyms_lookup_name(name)

    @property
    def max_nr_zones(self) -> int:
        return MAX_NR_ZONES


# Kernel functions named with a leading "__" cannot be named inside a class body (Python
# would mangle them), so Machine methods reach them through these module-level calls.
def _k_alloc_pages(gfp: int, order: int, nid: int) -> int | None:
    return page_alloc.__alloc_pages(gfp, order, nid, None)


def _k_free_pages(pfn: int, order: int) -> None:
    page_alloc.__free_pages(pfn, order)


def boot(cmdline: str = "", seed: int = 0) -> Machine:
    """Boot a machine from a kernel-style command line (``mem=2G cpus=4 numa=fake=2``)."""
    return Machine(parse_cmdline(cmdline), seed)
