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


def _full_integer(fn, shapes) -> bytes:
    """A ``tf.function`` on float inputs of ``shapes`` (batch first) converted to a full-integer model
    with int8 I/O, calibrated on uniform values in [-1, 1]."""
    from tests._int8_helpers import convert_function

    return convert_function(fn, [s[1:] for s in shapes], [(-1.0, 1.0)] * len(shapes), seed=7, n_rep=8)


def _filters(*shape, seed=0):
    return np.random.default_rng(seed).normal(0, 0.5, shape).astype(np.float32)


def with_gather_nd() -> bytes:
    """A fully quantized model whose only operator is a GATHER_ND, which TVM 0.27's frontend cannot
    import quantized: nothing is left for TVM, so tvmq refuses it."""
    tf = _tf()
    return _full_integer(lambda x: tf.gather_nd(x, [[0, 1], [0, 3]]), [(1, 4, 5, 3)])


def conv_gather_nd_conv() -> bytes:
    """conv → GATHER_ND → reshape → a wider conv, fully quantized: partitioned, TFLite runs the first
    conv and the GATHER_ND, TVM the rest (the most MACs)."""
    tf = _tf()
    w1, w2 = _filters(3, 3, 3, 4), _filters(3, 3, 4, 32, seed=1)

    def fn(x):
        y = tf.nn.relu(tf.nn.conv2d(x, w1, 1, "SAME"))
        g = tf.reshape(tf.gather_nd(y, [[0, 1], [0, 3], [0, 0]]), (1, 3, 8, 4))
        return tf.nn.conv2d(g, w2, 1, "SAME")

    return _full_integer(fn, [(1, 6, 8, 3)])


def with_custom_op() -> bytes:
    """A float model holding a custom operator (Cumprod) converted with allow_custom_ops."""
    tf = _tf()
    fn = tf.function(lambda x: tf.math.cumprod(x, axis=1),
                     input_signature=[tf.TensorSpec([1, 8], tf.float32)]).get_concrete_function()
    c = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    c.allow_custom_ops = True
    return c.convert()


def as_custom(content: bytes, builtin: str, custom: str = "TvmqNoKernel") -> bytes:
    """``content`` with every ``builtin`` operator turned into the custom operator ``custom``
    (which no interpreter has): the converter cannot calibrate a model holding one itself."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(bytearray(content), 0)
    code = getattr(schema.BuiltinOperator, builtin)
    for oc in model.operatorCodes:
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == code:
            oc.builtinCode = oc.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
            oc.customCode = custom.encode()
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def conv_then_custom() -> bytes:
    """A quantized conv whose output is a graph output and feeds a custom operator no interpreter
    has (a TANH made custom): TVM computes the conv; the custom operator's output is not computed."""
    tf = _tf()
    w = _filters(3, 3, 3, 4)

    def fn(x):
        y = tf.nn.conv2d(x, w, 1, "SAME")
        return y, tf.math.tanh(y)

    return as_custom(_full_integer(fn, [(1, 6, 6, 3)]), "TANH")


def custom_then_conv() -> bytes:
    """A custom operator no interpreter has (a TANH made custom) before a quantized conv: TVM could
    take the conv, but what feeds it runs nowhere, so tvmq refuses the model."""
    tf = _tf()
    w = _filters(3, 3, 3, 4)
    return as_custom(_full_integer(lambda x: tf.nn.conv2d(tf.math.tanh(x), w, 1, "SAME"), [(1, 6, 6, 3)]), "TANH")


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
