"""crash's ``log``: the simulated kernel's printk ring buffer (what ``dmesg`` shows)."""

from __future__ import annotations

import getopt

from mmdbg.shell.errors import UsageError
from mmdbg.shell.registry import CommandContext, command
from mmdbg.sim.kernel.printk import format_time


@command(
    "log",
    aliases=("dmesg",),
    usage="[-t] [-m]",
    summary="dump system message buffer",
    help="""\
    Prints the kernel's message buffer in order, each record with its simulated time
    stamp, "[    0.000000] ...", as dmesg and crash print it.  Allocation failures, bad page
    states and warnings land here in the kernel's words.

      -t  leave out the time stamps.
      -m  print each record's log level first, e.g. "<4>" for KERN_WARNING.""",
    examples=(("The boot log:", "log"),
              ("Only the lines about zones:", "log | grep -i zone"),
              ("With log levels, without time stamps:", "log -t -m")),
    options=("-t", "-m"),
)
def cmd_log(ctx: CommandContext, args: list[str]) -> None:
    try:
        opts, rest = getopt.getopt(args, "tmT")
    except getopt.GetoptError as e:
        raise UsageError(e.msg) from None
    if rest:
        raise UsageError()
    flags = {o for o, _ in opts}
    if "-T" in flags:
        raise UsageError("-T: the simulated machine has no wall clock; times are since boot")
    with_time = "-t" not in flags
    with_level = "-m" in flags
    for r in ctx.machine.log.records:
        prefix = f"<{r.level}>" if with_level else ""
        if with_time:
            prefix += format_time(r.ts_ns) + " "
        ctx.print(prefix + r.text)
