"""One-op uint8 per-tensor TFLite models made the way TensorFlow 1 made them (the legacy path).

A ``tf.compat.v1`` graph with fake-quant ops (``tf.quantization.fake_quant_with_min_max_vars``)
on every input, weight and output, converted with
``tf.compat.v1.lite.TFLiteConverter.from_session`` and ``inference_type = tf.uint8`` plus
``quantized_input_stats``: uint8 activations *and* uint8 asymmetric weights, one scale and zero
point per tensor, nonzero zero points, int32 biases at ``s_in * s_w``. This is the quantization
of the TF1 model zoo (MobileNet V1/V2 ``*_quant.tflite``), which the TF2 converter (per-channel
int8, symmetric weights) no longer writes.

What works with TensorFlow 2.21: ``from_session`` with the (MLIR) converter. The old converter
(TOCO) is gone from the wheel: ``experimental_new_converter = False`` only logs a deprecation
warning and switches grappler's constant folding on; the flatbuffer comes out the same. No
``default_ranges_stats`` is needed when every tensor has a fake-quant range. A flatten before a
dense layer comes out as RESHAPE + FULLY_CONNECTED (the converter writes no FULLY_CONNECTED that
flattens a 4-D input itself); a matmul of a 3-D or 4-D activation by a constant comes out as one
FULLY_CONNECTED with ``keep_num_dims``.

Input quantizations are drawn from the seed as (scale, zero point) pairs whose input stats
``(mean, std) = (zp, 1 / scale)`` and fake-quant range give the converter the same double range
(:func:`_quant`). Weights are random normal with a fake-quant range slightly off their own
min/max (asymmetric: varied, nonzero weight zero points, some weights clipped). Output ranges
come from the float graph run on the inputs' ranges, widened or narrowed at random.

Each builder takes a seed and returns the flatbuffer bytes; :data:`CASES` lists the cases the
tests use with the TFLite operator each must hold; :func:`check` verifies a model (the
operators, uint8 per-tensor tensors, uint8 weights with a nonzero zero point).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from dataclasses import dataclass  # noqa: E402
from typing import Callable, Dict, List, Optional, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402

Range = Tuple[float, float]


def _tf():
    import tensorflow as tf

    return tf


def _quant(rng, s_lo=0.004, s_hi=0.04) -> Tuple[float, int]:
    """A random input quantization (scale, zero point), zero point away from 0 and 255, that the
    converter reads back identically from the input stats and from the fake-quant range.

    The converter turns ``quantized_input_stats`` (float32 ``mean``, ``std``) into the range
    ``[(0 - mean) / std, (255 - mean) / std]`` in double, the fake-quant op into its float32
    ``min``/``max``; where the two differ in the last bit of the double it keeps a uint8 -> uint8
    QUANTIZE (a requantize with equal float32 parameters) after the input (seen before a RESHAPE).
    Both agree exactly for ``std = m * 2**e`` with ``m`` a divisor of 255 and the zero point a
    multiple of ``m``: ``scale = 1 / (m * 2**e)`` (a non-dyadic scale for ``m > 1``, so
    ``s_in * s_w`` still rounds in float32; ``m = 1``, ``zp = 128`` is the TF1 image input)."""
    stds = [(m, m * 2.0**e) for m in (1, 3, 5, 15, 17, 51, 85) for e in range(-2, 9)
            if s_lo <= 1.0 / (m * 2.0**e) <= s_hi]
    m, std = stds[int(rng.integers(len(stds)))]
    zps = [zp for zp in range(m, 255, m) if 20 <= zp <= 235]
    return 1.0 / std, zps[int(rng.integers(len(zps)))]


def _range(scale: float, zp: int) -> Range:
    """The fake-quant range of the quantization (scale, zp): ``(0 - zp) / std``,
    ``(255 - zp) / std`` as the converter computes it from the input stats (exact for
    :func:`_quant`'s scales, any other range nudges to about the same quantization)."""
    std = float(np.float32(1.0 / scale))
    return (0.0 - zp) / std, (255.0 - zp) / std


def _stats(scale: float, zp: int) -> Tuple[float, float]:
    """``quantized_input_stats`` ``(mean, std)`` of (scale, zp)."""
    return float(zp), float(np.float32(1.0 / scale))


def _weight_range(rng, w: np.ndarray) -> Range:
    """An asymmetric range around the weights (both ends a bit off, so some weights clip)."""
    lo, hi = float(w.min()), float(w.max())
    lo = min(lo * rng.uniform(0.7, 1.2), -1e-3)
    hi = max(hi * rng.uniform(0.7, 1.2), 1e-3)
    return lo, hi


def _out_range(y: np.ndarray, rng) -> Range:
    """A range over float outputs ``y``, ends scaled by 0.8..1.2, zero inside."""
    lo, hi = min(float(y.min()), 0.0), max(float(y.max()), 0.0)
    span = hi - lo or 1.0
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    return lo * rng.uniform(0.8, 1.2), hi * rng.uniform(0.8, 1.2)


def convert_v1(body: Callable, input_shapes: Sequence[Tuple[int, ...]], input_quant: Sequence[Tuple[float, int]],
               out_range: Callable[[np.ndarray], Range] | Range, new_converter: bool = True) -> bytes:
    """Build a TF1 graph ``fq(body(fq(x_0), fq(x_1), ...), out_range)`` and convert it the legacy
    uint8 way. ``body`` receives the fake-quantized inputs and ``fq=`` the fake-quant op (for its
    weights); it is called twice, so it must draw nothing random itself. ``out_range`` is a range,
    or a function of the float output (the graph is first run without the output fake-quant on
    uniform inputs over the input ranges). ``new_converter=False`` asks for TOCO, which
    TensorFlow 2.21 no longer has (same flatbuffer, a deprecation warning)."""
    tf = _tf()
    tf1 = tf.compat.v1
    fq = tf.quantization.fake_quant_with_min_max_vars
    ranges = [_range(s, z) for s, z in input_quant]

    def graph(out_fq: Optional[Range]):
        g = tf.Graph()
        with g.as_default():
            xs = [tf1.placeholder(tf.float32, s, name=f"x{i}") for i, s in enumerate(input_shapes)]
            y = body(*[fq(x, lo, hi) for x, (lo, hi) in zip(xs, ranges)], fq=fq)
            if out_fq is not None:
                y = fq(y, out_fq[0], out_fq[1], name="y")
        return g, xs, y

    if callable(out_range):
        g, xs, y = graph(None)
        rng = np.random.default_rng(0)
        feed = {x: rng.uniform(lo, hi, size=s).astype(np.float32) for x, s, (lo, hi) in zip(xs, input_shapes, ranges)}
        with tf1.Session(graph=g) as sess:
            out_range = out_range(sess.run(y, feed))
    g, xs, y = graph(tuple(float(v) for v in out_range))
    with tf1.Session(graph=g) as sess:
        conv = tf1.lite.TFLiteConverter.from_session(sess, xs, [y])
        conv.inference_type = tf.uint8
        conv.quantized_input_stats = {f"x{i}": _stats(*q) for i, q in enumerate(input_quant)}
        conv.experimental_new_converter = new_converter
        return conv.convert()


def _normal(rng, shape, std) -> np.ndarray:
    return rng.normal(0.0, std, size=shape).astype(np.float32)


def _fq_const(tf, fq, w: np.ndarray, w_range: Range):
    return fq(tf.constant(w), w_range[0], w_range[1])


def _act(tf, y, act: str):
    return {"relu6": tf.nn.relu6, "relu": tf.nn.relu, "none": lambda v: v}[act](y)


def _act_range(act: str, rng, widen: float = 1.0) -> Callable[[np.ndarray], Range]:
    """The output range of a layer with activation ``act``; ``widen`` scales a computed one (a
    smaller multiplier, a wider span of accumulators that land inside the uint8 range)."""
    if act == "relu6":
        # TF1 QAT's relu6 range, or (some of the time) a wider one, so the fused clamp is not the
        # whole uint8 range
        return lambda y: ((0.0, 6.0) if rng.uniform() < 0.5
                          else (-float(rng.uniform(0.5, 2)), float(rng.uniform(6.5, 9))))
    return lambda y: tuple(v * widen for v in _out_range(y, rng))


def conv2d(seed: int, k: int = 3, stride: int = 1, padding: str = "SAME", act: str = "none",
           channels: Optional[int] = None, out_widen: float = 1.0) -> bytes:
    """CONV_2D, ``k``×``k``, random shape (H ≠ W), channels (or ``channels``), weights and ranges."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    h, c, oc = int(rng.integers(6, 13)), int(rng.integers(2, 9)), int(rng.integers(3, 17))
    c = channels or c
    shape = (1, h, h + int(rng.integers(1, 4)), c)
    w = _normal(rng, (k, k, c, oc), float(rng.uniform(0.1, 1.0)))
    b = _normal(rng, (oc,), 0.5)
    w_range = _weight_range(rng, w)

    def body(x, fq):
        y = tf.nn.conv2d(x, _fq_const(tf, fq, w, w_range), strides=stride, padding=padding) + tf.constant(b)
        return _act(tf, y, act)

    return convert_v1(body, [shape], [_quant(rng)], _act_range(act, rng, out_widen))


def depthwise(seed: int, multiplier: int = 1, stride: int = 1, padding: str = "SAME", act: str = "none",
              out_widen: float = 1.0) -> bytes:
    """DEPTHWISE_CONV_2D 3×3 with ``multiplier`` outputs per input channel."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    h, c = int(rng.integers(6, 13)), int(rng.integers(2, 9))
    shape = (1, h, h + int(rng.integers(0, 3)), c)
    w = _normal(rng, (3, 3, c, multiplier), float(rng.uniform(0.3, 1.0)))
    b = _normal(rng, (c * multiplier,), 0.5)
    w_range = _weight_range(rng, w)

    def body(x, fq):
        y = tf.nn.depthwise_conv2d(x, _fq_const(tf, fq, w, w_range), [1, stride, stride, 1], padding) + tf.constant(b)
        return _act(tf, y, act)

    return convert_v1(body, [shape], [_quant(rng)], _act_range(act, rng, out_widen))


def avg_pool(seed: int, k: int = 3, stride: int = 2) -> bytes:
    """AVERAGE_POOL_2D with SAME padding over an odd-sized map, so the windows at the border
    average fewer elements (TFLite divides by the count of valid elements)."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    h = int(rng.integers(3, 7)) * 2 + 1
    shape = (1, h, h + 2, int(rng.integers(2, 9)))
    q = _quant(rng)
    # TFLite's uint8 average pool has one quantization for input and output (the converter
    # gives the output the input's); the output fake-quant says the same
    return convert_v1(lambda x, fq: tf.nn.avg_pool2d(x, k, stride, "SAME"), [shape], [q], _range(*q))


def add(seed: int, act: str = "none") -> bytes:
    """ADD of two activations with different ranges (and a third output range)."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    shape = (1, int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.integers(2, 9)))
    qa, qb = _quant(rng, 0.004, 0.01), _quant(rng, 0.015, 0.04)
    return convert_v1(lambda a, b, fq: _act(tf, a + b, act), [shape, shape], [qa, qb], _act_range(act, rng))


def concat(seed: int, keep_one: bool = False) -> bytes:
    """CONCATENATION on channels of two inputs with different scales and zero points; the output
    has a third quantization, or (``keep_one``) the second input's."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    h = int(rng.integers(3, 9))
    shapes = [(1, h, h + 1, int(rng.integers(2, 7))), (1, h, h + 1, int(rng.integers(2, 7)))]
    qa, qb = _quant(rng, 0.004, 0.012), _quant(rng, 0.015, 0.04)
    out = _range(*qb) if keep_one else _range(*_quant(rng, 0.01, 0.03))
    return convert_v1(lambda a, b, fq: tf.concat([a, b], axis=-1), shapes, [qa, qb], out)


def fully_connected(seed: int, rank: int = 2, act: str = "none") -> bytes:
    """FULLY_CONNECTED: a (1, K) input, or (``rank`` 3/4) a (1, [H,] W, K) input that TFLite's
    FULLY_CONNECTED takes whole (``keep_num_dims``: a matmul of a N-D activation by a constant)."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    k, n = int(rng.integers(8, 65)) if rank == 2 else int(rng.integers(3, 17)), int(rng.integers(4, 33))
    shape = {2: (1, k), 3: (1, int(rng.integers(2, 7)), k),
             4: (1, int(rng.integers(2, 6)), int(rng.integers(2, 6)), k)}[rank]
    w = _normal(rng, (k, n), float(rng.uniform(0.1, 0.5)))
    b = _normal(rng, (n,), 0.5)
    w_range = _weight_range(rng, w)

    def body(x, fq):
        return _act(tf, tf.matmul(x, _fq_const(tf, fq, w, w_range)) + tf.constant(b), act)

    return convert_v1(body, [shape], [_quant(rng)], _act_range(act, rng))


def flatten_fully_connected(seed: int) -> bytes:
    """RESHAPE (flatten a 4-D map) then FULLY_CONNECTED, as a TF1 classifier head writes it."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    shape = (1, int(rng.integers(2, 5)), int(rng.integers(2, 5)), int(rng.integers(2, 9)))
    k, n = int(np.prod(shape[1:])), int(rng.integers(4, 17))
    w = _normal(rng, (k, n), 0.2)
    b = _normal(rng, (n,), 0.5)
    w_range = _weight_range(rng, w)

    def body(x, fq):
        return tf.matmul(tf.reshape(x, (1, -1)), _fq_const(tf, fq, w, w_range)) + tf.constant(b)

    return convert_v1(body, [shape], [_quant(rng)], lambda y: _out_range(y, rng))


def mean(seed: int) -> bytes:
    """MEAN over H and W (keepdims; a global average pool) with an output quantization of its own."""
    tf = _tf()
    rng = np.random.default_rng(seed)
    h = int(rng.integers(3, 10))
    shape = (1, h, h, int(rng.integers(16, 129)))
    return convert_v1(lambda x, fq: tf.reduce_mean(x, axis=[1, 2], keepdims=True), [shape], [_quant(rng)],
                      lambda y: _out_range(y, rng))


@dataclass(frozen=True)
class Case:
    build: Callable[[], bytes]
    seed: int
    tflite_op: str  # the operator the model must hold
    kind: str  # the kind in the lowering's stats
    ops: Tuple[str, ...]  # every operator of the model, in order


def _case(fn, seed, tflite_op, kind, ops=None, **kw) -> Case:
    return Case(lambda: fn(seed, **kw), seed, tflite_op, kind, tuple(ops or (tflite_op,)))


CASES: Dict[str, Case] = {
    "conv_1x1_s1_valid_relu6": _case(conv2d, 11, "CONV_2D", "conv2d", k=1, stride=1, padding="VALID", act="relu6"),
    "conv_1x1_s2_same_none": _case(conv2d, 12, "CONV_2D", "conv2d", k=1, stride=2, padding="SAME"),
    "conv_3x3_s1_same_none": _case(conv2d, 13, "CONV_2D", "conv2d", k=3, stride=1, padding="SAME"),
    "conv_3x3_s1_valid_relu6": _case(conv2d, 14, "CONV_2D", "conv2d", k=3, stride=1, padding="VALID", act="relu6"),
    "conv_3x3_s2_same_relu6": _case(conv2d, 15, "CONV_2D", "conv2d", k=3, stride=2, padding="SAME", act="relu6"),
    "conv_3x3_s2_valid_none": _case(conv2d, 16, "CONV_2D", "conv2d", k=3, stride=2, padding="VALID"),
    "dw_m1_s1_same_relu6": _case(depthwise, 21, "DEPTHWISE_CONV_2D", "depthwise_conv2d", multiplier=1, act="relu6"),
    "dw_m1_s2_same_none": _case(depthwise, 22, "DEPTHWISE_CONV_2D", "depthwise_conv2d", multiplier=1, stride=2),
    "dw_m2_s1_valid_none": _case(depthwise, 23, "DEPTHWISE_CONV_2D", "depthwise_conv2d", multiplier=2,
                                 padding="VALID"),
    "dw_m2_s2_same_relu6": _case(depthwise, 24, "DEPTHWISE_CONV_2D", "depthwise_conv2d", multiplier=2, stride=2,
                                 act="relu6"),
    "avg_pool_3x3_s2_same": _case(avg_pool, 31, "AVERAGE_POOL_2D", "avg_pool2d"),
    "avg_pool_2x2_s1_same": _case(avg_pool, 32, "AVERAGE_POOL_2D", "avg_pool2d", k=2, stride=1),
    "add_none": _case(add, 41, "ADD", "add"),
    "add_relu": _case(add, 42, "ADD", "add", act="relu"),
    "concat_mixed": _case(concat, 12, "CONCATENATION", "concat"),
    "concat_keep_one": _case(concat, 52, "CONCATENATION", "concat", keep_one=True),
    "fc_2d": _case(fully_connected, 61, "FULLY_CONNECTED", "dense"),
    "fc_2d_relu": _case(fully_connected, 62, "FULLY_CONNECTED", "dense", act="relu"),
    "fc_3d_keepdims": _case(fully_connected, 63, "FULLY_CONNECTED", "dense", rank=3),
    "fc_4d_keepdims": _case(fully_connected, 64, "FULLY_CONNECTED", "dense", rank=4),
    "fc_flatten": _case(flatten_fully_connected, 66, "FULLY_CONNECTED", "dense", ops=("RESHAPE", "FULLY_CONNECTED")),
    "mean": _case(mean, 71, "MEAN", "mean"),
}


def check(buf: bytes, case: Case) -> List[str]:
    """What is wrong with a built model (empty: it is what ``case`` asks for): its operators,
    every non-constant tensor uint8 per tensor, uint8 weights with a nonzero zero point, int32
    biases, and for the mixed concatenation inputs quantized unlike the output."""
    from tests._int8_helpers import op_names
    from tvmq.model.cut import read_graph

    problems = []
    ops = tuple(op_names(buf))
    if ops != case.ops:
        problems.append(f"operators {ops}, wanted {case.ops}")
    infos = read_graph(buf).tensors
    for t in infos:
        if t.dtype == "int32" and not t.scale:
            continue  # shape / axis operands
        if len(t.scale) != 1:
            problems.append(f"tensor {t.name}: not per-tensor ({len(t.scale)} scales)")
        if t.dtype == "int32":
            if t.zero_point != (0,):
                problems.append(f"bias {t.name}: zero point {t.zero_point}")
        elif t.dtype != "uint8":
            problems.append(f"tensor {t.name}: {t.dtype}")
    consts = [t for t in infos if t.producer is None and t.dtype == "uint8" and t.name not in _input_names(buf)]
    for t in consts:
        if t.zero_point[0] in (0, 128):
            problems.append(f"weights {t.name}: symmetric zero point {t.zero_point[0]}")
    if case.kind in ("conv2d", "depthwise_conv2d", "dense") and not consts:
        problems.append("no uint8 weights")
    if case.tflite_op == "CONCATENATION":
        ins = [(t.scale, t.zero_point) for t in infos if t.name in _input_names(buf)]
        out = [(t.scale, t.zero_point) for t in infos if t.operator == "CONCATENATION"][0]
        if len(set(ins)) != len(ins):
            problems.append(f"concatenation inputs share a quantization: {ins}")
        if sum(q != out for q in ins) < 1:
            problems.append("no concatenation input quantized unlike the output")
    return problems


def _input_names(buf: bytes) -> List[str]:
    from ai_edge_litert.interpreter import Interpreter

    return [d["name"] for d in Interpreter(model_content=buf).get_input_details()]
