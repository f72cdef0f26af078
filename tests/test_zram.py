"""zram: the sysfs files and their formats, /dev/zram0 as swap, same and huge pages, the
memory limit, reset; the shell's swapon/swapoff/zramctl."""

from __future__ import annotations

import errno

import pytest

from mmdbg.shell import run_commands
from mmdbg.sim.drivers import zram
from mmdbg.sim.fs.vfs import KernelError
from mmdbg.workloads.api import Process
from mmdbg.workloads.zswap_scenarios import page_content
from tests.pressure_util import boot, vmstat

# the kernel's default compressors (lzo, lzo-rle) need python-lzo (the "lzo" extra)
pytest.importorskip("lzo", reason="python-lzo is not installed (pip install 'mmdbg[lzo]')")


Z = "/sys/block/zram0/"
MADV_PAGEOUT = 21


def _mm_stat(m) -> list[int]:
    return [int(x) for x in m.read(Z + "mm_stat").split()]


def _swapped_pages(m, kind: str, n: int, name: str = "t"):
    p = Process.start(m, f"/usr/bin/{name}", [name])
    addr = p.mmap(n << 12)
    data = [page_content(m, kind, i) for i in range(n)]
    for i, d in enumerate(data):
        p.write_bytes(addr + (i << 12), d)
    p.madvise(addr, n << 12, MADV_PAGEOUT)
    return p, addr, data


def test_files_before_init():
    m = boot("mem=64M")
    assert m.read(Z + "comp_algorithm") == "[lzo-rle] lzo lz4 lz4hc zstd deflate \n"
    assert m.read(Z + "disksize") == "0\n" and m.read(Z + "initstate") == "0\n"
    assert m.read(Z + "mm_stat") == ("       0        0        0        0        0        0"
                                     "        0        0        0\n")
    assert m.read(Z + "io_stat") == "       0        0        0        0\n"
    with pytest.raises(KernelError) as ei:
        m.write(Z + "comp_algorithm", "snappy")
    assert ei.value.err == errno.EINVAL
    m.write(Z + "comp_algorithm", "zstd")
    assert m.read(Z + "comp_algorithm") == "lzo-rle lzo lz4 lz4hc [zstd] deflate \n"
    m.write(Z + "disksize", "32M")
    assert m.read(Z + "disksize") == f"{32 << 20}\n" and m.read(Z + "initstate") == "1\n"
    for f, v in (("disksize", "64M"), ("comp_algorithm", "lz4")):
        with pytest.raises(KernelError) as ei:
            m.write(Z + f, v)
        assert ei.value.err == errno.EBUSY
    with pytest.raises(KernelError):
        m.read(Z + "mem_limit")  # write-only
    m.check_consistency()


def test_zram_swap_stores_compressed_and_returns_exact_bytes():
    m = boot("mem=64M cpus=2")
    zram.zram_setup(m, "32M", "lz4")
    assert zram.zram_swapon(m, prio=100) == 0
    line = m.read("/proc/swaps").splitlines()[1]
    assert line.startswith("/dev/zram0") and "partition" in line and line.endswith("100")
    p, addr, data = _swapped_pages(m, "text", 64)
    orig, compr, used, limit, used_max, same, compacted, huge, huge_since = _mm_stat(m)
    assert orig == 64 * 4096 and 0 < compr < orig * 3 // 4
    assert used >= compr and used % 4096 == 0 and used_max >= used
    assert limit == 0 and same == 0 and compacted == 0 and huge == 0 and huge_since == 0
    v = vmstat(m)
    assert v["pswpout"] == 64 and v["nr_zspages"] == used // 4096
    m.check_consistency()
    for i, d in enumerate(data):
        assert p.read_bytes(addr + (i << 12), 4096) == d
    assert vmstat(m)["pswpin"] == 64
    m.check_consistency()
    p.munmap(addr, 64 << 12)
    orig, *_rest = _mm_stat(m)
    assert orig == 0, "freed slots are freed in zram (swap_slot_free_notify)"
    assert int(m.read(Z + "io_stat").split()[3]) == 64
    m.check_consistency()


def test_same_filled_huge_and_zero_pages():
    m = boot("mem=64M cpus=2")
    zram.zram_setup(m, "16M")
    zram.zram_swapon(m)
    p = Process.start(m, "/usr/bin/t", ["t"])
    addr = p.mmap(12 << 12)
    for i in range(4):
        p.write_bytes(addr + (i << 12), bytes([0x41 + i]) * 4096)  # same-filled
    rnd = [page_content(m, "random") for _ in range(4)]
    for i in range(4):
        p.write_bytes(addr + ((4 + i) << 12), rnd[i])
    p.touch(addr + (8 << 12), 4 << 12, True, 0)  # zero pages: the swap zeromap
    p.madvise(addr, 12 << 12, MADV_PAGEOUT)
    orig, compr, _used, _l, _mx, same, _c, huge, huge_since = _mm_stat(m)
    assert same == 4 and huge == 4 and huge_since == 4
    assert orig == 8 * 4096 and compr == 4 * 4096
    assert vmstat(m)["swpout_zero"] == 4
    m.check_consistency()
    assert p.read_bytes(addr + (2 << 12), 4096) == b"\x43" * 4096
    assert p.read_bytes(addr + (5 << 12), 4096) == rnd[1]
    assert p.read_bytes(addr + (9 << 12), 4096) == bytes(4096)
    assert _mm_stat(m)[8] == 4, "huge_pages_since only grows"
    m.check_consistency()


def test_mem_limit_fails_writes_and_used_max_resets():
    m = boot("mem=64M cpus=2")
    zram.zram_setup(m, "16M", "lzo", mem_limit="64K")
    zram.zram_swapon(m)
    _swapped_pages(m, "text", 64)
    st = _mm_stat(m)
    assert st[3] == 64 << 10 and st[2] <= 64 << 10
    failed_writes = int(m.read(Z + "io_stat").split()[1])
    assert failed_writes > 0
    assert st[0] == (64 - failed_writes) * 4096
    m.write(Z + "mem_used_max", "0")
    assert _mm_stat(m)[4] == _mm_stat(m)[2]
    with pytest.raises(KernelError):
        m.write(Z + "mem_used_max", "5")
    m.check_consistency()


def test_reset_busy_while_swap_then_clears():
    m = boot("mem=64M cpus=2")
    zram.zram_setup(m, "16M", "zstd")
    zram.zram_swapon(m)
    p, addr, data = _swapped_pages(m, "text", 16)
    with pytest.raises(KernelError) as ei:
        m.write(Z + "reset", "1")
    assert ei.value.err == errno.EBUSY
    out = run_commands(m, "swapoff /dev/zram0\nzramctl -r /dev/zram0\n")
    assert "failed" not in out
    assert m.read(Z + "initstate") == "0\n" and m.read(Z + "disksize") == "0\n"
    assert _mm_stat(m) == [0] * 9
    assert m.read(Z + "comp_algorithm").startswith("[lzo-rle]")
    assert p.read_bytes(addr + 4096, 4096) == data[1]
    m.check_consistency()


def test_shell_zramctl_and_swapon():
    m = boot("mem=64M cpus=2 swap=32M")
    out = run_commands(m, "zramctl -s 16M -a lz4 /dev/zram0\nswapon -p 10 /dev/zram0\n"
                          "swapon --show\nzramctl\n")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "SIZE", "USED", "PRIO"]
    assert lines[1].split() == ["/swapfile", "file", "32M", "0B", "-2"]
    assert lines[2].split() == ["/dev/zram0", "partition", "16M", "0B", "10"]
    assert lines[3].split() == ["NAME", "ALGORITHM", "DISKSIZE", "DATA", "COMPR", "TOTAL",
                                "STREAMS", "MOUNTPOINT"]
    assert lines[4].split() == ["/dev/zram0", "lz4", "16M", "0B", "0B", "0B", "2", "[SWAP]"]
    err = run_commands(m, "zramctl -s 8M /dev/zram0\n")
    assert "failed to set disksize: Device or resource busy" in err
    m.check_consistency()
