"""TFLite's integer UNIDIRECTIONAL_SEQUENCE_LSTM in TVM (tvmq.int8.lstm): value for value what LiteRT
computes, on the real int8 LSTM of ../shared/models, on that LSTM alone (the model cut to it) and on
the same LSTM with random weights and biases, which drive its gates and cell state into saturation.

TensorFlow's converter here cannot make such a model (Keras 3's LSTM becomes a WHILE loop, and
calibrating it crashes), so the end-to-end cases need the real model and skip without it. The
gemmlowp functions the gates use are checked on their own, on every int16 input.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tests._int8_helpers import run_tflite_outputs
from tests.test_quantized_ops import build_tvm

pytest.importorskip("ai_edge_litert")

MODEL = "keras_lstm_mnist_ptq.tflite"
_IN_WEIGHTS, _REC_WEIGHTS, _BIASES = (1, 2, 3, 4), (5, 6, 7, 8), (12, 13, 14, 15)


# --------------------------------------------------------------------------- gemmlowp's functions
def test_fixed_point_logistic_and_tanh_keep_their_symmetries_and_accuracy():
    """On every int16 input: gemmlowp's logistic(-x) = 1 - logistic(x) and tanh(-x) = -tanh(x)
    exactly (both compute one side and mirror it), and both within a few units of Q0.15 of the
    real functions (a wrong constant or shift is off by far more)."""
    from tvmq.int8.fixedpoint import logistic_table, tanh_table

    x = np.arange(-32767, 32768)
    for bits in (3, 4):
        sig = logistic_table(bits).astype(np.int64)
        assert np.all(sig[x + 32768] + sig[-x + 32768] == 32767 + (x == 0) * 1)
        real = 1 / (1 + np.exp(-x / 2.0 ** (15 - bits)))
        assert np.abs(sig[x + 32768] / 32768 - real).max() < 2 ** -11
        th = tanh_table(bits).astype(np.int64)
        assert np.all(th[x + 32768] == -th[-x + 32768])
        assert np.abs(th[x + 32768] / 32768 - np.tanh(x / 2.0 ** (15 - bits))).max() < 2 ** -10


# --------------------------------------------------------------------------- the real LSTM
def _lstm_op(content: bytes):
    import tflite

    from tvmq.model.inspect import operator_names
    from tvmq.model.lstm import LSTM

    model = tflite.Model.GetRootAsModel(content, 0)
    graph = model.Subgraphs(0)
    names = operator_names(model)
    (k,) = [i for i in range(graph.OperatorsLength()) if names[graph.Operators(i).OpcodeIndex()] == LSTM]
    return model, graph, graph.Operators(k)


@pytest.fixture(scope="module")
def lstm_alone(models_dir):
    """The real model cut to its LSTM: int8 sequence in, every step's int8 hidden state out."""
    from tvmq.model.cut import cut

    content = (models_dir / MODEL).read_bytes()
    _, _, op = _lstm_op(content)
    return cut(content, [int(op.Outputs(0))], [int(op.Inputs(0))])


def _random_weights(content: bytes, seed: int) -> bytes:
    """The model with the LSTM's weights and biases drawn at random (in place: same sizes)."""
    data = bytearray(content)
    model, graph, op = _lstm_op(data)
    rng = np.random.default_rng(seed)
    for pos in _IN_WEIGHTS + _REC_WEIGHTS:
        view = model.Buffers(graph.Tensors(op.Inputs(pos)).Buffer()).DataAsNumpy()
        view[:] = rng.integers(0, 256, view.size, dtype=np.uint8)
    for pos in _BIASES:
        view = model.Buffers(graph.Tensors(op.Inputs(pos)).Buffer()).DataAsNumpy().view(np.int32)
        view[:] = rng.integers(-40000, 40000, view.size)
    return bytes(data)


def _batch_of_two(content: bytes) -> bytes:
    """The LSTM alone with a batch of 2 (its input, states and output reshaped in place)."""
    data = bytearray(content)
    _, graph, op = _lstm_op(data)
    for index in (op.Inputs(0), op.Inputs(18), op.Inputs(19), op.Outputs(0)):
        tensor = graph.Tensors(index)
        tensor.ShapeAsNumpy()[0] = 2
        if tensor.ShapeSignatureLength():
            tensor.ShapeSignatureAsNumpy()[0] = 2
    return bytes(data)


def _cell_clip(content: bytes, clip: float) -> bytes:
    """The LSTM with its cell clip set to ``clip`` (the stored float32 option, written in place)."""
    import struct

    from tvmq.model.lstm import _options

    data = bytearray(content)
    _, _, op = _lstm_op(data)
    options = _options(op)
    offset = options._tab.Offset(6)  # UnidirectionalSequenceLSTMOptions.cell_clip
    assert offset, "the model stores no cell clip"
    struct.pack_into("<f", data, options._tab.Pos + offset, clip)
    return bytes(data)


def _sequences(content: bytes, n: int):
    from ai_edge_litert.interpreter import Interpreter

    detail = Interpreter(model_content=content).get_input_details()[0]
    rng = np.random.default_rng(7)
    return [rng.integers(-128, 128, detail["shape"]).astype(detail["dtype"]) for _ in range(n)]


def _tvm_runner(content: bytes, mode: str):
    import tflite

    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.model.frontend import from_tflite

    lowering = lower_qdq_to_int8(from_tflite(tflite.Model.GetRootAsModel(content, 0)), mode=mode)
    names = [gv.name_hint for gv in lowering.mod.get_global_vars()]
    assert any(n.startswith("int8_lstm_step") for n in names), names
    return build_tvm(lowering.mod)


@pytest.mark.parametrize("variant", ["real", "random_weights", "batch_of_two", "binding_cell_clip"])
def test_lstm_alone_equals_litert_and_the_numpy_reference(lstm_alone, variant):
    """Every hidden state of every step, for 4 int8 sequences, equals LiteRT's (which runs the LSTM in
    TFLite's own kernel, XNNPACK or not), from TVM and from :func:`tvmq.int8.lstm.lstm_np`."""
    from tvmq.int8.lstm import lstm_np
    from tvmq.model.lstm import read_integer_lstm

    content = {"real": lambda c: c, "random_weights": lambda c: _random_weights(c, seed=3),
               "batch_of_two": _batch_of_two,
               # random weights drive the cell past 0.5 (2048 in Q3.12): without the clip tvmq's values differ
               "binding_cell_clip": lambda c: _cell_clip(_random_weights(c, seed=3), 0.5)}[variant](lstm_alone)
    layer = read_integer_lstm(*_lstm_op(content))
    run = _tvm_runner(content, "tflite")
    saturated = 0
    for x in _sequences(content, 4):
        ref = run_tflite_outputs(content, [x], kernels="reference")[0]
        np.testing.assert_array_equal(run_tflite_outputs(content, [x], kernels="xnnpack")[0], ref)
        np.testing.assert_array_equal(lstm_np(x, layer), ref)
        np.testing.assert_array_equal(run([x])[0], ref)
        saturated += int(np.sum(np.abs(ref.astype(int)) == 128))
    if variant == "random_weights":
        assert saturated > 0  # the random weights do drive the hidden state to its limits
    if variant == "binding_cell_clip":
        assert layer.cell_clip == 2048
        unclipped = lstm_np(x, replace(layer, cell_clip=0))
        assert not np.array_equal(unclipped, ref)


def test_the_real_lstm_model_runs_whole_in_tvm_and_says_nine(capsys, tmp_path, models_dir):
    """The real model compiles whole (it was partitioned, its LSTM in TFLite) and reads the nine."""
    from tests.cli_helpers import load_json, run_tune

    out = tmp_path / "out"
    rc, err = run_tune(capsys, ["--model", str(models_dir / MODEL), "--trials", "0", "--out", str(out),
                                "--bench-seconds", "0.2", "--db", str(tmp_path / "t.db"),
                                "--image", str(models_dir / "mnist_nine.bmp")])
    assert rc == 0, err
    r = load_json(out / "report.json")
    assert r["verdict"] == "pass" and "partition" not in r
    assert r["images"][0]["tvm_top5"][0]["class"] == 9 and r["images"][0]["top5_match"]


def test_a_form_tvmq_does_not_compute_is_named(models_dir):
    """The plain integer form is taken; with a peephole tensor it is refused with its reason (such a
    model is partitioned, its LSTM left to TFLite)."""
    import tflite

    from tvmq.model.lstm import integer_lstm_refusal

    content = bytearray((models_dir / MODEL).read_bytes())
    _, graph, op = _lstm_op(content)
    assert integer_lstm_refusal(graph, op) is None
    inputs = op.InputsAsNumpy()  # a view into the bytes: give the cell-to-forget peephole a tensor
    inputs[10] = inputs[6]
    model = tflite.Model.GetRootAsModel(content, 0)
    graph = model.Subgraphs(0)
    _, _, op = _lstm_op(content)
    assert "peephole" in integer_lstm_refusal(graph, op)


def test_the_reference_starts_every_inference_from_the_reset_state(lstm_alone):
    """LiteRT keeps an LSTM's state from one invoke to the next (the second run of one sequence differs
    from the first); tvmq's reference resets it before each run, so every input is verified as a fresh
    interpreter computes it, which is what tvmq computes."""
    from pathlib import Path

    from tvmq.model.loader import LoadedModel
    from tvmq.model.reference import Reference

    (x,) = _sequences(lstm_alone, 1)
    fresh = run_tflite_outputs(lstm_alone, [x])[0]
    loaded = LoadedModel(path=Path("lstm_alone.tflite"), content=lstm_alone, sha256="", source="test")
    reference = Reference(loaded, num_threads=2)
    first, second = reference.run([x])[0], reference.run([x])[0]
    np.testing.assert_array_equal(first, fresh)
    np.testing.assert_array_equal(second, fresh)
    reference._it.invoke()  # without the reset, LiteRT carries the state over
    assert not np.array_equal(reference.tensor(reference.output_indices[0]), fresh)
