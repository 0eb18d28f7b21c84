"""Partitioned models: the operators TVM cannot import run in TFLite, the rest in TVM, as one model.

Made models cover the three shapes a partition takes (a TFLite part before TVM's, one after it that
no interpreter can run, one before it that none can run); the real detector, BodyPix, DeepLab and
an LSTM left to TFLite show the models that were refused before.
"""

from __future__ import annotations

import json

import numpy as np

from tests._int8_helpers import run_tflite_outputs
from tests.cli_helpers import load_json, run_main, run_tune
from tests.test_cli_errors import expect_error


def _tune(capsys, tmp_path, model, *extra):
    out = tmp_path / "out"
    rc, err = run_tune(capsys, ["--model", str(model), "--trials", "0", "--out", str(out), "--bench-seconds", "0.2",
                                "--db", str(tmp_path / "t.db"), *extra])
    assert rc == 0, err
    return out, load_json(out / "report.json"), err


def test_plan_puts_the_most_macs_in_tvm(model_factory):
    """conv → GATHER_ND → reshape → wider conv: TFLite runs the first conv and the GATHER_ND, TVM the
    rest; each part is the model cut to its tensors, which keep their quantization."""
    from tvmq.model.cut import read_graph
    from tvmq.model.partition import TFLITE, TVM, plan_partition

    content = model_factory.path("conv_gather_nd_conv").read_bytes()
    p = plan_partition(content, {"GATHER_ND"})
    assert [part.engine for part in p.parts] == [TFLITE, TVM]
    assert p.parts[0].operators == {"CONV_2D": 1, "GATHER_ND": 1}
    assert p.parts[1].operators == {"RESHAPE": 1, "CONV_2D": 1}
    assert p.parts[1].inputs == p.parts[0].outputs  # the GATHER_ND's output, nothing else
    assert 0.5 < p.tvm_mac_share() < 1
    tvm_graph = read_graph(p.tvm_part.content)
    boundary = p.graph.tensors[p.parts[0].outputs[0]]
    (tvm_input,) = [tvm_graph.tensors[i] for i in tvm_graph.inputs]
    assert (tvm_input.dtype, tvm_input.scale, tvm_input.zero_point) == (boundary.dtype, boundary.scale,
                                                                        boundary.zero_point)
    assert [op.name for op in tvm_graph.operators] == ["RESHAPE", "CONV_2D"]
    assert len(p.tvm_part.content) < len(content)  # the first conv's weights stay out of TVM's part


def test_tflite_part_before_tvm_runs_end_to_end(capsys, tmp_path, model_factory):
    """The whole model's outputs, TFLite part then TVM part, equal TFLite's; the report says what ran
    where; the exported build holds both parts and tvmq-run runs it without recompiling."""
    from tvmq.cli.run import main as run_build
    from tvmq.tuner import artifact

    model = model_factory.path("conv_gather_nd_conv")
    out, r, err = _tune(capsys, tmp_path, model)
    assert r["verdict"] == "pass"
    assert all(o["max_abs_diff"] == 0 for o in r["images"][0]["outputs"])
    assert [p["engine"] for p in r["partition"]["parts"]] == ["tflite", "tvm"]
    assert r["partition"]["why"] == ["GATHER_ND"] and 0.5 < r["partition"]["tvm_mac_share"] < 1
    assert "partition: TVM runs 2 operators" in err
    assert r["latency_ms"]["tvm"]["median"] > 0  # the whole, both parts
    assert (out / "part0.tflite").is_file()
    assert "## Partition" in (out / "report.md").read_text()
    assert 'data-engine="tflite"' in (out / "report.html").read_text()

    art = artifact.load(out)
    x = np.random.default_rng(0).integers(-128, 128, (1, 6, 8, 3), dtype=np.int8)
    (ours,) = art.run([x])
    (ref,) = run_tflite_outputs(model.read_bytes(), [x], "xnnpack")
    assert ours.dtype == ref.dtype and np.array_equal(ours, ref)
    rc, text = run_main(run_build, capsys, [str(out), "--json"])
    assert rc == 0, text
    assert json.loads(text[text.index("{"):])["results"][0]["outputs"][0]["shape"] == [1, 3, 8, 32]


def test_a_changed_tflite_part_is_refused(capsys, tmp_path, model_factory):
    from tvmq.cli.run import main as run_build

    out, _, _ = _tune(capsys, tmp_path, model_factory.path("conv_gather_nd_conv"))
    part = out / "part0.tflite"
    data = bytearray(part.read_bytes())
    data[-1] ^= 1
    part.write_bytes(bytes(data))
    rc, text = run_main(run_build, capsys, [str(out)])
    assert rc == 2 and "part0.tflite is not the file model.json records" in text and "Traceback" not in text
    meta = json.loads((out / "model.json").read_text())
    meta["partition"]["parts"][0]["file"] = "../elsewhere.tflite"
    (out / "model.json").write_text(json.dumps(meta))
    rc, text = run_main(run_build, capsys, [str(out)])
    assert rc == 2 and "partition.parts[0].file" in text


def test_outputs_after_an_operator_nothing_runs_are_not_computed(capsys, tmp_path, model_factory):
    """A custom operator no interpreter has, last: everything before it is compiled and verified
    (its input, a graph output, too), its output is reported as not computed."""
    _, r, err = _tune(capsys, tmp_path, model_factory.path("conv_then_custom"))
    assert r["verdict"] == "pass"
    assert [p["engine"] for p in r["partition"]["parts"]] == ["tvm"]
    assert r["partition"]["not_computed"] == ["Identity_1"]
    assert "TvmqNoKernel" in r["partition"]["dropped"]
    assert [o["name"] for o in r["images"][0]["outputs"]] == ["Identity"]
    assert "not computed" in err and "Identity_1" in err


def test_an_operator_nothing_runs_before_tvm_is_refused(capsys, model_factory):
    expect_error(capsys, ["--model", str(model_factory.path("custom_then_conv")), "--trials", "0"],
                 "unsupported-operators", "cannot run in TFLite either")


def test_a_partitioned_model_is_not_sent_to_an_rpc_device(capsys, model_factory):
    from tests.rpc_helpers import LocalRPCCluster

    with LocalRPCCluster(num_servers=1, key="tvmq-part") as cluster:
        expect_error(capsys, ["--model", str(model_factory.path("conv_gather_nd_conv")), "--trials", "0",
                              "--rpc-tracker", cluster.tracker, "--rpc-key", cluster.key], "unsupported-operators",
                     "not on an RPC device yet")


# --------------------------------------------------------------------------- the real models
def test_detector_with_its_postprocess_in_tflite(capsys, tmp_path, models_dir):
    """The SSD-style detector (3 inputs, a recurrent state, TFLite_Detection_PostProcess): TVM runs
    every operator but the post-processing, boxes match TFLite's; the image feeds the image input,
    --input one state (zeros, a first frame's), the other gets seeded values."""
    state = tmp_path / "c.npy"
    np.save(state, np.zeros((1, 8, 8, 320), np.uint8))
    _, r, _ = _tune(capsys, tmp_path, models_dir / "traffic_model.tflite",
                    "--image", str(models_dir / "traffic_frame_0001.bmp"), "--input", f"raw_inputs/init_lstm_c={state}")
    assert r["verdict"] == "pass"
    parts = r["partition"]["parts"]
    assert [p["engine"] for p in parts] == ["tvm", "tflite"]
    assert parts[1]["operators"] == {"CUSTOM:TFLite_Detection_PostProcess": 1}
    assert r["partition"]["tvm_mac_share"] == 1.0
    (img,) = r["images"]
    assert img["kind"] == "detection" and img["detection"]["passed"]
    assert img["detection"]["matched"] == img["detection"]["tflite_total"] > 0


def test_bodypix_everything_before_the_decoder(capsys, tmp_path, models_dir):
    _, r, _ = _tune(capsys, tmp_path, models_dir / "bodypix_mobilenet_v1_075_512_512_16_quant_decoder.tflite",
                    "--image", str(models_dir / "grace_hopper.bmp"))
    assert r["verdict"] == "pass"
    assert r["partition"]["not_computed"] == ["poses", "poses:1", "poses:2", "poses:3", "poses:4"]
    names = [o["name"] for o in r["images"][0]["outputs"]]
    assert names[:2] == ["float_segments", "float_part_heatmaps"] and "float_heatmaps" in names
    assert all(o["max_abs_diff"] == 0 for o in r["images"][0]["outputs"])


def test_deeplab_compiles_whole_and_its_map_matches(capsys, tmp_path, models_dir):
    _, r, _ = _tune(capsys, tmp_path, models_dir / "deeplabv3_mnv2_pascal_quant.tflite",
                    "--image", str(models_dir / "bird_segmentation.bmp"))
    assert r["verdict"] == "pass" and "partition" not in r
    (img,) = r["images"]
    assert img["kind"] == "segmentation"
    assert img["segmentation"]["identical_share"] >= 0.995 and img["segmentation"]["miou"] > 0.99


def test_an_lstm_left_to_tflite_keeps_its_state(models_dir):
    """An LSTM named unsupported (what a form tvmq does not compute gets; the real one runs in TVM,
    tests/test_lstm.py): the TFLite part holding it keeps its state tensors and gives, bit for bit,
    the LSTM output LiteRT computes inside the whole model."""
    from ai_edge_litert.interpreter import Interpreter

    from tvmq.model.partition import plan_partition

    content = (models_dir / "keras_lstm_mnist_ptq.tflite").read_bytes()
    p = plan_partition(content, {"UNIDIRECTIONAL_SEQUENCE_LSTM"})
    assert [part.engine for part in p.parts] == ["tflite", "tvm"]
    first = p.parts[0]
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" in first.operators and "FULLY_CONNECTED" in p.parts[1].operators
    x = np.random.default_rng(0).integers(0, 256, (1, 28, 28)).astype(np.uint8)
    whole = Interpreter(model_content=content, experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    whole.set_tensor(whole.get_input_details()[0]["index"], x)
    whole.invoke()
    (out,) = first.outputs
    np.testing.assert_array_equal(run_tflite_outputs(first.content, [x])[0], whole.get_tensor(out))
