"""Kernel-style command lines: parsing, defaults and errors that name the key."""

from __future__ import annotations

import pytest

import mmdbg
from mmdbg.sim.config import ConfigError, memparse, parse_cmdline


def test_defaults_are_two_cpus_one_gib_one_node():
    c = parse_cmdline("")
    assert (c.mem, c.cpus, c.numa_nodes, c.la57, c.min_free_kbytes) == (1 << 30, 2, 1, False,
                                                                        None)


@pytest.mark.parametrize(("text", "value"), [
    ("512M", 512 << 20), ("1G", 1 << 30), ("1g", 1 << 30), ("2048K", 2 << 20),
    ("1T", 1 << 40), ("0x10000000", 1 << 28), ("268435456", 1 << 28),
])
def test_memparse_suffixes(text, value):
    assert memparse(text) == value


def test_all_keys():
    c = parse_cmdline("mem=4G cpus=4 numa=fake=2 movablecore=512M min_free_kbytes=8192 la57")
    assert (c.mem, c.cpus, c.numa_nodes, c.movablecore, c.min_free_kbytes, c.la57) == \
        (4 << 30, 4, 2, 512 << 20, 8192, True)


@pytest.mark.parametrize(("cmdline", "key"), [
    ("mem=lots", "mem"), ("mem=1Q", "mem"), ("mem=1M", "mem"), ("cpus=0", "cpus"),
    ("cpus=two", "cpus"), ("numa=fake=x", "numa"), ("numa=real", "numa"), ("bogus=1", "bogus"),
    ("min_free_kbytes=-5", "min_free_kbytes"), ("movablecore=1G", "movablecore"), ("mem", "mem"),
    ("watermark_scale_factor=0", "watermark_scale_factor"), ("la57=maybe", "la57"),
    ("transparent_hugepage=sometimes", "transparent_hugepage"),
])
def test_bad_values_name_the_key(cmdline, key):
    with pytest.raises(ConfigError) as ei:
        parse_cmdline(cmdline)
    assert ei.value.key == key
    assert str(ei.value).startswith(f"{key}: ")


def test_min_free_kbytes_on_the_command_line_sets_watermarks():
    m = mmdbg.boot("mem=1G min_free_kbytes=8192")
    assert m.sysctl["vm.min_free_kbytes"] == 8192
    dma32 = m.zones[1]
    lowmem = sum(z.managed_pages for z in m.zones[:3])
    assert dma32._watermark[0] == 2048 * dma32.managed_pages // lowmem


def test_movablecore_creates_a_movable_zone():
    m = mmdbg.boot("mem=2G movablecore=256M")
    mov = m.zones[3]
    assert mov.present_pages >= (256 << 20) >> 12
    assert mov.zone_start_pfn % 1024 == 0
    m.check_consistency()


def test_same_seed_same_machine():
    a, b = mmdbg.boot("mem=1G", seed=3), mmdbg.boot("mem=1G", seed=3)
    assert a.dmesg() == b.dmesg()
    assert a.rng.random() == b.rng.random()
