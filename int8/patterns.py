"""Reading the QDQ Relax graph that TVM's TFLite importer writes, and the registry of
per-operator integer rewrites (one ``@register_int8`` function per operator, one
``rewrite_*`` module per operator family)."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Union

import numpy as np
import tvm
from tvm import relax
from tvm.relax.utils import gen_call_tir_inputs

from .init_operand import init_from_operands
from .params import QuantParams

__all__ = ["REWRITES", "NoMatch", "QDQGraph", "Rewrite", "RewriteContext", "op_name", "register_int8", "require",
           "shape_of"]


class NoMatch(Exception):
    """The graph around a call is not a pattern a rewrite handles: it stays on the QDQ path."""


def require(cond, why: str = "") -> None:
    if not cond:
        raise NoMatch(why)


def op_name(expr) -> Optional[str]:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def prim_value(e) -> float:
    """Python float of a PrimValue / FloatImm / python number."""
    v = e
    for _ in range(3):
        if isinstance(v, (int, float)):
            break
        v = v.value
    return float(v)


def dtype_of(e) -> str:
    return str(e.ty.dtype)


def shape_of(e) -> List[int]:
    return [int(d) for d in e.ty.shape.values]


# ---------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Rewrite:
    """One operator's integer rewrite.

    ``root``: ``"relax.quantize"`` when the float op's output is quantized (the function gets
    ``(ctx, call, out)``, plus ``bias=`` when ``bias`` is set: the integer bias of an ``add``
    between the op and its quantize); ``"relax.astype"`` when the importer already computes the
    op on integers between two casts (the function gets ``(ctx, outer_astype_call)``).
    ``kind``: the op's name in the coverage statistics, or a function of the call giving it."""

    op: str
    fn: Callable
    kind: Union[str, Callable[[relax.Call], str]]
    root: str = "relax.quantize"
    bias: bool = False

    def kind_of(self, call: relax.Call) -> str:
        return self.kind(call) if callable(self.kind) else self.kind


REWRITES: Dict[str, Rewrite] = {}


def register_int8(op: str, kind=None, *, root: str = "relax.quantize", bias: bool = False):
    """Register the decorated function as the integer rewrite of Relax operator ``op``
    (as TVM's ``register_legalize``); ``kind`` defaults to the op's last name segment."""

    def deco(fn):
        REWRITES[op] = Rewrite(op, fn, kind or op.split(".")[-1], root, bias)
        return fn

    return deco


def kind_of(expr) -> str:
    """The statistics name of an expression's producer (registered or not)."""
    name = op_name(expr)
    entry = REWRITES.get(name)
    return entry.kind_of(expr) if entry is not None else (name or "other").split(".")[-1]


# ---------------------------------------------------------------------------------- graph
class QDQGraph:
    """One Relax function's bindings, read the way the rewrites need them: producers through
    variables, use counts, constants and quantization parameters."""

    def __init__(self, func: relax.Function):
        self.var2val = relax.analysis.get_var2val(func)
        self.uses: Counter = Counter()
        for value in self.var2val.values():
            for v in relax.analysis.free_vars(value):
                self.uses[v] += 1
        # the function's return counts as a use
        if isinstance(func.body, relax.SeqExpr):
            for v in relax.analysis.free_vars(func.body.body):
                self.uses[v] += 1

    def val(self, expr):
        """The value behind a chain of variable bindings."""
        seen = 0
        while isinstance(expr, relax.Var) and expr in self.var2val and seen < 1000:
            expr = self.var2val[expr]
            seen += 1
        return expr

    def call(self, expr, name: str):
        """The call of operator ``name`` behind ``expr``, or None."""
        v = self.val(expr)
        return v if op_name(v) == name else None

    def const_np(self, expr) -> np.ndarray:
        """Numpy value of a constant reached through reshape / permute_dims."""
        v = self.val(expr)
        if isinstance(v, tvm.ir.expr.GenericConst):
            return v.value.numpy()
        name = op_name(v)
        if name == "relax.reshape":
            arr = self.const_np(v.args[0])
            shape = [int(s) for s in v.args[1].values]
            return arr.reshape(shape)
        if name == "relax.permute_dims":
            arr = self.const_np(v.args[0])
            axes = v.attrs.axes
            axes = None if axes is None else [int(a) for a in axes]
            return np.transpose(arr, axes)
        raise NoMatch("not a constant")

    def scalar(self, expr) -> float:
        arr = np.asarray(self.const_np(expr))
        require(arr.size == 1, "per-axis activation parameters")
        return arr.reshape(()).item()

    def deq_act(self, expr):
        """``dequantize(x)`` of an activation: ``(x, QuantParams)`` (per-tensor, 8-bit)."""
        c = self.call(expr, "relax.dequantize")
        require(c is not None, "input not dequantized")
        x = c.args[0]
        dt = dtype_of(x)
        require(dt in ("uint8", "int8"), f"activation dtype {dt}")
        return x, QuantParams(float(np.float32(self.scalar(c.args[1]))), int(self.scalar(c.args[2])), dt)

    def is_const_deq(self, expr) -> bool:
        """Whether ``expr`` dequantizes a constant."""
        c = self.call(expr, "relax.dequantize")
        if c is None:
            return False
        try:
            self.const_np(c.args[0])
            return True
        except NoMatch:
            return False

    def deq_const(self, expr):
        """Dequantized integer constant, possibly reshaped / transposed after dequantize.

        Returns (int array, per-element float32 scale, per-element int zero point).
        """
        v = self.val(expr)
        name = op_name(v)
        if name == "relax.dequantize":
            q = self.const_np(v.args[0])
            scale = np.asarray(self.const_np(v.args[1]), np.float32)
            zp = np.asarray(self.const_np(v.args[2]), np.int64)
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
            q, s, z = self.deq_const(v.args[0])
            shape = [int(d) for d in v.args[1].values]
            return q.reshape(shape), np.reshape(s, shape), np.reshape(z, shape)
        if name == "relax.permute_dims":
            q, s, z = self.deq_const(v.args[0])
            axes = v.attrs.axes
            axes = None if axes is None else [int(a) for a in axes]
            return np.transpose(q, axes), np.transpose(s, axes), np.transpose(z, axes)
        raise NoMatch("weight is not a dequantized constant")


def per_channel(arr: np.ndarray, axis: int) -> np.ndarray:
    """Collapse a per-element parameter array to a vector along ``axis`` (must be constant elsewhere)."""
    moved = np.moveaxis(np.asarray(arr), axis, -1).reshape(-1, arr.shape[axis])
    require(bool(np.all(moved == moved[:1])), "quantization not along output channels")
    return moved[0]


@dataclass
class RewriteContext:
    """What a rewrite works with: the function's graph, the block builder that receives the
    new calls, ``remap`` (an input expression as already rewritten), the requantization mode,
    the dot-product scheme, and the per-intrinsic layer counts it adds to."""

    graph: QDQGraph
    builder: relax.BlockBuilder
    remap: Callable
    mode: str
    scheme: Optional[str]
    intrinsics: Counter

    def call_te(self, te_fn: Callable, *args, name: str, **params):
        """``call_tir`` of ``te_fn(*tensors, **params)`` as a PrimFunc named ``name`` (the typed
        parameters are bound here: ``BlockBuilder.call_te`` only passes on plain values), its
        reductions initialized as the kernel asks (:mod:`.init_operand`)."""
        func, call_args, out_sinfo = gen_call_tir_inputs(functools.partial(te_fn, **params), *args)
        gvar = self.builder.add_func(init_from_operands(func), name)
        return relax.op.call_tir(gvar, call_args, out_sinfo)
