"""Integer HARD_SWISH: TFLite's fixed-point kernel, as a 256-entry table.

TVM's importer writes a quantized HARD_SWISH as ``quantize(d * clip(d + 3, 0, 6) / 6)`` of
``d = dequantize(x)``: float arithmetic, which parts from TFLite's int16 fixed-point kernel by a
unit on a few input codes (MobileNetV3 then drifts by up to 5 units at its output). An 8-bit input
has 256 values, so the kernel is :func:`hard_swish_np` (``reference_ops::HardSwish`` with the
parameters ``HardSwishPrepare`` computes) evaluated on each at compile time, and the TIR kernel a
lookup. TFLite's reference, optimized and XNNPACK kernels agree on every code, so both modes use it.
"""

from __future__ import annotations

import numpy as np
from tvm import relax

from . import requant as rq
from .fixedpoint import rounding_divide_by_pot, saturate16, srdhm16
from .kernels_elementwise import lookup_te
from .params import OutputQuant
from .patterns import RewriteContext, op_name, prim_value, register_int8, require

__all__ = ["hard_swish_np", "hard_swish_table"]

_I16 = (-(1 << 15), (1 << 15) - 1)


def _doubling_high_mul16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's ``SaturatingDoublingHighMul``: the high half of ``2ab``, rounded toward zero."""
    ab = a.astype(np.int64) * b.astype(np.int64)
    q = np.where(ab >= 0, ab // (1 << 15), -((-ab) // (1 << 15)))
    return np.where((a == _I16[0]) & (b == _I16[0]), _I16[1], q)


def _int16_multiplier(real: float) -> tuple[int, int]:
    """``QuantizeMultiplier`` then ``DownScaleInt32ToInt16Multiplier``: ``(q16, exponent)``."""
    q, shift = rq.quantize_multiplier(real)
    if q >= (1 << 31) - 1 - (1 << 15):
        return _I16[1], shift
    return (q + (1 << 15)) >> 16, shift


def hard_swish_np(x: np.ndarray, in_scale: float, in_zp: int, out_scale: float, out_zp: int,
                  dtype: str) -> np.ndarray:
    """TFLite's quantized ``HardSwish`` (reference kernel) on the integers ``x``."""
    f32 = np.float32
    hires = f32(1.0 / 128.0) * f32(in_scale)
    out_q, out_exp = _int16_multiplier(float(hires / f32(out_scale)))
    relu_q, relu_exp = _int16_multiplier(float(hires / f32(3.0 / 32768.0)))
    value = (x.astype(np.int64) - in_zp) * 128  # on the high-resolution input scale: fits int16
    preshift = srdhm16(value, out_q)
    reluish = value
    if relu_exp > 0:
        reluish = saturate16(reluish * (1 << (relu_exp - 1)))
    reluish = srdhm16(reluish, relu_q)
    if relu_exp > 0:
        reluish = saturate16(reluish * 2)
    if relu_exp < 0:
        reluish = rounding_divide_by_pot(reluish, -relu_exp)
    reluish = (reluish + (1 << 15)) >> 1
    out = rounding_divide_by_pot(_doubling_high_mul16(reluish, preshift), -out_exp) + out_zp
    info = np.iinfo(dtype)
    return np.clip(out, info.min, info.max).astype(dtype)


def hard_swish_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int, dtype: str) -> np.ndarray:
    """The output for each input code, indexed by ``code - min(dtype)``."""
    info = np.iinfo(dtype)
    codes = np.arange(info.min, info.max + 1, dtype=np.int64)
    return hard_swish_np(codes, in_scale, in_zp, out_scale, out_zp, dtype)


def _is_hard_swish_of(graph, f: relax.Call):
    """``d * clip(d + 3, 0, 6) / 6`` as the importer writes it: ``d``, else NoMatch."""
    require(abs(float(graph.scalar(f.args[1])) - 6.0) < 1e-6, "divide by 6")
    mul = graph.val(f.args[0])
    require(op_name(mul) == "relax.multiply", "hard swish multiply")
    d, clip = mul.args[0], graph.val(mul.args[1])
    require(op_name(clip) == "relax.clip" and prim_value(clip.args[1]) == 0.0 and prim_value(clip.args[2]) == 6.0,
            "hard swish relu6")
    add = graph.val(clip.args[0])
    require(op_name(add) == "relax.add" and graph.val(add.args[0]).same_as(graph.val(d))
            and abs(float(graph.scalar(add.args[1])) - 3.0) < 1e-6, "hard swish x + 3")
    return d


@register_int8("relax.divide", kind="hard_swish")
def hard_swish(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    x, xq = ctx.graph.deq_act(_is_hard_swish_of(ctx.graph, f))
    require(xq.dtype == out.dtype and out.full_range, "hard swish between one 8-bit type, no clamp")
    table = hard_swish_table(xq.scale, xq.zero_point, out.scale, out.zero_point, out.dtype)
    return ctx.call_te(lookup_te, ctx.remap(x), relax.const(table), offset=int(np.iinfo(out.dtype).min),
                       name="int8_hard_swish")
