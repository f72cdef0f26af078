"""``mmdbg --stat -e page-faults,minor-faults,major-faults``: perf stat's counter table.

Counts events over one scenario run and prints them the way ``perf stat`` (6.x) does for a
system-wide run::

    <blank>
     Performance counter stats for 'scenario oom':
    <blank>
                  9371      page-faults
                  9361      minor-faults
                    10      major-faults
    <blank>
           0.177689797 seconds time elapsed
    <blank>

Each counter line is the count right-aligned in 18 columns, six spaces, the event name, padded
with spaces to 91 columns (perf's empty metric column); the elapsed time is ``%18.9f`` of
*simulated* seconds.  Events: ``page-faults`` (``faults``), ``minor-faults``,
``major-faults`` (counted as :mod:`mmdbg.probe.software` describes) and any simulated
tracepoint as ``category:name`` (perf stat counts tracepoint hits the same way).  An event the
simulation cannot count prints ``<not supported>`` as perf does.
"""

from __future__ import annotations

from typing import Any

from mmdbg.probe.software import EVENT_ALIASES, attach_software_event

LINE_WIDTH = 91


class PerfStat:
    """Counters attached to one machine; ``report()`` renders perf stat's table."""

    def __init__(self, machine: Any, events: str | list[str]):
        self.machine = machine
        names = events.split(",") if isinstance(events, str) else list(events)
        self.events = [n.strip() for n in names if n.strip()]
        if not self.events:
            raise ValueError("no events given (e.g. -e page-faults,minor-faults,major-faults)")
        self.counts: dict[str, int | None] = {}
        self.attachments: list[Any] = []
        self.start_ns = 0
        self.stop_ns = 0

    def _clock(self) -> int:
        clock = getattr(self.machine, "clock", None)
        return int(getattr(clock, "ns", 0) or 0)

    def start(self) -> None:
        from mmdbg.sim import trace

        for name in self.events:
            self.counts[name] = 0

            def bump(_ev: Any, name: str = name) -> None:
                self.counts[name] += 1  # type: ignore[operator]

            if name in EVENT_ALIASES:
                try:
                    self.attachments.append(attach_software_event(self.machine, name, 1, bump))
                except LookupError:
                    self.counts[name] = None
                continue
            tp = trace.find_tracepoint(name) if ":" in name else None
            if tp is None:
                self.counts[name] = None
                continue
            self.attachments.append(tp.attach(bump, machine=self.machine))
        self.start_ns = self._clock()

    def stop(self) -> None:
        self.stop_ns = self._clock()
        for a in self.attachments:
            a.detach()
        self.attachments = []

    def report(self, label: str = "system wide") -> str:
        lines = ["", f" Performance counter stats for '{label}':", ""]
        for name in self.events:
            c = self.counts.get(name)
            count = "<not supported>" if c is None else str(c)
            lines.append(f"{count:>18}      {name}".ljust(LINE_WIDTH))
        secs = max(0, self.stop_ns - self.start_ns) / 1e9
        lines += ["", f"{secs:18.9f} seconds time elapsed", "", ""]
        return "\n".join(lines)


def run_stat_cli(events: str, machine: Any, run_workload: Any, out: Any, err: Any,
                 label: str = "system wide") -> int:
    """``mmdbg --stat -e EVENTS``: count over the workload, print the table on ``out``."""
    try:
        stat = PerfStat(machine, events)
    except ValueError as e:
        err.write(f"ERROR: {e}\n")
        return 2
    stat.start()
    try:
        run_workload(lambda: False)
    except KeyboardInterrupt:
        pass
    finally:
        stat.stop()
    out.write(stat.report(label))
    return 0
