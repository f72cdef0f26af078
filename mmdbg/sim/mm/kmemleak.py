"""kmemleak (mm/kmemleak.c): a tracing garbage collector that reports unreferenced objects.

``kmemleak=on`` gives the machine a :class:`Kmemleak` (``machine.kmemleak``).  The allocators
tell it about every object (``kmemleak_alloc``/``kmemleak_free``/``kmemleak_vmalloc``);
``kmemleak_scan`` then does what the kernel does:

1. every object gets ``count = 0``; objects with ``min_count == 0`` (``KMEMLEAK_GREY``: never
   reported, always scanned) start on the gray list, ``-1`` (``KMEMLEAK_BLACK``) ones are ignored;
2. the roots are scanned for pointers: the per-CPU areas and the task stacks (and, through the
   gray module-memory objects, the modules' data);
3. the gray list is scanned: every 8-byte aligned word that points inside a tracked object
   (``[pointer, pointer + size)``) increments its ``count``; an object whose ``count`` reaches
   ``min_count`` becomes gray and is scanned in turn;
4. a white object whose contents changed since the last scan (``update_checksum``) is treated as
   referenced this time and scanned too -- so a new object is never reported by its first scan;
5. a white object at least ``jiffies_min_age`` (5 s) old is a new leak: it is marked
   ``OBJECT_REPORTED``, counted in ``kmemleak: N new suspected memory leaks``, and listed by
   reading ``/sys/kernel/debug/kmemleak`` as long as it stays unreferenced.

The file accepts ``scan``, ``clear``, ``dump=ADDR``, ``scan=on|off|SECS``, ``stack=on|off``,
``off``.  The scan thread (the ``kmemleak`` kthread, started by ``kmemleak_late_init``: first
scan 60 s after boot, then every 600 s of simulated time) sleeps on the scheduler's timers;
:func:`kmemleak_poll` scans when the deadline has passed for code that moves the clock
outside the scheduler.

The simulator keeps some kernel references in Python rather than in simulated memory (the
kernel's global variables are not modelled).  Objects allocated by the simulated kernel itself
are therefore made gray (``kmemleak_not_leak``) -- they are scanned, never reported; objects
allocated by loadable-module code (a module frame on the allocation stack) are tracked
normally.  ``vmalloc`` objects have ``min_count`` 1 (the kernel uses 2 and counts the
reference from the ``vm_struct``, which lives in Python here).
"""

from __future__ import annotations

import zlib
from bisect import bisect_right, insort
from typing import Any

from mmdbg.sim.fs.vfs import KernelError
from mmdbg.sim.kernel.time import HZ
from mmdbg.sim.lib import stackdepot
from mmdbg.sim.mm.mm_types import PAGE_OFFSET
from mmdbg.sim.trace import kfunc

KMEMLEAK_GREY = 0
KMEMLEAK_BLACK = -1
OBJECT_ALLOCATED = 1 << 0
OBJECT_REPORTED = 1 << 1
OBJECT_NO_SCAN = 1 << 2
OBJECT_FULL_SCAN = 1 << 3
MSECS_MIN_AGE = 5000
SECS_FIRST_SCAN = 60
SECS_SCAN_WAIT = 600
HEX_ROW_SIZE = 16
HEX_MAX_LINES = 2
MAX_TRACE = 16

_INTERNAL = ("kmemleak_alloc", "kmemleak_vmalloc", "create_object", "slab_post_alloc_hook",
             "slab_alloc_node", "___slab_alloc", "__do_kmalloc_node", "__kasan_kmalloc",
             "__vmalloc_area_node", "vm_area_alloc_pages")


class KmemleakObject:
    """``struct kmemleak_object``."""

    ktype = "kmemleak_object"
    __slots__ = ("checksum", "comm", "count", "flags", "jiffies", "min_count", "pid", "pointer",
                 "size", "trace_handle")

    def __init__(self, ptr: int, size: int, min_count: int, jiffies: int, comm: str, pid: int,
                 trace_handle: int) -> None:
        self.pointer = ptr
        self.size = size
        self.min_count = min_count
        self.count = 0
        self.flags = OBJECT_ALLOCATED
        self.jiffies = jiffies
        self.comm = comm
        self.pid = pid
        self.trace_handle = trace_handle
        self.checksum = 0


def crc32(data: bytes) -> int:
    """The kernel's crc32(0, p, len) (crc32_le without pre/post inversion)."""
    return ~zlib.crc32(data, 0xFFFFFFFF) & 0xFFFFFFFF


def _color_white(o: KmemleakObject) -> bool:
    return o.count != KMEMLEAK_BLACK and o.count < o.min_count


def _color_gray(o: KmemleakObject) -> bool:
    return o.min_count != KMEMLEAK_BLACK and o.count >= o.min_count


class Kmemleak:
    """The kmemleak state of one machine."""

    ktype = "kmemleak"

    def __init__(self, m: Any) -> None:
        self.m = m
        self.objects: dict[int, KmemleakObject] = {}
        self.starts: list[int] = []
        self.enabled = True
        self.scan_thread = True
        self.stack_scan = True
        self.verbose = bool(m.config.extra.get("kmemleak.verbose", False))
        self.jiffies_min_age = MSECS_MIN_AGE * HZ // 1000
        self.jiffies_scan_wait = SECS_SCAN_WAIT * HZ
        self.next_scan_ns = SECS_FIRST_SCAN * 1_000_000_000
        self.jiffies_last_scan = 0
        self.scans = 0
        self.extra_roots: list[tuple[int, int]] = []  # (addr, size) scanned as roots
        self.min_addr = 0
        self.max_addr = 0
        self.thread: Any = None  # the kmemleak scan kthread (kmemleak_late_init)

    # -- the allocator hooks ------------------------------------------------------------
    def kmemleak_alloc(self, ptr: int, size: int, min_count: int, gfp: int) -> None:
        kmemleak_alloc(self, ptr, size, min_count, gfp)

    def kmemleak_vmalloc(self, area: Any, size: int, gfp: int) -> None:
        kmemleak_alloc(self, area.addr, size, 1, gfp)

    def kmemleak_free(self, ptr: int) -> None:
        o = self.objects.pop(ptr, None)
        if o is not None:
            i = bisect_right(self.starts, ptr) - 1
            del self.starts[i]

    def kmemleak_not_leak(self, ptr: int) -> None:
        o = self.objects.get(ptr)
        if o is not None:
            o.min_count = KMEMLEAK_GREY

    def kmemleak_ignore(self, ptr: int) -> None:
        o = self.objects.get(ptr)
        if o is not None:
            o.min_count = KMEMLEAK_BLACK
            o.flags |= OBJECT_NO_SCAN

    def kmemleak_no_scan(self, ptr: int) -> None:
        o = self.objects.get(ptr)
        if o is not None:
            o.flags |= OBJECT_NO_SCAN

    # -- lookup ---------------------------------------------------------------------------
    def lookup(self, ptr: int, alias: bool = True) -> KmemleakObject | None:
        i = bisect_right(self.starts, ptr) - 1
        if i < 0:
            return None
        o = self.objects[self.starts[i]]
        if ptr == o.pointer or (alias and o.pointer <= ptr < o.pointer + max(o.size, 1)):
            return o
        return None

    # -- scanning -------------------------------------------------------------------------
    def _read(self, addr: int, size: int) -> bytes:
        from mmdbg.sim.mm.kmem_access import virt_to_phys

        m = self.m
        out = bytearray()
        a = addr
        end = addr + size
        while a < end:
            n = min(end - a, 4096 - (a & 4095))
            phys = virt_to_phys(m, a)
            out += m.physmem.read(phys, n) if phys is not None else bytes(n)
            a += n
        return bytes(out)

    def scan_block(self, start: int, end: int, gray: list[KmemleakObject]) -> None:
        data = self._read(start, end - start)
        lo, hi = self.min_addr, self.max_addr
        off = (-start) & 7
        mv = memoryview(data)[off:]
        n = len(mv) // 8
        if not n:
            return
        words = mv[:n * 8].cast("Q")
        for w in words:
            if w < lo or w >= hi:
                continue
            o = self.lookup(w)
            if o is None or o.min_count == KMEMLEAK_BLACK:
                continue
            if _color_gray(o):
                o.count += 1
                continue
            o.count += 1
            if _color_gray(o):
                gray.append(o)

    def scan_object(self, o: KmemleakObject, gray: list[KmemleakObject]) -> None:
        if o.flags & OBJECT_NO_SCAN or not o.flags & OBJECT_ALLOCATED or not o.size:
            return
        self.scan_block(o.pointer, o.pointer + o.size, gray)

    def update_checksum(self, o: KmemleakObject) -> bool:
        old = o.checksum
        o.checksum = crc32(self._read(o.pointer, o.size))
        return o.checksum != old

    def unreferenced_object(self, o: KmemleakObject) -> bool:
        return (_color_white(o) and bool(o.flags & OBJECT_ALLOCATED)
                and o.jiffies + self.jiffies_min_age <= self.jiffies_last_scan)

    def roots(self) -> list[tuple[int, int]]:
        m = self.m
        out = list(self.extra_roots)
        for base, size in getattr(m, "percpu_areas", []):
            out.append((base, size))
        if self.stack_scan:
            for t in _all_tasks(m):
                st = getattr(t, "stack", 0)
                if st:
                    out.append((st, 16384))
        return out


def _all_tasks(m: Any) -> list[Any]:
    seen = {}
    for t in list(getattr(m, "idle_tasks", [])) + list(getattr(m, "tasks", {}).values()):
        seen[id(t)] = t
    return list(seen.values())


@kfunc
def create_object(k: Kmemleak, ptr: int, size: int, min_count: int, gfp: int) -> None:
    m = k.m
    st = stackdepot.save_stack(_INTERNAL, MAX_TRACE)
    if min_count > 0 and not any(fr[3] for fr in st):
        min_count = KMEMLEAK_GREY  # referenced from kernel state kept in Python (see above)
    t = m.current
    comm = t.comm if t is not None else "swapper/0"
    o = KmemleakObject(ptr, size, min_count, m.clock.jiffies, comm, t.pid if t else 0,
                       stackdepot.depot(m).save(st))
    if ptr in k.objects:
        k.kmemleak_free(ptr)
    k.objects[ptr] = o
    insort(k.starts, ptr)


@kfunc
def kmemleak_alloc(k: Kmemleak, ptr: int, size: int, min_count: int, gfp: int) -> None:
    if k.enabled and ptr:
        create_object(k, ptr, size, min_count, gfp)


@kfunc
def kmemleak_scan(m: Any) -> int:
    """One scan; returns the number of new suspected leaks."""
    k = m.kmemleak
    k.jiffies_last_scan = m.clock.jiffies
    k.min_addr = k.starts[0] if k.starts else 0
    k.max_addr = max((o.pointer + o.size for o in k.objects.values()), default=0)
    gray: list[KmemleakObject] = []
    for o in k.objects.values():
        o.count = 0
        if _color_gray(o):
            gray.append(o)
    for base, size in k.roots():
        k.scan_block(base, base + size, gray)
    _scan_gray_list(k, gray)
    # objects whose contents changed since the last scan count as referenced this time
    for o in list(k.objects.values()):
        if _color_white(o) and o.flags & OBJECT_ALLOCATED and k.update_checksum(o):
            o.count = o.min_count
            gray.append(o)
    _scan_gray_list(k, gray)
    new_leaks = 0
    for o in k.objects.values():
        if k.unreferenced_object(o) and not o.flags & OBJECT_REPORTED:
            o.flags |= OBJECT_REPORTED
            if k.verbose:
                for line in print_unreferenced(k, o):
                    m.printk("kmemleak: " + line, level=4)
            new_leaks += 1
    k.scans += 1
    if new_leaks:
        m.printk(f"kmemleak: {new_leaks} new suspected memory leaks (see "
                 "/sys/kernel/debug/kmemleak)")
    return new_leaks


def _scan_gray_list(k: Kmemleak, gray: list[KmemleakObject]) -> None:
    i = 0
    while i < len(gray):
        k.scan_object(gray[i], gray)
        i += 1
    gray.clear()


def kmemleak_poll(m: Any) -> None:
    """A scan when the scan thread's simulated-time deadline has passed (the thread below
    calls it when it wakes; code that advances the clock outside the scheduler, as a
    module's ``msleep`` in its init function, calls it too)."""
    k = m.kmemleak
    if k is None or not k.scan_thread or not k.enabled or m.clock.ns < k.next_scan_ns:
        return
    kmemleak_scan(m)
    k.next_scan_ns = m.clock.ns + k.jiffies_scan_wait * (1_000_000_000 // HZ)


@kfunc
def kmemleak_scan_thread(m: Any) -> Any:
    """The ``kmemleak`` kernel thread: first scan ``SECS_FIRST_SCAN`` after boot, then one
    every ``jiffies_scan_wait`` (``scan=SECS`` changes it), on the scheduler's timers."""
    from mmdbg.sim.kernel.sched_core import Sleep

    k = m.kmemleak
    while k is not None and k.enabled:
        now = m.clock.ns
        if now >= k.next_scan_ns:
            kmemleak_poll(m)
            if k.next_scan_ns <= now:  # scan=off: check again after one period
                k.next_scan_ns = now + k.jiffies_scan_wait * (1_000_000_000 // HZ)
        yield Sleep(max(k.next_scan_ns - m.clock.ns, 1_000_000))
    return 0


def kmemleak_late_init(m: Any) -> None:
    """late_initcall: start the scan thread (the scheduler exists by now)."""
    k = getattr(m, "kmemleak", None)
    if k is None or getattr(k, "thread", None) is not None:
        return
    from mmdbg.sim.kernel.fork import kthread_run

    k.thread = kthread_run(kmemleak_scan_thread, "kmemleak")


# ---------------------------------------------------------------------------------------
# Reports and the debugfs file


def hex_dump_lines(data: bytes) -> list[str]:
    out = []
    for i in range(0, len(data), HEX_ROW_SIZE):
        row = data[i:i + HEX_ROW_SIZE]
        hx = " ".join(f"{b:02x}" for b in row)
        asc = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        out.append(f"    {hx.ljust(49)}{asc}")
    return out


def print_unreferenced(k: Kmemleak, o: KmemleakObject) -> list[str]:
    m = k.m
    n = min(o.size, HEX_MAX_LINES * HEX_ROW_SIZE)
    out = [f"unreferenced object 0x{o.pointer:08x} (size {o.size}):",
           f'  comm "{o.comm}", pid {o.pid}, jiffies {o.jiffies}',
           f"  hex dump (first {n} bytes):"]
    out += hex_dump_lines(k._read(o.pointer, n))
    out.append(f"  backtrace (crc {o.checksum:x}):")
    for fr in stackdepot.depot(m).fetch(o.trace_handle):
        out.append(f"    [<{stackdepot.frame_addr(fr):016x}>] {stackdepot.format_frame(fr)}")
    return out


def read_kmemleak(m: Any) -> str:
    k = m.kmemleak
    if k is None:
        raise KernelError(16, "Device or resource busy")
    out: list[str] = []
    for ptr in k.starts:
        o = k.objects[ptr]
        if o.flags & OBJECT_REPORTED and k.unreferenced_object(o):
            out += print_unreferenced(k, o)
    return "".join(line + "\n" for line in out)


def dump_object(k: Kmemleak, addr: int) -> None:
    m = k.m
    o = k.lookup(addr, alias=False)
    if o is None:
        m.printk(f"kmemleak: Unknown object at 0x{addr:08x}")
        return
    for line in [f"Object 0x{o.pointer:08x} (size {o.size}):",
                 f'  comm "{o.comm}", pid {o.pid}, jiffies {o.jiffies}',
                 f"  min_count = {o.min_count}", f"  count = {o.count}",
                 f"  flags = 0x{o.flags:x}", f"  checksum = {o.checksum}", "  backtrace:"]:
        m.printk("kmemleak: " + line)
    for fr in stackdepot.depot(m).fetch(o.trace_handle):
        m.printk(f"kmemleak:     [<{stackdepot.frame_addr(fr):016x}>] "
                 f"{stackdepot.format_frame(fr)}")


def write_kmemleak(m: Any, text: str) -> None:
    k = m.kmemleak
    cmd = text.strip()
    if k is None or not k.enabled:
        raise KernelError(1, "Operation not permitted")
    if cmd == "scan":
        kmemleak_scan(m)
    elif cmd == "clear":
        for o in k.objects.values():
            if o.flags & OBJECT_REPORTED and k.unreferenced_object(o):
                o.min_count = KMEMLEAK_GREY
    elif cmd == "scan=on":
        k.scan_thread = True
    elif cmd == "scan=off":
        k.scan_thread = False
    elif cmd.startswith("scan="):
        try:
            secs = int(cmd[5:])
        except ValueError:
            raise KernelError(22) from None
        k.scan_thread = secs > 0
        if secs:
            # stop_scan_thread + start_scan_thread: past its first run the thread scans at
            # once, then every SECS
            k.jiffies_scan_wait = secs * HZ
            k.next_scan_ns = m.clock.ns
            t = k.thread
            if t is not None and not t.exit_state:
                m.vm.sched.wake_up_process(t)
    elif cmd == "stack=on":
        k.stack_scan = True
    elif cmd == "stack=off":
        k.stack_scan = False
    elif cmd.startswith("dump="):
        try:
            addr = int(cmd[5:], 0)
        except ValueError:
            raise KernelError(22) from None
        dump_object(k, addr)
    elif cmd == "off":
        k.enabled = False
        k.objects.clear()
        k.starts.clear()
        m.printk("kmemleak: Kernel memory leak detector disabled")
    else:
        raise KernelError(22)


def kmemleak_init(m: Any) -> None:
    if not m.config.kmemleak:
        m.kmemleak = None
        return
    m.kmemleak = Kmemleak(m)
    m.printk("kmemleak: Kernel memory leak detector initialized (mem pool available: 15956)")
    m.printk("kmemleak: Automatic memory scanning thread started")


__all__ = ["PAGE_OFFSET", "Kmemleak", "kmemleak_init", "kmemleak_scan"]
