"""Cutting a TFLite model: the same flatbuffer with other graph outputs (and inputs), the operators
that no longer lead to an output dropped.

It edits the flatbuffer with the object API that LiteRT ships (``ai_edge_litert.schema_py_generated``,
TFLite's own schema), so every table the cut does not touch (buffers, quantization, metadata,
operator options) is written back as it was. The uses:

* a classifier cut before its softmax, whose logits hide nothing (exactness tests);
* every operator's output made a graph output, to compare two engines tensor by tensor
  (:mod:`tvmq.report.mismatch`);
* a region of a model cut out with its own inputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from tvmq.errors import UsageError

__all__ = ["OperatorInfo", "TensorInfo", "cut", "operator_outputs", "operators", "supported_region", "tensor_infos"]


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def _unpack(content: bytes):
    schema = _schema()
    return schema.ModelT.InitFromPackedBuf(bytearray(content), 0)


def _pack(model) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _name(tensor) -> str:
    n = tensor.name
    return n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n or "")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of subgraph 0, with the operator that writes it (None: a graph input or constant)."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    producer: int | None  # the index of the operator that writes it
    operator: str | None  # that operator's builtin (or custom) name

    @property
    def quantization(self) -> str:
        """``scale=…, zero_point=…`` (per tensor), ``per-channel (n scales)``, or ``float``."""
        if not self.scale:
            return "float"
        if len(self.scale) == 1:
            return f"scale={self.scale[0]:.6g}, zero_point={self.zero_point[0]}"
        return f"per-channel ({len(self.scale)} scales)"


_DTYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 6: "bool", 7: "int16", 9: "int8"}


def _op_name(model, op) -> str:
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    if code.customCode:
        custom = code.customCode
        return custom.decode("utf-8", "replace") if isinstance(custom, bytes) else str(custom)
    number = max(int(code.builtinCode or 0), int(code.deprecatedBuiltinCode or 0))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(number, str(number))


def tensor_infos(content: bytes) -> list[TensorInfo]:
    """Every tensor of subgraph 0, in index order."""
    model = _unpack(content)
    graph = model.subgraphs[0]
    producer = {}
    for i, op in enumerate(graph.operators):
        for t in _ints(op.outputs):
            producer[t] = i
    out = []
    for i, t in enumerate(graph.tensors):
        q = t.quantization
        scale = tuple(float(s) for s in _floats(q.scale)) if q is not None else ()
        zps = tuple(int(z) for z in _ints(q.zeroPoint)) if q is not None else ()
        p = producer.get(i)
        out.append(TensorInfo(i, _name(t), tuple(int(d) for d in _ints(t.shape)), _DTYPES.get(t.type, str(t.type)),
                              scale, zps, p, None if p is None else _op_name(model, graph.operators[p])))
    return out


@dataclass(frozen=True)
class OperatorInfo:
    """One operator of subgraph 0: its position, name and tensors (-1: an omitted optional input)."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def operators(content: bytes) -> list[OperatorInfo]:
    """The operators of subgraph 0, in execution order."""
    model = _unpack(content)
    return [OperatorInfo(i, _op_name(model, op), tuple(_ints(op.inputs)), tuple(_ints(op.outputs)))
            for i, op in enumerate(model.subgraphs[0].operators)]


def supported_region(content: bytes, unsupported: Iterable[str]) -> list[int]:
    """The outputs of the region of subgraph 0 that does not depend on an operator named in
    ``unsupported``: the tensors its operators write that an operator outside it reads, or that
    are graph outputs. Empty when the first operator is already unsupported."""
    bad_names = set(unsupported)
    ops = operators(content)
    tainted: set[int] = set()  # tensors computed by or after an unsupported operator
    outside: list[OperatorInfo] = []
    for op in ops:
        if op.name in bad_names or any(t in tainted for t in op.inputs):
            tainted.update(op.outputs)
            outside.append(op)
    inside_outputs = [t for op in ops if op not in outside for t in op.outputs]
    graph = _unpack(content).subgraphs[0]
    wanted = set(_ints(graph.outputs)) | {t for op in outside for t in op.inputs}
    return [t for t in inside_outputs if t in wanted]


def operator_outputs(content: bytes) -> list[int]:
    """The tensors the operators of subgraph 0 write, in execution order (each once)."""
    graph = _unpack(content).subgraphs[0]
    seen: list[int] = []
    for op in graph.operators:
        seen += [t for t in _ints(op.outputs) if t >= 0 and t not in seen]
    return seen


def _ints(v) -> list[int]:
    return [] if v is None else [int(x) for x in np.asarray(v).ravel()]


def _floats(v) -> list[float]:
    return [] if v is None else [float(x) for x in np.asarray(v).ravel()]


def _resolve(graph, wanted: Iterable[int | str], what: str) -> list[int]:
    by_name = {_name(t): i for i, t in enumerate(graph.tensors)}
    out = []
    for w in wanted:
        if isinstance(w, str):
            if w not in by_name:
                raise UsageError(f"no tensor named {w!r} in the model (asked as a new {what})")
            w = by_name[w]
        if not 0 <= int(w) < len(graph.tensors):
            raise UsageError(f"tensor {w} is not in the model (it has {len(graph.tensors)}; asked as a new {what})")
        out.append(int(w))
    return out


def cut(content: bytes, outputs: Sequence[int | str], inputs: Sequence[int | str] | None = None) -> bytes:
    """The model ``content`` with ``outputs`` (tensor indices or names) as the graph's outputs, and
    ``inputs`` as its inputs (None: the graph's own inputs). Only the operators on a path from the
    inputs to the outputs stay, in their order; a tensor that an output needs and that neither an
    input, a constant nor a kept operator provides is an error."""
    model = _unpack(content)
    if len(model.subgraphs) != 1:
        raise UsageError(f"cutting a model of {len(model.subgraphs)} subgraphs is not supported")
    graph = model.subgraphs[0]
    outs = _resolve(graph, outputs, "output")
    ins = _ints(graph.inputs) if inputs is None else _resolve(graph, inputs, "input")
    writer = {}
    for i, op in enumerate(graph.operators):
        for t in _ints(op.outputs):
            writer[t] = i
    needed_ops: set[int] = set()
    stack = list(outs)
    seen: set[int] = set()
    while stack:
        t = stack.pop()
        if t in seen or t < 0:
            continue
        seen.add(t)
        if t in ins:
            continue
        op = writer.get(t)
        if op is None:
            if _is_constant(model, graph.tensors[t]):
                continue
            raise UsageError(f"tensor {t} ({_name(graph.tensors[t])}) is needed but nothing computes it: "
                             f"add it to the inputs")
        if op not in needed_ops:
            needed_ops.add(op)
            stack += _ints(graph.operators[op].inputs)
    graph.operators = [op for i, op in enumerate(graph.operators) if i in needed_ops]
    graph.outputs = np.asarray(outs, np.int32)
    graph.inputs = np.asarray(ins, np.int32)
    model.signatureDefs = None  # they name the old inputs and outputs
    return _pack(model)


def _is_constant(model, tensor) -> bool:
    b = tensor.buffer
    return b is not None and 0 < b < len(model.buffers) and model.buffers[b].data is not None \
        and len(model.buffers[b].data) > 0
