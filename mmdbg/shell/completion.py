"""Tab completion for the REPL: commands, options, kernel names, pids, virtual files.

What is completed depends on where the cursor is:

* the first word: command names and aliases, and probe providers (``kprobe:`` ...);
* after ``kprobe:``/``kretprobe:``/``fentry:``/``fexit:`` and for ``break``/``tbreak``/
  ``until``/``advance``: kernel function names (``trace.KFUNCS``); after ``tracepoint:``
  (or ``t:``) and for ``trace-cmd -e``: tracepoint names;
* after ``args.`` in a probe program or a condition: the fields of that function's
  arguments or that tracepoint's fields;
* ``@`` names of the maps of attached probe programs;
* pids for ``set``, ``bt``, ``pmap``, ``ps``, ``vm``, ``foreach``, ``kill``;
* paths under ``/proc`` and ``/sys`` (the machine's virtual files) for ``cat``, ``ls``,
  ``echo ... >`` and any word starting with ``/proc`` or ``/sys``;
* otherwise the command's options (``kmem -i`` ...), and ``help`` completes command names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from mmdbg.sim import trace

WORD = re.compile(r"[\w:@$*./+-]+")
FUNC_PROVIDERS = ("kprobe:", "kretprobe:", "fentry:", "fexit:", "k:", "kr:", "f:", "fr:")
TP_PROVIDERS = ("tracepoint:", "t:")
PROVIDERS = ("kprobe:", "kretprobe:", "fentry:", "fexit:", "tracepoint:", "interval:",
             "profile:", "software:", "watchpoint:", "BEGIN", "END")
LOCATION_COMMANDS = {"break", "b", "br", "tbreak", "tb", "until", "u", "advance"}
PID_COMMANDS = {"set", "bt", "pmap", "ps", "vm", "foreach", "kill", "backtrace", "where"}
PATH_COMMANDS = {"cat", "ls", "echo", "source", "mkdir", "rmdir"}


class MmdbgCompleter(Completer):
    """Context-aware completion over one shell session."""

    def __init__(self, session: Any) -> None:
        self.session = session

    # -- data --------------------------------------------------------------------------
    def command_names(self) -> list[str]:
        return self.session.registry.all_names() + sorted(self.session.aliases)

    def kfuncs(self) -> list[str]:
        return sorted(trace.KFUNCS)

    def tracepoints(self) -> list[str]:
        return [tp.full_name for tp in trace.declared_tracepoints()]

    def pids(self) -> list[str]:
        m = self.session.machine
        out = [str(t.pid) for t in getattr(m, "idle_tasks", [])[:1]]
        tasks = getattr(m, "tasks", {}) or {}
        vals = tasks.values() if isinstance(tasks, dict) else tasks
        out += [str(t.pid) for t in sorted(vals, key=lambda t: t.pid)]
        return out

    def task_comm(self, pid: str) -> str:
        m = self.session.machine
        tasks = getattr(m, "tasks", {}) or {}
        t = tasks.get(int(pid)) if isinstance(tasks, dict) and pid.isdigit() else None
        return getattr(t, "comm", "") if t is not None else ("swapper" if pid == "0" else "")

    def paths(self) -> list[str]:
        vfs = getattr(self.session.machine, "vfs", None)
        if vfs is None:
            return []
        try:
            return sorted(vfs.all_paths())
        except Exception:
            return sorted(getattr(vfs, "static", {}))

    def map_names(self) -> list[str]:
        out = []
        for lp in (getattr(self.session, "live_probes", {}) or {}).values():
            out += [info.name for info in lp.sess.rt.infos]
        return sorted(set(out))

    def args_fields(self, text: str) -> list[str]:
        """Fields of ``args`` for the probe or breakpoint location in ``text``."""
        m = re.search(r"(?:^|\s)(?:(kprobe|kretprobe|fentry|fexit|k|kr|f|fr|tracepoint|t):)?"
                      r"([\w:]+)(?:\s*/|\s+if\b|\s*\{)", text)
        names = []
        for mm in re.finditer(r"(kprobe|kretprobe|fentry|fexit|tracepoint|t|k|kr|f|fr):([\w:]+)",
                              text):
            names.append((mm.group(1), mm.group(2)))
        if not names and m:
            names.append((m.group(1) or "", m.group(2)))
        b = re.match(r"\s*(?:break|b|br|tbreak|tb|condition\s+\d+)\s+(\S+)", text)
        if b and not names:
            names.append(("", b.group(1)))
        if text.lstrip().startswith("condition"):
            cm = re.match(r"\s*condition\s+(\d+)", text)
            dbg = self.session.debugger
            if cm and dbg is not None and int(cm.group(1)) in dbg.breakpoints:
                names = [("", dbg.breakpoints[int(cm.group(1))].location)]
        for prov, name in reversed(names):
            if prov in ("tracepoint", "t") or (":" in name and prov == ""):
                tp = trace.find_tracepoint(name)
                if tp is not None:
                    return list(tp.field_names)
            kf = trace.find_kfunc(name)
            if kf is not None:
                return [p for p in kf.param_names if p != "m"]
        return []

    # -- completion --------------------------------------------------------------------
    def get_completions(self, document: Document,
                        complete_event: CompleteEvent) -> Iterator[Completion]:
        before = document.text_before_cursor
        line = before.split("\n")[-1]
        word = document.get_word_before_cursor(pattern=WORD)
        if before.endswith((" ", "\t")):
            word = ""
        head = line.lstrip()
        first = head.split(None, 1)[0] if head.split() else ""
        in_first = not re.search(r"\s", head)
        yield from self._complete(word, head, first, in_first, before)

    def _complete(self, word: str, head: str, first: str, in_first: bool,
                  before: str) -> Iterator[Completion]:
        # args.FIELD anywhere (probe programs, conditions)
        am = re.search(r"\bargs\.(\w*)$", before)
        if am:
            part = am.group(1)
            for f in self.args_fields(before):
                if f.startswith(part):
                    yield Completion(f, start_position=-len(part), display_meta="field")
            return
        if word.startswith("@"):
            yield from _matches(word, ["@" + n.lstrip("@") for n in self.map_names()], "map")
            return
        for prov in FUNC_PROVIDERS:
            if word.startswith(prov):
                yield from _matches(word, [prov + f for f in self.kfuncs()], "kernel function")
                return
        for prov in TP_PROVIDERS:
            if word.startswith(prov):
                yield from _matches(word, [prov + t for t in self.tracepoints()], "tracepoint")
                return
        if word.startswith("/"):
            yield from self._paths(word)
            return
        if in_first:
            yield from _matches(word, self.command_names(), "command")
            yield from _matches(word, list(PROVIDERS), "probe")
            return
        cmd = self.session.registry.lookup(first)
        name = cmd.name if cmd is not None else first
        if first in LOCATION_COMMANDS or name in ("break", "tbreak", "until", "advance"):
            if not re.search(r"\s+if\s", head):
                yield from _matches(word, self.kfuncs(), "kernel function")
                yield from _matches(word, self.tracepoints(), "tracepoint")
                yield from _matches(word, ["kretprobe:", "tracepoint:"], "")
                return
        if name in ("help",):
            yield from _matches(word, [*self.command_names(), "input", "output", "all"],
                                "command")
            return
        if name == "trace-cmd":
            if re.search(r"-e\s+\S*$", head):
                yield from _matches(word, [*self.tracepoints(), "kmem:*"], "tracepoint")
                return
            yield from _matches(word, ["record", "report", "list", "-e"], "")
            return
        if name in PID_COMMANDS or first in PID_COMMANDS:
            for p in self.pids():
                if p.startswith(word):
                    yield Completion(p, start_position=-len(word),
                                     display_meta=self.task_comm(p))
        if name in PATH_COMMANDS and (word == "" or word.startswith("/")):
            yield from self._paths(word or "/")
        if name == "info":
            from mmdbg.shell.debugger import INFO_COMMANDS

            yield from _matches(word, sorted(INFO_COMMANDS), "")
            return
        if name in ("detach",):
            ids = [str(i) for i in (getattr(self.session, "live_probes", {}) or {})]
            yield from _matches(word, [*ids, "all"], "")
            return
        if name in ("delete", "disable", "enable", "condition", "ignore", "commands"):
            dbg = self.session.debugger
            if dbg is not None:
                yield from _matches(word, [str(n) for n in sorted(dbg.breakpoints)],
                                    "breakpoint")
        if cmd is not None and cmd.options:
            yield from _matches(word, list(cmd.options), "option")

    def _paths(self, word: str) -> Iterator[Completion]:
        """Complete one path component at a time (directories end in /)."""
        seen = set()
        for p in self.paths():
            if not p.startswith(word):
                continue
            rest = p[len(word):]
            cut = rest.find("/")
            cand = word + (rest[:cut + 1] if cut >= 0 else rest)
            if cand in seen:
                continue
            seen.add(cand)
            yield Completion(cand, start_position=-len(word),
                             display=cand.rstrip("/").rsplit("/", 1)[-1] + ("/" if cut >= 0
                                                                             else ""))


def _matches(word: str, candidates: Iterable[str], meta: str) -> Iterator[Completion]:
    for c in candidates:
        if c.startswith(word) and c != word:
            yield Completion(c, start_position=-len(word), display_meta=meta or None)
