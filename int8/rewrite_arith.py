"""Integer LEAKY_RELU, SQUARED_DIFFERENCE and MUL, value for value what LiteRT computes.

TVM's importer writes them in the QDQ form (``leakyrelu``, ``(a - b)**2``, ``a * b`` on
dequantized floats), one unit from LiteRT on rounding edges. LiteRT runs:

- LEAKY_RELU: XNNPACK's qs8/qu8 ``vlrelu`` where the delegate takes it (8-bit fixed-point
  multipliers ``lrintf(256 * s_in / s_out)`` and ``lrintf(256 * s_in / s_out * alpha)``, a rounding
  bias, an arithmetic shift by 8; only for ratios in XNNPACK's range), else TFLite's kernel (one
  ``MultiplyByQuantizedMultiplier`` per sign). An 8-bit input has 256 values: the kernel is a table
  of :func:`leaky_relu_np` built at compile time, as HARD_SWISH's.
- SQUARED_DIFFERENCE: always TFLite's kernel (the delegate declines it): both inputs shifted left
  by 7 and rescaled to twice the larger input scale, the difference squared in int32, then one
  multiplier to the output (:func:`squared_difference_np`).
- MUL: XNNPACK's qs8/qu8 ``vmul`` where the delegate takes it (the product requantized in float32,
  which the QDQ form computes too: the ``xnnpack`` mode keeps it), else TFLite's kernel (the integer
  product, one fixed-point multiplier of ``float(s_a * s_b / s_out)``: :func:`mul_np`), which the
  ``tflite`` mode always uses.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
from tvm import relax, te

from . import requant as rq
from .kernels_elementwise import bcast_index, lookup_te, shifted_rescale_te
from .params import AddParams, OutputQuant
from .patterns import RewriteContext, register_int8, require, shape_of
from .rewrite_elementwise import operand

__all__ = ["leaky_relu_np", "mul_np", "mul_te", "squared_difference_np", "squared_difference_te"]

_LEFT_SHIFT = 7
_NEGATIVE_MIN = float.fromhex("-0x1.FFFC00p+6")  # XNNPACK's lowest negative-side scale


# ----------------------------------------------------------------------------- LEAKY_RELU
def _xnnpack_lrelu_multipliers(s_in: float, s_out: float, alpha: float):
    """XNNPACK's two multipliers, or None where its delegate leaves the node to TFLite."""
    positive = np.float32(s_in) / np.float32(s_out)
    negative = np.float32(positive * np.float32(alpha))
    if not (2.0 ** -8 <= positive <= 2.0 ** 7 and _NEGATIVE_MIN <= negative <= 2.0 ** 7
            and abs(negative) >= 2.0 ** -8):
        return None
    return int(np.rint(np.float32(256.0) * positive)), int(np.rint(np.float32(256.0) * negative))


def leaky_relu_np(x, s_in: float, zp_in: int, s_out: float, zp_out: int, alpha: float, dtype: str,
                  mode: str) -> np.ndarray:
    """LiteRT's quantized LEAKY_RELU of the integers ``x``: XNNPACK's (``mode="xnnpack"``, where
    its delegate takes the node) or TFLite's kernel."""
    info = np.iinfo(dtype)
    v = np.asarray(x, np.int64) - zp_in
    xnn = _xnnpack_lrelu_multipliers(s_in, s_out, alpha) if mode == "xnnpack" else None
    if xnn is not None:
        acc = (zp_out << 8) + 0x80 + v * np.where(v >= 0, xnn[0], xnn[1])
        out = acc >> 8
    else:
        f32 = np.float32
        identity = rq.quantize_multiplier(float(f32(s_in) / f32(s_out)))
        negative = rq.quantize_multiplier(float(f32(f32(s_in) * f32(alpha)) / f32(s_out)))
        out = np.where(v >= 0, rq.multiply_by_quantized_multiplier(v, *identity),
                       rq.multiply_by_quantized_multiplier(v, *negative)).astype(np.int64) + zp_out
    return np.clip(out, info.min, info.max).astype(dtype)


@register_int8("relax.nn.leakyrelu", kind="leakyrelu")
def leaky_relu(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    x, xq = ctx.graph.deq_act(f.args[0])
    require(xq.dtype == out.dtype and out.full_range, "leaky relu between one 8-bit type, no clamp")
    info = np.iinfo(out.dtype)
    codes = np.arange(info.min, info.max + 1, dtype=np.int64)
    table = leaky_relu_np(codes, xq.scale, xq.zero_point, out.scale, out.zero_point, float(f.attrs.alpha),
                          out.dtype, ctx.mode)
    return ctx.call_te(lookup_te, ctx.remap(x), relax.const(table), offset=int(info.min), name="int8_leaky_relu")


# ----------------------------------------------------------------------------- SQUARED_DIFFERENCE
def _squared_difference_multipliers(s1: float, s2: float, s_out: float) -> Tuple[Tuple[int, int], ...]:
    """TFLite's ``(q, shift)`` for each input and the output (``squared_difference.cc``'s Prepare)."""
    f32 = np.float32
    twice_max = np.float64(f32(2) * max(f32(s1), f32(s2)))
    m1 = rq.quantize_multiplier(float(np.float64(f32(s1)) / twice_max))
    m2 = rq.quantize_multiplier(float(np.float64(f32(s2)) / twice_max))
    mo = rq.quantize_multiplier(float(twice_max * twice_max / np.float64(f32(1 << (2 * _LEFT_SHIFT)) * f32(s_out))))
    return m1, m2, mo


def squared_difference_np(a, za: int, sa: float, b, zb: int, sb: float, zo: int, so: float, qmin: int, qmax: int,
                          dtype: str) -> np.ndarray:
    """TFLite's quantized SQUARED_DIFFERENCE of the integers ``a`` and ``b`` (broadcast)."""
    m1, m2, mo = _squared_difference_multipliers(sa, sb, so)
    va = rq.multiply_by_quantized_multiplier((np.asarray(a, np.int64) - za) << _LEFT_SHIFT, *m1).astype(np.int64)
    vb = rq.multiply_by_quantized_multiplier((np.asarray(b, np.int64) - zb) << _LEFT_SHIFT, *m2).astype(np.int64)
    out = rq.multiply_by_quantized_multiplier((va - vb) ** 2, *mo).astype(np.int64) + zo
    return np.clip(out, qmin, qmax).astype(dtype)


def squared_difference_te(a, b, p: AddParams):
    """:func:`squared_difference_np` as a TE kernel (one stage per rescaled input, as ADD's)."""
    m1, m2, mo = _squared_difference_multipliers(p.a.scale, p.b.scale, p.out.scale)
    shape, out = p.shape, p.out

    va = shifted_rescale_te(a, p.a.zero_point, _LEFT_SHIFT, m1, shape, "scaled_a")
    vb = shifted_rescale_te(b, p.b.zero_point, _LEFT_SHIFT, m2, shape, "scaled_b")

    def f(*i):
        diff = va[i] - vb[i]
        return rq.requantize_tir(diff * diff, *mo, out.zero_point, out.qmin, out.qmax, out.dtype)

    return te.compute(shape, f, name="squared_difference")


# ----------------------------------------------------------------------------- MUL
def _mul_multiplier(sa: float, sb: float, s_out: float) -> Tuple[int, int]:
    """TFLite's ``QuantizeMultiplier(s_a * s_b / s_out)``, the scales multiplied in float32."""
    f32 = np.float32
    return rq.quantize_multiplier(float(f32(f32(sa) * f32(sb)) / f32(s_out)))


def xnnpack_takes_mul(sa: float, sb: float, s_out: float) -> bool:
    """Whether XNNPACK's quantized MUL takes these scales (``product_output_scale`` in its range)."""
    ratio = np.float32(np.float32(sa) * np.float32(sb)) / np.float32(s_out)
    return 2.0 ** -16 <= ratio < 2.0 ** 8


def mul_np(a, za: int, sa: float, b, zb: int, sb: float, zo: int, so: float, qmin: int, qmax: int,
           dtype: str) -> np.ndarray:
    """TFLite's quantized MUL of the integers ``a`` and ``b`` (broadcast), clamped to ``[qmin, qmax]``."""
    prod = (np.asarray(a, np.int64) - za) * (np.asarray(b, np.int64) - zb)
    out = rq.multiply_by_quantized_multiplier(prod, *_mul_multiplier(sa, sb, so)).astype(np.int64) + zo
    return np.clip(out, qmin, qmax).astype(dtype)


def mul_te(a, b, p: AddParams):
    """:func:`mul_np` as a TE kernel."""
    q, shift = _mul_multiplier(p.a.scale, p.b.scale, p.out.scale)
    shape, out = p.shape, p.out

    def f(*idx):
        va = a[tuple(bcast_index(a, idx, shape))].astype("int32") - p.a.zero_point
        vb = b[tuple(bcast_index(b, idx, shape))].astype("int32") - p.b.zero_point
        return rq.requantize_tir(va * vb, q, shift, out.zero_point, out.qmin, out.qmax, out.dtype)

    return te.compute(shape, f, name="mul")


@register_int8("relax.multiply", kind="multiply")
def multiply(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    """The importer's SQUARED_DIFFERENCE (``d * d`` of ``d = dequantize(a) - dequantize(b)``), or a
    MUL of two quantized operands (one may be a constant) where LiteRT runs TFLite's kernel."""
    if ctx.graph.call(f.args[0], "relax.subtract") is not None:
        return squared_difference(ctx, f, out)
    (xa, qa), (xb, qb) = operand(ctx, f.args[0]), operand(ctx, f.args[1])
    require(qa.dtype == qb.dtype == out.dtype, "mul of one 8-bit type")
    require(ctx.mode == "tflite" or not xnnpack_takes_mul(qa.scale, qb.scale, out.scale),
            "XNNPACK's MUL: the QDQ form's float32 requantization")
    # a multiplier past 2**30 (scales like the detector's 1e-33 ones) overflows TFLite's own int32 shift
    require(_mul_multiplier(qa.scale, qb.scale, out.scale)[1] <= 30, "MUL multiplier out of range")
    shape = tuple(int(d) for d in np.broadcast_shapes(tuple(shape_of(f.args[0])), tuple(shape_of(f.args[1]))))
    xa = ctx.remap(xa) if isinstance(xa, relax.Var) else xa
    xb = ctx.remap(xb) if isinstance(xb, relax.Var) else xb
    return ctx.call_te(mul_te, xa, xb, p=AddParams(qa, qb, out, "tflite", shape), name="int8_mul")


def squared_difference(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    """``d * d`` of ``d = dequantize(a) - dequantize(b)``: the importer's SQUARED_DIFFERENCE."""
    lhs, rhs = (ctx.graph.val(arg) for arg in f.args)
    require(lhs.same_as(rhs), "not a square")
    diff = ctx.graph.call(f.args[0], "relax.subtract")
    require(diff is not None, "not a squared difference")
    (xa, qa), (xb, qb) = ctx.graph.deq_act(diff.args[0]), ctx.graph.deq_act(diff.args[1])
    require(qa.dtype == qb.dtype == out.dtype == "int8", "int8 squared difference")
    require(all(m[1] <= 30 for m in _squared_difference_multipliers(qa.scale, qb.scale, out.scale)),
            "SQUARED_DIFFERENCE multiplier out of range")
    shape = tuple(int(d) for d in np.broadcast_shapes(tuple(shape_of(diff.args[0])), tuple(shape_of(diff.args[1]))))
    params = AddParams(qa, qb, out, "tflite", shape)
    return ctx.call_te(squared_difference_te, ctx.remap(xa), ctx.remap(xb), p=params, name="int8_squared_difference")
