"""Models tvmq makes itself with TensorFlow's converter, so the tool works offline.

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

It is built once and cached under ``~/.cache/tvmq/builtin`` (or ``$TVMQ_CACHE``), in a folder
named after ``VERSION``; the same TensorFlow version gives the same bytes.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np

from tvmq.errors import ModelFileNotFound

from .loader import cache_dir

PREFIX = "builtin:"
VERSION = 2  # bump when a built-in model's recipe changes, so that stale caches are not used
RESIDUAL_SCALE = 0.5


def quantize_keras(model, input_shape, *, io_dtype: str = "uint8", per_tensor: bool = False,
                   samples: int = 8, seed: int = 0, low: float = -1.0, high: float = 1.0) -> bytes:
    """Fully integer-quantize a Keras model with TFLiteConverter (``io_dtype``: uint8/int8/float32)."""
    import tensorflow as tf

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
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

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


BUILTINS = {
    "mobilenet_v2_0.35_96": _mobilenet_v2_tiny,
}
DEFAULT = PREFIX + "mobilenet_v2_0.35_96"


def is_builtin(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def builtin_model_path(spec: str = DEFAULT) -> Path:
    """Path of the cached built-in model, building it first if needed."""
    name = spec[len(PREFIX):] if is_builtin(spec) else spec
    if name not in BUILTINS:
        known = ", ".join(PREFIX + k for k in BUILTINS)
        raise ModelFileNotFound(f"unknown built-in model {spec!r}; known: {known}")
    path = cache_dir() / "builtin" / f"v{VERSION}" / f"{name}.tflite"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.redirect_stdout(io.StringIO()):  # Keras' export prints every tensor it captures
            content = BUILTINS[name]()
        tmp = path.with_suffix(".part")
        tmp.write_bytes(content)
        os.replace(tmp, path)
    return path
