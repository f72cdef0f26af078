"""Shell command families, one module per family (crash's and gdb's vocabulary).

Each module registers its commands with :func:`mmdbg.shell.registry.command`;
:func:`mmdbg.shell.registry.load_commands` imports them all.  ``core`` has the shell's own
commands (help, quit, set), ``sysinfo`` crash's ``sys``, ``files`` the virtual file tree
(cat, echo, ls), ``log`` the kernel log, ``kmem`` crash's memory views and ``call`` gdb's
calls of kernel functions.
"""
