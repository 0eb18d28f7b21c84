"""Small TFLite models the tests make themselves with TensorFlow's converter.

Each builder returns the flatbuffer bytes; ``write`` caches them under a pytest temp folder.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def _tf():
    import tensorflow as tf

    return tf


def small_cnn(classes: int = 10, size: int = 32):
    """conv → depthwise conv → add (residual) → pool → dense → softmax, seeded."""
    tf = _tf()
    tf.keras.utils.set_random_seed(1)
    inp = tf.keras.Input((size, size, 3))
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(inp)
    y = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = tf.keras.layers.Add()([x, y])
    x = tf.keras.layers.Conv2D(16, 1, activation="relu")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    x = tf.keras.layers.Dense(classes)(x)
    out = tf.keras.layers.Softmax()(x)
    model = tf.keras.Model(inp, out)
    head = model.layers[-2]
    k, b = head.get_weights()
    head.set_weights([k * 6.0, b])
    return model


def quantized(model, io_dtype: str = "uint8", per_tensor: bool = False) -> bytes:
    from tvmq.model.builtin import quantize_keras

    shape = tuple(model.input_shape[1:])
    return quantize_keras(model, shape, io_dtype=io_dtype, per_tensor=per_tensor, samples=8, seed=3)


def float_model(model) -> bytes:
    tf = _tf()
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def dynamic_range() -> bytes:
    """int8 weights, float activations (TF leaves weights under 1024 elements float: use 64×64)."""
    tf = _tf()
    tf.keras.utils.set_random_seed(5)
    inp = tf.keras.Input((64,))
    x = tf.keras.layers.Dense(64, activation="relu")(inp)
    model = tf.keras.Model(inp, tf.keras.layers.Dense(10)(x))
    c = tf.lite.TFLiteConverter.from_keras_model(model)
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    return c.convert()


def with_transpose() -> bytes:
    """A fully quantized model with a TRANSPOSE, which TVM's frontend cannot take quantized."""
    tf = _tf()
    tf.keras.utils.set_random_seed(2)
    inp = tf.keras.Input((8, 8, 3))
    x = tf.keras.layers.Conv2D(4, 3, padding="same")(inp)
    x = tf.keras.layers.Permute((2, 1, 3))(x)
    return quantized(tf.keras.Model(inp, x), io_dtype="int8")


def with_custom_op() -> bytes:
    """A float model holding a custom operator (Cumprod) converted with allow_custom_ops."""
    tf = _tf()
    fn = tf.function(lambda x: tf.math.cumprod(x, axis=1),
                     input_signature=[tf.TensorSpec([1, 8], tf.float32)]).get_concrete_function()
    c = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    c.allow_custom_ops = True
    return c.convert()


def segmentation_like() -> bytes:
    """A quantized model with a non-classification output (a 2-channel map) and two outputs."""
    tf = _tf()
    tf.keras.utils.set_random_seed(4)
    inp = tf.keras.Input((16, 16, 3))
    x = tf.keras.layers.Conv2D(6, 3, padding="same", activation="relu")(inp)
    seg = tf.keras.layers.Conv2D(2, 1)(x)
    pooled = tf.keras.layers.GlobalAveragePooling2D()(x)
    return quantized(tf.keras.Model(inp, [seg, pooled]), io_dtype="int8")


def image_input_array(shape, dtype) -> np.ndarray:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
