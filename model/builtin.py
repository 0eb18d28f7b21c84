"""The models tvmq ships, so that it works offline and without TensorFlow.

``builtin:mobilenet_v2_0.35_96`` (the default model) is a MobileNet V2 (width 0.35, 96×96 RGB,
16 classes) with seeded random weights, fully int8-quantized (per-channel weights, uint8 input
and output) from a seeded representative dataset. Its predictions mean nothing; it exists so that
the whole pipeline (tasks, tuning, build, verification, report) runs without a download.

A random network has to be conditioned to be a fair verification target. With BatchNorm's
statistics set from one seeded batch (every channel centred and scaled to unit variance, so the
signal survives 50 layers) the network is chaotic: the one-unit rounding differences between
TFLite's own kernels grow layer by layer. TFLite's reference kernels and XNNPACK then agreed on
25% of its outputs on the default input (max difference 19 units, a different top-5), and on the
top-5 of 2 of 32 random inputs. Multiplying the gamma of every block's projection BatchNorm by
``RESIDUAL_SCALE`` (residual branches start small, as zero-initialised ones do in training)
makes it stable: the two TFLite implementations differ by at most one unit and agree on the top-5
(``tests/test_builtin_model.py`` holds it to that). The price: its top-5 hardly depends on the
input (random weights cannot tell random inputs apart without amplifying noise).

The model is package data (``model/data/NAME.tflite``), made once by its recipe here with
TensorFlow's converter (:func:`rebuild`, which needs the ``convert`` extra); loading it checks the
sha256 recorded in :data:`BUILTINS`. The recipe's bytes depend on TensorFlow's version and on its
oneDNN switch (``TF_ENABLE_ONEDNN_OPTS``, which :func:`rebuild` turns off: on, 14 of the 177
buffers differed, TensorFlow 2.21.0, 2026-12-03, AMD EPYC); ``tests/test_builtin_model.py`` rebuilds it and checks the bytes under the
TensorFlow version that made them, and the graph (operators, tensors, quantization types) under
any other.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import MissingDependency, ModelFileNotFound, TruncatedModel

PREFIX = "builtin:"
DATA_DIR = Path(__file__).resolve().parent / "data"
RESIDUAL_SCALE = 0.5
CONVERT_EXTRA = "pip install 'tvmq[convert]'"


def _tensorflow():
    """TensorFlow, or a clear :class:`MissingDependency` naming the extra to install."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow as tf
    except ImportError:
        raise MissingDependency("building a model with TensorFlow's converter needs TensorFlow, which tvmq does "
                                f"not install by default: {CONVERT_EXTRA}") from None
    return tf


def quantize_keras(model, input_shape, *, io_dtype: str = "uint8", per_tensor: bool = False,
                   samples: int = 8, seed: int = 0, low: float = -1.0, high: float = 1.0) -> bytes:
    """Fully integer-quantize a Keras model with TFLiteConverter (``io_dtype``: uint8/int8/float32)."""
    tf = _tensorflow()

    def representative():
        rng = np.random.default_rng(seed)
        for _ in range(samples):
            yield [rng.uniform(low, high, size=(1, *input_shape)).astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_dtype != "float32":
        converter.inference_input_type = getattr(tf, io_dtype)
        converter.inference_output_type = getattr(tf, io_dtype)
    if per_tensor:
        converter._experimental_disable_per_channel = True  # pylint: disable=protected-access
    return converter.convert()


def _mobilenet_v2_tiny() -> bytes:
    tf = _tensorflow()

    tf.keras.utils.set_random_seed(0)
    model = tf.keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), alpha=0.35, weights=None, classes=16
    )
    # Random weights with BatchNorm's initial statistics shrink the signal to ~1e-11 by the last
    # layer (every class ties). Set each BatchNorm's statistics from one seeded batch, as a
    # training step would; then damp the residual branches (see the module docstring) and
    # sharpen the classifier.
    batch = np.random.default_rng(1).uniform(-1.0, 1.0, size=(16, 96, 96, 3)).astype(np.float32)
    norms = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.BatchNormalization)]
    for layer in norms:
        layer.momentum = 0.0
    model(batch, training=True)
    for layer in norms:
        if layer.name.endswith("project_BN"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([gamma * RESIDUAL_SCALE, beta, mean, var])
    head = model.layers[-1]
    kernel, bias = head.get_weights()
    head.set_weights([kernel * 3.0, bias])
    return quantize_keras(model, (96, 96, 3), io_dtype="uint8", samples=16, seed=0)


@dataclass(frozen=True)
class Builtin:
    """A shipped model: the recipe that made it, the sha256 of the shipped bytes, and the
    TensorFlow version whose converter wrote them."""

    name: str
    recipe: Callable[[], bytes]
    sha256: str
    tensorflow: str

    @property
    def path(self) -> Path:
        return DATA_DIR / f"{self.name}.tflite"


BUILTINS = {b.name: b for b in (
    Builtin("mobilenet_v2_0.35_96", _mobilenet_v2_tiny,
            "146e694bcd181b03a2d17dd453217868da6a0f1eca6d68bd9e9e912f5cd56ff9", "2.21.0"),
)}
DEFAULT = PREFIX + "mobilenet_v2_0.35_96"
_CHECKED: set[Path] = set()  # shipped files whose sha256 this process has checked


def is_builtin(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def builtin(spec: str = DEFAULT) -> Builtin:
    """The shipped model ``spec`` names (``builtin:NAME`` or ``NAME``)."""
    name = spec[len(PREFIX):] if is_builtin(spec) else spec
    if name not in BUILTINS:
        known = ", ".join(PREFIX + k for k in BUILTINS)
        raise ModelFileNotFound(f"unknown built-in model {spec!r}; known: {known}")
    return BUILTINS[name]


def builtin_model_path(spec: str = DEFAULT) -> Path:
    """Path of the shipped model ``spec``, its sha256 checked (once a process)."""
    model = builtin(spec)
    path = model.path
    if path not in _CHECKED:
        try:
            content = path.read_bytes()
        except OSError as err:
            raise ModelFileNotFound(f"the built-in model {PREFIX}{model.name} is missing from this installation "
                                    f"({path}: {err.strerror or err}); reinstall tvmq") from None
        digest = hashlib.sha256(content).hexdigest()
        if digest != model.sha256:
            raise TruncatedModel(f"the built-in model {PREFIX}{model.name} is damaged: {path} has sha256 "
                                 f"{digest[:16]}…, not {model.sha256[:16]}…; reinstall tvmq")
        _CHECKED.add(path)
    return path


def rebuild(spec: str = DEFAULT) -> bytes:
    """Make the model ``spec`` again from its recipe (needs TensorFlow: the ``convert`` extra). The
    bytes equal the shipped ones under the same TensorFlow version, in a process that had not
    imported TensorFlow before with oneDNN on (see the module docstring)."""
    model = builtin(spec)
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # read when TensorFlow is imported
    with contextlib.redirect_stdout(io.StringIO()):  # Keras' export prints every tensor it captures
        return model.recipe()
