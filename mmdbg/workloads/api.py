"""The system-call API of simulated programs.

A :class:`Process` is what a program sees of the kernel, shaped like libc: ``mmap`` returns an
address and raises ``OSError(errno)`` where the call would return -1; ``brk`` returns the
new break.  The same object serves two styles:

* **Scheduled programs**: a program is a function ``program(p: Process)`` returning a
  generator.  Plain ``yield`` is a preemption point; blocking calls are requests to yield::

      def hog(p):
          addr = p.mmap(64 << 20)
          yield from p.touch_chunks(addr, 64 << 20)    # faults, preemptible every 64 pages
          yield p.sleep(1.0)
          p.munmap(addr, 64 << 20)

      spawn_program(machine, "hog", hog); machine.run()

* **Direct calls** from Python (tests, the shell): ``p = Process.start(machine, "/usr/bin/x")``
  then ``p.mmap(...)``, ``p.touch(...)``, ``p.fork()`` run at once, as that task.

Memory accesses go through the simulated MMU: a bad access raises
:class:`~mmdbg.sim.kernel.signal.TaskKilled` after the kernel delivered SIGSEGV (the task is
dead by then).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any

from mmdbg.sim.include.mm import (
    MAP_ANONYMOUS,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_READ,
    PROT_WRITE,
)
from mmdbg.sim.kernel import signal as ksignal
from mmdbg.sim.kernel.sched_core import IoWait, Sleep, WaitChild
from mmdbg.sim.kernel.vm_init import spawn, task_context

Program = Callable[["Process"], Generator]
CHUNK_PAGES = 64


class ProgramExit(BaseException):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _check(ret: int, what: str) -> int:
    if ret < 0:
        raise OSError(-ret, f"{what}: {os.strerror(-ret)}")
    return ret


class Process:
    """A task seen from user space (see the module docstring)."""

    def __init__(self, machine: Any, task: Any) -> None:
        self.m = machine
        self.task = task
        self.fds: dict[int, Any] = {}
        self.next_fd = 3

    def __repr__(self) -> str:
        return f"<Process {self.task.pid} {self.task.comm}>"

    # -- creation ------------------------------------------------------------------------
    @classmethod
    def start(cls, machine: Any, path: str = "/usr/bin/a.out", argv: list[str] | None = None,
              program: Program | None = None, comm: str | None = None,
              parent: Process | None = None, run: bool = True) -> Process:
        """Exec ``path`` as a new process; it runs ``program`` when the machine runs."""
        holder: dict[str, Process] = {}

        def gen_factory(task: Any) -> Generator:
            return _lazy(holder, program)  # type: ignore[arg-type]

        t = spawn(machine, path if path.startswith("/") else f"/usr/bin/{path}", argv,
                  gen_factory if program is not None else None,
                  parent=parent.task if parent is not None else None, comm=comm, run=False)
        p = cls(machine, t)
        holder["p"] = p
        if program is not None and run:
            machine.vm.sched.wake_up_new_task(t)
        return p

    @property
    def pid(self) -> int:
        return self.task.pid

    @property
    def mm(self) -> Any:
        return self.task.mm

    @property
    def alive(self) -> bool:
        return not self.task.exit_state and self.task.state != 0x80

    @contextmanager
    def _ctx(self) -> Iterator[None]:
        m = self.m
        m.activate()
        if m.cpu_curr[m.cpu] is self.task:
            yield
            return
        if not self.alive:
            raise ProcessLookupError(f"process {self.pid} has exited")
        with task_context(m, self.task):
            try:
                yield
            except ksignal.TaskKilled as k:
                # the signal's default action, taken at the return to user space
                from mmdbg.sim.kernel.exit import do_exit

                do_exit(k.sig | (0x80 if k.sig in ksignal.SIG_KERNEL_COREDUMP else 0))
                raise

    # -- memory -------------------------------------------------------------------------
    def mmap(self, length: int, prot: int = PROT_READ | PROT_WRITE,
             flags: int = MAP_PRIVATE | MAP_ANONYMOUS, file: Any = None, offset: int = 0,
             addr: int = 0) -> int:
        from mmdbg.sim.mm.mmap import sys_mmap

        if isinstance(file, int):
            f = self.fds.get(file)
            if f is None:
                raise OSError(errno.EBADF, "mmap: Bad file descriptor")
            file = f
        elif isinstance(file, str):
            fd = self.open(file, "r+" if flags & MAP_SHARED and prot & PROT_WRITE else "r")
            file = self.fds[fd]
            try:
                with self._ctx():
                    return _check(sys_mmap(addr, length, prot, flags, file, offset), "mmap")
            finally:
                self.close(fd)
        with self._ctx():
            return _check(sys_mmap(addr, length, prot, flags, file, offset), "mmap")

    def munmap(self, addr: int, length: int) -> None:
        from mmdbg.sim.mm.mmap import sys_munmap

        with self._ctx():
            _check(sys_munmap(addr, length), "munmap")

    def mprotect(self, addr: int, length: int, prot: int) -> None:
        from mmdbg.sim.mm.mprotect import sys_mprotect

        with self._ctx():
            _check(sys_mprotect(addr, length, prot), "mprotect")

    def madvise(self, addr: int, length: int, advice: int) -> None:
        from mmdbg.sim.mm.madvise import sys_madvise

        with self._ctx():
            _check(sys_madvise(addr, length, advice), "madvise")

    def mremap(self, addr: int, old_len: int, new_len: int, flags: int = 0,
               new_addr: int = 0) -> int:
        from mmdbg.sim.mm.mremap import sys_mremap

        with self._ctx():
            return _check(sys_mremap(addr, old_len, new_len, flags, new_addr), "mremap")

    def msync(self, addr: int, length: int, flags: int) -> None:
        from mmdbg.sim.mm.madvise import sys_msync

        with self._ctx():
            _check(sys_msync(addr, length, flags), "msync")

    def mlock(self, addr: int, length: int, onfault: bool = False) -> None:
        from mmdbg.sim.mm import mlock

        with self._ctx():
            _check(mlock.sys_mlock2(addr, length, 1 if onfault else 0), "mlock")

    def munlock(self, addr: int, length: int) -> None:
        from mmdbg.sim.mm import mlock

        with self._ctx():
            _check(mlock.sys_munlock(addr, length), "munlock")

    def mlockall(self, flags: int) -> None:
        from mmdbg.sim.mm import mlock

        with self._ctx():
            _check(mlock.sys_mlockall(flags), "mlockall")

    def munlockall(self) -> None:
        from mmdbg.sim.mm import mlock

        with self._ctx():
            _check(mlock.sys_munlockall(), "munlockall")

    def brk(self, addr: int = 0) -> int:
        """brk(2) as the kernel returns it: the (new or unchanged) break."""
        from mmdbg.sim.mm.mmap import sys_brk

        with self._ctx():
            return sys_brk(addr)

    def sbrk(self, increment: int) -> int:
        """libc's sbrk: the old break, or OSError(ENOMEM)."""
        old = self.brk(0)
        if increment:
            new = self.brk(old + increment)
            if new != old + increment:
                raise OSError(errno.ENOMEM, "sbrk: Cannot allocate memory")
        return old

    # -- accesses ------------------------------------------------------------------------
    def touch(self, addr: int, length: int, write: bool = True, value: int = 0x5A) -> int:
        """Access one byte in every page of [addr, addr+length); returns pages touched."""
        from mmdbg.sim.mm.uaccess import touch_range

        with self._ctx():
            return touch_range(self.m, addr, addr + length, write, value)

    def touch_chunks(self, addr: int, length: int, write: bool = True, value: int = 0x5A,
                     chunk_pages: int = CHUNK_PAGES, page_ns: int = 0) -> Generator:
        """``yield from`` this in a program: touch with a preemption point every chunk.
        ``page_ns`` charges user time per page (a memset of the whole page, say)."""
        end = addr + length
        a = addr
        step = chunk_pages * 4096
        while a < end:
            n = self.touch(a, min(step, end - a), write, value)
            if page_ns:
                self.m.clock.ns += n * page_ns
            a += step
            yield

    def write_bytes(self, addr: int, data: bytes) -> None:
        from mmdbg.sim.mm.uaccess import user_write

        with self._ctx():
            user_write(self.m, addr, data)

    def read_bytes(self, addr: int, n: int) -> bytes:
        from mmdbg.sim.mm.uaccess import user_read

        with self._ctx():
            return user_read(self.m, addr, n)

    def execute(self, addr: int) -> None:
        """An instruction fetch at ``addr`` (faults with X86_PF_INSTR)."""
        from mmdbg.sim.arch.x86.tlb import mmu_translate

        with self._ctx():
            mmu_translate(self.m, addr, False, True, True)

    # -- files ---------------------------------------------------------------------------
    def open(self, path: str, mode: str = "r") -> int:
        with self._ctx():
            f = self.m.vm.fs.open(path, mode)
        fd = self.next_fd
        self.next_fd += 1
        self.fds[fd] = f
        return fd

    def close(self, fd: int) -> None:
        f = self.fds.pop(fd, None)
        if f is None:
            raise OSError(errno.EBADF, "close: Bad file descriptor")
        with self._ctx():
            f.put()

    def _file(self, fd: int, what: str) -> Any:
        f = self.fds.get(fd)
        if f is None:
            raise OSError(errno.EBADF, f"{what}: Bad file descriptor")
        return f

    def read(self, fd: int, n: int) -> bytes:
        """read(2) through the page cache (a miss waits for the disk)."""
        from mmdbg.sim.fs.read_write import ksys_read

        f = self._file(fd, "read")
        with self._ctx():
            return ksys_read(f, n)

    def write(self, fd: int, data: bytes) -> int:
        """write(2): dirties page-cache pages; balance_dirty_pages may throttle the task."""
        from mmdbg.sim.fs.read_write import ksys_write

        f = self._file(fd, "write")
        with self._ctx():
            return ksys_write(f, data)

    def pread(self, fd: int, n: int, offset: int) -> bytes:
        from mmdbg.sim.fs.read_write import ksys_pread64

        f = self._file(fd, "pread")
        with self._ctx():
            return ksys_pread64(f, n, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        from mmdbg.sim.fs.read_write import ksys_pwrite64

        f = self._file(fd, "pwrite")
        with self._ctx():
            return ksys_pwrite64(f, data, offset)

    def lseek(self, fd: int, pos: int) -> int:
        self._file(fd, "lseek").f_pos = pos
        return pos

    def fsync(self, fd: int) -> None:
        """fsync(2): write the file's dirty pages back and wait for the disk."""
        from mmdbg.sim.fs.read_write import vfs_fsync_range

        f = self._file(fd, "fsync")
        with self._ctx():
            vfs_fsync_range(f)

    def fdatasync(self, fd: int) -> None:
        from mmdbg.sim.fs.read_write import vfs_fsync_range

        f = self._file(fd, "fdatasync")
        with self._ctx():
            vfs_fsync_range(f, datasync=True)

    def sync(self) -> None:
        """sync(2): every dirty page reaches the disk."""
        from mmdbg.sim.fs.read_write import ksys_sync

        with self._ctx():
            ksys_sync()

    def fadvise(self, fd: int, offset: int, length: int, advice: int) -> None:
        """posix_fadvise(2) (POSIX_FADV_* from mmdbg.sim.fs.read_write)."""
        from mmdbg.sim.fs.read_write import generic_fadvise

        f = self._file(fd, "posix_fadvise")
        with self._ctx():
            _check(generic_fadvise(f, offset, length, advice), "posix_fadvise")

    def unlink(self, path: str) -> None:
        with self._ctx():
            self.m.vm.fs.unlink(path)

    def listdir(self, path: str) -> list[str]:
        return self.m.vm.fs.listdir(path)

    def create_file(self, path: str, size: int, pattern: bool = True) -> None:
        """Make a file with ``size`` bytes of deterministic contents (a test fixture)."""
        self.m.vm.fs.create(path, size=size, pattern=pattern)

    def print(self, *args: Any) -> None:
        self.task.tty_write(" ".join(str(a) for a in args) + "\n")

    # -- processes -----------------------------------------------------------------------
    def fork(self, program: Program | None = None) -> Process:
        """fork(2): the child has a copy of the address space and runs ``program``."""
        from mmdbg.sim.kernel.fork import SIGCHLD, kernel_clone

        holder: dict[str, Process] = {}
        gen = _lazy(holder, program) if program is not None else None
        with self._ctx():
            pid = _check(kernel_clone(SIGCHLD, gen), "fork")
        child = Process(self.m, self.m.tasks[pid])
        child.fds = {fd: f.get() for fd, f in self.fds.items()}
        child.next_fd = self.next_fd
        holder["p"] = child
        return child

    def exec(self, path: str, argv: list[str] | None = None) -> None:
        from mmdbg.sim.fs.exec import do_execve, install_binary

        install_binary(self.m, path)
        with self._ctx():
            _check(do_execve(path, argv or [path], ["HOME=/root"]), "execve")

    def exit(self, code: int = 0) -> None:
        """exit(2).  Inside a scheduled program this ends the generator."""
        from mmdbg.sim.kernel.exit import do_exit

        m = self.m
        sched = m.vm.sched
        if sched.current_step is self.task:
            raise ProgramExit(code)
        with self._ctx():
            do_exit((code & 0xFF) << 8)

    def kill(self, pid: int, sig: int = ksignal.SIGTERM) -> None:
        t = self.m.tasks.get(pid)
        if t is None:
            raise ProcessLookupError(errno.ESRCH, f"kill: ({pid}) - No such process")
        with self._ctx():
            ksignal.send_sig(sig, t)

    def sleep(self, seconds: float) -> Sleep:
        """``yield p.sleep(s)``."""
        return Sleep(int(seconds * 1e9))

    def io_wait(self, seconds: float) -> IoWait:
        return IoWait(int(seconds * 1e9))

    def wait(self, pid: int = -1) -> WaitChild:
        """``pid, status = yield p.wait()``."""
        return WaitChild(pid)

    def wait_now(self, pid: int = -1) -> tuple[int, int] | None:
        """Direct mode: reap a zombie child now (None if it is still running)."""
        from mmdbg.sim.kernel.exit import try_reap

        return try_reap(self.m, self.task, pid)


def _wrap(p: Process, program: Program | None) -> Generator:
    if program is None:
        return
    try:
        r = yield from program(p)
    except ProgramExit as e:
        return e.code
    return r if isinstance(r, int) else 0


def _lazy(holder: dict[str, Process], program: Program) -> Generator:
    p = holder["p"]
    r = yield from _wrap(p, program)
    return r


def spawn_program(machine: Any, name: str, program: Program, argv: list[str] | None = None,
                  run: bool = True) -> Process:
    """Install ``/usr/bin/NAME`` and start it running ``program``."""
    return Process.start(machine, f"/usr/bin/{name}", argv or [name], program, run=run)


def exit_status(task: Any) -> str:
    """wait(2) status as a shell describes it."""
    code = task.exit_code
    if code & 0x7F:
        sig = code & 0x7F
        name = ksignal.SIGNAL_NAMES.get(sig, str(sig))
        return f"killed by {name}" + (" (core dumped)" if code & 0x80 else "")
    return f"exit {code >> 8}"


_ = (ksignal, MAP_SHARED)
