"""The x86 page-fault handler (arch/x86/mm/fault.c).

::

    exc_page_fault(regs, error_code)          address = read_cr2()
      [tp exceptions:page_fault_user | page_fault_kernel]
      -> do_user_addr_fault(regs, error_code, address)
           perf sw event page-faults
           lock_vma_under_rcu -> handle_mm_fault          (the per-VMA-lock fast path)
           lock_mm_and_find_vma (expand_stack)            (the mmap_lock path)
           access_error -> bad_area_access_error           SIGSEGV/SEGV_ACCERR
           no VMA       -> bad_area_nosemaphore            SIGSEGV/SEGV_MAPERR
           VM_FAULT_OOM -> pagefault_out_of_memory ; VM_FAULT_SIGBUS -> do_sigbus
      -> do_kern_addr_fault                                (a user access to a kernel address)

A user-mode fault that cannot be resolved prints the kernel's ``show_signal_msg`` line
(``comm[pid]: segfault at ADDR ip IP sp SP error N in FILE[OFF,START+SIZE] likely on CPU C
(core C, socket 0)`` and the ``Code:`` line) and queues SIGSEGV; a kernel-mode access to user
memory (``copy_from_user``) fails with -EFAULT instead (the exception-table fixup).

Simplification: ``pagefault_out_of_memory`` with no OOM killer available prints the kernel's
"Huh VM_FAULT_OOM leaked out" warning and kills the faulting task with SIGKILL instead of
retrying forever.
"""

from __future__ import annotations

from typing import Any

from mmdbg.sim import trace as _trace
from mmdbg.sim.arch.x86.tlb import (
    X86_PF_INSTR,
    X86_PF_PK,
    X86_PF_PROT,
    X86_PF_USER,
    X86_PF_WRITE,
    UserAccessFault,
)
from mmdbg.sim.include.mm import (
    FAULT_FLAG_DEFAULT,
    FAULT_FLAG_INSTRUCTION,
    FAULT_FLAG_USER,
    FAULT_FLAG_WRITE,
    VM_FAULT_ERROR,
    VM_FAULT_HWPOISON,
    VM_FAULT_OOM,
    VM_FAULT_SIGBUS,
    VM_FAULT_SIGSEGV,
)
from mmdbg.sim.kernel import signal as ksignal
from mmdbg.sim.kernel.printk import KERN_INFO, KERN_WARNING
from mmdbg.sim.mm import memory
from mmdbg.sim.mm.vma import VM_EXEC, VM_GROWSDOWN, VM_READ, VM_WRITE
from mmdbg.sim.trace import current_machine, declare_tracepoint, kfunc

_tp_user = declare_tracepoint("exceptions:page_fault_user")
_tp_kernel = declare_tracepoint("exceptions:page_fault_kernel")

OPCODE_BUFSIZE = 64
OPCODE_PROLOGUE = 42


class PtRegs:
    """``struct pt_regs``: the user registers the fault path reads (ip, sp)."""

    __slots__ = ("cs", "ip", "sp")
    ktype = "pt_regs"

    def __init__(self, ip: int, sp: int, user: bool = True) -> None:
        self.ip = ip
        self.sp = sp
        self.cs = 0x33 if user else 0x10

    def user_mode(self) -> bool:
        return self.cs & 3 == 3


def _user_regs(ip: int, sp: int) -> Any:
    from mmdbg.sim.kernel.fork import UserRegs

    return UserRegs(ip, sp)


_KERNEL_REGS = PtRegs(0xFFFFFFFF81000000 + 0x5A4E30, 0xFFFFC90000000000, False)


def raise_page_fault(m: Any, address: int, error_code: int) -> None:
    """What the CPU does on #PF: save CR2 and enter the handler; deliver signals after."""
    t = m.cpu_curr[m.cpu]
    vm = m.vm
    vm.cr2[m.cpu] = address
    if error_code & X86_PF_USER:
        regs = t.thread  # the task's saved user registers (task_pt_regs)
        if regs is None:
            regs = t.thread = _user_regs(0, 0)
    else:
        regs = _KERNEL_REGS
    m.clock.ns += vm.cost.fault
    exc_page_fault(regs, error_code)
    if t.signal_pending and error_code & X86_PF_USER:
        ksignal.deliver_pending(t)


@kfunc(aliases=("asm_exc_page_fault", "handle_page_fault"))
def exc_page_fault(regs: PtRegs, error_code: int) -> None:
    m = _trace._current
    address = m.vm.cr2[m.cpu]
    # trace_page_fault_entries()
    if regs.cs & 3 == 3:  # user_mode(regs)
        if _tp_user.enabled:
            _tp_user.fire(address=address, ip=regs.ip, error_code=error_code)
    elif _tp_kernel.enabled:
        _tp_kernel.fire(address=address, ip=regs.ip, error_code=error_code)
    if address >= m.vm.paging.task_size:
        do_kern_addr_fault(regs, error_code, address)
    else:
        do_user_addr_fault(regs, error_code, address)


@kfunc
def do_kern_addr_fault(regs: PtRegs, hw_error_code: int, address: int) -> None:
    """A user access to a kernel address: SIGSEGV (no kernel mappings are faulted in)."""
    if hw_error_code & X86_PF_USER:
        bad_area_nosemaphore(regs, hw_error_code, address)
    else:
        raise UserAccessFault(address)


@kfunc
def access_error(error_code: int, vma: Any) -> bool:
    if error_code & X86_PF_PK:
        return True
    if error_code & X86_PF_WRITE:
        return not vma.vm_flags & VM_WRITE
    if error_code & X86_PF_PROT:
        return True
    return not vma.vm_flags & (VM_READ | VM_WRITE | VM_EXEC)


@kfunc
def lock_vma_under_rcu(mm: Any, address: int) -> Any:
    """The per-VMA-lock lookup: only a VMA that already contains ``address``."""
    v = mm.mm_mt.find(address)
    if v is None or v.vm_start > address:
        return None
    return v


@kfunc
def lock_mm_and_find_vma(mm: Any, addr: int, regs: PtRegs) -> Any:
    """Under mmap_lock: find the VMA, growing a stack VMA down to ``addr`` if needed."""
    from mmdbg.sim.mm.mmap import expand_stack_locked

    v = mm.mm_mt.find(addr)
    if v is None:
        return None
    if v.vm_start <= addr:
        return v
    if not v.vm_flags & VM_GROWSDOWN:
        return None
    if expand_stack_locked(v, addr):
        return None
    return v


@kfunc
def do_user_addr_fault(regs: PtRegs, error_code: int, address: int) -> None:
    m = _trace._current
    tsk = m.cpu_curr[m.cpu]
    mm = tsk.mm
    if mm is None:
        if error_code & X86_PF_USER:
            bad_area_nosemaphore(regs, error_code, address)
            return
        raise UserAccessFault(address)
    tsk.perf_page_faults += 1  # perf_sw_event(PERF_COUNT_SW_PAGE_FAULTS)
    flags = FAULT_FLAG_DEFAULT
    if error_code & X86_PF_USER:
        flags |= FAULT_FLAG_USER
    if error_code & X86_PF_WRITE:
        flags |= FAULT_FLAG_WRITE
    if error_code & X86_PF_INSTR:
        flags |= FAULT_FLAG_INSTRUCTION
    vma = lock_vma_under_rcu(mm, address)
    if vma is None:
        vma = lock_mm_and_find_vma(mm, address, regs)
        if vma is None:
            bad_area_nosemaphore(regs, error_code, address)
            return
    if access_error(error_code, vma):
        bad_area_access_error(regs, error_code, address, vma)
        return
    fault = memory.handle_mm_fault(vma, address, flags, regs)
    if fault & VM_FAULT_ERROR:
        if not error_code & X86_PF_USER:
            raise UserAccessFault(address)
        if fault & VM_FAULT_OOM:
            pagefault_out_of_memory()
        elif fault & (VM_FAULT_SIGBUS | VM_FAULT_HWPOISON):
            do_sigbus(regs, error_code, address, fault)
        elif fault & VM_FAULT_SIGSEGV:
            bad_area_nosemaphore(regs, error_code, address)


@kfunc
def bad_area_nosemaphore(regs: PtRegs, error_code: int, address: int) -> None:
    __bad_area_nosemaphore(regs, error_code, address, ksignal.SEGV_MAPERR)


@kfunc
def bad_area_access_error(regs: PtRegs, error_code: int, address: int, vma: Any) -> None:
    __bad_area_nosemaphore(regs, error_code, address, ksignal.SEGV_ACCERR)


@kfunc
def __bad_area_nosemaphore(regs: PtRegs, error_code: int, address: int, si_code: int) -> None:
    m = current_machine()
    if not error_code & X86_PF_USER:
        raise UserAccessFault(address)
    tsk = m.current
    if address >= m.vm.paging.task_size:
        error_code |= X86_PF_PROT
    show_signal_msg(regs, error_code, address, tsk)
    ksignal.force_sig_fault(ksignal.SIGSEGV, si_code, address)


def show_signal_msg(regs: PtRegs, error_code: int, address: int, tsk: Any) -> None:
    """``comm[pid]: segfault at ADDR ip IP sp SP error N in FILE[...] likely on CPU ...``."""
    m = current_machine()
    line = (f"{tsk.comm}[{tsk.pid}]: segfault at {address:x} ip {regs.ip:016x} "
            f"sp {regs.sp:016x} error {error_code:x}")
    line += print_vma_addr(tsk.mm, regs.ip, " in ")
    cpu = m.cpu
    line += f" likely on CPU {cpu} (core {cpu}, socket 0)"
    m.printk(line, level=KERN_INFO)
    m.printk(show_opcodes(m, tsk.mm, regs.ip), level=KERN_INFO)


def print_vma_addr(mm: Any, ip: int, prefix: str) -> str:
    if mm is None:
        return ""
    v = mm.vma_lookup(ip)
    if v is None or v.vm_file is None:
        return ""
    off = ip - v.vm_start + (v.vm_pgoff << 12)
    name = v.vm_file.path.rsplit("/", 1)[-1]
    return f"{prefix}{name}[{off:x},{v.vm_start:x}+{v.vm_end - v.vm_start:x}]"


def show_opcodes(m: Any, mm: Any, ip: int) -> str:
    """The ``Code:`` line: 64 bytes around ip, the faulting byte in <>, read without faulting."""
    from mmdbg.sim.arch.x86.pgtable import pte_table_lookup

    start = ip - OPCODE_PROLOGUE
    data = bytearray()
    a = start
    while a < start + OPCODE_BUFSIZE:
        t = pte_table_lookup(mm, a) if mm is not None and a >= 0 else None
        pte = t[a >> 12 & 511] if t is not None else 0
        if not pte & 1:
            return f"Code: Unable to access opcode bytes at 0x{start:x}."
        n = min(4096 - (a & 0xFFF), start + OPCODE_BUFSIZE - a)
        data += m.physmem.read(((pte >> 12) & 0xFFFFFFFFFF) << 12 | (a & 0xFFF), n)
        a += n
    parts = [f"<{b:02x}>" if i == OPCODE_PROLOGUE else f"{b:02x}" for i, b in enumerate(data)]
    return "Code: " + " ".join(parts)


@kfunc
def do_sigbus(regs: PtRegs, error_code: int, address: int, fault: int) -> None:
    ksignal.force_sig_fault(ksignal.SIGBUS, ksignal.BUS_ADRERR, address)


@kfunc
def pagefault_out_of_memory() -> None:
    m = current_machine()
    t = m.current
    if ksignal.fatal_signal_pending(t):
        return
    m.printk("Huh VM_FAULT_OOM leaked out to the #PF handler. Retrying PF", level=KERN_WARNING)
    ksignal.send_sig(ksignal.SIGKILL, t)
