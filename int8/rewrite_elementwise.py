"""Integer rewrite of the elementwise quantized ops: ADD of two quantized tensors (one may be a
constant), numpy-style broadcasting, the fused float activation folded into the clamp."""

from __future__ import annotations

import numpy as np
from tvm import relax

from .kernels_elementwise import add_te
from .params import AddParams, OutputQuant, QuantParams
from .patterns import RewriteContext, register_int8, require, shape_of

__all__ = ["add", "operand", "xnnpack_takes_add"]

# The XNNPACK delegate takes a quantized ADD only when each input-to-output scale ratio is in
# [2**-10, 2**8); TFLite runs any other with its own kernel, and so does the lowering.
XNNPACK_ADD_RATIO = (2.0 ** -10, 2.0 ** 8)


def xnnpack_takes_add(a_scale: float, b_scale: float, out_scale: float) -> bool:
    low, high = XNNPACK_ADD_RATIO
    return all(low <= np.float32(s) / np.float32(out_scale) < high for s in (a_scale, b_scale))


@register_int8("relax.add")
def add(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    """TFLite's ADD requantization (:func:`.requant.add_params`), or XNNPACK's
    (``mode="xnnpack"``: 20-bit integer multipliers, arithmetic shift with a rounding bias)."""
    a, b = f.args
    xa, qa = operand(ctx, a)
    xb, qb = operand(ctx, b)
    shape = tuple(int(d) for d in np.broadcast_shapes(tuple(shape_of(a)), tuple(shape_of(b))))
    mode = ctx.mode if ctx.mode != "xnnpack" or xnnpack_takes_add(qa.scale, qb.scale, out.scale) else "tflite"
    params = AddParams(qa, qb, out, mode, shape)
    xa = ctx.remap(xa) if isinstance(xa, relax.Var) else xa
    xb = ctx.remap(xb) if isinstance(xb, relax.Var) else xb
    return ctx.call_te(add_te, xa, xb, p=params, name="int8_add")


def operand(ctx: RewriteContext, e):
    """An operand: a dequantized activation, or a dequantized constant (per-tensor)."""
    if not ctx.graph.is_const_deq(e):
        return ctx.graph.deq_act(e)
    q, s, z = ctx.graph.deq_const(e)
    require(np.all(s == s.flat[0]) and np.all(z == z.flat[0]), "per-axis constant operand")
    return relax.const(q), QuantParams(float(s.flat[0]), int(z.flat[0]), str(q.dtype))
