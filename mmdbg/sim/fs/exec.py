"""execve (fs/exec.c, fs/binfmt_elf.c): replace a task's address space with a program image.

The simulated executables are files on the root file system whose layout is described by an
:class:`ElfImage` (segment sizes; the bytes are deterministic pseudo-random text).  Loading
one builds the address space a dynamically linked PIE program has on x86_64::

    PIE base (ELF_ET_DYN_BASE + random)   r--p r-xp r--p r--p rw-p   /usr/bin/NAME
    [heap]                                (after the first brk, start randomised in 1 GiB)
    below mmap_base, top-down             libc.so.6 (5 segments + its anonymous bss),
                                          [vvar] [vdso], ld-linux-x86-64.so.2 (5 segments)
    [stack]                               132 KiB below a randomised STACK_TOP

``create_elf_tables`` writes argv, envp and the auxiliary vector onto the stack through the
page tables (so the stack's top pages are resident), and the dynamic loader's start-up is
simulated by the accesses ld.so makes (its text, libc's text and data, the program's entry
page and data): real user-mode page faults, file pages through the page cache, CoW copies of
the written data pages.  Libraries and their page-cache pages are shared by every process.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any

from mmdbg.sim.include.mm import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_PRIVATE,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
)
from mmdbg.sim.trace import current_machine, kfunc

STACK_TOP_PAGES = 33  # a fresh process has a 132 KiB [stack]
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
LD_SO = "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"


@dataclass(frozen=True)
class ElfImage:
    """Segment sizes in pages: headers (r--), text (r-x), rodata (r--), relro (r--), data
    (rw-), then anonymous bss pages; ``entry`` is the entry point's page within the text."""

    hdr: int = 2
    text: int = 5
    rodata: int = 3
    relro: int = 1
    data: int = 1
    bss: int = 0
    entry: int = 0

    @property
    def file_pages(self) -> int:
        return self.hdr + self.text + self.rodata + self.relro + self.data


LIBC_IMAGE = ElfImage(hdr=0x26, text=0x156, rodata=0x53, relro=4, data=2, bss=13, entry=0)
LD_IMAGE = ElfImage(hdr=1, text=0x26, rodata=0xA, relro=2, data=2, bss=0, entry=0x1A)
DEFAULT_IMAGE = ElfImage()


def images(m: Any) -> dict[str, ElfImage]:
    return m.vm.binaries


def install_binary(m: Any, path: str, image: ElfImage | None = None) -> None:
    """Put an executable on the root file system (idempotent)."""
    image = image or DEFAULT_IMAGE
    fs = m.vm.fs
    if path in m.vm.binaries and fs.exists(path):
        return
    m.vm.binaries[path] = image
    fs.create(path, size=image.file_pages * 4096, pattern=True)


def ensure_libraries(m: Any) -> None:
    install_binary(m, LIBC, LIBC_IMAGE)
    install_binary(m, LD_SO, LD_IMAGE)


def _map_image(m: Any, path: str, image: ElfImage, base: int | None) -> int:
    """Map an ELF image's segments (MAP_FIXED after a reservation); returns its base."""
    from mmdbg.sim.mm import mmap

    fs = m.vm.fs
    f = fs.open(path, "r")
    total = image.file_pages + image.bss
    try:
        if base is None:
            base = mmap.sys_mmap(0, total * 4096, PROT_READ, MAP_PRIVATE, f, 0)
            if base < 0:
                return base
        segs = [
            (0, image.hdr, PROT_READ),
            (image.hdr, image.text, PROT_READ | PROT_EXEC),
            (image.hdr + image.text, image.rodata, PROT_READ),
            (image.hdr + image.text + image.rodata, image.relro, PROT_READ),
            (image.hdr + image.text + image.rodata + image.relro, image.data,
             PROT_READ | PROT_WRITE),
        ]
        for off, n, prot in segs:
            if n:
                r = mmap.sys_mmap(base + off * 4096, n * 4096, prot, MAP_PRIVATE | MAP_FIXED,
                                  f, off * 4096)
                if r < 0:
                    return r
        if image.bss:
            r = mmap.sys_mmap(base + image.file_pages * 4096, image.bss * 4096,
                              PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS,
                              None, 0)
            if r < 0:
                return r
    finally:
        f.put()
    return base


def _special_mapping(m: Any, mm: Any, name: str, pages: int, vm_flags: int) -> int:
    from mmdbg.sim.mm import mmap

    addr = mmap.__get_unmapped_area(None, 0, pages * 4096, 0, 0, vm_flags)
    if addr < 0:
        return addr
    v = mmap.new_vma(mm, addr, addr + pages * 4096, vm_flags, 0)
    v.vm_ops = mmap.special_mapping_vmops
    v.special_name = name
    mmap.vma_set_page_prot(v)
    mmap.vma_link(mm, v)
    from mmdbg.sim.mm.vma import vm_stat_account

    vm_stat_account(mm, vm_flags, pages)
    return addr


@kfunc(aliases=("do_execveat_common", "bprm_execve", "load_elf_binary"))
def do_execve(filename: str, argv: list[str], envp: list[str]) -> int:
    """Replace current's program: a new mm with the image of ``filename``; 0 or -errno."""
    from mmdbg.sim.arch.x86 import tlb as x86_tlb
    from mmdbg.sim.kernel.exit import mmput
    from mmdbg.sim.kernel.fork import UserRegs, mm_alloc
    from mmdbg.sim.mm import mmap
    from mmdbg.sim.mm.vma import (
        VM_DONTDUMP,
        VM_DONTEXPAND,
        VM_EXEC,
        VM_IO,
        VM_MAYEXEC,
        VM_MAYREAD,
        VM_MAYWRITE,
        VM_PFNMAP,
        VM_READ,
        VM_SOFTDIRTY,
        VM_STACK_FLAGS,
        vm_stat_account,
    )

    m = current_machine()
    m.clock.ns += 100_000  # the kernel's share of execve
    t = m.current
    fs = m.vm.fs
    image = m.vm.binaries.get(filename)
    if image is None or not fs.exists(filename):
        return -errno.ENOENT
    ensure_libraries(m)
    mm = mm_alloc(m)
    if mm is None:
        return -errno.ENOMEM
    # exec_mmap: the point of no return
    old = t.mm
    t.mm = t.active_mm = mm
    mm.owner = t
    x86_tlb.switch_mm_irqs_off(old, mm, t)
    if old is not None:
        mmput(old)
    t.comm = filename.rsplit("/", 1)[-1][:15]
    mmap.arch_pick_mmap_layout(mm, mmap.rlimit(t, mmap.RLIMIT_STACK))
    rnd = mmap.randomize_va_space(m)
    # setup_arg_pages: the stack below a randomised top
    stack_top = mmap.DEFAULT_MAP_WINDOW
    if rnd:
        stack_top -= (m.rng.getrandbits(22) & mmap.STACK_RND_MASK) << 12
    stack_top &= ~0xFFF
    sv = mmap.new_vma(mm, stack_top - STACK_TOP_PAGES * 4096, stack_top,
                      VM_STACK_FLAGS | VM_SOFTDIRTY, (stack_top >> 12) - STACK_TOP_PAGES)
    mmap.vma_set_page_prot(sv)
    mmap.vma_link(mm, sv)
    vm_stat_account(mm, sv.vm_flags, STACK_TOP_PAGES)
    from mmdbg.sim.mm.util import security_vm_enough_memory

    security_vm_enough_memory(m, mm, STACK_TOP_PAGES)
    # the program at a randomised PIE base
    load_bias = (mmap.DEFAULT_MAP_WINDOW // 3 * 2) & ~0xFFF
    if rnd:
        load_bias += mmap.arch_mmap_rnd(m)
    load_bias &= ~0xFFF
    r = _map_image(m, filename, image, load_bias)
    if r < 0:
        return r
    end = load_bias + (image.file_pages + image.bss) * 4096
    mm.start_code = load_bias + image.hdr * 4096
    mm.end_code = mm.start_code + image.text * 4096
    mm.start_data = load_bias + (image.hdr + image.text + image.rodata) * 4096
    mm.end_data = end
    brk = end
    if rnd:
        brk += m.rng.getrandbits(18) << 12  # arch_randomize_brk: within 1 GiB
    mm.start_brk = mm.brk = brk
    mm.exe_file = fs.open(filename, "r")
    # the interpreter, the vDSO and libc (what ld.so maps at start-up)
    ld_base = _map_image(m, LD_SO, LD_IMAGE, None)
    if ld_base < 0:
        return ld_base
    _special_mapping(m, mm, "[vdso]", 2, VM_READ | VM_EXEC | VM_MAYREAD | VM_MAYWRITE
                     | VM_MAYEXEC | VM_DONTEXPAND)
    _special_mapping(m, mm, "[vvar]", 4, VM_READ | VM_MAYREAD | VM_IO | VM_DONTDUMP | VM_PFNMAP
                     | VM_DONTEXPAND)
    libc_base = _map_image(m, LIBC, LIBC_IMAGE, None)
    if libc_base < 0:
        return libc_base
    # create_elf_tables: argv/envp strings at the top of the stack, then pointers
    sp = create_elf_tables(m, mm, stack_top, argv, envp)
    mm.start_stack = sp
    ip = mm.start_code + image.entry * 4096 + 0x139
    t.thread = UserRegs(ld_base + (LD_IMAGE.hdr + LD_IMAGE.entry) * 4096 + 0x40, sp)
    simulate_ld_so(m, t, ld_base, libc_base, load_bias, image)
    t.thread = UserRegs(ip, sp - 0x58)
    return 0


def create_elf_tables(m: Any, mm: Any, stack_top: int, argv: list[str],
                      envp: list[str]) -> int:
    from mmdbg.sim.mm.uaccess import copy_to_user

    p = stack_top - 8
    strings = []
    blob = b""
    for s in list(argv) + list(envp):
        blob += s.encode() + b"\0"
    p -= len(blob)
    p &= ~0xF
    mm.arg_start = p
    copy_to_user(p, blob)
    off = 0
    for s in list(argv) + list(envp):
        strings.append(p + off)
        off += len(s.encode()) + 1
    mm.arg_end = mm.arg_start + sum(len(s.encode()) + 1 for s in argv)
    mm.env_start = mm.arg_end
    mm.env_end = p + len(blob)
    words = [len(argv), *strings[:len(argv)], 0, *strings[len(argv):], 0, 0, 0]
    table = b"".join(w.to_bytes(8, "little") for w in words)
    sp = (p - len(table)) & ~0xF
    copy_to_user(sp, table)
    return sp


def simulate_ld_so(m: Any, t: Any, ld_base: int, libc_base: int, load_bias: int,
                   image: ElfImage) -> None:
    """The dynamic loader's first accesses, as user-mode accesses through the MMU."""
    from mmdbg.sim.arch.x86.tlb import mmu_translate

    acc = [
        (ld_base + (LD_IMAGE.hdr + LD_IMAGE.entry) * 4096, False, True),
        (ld_base, False, False),
        (ld_base + (LD_IMAGE.file_pages - 1) * 4096, True, False),
        (load_bias, False, False),
        (libc_base, False, False),
        (libc_base + LIBC_IMAGE.hdr * 4096, False, True),
        (libc_base + (LIBC_IMAGE.file_pages - 1) * 4096, True, False),
        (libc_base + LIBC_IMAGE.file_pages * 4096, True, False),
        (load_bias + (image.file_pages - 1) * 4096, True, False),
        (load_bias + (image.hdr + image.entry) * 4096, False, True),
    ]
    for addr, write, ex in acc:
        mmu_translate(m, addr, write, True, ex)
