"""KFENCE: sampling on simulated time, OOB, UAF, invalid free, corruption reports."""

from __future__ import annotations

import re

import pytest

import mmdbg
from mmdbg.sim.mm import kfence
from mmdbg.sim.mm import kmem_access as ka
from mmdbg.sim.mm import slab_common as sc
from mmdbg.sim.trace import kfunc


@pytest.fixture
def km():
    m = mmdbg.boot("mem=512M cpus=2 kfence.sample_interval=100")
    m.activate()
    yield m
    m.check_consistency()


def sampled_alloc(m, size=32):
    m.clock.advance(100_000_000)
    p = sc.kmalloc(size)
    assert m.kfence.in_pool(p)
    return p


def block(m) -> list[str]:
    lines = [ln[15:] for ln in m.log_lines()]
    start = max(i for i, ln in enumerate(lines) if ln.startswith("BUG: KFENCE"))
    end = next(i for i in range(start, len(lines)) if lines[i] == "=" * 66)
    return lines[start - 1:end + 1]


def test_pool_and_sampling(km):
    k = km.kfence
    assert k.pool_end - k.pool == kfence.KFENCE_POOL_SIZE == 2 << 20
    assert "kfence: initialized - using 2097152 bytes for 255 objects" in km.dmesg()
    p = sc.kmalloc(32)  # the gate is closed until sample_interval passed
    assert not k.in_pool(p)
    q = sampled_alloc(km)
    assert not k.in_pool(sc.kmalloc(32))  # one allocation per interval
    sc.kfree(q)
    sc.kfree(p)
    assert "total allocations: 1\ntotal frees: 1" in km.read("/sys/kernel/debug/kfence/stats")


@kfunc
def kfence_test_oob(m):
    p = sampled_alloc(m, 32)
    meta = m.kfence.addr_to_metadata(p)
    bad = p - 1 if p == meta.page else p + 32
    ka.read8(bad)
    return p, bad


def test_out_of_bounds(km):
    p, bad = kfence_test_oob(km)
    b = block(km)
    assert b[1].startswith("BUG: KFENCE: out-of-bounds read in kfence_test_oob+")
    side = "left" if bad < p else "right"
    dist = p - bad if bad < p else bad - p
    assert b[3] == f"Out-of-bounds read at 0x{bad:016x} ({dist}B {side} of kfence-#0):"
    assert b[4].startswith(" kfence_test_oob+")
    assert re.fullmatch(rf"kfence-#0: 0x{p:016x}-0x{p + 31:016x}, size=32, cache=kmalloc-32",
                        b[6])
    assert any(re.fullmatch(r"allocated by task 0 on cpu 0 at 0\.\d{6}s \(age: \d+\.\d{6}s\):",
                            x) for x in b)
    assert b[-3].startswith("CPU: 0 UID: 0 PID: 0 Comm: ")
    assert b[-2].startswith("Hardware name: ")
    sc.kfree(p)


@kfunc
def kfence_test_uaf(m):
    p = sampled_alloc(m)
    sc.kfree(p)
    ka.write8(p, 1)
    return p


def test_use_after_free(km):
    p = kfence_test_uaf(km)
    b = block(km)
    assert b[1].startswith("BUG: KFENCE: use-after-free write in kfence_test_uaf+")
    assert b[3] == f"Use-after-free write at 0x{p:016x} (in kfence-#0):"
    assert any(x.startswith("freed by task 0 on cpu 0 at ") for x in b)


@kfunc
def kfence_test_invalid_free(m):
    p = sampled_alloc(m)
    sc.kfree(p + 1)
    sc.kfree(p)
    return p


def test_invalid_free(km):
    p = kfence_test_invalid_free(km)
    text = km.dmesg()
    assert "BUG: KFENCE: invalid free in kfence_test_invalid_free+" in text
    assert f"Invalid free of 0x{p + 1:016x} (in kfence-#0):" in text


@kfunc
def kfence_test_corruption(m):
    p = sampled_alloc(m, 32)
    meta = m.kfence.addr_to_metadata(p)
    target = p + 32 if p == meta.page else p - 1
    ka.write8(target, 0x42)  # inside the object's page: no fault, canary damaged
    sc.kfree(p)
    return target


def test_corruption_detected_on_free(km):
    target = kfence_test_corruption(km)
    b = block(km)
    assert b[1].startswith("BUG: KFENCE: memory corruption in ")
    assert b[3].startswith(f"Corrupted memory at 0x{target:016x} [ ! ")
    assert b[3].endswith("] (in kfence-#0):")
