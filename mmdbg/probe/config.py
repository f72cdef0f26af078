"""Configuration: bpftrace's ``config = { }`` keys, their defaults and validation.

A key may be written ``stack_mode``, ``STACK_MODE`` or ``BPFTRACE_STACK_MODE``; the
environment's ``BPFTRACE_<KEY>`` variables win over the script (as in bpftrace), and values
given from Python (``compile_program(config=...)``) win over both.  Keys that only tune real
BPF (``log_size``, ``perf_rb_pages``, ...) are accepted and have no effect.  mmdbg adds two
verifier stand-ins: ``max_while_iterations`` and ``max_event_insns``.
"""

from __future__ import annotations

import difflib
from typing import Any

CONFIG_DEFAULTS: dict[str, Any] = {
    "max_map_keys": 4096,
    "max_strlen": 1024,
    "print_maps_on_exit": True,
    "stack_mode": "bpftrace",
    "missing_probes": "error",
    "str_trunc_trailer": "..",
    "max_probes": 1024,
    # mmdbg's verifier stand-ins (no bpftrace equivalent: BPF bounds these at load time)
    "max_while_iterations": 100_000,
    "max_event_insns": 1_000_000,
    # accepted for compatibility, no effect in the simulation
    "max_bpf_progs": 1024, "max_cat_bytes": 10240, "log_size": 1000000, "perf_rb_pages": 64,
    "on_stack_limit": 32, "cache_user_symbols": "PER_PROGRAM", "cpp_demangle": True,
    "lazy_symbolication": False, "show_debug_info": False, "license": "GPL",
    "max_type_res_iterations": 0, "symbol_source": "dwarf", "use_blazesym": False,
    "print_maps_on_exit_default": True,
}
_CONFIG_ALIASES = {"map_keys_max": "max_map_keys", "strlen": "max_strlen"}
_CONFIG_CHOICES = {"stack_mode": ("bpftrace", "perf", "raw"),
                   "missing_probes": ("error", "warn", "ignore")}


def env_value(v: str) -> Any:
    try:
        return int(v, 0)
    except ValueError:
        return v


def set_config(config: dict[str, Any], key: str, value: Any) -> tuple[str, list[str]] | None:
    """Validate and store one key; return ``(error, hints)`` when it is not acceptable."""
    name = key.lower()
    if name.startswith("bpftrace_"):
        name = name[9:]
    name = _CONFIG_ALIASES.get(name, name)
    if name not in CONFIG_DEFAULTS:
        near = difflib.get_close_matches(name, list(CONFIG_DEFAULTS), n=1)
        return f"Unrecognized config variable: {key}", [f"Did you mean: {near[0]}?"] if near else []
    default = CONFIG_DEFAULTS[name]
    if isinstance(default, bool):
        if isinstance(value, int):
            value = bool(value)
        elif isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            value = value.lower() in ("true", "1")
        if not isinstance(value, bool):
            return f"Invalid value for {name}: expected a boolean", []
    elif isinstance(default, int):
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            return f"Invalid value for {name}: expected a non-negative integer", []
    else:
        value = str(value)
        if name in _CONFIG_CHOICES and value not in _CONFIG_CHOICES[name]:
            return (f"Invalid value for {name}: '{value}' (expected one of "
                    f"{', '.join(_CONFIG_CHOICES[name])})", [])
    if name == "max_strlen" and value > 1 << 20:
        return "max_strlen is too large (limit 1048576)", []
    if name in ("max_map_keys", "max_while_iterations", "max_event_insns", "max_probes") and value < 1:
        return f"{name} must be at least 1", []
    config[name] = value
    return None
