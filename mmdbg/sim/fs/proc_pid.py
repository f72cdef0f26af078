"""/proc/PID files of the memory manager (fs/proc/task_mmu.c, fs/proc/array.c, base.c).

``maps``, ``smaps``, ``smaps_rollup``, ``status``, ``statm``, ``stat``, ``comm``,
``cmdline``, ``oom_score_adj`` (read/write) and ``pagemap``, in the kernel's formats
(reference/procfs.md).  ``pagemap`` is a binary file read with pread at ``vaddr / 4096 * 8``:
:func:`pagemap_read` returns those bytes (the VFS text reader refuses it, as reading the
whole 256 GiB file would).  Entries: bits 0-54 PFN (or swap type 0-4 / offset 5-54), 55
soft-dirty, 56 exclusively mapped, 57 uffd-wp, 61 file page or shared anonymous, 62 swapped,
63 present.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.fs.vfs import VFS, KernelError
from mmdbg.sim.kernel.sched import (
    __TASK_STOPPED,
    EXIT_DEAD,
    EXIT_ZOMBIE,
    PF_KTHREAD,
    TASK_INTERRUPTIBLE,
    TASK_RUNNING,
    TASK_UNINTERRUPTIBLE,
)
from mmdbg.sim.mm import page_flags as pf
from mmdbg.sim.mm.vma import (
    MM_ANONPAGES,
    MM_FILEPAGES,
    MM_SHMEMPAGES,
    MM_SWAPENTS,
    VM_EXEC,
    VM_GROWSDOWN,
    VM_HUGEPAGE,
    VM_LOCKED,
    VM_MAYSHARE,
    VM_NOHUGEPAGE,
    VM_READ,
    VM_SOFTDIRTY,
    VM_WRITE,
    VMFLAG_MNEMONICS,
    vma_is_initial_heap,
    vma_is_initial_stack,
)

PSS_SHIFT = 12
PM_PFRAME_BITS = 55
PM_PFRAME_MASK = (1 << PM_PFRAME_BITS) - 1
PM_SOFT_DIRTY = 1 << 55
PM_MMAP_EXCLUSIVE = 1 << 56
PM_UFFD_WP = 1 << 57
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63
MAPS_PAD = 25 + 8 * 6 - 1  # seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)


def _task(m: Any, pid: str) -> Any:
    try:
        t = m.tasks.get(int(pid))
    except ValueError:
        t = None
    if t is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"/proc/{pid}")
    return t


# -- maps -----------------------------------------------------------------------------------
def vma_name(vma: Any) -> str:
    f = vma.vm_file
    if f is not None:
        if f.f_inode.shmem:
            return "/dev/zero (deleted)"
        name = f.path
        if f.f_inode.i_nlink == 0:
            name += " (deleted)"
        return name
    if vma.special_name:
        return vma.special_name
    if vma_is_initial_heap(vma):
        return "[heap]"
    if vma_is_initial_stack(vma):
        return "[stack]"
    if vma.anon_name:
        return f"[anon:{vma.anon_name}]"
    return ""


def show_vma_header(vma: Any) -> str:
    flags = vma.vm_flags
    perms = ("r" if flags & VM_READ else "-") + ("w" if flags & VM_WRITE else "-") + \
        ("x" if flags & VM_EXEC else "-") + ("s" if flags & VM_MAYSHARE else "p")
    pgoff = 0
    dev = (0, 0)
    ino = 0
    f = vma.vm_file
    if f is not None:
        pgoff = vma.vm_pgoff << 12
        dev = f.f_inode.s_dev
        ino = f.f_inode.i_ino
    line = f"{vma.vm_start:08x}-{vma.vm_end:08x} {perms} {pgoff:08x} {dev[0]:02x}:{dev[1]:02x} {ino} "
    name = vma_name(vma)
    if name:
        line = line.ljust(MAPS_PAD) + " " + name
    return line


def show_maps(m: Any, t: Any) -> str:
    mm = t.mm
    if mm is None:
        return ""
    return "".join(show_vma_header(v) + "\n" for v in mm.mm_mt.vmas)


# -- smaps -----------------------------------------------------------------------------------
class MemSizeStats:
    """``struct mem_size_stats`` (bytes; pss fields << PSS_SHIFT)."""

    FIELDS = ("resident", "shared_clean", "shared_dirty", "private_clean", "private_dirty",
              "referenced", "anonymous", "lazyfree", "swap", "swap_pss", "pss", "pss_dirty",
              "pss_anon", "pss_file", "pss_shmem", "pss_locked", "ksm")

    def __init__(self) -> None:
        for f in self.FIELDS:
            setattr(self, f, 0)

    def add(self, o: MemSizeStats) -> None:
        for f in self.FIELDS:
            setattr(self, f, getattr(self, f) + getattr(o, f))


def smap_gather_stats(m: Any, vma: Any, mss: MemSizeStats) -> None:
    from mmdbg.sim.arch.x86.pgtable import pte_table_lookup
    from mmdbg.sim.mm.filemap import AddressSpace
    from mmdbg.sim.mm.rmap import AnonVma

    mem_map = m.mem_map
    mm = vma.vm_mm
    locked = vma.vm_flags & VM_LOCKED
    a = vma.vm_start
    while a < vma.vm_end:
        t = pte_table_lookup(mm, a)
        if t is None:
            a = ((a >> 21) + 1) << 21
            continue
        end = min(vma.vm_end, ((a >> 21) + 1) << 21)
        while a < end:
            pte = t[a >> 12 & 511]
            a += 4096
            if not pte:
                continue
            if not pte & 0x101:
                mss.swap += 4096
                mss.swap_pss += 4096 << PSS_SHIFT
                continue
            if pte & 0x200:
                continue
            pfn = (pte >> 12) & 0xFFFFFFFFFF
            mp = mem_map.mapping.get(pfn)
            flags = mem_map.flags[pfn]
            young = pte & 0x20 or flags & (1 << pf.PG_referenced)
            dirty = pte & 0x40 or flags & (1 << pf.PG_dirty)
            anon = isinstance(mp, AnonVma)
            if anon:
                mss.anonymous += 4096
                if not flags & (1 << pf.PG_swapbacked) and not dirty:
                    mss.lazyfree += 4096
            mss.resident += 4096
            if young:
                mss.referenced += 4096
            mapcount = mem_map._mapcount[pfn] + 1
            if mapcount >= 2:
                pss = (4096 << PSS_SHIFT) // mapcount
                if dirty:
                    mss.shared_dirty += 4096
                else:
                    mss.shared_clean += 4096
            else:
                pss = 4096 << PSS_SHIFT
                if dirty:
                    mss.private_dirty += 4096
                else:
                    mss.private_clean += 4096
            mss.pss += pss
            if dirty:
                mss.pss_dirty += pss
            if anon:
                mss.pss_anon += pss
            elif isinstance(mp, AddressSpace) and mp.host.shmem:
                mss.pss_shmem += pss
            else:
                mss.pss_file += pss
            if locked:
                mss.pss_locked += pss


def _kb(label: str, nbytes: int) -> str:
    return f"{label:<16}{nbytes >> 10:8d} kB\n"


def __show_smap(mss: MemSizeStats, rollup: bool) -> str:
    out = _kb("Rss:", mss.resident)
    out += _kb("Pss:", mss.pss >> PSS_SHIFT)
    out += _kb("Pss_Dirty:", mss.pss_dirty >> PSS_SHIFT)
    if rollup:
        out += _kb("Pss_Anon:", mss.pss_anon >> PSS_SHIFT)
        out += _kb("Pss_File:", mss.pss_file >> PSS_SHIFT)
        out += _kb("Pss_Shmem:", mss.pss_shmem >> PSS_SHIFT)
    out += _kb("Shared_Clean:", mss.shared_clean)
    out += _kb("Shared_Dirty:", mss.shared_dirty)
    out += _kb("Private_Clean:", mss.private_clean)
    out += _kb("Private_Dirty:", mss.private_dirty)
    out += _kb("Referenced:", mss.referenced)
    out += _kb("Anonymous:", mss.anonymous)
    out += _kb("KSM:", mss.ksm)
    out += _kb("LazyFree:", mss.lazyfree)
    out += _kb("AnonHugePages:", 0)
    out += _kb("ShmemPmdMapped:", 0)
    out += _kb("FilePmdMapped:", 0)
    out += f"{'Shared_Hugetlb:':<16}{0:8d} kB\n"
    out += f"{'Private_Hugetlb:':<17}{0:7d} kB\n"
    out += _kb("Swap:", mss.swap)
    out += _kb("SwapPss:", mss.swap_pss >> PSS_SHIFT)
    out += _kb("Locked:", mss.pss_locked >> PSS_SHIFT)
    return out


def thp_eligible(m: Any, vma: Any) -> int:
    mode = m.config.transparent_hugepage
    if vma.vm_ops is not None or vma.vm_flags & VM_NOHUGEPAGE:
        return 0
    start = (vma.vm_start + (1 << 21) - 1) & ~((1 << 21) - 1)
    if start + (1 << 21) > vma.vm_end:
        return 0
    if mode == "always" or (mode == "madvise" and vma.vm_flags & VM_HUGEPAGE):
        return 1
    return 0


def show_smap_vma_flags(vma: Any) -> str:
    return "VmFlags: " + "".join(f"{n} " for b, n in VMFLAG_MNEMONICS if vma.vm_flags & b) + "\n"


def show_smaps(m: Any, t: Any) -> str:
    mm = t.mm
    if mm is None:
        return ""
    out = []
    for v in mm.mm_mt.vmas:
        mss = MemSizeStats()
        smap_gather_stats(m, v, mss)
        s = show_vma_header(v) + "\n"
        s += _kb("Size:", v.vm_end - v.vm_start)
        s += _kb("KernelPageSize:", 4096)
        s += _kb("MMUPageSize:", 4096)
        s += __show_smap(mss, False)
        s += f"{'THPeligible:':<16}{thp_eligible(m, v):8d}\n"
        s += show_smap_vma_flags(v)
        out.append(s)
    return "".join(out)


def show_smaps_rollup(m: Any, t: Any) -> str:
    mm = t.mm
    if mm is None or not mm.mm_mt.vmas:
        return ""
    mss = MemSizeStats()
    for v in mm.mm_mt.vmas:
        smap_gather_stats(m, v, mss)
    vmas = mm.mm_mt.vmas
    head = f"{vmas[0].vm_start:08x}-{vmas[-1].vm_end:08x} ---p 00000000 00:00 0 "
    return head.ljust(MAPS_PAD) + " [rollup]\n" + __show_smap(mss, True)


# -- status / statm / stat -------------------------------------------------------------------
def task_state(t: Any) -> str:
    if t.exit_state & EXIT_ZOMBIE:
        return "Z (zombie)"
    if t.exit_state & EXIT_DEAD:
        return "X (dead)"
    s = t.state
    if s & __TASK_STOPPED:
        return "T (stopped)"
    if s == TASK_RUNNING:
        return "R (running)"
    if s & TASK_UNINTERRUPTIBLE:
        return "D (disk sleep)"
    if s & TASK_INTERRUPTIBLE and t.flags & PF_KTHREAD:
        return "I (idle)"
    return "S (sleeping)"


def task_mem(m: Any, mm: Any) -> str:
    anon = mm.rss_stat[MM_ANONPAGES]
    file = mm.rss_stat[MM_FILEPAGES]
    shmem = mm.rss_stat[MM_SHMEMPAGES]
    hiwater_vm = total_vm = mm.total_vm
    if hiwater_vm < mm.hiwater_vm:
        hiwater_vm = mm.hiwater_vm
    hiwater_rss = total_rss = anon + file + shmem
    if hiwater_rss < mm.hiwater_rss:
        hiwater_rss = mm.hiwater_rss
    text = ((mm.end_code + 4095) & ~4095) - (mm.start_code & ~4095)
    text = min(text, mm.exec_vm << 12)
    lib = (mm.exec_vm << 12) - text
    swap = mm.rss_stat[MM_SWAPENTS]

    def kb(name: str, v: int) -> str:
        return f"{name}:\t{v:8d} kB\n"

    return (kb("VmPeak", hiwater_vm << 2) + kb("VmSize", total_vm << 2)
            + kb("VmLck", mm.locked_vm << 2) + kb("VmPin", mm.pinned_vm << 2)
            + kb("VmHWM", hiwater_rss << 2) + kb("VmRSS", total_rss << 2)
            + kb("RssAnon", anon << 2) + kb("RssFile", file << 2) + kb("RssShmem", shmem << 2)
            + kb("VmData", mm.data_vm << 2) + kb("VmStk", mm.stack_vm << 2)
            + kb("VmExe", text >> 10) + kb("VmLib", lib >> 10)
            + kb("VmPTE", mm.pgtables_bytes >> 10) + kb("VmSwap", swap << 2)
            + "HugetlbPages:\t       0 kB\n")


def show_status(m: Any, t: Any) -> str:
    ppid = t.parent.tgid if t.parent is not None else 0
    uid = f"{t.uid}\t{t.euid}\t{t.uid}\t{t.uid}"
    gid = f"{t.gid}\t{t.gid}\t{t.gid}\t{t.gid}"
    kthread = 1 if t.flags & PF_KTHREAD else 0
    out = (f"Name:\t{t.comm}\nUmask:\t0022\nState:\t{task_state(t)}\nTgid:\t{t.tgid}\n"
           f"Ngid:\t0\nPid:\t{t.pid}\nPPid:\t{ppid}\nTracerPid:\t0\nUid:\t{uid}\nGid:\t{gid}\n"
           f"FDSize:\t{64 if not kthread else 0}\nGroups:\t \nNStgid:\t{t.tgid}\nNSpid:\t{t.pid}\n"
           f"NSpgid:\t{t.tgid}\nNSsid:\t{t.tgid}\nKthread:\t{kthread}\n")
    if t.mm is not None:
        out += task_mem(m, t.mm)
        out += "CoreDumping:\t0\n"
        thp = 0 if m.config.transparent_hugepage == "never" else 1
        out += f"THP_enabled:\t{thp}\n"
        out += "untag_mask:\t0xffffffffffffffff\n"
    nthreads = sum(1 for x in m.tasks.values() if x.tgid == t.tgid)
    sigq_max = max(1, m.totalram_pages // 32 // 2)
    pend = 0
    for s in t.signal_pending:
        pend |= 1 << (s - 1)
    cap = "000001fffeffffff" if t.euid == 0 else "0000000000000000"
    ncpu = m.ncpus
    cpus_hex = f"{(1 << ncpu) - 1:x}"
    nodes = len(m.node_data)
    words = [0] * 32
    for n in range(nodes):
        words[31 - n // 32] |= 1 << (n % 32)
    mems = ",".join(f"{w:08x}" for w in words)
    out += (f"Threads:\t{nthreads}\nSigQ:\t{len(t.signal_pending)}/{sigq_max}\n"
            f"SigPnd:\t{0:016x}\nShdPnd:\t{pend:016x}\nSigBlk:\t{0:016x}\n"
            f"SigIgn:\t{0:016x}\nSigCgt:\t{0:016x}\nCapInh:\t0000000000000000\n"
            f"CapPrm:\t{cap}\nCapEff:\t{cap}\nCapBnd:\t000001fffeffffff\n"
            f"CapAmb:\t0000000000000000\nNoNewPrivs:\t0\nSeccomp:\t0\nSeccomp_filters:\t0\n"
            "Speculation_Store_Bypass:\tthread vulnerable\n"
            "SpeculationIndirectBranch:\tconditional enabled\n"
            f"Cpus_allowed:\t{cpus_hex}\nCpus_allowed_list:\t0-{ncpu - 1}\n"
            f"Mems_allowed:\t{mems}\nMems_allowed_list:\t0-{nodes - 1}\n"
            f"voluntary_ctxt_switches:\t{t.nvcsw}\nnonvoluntary_ctxt_switches:\t{t.nivcsw}\n")
    if ncpu == 1:
        out = out.replace("Cpus_allowed_list:\t0-0", "Cpus_allowed_list:\t0")
    if nodes == 1:
        out = out.replace("Mems_allowed_list:\t0-0", "Mems_allowed_list:\t0")
    return out


def show_statm(m: Any, t: Any) -> str:
    mm = t.mm
    if mm is None:
        return "0 0 0 0 0 0 0\n"
    file = mm.rss_stat[MM_FILEPAGES]
    shmem = mm.rss_stat[MM_SHMEMPAGES]
    shared = file + shmem
    text = (((mm.end_code + 4095) & ~4095) - (mm.start_code & ~4095)) >> 12
    data = mm.data_vm + mm.stack_vm
    resident = shared + mm.rss_stat[MM_ANONPAGES]
    return f"{mm.total_vm} {resident} {shared} {text} 0 {data} 0\n"


def show_stat(m: Any, t: Any) -> str:
    """/proc/PID/stat (do_task_stat): 52 fields."""
    from mmdbg.sim.kernel.time import HZ

    st = task_state(t)[0]
    ppid = t.parent.tgid if t.parent is not None else 0
    mm = t.mm
    vsize = mm.total_vm << 12 if mm is not None else 0
    rss = mm.get_mm_rss() if mm is not None else 0
    tick = 1_000_000_000 // HZ
    start = t.start_time // (1_000_000_000 // 100)
    f = [t.pid, f"({t.comm})", st, ppid, t.tgid, t.tgid, 0, -1, t.flags, t.min_flt, 0,
         t.maj_flt, 0, t.utime // tick, t.stime // tick, 0, 0, 20, 0, 1, 0, start, vsize, rss,
         (1 << 64) - 1, mm.start_code if mm else 0, mm.end_code if mm else 0,
         mm.start_stack if mm else 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, t.cpu, 0, 0, 0, 0, 0,
         mm.start_data if mm else 0, mm.end_data if mm else 0, mm.start_brk if mm else 0,
         mm.arg_start if mm else 0, mm.arg_end if mm else 0, mm.env_start if mm else 0,
         mm.env_end if mm else 0, t.exit_code]
    return " ".join(str(x) for x in f) + "\n"


def show_cmdline(m: Any, t: Any) -> str:
    from mmdbg.sim.mm.uaccess import access_remote_vm

    mm = t.mm
    if mm is None or mm.arg_end <= mm.arg_start:
        return ""
    data = access_remote_vm(m, mm, mm.arg_start, mm.arg_end - mm.arg_start)
    return data.decode("latin-1") if data else ""


# -- pagemap --------------------------------------------------------------------------------
def pagemap_entry(m: Any, mm: Any, vma: Any, addr: int) -> int:
    from mmdbg.sim.arch.x86.pgtable import pte_swp_offset, pte_swp_type, pte_table_lookup
    from mmdbg.sim.mm.rmap import AnonVma

    if vma is None:
        return 0
    t = pte_table_lookup(mm, addr)
    pte = t[addr >> 12 & 511] if t is not None else 0
    if not pte:
        return PM_SOFT_DIRTY if vma.vm_flags & VM_SOFTDIRTY else 0
    if pte & 0x101:
        flags = PM_PRESENT
        if pte & (1 << 11):
            flags |= PM_SOFT_DIRTY
        if pte & (1 << 10):
            flags |= PM_UFFD_WP
        pfn = (pte >> 12) & 0xFFFFFFFFFF
        if not pte & 0x200:
            if not isinstance(m.mem_map.mapping.get(pfn), AnonVma):
                flags |= PM_FILE
            if m.mem_map._mapcount[pfn] == 0:
                flags |= PM_MMAP_EXCLUSIVE
        return flags | (pfn & PM_PFRAME_MASK)
    flags = PM_SWAP
    if pte & 2:
        flags |= PM_SOFT_DIRTY
    swp = (pte_swp_offset(pte) << 5 | pte_swp_type(pte)) & PM_PFRAME_MASK
    return flags | swp


def pagemap_read(m: Any, pid: int, vaddr: int, count: int = 1) -> bytes:
    """pread(/proc/PID/pagemap, count * 8, vaddr / 4096 * 8): ``count`` 64-bit entries."""
    t = m.tasks.get(pid)
    if t is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", f"/proc/{pid}/pagemap")
    mm = t.mm
    out = bytearray()
    a = vaddr & ~4095
    for _ in range(count):
        e = 0
        if mm is not None:
            v = mm.vma_lookup(a)
            e = pagemap_entry(m, mm, v, a)
        out += e.to_bytes(8, "little")
        a += 4096
    return bytes(out)


def pagemap_entries(m: Any, pid: int, vaddr: int, count: int = 1) -> list[int]:
    b = pagemap_read(m, pid, vaddr, count)
    return [int.from_bytes(b[i:i + 8], "little") for i in range(0, len(b), 8)]


# -- oom_score_adj ---------------------------------------------------------------------------
def write_oom_score_adj(m: Any, t: Any, text: str) -> None:
    from mmdbg.sim.fs.proc_sys import parse_int
    from mmdbg.sim.trace import declare_tracepoint

    v = parse_int(text)
    if not -1000 <= v <= 1000:
        raise KernelError(errno.EINVAL)
    if t.flags & PF_KTHREAD:
        raise KernelError(errno.EINVAL)
    tp = declare_tracepoint("oom:oom_score_adj_update")
    for x in m.tasks.values():
        if x.tgid == t.tgid:
            x.oom_score_adj = v
    if tp.enabled:
        tp.fire(pid=t.pid, comm=t.comm, oom_score_adj=v)


def register(v: VFS, m: Any) -> None:
    def reg(name: str, fn: Any, writer: Any = None, mode: int | None = None) -> None:
        def reader(pid: str) -> str:
            return fn(m, _task(m, pid))

        w = None
        if writer is not None:
            def w(text: str, pid: str) -> None:
                writer(m, _task(m, pid), text)

        v.register(f"/proc/{{pid}}/{name}", reader, w, mode=mode)

    reg("maps", show_maps)
    reg("smaps", show_smaps)
    reg("smaps_rollup", show_smaps_rollup)
    reg("status", show_status)
    reg("statm", show_statm)
    reg("stat", show_stat)
    reg("cmdline", show_cmdline)
    reg("comm", lambda m, t: t.comm + "\n")
    reg("oom_score_adj", lambda m, t: f"{t.oom_score_adj}\n", write_oom_score_adj, mode=0o644)

    def pagemap_text(m: Any, t: Any) -> str:
        raise KernelError(errno.EINVAL, "pagemap is binary: pread it (proc_pid.pagemap_read)")

    reg("pagemap", pagemap_text, mode=0o400)
    v.enumerate_param("pid", lambda: [str(p) for p in sorted(m.tasks)])


_ = VM_GROWSDOWN
