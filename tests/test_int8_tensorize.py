"""int8 convolutions and dense layers tensorized with each target's dot-product intrinsics.

Every case is lowered with a profile's scheme and built with one point of tvmq's design space
(the schedule rule that tiles around the intrinsic, then ``RewriteTensorize``), i.e. the code a
tuned build runs, without tuning. The instruction must be in the code; where this host can run
it, the output must equal TFLite's reference kernels bit for bit.

* int8 activations: one-op models made with TensorFlow's converter;
* uint8 activations with asymmetric uint8 weights (what older TFLite models such as MobileNet
  V2 1.0 quant hold, and what the converter no longer makes): a QDQ Relax module written as the
  TFLite importer writes it, checked against a numpy reference of TFLite's integer conv.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from tests._int8_helpers import (compare, convert, import_tflite, llvm_asm, random_inputs, run_tflite, run_tvm,
                                 tensorized_build, uint8_qdq_conv)
from tvmq.targets import get_profile

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")

# profile -> (scheme, what its int8 code must contain)
TARGETS = {
    "znver3": ("avx2", r"\bvpmaddwd\b.*%ymm"),
    "skylake-avx512": ("avx512", r"\bvpmaddwd\b.*%zmm"),
    "cascadelake": ("vnni", r"\bvpdpbusd\b.*%zmm"),
    "cortex-a76": ("sdot", r"\bsdot\s+v\d+\.4s"),
}


def _conv(c, oc, k, stride, padding):
    inp = tf.keras.Input((9, 10, c), batch_size=1)
    layer = tf.keras.layers.Conv2D(oc, k, strides=stride, padding=padding, activation="relu6",
                                   bias_initializer=tf.keras.initializers.RandomNormal(stddev=0.5))
    return tf.keras.Model(inp, layer(inp)), [(-1.5, 2.5)]


def _dense(k, oc):
    inp = tf.keras.Input((k,), batch_size=1)
    return tf.keras.Model(inp, tf.keras.layers.Dense(oc, activation="relu")(inp)), [(-1.0, 2.0)]


CASES = {
    "conv1x1": lambda: _conv(8, 24, 1, 1, "valid"),       # the (C/4, 2, 2) view is a free reshape
    "conv3x3_c3_stride2": lambda: _conv(3, 10, 3, 2, "same"),  # channels padded to 4, zero point padding
    "dense": lambda: _dense(20, 9),
}


@pytest.fixture(scope="module")
def models():
    out = {}
    for i, (name, make) in enumerate(CASES.items()):
        tf.keras.utils.set_random_seed(i)
        model, ranges = make()
        out[name] = convert(model, ranges, io_dtype="int8", seed=i)
    return out


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("profile_name", list(TARGETS))
def test_int8_activations_tensorized(models, case, profile_name):
    from tvmq.int8 import lower_qdq_to_int8

    scheme, pattern = TARGETS[profile_name]
    prof = get_profile(profile_name)
    assert prof.int8_scheme == scheme
    buf = models[case]
    lowering = lower_qdq_to_int8(import_tflite(buf), scheme=scheme)
    low = lowering.mod
    (used,) = lowering.intrinsics
    assert used.startswith(f"tvmq_dot_{scheme}_")
    if scheme == "vnni":  # int8 activations flipped to uint8 on load: no window-sum kernel before the layer
        assert not [gv for gv in low.functions if "window_sum" in gv.name_hint]
    ex, n = tensorized_build(low, prof.tvm_target(2))
    assert n == 1
    assert re.search(pattern, llvm_asm(ex)), f"{pattern} not in the {profile_name} code"
    if prof.can_run_here:
        from tvm import relax
        import tvm

        x = random_inputs(buf)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        ours = vm["main"](*[tvm.runtime.tensor(a) for a in x]).numpy()
        share, maxd = compare(ours, run_tflite(buf, x, "reference"))
        assert maxd == 0, f"tensorized {scheme} differs from TFLite's reference kernels: {share}, {maxd}"


# ---------------------------------------------------------------------------------- uint8
@pytest.mark.parametrize("weights,zp_w,expect,instruction", [
    ((-40, 40), None, "tvmq_dot_avx2_u8i8_sat", "vpmaddubsw"),  # w - zp fits int8, no pair can saturate
    ((-120, 120), None, "tvmq_dot_avx2_u8i8", "vpmaddwd"),      # fits int8, pairs could saturate
    ((-131, 124), 131, "tvmq_dot_avx2_u8u8_zp", "vpmaddwd"),    # w - zp does not fit int8 at all
])
def test_uint8_conv_asymmetric_weights(weights, zp_w, expect, instruction):
    from tvmq.int8 import lower_qdq_to_int8

    rng = np.random.default_rng(7)
    mod, x, ref = uint8_qdq_conv(rng, weights, zp_w)
    # the plain integer kernels and the packed ones of every scheme compute TFLite's integers
    for scheme in (None, "avx2", "avx512", "vnni", "sdot"):
        low = lower_qdq_to_int8(mod, scheme=scheme).mod
        assert np.array_equal(run_tvm(low, [x]), ref), scheme
    lowering = lower_qdq_to_int8(mod, scheme="avx2")
    low = lowering.mod
    used = lowering.intrinsics
    assert used[expect] == 1 and sum(v for k, v in used.items() if "(" not in k) == 1, used
    prof = get_profile("znver3")
    ex, n = tensorized_build(low, prof.tvm_target(2))
    assert n == 1, "the convolution was not tensorized"
    asm = llvm_asm(ex)
    assert re.search(rf"\b{instruction}\b", asm)
    assert ("vpmaddubsw" in asm) == (instruction == "vpmaddubsw")
    if prof.can_run_here:
        import tvm
        from tvm import relax

        out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
        np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("c", [3, 5])
def test_uint8_conv_channels_not_a_multiple_of_4(c):
    """Channels padded to a multiple of 4 for the intrinsic must not enter the zero-point
    algebra. The window-sum form (``cw != 0``: VNNI's ``w - 128``, Arm udot's plain uint8) once
    counted the padded channels in its constant ``zp_x * cw * K`` term, which broke the first conv
    of every RGB model: on a VNNI machine mobilenet_v2 quant's top-5 differed from TFLite's."""
    from tvmq.int8 import dot, lower_qdq_to_int8

    for weights, zp_w in (((-128, 127), None), ((-131, 124), 131)):
        mod, x, ref = uint8_qdq_conv(np.random.default_rng(11), weights, zp_w, c=c, stride=2)
        for scheme in (None, "avx2", "avx512", "vnni", "sdot"):
            low = lower_qdq_to_int8(mod, scheme=scheme).mod
            assert np.array_equal(run_tvm(low, [x]), ref), (weights, scheme)
    # the second weights do not fit int8 around their zero point: VNNI takes the window-sum form
    w = np.array([0, 131, 255], np.uint8).reshape(1, 1, 3, 1)
    assert dot.choose("vnni", "uint8", w, 131).cw == 128 - 131


def test_uint8_conv_on_vnni_and_udot_builds():
    """uint8 activations on VNNI (u8 x i8, weights shifted by 128) and Arm (udot, u8 x u8)."""
    from tvmq.int8 import lower_qdq_to_int8

    mod, x, ref = uint8_qdq_conv(np.random.default_rng(3), (-128, 127), stride=2)
    for name, intrin, pattern in (("cascadelake", "tvmq_dot_vnni_u8i8", r"\bvpdpbusd\b.*%zmm"),
                                  ("neoverse-n1", "tvmq_dot_udot_u8u8", r"\budot\s+v\d+\.4s")):
        prof = get_profile(name)
        lowering = lower_qdq_to_int8(mod, scheme=prof.int8_scheme)
        low = lowering.mod
        assert lowering.intrinsics == {intrin: 1}
        ex, n = tensorized_build(low, prof.tvm_target(2))
        assert n == 1, f"the {name} convolution was not tensorized"
        assert re.search(pattern, llvm_asm(ex)), name
        if prof.can_run_here:
            import tvm
            from tvm import relax

            out = relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
            np.testing.assert_array_equal(out, ref)


def test_tuned_builds_schedule_only_the_dot_products_the_database_lacks():
    """``only_dots``: the functions holding an annotated dot product get the design-space point,
    the others keep TVM's default (measured faster for them on a tuned mobilenet_v2)."""
    from tvm import relax, te

    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.tuner.rules import _is_scheduled, schedule_unscheduled

    mod, _, _ = uint8_qdq_conv(np.random.default_rng(7), (-120, 120))
    target = get_profile("znver3").tvm_target(2)
    with target:
        lowered = relax.get_pipeline("zero")(lower_qdq_to_int8(mod, scheme="avx2").mod)
    a = te.placeholder((64, 64), "int32", name="a")
    lowered["plain_add"] = te.create_prim_func([a, te.compute((64, 64), lambda i, j: a[i, j] + 1, name="b")])
    dots, n_dots = schedule_unscheduled(lowered, target, only_dots=True)
    every, n_every = schedule_unscheduled(lowered, target)
    assert (n_dots, n_every) == (1, 2)
    assert _is_scheduled(dots["int8_conv2d"]) and not _is_scheduled(dots["plain_add"])
    assert _is_scheduled(every["plain_add"])


def test_reshapes_that_run_as_views_are_not_tuning_tasks(models):
    """The conv1x1 case reshapes its activation into the (C/4, 2, 2) view the intrinsic reads.
    The build turns that call into a view (no kernel), so it must not be a tuning task."""
    from tvm import relax

    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.tuner.tasks import dedup_counts, extract, runs_as_view

    target = get_profile("znver3").tvm_target(2)
    with target:
        lowered = relax.get_pipeline("zero")(lower_qdq_to_int8(import_tflite(models["conv1x1"]), scheme="avx2").mod)
    every = extract(lowered, target, views=True)
    reshapes = [t for t in every if runs_as_view(t)]
    assert reshapes, [t.task_name for t in every]
    tasks = extract(lowered, target)
    assert {t.task_name for t in tasks} == {t.task_name for t in every} - {t.task_name for t in reshapes}
    assert any(t.task_name.startswith("int8_conv2d") for t in tasks)
    counts = dedup_counts(lowered, target)
    assert counts["views"] == sum(t.weight for t in reshapes)

    # The premise: after the build's RewriteDataflowReshape no call of those functions is left.
    before = {str(gv.name_hint) for gv in _called_prim_funcs(lowered)}
    assert {t.task_name for t in reshapes} <= before
    rewritten = relax.transform.RewriteDataflowReshape()(lowered)
    called = {str(gv.name_hint) for gv in _called_prim_funcs(rewritten)}
    for t in reshapes:
        assert t.task_name not in called, t.task_name


def _called_prim_funcs(mod):
    """The TIR functions the module's Relax functions call (``call_tir``'s first argument)."""
    from tvm import relax

    called = []

    def visit(expr):
        if isinstance(expr, relax.Call) and expr.args and isinstance(expr.args[0], relax.GlobalVar):
            called.append(expr.args[0])

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func.body, visit)
    return called
