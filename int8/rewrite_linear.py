"""Integer rewrites of convolutions (``relax.nn.conv2d``, NHWC, depthwise included) and fully
connected layers (``relax.matmul`` on a transposed weight constant), with their bias.

``acc[o] = sum(x_pad * w[o]) + bias'[o]`` in int32 from the activations and the original 8-bit
weight constants (the input padded with its zero point, so padding adds exactly zero):
symmetric weights fold ``zp_x * sum(w)`` into ``bias'``; asymmetric (uint8 per-tensor) ones
compute ``(x - zp_x) * (w - zp_w)``. The requantization (per tensor or per channel,
:mod:`.requant`) and the activation clamp are fused in the same kernel. With a dot-product
``scheme`` (:mod:`.dot`) convolutions with ``groups == 1`` and fully connected layers are dot
products on packed weights instead, their ``acc`` block annotated with the intrinsic.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np
from tvm import relax

from . import amx, dot, intrin
from . import requant as rq
from .kernels_linear import (batch_matmul_te, conv2d_dot_te, conv2d_te, conv_window_sum_te, dense_dot_te, dense_te,
                             dense_window_sum_te, depthwise_taps_te)
from .params import (INT_RANGES, ConvParams, DotParams, LinearParams, MatmulParams, OutputQuant, QuantParams,
                     Requantization, TapsParams)
from .patterns import RewriteContext, per_channel, register_int8, require, shape_of

__all__ = ["conv2d", "linear_layer", "matmul", "requantization_of"]


def _conv_kind(call) -> str:
    return "depthwise_conv2d" if int(call.attrs.groups) > 1 else "conv2d"


@dataclass(frozen=True)
class _Layer:
    """A conv / dense layer as read off the graph: the float call, its integer activation, and
    its weights ``(..., K, OC)`` with one scale per output channel and one zero point."""

    call: relax.Call
    x: relax.Var
    xq: QuantParams
    w: np.ndarray
    w_scale: np.ndarray
    w_zp: int
    symmetric: bool  # zp_w == 0
    bias: np.ndarray  # int64, one per output channel
    conv: Optional[ConvParams]  # None: fully connected

    @property
    def oc(self) -> int:
        return self.w.shape[-1]


@register_int8("relax.nn.conv2d", kind=_conv_kind, bias=True)
def conv2d(ctx: RewriteContext, f: relax.Call, out: OutputQuant, bias: Optional[np.ndarray] = None):
    at = f.attrs
    x, xq = ctx.graph.deq_act(f.args[0])
    wq, ws, wz = _weights(ctx, f)
    require(at.data_layout == "NHWC" and at.out_layout == "NHWC", "layout")
    require(at.kernel_layout in ("HWIO", "HWOI"), "kernel layout")
    if at.kernel_layout == "HWOI":
        wq, ws, wz = (np.transpose(a, (0, 1, 3, 2)) for a in (wq, ws, wz))
    require(len(shape_of(x)) == 4, "conv rank")
    conv = ConvParams(tuple(int(s) for s in at.strides), tuple(int(p) for p in at.padding),
                      tuple(int(d) for d in at.dilation), int(at.groups))
    return _lower_linear(ctx, linear_layer(f, x, xq, (wq, ws, wz), bias, conv), out)


@register_int8("relax.matmul", kind="dense", bias=True)
def matmul(ctx: RewriteContext, f: relax.Call, out: OutputQuant, bias: Optional[np.ndarray] = None):
    """A fully connected layer: ``(..., K) x (K, OC)``; leading dimensions (TFLite's keep_num_dims,
    or a 4-D input the importer did not flatten) are folded into the rows and restored after.
    Two activations multiplied (TFLite's BATCH_MATMUL) are :func:`_batch_matmul`."""
    if _activation(ctx, f.args[1]) is not None:
        require(bias is None, "bias on a product of activations")
        return _batch_matmul(ctx, f, out)
    x, xq = ctx.graph.deq_act(f.args[0])
    wq, ws, wz = _weights(ctx, f)
    require(wq.ndim == 2 and len(shape_of(x)) >= 2, "dense rank")
    layer = linear_layer(f, x, xq, (wq, ws, wz), bias, None)
    if len(shape_of(x)) == 2:
        return _lower_linear(ctx, layer, out)
    rows = int(np.prod(shape_of(x)[:-1]))
    x_in = ctx.builder.emit(relax.op.reshape(ctx.remap(x), [rows, int(shape_of(x)[-1])]))
    y = ctx.builder.emit(_lower_linear(ctx, layer, out, x_in=x_in, rows=rows))
    return relax.op.reshape(y, [int(d) for d in shape_of(f)])


def _activation(ctx: RewriteContext, expr):
    """``(x, QuantParams, adj)`` when ``expr`` is a dequantized activation, ``adj`` when it is
    seen through a swap of its last two axes (the importer's adj_x / adj_y); None for anything
    else (a constant weight)."""
    adj = False
    swap = ctx.graph.call(expr, "relax.permute_dims")
    if swap is not None:
        rank = len(shape_of(swap))
        axes = None if swap.attrs.axes is None else [int(a) for a in swap.attrs.axes]
        if rank < 2 or axes != list(range(rank - 2)) + [rank - 1, rank - 2]:
            return None
        expr, adj = swap.args[0], True
    if ctx.graph.call(expr, "relax.dequantize") is None or ctx.graph.is_const_deq(expr):
        return None
    x, xq = ctx.graph.deq_act(expr)
    return x, xq, adj


def _batch_matmul(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    """``(..., M, K) x (..., K, N)`` of two int8 activations as TFLite computes BATCH_MATMUL: the
    product of ``a - zp_a`` and ``b - zp_b`` in int32, then TFLite's fixed-point multiplier of
    ``float(s_a * s_b) / s_out``, in both modes: the XNNPACK delegate declines the node and
    LiteRT runs its own kernel (its reference, optimized and delegated runs agree)."""
    a = _activation(ctx, f.args[0])
    b = _activation(ctx, f.args[1])
    require(a is not None and b is not None, "matmul operands")
    (xa, qa, adj_a), (xb, qb, adj_b) = a, b
    require(qa.dtype == qb.dtype == out.dtype == "int8", "batch matmul dtype")
    k = shape_of(xa)[-2 if adj_a else -1]
    require(k == shape_of(xb)[-1 if adj_b else -2], "matmul depth")
    require(k * 255 * 255 < 2**31, "accumulator overflow")
    q, shift = rq.linear_multipliers(qa.scale, [qb.scale], out.scale, float_product=True)
    require(int(shift[0]) <= 30, "batch matmul multiplier out of range")
    epi = Requantization("tflite", out.zero_point, out.qmin, out.qmax, out.dtype, q=int(q[0]), shift=int(shift[0]))
    params = MatmulParams(qa.zero_point, qb.zero_point, adj_a, adj_b, tuple(shape_of(f)))
    return ctx.call_te(batch_matmul_te, ctx.remap(xa), ctx.remap(xb), params=params, epi=epi, name="int8_batch_matmul")


def _weights(ctx: RewriteContext, f: relax.Call):
    wq, ws, wz = ctx.graph.deq_const(f.args[1])
    require(wq.dtype in (np.int8, np.uint8), f"weight dtype {wq.dtype}")
    return wq, ws, wz


def linear_layer(f, x, xq: QuantParams, weights, bias, conv: Optional[ConvParams]) -> _Layer:
    """The layer of weights ``(q, per-element scale, per-element zero point)``, output channels
    last: quantized per tensor or per output channel, the zero point per tensor."""
    wq, ws, wz = weights
    oc_axis = wq.ndim - 1
    oc = wq.shape[oc_axis]
    w_scale = per_channel(ws, oc_axis).astype(np.float32)
    w_zp = per_channel(wz, oc_axis).astype(np.int64)
    bias = np.zeros(oc, np.int64) if bias is None else np.broadcast_to(bias, (oc,)).astype(np.int64)
    require(bias.shape == (oc,), "bias shape")
    symmetric = bool(np.all(w_zp == 0))
    per_tensor_wzp = bool(np.all(w_zp == w_zp[0]))
    require(symmetric or per_tensor_wzp, "per-channel asymmetric weights")
    return _Layer(f, x, xq, wq, w_scale, 0 if symmetric else int(w_zp[0]), symmetric, bias, conv)


def _lower_linear(ctx: RewriteContext, layer: _Layer, out: OutputQuant, x_in=None, rows: Optional[int] = None):
    """The integer kernel of a conv / dense layer: on packed weights where the scheme has an
    intrinsic for it, else the plain loops. ``x_in``/``rows``: a dense layer's input already
    flattened to ``(rows, K)``."""
    epi, tensors = requantization_of(ctx.mode, layer, out)
    x_in = ctx.remap(layer.x) if x_in is None else x_in
    conv = layer.conv
    if ctx.scheme == "amx":
        lowered = _lower_amx(ctx, layer, x_in, epi, tensors, rows)
        if lowered is not None:
            return lowered
    choice = None
    if ctx.scheme and (conv is None or conv.groups == 1):
        choice = dot.choose(ctx.scheme, layer.xq.dtype, layer.w, layer.w_zp)
    if choice is not None:
        return _lower_dot(ctx, layer, x_in, epi, tensors, choice, rows)
    if _fits_depthwise_intrin(ctx.scheme, layer):
        return _lower_depthwise_taps(ctx, layer, x_in, epi, tensors)
    wsum = layer.w.astype(np.int64).reshape(-1, layer.oc).sum(axis=0)
    bias_eff = layer.bias - layer.xq.zero_point * wsum if layer.symmetric else layer.bias
    require(np.all(np.abs(bias_eff) < 2**31), "bias overflow")
    params = LinearParams(layer.xq.zero_point, layer.w_zp, layer.symmetric, conv)
    if conv is None:
        te_fn, name = dense_te, "int8_dense"
    else:
        te_fn, name = conv2d_te, f"int8_{_conv_kind(layer.call)}"
    return ctx.call_te(te_fn, x_in, relax.const(layer.w), relax.const(bias_eff.astype(np.int32)), *tensors,
                       params=params, epi=epi, name=name)


def _lower_dot(ctx: RewriteContext, layer: _Layer, x_in, epi: Requantization, tensors, choice: dot.DotChoice,
               rows: Optional[int] = None):
    """Conv / dense as a dot product on packed weights, tensorizable with ``choice.intrin``
    (see :mod:`.dot` for the algebra); ``rows``: a dense input flattened to ``(rows, K)``."""
    wq, zp_x, oc, conv = layer.w, layer.xq.zero_point, layer.oc, layer.conv
    packed, bsum = dot.pack(choice, wq)
    bias_eff = _folded_bias(layer, choice, bsum)
    ctx.intrinsics[choice.intrin] += 1
    for skipped in choice.skipped:
        ctx.intrinsics[f"{skipped} (could saturate)"] += 1
    out_lead = (rows,) if rows is not None else tuple(shape_of(layer.call)[:-1])
    params = DotParams(zp_x, choice.cw, choice.lanes, choice.layout, choice.intrin, oc,
                       tuple(int(d) for d in wq.shape[:-2]), out_lead, conv=conv, a_offset=choice.a_offset)
    extra = []
    if choice.cw:
        te_fn = conv_window_sum_te if conv is not None else dense_window_sum_te
        extra.append(ctx.builder.emit(ctx.call_te(te_fn, x_in, params=params, name="int8_window_sum")))
    elif choice.zero_points:
        extra += [relax.const(np.array([zp_x], np.int32)), relax.const(np.array([layer.w_zp], np.int32))]
    params = replace(params, n_extra=len(extra))
    x_shape = shape_of(layer.call.args[0]) if rows is None else (rows, int(wq.shape[0]))
    if choice.layout != "row" and x_shape[-1] % 4 == 0 and not (conv is not None and any(conv.padding)):
        # the (..., C/4, 2, 2) view the intrinsic reads, as a free reshape
        x_in = ctx.builder.emit(relax.op.reshape(x_in, [*x_shape[:-1], x_shape[-1] // 4, 2, 2]))
    # the accumulator of every padded output channel starts from the bias (zero past ``oc``)
    bias_padded = np.pad(bias_eff, (0, -oc % choice.lanes))
    args = (x_in, relax.const(packed), relax.const(bias_padded.astype(np.int32)), *extra, *tensors)
    te_fn, name = (conv2d_dot_te, "int8_conv2d") if conv is not None else (dense_dot_te, "int8_dense")
    return ctx.call_te(te_fn, *args, params=params, epi=epi, name=name)


def _folded_bias(layer: _Layer, choice: dot.DotChoice, bsum: np.ndarray) -> np.ndarray:
    """The bias with the compile-time terms of :mod:`.dot`'s algebra folded in (``bsum``: the
    packed weights' sum per output channel; none where the intrinsic subtracts both zero points
    itself). The window sum covers the real input channels only (the padding to a multiple of 4
    meets zero weights in ``acc``), so its constant counterpart counts them alone."""
    bias_eff = layer.bias
    if not choice.zero_points:
        zp_x, wq = layer.xq.zero_point, layer.w
        k_total = int(np.prod(wq.shape[:-2])) * wq.shape[-2]
        bias_eff = bias_eff - (zp_x + choice.a_offset) * bsum[:layer.oc] - zp_x * choice.cw * k_total
    require(np.all(np.abs(bias_eff) < 2**31), "bias overflow")
    return bias_eff


def _pointwise(layer: _Layer) -> bool:
    """Whether the layer is a matrix product as it is: fully connected, or a 1x1 convolution of
    stride 1 without padding (its NHWC activation is then ``(N*H*W, C)`` rows, a free reshape)."""
    conv = layer.conv
    if conv is None:
        return True
    return (layer.w.shape[:2] == (1, 1) and conv.groups == 1 and tuple(conv.strides) == (1, 1)
            and not any(conv.padding))


def _lower_amx(ctx: RewriteContext, layer: _Layer, x_in, epi: Requantization, tensors, rows: Optional[int]):
    """A pointwise layer on the AMX kernel (:mod:`.amx`), or None where it does not fit (other
    layers keep the scheme's VNNI intrinsics): the activation as ``(rows, K)``, the weights packed
    as for VNNI, the offsets folded into the bias as :func:`_lower_dot` folds them."""
    if not _pointwise(layer):
        return None
    shape = shape_of(layer.call.args[0]) if rows is None else (rows, int(layer.w.shape[-2]))
    m, k = int(np.prod(shape[:-1])), int(shape[-1])
    if not amx.fits(m, k, layer.oc):
        return None
    choice = amx.choose(layer.xq.dtype, layer.w, layer.w_zp)
    if choice is None:
        return None
    zp_x, oc = layer.xq.zero_point, layer.oc
    packed, bsum = dot.pack(choice, layer.w)
    bias_eff = _folded_bias(layer, choice, bsum)
    ctx.intrinsics[choice.intrin] += 1
    x2 = ctx.builder.emit(relax.op.reshape(x_in, [m, k])) if len(shape) != 2 else x_in
    extra = []
    if choice.cw:
        sums = DotParams(zp_x, choice.cw, choice.lanes, choice.layout, choice.intrin, oc, (), (m,))
        extra.append(ctx.builder.emit(ctx.call_te(dense_window_sum_te, x2, params=sums, name="int8_window_sum")))
    params = amx.AmxParams(m, k, oc, layer.xq.dtype, choice.cw, tuple(str(t.value.dtype) for t in tensors))
    gvar = ctx.builder.add_func(amx.amx_gemm_func(params, epi), "int8_conv2d_amx" if layer.conv else "int8_dense_amx")
    bias_padded = np.pad(bias_eff, (0, -oc % 16)).astype(np.int32)
    args = [x2, relax.const(packed.reshape(packed.shape[0], k // 4, 16, 4)), relax.const(bias_padded), *extra, *tensors]
    y = relax.op.call_tir(gvar, args, relax.TensorType((m, oc), epi.dtype))
    if len(shape) == 2:
        return y
    return relax.op.reshape(ctx.builder.emit(y), [int(d) for d in shape_of(layer.call)])


def _fits_depthwise_intrin(scheme, layer: _Layer) -> bool:
    """Whether a depthwise convolution runs on the scheme's depthwise intrinsic: one filter per
    channel, three columns, strides of 1 or 2, dilation 1, channels a multiple of its lanes, and
    weights that stay int8 once their zero point is subtracted."""
    conv = layer.conv
    if scheme not in intrin.DEPTHWISE or conv is None or conv.groups == 1:
        return False
    kh, kw, icg, oc = layer.w.shape
    if icg != 1 or oc != conv.groups or kw != 3 or oc % intrin.DEPTHWISE_LANES[intrin.DEPTHWISE[scheme]]:
        return False
    if not set(conv.strides) <= {1, 2} or tuple(conv.dilation) != (1, 1):
        return False
    b = layer.w.astype(np.int64) - layer.w_zp
    lo, hi = INT_RANGES["int8"]
    return bool(b.min() >= lo and b.max() <= hi)


def _lower_depthwise_taps(ctx: RewriteContext, layer: _Layer, x_in, epi: Requantization, tensors):
    """A depthwise convolution on the depthwise intrinsic (:func:`.kernels_linear.depthwise_taps_te`):
    the weights minus their zero point packed per output column parity (one parity with a column
    stride of 2), and the activation's offsets folded into the bias."""
    kh, kw, _, oc = layer.w.shape
    b = (layer.w.astype(np.int64) - layer.w_zp)[:, :, 0, :]  # (kh, 3, C)
    parities = 2 if layer.conv.strides[1] == 1 else 1
    w8 = np.zeros((kh, parities, oc, 4), np.int64)
    for q in range(parities):
        for k in range(kw):
            w8[:, q, :, k + q] = b[:, k, :]
    name = intrin.DEPTHWISE[ctx.scheme]
    signed = intrin.DEPTHWISE_SIGNED[name]
    # the activation as the intrinsic's bytes: int8 -> uint8 (+128) or uint8 -> int8 (-128), or as it is
    if signed:
        a_offset = -128 if layer.xq.dtype == "uint8" else 0
    else:
        a_offset = 128 if layer.xq.dtype == "int8" else 0
    bias_eff = layer.bias - (layer.xq.zero_point + a_offset) * b.sum(axis=(0, 1))
    require(np.all(np.abs(bias_eff) < 2**31), "bias overflow")
    ctx.intrinsics[name] += 1
    params = TapsParams(layer.xq.zero_point, a_offset, name, layer.conv, signed)
    return ctx.call_te(depthwise_taps_te, x_in, relax.const(w8.astype(np.int8)), relax.const(bias_eff.astype(np.int32)),
                       *tensors, params=params, epi=epi, name="int8_depthwise_conv2d")


def _float_product(layer: _Layer) -> bool:
    """Whether TFLite rounds ``s_in * s_w`` to float32 before the multiplier of this convolution:
    uint8 ones (their legacy scalar multiplier, :func:`.requant.linear_multipliers`)."""
    return layer.xq.dtype == "uint8"


def requantization_of(mode: str, layer: _Layer, out: OutputQuant):
    """The epilogue's parameters: each one a static python value where every output channel has
    the same, else a constant vector (per channel) passed to the kernel."""
    s_x, w_scale = layer.xq.scale, layer.w_scale
    if mode == "xnnpack":
        params = {"scale": rq.xnnpack_scale(s_x, w_scale, out.scale).astype(np.float32)}
    elif layer.conv is None:
        # TFLite's reference FULLY_CONNECTED requantizes in double (all types, since LiteRT's
        # "Make the fully_connected ref kernel do requant in float", April 2025)
        mode, params = "float64", {"scale": rq.fc_reference_scales(s_x, w_scale, out.scale)}
    else:
        q, sh = rq.linear_multipliers(s_x, w_scale, out.scale, _float_product(layer))
        params = {"q": q, "shift": sh}
    static = dict(mode=mode, zero_point=out.zero_point, qmin=out.qmin, qmax=out.qmax, dtype=out.dtype)
    if all(np.all(v == v[0]) for v in params.values()):
        static.update((k, v[0].item()) for k, v in params.items())
        return Requantization(**static), []
    return Requantization(**static), [relax.const(v) for v in params.values()]
