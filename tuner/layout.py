"""Per-target layout and convolution-strategy transforms on the imported Relax module.

:func:`apply_profile_transforms` runs, before compilation (before ``relax.get_pipeline``):

1. **Winograd** (profiles with ``winograd = true``): every dense float ``relax.nn.conv2d`` with
   a 3x3 kernel, stride 1, dilation 1, groups 1 and NHWC data becomes a ``call_tir`` of TOPI's
   ``conv2d_winograd_nhwc`` (F(4x4, 3x3); its weight transform runs inside the kernel; the
   blocks carry MetaSchedule's ``conv2d_nhwc_winograd_*`` schedule rules). TVM 0.27 Relax has
   no winograd op, strategy or legalization of its own: this TOPI compute is the only winograd
   path it ships, so that is what we use. MobileNets have no eligible conv (their 3x3 convs are
   depthwise or stride 2), so for them this step changes nothing.
2. **Data layout** (the profile's ``data_layout``):
   - ``NHWC``: kept as imported from TFLite.
   - ``NCHW``: ``relax.transform.ConvertLayout({"relax.nn.conv2d": ["NCHW", "OIHW"]})``.
   - ``NCHW{b}c``: ``ConvertLayout`` to ``["NCHW{b}c", "OIHW{b}i{b}o"]`` for dense convs whose
     input and output channels are multiples of ``b`` (depthwise/grouped convs and convs with odd
     channel counts stay NHWC), then those blocked convs are lowered with TOPI's
     ``conv2d_NCHWc``: TVM 0.27's own conv2d legalization refuses blocked layouts ("channel
     chunk cannot be legalized"), so without this step the build fails in VM codegen.

Layout changes insert ``R.layout_transform`` at their boundaries. ConvertLayout does not
propagate layouts through ``R.quantize``/``R.dequantize`` (they have no layout inference in
0.27), so in a QDQ model every converted conv is wrapped in a pair of transforms; constant
weight transforms are folded by the pipeline's ``FoldConstant``.

Every transform keeps the numbers: tests compare each against the untransformed build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tvm
from tvm import relax, topi
from tvm.relax.expr_functor import PyExprMutator, mutator

__all__ = [
    "LayoutChoice",
    "apply_profile_transforms",
    "apply_layout",
    "apply_winograd",
    "conv_summary",
    "winograd_eligible",
    "parse_layout",
]

_NCHWC = re.compile(r"^NCHW(\d+)c$")


@dataclass(frozen=True)
class LayoutChoice:
    """A data layout + strategy: what bench_layouts.py compares and a profile selects."""

    layout: str = "NHWC"  # "NHWC" | "NCHW" | "NCHW8c" | "NCHW16c" | ...
    winograd: bool = False

    @property
    def label(self) -> str:
        return self.layout + (" + winograd" if self.winograd else "")


def parse_layout(layout: str) -> tuple[str, int]:
    """``"NCHW16c" -> ("NCHWc", 16)``, ``"NHWC" -> ("NHWC", 0)``; ValueError otherwise."""
    if layout in ("NHWC", "NCHW"):
        return layout, 0
    m = _NCHWC.match(layout)
    if m and int(m.group(1)) > 0:
        return "NCHWc", int(m.group(1))
    raise ValueError(f"unknown data layout {layout!r}: use NHWC, NCHW or NCHW<block>c")


# ------------------------------------------------------------------ helpers
def _static_shape(expr) -> tuple[int, ...] | None:
    sinfo = getattr(expr, "ty", None)  # TVM 0.27: relax "struct_info" is now the expr's type
    if not isinstance(sinfo, relax.TensorType) or sinfo.shape is None:
        return None
    try:
        return tuple(int(d) for d in sinfo.shape.values)
    except (TypeError, AttributeError):
        return None


def _dtype(expr) -> str:
    return str(expr.ty.dtype)


def _out_dtype(attrs, data) -> str:
    od = attrs.out_dtype
    return str(od) if od is not None and str(od) not in ("", "None", "void") else _dtype(data)


def _is_conv2d(call) -> bool:
    return isinstance(call, relax.Call) and isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.conv2d"


def _ints(arr) -> list[int]:
    return [int(x) for x in arr]


def winograd_eligible(call) -> bool:
    """A dense float32 3x3 stride-1 dilation-1 NHWC conv2d with static shapes."""
    if not _is_conv2d(call):
        return False
    a = call.attrs
    if str(a.data_layout) != "NHWC" or str(a.out_layout) != "NHWC" or int(a.groups) != 1:
        return False
    if _ints(a.strides) != [1, 1] or _ints(a.dilation) != [1, 1]:
        return False
    data, weight = call.args
    if _dtype(data) != "float32" or _dtype(weight) != "float32":
        return False
    wshape = _static_shape(weight)
    if _static_shape(data) is None or wshape is None:
        return False
    klayout = str(a.kernel_layout)
    if sorted(klayout) != sorted("HWIO"):
        return False
    return wshape[klayout.index("H")] == 3 and wshape[klayout.index("W")] == 3


# ------------------------------------------------------------------ winograd
@mutator
class _WinogradRewriter(PyExprMutator):
    def __init__(self, mod):
        super().__init__(mod)
        self.mod_ = mod
        self.count = 0

    def transform(self):
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()

    def visit_call_(self, call):  # noqa: N802 - TVM's name
        call = super().visit_call_(call)
        if not winograd_eligible(call):
            return call
        a = call.attrs
        data, weight = call.args
        klayout = str(a.kernel_layout)
        if klayout != "HWIO":
            weight = self.builder_.emit(
                relax.op.permute_dims(weight, [klayout.index(c) for c in "HWIO"]))
        out_dtype = _out_dtype(a, data)
        self.count += 1
        return self.builder_.call_te(
            topi.nn.conv2d_winograd_nhwc,
            data,
            weight,
            _ints(a.strides),
            _ints(a.padding),
            _ints(a.dilation),
            out_dtype,
            primfunc_name_hint="conv2d_winograd_nhwc",
        )


def apply_winograd(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """Rewrite every eligible conv2d (see :func:`winograd_eligible`) to TOPI's NHWC winograd.

    Returns the new module and how many convs were rewritten.
    """
    rw = _WinogradRewriter(mod)
    new = rw.transform()
    new = relax.transform.DeadCodeElimination()(new) if rw.count else mod
    return new, rw.count


# ------------------------------------------------------------------ NCHWc
@mutator
class _NCHWcLowering(PyExprMutator):
    """conv2d with NCHW{b}c / OIHW{b}i{b}o layouts -> call_tir(topi.nn.conv2d_NCHWc)."""

    def __init__(self, mod):
        super().__init__(mod)
        self.mod_ = mod
        self.count = 0

    def transform(self):
        for gv, func in self.mod_.functions_items():
            if isinstance(func, relax.Function):
                self.builder_.update_func(gv, self.visit_expr(func))
        return self.builder_.get()

    def visit_call_(self, call):  # noqa: N802
        call = super().visit_call_(call)
        if not _is_conv2d(call):
            return call
        a = call.attrs
        if not _NCHWC.match(str(a.data_layout)) or int(a.groups) != 1:
            return call
        data, weight = call.args
        self.count += 1
        out_dtype = _out_dtype(a, data)
        return self.builder_.call_te(
            topi.nn.conv2d_NCHWc,
            data,
            weight,
            _ints(a.strides),
            _ints(a.padding),
            _ints(a.dilation),
            str(a.data_layout),
            str(a.out_layout),
            out_dtype,
            primfunc_name_hint="conv2d_NCHWc",
        )


def _nchwc_callback(block: int):
    desired = {"relax.nn.conv2d": [f"NCHW{block}c", f"OIHW{block}i{block}o"]}

    def cb(call):
        if not _is_conv2d(call) or int(call.attrs.groups) != 1:
            return {}
        a = call.attrs
        dshape, wshape = _static_shape(call.args[0]), _static_shape(call.args[1])
        if dshape is None or wshape is None or str(a.data_layout) != "NHWC":
            return {}
        klayout = str(a.kernel_layout)
        cin, cout = dshape[3], wshape[klayout.index("O")]
        if cin % block or cout % block:
            return {}
        return desired

    return desired, cb


def apply_layout(mod: tvm.IRModule, layout: str, target: tvm.target.Target | None = None) -> tuple[tvm.IRModule, int]:
    """Convert conv2d data layout; returns the module and how many convs now use ``layout``."""
    kind, block = parse_layout(layout)
    if kind == "NHWC":
        return mod, 0
    if kind == "NCHW":
        new = relax.transform.ConvertLayout({"relax.nn.conv2d": ["NCHW", "OIHW"]})(mod)
        return new, conv_summary(new).get("NCHW", 0)
    desired, cb = _nchwc_callback(block)
    new = relax.transform.ConvertLayout(desired, cb)(mod)
    lowering = _NCHWcLowering(new)
    # topi.nn.conv2d_NCHWc asks for the current target.
    tgt = target or tvm.target.Target.current(allow_none=True) or tvm.target.Target({"kind": "llvm"})
    with tgt:
        new = lowering.transform()
    return new, lowering.count


def apply_profile_transforms(mod: tvm.IRModule, profile, *, layout: str | None = None,
                             winograd: bool | None = None) -> tvm.IRModule:
    """The profile's strategy and layout transforms on an imported Relax module.

    ``layout`` / ``winograd`` override the profile's choice (bench_layouts.py uses them).
    The result still needs the usual ``relax.get_pipeline("zero")`` and ``tvm.compile``.
    """
    use_winograd = profile.winograd if winograd is None else winograd
    use_layout = layout or profile.layout
    parse_layout(use_layout)  # validate before doing any work
    if use_winograd:
        mod, _ = apply_winograd(mod)
    mod, _ = apply_layout(mod, use_layout, target=profile.tvm_target())
    return mod


# ------------------------------------------------------------------ inspection
def conv_summary(mod: tvm.IRModule) -> dict[str, int]:
    """How many convolutions each form has: {"NHWC": 12, "NCHW16c": 4, "winograd": 1, ...}.

    Counts Relax ``nn.conv2d`` calls by data layout, and ``call_tir`` calls to the lowered
    ``conv2d_NCHWc*`` / ``conv2d_winograd_nhwc*`` functions this module adds.
    """
    counts: dict[str, int] = {}

    def bump(k: str) -> None:
        counts[k] = counts.get(k, 0) + 1

    def visit(e):
        if isinstance(e, relax.Call):
            if _is_conv2d(e):
                bump(str(e.attrs.data_layout))
            elif isinstance(e.op, tvm.ir.Op) and e.op.name == "relax.call_tir":
                name = e.args[0].name_hint
                if name.startswith("conv2d_winograd_nhwc"):
                    bump("winograd")
                elif name.startswith("conv2d_NCHWc"):
                    bump("NCHW%dc" % int(e.ty.shape.values[4]))

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return counts
