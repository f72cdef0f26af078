"""The simulated kernel's file tree: ``cat``, ``echo`` (with ``> PATH``), ``ls``, and
``mkdir``/``rmdir`` (cgroups under /sys/fs/cgroup; elsewhere the kernel's refusals).

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


CGROUP_ROOT = "/sys/fs/cgroup"


def _dir_error(ctx: CommandContext, path: str, p: str, rmdir: bool) -> str | None:
    """What coreutils prints for a path outside cgroupfs (None: a cgroup path)."""
    vfs = ctx.machine.vfs
    if p.startswith(CGROUP_ROOT + "/") and (not rmdir or p != CGROUP_ROOT):
        return None
    exists = vfs.is_dir(p)
    if not exists:
        try:
            vfs.lookup(p)
            exists = True
        except OSError:
            pass
    if rmdir:
        if not exists:
            why = "No such file or directory"
        elif not vfs.is_dir(p):
            why = "Not a directory"
        elif p in ("/", "/proc", "/sys", CGROUP_ROOT):
            why = "Device or resource busy"  # a mount point
        else:
            why = "Operation not permitted"
        return f"rmdir: failed to remove '{path}': {why}"
    if exists:
        why = "File exists"
    elif p.startswith("/proc/"):
        why = "No such file or directory"  # proc_root_lookup fails before mkdir is tried
    elif p.startswith("/sys/"):
        why = "Operation not permitted"  # sysfs has no ->mkdir
    else:
        why = "Read-only file system"
    return f"mkdir: cannot create directory '{path}': {why}"


@command(
    "mkdir",
    usage="[-p] DIR ...",
    summary="create a cgroup directory under /sys/fs/cgroup",
    help="""\
    Creates a memory cgroup the way mkdir does on cgroupfs: the new directory has the
    memory controller's files (memory.max, memory.current, cgroup.procs, ...).  The parent
    must exist (or use -p).  Anywhere else the tree is the kernel's: /proc refuses with
    "No such file or directory", /sys with "Operation not permitted".""",
    examples=(("A group limited to 64 MiB, then a process moved into it:",
               "mkdir /sys/fs/cgroup/box\necho 64M > /sys/fs/cgroup/box/memory.max\n"
               "echo 3 > /sys/fs/cgroup/box/cgroup.procs"),),
    options=("-p",),
)
def cmd_mkdir(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.sim.fs import cgroupfs

    parents = False
    if args and args[0] == "-p":
        parents = True
        args = args[1:]
    if not args:
        raise UsageError()
    failed = False
    m = ctx.machine
    for path in args:
        p = normpath(path).rstrip("/") or "/"
        err = _dir_error(ctx, path, p, False)
        if err is not None:
            if not (parents and err.endswith("File exists")):
                ctx.error(err)
                failed = True
            continue
        rel = p[len(CGROUP_ROOT) + 1:].split("/")
        todo = ["/".join(rel[:i]) for i in range(1, len(rel) + 1)] if parents else ["/".join(rel)]
        for sub in todo:
            if parents and m.vfs.is_dir(f"{CGROUP_ROOT}/{sub}"):
                continue
            try:
                cgroupfs.cgroup_mkdir(m, f"{CGROUP_ROOT}/{sub}")
            except OSError as e:
                ctx.error(f"mkdir: cannot create directory '{path}': "
                          f"{e.strerror or os.strerror(e.errno or 0)}")
                failed = True
                break
    if failed:
        raise CommandError("")


@command(
    "rmdir",
    usage="DIR ...",
    summary="remove an empty cgroup directory",
    help="""\
    Removes a cgroup under /sys/fs/cgroup that has no tasks and no child groups ("Device or
    resource busy" otherwise, as on Linux); pages and kernel memory still charged to it
    move to its parent.""",
    examples=(("Remove an empty group:", "rmdir /sys/fs/cgroup/box"),),
)
def cmd_rmdir(ctx: CommandContext, args: list[str]) -> None:
    from mmdbg.sim.fs import cgroupfs

    if not args:
        raise UsageError()
    failed = False
    for path in args:
        p = normpath(path).rstrip("/") or "/"
        err = _dir_error(ctx, path, p, True)
        if err is None and not ctx.machine.vfs.is_dir(p):
            err = f"rmdir: failed to remove '{path}': " + (
                "Not a directory" if _exists(ctx, p) else "No such file or directory")
        if err is None:
            try:
                cgroupfs.cgroup_rmdir(ctx.machine, p)
            except OSError as e:
                err = (f"rmdir: failed to remove '{path}': "
                       f"{e.strerror or os.strerror(e.errno or 0)}")
        if err is not None:
            ctx.error(err)
            failed = True
    if failed:
        raise CommandError("")


def _exists(ctx: CommandContext, p: str) -> bool:
    try:
        ctx.machine.vfs.lookup(p)
    except OSError:
        return False
    return True
