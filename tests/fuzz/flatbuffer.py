"""Seeded mutants of a TFLite flatbuffer: bit flips, truncations, and edits of the fields the
schema gives a meaning to (a table's vtable offset and slots, a reference, a vector's length, a
buffer's offset and size, a tensor's shape, type and buffer index, an operator's tensor indices).

:func:`fields` walks the model's tables with the ``flatbuffers`` package's ``Table`` (as the
``tflite`` package's accessors do) and lists where each field is stored; :func:`mutants` draws
edits from it. A :class:`Mutant` keeps only its edit, so a few hundred of them cost no memory.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from flatbuffers.table import Table

U32, I32, U16 = "<I", "<i", "<H"

# The part of the TFLite schema (tflite 2.18's schema.fbs) the converter reads: per table, slot →
# (field, kind). A kind is a struct format (a scalar), "string", "table:<Name>", "[<Name>]" (a
# vector of tables) or "[<format>]" (a vector of scalars). Other slots are walked as vtable
# entries only.
SCHEMA: dict[str, dict[int, tuple[str, str]]] = {
    "Model": {0: ("version", U32), 1: ("operator_codes", "[OperatorCode]"), 2: ("subgraphs", "[SubGraph]"),
              3: ("description", "string"), 4: ("buffers", "[Buffer]"), 5: ("metadata_buffer", "[<i]"),
              6: ("metadata", "[Metadata]")},
    "SubGraph": {0: ("tensors", "[Tensor]"), 1: ("inputs", "[<i]"), 2: ("outputs", "[<i]"),
                 3: ("operators", "[Operator]"), 4: ("name", "string")},
    "Tensor": {0: ("shape", "[<i]"), 1: ("type", "<b"), 2: ("buffer", U32), 3: ("name", "string"),
               4: ("quantization", "table:QuantizationParameters"), 5: ("is_variable", "<B"),
               7: ("shape_signature", "[<i]")},
    "QuantizationParameters": {0: ("min", "[<f]"), 1: ("max", "[<f]"), 2: ("scale", "[<f]"),
                               3: ("zero_point", "[<q]"), 6: ("quantized_dimension", "<i")},
    "Operator": {0: ("opcode_index", U32), 1: ("inputs", "[<i]"), 2: ("outputs", "[<i]"),
                 3: ("builtin_options_type", "<B"), 4: ("builtin_options", "table:Options")},
    "OperatorCode": {0: ("deprecated_builtin_code", "<b"), 1: ("custom_code", "string"), 2: ("version", "<i"),
                     3: ("builtin_code", "<i")},
    "Buffer": {0: ("data", "[<B]"), 1: ("offset", "<Q"), 2: ("size", "<Q")},
    "Metadata": {0: ("name", "string"), 1: ("buffer", U32)},
    "Options": {},  # the operator's options table: its vtable only
}
#: elements of one vector walked (a weight vector or a per-channel scale vector need not be all)
VECTOR_CAP = 16


@dataclass(frozen=True)
class Field:
    """Where one value is stored, and what it is."""

    offset: int
    fmt: str  # struct format
    path: str  # subgraphs[0].tensors[3].shape[1], subgraphs[0].<vtable offset>, ...
    role: str  # soffset | vtable | reference | length | int | float


class _Walker:
    def __init__(self, buf: bytes):
        self.buf = buf
        self.found: list[Field] = []
        self.seen: set[int] = set()

    def read(self, fmt: str, at: int):
        return struct.unpack_from(fmt, self.buf, at)[0]

    def add(self, at: int, fmt: str, path: str, role: str) -> None:
        if 0 <= at and at + struct.calcsize(fmt) <= len(self.buf):
            self.found.append(Field(at, fmt, path, role))

    def table(self, pos: int, name: str, path: str) -> None:
        if pos in self.seen:
            return
        self.seen.add(pos)
        tab = Table(self.buf, pos)
        vtable = pos - self.read(I32, pos)
        self.add(pos, I32, f"{path}.<vtable offset>", "soffset")
        self.add(vtable, U16, f"{path}.<vtable size>", "vtable")
        self.add(vtable + 2, U16, f"{path}.<table size>", "vtable")
        schema = SCHEMA[name]
        for slot in range((self.read(U16, vtable) - 4) // 2):
            entry = tab.Offset(4 + 2 * slot)
            if not entry:
                continue
            field, kind = schema.get(slot, (f"slot{slot}", ""))
            self.add(vtable + 4 + 2 * slot, U16, f"{path}.<{field} slot>", "vtable")
            if kind:
                self.value(pos + entry, kind, f"{path}.{field}")

    def value(self, at: int, kind: str, path: str) -> None:
        if not (kind == "string" or kind.startswith(("[", "table:"))):
            self.add(at, kind, path, "float" if kind == "<f" else "int")
            return
        self.add(at, U32, f"{path}.<reference>", "reference")
        target = at + self.read(U32, at)
        if kind.startswith("table:"):
            self.table(target, kind[len("table:"):], path)
            return
        self.add(target, U32, f"{path}.<length>", "length")
        inner = kind[1:-1]
        if kind == "string" or inner == "<B":  # bytes: the bit flips' business
            return
        start, n = target + 4, min(self.read(U32, target), VECTOR_CAP)
        for i in range(n):
            if inner in SCHEMA:
                self.value(start + 4 * i, "table:" + inner, f"{path}[{i}]")
            else:
                self.value(start + struct.calcsize(inner) * i, inner, f"{path}[{i}]")


def fields(content: bytes) -> list[Field]:
    """Every field of a (valid) TFLite model that :data:`SCHEMA` names, in walking order."""
    w = _Walker(content)
    w.add(0, U32, "<root reference>", "reference")
    w.table(w.read(U32, 0), "Model", "model")
    return w.found


def _int_candidates(value: int, bits: int, signed: bool, role: str, size: int) -> list[int]:
    top = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    out = [0, 1, value - 1, value + 1, top, -1 if signed else top, 1 << (bits - 2)]
    if role in ("reference", "length", "soffset"):
        out += [value + 4, value - 4, value * 2, size, size - value, 0x7FFFFFFF, 0xFFFFFFFF]
    if role == "vtable":
        out += [2, 4, value + 2, value - 2]
    if role == "int":
        out += [-(top + 1) if signed else 0, 65536, value * 1000]
    return out


def _pack(fmt: str, value) -> bytes:
    if fmt.endswith(("f", "d")):
        return struct.pack(fmt, value)
    bits = 8 * struct.calcsize(fmt)
    return struct.pack(fmt.upper() if fmt[-1].islower() else fmt, value & ((1 << bits) - 1))


@dataclass(frozen=True)
class Mutant:
    """One edit of a base model: a cut at ``cut`` bytes, or ``patch`` bytes written at ``at``."""

    name: str
    cut: int | None = None
    at: int = 0
    patch: bytes = b""

    def apply(self, base: bytes) -> bytes:
        if self.cut is not None:
            return base[: self.cut]
        return base[: self.at] + self.patch + base[self.at + len(self.patch):]


def flip(base_name: str, base: bytes, at: int, mask: int) -> Mutant:
    return Mutant(f"{base_name}:flip@{at}^{mask:#04x}", at=at, patch=bytes([base[at] ^ mask]))


def edit(base_name: str, field: Field, value) -> Mutant:
    return Mutant(f"{base_name}:set {field.path}@{field.offset}={value}", at=field.offset,
                  patch=_pack(field.fmt, value))


def _draw_edit(rng: random.Random, base_name: str, base: bytes, by_role: dict[str, list[Field]]) -> Mutant:
    field = rng.choice(by_role[rng.choice(sorted(by_role))])
    value = struct.unpack_from(field.fmt, base, field.offset)[0]
    if field.role == "float":
        choices = [0.0, -1.0, math.nan, math.inf, -math.inf, 1e-45, 3e38, -value]
    else:
        bits, signed = 8 * struct.calcsize(field.fmt), field.fmt[-1].islower()
        choices = _int_candidates(value, bits, signed, field.role, len(base))
    new = rng.choice([c for c in choices if c != value] or [value ^ 1])
    return edit(base_name, field, new)


def mutants(base_name: str, base: bytes, seed: int, count: int) -> Iterator[Mutant]:
    """``count`` distinct seeded mutants of ``base``: half schema edits, 3/10 bit flips (half of
    them inside a field the schema names), 1/5 truncations (half of them at a field's start)."""
    rng = random.Random(f"{seed}:{base_name}")
    found = fields(base)
    by_role: dict[str, list[Field]] = {}
    for f in found:
        by_role.setdefault(f.role, []).append(f)
    seen: set[tuple] = set()
    attempts = 0
    while len(seen) < count and attempts < count * 20:
        attempts += 1
        kind = rng.random()
        if kind < 0.5:
            m = _draw_edit(rng, base_name, base, by_role)
        elif kind < 0.8:
            if rng.random() < 0.5:
                f = rng.choice(found)
                at = f.offset + rng.randrange(struct.calcsize(f.fmt))
            else:
                at = rng.randrange(len(base))
            m = flip(base_name, base, at, 1 << rng.randrange(8) if rng.random() < 0.7 else rng.randrange(1, 256))
        else:
            cut = rng.choice(found).offset if rng.random() < 0.5 else rng.randrange(len(base))
            m = Mutant(f"{base_name}:cut@{cut}", cut=cut)
        key = (m.cut, m.at, m.patch)
        if key in seen or (m.cut is None and m.apply(base) == base):
            continue
        seen.add(key)
        yield m
