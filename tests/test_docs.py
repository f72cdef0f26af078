"""Every ```python example in docs/ runs, so the documentation cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def doc_files():
    return sorted(p for p in DOCS.glob("*.md") if FENCE.search(p.read_text()))


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: p.name)
def test_python_examples_run(path, capsys):
    ns: dict = {"__name__": f"docs.{path.stem}"}
    for i, block in enumerate(FENCE.findall(path.read_text())):
        code = compile(block, f"{path.name}[block {i}]", "exec")
        exec(code, ns)
    for v in list(ns.values()):
        check = getattr(v, "check_consistency", None)
        if callable(check) and type(v).__name__ == "Machine":
            check()
