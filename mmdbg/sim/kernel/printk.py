"""The printk ring buffer (kernel/printk/printk.c) and its ``dmesg`` text.

Records carry a log level and the simulated time in ns; ``log``/``dmesg`` print
``[%5lu.%06lu] text`` per line, as the kernel's ``print_time()`` does.  The buffer is bounded
like ``log_buf_len`` (oldest records dropped first).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

LOG_BUF_RECORDS = 1 << 16

KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR, KERN_WARNING, KERN_NOTICE, KERN_INFO, KERN_DEBUG = \
    range(8)
LEVEL_NAMES = ["emerg", "alert", "crit", "err", "warn", "notice", "info", "debug"]


@dataclass(frozen=True)
class LogRecord:
    seq: int
    ts_ns: int
    level: int
    text: str


def format_time(ns: int) -> str:
    return f"[{ns // 1_000_000_000:5d}.{ns // 1000 % 1_000_000:06d}]"


class PrintkBuffer:
    def __init__(self, clock: object) -> None:
        self._clock = clock
        self.records: deque[LogRecord] = deque(maxlen=LOG_BUF_RECORDS)
        self.seq = 0
        self.listeners: list = []

    def printk(self, text: str, level: int = KERN_INFO) -> None:
        for line in text.split("\n"):
            rec = LogRecord(self.seq, self._clock.ns, level, line)  # type: ignore[attr-defined]
            self.seq += 1
            self.records.append(rec)
            for fn in self.listeners:
                fn(rec)

    def lines(self, *, with_time: bool = True, level: bool = False) -> list[str]:
        out = []
        for r in self.records:
            prefix = f"<{r.level}>" if level else ""
            out.append(f"{prefix}{format_time(r.ts_ns)} {r.text}" if with_time else r.text)
        return out

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines())

    def clear(self) -> None:
        self.records.clear()
