"""Kernel parameters of the slab allocator and the memory debuggers (issue 6).

Registered with ``config.register_param`` at import (machine.py imports this module), so a
command line such as ``kasan=on kasan.fault=panic slub_debug=FZ,kmalloc-64`` is validated in
one place; values land in ``MachineConfig.extra``.
"""

from __future__ import annotations

from mmdbg.sim.config import ConfigError, register_param


def _int(key: str, lo: int, hi: int):
    def parse(v: str | None) -> int:
        try:
            n = int(v or "", 0)
        except ValueError:
            raise ConfigError(key, f"invalid value '{v}' (expected an integer)") from None
        if not lo <= n <= hi:
            raise ConfigError(key, f"value {n} out of range [{lo}, {hi}]")
        return n
    return parse


def _choice(key: str, choices: tuple[str, ...]):
    def parse(v: str | None) -> str:
        if v not in choices:
            raise ConfigError(key, f"invalid value '{v}' (expected one of: {', '.join(choices)})")
        return v
    return parse


def _flag(key: str):
    def parse(v: str | None) -> bool:
        if v is None or v.lower() in ("1", "on", "y", "yes", "true"):
            return True
        if v.lower() in ("0", "off", "n", "no", "false"):
            return False
        raise ConfigError(key, f"invalid value '{v}' (expected on/off)")
    return parse


register_param("kasan.fault", _choice("kasan.fault", ("report", "panic", "panic_on_write")))
register_param("kasan_multi_shot", _flag("kasan_multi_shot"))
register_param("kasan.stacktrace", _flag("kasan.stacktrace"))
register_param("slub_min_order", _int("slub_min_order", 0, 10))
register_param("slub_max_order", _int("slub_max_order", 0, 10))
register_param("slub_min_objects", _int("slub_min_objects", 0, 32767))
register_param("slab_min_order", _int("slab_min_order", 0, 10))
register_param("slab_max_order", _int("slab_max_order", 0, 10))
register_param("slab_min_objects", _int("slab_min_objects", 0, 32767))
register_param("slab_merge", _flag("slab_merge"))
register_param("slab_nomerge", _flag("slab_nomerge"))
register_param("slab_debug", lambda v: v if v is not None else "")
register_param("kmemleak.verbose", _flag("kmemleak.verbose"))
register_param("kfence.deferrable", _flag("kfence.deferrable"))
