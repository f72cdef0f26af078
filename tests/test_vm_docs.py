"""docs/vm.md: every python example runs, in order, and the machines stay consistent."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "vm.md"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def test_vm_doc_examples_run(capsys):
    blocks = FENCE.findall(DOC.read_text())
    assert len(blocks) >= 6
    ns: dict = {"__name__": "docs.vm"}
    machines = []
    for i, block in enumerate(blocks):
        exec(compile(block, f"vm.md[block {i}]", "exec"), ns)
        m = ns.get("m")
        if m is not None and m not in machines:
            machines.append(m)
    out = capsys.readouterr().out
    assert "anon-touch" in out and "unknown parameter 'sise'" in out
    assert "segfault at" in out and "[rollup]" in out and "PGD:" in out
    assert "successful run completed" in out
    for m in machines:
        m.check_consistency()
