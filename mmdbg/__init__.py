"""mmdbg: a scriptable debugger shell for a simulated Linux memory manager."""

from __future__ import annotations

from mmdbg.sim.config import ConfigError, MachineConfig, parse_cmdline
from mmdbg.sim.machine import Machine, boot

__version__ = "0.1.0"
__all__ = ["ConfigError", "Machine", "MachineConfig", "__version__", "boot", "parse_cmdline"]
