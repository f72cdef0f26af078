"""Physical memory contents: sparse, page-granular bytes.

A page gets a ``bytearray(4096)`` the first time something writes it and reads as zeros
before (ARCHITECTURE.md "Memory has contents").  ``__GFP_ZERO`` and freeing drop a page's
bytes, which is the same as zeroing them.

Host-side optimisation (no simulated effect): dropped buffers that nothing else references
go to a bounded pool and are handed out again, zeroed, by :meth:`PhysMem.new_page`, so a
first write to a page rarely costs the host a fresh 4 KiB allocation (and page fault).
Code that creates a page's bytes goes through :meth:`new_page` / :meth:`set_page`.
"""

from __future__ import annotations

from sys import getrefcount

PAGE_SIZE = 4096
POOL_MAX = 65536  # recycled buffers kept at most (256 MiB of host memory)
_ZERO = bytes(PAGE_SIZE)


class PhysMem:
    __slots__ = ("pages", "pool")

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}
        self.pool: list[bytearray] = []

    def new_page(self, pfn: int) -> bytearray:
        """Give ``pfn`` a zeroed buffer (it must have none) and return it."""
        pool = self.pool
        if pool:
            pg = pool.pop()
            pg[:] = _ZERO
        else:
            pg = bytearray(PAGE_SIZE)
        self.pages[pfn] = pg
        return pg

    def set_page(self, pfn: int, data: bytes) -> bytearray:
        """Give ``pfn`` a buffer holding a copy of ``data`` (replacing any) and return it."""
        pool = self.pool
        if pfn in self.pages:
            self._drop(pfn)
        if pool and len(data) == PAGE_SIZE:
            pg = pool.pop()
            pg[:] = data
        else:
            pg = bytearray(data)
        self.pages[pfn] = pg
        return pg

    def _drop(self, pfn: int) -> None:
        pg = self.pages.pop(pfn, None)
        # recycle only a buffer nobody else holds (a slab memoryview, a caller's reference):
        # references here are ``pg`` and getrefcount's argument
        if pg is not None and getrefcount(pg) == 2 and len(self.pool) < POOL_MAX:
            self.pool.append(pg)

    def clear_pages(self, pfn: int, n: int) -> None:
        pages = self.pages
        if not pages:
            return
        pool = self.pool
        for p in range(pfn, pfn + n) if n != 1 else (pfn,):
            pg = pages.pop(p, None)
            if pg is not None and getrefcount(pg) == 2 and len(pool) < POOL_MAX:
                pool.append(pg)

    def read(self, paddr: int, size: int) -> bytes:
        out = bytearray()
        while size > 0:
            pfn, off = divmod(paddr, PAGE_SIZE)
            n = min(size, PAGE_SIZE - off)
            pg = self.pages.get(pfn)
            out += pg[off:off + n] if pg is not None else bytes(n)
            paddr += n
            size -= n
        return bytes(out)

    def write(self, paddr: int, data: bytes) -> None:
        i = 0
        while i < len(data):
            pfn, off = divmod(paddr + i, PAGE_SIZE)
            n = min(len(data) - i, PAGE_SIZE - off)
            pg = self.pages.get(pfn)
            if pg is None:
                pg = self.new_page(pfn)
            pg[off:off + n] = data[i:i + n]
            i += n

    def copy_page(self, dst_pfn: int, src_pfn: int) -> None:
        src = self.pages.get(src_pfn)
        if src is None:
            self._drop(dst_pfn)
        elif dst_pfn != src_pfn:
            self.set_page(dst_pfn, src)

    def page_bytes(self, pfn: int) -> bytes:
        pg = self.pages.get(pfn)
        return bytes(pg) if pg is not None else bytes(PAGE_SIZE)
