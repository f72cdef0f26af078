"""The debugger shell: crash's and gdb's commands over a simulated machine.

``registry.py`` holds the command table, ``session.py`` runs one line at a time against a
machine (pipes, redirection, error reporting), ``commands/`` has one module per command
family.  Every front end (the CLI's batch modes, the terminal, the tests) goes through
:class:`Session`.
"""

from __future__ import annotations

from mmdbg.shell.registry import REGISTRY, Command, CommandContext, command, load_commands
from mmdbg.shell.session import Session, run_commands

__all__ = ["REGISTRY", "Command", "CommandContext", "Session", "command", "load_commands",
           "run_commands"]
