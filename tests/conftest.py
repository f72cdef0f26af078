"""Shared fixtures: a freshly booted machine per test, checked for consistency afterwards."""

from __future__ import annotations

import pytest

import mmdbg


@pytest.fixture
def machine():
    m = mmdbg.boot("mem=1G cpus=2", seed=0)
    yield m
    m.check_consistency()
