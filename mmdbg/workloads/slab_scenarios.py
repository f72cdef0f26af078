"""Kernel-memory debugging scenarios (issue 6), registered in the scenario registry.

Each one loads the ``buggy_drv`` module (``mmdbg/workloads/modules/buggy_drv.py``) from a
process named after the scenario, which then sleeps for ``duration`` while the module's
kernel thread does its work on simulated time.  docs/slab-debugging.md walks through them.

==================  ======================================================================
``slab-leak``       a module leaking 64-byte objects at a rate; kmemleak and
                    scripts/slab_memleak.bt find them (boot with ``kmemleak=on``)
``use-after-free``  a module reading a freed session object; KASAN reports it (boot with
                    ``kasan=on``; ``kasan.fault=panic`` stops the machine at the access)
``kfence-oob``      a module writing one byte past its buffers; KFENCE catches one of the
                    sampled allocations (boot with ``kfence.sample_interval=100``)
==================  ======================================================================
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from mmdbg.workloads.api import Process
from mmdbg.workloads.programs import parse_seconds
from mmdbg.workloads.scenarios import Param, Scenario, _int, register


def _secs(t: str) -> float:
    return parse_seconds(t)


def _positive(t: str) -> int:
    v = _int(t)
    if v <= 0:
        from mmdbg.workloads.programs import UsageError

        raise UsageError(f"invalid number '{t}' (must be positive)")
    return v


def _module_driver(m: Any, comm: str, modargs: str, duration: float) -> Process:
    """A process that runs ``insmod buggy_drv MODARGS`` and sleeps ``duration``."""

    def prog(p: Process) -> Generator:
        from mmdbg.sim.kernel import module

        try:
            module.load_module(p.m, "buggy_drv", modargs)
        except module.ModuleError as e:
            p.task.tty_write(f"insmod: ERROR: {e}\n")
            return 1
        yield p.sleep(duration)
        return 0

    return Process.start(m, f"/usr/bin/{comm}", [comm], prog)


def _slab_leak(m: Any, a: dict[str, Any]) -> Process:
    interval = max(1, 1000 // a["rate"])
    return _module_driver(m, "slab-leak", f"bug=leak interval_ms={interval} "
                                          f"leak_every={a['leak_every']}", a["duration"])


def _use_after_free(m: Any, a: dict[str, Any]) -> Process:
    return _module_driver(m, "use-after-free", f"bug=uaf interval_ms={a['interval']} "
                                               f"uaf_after={a['after']}", a["duration"])


def _kfence_oob(m: Any, a: dict[str, Any]) -> Process:
    return _module_driver(m, "kfence-oob", f"bug=oob interval_ms={a['interval']} "
                                           f"size={a['size']}", a["duration"])


register(Scenario(
    "slab-leak", "a module leaks kmalloc-64 objects at a rate (kmemleak, slab_memleak.bt)",
    """`insmod buggy_drv bug=leak`: the module's kernel thread submits `rate` requests per
second (kmalloc-96 objects on a pending list, each with a kzalloc(64) context); every
`leak_every`-th completion takes an error path that frees the request but not its context.
kmalloc-64 grows without bound (slabtop, /proc/slabinfo, kmem -s kmalloc-64).  With
kmemleak=on, two scans at least 5 s apart (echo scan > /sys/kernel/debug/kmemleak) or the
kmemleak thread list the lost contexts with the backtrace buggy_map_ctx <- buggy_submit;
scripts/slab_memleak.bt counts outstanding kmalloc bytes by kernel stack.""",
    (Param("rate", "20", _positive, "requests per second"),
     Param("leak_every", "8", _positive, "every Nth completion leaks its context"),
     Param("duration", "20", _secs, "seconds the scenario runs")),
    _slab_leak, cmdline="kmemleak=on"))

register(Scenario(
    "use-after-free", "a module reads a freed session object (KASAN)",
    """`insmod buggy_drv bug=uaf`: the module's kernel thread polls a session (kmalloc-128);
every `after` polls buggy_close_session frees it without clearing the pointer and the
next buggy_poll_session reads the freed object.  With kasan=on dmesg gets "BUG: KASAN:
slab-use-after-free in buggy_poll_session" with the allocation and free stacks; with
kasan.fault=panic the machine stops at the access.  Without KASAN nothing is noticed.""",
    (Param("after", "5", _positive, "polls before the session is freed"),
     Param("interval", "10", _positive, "milliseconds between polls"),
     Param("duration", "1", _secs, "seconds the scenario runs")),
    _use_after_free, cmdline="kasan=on"))

register(Scenario(
    "kfence-oob", "a module writes one byte past its buffers (KFENCE, eventually)",
    """`insmod buggy_drv bug=oob`: every `interval` ms the module's kernel thread
kmallocs `size` bytes, fills them and writes the terminating NUL at buf[size].  Ordinary
slab objects absorb the write silently; once per kfence.sample_interval of simulated time
an allocation comes from the KFENCE pool, placed against a guard page (an immediate
"BUG: KFENCE: out-of-bounds write in buggy_fill_buffer") or at the start of its page (the
canary is found broken at kfree: "BUG: KFENCE: memory corruption").""",
    (Param("size", "1024", _positive, "buffer size in bytes"),
     Param("interval", "10", _positive, "milliseconds between buffers"),
     Param("duration", "2", _secs, "seconds the scenario runs")),
    _kfence_oob, cmdline="kfence.sample_interval=100"))
