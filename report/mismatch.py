"""Tensor by tensor: where a build and TFLite part (``tvmq-tune --explain-mismatch``).

:func:`compare_tensors` takes both engines' values of every operator's output, in execution order
(a model cut so that each is a graph output, :func:`tvmq.model.cut.cut`), and finds the first tensor
that differs beyond the verification policy; everything before it agrees, so the operator that
writes it is where the two computations part.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .verify import array_difference

__all__ = ["Mismatch", "TensorDiff", "compare_tensors"]


@dataclass(frozen=True)
class TensorDiff:
    """One tensor compared: which it is, what writes it, and how far apart the engines are."""

    tensor: int  # its index in the model
    name: str
    operator: str  # the builtin (or custom) operator that writes it
    op_index: int
    shape: tuple[int, ...]
    dtype: str
    quantization: str
    max_abs_diff: float
    identical_share: float
    agrees: bool

    def to_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return (f"tensor {self.tensor} {self.name!r}, written by operator {self.op_index} {self.operator}: "
                f"{list(self.shape)} {self.dtype} ({self.quantization}); max diff {self.max_abs_diff:g}, "
                f"{self.identical_share * 100:.2f}% identical")


@dataclass(frozen=True)
class Mismatch:
    """The comparison of every tensor of one input: ``first`` is the first that differs (None: none);
    ``inputs`` describes the tensors its operator reads."""

    sample: str
    reference: str
    tensors: list[TensorDiff]
    inputs: list[str] = field(default_factory=list)

    @property
    def first(self) -> TensorDiff | None:
        return next((t for t in self.tensors if not t.agrees), None)

    @property
    def differing(self) -> int:
        return sum(not t.agrees for t in self.tensors)

    def to_dict(self) -> dict:
        first = self.first
        return {"sample": self.sample, "reference": self.reference, "compared": len(self.tensors),
                "differing": self.differing, "first": first.to_dict() if first else None,
                "first_operator_inputs": self.inputs, "tensors": [t.to_dict() for t in self.tensors]}

    def lines(self) -> list[str]:
        """What a user reads: the first tensor where the engines part and what its operator reads."""
        first = self.first
        head = f"every tensor of {self.sample} compared with {self.reference} ({len(self.tensors)} tensors): "
        if first is None:
            return [head + "all agree"]
        before = self.tensors.index(first)
        out = [head + f"{self.differing} differ; the first {before} agree",
               "first tensor where they part: " + first.line()]
        out += [f"  its operator reads {text}" for text in self.inputs]
        return out


def compare_tensors(tensors, order: list[int], ours: list[np.ndarray], theirs: list[np.ndarray],
                    tolerance: float) -> list[TensorDiff]:
    """``ours``/``theirs``: the values of the tensors ``order`` (indices into ``tensors``, the model's
    :class:`~tvmq.model.cut.GraphTensor` list), each compared as a verified output is
    (:func:`tvmq.report.verify.array_difference`; an exact policy's tolerance is 0)."""
    out = []
    for index, mine, ref in zip(order, ours, theirs):
        t = tensors[index]
        ref = np.asarray(ref)
        diff, share, agrees = array_difference(mine, ref, tolerance)
        out.append(TensorDiff(index, t.name, t.operator or "?", -1 if t.producer is None else t.producer,
                              tuple(ref.shape), str(ref.dtype), t.quantization, diff, share, agrees))
    return out
