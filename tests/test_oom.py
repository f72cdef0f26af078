"""The OOM killer: victim selection, the kernel's report, oom_score, panic_on_oom."""

from __future__ import annotations

import re

from mmdbg.sim.mm.oom_kill import LONG_MIN, oom_badness
from mmdbg.sim.mm.vma import MM_SWAPENTS
from tests.pressure_util import boot, hog, vmstat


def _oom_lines(m):
    lines = [re.sub(r"^\[ *[0-9.]+\] ", "", ln) for ln in m.log_lines()]
    i = next(i for i, ln in enumerate(lines) if "invoked oom-killer" in ln)
    return lines[i:]


def test_global_oom_kills_the_hog_with_full_report():
    m = boot("mem=128M cpus=2")
    small = hog(m, 4 << 20, name="small", hold=1.0)
    big = hog(m, 200 << 20, name="bigone")
    m.run()
    lines = _oom_lines(m)
    assert lines[0] == ("bigone invoked oom-killer: gfp_mask=0x100dca"
                        "(GFP_HIGHUSER_MOVABLE|__GFP_ZERO), order=0, oom_score_adj=0")
    assert "Mem-Info:" in lines
    assert "Tasks state (memory values in pages):" in lines
    hdr = lines.index("Tasks state (memory values in pages):")
    assert lines[hdr + 1] == ("[  pid  ]   uid  tgid total_vm      rss rss_anon rss_file "
                              "rss_shmem pgtables_bytes swapents oom_score_adj name")
    row = lines[hdr + 2]
    assert row.startswith(f"[{small.pid:7d}]     0 {small.pid:5d} ") and row.endswith(" 0 small")
    assert len(row.split()) == 13
    kill = next(ln for ln in lines if ln.startswith("oom-kill:"))
    assert kill == (f"oom-kill:constraint=CONSTRAINT_NONE,nodemask=(null),cpuset=/,"
                    f"mems_allowed=0,global_oom,task_memcg=/,task=bigone,pid={big.pid},uid=0")
    killed = next(ln for ln in lines if ln.startswith("Out of memory: Killed process"))
    assert re.fullmatch(rf"Out of memory: Killed process {big.pid} \(bigone\) total-vm:\d+kB, "
                        r"anon-rss:\d+kB, file-rss:\d+kB, shmem-rss:0kB, UID:0 pgtables:\d+kB "
                        r"oom_score_adj:0", killed)
    assert any(ln.startswith(f"oom_reaper: reaped process {big.pid} (bigone), now anon-rss:0kB")
               for ln in lines)
    assert big.task.exit_code == 9 and small.task.exit_code == 0
    assert vmstat(m)["oom_kill"] == 1
    m.check_consistency()


def test_oom_score_adj_changes_the_victim():
    m = boot("mem=128M cpus=2")
    victim = hog(m, 16 << 20, name="sacrifice", hold=5.0)
    m.run(50_000_000)
    m.write(f"/proc/{victim.pid}/oom_score_adj", "1000")
    big = hog(m, 200 << 20, name="bigone")
    m.run(2_000_000_000)
    assert not victim.alive
    assert any(f"Killed process {victim.pid} (sacrifice)" in ln for ln in m.log_lines())
    _ = big
    m.check_consistency()


def test_oom_badness_formula_and_oom_score():
    m = boot("mem=128M cpus=2")
    p = hog(m, 8 << 20, hold=1.0)
    m.run(20_000_000)
    mm = p.task.mm
    total = sum(z.managed_pages for z in m.zones)
    expect = mm.get_mm_rss() + mm.rss_stat[MM_SWAPENTS] + mm.pgtables_bytes // 4096
    m.activate()
    assert oom_badness(p.task, total) == expect
    p.task.oom_score_adj = 500
    assert oom_badness(p.task, total) == expect + 500 * (total // 1000)
    p.task.oom_score_adj = -1000
    assert oom_badness(p.task, total) == LONG_MIN
    assert m.read(f"/proc/{p.pid}/oom_score") == "0\n"
    p.task.oom_score_adj = 0
    assert m.read(f"/proc/{p.pid}/oom_score") == f"{(1000 + expect * 1000 // total) * 2 // 3}\n"


def test_panic_on_oom_stops_the_machine():
    m = boot("mem=128M cpus=2")
    m.write("/proc/sys/vm/panic_on_oom", "1")
    hog(m, 200 << 20)
    assert m.run() == "stopped"
    assert "Kernel panic - not syncing: Out of memory: system-wide panic_on_oom is enabled" \
        in m.dmesg()
    assert m.panicked
