"""The QDQ -> integer pass: find where the TFLite importer's QDQ graph quantizes, hand each group
to the operator's registered rewrite (``rewrite_*`` modules), and return the lowered module with
its coverage statistics.

The TFLite frontend imports a quantized op as ``dequantize -> float op -> quantize [-> clip]``.
Each ``R.quantize`` (with the ``R.clip`` of a fused activation that follows it) is a root: the
float op feeding it, seen through a float activation (``relu`` / ``clip``, folded into the
integer clamp) and a bias ``add`` (for the ops registered with ``bias=True``), picks the rewrite.
Integer ops the importer wraps in casts (``astype``) are roots of their own. Everything else
stays on the QDQ float path; a dead-code elimination then drops the unused float ``dequantize``
of weights, so the module keeps only integer weight constants.

``mode="xnnpack"`` uses XNNPACK's fp32 requantization for conv / depthwise / fully connected and
mean, and XNNPACK's ADD scheme; average pool, concatenation and requantize use the TFLite
numerics in both modes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple

import numpy as np
import tvm
from tvm import relax
from tvm.relax.expr_functor import PyExprMutator, mutator

from . import dot
from . import requant as rq
from . import (rewrite_arith, rewrite_elementwise, rewrite_hard_swish, rewrite_linear, rewrite_pool,  # noqa: F401
               rewrite_requantize, rewrite_resize, rewrite_transpose_conv)
from .params import OutputQuant
from .patterns import REWRITES, NoMatch, QDQGraph, RewriteContext, dtype_of, kind_of, op_name, prim_value, require

__all__ = ["Int8Lowering", "Int8Stats", "OpCoverage", "lower_qdq_to_int8", "qdq_op_counts"]


@dataclass(frozen=True)
class OpCoverage:
    """How many ops of one kind were lowered to integers and how many stayed on the QDQ path."""

    lowered: int = 0
    qdq: int = 0


@dataclass(frozen=True)
class Int8Stats:
    """Coverage of one lowering: per op kind (sorted by name), and the quantize / dequantize ops
    left in the module."""

    ops: Mapping[str, OpCoverage]
    remaining: Mapping[str, int]

    def to_dict(self) -> Dict[str, Dict[str, int]]:
        """``{op: {"lowered": n, "qdq": m}, ..., "remaining": {"quantize": k, "dequantize": l}}``."""
        out = {k: {"lowered": v.lowered, "qdq": v.qdq} for k, v in self.ops.items()}
        out["remaining"] = dict(self.remaining)
        return out


@dataclass(frozen=True)
class Int8Lowering:
    """What :func:`lower_qdq_to_int8` returns: the lowered module, its coverage, and how many
    layers use each dot-product intrinsic (``"NAME (could saturate)"``: layers that passed over a
    saturating one)."""

    mod: tvm.IRModule
    stats: Int8Stats
    intrinsics: Dict[str, int]


@dataclass
class _Counts:
    lowered: Counter = field(default_factory=Counter)
    qdq: Counter = field(default_factory=Counter)
    intrinsics: Counter = field(default_factory=Counter)

    def count(self, kind: str, lowered: bool) -> None:
        (self.lowered if lowered else self.qdq)[kind] += 1

    def coverage(self) -> Dict[str, OpCoverage]:
        kinds = sorted(set(self.lowered) | set(self.qdq))
        return {k: OpCoverage(self.lowered[k], self.qdq[k]) for k in kinds}


@mutator
class _Int8Mutator(PyExprMutator):
    """Finds the roots of one function and rewrites them with the registered rewrites."""

    def __init__(self, mod: tvm.IRModule, mode: str, scheme: Optional[str], counts: _Counts):
        super().__init__(mod)
        self.mode = mode
        self.scheme = scheme
        self.counts = counts
        self.ctx: Optional[RewriteContext] = None
        self.clip_fed = []

    def prepare(self, func: relax.Function) -> None:
        graph = QDQGraph(func)
        self.ctx = RewriteContext(graph, self.builder_, self.visit_expr, self.mode, self.scheme,
                                  self.counts.intrinsics)
        # quantize calls consumed only by a clip: lowered together with the clip
        self.clip_fed = []
        for val in graph.var2val.values():
            if op_name(val) == "relax.clip" and isinstance(val.args[0], relax.Var):
                src = graph.var2val.get(val.args[0])
                if op_name(src) == "relax.quantize" and graph.uses[val.args[0]] == 1:
                    self.clip_fed.append(src)

    def visit_call_(self, call):  # noqa: D401
        name = op_name(call)
        graph = self.ctx.graph
        try:
            if name == "relax.quantize":
                if any(c.same_as(call) for c in self.clip_fed):
                    return super().visit_call_(call)
                return self._lower_quantized(call, None)
            if name == "relax.clip":
                q = graph.call(call.args[0], "relax.quantize")
                if q is not None and graph.uses[call.args[0]] == 1:
                    clip = (int(round(prim_value(call.args[1]))), int(round(prim_value(call.args[2]))))
                    return self._lower_quantized(q, clip)
            if name == "relax.astype":
                return self._lower_cast(call)
        except NoMatch:
            pass
        return super().visit_call_(call)

    def _lower_cast(self, call):
        """An integer op between two casts (the importer's average pool)."""
        entry = REWRITES.get(op_name(self.ctx.graph.val(call.args[0])))
        require(entry is not None and entry.root == "relax.astype", "not an integer op")
        result = entry.fn(self.ctx, call)
        self.counts.count(entry.kind_of(call), True)
        return result

    def _lower_quantized(self, qcall, clip: Optional[Tuple[int, int]]):
        """``quantize(float op)``: the float op's rewrite, with the output's quantization."""
        graph = self.ctx.graph
        out_dtype = str(qcall.attrs.out_dtype)
        require(out_dtype in ("uint8", "int8"), "quantize output dtype")
        require(dtype_of(qcall.args[0]) == "float32", "quantize input")
        out = OutputQuant.of(float(np.float32(graph.scalar(qcall.args[1]))), int(graph.scalar(qcall.args[2])),
                             out_dtype, clip)
        f = graph.val(qcall.args[0])
        kind = kind_of(f)
        try:
            if op_name(f) in ("relax.nn.relu", "relax.clip"):
                # a float activation before the quantize (ADD's fused activation)
                lo, hi = (0.0, np.inf) if op_name(f) == "relax.nn.relu" else (prim_value(f.args[1]),
                                                                             prim_value(f.args[2]))
                out = out.with_activation(lo, hi)
                f = graph.val(f.args[0])
                kind = kind_of(f)
            if op_name(f) == "relax.add":
                # conv / fully connected + bias
                for main, bias in ((f.args[0], f.args[1]), (f.args[1], f.args[0])):
                    entry = REWRITES.get(op_name(graph.val(main)))
                    if entry is not None and entry.bias and entry.root == "relax.quantize" and graph.is_const_deq(bias):
                        bias_q, _, _ = graph.deq_const(bias)
                        kind = entry.kind_of(graph.val(main))
                        result = entry.fn(self.ctx, graph.val(main), out, bias=bias_q.astype(np.int64).ravel())
                        self.counts.count(kind, True)
                        return result
            entry = REWRITES.get(op_name(f))
            require(entry is not None and entry.root == "relax.quantize", "unsupported producer")
            result = entry.fn(self.ctx, f, out)
            self.counts.count(kind, True)
            return result
        except NoMatch:
            self.counts.count(kind, False)
            raise


def lower_qdq_to_int8(mod: tvm.IRModule, mode: str = "tflite", scheme: Optional[str] = None) -> Int8Lowering:
    """Lower the QDQ patterns of every Relax function of ``mod`` (from ``from_tflite``) to
    integer arithmetic.

    ``mode``: ``"tflite"`` (fixed-point requantization, bit-exact with TFLite's builtin
    kernels) or ``"xnnpack"`` (fp32 requantization as the XNNPACK delegate).
    ``scheme``: the target's dot-product scheme (:data:`.dot.SCHEMES`, a profile's
    ``int8_scheme``): convolutions and fully connected layers then get weights packed for its
    intrinsics and a ``tvmq_dot`` annotation that the tuner tensorizes. None: plain kernels.
    """
    if mode not in rq.MODES:
        raise ValueError(f"mode must be one of {', '.join(rq.MODES)}, got {mode!r}")
    if scheme is not None and scheme not in dot.SCHEMES:
        raise ValueError(f"unknown dot-product scheme {scheme!r}: known are {', '.join(dot.scheme_names())}")
    counts = _Counts()
    m = _Int8Mutator(mod, mode, scheme, counts)
    for gv, func in list(mod.functions_items()):
        if isinstance(func, relax.Function):
            m.prepare(func)
            m.builder_.update_func(gv, m.visit_expr(func))
    out = relax.transform.DeadCodeElimination()(m.builder_.get())
    stats = Int8Stats(counts.coverage(), qdq_op_counts(out))
    return Int8Lowering(out, stats, dict(sorted(counts.intrinsics.items())))


def qdq_op_counts(mod: tvm.IRModule) -> Dict[str, int]:
    """How many ``quantize`` / ``dequantize`` ops are left in ``mod`` (the QDQ path)."""
    counts: Counter = Counter()
    for _, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue
        for _, val in relax.analysis.get_var2val(func).items():
            name = op_name(val)
            if name in ("relax.quantize", "relax.dequantize"):
                counts[name.split(".")[-1]] += 1
    return dict(counts)
