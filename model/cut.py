"""Cutting a TFLite model: the same flatbuffer with other graph outputs (and inputs), the operators
that no longer lead to an output dropped.

It edits the flatbuffer with the object API that LiteRT ships (``ai_edge_litert.schema_py_generated``,
TFLite's own schema), so every table the cut does not touch (buffers, quantization, metadata,
operator options) is written back as it was. The uses:

* a classifier cut before its softmax, whose logits hide nothing (exactness tests);
* every operator's output made a graph output, to compare two engines tensor by tensor
  (:mod:`tvmq.report.mismatch`);
* a region of a model cut out with its own inputs.

:func:`read_graph` reads subgraph 0 once (its tensors, operators, inputs and outputs, named as
:mod:`tvmq.model.inspect` names them) for choosing what to cut and for reading the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from tvmq.errors import UsageError

__all__ = ["Graph", "GraphOperator", "GraphTensor", "cut", "read_graph"]


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
class GraphTensor:
    """One tensor of subgraph 0, with the operator that writes it (None: a graph input or constant);
    ``quantization`` as :meth:`tvmq.model.TensorInfo.quantization_text` writes it."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    producer: int | None  # the index of the operator that writes it
    operator: str | None  # that operator's name (``CUSTOM:<name>`` for a custom one)
    quantization: str


@dataclass(frozen=True)
class GraphOperator:
    """One operator of subgraph 0: its position, name and tensors (-1: an omitted optional input)."""

    index: int
    name: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class Graph:
    """Subgraph 0 of a model, read once: its tensors (by index), operators (in execution order)
    and graph inputs and outputs."""

    tensors: tuple[GraphTensor, ...]
    operators: tuple[GraphOperator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    def operator_outputs(self) -> list[int]:
        """The tensors the operators write, in execution order (each once)."""
        seen: dict[int, None] = {}
        for op in self.operators:
            seen.update((t, None) for t in op.outputs if t >= 0)
        return list(seen)

    def supported_region(self, unsupported: Iterable[str]) -> list[int]:
        """The outputs of the region that does not depend on an operator named in ``unsupported``:
        the tensors its operators write that an operator outside it reads, or that are graph
        outputs. Empty when the first operator is already unsupported."""
        bad_names = set(unsupported)
        tainted: set[int] = set()  # tensors computed by or after an unsupported operator
        outside: set[int] = set()  # operator indices
        for op in self.operators:
            if op.name in bad_names or any(t in tainted for t in op.inputs):
                tainted.update(op.outputs)
                outside.add(op.index)
        wanted = set(self.outputs) | {t for op in self.operators if op.index in outside for t in op.inputs}
        return [t for op in self.operators if op.index not in outside for t in op.outputs if t in wanted]


def read_graph(content: bytes) -> Graph:
    """Subgraph 0 of the flatbuffer ``content``, through the ``tflite`` accessors and the names
    :mod:`tvmq.model.inspect` gives tensors and operators."""
    import tflite

    from .inspect import operator_names, tensor_info
    from .loader import vector

    model = tflite.Model.GetRootAsModel(content, 0)
    names = operator_names(model)
    sg = model.Subgraphs(0)
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        ops.append(GraphOperator(i, names[op.OpcodeIndex()], tuple(int(t) for t in vector(op.InputsAsNumpy())),
                                 tuple(int(t) for t in vector(op.OutputsAsNumpy()))))
    writer = {t: op for op in ops for t in op.outputs}
    tensors = []
    for i in range(sg.TensorsLength()):
        info = tensor_info(sg, i)
        op = writer.get(i)
        tensors.append(GraphTensor(i, info.name, tuple(info.shape), info.dtype, tuple(info.scales),
                                   tuple(info.zero_points), None if op is None else op.index,
                                   None if op is None else op.name, info.quantization_text()))
    return Graph(tuple(tensors), tuple(ops), tuple(int(t) for t in vector(sg.InputsAsNumpy())),
                 tuple(int(t) for t in vector(sg.OutputsAsNumpy())))


def _ints(v) -> list[int]:
    return [] if v is None else [int(x) for x in np.asarray(v).ravel()]


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
            if _is_constant(model, graph.tensors[t]) or graph.tensors[t].isVariable:
                continue  # a constant, or state the interpreter keeps (an LSTM's)
            raise UsageError(f"tensor {t} ({_name(graph.tensors[t])}) is needed but nothing computes it: "
                             f"add it to the inputs")
        if op not in needed_ops:
            needed_ops.add(op)
            stack += _ints(graph.operators[op].inputs)
    graph.operators = [op for i, op in enumerate(graph.operators) if i in needed_ops]
    graph.outputs = np.asarray(outs, np.int32)
    graph.inputs = np.asarray(ins, np.int32)
    model.signatureDefs = None  # they name the old inputs and outputs
    _drop_unused_weights(model, graph)
    return _pack(model)


def _drop_unused_weights(model, graph) -> None:
    """Empty the buffers no kept operator, input or output reads (a part of a model does not carry
    the whole's weights); the buffers stay in place, so every index into them still holds."""
    used = set(_ints(graph.inputs)) | set(_ints(graph.outputs))
    for op in graph.operators:
        used.update(_ints(op.inputs))
        used.update(_ints(op.outputs))
    keep = {graph.tensors[t].buffer for t in used if 0 <= t < len(graph.tensors)}
    keep.update(m.buffer for m in (model.metadata or []))
    for i, buf in enumerate(model.buffers or []):
        if i not in keep and buf.data is not None:
            buf.data = None


def _is_constant(model, tensor) -> bool:
    b = tensor.buffer
    return b is not None and 0 < b < len(model.buffers) and model.buffers[b].data is not None \
        and len(model.buffers[b].data) > 0
