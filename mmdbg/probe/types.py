"""Static types of probe expressions, as the checker infers them.

A deliberately small model of bpftrace's ``SizedType``: integers (with a display name such as
``int64`` or ``uint32``), ``bool``, ``string``, tuples, records, pointers to named kernel
structs, stacks, and the aggregation kinds a map can hold.  ``ANY`` is the type of a value read
from a simulated kernel object whose layout is only known at run time (a Python attribute);
it is accepted wherever an integer or a string is, and the runtime converts.

Simplification: integers are Python ints and are not wrapped to 64 bits except by explicit
casts; bpftrace's literal sizing and sign-mismatch warnings are not modelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Ty:
    kind: str  # int bool str tuple record ptr stack ksym none any agg time
    name: str = ""
    items: tuple[Ty, ...] = ()
    fields: tuple[tuple[str, Ty], ...] = ()
    struct: str = ""  # for ptr: "struct page"
    agg: str = ""  # count sum min max avg stats hist lhist
    extra: tuple = field(default=(), compare=False)  # hist k / lhist (min, max, step)

    def __str__(self) -> str:
        if self.kind == "tuple":
            return "(" + ",".join(str(t) for t in self.items) + ")"
        if self.kind == "record":
            return "record { " + ", ".join(f"{n}: {t}" for n, t in self.fields) + " }"
        if self.kind == "ptr":
            return f"{self.struct} *" if self.struct else "pointer"
        if self.kind == "agg":
            return {"count": "count_t", "sum": "sum_t", "min": "min_t", "max": "max_t",
                    "avg": "avg_t", "stats": "stats_t", "hist": "hist_t",
                    "lhist": "lhist_t"}.get(self.agg, self.agg)
        return self.name or self.kind

    # -- predicates ---------------------------------------------------------------------
    @property
    def is_int(self) -> bool:
        """Usable as an integer: ints, bools, pointers, unknown kernel values."""
        return self.kind in ("int", "bool", "ptr", "any")

    @property
    def is_str(self) -> bool:
        return self.kind in ("str", "ksym", "time", "any")

    @property
    def is_agg(self) -> bool:
        return self.kind == "agg"

    def field_type(self, name: str) -> Ty | None:
        for n, t in self.fields:
            if n == name:
                return t
        return None


INT64 = Ty("int", "int64")
UINT64 = Ty("int", "uint64")
UINT32 = Ty("int", "uint32")
INT32 = Ty("int", "int32")
UINT8 = Ty("int", "uint8")
BOOL = Ty("bool", "bool")
STRING = Ty("str", "string")
KSYM = Ty("ksym", "ksym_t")
TIMESTAMP = Ty("time", "timestamp")
STACK = Ty("stack", "kstack_t")
USTACK = Ty("stack", "ustack_t")
NONE = Ty("none", "none")
ANY = Ty("any", "any")


def agg(kind: str, extra: tuple = ()) -> Ty:
    return Ty("agg", agg=kind, extra=extra)


def ptr(struct: str) -> Ty:
    return Ty("ptr", struct=struct)


def tuple_of(items: list[Ty]) -> Ty:
    return Ty("tuple", items=tuple(items))


def record_of(fields: list[tuple[str, Ty]]) -> Ty:
    return Ty("record", fields=tuple(fields))


_INT_NAMES = {
    "int8": INT32, "int16": INT32, "int32": INT32, "int64": INT64,
    "uint8": UINT8, "uint16": UINT32, "uint32": UINT32, "uint64": UINT64,
    "bool": BOOL,
}

# Widths (bits, signed) of integer type names accepted in casts and declarations.
INT_WIDTHS: dict[str, tuple[int, bool]] = {
    "int8": (8, True), "int16": (16, True), "int32": (32, True), "int64": (64, True),
    "uint8": (8, False), "uint16": (16, False), "uint32": (32, False), "uint64": (64, False),
    "s8": (8, True), "s16": (16, True), "s32": (32, True), "s64": (64, True),
    "u8": (8, False), "u16": (16, False), "u32": (32, False), "u64": (64, False),
    "int8_t": (8, True), "int16_t": (16, True), "int32_t": (32, True), "int64_t": (64, True),
    "uint8_t": (8, False), "uint16_t": (16, False), "uint32_t": (32, False),
    "uint64_t": (64, False), "char": (8, True), "signed char": (8, True),
    "unsigned char": (8, False), "short": (16, True), "unsigned short": (16, False),
    "int": (32, True), "signed int": (32, True), "unsigned int": (32, False),
    "unsigned": (32, False), "long": (64, True), "unsigned long": (64, False),
    "long long": (64, True), "unsigned long long": (64, False), "long int": (64, True),
    "unsigned long int": (64, False), "size_t": (64, False), "ssize_t": (64, True),
    "uintptr_t": (64, False), "pid_t": (32, True), "gfp_t": (32, False), "bool": (1, False),
    "long unsigned int": (64, False), "short int": (16, True), "dev_t": (32, False),
    "ino_t": (64, False), "loff_t": (64, True), "pgoff_t": (64, False), "isolate_mode_t": (32, False),
    "unsigned short int": (16, False), "long long int": (64, True), "phys_addr_t": (64, False),
    "pfn_t": (64, False), "vm_flags_t": (64, False), "fmode_t": (32, False), "umode_t": (16, False),
    "uid_t": (32, False), "gid_t": (32, False), "errseq_t": (32, False),
}


def int_type(name: str) -> Ty:
    bits, signed = INT_WIDTHS.get(name, (64, True))
    if name == "bool":
        return BOOL
    return Ty("int", f"{'' if signed else 'u'}int{max(bits, 8)}")


def from_c_type(ctype: str) -> Ty:
    """A tracepoint field's or kernel parameter's C type as a probe type."""
    t = re.sub(r"\(.*?\)", "", ctype).replace("__percpu", "")
    t = " ".join(t.replace("const ", "").replace("volatile ", "").split())
    if "char" in t and ("[" in t or "*" in t or "__data_loc" in t):
        return STRING
    if t.endswith("*"):
        base = t.rstrip("* ").strip()
        if base.startswith(("struct ", "union ")):
            return ptr(base)
        return ptr("")
    if t.startswith(("struct ", "union ")):
        return ptr(t)  # by-value struct: fields readable like a pointer's
    if t == "bool" or t == "_Bool":
        return BOOL
    if t in INT_WIDTHS:
        return int_type(t)
    if t.startswith("enum "):
        return INT32
    return ANY


def compatible(a: Ty, b: Ty) -> bool:
    """May a variable or map holding ``a`` be assigned ``b``?"""
    if a.kind == "any" or b.kind == "any":
        return True
    if a.is_int and b.is_int and a.kind != "bool" and b.kind != "bool":
        return True
    if a.kind == "bool" or b.kind == "bool":
        return a.is_int and b.is_int
    if a.kind in ("str", "ksym", "time") and b.kind in ("str", "ksym", "time"):
        return True
    if a.kind == "tuple" and b.kind == "tuple":
        return len(a.items) == len(b.items) and all(
            compatible(x, y) for x, y in zip(a.items, b.items))
    if a.kind == "record" and b.kind == "record":
        return [n for n, _ in a.fields] == [n for n, _ in b.fields]
    if a.kind == "agg" and b.kind == "agg":
        return a.agg == b.agg
    return a.kind == b.kind


def merge(a: Ty, b: Ty) -> Ty:
    """The type that both branches of a ternary produce (``a`` unless ``a`` is ANY)."""
    return b if a.kind == "any" else a
