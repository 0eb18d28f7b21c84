"""An artifact is code: ``tvmq-run`` and :func:`tvmq.tuner.artifact.load` check ``model.json`` and
``model.so`` before any of the library's code runs, and every refusal is one line and exit 2.

One small artifact is built per module (the stages API, untuned); each case edits a copy. The cases
that would crash the process (a truncated, damaged or swapped library, inputs the library was not
built for) run ``tvmq-run`` in a subprocess, so that a signal shows as a failure."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import run_main, untuned_build
from tvmq.errors import ArtifactError
from tvmq.tuner import artifact

PLANTED_C = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w");
    if (f) { fputs("the planted library ran", f); fclose(f); }
}
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory, model_factory) -> Path:
    """An untuned build of the small uint8 model for this host, one thread."""
    return untuned_build(model_factory.path("uint8"), tmp_path_factory.mktemp("built") / "build")


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    """A shared library whose constructor writes a marker file: if the marker exists, it ran."""
    folder = tmp_path_factory.mktemp("planted")
    source, lib, marker = folder / "planted.c", folder / "planted.so", folder / "marker"
    source.write_text(PLANTED_C)
    subprocess.run(["gcc", "-shared", "-fPIC", f'-DMARKER="{marker}"', "-o", str(lib), str(source)], check=True)
    return lib, marker


@pytest.fixture
def case(tmp_path, built) -> Path:
    """A copy of the build to edit."""
    return Path(shutil.copytree(built, tmp_path / "build"))


def read_meta(folder: Path) -> dict:
    return json.loads((folder / "model.json").read_text())


def write_meta(folder: Path, meta: dict) -> None:
    (folder / "model.json").write_text(json.dumps(meta))


DELETE = object()


def edit(folder: Path, field: str, value) -> None:
    """Set ``field`` ("threads", "requires.cpu_flags", "inputs.0.shape") in model.json;
    ``DELETE`` removes it."""
    meta = read_meta(folder)
    *parents, last = field.split(".")
    obj = meta
    for key in parents:
        obj = obj[int(key)] if isinstance(obj, list) else obj[key]
    key = int(last) if isinstance(obj, list) else last
    if value is DELETE:
        del obj[key]
    else:
        obj[key] = value
    write_meta(folder, meta)


def tvmq_run(capsys, *args) -> tuple[int, str]:
    from tvmq.cli.run import main

    return run_main(main, capsys, [str(a) for a in args])


def tvmq_run_process(*args) -> tuple[int, str]:
    """tvmq-run in its own process: a signal is a negative return code, not a dead test run."""
    proc = subprocess.run([sys.executable, "-m", "tvmq.cli.run", *map(str, args)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    return proc.returncode, proc.stderr + proc.stdout


def assert_refused(rc: int, text: str, *words: str) -> str:
    """Exit 2 with one line on stderr (no traceback) that holds each of ``words``."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in text, (rc, text)
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


# ----------------------------------------------------------------------------- what export writes
def test_export_records_what_load_checks(built):
    from tvmq.targets import host_info
    from tvmq.versions import stack_versions

    meta = read_meta(built)
    lib = built / "model.so"
    assert meta["format"] == artifact.FORMAT and meta["library"] == "model.so"
    assert meta["library_bytes"] == lib.stat().st_size
    assert meta["library_sha256"] == hashlib.sha256(lib.read_bytes()).hexdigest()
    here = stack_versions()
    assert meta["versions"] == {k: here[k] for k in ("tvmq", "tvm", "tvm-ffi")}
    assert meta["requires"]["arch"] == host_info().arch
    assert meta["tvm_target"]["kind"] == "llvm" and meta["target"]
    assert [t["dtype"] for t in meta["inputs"]] == ["uint8"]
    assert artifact.parse_metadata(meta).to_dict() == meta  # written by the one schema, read back the same
    assert not list(built.glob(".model.json*"))  # the temporary file of the atomic write is gone


def test_runs_and_names_its_classes(capsys, built):
    rc, text = tvmq_run(capsys, built, "--json", "--repeat", "2")
    assert rc == 0, text
    result = json.loads(text[text.index("{"):])
    assert len(result["results"][0]["top5"]) == 5 and result["latency_ms"]["runs"] == 2
    art = artifact.load(built / "model.so")  # the library's path names its folder too
    assert art.metadata.inputs[0].shape == [1, 32, 32, 3] and art.warnings == ()


def test_help_says_an_artifact_is_code(capsys):
    rc, text = tvmq_run(capsys, "--help")
    assert rc == 0 and "executable code" in text and "trust" in text


# ----------------------------------------------------------------------------- the library
@pytest.mark.parametrize("how", ["truncated", "byte flipped", "swapped"])
def test_damaged_or_swapped_library_is_refused_before_it_loads(case, planted, how):
    lib = case / "model.so"
    data = lib.read_bytes()
    if how == "truncated":
        lib.write_bytes(data[: len(data) // 2])  # dlopen of this died of SIGBUS
    elif how == "byte flipped":
        middle = len(data) // 2
        lib.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    else:
        shutil.copy(planted[0], lib)
    rc, text = tvmq_run_process(case)
    assert_refused(rc, text, "model.so", "sha256" if how == "byte flipped" else "bytes", "rebuild")
    assert not planted[1].exists(), "the swapped-in library's constructor ran"


@pytest.mark.parametrize("library", ["../planted.so", "PLANTED", "sub/model.so", "model.json", ""])
def test_library_field_names_a_file_of_the_folder(capsys, case, planted, library):
    shutil.copy(planted[0], case.parent / "planted.so")
    edit(case, "library", str(planted[0]) if library == "PLANTED" else library)
    assert_refused(*tvmq_run(capsys, case), "'library'")
    assert not planted[1].exists(), "the planted library's constructor ran"


def test_library_symlinked_out_of_the_folder_is_refused(case, planted):
    lib = case / "model.so"
    lib.unlink()
    lib.symlink_to(planted[0])
    rc, text = tvmq_run_process(case)
    assert_refused(rc, text, "symbolic link")
    assert not planted[1].exists(), "the planted library's constructor ran"


@pytest.mark.parametrize("what", ["folder", "fifo"])
def test_library_that_is_not_a_regular_file(capsys, case, what):
    lib = case / "model.so"
    lib.unlink()
    lib.mkdir() if what == "folder" else os.mkfifo(lib)
    assert_refused(*tvmq_run(capsys, case), "not a regular file")


# ----------------------------------------------------------------------------- model.json
@pytest.mark.parametrize("field,value", [
    ("inputs.0.shape", [1, 16, 16, 3]),
    ("inputs.0.shape", [1, 32, 32, 3, 1]),
    ("inputs.0.dtype", "int8"),
    ("inputs.0.dtype", "float32"),
])
def test_inputs_the_library_was_not_built_for(case, field, value):
    edit(case, field, value)
    rc, text = tvmq_run_process(case)
    assert_refused(rc, text, "rejects the inputs model.json describes")


@pytest.mark.parametrize("field,value,named", [
    ("threads", "abc", "'threads'"),
    ("threads", 0, "'threads'"),
    ("threads", True, "'threads'"),
    ("inputs", DELETE, "'inputs' is missing"),
    ("inputs", [], "'inputs'"),
    ("inputs.0.shape", [1, 100000, 100000, 3], "'inputs[0].shape'"),
    ("inputs.0.shape", [1, -1, 32, 3], "'inputs[0].shape'"),
    ("inputs.0.dtype", "complex64", "'inputs[0].dtype'"),
    ("inputs.0.name", 7, "'inputs[0].name'"),
    ("outputs.0", "x", "'outputs[0]'"),
    ("library_bytes", "many", "'library_bytes'"),
    ("library_sha256", "0" * 63, "'library_sha256'"),
    ("tvm_target", "llvm", "'tvm_target'"),
    ("requires", DELETE, "'requires' is missing"),
    ("requires.cpu_flags", "avx2", "'requires.cpu_flags'"),
    ("versions.tvm-ffi", DELETE, "'versions.tvm-ffi' is missing"),
    ("format", 3, "'format'"),
])
def test_each_edited_field_is_named(capsys, case, field, value, named):
    edit(case, field, value)
    assert_refused(*tvmq_run(capsys, case), "model.json", named)


@pytest.mark.parametrize("content", ["{", "[" * 100_000, "[1, 2]", "\xff", " " * (artifact.MAX_META_BYTES + 1)])
def test_unreadable_model_json(capsys, case, content):
    (case / "model.json").write_bytes(content.encode("latin-1"))
    assert_refused(*tvmq_run(capsys, case), "model.json")


def test_model_json_that_is_a_link_or_fifo(capsys, case):
    meta = case / "model.json"
    meta.unlink()
    meta.symlink_to("/dev/zero")
    assert_refused(*tvmq_run(capsys, case), "symbolic link")
    meta.unlink()
    os.mkfifo(meta)
    assert_refused(*tvmq_run(capsys, case), "not a regular file")


def test_artifact_of_an_earlier_tvmq_is_refused(capsys, case):
    meta = read_meta(case)
    for key in ("format", "library_sha256", "versions", "requires"):
        del meta[key]
    write_meta(case, meta)
    assert_refused(*tvmq_run(capsys, case), "earlier tvmq", "rebuild it with tvmq-tune")


def test_missing_build(capsys, tmp_path):
    assert_refused(*tvmq_run(capsys, tmp_path / "nothing"), "does not exist")
    assert_refused(*tvmq_run(capsys, tmp_path), "model.json is missing")


# ----------------------------------------------------------------------------- this host
def test_host_without_a_needed_cpu_flag(capsys, case):
    """The checksum covers the library, not model.json: this edit is caught by the feature check."""
    edit(case, "requires.cpu_flags", read_meta(case)["requires"]["cpu_flags"] + ["tvmq_fake_flag"])
    line = assert_refused(*tvmq_run(capsys, case), "missing-isa", "needs tvmq_fake_flag", "lacks")
    assert "sha256" not in line


def test_code_for_another_architecture(capsys, case):
    from tvmq.targets import host_info

    other = "aarch64" if host_info().arch == "x86_64" else "x86_64"
    edit(case, "requires.arch", other)
    assert_refused(*tvmq_run(capsys, case), "missing-isa", f"is {other} code")


def test_versions(capsys, case):
    """Another tvm-ffi major.minor is another C ABI: refused. Another TVM: one warning, and it runs."""
    edit(case, "versions.tvm", "0.26.0")
    rc, text = tvmq_run(capsys, case, "--json")
    assert rc == 0, text
    assert "warning: built with tvm 0.26.0" in text
    edit(case, "versions.tvm-ffi", "0.2.0")
    assert_refused(*tvmq_run(capsys, case), "tvm-ffi 0.2.0", "C ABI")


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("option,value", [("--threads", "0"), ("--threads", "abc"), ("--repeat", "-1")])
def test_bad_option_values(capsys, built, option, value):
    assert_refused(*tvmq_run(capsys, built, option, value), option)


def test_python_api_translates_inputs_the_vm_rejects(built):
    import numpy as np

    art = artifact.load(built)
    with pytest.raises(ArtifactError, match="rejects the inputs"):
        art.run([np.zeros((1, 32, 32, 3), "float32")])
