"""Model inputs: images through Pillow, or a deterministic synthetic input.

Image preprocessing follows the TFLite image-classification convention for quantized models:
the photo is converted to RGB (or L for one-channel inputs), resized bilinearly to the input's
height and width, and its 0..255 pixels are used as they are for a uint8 input, shifted by -128
for an int8 input, and scaled to [-1, 1] for a float input. An image of more pixels than
``$TVMQ_MAX_IMAGE_PIXELS`` (:data:`tvmq.limits.IMAGE_PIXELS`) is refused before it is decoded.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import ImageError, InputArrayError, LabelsError, one_line
from tvmq.limits import IMAGE_PIXELS

from .inspect import ModelInfo, TensorInfo

MAX_LABELS_BYTES = 16 << 20  # one class name a line: far more than any labels file holds


@dataclass
class InputSample:
    """One set of model inputs, named after where it came from."""

    name: str
    arrays: list[np.ndarray]


def _image_extensions() -> set[str]:
    from PIL import Image

    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def expand_image_paths(paths: list[str]) -> list[Path]:
    """Files as given; folders expand to the image files they hold, sorted."""
    out: list[Path] = []
    exts = None
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            exts = exts or _image_extensions()
            try:
                found = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in exts)
            except OSError as err:
                raise ImageError(f"cannot list image folder {p}: {err.strerror or err}") from None
            if not found:
                raise ImageError(f"image folder {p} holds no image files Pillow can read")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        elif path.exists():
            raise ImageError(f"image {p} is not a regular file")
        else:
            raise ImageError(f"image not found: {p}")
    return out


def image_to_array(path: Path, tensor: TensorInfo) -> np.ndarray:
    """The image at ``path`` as ``tensor``'s input array (see the module's docstring); refused with
    :class:`ImageError` when Pillow cannot read it or it has more pixels than ``$TVMQ_MAX_IMAGE_PIXELS``."""
    cap = IMAGE_PIXELS.value()
    shape = list(tensor.shape) + ([1] if len(tensor.shape) == 3 else [])  # [1, H, W]: one gray channel
    if len(shape) != 4 or shape[3] not in (1, 3) or min(shape[1:3]) < 1 or shape[1] * shape[2] > cap:
        raise ImageError(
            f"model input {tensor.name} has shape {tensor.shape}; images need an NHWC input "
            f"with 1 or 3 channels (or [1, H, W], gray) and at most {cap} pixels"
        )
    _, height, width, channels = shape
    pixels = _decode(path, "RGB" if channels == 3 else "L", (width, height), cap)
    pixels = pixels.reshape(tensor.shape)
    if tensor.dtype == "uint8":
        return pixels
    if tensor.dtype == "int8":
        return (pixels.astype(np.int16) - 128).astype(np.int8)
    if tensor.dtype == "float32":
        return (pixels.astype(np.float32) - 127.5) / 127.5
    raise ImageError(f"model input {tensor.name} has dtype {tensor.dtype}; images need uint8, int8 or float32")


def _decode(path: Path, mode: str, size: tuple[int, int], cap: int) -> np.ndarray:
    """``path``'s pixels converted to ``mode`` and resized to ``size``, when it has at most ``cap``
    pixels (read from its header, before anything is decoded)."""
    from PIL import Image

    pixels = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # tvmq's cap decides, below
        try:
            with Image.open(path) as img:
                pixels = img.width * img.height
                if pixels <= cap:
                    return np.asarray(img.convert(mode).resize(size, Image.BILINEAR), dtype=np.uint8)
        except Image.DecompressionBombError:  # over twice Pillow's own cap: refused by Pillow itself
            pass
        except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, struct.error... on a bad file
            raise ImageError(f"cannot read image {path}: {one_line(err)}") from None
    raise ImageError(f"image {path} has {pixels or 'too many'} pixels, more than the {cap} tvmq decodes "
                     "(the limit, $TVMQ_MAX_IMAGE_PIXELS)")


def synthetic_array(tensor: TensorInfo, seed: int) -> np.ndarray:
    """Deterministic input: the same model and seed always give the same array."""
    digest = hashlib.sha256(f"{tensor.name}:{seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    shape = [max(1, d) for d in tensor.shape]
    dt = np.dtype(tensor.dtype)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dt)
    if dt.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    return rng.uniform(-1.0, 1.0, size=shape).astype(dt)


def image_input(info: ModelInfo) -> int:
    """Which input an image feeds: the only one, or the only one shaped as an image (rank 4, one,
    or three channels); :class:`ImageError` when none or several are."""
    if len(info.inputs) == 1:
        return 0
    images = [i for i, t in enumerate(info.inputs) if len(t.shape) == 4 and t.shape[-1] in (1, 3)]
    if len(images) != 1:
        shapes = ", ".join(f"{t.name} {list(t.shape)}" for t in info.inputs)
        raise ImageError(f"{info.name} has {len(info.inputs)} inputs ({shapes}) and "
                         f"{'none' if not images else 'several'} of them is an image (NHWC, 1 or 3 channels): "
                         f"--image cannot tell which one to feed")
    return images[0]


MAX_INPUT_FILE_BYTES = 1 << 30


def read_input_arrays(info: ModelInfo, specs: list[str]) -> dict[int, np.ndarray]:
    """``NAME=FILE.npy`` each (``--input``): the array for the input NAME, by input position. The
    file must be a plain ``.npy`` (no pickled objects) of the input's exact shape and dtype."""
    by_name = {t.name: i for i, t in enumerate(info.inputs)}
    arrays: dict[int, np.ndarray] = {}
    for spec in specs:
        name, sep, path = spec.rpartition("=")
        if not sep or not name or not path:
            raise InputArrayError(f"--input {spec!r}: expected NAME=FILE.npy")
        if name not in by_name:
            raise InputArrayError(f"--input {spec!r}: {info.name} has no input {name!r}; its inputs are "
                                  + ", ".join(repr(n) for n in by_name))
        tensor = info.inputs[by_name[name]]
        try:
            if Path(path).stat().st_size > MAX_INPUT_FILE_BYTES:
                raise InputArrayError(f"--input {name}: {path} is over {MAX_INPUT_FILE_BYTES} bytes")
            array = np.load(path, allow_pickle=False)
        except InputArrayError:
            raise
        except (OSError, ValueError, EOFError) as err:
            raise InputArrayError(f"--input {name}: cannot read {path} as a .npy array: {one_line(err)}") from None
        if not isinstance(array, np.ndarray):
            raise InputArrayError(f"--input {name}: {path} holds several arrays (.npz); give one .npy")
        shape = tuple(max(1, d) for d in tensor.shape)
        if array.shape != shape or array.dtype != np.dtype(tensor.dtype):
            raise InputArrayError(f"--input {name}: {path} holds {array.dtype} {list(array.shape)}, the input "
                                  f"takes {tensor.dtype} {list(shape)}")
        arrays[by_name[name]] = array
    return arrays


def make_inputs(info: ModelInfo, images: list[str] | None = None, seed: int = 0,
                arrays: dict[int, np.ndarray] | None = None) -> list[InputSample]:
    """One sample per image, fed to the model's image input (:func:`image_input`), the other inputs
    (a detector's recurrent state) seeded as the synthetic sample's; or one synthetic sample.
    ``arrays`` (:func:`read_input_arrays`): inputs given as they are, by position, over both."""
    arrays = arrays or {}
    synthetic = [arrays[i] if i in arrays else synthetic_array(t, seed) for i, t in enumerate(info.inputs)]
    if images:
        which = image_input(info)
        if which in arrays:
            raise InputArrayError(f"--input {info.inputs[which].name} and --image both feed the input "
                                  f"{info.inputs[which].name!r}: give one of them")
        return [
            InputSample(name=str(p), arrays=[image_to_array(p, t) if i == which else synthetic[i]
                                             for i, t in enumerate(info.inputs)])
            for p in expand_image_paths(images)
        ]
    given = ", ".join(info.inputs[i].name for i in sorted(arrays))
    name = f"synthetic(seed={seed})" if not arrays else (f"--input {given}" if len(arrays) == len(info.inputs)
                                                          else f"--input {given}, synthetic(seed={seed})")
    return [InputSample(name=name, arrays=synthetic)]


def load_labels(path: str | None) -> list[str] | None:
    """The class names of a labels file, one a line; None without a file."""
    if not path:
        return None
    p = Path(path).expanduser()
    if p.exists() and not p.is_file():
        raise LabelsError(f"labels file {path} is not a regular file")
    try:
        with open(p, "rb") as f:
            data = f.read(MAX_LABELS_BYTES + 1)
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise LabelsError(f"labels file not found: {path}") from None
    except (OSError, ValueError) as err:  # ValueError: not UTF-8, or a NUL in the path
        raise LabelsError(f"cannot read labels file {path}: {one_line(err)}") from None
    if len(data) > MAX_LABELS_BYTES:
        raise LabelsError(f"labels file {path} is over {MAX_LABELS_BYTES} bytes; it should hold one class name a line")
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise LabelsError(f"labels file {path} is empty")
    return labels
