"""One-op tests of the quantized operators tvmq's frontend adds (``tvmq.model.frontend.EXACT_IN_INTEGERS``).

Each case converts a small ``tf.function`` with TensorFlow's full-integer converter so that the
model holds the operator on int8 (or, with uint8 I/O, behind the uint8<->int8 QUANTIZE ops the
converter adds) tensors, checks that it does, imports it with ``tvmq.model.frontend.from_tflite``,
lowers it with ``lower_qdq_to_int8(mode="tflite")`` and compares every output of TVM with TFLite's
reference kernels on random integer inputs: they must be equal (max difference 0).

EXPAND_DIMS and SQUEEZE on a static shape become RESHAPE in the converter; their cases leave
dimensions unknown (``None``: 1 in the model), which keeps them. DEPTH_TO_SPACE and TILE are compared
with TFLite's builtin kernels, as its reference resolver lacks the versions the converter writes.
GATHER_ND, BATCH_TO_SPACE_ND and SPACE_TO_BATCH_ND are not here: TVM's converters of them fail
(float models too), so a model holding them is partitioned (tests/test_partition.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from tests._int8_helpers import TARGET, convert_function, op_names, random_inputs, run_tflite_outputs

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected")

QUANTIZED_DTYPES = ("int8", "uint8")


def output_dtypes(buf):
    from ai_edge_litert.interpreter import Interpreter

    return [np.dtype(d["dtype"]) for d in Interpreter(model_content=buf).get_output_details()]


def build_tvm(mod):
    """A function running the compiled module on numpy inputs and giving every output as a list."""
    import tvm
    from tvm import relax

    target = tvm.target.Target(TARGET)
    with target:
        lowered = relax.get_pipeline("zero")(mod)
    vm = relax.VirtualMachine(tvm.compile(lowered, target=target), tvm.cpu())

    def run(inputs):
        out = vm["main"](*[tvm.runtime.tensor(x) for x in inputs])
        return [o.numpy() for o in out] if isinstance(out, (tvm.ir.Array, list, tuple)) else [out.numpy()]

    return run


def operator_tensor_types(buf, name):
    """For each operator ``name`` of the model: ``(inputs, outputs)``, each a list of
    ``(dtype, quantized)`` of its tensors (constant parameters such as paddings included)."""
    import tflite

    type_names = {v: k.lower() for k, v in tflite.TensorType.__dict__.items() if not k.startswith("_")}
    model = tflite.Model.GetRootAsModel(buf, 0)
    graph = model.Subgraphs(0)
    names = op_names(buf)

    def describe(i):
        t = graph.Tensors(int(i))
        q = t.Quantization()
        quantized = q is not None and q.ScaleLength() > 0
        return type_names[t.Type()], quantized

    found = []
    for k in range(graph.OperatorsLength()):
        if names[k] == name:
            op = graph.Operators(k)
            found.append(([describe(i) for i in op.InputsAsNumpy() if i >= 0],
                          [describe(i) for i in op.OutputsAsNumpy() if i >= 0]))
    return found


def _resize(size, align_corners=False, half_pixel_centers=False):
    return lambda x: tf.raw_ops.ResizeNearestNeighbor(images=x, size=size, align_corners=align_corners,
                                                      half_pixel_centers=half_pixel_centers)


@dataclass(frozen=True)
class OpCase:
    """A one-op model: ``fn`` on float32 inputs of ``shapes`` (batch of 1 added), calibrated on
    ``ranges``, converted with ``io`` inputs and outputs; ``xfail``: why it fails today."""

    op: str
    fn: Callable
    shapes: tuple
    ranges: tuple = ((-1.3, 2.1),)  # asymmetric: a zero point away from 0 (PAD pads with it)
    io: str = "int8"
    dynamic_batch: bool = False
    xfail: str | None = None
    raises: type = Exception


# TFLite's reference resolver (BUILTIN_REF) registers older versions of these operators only
# ("Didn't find op for builtin opcode 'TILE' version '3'"): the cases compare with its builtin
# kernels instead, which copy the integers just the same.
REFERENCE_RESOLVER_LACKS = frozenset({"DEPTH_TO_SPACE", "TILE"})


def _cases() -> dict[str, OpCase]:
    argmax, argmin = tf.math.argmax, tf.math.argmin
    cases = {
        "arg_max_i32": OpCase("ARG_MAX", lambda x: argmax(x, axis=-1, output_type=tf.int32), ((4, 5, 7),)),
        "arg_max_i64": OpCase("ARG_MAX", lambda x: argmax(x, axis=1, output_type=tf.int64), ((4, 5, 7),)),
        "arg_max_i32_uint8": OpCase("ARG_MAX", lambda x: argmax(x, axis=-1, output_type=tf.int32), ((4, 5, 7),),
                                    io="uint8"),
        "arg_max_i64_uint8": OpCase("ARG_MAX", lambda x: argmax(x, axis=2, output_type=tf.int64), ((4, 5, 7),),
                                    io="uint8"),
        "arg_min_i32": OpCase("ARG_MIN", lambda x: argmin(x, axis=1, output_type=tf.int32), ((4, 5, 7),)),
        "arg_min_i64_uint8": OpCase("ARG_MIN", lambda x: argmin(x, axis=-1, output_type=tf.int64), ((4, 5, 7),),
                                    io="uint8"),
        "split": OpCase("SPLIT", lambda x: tf.split(x, 3, axis=-1), ((4, 5, 6),)),
        "split_uint8": OpCase("SPLIT", lambda x: tf.split(x, 2, axis=1), ((4, 5, 6),), io="uint8"),
        "split_v": OpCase("SPLIT_V", lambda x: tf.split(x, [1, 3, 2], axis=-1), ((4, 5, 6),)),
        "pack": OpCase("PACK", lambda a, b: tf.stack([a, b], axis=1), ((4, 5), (4, 5)), ((-1.3, 2.1), (-3.0, 0.5))),
        "unpack": OpCase("UNPACK", lambda x: tf.unstack(x, axis=1), ((3, 5, 2),)),
        "gather": OpCase("GATHER", lambda x: tf.gather(x, [3, 0, 2, 2], axis=1), ((4, 5, 3),)),
        "pad": OpCase("PAD", lambda x: tf.pad(x, [[0, 0], [1, 2], [0, 1], [2, 0]]), ((4, 5, 3),)),
        "pad_uint8": OpCase("PAD", lambda x: tf.pad(x, [[0, 0], [2, 1], [1, 0], [0, 0]]), ((4, 5, 3),),
                            ((-0.4, 3.0),), io="uint8"),
        "pad_v2": OpCase("PADV2", lambda x: tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]], constant_values=0.75),
                         ((4, 5, 3),)),
        "strided_slice": OpCase("STRIDED_SLICE", lambda x: x[:, 1::2, ::-1, 1:], ((6, 5, 3),)),
        "slice": OpCase("SLICE", lambda x: tf.slice(x, [0, 1, 2, 0], [1, 3, 2, 2]), ((6, 5, 3),)),
        "transpose": OpCase("TRANSPOSE", lambda x: tf.transpose(x, [0, 2, 3, 1]), ((6, 5, 3),)),
        "depth_to_space": OpCase("DEPTH_TO_SPACE", lambda x: tf.nn.depth_to_space(x, 2), ((3, 4, 8),)),
        "space_to_depth": OpCase("SPACE_TO_DEPTH", lambda x: tf.nn.space_to_depth(x, 2), ((4, 6, 3),)),
        # on a static shape the converter turns EXPAND_DIMS and SQUEEZE into RESHAPE; an unknown batch keeps them
        # TVM's convert_expand_dims calls relax.op.expand_dims(x, axis, 1) (TypeError): tvmq reshapes
        "expand_dims": OpCase("EXPAND_DIMS", lambda x: tf.expand_dims(x, 2), ((4, 5),), dynamic_batch=True),
        # unknown dimensions ahead of it keep SQUEEZE (shapes of 1 in the model): dims 0 and 1 must stay
        "squeeze": OpCase("SQUEEZE", lambda x: tf.squeeze(x, axis=2), ((None, 1, 5),), dynamic_batch=True),
        # without squeeze_dims TFLite removes every dimension of size 1; TVM's converter none
        "squeeze_all": OpCase("SQUEEZE", lambda x: tf.squeeze(x), ((4, 1, 5),), dynamic_batch=True),
        "tile": OpCase("TILE", lambda x: tf.tile(x, [1, 2, 1, 3]), ((3, 4, 2),)),
        "reverse_v2": OpCase("REVERSE_V2", lambda x: tf.reverse(x, axis=[2]), ((3, 4, 2),)),
        # TVM's convert_reverse_v2 asserts one axis
        "reverse_v2_two_axes": OpCase("REVERSE_V2", lambda x: tf.reverse(x, axis=[1, 2]), ((3, 4, 2),)),
    }
    for io in QUANTIZED_DTYPES:
        for grow, size, shape in (("up", [7, 9], (4, 5, 3)), ("down", [3, 2], (7, 5, 2))):
            for mode, options in (("", {}), ("_align_corners", {"align_corners": True}),
                                  ("_half_pixel", {"half_pixel_centers": True})):
                # scaling up with align_corners lands on .5 (4 -> 7: scale 0.5), which TFLite rounds up
                # and TVM's converter to even; tvmq's converter rounds as TFLite does
                cases[f"resize_nearest_{grow}{mode}_{io}"] = OpCase(
                    "RESIZE_NEAREST_NEIGHBOR", _resize(size, **options), (shape,), io=io)
    return cases


CASES = _cases()


def _params():
    for name, case in CASES.items():
        marks = [pytest.mark.xfail(strict=True, reason=case.xfail, raises=case.raises)] if case.xfail else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.fixture(scope="module")
def models():
    """The converted model of a case, built once per module on first use."""

    @functools.cache
    def build(name):
        case = CASES[name]
        return convert_function(case.fn, case.shapes, case.ranges, io_dtype=case.io, dynamic_batch=case.dynamic_batch)

    return build


def _tie_heavy_inputs(buf, seed):
    """Integer inputs from a handful of values: ARG_MAX/ARG_MIN then see ties (TFLite takes the first)."""
    out = []
    rng = np.random.default_rng(seed)
    for x in random_inputs(buf, seed=seed):
        mid = 128 if x.dtype == np.uint8 else 0
        out.append((mid + rng.integers(-2, 3, size=x.shape)).astype(x.dtype))
    return out


@pytest.mark.parametrize("name", list(_params()))
def test_quantized_op_exact(models, name):
    import tflite
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.model.frontend import EXACT_IN_INTEGERS, from_tflite

    op, io = CASES[name].op, CASES[name].io
    assert op in EXACT_IN_INTEGERS
    buf = models(name)
    names = op_names(buf)
    # the converter emitted the operator itself, on quantized integers
    assert op in names, names
    helpers = {"QUANTIZE"}  # uint8 I/O
    assert set(names) <= {op} | helpers, names
    for ins, outs in operator_tensor_types(buf, op):
        data = [t for t in ins if t[0] not in ("int32", "int64")]  # not the axes, paddings, indices, ...
        assert data and all(dtype in QUANTIZED_DTYPES and q for dtype, q in data), (op, ins)
        if op in ("ARG_MAX", "ARG_MIN"):
            assert outs == [("int64" if "_i64" in name else "int32", False)], outs
        else:
            assert all(dtype in QUANTIZED_DTYPES and q for dtype, q in outs), (op, outs)
    inputs = random_inputs(buf, seed=len(name))
    assert {x.dtype.name for x in inputs} == {io}
    if op not in ("ARG_MAX", "ARG_MIN"):
        assert {d.name for d in output_dtypes(buf)} == {io}

    mod = from_tflite(tflite.Model.GetRootAsModel(buf, 0))
    lowering = lower_qdq_to_int8(mod, mode="tflite")
    assert not lowering.stats.to_dict()["remaining"], lowering.stats.to_dict()
    run = build_tvm(lowering.mod)
    input_sets = [inputs]
    if op in ("ARG_MAX", "ARG_MIN"):
        input_sets.append(_tie_heavy_inputs(buf, seed=len(name)))
    for xs in input_sets:
        ours = run(xs)
        refs = run_tflite_outputs(buf, xs, "optimized" if op in REFERENCE_RESOLVER_LACKS else "reference")
        assert len(ours) == len(refs) >= 1
        for k, (a, b) in enumerate(zip(ours, refs)):
            assert a.dtype == b.dtype and a.shape == b.shape, (k, a.dtype, b.dtype, a.shape, b.shape)
            diff = np.abs(a.astype(np.int64) - b.astype(np.int64))
            assert diff.max() == 0, f"output {k}: {int((diff != 0).sum())} of {diff.size} differ, max {diff.max()}"


def test_plain_tvm_refuses_quantized_arg_max_tvmq_takes_it(models, tmp_path):
    """What tvmq adds: TVM's own frontend refuses the quantized ARG_MAX; tvmq's inspection and
    import take it."""
    import tflite
    import tvm
    from tvm.relax.frontend.tflite import from_tflite as tvm_from_tflite
    from tvmq.model import inspect_model, load_model
    from tvmq.model.frontend import from_tflite

    buf = models("arg_max_i32")
    with pytest.raises(tvm.error.OpNotImplemented, match="ARG_MAX"):
        tvm_from_tflite(tflite.Model.GetRootAsModel(buf, 0))
    path = tmp_path / "arg_max.tflite"
    path.write_bytes(buf)
    info = inspect_model(load_model(path))
    assert info.operator_counts == {"ARG_MAX": 1}
    assert info.quantization.startswith("int8")
    assert info.unsupported_operators == []
    assert "main" in [gv.name_hint for gv in from_tflite(tflite.Model.GetRootAsModel(buf, 0)).functions]
