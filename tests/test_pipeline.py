"""The foundation end to end: model → Relax → build → TFLite verification → benchmark → report."""

import json

import numpy as np
import pytest

from tests.cli_helpers import load_json, run_main, run_tune


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    """A real PNG written by Pillow (a smooth gradient with a disc), 50x40: resizing is exercised."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (50, 40))
    px = img.load()
    for x in range(50):
        for y in range(40):
            px[x, y] = (x * 5, y * 6, 128)
    ImageDraw.Draw(img).ellipse((10, 5, 35, 30), fill=(250, 20, 40))
    path = tmp_path_factory.mktemp("img") / "disc.png"
    img.save(path)
    return path


def test_made_model_end_to_end(capsys, tmp_path, model_factory, photo):
    out = tmp_path / "out"
    report_path = tmp_path / "r.json"
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("uint8")), "--image", str(photo),
                                "--labels", str(labels), "--out", str(out), "--json", str(report_path),
                                "--trials", "0", "--repeat", "5", "--bench-seconds", "0.1",
                                "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    r = load_json(report_path)
    assert r["verdict"] == "pass"
    (img,) = r["images"]
    assert img["image"] == str(photo)
    assert len(img["tvm_top5"]) == 5 and len(img["tflite_top5"]) == 5
    assert img["tvm_top5"][0]["label"].startswith("class")
    assert img["outputs"][0]["max_abs_diff"] <= 2
    for engine in ("tvm", "tflite"):
        s = r["latency_ms"][engine]
        assert s["runs"] >= 5 and 0 < s["min"] <= s["median"] <= s["max"]
        assert s["blocks"] >= 5 and s["ci95"][0] <= s["median"] <= s["ci95"][1]
    lat = r["latency_ms"]
    assert lat["ratio_tvm_over_tflite"] == pytest.approx(lat["tvm"]["median"] / lat["tflite"]["median"])
    assert lat["ratio_ci95"][0] <= lat["ratio_tvm_over_tflite"] <= lat["ratio_ci95"][1]
    assert lat["comparison"] in ("faster", "slower", "indistinguishable")
    assert lat["method"]["timing"] == "alternating-blocks" and lat["method"]["min_total_s"] == 0.1
    assert r["model"]["quantization"] == "int8 per-channel"
    assert r["target"]["tvm_target"]["kind"] == "llvm"
    assert r["versions"]["tvm"].startswith("0.2")
    md = (out / "report.md").read_text()
    assert "verdict: **pass**" in md and "Latency" in md and "TFLite" in md and "95% CI" in md
    assert (out / "model.so").stat().st_size > 0

    # The exported library runs again without recompiling and predicts the same classes.
    from tvmq.cli.run import main as run_cli

    rc, text = run_main(run_cli, capsys, [str(out), "--image", str(photo), "--json"])
    assert rc == 0, text
    result = json.loads(text[text.index("{"):])
    assert [e["class"] for e in result["results"][0]["top5"]] == [e["class"] for e in img["tvm_top5"]]


def test_int8_io_with_several_outputs(capsys, tmp_path, model_factory):
    """Non-classification outputs are compared element-wise; no image means a synthetic input."""
    report_path = tmp_path / "r.json"
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("segmentation")), "--out", str(tmp_path / "o"),
                                "--json", str(report_path), "--trials", "0", "--repeat", "3", "--bench-seconds", "0.1",
                                "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    r = load_json(report_path)
    (img,) = r["images"]
    assert img["image"].startswith("synthetic")
    assert img["top5_match"] is None
    assert sorted(o["shape"] for o in img["outputs"]) == [[1, 6], [1, 16, 16, 2]]
    assert all(o["within_tolerance"] for o in img["outputs"])


def test_verification_failure_exits_one(capsys, tmp_path, model_factory, monkeypatch):
    """TVM and TFLite disagreeing by more than the tolerance fails the run with exit status 1 (not 0,
    not 2): here TFLite's outputs are moved by 3 quantized units, over the default tolerance of 2."""
    from tvmq.model import Reference

    real_run = Reference.run

    def shifted(self, arrays):
        return [np.clip(o.astype(np.int32) + 3, np.iinfo(o.dtype).min, np.iinfo(o.dtype).max).astype(o.dtype)
                if np.issubdtype(o.dtype, np.integer) else o + 1.0 for o in real_run(self, arrays)]

    monkeypatch.setattr(Reference, "run", shifted)
    report_path = tmp_path / "r.json"
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("segmentation")), "--out", str(tmp_path / "o"),
                                "--json", str(report_path), "--trials", "0", "--repeat", "1", "--bench-seconds", "0.1",
                                "--db", str(tmp_path / "t.db")])
    assert rc == 1, err
    report = load_json(report_path)
    assert report["verdict"] == "fail"
    assert not all(o["within_tolerance"] for o in report["images"][0]["outputs"])


def test_image_folder_and_int8_preprocessing(tmp_path, model_factory, photo):
    from PIL import Image

    from tvmq.model import inspect_model, load_model, make_inputs

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.open(photo).save(folder / "a.bmp")
    Image.open(photo).convert("L").save(folder / "b.jpg")
    (folder / "notes.txt").write_text("skip me")
    info = inspect_model(load_model(model_factory.path("int8")))
    samples = make_inputs(info, [str(folder)])
    assert [s.name.rsplit("/", 1)[-1] for s in samples] == ["a.bmp", "b.jpg"]
    a = samples[0].arrays[0]
    assert a.dtype == np.int8 and a.shape == (1, 32, 32, 3)
    u = make_inputs(inspect_model(load_model(model_factory.path("uint8"))), [str(folder / "a.bmp")])[0].arrays[0]
    assert np.array_equal(a.astype(np.int16) + 128, u.astype(np.int16))


def test_synthetic_input_is_deterministic(model_factory):
    from tvmq.model import inspect_model, load_model, make_inputs

    info = inspect_model(load_model(model_factory.path("uint8")))
    a, b, c = (make_inputs(info, seed=s)[0].arrays[0] for s in (0, 0, 1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


REAL = [
    ("mobilenet_v1_0.25_128_quant.tflite", "cat.bmp"),
    ("mobilenet_v2_1.0_224_quant.tflite", "cat.bmp"),
    ("tf2_mobilenet_v2_1.0_224_ptq.tflite", "cat.bmp"),
]


@pytest.mark.shared_models
@pytest.mark.parametrize("model,image", REAL, ids=[m for m, _ in REAL])
def test_real_model_matches_tflite(capsys, tmp_path, models_dir, model, image):
    report_path = tmp_path / "r.json"
    rc, err = run_tune(capsys, ["--model", str(models_dir / model), "--image", str(models_dir / image),
                                str(models_dir / "grace_hopper.bmp"), "--labels", str(models_dir / "imagenet_labels.txt"),
                                "--out", str(tmp_path / "o"), "--json", str(report_path), "--trials", "0", "--repeat", "3",
                                "--bench-seconds", "0.1",
                                "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    r = load_json(report_path)
    assert r["verdict"] == "pass"
    for img in r["images"]:
        assert img["top1_match"] and img["top5_match"]
        assert img["tvm_top5"][0]["label"]
    cat = r["images"][0]
    assert "cat" in cat["tflite_top5"][0]["label"]  # the photo is a cat
    assert "cat" in err  # and the label reaches the terminal


def test_int8_path_end_to_end(capsys, tmp_path, model_factory, photo):
    """--int8 lowers QDQ to integer kernels; the build must still agree with TFLite."""
    report_path = tmp_path / "r.json"
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("uint8")), "--image", str(photo), "--int8",
                                "--out", str(tmp_path / "o"), "--json", str(report_path), "--trials", "0", "--repeat", "3",
                                "--bench-seconds", "0.1",
                                "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    r = load_json(report_path)
    assert r["verdict"] == "pass"
    stats = r["transforms"]["int8"]
    assert stats["conv2d"]["lowered"] >= 2 and stats["conv2d"]["qdq"] == 0


@pytest.mark.shared_models
def test_int8_path_on_a_real_model(capsys, tmp_path, models_dir):
    report_path = tmp_path / "r.json"
    rc, err = run_tune(capsys, ["--model", str(models_dir / "mobilenet_v1_0.25_128_quant.tflite"), "--int8", "--requant", "tflite",
                                "--image", str(models_dir / "cat.bmp"), "--labels", str(models_dir / "imagenet_labels.txt"),
                                "--out", str(tmp_path / "o"), "--json", str(report_path), "--trials", "0", "--repeat", "3",
                                "--bench-seconds", "0.1",
                                "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    r = load_json(report_path)
    (img,) = r["images"]
    assert img["top1_match"] and img["top5_match"]
    # --requant tflite promises TFLite's reference kernels, value for value
    assert r["verification"]["kernels"] == "reference" and r["verification"]["exact"]
    assert img["outputs"][0]["max_abs_diff"] == 0


@pytest.mark.shared_models
def test_int8_requant_modes_on_a_real_model(capsys, tmp_path, models_dir):
    """--requant xnnpack builds the fp32 requantization of the XNNPACK delegate and is verified
    against it; --requant tflite builds TFLite's fixed-point arithmetic and is verified against the
    reference kernels. Each must equal its kernels on every value, and the report must say which
    mode was built and which kernels it was compared with."""
    out = {}
    for mode in ("tflite", "xnnpack"):
        report_path = tmp_path / f"{mode}.json"
        rc, err = run_tune(capsys, ["--model", str(models_dir / "mobilenet_v1_0.25_128_quant.tflite"), "--int8",
                                    "--requant", mode, "--image", str(models_dir / "cat.bmp"),
                                    str(models_dir / "parrot.jpg"), "--out", str(tmp_path / mode), "--json",
                                    str(report_path), "--trials", "0", "--repeat", "3", "--bench-seconds", "0.1",
                                    "--db", str(tmp_path / "t.db")])
        assert rc == 0, err
        r = load_json(report_path)
        assert r["transforms"]["requant"] == mode
        assert r["verification"]["kernels"] == {"tflite": "reference", "xnnpack": "xnnpack"}[mode]
        out[mode] = [o for img in r["images"] for o in img["outputs"]]
    # each mode equals, value for value, the TFLite kernels it mirrors
    assert all(o["max_abs_diff"] == 0 and o["identical_share"] == 1 for v in out.values() for o in v), out


def test_requant_choices_are_the_lowerings_modes():
    from tvmq.cli.tune import build_parser
    from tvmq.int8.requant import MODES

    (action,) = [a for a in build_parser()._actions if a.dest == "requant"]
    assert tuple(action.choices) == MODES


def test_requant_needs_int8(capsys, model_factory):
    rc, err = run_tune(capsys, ["--model", str(model_factory.path("uint8")), "--no-int8", "--requant", "xnnpack"])
    assert rc == 2 and "--requant" in err and "--no-int8" in err and "Traceback" not in err, err
