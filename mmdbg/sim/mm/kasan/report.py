"""KASAN reports in the kernel's format (mm/kasan/report.c, report_generic.c).

``print_report`` writes the block of reference/reports.md §3 to dmesg: the banner, the bug
type and the function that made the access, the access line, ``dump_stack_lvl``, the alloc and
free tracks, the object and its cache with the buggy address's position, the variable / stack
frame / vmalloc mapping it belongs to, the physical page (``dump_page``) and the shadow dump
with the caret.  Only the first report is printed unless ``kasan_multi_shot``; after it the
kernel is tainted ``B``; ``kasan.fault=panic`` (or ``panic_on_write`` for a write) stops the
machine (``machine.panic`` when the debugger provides it, else ``machine.stop_requested``).
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.kernel.printk import KERN_ERR
from mmdbg.sim.lib import stackdepot
from mmdbg.sim.mm.kasan import shadow as sh
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SHIFT, VMALLOC_END, VMALLOC_START
from mmdbg.sim.mm.slab import nearest_obj
from mmdbg.sim.trace import kfunc

META_BYTES_PER_ROW = 16
META_MEM_BYTES_PER_ROW = META_BYTES_PER_ROW * sh.KASAN_GRANULE_SIZE
META_ROWS_AROUND_ADDR = 2

# frames of the access machinery, left out of "in %pS" and of saved stacks
REPORT_INTERNAL = (
    "kasan_report", "print_report", "kasan_check_range", "kasan_check_read", "kasan_check_write",
    "kmem_read", "kmem_write", "memset", "memcpy", "read8", "read16", "read32", "read64",
    "write8", "write16", "write32", "write64", "kasan_report_invalid_free", "check_access",
    "strscpy", "__asan_load", "__asan_store", "copy_to_kernel", "copy_from_kernel",
)


def get_shadow_bug_type(k: Any, first_bad: int) -> str:
    v = k.shadow.byte(first_bad)
    if 0 < v <= 7:
        v = k.shadow.byte(first_bad + 8)
    if v <= 7:
        return "out-of-bounds"
    return {
        sh.KASAN_PAGE_REDZONE: "slab-out-of-bounds", sh.KASAN_SLAB_REDZONE: "slab-out-of-bounds",
        sh.KASAN_GLOBAL_REDZONE: "global-out-of-bounds",
        sh.KASAN_STACK_LEFT: "stack-out-of-bounds", sh.KASAN_STACK_MID: "stack-out-of-bounds",
        sh.KASAN_STACK_RIGHT: "stack-out-of-bounds", sh.KASAN_STACK_PARTIAL: "stack-out-of-bounds",
        sh.KASAN_PAGE_FREE: "use-after-free", sh.KASAN_SLAB_FREE: "slab-use-after-free",
        sh.KASAN_SLAB_FREETRACK: "slab-use-after-free",
        sh.KASAN_ALLOCA_LEFT: "alloca-out-of-bounds", sh.KASAN_ALLOCA_RIGHT: "alloca-out-of-bounds",
        sh.KASAN_VMALLOC_INVALID: "vmalloc-out-of-bounds",
    }.get(v, "unknown-crash")


def get_wild_bug_type(addr: int) -> str:
    if addr < 4096:
        return "null-ptr-deref"
    if addr < 0x00007FFFFFFFF000:
        return "user-memory-access"
    return "wild-memory-access"


def find_first_bad_addr(k: Any, addr: int, size: int) -> int:
    p = addr
    while p < addr + size and not k.shadow.byte(p):
        p = (p & ~7) + 8
    return p


def _pr(m: Any, text: str) -> None:
    m.printk(text, level=KERN_ERR)


def _report_enabled(k: Any) -> bool:
    if k.multi_shot:
        return True
    if k.reported:
        return False
    k.reported = True
    return True


@kfunc
def print_report(k: Any, addr: int, size: int, is_write: bool, ip: int, kind: str) -> bool:
    """Print one report; returns True when it was printed."""
    m = k.m
    k.depth += 1
    try:
        info = _complete_report_info(k, addr, size, is_write, ip, kind)
        k.reports.append(info)
        if not _report_enabled(k):
            return False
        _print(k, info)
        _end_report(k, info)
        return True
    finally:
        k.depth -= 1
        del m


def _complete_report_info(k: Any, addr: int, size: int, is_write: bool, ip: int,
                          kind: str) -> dict[str, Any]:
    m = k.m
    if not ip:
        ip = stackdepot.caller_ip(REPORT_INTERNAL + _alloc_internal())
    info: dict[str, Any] = {"access_addr": addr, "access_size": size, "is_write": is_write,
                            "ip": ip, "type": kind, "cache": None, "object": None,
                            "task": m.current}
    if kind == "access":
        if addr + size > (1 << 64) or addr + size < addr:
            info["bug_type"] = "out-of-bounds"
            info["first_bad_addr"] = addr
        elif not k.shadow.addr_has_metadata(addr):
            info["bug_type"] = get_wild_bug_type(addr)
            info["first_bad_addr"] = addr
        else:
            fb = find_first_bad_addr(k, addr, size)
            info["first_bad_addr"] = fb
            info["bug_type"] = get_shadow_bug_type(k, fb)
    else:
        info["bug_type"] = kind
        info["first_bad_addr"] = addr
    slab = m.slab_pages.get((addr - PAGE_OFFSET) >> PAGE_SHIFT) \
        if PAGE_OFFSET <= addr < k.shadow.dm_end else None
    if slab is not None:
        s = slab.slab_cache
        obj = nearest_obj(s, slab, addr)
        info["cache"] = s
        info["object"] = obj
        size_ = 0
        sa = obj
        while size_ < s.object_size:
            v = k.shadow.byte(sa)
            if v == 0:
                size_ += 8
            elif v <= 7:
                size_ += v
                break
            else:
                break
            sa += 8
        info["alloc_size"] = min(size_, s.object_size) or s.object_size
        info["alloc_track"] = k.alloc_track.get(obj)
        info["free_track"] = k.free_track.get(obj)
    else:
        pfn = (addr - PAGE_OFFSET) >> PAGE_SHIFT
        large = getattr(m, "large_kmalloc", {})
        info["alloc_track"] = k.alloc_track.get(PAGE_OFFSET + (pfn << PAGE_SHIFT)) \
            if pfn in large else None
    return info


def _alloc_internal() -> tuple[str, ...]:
    from mmdbg.sim.mm import slab_common

    return (*slab_common._INTERNAL, "slab_free", "slab_free_hook", "__kasan_slab_free",
            "free_large_kmalloc", "__kmalloc_large_node_noprof", "_bad_free")


def _print_track(k: Any, t: Any, prefix: str) -> None:
    m = k.m
    _pr(m, f"{prefix} by task {t.pid}:")
    lines = stackdepot.depot(m).print_lines(t.stack)
    if lines:
        for line in lines:
            _pr(m, line)
    else:
        _pr(m, "(stack is not available)")


def _print(k: Any, info: dict[str, Any]) -> None:
    m = k.m
    t = info["task"]
    comm = t.comm if t is not None else "swapper/0"
    pid = t.pid if t is not None else 0
    addr = info["access_addr"]
    _pr(m, "=" * 66)
    _pr(m, f"BUG: KASAN: {info['bug_type']} in {stackdepot.lookup_symbol(info['ip'])}")
    if info["type"] != "access":
        _pr(m, f"Free of addr {addr:016x} by task {comm}/{pid}")
    elif info["access_size"]:
        _pr(m, f"{'Write' if info['is_write'] else 'Read'} of size {info['access_size']} at "
               f"addr {addr:016x} by task {comm}/{pid}")
    else:
        _pr(m, f"{'Write' if info['is_write'] else 'Read'} at addr {addr:016x} by task "
               f"{comm}/{pid}")
    _pr(m, "")
    for line in stackdepot.dump_stack_lines(m, ()):
        _pr(m, line)
    _pr(m, "")
    page_pfn = None
    if info["cache"] is not None and info["object"] is not None:
        s = info["cache"]
        obj = info["object"]
        if info.get("alloc_track") is not None:
            _print_track(k, info["alloc_track"], "Allocated")
            _pr(m, "")
        if info.get("free_track") is not None:
            _print_track(k, info["free_track"], "Freed")
            _pr(m, "")
        _pr(m, f"The buggy address belongs to the object at {obj:016x}")
        _pr(m, f" which belongs to the cache {s.name} of size {s.object_size}")
        alloc_size = info["alloc_size"]
        if addr < obj:
            rel_type, rel = "to the left", obj - addr
        elif addr >= obj + alloc_size:
            rel_type, rel = "to the right", addr - (obj + alloc_size)
        else:
            rel_type, rel = "inside", addr - obj
        state = {"slab-out-of-bounds": "allocated ",
                 "slab-use-after-free": "freed "}.get(info["bug_type"], "")
        _pr(m, f"The buggy address is located {rel} bytes {rel_type} of")
        _pr(m, f" {state}{alloc_size}-byte region [{obj:016x}, {obj + alloc_size:016x})")
        _pr(m, "")
        page_pfn = (addr - PAGE_OFFSET) >> PAGE_SHIFT
    elif info.get("alloc_track") is not None:
        pass
    var = _global_of(m, addr)
    if var is not None:
        _pr(m, "The buggy address belongs to the variable:")
        _pr(m, f" {var}")
        _pr(m, "")
    frame = _stack_frame_of(k, addr)
    if frame is not None:
        base, task, func, layout = frame
        _pr(m, f"The buggy address belongs to stack of task {task.comm}/{task.pid}")
        _pr(m, f" and is located at offset {addr - base} in frame:")
        _pr(m, f" {func}")
        _pr(m, "")
        _pr(m, f"This frame has {len(layout)} object{'s' if len(layout) > 1 else ''}:")
        for off, size, name in layout:
            _pr(m, f" [{off}, {off + size}) '{name}'")
        _pr(m, "")
    if VMALLOC_START <= addr < VMALLOC_END or sh.MODULES_VADDR <= addr < sh.MODULES_END:
        from mmdbg.sim.mm import vmalloc

        va = vmalloc.find_vmap_area(m, addr)
        if va is not None and va.vm is not None:
            vm = va.vm
            _pr(m, "The buggy address belongs to the virtual mapping at")
            _pr(m, f" [{vm.addr:016x}, {vm.addr + vm.size:016x}) created by:")
            _pr(m, f" {stackdepot.lookup_symbol(vm.caller)}")
            _pr(m, "")
        page_pfn = m.vmap_pages.get(addr >> PAGE_SHIFT)
    elif PAGE_OFFSET <= addr < k.shadow.dm_end:
        page_pfn = (addr - PAGE_OFFSET) >> PAGE_SHIFT
    if page_pfn is not None:
        from mmdbg.sim.mm.show_mem import dump_page_lines

        _pr(m, "The buggy address belongs to the physical page:")
        for line in dump_page_lines(m, page_pfn, "kasan: bad access detected"):
            _pr(m, line)
        _pr(m, "")
    if k.shadow.addr_has_metadata(info["first_bad_addr"]):
        print_memory_metadata(k, info["first_bad_addr"])


def memory_metadata_lines(k: Any, addr: int) -> list[str]:
    """The ``Memory state around the buggy address`` rows and the caret line."""
    row0 = (addr & ~(META_MEM_BYTES_PER_ROW - 1)) - META_ROWS_AROUND_ADDR * META_MEM_BYTES_PER_ROW
    out = ["Memory state around the buggy address:"]
    for i in range(-META_ROWS_AROUND_ADDR, META_ROWS_AROUND_ADDR + 1):
        row = row0 + (i + META_ROWS_AROUND_ADDR) * META_MEM_BYTES_PER_ROW
        guilty = row <= addr < row + META_MEM_BYTES_PER_ROW
        vals = k.shadow.bytes_at(row, META_BYTES_PER_ROW)
        out.append(f"{'>' if guilty else ' '}{row:016x}: " + " ".join(f"{v:02x}" for v in vals))
        if guilty:
            width = 3 + 16 + (addr - row) // sh.KASAN_GRANULE_SIZE * 3 + 1
            out.append(" " * (width - 1) + "^")
    return out


def print_memory_metadata(k: Any, addr: int) -> None:
    for line in memory_metadata_lines(k, addr):
        _pr(k.m, line)


def _global_of(m: Any, addr: int) -> str | None:
    mods = getattr(m, "modules", None)
    if mods is None:
        return None
    for mod in mods.values():
        for name, (a, size, _rz) in getattr(mod, "globals", {}).items():
            if a <= addr < a + size + _rz:
                return f"{name}+0x{addr - a:x}/0x{size:x} [{mod.name}]"
    return None


def _stack_frame_of(k: Any, addr: int) -> tuple | None:
    for base, (task, func, layout, size) in k.stack_frames.items():
        if base <= addr < base + size:
            return base, task, func, layout
    return None


def _end_report(k: Any, info: dict[str, Any]) -> None:
    m = k.m
    _pr(m, "=" * 66)
    if "B" not in m.taints:
        m.add_taint("B")
        m.printk("Disabling lock debugging due to kernel taint", level=4)
    if k.fault == "panic" or (k.fault == "panic_on_write" and info.get("is_write")):
        reason = "kasan.fault=panic set ..."
        m.printk(f"Kernel panic - not syncing: {reason}", level=0)
        m.panic_msg = reason
        where = _stop_location()
        fn = getattr(m, "panic", None)
        if callable(fn):
            fn(reason)
        else:
            m.stop_requested = True
        m.stop_where = where  # the bad access, not the report code
        m.stop_task, m.stop_cpu = m.current, m.cpu


def _stop_location() -> str:
    """The bad access: ``func+0x../0x.. [mod] (file:line)`` of the first kernel frame outside
    the access and report machinery."""
    import sys

    from mmdbg.sim import trace

    skip = set(REPORT_INTERNAL) | {"_end_report", "kasan_report_invalid_free"}
    f = sys._getframe(1)
    while f is not None:
        kf = trace._BY_CODE.get(f.f_code)
        if kf is not None and kf.name not in skip:
            mod = stackdepot.frame_module(kf)
            off = max(f.f_lineno - kf.lineno, 0)
            sym = stackdepot.format_frame((kf.name, off, kf.size, mod))
            return f"{sym} ({kf.file}:{f.f_lineno})"
        f = f.f_back
    return "no kernel frame"


@kfunc
def kasan_report_invalid_free(k: Any, ptr: int, ip: int, kind: str) -> None:
    """Invalid or double free (``Free of addr ...``)."""
    print_report(k, ptr, 0, False, ip, kind)
