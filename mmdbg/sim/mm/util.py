"""Overcommit accounting (mm/util.c: __vm_enough_memory, vm_commit_limit).

``vm.overcommit_memory``: 0 (OVERCOMMIT_GUESS) refuses a single request larger than RAM + swap;
1 (OVERCOMMIT_ALWAYS) never refuses; 2 (OVERCOMMIT_NEVER) refuses once ``Committed_AS`` would
pass ``CommitLimit`` = RAM * ``overcommit_ratio`` / 100 + swap (or ``overcommit_kbytes``), less
the admin reserve for unprivileged tasks and ``min(total_vm / 32, user_reserve_kbytes)``.
``Committed_AS`` (``vm_committed_as``, in pages) is what every accountable mapping charged:
private writable mappings (``VM_ACCOUNT``), shared anonymous memory, brk and stack growth.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.kernel.printk import KERN_WARNING
from mmdbg.sim.trace import current_machine, kfunc

OVERCOMMIT_GUESS = 0
OVERCOMMIT_ALWAYS = 1
OVERCOMMIT_NEVER = 2


def total_swap_pages(m: Any) -> int:
    return m.vm.total_swap_pages


def vm_commit_limit(m: Any) -> int:
    """CommitLimit in pages."""
    kbytes = m.sysctl["vm.overcommit_kbytes"]
    if kbytes:
        allowed = kbytes >> 2
    else:
        allowed = m.totalram_pages * m.sysctl["vm.overcommit_ratio"] // 100
    return allowed + total_swap_pages(m)


def vm_memory_committed(m: Any) -> int:
    """Committed_AS in pages."""
    return max(0, m.vm_committed_as)


def vm_acct_memory(m: Any, pages: int) -> None:
    m.vm_committed_as += pages


def vm_unacct_memory(m: Any, pages: int) -> None:
    m.vm_committed_as -= pages


def capable_sys_admin(t: Any) -> bool:
    return t is None or t.euid == 0


@kfunc(aliases=("security_vm_enough_memory_mm",))
def __vm_enough_memory(mm: Any, pages: int, cap_sys_admin: bool) -> int:
    """Charge ``pages`` to Committed_AS, or refuse with -ENOMEM as the policy says."""
    m = current_machine()
    vm_acct_memory(m, pages)
    mode = m.sysctl["vm.overcommit_memory"]
    if mode == OVERCOMMIT_ALWAYS:
        return 0
    if mode == OVERCOMMIT_GUESS:
        if pages <= m.totalram_pages + total_swap_pages(m):
            return 0
    else:
        allowed = vm_commit_limit(m)
        if not cap_sys_admin:
            allowed -= m.sysctl["vm.admin_reserve_kbytes"] >> 2
        if mm is not None:
            reserve = m.sysctl["vm.user_reserve_kbytes"] >> 2
            allowed -= min(mm.total_vm // 32, reserve)
        if vm_memory_committed(m) < allowed:
            return 0
    t = m.current
    m.printk(f"__vm_enough_memory: pid: {t.pid}, comm: {t.comm}, bytes: {pages << 12} "
             "not enough memory for the allocation", level=KERN_WARNING)
    vm_unacct_memory(m, pages)
    return -errno.ENOMEM


def security_vm_enough_memory(m: Any, mm: Any, pages: int) -> int:
    return __vm_enough_memory(mm, pages, capable_sys_admin(m.current))
