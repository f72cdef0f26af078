"""What the debugger shows about slab caches: data for ``kmem -s``, ``kmem -S``, ``kmem ADDR``
and ``slabtop`` (the shell formats nothing itself; these functions return lines).

``kmem -s`` counts like crash does, by walking the slabs: an object is free when it is on a
slab's free list or on a CPU freelist (unlike /proc/slabinfo, which counts everything but the
node partial lists' free objects as active).
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim.mm import slub
from mmdbg.sim.mm.mm_types import PAGE_SIZE
from mmdbg.sim.mm.slab import KmemCache


def _ssize(order: int) -> str:
    return f"{(PAGE_SIZE << order) >> 10}k"


def cache_counts(s: KmemCache) -> dict[str, int]:
    total = allocated = slabs = 0
    for slab, where in slub.all_slabs(s):
        free = slub.free_objects(s, slab, where)
        total += slab.objects
        allocated += slab.objects - len(free)
        slabs += 1
    return {"total": total, "allocated": allocated, "slabs": slabs}


KMEM_S_HEADER = "CACHE             OBJSIZE  ALLOCATED     TOTAL  SLABS  SSIZE  NAME"


def kmem_s_line(s: KmemCache) -> str:
    c = cache_counts(s)
    return (f"{s.addr:016x} {s.object_size:8d} {c['allocated']:10d} {c['total']:9d} "
            f"{c['slabs']:6d} {_ssize(s.oo[0]):>6}  {s.name}")


def kmem_s(m: Any, names: list[str] | None = None) -> list[str]:
    """``kmem -s [CACHE ...]``: one line per cache, newest first as the slab_caches list."""
    caches = list(reversed(m.slub.slab_caches))
    if names:
        missing = [n for n in names if n not in m.slub.by_name]
        if missing:
            raise KeyError(missing[0])
        caches = [m.slub.by_name[n] for n in names]
    return [KMEM_S_HEADER] + [kmem_s_line(s) for s in caches]


def _slab_lines(s: KmemCache, slab: Any, where: str, verbose: bool = True) -> list[str]:
    free = slub.free_objects(s, slab, where)
    cpu_free = set()
    if where.startswith("cpu") and not where.endswith("partial"):
        cpu_free = set(s.cpu_slab[int(where[3:])].freelist)
    out = ["  SLAB              MEMORY            NODE  TOTAL  ALLOCATED  FREE",
           f"  {slab.addr:016x}  {slab.s_mem:016x}  {slab.node:4d}  {slab.objects:5d}  "
           f"{slab.objects - len(free):9d}  {len(free):4d}"]
    if verbose:
        out.append("  FREE / [ALLOCATED]")
        q = s.machine.kasan
        for i in range(slab.objects):
            o = slab.s_mem + i * s.size + s.red_left_pad
            if o in cpu_free:
                out.append(f"   {o:016x}  (cpu {where[3:]} cache)")
            elif o in free:
                out.append(f"   {o:016x}")
            elif q is not None and q.in_quarantine(o):
                out.append(f"  [{o:016x}]  (KASAN quarantine)")
            else:
                out.append(f"  [{o:016x}]")
    return out


def kmem_S(m: Any, name: str) -> list[str]:
    """``kmem -S CACHE``: the cache line, then per CPU its slab and partial list, then per
    node the partial and full lists, each slab with its objects (free or [allocated])."""
    s = m.slub.by_name.get(name)
    if s is None:
        raise KeyError(name)
    out = [KMEM_S_HEADER, kmem_s_line(s)]
    slabs = slub.all_slabs(s)
    for cpu, c in enumerate(s.cpu_slab):
        out.append(f"CPU {cpu} KMEM_CACHE_CPU:")
        out.append(f"  {s.addr + 0x1000 * (cpu + 1):016x}")
        out.append(f"CPU {cpu} SLAB:")
        if c.slab is None:
            out.append("  (empty)")
        else:
            out += _slab_lines(s, c.slab, f"cpu{cpu}")
        out.append(f"CPU {cpu} PARTIAL:")
        if not c.partial:
            out.append("  (empty)")
        for sl in reversed(c.partial):
            out += _slab_lines(s, sl, f"cpu{cpu}-partial")
    out.append("KMEM_CACHE_NODE   NODE  SLABS  PARTIAL  PER-CPU")
    for nid, n in enumerate(s.node):
        percpu = sum(1 for sl, w in slabs if w.startswith("cpu") and sl.node == nid)
        out.append(f"{s.addr + 0x100 * (nid + 1):016x} {nid:5d} {n.nr_slabs:6d} "
                   f"{n.nr_partial:8d} {percpu:8d}")
    for nid, n in enumerate(s.node):
        out.append(f"NODE {nid} PARTIAL:")
        if not n.partial:
            out.append("  (empty)")
        for sl in n.partial:
            out += _slab_lines(s, sl, "partial")
        out.append(f"NODE {nid} FULL:")
        full = [sl for sl, w in slabs if w == "full" and sl.node == nid]
        if not full:
            out.append("  (empty)" if s.flags & 0x80 else "  (not tracked)")
        for sl in full:
            out += _slab_lines(s, sl, "full")
    return out


def identify_slab(m: Any, addr: int) -> str:
    """``kmem ADDR`` for a slab address (the shell's identify() calls machine.identify_slab)."""
    st = slub.object_state(m, addr)
    if st is None:
        pfn = (addr - 0xFFFF888000000000) >> 12
        info = getattr(m, "large_kmalloc", {}).get(pfn)
        if info is not None:
            return (f"large kmalloc: {info[1]} bytes, order {info[0]} "
                    f"(pages from the buddy allocator, PGTY_large_kmalloc)")
        if m.kfence is not None and m.kfence.in_pool(addr):
            meta = m.kfence.addr_to_metadata(addr)
            if meta is None:
                return "kfence pool: guard page"
            state = ("unused", "allocated", "freed")[meta.state]
            return (f"kfence-#{meta.index}: object 0x{meta.addr:x} size {meta.size} "
                    f"({state}) cache {meta.cache.name if meta.cache else '-'}")
        return ""
    s = st["cache"]
    slab = st["slab"]
    lines = [KMEM_S_HEADER, kmem_s_line(s)]
    lines += _slab_lines(s, slab, st.get("where", "full"), verbose=False)
    if st["object"] is None:
        lines.append(f"  (slab padding, offset {st['offset']})")
    else:
        o = st["object"]
        mark = f"[{o:016x}]" if st["state"].startswith("allocated") or "quarantine" in \
            st["state"] else f" {o:016x}"
        lines.append("  FREE / [ALLOCATED]")
        lines.append(f"  {mark}  {st['state']}" + (f" (+{st['offset']})" if st["offset"] else ""))
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------
# slabtop (procps): reads /proc/slabinfo


def slabtop(m: Any, sort: str = "o", limit: int = 0) -> list[str]:
    """``slabtop -o``: the summary and the cache table, sorted (o=objects, a=active,
    s=cache size, n=name, b=objs/slab, c=cache size, l=slabs, u=use)."""
    rows = []
    for line in m.read("/proc/slabinfo").splitlines()[2:]:
        f = line.split()
        name = f[0]
        active, objs, objsize, objper, pages = (int(x) for x in f[1:6])
        nslabs = int(f[14])
        rows.append({"name": name, "active": active, "objs": objs, "objsize": objsize,
                     "objper": objper, "pages": pages, "slabs": nslabs,
                     "cache_size": nslabs * pages * PAGE_SIZE // 1024})
    total_objs = sum(r["objs"] for r in rows)
    active_objs = sum(r["active"] for r in rows)
    total_slabs = sum(r["slabs"] for r in rows)
    active_caches = sum(1 for r in rows if r["active"])
    total_size = sum(r["objs"] * r["objsize"] for r in rows) / 1024
    active_size = sum(r["active"] * r["objsize"] for r in rows) / 1024
    sizes = [r["objsize"] / 1024 for r in rows]

    def pct(a: float, b: float) -> float:
        return 100.0 * a / b if b else 0.0

    out = [f" {'Active / Total Objects (% used)':<35}: {active_objs} / {total_objs} "
           f"({pct(active_objs, total_objs):.1f}%)",
           f" {'Active / Total Slabs (% used)':<35}: {total_slabs} / {total_slabs} "
           f"({pct(total_slabs, total_slabs):.1f}%)",
           f" {'Active / Total Caches (% used)':<35}: {active_caches} / {len(rows)} "
           f"({pct(active_caches, len(rows)):.1f}%)",
           f" {'Active / Total Size (% used)':<35}: {active_size:.2f}K / {total_size:.2f}K "
           f"({pct(active_size, total_size):.1f}%)",
           f" {'Minimum / Average / Maximum Object':<35}: {min(sizes, default=0):.2f}K / "
           f"{(total_size / total_objs if total_objs else 0):.2f}K / "
           f"{max(sizes, default=0):.2f}K",
           "",
           f"{'OBJS':>6} {'ACTIVE':>6} {'USE':>4} {'OBJ SIZE':>8} {'SLABS':>6} "
           f"{'OBJ/SLAB':>8} {'CACHE SIZE':>10} {'NAME':<23}".rstrip()]
    keys = {"o": lambda r: -r["objs"], "a": lambda r: -r["active"],
            "s": lambda r: -r["objsize"], "n": lambda r: r["name"],
            "b": lambda r: -r["objper"], "c": lambda r: -r["cache_size"],
            "l": lambda r: -r["slabs"], "u": lambda r: -pct(r["active"], r["objs"])}
    rows.sort(key=keys.get(sort, keys["o"]))
    for r in rows[:limit or None]:
        use = int(pct(r["active"], r["objs"]))
        out.append(f"{r['objs']:6d} {r['active']:6d} {use:3d}% {r['objsize'] / 1024:7.2f}K "
                   f"{r['slabs']:6d} {r['objper']:8d} {r['cache_size']:9d}K {r['name']}")
    return out


# ---------------------------------------------------------------------------------------
# kmem ADDR in the vmalloc and module areas


def identify_vmalloc(m: Any, addr: int) -> list[str]:
    """``kmem ADDR`` for a vmalloc/module-area address: crash's VMAP_AREA table (the area,
    its size and the /proc/vmallocinfo caller and flags), then the page behind the address
    or the guard page.  Empty when no vmap area holds it."""
    from mmdbg.sim.lib import stackdepot
    from mmdbg.sim.mm import vmalloc

    if getattr(m, "vmalloc", None) is None:
        return []
    info = vmalloc.vmalloc_area_of(m, addr)
    if info is None:
        return []
    va, vm = info["area"], info["vm"]
    out = ["   VMAP_AREA START    VMAP_AREA END          SIZE  CALLER / FLAGS"]
    size = va.va_end - va.va_start
    what = info["state"]
    if vm is not None:
        desc = stackdepot.lookup_symbol(vm.caller) if vm.caller else "-"
        flags = [n for f, n in ((vmalloc.VM_ALLOC, "vmalloc"), (vmalloc.VM_MAP, "vmap"),
                                (vmalloc.VM_IOREMAP, "ioremap")) if vm.flags & f]
        if vm.nr_pages:
            flags.insert(0, f"pages={vm.nr_pages}")
        desc += (" " + " ".join(flags)) if flags else ""
    else:
        desc = "vm_map_ram" if what == "mapped" else "unpurged vm_area"
    out.append(f"{va.va_start:016x} {va.va_end:016x} {size:9d}  {desc}")
    off = addr - va.va_start
    if what == "guard page":
        out.append(f"  +0x{off:x}: guard page (not mapped)")
    elif what == "mapped" and info.get("pfn") is not None:
        pfn = info["pfn"]
        out.append(f"  +0x{off:x}: pfn {pfn} (0x{pfn:x}), physical "
                   f"0x{(pfn << 12) | (addr & 0xFFF):x}")
    else:
        out.append(f"  +0x{off:x}: {what}")
    mods = getattr(m, "modules", {})
    for mod in mods.values():
        if mod.core <= addr < mod.core + mod.core_size:
            out.append(f"  module {mod.name} memory (text and data)")
            for gname, (ga, gsize, _rz) in mod.globals.items():
                if ga <= addr < ga + gsize:
                    out.append(f"  {gname}+0x{addr - ga:x}/0x{gsize:x} [{mod.name}]")
    for t in list(m.tasks.values()):
        st = getattr(t, "stack", 0)
        if st and va.va_start == st:
            out.append(f"  kernel stack of {t.pid} ({t.comm})")
    return out
