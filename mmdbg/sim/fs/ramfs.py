"""A small disk-backed file system: files with sizes and contents on a simulated disk.

Not the kernel's ramfs (which has no backing store): this is the simplest file system that
makes the page cache meaningful.  Files live on a simulated SATA SSD (``/dev/sda1``, device
08:01); a page that is not in the page cache is read from the disk, which costs
``READ_LATENCY_NS + PAGE_TRANSFER_NS`` per request of up to 32 pages, charged to the
reading task as I/O wait (a major fault when a fault caused it).

Contents are sparse: a file stores only the 4 KiB blocks that were written; other blocks are
either zeros or come from the file's ``fill`` function (the simulated programs' binaries
have deterministic pseudo-random text).  Shared anonymous mappings and ``/dev/zero`` mappings
use :func:`shmem_file_setup`: an inode on the internal ``shm`` mount (device 00:01) with no
backing store.

Simplifications: one flat namespace of absolute paths (directories exist implicitly), no
permissions, no hard links, no block allocation map.
"""

from __future__ import annotations

import errno
import hashlib
from collections.abc import Callable
from typing import Any

from mmdbg.sim.fs.vfs import KernelError

PAGE_SIZE = 4096
S_IFREG = 0o100000
S_IFDIR = 0o040000
READ_LATENCY_NS = 80_000  # one request on a SATA SSD
WRITE_LATENCY_NS = 60_000
PAGE_TRANSFER_NS = 8_000  # ~500 MB/s
MAX_IO_PAGES = 32
FMODE_RANDOM = 0x1000  # POSIX_FADV_RANDOM: no readahead (file->f_mode)


class BlockDevice:
    """``struct block_device`` with the counters /sys/block/sda/stat would show."""

    ktype = "block_device"

    def __init__(self, name: str, major: int, minor: int) -> None:
        self.name = name
        self.major = major
        self.minor = minor
        self.read_ios = 0
        self.read_sectors = 0
        self.write_ios = 0
        self.write_sectors = 0
        self.ra_pages = 32  # bdi->ra_pages: /sys/block/sda/queue/read_ahead_kb = 128
        self.busy_until = 0  # the request queue: when the last submitted request completes
        self.in_flight = 0

    def submit(self, now: int, npages: int, write: bool) -> int:
        """Queue one request of ``npages``; returns the simulated time it completes (requests
        are served one after the other, so a read queued behind writeback waits for it)."""
        cost = self.write_cost(npages) if write else self.read_cost(npages)
        done = max(now, self.busy_until) + cost
        self.busy_until = done
        return done

    def read_cost(self, npages: int) -> int:
        self.read_ios += 1
        self.read_sectors += npages * 8
        return READ_LATENCY_NS + npages * PAGE_TRANSFER_NS

    def write_cost(self, npages: int) -> int:
        self.write_ios += 1
        self.write_sectors += npages * 8
        return WRITE_LATENCY_NS + npages * PAGE_TRANSFER_NS


class SuperBlock:
    """``struct super_block``: the mount, its device and its inodes."""

    ktype = "super_block"

    def __init__(self, m: Any, name: str, dev: tuple[int, int], bdev: BlockDevice | None,
                 first_ino: int) -> None:
        self.machine = m
        self.s_id = name
        self.s_dev = dev
        self.s_bdev = bdev
        self.files: dict[str, Inode] = {}
        self.next_ino = first_ino

    def alloc_ino(self) -> int:
        self.next_ino += 1
        return self.next_ino


class Inode:
    """``struct inode`` of a regular file, with its page cache (``i_mapping``)."""

    ktype = "inode"

    def __init__(self, sb: SuperBlock, path: str, size: int, fill: Callable[[int], bytes] | None,
                 shmem: bool = False) -> None:
        from mmdbg.sim.mm.filemap import AddressSpace

        self.i_sb = sb
        self.i_ino = sb.alloc_ino()
        self.i_mode = S_IFREG | 0o644
        self.i_size = size
        self.i_nlink = 1
        self.path = path
        self.blocks: dict[int, bytes] = {}
        self.fill = fill
        self.shmem = shmem
        self.i_mapping = AddressSpace(self)
        self.open_count = 0
        self.mtime_ns = 0
        self.i_state = 0  # I_DIRTY_PAGES while it has dirty page-cache pages
        self.dirtied_when = 0  # ns: when the inode was first dirtied (the flusher's age)
        self.acct_pages = 0  # Committed_AS charged for a shared anonymous mapping

    def __repr__(self) -> str:
        return f"<inode {self.i_ino} {self.path}>"

    @property
    def s_dev(self) -> tuple[int, int]:
        return self.i_sb.s_dev

    def disk_read(self, index: int) -> bytes | None:
        """The on-disk contents of block ``index`` (None: zeros)."""
        b = self.blocks.get(index)
        if b is not None:
            return b
        if self.fill is not None and index * PAGE_SIZE < self.i_size:
            data = self.fill(index)
            end = self.i_size - index * PAGE_SIZE
            if end < PAGE_SIZE:
                data = data[:end] + bytes(PAGE_SIZE - end)
            return data
        return None

    def disk_write(self, index: int, data: bytes) -> None:
        if any(data):
            self.blocks[index] = bytes(data)
        else:
            self.blocks.pop(index, None)
            if self.fill is not None:
                self.blocks[index] = bytes(PAGE_SIZE)


class File:
    """``struct file``: an open file (also what a file VMA holds)."""

    ktype = "file"

    def __init__(self, inode: Inode, mode: str = "r") -> None:
        self.f_inode = inode
        self.f_mapping = inode.i_mapping
        self.f_mode = mode
        self.f_pos = 0
        self.f_count = 1
        self.f_flags = 0  # FMODE_RANDOM after POSIX_FADV_RANDOM
        inode.open_count += 1
        from mmdbg.sim.mm.readahead import file_ra_state_init

        self.f_ra = file_ra_state_init(self)  # ra_pages from the disk's read_ahead_kb

    def __repr__(self) -> str:
        return f"<file {self.f_inode.path}>"

    @property
    def path(self) -> str:
        return self.f_inode.path

    def get(self) -> File:
        self.f_count += 1
        return self

    def put(self) -> None:
        """fput(): the last reference releases the file (and an unlinked inode's pages)."""
        self.f_count -= 1
        if self.f_count == 0:
            inode = self.f_inode
            inode.open_count -= 1
            if inode.open_count == 0 and (inode.i_nlink == 0 or inode.shmem):
                from mmdbg.sim.mm.filemap import truncate_inode_pages

                truncate_inode_pages(inode.i_mapping, 0)
                if inode.acct_pages:
                    from mmdbg.sim.mm.util import vm_unacct_memory
                    from mmdbg.sim.trace import current_machine

                    vm_unacct_memory(current_machine(), inode.acct_pages)
                    inode.acct_pages = 0


def _pattern_fill(seed: bytes) -> Callable[[int], bytes]:
    """Deterministic pseudo-random contents (a program's text), 4 KiB per block."""

    def fill(index: int) -> bytes:
        out = bytearray()
        ctr = 0
        while len(out) < PAGE_SIZE:
            out += hashlib.blake2b(seed + index.to_bytes(8, "little") + ctr.to_bytes(2, "little"),
                                   digest_size=64).digest()
            ctr += 1
        return bytes(out[:PAGE_SIZE])

    return fill


class FileSystem:
    """The root file system (``/dev/sda1``) and the internal shmem mount."""

    def __init__(self, m: Any) -> None:
        self.machine = m
        self.disk = BlockDevice("sda", 8, 0)
        self.root = SuperBlock(m, "sda1", (8, 1), self.disk, 260000)
        self.shm = SuperBlock(m, "shm", (0, 1), None, 1000)

    # -- namespace ---------------------------------------------------------------------
    def lookup(self, path: str) -> Inode:
        ino = self.root.files.get(_norm(path))
        if ino is None:
            raise KernelError(errno.ENOENT, f"{path}: No such file or directory")
        return ino

    def exists(self, path: str) -> bool:
        return _norm(path) in self.root.files

    def create(self, path: str, size: int = 0, content: bytes | None = None,
               fill: Callable[[int], bytes] | None = None, pattern: bool = False) -> Inode:
        """Create (or truncate) a regular file.  ``pattern=True`` gives pseudo-random text."""
        path = _norm(path)
        old = self.root.files.get(path)
        if old is not None:
            self.unlink(path)
        if pattern and fill is None:
            fill = _pattern_fill(path.encode())
        ino = Inode(self.root, path, size, fill)
        if content:
            ino.i_size = max(size, len(content))
            for i in range(0, len(content), PAGE_SIZE):
                chunk = content[i:i + PAGE_SIZE]
                ino.disk_write(i // PAGE_SIZE, chunk + bytes(PAGE_SIZE - len(chunk)))
        self.root.files[path] = ino
        return ino

    def unlink(self, path: str) -> None:
        path = _norm(path)
        ino = self.root.files.pop(path, None)
        if ino is None:
            raise KernelError(errno.ENOENT, f"{path}: No such file or directory")
        ino.i_nlink = 0
        if ino.open_count == 0:
            from mmdbg.sim.mm.filemap import truncate_inode_pages

            truncate_inode_pages(ino.i_mapping, 0)

    def listdir(self, path: str) -> list[str]:
        path = _norm(path).rstrip("/") + "/"
        names = set()
        for p in self.root.files:
            if p.startswith(path):
                names.add(p[len(path):].split("/", 1)[0])
        if not names and path != "/" and not any(p.startswith(path) for p in self.root.files):
            if _norm(path.rstrip("/")) in self.root.files:
                return [path.rstrip("/").rsplit("/", 1)[1]]
            raise KernelError(errno.ENOENT, f"{path}: No such file or directory")
        return sorted(names)

    def is_dir(self, path: str) -> bool:
        path = _norm(path).rstrip("/") + "/"
        return path == "/" or any(p.startswith(path) for p in self.root.files)

    def open(self, path: str, mode: str = "r") -> File:
        if "w" in mode or "a" in mode or "+" in mode:
            if not self.exists(path):
                if "w" not in mode and "a" not in mode:
                    raise KernelError(errno.ENOENT, f"{path}: No such file or directory")
                self.create(path)
        ino = self.lookup(path)
        f = File(ino, mode)
        if "w" in mode and "+" not in mode:
            from mmdbg.sim.mm.filemap import truncate_inode_pages

            truncate_inode_pages(ino.i_mapping, 0)
            ino.blocks.clear()
            ino.fill = None
            ino.i_size = 0
        if "a" in mode:
            f.f_pos = ino.i_size
        return f


def shmem_file_setup(m: Any, name: str, size: int) -> File:
    """An unlinked shmem inode backing a shared anonymous mapping (``/dev/zero (deleted)``)."""
    fs = m.vm.fs
    ino = Inode(fs.shm, name, size, None, shmem=True)
    ino.i_nlink = 0
    return File(ino, "rw")


def _norm(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "."]
    out: list[str] = []
    for p in parts:
        if p == "..":
            if out:
                out.pop()
        else:
            out.append(p)
    return "/" + "/".join(out)
