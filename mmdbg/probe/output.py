"""bpftrace's output formats: text (``output/text.cpp``) and NDJSON (``output/json.cpp``).

Text, as bpftrace 0.24+ prints it:

* ``@a: 1`` for a scalar map, ``@b[1, x]: 2`` for a keyed one (a tuple key loses its
  parentheses, strings are raw), stacks as multi-line keys;
* ``stats`` as ``@s: { .count = 2, .average = 15, .total = 30 }``, ``avg`` as its integer mean;
* ``hist``/``lhist`` as ``@h:`` (or ``@h[key]:``) then one row per bucket from the first to the
  last non-empty one, ``label`` left in 16 columns, the count right in 8, `` |``, ``@`` bars
  scaled to 52 columns with bpftrace's float arithmetic, ``|``, then one empty line; labels
  ``(..., 0)``, ``[n]`` when a bucket holds one integer, ``[2, 4)``, ``[1K, 2K)``,
  ``[100, ...)``;
* entries sorted ascending by value (count/sum/int/min/max), by average (avg/stats), by total
  count (hist/lhist) or by key (everything else); ties, which bpftrace leaves in hash order, are
  broken by key so runs are deterministic;
* ``"\\n\\n"`` before the maps printed at exit; the ``Attached N probes`` banner on stderr.

JSON: one record per line, ``{"type": "map", "data": {"@a": 1}}``, ``hist`` records with
``{"min": .., "max": .., "count": ..}`` buckets (inclusive bounds), ``stats`` records for avg
and stats maps, ``printf``/``time``/``join``/``syscall``/``value`` records, and
``{"type":"attached_probes", "count":N}``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, TextIO

from mmdbg.probe import values as V
from mmdbg.probe.runtime import avg_of, div

# --------------------------------------------------------------------------- histograms


@dataclass
class Label:
    text: str
    value: int
    is_int: bool  # a plain integer label (bpftrace prints "[n]" for adjacent integers)


@dataclass
class Histogram:
    lower: Label | None
    labels: list[Label]
    counts: list[int]


def _int_label(v: int) -> Label:
    return Label(str(v), v, True)


def _hist_label(index: int, k: int) -> Label:
    n = 1 << k
    interval = index & (n - 1)
    power = (index >> k) - 1
    value = (1 << power) * (n + interval)
    decade = power // 10
    suffix = "\0KMGTPE"[decade] if decade < 7 else "?"
    power -= 10 * decade
    text = str((1 << power) * (n + interval)) + ("" if suffix == "\0" else suffix)
    return Label(text, value, False)


def _span(buckets: dict[int, int]) -> tuple[int, int]:
    idx = [i for i, c in buckets.items() if c > 0]
    if not idx:
        return -1, -1
    return min(idx), max(idx)


def build_hist(buckets: dict[int, int], k: int, div_: int = 1) -> Histogram:
    h = Histogram(None, [], [])
    lo, hi = _span(buckets)
    if lo < 0:
        return h
    if lo != 0:
        h.lower = _int_label(lo - 1) if lo - 1 <= (2 << k) else _hist_label(lo - 1, k)
    for i in range(lo, hi + 1):
        if i == 0:
            h.labels.append(_int_label(0))
        elif i <= (2 << k):
            h.labels.append(_int_label(i))
        else:
            h.labels.append(_hist_label(i, k))
        h.counts.append(buckets.get(i, 0) // max(1, div_))
    return h


def _lhist_label(number: int, step: int) -> Label:
    if step % 1024 != 0:
        return _int_label(number)
    if number == 0:
        text = "0"
    elif number % (1024 * 1024) == 0:
        text = f"{number // (1024 * 1024)}M"
    elif number % 1024 == 0:
        text = f"{number // 1024}K"
    else:
        text = str(number)
    return Label(text, number, False)


def build_lhist(buckets: dict[int, int], lo_: int, hi_: int, step: int) -> Histogram:
    h = Histogram(None, [], [])
    lo, hi = _span(buckets)
    if lo < 0:
        return h
    if lo != 0:
        h.lower = _lhist_label(lo_ + (lo - 1) * step, step)
    for i in range(lo, hi + 1):
        if lo_ + i * step <= hi_:
            h.labels.append(_lhist_label(lo_ + i * step, step))
        h.counts.append(buckets.get(i, 0))
    return h


def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def bar_width(count: int, max_count: int, width: int = 52) -> int:
    """``int((count / (float)max) * 52)`` evaluated in single precision, as bpftrace does."""
    if max_count == 0:
        return 0
    q = _f32(_f32(float(count)) / _f32(float(max_count)))
    return int(_f32(q * width))


def _adjacent(a: Label, b: Label) -> bool:
    return a.is_int and b.is_int and a.value + 1 == b.value


def hist_rows(h: Histogram) -> str:
    max_count = max(h.counts, default=0)
    out: list[str] = []
    n = max(len(h.counts), len(h.labels))
    for i in range(n):
        if i == 0:
            if h.lower is None:
                head = f"(..., {h.labels[0].text})"
            elif _adjacent(h.lower, h.labels[0]):
                head = f"[{h.lower.text}]"
            else:
                head = f"[{h.lower.text}, {h.labels[0].text})"
        elif i >= len(h.labels):
            head = f"[{h.labels[i - 1].text}, ...)"
        elif _adjacent(h.labels[i - 1], h.labels[i]):
            head = f"[{h.labels[i - 1].text}]"
        else:
            head = f"[{h.labels[i - 1].text}, {h.labels[i].text})"
        c = h.counts[i]
        bar = "@" * bar_width(c, max_count)
        out.append(f"{head:<16}{c:>8} |{bar:<52}|\n")
    return "".join(out)


def hist_json(h: Histogram) -> str:
    parts: list[str] = []
    for i, c in enumerate(h.counts):
        fields: list[str] = []
        if i == 0 and h.lower is not None:
            fields.append(f'"min": {V.json_int(h.lower.value)}')
        elif i > 0:
            fields.append(f'"min": {V.json_int(h.labels[i - 1].value)}')
        if i < len(h.labels):
            fields.append(f'"max": {V.json_int(h.labels[i].value - 1)}')
        fields.append(f'"count": {c}')
        parts.append("{" + ", ".join(fields) + "}")
    return "[" + ",".join(parts) + "]"


# --------------------------------------------------------------------------- map entries


def _sort_key_safe(items: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    try:
        return sorted(items, key=lambda kv: kv[0])
    except TypeError:
        return items


def map_entries(info: Any, data: dict[Any, Any], top: int = 0) -> list[tuple[Any, Any]]:
    """The entries of a map in bpftrace's print order (``top`` keeps the last N)."""
    items = _sort_key_safe(list(data.items()))
    agg = info.agg
    vk = info.value.kind if info.value is not None else ""
    if agg in ("count", "sum", "min", "max") or (not agg and vk in ("int", "bool", "ptr")):
        items.sort(key=lambda kv: kv[1] if isinstance(kv[1], int) else 0)
    elif agg in ("avg", "stats"):
        items.sort(key=lambda kv: avg_of(kv[1]))
    elif agg in ("hist", "lhist"):
        items.sort(key=lambda kv: sum(kv[1].values()))
    if top and len(items) > top:
        items = items[len(items) - top:]
    return items


def _histogram(info: Any, value: dict[int, int], div_: int) -> Histogram:
    if info.agg == "hist":
        return build_hist(value, info.value.extra[0] if info.value.extra else 0, div_)
    lo, hi, step = info.value.extra
    return build_lhist(value, lo, hi, step)


def _scaled(info: Any, v: Any, div_: int) -> Any:
    agg = info.agg
    d = div_ or 1
    if agg == "avg":
        return div(avg_of(v), d)
    if agg == "stats":
        return V.Record(("count", "average", "total"), (v[0], div(avg_of(v), d), v[1]))
    if d != 1 and isinstance(v, int) and not isinstance(v, bool):
        return div(v, d)
    return v


# --------------------------------------------------------------------------- outputs


class Output:
    """Where probe output goes; subclasses render text or JSON."""

    def __init__(self, out: TextIO, err: TextIO):
        self.stream = out
        self.err = err

    def write(self, s: str) -> None:
        self.stream.write(s)
        if "\n" in s:
            self.stream.flush()


class TextOutput(Output):
    def attached_probes(self, n: int) -> None:
        self.err.write(f"Attached {n} probe{'' if n == 1 else 's'}\n")
        self.err.flush()

    def printf(self, s: str) -> None:
        self.write(s)

    def time(self, s: str) -> None:
        self.write(s)

    def join(self, s: str) -> None:
        self.write(s + "\n")

    def syscall(self, s: str) -> None:
        self.write(s + "\n")

    def value(self, v: Any, ty: Any = None) -> None:
        self.write(V.text_of(v, ty) + "\n")

    def diagnostic(self, rendered: str, severity: str, msg: str, loc: Any, filename: str,
                   kind: str = "") -> None:
        self.err.write(rendered)
        self.err.flush()

    def end(self) -> None:
        self.write("\n\n")

    def map(self, info: Any, data: dict[Any, Any], top: int = 0, div_: int = 0) -> None:
        if not data:
            return
        name = info.name
        agg = info.agg
        kty = info.key_type
        vty = info.value if info.value is not None and info.value.kind != "agg" else None
        out: list[str] = []
        if info.scalar:
            v = data.get(())
            if v is None:
                return
            if agg in ("hist", "lhist"):
                out.append(f"{name}:\n{hist_rows(_histogram(info, v, div_))}\n")
            else:
                out.append(f"{name}: {V.text_of(_scaled(info, v, div_), vty)}\n")
        else:
            for k, v in map_entries(info, data, top):
                key = V.key_text(k, kty)
                if agg in ("hist", "lhist"):
                    out.append(f"{name}[{key}]:\n{hist_rows(_histogram(info, v, div_))}\n")
                else:
                    out.append(f"{name}[{key}]: {V.text_of(_scaled(info, v, div_), vty)}\n")
        self.write("".join(out))


class JsonOutput(Output):
    def _record(self, type_: str, data: str) -> None:
        self.write(f'{{"type": "{type_}", "data": {data}}}\n')

    def attached_probes(self, n: int) -> None:
        self.write(f'{{"type":"attached_probes", "count":{n}}}\n')

    def printf(self, s: str) -> None:
        self._record("printf", V.json_str(s))

    def time(self, s: str) -> None:
        self._record("time", V.json_str(s))

    def join(self, s: str) -> None:
        self._record("join", V.json_str(s))

    def syscall(self, s: str) -> None:
        self._record("syscall", V.json_str(s))

    def value(self, v: Any, ty: Any = None) -> None:
        self._record("value", V.json_of(v, ty))

    def diagnostic(self, rendered: str, severity: str, msg: str, loc: Any, filename: str,
                   kind: str = "") -> None:
        """bpftrace's JSON error records: runtime_error, helper_error, errorf, warnf."""
        kind = kind or ("runtime_error" if severity == "ERROR" else "warnf")
        extra = ""
        if kind == "helper_error":
            extra = ', "helper": "map_update_elem", "retcode": -7'
        self.write(f'{{"type": "{kind}", "msg": {V.json_str(msg)}{extra}, "filename": '
                   f'{V.json_str(filename)}, "line": {loc.line}, "col": {loc.col}}}\n')

    def end(self) -> None:
        pass

    def map(self, info: Any, data: dict[Any, Any], top: int = 0, div_: int = 0) -> None:
        if not data:
            return
        agg = info.agg
        kind = "stats" if agg in ("avg", "stats") else "hist" if agg in ("hist", "lhist") else "map"
        kty = info.key_type
        vty = info.value if info.value is not None and info.value.kind != "agg" else None

        def val(v: Any) -> str:
            if agg in ("hist", "lhist"):
                return hist_json(_histogram(info, v, div_))
            return V.json_of(_scaled(info, v, div_), vty)

        if info.scalar:
            if () not in data:
                return
            body = val(data[()])
        else:
            body = "{" + ", ".join(f"{V.json_str(V.json_key(k, kty))}: {val(v)}"
                                   for k, v in map_entries(info, data, top)) + "}"
        self._record(kind, "{" + V.json_str(info.name) + ": " + body + "}")


def make_output(fmt: str, out: TextIO, err: TextIO) -> Output:
    if fmt == "json":
        return JsonOutput(out, err)
    return TextOutput(out, err)
