"""Reading a TFLite model from a file or an http(s) URL, with validation.

URLs are downloaded once into a cache folder (``$TVMQ_CACHE`` or ``~/.cache/tvmq``), named by
the hash of the URL, with the SHA-256 of the content kept beside it and checked on every reuse.
A URL may carry the expected checksum as a fragment: ``https://host/m.tflite#sha256=<hex>``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tvmq.errors import DownloadError, ModelFileNotFound, NotATFLiteModel, TruncatedModel

TFLITE_IDENTIFIER = b"TFL3"


def cache_dir() -> Path:
    root = os.environ.get("TVMQ_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "tvmq"


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
    def tflite_model(self):
        """The parsed ``tflite.Model`` (flatbuffer accessors of the ``tflite`` package)."""
        if self._model is None:
            import tflite

            self._model = tflite.Model.GetRootAsModel(self.content, 0)
        return self._model


def _is_url(s: str) -> bool:
    return s.startswith("http://") or s.startswith("https://")


def _download(url: str) -> Path:
    base, _, fragment = url.partition("#")
    expected = None
    if fragment.startswith("sha256="):
        expected = fragment[len("sha256=") :].lower()
    key = hashlib.sha256(base.encode()).hexdigest()[:16]
    name = Path(urllib.request.url2pathname(base.rsplit("/", 1)[-1] or "model")).name or "model"
    folder = cache_dir() / "downloads" / key
    target = folder / name
    sumfile = folder / (name + ".sha256")
    if target.is_file() and sumfile.is_file():
        recorded = sumfile.read_text().strip()
        actual = hashlib.sha256(target.read_bytes()).hexdigest()
        if actual == recorded and (expected is None or expected == actual):
            return target
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(base, timeout=60) as resp:
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
            with os.fdopen(fd, "wb") as out:
                shutil.copyfileobj(resp, out)
    except urllib.error.HTTPError as err:
        raise DownloadError(f"cannot download {base}: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot download {base}: {reason}") from None
    digest = hashlib.sha256(Path(tmp).read_bytes()).hexdigest()
    if expected is not None and digest != expected:
        os.unlink(tmp)
        raise DownloadError(
            f"download of {base} has sha256 {digest}, but the URL asks for {expected}"
        )
    os.replace(tmp, target)
    sumfile.write_text(digest + "\n")
    return target


def _walk(model, size: int) -> None:
    """Touch every table the converter will read, so truncation shows here and not later."""
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            tensor.ShapeAsNumpy()
            tensor.Name()
            q = tensor.Quantization()
            if q is not None:
                q.ScaleAsNumpy()
                q.ZeroPointAsNumpy()
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            op.InputsAsNumpy()
            op.OutputsAsNumpy()
        sg.InputsAsNumpy()
        sg.OutputsAsNumpy()
    for c in range(model.OperatorCodesLength()):
        model.OperatorCodes(c).BuiltinCode()
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        n = buf.DataLength()
        if n:
            start = buf._tab.Vector(buf._tab.Offset(4))
            if start + n > size:
                raise IndexError(f"buffer {b} ends at byte {start + n}, file has {size}")
        offset = buf.Offset() if hasattr(buf, "Offset") else 0
        if offset and offset + buf.Size() > size:
            raise IndexError(f"buffer {b} ends at byte {offset + buf.Size()}, file has {size}")


def validate_flatbuffer(content: bytes, where: str) -> None:
    """Raise NotATFLiteModel or TruncatedModel unless ``content`` is a whole TFLite model."""
    if len(content) < 8 or content[4:8] != TFLITE_IDENTIFIER:
        raise NotATFLiteModel(
            f"{where} is not a TFLite model (no 'TFL3' flatbuffer identifier; "
            f"{len(content)} bytes)"
        )
    import tflite

    try:
        model = tflite.Model.GetRootAsModel(content, 0)
        if model.SubgraphsLength() < 1:
            raise IndexError("no subgraph")
        _walk(model, len(content))
    except Exception as err:  # struct.error, IndexError, UnicodeDecodeError ... from a cut file
        raise TruncatedModel(
            f"{where} is truncated or corrupt ({len(content)} bytes; {type(err).__name__}: {err})"
        ) from None


def load_model(path_or_url: str | os.PathLike) -> LoadedModel:
    """Read and validate a model from a path or an http(s) URL."""
    source = str(path_or_url)
    if source.startswith("builtin:"):
        from .builtin import builtin_model_path

        path = builtin_model_path(source)
    elif _is_url(source):
        path = _download(source)
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise ModelFileNotFound(f"model file not found: {source}")
        if path.is_dir():
            raise ModelFileNotFound(f"model path is a folder, not a .tflite file: {source}")
    try:
        content = path.read_bytes()
    except OSError as err:
        raise ModelFileNotFound(f"cannot read model file {source}: {err.strerror}") from None
    validate_flatbuffer(content, source)
    return LoadedModel(
        path=path, content=content, sha256=hashlib.sha256(content).hexdigest(), source=source
    )
