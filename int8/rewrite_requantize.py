"""Integer rewrites of the ops that only move values between quantizations:
``quantize(dequantize(x))`` (TFLite QUANTIZE, e.g. uint8 -> int8) and concatenation."""

from __future__ import annotations

import numpy as np
from tvm import relax

from . import requant as rq
from .kernels_elementwise import requantize_te
from .params import INT_RANGES, OutputQuant, QuantParams, RequantParams
from .patterns import RewriteContext, register_int8, require

__all__ = ["concat", "dequantize"]


def _requantize(ctx: RewriteContext, x, xq: QuantParams, out: OutputQuant, identity: bool):
    q, sh = rq.quantize_multiplier(np.float64(xq.scale) / np.float64(out.scale))
    params = RequantParams(xq.zero_point, q, sh, out, identity)
    return ctx.call_te(requantize_te, ctx.remap(x), p=params, name="int8_requantize")


@register_int8("relax.dequantize", kind="requantize")
def dequantize(ctx: RewriteContext, deq: relax.Call, out: OutputQuant):
    """Requantize: TFLite's fixed-point multiplier, or only the zero point when the scales agree."""
    x, xq = ctx.graph.deq_act(deq)
    return _requantize(ctx, x, xq, out, identity=(xq.scale == out.scale))


@register_int8("relax.concat")
def concat(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    """Inputs with the output's quantization are copied (the int8 TFLite spec requires that);
    others are requantized with the fixed-point multiplier (TFLite's legacy uint8 kernel
    rescales those in float, so they may differ by one unit; not tested)."""
    tup = ctx.graph.val(f.args[0])
    require(isinstance(tup, relax.Tuple), "concat tuple")
    full = OutputQuant(out.scale, out.zero_point, out.dtype, *INT_RANGES[out.dtype])
    parts = []
    for e in tup.fields:
        x, xq = ctx.graph.deq_act(e)
        if xq.scale == out.scale and xq.zero_point == out.zero_point and xq.dtype == out.dtype:
            parts.append(ctx.remap(x))
        else:
            parts.append(ctx.builder.emit(_requantize(ctx, x, xq, full, identity=False)))
    y = ctx.builder.emit(relax.op.concat(parts, axis=int(f.attrs.axis)))
    if not out.full_range:
        return relax.op.clip(y, float(out.qmin), float(out.qmax))
    return y
