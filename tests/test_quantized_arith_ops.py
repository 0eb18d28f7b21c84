"""One-op tests of the quantized ARITHMETIC operators against TFLite, in both integer modes (issue 16).

Each case is a one-op full-integer model, made with TensorFlow's converter (int8 I/O, or uint8 I/O:
QUANTIZE uint8 <-> int8 around the int8 operator) or, for ``*_uint8_legacy``, the TF1 way
(``tests/uint8_factory.py``: uint8 kernels, one quantization per tensor, such as a concatenation of
inputs with other scales). The test checks that the model holds the operator on quantized tensors,
imports it with ``tvmq.model.frontend.from_tflite``, lowers it with ``lower_qdq_to_int8(mode=...)``
and compares the first output on random integer inputs (two seeds) with

* ``mode="tflite"``: TFLite's reference kernels (``run_tflite(kernels="reference")``);
* ``mode="xnnpack"``: TFLite with the XNNPACK delegate (``kernels="xnnpack"``; ops it declines run
  on TFLite's builtin kernels: the table's ``xnn`` column says whether it took the node).

:data:`BOUNDS` documents, per case and mode, the largest difference measured (in units of the
output's quantization), rounded up to 0, 1 or 2, and why it is not 0. ``path`` in the table:
``integer`` where a tvmq rewrite lowered the op to an integer kernel, ``QDQ`` where it stays
``dequantize -> float op -> quantize`` (float32 arithmetic, not TFLite's fixed-point kernel),
``importer`` where TVM's importer already computes it on the integers. Cases TVM cannot import or
compile would be strict xfails with the evidence (none today). Run with ``-s`` for the table.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from tests._int8_helpers import convert, convert_function, op_names, random_inputs, run_tflite

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected")

from tests import uint8_factory
from tests.test_quantized_ops import build_tvm, operator_tensor_types

MODES = ("tflite", "xnnpack")
KERNELS = {"tflite": "reference", "xnnpack": "xnnpack"}
SEEDS = (1, 2)

_RNG = np.random.default_rng(16)
W_TRANSPOSE = _RNG.normal(0.0, 0.5, (3, 3, 4, 8)).astype(np.float32)  # H, W, out, in
W_DENSE = _RNG.normal(0.0, 0.4, (24, 16)).astype(np.float32)
ALPHA = _RNG.uniform(0.05, 0.5, (1, 1, 16)).astype(np.float32)

S = (8, 8, 16)  # one image: 1024 values, most of the 256 codes of an 8-bit input
R1, R2 = (-1.3, 2.1), (-3.0, 0.7)  # asymmetric ranges: zero points away from 0
# legacy uint8 quantizations (scale 1 / (m * 2**e), zero point a multiple of m: uint8_factory._quant)
QA, QB, Q_OUT = (1 / 102, 204), (1 / 32, 194), (1 / 60, 135)
RESIZE_MODES = {"": {}, "_align_corners": {"align_corners": True}, "_half_pixel": {"half_pixel_centers": True}}


@dataclass(frozen=True)
class ArithCase:
    """A one-op model: ``build()`` gives its flatbuffer, holding ``op`` on ``inside`` (int8 or
    uint8) tensors, with ``io`` inputs and outputs and no operators but ``op`` and ``helpers``.
    ``kind``: the op's name in the lowering's statistics (None: the importer computes it on the
    integers, nothing to lower). ``check``: more about the model (its options, quantizations);
    ``xfail``: why TVM fails on it today (``raises`` that)."""

    op: str
    build: Callable[[], bytes]
    kind: str | None
    io: str = "int8"
    inside: str = "int8"
    helpers: tuple = ()
    check: Callable[[bytes], None] | None = None
    xfail: str | None = None
    raises: str = "Exception"


def _tf2(fn, shapes, ranges, io="int8"):
    return lambda: convert_function(fn, shapes, ranges, io_dtype=io)


def _legacy(body, shapes, quants, out_range):
    return lambda: uint8_factory.convert_v1(body, [(1, *s) for s in shapes], quants, out_range)


def _legacy_range(q):
    scale, zp = q
    std = float(np.float32(1.0 / scale))
    return (0.0 - zp) / std, (255.0 - zp) / std


def _around(y):
    """An output range over float outputs ``y`` with 0 inside."""
    return min(float(y.min()), 0.0) * 1.1, max(float(y.max()), 0.0) * 1.1


def _options(buf, op, cls):
    """The builtin options (a ``tflite`` ``cls``) of the model's first operator ``op``."""
    import tflite

    graph = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    k = op_names(buf).index(op)
    raw = graph.Operators(k).BuiltinOptions()
    options = cls()
    options.Init(raw.Bytes, raw.Pos)
    return options


def _quantizations(buf, op):
    """``([(scale, zero point) of each activation input], (scale, zero point) of the output)`` of the
    first operator ``op``."""
    import tflite

    graph = tflite.Model.GetRootAsModel(buf, 0).Subgraphs(0)
    node = graph.Operators(op_names(buf).index(op))

    def q(i):
        t = graph.Tensors(int(i)).Quantization()
        return float(t.ScaleAsNumpy()[0]), int(t.ZeroPointAsNumpy()[0])

    return [q(i) for i in node.InputsAsNumpy()], q(node.OutputsAsNumpy()[0])


def _keeps_num_dims(buf):
    from tflite.FullyConnectedOptions import FullyConnectedOptions

    assert _options(buf, "FULLY_CONNECTED", FullyConnectedOptions).KeepNumDims()


def _resize_options(align, half):
    def check(buf):
        from tflite.ResizeBilinearOptions import ResizeBilinearOptions

        o = _options(buf, "RESIZE_BILINEAR", ResizeBilinearOptions)
        assert (bool(o.AlignCorners()), bool(o.HalfPixelCenters())) == (align, half)

    return check


def _concat_unified(buf):
    """int8 CONCATENATION requires one quantization: the converter gives the graph inputs the
    output's, whatever their calibration ranges."""
    ins, out = _quantizations(buf, "CONCATENATION")
    assert set(ins) == {out}, (ins, out)


def _concat_requantized(buf):
    """TANH's output has a fixed quantization (1/128, 0): a QUANTIZE requantizes it to the
    concatenation's, whose other input keeps its own calibrated range."""
    ins, out = _quantizations(buf, "QUANTIZE")
    assert ins[0] != out and ins[0][0] == 1 / 128, (ins, out)


def _concat_mixed_legacy(buf):
    assert uint8_factory.check(buf, uint8_factory.CASES["concat_mixed"]) == []


def _resize(size, **options):
    return lambda x: tf.raw_ops.ResizeBilinear(images=x, size=size, **options)


def _cases() -> dict[str, ArithCase]:
    binary = ((S, S), (R1, R2))
    mixed = ((S, (8, 8, 8)), (R1, (-6.0, 9.0)))
    # the operators also converted with uint8 I/O: (function, shapes, ranges)
    with_uint8 = {"mul": (lambda a, b: a * b, *binary), "concat_mixed": (lambda a, b: tf.concat([a, b], -1), *mixed),
                  "logistic": (tf.sigmoid, (S,), ((-6.0, 5.0),))}
    cases = {
        "hard_swish": ArithCase("HARD_SWISH", _tf2(lambda x: x * tf.nn.relu6(x + 3.0) / 6.0, (S,), ((-4.0, 4.0),)),
                                "hard_swish"),
        "logistic": ArithCase("LOGISTIC", _tf2(*with_uint8["logistic"]), "sigmoid"),
        "tanh": ArithCase("TANH", _tf2(tf.tanh, (S,), ((-3.0, 2.5),)), "tanh"),
        "leaky_relu": ArithCase("LEAKY_RELU", _tf2(lambda x: tf.nn.leaky_relu(x, 0.2), (S,), (R1,)), "leakyrelu"),
        # Keras' PReLU: relu(x) + (-alpha) * relu(-x), fused by the converter
        "prelu": ArithCase("PRELU", _tf2(lambda x: tf.nn.relu(x) + (-ALPHA) * tf.nn.relu(-x), (S,), (R1,)), "where"),
        "mul": ArithCase("MUL", _tf2(*with_uint8["mul"]), "multiply"),
        "mul_broadcast": ArithCase("MUL", _tf2(lambda a, b: a * b, (S, (1, 1, 16)), (R1, R2)), "multiply"),
        "sub": ArithCase("SUB", _tf2(lambda a, b: a - b, *binary), "subtract"),
        "maximum": ArithCase("MAXIMUM", _tf2(tf.maximum, *binary), "maximum"),
        "minimum": ArithCase("MINIMUM", _tf2(tf.minimum, *binary), "minimum"),
        # the importer writes (a - b) * (a - b): the quantize root is the multiply
        "squared_difference": ArithCase("SQUARED_DIFFERENCE", _tf2(tf.math.squared_difference, *binary), "multiply"),
        "concat_mixed": ArithCase("CONCATENATION", _tf2(*with_uint8["concat_mixed"]), "concat",
                                  check=_concat_unified),
        "concat_requantized": ArithCase("CONCATENATION", _tf2(lambda a, b: tf.concat([tf.tanh(a), b], -1), *mixed),
                                        "concat", helpers=("TANH", "QUANTIZE"), check=_concat_requantized),
        "max_pool": ArithCase("MAX_POOL_2D", _tf2(lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"), ((9, 8, 16),), (R1,)),
                              None),
        "transpose_conv": ArithCase(
            "TRANSPOSE_CONV", _tf2(lambda x: tf.nn.conv2d_transpose(x, W_TRANSPOSE, (1, 9, 11, 4), 2, "SAME"),
                                   ((5, 6, 8),), (R1,)), "conv2d_transpose",  # the permute back to NHWC is the root
            ),
        # a Dense on a rank-3 input: FULLY_CONNECTED with keep_num_dims
        "fc_keep_num_dims": ArithCase("FULLY_CONNECTED", _tf2(lambda x: tf.matmul(x, W_DENSE), ((8, 24),), (R1,)),
                                      "dense", check=_keeps_num_dims),
        "batch_matmul": ArithCase("BATCH_MATMUL", _tf2(tf.matmul, ((8, 24), (24, 16)), (R1, R2)), "dense"),
        "mean": ArithCase("MEAN", _tf2(lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=True), ((6, 6, 128),), (R1,)),
                          "mean"),
        "softmax": ArithCase("SOFTMAX", _tf2(tf.nn.softmax, ((8, 32),), ((-4.0, 5.0),)), "softmax"),
    }
    for name, spec in with_uint8.items():
        c = cases[name]
        cases[f"{name}_uint8"] = ArithCase(c.op, _tf2(*spec, io="uint8"), c.kind, io="uint8", helpers=("QUANTIZE",),
                                           check=c.check)
    for suffix, options in RESIZE_MODES.items():
        align, half = bool(options.get("align_corners")), bool(options.get("half_pixel_centers"))
        check = _resize_options(align, half)
        resize = _resize([13, 11], **options)
        cases[f"resize_bilinear{suffix}"] = ArithCase("RESIZE_BILINEAR", _tf2(resize, (S,), (R1,)), "resize_bilinear",
                                                      check=check)
        cases[f"resize_bilinear{suffix}_uint8"] = ArithCase(
            "RESIZE_BILINEAR", _tf2(resize, (S,), (R1,), io="uint8"), "resize_bilinear",
            io="uint8", helpers=("QUANTIZE",), check=check)
        cases[f"resize_bilinear{suffix}_uint8_legacy"] = ArithCase(
            "RESIZE_BILINEAR", _legacy(lambda x, fq, r=resize: r(x), (S,), [QA], _legacy_range(QA)),
            "resize_bilinear", io="uint8", inside="uint8", check=check)
    legacy = {"io": "uint8", "inside": "uint8"}
    cases["mul_uint8_legacy"] = ArithCase("MUL", _legacy(lambda a, b, fq: a * b, (S, S), [QA, QB], _around),
                                          "multiply", **legacy)
    cases["mul_broadcast_uint8_legacy"] = ArithCase("MUL", _legacy(lambda a, b, fq: a * b, (S, (1, 1, 16)), [QA, QB],
                                                                   _around), "multiply", **legacy)
    cases["logistic_uint8_legacy"] = ArithCase("LOGISTIC", _legacy(lambda x, fq: tf.sigmoid(x), (S,), [QB],
                                                                    (0.0, 255 / 256)), "sigmoid", **legacy)
    cases["concat_mixed_uint8_legacy"] = ArithCase("CONCATENATION", uint8_factory.CASES["concat_mixed"].build,
                                                   "concat", check=_concat_mixed_legacy, **legacy)
    return cases


CASES = _cases()


def _bounds(tflite_units: int, xnnpack_units: int, why: str) -> dict:
    return {"tflite": (tflite_units, why), "xnnpack": (xnnpack_units, why)}


_QDQ = "QDQ float32 path"
_FMA = ("integer; each float32 step behind an arithmetic fence, as TFLite's reference rounds each step (LLVM "
        "contracted them into fused multiply-adds on FMA targets before: one unit off on rounding edges)")
_PER_CASE = {
    "hard_swish": _bounds(0, 0, "integer: TFLite's fixed-point HARD_SWISH (int16, reluish multiplier) as a table "
                                "of its 256 input codes (int8/rewrite_hard_swish.py); XNNPACK declines the node"),
    "logistic": _bounds(0, 0, f"{_QDQ}; TFLite's int8 LOGISTIC is a table built from the float function, "
                              "which dequantize-sigmoid-quantize reproduces"),
    "tanh": _bounds(0, 0, f"{_QDQ}; TFLite's int8 TANH is a table built from the float function"),
    "leaky_relu": _bounds(0, 0, "integer: a 256-entry table of LiteRT's kernel (XNNPACK's 8-bit multipliers where "
                                "its delegate takes the node, else TFLite's two fixed-point multipliers)"),
    "mul": _bounds(0, 0, "tflite mode: integer, TFLite's kernel (the integer product, one fixed-point multiplier); "
                         f"xnnpack mode: {_QDQ}, XNNPACK's float32 requantization"),
    "sub": _bounds(0, 0, f"{_QDQ}; matched on these inputs (TFLite's SUB is ADD's 20-bit left-shift scheme)"),
    "maximum": _bounds(0, 0, f"{_QDQ}; inputs and output share one quantization (int8 spec): a selection "
                             "(XNNPACK declines the node)"),
    "minimum": _bounds(0, 0, f"{_QDQ}; inputs and output share one quantization (int8 spec): a selection "
                             "(XNNPACK declines the node)"),
    "squared_difference": _bounds(0, 0, "integer: TFLite's kernel (inputs shifted and rescaled, the difference "
                                        "squared in int32, one multiplier; XNNPACK declines the node)"),
    "concat_mixed": _bounds(0, 0, "integer: the converter gives every input the output's quantization, a copy"),
    "concat_requantized": _bounds(0, 0, "integer concat + requantize (QUANTIZE after TANH, TFLite's multiplier)"),
    "max_pool": _bounds(0, 0, "the importer's max_pool2d on the int8 values: a selection"),
    "fc_keep_num_dims": _bounds(0, 0, "integer dense (rows folded and restored), both requantizations mirrored"),
    "mean": _bounds(0, 0, "integer mean, both requantizations mirrored"),
    "prelu": _bounds(0, 0, f"{_QDQ} (tvmq's converter: TVM refuses PRELU quantized); matched on these inputs"),
    "batch_matmul": _bounds(0, 0, "integer: int32 products and TFLite's fixed-point multiplier, the kernel LiteRT "
                                  "runs in both modes (XNNPACK declines the node); tests/test_batch_matmul.py"),
    "transpose_conv": _bounds(0, 0, "tflite mode: integer, TFLite's reference kernel (int32 sums gathered per output "
                                    f"pixel, per-channel fixed-point multipliers); xnnpack mode: {_QDQ} in NCHW/IOHW, "
                                    "XNNPACK's float32 requantization"),
    "softmax": _bounds(0, 0, f"{_QDQ}; matched on these inputs (XNNPACK declines int8 SOFTMAX: TFLite's kernel)"),
    "resize_bilinear": _bounds(0, 0, "integer: tflite mode TFLite's ResizeBilinearInteger (10-bit coordinates, "
                                     "round half away), xnnpack mode XNNPACK's s8-ibilinear (Q11 weights)"),
    "resize_bilinear_uint8_legacy": _bounds(0, 0, "integer: TFLite's float32 uint8 reference, XNNPACK's u8-ibilinear"),
    # on an FMA target (TARGET: znver3 then, haswell now) LLVM once folded _round32's fpext/fptrunc
    # pairs and contracted the float32 multiply-adds into FMAs (one unit off); _round32 is now an
    # arithmetic fence
    "resize_bilinear_align_corners_uint8_legacy": _bounds(0, 0, _FMA),
    "resize_bilinear_half_pixel_uint8_legacy": _bounds(0, 0, _FMA),
    "mul_uint8_legacy": _bounds(0, 0, "tflite mode: integer, TFLite's uint8 MUL (its fixed-point multiplier, as "
                                      f"int8's); xnnpack mode: {_QDQ}"),
    "logistic_uint8_legacy": _bounds(0, 0, f"{_QDQ}; TFLite's uint8 LOGISTIC is a table of the float function"),
    "concat_mixed_uint8_legacy": _bounds(0, 0, "integer: TFLite's float32 ConcatenationWithScaling mirrored "
                                               "(XNNPACK declines the mixed-scale uint8 node)"),
}
# the same operator under another I/O or mode variant: the same reasons and bounds
for _name, _same in (("mul_broadcast", "mul"), ("mul_uint8", "mul"), ("mul_broadcast_uint8_legacy", "mul_uint8_legacy"),
                     ("concat_mixed_uint8", "concat_mixed"), ("logistic_uint8", "logistic"),
                     ("resize_bilinear_align_corners", "resize_bilinear"),
                     ("resize_bilinear_half_pixel", "resize_bilinear"),
                     ("resize_bilinear_uint8", "resize_bilinear"),
                     ("resize_bilinear_align_corners_uint8", "resize_bilinear"),
                     ("resize_bilinear_half_pixel_uint8", "resize_bilinear")):
    _PER_CASE[_name] = _PER_CASE[_same]

BOUNDS: dict[tuple[str, str], tuple[int, str]] = {
    (name, mode): bound for name, modes in _PER_CASE.items() for mode, bound in modes.items()}


@dataclass(frozen=True)
class Row:
    """One line of the printed table."""

    io: str
    path: str
    delegated: str
    max_diff: int | None = None
    exact: float | None = None
    n: int = 0
    failure: str | None = None


RESULTS: dict[tuple[str, str], Row] = {}


def _params():
    for name, case in CASES.items():
        for mode in MODES:
            marks = []
            if case.xfail:
                import tvm

                marks = [pytest.mark.xfail(strict=True, reason=case.xfail, raises=getattr(tvm.error, case.raises))]
            yield pytest.param(name, mode, marks=marks, id=f"{name}-{mode}")


@pytest.fixture(scope="module")
def models():
    """The converted model of a case, built once per module on first use; prints the table at the end."""
    yield functools.cache(lambda name: CASES[name].build())
    print("\n\nquantized arithmetic ops: tvmq vs TFLite (tflite: reference kernels; xnnpack: XNNPACK delegate)")
    print(f"  {'case':44s} {'mode':8s} {'io':6s} {'path':9s} {'xnn':4s} {'max|d|':>6s} {'exact':>7s} {'bound':>5s}")
    for (name, mode), r in RESULTS.items():
        bound = BOUNDS.get((name, mode), ("-",))[0]
        if r.failure:
            print(f"  {name:44s} {mode:8s} {r.io:6s} {r.path:9s} {r.delegated:4s} FAILS: {r.failure}")
        else:
            print(f"  {name:44s} {mode:8s} {r.io:6s} {r.path:9s} {r.delegated:4s} {r.max_diff:6d} {r.exact:7.4f} "
                  f"{bound:>5}")


def _check_model(buf, case: ArithCase):
    """The converter wrote ``case.op`` on quantized ``case.inside`` tensors, with ``case.io`` I/O."""
    names = op_names(buf)
    assert case.op in names and set(names) <= {case.op, *case.helpers}, names
    found = operator_tensor_types(buf, case.op)
    assert found
    for ins, outs in found:
        data = [t for t in ins if t[0] not in ("int32", "int64")]  # not sizes, axes, output shapes, biases
        assert data and all(t == (case.inside, True) for t in data + outs), (case.op, ins, outs)
    assert {x.dtype.name for x in random_inputs(buf)} == {case.io}
    if case.check is not None:
        case.check(buf)


def _path(stats: dict, kind: str | None) -> str:
    """Where the op went: ``integer`` (a tvmq rewrite), ``QDQ`` (float path) or ``importer``."""
    if kind is None:
        assert not stats["remaining"], stats
        return "importer"
    seen = stats.get(kind, {})
    assert seen.get("lowered", 0) + seen.get("qdq", 0) >= 1, (kind, stats)
    return "integer" if seen.get("lowered") else "QDQ"


def _delegated(buf) -> str:
    """Whether the XNNPACK delegate took the model's operator ("?" where LiteRT cannot say)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    it = Interpreter(model_content=buf, experimental_op_resolver_type=OpResolverType.AUTO, num_threads=2)
    it.allocate_tensors()
    details = getattr(it, "_get_ops_details", None)
    if details is None:
        return "?"
    return "yes" if any(d["op_name"] == "DELEGATE" for d in details()) else "no"


@pytest.mark.parametrize("name, mode", list(_params()))
def test_quantized_arith_op_within_bound(models, name, mode):
    import tflite
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.model.frontend import from_tflite

    case = CASES[name]
    buf = models(name)
    _check_model(buf, case)
    delegated = _delegated(buf) if mode == "xnnpack" else "-"
    try:
        lowering = lower_qdq_to_int8(from_tflite(tflite.Model.GetRootAsModel(buf, 0)), mode=mode)
        path = _path(lowering.stats.to_dict(), case.kind)
        run = build_tvm(lowering.mod)
    except Exception as e:
        first = str(e).splitlines()[0] if str(e) else ""
        RESULTS[(name, mode)] = Row(case.io, "-", delegated, failure=f"{type(e).__name__}: {first[:110]}")
        raise
    diffs = []
    for seed in SEEDS:
        inputs = random_inputs(buf, seed=seed)
        ours, ref = run(inputs)[0], run_tflite(buf, inputs, kernels=KERNELS[mode])
        assert ours.dtype == ref.dtype and ours.shape == ref.shape, (ours.dtype, ref.dtype, ours.shape, ref.shape)
        diffs.append(np.abs(ours.astype(np.int64) - ref.astype(np.int64)).ravel())
    d = np.concatenate(diffs)
    row = Row(case.io, path, delegated, int(d.max()), float((d == 0).mean()), d.size)
    RESULTS[(name, mode)] = row
    print(f"{name}[{mode}]: {path}, max |diff| {row.max_diff}, exact {row.exact:.4f} of {row.n}")
    bound, why = BOUNDS[(name, mode)]
    assert row.max_diff <= bound, f"max |diff| {row.max_diff} over the documented {bound} ({why})"


def test_every_case_has_a_documented_bound():
    """Each case that runs has a bound of 0, 1 or 2 units per mode, with its reason; xfails have none."""
    for name, case in CASES.items():
        for mode in MODES:
            if case.xfail:
                assert (name, mode) not in BOUNDS, name
                continue
            units, why = BOUNDS[(name, mode)]
            assert units in (0, 1, 2) and why, (name, mode)
    assert {name for name, _ in BOUNDS} <= set(CASES)


@pytest.mark.parametrize("lo, hi", [(-4.0, 4.0), (-9.0, 1.5), (-0.7, 22.0)])
def test_hard_swish_every_input_code(lo, hi):
    """The table equals TFLite's reference kernel and XNNPACK on all 256 int8 codes, for input ranges
    whose multipliers shift left (large ranges) and right (small ones)."""
    import tflite
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.model.frontend import from_tflite

    buf = convert_function(lambda x: x * tf.nn.relu6(x + 3.0) / 6.0, ((16, 16),), ((lo, hi),))
    codes = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16)
    run = build_tvm(lower_qdq_to_int8(from_tflite(tflite.Model.GetRootAsModel(buf, 0)), mode="tflite").mod)
    ours = run([codes])[0]
    for kernels in ("reference", "xnnpack"):
        assert np.array_equal(ours, run_tflite(buf, [codes], kernels=kernels)), kernels


@pytest.mark.parametrize("alpha, lo, hi", [(0.2, -3.0, 2.0), (0.01, -9.0, 1.5), (0.3, -0.7, 22.0), (1e-5, -1.0, 1.0)])
def test_leaky_relu_every_input_code(alpha, lo, hi):
    """All 256 int8 codes: TFLite's kernel in tflite mode, LiteRT's delegated run in xnnpack mode (the last
    slope puts XNNPACK's negative multiplier out of its range: the delegate leaves the node to TFLite)."""
    import tflite
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.model.frontend import from_tflite

    buf = convert_function(lambda x: tf.nn.leaky_relu(x, alpha), ((16, 16),), ((lo, hi),))
    codes = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16)
    for mode, kernels in (("tflite", "reference"), ("xnnpack", "xnnpack")):
        run = build_tvm(lower_qdq_to_int8(from_tflite(tflite.Model.GetRootAsModel(buf, 0)), mode=mode).mod)
        np.testing.assert_array_equal(run([codes])[0], run_tflite(buf, [codes], kernels=kernels), err_msg=mode)


@pytest.mark.parametrize("size", [(13, 17), (5, 7)])
@pytest.mark.parametrize("options", list(RESIZE_MODES.values()),
                         ids=[k.strip("_") or "asymmetric" for k in RESIZE_MODES])
def test_int8_resize_bilinear_integer_kernel(size, options):
    """int8 RESIZE_BILINEAR in tflite mode, up and down, each coordinate mode: TVM's kernel, its numpy
    reference and TFLite's reference kernel agree on every value (half-pixel upsampling weighs the first
    row and column with a negative offset, as TFLite does)."""
    import tflite
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.int8.rewrite_resize import resize_bilinear_int_np
    from tvmq.model.frontend import from_tflite

    mode = "align_corners" if options.get("align_corners") else "half_pixel" if options else "asymmetric"
    buf = convert_function(lambda x: tf.compat.v1.image.resize_bilinear(x, size, **options), ((7, 9, 8),),
                           ((-2.0, 3.0),))
    run = build_tvm(lower_qdq_to_int8(from_tflite(tflite.Model.GetRootAsModel(buf, 0)), mode="tflite").mod)
    for seed in (1, 2):
        x = random_inputs(buf, seed=seed)[0]
        ref = run_tflite(buf, [x], kernels="reference")
        np.testing.assert_array_equal(resize_bilinear_int_np(x, size, mode), ref)
        np.testing.assert_array_equal(run([x])[0], ref)


@pytest.mark.parametrize("strides, padding", [(2, "same"), (2, "valid"), (1, "same"), (3, "valid")])
def test_int8_transpose_conv_integer_kernel(strides, padding):
    """TRANSPOSE_CONV with a bias (Keras' Conv2DTranspose, random weights and bias) in tflite mode: the
    integer kernel is used and every value equals TFLite's reference kernel."""
    import tflite
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.model.frontend import from_tflite

    tf.keras.utils.set_random_seed(strides)
    layer = tf.keras.layers.Conv2DTranspose(12, 3, strides=strides, padding=padding,
                                            bias_initializer=tf.keras.initializers.RandomUniform(-1.0, 1.0))
    model = tf.keras.Sequential([tf.keras.Input((5, 6, 8), batch_size=1), layer])
    buf = convert(model, [(-2.0, 2.0)])
    lowering = lower_qdq_to_int8(from_tflite(tflite.Model.GetRootAsModel(buf, 0)), mode="tflite")
    assert "int8_transpose_conv" in [gv.name_hint for gv in lowering.mod.get_global_vars()]
    run = build_tvm(lowering.mod)
    for seed in (1, 2, 3):
        x = random_inputs(buf, seed=seed)[0]
        np.testing.assert_array_equal(run([x])[0], run_tflite(buf, [x], kernels="reference"))
