"""Loadable kernel modules (kernel/module/main.c): insmod, rmmod, lsmod, /proc/modules.

A module is a Python file that uses the kernel API (``mmdbg/workloads/modules/*.py``, or any
file given by path).  It declares, at module level:

* ``PARAMS = {"size": 64, ...}``: ``module_param``s with their defaults (the type of the
  default is the parameter's type); ``insmod NAME size=128`` sets them;
* ``GLOBALS = {"test_list": 16, ...}``: global variables that live in module memory (the
  module's ``.data``), KASAN-redzoned, scanned by kmemleak; ``mod.addr("test_list")``;
* ``PERCPU = {"ptr": 8}``: per-CPU variables (``mod.per_cpu_ptr("ptr", cpu)``);
* ``module_init`` and (optionally) ``module_exit``: functions taking the :class:`Module`;
  ``module_init`` returns 0 or a negative errno.

Every function of the module becomes a kernel function (``@kfunc``): ``bt``, kprobes and
reports show it as ``name+0x../0x.. [module]``.  ``init`` runs in the context of an
``insmod`` task (with a kernel stack from vmalloc, as ``dup_task_struct`` gives one), so
reports name ``insmod`` as the task.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import inspect
import os
from pathlib import Path
from types import ModuleType
from typing import Any

from mmdbg.sim import trace
from mmdbg.sim.kernel.sched import TaskStruct
from mmdbg.sim.mm.mm_types import PAGE_OFFSET, PAGE_SIZE

MODULE_PKG = "mmdbg.workloads.modules"
THREAD_SIZE = 16384
MODULE_STATE_LIVE = "Live"
MODULE_STATE_COMING = "Loading"
MODULE_STATE_GOING = "Unloading"


class ModuleError(Exception):
    """insmod/rmmod failure: carries the errno and the tool's message."""

    def __init__(self, err: int, msg: str) -> None:
        super().__init__(msg)
        self.err = err


class Module:
    """``struct module``: name, parameters, memory, state."""

    ktype = "module"

    def __init__(self, name: str, pymod: ModuleType, params: dict[str, Any], intree: bool) -> None:
        self.name = name
        self.py = pymod
        self.params = params
        self.state = MODULE_STATE_COMING
        self.refcnt = 0
        self.core = 0  # module memory (text + data)
        self.core_size = 0
        self.globals: dict[str, tuple[int, int, int]] = {}  # name -> (addr, size, redzone)
        self.percpu: dict[str, int] = {}  # name -> offset in the per-CPU chunk
        self.data: dict[str, Any] = {}  # Python-side state of the module's code
        self.intree = intree
        self.taints = "" if intree else "O"

    def __repr__(self) -> str:
        return f"<module {self.name} {self.state}>"

    def addr(self, name: str) -> int:
        return self.globals[name][0]

    def per_cpu_ptr(self, name: str, cpu: int) -> int:
        m = trace.current_machine()
        base, _size = m.percpu_areas[cpu]
        return base + self.percpu[name]

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name]
        raise AttributeError(name)


def _percpu_init(m: Any) -> None:
    """The per-CPU areas: the memblock ``percpu`` region, one unit per CPU; module per-CPU
    variables take offsets in them (the first chunk's reserved area).  kmemleak scans them as
    roots."""
    if hasattr(m, "percpu_areas"):
        return
    from mmdbg.sim.machine import PERCPU_UNIT
    from mmdbg.sim.mm.mm_types import PAGE_OFFSET

    region = next((r for r in m.memblock.reserved if r.name == "percpu"), None)
    m.percpu_areas = []
    if region is not None:
        for cpu in range(m.ncpus):
            m.percpu_areas.append((PAGE_OFFSET + region.base + cpu * PERCPU_UNIT, PERCPU_UNIT))
    m.percpu_module_next = 0x8000  # after the kernel's static per-CPU data


def module_init(m: Any) -> None:
    m.modules = {}
    _percpu_init(m)


def _import(name: str) -> tuple[ModuleType, bool]:
    if name.endswith(".py") or os.sep in name:
        path = Path(name)
        if not path.exists():
            raise ModuleError(errno.ENOENT, f"could not load module {name}: No such file or "
                                            "directory")
        spec = importlib.util.spec_from_file_location(f"{MODULE_PKG}.{path.stem}", path)
        mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        spec.loader.exec_module(mod)  # type: ignore[union-attr]
        return mod, False
    try:
        return importlib.import_module(f"{MODULE_PKG}.{name}"), True
    except ModuleNotFoundError:
        raise ModuleError(errno.ENOENT, f"could not load module {name}: No such file or "
                                        "directory") from None


def _register_kfuncs(pymod: ModuleType) -> None:
    for obj in list(vars(pymod).values()):
        if inspect.isfunction(obj) and obj.__module__ == pymod.__name__ \
                and obj.__code__ not in trace._BY_CODE:
            trace.kfunc(obj)


def parse_params(name: str, decl: dict[str, Any], args: str | dict[str, Any] | None
                 ) -> dict[str, Any]:
    params = dict(decl)
    if args is None:
        return params
    items = args.items() if isinstance(args, dict) else \
        [(w.partition("=")[0], w.partition("=")[2]) for w in str(args).split()]
    for key, val in items:
        if key not in decl:
            raise ModuleError(errno.ENOENT, f"{name}: Unknown parameter `{key}'")
        default = decl[key]
        try:
            if isinstance(default, bool):
                v: Any = str(val).lower() in ("1", "y", "yes", "true", "on")
            elif isinstance(default, int):
                v = int(val, 0) if isinstance(val, str) else int(val)
            else:
                v = str(val)
        except ValueError:
            raise ModuleError(errno.EINVAL, f"{name}: `{val}' invalid for parameter `{key}'") \
                from None
        params[key] = v
    return params


def _global_redzone(size: int) -> int:
    """The ASan right redzone of a global: at least 32 bytes, padding to 32."""
    min_rz = 32
    rz = max(min_rz, min(1 << 18, (size // min_rz // 4) * min_rz))
    if size % min_rz:
        rz += min_rz - size % min_rz
    return rz


def _alloc_thread_stack(vmalloc: Any) -> int:
    """alloc_thread_stack_node(): THREAD_SIZE from vmalloc, aligned to THREAD_SIZE."""
    from mmdbg.sim.include.gfp import __GFP_ZERO, GFP_KERNEL

    return vmalloc.__vmalloc_node_range(THREAD_SIZE, THREAD_SIZE, vmalloc.VMALLOC_START,
                                        vmalloc.VMALLOC_END, GFP_KERNEL | __GFP_ZERO, 0, -1, 0)


class _TaskContext:
    """Run module code as an ``insmod``/``rmmod`` task with its own kernel stack."""

    def __init__(self, m: Any, comm: str) -> None:
        self.m = m
        self.comm = comm

    def __enter__(self) -> TaskStruct:
        from mmdbg.sim.mm import vmalloc

        m = self.m
        m.module_pid = getattr(m, "module_pid", 999) + 1
        pid = max([m.module_pid, *[p + 1 for p in m.tasks]])
        m.module_pid = pid
        t = TaskStruct(pid, self.comm, uid=0)
        t.cpu = m.cpu
        t.stack = _alloc_thread_stack(vmalloc)
        t.stack_sp = t.stack + THREAD_SIZE  # type: ignore[attr-defined]
        self.task = t
        self.saved = m.cpu_curr[m.cpu]
        m.cpu_curr[m.cpu] = t
        return t

    def __exit__(self, *exc: Any) -> None:
        from mmdbg.sim.mm import vmalloc

        m = self.m
        m.cpu_curr[m.cpu] = self.saved
        if self.task.stack:
            vmalloc.vfree(self.task.stack)
            self.task.stack = 0


def load_module(m: Any, name: str, args: str | dict[str, Any] | None = None) -> Module:
    """insmod: load and initialise a module; raises :class:`ModuleError`."""
    from mmdbg.sim.mm import vmalloc
    from mmdbg.sim.mm.kmem_access import KernelOops

    m.activate()
    if not hasattr(m, "modules"):
        module_init(m)
    pymod, intree = _import(name)
    modname = getattr(pymod, "MODULE_NAME", pymod.__name__.rsplit(".", 1)[-1])
    if modname in m.modules:
        raise ModuleError(errno.EEXIST, f"could not insert module {name}: File exists")
    init = getattr(pymod, "module_init", None)
    if not callable(init):
        raise ModuleError(errno.ENOEXEC, f"could not insert module {name}: Invalid module "
                                         "format")
    params = parse_params(modname, getattr(pymod, "PARAMS", {}), args)
    _register_kfuncs(pymod)
    mod = Module(modname, pymod, params, intree)
    # module memory: text (one page per 40 source lines) + data with redzoned globals
    try:
        text = max(1, len(inspect.getsource(pymod).splitlines()) // 40) * PAGE_SIZE
    except OSError:
        text = PAGE_SIZE
    layout = []
    off = text
    for gname, gsize in getattr(pymod, "GLOBALS", {}).items():
        rz = _global_redzone(gsize)
        layout.append((gname, off, gsize, rz))
        off += gsize + rz
    size = (off + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
    mod.core = vmalloc.module_alloc(size)
    if not mod.core:
        raise ModuleError(errno.ENOMEM, f"could not insert module {name}: Cannot allocate memory")
    mod.core_size = size
    for gname, goff, gsize, rz in layout:
        mod.globals[gname] = (mod.core + goff, gsize, rz)
        if m.kasan is not None:
            m.kasan.register_global(mod.core + goff, gsize, gsize + rz)
    for pname, psize in getattr(pymod, "PERCPU", {}).items():
        mod.percpu[pname] = m.percpu_module_next
        m.percpu_module_next += (psize + 7) & ~7
    if not intree:
        m.printk(f"{modname}: loading out-of-tree module taints kernel.", level=4)
        m.add_taint("O")
    m.modules[modname] = mod
    try:
        with _TaskContext(m, "insmod"):
            ret = init(mod)
    except KernelOops:
        ret = -errno.EFAULT
    if ret:
        _free_module(m, mod)
        raise ModuleError(-ret if ret < 0 else errno.EINVAL,
                          f"could not insert module {name}: {os.strerror(abs(ret))}")
    mod.state = MODULE_STATE_LIVE
    return mod


def _free_module(m: Any, mod: Module) -> None:
    from mmdbg.sim.mm import vmalloc

    for pname in mod.percpu:
        for cpu in range(m.ncpus):
            base, _ = m.percpu_areas[cpu]
            m.physmem.write(base + mod.percpu[pname] - PAGE_OFFSET, bytes(8))
    if mod.core:
        vmalloc.vfree(mod.core)
        mod.core = 0
    m.modules.pop(mod.name, None)


def unload_module(m: Any, name: str) -> None:
    """rmmod: call the exit function and free the module."""
    from mmdbg.sim.mm.kmem_access import KernelOops

    m.activate()
    mods = getattr(m, "modules", {})
    mod = mods.get(name)
    if mod is None:
        raise ModuleError(errno.ENOENT, f"ERROR: Module {name} is not currently loaded")
    exit_fn = getattr(mod.py, "module_exit", None)
    if mod.refcnt or not callable(exit_fn):
        raise ModuleError(errno.EBUSY, f"ERROR: Removing '{name}': Device or resource busy")
    mod.state = MODULE_STATE_GOING
    try:
        with _TaskContext(m, "rmmod"):
            exit_fn(mod)
    except KernelOops:
        pass
    _free_module(m, mod)


def proc_modules_lines(m: Any) -> list[str]:
    out = []
    for mod in reversed(list(getattr(m, "modules", {}).values())):
        deps = "-" if callable(getattr(mod.py, "module_exit", None)) else "[permanent],"
        line = f"{mod.name} {mod.core_size} {mod.refcnt} {deps} {mod.state} 0x{mod.core:016x}"
        if mod.taints:
            line += f" ({mod.taints})"
        out.append(line)
    return out


def lsmod_lines(m: Any) -> list[str]:
    out = ["Module                  Size  Used by"]
    for mod in reversed(list(getattr(m, "modules", {}).values())):
        out.append(f"{mod.name:<19} {mod.core_size:>8}  {mod.refcnt}")
    return out


def available_modules() -> list[str]:
    import pkgutil

    pkg = importlib.import_module(MODULE_PKG)
    return sorted(n for _f, n, _p in pkgutil.iter_modules(pkg.__path__) if not n.startswith("_")
                  and n != "api")
