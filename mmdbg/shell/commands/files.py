"""The simulated kernel's file tree: ``cat``, ``echo`` (with ``> PATH``) and ``ls``.

Reads and writes go through ``Machine.read``/``Machine.write``, i.e. the same readers and
writers a Python user or an exported /proc sees.  Messages are bash's and coreutils':
``cat: /proc/nope: No such file or directory``, ``echo: write error: Invalid argument``
(the redirection itself is done by the session, see ``pipeline.py``).
"""

from __future__ import annotations

import os

from mmdbg.shell.errors import CommandError, UsageError
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim.fs.vfs import normpath


@command(
    "cat",
    usage="PATH ...",
    summary="print files of the simulated /proc and /sys",
    help="""\
    Prints the current contents of each file, as the simulated kernel renders it.  Paths
    are absolute paths in the machine's file tree (/proc, /sys); "ls" lists it.
    Files whose subsystem does not exist yet are simply absent.""",
    examples=(("The watermark sysctls:",
               "cat /proc/sys/vm/min_free_kbytes /proc/sys/vm/watermark_scale_factor"),),
)
def cmd_cat(ctx: CommandContext, args: list[str]) -> None:
    if not args:
        raise UsageError()
    failed = False
    for path in args:
        try:
            ctx.write(ctx.machine.read(path))
        except OSError as e:
            ctx.error(f"cat: {path}: {e.strerror or os.strerror(e.errno or 0)}")
            failed = True
    if failed:
        raise CommandError("")


@command(
    "echo",
    usage="[-n] [STRING ...] [> PATH]",
    summary="print a line, or write it to a file",
    help="""\
    Prints its arguments separated by spaces, then a newline (not with -n).  Redirected to
    a file of the simulated machine, it writes that file the way bash's echo does on a real
    kernel: the kernel's handler parses the text and may refuse it, which prints
    "echo: write error: Invalid argument" and leaves the setting unchanged.""",
    examples=(("Raise the minimum free memory, then read it back:",
               "echo 8192 > /proc/sys/vm/min_free_kbytes"),
              ("A value the kernel refuses (watermark_scale_factor is 1..3000):",
               "echo 0 > /proc/sys/vm/watermark_scale_factor")),
    options=("-n",),
)
def cmd_echo(ctx: CommandContext, args: list[str]) -> None:
    newline = True
    if args and args[0] == "-n":
        newline = False
        args = args[1:]
    ctx.write(" ".join(args) + ("\n" if newline else ""))


@command(
    "ls",
    usage="[PATH ...]",
    summary="list the simulated /proc and /sys",
    help="""\
    Lists the entries of a directory of the machine's file tree (default: /), one per
    line, directories with a trailing "/".""",
    examples=(("The vm sysctls:", "ls /proc/sys/vm"),),
)
def cmd_ls(ctx: CommandContext, args: list[str]) -> None:
    vfs = ctx.machine.vfs
    paths = args or ["/"]
    failed = False
    for i, path in enumerate(paths):
        p = normpath(path)
        if not vfs.is_dir(p):
            try:
                vfs.lookup(p)
            except OSError:
                ctx.error(f"ls: cannot access '{path}': No such file or directory")
                failed = True
                continue
            ctx.print(path)
            continue
        if len(paths) > 1:
            ctx.print(f"{'' if i == 0 else chr(10)}{path}:")
        base = p.rstrip("/")
        for name in vfs.listdir(p):
            ctx.print(name + ("/" if vfs.is_dir(f"{base}/{name}") else ""))
    if failed:
        raise CommandError("")
