"""BATCH_MATMUL of two int8 activations on the integer path: ``(a - zp_a) @ (b - zp_b)`` in int32 and
TFLite's fixed-point multiplier, value for value what LiteRT computes (the XNNPACK delegate declines
the node, so the same kernel runs in both requantization modes). The QDQ float form it replaces was
1 unit off on a fraction of a percent of the values, which few random inputs miss: each case here
compares 12,000 or more outputs."""

from __future__ import annotations

import numpy as np
import pytest

from tests._int8_helpers import convert_function, op_names, random_inputs, run_tflite
from tests.test_quantized_ops import build_tvm

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ai_edge_litert")
pytestmark = pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected")

RANGES = ((-1.0, 2.0), (-3.0, 1.5))
CASES = {
    "plain": (lambda a, b: tf.matmul(a, b), ((4, 16, 24), (4, 24, 32))),
    "adj_y": (lambda a, b: tf.matmul(a, b, transpose_b=True), ((4, 16, 24), (4, 32, 24))),
    "adj_x": (lambda a, b: tf.matmul(a, b, transpose_a=True), ((4, 24, 16), (4, 24, 32))),
    # attention's product: heads in a second batch dimension, and one operand broadcast over it
    "broadcast": (lambda a, b: tf.matmul(a, b), ((2, 3, 16, 24), (2, 1, 24, 32))),
}


@pytest.fixture(scope="module")
def models():
    return {name: convert_function(fn, shapes, RANGES) for name, (fn, shapes) in CASES.items()}


@pytest.mark.parametrize("mode", ["tflite", "xnnpack"])
@pytest.mark.parametrize("name", list(CASES))
def test_batch_matmul_is_integer_and_exact(models, name, mode):
    import tflite
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.model.frontend import from_tflite

    buf = models[name]
    assert op_names(buf) == ["BATCH_MATMUL"], op_names(buf)
    lowering = lower_qdq_to_int8(from_tflite(tflite.Model.GetRootAsModel(buf, 0)), mode=mode)
    assert "int8_batch_matmul" in [gv.name_hint for gv in lowering.mod.get_global_vars()]
    assert lowering.stats.to_dict()["dense"]["lowered"] == 1
    run = build_tvm(lowering.mod)
    kernels = "reference" if mode == "tflite" else "xnnpack"
    for seed in range(6):
        inputs = random_inputs(buf, seed=seed)
        ours, ref = run(inputs)[0], run_tflite(buf, inputs, kernels=kernels)
        assert ours.dtype == ref.dtype and ours.shape == ref.shape
        np.testing.assert_array_equal(ours, ref, err_msg=f"{name}, seed {seed}")


def test_a_fully_connected_layer_keeps_the_dense_kernel():
    """A matmul by a constant (the converter writes FULLY_CONNECTED) keeps the dense kernel on packed
    weights: the product of activations takes only two non-constant operands."""
    import tflite
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.model.frontend import from_tflite

    w = np.random.default_rng(0).uniform(-1, 1, (24, 16)).astype(np.float32)
    buf = convert_function(lambda a: tf.matmul(a, w), ((8, 24),), RANGES[:1])
    assert op_names(buf) == ["FULLY_CONNECTED"], op_names(buf)
    lowering = lower_qdq_to_int8(from_tflite(tflite.Model.GetRootAsModel(buf, 0)), mode="xnnpack")
    names = [gv.name_hint for gv in lowering.mod.get_global_vars()]
    assert "int8_batch_matmul" not in names and any(n.startswith("int8_dense") for n in names), names
