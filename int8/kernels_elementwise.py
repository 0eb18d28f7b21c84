"""TE kernels of the elementwise integer ops: quantized ADD (TFLite's or XNNPACK's scheme),
requantization of one tensor to another scale and zero point, and the 256-entry table lookup of
an 8-bit unary op (HARD_SWISH, LEAKY_RELU)."""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from . import requant as rq
from .params import AddParams, RequantParams, RescaleParams

__all__ = ["add_te", "bcast_index", "lookup_te", "requantize_te", "rescale_te", "shifted_rescale_te"]


def bcast_index(t, out_idx, out_shape):
    """``t``'s index at the output index ``out_idx`` under numpy broadcasting. A dimension of 1
    that the output has too (a batch of 1) keeps the output's variable, not 0: only then does
    TVM see an elementwise kernel, which Relax fuses into the convolution before it."""
    nd = len(t.shape)
    idx = out_idx[len(out_idx) - nd:]
    out = out_shape[len(out_shape) - nd:]
    return [0 if int(t.shape[d]) == 1 and int(out[d]) != 1 else idx[d] for d in range(nd)]


def _xnnpack_add_te(a, b, p: AddParams):
    """XNNPACK qs8/qu8 vadd: ``acc = bias + a*ma + b*mb; out = asr(acc, shift) + zp``."""
    out = p.out
    sa_o = np.float32(p.a.scale) / np.float32(out.scale)
    sb_o = np.float32(p.b.scale) / np.float32(out.scale)
    mx = max(abs(sa_o), abs(sb_o))
    exp = int((np.float32(mx).view(np.uint32) >> 23) & 0xFF) - 127
    shift = 20 - exp
    ma = int(np.rint(np.float32(sa_o) * np.float32(2.0 ** shift)))
    mb = int(np.rint(np.float32(sb_o) * np.float32(2.0 ** shift)))
    bias = (1 << (shift - 1)) - ma * p.a.zero_point - mb * p.b.zero_point
    zo = out.zero_point

    def f(*idx):
        va = a[tuple(bcast_index(a, idx, p.shape))].astype("int32")
        vb = b[tuple(bcast_index(b, idx, p.shape))].astype("int32")
        acc = tirx.const(bias, "int32") + va * ma + vb * mb
        y = tirx.shift_right(acc, tirx.const(shift, "int32"))
        y = rq.clamp_tir(y, out.qmin - zo, out.qmax - zo)
        return (y + zo).astype(out.dtype)

    return te.compute(p.shape, f, name="add")


def shifted_rescale_te(t, zero_point: int, left_shift: int, multiplier, shape, name: str):
    """``MBQM((t - zero_point) << left_shift, *multiplier)`` broadcast to ``shape``: one operand of
    TFLite's ADD or SQUARED_DIFFERENCE. One stage per requantization: nesting them in one
    expression duplicates subtrees (each MBQM uses its input several times) and blows up TIR
    simplification."""
    def f(*idx):
        v = t[tuple(bcast_index(t, idx, shape))].astype("int32") - zero_point
        return rq.mbqm_tir(v * (1 << left_shift), *multiplier)

    return te.compute(shape, f, name=name)


def add_te(a, b, p: AddParams):
    """Quantized ADD with numpy broadcasting: TFLite's (:func:`.requant.add_params`: both inputs
    rescaled with 20 bits of headroom, summed, rescaled) or, ``mode="xnnpack"``, XNNPACK's."""
    if p.mode == "xnnpack":
        return _xnnpack_add_te(a, b, p)
    out, shape = p.out, p.shape
    (q1, s1), (q2, s2), (qo, so) = rq.add_params(p.a.scale, p.b.scale, out.scale)
    sa = shifted_rescale_te(a, p.a.zero_point, rq.ADD_LEFT_SHIFT, (q1, s1), shape, "scaled_a")
    sb = shifted_rescale_te(b, p.b.zero_point, rq.ADD_LEFT_SHIFT, (q2, s2), shape, "scaled_b")
    return te.compute(shape, lambda *i: rq.requantize_tir(sa[i] + sb[i], qo, so, out.zero_point, out.qmin, out.qmax,
                                                          out.dtype), name="add")


def requantize_te(x, p: RequantParams):
    """``x`` (zero point ``zp_x``) requantized to ``p.out``; only re-offset and clamped when the
    scales are equal; XNNPACK's 8-bit convert when ``p.xnn_multiplier`` is set."""
    out = p.out

    def f(*idx):
        if p.xnn_multiplier is not None:
            return rq.xnnpack_convert_tir(x[idx], p.xnn_multiplier, p.zp_x, out.zero_point, out.qmin, out.qmax,
                                          out.dtype)
        v = x[idx].astype("int32") - p.zp_x
        if p.identity:
            return rq.clamp_tir(v + out.zero_point, out.qmin, out.qmax).astype(out.dtype)
        return rq.requantize_tir(v, p.q, p.shift, out.zero_point, out.qmin, out.qmax, out.dtype)

    return te.compute(x.shape, f, name="requantize")


def rescale_te(x, p: RescaleParams):
    """``x`` rescaled in float32 to ``p.out`` (:func:`.requant.rescale_fp32_tir`)."""
    out = p.out
    return te.compute(x.shape, lambda *i: rq.rescale_fp32_tir(x[i], p.scale, p.bias, out.zero_point, out.qmin, out.qmax,
                                                               out.dtype), name="rescale")


def lookup_te(x, table, offset: int):
    """``table[x - offset]`` elementwise (an 8-bit input indexes a 256-entry table)."""
    return te.compute(x.shape, lambda *i: table[x(*i).astype("int32") - offset], name="lookup")
