"""Physical memory contents: sparse, page-granular bytes.

A page gets a ``bytearray(4096)`` the first time something writes it and reads as zeros
before (ARCHITECTURE.md "Memory has contents").  ``__GFP_ZERO`` and freeing drop a page's
bytes, which is the same as zeroing them.
"""

from __future__ import annotations

PAGE_SIZE = 4096


class PhysMem:
    __slots__ = ("pages",)

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}

    def clear_pages(self, pfn: int, n: int) -> None:
        pages = self.pages
        if not pages:
            return
        if n == 1:
            pages.pop(pfn, None)
            return
        for p in range(pfn, pfn + n):
            pages.pop(p, None)

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
                pg = self.pages[pfn] = bytearray(PAGE_SIZE)
            pg[off:off + n] = data[i:i + n]
            i += n

    def copy_page(self, dst_pfn: int, src_pfn: int) -> None:
        src = self.pages.get(src_pfn)
        if src is None:
            self.pages.pop(dst_pfn, None)
        else:
            self.pages[dst_pfn] = bytearray(src)

    def page_bytes(self, pfn: int) -> bytes:
        pg = self.pages.get(pfn)
        return bytes(pg) if pg is not None else bytes(PAGE_SIZE)
