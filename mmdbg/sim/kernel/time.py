"""Simulated time (kernel/time/): a nanosecond clock advanced only by the simulation.

There is no wall clock anywhere in ``sim/``: ``ns`` moves when the cost model or the
scheduler advances it, so the same seed replays the same timestamps.
"""

from __future__ import annotations

NSEC_PER_SEC = 1_000_000_000
NSEC_PER_MSEC = 1_000_000
NSEC_PER_USEC = 1_000
HZ = 250
TICK_NSEC = NSEC_PER_SEC // HZ


class Clock:
    __slots__ = ("ns",)

    def __init__(self) -> None:
        self.ns = 0

    def advance(self, ns: int) -> None:
        self.ns += ns

    @property
    def jiffies(self) -> int:
        return self.ns // TICK_NSEC + INITIAL_JIFFIES


INITIAL_JIFFIES = (-300 * HZ) & 0xFFFFFFFF
