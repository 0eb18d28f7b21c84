"""TE kernels of the integer reductions: MEAN over axes and NHWC average pooling."""

from __future__ import annotations

import numpy as np
from tvm import te, tirx, topi

from . import requant as rq
from .params import INT_RANGES, MeanParams, PoolParams

__all__ = ["avg_pool2d_te", "mean_te"]


def mean_te(x, p: MeanParams):
    """``sum(x) - zp_x * n`` in int32, then one requantization: TFLite's multiplier for
    ``s_in / s_out`` with ``1/n`` folded in (:func:`.requant.mean_multiplier`), or XNNPACK's float32
    scale ``s_in / (s_out * n)``."""
    shape = [int(d) for d in x.shape]
    axes = p.axes
    red = {a: te.reduce_axis((0, shape[a]), f"r{a}") for a in axes}
    keep = [d for d in range(len(shape)) if d not in axes]
    acc_shape = [1 if d in axes else shape[d] for d in range(len(shape))] if p.keepdims else [shape[d] for d in keep]

    def acc_f(*idx):
        if p.keepdims:
            full = [red[d] if d in axes else idx[d] for d in range(len(shape))]
        else:
            it = iter(idx)
            full = [red[d] if d in axes else next(it) for d in range(len(shape))]
        return te.sum(x[tuple(full)].astype("int32"), axis=[red[a] for a in axes])

    acc = te.compute(acc_shape, acc_f, name="sum")
    off = p.zp_x * p.n
    out = p.out
    if p.mode == "xnnpack":  # rq.xnnpack_mean_np: the zero points in one float32 bias
        f32 = "float32"
        bias = np.float32(np.float32(out.zero_point) - np.float32(np.float32(off) * np.float32(p.fscale)))

        def xnn(*i):
            v = rq.fence_f32_tir(acc[i].astype(f32) * tirx.const(p.fscale, f32))
            v = tirx.nearbyint(v + tirx.const(float(bias), f32))
            v = tirx.min(tirx.max(v, tirx.const(float(out.qmin), f32)), tirx.const(float(out.qmax), f32))
            return v.astype("int32").astype(out.dtype)

        return te.compute(acc_shape, xnn, name="mean")
    return te.compute(acc_shape, lambda *i: rq.requantize_tir(acc[i] - off, p.q, p.shift, out.zero_point, out.qmin,
                                                              out.qmax, out.dtype), name="mean")


def avg_pool2d_te(x, p: PoolParams):
    """Integer window sum, then TFLite's rounding division ``(acc +- count/2) / count``
    (truncating); padding is excluded from the count unless ``count_include_pad``."""
    n, h, w, c = (int(d) for d in x.shape)
    fh, fw = p.pool
    sh, sw = p.strides
    pad = p.padding
    pt, pl = pad[0], pad[1]
    pb, pr = (pad[2], pad[3]) if len(pad) == 4 else (pad[0], pad[1])
    oh = (h + pt + pb - fh) // sh + 1
    ow = (w + pl + pr - fw) // sw + 1
    xp = topi.nn.pad(x, [0, pt, pl, 0], [0, pb, pr, 0], pad_value=0, name="pad") if (pt or pl or pb or pr) else x
    rh = te.reduce_axis((0, fh), "rh")
    rw = te.reduce_axis((0, fw), "rw")
    acc = te.compute((n, oh, ow, c), lambda b, i, j, k: te.sum(xp[b, i * sh + rh, j * sw + rw, k].astype("int32"),
                                                                axis=[rh, rw]), name="sum")

    def avg(b, i, j, k):
        if p.count_include_pad:
            cnt = tirx.const(fh * fw, "int32")
        else:
            hs = i * sh - pt
            ws = j * sw - pl
            ch = tirx.min(hs + fh, h) - tirx.max(hs, 0)
            cw = tirx.min(ws + fw, w) - tirx.max(ws, 0)
            cnt = (ch * cw).astype("int32")
        s = acc[b, i, j, k]
        half = tirx.truncdiv(cnt, 2)
        r = tirx.Select(s > 0, tirx.truncdiv(s + half, cnt), tirx.truncdiv(s - half, cnt))
        lo, hi = INT_RANGES[p.dtype]
        return tirx.max(tirx.min(r, hi), lo).astype(p.dtype)

    return te.compute((n, oh, ow, c), avg, name="avg")
