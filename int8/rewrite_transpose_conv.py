"""Integer TRANSPOSE_CONV in ``--requant tflite``: TFLite's reference kernel, value for value.

After import (:func:`tvmq.model.frontend.from_tflite` moves transposed convolutions to NCHW/IOHW, the
layout TVM legalizes) the QDQ graph reads ``quantize(permute_dims(conv2d_transpose(permute_dims(
dequantize(x)), dequantize(w))) [+ bias])``. TFLite scatters ``(x - zp_x) * w`` into an int32
buffer, adds the bias and requantizes each output channel with its fixed-point multiplier. Here the
same sum is gathered per output pixel (an input pixel contributes where ``oy + pad - ky`` is a
multiple of the stride inside the input), in NHWC, with the convolutions' epilogue, so both
permutes go. In ``--requant xnnpack`` XNNPACK requantizes in float32, as the QDQ form does, and the
node stays on that path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from tvm import relax, te, tirx

from .kernels_linear import epilogue_expr
from .params import ConvParams, OutputQuant, Requantization
from .patterns import RewriteContext, register_int8, require, shape_of
from .rewrite_linear import linear_layer, requantization_of

__all__ = ["TransposeConvParams", "transpose_conv_te"]


@dataclass(frozen=True)
class TransposeConvParams:
    """The geometry: strides, the top/left padding, and the NHWC output shape."""

    zp_x: int
    strides: Tuple[int, int]
    pad: Tuple[int, int]
    out_shape: Tuple[int, int, int, int]


def transpose_conv_te(x, w, bias, *tens, params: TransposeConvParams, epi: Requantization):
    """NHWC int8 ``x``, IOHW int8 ``w`` (symmetric): ``sum((x - zp_x) * w) + bias`` over the input
    pixels each output pixel receives, then the requantization."""
    n, h, wd, c = (int(d) for d in x.shape)
    _, oc, kh, kw = (int(d) for d in w.shape)
    sh, sw = params.strides
    pt, pl = params.pad
    ky, kx, ic = te.reduce_axis((0, kh), "ky"), te.reduce_axis((0, kw), "kx"), te.reduce_axis((0, c), "ic")

    def acc(b, oy, ox, o):
        ty, tx = oy + pt - ky, ox + pl - kx
        iy, ix = tirx.floordiv(ty, sh), tirx.floordiv(tx, sw)
        inside = tirx.all(ty >= 0, tx >= 0, tirx.floormod(ty, sh) == 0, tirx.floormod(tx, sw) == 0, iy < h, ix < wd)
        iy_c, ix_c = tirx.min(tirx.max(iy, 0), h - 1), tirx.min(tirx.max(ix, 0), wd - 1)
        term = (x[b, iy_c, ix_c, ic].astype("int32") - params.zp_x) * w[ic, o, ky, kx].astype("int32")
        return te.sum(tirx.if_then_else(inside, term, tirx.const(0, "int32")), axis=[ky, kx, ic])

    total = te.compute(params.out_shape, acc, name="acc")
    return te.compute(params.out_shape, lambda b, i, j, o: epilogue_expr(total[b, i, j, o] + bias[o], o, epi, tens),
                      name="requant")


@register_int8("relax.permute_dims", kind="conv2d_transpose", bias=True)
def transpose_conv(ctx: RewriteContext, f: relax.Call, out: OutputQuant, bias: Optional[np.ndarray] = None):
    require(ctx.mode == "tflite", "XNNPACK's transposed convolution: the QDQ form's float32 requantization")
    require([int(a) for a in f.attrs.axes] == [0, 2, 3, 1], "not back to NHWC")
    conv = ctx.graph.call(f.args[0], "relax.nn.conv2d_transpose")
    if conv is None and bias is None:  # the bias added in NCHW, before the permute
        add = ctx.graph.call(f.args[0], "relax.add")
        require(add is not None and ctx.graph.is_const_deq(add.args[1]), "not a transposed convolution")
        conv = ctx.graph.call(add.args[0], "relax.nn.conv2d_transpose")
        bias = ctx.graph.deq_const(add.args[1])[0].astype(np.int64).ravel()
    require(conv is not None, "not a transposed convolution")
    at = conv.attrs
    require(at.data_layout == "NCHW" and at.kernel_layout == "IOHW" and int(at.groups) == 1, "layout")
    require(all(int(d) == 1 for d in at.dilation) and all(int(p) == 0 for p in at.output_padding), "dilation")
    to_nchw = ctx.graph.call(conv.args[0], "relax.permute_dims")
    require(to_nchw is not None and [int(a) for a in to_nchw.attrs.axes] == [0, 3, 1, 2], "input not from NHWC")
    x, xq = ctx.graph.deq_act(to_nchw.args[0])
    require(xq.dtype == out.dtype == "int8", "int8 transposed convolution")
    wq, ws, wz = ctx.graph.deq_const(conv.args[1])
    require(wq.dtype == np.int8 and not np.any(wz), "symmetric int8 weights")
    # the weights seen as (..., K, OC) for the shared epilogue: OC is IOHW's axis 1
    hwio = np.transpose(wq, (2, 3, 0, 1))
    pad = tuple(int(p) for p in at.padding)
    layer = linear_layer(conv, x, xq, (hwio, np.transpose(ws, (2, 3, 0, 1)), np.zeros_like(hwio, np.int64)), bias,
                   ConvParams(tuple(int(s) for s in at.strides), pad, (1, 1), 1))
    require(np.all(np.abs(layer.bias) < 2**31), "bias overflow")
    epi, tensors = requantization_of(ctx.mode, layer, out)
    params = TransposeConvParams(xq.zero_point, tuple(int(s) for s in at.strides), (pad[0], pad[1]),
                                 tuple(int(d) for d in shape_of(f)))
    return ctx.call_te(transpose_conv_te, ctx.remap(x), relax.const(wq), relax.const(layer.bias.astype(np.int32)),
                       *tensors, params=params, epi=epi, name="int8_transpose_conv")
