"""What tvmq reads and writes is checked before any work: option values at parse time, output
paths, model files, images and downloads within their limits, and no secret of a model URL shown
or stored."""

from __future__ import annotations

import base64
import contextlib
import math
import os
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.cli_helpers import run_main, run_tune

SECRET_PASSWORD = "pw-Zq81xK"
SECRET_TOKEN = "tok-Vd27cW"


def expect_error(capsys, argv, kind, *needles, code=2, main=None):
    rc, err = run_main(main, capsys, argv) if main else run_tune(capsys, argv)
    assert rc == code, err
    assert "Traceback" not in err, err
    (line,) = [ln for ln in err.splitlines() if f": {kind}:" in ln] or [err]  # one line says it all
    for n in needles:
        assert n in line, err
    return err


# ------------------------------------------------------------------------------ option values


@pytest.mark.parametrize("argv, needle", [
    (["--repeat", "0"], "--repeat: must be at least 1, not 0"),
    (["--threads", "-1"], "--threads: must be at least 1, not -1"),
    (["--threads", "abc"], "must be a whole number, not 'abc'"),
    (["--layout", "BOGUS"], "--layout: must be profile, NHWC, NCHW or NCHW<b>c"),
    (["--trials", "-5"], "--trials: must be at least 0, not -5"),
    (["--trials-per-task", "0"], "--trials-per-task: must be at least 1"),
    (["--seed", "99999999999"], "--seed: must be at most 2147483647"),
    (["--tolerance", "nan"], "--tolerance: must be a finite number"),
    (["--requant", "fast"], "invalid choice"),
])
def test_option_values_are_refused_at_parse_time(capsys, argv, needle):
    """One line and exit 2 before anything runs: no usage dump, no traceback."""
    err = expect_error(capsys, argv, "usage", needle)
    assert "[-h]" not in err


def test_help_still_shows_usage_and_exit_statuses(capsys):
    rc, out = run_tune(capsys, ["--help"])
    assert rc == 0
    assert "usage: tvmq-tune [-h]" in out
    for status in ("0 the verification passed", "1 TVM and TFLite disagree", "2 a bad input", "3 an internal error",
                   "130 Ctrl-C"):
        assert status in " ".join(out.split()), out


def test_parser_and_api_apply_the_same_ranges():
    """Every numeric option's range is one table: argparse's type and RunOptions.validate agree."""
    import argparse

    from tvmq.cli.common import run_option
    from tvmq.errors import UsageError
    from tvmq.options import RANGES, RunOptions

    for name, (low, high) in RANGES.items():
        inside = low if math.isfinite(low) else 0.0
        outside = math.nan if not math.isfinite(low) else low - 1 if isinstance(low, int) else low - 0.5
        parse = run_option(name)
        assert parse(str(inside)) == inside
        with pytest.raises(argparse.ArgumentTypeError) as cli:
            parse(str(outside))
        with pytest.raises(UsageError) as api:
            RunOptions.from_mapping({"model": "m.tflite", name: outside})
        assert str(cli.value) in str(api.value)
        if high < float("inf"):
            with pytest.raises(UsageError):
                RunOptions.from_mapping({"model": "m.tflite", name: high + 1})


def test_other_commands_parse_errors_are_one_line(capsys):
    from tvmq.cli.run import main as run_cli

    expect_error(capsys, ["some_build", "--threads", "0"], "usage", "--threads", main=run_cli)
    expect_error(capsys, [], "usage", "required", main=run_cli)
    from tvmq.cli.db import main as db_cli

    expect_error(capsys, ["--timeout", "-1", "sessions"], "usage", "--timeout: must be at least 0.0", main=db_cli)
    expect_error(capsys, ["sessions", "--limit", "x"], "usage", "--limit: must be a whole number", main=db_cli)


# ------------------------------------------------------------------------------ output paths


def test_out_naming_a_file_is_refused_before_any_work(capsys, tmp_path):
    """The model does not even exist: the output folder is checked first."""
    taken = tmp_path / "taken"
    taken.write_text("x")
    expect_error(capsys, ["--model", str(tmp_path / "missing.tflite"), "--out", str(taken)], "bad-output",
                 "is a file, not a folder")
    expect_error(capsys, ["--model", str(tmp_path / "missing.tflite"), "--out", str(taken / "sub")], "bad-output",
                 f"{taken} is a file")


def test_unwritable_json_is_refused_before_any_work(capsys, tmp_path):
    folder = tmp_path / "a_folder"
    folder.mkdir()
    expect_error(capsys, ["--model", str(tmp_path / "missing.tflite"), "--json", str(folder)], "bad-output",
                 "--json", "directory")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    expect_error(capsys, ["--model", str(tmp_path / "missing.tflite"), "--json", str(blocker / "r.json")],
                 "bad-output", "--json")


def test_output_check_leaves_files_as_they_were(tmp_path):
    from tvmq.options import OutputOptions
    from tvmq.stages import outputs

    kept = tmp_path / "kept.json"
    kept.write_text("earlier report")
    assert outputs(OutputOptions(json_path=kept)).json_path == kept
    assert kept.read_text() == "earlier report"
    fresh = tmp_path / "new" / "r.json"
    paths = outputs(OutputOptions(out_dir=tmp_path / "out", json_path=fresh))
    assert not fresh.exists() and not (tmp_path / "out").exists() and not fresh.parent.exists()
    assert paths.markdown_path == tmp_path / "out" / "report.md"


def test_python_api_checks_outputs_first(tmp_path):
    from tvmq import pipeline
    from tvmq.errors import OutputError
    from tvmq.options import RunOptions

    taken = tmp_path / "taken"
    taken.write_text("x")
    with pytest.raises(OutputError):
        pipeline.run(RunOptions.from_mapping({"model": str(tmp_path / "missing.tflite"), "out": taken}))


# ------------------------------------------------------------------------------ model files


def test_device_is_refused_before_reading(capsys):
    expect_error(capsys, ["--model", "/dev/zero"], "not-tflite", "character device")


def test_named_pipe_is_refused_without_waiting(capsys, tmp_path):
    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    start = time.monotonic()
    expect_error(capsys, ["--model", str(fifo)], "not-tflite", "named pipe")
    assert time.monotonic() - start < 30


def test_model_size_cap(capsys, monkeypatch, model_factory):
    path = model_factory.path("uint8")
    monkeypatch.setenv("TVMQ_MAX_MODEL_BYTES", "1000")
    expect_error(capsys, ["--model", str(path)], "model-too-large", f"has {path.stat().st_size} bytes",
                 "TVMQ_MAX_MODEL_BYTES")
    monkeypatch.setenv("TVMQ_MAX_MODEL_BYTES", "lots")
    expect_error(capsys, ["--model", str(path)], "usage", "$TVMQ_MAX_MODEL_BYTES", "'lots'")


def _describe_offset_cut(data: bytes) -> bytes:
    """``data`` with the offset of the model's ``description`` string pointed past the end of the
    file: a field tvmq's own walk never reads, so only LiteRT's verifier can find it."""
    import tflite

    model = tflite.Model.GetRootAsModel(data, 0)
    slot = model._tab.Offset(10)  # Model.description: the fourth field (vtable entry 4 + 2 * 3)
    assert slot, "the converter writes a description"
    where = model._tab.Pos + slot
    out = bytearray(data)
    out[where:where + 4] = struct.pack("<I", len(data) * 4)
    return bytes(out)


def test_model_litert_rejects_is_refused_before_import(capsys, tmp_path, model_factory):
    from tvmq.model.loader import _walk

    import tflite

    data = _describe_offset_cut(model_factory.path("uint8").read_bytes())
    _walk(tflite.Model.GetRootAsModel(data, 0), len(data))  # tvmq's own checks accept it
    bad = tmp_path / "mutant.tflite"
    bad.write_bytes(data)
    expect_error(capsys, ["--model", str(bad)], "truncated-model", "TFLite interpreter cannot load it")


@pytest.mark.shared_models
def test_issue_mutant_of_mobilenet_is_refused(capsys, tmp_path, small_real_model):
    """The issue's example: byte 132 of mobilenet_v1_0.25_128_quant XOR 61."""
    data = bytearray(small_real_model.read_bytes())
    data[132] ^= 61
    bad = tmp_path / "flip.tflite"
    bad.write_bytes(bytes(data))
    expect_error(capsys, ["--model", str(bad)], "truncated-model", "corrupt")


# ------------------------------------------------------------------------------ images


def _image_tensor(size: int = 16):
    from tvmq.model import TensorInfo

    return TensorInfo(name="input", shape=[1, size, size, 3], dtype="uint8")


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` × ``height`` pixels and holds none."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IEND", b""))


def test_image_over_pillows_own_cap_is_refused(capsys, tmp_path, model_factory):
    """The issue's 20000×20000 PNG: Pillow's DecompressionBombError becomes one line."""
    big = tmp_path / "big.png"
    big.write_bytes(_png_header_only(20000, 20000))
    expect_error(capsys, ["--model", str(model_factory.path("uint8")), "--image", str(big)], "bad-image",
                 "big.png", "TVMQ_MAX_IMAGE_PIXELS")


def test_image_pixel_cap_is_checked_before_decoding(tmp_path, monkeypatch):
    from PIL import Image

    from tvmq.errors import ImageError
    from tvmq.model.inputs import image_to_array

    photo = tmp_path / "photo.png"
    Image.new("RGB", (100, 50), (10, 20, 30)).save(photo)
    assert image_to_array(photo, _image_tensor()).shape == (1, 16, 16, 3)
    monkeypatch.setenv("TVMQ_MAX_IMAGE_PIXELS", "4999")
    with pytest.raises(ImageError, match="has 5000 pixels, more than the 4999"):
        image_to_array(photo, _image_tensor(8))


@pytest.mark.parametrize("damage", ["truncated", "bad-crc", "16-bit", "zero-size"])
def test_broken_images_are_one_line(tmp_path, damage):
    from PIL import Image

    from tvmq.errors import ImageError
    from tvmq.model.inputs import image_to_array

    path = tmp_path / "img.png"
    Image.new("RGB", (64, 64), (200, 100, 0)).save(path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "bad-crc":
        path.write_bytes(data[:29] + bytes([data[29] ^ 0xFF]) + data[30:])
    elif damage == "16-bit":
        Image.new("I;16", (64, 64)).save(path)
    else:
        path.write_bytes(_png_header_only(0, 0))
    try:
        arr = image_to_array(path, _image_tensor())
    except ImageError as err:
        assert "img.png" in str(err) and "\n" not in str(err)
    else:  # what Pillow can convert is a fine input
        assert arr.shape == (1, 16, 16, 3)


def test_labels_from_a_device_are_refused(tmp_path):
    from tvmq.errors import LabelsError
    from tvmq.model import load_labels

    with pytest.raises(LabelsError, match="not a regular file"):
        load_labels("/dev/zero")


# ------------------------------------------------------------------------------ downloads


class _Server(ThreadingHTTPServer):
    daemon_threads = True


@contextlib.contextmanager
def serve(respond):
    """A local HTTP server whose GET requests ``respond(handler)`` answers; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            with contextlib.suppress(OSError):
                respond(self)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()


def _trickle(handler, data: bytes, every_s: float = 0.2) -> None:
    for i in range(len(data)):
        if handler.server.stop.is_set():
            return
        handler.wfile.write(data[i:i + 1])
        handler.wfile.flush()
        time.sleep(every_s)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("TVMQ_CACHE", str(folder))
    return folder


@pytest.mark.parametrize("where", ["body", "headers"])
def test_trickling_server_meets_the_overall_deadline(capsys, cache, monkeypatch, where):
    def respond(h):
        if where == "headers":
            _trickle(h, b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
            return
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        _trickle(h, b"x" * 100)

    monkeypatch.setenv("TVMQ_DOWNLOAD_TIMEOUT", "1.5")
    with serve(respond) as url:
        start = time.monotonic()
        expect_error(capsys, ["--model", f"{url}/slow.tflite"], "download-failed", "longer than 1.5 s")
    assert time.monotonic() - start < 10
    assert not list(cache.rglob("*.part"))


@pytest.mark.parametrize("declared", [True, False])
def test_download_size_cap(capsys, cache, monkeypatch, declared):
    def respond(h):
        h.send_response(200)
        if declared:
            h.send_header("Content-Length", "5000")
        h.end_headers()
        h.wfile.write(b"y" * 5000)

    monkeypatch.setenv("TVMQ_MAX_MODEL_BYTES", "1000")
    with serve(respond) as url:
        expect_error(capsys, ["--model", f"{url}/big.tflite"], "model-too-large", "over 1000 bytes")
    assert not list(cache.rglob("*.part"))


def _auth_server_respond(model: bytes):
    wanted = "Basic " + base64.b64encode(f"user:{SECRET_PASSWORD}".encode()).decode()

    def respond(h):
        if h.headers.get("Authorization") != wanted or SECRET_TOKEN not in h.path:
            h.send_response(401)
            h.send_header("WWW-Authenticate", 'Basic realm="models"')
            h.end_headers()
            return
        h.send_response(200)
        h.send_header("Content-Length", str(len(model)))
        h.end_headers()
        h.wfile.write(model)

    return respond


def test_download_sends_credentials_and_keys_the_cache_on_the_whole_url(cache, model_factory):
    from tvmq.model.download import download

    model = model_factory.path("uint8").read_bytes()
    with serve(_auth_server_respond(model)) as url:
        first = download(f"http://user:{SECRET_PASSWORD}@{url[7:]}/m.tflite?token={SECRET_TOKEN}")
        again = download(f"http://user:{SECRET_PASSWORD}@{url[7:]}/m.tflite?token={SECRET_TOKEN}&v=2")
    assert first.read_bytes() == model and again.read_bytes() == model
    assert first.name == "m.tflite" and first.parent != again.parent
    names = " ".join(str(p.relative_to(cache)) for p in cache.rglob("*"))
    assert SECRET_PASSWORD not in names and SECRET_TOKEN not in names


def test_failed_download_shows_no_secret(capsys, cache):
    err = expect_error(capsys, ["--model", f"http://user:{SECRET_PASSWORD}@127.0.0.1:9/m.tflite?token={SECRET_TOKEN}"],
                       "download-failed", "127.0.0.1:9")
    assert SECRET_PASSWORD not in err and SECRET_TOKEN not in err and "***" in err


def test_no_secret_in_any_output_of_a_run(capsys, cache, tmp_path, model_factory):
    """A whole run from a URL with a password and a token: neither appears on stdout, stderr, in
    the reports, model.json, or a file name of the cache or the output folder."""
    model = model_factory.path("uint8").read_bytes()
    out, report = tmp_path / "out", tmp_path / "r.json"
    with serve(_auth_server_respond(model)) as url:
        source = f"http://user:{SECRET_PASSWORD}@{url[7:]}/m.tflite?token={SECRET_TOKEN}"
        rc, text = run_tune(capsys, ["--model", source, "--trials", "0", "--repeat", "1", "--bench-seconds", "0",
                                     "--out", str(out),
                                     "--json", str(report), "--db", str(tmp_path / "t.db")])
    assert rc == 0, text
    written = [report, out / "report.md", out / "model.json"]
    assert all(p.is_file() for p in written)
    everything = text + "".join(p.read_text() for p in written)
    everything += " ".join(str(p) for folder in (cache, out) for p in folder.rglob("*"))
    assert "m.tflite" in text + report.read_text()
    assert SECRET_PASSWORD not in everything and SECRET_TOKEN not in everything


# ------------------------------------------------------------------------------ crashes


def test_internal_error_exits_3_with_a_log(capsys, cache, monkeypatch):
    """A bug is not a verdict: its own status, one line, the traceback in a private log file."""
    from tvmq import pipeline

    def crash(*args, **kwargs):
        raise RuntimeError(f"boom at http://user:{SECRET_PASSWORD}@host/x")

    monkeypatch.setattr(pipeline, "run", crash)
    err = expect_error(capsys, [], "internal-error", "RuntimeError: boom", "traceback is in", code=3)
    assert SECRET_PASSWORD not in err
    (log,) = (cache / "logs").iterdir()
    assert str(log) in err
    assert log.stat().st_mode & 0o077 == 0
    text = log.read_text()
    assert "Traceback" in text and "in crash" in text and SECRET_PASSWORD not in text


# ------------------------------------------------------------------------------ redaction


@pytest.mark.parametrize("url, shown", [
    ("http://user:pw@host:8080/m.tflite", "http://***@host:8080/m.tflite"),
    ("https://host/m.tflite?token=abc&x=1", "https://host/m.tflite?***"),
    ("https://u@host/m.tflite#sha256=ab12", "https://***@host/m.tflite#sha256=ab12"),
    ("https://host/m.tflite#secret", "https://host/m.tflite#***"),
    ("postgresql+psycopg://tvmq:pw@db:5432/tvmq", "postgresql+psycopg://***@db:5432/tvmq"),
    ("http://u:pw@[::1:80/x?k=v", "http://***@[::1:80/x?***"),  # urllib cannot parse it: masked all the same
    ("/plain/path/model.tflite", "/plain/path/model.tflite"),
])
def test_redact_url(url, shown):
    from tvmq.redact import redact_url

    assert redact_url(url) == shown


def test_redact_text_masks_every_url_in_a_message():
    from tvmq.redact import redact_text

    text = "cannot reach http://a:pw1@h1/x?t=tok1 or 'https://b:pw2@h2/y' (see /tmp/log)"
    masked = redact_text(text)
    for secret in ("pw1", "tok1", "pw2"):
        assert secret not in masked
    assert "http://***@h1/x?***" in masked and "'https://***@h2/y'" in masked and "/tmp/log" in masked


# ------------------------------------------------------------------------------ --input NAME=FILE.npy
def _input_name(model) -> str:
    from tvmq.model import inspect_model, load_model

    return inspect_model(load_model(model)).inputs[0].name


@pytest.mark.parametrize("case, needle", [
    ("unknown", "has no input 'nope'; its inputs are"),
    ("shape", "holds int8 [1, 3], the input takes int8 [1, 32, 32, 3]"),
    ("dtype", "holds float32 [1, 32, 32, 3], the input takes int8"),
    ("pickle", "cannot read"),
    ("not-npy", "cannot read"),
    ("no-equals", "expected NAME=FILE.npy"),
])
def test_bad_input_arrays_end_in_one_line(capsys, tmp_path, model_factory, case, needle):
    import numpy as np

    model = model_factory.path("int8")
    name, path = _input_name(model), tmp_path / "x.npy"
    if case == "shape":
        np.save(path, np.zeros((1, 3), np.int8))
    elif case == "dtype":
        np.save(path, np.zeros((1, 32, 32, 3), np.float32))
    elif case == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(b"not an array")
    spec = {"unknown": f"nope={path}", "no-equals": str(path)}.get(case, f"{name}={path}")
    expect_error(capsys, ["--model", str(model), "--input", spec, "--trials", "0", "--out", str(tmp_path / "o")],
                 "bad-input", needle)


def test_an_input_array_is_fed_as_it_is(capsys, tmp_path, model_factory):
    import json

    import numpy as np

    model = model_factory.path("int8")
    path = tmp_path / "x.npy"
    np.save(path, np.full((1, 32, 32, 3), 7, np.int8))
    rc, err = run_tune(capsys, ["--model", str(model), "--input", f"{_input_name(model)}={path}", "--trials", "0",
                                "--out", str(tmp_path / "o"), "--bench-seconds", "0.1", "--db", str(tmp_path / "t.db")])
    assert rc == 0, err
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["images"][0]["image"].startswith("--input ") and report["verdict"] == "pass"
    expect_error(capsys, ["--model", str(model), "--input", f"{_input_name(model)}={path}", "--image",
                          str(path), "--trials", "0"], "bad-input", "give one of them")
