"""Model inspection on uint8, int8, float and dynamic-range models the tests make themselves."""

import pytest

from tvmq.errors import CustomOperators, DynamicRangeModel, UnsupportedOperators
from tvmq.model import check_convertible, inspect_model, load_model


def info_of(model_factory, name):
    return inspect_model(load_model(model_factory.path(name)))


def test_uint8_io_model(model_factory):
    info = info_of(model_factory, "uint8")
    assert info.quantization == "int8 per-channel"
    assert info.is_quantized
    (inp,) = info.inputs
    assert inp.dtype == "uint8" and inp.shape == [1, 32, 32, 3]
    assert len(inp.scales) == 1 and 0 <= inp.zero_points[0] <= 255
    assert info.outputs[0].dtype == "uint8" and info.outputs[0].shape == [1, 10]
    ops = info.operator_counts
    assert ops["CONV_2D"] == 2 and ops["DEPTHWISE_CONV_2D"] == 1 and ops["FULLY_CONNECTED"] == 1
    assert ops["ADD"] == 1 and ops["SOFTMAX"] == 1
    check_convertible(info)


def test_int8_io_model(model_factory):
    info = info_of(model_factory, "int8")
    assert info.inputs[0].dtype == "int8" and info.outputs[0].dtype == "int8"
    assert info.quantization == "int8 per-channel"
    assert "QUANTIZE" not in info.operator_counts  # no uint8 shims when the I/O is int8


def test_per_tensor_model(model_factory):
    info = info_of(model_factory, "uint8_per_tensor")
    assert info.quantization == "int8 per-tensor"


def test_float_model(model_factory):
    info = info_of(model_factory, "float")
    assert info.quantization == "float" and not info.is_quantized
    assert info.inputs[0].dtype == "float32" and info.inputs[0].scales == []
    check_convertible(info)


def test_dynamic_range_model_is_refused(model_factory):
    info = info_of(model_factory, "dynamic_range")
    assert info.quantization == "dynamic-range"
    assert "FULLY_CONNECTED" in info.dynamic_range_operators
    with pytest.raises(DynamicRangeModel, match="dynamic-range quantized"):
        check_convertible(info)


def test_unsupported_quantized_operator_is_listed(model_factory):
    info = info_of(model_factory, "gather_nd")
    assert "GATHER_ND (quantized)" in info.unsupported_operators
    with pytest.raises(UnsupportedOperators, match="GATHER_ND") as err:
        check_convertible(info)
    assert err.value.operators == ["GATHER_ND (quantized)"]


def test_custom_operator_is_named(model_factory):
    info = info_of(model_factory, "custom")
    assert info.custom_operators == ["Cumprod"]
    with pytest.raises(CustomOperators, match="Cumprod"):
        check_convertible(info)


def test_real_models(models_dir):
    v2 = inspect_model(load_model(models_dir / "mobilenet_v2_1.0_224_quant.tflite"))
    assert v2.quantization == "uint8 per-tensor"
    assert v2.operator_counts["CONV_2D"] == 36 and v2.operator_counts["DEPTHWISE_CONV_2D"] == 17
    ptq = inspect_model(load_model(models_dir / "tf2_mobilenet_v2_1.0_224_ptq.tflite"))
    assert ptq.quantization == "int8 per-channel" and ptq.inputs[0].dtype == "uint8"
