"""``LowerQDQToInt8``: rewrite the TFLite frontend's QDQ Relax graph into integer arithmetic.

The TFLite frontend imports a quantized op as ``dequantize -> float op -> quantize [-> clip]``.
This pass matches each ``R.quantize`` (plus the ``R.clip`` of a fused activation that follows
it) together with the float computation feeding it and replaces the whole group by one TIR
kernel (``call_tir`` built with TE) computing on the integers:

* conv2d / depthwise (grouped) conv2d, NHWC, kernel HWIO / HWOI:
  ``acc[o] = sum(x_pad * w[o]) + bias'[o]`` in int32 from uint8/int8 activations and the
  *original* int8/uint8 weight constants.  The input is padded with its zero point so padding
  contributes exactly zero.  Zero points:

  - symmetric weights (``zp_w == 0``, all int8 per-channel models):
    ``sum((x - zp_x) * w) = sum(x * w) - zp_x * sum(w)``; ``sum(w)`` per output channel is
    folded at compile time into ``bias' = bias - zp_x * wsum``, the inner loop is a pure
    u8/i8 x i8 -> i32 dot product.
  - asymmetric weights (uint8 per-tensor models): the inner loop computes
    ``(x - zp_x) * (w - zp_w)`` after widening to int32 (the weights stay uint8 in memory).

  followed by ``requantize`` (fixed-point multiplier + shift, per tensor or per channel, see
  :mod:`.requant`) and the activation clamp, fused in the same kernel.

  With a target's dot-product ``scheme`` (:mod:`.dot`), convolutions with ``groups == 1`` and
  fully connected layers are instead dot products on weights packed at compile time for one
  of the scheme's intrinsics, chosen per layer; the accumulator block carries the intrinsic's
  name (``tvmq_dot`` annotation) for the tuner to tensorize with (:mod:`tvmq.tuner.rules`).
* fully connected (``matmul`` of dequantized input and a dequantized ``permute_dims`` constant):
  the same with a 2-D dot product.
* add of two quantized tensors: TFLite's ADD requantization (both inputs rescaled to
  ``2*max(s1, s2)`` with 20 bits headroom, summed, rescaled), float activations folded into
  the integer clamp; numpy-style broadcasting.
* mean over axes: ``sum(x - zp_in)`` then one fixed-point requantization by TFLite's
  multiplier for ``s_in / s_out`` with ``1/N`` folded in by integer division
  (:func:`.requant.mean_multiplier`).
* average pool (frontend emits ``astype(int32) -> avg_pool2d -> astype``): integer window sum
  with TFLite's rounding division ``(acc +- count/2) / count`` (truncating), padding excluded.
* concatenation: inputs with the output's scale/zero point are copied (the int8 TFLite spec
  requires that), others are requantized with the fixed-point multiplier (TFLite's legacy
  uint8 kernel rescales those in float, so they may differ by one unit; not tested).
* ``quantize(dequantize(x))`` (requantize, e.g. TFLite QUANTIZE uint8 -> int8).

Everything else is left untouched on the QDQ float path.  A dead-code elimination removes the
now-unused float ``dequantize`` of weights, so the module keeps only integer weight constants.

``mode="xnnpack"`` uses XNNPACK's fp32 requantization for conv / depthwise / fully connected
and mean, and XNNPACK's ADD scheme (20-bit integer multipliers, arithmetic shift with a
rounding bias); average pool, concatenation and requantize use the TFLite numerics in both
modes.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Dict, List, Optional, Tuple

import numpy as np
import tvm
from tvm import relax, te, tirx, topi
from tvm.relax.expr_functor import PyExprMutator, mutator

from . import dot
from . import requant as rq

__all__ = ["LowerQDQToInt8", "intrinsic_counts", "lower_qdq_to_int8", "lowering_stats", "qdq_op_counts"]

_DT_RANGE = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-32768, 32767)}


def _op_name(expr) -> Optional[str]:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def _pv(e) -> float:
    """Python float of a PrimValue / FloatImm / python number."""
    v = e
    for _ in range(3):
        if isinstance(v, (int, float)):
            break
        v = v.value
    return float(v)


def _dtype(e) -> str:
    return str(e.ty.dtype)


def _shape(e) -> List[int]:
    return [int(d) for d in e.ty.shape.values]


class _NoMatch(Exception):
    pass


def _require(cond, why=""):
    if not cond:
        raise _NoMatch(why)


@mutator
class _Int8Mutator(PyExprMutator):
    def __init__(self, mod: tvm.IRModule, mode: str, scheme: Optional[str] = None):
        super().__init__(mod)
        self.mode = mode
        self.scheme = scheme
        self.dot_stats: Counter = Counter()
        self.var2val: Dict = {}
        self.uses: Counter = Counter()
        self.stats: Dict[str, Counter] = defaultdict(Counter)

    # ------------------------------------------------------------------ graph helpers
    def prepare(self, func: relax.Function):
        self.var2val = relax.analysis.get_var2val(func)
        self.uses = Counter()
        for value in self.var2val.values():
            for v in relax.analysis.free_vars(value):
                self.uses[v] += 1
        # the function's return counts as a use
        if isinstance(func.body, relax.SeqExpr):
            for v in relax.analysis.free_vars(func.body.body):
                self.uses[v] += 1
        # quantize calls consumed only by a clip: lowered together with the clip
        self.clip_fed = []
        for var, val in self.var2val.items():
            if _op_name(val) == "relax.clip" and isinstance(val.args[0], relax.Var):
                src = self.var2val.get(val.args[0])
                if _op_name(src) == "relax.quantize" and self.uses[val.args[0]] == 1:
                    self.clip_fed.append(src)

    def _val(self, expr):
        seen = 0
        while isinstance(expr, relax.Var) and expr in self.var2val and seen < 1000:
            expr = self.var2val[expr]
            seen += 1
        return expr

    def _call(self, expr, name):
        v = self._val(expr)
        return v if _op_name(v) == name else None

    def _const_np(self, expr) -> np.ndarray:
        """Numpy value of a constant reached through reshape / permute_dims / astype."""
        v = self._val(expr)
        if isinstance(v, tvm.ir.expr.GenericConst):
            return v.value.numpy()
        name = _op_name(v)
        if name == "relax.reshape":
            arr = self._const_np(v.args[0])
            shape = [int(s) for s in v.args[1].values]
            return arr.reshape(shape)
        if name == "relax.permute_dims":
            arr = self._const_np(v.args[0])
            axes = v.attrs.axes
            axes = None if axes is None else [int(a) for a in axes]
            return np.transpose(arr, axes)
        raise _NoMatch("not a constant")

    def _scalar(self, expr) -> float:
        arr = np.asarray(self._const_np(expr))
        _require(arr.size == 1, "per-axis activation parameters")
        return arr.reshape(()).item()

    def _deq_act(self, expr):
        """``dequantize(x)`` of an activation: (x, scale, zp, dtype)."""
        c = self._call(expr, "relax.dequantize")
        _require(c is not None, "input not dequantized")
        x = c.args[0]
        dt = _dtype(x)
        _require(dt in ("uint8", "int8"), f"activation dtype {dt}")
        return x, float(np.float32(self._scalar(c.args[1]))), int(self._scalar(c.args[2])), dt

    def _deq_const(self, expr):
        """Dequantized integer constant, possibly reshaped / transposed after dequantize.

        Returns (int array, per-element float32 scale, per-element int zero point).
        """
        v = self._val(expr)
        name = _op_name(v)
        if name == "relax.dequantize":
            q = self._const_np(v.args[0])
            scale = np.asarray(self._const_np(v.args[1]), np.float32)
            zp = np.asarray(self._const_np(v.args[2]), np.int64)
            axis = int(v.attrs.axis)
            ax = axis if axis >= 0 else q.ndim + axis

            def expand(p):
                if p.size == 1:
                    return np.broadcast_to(p.reshape(()), q.shape)
                shape = [1] * q.ndim
                shape[ax] = p.size
                return np.broadcast_to(p.reshape(shape), q.shape)

            return q, expand(scale), expand(zp)
        if name == "relax.reshape":
            q, s, z = self._deq_const(v.args[0])
            shape = [int(d) for d in v.args[1].values]
            return q.reshape(shape), np.reshape(s, shape), np.reshape(z, shape)
        if name == "relax.permute_dims":
            q, s, z = self._deq_const(v.args[0])
            axes = v.attrs.axes
            axes = None if axes is None else [int(a) for a in axes]
            return np.transpose(q, axes), np.transpose(s, axes), np.transpose(z, axes)
        raise _NoMatch("weight is not a dequantized constant")

    @staticmethod
    def _per_channel(arr: np.ndarray, axis: int) -> np.ndarray:
        """Collapse a per-element parameter array to a vector along ``axis`` (must be constant elsewhere)."""
        moved = np.moveaxis(np.asarray(arr), axis, -1).reshape(-1, arr.shape[axis])
        _require(bool(np.all(moved == moved[:1])), "quantization not along output channels")
        return moved[0]

    def _remap(self, var):
        return self.visit_expr(var)

    # ------------------------------------------------------------------ matching
    def visit_call_(self, call):  # noqa: D401
        name = _op_name(call)
        try:
            if name == "relax.quantize":
                if any(c.same_as(call) for c in self.clip_fed):
                    return super().visit_call_(call)
                return self._lower_quantize(call, None)
            if name == "relax.clip":
                q = self._call(call.args[0], "relax.quantize")
                if q is not None and self.uses[call.args[0]] == 1:
                    lo = int(round(_pv(call.args[1])))
                    hi = int(round(_pv(call.args[2])))
                    return self._lower_quantize(q, (lo, hi))
            if name == "relax.astype":
                return self._lower_avgpool(call)
        except _NoMatch:
            pass
        return super().visit_call_(call)


    def _count(self, op, lowered):
        self.stats[op]["lowered" if lowered else "qdq"] += 1

    def _lower_quantize(self, qcall, clip):
        out_dtype = str(qcall.attrs.out_dtype)
        _require(out_dtype in ("uint8", "int8"), "quantize output dtype")
        _require(_dtype(qcall.args[0]) == "float32", "quantize input")
        s_out = float(np.float32(self._scalar(qcall.args[1])))
        zp_out = int(self._scalar(qcall.args[2]))
        qmin, qmax = _DT_RANGE[out_dtype]
        if clip is not None:
            qmin, qmax = max(qmin, clip[0]), min(qmax, clip[1])
        out = dict(scale=s_out, zp=zp_out, qmin=qmin, qmax=qmax, dtype=out_dtype)
        f = self._val(qcall.args[0])
        fname = _op_name(f)
        kind = {
            "relax.add": "add",
            "relax.nn.conv2d": "conv2d",
            "relax.matmul": "dense",
            "relax.mean": "mean",
            "relax.concat": "concat",
            "relax.dequantize": "requantize",
        }.get(fname, (fname or "other").split(".")[-1])
        try:
            # float activation applied before quantize (ADD's fused activation)
            if fname in ("relax.nn.relu", "relax.clip"):
                lo, hi = 0.0, np.inf
                if fname == "relax.clip":
                    lo, hi = _pv(f.args[1]), _pv(f.args[2])
                out["qmin"], out["qmax"] = _act_range(lo, hi, out)
                f = self._val(f.args[0])
                fname = _op_name(f)
                kind = {"relax.add": "add"}.get(fname, (fname or "other").split(".")[-1])
            if fname == "relax.add":
                # conv/matmul + bias, or a quantized ADD
                a, b = f.args
                for main, bias in ((a, b), (b, a)):
                    mn = _op_name(self._val(main))
                    if mn in ("relax.nn.conv2d", "relax.matmul"):
                        bias_q, _, _ = self._deq_const(bias)
                        kind = "conv2d" if mn == "relax.nn.conv2d" else "dense"
                        res = self._lower_linear(self._val(main), bias_q.astype(np.int64).ravel(), out)
                        kind = res[1]
                        self._count(kind, True)
                        return res[0]
                res = self._lower_add(a, b, out)
                self._count("add", True)
                return res
            if fname in ("relax.nn.conv2d", "relax.matmul"):
                res = self._lower_linear(f, None, out)
                self._count(res[1], True)
                return res[0]
            if fname == "relax.dequantize":
                res = self._lower_requant(f, out)
                self._count("requantize", True)
                return res
            if fname == "relax.mean":
                res = self._lower_mean(f, out)
                self._count("mean", True)
                return res
            if fname == "relax.concat":
                res = self._lower_concat(f, out)
                self._count("concat", True)
                return res
            raise _NoMatch("unsupported producer")
        except _NoMatch:
            self._count(kind, False)
            raise

    # ------------------------------------------------------------------ conv2d / dense
    def _lower_linear(self, f, bias, out):
        name = _op_name(f)
        x, s_x, zp_x, x_dt = self._deq_act(f.args[0])
        wq, ws, wz = self._deq_const(f.args[1])
        _require(wq.dtype in (np.int8, np.uint8), f"weight dtype {wq.dtype}")
        if name == "relax.nn.conv2d":
            at = f.attrs
            _require(at.data_layout == "NHWC" and at.out_layout == "NHWC", "layout")
            _require(at.kernel_layout in ("HWIO", "HWOI"), "kernel layout")
            if at.kernel_layout == "HWOI":
                wq, ws, wz = (np.transpose(a, (0, 1, 3, 2)) for a in (wq, ws, wz))
            oc_axis = 3
            groups = int(at.groups)
            kind = "depthwise_conv2d" if groups > 1 else "conv2d"
            _require(len(_shape(x)) == 4, "conv rank")
        else:
            _require(wq.ndim == 2 and len(_shape(x)) == 2, "dense rank")
            oc_axis = 1
            kind = "dense"
        oc = wq.shape[oc_axis]
        w_scale = self._per_channel(ws, oc_axis).astype(np.float32)
        w_zp = self._per_channel(wz, oc_axis).astype(np.int64)
        wsum = wq.astype(np.int64).reshape(-1, oc).sum(axis=0)
        bias = np.zeros(oc, np.int64) if bias is None else np.broadcast_to(bias, (oc,)).astype(np.int64)
        _require(bias.shape == (oc,), "bias shape")
        symmetric = bool(np.all(w_zp == 0))
        per_tensor_wzp = bool(np.all(w_zp == w_zp[0]))
        _require(symmetric or per_tensor_wzp, "per-channel asymmetric weights")
        wzp = 0 if symmetric else int(w_zp[0])
        epi = self._epilogue(s_x, w_scale, out)
        x_in = self._remap(x)
        choice = None
        if self.scheme and (name != "relax.nn.conv2d" or groups == 1):
            choice = dot.choose(self.scheme, x_dt, wq, wzp)
        if choice is not None:
            return self._lower_linear_dot(f, name, kind, x_in, x_dt, zp_x, wq, wzp, bias, oc, epi, choice)
        if symmetric:
            bias_eff = bias - zp_x * wsum
        else:
            bias_eff = bias
        _require(np.all(np.abs(bias_eff) < 2**31), "bias overflow")
        w_c = relax.const(wq)
        b_c = relax.const(bias_eff.astype(np.int32))
        if name == "relax.nn.conv2d":
            params = dict(self._conv_attrs(f), zp_x=zp_x, zp_w=wzp, symmetric=symmetric)
            call = self.builder_.call_te(_conv2d_int_te, x_in, w_c, b_c, *epi["tensors"],
                                         params=params, epi=epi["static"],
                                         primfunc_name_hint=f"int8_{kind}")
        else:
            params = dict(zp_x=zp_x, zp_w=wzp, symmetric=symmetric)
            call = self.builder_.call_te(_dense_int_te, x_in, w_c, b_c, *epi["tensors"],
                                         params=params, epi=epi["static"],
                                         primfunc_name_hint="int8_dense")
        return call, kind

    @staticmethod
    def _conv_attrs(f) -> dict:
        at = f.attrs
        return dict(strides=[int(s) for s in at.strides], padding=[int(p) for p in at.padding],
                    dilation=[int(d) for d in at.dilation], groups=int(at.groups))

    def _lower_linear_dot(self, f, name, kind, x_in, x_dt, zp_x, wq, wzp, bias, oc, epi, choice):
        """Conv / dense as a dot product on packed weights, tensorizable with ``choice.intrin``
        (see :mod:`.dot` for the algebra)."""
        packed, bsum = dot.pack(choice, wq)
        if choice.zero_points:
            bias_eff = bias
        else:
            # the window sum covers the real input channels only (the padding to a multiple of 4
            # meets zero weights in ``acc``), so its constant counterpart must count them alone
            k_total = int(np.prod(wq.shape[:-2])) * wq.shape[-2]
            bias_eff = bias - zp_x * (bsum[:oc] + choice.cw * k_total)
        _require(np.all(np.abs(bias_eff) < 2**31), "bias overflow")
        self.dot_stats[choice.intrin] += 1
        for skipped in choice.skipped:
            self.dot_stats[f"{skipped} (could saturate)"] += 1
        is_conv = name == "relax.nn.conv2d"
        params = dict(zp_x=zp_x, cw=choice.cw, lanes=choice.lanes, layout=choice.layout, intrin=choice.intrin,
                      oc=oc, window=[int(d) for d in wq.shape[:-2]], out_lead=_shape(f)[:-1])
        if is_conv:
            params.update(self._conv_attrs(f))
        extra = []
        if choice.cw:
            te_fn = _conv_window_sum_te if is_conv else _dense_window_sum_te
            extra.append(self.builder_.emit(self.builder_.call_te(te_fn, x_in, params=params,
                                                                  primfunc_name_hint="int8_window_sum")))
        elif choice.zero_points:
            extra += [relax.const(np.array([zp_x], np.int32)), relax.const(np.array([wzp], np.int32))]
        params["n_extra"] = len(extra)
        x_shape = _shape(f.args[0])
        if choice.layout != "row" and x_shape[-1] % 4 == 0 and not (is_conv and any(params["padding"])):
            # the (..., C/4, 2, 2) view the intrinsic reads, as a free reshape
            x_in = self.builder_.emit(relax.op.reshape(x_in, [*x_shape[:-1], x_shape[-1] // 4, 2, 2]))
        args = (x_in, relax.const(packed), relax.const(bias_eff.astype(np.int32)), *extra, *epi["tensors"])
        te_fn = _conv2d_dot_te if is_conv else _dense_dot_te
        call = self.builder_.call_te(te_fn, *args, params=params, epi=epi["static"],
                                     primfunc_name_hint=f"int8_{kind}")
        return call, kind

    def _epilogue(self, s_x, w_scale, out):
        """Requantization parameters: static python values or constant per-channel vectors."""
        static = dict(zp=out["zp"], qmin=out["qmin"], qmax=out["qmax"], dtype=out["dtype"], mode=self.mode)
        tensors = []
        if self.mode == "xnnpack":
            sc = rq.xnnpack_scale(s_x, w_scale, out["scale"]).astype(np.float32)
            if np.all(sc == sc[0]):
                static["scale"] = float(sc[0])
            else:
                static["scale"] = None
                tensors.append(relax.const(sc))
        else:
            real = np.float64(s_x) * w_scale.astype(np.float64) / np.float64(out["scale"])
            q, sh = rq.quantize_multipliers(real)
            if np.all(q == q[0]) and np.all(sh == sh[0]):
                static["q"], static["shift"] = int(q[0]), int(sh[0])
            else:
                static["q"] = static["shift"] = None
                tensors += [relax.const(q), relax.const(sh)]
        return dict(static=static, tensors=tensors)

    # ------------------------------------------------------------------ add
    def _lower_add(self, a, b, out):
        xa, sa, za, _ = self._deq_act(a) if not self._is_const_deq(a) else self._const_operand(a)
        xb, sb, zb, _ = self._deq_act(b) if not self._is_const_deq(b) else self._const_operand(b)
        out_shape = [int(d) for d in self._val_sinfo(a, b)]
        static = dict(sa=sa, za=za, sb=sb, zb=zb, so=out["scale"], zo=out["zp"], qmin=out["qmin"],
                      qmax=out["qmax"], dtype=out["dtype"], mode=self.mode, shape=out_shape)
        xa = self._remap(xa) if isinstance(xa, relax.Var) else xa
        xb = self._remap(xb) if isinstance(xb, relax.Var) else xb
        return self.builder_.call_te(_add_int_te, xa, xb, p=static, primfunc_name_hint="int8_add")

    def _is_const_deq(self, e):
        c = self._call(e, "relax.dequantize")
        if c is None:
            return False
        try:
            self._const_np(c.args[0])
            return True
        except _NoMatch:
            return False

    def _const_operand(self, e):
        q, s, z = self._deq_const(e)
        _require(np.all(s == s.flat[0]) and np.all(z == z.flat[0]), "per-axis constant operand")
        return relax.const(q), float(s.flat[0]), int(z.flat[0]), str(q.dtype)

    def _val_sinfo(self, a, b):
        sa = _shape(a)
        sb = _shape(b)
        return np.broadcast_shapes(tuple(sa), tuple(sb))

    # ------------------------------------------------------------------ requantize / mean / concat
    def _lower_requant(self, deq, out):
        x, s_x, zp_x, _ = self._deq_act(deq)
        q, sh = rq.quantize_multiplier(np.float64(s_x) / np.float64(out["scale"]))
        p = dict(zp_x=zp_x, q=q, shift=sh, zp=out["zp"], qmin=out["qmin"], qmax=out["qmax"],
                 dtype=out["dtype"], identity=(s_x == out["scale"]))
        return self.builder_.call_te(_requant_te, self._remap(x), p=p, primfunc_name_hint="int8_requantize")

    def _lower_mean(self, f, out):
        x, s_x, zp_x, _ = self._deq_act(f.args[0])
        shape = _shape(x)
        axes = f.attrs.axis
        axes = list(range(len(shape))) if axes is None else [int(a) % len(shape) for a in axes]
        n = int(np.prod([shape[a] for a in axes]))
        q, sh = rq.mean_multiplier(s_x, out["scale"], n)
        # XNNPACK's MEAN: float32 scale s_in / (s_out * n), round half to even
        fscale = float(np.float32(s_x) / (np.float32(out["scale"]) * np.float32(n)))
        p = dict(axes=axes, keepdims=bool(f.attrs.keepdims), zp_x=zp_x, n=n, q=q, shift=sh,
                 zp=out["zp"], qmin=out["qmin"], qmax=out["qmax"], dtype=out["dtype"], mode=self.mode,
                 fscale=fscale)
        return self.builder_.call_te(_mean_te, self._remap(x), p=p, primfunc_name_hint="int8_mean")

    def _lower_concat(self, f, out):
        tup = self._val(f.args[0])
        _require(isinstance(tup, relax.Tuple), "concat tuple")
        parts = []
        for e in tup.fields:
            x, s_x, zp_x, dt = self._deq_act(e)
            if s_x == out["scale"] and zp_x == out["zp"] and dt == out["dtype"]:
                parts.append((self._remap(x), None))
            else:
                q, sh = rq.quantize_multiplier(np.float64(s_x) / np.float64(out["scale"]))
                lo, hi = _DT_RANGE[out["dtype"]]
                p = dict(zp_x=zp_x, q=q, shift=sh, zp=out["zp"], qmin=lo, qmax=hi, dtype=out["dtype"],
                         identity=False)
                parts.append((self.builder_.emit(self.builder_.call_te(
                    _requant_te, self._remap(x), p=p, primfunc_name_hint="int8_requantize")), p))
        axis = int(f.attrs.axis)
        vals = [v for v, _ in parts]
        y = self.builder_.emit(relax.op.concat(vals, axis=axis))
        lo, hi = _DT_RANGE[out["dtype"]]
        if (out["qmin"], out["qmax"]) != (lo, hi):
            return relax.op.clip(y, float(out["qmin"]), float(out["qmax"]))
        return y

    # ------------------------------------------------------------------ avg pool
    def _lower_avgpool(self, call):
        # astype(avg_pool2d(astype(x, int32)), uint8|int8)
        out_dtype = str(call.attrs.dtype)
        _require(out_dtype in ("uint8", "int8"), "avgpool out")
        pool = self._call(call.args[0], "relax.nn.avg_pool2d")
        _require(pool is not None, "no avg pool")
        inner = self._call(pool.args[0], "relax.astype")
        _require(inner is not None and str(inner.attrs.dtype) == "int32", "avgpool input")
        x = inner.args[0]
        _require(_dtype(x) in ("uint8", "int8"), "avgpool dtype")
        at = pool.attrs
        _require(at.layout == "NHWC" and not bool(at.ceil_mode), "avgpool layout")
        p = dict(pool=[int(v) for v in at.pool_size], strides=[int(v) for v in at.strides],
                 padding=[int(v) for v in at.padding], dtype=out_dtype,
                 count_include_pad=bool(at.count_include_pad))
        _require(all(int(d) == 1 for d in at.dilation), "dilation")
        self._count("avg_pool2d", True)
        return self.builder_.call_te(_avgpool_te, self._remap(x), p=p, primfunc_name_hint="int8_avg_pool2d")


def _act_range(lo: float, hi: float, out) -> Tuple[int, int]:
    """TFLite ``CalculateActivationRangeQuantized``: ``zp + std::round(v / scale)`` in float32."""
    s = np.float32(out["scale"])
    qmin, qmax = out["qmin"], out["qmax"]
    amin = qmin if lo == -np.inf else max(qmin, out["zp"] + rq.round_half_away(float(np.float32(lo) / s)))
    amax = qmax if hi == np.inf else min(qmax, out["zp"] + rq.round_half_away(float(np.float32(hi) / s)))
    return amin, amax


# ====================================================================== TE kernels
def _i32(e):
    return e.astype("int32")


def _epilogue_expr(acc, o, epi, tens):
    """Requantize an int32 accumulator for output channel ``o``."""
    if epi["mode"] == "xnnpack":
        scale = epi["scale"] if epi["scale"] is not None else tens[0][o]
        return rq.requantize_fp32_tir(acc, scale, epi["zp"], epi["qmin"], epi["qmax"], epi["dtype"])
    if epi["q"] is not None:
        q, sh = epi["q"], epi["shift"]
    else:
        q, sh = tens[0][o], tens[1][o]
    return rq.requantize_tir(acc, q, sh, epi["zp"], epi["qmin"], epi["qmax"], epi["dtype"])


def _conv2d_int_te(x, w, bias, *tens, params, epi):
    n, h, wd, c = (int(v) for v in x.shape)
    kh, kw, icg, oc = (int(v) for v in w.shape)
    sh, sw = params["strides"]
    dh, dw = params["dilation"]
    pt, pl, pb, pr = params["padding"]
    groups = params["groups"]
    zp_x, zp_w = params["zp_x"], params["zp_w"]
    ocg = oc // groups
    oh = (h + pt + pb - (kh - 1) * dh - 1) // sh + 1
    ow = (wd + pl + pr - (kw - 1) * dw - 1) // sw + 1
    if pt or pl or pb or pr:
        xp = topi.nn.pad(x, [0, pt, pl, 0], [0, pb, pr, 0], pad_value=zp_x, name="pad_zp")
    else:
        xp = x
    rh = te.reduce_axis((0, kh), "rh")
    rw = te.reduce_axis((0, kw), "rw")
    rc = te.reduce_axis((0, icg), "rc")

    def cin(o):
        return rc if groups == 1 else (o // ocg) * icg + rc

    if params["symmetric"]:
        def term(b, i, j, o):
            return _i32(xp[b, i * sh + rh * dh, j * sw + rw * dw, cin(o)]) * _i32(w[rh, rw, rc, o])
    else:
        def term(b, i, j, o):
            return (_i32(xp[b, i * sh + rh * dh, j * sw + rw * dw, cin(o)]) - zp_x) * (
                _i32(w[rh, rw, rc, o]) - zp_w)

    acc = te.compute((n, oh, ow, oc), lambda b, i, j, o: te.sum(term(b, i, j, o), axis=[rh, rw, rc]),
                     name="acc")
    return te.compute((n, oh, ow, oc), lambda b, i, j, o: _epilogue_expr(acc[b, i, j, o] + bias[o], o, epi, tens),
                      name="requant")


def _dense_int_te(x, w, bias, *tens, params, epi):
    m, k = (int(v) for v in x.shape)
    _, oc = (int(v) for v in w.shape)
    rk = te.reduce_axis((0, k), "rk")
    zp_x, zp_w = params["zp_x"], params["zp_w"]
    if params["symmetric"]:
        acc = te.compute((m, oc), lambda i, o: te.sum(_i32(x[i, rk]) * _i32(w[rk, o]), axis=rk), name="acc")
    else:
        acc = te.compute((m, oc), lambda i, o: te.sum((_i32(x[i, rk]) - zp_x) * (_i32(w[rk, o]) - zp_w), axis=rk),
                         name="acc")
    return te.compute((m, oc), lambda i, o: _epilogue_expr(acc[i, o] + bias[o], o, epi, tens), name="requant")


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


def _dot_input(x, n_lead, before, after, params):
    """The activation as the intrinsic reads it: padded with its zero point (spatially, and to a
    multiple of 4 channels), seen as ``(..., C/4, 2, 2)`` for a "pair" intrinsic. ``x`` may
    already be that view (a free Relax reshape, when nothing needs padding)."""
    if len(x.shape) == n_lead + 3:
        return x
    after = [*after[:-1], after[-1] + (-int(x.shape[-1]) % 4)]
    return (_pad_zp if params["layout"] == "row" else _pair_view)(x, before, after, params["zp_x"])


def _window_sum_te(x, params, before, after, out_lead, window):
    """``sum`` of the zero-point padded activation over each output position's window (int32):
    the run-time term of :mod:`.dot`'s algebra when ``cw != 0``, as a kernel of its own (the
    requantization inside the tensorized tile may only read the accumulator and inputs)."""
    xp = _pad_zp(x, before, after, params["zp_x"])
    win = [te.reduce_axis((0, n), f"s{i}") for i, n in enumerate(params["window"])]
    rc = te.reduce_axis((0, int(xp.shape[-1])), "sc")
    return te.compute(out_lead, lambda *idx: te.sum(_i32(xp[(*window(*win, idx=idx), rc)]), axis=[*win, rc]),
                      name="xsum")


def _dot_kernel(x, wp, bias, extra, tens, params, epi, out_lead, window, before, after):
    """The dot product on packed weights: ``acc`` (annotated with its intrinsic), then the
    requantization of ``acc + bias' (+ cw * window sum)``. ``extra`` holds the window sum
    (``cw != 0``) or the two zero points (a ``pairzp`` intrinsic), else nothing.

    ``window(*window_axes, idx=out_lead_index)`` gives the activation's leading indices."""
    lanes, oc, cw = params["lanes"], params["oc"], params["cw"]
    ocp = oc + (-oc % lanes)
    xp = _dot_input(x, len(out_lead), before, after, params)
    win = [te.reduce_axis((0, n), f"r{i}") for i, n in enumerate(params["window"])]
    chan = [te.reduce_axis((0, int(d)), f"c{i}") for i, d in enumerate(xp.shape[len(out_lead):])]

    def acc_f(*idx):
        o = idx[-1]
        a = _i32(xp[(*window(*win, idx=idx[:-1]), *chan)])
        if params["layout"] == "row":
            (rc,) = chan
            w = _i32(wp[(o // lanes, *win, rc // 4, o % lanes, rc % 4)])
        else:
            rc, rp, rq = chan
            w = _i32(wp[(o // lanes, *win, rc, rp, o % lanes, rq)])
        if params["layout"] == "pairzp":
            zx, zw = extra
            return te.sum((a - zx[0]) * (w - zw[0]), axis=[*win, *chan])
        return te.sum(a * w, axis=[*win, *chan])

    acc = te.compute((*out_lead, ocp), acc_f, name="acc", attrs={"tvmq_dot": params["intrin"]})

    def out_f(*idx):
        v = acc[idx] + bias[idx[-1]]
        if cw:
            v = v + extra[0][idx[:-1]] * cw
        return _epilogue_expr(v, idx[-1], epi, tens)

    return te.compute((*out_lead, oc), out_f, name="requant")


def _conv_window(params):
    """The window -> input index map of an NHWC conv, and its padding before / after."""
    kh, kw = params["window"]
    sh, sw = params["strides"]
    dh, dw = params["dilation"]
    pt, pl, pb, pr = params["padding"]

    def window(rh, rw, idx):
        b, i, j = idx
        return b, i * sh + rh * dh, j * sw + rw * dw

    return window, [0, pt, pl, 0], [0, pb, pr, 0]


def _conv_window_sum_te(x, *, params):
    window, before, after = _conv_window(params)
    return _window_sum_te(x, params, before, after, params["out_lead"], window)


def _dense_window_sum_te(x, *, params):
    return _window_sum_te(x, params, [0, 0], [0, 0], params["out_lead"], lambda idx: (idx[0],))


def _conv2d_dot_te(x, wp, bias, *rest, params, epi):
    """NHWC conv (groups == 1) on weights packed for a dot-product intrinsic; the ``acc`` block
    carries the intrinsic's name in its ``tvmq_dot`` annotation for the tuner's schedule rule.
    ``x`` is ``(N, H, W, C)``, or ``(N, H, W, C/4, 2, 2)`` for a "pair" intrinsic; ``rest`` is
    the ``n_extra`` operands of :func:`_dot_kernel`, then the requantization vectors."""
    window, before, after = _conv_window(params)
    k = params["n_extra"]
    return _dot_kernel(x, wp, bias, rest[:k], rest[k:], params, epi, params["out_lead"], window, before, after)


def _dense_dot_te(x, wp, bias, *rest, params, epi):
    """Fully connected on packed weights (see :func:`_conv2d_dot_te`); ``x`` is ``(M, K)``
    or ``(M, K/4, 2, 2)``."""
    k = params["n_extra"]
    return _dot_kernel(x, wp, bias, rest[:k], rest[k:], params, epi, params["out_lead"], lambda idx: (idx[0],),
                       [0, 0], [0, 0])


def _bcast_index(t, out_idx):
    nd = len(t.shape)
    idx = out_idx[len(out_idx) - nd:]
    return [0 if int(t.shape[d]) == 1 else idx[d] for d in range(nd)]


def _add_int_te(a, b, p):
    shape = p["shape"]
    qmin, qmax, dt = p["qmin"], p["qmax"], p["dtype"]
    if p["mode"] == "xnnpack":
        # XNNPACK qs8/qu8 vadd: acc = bias + a*ma + b*mb; out = asr(acc, shift) + zp
        sa_o = np.float32(p["sa"]) / np.float32(p["so"])
        sb_o = np.float32(p["sb"]) / np.float32(p["so"])
        mx = max(abs(sa_o), abs(sb_o))
        exp = int((np.float32(mx).view(np.uint32) >> 23) & 0xFF) - 127
        shift = 20 - exp
        ma = int(np.rint(np.float32(sa_o) * np.float32(2.0 ** shift)))
        mb = int(np.rint(np.float32(sb_o) * np.float32(2.0 ** shift)))
        bias = (1 << (shift - 1)) - ma * p["za"] - mb * p["zb"]

        def f(*idx):
            va = a[tuple(_bcast_index(a, idx))].astype("int32")
            vb = b[tuple(_bcast_index(b, idx))].astype("int32")
            acc = tirx.const(bias, "int32") + va * ma + vb * mb
            y = tirx.shift_right(acc, tirx.const(shift, "int32"))
            y = tirx.max(tirx.min(y, tirx.const(qmax - p["zo"], "int32")), tirx.const(qmin - p["zo"], "int32"))
            return (y + p["zo"]).astype(dt)

        return te.compute(shape, f, name="add")
    (q1, s1), (q2, s2), (qo, so) = rq.add_params(p["sa"], p["sb"], p["so"])
    ls = 1 << rq.ADD_LEFT_SHIFT

    # one requantization per stage: nesting them in one expression duplicates subtrees
    # (each MBQM uses its input several times) and blows up TIR simplification
    def scaled(t, z, q, s, nm):
        return te.compute(shape, lambda *idx: rq.mbqm_tir((t[tuple(_bcast_index(t, idx))].astype("int32") - z) * ls, q, s),
                          name=nm)

    sa = scaled(a, p["za"], q1, s1, "scaled_a")
    sb = scaled(b, p["zb"], q2, s2, "scaled_b")
    return te.compute(shape, lambda *i: rq.requantize_tir(sa[i] + sb[i], qo, so, p["zo"], qmin, qmax, dt), name="add")


def _requant_te(x, p):
    def f(*idx):
        v = x[idx].astype("int32") - p["zp_x"]
        if p["identity"]:
            y = v + p["zp"]
            y = tirx.max(tirx.min(y, tirx.const(p["qmax"], "int32")), tirx.const(p["qmin"], "int32"))
            return y.astype(p["dtype"])
        return rq.requantize_tir(v, p["q"], p["shift"], p["zp"], p["qmin"], p["qmax"], p["dtype"])

    return te.compute(x.shape, f, name="requantize")


def _mean_te(x, p):
    shape = [int(d) for d in x.shape]
    axes = p["axes"]
    red = {a: te.reduce_axis((0, shape[a]), f"r{a}") for a in axes}
    keep = [d for d in range(len(shape)) if d not in axes]
    acc_shape = [1 if d in axes else shape[d] for d in range(len(shape))] if p["keepdims"] else [shape[d] for d in keep]

    def acc_f(*idx):
        if p["keepdims"]:
            full = [red[d] if d in axes else idx[d] for d in range(len(shape))]
        else:
            it = iter(idx)
            full = [red[d] if d in axes else next(it) for d in range(len(shape))]
        return te.sum(x[tuple(full)].astype("int32"), axis=[red[a] for a in axes])

    acc = te.compute(acc_shape, acc_f, name="sum")
    off = p["zp_x"] * p["n"]
    if p["mode"] == "xnnpack":
        return te.compute(acc_shape, lambda *i: rq.requantize_fp32_tir(acc[i] - off, p["fscale"], p["zp"], p["qmin"],
                                                                       p["qmax"], p["dtype"]), name="mean")
    return te.compute(acc_shape, lambda *i: rq.requantize_tir(acc[i] - off, p["q"], p["shift"], p["zp"], p["qmin"],
                                                              p["qmax"], p["dtype"]), name="mean")


def _avgpool_te(x, p):
    n, h, w, c = (int(d) for d in x.shape)
    fh, fw = p["pool"]
    sh, sw = p["strides"]
    pad = p["padding"]
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
        if p["count_include_pad"]:
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
        lo, hi = _DT_RANGE[p["dtype"]]
        return tirx.max(tirx.min(r, hi), lo).astype(p["dtype"])

    return te.compute((n, oh, ow, c), avg, name="avg")


# ====================================================================== public API
@tvm.transform.module_pass(opt_level=0, name="LowerQDQToInt8")
class LowerQDQToInt8:
    """Module pass: lower QDQ patterns of every Relax function to integer kernels.

    After the pass, ``self.stats`` holds ``{op: Counter(lowered=..., qdq=...)}``.
    """

    def __init__(self, mode: str = "tflite", scheme: Optional[str] = None):
        if mode not in rq.MODES:
            raise ValueError(f"mode must be one of {', '.join(rq.MODES)}, got {mode!r}")
        if scheme is not None and scheme not in dot.SCHEMES:
            raise ValueError(f"unknown dot-product scheme {scheme!r}: known are {', '.join(dot.scheme_names())}")
        self.mode = mode
        self.scheme = scheme
        self.stats: Dict[str, Dict[str, int]] = {}
        self.dot_stats: Dict[str, int] = {}

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        m = _Int8Mutator(mod, self.mode, self.scheme)
        for gv, func in list(mod.functions_items()):
            if isinstance(func, relax.Function):
                m.prepare(func)
                new = m.visit_expr(func)
                m.builder_.update_func(gv, new)
        self.stats = {k: dict(v) for k, v in m.stats.items()}
        self.dot_stats = dict(sorted(m.dot_stats.items()))
        out = m.builder_.get()
        return relax.transform.DeadCodeElimination()(out)


def lower_qdq_to_int8(mod: tvm.IRModule, mode: str = "tflite", scheme: Optional[str] = None) -> tvm.IRModule:
    """Lower the QDQ patterns of ``mod`` (from ``from_tflite``) to integer arithmetic.

    ``mode``: ``"tflite"`` (fixed-point requantization, bit-exact with TFLite's builtin
    kernels) or ``"xnnpack"`` (fp32 requantization as the XNNPACK delegate).
    ``scheme``: the target's dot-product scheme (:data:`.dot.SCHEMES`, a profile's
    ``int8_scheme``): convolutions and fully connected layers then get weights packed for its
    intrinsics and a ``tvmq_dot`` annotation that the tuner tensorizes. None: plain kernels.
    Use :func:`lowering_stats` and :func:`intrinsic_counts` on the result to see coverage.
    """
    p = LowerQDQToInt8(mode, scheme)
    out = p(mod)
    stats = p.stats
    stats = {k: {"lowered": v.get("lowered", 0), "qdq": v.get("qdq", 0)} for k, v in sorted(stats.items())}
    out = out.with_attr("tvmq_int8_stats", str(stats))
    out = out.with_attr("tvmq_int8_intrinsics", str(p.dot_stats))
    return out


def intrinsic_counts(mod: tvm.IRModule) -> Dict[str, int]:
    """How many layers of a module from :func:`lower_qdq_to_int8` use each dot-product
    intrinsic (and ``"NAME (could saturate)"``: layers that passed over a saturating one)."""
    return _attr_dict(mod, "tvmq_int8_intrinsics")


def _attr_dict(mod: tvm.IRModule, key: str) -> dict:
    """A dict :func:`lower_qdq_to_int8` stored in the module's attributes ({} when absent)."""
    import ast

    if mod.attrs is None or key not in mod.attrs:
        return {}
    return ast.literal_eval(str(mod.attrs[key]))


def qdq_op_counts(mod: tvm.IRModule) -> Dict[str, int]:
    """Count of float ops still fed by ``dequantize`` (i.e. left on the QDQ path) per op name."""
    counts: Counter = Counter()
    for _, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        for _, val in relax.analysis.get_var2val(func).items():
            name = _op_name(val)
            if name in ("relax.quantize", "relax.dequantize"):
                counts[name.split(".")[-1]] += 1
    return dict(counts)


def lowering_stats(mod: tvm.IRModule) -> Dict[str, Dict[str, int]]:
    """Per-op coverage ``{op: {"lowered": n, "qdq": m}}`` for a module returned by
    :func:`lower_qdq_to_int8`; ``"remaining"`` counts the quantize/dequantize ops left."""
    stats = _attr_dict(mod, "tvmq_int8_stats")
    stats["remaining"] = qdq_op_counts(mod)
    return stats
