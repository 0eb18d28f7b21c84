"""A model split into parts: the operators TVM compiles, and those left to the TFLite interpreter.

A model holding an operator TVM cannot import (a custom operator such as
``TFLite_Detection_PostProcess``, an operator the frontend lacks, an LSTM form tvmq does not compute) is not refused:
:func:`plan_partition` chooses one run of consecutive operators (in the flatbuffer's execution
order) with no such operator and the most multiply-accumulates, for TVM; the operators before it
and after it form at most two TFLite parts. Each part is the model itself cut with
:func:`tvmq.model.cut.cut` to its own inputs and outputs, so the tensors passed between the parts
keep their quantized type and parameters: a part's input is the producing part's output, bit for
bit.

A TFLite part that no interpreter here can run (a custom operator LiteRT lacks, such as Coral's
``PosenetDecoderOp``) is dropped when it is the last part: the graph outputs only it computes are
*not computed*, and what the run verifies and times is everything before it. A first part that
cannot run leaves nothing to compute, and the model is refused.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from math import prod

from tvmq.errors import UnsupportedOperators

from .cut import Graph, GraphOperator, cut, read_graph

__all__ = ["TFLITE", "TVM", "NothingForTvm", "Part", "Partition", "operator_macs", "plan_partition"]

TVM = "tvm"
TFLITE = "tflite"


class NothingForTvm(UnsupportedOperators):
    """Every operator is one TVM cannot import, or follows one with nothing TVM could take between."""


def _elements(graph: Graph, tensor: int) -> int:
    return prod(max(1, d) for d in graph.tensors[tensor].shape) if tensor >= 0 else 0


def operator_macs(graph: Graph, op: GraphOperator) -> int:
    """Multiply-accumulates of one operator (0 for those without a weight or matrix product)."""
    ins = op.inputs
    shape = lambda i: graph.tensors[ins[i]].shape if len(ins) > i and ins[i] >= 0 else ()  # noqa: E731
    out = _elements(graph, op.outputs[0]) if op.outputs else 0
    if op.name == "CONV_2D" and len(shape(1)) == 4:
        return out * prod(shape(1)[1:])
    if op.name == "DEPTHWISE_CONV_2D" and len(shape(1)) == 4:
        return out * shape(1)[1] * shape(1)[2]
    if op.name == "FULLY_CONNECTED" and len(shape(1)) == 2:
        return out * shape(1)[1]
    if op.name == "TRANSPOSE_CONV" and len(shape(1)) == 4:
        return _elements(graph, ins[2]) * prod(shape(1)[:3])
    if op.name == "BATCH_MATMUL" and shape(0):
        return out * shape(0)[-1]
    if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM" and len(shape(0)) == 3 and len(shape(1)) == 2:
        units = shape(1)[0]
        return _elements(graph, op.outputs[0]) * 4 * (shape(0)[-1] + units)
    return 0


@dataclass(frozen=True)
class Part:
    """One part of a partitioned model: the engine that runs it, its flatbuffer (the model cut to
    it), and the model's tensors (indices) it reads and writes, in its own input and output order."""

    engine: str  # TVM or TFLITE
    content: bytes = field(repr=False)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    operators: dict[str, int]  # name: count
    macs: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class Partition:
    """A model as parts that run in order. ``outputs``: the graph outputs the parts compute (in
    the model's order); ``not_computed``: those only a dropped part would have computed, and why."""

    parts: tuple[Part, ...]
    graph: Graph = field(repr=False)
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    not_computed: tuple[int, ...] = ()
    dropped: str | None = None  # why the last TFLite part was dropped
    unsupported: tuple[str, ...] = ()
    total_macs: int = 0  # the whole model's

    @property
    def tvm_part(self) -> Part:
        return next(p for p in self.parts if p.engine == TVM)

    def tvm_mac_share(self) -> float:
        return self.tvm_part.macs / self.total_macs if self.total_macs else 1.0

    def name(self, tensor: int) -> str:
        return self.graph.tensors[tensor].name

    def to_dict(self) -> dict:
        """The report's ``partition`` section: which operators run where, and the MAC share in TVM."""
        return {
            "why": sorted(self.unsupported),
            "tvm_mac_share": round(self.tvm_mac_share(), 6),
            "parts": [{"engine": p.engine, "operators": p.operators, "macs": p.macs,
                       "inputs": [self.name(t) for t in p.inputs], "outputs": [self.name(t) for t in p.outputs]}
                      for p in self.parts],
            "not_computed": [self.name(t) for t in self.not_computed],
            **({"dropped": self.dropped} if self.dropped else {}),
        }


def _tvm_range(graph: Graph, bad: set[str], macs: list[int]) -> tuple[int, int]:
    """``[a, b)``: the run of consecutive operators, none in ``bad``, with the most MACs (``macs``,
    one per operator; the longest run on a tie, then the first)."""
    best, best_key = (0, 0), (-1, -1)
    start = 0
    ops = graph.operators
    for i in range(len(ops) + 1):
        if i == len(ops) or ops[i].name in bad:
            key = (sum(macs[start:i]), i - start)
            if i > start and key > best_key:
                best, best_key = (start, i), key
            start = i + 1
    return best


def _boundary(graph: Graph, ops: range, constants: set[int]) -> tuple[list[int], list[int]]:
    """The inputs (read, not written inside, not constant) and outputs (written inside, read after
    or a graph output) of the operators ``ops``, each in first-use order."""
    inside = [graph.operators[i] for i in ops]
    written = {t for op in inside for t in op.outputs}
    inputs = list(dict.fromkeys(t for op in inside for t in op.inputs
                                if t >= 0 and t not in written and t not in constants))
    read_after = {t for op in graph.operators[ops.stop:] for t in op.inputs} | set(graph.outputs)
    outputs = list(dict.fromkeys(t for op in inside for t in op.outputs if t in read_after))
    return inputs, outputs


def _constants(graph: Graph) -> set[int]:
    written = {t for op in graph.operators for t in op.outputs}
    return {t.index for t in graph.tensors if t.index not in written and t.index not in graph.inputs}


def plan_partition(content: bytes, unsupported: set[str], runs_in_tflite=None) -> Partition:
    """Split the model ``content`` around the operators named in ``unsupported``.

    ``runs_in_tflite(part_content) -> str | None``: why LiteRT cannot run a part (None: it can);
    a last part it cannot run is dropped. Raises :class:`UnsupportedOperators` when no operator
    is left for TVM, or when the part before TVM's cannot run."""
    graph = read_graph(content)
    bad = set(unsupported)
    macs = [operator_macs(graph, op) for op in graph.operators]
    a, b = _tvm_range(graph, bad, macs)
    if a == b:
        raise NothingForTvm(f"no operator of the model is left for TVM once {', '.join(sorted(bad))} "
                            f"run in TFLite", sorted(bad))
    constants = _constants(graph)
    ranges = [(TFLITE, range(0, a)), (TVM, range(a, b)), (TFLITE, range(b, len(graph.operators)))]
    parts: list[Part] = []
    dropped = None
    for engine, ops in ranges:
        if not len(ops):
            continue
        ins, outs = _boundary(graph, ops, constants)
        part_content = cut(content, outs, ins)
        part = Part(engine, part_content, tuple(ins), tuple(outs),
                    dict(Counter(graph.operators[i].name for i in ops).most_common()), sum(macs[ops.start:ops.stop]))
        why = runs_in_tflite(part_content) if engine == TFLITE and runs_in_tflite else None
        if why and ops.stop < len(graph.operators):
            raise UnsupportedOperators(f"the operators before TVM's part ({', '.join(part.operators)}) "
                                       f"cannot run in TFLite either: {why}", sorted(bad))
        if why:  # the last part: dropped
            dropped = why
        else:
            parts.append(part)
    computed = {t for p in parts for t in p.outputs}
    outputs = tuple(t for t in graph.outputs if t in computed)
    not_computed = tuple(t for t in graph.outputs if t not in computed)
    if dropped:  # what the run shows: the graph outputs computed, then what the dropped part would have read
        outputs += tuple(t for t in parts[-1].outputs if t not in outputs)
    return Partition(tuple(parts), graph, tuple(graph.inputs), outputs, not_computed, dropped, tuple(sorted(bad)),
                     sum(macs))
