"""TE kernels of integer convolutions and fully connected layers: the plain loops, and the dot
products on weights packed for a target's intrinsic (:mod:`.dot`), each with its requantization."""

from __future__ import annotations

from tvm import te, tirx, topi

from . import requant as rq
from .init_operand import INIT_FROM
from .params import DEPTHWISE_RULE, ConvParams, DotParams, LinearParams, MatmulParams, Requantization, TapsParams

__all__ = ["DEPTHWISE_INTRIN", "TAPS_BLOCK", "batch_matmul_te", "conv2d_dot_te", "conv2d_te", "conv_window_sum_te",
           "dense_dot_te", "dense_te", "dense_window_sum_te", "depthwise_taps_te", "epilogue_expr"]

TAPS_BLOCK = "taps"  # the depthwise kernel's packed activations (:func:`depthwise_taps_te`)
DEPTHWISE_INTRIN = "tvmq_dwdot"  # annotation of its accumulation block: the intrinsic to tensorize with


def _i32(e):
    return e.astype("int32")


BIAS_INIT = {INIT_FROM: 2}  # the accumulator starts from the kernel's third input, its bias (:mod:`.init_operand`)


def epilogue_expr(acc, o, epi: Requantization, tens):
    """Requantize an int32 accumulator for output channel ``o`` (``tens``: per-channel vectors)."""
    if epi.mode == "xnnpack":
        scale = epi.scale if epi.scale is not None else tens[0][o]
        return rq.requantize_fp32_tir(acc, scale, epi.zero_point, epi.qmin, epi.qmax, epi.dtype)
    if epi.mode == "float64":
        scale = epi.scale if epi.scale is not None else tens[0][o]
        return rq.requantize_f64_tir(acc, scale, epi.zero_point, epi.qmin, epi.qmax, epi.dtype)
    if epi.q is not None:
        q, sh = epi.q, epi.shift
    else:
        q, sh = tens[0][o], tens[1][o]
    return rq.requantize_tir(acc, q, sh, epi.zero_point, epi.qmin, epi.qmax, epi.dtype)


# ---------------------------------------------------------------------------------- plain loops
def conv2d_te(x, w, bias, *tens, params: LinearParams, epi: Requantization):
    """NHWC conv (grouped or not), kernel HWIO: ``sum(x_pad * w) + bias'`` (symmetric weights)
    or ``sum((x_pad - zp_x) * (w - zp_w)) + bias`` in int32, then the requantization."""
    conv: ConvParams = params.conv
    n, h, wd, c = (int(v) for v in x.shape)
    kh, kw, icg, oc = (int(v) for v in w.shape)
    sh, sw = conv.strides
    dh, dw = conv.dilation
    pt, pl, pb, pr = conv.padding
    groups = conv.groups
    zp_x, zp_w = params.zp_x, params.zp_w
    ocg = oc // groups
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    if pt or pl or pb or pr:
        xp = topi.nn.pad(x, [0, pt, pl, 0], [0, pb, pr, 0], pad_value=zp_x, name="pad_zp")
    else:
        xp = x
    rh = te.reduce_axis((0, kh), "rh")
    rw = te.reduce_axis((0, kw), "rw")
    # depthwise (one input channel per group): no channel reduction at all, so that the block's
    # channel loop is spatial and vectorizable
    rc = te.reduce_axis((0, icg), "rc") if icg > 1 else 0
    axes = [rh, rw, rc] if icg > 1 else [rh, rw]

    def cin(o):
        return rc if groups == 1 else (o // ocg) * icg + rc

    if params.symmetric:
        def term(b, i, j, o):
            return _i32(xp[b, i * sh + rh * dh, j * sw + rw * dw, cin(o)]) * _i32(w[rh, rw, rc, o])
    else:
        def term(b, i, j, o):
            return (_i32(xp[b, i * sh + rh * dh, j * sw + rw * dw, cin(o)]) - zp_x) * (
                _i32(w[rh, rw, rc, o]) - zp_w)

    depthwise = icg == 1 and ocg == 1  # MetaSchedule schedules it with tvmq's depthwise rule
    acc = te.compute((n, oh, ow, oc), lambda b, i, j, o: te.sum(term(b, i, j, o), axis=axes),
                     name="acc", attrs={"schedule_rule": DEPTHWISE_RULE, **BIAS_INIT} if depthwise else BIAS_INIT)
    return te.compute((n, oh, ow, oc), lambda b, i, j, o: epilogue_expr(acc[b, i, j, o], o, epi, tens),
                      name="requant")


def depthwise_taps_te(x, w8, bias, *tens, params: TapsParams, epi: Requantization):
    """A 3-column depthwise convolution (NHWC, strides 1 or 2, dilation 1) on a depthwise
    intrinsic (:data:`tvmq.int8.intrin.DEPTHWISE`: four taps of unsigned bytes per channel and word).

    ``taps[b, r, p, c]`` packs the activation of channel ``c`` at padded row ``r`` and the four
    padded columns ``2p .. 2p+3``, each plus ``a_offset`` (a byte of the intrinsic's type: unsigned,
    or ``signed``), into one int32. With a column stride of 1, output column ``2p`` reads its three
    taps from bytes 0-2 of that word and column ``2p+1`` from bytes 1-3, so one packed word serves
    two outputs; with a stride of 2, output column ``p`` reads bytes 0-2 of word ``p``. One packed
    row serves all the window rows that meet it. ``w8[rh, q, c, k]`` holds the weights (minus their
    zero point) at byte ``k`` for an output column of parity ``q`` (zero at the byte it does not
    read; only ``q = 0`` with a stride of 2), packed at compile time. The zero-point padding is
    computed as the words are packed: there is no padded copy. ``acc`` starts from ``bias``
    (``-(zp_x + a_offset) * sum(w - zp_w)`` and the layer's bias) and adds ``sum((x + a_offset) *
    (w - zp_w))``; the requantization follows."""
    conv = params.conv
    n, h, wd, c = (int(v) for v in x.shape)
    kh = int(w8.shape[0])
    sh, sw = conv.strides
    pt, pl, pb, pr = conv.padding
    oh, ow = (h + pt + pb - kh) // sh + 1, (wd + pl + pr - 3) // sw + 1
    pad = params.zp_x + params.a_offset

    def pack(b, r, p, ch):
        word = None
        for k in range(4):
            col = 2 * p + k - pl
            inside = tirx.all(r >= pt, r < h + pt, col >= 0, col < wd)
            byte = tirx.if_then_else(inside, _i32(x[b, r - pt, col, ch]) + params.a_offset, pad) & 255
            term = byte << (8 * k) if k else byte
            word = term if word is None else word | term
        return word

    words = (ow + 1) // 2 if sw == 1 else ow
    taps = te.compute((n, (oh - 1) * sh + kh, words, c), pack, name=TAPS_BLOCK)
    rh = te.reduce_axis((0, kh), "rh")
    rk = te.reduce_axis((0, 4), "rk")

    def tap(b, r, p, o):
        byte = (taps[b, r, p, o] >> (rk * 8)) & 255
        return ((byte ^ 128) - 128) if params.signed else byte

    def term(b, i, j, o):
        word, parity = (j // 2, j % 2) if sw == 1 else (j, 0)
        return tap(b, i * sh + rh, word, o) * _i32(w8[rh, parity, o, rk])

    acc = te.compute(
        (n, oh, ow, c), lambda b, i, j, o: te.sum(term(b, i, j, o), axis=[rh, rk]),
        name="acc", attrs={"schedule_rule": DEPTHWISE_RULE, DEPTHWISE_INTRIN: params.intrin, **BIAS_INIT})
    return te.compute((n, oh, ow, c), lambda b, i, j, o: epilogue_expr(acc[b, i, j, o], o, epi, tens),
                      name="requant")


def dense_te(x, w, bias, *tens, params: LinearParams, epi: Requantization):
    """Fully connected ``(M, K) x (K, OC)``, as :func:`conv2d_te`."""
    m, k = (int(v) for v in x.shape)
    _, oc = (int(v) for v in w.shape)
    rk = te.reduce_axis((0, k), "rk")
    zp_x, zp_w = params.zp_x, params.zp_w
    if params.symmetric:
        acc = te.compute((m, oc), lambda i, o: te.sum(_i32(x[i, rk]) * _i32(w[rk, o]), axis=rk), name="acc",
                         attrs=BIAS_INIT)
    else:
        acc = te.compute((m, oc), lambda i, o: te.sum((_i32(x[i, rk]) - zp_x) * (_i32(w[rk, o]) - zp_w), axis=rk),
                         name="acc", attrs=BIAS_INIT)
    return te.compute((m, oc), lambda i, o: epilogue_expr(acc[i, o], o, epi, tens), name="requant")


def batch_matmul_te(a, b, *, params: MatmulParams, epi: Requantization):
    """Two activations multiplied: ``sum((a - zp_a) * (b - zp_b))`` over K in int32 for every
    ``(..., m, n)`` of ``params.out_shape``, each input read through its transposition and
    broadcast over the batch dimensions (a dimension of 1 repeats), then the requantization."""
    k = int(a.shape[-2] if params.adj_a else a.shape[-1])
    rk = te.reduce_axis((0, k), "rk")

    def read(x, out_lead, row, col, adj):
        """``x[..., row, col]`` (``[..., col, row]`` when ``adj``) at the output's batch index."""
        n_lead = len(x.shape) - 2
        lead = [i if int(d) > 1 else 0 for i, d in zip(out_lead[len(out_lead) - n_lead:], x.shape[:-2])]
        return _i32(x[(*lead, col, row) if adj else (*lead, row, col)])

    def acc_at(*idx):
        *lead, i, j = idx
        a_ik = read(a, lead, i, rk, params.adj_a) - params.zp_a
        b_kj = read(b, lead, rk, j, params.adj_b) - params.zp_b
        return te.sum(a_ik * b_kj, axis=rk)

    acc = te.compute(tuple(params.out_shape), acc_at, name="acc")
    return te.compute(tuple(params.out_shape), lambda *idx: epilogue_expr(acc[idx], 0, epi, ()), name="requant")


# ---------------------------------------------------------------------------------- packed weights
def _pad_zp(x, before, after, zp_x):
    """``x`` padded with its zero point (terms against padding are then exactly zero)."""
    if any(before) or any(after):
        return topi.nn.pad(x, before, after, pad_value=zp_x, name="pad_zp")
    return x


def _pair_view(x, before, after, zp_x):
    """The activation ``(..., C)`` padded with its zero point and seen as ``(..., C/4, 2, 2)``
    (what a "pair" intrinsic reads); ``after[-1]`` pads the channels to a multiple of 4."""
    c = int(x.shape[-1])
    lead = [int(d) + b + a for d, b, a in zip(x.shape[:-1], before, after)]
    icp = c + after[-1]

    def f(*idx):
        *pos, c4, p, q = idx
        ch = c4 * 4 + p * 2 + q
        src = [i - b for i, b in zip(pos, before)]
        cond = [ch < c] if icp != c else []
        cond += [tirx.all(s >= 0, s < int(d)) for s, d, b, a in zip(src, x.shape, before, after) if b or a]
        value = x[(*src, ch)]
        return tirx.if_then_else(tirx.all(*cond), value, tirx.const(zp_x, x.dtype)) if cond else value

    return te.compute((*lead, icp // 4, 2, 2), f, name="pad_zp")


def _dot_input(x, n_lead, before, after, params: DotParams):
    """The activation as the intrinsic reads it: padded with its zero point (spatially, and to a
    multiple of 4 channels), seen as ``(..., C/4, 2, 2)`` for a "pair" intrinsic. ``x`` may
    already be that view (a free Relax reshape, when nothing needs padding)."""
    if len(x.shape) == n_lead + 3:
        return x
    after = [*after[:-1], after[-1] + (-int(x.shape[-1]) % 4)]
    return (_pad_zp if params.layout == "row" else _pair_view)(x, before, after, params.zp_x)


def _window_sum_te(x, params: DotParams, geometry):
    """``sum`` of the zero-point padded activation over each output position's window (int32):
    the run-time term of :mod:`.dot`'s algebra when ``cw != 0``, as a kernel of its own (the
    requantization inside the tensorized tile may only read the accumulator and inputs)."""
    window, before, after = geometry
    xp = _pad_zp(x, before, after, params.zp_x)
    win = [te.reduce_axis((0, n), f"s{i}") for i, n in enumerate(params.window)]
    rc = te.reduce_axis((0, int(xp.shape[-1])), "sc")
    return te.compute(params.out_lead, lambda *idx: te.sum(_i32(xp[(*window(*win, idx=idx), rc)]), axis=[*win, rc]),
                      name="xsum")


def _dot_kernel(x, wp, bias, rest, params: DotParams, epi: Requantization, geometry):
    """The dot product on packed weights: ``acc`` (annotated with its intrinsic), then the
    requantization of ``acc + bias' (+ cw * window sum)``. ``rest`` holds ``params.n_extra``
    operands, the window sum (``cw != 0``) or the two zero points (a ``pairzp`` intrinsic), then
    the requantization vectors.

    ``geometry`` is ``(window, before, after)``: ``window(*window_axes, idx=out_lead_index)``
    gives the activation's leading indices, ``before`` / ``after`` its padding."""
    window, before, after = geometry
    extra, tens = rest[:params.n_extra], rest[params.n_extra:]
    lanes, oc, cw, out_lead = params.lanes, params.oc, params.cw, params.out_lead
    ocp = oc + (-oc % lanes)
    xp = _dot_input(x, len(out_lead), before, after, params)
    win = [te.reduce_axis((0, n), f"r{i}") for i, n in enumerate(params.window)]
    chan = [te.reduce_axis((0, int(d)), f"c{i}") for i, d in enumerate(xp.shape[len(out_lead):])]

    def acc_f(*idx):
        o = idx[-1]
        a = _i32(xp[(*window(*win, idx=idx[:-1]), *chan)])
        if params.a_offset:  # the intrinsic's own form of the product (its description)
            a = a + params.a_offset
        if params.layout == "row":
            (rc,) = chan
            w = _i32(wp[(o // lanes, *win, rc // 4, o % lanes, rc % 4)])
        else:
            rc, rp, rq = chan
            w = _i32(wp[(o // lanes, *win, rc, rp, o % lanes, rq)])
        if params.layout == "pairzp":
            zx, zw = extra
            return te.sum((a - zx[0]) * (w - zw[0]), axis=[*win, *chan])
        return te.sum(a * w, axis=[*win, *chan])

    acc = te.compute((*out_lead, ocp), acc_f, name="acc", attrs={"tvmq_dot": params.intrin, **BIAS_INIT})

    def out_f(*idx):
        v = acc[idx]
        if cw:
            v = v + extra[0][idx[:-1]] * cw
        return epilogue_expr(v, idx[-1], epi, tens)

    return te.compute((*out_lead, oc), out_f, name="requant")


def _conv_geometry(conv: ConvParams, window_dims):
    """The window -> input index map of an NHWC conv, and its padding before / after."""
    kh, kw = window_dims
    sh, sw = conv.strides
    dh, dw = conv.dilation
    pt, pl, pb, pr = conv.padding

    def window(rh, rw, idx):
        b, i, j = idx
        return b, i * sh + rh * dh, j * sw + rw * dw

    return window, [0, pt, pl, 0], [0, pb, pr, 0]


def _dense_window(idx):
    return (idx[0],)


_DENSE_GEOMETRY = (_dense_window, [0, 0], [0, 0])


def conv_window_sum_te(x, *, params: DotParams):
    """The window sum of a conv's activation (see :func:`_window_sum_te`)."""
    return _window_sum_te(x, params, _conv_geometry(params.conv, params.window))


def dense_window_sum_te(x, *, params: DotParams):
    """The row sum of a fully connected layer's activation (see :func:`_window_sum_te`)."""
    return _window_sum_te(x, params, _DENSE_GEOMETRY)


def conv2d_dot_te(x, wp, bias, *rest, params: DotParams, epi: Requantization):
    """NHWC conv (groups == 1) on weights packed for a dot-product intrinsic; the ``acc`` block
    carries the intrinsic's name in its ``tvmq_dot`` annotation for the tuner's schedule rule.
    ``x`` is ``(N, H, W, C)``, or ``(N, H, W, C/4, 2, 2)`` for a "pair" intrinsic; ``rest`` is
    the ``n_extra`` operands of :func:`_dot_kernel`, then the requantization vectors."""
    return _dot_kernel(x, wp, bias, rest, params, epi, _conv_geometry(params.conv, params.window))


def dense_dot_te(x, wp, bias, *rest, params: DotParams, epi: Requantization):
    """Fully connected on packed weights (see :func:`conv2d_dot_te`); ``x`` is ``(M, K)``
    or ``(M, K/4, 2, 2)``."""
    return _dot_kernel(x, wp, bias, rest, params, epi, _DENSE_GEOMETRY)
