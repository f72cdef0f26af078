"""The virtual file tree behind ``cat``/``echo >``: /proc, /sys and friends.

Each file is registered with a reader (returns the text) and optionally a writer (takes the
written text, raises :class:`KernelError` with an errno as the kernel's handler returns
``-EINVAL``).  Paths may contain one ``{pid}``-style placeholder segment, resolved against the
machine's tasks.  ``export`` writes a subtree to a real directory so real tools (psutil with
``PROCFS_PATH``) can read it.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

Reader = Callable[..., str]
Writer = Callable[..., None]


class KernelError(OSError):
    """A write or read the kernel refuses: carries the errno (EINVAL, EPERM, ...)."""

    def __init__(self, err: int, msg: str = "") -> None:
        super().__init__(err, msg or os.strerror(err))
        self.err = err

    @property
    def strerror_text(self) -> str:
        return os.strerror(self.err)


class VFile:
    __slots__ = ("mode", "pattern", "reader", "regex", "writer")

    def __init__(self, pattern: str, reader: Reader | None, writer: Writer | None,
                 mode: int) -> None:
        self.pattern = pattern
        self.reader = reader
        self.writer = writer
        self.mode = mode
        self.regex = re.compile("^" + re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)",
                                             re.escape(pattern)) + "$") if "{" in pattern \
            else None


class VFS:
    def __init__(self, machine: Any) -> None:
        self.m = machine
        self.static: dict[str, VFile] = {}
        self.dynamic: list[VFile] = []
        # pattern -> function returning the values a placeholder may take (for listing)
        self.enumerators: dict[str, Callable[[], list[str]]] = {}

    def register(self, path: str, reader: Reader | None = None, writer: Writer | None = None,
                 mode: int | None = None) -> None:
        if mode is None:
            mode = (0o444 if reader else 0) | (0o200 if writer else 0)
        f = VFile(path, reader, writer, mode)
        if f.regex is None:
            self.static[path] = f
        else:
            self.dynamic.append(f)

    def enumerate_param(self, name: str, fn: Callable[[], list[str]]) -> None:
        self.enumerators[name] = fn

    def lookup(self, path: str) -> tuple[VFile, dict[str, str]]:
        path = normpath(path)
        f = self.static.get(path)
        if f is not None:
            return f, {}
        for f in self.dynamic:
            mt = f.regex.match(path)  # type: ignore[union-attr]
            if mt:
                return f, mt.groupdict()
        if self.is_dir(path):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)

    def read(self, path: str) -> str:
        f, params = self.lookup(path)
        if f.reader is None:
            raise KernelError(errno.EINVAL)
        return f.reader(**params)

    def write(self, path: str, text: str) -> None:
        f, params = self.lookup(path)
        if f.writer is None:
            raise KernelError(errno.EACCES, "Permission denied")
        f.writer(text, **params)

    # -- listing -----------------------------------------------------------------------
    def all_paths(self) -> list[str]:
        out = list(self.static)
        for f in self.dynamic:
            names = re.findall(r"\{(\w+)\}", f.pattern)
            if len(names) != 1 or names[0] not in self.enumerators:
                continue
            for v in self.enumerators[names[0]]():
                out.append(f.pattern.replace("{" + names[0] + "}", v))
        return sorted(set(out))

    def is_dir(self, path: str) -> bool:
        path = normpath(path).rstrip("/") + "/"
        return path == "/" or any(p.startswith(path) for p in self.all_paths())

    def listdir(self, path: str) -> list[str]:
        path = normpath(path).rstrip("/") + "/"
        names = set()
        for p in self.all_paths():
            if p.startswith(path):
                names.add(p[len(path):].split("/", 1)[0])
        return sorted(names)

    def export(self, directory: Path, subtree: str = "/proc") -> Path:
        """Write every readable file under ``subtree`` into ``directory`` (mirrored layout)."""
        directory.mkdir(parents=True, exist_ok=True)
        prefix = subtree.rstrip("/") + "/"
        for p in self.all_paths():
            if not p.startswith(prefix):
                continue
            f, params = self.lookup(p)
            if f.reader is None:
                continue
            try:
                text = f.reader(**params)
            except OSError:
                continue
            dest = directory / p[len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
        return directory


def normpath(path: str) -> str:
    p = os.path.normpath("/" + path.strip())
    return p.replace("//", "/")


def build_vfs(machine: Any) -> VFS:
    """Create the tree and let every subsystem register its files."""
    from mmdbg.sim.fs import registry

    v = VFS(machine)
    for register in registry.REGISTRARS:
        register(v, machine)
    return v
