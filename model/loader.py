"""Reading a TFLite model from a file or an http(s) URL (:mod:`.download`), with validation.

A model file is read only when it is a regular file (not a FIFO or a device) of at most
``$TVMQ_MAX_MODEL_BYTES`` (:data:`tvmq.limits.MODEL_BYTES`). Validation walks every table the
converter reads, checking every index and quantization parameter, then has LiteRT build and
allocate the model in a child process (:func:`.reference.litert_refusal`), so a model TFLite itself
rejects, or dies of, is refused before any compilation.
"""

from __future__ import annotations

import hashlib
import os
import stat
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tvmq.errors import ModelFileNotFound, ModelTooLarge, NotATFLiteModel, TruncatedModel, one_line
from tvmq.limits import MODEL_BYTES
from tvmq.redact import redact_url

from .download import cache_dir, download

TFLITE_IDENTIFIER = b"TFL3"


@dataclass
class LoadedModel:
    """A validated TFLite flatbuffer and where it came from."""

    path: Path
    content: bytes
    sha256: str
    source: str
    _model: object = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def where(self) -> str:
        """How messages name this model: its source, a URL without its secrets."""
        return _shown(self.source)

    @property
    def tflite_model(self):
        """The parsed ``tflite.Model`` (flatbuffer accessors of the ``tflite`` package)."""
        if self._model is None:
            import tflite

            self._model = tflite.Model.GetRootAsModel(self.content, 0)
        return self._model


def _is_url(s: str) -> bool:
    return s.startswith("http://") or s.startswith("https://")


_SPECIAL_FILES = {stat.S_ISFIFO: "a named pipe", stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device",
                  stat.S_ISSOCK: "a socket"}


def read_model_file(path: Path, source: str) -> bytes:
    """The bytes of the model file ``path`` (``source``: how the user named it): a regular file of at
    most :data:`tvmq.limits.MODEL_BYTES`, checked before anything is read."""
    cap = MODEL_BYTES.value()
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a named pipe opens without waiting for a writer
    except FileNotFoundError:
        raise ModelFileNotFound(f"model file not found: {source}") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL in the path
        raise ModelFileNotFound(f"cannot read model file {source}: {getattr(err, 'strerror', None) or err}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        mode, size = info.st_mode, info.st_size
        if stat.S_ISDIR(mode):
            raise ModelFileNotFound(f"model path is a folder, not a .tflite file: {source}")
        special = next((what for test, what in _SPECIAL_FILES.items() if test(mode)), None)
        if special or not stat.S_ISREG(mode):
            raise NotATFLiteModel(f"{source} is {special or 'not a regular file'}, not a .tflite model file")
        if size > cap:
            raise _too_large(source, size, cap)
        try:
            content = f.read(cap + 1)
        except OSError as err:
            raise ModelFileNotFound(f"cannot read model file {source}: {err.strerror or err}") from None
    if len(content) > cap:  # it grew while we looked
        raise _too_large(source, len(content), cap)
    return content


def _too_large(source: str, size: int, cap: int) -> ModelTooLarge:
    return ModelTooLarge(f"{source} has {size} bytes, more than the {cap} a model may have "
                         "(the limit, $TVMQ_MAX_MODEL_BYTES)")


#: TFLite's TensorType enum -> numpy dtype name
TENSOR_TYPES = {
    0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
    7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
    13: "resource", 14: "variant", 15: "uint32", 16: "uint16", 17: "int4",
}
_ZERO_POINT_TYPES = ("uint8", "int8", "int16", "uint16", "int32", "uint32")  # whose range numpy knows
CUSTOM = 32  # tflite.BuiltinOperator.CUSTOM

#: what the ``tflite`` package's accessors raise on bytes that are not a well-formed model
PARSE_ERRORS = (struct.error, TypeError, IndexError, ValueError, UnicodeDecodeError)


class _Corrupt(ValueError):
    """A value that the validation walk found outside its range."""


@contextmanager
def parsing(where: str, size: int):
    """The boundary between tvmq and the bytes of a model file: what the flatbuffer accessors raise
    on corrupt bytes (:data:`PARSE_ERRORS`) becomes a :class:`TruncatedModel` naming ``where``."""
    try:
        yield
    except _Corrupt as err:
        raise TruncatedModel(f"{where} is corrupt: {err}") from None
    except PARSE_ERRORS as err:
        raise TruncatedModel(
            f"{where} is truncated or corrupt ({size} bytes; {type(err).__name__}: {one_line(err)})"
        ) from None


def vector(values) -> np.ndarray:
    """A flatbuffer vector from its ``tflite`` accessor (``Tensor.ShapeAsNumpy()``, ...), which gives 0,
    not an empty array, for a vector the table lacks."""
    return np.zeros(0, np.int64) if isinstance(values, int) else values


def builtin_code(op_code) -> int:
    """The builtin operator of an ``OperatorCode``: the larger of its two fields (TFLite's
    ``GetBuiltinCode``, since codes past 127 do not fit the deprecated int8 one)."""
    return max(op_code.DeprecatedBuiltinCode(), op_code.BuiltinCode())


def _index(value: int, count: int, what: str, noun: str, lowest: int = 0) -> None:
    if not lowest <= value < count:
        raise _Corrupt(f"{what} refers to {noun} {value}; there are {count} {noun}s")


def _walk(model, size: int) -> list[int]:
    """Read every field that inspection and the converter read, checking each index against what
    it refers to and each value against its range, so that corruption shows here and not later.
    The builtin code of each operator code."""
    codes = []
    for c in range(model.OperatorCodesLength()):
        op_code = model.OperatorCodes(c)
        op_code.CustomCode()
        codes.append(builtin_code(op_code))
    for b in range(model.BuffersLength()):
        _check_buffer(model.Buffers(b), b, size)
    for s in range(model.SubgraphsLength()):
        _check_subgraph(model.Subgraphs(s), f"subgraph {s}", len(codes), model.BuffersLength())
    return codes


def _check_buffer(buf, b: int, size: int) -> None:
    n = buf.DataLength()
    if n:
        start = buf._tab.Vector(buf._tab.Offset(4))
        if start + n > size:
            raise _Corrupt(f"buffer {b} ends at byte {start + n}, past the end of the file")
    offset = buf.Offset() if hasattr(buf, "Offset") else 0
    if offset and offset + buf.Size() > size:
        raise _Corrupt(f"buffer {b} ends at byte {offset + buf.Size()}, past the end of the file")


def _check_subgraph(sg, where: str, n_codes: int, n_buffers: int) -> None:
    n = sg.TensorsLength()
    for t in range(n):
        _check_tensor(sg.Tensors(t), f"{where} tensor {t}", n_buffers)
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        _index(op.OpcodeIndex(), n_codes, f"{where} operator {o}", "operator code")
        for role, tensors in (("input", op.InputsAsNumpy()), ("output", op.OutputsAsNumpy())):
            for i in vector(tensors):
                _index(int(i), n, f"{where} operator {o}'s {role}", "tensor", lowest=-1)  # -1: none
    for role, tensors in (("input", sg.InputsAsNumpy()), ("output", sg.OutputsAsNumpy())):
        for i in vector(tensors):
            _index(int(i), n, f"{where}'s {role}", "tensor")


def _check_tensor(tensor, where: str, n_buffers: int) -> None:
    tensor.Name()
    dtype = TENSOR_TYPES.get(tensor.Type())
    if dtype is None:
        raise _Corrupt(f"{where} has type {tensor.Type()}, which TFLite does not define")
    if tensor.Buffer():  # buffer 0: none, whether or not the model has buffers
        _index(tensor.Buffer(), n_buffers, f"{where}", "buffer")
    shape = vector(tensor.ShapeAsNumpy())
    if (shape < 0).any():
        raise _Corrupt(f"{where} has shape {[int(d) for d in shape]}, with a dimension below 0")
    q = tensor.Quantization()
    if q is not None:
        _check_quantization(q, dtype, where)


def _check_quantization(q, dtype: str, where: str) -> None:
    """Scales finite and above 0, zero points within the tensor type's range: what LiteRT's
    kernels assume (a zero point out of range crashes ``allocate_tensors``)."""
    scales, zero_points = vector(q.ScaleAsNumpy()), vector(q.ZeroPointAsNumpy())
    q.QuantizedDimension()
    bad = scales[~(np.isfinite(scales) & (scales > 0))]
    if bad.size:
        raise _Corrupt(f"{where} has quantization scale {bad[0]:g}; a scale is a finite number above 0")
    if dtype in _ZERO_POINT_TYPES and zero_points.size:
        lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
        bad = zero_points[(zero_points < lo) | (zero_points > hi)]
        if bad.size:
            raise _Corrupt(f"{where} ({dtype}) has zero point {int(bad[0])}, outside {lo}..{hi}")


def validate_flatbuffer(content: bytes, where: str, sha256: str | None = None) -> None:
    """Raise NotATFLiteModel or TruncatedModel unless ``content`` is a whole TFLite model whose
    every index is in range and that LiteRT builds and allocates
    (:func:`.reference.litert_refusal`; a model with custom operators is only built: LiteRT has
    no kernel for them, and :func:`.inspect.check_convertible` refuses it by name)."""
    if len(content) < 8 or content[4:8] != TFLITE_IDENTIFIER:
        raise NotATFLiteModel(
            f"{where} is not a TFLite model (no 'TFL3' flatbuffer identifier; "
            f"{len(content)} bytes)"
        )
    import tflite

    from .reference import litert_refusal

    with parsing(where, len(content)):
        model = tflite.Model.GetRootAsModel(content, 0)
        if model.SubgraphsLength() < 1:
            raise _Corrupt("it has no subgraph")
        codes = _walk(model, len(content))
    refusal = litert_refusal(content, sha256 or hashlib.sha256(content).hexdigest(), allocate=CUSTOM not in codes)
    if refusal:
        raise refusal.error(where)


def _shown(source: str) -> str:
    """How messages name the model ``source``: a URL without its secrets."""
    return redact_url(source) if _is_url(source) else source


def load_model(path_or_url: str | os.PathLike) -> LoadedModel:
    """Read and validate a model from a path, an http(s) URL or ``builtin:NAME``."""
    source = str(path_or_url)
    if source.startswith("builtin:"):
        from .builtin import builtin_model_path

        path = builtin_model_path(source)
    elif _is_url(source):
        path = download(source)
    else:
        path = Path(source).expanduser()
    content = read_model_file(path, _shown(source))
    sha256 = hashlib.sha256(content).hexdigest()
    validate_flatbuffer(content, _shown(source), sha256)
    return LoadedModel(path=path, content=content, sha256=sha256, source=source)


__all__ = ["CUSTOM", "LoadedModel", "PARSE_ERRORS", "TENSOR_TYPES", "TFLITE_IDENTIFIER", "builtin_code", "cache_dir",
           "load_model", "parsing", "read_model_file", "validate_flatbuffer", "vector"]
