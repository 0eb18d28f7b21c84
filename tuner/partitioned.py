"""A build of a partitioned model (:mod:`tvmq.model.partition`): TVM's part as a compiled library,
the others in the TFLite interpreter, run in order as one model.

The tensors between the parts pass as the quantized arrays the producing part wrote, keyed by the
model's tensor index, so that each part reads exactly what TFLite would have handed its operators.
Timed as a whole: one call runs every part, the copies between them included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tvmq.model.loader import LoadedModel
from tvmq.model.partition import TFLITE, TVM

__all__ = ["PartitionedRunnable"]


class PartitionedRunnable:
    """``tvm``: the TVM part's runnable (:class:`tvmq.tuner.compile.Runnable`); ``parts``: every
    part (``engine``, ``content``, ``inputs``, ``outputs``) in execution order; ``inputs`` and
    ``outputs``: the tensors the whole takes and gives, in the order of its arrays."""

    def __init__(self, tvm, parts: Sequence, inputs: Sequence[int], outputs: Sequence[int], threads: int,
                 where: str = "the model"):
        from tvmq.model import Reference

        self.inputs, self.outputs = tuple(inputs), tuple(outputs)
        self._steps: list[tuple[Callable[[list[np.ndarray]], list[np.ndarray]], tuple[int, ...], tuple[int, ...]]] = []
        for i, part in enumerate(parts):
            if part.engine == TVM:
                run = tvm.run
            elif part.engine == TFLITE:
                loaded = LoadedModel(path=Path(f"{where}#part{i}"), content=part.content, sha256="", source=f"{where} "
                                     f"(its TFLite part {i})")
                run = Reference(loaded, num_threads=threads, content=part.content).run
            else:
                raise ValueError(f"unknown engine {part.engine!r}")
            self._steps.append((run, tuple(part.inputs), tuple(part.outputs)))

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        values = dict(zip(self.inputs, arrays))
        for run, ins, outs in self._steps:
            values.update(zip(outs, run([values[t] for t in ins])))
        return [values[t] for t in self.outputs]

    def timed_call(self, arrays: list[np.ndarray]) -> Callable[[], object]:
        """One inference of the whole, every part in turn: what the benchmark times."""
        return lambda: self.run(arrays)

    def benchmark(self, arrays: list[np.ndarray], repeat: int, warmup: int = 3) -> list[float]:
        """Wall-clock seconds of ``repeat`` whole inferences after ``warmup`` ones."""
        from tvmq.model.reference import time_calls

        return time_calls(self.timed_call(arrays), repeat, warmup)
