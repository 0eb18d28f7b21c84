"""Every tensor of real uint8 models equal to TFLite's, in both integer modes
(``scripts/exactness.py``, whose rows these are): a classifier cut before its softmax (its logits
hide nothing) and DeepLab whole (uint8 convolutions, concatenation of mixed scales, QUANTIZE between
scales, RESIZE_BILINEAR, and the ARG_MAX tvmq's frontend imports)."""

from __future__ import annotations

import pytest

from tests.scripts_helper import load_script

pytestmark = pytest.mark.shared_models
pytest.importorskip("ai_edge_litert")


def _rows(models_dir, name, variant):
    exactness = load_script("exactness")
    from tvmq.model import inspect_model, load_model

    path = models_dir / name
    model = load_model(path)
    found = dict(exactness.variants(path, inspect_model(model), model.content))
    assert variant in found, list(found)
    return exactness.run_variant(path, variant, found[variant], models_dir, threads=2)


@pytest.mark.parametrize("name, variant", [
    ("mobilenet_v2_1.0_224_quant.tflite", "before softmax"),
    ("deeplabv3_mnv2_pascal_quant.tflite", "whole"),
])
def test_both_integer_modes_equal_their_tflite_kernels_on_every_tensor(models_dir, name, variant):
    rows = _rows(models_dir, name, variant)
    exact = {r["mode"]: r for r in rows if r["exact_mode"]}
    assert set(exact) == {"tflite", "xnnpack"}
    assert "BUILTIN_REF" in exact["tflite"]["reference"] and "XNNPACK" in exact["xnnpack"]["reference"]
    for r in exact.values():
        assert r["tensors"] > 50
        assert r["tensors_differing"] == 0 and r["tensors_max_diff"] == 0, r
