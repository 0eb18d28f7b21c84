"""Integer rewrites of the ops that only move values between quantizations:
``quantize(dequantize(x))`` (TFLite QUANTIZE, e.g. uint8 -> int8) and concatenation."""

from __future__ import annotations

import numpy as np
from tvm import relax

from . import requant as rq
from .kernels_elementwise import requantize_te, rescale_te
from .params import INT_RANGES, OutputQuant, QuantParams, RequantParams, RescaleParams
from .patterns import RewriteContext, register_int8, require

__all__ = ["concat", "dequantize"]


def _requantize(ctx: RewriteContext, x, xq: QuantParams, out: OutputQuant, identity: bool):
    q, sh = rq.quantize_multiplier(np.float64(xq.scale) / np.float64(out.scale))
    xnn = None
    # XNNPACK's convert only for a plain QUANTIZE: a standalone RELU that changes scale runs in
    # TFLite's own kernel (the delegate declines it), with TFLite's multiplier
    if ctx.mode == "xnnpack" and not identity and xq.dtype == out.dtype and not out.activation:
        xnn = rq.xnnpack_convert_multiplier(xq.scale, out.scale)
    params = RequantParams(xq.zero_point, q, sh, out, identity, xnn)
    return ctx.call_te(requantize_te, ctx.remap(x), p=params, name="int8_requantize")


@register_int8("relax.dequantize", kind="requantize")
def dequantize(ctx: RewriteContext, deq: relax.Call, out: OutputQuant):
    """Requantize: TFLite's fixed-point multiplier, or only the zero point when the scales agree;
    with ``mode="xnnpack"``, between two scales of one type and without a folded activation,
    XNNPACK's 8-bit convert (the delegate takes those)."""
    x, xq = ctx.graph.deq_act(deq)
    return _requantize(ctx, x, xq, out, identity=(xq.scale == out.scale))


@register_int8("relax.concat")
def concat(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    """Inputs with the output's quantization are copied (the int8 TFLite spec requires that);
    others (uint8 models only) are rescaled in float32 as TFLite's legacy
    ``ConcatenationWithScaling`` does, which XNNPACK leaves to TFLite (:func:`.requant.rescale_fp32_np`)."""
    tup = ctx.graph.val(f.args[0])
    require(isinstance(tup, relax.Tuple), "concat tuple")
    full = OutputQuant(out.scale, out.zero_point, out.dtype, *INT_RANGES[out.dtype])
    parts = []
    for e in tup.fields:
        x, xq = ctx.graph.deq_act(e)
        if xq.scale == out.scale and xq.zero_point == out.zero_point and xq.dtype == out.dtype:
            parts.append(ctx.remap(x))
        else:
            scale, bias = rq.rescale_fp32_params(xq.scale, xq.zero_point, out.scale)
            parts.append(ctx.builder.emit(ctx.call_te(rescale_te, ctx.remap(x), p=RescaleParams(scale, bias, full),
                                                      name="int8_rescale")))
    y = ctx.builder.emit(relax.op.concat(parts, axis=int(f.attrs.axis)))
    if not out.full_range:
        return relax.op.clip(y, float(out.qmin), float(out.qmax))
    return y
