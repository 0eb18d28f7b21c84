"""Per-operator tests of the QDQ -> int8 lowering against the TFLite interpreter.

Each case builds a one-op full-integer TFLite model with the TensorFlow converter (random
shapes, weights and calibration ranges, hence random quantization parameters), runs random
integer inputs through

* TFLite's reference kernels (``OpResolverType.BUILTIN_REF``) vs our ``mode="tflite"`` -> must
  be bit-exact;
* TFLite's optimized builtin kernels (no delegate) vs our ``mode="tflite"`` -> at most 1 unit:
  on x86 TFLite compiles its NEON paths through NEON_2_SSE, and the vectorized requantization
  there (``vqrdmulhq_s32`` then ``vrshlq_s32``) rounds the second step half *up* instead of
  half away from zero, so a negative value whose first rounding lands exactly on .5 comes out
  one higher than the reference (seen on per-channel depthwise conv; the scalar tail of the
  same kernel uses the reference rounding);
* TFLite with its default XNNPACK delegate vs our ``mode="xnnpack"`` -> at most 1 unit
  (XNNPACK's requantization is float32 with round-half-even; we mirror it, but XNNPACK's
  per-kernel details -- e.g. ops it does not take, float32 scale rounding -- can still move
  a value that sits on a rounding boundary by one unit).

Exact-match share and max abs difference are printed (run with ``-s``) and summarized at the end.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._int8_helpers import compare, convert, import_tflite, op_names, random_inputs, run_tflite, run_tvm

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

RESULTS = {}


def _conv(rng, io="int8"):
    h = int(rng.integers(6, 14))
    c = int(rng.integers(2, 9))
    inp = tf.keras.Input((h, h + 1, c), batch_size=1)
    layer = tf.keras.layers.Conv2D(int(rng.integers(3, 17)), int(rng.choice([1, 3])), strides=int(rng.choice([1, 2])),
                                   padding=str(rng.choice(["same", "valid"])), activation="relu6",
                                   kernel_initializer=tf.keras.initializers.RandomNormal(stddev=float(rng.uniform(0.1, 1))),
                                   bias_initializer=tf.keras.initializers.RandomNormal(stddev=0.5))
    return tf.keras.Model(inp, layer(inp)), [(-float(rng.uniform(0.5, 3)), float(rng.uniform(0.5, 3)))], io


def _dwconv(rng):
    h = int(rng.integers(6, 14))
    c = int(rng.integers(2, 9))
    inp = tf.keras.Input((h, h, c), batch_size=1)
    layer = tf.keras.layers.DepthwiseConv2D(3, strides=int(rng.choice([1, 2])), padding="same",
                                            depth_multiplier=int(rng.choice([1, 2])),
                                            depthwise_initializer=tf.keras.initializers.RandomNormal(stddev=1.0),
                                            bias_initializer=tf.keras.initializers.RandomNormal(stddev=0.5))
    return tf.keras.Model(inp, layer(inp)), [(-2.0, float(rng.uniform(1, 4)))], "int8"


def _dense(rng):
    k = int(rng.integers(8, 65))
    inp = tf.keras.Input((k,), batch_size=1)
    layer = tf.keras.layers.Dense(int(rng.integers(4, 33)), activation="relu",
                                  kernel_initializer=tf.keras.initializers.RandomNormal(stddev=0.3),
                                  bias_initializer=tf.keras.initializers.RandomNormal(stddev=0.5))
    return tf.keras.Model(inp, layer(inp)), [(-1.0, float(rng.uniform(1, 3)))], "int8"


def _add(rng):
    shape = (int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.integers(2, 9)))
    a = tf.keras.Input(shape, batch_size=1)
    b = tf.keras.Input(shape, batch_size=1)
    y = tf.keras.layers.ReLU()(tf.keras.layers.Add()([a, b]))
    return tf.keras.Model([a, b], y), [(-1.0, float(rng.uniform(0.5, 2))), (-float(rng.uniform(2, 8)), 4.0)], "int8"


def _avgpool(rng):
    h = int(rng.integers(6, 14))
    inp = tf.keras.Input((h, h + 2, int(rng.integers(2, 9))), batch_size=1)
    y = tf.keras.layers.AveragePooling2D(3, strides=2, padding="same")(inp)
    return tf.keras.Model(inp, y), [(-1.0, 3.0)], "int8"


def _mean(rng):
    h = int(rng.integers(3, 10))
    inp = tf.keras.Input((h, h, int(rng.integers(64, 257))), batch_size=1)
    y = tf.keras.layers.GlobalAveragePooling2D(keepdims=True)(inp)
    return tf.keras.Model(inp, y), [(-1.0, 2.0)], "int8"


def _concat(rng):
    h = int(rng.integers(3, 9))
    a = tf.keras.Input((h, h, int(rng.integers(2, 6))), batch_size=1)
    b = tf.keras.Input((h, h, int(rng.integers(2, 6))), batch_size=1)
    y = tf.keras.layers.Concatenate(axis=-1)([a, b])
    return tf.keras.Model([a, b], y), [(-1.0, 1.0), (-3.0, 5.0)], "int8"


CASES = {
    "conv2d_s0": (lambda r: _conv(r), 0, "conv2d"),
    "conv2d_s1": (lambda r: _conv(r), 1, "conv2d"),
    "conv2d_uint8io": (lambda r: _conv(r, "uint8"), 2, "conv2d"),
    "depthwise_s0": (_dwconv, 3, "depthwise_conv2d"),
    "depthwise_s1": (_dwconv, 4, "depthwise_conv2d"),
    "dense": (_dense, 5, "dense"),
    "add": (_add, 6, "add"),
    "avg_pool2d": (_avgpool, 7, "avg_pool2d"),
    "mean": (_mean, 8, "mean"),
    "concat": (_concat, 9, "concat"),
}


@pytest.fixture(scope="module")
def models():
    out = {}
    for name, (build, seed, _) in CASES.items():
        tf.keras.utils.set_random_seed(seed)
        model, ranges, io = build(np.random.default_rng(seed))
        out[name] = convert(model, ranges, io_dtype=io, seed=seed)
    yield out
    print("\n\nint8 lowering vs TFLite (exact share, max abs diff):")
    for k, v in RESULTS.items():
        print(f"  {k:28s} {v}")


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", ["tflite", "xnnpack"])
def test_int8_op(models, name, mode):
    from tvmq.int8 import lower_qdq_to_int8

    buf = models[name]
    kind = CASES[name][2]
    mod = import_tflite(buf)
    lowering = lower_qdq_to_int8(mod, mode=mode)
    low = lowering.mod
    stats = lowering.stats.to_dict()
    assert stats.get(kind, {}).get("lowered", 0) >= 1, (op_names(buf), stats)
    assert all(v["qdq"] == 0 for k, v in stats.items() if k != "remaining"), stats
    # no float weights: nothing dequantizes a constant any more, and all Q/DQ are gone
    assert not stats["remaining"], stats["remaining"]
    inputs = random_inputs(buf, seed=CASES[name][1] + 100)
    ours = run_tvm(low, inputs)
    refs = ["reference", "optimized"] if mode == "tflite" else ["xnnpack"]
    for kernels in refs:
        ref = run_tflite(buf, inputs, kernels=kernels)
        share, maxd = compare(ours, ref)
        key = f"{name}[{mode} vs {kernels}]"
        RESULTS[key] = f"exact {share:.4f}  max|d| {maxd}  n={ref.size}  ops {op_names(buf)}"
        print(f"{key}: exact share {share:.4f}, max abs diff {maxd}")
        if kernels == "reference":
            assert maxd == 0, f"not bit-exact vs reference kernels: share {share}, max diff {maxd}"
        else:
            assert maxd <= 1, f"{kernels}: share {share}, max diff {maxd}"
