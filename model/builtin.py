"""Models tvmq makes itself with TensorFlow's converter, so the tool works offline.

``builtin:mobilenet_v2_0.35_96`` (the default model) is a MobileNet V2 (width 0.35, 96×96 RGB,
16 classes) with seeded random weights and BatchNorm statistics set from a seeded batch, fully
int8-quantized (per-channel weights, uint8 input
and output) from a seeded representative dataset. It is built once and cached under
``~/.cache/tvmq/builtin`` (or ``$TVMQ_CACHE``); the same TensorFlow version gives the same bytes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tvmq.errors import ModelFileNotFound

from .loader import cache_dir

PREFIX = "builtin:"


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
    # training step would, so that the output depends on the input; then sharpen the classifier.
    batch = np.random.default_rng(1).uniform(-1.0, 1.0, size=(16, 96, 96, 3)).astype(np.float32)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.momentum = 0.0
    model(batch, training=True)
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
    path = cache_dir() / "builtin" / f"{name}.tflite"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        content = BUILTINS[name]()
        tmp = path.with_suffix(".part")
        tmp.write_bytes(content)
        os.replace(tmp, path)
    return path
