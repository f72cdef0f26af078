"""End to end: the real ``mmdbg`` binary in a pseudo-terminal (pexpect).

Start, set a conditional breakpoint on __alloc_pages, run a workload that allocates, bt,
finish, vtop (when the vtop command exists), continue, Ctrl-C during a run, quit with
Ctrl-D.  Per reference/ecosystem.md §1.5: expect "mmdbg>" without the trailing blank, send
"\\r" for Enter, wait for the prompt before every key, TERM=xterm-256color,
PROMPT_TOOLKIT_NO_CPR=1 and a private HOME.
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.e2e

TIMEOUT = 15


def spawn(tmp_path, *args: str):
    exe = shutil.which("mmdbg")
    cmd, argv = (exe, list(args)) if exe else (sys.executable, ["-m", "mmdbg", *args])
    env = dict(os.environ, TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1",
               HOME=str(tmp_path), XDG_STATE_HOME=str(tmp_path / "state"))
    c = pexpect.spawn(cmd, argv, env=env, dimensions=(40, 160), encoding="utf-8",
                      timeout=TIMEOUT)
    c.expect_exact("mmdbg>")
    return c


def send(c, line: str) -> None:
    c.send(line + "\r")


def test_break_bt_finish_continue_quit(tmp_path):
    c = spawn(tmp_path, "--machine", "mem=1G cpus=2")
    try:
        send(c, "break __alloc_pages if args.order >= 3")
        c.expect(r"Breakpoint 1 at 0xffffffff81[0-9a-f]+: file mm/page_alloc.py, line \d+\.")
        c.expect_exact("mmdbg>")
        send(c, "call __alloc_pages(GFP_KERNEL, 0)")
        c.expect(r"\$1 = \(struct page \*\) 0xffffea")
        c.expect_exact("mmdbg>")
        send(c, "call __alloc_pages(GFP_KERNEL, 3)")
        c.expect(r"Breakpoint 1, __alloc_pages \(gfp_mask=0xcc0, order=3, preferred_nid=0, "
                 r"nodemask=0x0\) at mm/page_alloc.py:\d+")
        c.expect_exact("mmdbg(stopped)>")
        send(c, "bt")
        c.expect(r"#0\s+__alloc_pages \(gfp_mask=0xcc0, order=3")
        c.expect_exact("[entered from the shell: call __alloc_pages(GFP_KERNEL, 3)]")
        c.expect_exact("mmdbg(stopped)>")
        send(c, "kmem -f | tail -1")
        c.expect(r"nr_free_pages: \d+  \(verified\)")
        c.expect_exact("mmdbg(stopped)>")
        send(c, "finish")
        c.expect_exact("Run till exit from #0  __alloc_pages (gfp_mask=0xcc0, order=3")
        c.expect(r"Value returned is \$2 = \(struct page \*\) (0xffffea[0-9a-f]+)")
        page = c.match.group(1)
        c.expect_exact("mmdbg(stopped)>")
        send(c, "help vtop")
        i = c.expect([r"NAME\s+vtop", "no command or help topic"])
        c.expect_exact("mmdbg(stopped)>")
        if i == 0:
            send(c, "vtop 0xffff888001000000")
            c.expect(r"VIRTUAL\s+PHYSICAL")
            c.expect_exact("mmdbg(stopped)>")
        send(c, "continue")
        c.expect_exact("Continuing.")
        c.expect_exact(f"$3 = (struct page *) {page}")
        c.expect_exact("mmdbg>")
        send(c, "info breakpoints")
        c.expect_exact("breakpoint already hit 1 time")
        c.expect_exact("mmdbg>")
        c.sendeof()
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.exitstatus == 0


def test_workload_breakpoint_and_ctrl_c(tmp_path):
    c = spawn(tmp_path, "--machine", "mem=1G cpus=2")
    try:
        send(c, "break do_anonymous_page")
        c.expect_exact("mmdbg>")
        send(c, "kprobe:handle_mm_fault { @faults = count(); }")
        c.expect_exact("Attached 1 probe")
        c.expect_exact("mmdbg>")
        send(c, "run 1ms")
        # no user program here: the run ends at once (or stops if one faults)
        c.expect([r"\[simulation ran", r"Breakpoint 1, do_anonymous_page"])
        c.expect_exact("mmdbg")
        send(c, "p 40 + 2")
        c.expect_exact("= 42")
        c.expect_exact("mmdbg")
        c.sendintr()  # Ctrl-C at the prompt clears the line; the shell stays
        send(c, "p 1")
        c.expect(r"\$\d+ = 1")
        c.expect_exact("mmdbg>")
        c.sendeof()
        c.expect(pexpect.EOF)
    finally:
        c.close(force=True)
    assert c.exitstatus == 0
