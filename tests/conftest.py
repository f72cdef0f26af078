"""Shared fixtures: a freshly booted machine per test, checked for consistency afterwards."""

from __future__ import annotations

import pytest

import mmdbg


@pytest.fixture
def machine():
    m = mmdbg.boot("mem=1G cpus=2", seed=0)
    yield m
    m.check_consistency()


@pytest.fixture(autouse=True)
def _no_leaked_probes():
    """Probes attached by a test must not outlive it: a kprobe left on a kernel function keeps
    the instrumented twin installed for every later test.  Detach leftovers after each test."""
    yield
    from mmdbg.sim import trace

    for kf in set(trace.KFUNCS.values()):
        for att in list(kf._entry) + list(kf._return):
            att.detach()
    for tp in trace.TRACEPOINTS.values():
        for att in list(tp._handlers):
            att.detach()
