"""``scripts/bench_layers.py`` rebuilds a model's convolutions as one-op models: what it reads
from a flatbuffer must be the layer it then builds, or its per-layer table compares the wrong
layers."""

from __future__ import annotations

import pytest

from tvmq.model import load_model

from .scripts_helper import load_script
from .tflite_factory import quantized, small_cnn

bench_layers = load_script("bench_layers")
Layer, model_layers, one_op_model = bench_layers.Layer, bench_layers.model_layers, bench_layers.one_op_model


def _load(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    return load_model(path)


def test_reads_every_convolution_of_a_model(tmp_path):
    layers = model_layers(_load(tmp_path, "cnn.tflite", quantized(small_cnn(size=32), io_dtype="int8")))
    assert layers == {
        Layer("conv2d", 32, 32, 3, 8, 3, 3, 2, "same", "relu6"): 1,
        Layer("depthwise", 16, 16, 8, 8, 3, 3, 1, "same", "relu"): 1,
        Layer("conv2d", 16, 16, 8, 16, 1, 1, 1, "valid", "relu"): 1,  # Keras default padding
    }


@pytest.mark.parametrize("layer", [
    Layer("conv2d", 20, 20, 8, 24, 3, 3, 2, "valid", "relu6"),
    Layer("depthwise", 14, 14, 16, 16, 3, 3, 2, "same", None),
    Layer("conv2d", 7, 7, 32, 8, 1, 1, 1, "same", None),
])
def test_one_op_model_is_the_layer_it_was_built_from(tmp_path, layer):
    loaded = _load(tmp_path, "layer.tflite", one_op_model(layer, seed=0))
    assert model_layers(loaded) == {layer: 1}


def test_macs_count_each_output_once():
    assert Layer("conv2d", 8, 8, 4, 16, 1, 1, 1, "same", None).macs() == 8 * 8 * 16 * 4
    assert Layer("depthwise", 8, 8, 4, 4, 3, 3, 2, "same", None).macs() == 4 * 4 * 4 * 9
    assert Layer("conv2d", 9, 9, 2, 3, 3, 3, 2, "valid", None).macs() == 4 * 4 * 3 * 18


def test_the_floor_is_the_models_macs_at_the_schemes_peak():
    """300.8 MMAC (mobilenet_v2) on two VNNI cores at 2.5 GHz: 64 MACs per cycle and core, 0.94 ms;
    no floor without a dot-product scheme or a clock."""
    ms, how = bench_layers.hardware_floor(300_800_000, "vnni", 2, 2.5)
    assert ms == pytest.approx(0.94) and "64 MAC/cycle/core" in how
    assert bench_layers.hardware_floor(300_800_000, "avx2", 2, 2.5)[0] == pytest.approx(1.88)
    assert bench_layers.hardware_floor(300_800_000, None, 2, 2.5) is None
    assert bench_layers.hardware_floor(300_800_000, "vnni", 2, None) is None


def test_on_amx_only_pointwise_layers_count_at_the_tile_peak():
    """On the amx scheme a 1x1 stride-1 layer of 32+ pixels runs on AMX tiles (1024 MAC/cycle),
    every other layer on VNNI (64): the floor adds the two parts."""
    pointwise = Layer("conv2d", 14, 14, 384, 64, 1, 1, 1, "same", None)  # 196 pixels, narrowing
    tiny = Layer("conv2d", 4, 4, 384, 64, 1, 1, 1, "same", None)  # 16 pixels: VNNI
    expand = Layer("conv2d", 14, 14, 64, 384, 1, 1, 1, "same", None)  # expanding: VNNI
    dw = Layer("depthwise", 14, 14, 384, 384, 3, 3, 1, "same", None)
    assert [bench_layers.layer_scheme(x, "amx") for x in (pointwise, tiny, expand, dw)] == ["amx", "vnni", "vnni", "vnni"]
    assert bench_layers.layer_scheme(pointwise, "vnni") == "vnni"
    ms, how = bench_layers.layers_floor({pointwise: 2, dw: 1}, "amx", 2, 2.5)
    expect = (2 * pointwise.macs() / 1024 + dw.macs() / 64) / (2 * 2.5e9) * 1e3
    assert ms == pytest.approx(expect) and "(amx)" in how and "(vnni)" in how
    assert bench_layers.layers_floor({dw: 1}, "amx", 2, None) is None
