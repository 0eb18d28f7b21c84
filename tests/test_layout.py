"""Layout / strategy transforms keep the results of the untransformed build."""

from __future__ import annotations

import numpy as np
import pytest

from tvmq.targets import get_profile, host_info, resolve_target
from tvmq.tuner.layout import (
    apply_layout,
    apply_profile_transforms,
    apply_winograd,
    conv_summary,
    parse_layout,
)


def _host_profile():
    prof, _ = resolve_target("native", num_cores=1)
    return prof


def _tiny_model(c=16):
    """dequantize -> 3x3 s1 conv (winograd-eligible) -> relu -> depthwise 3x3 -> 1x1 conv ->
    3x3 stride-2 conv: the forms a quantized TFLite CNN imports as, at a few kFLOPs."""
    from tvm import relax

    rng = np.random.default_rng(0)
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 12, 12, c), "uint8"))

    def const(shape):
        return relax.const(rng.standard_normal(shape).astype("float32") * 0.1)

    with bb.function("main", [x]):
        with bb.dataflow():
            f = bb.emit(relax.op.dequantize(x, relax.const(0.05, "float32"), relax.const(128, "int32")))
            y = bb.emit(relax.op.nn.conv2d(f, const((3, 3, c, 2 * c)), padding=[1, 1, 1, 1],
                                           data_layout="NHWC", kernel_layout="HWIO"))
            y = bb.emit(relax.op.nn.relu(relax.op.add(y, const((2 * c,)))))
            y = bb.emit(relax.op.nn.conv2d(y, const((3, 3, 2 * c, 1)), padding=[1, 1, 1, 1], groups=2 * c,
                                           data_layout="NHWC", kernel_layout="HWOI"))
            y = bb.emit(relax.op.nn.conv2d(y, const((1, 1, 2 * c, c)), data_layout="NHWC", kernel_layout="HWIO"))
            y = bb.emit(relax.op.nn.conv2d(y, const((3, 3, c, c)), strides=[2, 2], padding=[0, 0, 1, 1],
                                           data_layout="NHWC", kernel_layout="HWIO"))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _run(mod, prof, x):
    import tvm
    from tvm import relax

    target = prof.tvm_target(1)
    with target:
        mod = relax.get_pipeline("zero")(mod)
    ex = tvm.compile(mod, target=target)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy()


@pytest.fixture(scope="module")
def tiny():
    mod = _tiny_model()
    x = np.random.default_rng(1).integers(0, 256, (1, 12, 12, 16), dtype=np.uint8)
    prof = _host_profile()
    return mod, x, prof, _run(mod, prof, x)


def test_parse_layout():
    assert parse_layout("NHWC") == ("NHWC", 0)
    assert parse_layout("NCHW16c") == ("NCHWc", 16)
    with pytest.raises(ValueError):
        parse_layout("NCHW0c")
    with pytest.raises(ValueError):
        parse_layout("HWCN")


@pytest.mark.parametrize("layout, converted", [("NCHW", 4), ("NCHW8c", 3), ("NCHW16c", 3)])
def test_layouts_convert_and_keep_results(tiny, layout, converted):
    mod, x, prof, ref = tiny
    new, n = apply_layout(mod, layout, target=prof.tvm_target(1))
    assert n == converted
    summary = conv_summary(new)
    assert summary.get(layout, 0) == converted
    if layout != "NCHW":  # the depthwise conv stays NHWC under a blocked layout
        assert summary.get("NHWC", 0) == 4 - converted
    out = _run(new, prof, x)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_nhwc_is_left_alone(tiny):
    mod, *_ = tiny
    new = apply_profile_transforms(mod, get_profile("znver3"))
    assert new.same_as(mod) or conv_summary(new) == {"NHWC": 4}


def test_winograd_rewrites_only_eligible_conv_and_keeps_results(tiny):
    mod, x, prof, ref = tiny
    new, n = apply_winograd(mod)
    assert n == 1  # 3x3 s1 dense only: not the depthwise, the 1x1 or the stride-2 conv
    assert conv_summary(new) == {"winograd": 1, "NHWC": 3}
    assert "conv2d_winograd_nhwc" in {gv.name_hint for gv in new.get_global_vars()}
    out = _run(new, prof, x)
    assert not np.array_equal(out, ref)  # really a different algorithm ...
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)  # ... with the same numbers


def test_profile_with_nchwc_and_winograd(tiny):
    """cortex-a72's choice (winograd + NCHW4c), built for this host's CPU to check numbers."""
    import dataclasses

    mod, x, prof, ref = tiny
    a72 = get_profile("cortex-a72")
    assert a72.winograd and a72.layout == "NCHW4c"
    new = apply_profile_transforms(mod, a72)
    assert conv_summary(new) == {"winograd": 1, "NCHW4c": 2, "NHWC": 1}
    # same transforms, compiled for this host so that it can run
    here = dataclasses.replace(prof, data_layout="NCHWc", layout_block=4, winograd=True)
    out = _run(apply_profile_transforms(mod, here), prof, x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)


def test_bad_layout_is_rejected_before_work(tiny):
    mod, *_ = tiny
    with pytest.raises(ValueError, match="unknown data layout"):
        apply_profile_transforms(mod, get_profile("znver3"), layout="NC4HW")


# ------------------------------------------------------------------ real model
@pytest.fixture(scope="module")
def mobilenet(small_real_model):
    import tflite
    from tvm.relax.frontend.tflite import from_tflite

    buf = small_real_model.read_bytes()
    mod = from_tflite(tflite.Model.GetRootAsModel(buf, 0))
    x = np.random.default_rng(2).integers(0, 256, (1, 128, 128, 3), dtype=np.uint8)
    return mod, x


@pytest.fixture(scope="module")
def mobilenet_ref(mobilenet):
    mod, x = mobilenet
    return _run(mod, _host_profile(), x)


@pytest.mark.shared_models
@pytest.mark.parametrize("layout", ["NCHW", "NCHW16c"])
def test_mobilenet_layouts_keep_results(mobilenet, mobilenet_ref, layout):
    mod, x = mobilenet
    new = apply_profile_transforms(mod, _host_profile(), layout=layout, winograd=True)
    summary = conv_summary(new)
    assert summary.get(layout, 0) >= 12 and "winograd" not in summary  # MobileNet: no eligible conv
    out = _run(new, _host_profile(), x)
    # Same float math summed in another order: a value sitting on a rounding boundary may
    # requantize one step apart (MobileNet V1 0.25 is bit-exact here; V2 shows 1-step diffs).
    assert int(np.abs(out.astype(int) - mobilenet_ref.astype(int)).max()) <= 1
    assert int(out.argmax()) == int(mobilenet_ref.argmax())


@pytest.mark.shared_models
def test_mobilenet_matches_tflite(mobilenet, mobilenet_ref, small_real_model):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        pytest.skip("ai_edge_litert is not installed")
    _, x = mobilenet
    it = Interpreter(model_path=str(small_real_model))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    tfl = it.get_tensor(it.get_output_details()[0]["index"])
    assert tfl.shape == mobilenet_ref.shape
    assert int(tfl.argmax()) == int(mobilenet_ref.argmax())
    assert int(np.abs(tfl.astype(int) - mobilenet_ref.astype(int)).max()) <= 3
