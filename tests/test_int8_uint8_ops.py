"""Per-operator exactness of the integer lowering on uint8 per-tensor (TF1-style, legacy) models.

``tests/test_int8_ops.py`` builds int8 per-channel models with the TF2 converter. The models of
the TF1 era (the ``*_quant.tflite`` MobileNets, and whatever was trained with
``tf.contrib.quantize``) are quantized another way: uint8 activations *and* uint8 asymmetric
weights, one scale and zero point per tensor, nonzero weight zero points. TFLite runs them
through its legacy uint8 kernels, whose arithmetic differs from the int8 ones in places: the
convolution multiplier rounds ``s_in * s_w`` to float32 first (``GetQuantizedConvolutionMultipler``),
a concatenation of inputs with other scales rescales them in float32
(``ConcatenationWithScaling``), a fully connected layer may take a 3-D or 4-D input whole (and
its reference kernel requantizes in double, as the int8 one now does).

``tests/uint8_factory.py`` makes those models as TF1 did (a ``tf.compat.v1`` graph with
fake-quant ops, ``TFLiteConverter.from_session`` with ``inference_type = tf.uint8`` and
``quantized_input_stats``); each case has random shapes, weights and quantization from its seed.
For each, random uint8 inputs run through

* TFLite's reference kernels (``OpResolverType.BUILTIN_REF``) vs our ``mode="tflite"``: must be
  bit-exact; also with the weights packed for a dot-product scheme (``avx2``, ``vnni``; built
  without tensorization, so the packed-weight algebra runs on any host) on convolutions and
  fully connected layers;
* TFLite with its default XNNPACK delegate vs our ``mode="xnnpack"``: must be bit-exact (for the
  uint8 average pool and concatenation XNNPACK declines the node and TFLite's builtin kernel runs;
  the summary says which nodes were delegated).

Random inputs almost never reach the few accumulators on which the convolution multiplier's
formula, or the fully connected layer's double requantization, changes an output; the boundary
cases at the end craft inputs that do (see there). The concatenation cases are checked to be
ones where TFLite's float rescale and a fixed-point one disagree.

Exact-match share and max abs difference are printed (run with ``-s``) and summarized at the end,
with TFLite's builtin optimized kernels (no delegate) vs ``mode="tflite"`` for information, not
asserted: they differ from the reference kernels by one here and there (the uint8 MEAN, the
fixed-point requantization of the x86 build, the fully connected layer's fixed-point multiplier).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._int8_helpers import compare, import_tflite, op_names, random_inputs, run_tflite, run_tvm

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

from tests import uint8_factory  # noqa: E402  (after the skips: it needs both)

CASES = uint8_factory.CASES
DOT_CASES = [n for n, c in CASES.items() if c.kind in ("conv2d", "dense")]
RESULTS = {}


def _delegated(buf) -> bool:
    """Whether the XNNPACK delegate took the model's nodes (True where LiteRT cannot say)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=buf, experimental_op_resolver_type=OpResolverType.AUTO, num_threads=2)
    it.allocate_tensors()
    details = getattr(it, "_get_ops_details", None)
    return details is None or any(d["op_name"] == "DELEGATE" for d in details())


@pytest.fixture(scope="module")
def models():
    out = {name: case.build() for name, case in CASES.items()}
    yield out
    print("\n\nuint8 (TF1 legacy) lowering vs TFLite (exact share, max abs diff):")
    for k, v in RESULTS.items():
        print(f"  {k:52s} {v}")


def _record(key, ours, ref, buf):
    share, maxd = compare(ours, ref)
    RESULTS[key] = f"exact {share:.4f}  max|d| {maxd}  n={ref.size}  ops {op_names(buf)}"
    print(f"{key}: exact share {share:.4f}, max abs diff {maxd}")
    return share, maxd


@pytest.mark.parametrize("name", list(CASES))
def test_model_is_legacy_uint8(models, name):
    """The factory made what the case says: the operator(s), every activation and weight uint8
    with one scale and zero point, weights asymmetric, int32 biases, mixed concatenation scales."""
    assert uint8_factory.check(models[name], CASES[name]) == []


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.kind == "concat"])
def test_concat_case_needs_the_float_rescale(models, name):
    """The concatenation cases can tell TFLite's float32 ``ConcatenationWithScaling`` from a
    fixed-point requantization of the same input (the lowering before the change): the two
    disagree on some of the 256 values of each rescaled input (double rounding, float32 error)."""
    from tvmq.int8 import requant as rq
    from tvmq.model.cut import read_graph

    infos = read_graph(models[name]).tensors
    out = next(t for t in infos if t.operator == "CONCATENATION")
    x = np.arange(256)
    for t in infos:
        if t.producer is None and t.scale and (t.scale, t.zero_point) != (out.scale, out.zero_point):
            scale, bias = rq.rescale_fp32_params(t.scale[0], t.zero_point[0], out.scale[0])
            fp32 = rq.rescale_fp32_np(x, scale, bias, out.zero_point[0], 0, 255)
            q, shift = rq.quantize_multiplier(np.float64(np.float32(t.scale[0])) / np.float64(np.float32(out.scale[0])))
            fixed = rq.requantize_np((x - t.zero_point[0]).astype(np.int32), q, shift, out.zero_point[0], 0, 255)
            assert np.any(fp32 != fixed), f"input {t.name}: this case cannot tell the rescalings apart"


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("mode", ["tflite", "xnnpack"])
def test_uint8_op(models, name, mode):
    from tvmq.int8 import lower_qdq_to_int8

    buf, case = models[name], CASES[name]
    lowering = lower_qdq_to_int8(import_tflite(buf), mode=mode)
    stats = lowering.stats.to_dict()
    assert stats.get(case.kind, {}).get("lowered", 0) >= 1, (op_names(buf), stats)
    assert all(v["qdq"] == 0 for k, v in stats.items() if k != "remaining"), stats
    assert not stats["remaining"], stats["remaining"]  # no quantize / dequantize left
    inputs = random_inputs(buf, seed=case.seed + 100)
    ours = run_tvm(lowering.mod, inputs)
    if mode == "tflite":
        _record(f"{name}[tflite vs optimized, info]", ours, run_tflite(buf, inputs, kernels="optimized"), buf)
        kernels = "reference"
    else:
        kernels = "xnnpack"
    key = f"{name}[{mode} vs {kernels}]" + ("" if mode == "tflite" or _delegated(buf) else " (not delegated)")
    share, maxd = _record(key, ours, run_tflite(buf, inputs, kernels=kernels), buf)
    assert maxd == 0, f"not bit-exact vs TFLite {kernels}: share {share}, max diff {maxd}"


@pytest.mark.parametrize("name", DOT_CASES)
@pytest.mark.parametrize("scheme", ["avx2", "vnni"])
def test_uint8_dot_scheme(models, name, scheme):
    """Weights packed for a target's int8 instruction (zero points, weight shift or window sums:
    :mod:`tvmq.int8.dot`), plain build: the same integers as TFLite's reference kernels."""
    from tvmq.int8 import lower_qdq_to_int8

    buf, case = models[name], CASES[name]
    lowering = lower_qdq_to_int8(import_tflite(buf), mode="tflite", scheme=scheme)
    used = {k: v for k, v in lowering.intrinsics.items() if "could saturate" not in k}
    assert sum(used.values()) >= 1, lowering.intrinsics
    inputs = random_inputs(buf, seed=case.seed + 100)
    share, maxd = _record(f"{name}[tflite/{scheme} {','.join(used)} vs reference]",
                          run_tvm(lowering.mod, inputs), run_tflite(buf, inputs, kernels="reference"), buf)
    assert maxd == 0, f"{scheme}: not bit-exact vs TFLite reference: share {share}, max diff {maxd}"



# --- the requantization formula, on the accumulators where it matters -----------------------------
#
# Two formulas are hard to tell apart on random inputs:
#
# * TFLite's uint8 CONV_2D / DEPTHWISE_CONV_2D take their multiplier from the legacy
#   ``GetQuantizedConvolutionMultipler``: ``double(float32(s_in * s_w)) / s_out``, the product
#   rounded to float32 first, where the int8 kernels use ``double(s_in) * double(s_w) / s_out``.
#   The two multipliers differ by a few units in most layers, which moves an output only where
#   ``acc * multiplier`` lies within ~1e-7 of a rounding boundary: a few accumulators in millions,
#   which random inputs do not hit on layers this small (the cases above pass with either one).
# * TFLite's reference FULLY_CONNECTED (LiteRT since April 2025, "Make the fully_connected ref
#   kernel do requant in float": uint8, and int8 per tensor and per channel) computes
#   ``round(double(acc) * (double(s_in) * double(s_w) / double(s_out)))``, no fixed-point
#   multiplier; the optimized kernels keep the fixed-point one. They differ where the fixed-point
#   double rounding (``SaturatingRoundingDoublingHighMul`` then ``RoundingDivideByPOT``) lands on
#   a half: about 0.2 % of the outputs.
#
# So these cases craft their inputs: windows that do not overlap (a k×k convolution with stride k,
# the rows of a fully connected layer), the accumulators on which the two formulas disagree found
# by enumeration, and each window's inputs solved so that its accumulator is one of them. TFLite's
# reference kernels must give the first formula's value there, and so must we.

BOUNDARY = {
    "conv_3x3_s3_valid": lambda s: uint8_factory.conv2d(s, k=3, stride=3, padding="VALID", channels=24, out_widen=8),
    "dw_3x3_s3_valid": lambda s: uint8_factory.depthwise(s, stride=3, padding="VALID", out_widen=3),
    "fc_4d_keepdims": lambda s: uint8_factory.fully_connected(s, rank=4),
}


def _linear_params(buf):
    """Input / weight / bias / output quantization and data of a one-op conv or FC model."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.ModelT.InitFromPackedBuf(bytearray(buf), 0)
    g = m.subgraphs[0]
    op = g.operators[-1]
    ti, tw, tb = (g.tensors[i] for i in op.inputs)
    to = g.tensors[op.outputs[0]]

    def quant(t):
        return np.float32(t.quantization.scale[0]), int(t.quantization.zeroPoint[0])

    def data(t, dtype):
        return np.frombuffer(bytes(m.buffers[t.buffer].data), dtype).reshape(t.shape).astype(np.int64)

    return dict(op=op_names(buf)[-1], x=quant(ti), w=quant(tw), out=quant(to), W=data(tw, np.uint8),
                B=data(tb, np.int32), x_shape=tuple(int(d) for d in ti.shape),
                act=int(op.builtinOptions.fusedActivationFunction))


def _formulas(p):
    """``(TFLite's, the other)``: each a function of int64 accumulators -> uint8 outputs (no fused
    activation), and their names."""

    from tvmq.int8 import requant as rq

    (s_in, _), (s_w, _), (s_out, zo) = p["x"], p["w"], p["out"]

    def fixed(float_product):
        q, shift = (int(v[0]) for v in rq.linear_multipliers(s_in, [s_w], s_out, float_product))
        return lambda acc: rq.requantize_np(np.asarray(acc, np.int32), q, shift, zo, 0, 255).astype(int)

    def double(acc):
        v = np.asarray(acc, np.int64).astype(np.float64) * (np.float64(s_in) * np.float64(s_w) / np.float64(s_out))
        a = np.abs(v)
        r = np.floor(a)
        r = r + (a - r >= 0.5)  # C round(): halves away from zero (a - floor(a) is exact)
        return np.clip(np.where(v < 0, -r, r).astype(np.int64) + zo, 0, 255)

    if p["op"] == "FULLY_CONNECTED":
        return (double, "double requantization"), (fixed(True), "fixed-point, float32 product")
    return (fixed(True), "fixed-point, float32 product"), (fixed(False), "fixed-point, double product")


def _boundary_accs(p):
    """The accumulators whose (unclamped) output differs between the two formulas."""

    (s_in, _), (s_w, _), (s_out, zo) = p["x"], p["w"], p["out"]
    real = float(s_in) * float(s_w) / float(s_out)
    acc = np.arange(int(-zo / real) - 2, int((255 - zo) / real) + 3, dtype=np.int64)
    (tfl, _), (other, _) = _formulas(p)
    return acc[tfl(acc) != other(acc)]


def _solve(wd, zx, target, rng):
    """uint8 inputs ``x`` with ``sum((x - zx) * wd) == target``, or None: from random inputs, the
    largest weights first take the remainder, one more input moved by a few steps makes it a
    multiple of the smallest weight, which takes the rest."""

    wd = [int(v) for v in wd]
    lo, hi = -zx, 255 - zx
    if not sum(max(lo * w, hi * w) for w in wd) >= target >= sum(min(lo * w, hi * w) for w in wd):
        return None
    nz = sorted((i for i, w in enumerate(wd) if w), key=lambda i: -abs(wd[i]))
    if not nz:
        return None
    free, others = nz[-1], nz[:-1]
    u = [int(v) - zx for v in rng.integers(0, 256, len(wd))]
    rest = target - sum(ui * w for ui, w in zip(u, wd)) + u[free] * wd[free]
    for i in others:
        step = max(lo - u[i], min(hi - u[i], round(rest / wd[i])))
        u[i] += step
        rest -= step * wd[i]
    for i in [None] + others:
        for d in ([0] if i is None else [d for k in range(1, 9) for d in (k, -k)]):
            if i is not None and not lo <= u[i] + d <= hi:
                continue
            r = rest - (d * wd[i] if i is not None else 0)
            if r % wd[free] == 0 and lo <= r // wd[free] <= hi:
                if i is not None:
                    u[i] += d
                u[free] = r // wd[free]
                return np.array(u, np.int64) + zx
    return None


def _windows(p):
    """``(output index, input window, weights - zp_w, bias)`` of disjoint windows: one output
    channel per window of a convolution or row of a fully connected layer (cycling), every
    channel of a depthwise convolution's window."""
    W, B, shape = p["W"], p["B"], p["x_shape"]
    if p["op"] == "FULLY_CONNECTED":
        for r in range(int(np.prod(shape[:-1]))):
            idx = np.unravel_index(r, shape[:-1])
            o = r % W.shape[0]
            yield idx + (o,), idx + (slice(None),), W[o], B[o]
        return
    _, h, w, c = shape
    k = W.shape[1]
    n = 0
    for i in range((h - k) // k + 1):
        for j in range((w - k) // k + 1):
            win = (0, slice(i * k, i * k + k), slice(j * k, j * k + k))
            if p["op"] == "DEPTHWISE_CONV_2D":
                for ch in range(c):
                    yield (0, i, j, ch), win + (ch,), W[0, :, :, ch], B[ch]
            else:
                o = n % W.shape[0]
                n += 1
                yield (0, i, j, o), win, W[o], B[o]


def _craft(buf, rng):
    """Inputs putting every window's accumulator on a boundary accumulator (cycling through
    them); returns ``(x, targets)``, ``targets`` the crafted output indices and accumulators,
    or None."""
    p = _linear_params(buf)
    accs = _boundary_accs(p)
    if not len(accs):
        return None
    zx, zw = p["x"][1], p["w"][1]
    x = rng.integers(0, 256, p["x_shape"]).astype(np.int64)
    targets = []
    for n, (out, win, w, bias) in enumerate(_windows(p)):
        acc = int(accs[n % len(accs)])
        sol = _solve(w.reshape(-1) - zw, zx, acc - int(bias), rng)
        if sol is not None:
            x[win] = sol.reshape(x[win].shape)
            targets.append((out, acc))
    return (x.astype(np.uint8), targets) if targets else None


@pytest.fixture(scope="module")
def boundary_models():
    """Per boundary case: the first seed whose layer has boundary accumulators the inputs reach."""
    out = {}
    for name, build in BOUNDARY.items():
        for seed in range(40):
            buf = build(seed)
            crafted = _craft(buf, np.random.default_rng(seed))
            if crafted is not None and len(crafted[1]) >= 4:
                out[name] = (seed, buf, *crafted)
                break
    return out


@pytest.mark.parametrize("name", list(BOUNDARY))
@pytest.mark.parametrize("scheme", [None, "avx2", "vnni"])
def test_uint8_requantization_on_boundaries(boundary_models, name, scheme):
    from tvmq.int8 import lower_qdq_to_int8

    assert name in boundary_models, f"no seed under 40 gives {name} reachable boundary accumulators"
    seed, buf, x, targets = boundary_models[name]
    p = _linear_params(buf)
    assert p["act"] == 0
    (tfl, tfl_name), (other, other_name) = _formulas(p)
    ref = run_tflite(buf, [x], kernels="reference")
    idx = tuple(np.array([t for t, _ in targets]).T)
    acc = np.array([a for _, a in targets])
    # the crafted outputs tell the formulas apart, and TFLite's reference kernel computes the first
    assert np.all(tfl(acc) != other(acc))
    assert np.array_equal(ref[idx].astype(int), tfl(acc)), f"TFLite's {p['op']} no longer computes {tfl_name}?"
    lowering = lower_qdq_to_int8(import_tflite(buf), mode="tflite", scheme=scheme)
    ours = run_tvm(lowering.mod, [x])
    share, maxd = _record(f"{name}[seed {seed}, {len(targets)} boundary outputs, tflite/{scheme} vs reference]",
                          ours, ref, buf)
    like_tfl = int((ours[idx].astype(int) == tfl(acc)).sum())
    like_other = int((ours[idx].astype(int) == other(acc)).sum())
    assert maxd == 0, (f"boundary outputs: {like_tfl}/{len(targets)} as {tfl_name} (TFLite), {like_other} as "
                       f"{other_name}; share {share}, max diff {maxd}")
