"""What a model is: loading (file or URL), validation, inspection, inputs, the TFLite reference.

- :func:`load_model` reads a ``.tflite`` file or ``http(s)://`` URL and validates the flatbuffer.
- :func:`inspect_model` tells inputs, outputs, operators and how the model is quantized.
- :func:`make_inputs` turns images (or nothing: a deterministic synthetic input) into arrays.
- :class:`Reference` runs the TFLite interpreter (LiteRT where it imports) for verification
  and benchmarking.
- :mod:`.builtin` holds the shipped default model (``builtin:NAME``) and the TensorFlow recipe that made it.
"""

from .loader import LoadedModel, load_model
from .inspect import ModelInfo, TensorInfo, inspect_model, check_convertible
from .inputs import InputSample, make_inputs, load_labels
from .reference import Reference

__all__ = [
    "LoadedModel",
    "load_model",
    "ModelInfo",
    "TensorInfo",
    "inspect_model",
    "check_convertible",
    "InputSample",
    "make_inputs",
    "load_labels",
    "Reference",
]
