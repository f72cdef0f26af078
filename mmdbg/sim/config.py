"""The machine's configuration, written as a kernel command line.

``mem=1G cpus=2 numa=fake=2 movablecore=256M min_free_kbytes=8192 la57`` parses into one
:class:`MachineConfig`.  Sizes take the kernel's ``memparse()`` suffixes (K, M, G, T, P, E,
case-insensitive, binary).  Unknown keys and bad values raise :class:`ConfigError`, which names
the key; the CLI turns it into exit status 2.

Keys that later subsystems read are accepted here so the whole command line is validated
in one place; each key records the kernel parameter it mirrors.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A bad kernel command line: names the key and what was wrong."""

    def __init__(self, key: str, msg: str) -> None:
        super().__init__(f"{key}: {msg}")
        self.key = key


_SUFFIX = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


def memparse(text: str, key: str = "size") -> int:
    """The kernel's memparse(): a number (decimal, 0x hex or 0 octal) with an optional suffix."""
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)([kKmMgGtTpPeE]?)([bB]?)", text)
    if not m:
        raise ConfigError(key, f"invalid size '{text}' (expected a number with K/M/G/T suffix)")
    n = int(m.group(1), 0)
    if m.group(2):
        n <<= _SUFFIX[m.group(2).lower()]
    return n


def format_size(n: int) -> str:
    for suf, shift in (("T", 40), ("G", 30), ("M", 20), ("K", 10)):
        if n and n % (1 << shift) == 0:
            return f"{n >> shift}{suf}"
    return str(n)


MIN_MEM = 64 << 20  # below this the fixed x86 layout (DMA zone, kernel image) does not fit
MAX_MEM = 1 << 40


@dataclass
class MachineConfig:
    """Boot-time configuration.  Defaults: 2 CPUs, 1 GiB, one node (as the issue asks)."""

    mem: int = 1 << 30
    cpus: int = 2
    numa_nodes: int = 1  # numa=fake=N
    movablecore: int = 0  # bytes of ZONE_MOVABLE, carved from the top of each node
    kernelcore: int = 0
    min_free_kbytes: int | None = None  # None: the kernel's computed default
    watermark_scale_factor: int = 10
    la57: bool = False
    # Later subsystems (recorded now, validated here)
    transparent_hugepage: str = "madvise"
    kasan: bool = False
    kfence_sample_interval: int = 0
    kmemleak: bool = False
    slub_debug: str | None = None
    slab: str = "slub"
    swap: int = 0
    zswap_enabled: bool = False
    page_alloc_shuffle: bool = False
    extra: dict[str, str] = field(default_factory=dict)
    cmdline: str = ""

    def to_cmdline(self) -> str:
        parts = [f"mem={format_size(self.mem)}", f"cpus={self.cpus}"]
        if self.numa_nodes > 1:
            parts.append(f"numa=fake={self.numa_nodes}")
        if self.movablecore:
            parts.append(f"movablecore={format_size(self.movablecore)}")
        if self.min_free_kbytes is not None:
            parts.append(f"min_free_kbytes={self.min_free_kbytes}")
        if self.la57:
            parts.append("la57")
        return " ".join(parts)


def _int(key: str, v: str, lo: int, hi: int) -> int:
    try:
        n = int(v, 0)
    except ValueError:
        raise ConfigError(key, f"invalid value '{v}' (expected an integer)") from None
    if not lo <= n <= hi:
        raise ConfigError(key, f"value {n} out of range [{lo}, {hi}]")
    return n


def _bool(key: str, v: str | None) -> bool:
    if v is None:
        return True
    lv = v.lower()
    if lv in ("1", "on", "y", "yes", "true"):
        return True
    if lv in ("0", "off", "n", "no", "false"):
        return False
    raise ConfigError(key, f"invalid value '{v}' (expected on/off)")


def _choice(key: str, v: str | None, choices: tuple[str, ...]) -> str:
    if v not in choices:
        raise ConfigError(key, f"invalid value '{v}' (expected one of: {', '.join(choices)})")
    return v


def _set_mem(c: MachineConfig, v: str | None) -> None:
    n = memparse(v or "", "mem")
    if n < MIN_MEM:
        raise ConfigError("mem", f"{format_size(n)} is too small (minimum {format_size(MIN_MEM)})")
    if n > MAX_MEM:
        raise ConfigError("mem", f"{format_size(n)} is too large (maximum {format_size(MAX_MEM)})")
    c.mem = n


def _set_numa(c: MachineConfig, v: str | None) -> None:
    m = re.fullmatch(r"fake=(\d+)[nN]?", v or "")
    if v == "off":
        c.numa_nodes = 1
        return
    if not m:
        raise ConfigError("numa", f"invalid value '{v}' (expected fake=N or off)")
    c.numa_nodes = _int("numa", m.group(1), 1, 64)


def _set_thp(c: MachineConfig, v: str | None) -> None:
    c.transparent_hugepage = _choice("transparent_hugepage", v, ("always", "madvise", "never"))


def _set_swap(c: MachineConfig, v: str | None) -> None:
    c.swap = memparse(v or "", "swap")


_KEYS: dict[str, Any] = {
    "mem": _set_mem,
    "cpus": lambda c, v: setattr(c, "cpus", _int("cpus", v or "", 1, 64)),
    "nr_cpus": lambda c, v: setattr(c, "cpus", _int("nr_cpus", v or "", 1, 64)),
    "maxcpus": lambda c, v: setattr(c, "cpus", _int("maxcpus", v or "", 1, 64)),
    "numa": _set_numa,
    "movablecore": lambda c, v: setattr(c, "movablecore", memparse(v or "", "movablecore")),
    "kernelcore": lambda c, v: setattr(c, "kernelcore", memparse(v or "", "kernelcore")),
    "min_free_kbytes": lambda c, v: setattr(
        c, "min_free_kbytes", _int("min_free_kbytes", v or "", 0, 1 << 30)),
    "watermark_scale_factor": lambda c, v: setattr(
        c, "watermark_scale_factor", _int("watermark_scale_factor", v or "", 1, 3000)),
    "la57": lambda c, v: setattr(c, "la57", _bool("la57", v)),
    "no5lvl": lambda c, v: setattr(c, "la57", False),
    "transparent_hugepage": _set_thp,
    "kasan": lambda c, v: setattr(c, "kasan", _bool("kasan", v)),
    "kfence.sample_interval": lambda c, v: setattr(
        c, "kfence_sample_interval", _int("kfence.sample_interval", v or "", 0, 1 << 31)),
    "kmemleak": lambda c, v: setattr(c, "kmemleak", _bool("kmemleak", v)),
    "slub_debug": lambda c, v: setattr(c, "slub_debug", v if v is not None else ""),
    "slab": lambda c, v: setattr(c, "slab", _choice("slab", v, ("slub", "slab", "slob"))),
    "swap": _set_swap,
    "zswap.enabled": lambda c, v: setattr(c, "zswap_enabled", _bool("zswap.enabled", v)),
    "page_alloc.shuffle": lambda c, v: setattr(
        c, "page_alloc_shuffle", _bool("page_alloc.shuffle", v)),
}

# Parameters other subsystems add at import time (e.g. kasan.fault=panic).
EXTRA_KEYS: dict[str, Any] = {}


def register_param(key: str, parse: Any) -> None:
    """Let a subsystem own a kernel parameter: ``parse(value_or_None) -> value`` (may raise)."""
    EXTRA_KEYS[key] = parse


def parse_cmdline(cmdline: str = "") -> MachineConfig:
    """Parse a kernel-style command line into a :class:`MachineConfig`."""
    c = MachineConfig()
    try:
        words = shlex.split(cmdline or "")
    except ValueError as e:
        raise ConfigError("cmdline", str(e)) from None
    for w in words:
        key, eq, val = w.partition("=")
        v: str | None = val if eq else None
        if key in _KEYS:
            if v is None and key not in ("la57", "no5lvl", "kasan", "kmemleak", "slub_debug"):
                raise ConfigError(key, "missing value (expected key=value)")
            _KEYS[key](c, v)
        elif key in EXTRA_KEYS:
            c.extra[key] = EXTRA_KEYS[key](v)
        else:
            raise ConfigError(key, "unknown kernel parameter")
    if c.numa_nodes > 1 and c.mem // c.numa_nodes < MIN_MEM // 2:
        raise ConfigError("numa", f"{c.numa_nodes} nodes do not fit in {format_size(c.mem)}")
    if c.movablecore and c.movablecore >= c.mem // 2:
        raise ConfigError("movablecore", "must be less than half of mem")
    c.cmdline = " ".join(words)
    return c


def replace(c: MachineConfig, **kw: Any) -> MachineConfig:
    return dataclasses.replace(c, **kw)
