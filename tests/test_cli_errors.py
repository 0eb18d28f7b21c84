"""Every bad input a user can give ends in one clear line and a non-zero exit, never a traceback."""

import subprocess
import sys

import pytest

from tests.cli_helpers import run_tune


def expect_error(capsys, argv, kind, *needles, code=2):
    rc, err = run_tune(capsys, argv)
    assert rc == code, err
    assert f"tvmq-tune: {kind}:" in err, err
    for n in needles:
        assert n in err, err
    assert "Traceback" not in err
    return err


def test_missing_model_file(capsys, tmp_path):
    expect_error(capsys, ["--model", str(tmp_path / "nope.tflite")], "model-not-found", "nope.tflite")


def test_not_a_tflite_file(capsys, tmp_path):
    p = tmp_path / "notes.tflite"
    p.write_text("this is not a model at all\n")
    expect_error(capsys, ["--model", str(p)], "not-tflite", "TFL3")


def test_truncated_model(capsys, tmp_path, model_factory):
    data = model_factory.path("uint8").read_bytes()
    p = tmp_path / "cut.tflite"
    p.write_bytes(data[: len(data) // 3])
    expect_error(capsys, ["--model", str(p)], "truncated-model", "truncated")


def test_unsupported_operators_are_listed(capsys, model_factory):
    """A quantized GATHER_ND alone: TVM cannot import it, and partitioning leaves nothing for TVM."""
    expect_error(capsys, ["--model", str(model_factory.path("gather_nd"))], "unsupported-operators", "GATHER_ND")


def test_dynamic_range_model(capsys, model_factory):
    expect_error(capsys, ["--model", str(model_factory.path("dynamic_range"))], "dynamic-range-model",
                 "FULLY_CONNECTED")


def test_custom_operators(capsys, model_factory):
    expect_error(capsys, ["--model", str(model_factory.path("custom"))], "custom-operators", "Cumprod")


def test_unreadable_image(capsys, tmp_path, model_factory):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    expect_error(capsys, ["--model", str(model_factory.path("uint8")), "--image", str(bad)], "bad-image",
                 "photo.jpg")


def test_missing_image(capsys, tmp_path, model_factory):
    expect_error(capsys, ["--model", str(model_factory.path("uint8")), "--image", str(tmp_path / "x.png")],
                 "bad-image", "not found")


def test_unknown_target_lists_known_ones(capsys, model_factory):
    err = expect_error(capsys, ["--model", str(model_factory.path("uint8")), "--target", "pentium2"],
                       "unknown-target", "pentium2")
    for known in ("cascadelake", "znver3", "cortex-a76"):
        assert known in err


def test_missing_labels_file(capsys, tmp_path, model_factory):
    expect_error(capsys, ["--model", str(model_factory.path("uint8")), "--labels", str(tmp_path / "l.txt")],
                 "bad-labels")


def test_dead_url(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TVMQ_CACHE", str(tmp_path))
    expect_error(capsys, ["--model", "http://127.0.0.1:9/model.tflite"], "download-failed", "127.0.0.1:9")


def test_foreign_isa_is_refused_with_flags_named(capsys, model_factory):
    """A profile whose CPU flags this host lacks (an x86 one if any, else an Arm one) is refused."""
    from tvmq.targets import list_profiles

    foreign = [p for p in list_profiles() if not p.can_run_here]
    foreign.sort(key=lambda p: p.arch != "x86_64")
    assert foreign, "some profile (at least the Arm ones) must be foreign to this host"
    profile = foreign[0]
    missing = profile.missing_host_flags()
    err = expect_error(capsys, ["--model", str(model_factory.path("uint8")), "--target", profile.name],
                       "missing-isa", "--build-only")
    from tvmq.targets import host_info

    if profile.arch == host_info().arch:
        assert missing and all(flag in err for flag in missing[:3])
    else:
        assert f"code is for {profile.arch}" in err


def test_console_script_prints_no_traceback(tmp_path):
    """The installed entry point, as a user runs it."""
    p = tmp_path / "empty.tflite"
    p.write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "tvmq.cli.tune", "--model", str(p)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "not-tflite" in proc.stderr and "Traceback" not in proc.stderr
