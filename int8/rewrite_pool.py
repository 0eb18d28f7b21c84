"""Integer rewrites of the pooling ops: MEAN over axes (quantized) and average pooling (which the
importer already computes on int32 between two casts)."""

from __future__ import annotations

import numpy as np
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

from . import requant as rq
from .kernels_pool import avg_pool2d_te, mean_te
from .params import MeanParams, OutputQuant, PoolParams
from .patterns import RewriteContext, dtype_of, register_int8, require, shape_of

__all__ = ["avg_pool2d", "mean"]


@register_int8("relax.mean")
def mean(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    """``sum(x - zp_in)``, then TFLite's multiplier for ``s_in / s_out`` with ``1/N`` folded in by
    integer division (:func:`.requant.mean_multiplier`), or XNNPACK's float32 scale."""
    x, xq = ctx.graph.deq_act(f.args[0])
    shape = shape_of(x)
    axes = f.attrs.axis
    axes = tuple(range(len(shape))) if axes is None else tuple(int(a) % len(shape) for a in axes)
    n = int(np.prod([shape[a] for a in axes]))
    q, sh = rq.mean_multiplier(xq.scale, out.scale, n)
    # XNNPACK's MEAN: float32 scale s_in / (s_out * n), round half to even
    fscale = float(np.float32(xq.scale) / (np.float32(out.scale) * np.float32(n)))
    params = MeanParams(axes, bool(f.attrs.keepdims), xq.zero_point, n, q, sh, fscale, out, ctx.mode)
    return ctx.call_te(mean_te, ctx.remap(x), p=params, name="int8_mean")


_INT32_IN = is_op("relax.astype")(wildcard())
_POOL = is_op("relax.nn.avg_pool2d")(_INT32_IN)
_CAST_POOL = is_op("relax.astype")(_POOL)


@register_int8("relax.nn.avg_pool2d", root="relax.astype")
def avg_pool2d(ctx: RewriteContext, call: relax.Call):
    """``astype(avg_pool2d(astype(x, "int32")), "uint8" | "int8")`` (NHWC): the window sum and
    TFLite's rounding division, in one kernel."""
    m = _CAST_POOL.extract_matched_expr(call, ctx.graph.var2val)
    require(m is not None, "no avg pool")
    out_dtype = str(call.attrs.dtype)
    require(out_dtype in ("uint8", "int8"), "avgpool out")
    inner = m[_INT32_IN]
    require(str(inner.attrs.dtype) == "int32", "avgpool input")
    x = inner.args[0]
    require(dtype_of(x) in ("uint8", "int8"), "avgpool dtype")
    at = m[_POOL].attrs
    require(at.layout == "NHWC" and not bool(at.ceil_mode), "avgpool layout")
    require(all(int(d) == 1 for d in at.dilation), "dilation")
    params = PoolParams(tuple(int(v) for v in at.pool_size), tuple(int(v) for v in at.strides),
                        tuple(int(v) for v in at.padding), out_dtype, bool(at.count_include_pad))
    return ctx.call_te(avg_pool2d_te, ctx.remap(x), p=params, name="int8_avg_pool2d")
