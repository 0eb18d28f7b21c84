"""Unit tests of the requantization numerics (numpy reference and TIR versions)."""

from __future__ import annotations

import numpy as np
import pytest

from tvmq.int8 import requant as rq


def test_quantize_multiplier_known_values():
    # frexp(0.5) = (0.5, 0): 0.5 * 2**31 = 2**30, shift 0  (not shift 1: that is 1.0)
    assert rq.quantize_multiplier(0.5) == (1 << 30, 0)
    assert rq.quantize_multiplier(1.0) == (1 << 30, 1)
    assert rq.quantize_multiplier(0.25) == (1 << 30, -1)
    assert rq.quantize_multiplier(0.75) == (3 << 29, 0)
    assert rq.quantize_multiplier(2.0) == (1 << 30, 2)
    assert rq.quantize_multiplier(0.0) == (0, 0)
    # mantissa rounding up to 2**31 is renormalised
    assert rq.quantize_multiplier(1.0 - 2.0**-40) == (1 << 30, 1)
    # below 2**-32 TFLite flushes the multiplier to zero
    assert rq.quantize_multiplier(2.0**-40) == (0, 0)
    # a typical conv multiplier: input 0.0078125 * weight 0.00888 / output 0.0235
    q, s = rq.quantize_multiplier(0.0078125 * 0.008882409892976284 / 0.023528477177023888)
    assert (1 << 30) <= q < (1 << 31) and s == -8
    assert abs(q * 2.0 ** (s - 31) - 0.0078125 * 0.008882409892976284 / 0.023528477177023888) < 2.0**-38


def test_srdhm_and_rounding_divide():
    f = rq.saturating_rounding_doubling_high_mul
    assert f(rq.INT32_MIN, rq.INT32_MIN) == rq.INT32_MAX  # the one saturating case
    assert f(1 << 30, 1 << 30) == 1 << 29
    assert f(3, 1 << 30) == 2  # +1.5 -> 2
    assert f(-3, 1 << 30) == -1  # -1.5 -> -1: gemmlowp's nudge + truncation rounds ties up
    g = rq.rounding_divide_by_pot
    assert g(3, 1) == 2 and g(-3, 1) == -2  # ties away from zero
    assert g(5, 2) == 1 and g(-5, 2) == -1
    assert g(6, 2) == 2 and g(-6, 2) == -2
    assert g(7, 0) == 7


def test_multiply_by_quantized_multiplier_double_rounding():
    m = rq.multiply_by_quantized_multiplier
    assert m(100, 1 << 30, 0) == 50
    # 5 * 0.25 = 1.25, but TFLite rounds twice: SRDHM(5, 0.5) = 2.5 -> 3, then 3 / 2 = 1.5 -> 2
    assert m(5, 1 << 30, -1) == 2
    assert m(-5, 1 << 30, -1) == -1  # SRDHM: -2.5 -> -2, then -1
    # left shift for multipliers > 1
    assert m(7, 1 << 30, 2) == 14
    # per channel broadcast
    np.testing.assert_array_equal(m(np.array([100, 100]), np.array([1 << 30, 3 << 29]), np.array([0, 0])), [50, 75])


def test_fp32_mode_differs_on_ties():
    # XNNPACK: float32(5) * 0.5 = 2.5 -> round half to even = 2; TFLite fixed point: 3
    assert rq.requantize_fp32_np(5, 0.5, 0, -128, 127, "int8") == 2
    assert rq.requantize_np(5, 1 << 30, 0, 0, -128, 127, "int8") == 3


def test_add_reference():
    # equal scales, zero points 0: ADD is exact addition
    a = np.array([10, -20, 100], np.int8)
    b = np.array([5, 7, 100], np.int8)
    out = rq.quantized_add_np(a, 0, 0.1, b, 0, 0.1, 0, 0.1, -128, 127, "int8")
    np.testing.assert_array_equal(out, [15, -13, 127])


def _build(fn, n, lanes: int = 1):
    """``y[i] = fn(x[i], i)``, compiled for the host (its loop vectorized by ``lanes``)."""
    import tvm
    from tvm import s_tir, te

    x = te.placeholder((n,), "int32", name="x")
    y = te.compute((n,), lambda i: fn(x[i], i), name="y")
    f = te.create_prim_func([x, y])
    mod = tvm.IRModule({"main": f})
    if lanes > 1:
        sch = s_tir.Schedule(mod)
        (i,) = sch.get_loops(sch.get_sblock("y"))
        sch.vectorize(sch.split(i, [None, lanes])[1])
        mod = sch.mod
    return tvm.compile(mod, target="llvm")


@pytest.mark.parametrize("real", [0.5, 0.00123, 0.9999, 1.7, 3.3e-6])
def test_tir_matches_numpy_per_tensor(real):
    import tvm

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.integers(-(1 << 24), 1 << 24, 4000), rng.integers(-300, 300, 4000),
                        [0, 1, -1, (1 << 31) - 1, -(1 << 31) + 1]]).astype(np.int32)
    if real > 1:
        x = (x // 4).astype(np.int32)  # the left shift must not overflow
    q, s = rq.quantize_multiplier(real)
    lib = _build(lambda v, i: rq.mbqm_tir(v, q, s), x.size)
    y = tvm.runtime.tensor(np.zeros_like(x))
    lib["main"](tvm.runtime.tensor(x), y)
    np.testing.assert_array_equal(y.numpy(), rq.multiply_by_quantized_multiplier(x, q, s))


def test_tir_matches_numpy_per_channel():
    import tvm
    from tvm import te

    rng = np.random.default_rng(1)
    n = 64
    reals = np.exp(rng.uniform(np.log(1e-5), np.log(0.9), n))
    q, s = rq.quantize_multipliers(reals)
    x = rng.integers(-(1 << 22), 1 << 22, n).astype(np.int32)
    xp = te.placeholder((n,), "int32", name="x")
    qp = te.placeholder((n,), "int32", name="q")
    sp = te.placeholder((n,), "int32", name="s")
    yp = te.compute((n,), lambda i: rq.requantize_tir(xp[i], qp[i], sp[i], -3, -128, 127, "int8"), name="y")
    lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func([xp, qp, sp, yp])}), target="llvm")
    y = tvm.runtime.tensor(np.zeros(n, np.int8))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(q), tvm.runtime.tensor(s), y)
    np.testing.assert_array_equal(y.numpy(), rq.requantize_np(x, q, s, -3, -128, 127, "int8"))


@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_tir_fp32_matches_numpy(lanes):
    # scalar and vector conversions (vcvtps2dq on x86) round ties to even, as numpy.rint
    import tvm

    rng = np.random.default_rng(2)
    x = rng.integers(-(1 << 20), 1 << 20, 5008).astype(np.int32)
    x[:8] = [5, -5, 7, -7, 1, -1, 3, -3]
    scale = 0.5
    lib = _build(lambda v, i: rq.requantize_fp32_tir(v, scale, 3, -128, 127, "int8").astype("int32"), x.size, lanes)
    y = tvm.runtime.tensor(np.zeros_like(x))
    lib["main"](tvm.runtime.tensor(x), y)
    np.testing.assert_array_equal(y.numpy(), rq.requantize_fp32_np(x, scale, 3, -128, 127, "int8").astype(np.int32))


def test_mean_multiplier():
    # 1/n folded into the Q31 multiplier by integer division, as TFLite's QuantizedMeanOrSum
    q, s = rq.mean_multiplier(1.0, 1.0, 49)  # s_in/s_out = 1 -> (1<<30, 1); floor(log2 49) = 5
    assert (q, s) == (((1 << 30) << 5) // 49, 1 - 5)
    acc = np.array([49 * 10, 49 * 10 + 24, 49 * 10 + 25, -49 * 10 - 25], np.int32)
    # 514/49 = 10.49 still gives 11: SRDHM(514, q) = 167.84 -> 168, then 168/16 = 10.5 -> 11
    # (double rounding, identical to TFLite)
    np.testing.assert_array_equal(rq.multiply_by_quantized_multiplier(acc, q, s), [10, 11, 11, -11])


def test_tir_rounding_steps_match_gemmlowp_on_ties():
    """The select-free TIR forms of SRDHM and RoundingDivideByPOT against the numpy reference
    on exact halves, both signs, every exponent (per-element, as per-channel shifts are)."""
    import tvm
    from tvm import te

    rng = np.random.default_rng(3)
    e = np.arange(32, dtype=np.int32).repeat(64)
    e64 = e.astype(np.int64)
    k = rng.integers(-(1 << 30), 1 << 30, e.size) >> e64  # k * 2**e stays within int32
    half = np.where(e > 0, 1 << np.maximum(e64 - 1, 0), 0)
    # x = k * 2**e + {0, +-half} + {0, +-1}: every tie and its neighbours
    x = (k << e64) + rng.choice([-1, 0, 1], e.size) * half + rng.choice([-1, 0, 1], e.size)
    x = np.clip(x, -(1 << 31) + 1, (1 << 31) - 1).astype(np.int32)
    q = rng.integers(1 << 30, (1 << 31) - 1, e.size).astype(np.int32)
    q[:64] = 1 << 30  # a*b lands exactly on 2**30 multiples: the SRDHM ties
    xp, ep, qp = (te.placeholder((e.size,), "int32", name=n) for n in "xeq")
    y1 = te.compute((e.size,), lambda i: rq.rdbpot_tir(xp[i], ep[i]).astype("int32"), name="y1")
    y2 = te.compute((e.size,), lambda i: rq.rdbpot_tir(rq.srdhm_tir(xp[i], qp[i]), ep[i]).astype("int32"), name="y2")
    lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func([xp, ep, qp, y1, y2])}), target="llvm")
    out = [tvm.runtime.tensor(np.zeros(e.size, np.int32)) for _ in range(2)]
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(e), tvm.runtime.tensor(q), *out)
    np.testing.assert_array_equal(out[0].numpy(), rq.rounding_divide_by_pot(x, e))
    np.testing.assert_array_equal(out[1].numpy(),
                                  rq.rounding_divide_by_pot(rq.saturating_rounding_doubling_high_mul(x, q), e))


def test_linear_multipliers_follow_tflites_two_formulas():
    """TFLite's legacy multiplier rounds ``s_in * s_w`` to float32 before dividing: on the layer of
    a real uint8 MobileNet V2 where that matters the two multipliers differ, and 40 of its 451,584
    values with them (found with --explain-mismatch)."""
    s_in, s_w, s_out = 0.22163663804531097, 0.0029766527004539967, 0.023528477177023888
    exact = rq.linear_multipliers(s_in, [s_w], s_out, float_product=False)
    legacy = rq.linear_multipliers(s_in, [s_w], s_out, float_product=True)
    assert legacy[0][0] != exact[0][0] and legacy[1][0] == exact[1][0]
    assert legacy == rq.quantize_multipliers([float(np.float32(s_in) * np.float32(s_w)) / float(np.float32(s_out))])
    # on the value that showed it, the two round to neighbours
    acc = np.int32(3120)
    assert rq.multiply_by_quantized_multiplier(acc, legacy[0][0], legacy[1][0]) == 87
    assert rq.multiply_by_quantized_multiplier(acc, exact[0][0], exact[1][0]) == 88


def test_tir_rescale_fp32_matches_numpy():
    """TFLite's float32 concatenation rescale: no fused multiply-add, std::round (ties away)."""
    import tvm

    x = np.arange(256, dtype=np.int32)
    for s_in, zp_in, s_out in ((0.05, 128, 0.1), (0.0235, 3, 0.047), (0.3, 200, 0.07), (0.02, 17, 0.04)):
        scale, bias = rq.rescale_fp32_params(s_in, zp_in, s_out)
        lib = _build(lambda v, i: rq.rescale_fp32_tir(v, scale, bias, 9, 0, 255, "uint8").astype("int32"), x.size)
        y = tvm.runtime.tensor(np.zeros_like(x))
        lib["main"](tvm.runtime.tensor(x), y)
        np.testing.assert_array_equal(y.numpy(), rq.rescale_fp32_np(x, scale, bias, 9, 0, 255).astype(np.int32))
    # s_in / s_out = 1/2, zp 128: x = 129 lands on +0.5 and x = 127 on -0.5, both rounded away from zero
    scale, bias = rq.rescale_fp32_params(0.05, 128, 0.1)
    assert list(rq.rescale_fp32_np([127, 129], scale, bias, 100, 0, 255)) == [99, 101]


def test_xnnpack_convert_multiplier_and_range():
    assert rq.xnnpack_convert_multiplier(0.0124224, 0.0352094) == 90
    assert rq.xnnpack_convert_multiplier(1.0, 1000.0) is None  # below 1/256: XNNPACK leaves it to TFLite
    assert rq.xnnpack_convert_multiplier(1000.0, 1.0) is None
    y = rq.xnnpack_convert_np(np.arange(256), 90, 0, 0, 0, 255)
    assert y[0] == 0 and y[255] == (255 * 90 + 128) >> 8


def test_tir_xnnpack_convert_matches_numpy():
    import tvm

    x = np.arange(256, dtype=np.int32)
    for m, zp_in, zp_out in ((90, 0, 0), (300, 128, 7), (2, 255, 250), (32767, 3, 0)):
        lib = _build(lambda v, i: rq.xnnpack_convert_tir(v, m, zp_in, zp_out, 0, 255, "uint8").astype("int32"), x.size)
        y = tvm.runtime.tensor(np.zeros_like(x))
        lib["main"](tvm.runtime.tensor(x), y)
        np.testing.assert_array_equal(y.numpy(), rq.xnnpack_convert_np(x, m, zp_in, zp_out, 0, 255).astype(np.int32))


def test_round_half_away_is_exact_just_under_a_half():
    below = np.nextafter(0.5, 0.0)  # floor(below + 0.5) would give 1
    assert list(rq.round_half_away_np([below, 0.5, -0.5, -below, 2.5, -2.5])) == [0, 1, -1, 0, 3, -3]


@pytest.mark.parametrize("mode", ["align_corners", "half_pixel", "asymmetric"])
def test_tir_resize_bilinear_matches_numpy(mode):
    """TFLite's float32 uint8 resize (``--requant tflite``) as a TE kernel against its numpy reference."""
    import tvm
    from tvm import te

    from tvmq.int8.rewrite_resize import resize_bilinear_np, resize_bilinear_te

    x = np.random.default_rng(3).integers(0, 256, (1, 5, 7, 3)).astype(np.uint8)
    xp = te.placeholder(x.shape, "uint8", name="x")
    yp = resize_bilinear_te(xp, (13, 9), mode)
    lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func([xp, yp])}), target="llvm")
    y = tvm.runtime.tensor(np.zeros((1, 13, 9, 3), np.uint8))
    lib["main"](tvm.runtime.tensor(x), y)
    np.testing.assert_array_equal(y.numpy(), resize_bilinear_np(x, (13, 9), mode))


def test_xnnpack_takes_an_add_only_within_its_scale_ratios():
    """The XNNPACK delegate leaves a quantized ADD whose input/output scale ratio is outside
    [2**-10, 2**8) to TFLite's kernel (the detector of ../shared/models has four, ratios ~1e-33):
    the lowering then requantizes as TFLite does instead of overflowing XNNPACK's multiplier."""
    from tvmq.int8.rewrite_elementwise import xnnpack_takes_add

    assert xnnpack_takes_add(0.5, 0.25, 0.5)
    assert xnnpack_takes_add(2.0 ** -10, 1.0, 1.0) and not xnnpack_takes_add(2.0 ** -11, 1.0, 1.0)
    assert not xnnpack_takes_add(256.0, 1.0, 1.0) and xnnpack_takes_add(255.0, 1.0, 1.0)
    assert not xnnpack_takes_add(2.97e-35, 1.21e-35, 0.0235)


def test_xnnpack_mean_folds_the_zero_points_into_a_float_bias():
    """XNNPACK's MEAN scales the raw sum and adds one float32 bias; scaling ``sum - zp_in·n`` instead
    rounds differently on a few sums. With the quantization of the MEAN (squeeze-excite) where a
    random EfficientNetB0 draw parted from LiteRT by one unit (82 at its output), both orders differ on
    some sums, and the compiled kernel follows XNNPACK's on every input."""
    import tvm
    from tvm import relax

    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.int8.requant import xnnpack_mean_np

    s_in, zp_in, s_out, zp_out, n = 0.03540482744574547, -120, 0.0021975317504256964, -104, 256
    f = np.float32
    fscale = float(f(s_in) / (f(s_out) * f(n)))
    sums = np.arange(-128 * n, 127 * n + 1)
    subtract_first = np.clip(np.rint(f(f(sums - zp_in * n) * f(fscale))) + zp_out, -128, 127)
    parting = sums[subtract_first != xnnpack_mean_np(sums, zp_in, n, fscale, zp_out, -128, 127)]
    assert parting.size > 0

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 16, 16, 144), "int8"))
    with bb.function("main", [x]):
        d = bb.emit(relax.op.dequantize(x, relax.const(s_in, "float32"), relax.const(zp_in, "int8")))
        m = bb.emit(relax.op.mean(d, axis=[1, 2], keepdims=True))
        q = bb.emit(relax.op.quantize(m, relax.const(s_out, "float32"), relax.const(zp_out, "int8"), out_dtype="int8"))
        bb.emit_func_output(q)
    lowered = lower_qdq_to_int8(bb.get(), mode="xnnpack")
    assert lowered.stats.to_dict()["mean"]["lowered"] == 1
    target = tvm.target.Target({"kind": "llvm", "mcpu": "znver3"})
    with target:
        vm = relax.VirtualMachine(tvm.compile(relax.get_pipeline("zero")(lowered.mod), target=target), tvm.cpu())
    rng = np.random.default_rng(0)
    # first an input whose channels sum to the sums where the two orders part, then random ones
    picked = parting[np.linspace(0, parting.size - 1, 144).astype(int)]
    base, extra = np.divmod(picked, n)  # n values per channel: `extra` of them one above `base`
    crafted = (base[None, :] + (np.arange(n)[:, None] < extra[None, :])).reshape(1, 16, 16, 144).astype(np.int8)
    assert np.array_equal(crafted.astype(np.int64).sum(axis=(0, 1, 2)), picked)
    for xs in [crafted] + [rng.integers(-128, 128, (1, 16, 16, 144)).astype(np.int8) for _ in range(4)]:
        want = xnnpack_mean_np(xs.astype(np.int64).sum(axis=(1, 2), keepdims=True), zp_in, n, fscale, zp_out, -128, 127)
        assert np.array_equal(vm["main"](tvm.runtime.tensor(xs)).numpy(), want.astype(np.int8))
