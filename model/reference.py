"""The TFLite reference interpreter: LiteRT (``ai-edge-litert``) where it imports, ``tf.lite`` otherwise.

It runs with XNNPACK as TFLite ships it (the default delegate) and the given thread count,
both for verification and for the side-by-side benchmark.
"""

from __future__ import annotations

import time

import numpy as np

from .loader import LoadedModel


def _interpreter_class():
    try:
        from ai_edge_litert import interpreter as litert

        import ai_edge_litert

        return litert.Interpreter, f"LiteRT {getattr(ai_edge_litert, '__version__', '')}".strip()
    except ImportError:
        import tensorflow as tf

        return tf.lite.Interpreter, f"tf.lite {tf.__version__}"


class Reference:
    """A TFLite interpreter over one model."""

    def __init__(self, loaded: LoadedModel, num_threads: int):
        cls, self.name = _interpreter_class()
        self.num_threads = num_threads
        self._it = cls(model_content=loaded.content, num_threads=num_threads)
        self._it.allocate_tensors()
        self._inputs = self._it.get_input_details()
        self._outputs = self._it.get_output_details()

    def _set(self, arrays: list[np.ndarray]) -> None:
        for detail, arr in zip(self._inputs, arrays):
            self._it.set_tensor(detail["index"], np.ascontiguousarray(arr, dtype=detail["dtype"]))

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        self._set(arrays)
        self._it.invoke()
        return [np.array(self._it.get_tensor(d["index"])) for d in self._outputs]

    def invoke(self) -> None:
        """One inference on the inputs the last ``run``/``benchmark`` set (nothing copied)."""
        self._it.invoke()

    def benchmark(self, arrays: list[np.ndarray], repeat: int, warmup: int = 3) -> list[float]:
        """Wall-clock seconds of ``repeat`` invocations after ``warmup`` ones."""
        self._set(arrays)
        for _ in range(warmup):
            self._it.invoke()
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            self._it.invoke()
            times.append(time.perf_counter() - start)
        return times
