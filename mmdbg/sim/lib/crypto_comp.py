"""Compression algorithms (crypto/lzo.c, crypto/lz4.c, crypto/zstd.c, crypto/deflate.c and the
zram backends of drivers/block/zram/backend_*.c) on real bytes, through Python bindings.

=========  ==============================================  ==================================
name       binding                                         kernel parameters mirrored
=========  ==============================================  ==================================
lzo        python-lzo ``lzo.compress(data, 1, False)``     lzo1x_1_compress, raw stream
lzo-rle    the same lzo1x stream (see below)               lzorle1x_1_compress
lz4        ``lz4.block.compress(mode="default")``          LZ4_compress_default, accel 1
lz4hc      ``lz4.block.compress(mode="high_compression")`` LZ4HC_DEFAULT_CLEVEL 9
zstd       ``zstandard`` level 3, no checksum/size         ZSTD_DEF_LEVEL 3
deflate    ``zlib`` raw deflate, wbits 11, memLevel 9      DEFLATE_DEF_WINBITS/MEMLEVEL
=========  ==============================================  ==================================

``lzo-rle`` is lzo1x with a run-length encoding of zero runs and a different version byte; no
Python binding implements it, so it uses the lzo1x bitstream (sizes differ from the kernel's
by a few bytes on pages with long zero runs).  If python-lzo cannot be imported, ``lzo`` and
``lzo-rle`` are unavailable (:func:`unavailable_reason` says why) and callers fall back to
another algorithm instead of crashing.

Compression costs simulated CPU time: ``COST_NS[name] = (compress, decompress)`` per 4 KiB page,
from typical single-core throughputs (lz4 ~800 MB/s compress, ~4 GB/s decompress; zstd -3
~350/1000 MB/s; lzo ~650/850 MB/s; deflate ~50/300 MB/s; lz4hc ~40 MB/s compress).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import Any

PAGE_SIZE = 4096

# the kernel's preference order (zram's backends[] in drivers/block/zram/zcomp.c)
ALGORITHMS = ("lzo-rle", "lzo", "lz4", "lz4hc", "zstd", "deflate")

COST_NS: dict[str, tuple[int, int]] = {
    "lzo": (6300, 4800),
    "lzo-rle": (6000, 4600),
    "lz4": (5100, 1000),
    "lz4hc": (100000, 1000),
    "zstd": (11700, 4100),
    "deflate": (80000, 13600),
}

_unavailable: dict[str, str] = {}


class CompressError(Exception):
    """A compressor failed (``-EINVAL`` in the kernel's crypto API)."""


class Compressor:
    """One algorithm: ``compress(src) -> bytes`` and ``decompress(src, dlen) -> bytes``."""

    def __init__(self, name: str, compress: Callable[[bytes], bytes],
                 decompress: Callable[[bytes, int], bytes]) -> None:
        self.name = name
        self._c = compress
        self._d = decompress
        self.compress_ns, self.decompress_ns = COST_NS[name]

    def __repr__(self) -> str:
        return f"<crypto_acomp {self.name}>"

    def compress(self, src: bytes) -> bytes:
        try:
            return self._c(bytes(src))
        except Exception as e:  # a binding error is the kernel's -EINVAL
            raise CompressError(f"{self.name}: {e}") from None

    def decompress(self, src: bytes, dlen: int = PAGE_SIZE) -> bytes:
        try:
            out = self._d(bytes(src), dlen)
        except Exception as e:
            raise CompressError(f"{self.name}: {e}") from None
        if len(out) != dlen:
            raise CompressError(f"{self.name}: decompressed {len(out)} bytes, expected {dlen}")
        return out


def _lzo() -> tuple[Callable[[bytes], bytes], Callable[[bytes, int], bytes]] | None:
    try:
        import lzo  # python-lzo
    except ImportError as e:
        reason = (f"python-lzo cannot be imported ({e}); install liblzo2-dev and "
                  "'pip install python-lzo'")
        _unavailable["lzo"] = _unavailable["lzo-rle"] = reason
        return None
    return (lambda s: lzo.compress(s, 1, False),
            lambda s, n: lzo.decompress(s, False, n))


def _lz4(hc: bool) -> tuple[Callable[[bytes], bytes], Callable[[bytes, int], bytes]] | None:
    try:
        import lz4.block as lb
    except ImportError as e:
        _unavailable["lz4hc" if hc else "lz4"] = f"lz4 cannot be imported ({e})"
        return None
    if hc:
        def comp(s: bytes) -> bytes:
            return lb.compress(s, mode="high_compression", compression=9, store_size=False)
    else:
        def comp(s: bytes) -> bytes:
            return lb.compress(s, mode="default", store_size=False)
    return comp, lambda s, n: lb.decompress(s, uncompressed_size=n)


def _zstd() -> tuple[Callable[[bytes], bytes], Callable[[bytes, int], bytes]] | None:
    try:
        import zstandard
    except ImportError as e:
        _unavailable["zstd"] = f"zstandard cannot be imported ({e})"
        return None
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=False, write_content_size=False,
                                    write_dict_id=False)
    dctx = zstandard.ZstdDecompressor()
    return cctx.compress, lambda s, n: dctx.decompress(s, max_output_size=n)


def _deflate() -> tuple[Callable[[bytes], bytes], Callable[[bytes, int], bytes]]:
    def comp(s: bytes) -> bytes:
        c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -11, 9)
        return c.compress(s) + c.flush()

    def decomp(s: bytes, n: int) -> bytes:
        d = zlib.decompressobj(-11)
        return d.decompress(s, n)

    return comp, decomp


_REGISTRY: dict[str, Compressor] | None = None


def _registry() -> dict[str, Compressor]:
    global _REGISTRY
    if _REGISTRY is None:
        reg: dict[str, Compressor] = {}
        lzo = _lzo()
        if lzo is not None:
            reg["lzo"] = Compressor("lzo", *lzo)
            reg["lzo-rle"] = Compressor("lzo-rle", *lzo)
        for name, fns in (("lz4", _lz4(False)), ("lz4hc", _lz4(True)), ("zstd", _zstd()),
                          ("deflate", _deflate())):
            if fns is not None:
                reg[name] = Compressor(name, *fns)
        _REGISTRY = reg
    return _REGISTRY


def crypto_has_acomp(name: str) -> bool:
    """Is algorithm ``name`` available (crypto_has_acomp / zcomp_available_algorithm)?"""
    return name in _registry()


def available() -> list[str]:
    """The available algorithms, in the kernel's order."""
    reg = _registry()
    return [a for a in ALGORITHMS if a in reg]


def unavailable_reason(name: str) -> str | None:
    _registry()
    if name in _registry():
        return None
    return _unavailable.get(name, f"unknown algorithm '{name}'")


def crypto_alloc_acomp(name: str) -> Compressor:
    """The compressor ``name``; KeyError if it is not available."""
    reg = _registry()
    if name not in reg:
        raise KeyError(unavailable_reason(name))
    return reg[name]


def charge(m: Any, comp: Compressor, decompress: bool = False) -> None:
    """Account the CPU time one page's (de)compression takes."""
    m.clock.ns += comp.decompress_ns if decompress else comp.compress_ns
