"""Small int8 models of whole architectures, with seeded random weights, for ``tests/test_architectures.py``.

Each builder returns a Keras model (``keras.applications`` with ``weights=None`` and a small input,
or a small hand-made U-Net and transformer encoder block); :func:`quantized` conditions and
full-integer quantizes it with :func:`tvmq.model.builtin.quantize_keras`.

Conditioning: a random network with BatchNorm's initial statistics (mean 0, variance 1) shrinks or
blows up its signal layer by layer, and its quantized outputs collapse to one value, which would
verify nothing. As for the built-in model (:mod:`tvmq.model.builtin`), each BatchNorm's statistics
are set from one seeded batch, as one training step with momentum 0 would set them.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # the same bytes on every x86 host

CLASSES = 16


@dataclass(frozen=True)
class Architecture:
    """One model to build: its Keras builder, input shape (no batch) and the I/O type of the int8 model."""

    name: str
    build: Callable[[], object]
    input_shape: tuple[int, ...]
    io_dtype: str = "int8"


def _keras():
    import tensorflow as tf

    return tf.keras


def _input(shape: tuple[int, ...], batch: int | None):
    """A Keras input; ``batch`` 1 gives the converter a static batch (``None``: Keras's default, a
    dynamic batch, which makes the converter compute reshapes at run time: SHAPE, STRIDED_SLICE, PACK)."""
    return _keras().Input(shape, batch_size=batch)


def mobilenet_v3_small(batch: int | None = 1, minimalistic: bool = False):
    return _keras().applications.MobileNetV3Small(input_tensor=_input((96, 96, 3), batch), alpha=0.75,
                                                  minimalistic=minimalistic, weights=None, classes=CLASSES,
                                                  include_preprocessing=False)


def mobilenet_v3_large(batch: int | None = 1):
    return _keras().applications.MobileNetV3Large(input_tensor=_input((96, 96, 3), batch), alpha=0.75,
                                                  weights=None, classes=CLASSES, include_preprocessing=False)


def efficientnet_b0(batch: int | None = 1):
    return _keras().applications.EfficientNetB0(input_tensor=_input((64, 64, 3), batch), weights=None,
                                                classes=CLASSES)


def resnet50(batch: int | None = 1):
    return _keras().applications.ResNet50(input_tensor=_input((32, 32, 3), batch), weights=None, classes=CLASSES)


def unet(size: int = 32, classes: int = 4, transpose_conv: bool = True):
    """Conv blocks, strided-conv downsampling, up by Conv2DTranspose (TRANSPOSE_CONV) and by bilinear
    UpSampling2D (RESIZE_BILINEAR), skip connections by Concatenate, a 1x1 conv to the classes."""
    k = _keras()
    L = k.layers

    def block(x, filters):
        x = L.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = L.BatchNormalization()(x)
        return L.ReLU()(x)

    inp = k.Input((size, size, 3), batch_size=1)  # a static batch: TRANSPOSE_CONV gets a constant output shape
    s1 = block(inp, 8)                                                   # size
    d1 = L.Conv2D(16, 3, strides=2, padding="same", activation="relu")(s1)  # size/2
    s2 = block(d1, 16)
    d2 = L.Conv2D(32, 3, strides=2, padding="same", activation="relu")(s2)  # size/4
    b = block(d2, 32)
    if transpose_conv:
        u2 = L.Conv2DTranspose(16, 3, strides=2, padding="same", activation="relu")(b)  # size/2
    else:
        u2 = L.Conv2D(16, 1, activation="relu")(L.UpSampling2D(2, interpolation="bilinear")(b))
    x = block(L.Concatenate()([u2, s2]), 16)
    u1 = L.UpSampling2D(2, interpolation="bilinear")(x)                 # size
    x = block(L.Concatenate()([u1, s1]), 8)
    out = L.Conv2D(classes, 1)(x)
    return k.Model(inp, out, name="unet")


def transformer_block(seq: int = 16, dim: int = 32, heads: int = 2):
    """One encoder block: Dense Q/K/V projections, scaled dot-product attention by explicit matrix
    products (BATCH_MATMUL), softmax, LayerNormalization, residual adds and a Dense feed-forward."""
    import tensorflow as tf

    k = _keras()
    L = k.layers
    head = dim // heads

    class Attention(L.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.q, self.k, self.v, self.o = (L.Dense(dim, name=n) for n in ("q", "k", "v", "o"))

        def call(self, x):
            def split(t):  # (1, seq, dim) -> (1, heads, seq, head)
                return tf.transpose(tf.reshape(t, (1, seq, heads, head)), (0, 2, 1, 3))

            q, k_, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            scores = tf.matmul(q, k_, transpose_b=True) * (1.0 / np.sqrt(head))
            weights = tf.nn.softmax(scores, axis=-1)
            ctx = tf.transpose(tf.matmul(weights, v), (0, 2, 1, 3))
            return self.o(tf.reshape(ctx, (1, seq, dim)))

    inp = k.Input((seq, dim), batch_size=1)
    x = L.LayerNormalization()(inp + Attention()(inp))
    ff = L.Dense(dim)(L.Dense(2 * dim, activation="relu")(x))
    out = L.LayerNormalization()(x + ff)
    return k.Model(inp, out, name="transformer_block")


ARCHITECTURES = {a.name: a for a in (
    Architecture("mobilenet_v3_small", mobilenet_v3_small, (96, 96, 3), "uint8"),
    Architecture("mobilenet_v3_small_minimalistic_dynamic_batch",
                 functools.partial(mobilenet_v3_small, batch=None, minimalistic=True), (96, 96, 3), "int8"),
    Architecture("mobilenet_v3_large", mobilenet_v3_large, (96, 96, 3), "int8"),
    Architecture("efficientnet_b0", efficientnet_b0, (64, 64, 3), "int8"),
    Architecture("efficientnet_b0_dynamic_batch", functools.partial(efficientnet_b0, batch=None), (64, 64, 3), "int8"),
    Architecture("resnet50", resnet50, (32, 32, 3), "uint8"),
    Architecture("unet", unet, (32, 32, 3), "int8"),
    Architecture("unet_bilinear", functools.partial(unet, transpose_conv=False), (32, 32, 3), "uint8"),
    Architecture("transformer_block", transformer_block, (16, 32), "int8"),
)}


def condition_batchnorm(model, input_shape: tuple[int, ...], seed: int = 1, batch: int = 8) -> None:
    """Each BatchNorm's moving statistics from one seeded batch (momentum 0), so that the random
    network keeps its signal alive to the last layer."""
    k = _keras()
    norms = [layer for layer in model.layers if isinstance(layer, k.layers.BatchNormalization)]
    if not norms:
        return
    for layer in norms:
        layer.momentum = 0.0
    x = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(batch, *input_shape)).astype(np.float32)
    model(x, training=True)


def quantized(arch: Architecture, seed: int = 0) -> bytes:
    """The architecture's full-integer TFLite flatbuffer (per-channel weights, ``arch.io_dtype`` I/O)."""
    from tvmq.model.builtin import quantize_keras

    _keras().backend.clear_session()  # the same weights and names whatever the process built before
    _keras().utils.set_random_seed(seed)
    model = arch.build()
    condition_batchnorm(model, arch.input_shape)
    return quantize_keras(model, arch.input_shape, io_dtype=arch.io_dtype, samples=8, seed=seed)


def operator_counts(content: bytes) -> dict[str, int]:
    """How many of each operator the flatbuffer's graph holds (names as :func:`tvmq.model.cut.read_graph` gives)."""
    from collections import Counter

    from tvmq.model.cut import read_graph

    return dict(Counter(op.name for op in read_graph(content).operators))
