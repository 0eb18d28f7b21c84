"""Integer requantization numerics, as numpy references and as TIR expressions.

Two modes are offered, selected by ``mode``:

``"tflite"`` -- TFLite's reference fixed-point requantization (what the builtin kernels,
gemmlowp and ruy compute; ``tensorflow/lite/kernels/internal/common.h`` and
``quantization_util.cc``, default build without ``TFLITE_SINGLE_ROUNDING``):

* ``quantize_multiplier(real)`` -> ``(q, shift)`` with ``real ~= q * 2**(shift - 31)`` and
  ``q`` in ``[2**30, 2**31)``.  ``frexp(real) = (m, e)`` with ``m`` in ``[0.5, 1)``;
  ``q = round_half_away(m * 2**31)``; if ``q == 2**31`` then ``q //= 2; e += 1``; if
  ``e < -31`` the multiplier is flushed to ``(0, 0)``.  Examples:
  ``quantize_multiplier(0.5) == (1 << 30, 0)`` (0.5 = 0.5 * 2**0) and
  ``quantize_multiplier(1.0) == (1 << 30, 1)``; ``quantize_multiplier(0.25) == (1 << 30, -1)``.
* ``saturating_rounding_doubling_high_mul(a, b)`` (gemmlowp ``SRDHM``): the high 32 bits
  of ``2*a*b`` rounded half away from zero: ``(a*b + (a*b >= 0 ? 2**30 : 1 - 2**30)) / 2**31``
  with C (truncating) division in int64; saturates the single overflow case
  ``a == b == INT32_MIN`` to ``INT32_MAX``.
* ``rounding_divide_by_pot(x, e)`` (gemmlowp ``RoundingDivideByPOT``): arithmetic shift
  right by ``e`` rounding half away from zero: ``(x >> e) + (rem > thr)`` with
  ``mask = 2**e - 1``, ``rem = x & mask``, ``thr = (mask >> 1) + (x < 0)``.
* ``multiply_by_quantized_multiplier(x, q, shift)``:
  ``RDBPOT(SRDHM(x * 2**max(shift, 0), q), max(-shift, 0))`` -- two roundings
  ("double rounding").
* per-channel: ``q`` and ``shift`` are vectors indexed by the output channel.
* a convolution / fully connected output is
  ``clamp(MBQM(acc + bias, q, shift) + zp_out, act_min, act_max)``. The multiplier comes from
  one of two formulas (all scales are float32 in the flatbuffer), :func:`linear_multipliers`:

  - ``real = double(s_in) * double(s_w[c]) / double(s_out)`` for int8 convolutions and depthwise
    convolutions (per channel or per tensor, ``PopulateConvolutionQuantizationParams``);
  - ``real = double(float32(s_in * s_w)) / double(s_out)``, the product rounded to float32
    first, for uint8 convolutions and depthwise convolutions (their legacy scalar multiplier,
    ``GetQuantizedConvolutionMultipler``). The two can give multipliers a few units apart, enough
    to move values that lie near a rounding boundary by one (40 of 451,584 values of one layer of
    a real uint8 MobileNet V2).

  TFLite's reference FULLY_CONNECTED (every type, since LiteRT's reference kernel requantizes in
  floating point) is instead ``round_half_away(double(acc) * real)`` with the double ``real``
  above (:func:`fc_reference_scales`, :func:`requantize_f64_np`).

``"xnnpack"`` -- what the XNNPACK delegate (default in the TFLite interpreter for QS8/QU8
conv, depthwise conv, fully connected) computes: *fp32 requantization*.  The scale is
computed in float32 (``input_scale * kernel_scale / output_scale``, float32 rounding at each
step), the int32 accumulator (bias and zero-point terms included) is converted to float32,
multiplied by the scale, clamped to ``[qmin - zp, qmax - zp]`` and rounded to nearest with
ties to *even* (the "magic bias" trick: ``bits(v + 12582912.0f) - 0x4B400000``, or
``cvtps2dq`` on x86, both are round-half-even), and the output zero point is added.  It
differs from the TFLite fixed-point result by at most one unit, on values whose scaled
accumulator lies (within float32 precision) on a .5 boundary, or where float32 conversion
of a large accumulator / the float32 scale loses bits.

XNNPACK's other quantized ops, as mirrored by ``mode="xnnpack"`` in :mod:`.lower`:

* MEAN: ``rne(float32(sum(x - zp_in)) * (s_in / (s_out * n))) + zp_out`` (float32 scale);
* ADD (``qs8/qu8-vadd``): integer, with float-derived multipliers.  ``ra = s_a / s_out`` and
  ``rb = s_b / s_out`` (float32); ``shift = 20 - exponent(max(ra, rb))``;
  ``ma = lrintf(ra * 2**shift)``, ``mb`` likewise; ``bias = 2**(shift-1) - ma*zp_a - mb*zp_b``;
  ``out = clamp((bias + a*ma + b*mb) >> shift, qmin - zp, qmax - zp) + zp_out`` with an
  arithmetic (flooring) shift, i.e. round half up.

TFLite's own int8 MEAN folds ``1/n`` into the Q31 multiplier of ``s_in/s_out`` by integer
division (:func:`mean_multiplier`), and its ADD uses 20 bits of headroom and three
multipliers (:func:`add_params`, :func:`quantized_add_np`).

Note on TFLite's *optimized* builtin kernels on x86: they are TFLite's NEON code compiled
through NEON_2_SSE; the vector requantization there (``vqrdmulhq_s32`` + ``vrshlq_s32``) rounds
the second step half *up* rather than half away from zero, so per-channel depthwise conv can
differ from the reference by one unit on negative ties; the optimized int8 MEAN uses float
arithmetic.  ``mode="tflite"`` is bit-exact with the reference kernels (``BUILTIN_REF``).

The TIR versions (``*_tir``) compute exactly the same integers using int64 intermediates
(no overflow is possible: ``|x| < 2**31`` and ``q < 2**31`` so ``|x*q| < 2**62``).
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

__all__ = [
    "MODES",
    "fence_f32_tir",
    "quantize_multiplier",
    "quantize_multipliers",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "requantize_np",
    "requantize_fp32_np",
    "add_params",
    "mean_multiplier",
    "xnnpack_mean_np",
    "quantized_add_np",
    "round_half_away",
    "srdhm_tir",
    "rdbpot_tir",
    "mbqm_tir",
    "requantize_tir",
    "requantize_fp32_tir",
    "rint_int32_tir",
    "xnnpack_scale",
    "linear_multipliers",
    "fc_reference_scales",
    "requantize_f64_np",
    "requantize_f64_tir",
    "rescale_fp32_params",
    "xnnpack_convert_multiplier",
    "xnnpack_convert_np",
    "xnnpack_convert_tir",
    "round_half_away_np",
    "clamp_tir",
    "rescale_fp32_np",
    "rescale_fp32_tir",
]

# the two requantization modes described above (``tvmq-tune --requant``)
MODES = ("tflite", "xnnpack")


# ----------------------------------------------------------------------------- numpy reference
def round_half_away(x: float) -> int:
    """C ``std::round``: halves away from zero (Python's ``round`` is half-to-even)."""
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def round_half_away_np(v) -> np.ndarray:
    """C ``round`` of a float64 array: ``floor(|v|)``, plus one where ``|v| - floor(|v|) >= 0.5``
    (exact, unlike ``floor(v + 0.5)``, which is off for a double just under .5); as int64."""
    v = np.asarray(v, np.float64)
    a = np.abs(v)
    r = np.floor(a)
    r = r + (a - r >= 0.5)
    return np.where(v < 0, -r, r).astype(np.int64)


def quantize_multiplier(real: float) -> Tuple[int, int]:
    """TFLite ``QuantizeMultiplier(double)``: ``real ~= q * 2**(shift-31)``; returns ``(q, shift)``."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    m, e = math.frexp(real)
    q = round_half_away(m * (1 << 31))
    if q == (1 << 31):
        q //= 2
        e += 1
    if e < -31:
        return 0, 0
    return int(q), int(e)


def quantize_multipliers(reals) -> Tuple[np.ndarray, np.ndarray]:
    """Vector version: int32 arrays ``(q, shift)``."""
    qs, ss = zip(*(quantize_multiplier(float(r)) for r in np.asarray(reals, np.float64).ravel()))
    return np.asarray(qs, np.int32), np.asarray(ss, np.int32)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 arrays (broadcasting)."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    s = ab + nudge
    # C division truncates toward zero
    q = np.where(s >= 0, s // (1 << 31), -((-s) // (1 << 31)))
    q = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, q)
    return q.astype(np.int32)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero."""
    x = np.asarray(x, np.int32)
    e = np.asarray(exponent, np.int32)
    mask = (np.left_shift(np.int64(1), e.astype(np.int64)) - 1).astype(np.int32)
    remainder = np.bitwise_and(x, mask)
    threshold = np.right_shift(mask, 1) + (x < 0).astype(np.int32)
    return (np.right_shift(x, e) + (remainder > threshold).astype(np.int32)).astype(np.int32)


def multiply_by_quantized_multiplier(x, q, shift) -> np.ndarray:
    """TFLite ``MultiplyByQuantizedMultiplier`` (double rounding), per tensor or broadcast per channel."""
    x = np.asarray(x, np.int32)
    shift = np.asarray(shift, np.int32)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    # x * (1 << left) wraps in int32 like the C code does in practice
    xl = (x.astype(np.int64) << left.astype(np.int64)).astype(np.int32)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(xl, q), right)


def linear_multipliers(s_in: float, s_w, s_out: float, float_product: bool) -> Tuple[np.ndarray, np.ndarray]:
    """TFLite's ``(q, shift)`` of a convolution or fully connected layer, one per entry of ``s_w``:
    ``s_in * s_w / s_out`` in double, or (``float_product``) with ``s_in * s_w`` rounded to float32
    first, as TFLite's legacy scalar multiplier (see the module's docstring for which layers)."""
    s_w = np.asarray(s_w, np.float32)
    if float_product:
        product = (np.float32(s_in) * s_w).astype(np.float64)
    else:
        product = np.float64(np.float32(s_in)) * s_w.astype(np.float64)
    return quantize_multipliers(product / np.float64(np.float32(s_out)))


def fc_reference_scales(s_in: float, s_w, s_out: float) -> np.ndarray:
    """The double scale of TFLite's reference FULLY_CONNECTED, one per entry of ``s_w``:
    ``double(s_in) * double(s_w) / double(s_out)`` (``reference/fully_connected.h``,
    ``reference/integer_ops/fully_connected.h``: uint8, int8 per tensor and per channel)."""
    s_w = np.asarray(s_w, np.float32).astype(np.float64)
    return np.float64(np.float32(s_in)) * s_w / np.float64(np.float32(s_out))


def requantize_f64_np(acc, scale, zp_out, qmin, qmax, out_dtype="uint8") -> np.ndarray:
    """TFLite's reference fully connected requantization: ``clamp(int32(round(double(acc) *
    scale)) + zp_out)``, ``round`` = C ``round`` (halves away from zero)."""
    v = np.asarray(acc, np.int64).astype(np.float64) * np.asarray(scale, np.float64)
    return np.clip(round_half_away_np(v) + int(zp_out), qmin, qmax).astype(out_dtype)


def requantize_np(acc, q, shift, zp_out, qmin, qmax, out_dtype="uint8") -> np.ndarray:
    """``clamp(MBQM(acc, q, shift) + zp_out, qmin, qmax)`` cast to ``out_dtype``."""
    y = multiply_by_quantized_multiplier(acc, q, shift).astype(np.int64) + int(zp_out)
    return np.clip(y, qmin, qmax).astype(out_dtype)


def xnnpack_scale(s_in, s_w, s_out) -> np.ndarray:
    """XNNPACK's requantization scale, float32 arithmetic: ``s_in * s_w / s_out``."""
    return (np.float32(s_in) * np.asarray(s_w, np.float32)) / np.float32(s_out)


def requantize_fp32_np(acc, scale_f32, zp_out, qmin, qmax, out_dtype="uint8") -> np.ndarray:
    """XNNPACK fp32 requantization: ``clamp(rint_even(float32(acc) * scale) + zp, qmin, qmax)``."""
    v = np.asarray(acc, np.int32).astype(np.float32) * np.asarray(scale_f32, np.float32)
    y = np.rint(v).astype(np.int64) + int(zp_out)  # np.rint: round half to even
    return np.clip(y, qmin, qmax).astype(out_dtype)


def xnnpack_mean_np(sums, zp_in: int, n: int, fscale: float, zp_out: int, qmin: int, qmax: int) -> np.ndarray:
    """XNNPACK's MEAN of the raw integer ``sums`` of ``n`` values: ``rne(f32(sum)·scale + bias)`` with
    the zero points folded into one float32 ``bias = zp_out - f32(zp_in·n)·scale`` (subtracting
    ``zp_in·n`` from the sum first rounds differently on a few sums)."""
    f = np.float32
    bias = f(f(zp_out) - f(f(zp_in * n) * f(fscale)))
    return np.clip(np.rint(f(f(np.asarray(sums, f) * f(fscale)) + bias)), qmin, qmax)


def mean_multiplier(s_in: float, s_out: float, n: int) -> Tuple[int, int]:
    """TFLite MEAN (``reference_ops::QuantizedMeanOrSum`` / ``reference_integer_ops::Mean``):
    the multiplier of ``s_in / s_out`` with ``1/n`` folded in *in integers*:
    ``sh = min(floor(log2 n), 32, 31 + shift)``, ``q' = (q << sh) // n``, ``shift' = shift - sh``.
    The output is ``clamp(MBQM(sum(x - zp_in), q', shift') + zp_out)``.  (Quantizing
    ``s_in / (s_out * n)`` directly differs by one unit on ~1% of outputs.)
    """
    q, shift = quantize_multiplier(np.float64(np.float32(s_in)) / np.float64(np.float32(s_out)))
    sh = min(int(n).bit_length() - 1, 32, 31 + shift)
    return int((q << sh) // int(n)), int(shift - sh)


def rescale_fp32_params(s_in: float, zp_in: int, s_out: float) -> Tuple[float, float]:
    """TFLite's legacy uint8 CONCATENATION of an input whose quantization differs from the
    output's (``reference_ops::ConcatenationWithScaling``), float32 throughout:
    ``scale = s_in * (1 / s_out)`` and ``bias = -zp_in * scale``; returns ``(scale, bias)``."""
    scale = np.float32(s_in) * (np.float32(1.0) / np.float32(s_out))
    return float(scale), float(np.float32(-int(zp_in)) * scale)


def rescale_fp32_np(x, scale: float, bias: float, zp_out: int, qmin: int, qmax: int, out_dtype="uint8") -> np.ndarray:
    """``clamp(round_half_away(float32(x) * scale + bias) + zp_out)``, each float32 operation
    rounded on its own (no fused multiply-add), as TFLite computes it."""
    v = np.asarray(x, np.float32) * np.float32(scale)
    v = v + np.float32(bias)
    return np.clip(round_half_away_np(v) + int(zp_out), qmin, qmax).astype(out_dtype)


def xnnpack_convert_multiplier(s_in: float, s_out: float):
    """XNNPACK's QUANTIZE between two scales of one 8-bit type (``qs8-vcvt``/``qu8-vcvt``): the
    multiplier ``lrintf(256 * (s_in / s_out))`` (float32, ties to even), or None where the delegate
    leaves the op to TFLite (a ratio outside ``[1/256, 128]``)."""
    ratio = np.float32(s_in) / np.float32(s_out)
    if not (np.float32(1.0 / 256.0) <= ratio <= np.float32(128.0)):
        return None
    return int(np.rint(np.float32(256.0) * ratio))


def xnnpack_convert_np(x, m: int, zp_in: int, zp_out: int, qmin: int, qmax: int, out_dtype="uint8") -> np.ndarray:
    """XNNPACK's convert: ``clamp(((zp_out << 8) - m * zp_in + 128 + x * m) >> 8)`` (arithmetic shift)."""
    acc = (int(zp_out) << 8) - int(m) * int(zp_in) + 0x80 + np.asarray(x, np.int64) * int(m)
    return np.clip(acc >> 8, qmin, qmax).astype(out_dtype)


# TFLite ADD (int8 / uint8): both inputs are brought to a common scale 2*max(s1, s2) with
# 20 bits of headroom (left_shift = 20), then summed and rescaled to the output scale.
ADD_LEFT_SHIFT = 20


def add_params(s1: float, s2: float, s_out: float):
    """TFLite ``PrepareGeneralSubOp``/``Add`` quantization parameters.

    Returns ``((q1, sh1), (q2, sh2), (qo, sho))``; multipliers are < 1 so shifts are <= 0.
    """
    s1, s2, s_out = float(np.float32(s1)), float(np.float32(s2)), float(np.float32(s_out))
    twice_max = 2.0 * max(s1, s2)
    r1 = s1 / twice_max
    r2 = s2 / twice_max
    ro = twice_max / ((1 << ADD_LEFT_SHIFT) * s_out)
    return quantize_multiplier(r1), quantize_multiplier(r2), quantize_multiplier(ro)


def quantized_add_np(a, za, sa, b, zb, sb, zo, so, qmin, qmax, out_dtype="uint8") -> np.ndarray:
    """TFLite reference quantized ADD (``reference_ops::AddElementwise``) on numpy arrays."""
    (q1, sh1), (q2, sh2), (qo, sho) = add_params(sa, sb, so)
    a1 = (np.asarray(a, np.int32) - np.int32(za)) * np.int32(1 << ADD_LEFT_SHIFT)
    b1 = (np.asarray(b, np.int32) - np.int32(zb)) * np.int32(1 << ADD_LEFT_SHIFT)
    sa_ = multiply_by_quantized_multiplier(a1, q1, sh1)
    sb_ = multiply_by_quantized_multiplier(b1, q2, sh2)
    raw = multiply_by_quantized_multiplier(sa_ + sb_, qo, sho).astype(np.int64) + int(zo)
    return np.clip(raw, qmin, qmax).astype(out_dtype)


# ----------------------------------------------------------------------------- TIR expressions
def _tir():
    from tvm import tirx

    return tirx


def fence_f32_tir(e):
    """The float32 ``e`` computed and rounded on its own, behind ``llvm.arithmetic.fence``: LLVM may
    neither contract it into a fused multiply-add nor reassociate it, as TFLite's and XNNPACK's
    float32 steps round one by one (an FMA rounds once: a value on a rounding edge moves a unit)."""
    return _tir().call_llvm_pure_intrin("float32", "llvm.arithmetic.fence", e)


def _i64(v):
    tirx = _tir()
    return tirx.const(v, "int64") if isinstance(v, int) else v.astype("int64")


def _i32(v):
    tirx = _tir()
    return tirx.const(v, "int32") if isinstance(v, int) else v


def srdhm_tir(a, b):
    """``SaturatingRoundingDoublingHighMul`` on int32 PrimExprs (``b`` may be a python int), as
    an int64 PrimExpr: ``(a*b + 2**30) >> 31`` with an arithmetic shift.

    That is gemmlowp's ``(a*b + nudge) / 2**31`` (C division) for every ``a*b``: for
    ``ab >= 0`` the nudge is ``2**30`` and truncation is the floor; for ``ab < 0`` the nudge is
    ``1 - 2**30`` and truncating ``v / 2**31`` of a negative ``v`` is ``(v + 2**31 - 1) >> 31``,
    which is ``(ab + 2**30) >> 31`` again. No select, no division: it vectorizes (``vpmuldq``).
    The saturating case ``a == b == INT32_MIN`` cannot occur with a multiplier from
    :func:`quantize_multiplier` (``b`` is in ``[2**30, 2**31)``), so it is not checked.
    """
    tirx = _tir()
    return tirx.shift_right(_i64(a) * _i64(b) + tirx.const(1 << 30, "int64"), tirx.const(31, "int64"))


def rdbpot_tir(x, exponent):
    """``RoundingDivideByPOT`` (round half away from zero) of an int32/int64 PrimExpr by
    ``2**exponent`` (a python int or an int32 PrimExpr), as an int64 PrimExpr:
    ``(x + 2**(e-1) - (x < 0)) >> e``, the ``- (x < 0)`` only when ``e > 0``.

    gemmlowp adds 1 to ``x >> e`` when the remainder exceeds ``(2**e - 1) >> 1`` plus one for
    negative ``x``: for ``x >= 0`` that is ``(x + 2**(e-1)) >> e``, for ``x < 0``
    ``(x + 2**(e-1) - 1) >> e``.
    """
    tirx = _tir()
    x = _i64(x)
    if isinstance(exponent, int):
        if exponent == 0:
            return x
        nudge = tirx.const(1 << (exponent - 1), "int64") + tirx.shift_right(x, tirx.const(63, "int64"))
        return tirx.shift_right(x + nudge, tirx.const(exponent, "int64"))
    e = _i64(exponent)
    one = tirx.const(1, "int64")
    half = tirx.shift_right(tirx.shift_left(one, e), one)
    # -1 when x < 0 and e > 0, else 0 (both shifts arithmetic)
    neg = tirx.bitwise_and(tirx.shift_right(x, tirx.const(63, "int64")),
                           tirx.shift_right(tirx.const(0, "int64") - e, tirx.const(63, "int64")))
    return tirx.shift_right(x + half + neg, e)


def mbqm_tir(x, q, shift):
    """``MultiplyByQuantizedMultiplier`` on an int32 PrimExpr, as an int32 PrimExpr.

    ``q``/``shift`` are python ints (per tensor: the shifts are resolved at compile time)
    or int32 PrimExprs (per channel: loaded from constant vectors). The left shift is done in
    int64 (TFLite's int32 ``x * (1 << left)`` never overflows for the multipliers it makes).
    """
    tirx = _tir()
    if isinstance(shift, int):
        left, right = max(shift, 0), max(-shift, 0)
        x = _i64(x)
        if left:
            x = tirx.shift_left(x, tirx.const(left, "int64"))
        return rdbpot_tir(srdhm_tir(x, q), right).astype("int32")
    zero = tirx.const(0, "int32")
    left = tirx.max(shift, zero)
    right = tirx.max(zero - shift, zero)
    x = tirx.shift_left(_i64(x), _i64(left))
    return rdbpot_tir(srdhm_tir(x, q), right).astype("int32")


def clamp_tir(y, lo: int, hi: int):
    """``min(max(y, lo), hi)`` of an int32 PrimExpr, with python int bounds."""
    tirx = _tir()
    return tirx.max(tirx.min(y, tirx.const(int(hi), "int32")), tirx.const(int(lo), "int32"))


def _round_half_away_tir(v):
    """:func:`round_half_away_np` of a float64 PrimExpr, as a float64 PrimExpr."""
    tirx = _tir()
    zero, one, half = (tirx.const(c, "float64") for c in (0.0, 1.0, 0.5))
    a = tirx.Select(v < zero, zero - v, v)
    r = tirx.floor(a)
    r = r + tirx.Select(a - r >= half, one, zero)
    return tirx.Select(v < zero, zero - r, r)


def requantize_tir(acc, q, shift, zp_out: int, qmin: int, qmax: int, out_dtype: str):
    """``clamp(MBQM(acc, q, shift) + zp_out, qmin, qmax).astype(out_dtype)`` as a PrimExpr."""
    tirx = _tir()
    return clamp_tir(mbqm_tir(acc, q, shift) + tirx.const(int(zp_out), "int32"), qmin, qmax).astype(out_dtype)


def xnnpack_convert_tir(x, m: int, zp_in: int, zp_out: int, qmin: int, qmax: int, out_dtype: str):
    """:func:`xnnpack_convert_np` as a PrimExpr (``x``: the 8-bit input element)."""
    tirx = _tir()
    acc = tirx.const((int(zp_out) << 8) - int(m) * int(zp_in) + 0x80, "int32") + x.astype("int32") * int(m)
    return clamp_tir(tirx.shift_right(acc, tirx.const(8, "int32")), qmin, qmax).astype(out_dtype)


def rescale_fp32_tir(x, scale: float, bias: float, zp_out: int, qmin: int, qmax: int, out_dtype: str):
    """:func:`rescale_fp32_np` as a PrimExpr. The float32 product and sum are formed in float64
    (exact for an 8-bit ``x`` and a float32 ``scale``) and rounded to float32 by a cast after each
    step, so that LLVM cannot contract them into a fused multiply-add that rounds once."""
    tirx = _tir()
    f32, f64 = "float32", "float64"
    p = (x.astype(f64) * tirx.const(float(np.float32(scale)), f64)).astype(f32)
    v = (p.astype(f64) + tirx.const(float(np.float32(bias)), f64)).astype(f32).astype(f64)
    y = _round_half_away_tir(v).astype("int32") + tirx.const(int(zp_out), "int32")
    return clamp_tir(y, qmin, qmax).astype(out_dtype)


def requantize_f64_tir(acc, scale, zp_out: int, qmin: int, qmax: int, out_dtype: str):
    """:func:`requantize_f64_np` as a PrimExpr (``scale``: a python float or a float64 element).
    Rounds as C ``round`` (:func:`round_half_away_np`); clamped in double first, so the cast
    cannot overflow (the bounds are integers, so clamping commutes with the rounding)."""
    tirx = _tir()
    f64 = "float64"
    if isinstance(scale, float):
        scale = tirx.const(scale, f64)
    v = acc.astype(f64) * scale
    lo = tirx.const(float(qmin - int(zp_out)), f64)
    hi = tirx.const(float(qmax - int(zp_out)), f64)
    v = tirx.max(tirx.min(v, hi), lo)
    return (_round_half_away_tir(v).astype("int32") + tirx.const(int(zp_out), "int32")).astype(out_dtype)


def rint_int32_tir(v):
    """``v`` (float32) rounded half to even into int32, as :func:`numpy.rint`: one conversion in the
    default rounding mode (``llvm.lrint``: ``vcvtps2dq`` on x86, ``frintx`` + ``fcvtzs`` on Arm),
    where ``nearbyint`` then a cast takes a rounding and a truncating conversion. ``v`` must be
    within int32 (the callers clamp first)."""
    return _tir().call_llvm_pure_intrin("int32", "llvm.lrint", v)


def requantize_fp32_tir(acc, scale, zp_out: int, qmin: int, qmax: int, out_dtype: str):
    """XNNPACK fp32 requantization as a PrimExpr (rounded half to even, :func:`rint_int32_tir`)."""
    tirx = _tir()
    if isinstance(scale, float):
        scale = tirx.const(float(np.float32(scale)), "float32")
    v = acc.astype("float32") * scale
    # clamp in float first so the float->int conversion cannot overflow
    lo = tirx.const(float(qmin - int(zp_out)), "float32")
    hi = tirx.const(float(qmax - int(zp_out)), "float32")
    v = tirx.max(tirx.min(v, hi), lo)
    y = rint_int32_tir(v) + tirx.const(int(zp_out), "int32")
    return y.astype(out_dtype)
