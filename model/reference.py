"""The TFLite reference interpreter: LiteRT (``ai-edge-litert``) where it imports, ``tf.lite`` otherwise.

A :class:`Reference` runs one of three sets of kernels (:data:`KERNELS`): ``xnnpack``, TFLite as it
ships (the XNNPACK delegate by default, TFLite's builtin kernels for the ops XNNPACK does not
take), which is what the side-by-side benchmark measures; ``reference``, TFLite's reference
kernels (``BUILTIN_REF``), the plain C++ that defines TFLite's integer arithmetic; and
``builtin``, TFLite's optimized builtin kernels without a delegate. Verification picks the set a
build promises to match (:func:`tvmq.report.verify.verification_policy`).
:func:`litert_refusal` first proves, in a child process, that LiteRT can build and allocate the
model without dying.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tvmq.errors import MissingDependency, TruncatedModel, one_line
from tvmq.files import native_stderr_to

from .loader import LoadedModel

#: seconds the child of :func:`litert_refusal` may take to build and allocate one model
ALLOCATE_TIMEOUT_S = 120.0
BUILD, ALLOCATE = "build", "allocate_tensors"  # the phases of the check, as the child names them
_CHILD = "import sys; from tvmq.model.reference import _check_child; _check_child(sys.argv[1] == 'allocate')"


#: the kernel sets a :class:`Reference` can run: (LiteRT's ``OpResolverType`` name, how reports name it)
KERNELS = {
    "xnnpack": ("AUTO", "XNNPACK delegate (TFLite's default)"),
    "reference": ("BUILTIN_REF", "reference kernels (BUILTIN_REF)"),
    "builtin": ("BUILTIN_WITHOUT_DEFAULT_DELEGATES", "optimized builtin kernels, no delegate"),
}


def _resolver(kernels: str):
    """The ``experimental_op_resolver_type`` of a kernel set, from LiteRT (or tf.lite)."""
    try:
        from ai_edge_litert.interpreter import OpResolverType
    except ImportError:
        OpResolverType = _tensorflow().lite.experimental.OpResolverType
    return getattr(OpResolverType, KERNELS[kernels][0])


#: what to install where LiteRT's wheel does not exist (its platform marker in pyproject.toml)
NO_INTERPRETER = ("no TFLite interpreter: LiteRT (ai-edge-litert) is not installed on this platform, and "
                  "neither is TensorFlow, whose tf.lite stands in for it: pip install 'tvmq[convert]'")


def _tensorflow():
    """TensorFlow, the fallback interpreter, or a clear :class:`MissingDependency`."""
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependency(NO_INTERPRETER) from None
    return tf


def require_interpreter() -> None:
    """Raise :class:`MissingDependency` unless LiteRT or TensorFlow can be imported (found, not
    imported: cheap)."""
    if not any(importlib.util.find_spec(name) for name in ("ai_edge_litert", "tensorflow")):
        raise MissingDependency(NO_INTERPRETER)


def interpreter_class():
    """The TFLite interpreter class, and its name with its version."""
    try:
        from ai_edge_litert import interpreter as litert

        import ai_edge_litert

        return litert.Interpreter, f"LiteRT {getattr(ai_edge_litert, '__version__', '')}".strip()
    except ImportError:
        tf = _tensorflow()
        return tf.lite.Interpreter, f"tf.lite {tf.__version__}"


@dataclass(frozen=True)
class Refusal:
    """Why LiteRT cannot take a model: the phase that failed, and what LiteRT said or died of."""

    phase: str  # BUILD or ALLOCATE
    reason: str = ""  # LiteRT's message
    died_of: str = ""  # or the signal that killed it: SIGSEGV, SIGABRT

    def error(self, where: str) -> TruncatedModel:
        """The user's error, one line naming the model ``where``."""
        if self.died_of:
            return TruncatedModel(f"{where}: LiteRT cannot run this model: the interpreter died "
                                  f"({self.died_of} in {self.phase})")
        if self.phase == BUILD:
            return TruncatedModel(f"{where} is corrupt: the TFLite interpreter cannot load it ({self.reason})")
        return TruncatedModel(f"{where}: LiteRT cannot run this model: {self.reason} (in {self.phase})")


def _check_child(allocate: bool) -> None:
    """The child of :func:`litert_refusal`: the model comes on stdin; each phase is named on stdout
    before it starts; what LiteRT raises is written as ``error <line>``, exit status 1."""
    content = sys.stdin.buffer.read()
    cls, _ = interpreter_class()
    try:
        print(BUILD, flush=True)
        interpreter = cls(model_content=content, num_threads=1)
        if allocate:
            print(ALLOCATE, flush=True)
            interpreter.allocate_tensors()
    except Exception as err:  # noqa: BLE001 - whatever LiteRT raises on a model it cannot take
        print("error", one_line(err), flush=True)
        sys.exit(1)


_ANSWERS: dict[tuple[str, bool], Refusal | None] = {}  # by (sha256, allocate): a model is checked once


def litert_refusal(content: bytes, sha256: str, allocate: bool = True) -> Refusal | None:
    """Why LiteRT cannot build (and, with ``allocate``, allocate) the model ``content``; None when
    it can. A corrupt model can kill ``allocate_tensors`` by a signal (a zero point out of its
    range: SIGSEGV; a scale of 3e38: SIGABRT in XNNPACK), so both run in a child process, whose
    death becomes a :class:`Refusal` here; the answer is kept for the rest of this process.

    The child costs 0.23 to 0.29 s a model, nearly all of it a Python start and the imports: the
    small factory CNN (5.5 kB), mobilenet_v1_0.25_128_quant (0.5 MB), mobilenet_v2_1.0_224_quant
    (3.6 MB) and deeplabv3_mnv2_pascal_quant (2.2 MB) all took 0.23 to 0.29 s (2026-12-03, AMD
    EPYC, 2 cores, 3 runs each), against 2 to 11 ms for tvmq's own walk of them."""
    key = (sha256, allocate)
    if key not in _ANSWERS:
        _ANSWERS[key] = _ask_child(content, allocate)
    return _ANSWERS[key]


def _ask_child(content: bytes, allocate: bool) -> Refusal | None:
    require_interpreter()  # else the child would die of the ImportError, which is not the model's doing
    argv = [sys.executable, "-c", _CHILD, "allocate" if allocate else "build"]
    try:
        done = subprocess.run(argv, input=content, capture_output=True, timeout=ALLOCATE_TIMEOUT_S,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    except subprocess.TimeoutExpired as late:
        return Refusal(_last_phase(late.stdout) or BUILD, f"it took over {ALLOCATE_TIMEOUT_S:g} s")
    if done.returncode == 0:
        return None
    phase = _last_phase(done.stdout)
    if phase is None:  # it ended before LiteRT saw the model: not the model's doing
        raise RuntimeError(f"the LiteRT check did not start (exit status {done.returncode}): "
                           f"{one_line(done.stderr.decode('utf-8', 'replace'), pick='last')}")
    if done.returncode < 0:
        return Refusal(phase, died_of=_signal_name(-done.returncode))
    said = [ln for ln in done.stdout.decode("utf-8", "replace").splitlines() if ln.startswith("error ")]
    return Refusal(phase, said[-1].removeprefix("error ") if said else f"exit status {done.returncode}")


def _last_phase(stdout: bytes | None) -> str | None:
    lines = (stdout or b"").decode("utf-8", "replace").splitlines()
    return next((ln for ln in reversed(lines) if ln in (BUILD, ALLOCATE)), None)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Reference:
    """A TFLite interpreter over one model, running the kernel set ``kernels`` (:data:`KERNELS`).
    ``content``: other flatbuffer bytes to run instead of the model's (a cut of it)."""

    def __init__(self, loaded: LoadedModel, num_threads: int, kernels: str = "xnnpack", content: bytes | None = None):
        if kernels not in KERNELS:
            raise ValueError(f"kernels must be one of {', '.join(KERNELS)}, got {kernels!r}")
        cls, self.interpreter = interpreter_class()
        self.kernels = kernels
        self.name = f"{self.interpreter}, {KERNELS[kernels][1]}"
        self.num_threads = num_threads
        phase = BUILD
        try:  # load_model proved that this does not crash; LiteRT may still refuse with these threads
            # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.", at construction or allocation
            with native_stderr_to(os.devnull):
                self._it = cls(model_content=loaded.content if content is None else content, num_threads=num_threads,
                               experimental_op_resolver_type=_resolver(kernels))
                phase = ALLOCATE
                self._it.allocate_tensors()
        except (RuntimeError, ValueError) as err:
            raise Refusal(phase, one_line(err)).error(loaded.where) from None
        self._inputs = self._it.get_input_details()
        self._outputs = self._it.get_output_details()

    def _set(self, arrays: list[np.ndarray]) -> None:
        for detail, arr in zip(self._inputs, arrays):
            self._it.set_tensor(detail["index"], np.ascontiguousarray(arr, dtype=detail["dtype"]))

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """One inference from the model's reset state: TFLite keeps variable tensors (an LSTM's
        output and cell state) from one invoke to the next, and tvmq starts each inference afresh."""
        self._set(arrays)
        self._it.reset_all_variables()
        self._it.invoke()
        return [np.array(self._it.get_tensor(d["index"])) for d in self._outputs]

    def tensor(self, index: int) -> np.ndarray:
        """A copy of tensor ``index`` after the last ``run`` (a graph output, or any tensor of a
        model cut so that it is one)."""
        return np.array(self._it.get_tensor(index))

    @property
    def output_indices(self) -> list[int]:
        return [int(d["index"]) for d in self._outputs]

    def invoke(self) -> None:
        """One inference on the inputs the last ``run``/``benchmark`` set (nothing copied)."""
        self._it.invoke()

    def timed_call(self, arrays: list[np.ndarray]) -> Callable[[], None]:
        """One inference on ``arrays``, set as the inputs once, here: what the benchmark times
        (:func:`tvmq.stages.measure.alternate_blocks`)."""
        self._set(arrays)
        return self._it.invoke

    def benchmark(self, arrays: list[np.ndarray], repeat: int, warmup: int = 3) -> list[float]:
        """Wall-clock seconds of ``repeat`` invocations after ``warmup`` ones."""
        return time_calls(self.timed_call(arrays), repeat, warmup)


def time_calls(call: Callable[[], object], repeat: int, warmup: int = 3) -> list[float]:
    """Wall-clock seconds of ``repeat`` calls of ``call`` after ``warmup`` ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times
