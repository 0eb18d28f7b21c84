"""Corrupt models end in one clear TvmqError at load: every index of the flatbuffer is range-checked,
quantization parameters are checked in-process, and LiteRT's allocate_tensors, which a corrupt
model can kill by a signal, runs first in a child process.

The mutants are the fuzz corpus's edits (:mod:`tests.fuzz.flatbuffer`) of the factory's uint8 CNN.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.corpus import PINNED
from tests.fuzz.flatbuffer import Field, edit, fields, flip
from tvmq.errors import TruncatedModel
from tvmq.model import Reference, inspect_model, load_model
from tvmq.model import reference as reference_module
from tvmq.model.loader import LoadedModel

REPO = Path(__file__).resolve().parents[1]
(ZERO_POINT, _), (SCALE, _) = PINNED["small"]  # an int8 activation's zero point, an int8 tensor's scale


@pytest.fixture(scope="module")
def base(model_factory) -> bytes:
    return model_factory.path("uint8").read_bytes()


def _field(base: bytes, path: str) -> Field:
    return {f.path: f for f in fields(base)}[path]


def _mutant(tmp_path: Path, base: bytes, path: str, value) -> Path:
    out = tmp_path / "mutant.tflite"
    out.write_bytes(edit("small", _field(base, path), value).apply(base))
    return out


def _refused(path: Path, *needles: str) -> str:
    with pytest.raises(TruncatedModel) as err:
        load_model(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(path)), message
    for needle in needles:
        assert needle in message, message
    return message


def _counts(base: bytes) -> tuple[int, int, int, int]:
    """Tensors, operators (of subgraph 0), operator codes, buffers."""
    import tflite

    model = tflite.Model.GetRootAsModel(base, 0)
    sg = model.Subgraphs(0)
    return sg.TensorsLength(), sg.OperatorsLength(), model.OperatorCodesLength(), model.BuffersLength()


def _bias_tensor(base: bytes) -> int:
    """The first int32 tensor with a quantization scale: a convolution's bias."""
    import tflite

    sg = tflite.Model.GetRootAsModel(base, 0).Subgraphs(0)
    return next(t for t in range(sg.TensorsLength())
                if sg.Tensors(t).Type() == 2 and sg.Tensors(t).Quantization().ScaleLength())


# ------------------------------------------------------------------------ indices, in the walk


@pytest.mark.parametrize("where, value, needle", [
    ("operators[1].inputs[0]", "tensors", "operator 1's input refers to tensor {value}; there are {tensors} tensors"),
    ("operators[1].inputs[0]", -2, "operator 1's input refers to tensor -2"),
    ("operators[1].outputs[0]", "tensors", "operator 1's output refers to tensor {value}"),
    ("inputs[0]", -1, "subgraph 0's input refers to tensor -1"),
    ("outputs[0]", "tensors", "subgraph 0's output refers to tensor {value}"),
    ("operators[1].opcode_index", "codes", "operator 1 refers to operator code {value}; there are {codes}"),
    ("tensors[0].buffer", "buffers", "tensor 0 refers to buffer {value}; there are {buffers} buffers"),
    ("tensors[0].shape[1]", -5, "tensor 0 has shape [1, -5, "),
    ("tensors[0].type", 99, "tensor 0 has type 99, which TFLite does not define"),
])
def test_indices_and_values_out_of_range_are_refused(tmp_path, base, where, value, needle):
    tensors, _, codes, buffers = _counts(base)
    value = {"tensors": tensors, "codes": codes, "buffers": buffers}.get(value, value)
    path = _mutant(tmp_path, base, f"model.subgraphs[0].{where}", value)
    _refused(path, "is corrupt: subgraph 0", needle.format(value=value, tensors=tensors, codes=codes, buffers=buffers))


# ----------------------------------------------------------- the fuzz corpus's inspect tracebacks


def _inspect_crashers(base: bytes) -> dict[str, bytes]:
    """The three inspect tracebacks of the corpus, made on ``base``: a vector's length 256 too long
    (``TypeError: bad number``), an operator's vtable moved (``'int' object is not iterable``), a
    reference into the weights (``struct.error``)."""
    last = _counts(base)[1] - 1
    length = _field(base, f"model.subgraphs[0].operators[{last}].inputs.<length>")
    return {
        "length": flip("small", base, length.offset + 1, 0x01).apply(base),
        "vtable": edit("small", _field(base, "model.subgraphs[0].operators[1].<vtable offset>"), -766).apply(base),
        "reference": edit("small", _field(base, "model.subgraphs[0].operators[1].inputs.<reference>"), 40).apply(base),
    }


@pytest.mark.parametrize("kind, needle", [("length", "operator {last}'s input refers to tensor "),
                                          ("vtable", " is corrupt: "),
                                          ("reference", "operator 1's input refers to tensor ")])
def test_inspect_crashers_are_refused_at_load(tmp_path, base, kind, needle):
    path = tmp_path / "mutant.tflite"
    path.write_bytes(_inspect_crashers(base)[kind])
    _refused(path, needle.format(last=_counts(base)[1] - 1))


@pytest.mark.parametrize("kind", ["length", "reference"])
def test_inspect_translates_parse_errors_of_an_unvalidated_model(base, kind):
    """inspect_model's own boundary, for bytes that never went through load_model."""
    content = _inspect_crashers(base)[kind]
    loaded = LoadedModel(path=Path("raw.tflite"), content=content, sha256="-", source="raw.tflite")
    with pytest.raises(TruncatedModel, match=r"^raw\.tflite is truncated or corrupt \(\d+ bytes; \w+"):
        inspect_model(loaded)


def test_an_operator_without_inputs_is_inspected_not_crashed(base):
    """A moved vtable can leave an operator without its inputs vector (the accessor gives 0)."""
    content = _inspect_crashers(base)["vtable"]
    loaded = LoadedModel(path=Path("raw.tflite"), content=content, sha256="-", source="raw.tflite")
    info = inspect_model(loaded)  # was: TypeError: 'int' object is not iterable
    assert sum(info.operator_counts.values()) == _counts(base)[1] and info.inputs and info.outputs


@pytest.mark.shared_models
@pytest.mark.parametrize("path, value", [("model.subgraphs[0].operators[13].<vtable offset>", -766),
                                         ("model.subgraphs[0].operators[11].inputs.<reference>", 40)])
def test_corpus_mobilenet_mutants_are_refused(tmp_path, small_real_model, path, value):
    real = small_real_model.read_bytes()
    _refused(_mutant(tmp_path, real, path, value))


# ------------------------------------------------------------------- quantization, in the walk


@pytest.mark.parametrize("value, needle", [(-1.0, "scale -1;"), (0.0, "scale 0;"), (float("nan"), "scale nan;"),
                                           (float("inf"), "scale inf;")])
def test_bad_scales_are_refused_in_process(tmp_path, base, monkeypatch, value, needle):
    monkeypatch.setattr(reference_module, "_ask_child", lambda *a: pytest.fail("the walk should have refused it"))
    _refused(_mutant(tmp_path, base, SCALE, value), needle, "a scale is a finite number above 0")


def test_zero_point_out_of_range_is_refused_in_process(tmp_path, base):
    _refused(_mutant(tmp_path, base, ZERO_POINT, -1000), "(int8) has zero point -1000, outside -128..127")


# ------------------------------------------------------------- what only allocate_tensors finds

_LOAD = ("import sys\nfrom tvmq.errors import TvmqError\nfrom tvmq.model import load_model\n"
         "try:\n    load_model(sys.argv[1])\nexcept TvmqError as err:\n    print(err)\n    sys.exit(err.exit_code)\n")


def _load_in_child(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _LOAD, str(path)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("value", [3e38, 1e-45])
def test_scale_that_kills_allocate_tensors_is_a_clean_error(tmp_path, base, value):
    path = _mutant(tmp_path, base, SCALE, value)
    done = _load_in_child(path)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    (line,) = done.stdout.splitlines()
    assert line == f"{path}: LiteRT cannot run this model: the interpreter died (SIGABRT in allocate_tensors)"
    assert "Traceback" not in done.stderr


def test_zero_point_that_kills_allocate_tensors_exits_cleanly(tmp_path, base):
    done = _load_in_child(_mutant(tmp_path, base, ZERO_POINT, -1000))
    assert done.returncode == 2 and "has zero point -1000" in done.stdout, (done.returncode, done.stderr)


def test_nonzero_bias_zero_point_is_refused_with_litert_s_reason(tmp_path, base):
    path = _mutant(tmp_path, base, f"model.subgraphs[0].tensors[{_bias_tensor(base)}].quantization.zero_point[0]", 5)
    message = _refused(path, "LiteRT cannot run this model: ", "zero-point value (5)", "(in allocate_tensors)")
    assert "is corrupt" not in message


def test_reference_translates_what_litert_raises(tmp_path, base):
    """Reference builds its own interpreter: LiteRT's RuntimeError becomes the same clean error."""
    path = _mutant(tmp_path, base, f"model.subgraphs[0].tensors[{_bias_tensor(base)}].quantization.zero_point[0]", 5)
    loaded = LoadedModel(path=path, content=path.read_bytes(), sha256="-", source=str(path))
    with pytest.raises(TruncatedModel, match=r"LiteRT cannot run this model: .*\(in allocate_tensors\)$"):
        Reference(loaded, num_threads=1)


def test_custom_operators_are_built_not_allocated(model_factory):
    """LiteRT has no kernel for a custom operator: the model loads, and check_convertible names it."""
    assert inspect_model(load_model(model_factory.path("custom"))).custom_operators == ["Cumprod"]


def test_a_model_is_checked_in_a_child_once(model_factory, monkeypatch):
    asked = []
    real = reference_module._ask_child
    monkeypatch.setattr(reference_module, "_ANSWERS", {})
    monkeypatch.setattr(reference_module, "_ask_child", lambda *a: asked.append(a[1:]) or real(*a))
    path = model_factory.path("int8")
    assert load_model(path).sha256 == load_model(path).sha256
    assert asked == [(True,)]
