"""/sys/kernel/mm/transparent_hugepage: the THP policy files (mm/huge_memory.c).

``enabled`` and ``defrag`` read as the kernel prints them, every choice listed and the
current one in brackets (``always [madvise] never``); a write of one of the choices (a
trailing newline allowed, as ``echo`` adds) selects it, anything else is ``-EINVAL`` and
changes nothing (``enabled_store``/``defrag_store``).  The policy is recorded in
``machine.thp`` and in ``machine.config.transparent_hugepage``; the simulation acts on it
once huge pages exist.  ``hpage_pmd_size`` is the PMD size.
"""

from __future__ import annotations

import errno
from typing import Any

from mmdbg.sim.fs.vfs import VFS, KernelError

THP_DIR = "/sys/kernel/mm/transparent_hugepage"
ENABLED_CHOICES = ("always", "madvise", "never")
DEFRAG_CHOICES = ("always", "defer", "defer+madvise", "madvise", "never")
HPAGE_PMD_SIZE = 2 << 20


def _show(choices: tuple[str, ...], current: str) -> str:
    return " ".join(f"[{c}]" if c == current else c for c in choices) + "\n"


def _parse(text: str, choices: tuple[str, ...]) -> str:
    word = text[:-1] if text.endswith("\n") else text
    if word not in choices:
        raise KernelError(errno.EINVAL)
    return word


def register(v: VFS, m: Any) -> None:
    cfg = getattr(m, "config", None)
    thp = getattr(m, "thp", None)
    if not isinstance(thp, dict):
        thp = {"enabled": getattr(cfg, "transparent_hugepage", "madvise") or "madvise",
               "defrag": "madvise"}
        m.thp = thp

    def enabled_show() -> str:
        return _show(ENABLED_CHOICES, thp["enabled"])

    def enabled_store(text: str) -> None:
        thp["enabled"] = _parse(text, ENABLED_CHOICES)
        if cfg is not None and hasattr(cfg, "transparent_hugepage"):
            cfg.transparent_hugepage = thp["enabled"]

    def defrag_show() -> str:
        return _show(DEFRAG_CHOICES, thp["defrag"])

    def defrag_store(text: str) -> None:
        thp["defrag"] = _parse(text, DEFRAG_CHOICES)

    v.register(f"{THP_DIR}/enabled", enabled_show, enabled_store, mode=0o644)
    v.register(f"{THP_DIR}/defrag", defrag_show, defrag_store, mode=0o644)
    v.register(f"{THP_DIR}/hpage_pmd_size", lambda: f"{HPAGE_PMD_SIZE}\n")
