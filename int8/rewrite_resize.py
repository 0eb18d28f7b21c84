"""Integer rewrite of RESIZE_BILINEAR: the importer's ``quantize(resize2d(dequantize(x)))`` with
one quantization on both sides becomes

* ``--requant tflite``: TFLite's kernels. uint8: the reference kernel, which interpolates the
  8-bit values themselves in float32 and truncates ``value + 0.5`` (:func:`resize_bilinear_te`).
  int8: ``ResizeBilinearInteger``, all in integers: 10-bit coordinates and weights, the four
  products summed in 20 bits and rounded half away from zero (:func:`resize_bilinear_int_te`).
* ``--requant xnnpack``: XNNPACK's ``u8-ibilinear`` / ``s8-ibilinear``, on weights rounded to 11
  bits (:func:`resize_bilinear_xnn_te`)."""

from __future__ import annotations

import numpy as np
from tvm import relax, te, tirx

from . import requant as rq
from .params import OutputQuant
from .patterns import RewriteContext, register_int8, require, shape_of

__all__ = ["resize2d", "resize_bilinear_int_np", "resize_bilinear_int_te", "resize_bilinear_te", "resize_bilinear_np",
           "resize_bilinear_xnn_te"]

_MODES = ("align_corners", "half_pixel", "asymmetric")


def _scale(n_in: int, n_out: int, mode: str) -> float:
    """TFLite's float32 step between output and input coordinates."""
    if mode == "align_corners" and n_out > 1:
        return float(np.float32(n_in - 1) / np.float32(n_out - 1))
    return float(np.float32(n_in) / np.float32(n_out))


@register_int8("relax.image.resize2d", kind="resize_bilinear")
def resize2d(ctx: RewriteContext, f: relax.Call, out: OutputQuant):
    at = f.attrs
    require(str(at.method) == "linear" and str(at.layout) == "NHWC", "resize method")
    mode = str(at.coordinate_transformation_mode)
    require(mode in _MODES, f"resize mode {mode}")
    x, xq = ctx.graph.deq_act(f.args[0])
    require(xq.dtype == out.dtype, "resize changes type")
    require(xq.scale == out.scale and xq.zero_point == out.zero_point and out.full_range, "resize requantizes")
    _, oh, ow, _ = shape_of(f)
    if ctx.mode != "tflite":
        te_fn = resize_bilinear_xnn_te
    else:
        te_fn = resize_bilinear_te if xq.dtype == "uint8" else resize_bilinear_int_te
    return ctx.call_te(te_fn, ctx.remap(x), size=(int(oh), int(ow)), mode=mode, name=f"{xq.dtype}_resize_bilinear")


def _coord(o, scale: float, mode: str, n_in: int):
    """``(frac, lo, hi)``: TFLite's ``ComputeInterpolationValues`` in float32 (``scaled`` as a
    float32 PrimExpr)."""
    f32 = "float32"
    s = tirx.const(scale, f32)
    if mode == "half_pixel":
        v = rq.fence_f32_tir((o.astype(f32) + tirx.const(0.5, f32)) * s) - tirx.const(0.5, f32)
    else:
        v = o.astype(f32) * s
    lo = tirx.max(tirx.floor(v).astype("int32"), 0)
    hi = tirx.min(tirx.ceil(v).astype("int32"), n_in - 1)
    return v - lo.astype(f32), lo, hi


def resize_bilinear_te(x, size, mode: str):
    """TFLite's ``reference_ops::ResizeBilinear<uint8_t>``: per output pixel, float32
    ``v00*(1-dy)*(1-dx) + v10*dy*(1-dx) + v01*(1-dy)*dx + v11*dy*dx + 0.5`` summed left to right,
    each product and sum rounded to float32 on its own, then truncated to uint8."""
    n, h, w, c = (int(d) for d in x.shape)
    oh, ow = size
    sy, sx = _scale(h, oh, mode), _scale(w, ow, mode)
    one = tirx.const(1.0, "float32")

    def f(b, i, j, k):
        dy, y0, y1 = _coord(i, sy, mode, h)
        dx, x0, x1 = _coord(j, sx, mode, w)
        terms = [(x[b, y0, x0, k], one - dy, one - dx), (x[b, y1, x0, k], dy, one - dx),
                 (x[b, y0, x1, k], one - dy, dx), (x[b, y1, x1, k], dy, dx)]
        acc = None
        for v, p, q in terms:
            t = rq.fence_f32_tir(rq.fence_f32_tir(v.astype("float32") * p) * q)
            acc = t if acc is None else rq.fence_f32_tir(acc + t)
        acc = rq.fence_f32_tir(acc + tirx.const(0.5, "float32"))
        return tirx.min(acc.astype("int32"), 255).astype("uint8")

    return te.compute((n, oh, ow, c), f, name="resize_bilinear")


def _scale_10(n_in: int, n_out: int, mode: str) -> int:
    """``ResizeBilinearInteger``'s step between output and input coordinates, in 1/1024ths."""
    if mode == "align_corners" and n_out > 1:
        return ((1 << 10) * (n_in - 1) + (n_out - 1) // 2) // (n_out - 1)
    return ((1 << 10) * n_in + n_out // 2) // n_out


def _int_coord(o, scale_10: int, mode: str, n_in: int):
    """``ComputeInterpolationValuesInteger``: ``(v, lo, hi)``, ``v`` the input coordinate in
    1/1024ths. ``v >= -512`` (half-pixel), so C's truncating ``v / 1024`` is ``max(v, 0) >> 10``
    once clamped at 0; ``v - 1024 * lo`` may be negative, and TFLite weighs with it as it is."""
    v = o * scale_10 + (scale_10 // 2 - (1 << 9) if mode == "half_pixel" else 0)
    lo = tirx.shift_right(tirx.max(v, 0), 10)
    hi = tirx.min(tirx.shift_right(v + 1023, 10), n_in - 1)
    return v, lo, hi


def resize_bilinear_int_te(x, size, mode: str):
    """TFLite's ``ResizeBilinearInteger`` (int8): per output pixel the four neighbours weighed in
    1/1024ths each way, summed in int64, ``(sum ± 2**19) / 2**20`` truncated (half away from zero)."""
    n, h, w, c = (int(d) for d in x.shape)
    oh, ow = size
    sy, sx = _scale_10(h, oh, mode), _scale_10(w, ow, mode)

    def f(b, i, j, k):
        vy, y0, y1 = _int_coord(i, sy, mode, h)
        vx, x0, x1 = _int_coord(j, sx, mode, w)
        dy, dx = (vy - y0 * 1024).astype("int64"), (vx - x0 * 1024).astype("int64")
        one = tirx.const(1024, "int64")
        acc = (x[b, y0, x0, k].astype("int64") * (one - dy) * (one - dx) + x[b, y1, x0, k].astype("int64") * dy
               * (one - dx) + x[b, y0, x1, k].astype("int64") * (one - dy) * dx
               + x[b, y1, x1, k].astype("int64") * dy * dx)
        half = tirx.const(1 << 19, "int64")
        rounded = acc + tirx.Select(acc > tirx.const(0, "int64"), half, -half)
        return tirx.truncdiv(rounded, tirx.const(1 << 20, "int64")).astype(x.dtype)

    return te.compute((n, oh, ow, c), f, name="resize_bilinear")


def resize_bilinear_int_np(x: np.ndarray, size, mode: str) -> np.ndarray:
    """The numpy reference of :func:`resize_bilinear_int_te` (NHWC int8)."""
    n, h, w, c = x.shape
    oh, ow = size
    out = np.zeros((n, oh, ow, c), x.dtype)
    xs = x.astype(np.int64)

    def coord(o, scale_10, n_in):
        v = o * scale_10 + (scale_10 // 2 - (1 << 9) if mode == "half_pixel" else 0)
        return v, max(v, 0) >> 10, min((v + 1023) >> 10, n_in - 1)

    for i in range(oh):
        vy, y0, y1 = coord(i, _scale_10(h, oh, mode), h)
        for j in range(ow):
            vx, x0, x1 = coord(j, _scale_10(w, ow, mode), w)
            dy, dx = vy - 1024 * y0, vx - 1024 * x0
            acc = (xs[:, y0, x0] * (1024 - dy) * (1024 - dx) + xs[:, y1, x0] * dy * (1024 - dx)
                   + xs[:, y0, x1] * (1024 - dy) * dx + xs[:, y1, x1] * dy * dx)
            t = acc + np.where(acc > 0, 1 << 19, -(1 << 19))
            out[:, i, j] = np.where(t >= 0, t >> 20, -((-t) >> 20))
    return out


def _xnn_coord(o, n_in: int, n_out: int, mode: str):
    """XNNPACK's ``xnn_indirection_init_resize_bilinear2d_hwc_q11``: ``(lo, hi, alpha in Q11)``."""
    f32 = "float32"
    adjust = 1 if (mode == "align_corners" and n_out != 1) else 0
    scale = float(np.float32(n_in - adjust) / np.float32(n_out - adjust))
    v = o.astype(f32) * tirx.const(scale, f32)
    if mode == "half_pixel":  # neither align_corners nor TensorFlow's legacy mode
        offset = float(np.float32(np.float32(0.5) * np.float32(scale) - np.float32(0.5)))
        v = rq.fence_f32_tir(v) + tirx.const(offset, f32)
        v = tirx.min(tirx.max(v, tirx.const(0.0, f32)), tirx.const(float(n_in - 1), f32))
    v = rq.fence_f32_tir(v)
    lo = v.astype("int32")
    hi = tirx.min(lo + 1, n_in - 1)
    alpha = tirx.nearbyint(rq.fence_f32_tir(v - lo.astype(f32)) * tirx.const(2048.0, f32)).astype("int32")
    return lo, hi, alpha


def resize_bilinear_xnn_te(x, size, mode: str):
    """XNNPACK's ``u8-ibilinear`` / ``s8-ibilinear``: horizontal then vertical interpolation in Q11
    fixed point, ``(acc + 2**21) >> 22`` (an arithmetic shift for int8)."""
    n, h, w, c = (int(d) for d in x.shape)
    oh, ow = size

    def f(b, i, j, k):
        y0, y1, ay = _xnn_coord(i, h, oh, mode)
        x0, x1, ax = _xnn_coord(j, w, ow, mode)
        tl, tr = x[b, y0, x0, k].astype("int32"), x[b, y0, x1, k].astype("int32")
        bl, br = x[b, y1, x0, k].astype("int32"), x[b, y1, x1, k].astype("int32")
        top = tirx.shift_left(tl, 11) + (tr - tl) * ax
        bottom = tirx.shift_left(bl, 11) + (br - bl) * ax
        acc = tirx.shift_left(top, 11) + (bottom - top) * ay
        return tirx.shift_right(acc + (1 << 21), 22).astype(x.dtype)

    return te.compute((n, oh, ow, c), f, name="resize_bilinear")


def resize_bilinear_np(x: np.ndarray, size, mode: str) -> np.ndarray:
    """The numpy reference of :func:`resize_bilinear_te` (NHWC uint8)."""
    n, h, w, c = x.shape
    oh, ow = size
    out = np.zeros((n, oh, ow, c), np.uint8)
    f = np.float32
    sy, sx = f(_scale(h, oh, mode)), f(_scale(w, ow, mode))

    def coord(o, s, n_in):
        v = (f(o) + f(0.5)) * s - f(0.5) if mode == "half_pixel" else f(o) * s
        lo = max(int(np.floor(v)), 0)
        return f(v - f(lo)), lo, min(int(np.ceil(v)), n_in - 1)

    for i in range(oh):
        dy, y0, y1 = coord(i, sy, h)
        for j in range(ow):
            dx, x0, x1 = coord(j, sx, w)
            v = (x[:, y0, x0].astype(f) * (f(1) - dy) * (f(1) - dx) + x[:, y1, x0].astype(f) * dy * (f(1) - dx)
                 + x[:, y0, x1].astype(f) * (f(1) - dy) * dx + x[:, y1, x1].astype(f) * dy * dx + f(0.5))
            out[:, i, j] = np.minimum(v.astype(np.int32), 255).astype(np.uint8)
    return out
