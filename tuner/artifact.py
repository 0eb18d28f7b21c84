"""Exported builds: ``model.so`` plus ``model.json``, loadable again without recompiling.

An artifact is executable code: loading ``model.so`` runs code it holds. :func:`load` checks all it
can before that: ``model.json`` against its schema (:func:`parse_metadata`), the versions and the CPU
features it records against this host, and the library itself, a regular file in the artifact's
folder (no path, no symbolic link) whose size and sha256 are the ones ``model.json`` records. The
library is opened once, and the file checked is the file loaded. The checksum finds a damaged or
swapped library, not a forged artifact: whoever can edit ``model.json`` can edit its checksum too,
so an artifact is to be loaded only from a source one trusts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import ArtifactError, MissingISA, one_line
from tvmq.files import write_atomically
from tvmq.model.inspect import TensorInfo
from tvmq.options import RANGES

LIB_NAME = "model.so"
META_NAME = "model.json"
FORMAT = 2  # 1: tvmq before the library's checksum, versions and CPU requirements were recorded
MAX_META_BYTES = 1 << 20
MAX_TENSOR_ELEMENTS = 1 << 25  # 32 Mi elements: a 1x2048x2048x3 image is 12 Mi
MAX_RANK = 8
DTYPES = ("bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64")
VERSIONS = ("tvmq", "tvm", "tvm-ffi")  # what built the library; tvm-ffi's major.minor is its C ABI
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PLAIN_SO_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.so")
_PART_NAME = re.compile(r"part[0-9]{1,2}\.tflite")
MAX_TENSOR_INDEX = 1 << 24
_REBUILD = "rebuild it with tvmq-tune"


@dataclass(frozen=True)
class Requirements:
    """The machine the library's code runs on: its architecture and the CPU flags (/proc/cpuinfo
    names, the target profile's ``[host] flags``) the instructions in it need."""

    arch: str
    cpu_flags: tuple[str, ...]


@dataclass(frozen=True)
class ArtifactMetadata:
    """``model.json``, every field checked (:func:`parse_metadata` builds it, :meth:`to_dict` writes it)."""

    model: str
    model_sha256: str
    target: str  # the target profile's name
    tvm_target: dict  # the TVM target as JSON
    requires: Requirements
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    threads: int
    library: str  # a plain file name in the artifact's folder
    library_bytes: int
    library_sha256: str
    versions: dict  # VERSIONS -> the version that built the library
    created: str
    format: int = FORMAT
    # a partitioned model (tvmq.model.partition): the whole's tensors and its parts in order, the
    # TVM part being this library, each TFLite part a checked file of the folder (PART_FIELDS)
    partition: dict | None = None

    @property
    def name(self) -> str:
        """The model's name: with ``inputs``, what :func:`tvmq.model.make_inputs` reads of a model."""
        return self.model

    def to_dict(self) -> dict:
        """What ``model.json`` holds (tuples as JSON lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class Artifact:
    """A library exported by tvmq, checked and loaded into a Relax VM on this machine.

    ``warnings``: what the load noticed and let pass (another TVM or tvmq version built it)."""

    path: Path
    metadata: ArtifactMetadata
    runnable: object
    warnings: tuple[str, ...] = ()

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with self._inputs_rejected():
            return self.runnable.run(arrays)

    def benchmark(self, arrays: list[np.ndarray], repeat: int) -> list[float]:
        with self._inputs_rejected():
            return self.runnable.benchmark(arrays, repeat=repeat)

    @contextlib.contextmanager
    def _inputs_rejected(self):
        """The VM checks every input's shape and dtype against the compiled function; a mismatch
        means model.json does not describe this library."""
        try:
            yield
        except Exception as err:  # noqa: BLE001 - TVM raises ValueError, TypeError, TVMError...
            raise ArtifactError(f"{self.path} rejects the inputs {META_NAME} describes "
                                f"({one_line(err, 200, pick='last')}): {META_NAME} was edited or belongs to "
                                f"another build; {_REBUILD}") from None


# ----------------------------------------------------------------------------- writing
def export(executable, out_dir: Path, build: dict, export_fn: Callable | None = None) -> Path:
    """Write the library and its ``model.json`` into ``out_dir``; returns the library path.

    ``build``: the metadata fields that say what was built (model, model_sha256, target, tvm_target,
    requires, inputs, outputs, threads); the library's name, size, checksum, the versions and the
    date are added here. What is written is checked by :func:`parse_metadata` first, so that a
    build tvmq writes is always one it loads."""
    from tvmq.versions import stack_versions

    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / LIB_NAME
    if export_fn is not None:
        export_fn(executable, lib)
    else:
        executable.export_library(str(lib))
    with open(lib, "rb") as f:
        sha256 = hashlib.file_digest(f, "sha256").hexdigest()
    versions = stack_versions()
    if build.get("partition") is not None:
        build = {**build, "partition": _write_parts(build["partition"], out_dir)}
    meta = {**build, "format": FORMAT, "library": LIB_NAME, "library_bytes": lib.stat().st_size,
            "library_sha256": sha256, "versions": {k: versions.get(k, "unknown") for k in VERSIONS},
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    text = json.dumps(parse_metadata(json.loads(json.dumps(meta, default=list))).to_dict(), indent=2) + "\n"
    write_atomically(out_dir / META_NAME, text)
    return lib


def _write_parts(partition: dict, out_dir: Path) -> dict:
    """Each TFLite part of ``partition`` (``inputs``, ``outputs``, ``parts``: objects with
    ``engine``, ``content``, ``inputs``, ``outputs``) written as ``part<i>.tflite``; what model.json records."""
    parts = []
    for i, part in enumerate(partition["parts"]):
        entry = {"engine": part.engine, "inputs": list(part.inputs), "outputs": list(part.outputs)}
        if part.engine == "tflite":
            name = f"part{i}.tflite"
            write_atomically(out_dir / name, part.content)
            entry.update(file=name, bytes=len(part.content), sha256=part.sha256)
        parts.append(entry)
    return {"inputs": list(partition["inputs"]), "outputs": list(partition["outputs"]), "parts": parts}


# ----------------------------------------------------------------------------- the schema
def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _field(obj: dict, name: str, key: str, ok: Callable[[object], bool], expected: str):
    """``obj[key]``, or ArtifactError naming the field (``name``) when it is missing or not ``expected``."""
    if key not in obj:
        raise ArtifactError(f"{META_NAME}: '{name}' is missing; {_REBUILD}")
    value = obj[key]
    if not ok(value):
        raise ArtifactError(f"{META_NAME}: '{name}' must be {expected}, not {_show(value)}; {_REBUILD}")
    return value


def _int_in(low: int, high: int) -> Callable[[object], bool]:
    return lambda v: type(v) is int and low <= v <= high


def _text(pattern: re.Pattern | None = None) -> Callable[[object], bool]:
    return lambda v: isinstance(v, str) and bool(v) and len(v) <= 1000 and (
        pattern is None or pattern.fullmatch(v) is not None)


def _list_of(ok: Callable[[object], bool], most: int = 10_000) -> Callable[[object], bool]:
    return lambda v: isinstance(v, list) and len(v) <= most and all(ok(x) for x in v)


def _is_number(v) -> bool:
    return type(v) in (int, float)


def _tensor(obj: object, name: str) -> TensorInfo:
    if not isinstance(obj, dict):
        raise ArtifactError(f"{META_NAME}: '{name}' must be an object, not {_show(obj)}; {_REBUILD}")
    shape = _field(obj, f"{name}.shape", "shape", _list_of(_int_in(1, 1 << 31), MAX_RANK),
                   f"a list of at most {MAX_RANK} sizes of 1 or more")
    if int(np.prod(shape, dtype=np.float64)) > MAX_TENSOR_ELEMENTS:
        raise ArtifactError(f"{META_NAME}: '{name}.shape' {shape} has more than {MAX_TENSOR_ELEMENTS} "
                            f"elements; {_REBUILD}")
    return TensorInfo(
        name=_field(obj, f"{name}.name", "name", _text(), "a name"),
        shape=list(shape),
        dtype=_field(obj, f"{name}.dtype", "dtype", lambda v: v in DTYPES, "one of " + ", ".join(DTYPES)),
        scales=_field(obj, f"{name}.scales", "scales", _list_of(_is_number, 1 << 16), "a list of numbers"),
        zero_points=_field(obj, f"{name}.zero_points", "zero_points", _list_of(_int_in(-(1 << 31), 1 << 32), 1 << 16),
                           "a list of integers"),
        quantized_dimension=_field(obj, f"{name}.quantized_dimension", "quantized_dimension",
                                   _int_in(0, MAX_RANK), f"an integer from 0 to {MAX_RANK}"),
    )


def _tensors(meta: dict, key: str) -> tuple[TensorInfo, ...]:
    items = _field(meta, key, key, lambda v: isinstance(v, list) and 1 <= len(v) <= 256, "a list of 1 to 256 tensors")
    return tuple(_tensor(t, f"{key}[{i}]") for i, t in enumerate(items))


def parse_metadata(meta: object) -> ArtifactMetadata:
    """``model.json`` (parsed JSON) as :class:`ArtifactMetadata`; :class:`ArtifactError` naming the
    first field that is missing or wrong. An artifact of an earlier format is refused: it records no
    checksum of its library, so nothing could be checked before loading it."""
    if not isinstance(meta, dict):
        raise ArtifactError(f"{META_NAME} must hold a JSON object, not {_show(meta)}; {_REBUILD}")
    if "format" not in meta and "library_sha256" not in meta:
        raise ArtifactError(f"{META_NAME} was written by an earlier tvmq and records no checksum of its library, "
                            f"so it cannot be checked before it runs; {_REBUILD}")
    _field(meta, "format", "format", lambda v: v == FORMAT, f"{FORMAT} (this tvmq's artifact format)")
    requires = _field(meta, "requires", "requires", lambda v: isinstance(v, dict), "an object")
    versions = _field(meta, "versions", "versions", lambda v: isinstance(v, dict), "an object")
    return ArtifactMetadata(
        model=_field(meta, "model", "model", _text(), "a name"),
        model_sha256=_field(meta, "model_sha256", "model_sha256", _text(_SHA256), "a sha256 in hex"),
        target=_field(meta, "target", "target", _text(), "a target profile's name"),
        tvm_target=_field(meta, "tvm_target", "tvm_target", lambda v: isinstance(v, dict) and isinstance(
            v.get("kind"), str), "a TVM target as JSON (with its 'kind')"),
        requires=Requirements(
            arch=_field(requires, "requires.arch", "arch", _text(), "an architecture (x86_64, aarch64)"),
            cpu_flags=tuple(_field(requires, "requires.cpu_flags", "cpu_flags", _list_of(_text(), 256),
                                   "a list of CPU flag names"))),
        inputs=_tensors(meta, "inputs"),
        outputs=_tensors(meta, "outputs"),
        threads=_field(meta, "threads", "threads", _int_in(*RANGES["threads"]),
                       "an integer from {} to {}".format(*RANGES["threads"])),
        library=_field(meta, "library", "library", _text(_PLAIN_SO_NAME),
                       "the plain name of a .so file in the artifact's folder"),
        library_bytes=_field(meta, "library_bytes", "library_bytes", _int_in(1, 1 << 40), "a size in bytes"),
        library_sha256=_field(meta, "library_sha256", "library_sha256", _text(_SHA256), "a sha256 in hex"),
        versions={k: _field(versions, f"versions.{k}", k, _text(), "a version") for k in VERSIONS},
        created=_field(meta, "created", "created", lambda v: isinstance(v, str) and len(v) <= 100, "a date"),
        partition=_partition(meta.get("partition")),
    )


def _partition(value: object) -> dict | None:
    """``model.json``'s ``partition``: its parts in order, exactly one of them TVM's (this library),
    every TFLite part a plain ``part<i>.tflite`` with its size and sha256, and every tensor a part
    reads one that the whole takes or an earlier part wrote."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ArtifactError(f"{META_NAME}: 'partition' must be an object, not {_show(value)}; {_REBUILD}")
    index = _int_in(0, MAX_TENSOR_INDEX)
    tensors = _list_of(index, 4096)
    inputs = _field(value, "partition.inputs", "inputs", tensors, "a list of tensor indices")
    outputs = _field(value, "partition.outputs", "outputs", tensors, "a list of tensor indices")
    parts = _field(value, "partition.parts", "parts", lambda v: isinstance(v, list) and 1 <= len(v) <= 16,
                   "a list of 1 to 16 parts")
    known = set(inputs)
    checked = []
    for i, part in enumerate(parts):
        where = f"partition.parts[{i}]"
        if not isinstance(part, dict):
            raise ArtifactError(f"{META_NAME}: {where} must be an object, not {_show(part)}; {_REBUILD}")
        engine = _field(part, f"{where}.engine", "engine", lambda v: v in ("tvm", "tflite"), "'tvm' or 'tflite'")
        entry = {"engine": engine,
                 "inputs": _field(part, f"{where}.inputs", "inputs", tensors, "a list of tensor indices"),
                 "outputs": _field(part, f"{where}.outputs", "outputs", tensors, "a list of tensor indices")}
        if engine == "tflite":
            entry.update(file=_field(part, f"{where}.file", "file", _text(_PART_NAME), "a file name part<i>.tflite"),
                         bytes=_field(part, f"{where}.bytes", "bytes", _int_in(1, 1 << 32), "a size in bytes"),
                         sha256=_field(part, f"{where}.sha256", "sha256", _text(_SHA256), "a sha256 in hex"))
        missing = [t for t in entry["inputs"] if t not in known]
        if missing:
            raise ArtifactError(f"{META_NAME}: {where} reads tensor {missing[0]}, which no earlier part writes; "
                                f"{_REBUILD}")
        known.update(entry["outputs"])
        checked.append(entry)
    if sum(p["engine"] == "tvm" for p in checked) != 1:
        raise ArtifactError(f"{META_NAME}: 'partition' must have exactly one TVM part (this library); {_REBUILD}")
    missing = [t for t in outputs if t not in known]
    if missing:
        raise ArtifactError(f"{META_NAME}: no part writes the output tensor {missing[0]}; {_REBUILD}")
    return {"inputs": inputs, "outputs": outputs, "parts": checked}


# ----------------------------------------------------------------------------- reading and checking
def _open_plain_file(path: Path, what: str) -> int:
    """A read-only descriptor of ``path``, a regular file and not a symbolic link (a FIFO does not
    block the open, and is refused like any other non-regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ArtifactError(f"{path.parent} is not a complete tvmq build: {path} is missing") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ArtifactError(f"{path} is a symbolic link; a tvmq build's {what} must be a file "
                                f"in its folder") from None
        raise ArtifactError(f"cannot read {path}: {err.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ArtifactError(f"{path} is not a regular file")
    return fd


def read_metadata(path: str | Path) -> tuple[Path, ArtifactMetadata]:
    """The artifact's folder (``path`` is it, or a file in it) and its checked ``model.json``."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ArtifactError(f"{path} does not exist")
    folder = p if p.is_dir() else p.parent
    meta_path = folder / META_NAME
    if not meta_path.exists() and not meta_path.is_symlink():
        raise ArtifactError(f"{path} is not a tvmq build: {meta_path} is missing")
    with os.fdopen(_open_plain_file(meta_path, META_NAME), "rb") as f:
        data = f.read(MAX_META_BYTES + 1)
    if len(data) > MAX_META_BYTES:
        raise ArtifactError(f"{meta_path} is larger than {MAX_META_BYTES} bytes: not a tvmq build's {META_NAME}")
    try:
        meta = json.loads(data)
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ArtifactError(f"cannot read {meta_path}: {one_line(err, 200)}") from None
    return folder, parse_metadata(meta)


def check_host(meta: ArtifactMetadata, host=None) -> None:
    """:class:`MissingISA` when this host lacks what the library's instructions need; run before
    loading it, whose first instruction it lacks would be SIGILL."""
    from tvmq.targets import host_info

    host = host or host_info()
    missing = host.lacks(meta.requires.arch, meta.requires.cpu_flags)
    if not missing:
        return
    if host.arch != meta.requires.arch:
        need = f"is {meta.requires.arch} code and this host ({host.model_name}) is {host.arch}"
    else:
        need = f"needs {', '.join(missing)}, which this host ({host.model_name}) lacks"
    raise MissingISA(f"this build (target {meta.target}) {need}: run it on such a machine, or build "
                     f"one for this host with tvmq-tune --target native", missing=missing)


def _abi(version: str) -> str:
    m = re.match(r"(\d+)\.(\d+)", version)
    return m.group(0) if m else version


def check_versions(meta: ArtifactMetadata) -> tuple[str, ...]:
    """Another tvm-ffi major.minor (its C ABI, which the library calls) is refused; another TVM or
    tvmq version is a warning (the VM checks its own bytecode format when it loads the library)."""
    from tvmq.versions import stack_versions

    here = stack_versions()
    built, this = meta.versions["tvm-ffi"], here.get("tvm-ffi", "unknown")
    if _abi(built) != _abi(this):
        raise ArtifactError(f"this build was made with tvm-ffi {built}, whose C ABI differs from this "
                            f"tvm-ffi {this}; {_REBUILD}")
    return tuple(f"built with {k} {meta.versions[k]}, running with {here.get(k, 'unknown')}"
                 for k in ("tvm", "tvmq") if meta.versions[k] != here.get(k))


def _checked_library(folder: Path, meta: ArtifactMetadata) -> int:
    """An open descriptor of the library, after its size and sha256 matched ``model.json``."""
    lib = folder / meta.library
    fd = _open_plain_file(lib, "library")
    try:
        size = os.fstat(fd).st_size
        if size != meta.library_bytes:
            raise ArtifactError(f"{lib} has {size} bytes where {META_NAME} records {meta.library_bytes}: it is "
                                f"damaged (cut short?) or another build's; {_REBUILD}")
        with os.fdopen(os.dup(fd), "rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        if sha256 != meta.library_sha256:
            raise ArtifactError(f"{lib} has another sha256 than the one {META_NAME} records: it is damaged "
                                f"or another build's; {_REBUILD}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _load_descriptor(fd: int):
    """dlopen the file ``fd`` is open on (through /proc/self/fd, so the file loaded is the file
    checked even if the path changes meanwhile). TVM picks the loader by the name's extension,
    hence the link named ``model.so``; ``tvm_ffi.load_module`` is used as it is, since
    ``tvm.runtime.load_module`` would resolve the link back to the path."""
    import tvm  # noqa: F401 - TVM's runtime, which the library calls, is loaded first
    import tvm_ffi

    with tempfile.TemporaryDirectory(prefix="tvmq-load-") as tmp:
        link = Path(tmp) / LIB_NAME
        link.symlink_to(f"/proc/self/fd/{fd}")
        return tvm_ffi.load_module(str(link))


def load(path: str | Path) -> Artifact:
    """Check an exported build (its folder, or a file in it) and load it for this machine's CPU.

    Refused before any of its code runs: a ``model.json`` that does not match its schema, a host
    without the CPU features the code needs, a tvm-ffi of another C ABI, a library that is not a
    plain file of the folder or whose size or sha256 differ from the recorded ones."""
    from .compile import Runnable

    folder, meta = read_metadata(path)
    check_host(meta)
    warnings = check_versions(meta)
    lib = folder / meta.library
    fd = _checked_library(folder, meta)
    try:
        parts = _checked_parts(folder, meta)
        module = _load_descriptor(fd)
        runnable = Runnable(module)
    except ArtifactError:
        raise
    except Exception as err:  # noqa: BLE001 - dlopen and the VM's loader raise TVM's errors
        raise ArtifactError(f"cannot load {lib} on this machine: {one_line(err, pick='last')}") from None
    finally:
        os.close(fd)
    if parts is not None:
        from .partitioned import PartitionedRunnable

        runnable = PartitionedRunnable(runnable, parts, meta.partition["inputs"], meta.partition["outputs"],
                                       meta.threads, str(folder))
    return Artifact(path=lib, metadata=meta, runnable=runnable, warnings=warnings)


@dataclass(frozen=True)
class _StoredPart:
    engine: str
    content: bytes | None
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def _checked_parts(folder: Path, meta: ArtifactMetadata) -> list[_StoredPart] | None:
    """The parts of a partitioned build, each TFLite part's file read after its size and sha256
    matched ``model.json`` (the same checks as the library's)."""
    if meta.partition is None:
        return None
    parts = []
    for entry in meta.partition["parts"]:
        content = None
        if entry["engine"] == "tflite":
            path = folder / entry["file"]
            with os.fdopen(_open_plain_file(path, "TFLite part"), "rb") as f:
                content = f.read(entry["bytes"] + 1)
            if len(content) != entry["bytes"] or hashlib.sha256(content).hexdigest() != entry["sha256"]:
                raise ArtifactError(f"{path} is not the file {META_NAME} records (its size or sha256 differ): it is "
                                    f"damaged or another build's; {_REBUILD}")
        parts.append(_StoredPart(entry["engine"], content, tuple(entry["inputs"]), tuple(entry["outputs"])))
    return parts
