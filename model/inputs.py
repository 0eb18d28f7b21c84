"""Model inputs: images through Pillow, or a deterministic synthetic input.

Image preprocessing follows the TFLite image-classification convention for quantized models:
the photo is converted to RGB (or L for one-channel inputs), resized bilinearly to the input's
height and width, and its 0..255 pixels are used as they are for a uint8 input, shifted by -128
for an int8 input, and scaled to [-1, 1] for a float input.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import ImageError, LabelsError

from .inspect import ModelInfo, TensorInfo


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
            found = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in exts)
            if not found:
                raise ImageError(f"image folder {p} holds no image files Pillow can read")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise ImageError(f"image not found: {p}")
    return out


def image_to_array(path: Path, tensor: TensorInfo) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if len(tensor.shape) != 4 or tensor.shape[3] not in (1, 3):
        raise ImageError(
            f"model input {tensor.name} has shape {tensor.shape}; images need an NHWC input "
            f"with 1 or 3 channels"
        )
    _, height, width, channels = tensor.shape
    try:
        with Image.open(path) as img:
            img = img.convert("RGB" if channels == 3 else "L")
            img = img.resize((width, height), Image.BILINEAR)
            pixels = np.asarray(img, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageError(f"cannot read image {path}: {err}") from None
    pixels = pixels.reshape(1, height, width, channels)
    if tensor.dtype == "uint8":
        return pixels
    if tensor.dtype == "int8":
        return (pixels.astype(np.int16) - 128).astype(np.int8)
    if tensor.dtype == "float32":
        return (pixels.astype(np.float32) - 127.5) / 127.5
    raise ImageError(f"model input {tensor.name} has dtype {tensor.dtype}; images need uint8, int8 or float32")


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


def make_inputs(info: ModelInfo, images: list[str] | None = None, seed: int = 0) -> list[InputSample]:
    """One sample per image (the model must have one image input), or one synthetic sample."""
    if images:
        if len(info.inputs) != 1:
            raise ImageError(
                f"{info.name} has {len(info.inputs)} inputs; --image needs a model with one image input"
            )
        return [
            InputSample(name=str(p), arrays=[image_to_array(p, info.inputs[0])])
            for p in expand_image_paths(images)
        ]
    return [InputSample(name=f"synthetic(seed={seed})", arrays=[synthetic_array(t, seed) for t in info.inputs])]


def load_labels(path: str | None) -> list[str] | None:
    if not path:
        return None
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabelsError(f"labels file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise LabelsError(f"cannot read labels file {path}: {err}") from None
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise LabelsError(f"labels file {path} is empty")
    return labels
