"""The caps on what tvmq reads, so that no input can exhaust its memory or its time.

Each cap has a documented default and an environment variable that overrides it:

========================  ===============  ==========================================================
variable                  default          caps
========================  ===============  ==========================================================
``TVMQ_MAX_MODEL_BYTES``  2147483647       a model file read or downloaded (a flatbuffer's own limit:
                                           its offsets are 32-bit, so a TFLite model is under 2 GiB)
``TVMQ_MAX_IMAGE_PIXELS`` 100000000        an ``--image`` (width × height; 10000 × 10000), checked
                                           before it is decoded
``TVMQ_DOWNLOAD_TIMEOUT`` 900              seconds a model download may take in all, however slowly
                                           the server sends
========================  ===============  ==========================================================
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from tvmq.errors import UsageError


@dataclass(frozen=True)
class Limit:
    """A positive cap, read from ``env`` when it is set, else ``default``."""

    env: str
    default: int | float
    what: str  # what it caps, for the message about a bad setting

    def value(self) -> int | float:
        text = os.environ.get(self.env, "").strip()
        if not text:
            return self.default
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            raise UsageError(f"${self.env} ({self.what}) must be a positive number, not {text!r}")
        return int(number) if isinstance(self.default, int) else number


MODEL_BYTES = Limit("TVMQ_MAX_MODEL_BYTES", 2**31 - 1, "the largest model file, in bytes")
IMAGE_PIXELS = Limit("TVMQ_MAX_IMAGE_PIXELS", 100_000_000, "the largest image, in pixels")
DOWNLOAD_SECONDS = Limit("TVMQ_DOWNLOAD_TIMEOUT", 900.0, "the longest a model download may take, in seconds")

__all__ = ["DOWNLOAD_SECONDS", "IMAGE_PIXELS", "Limit", "MODEL_BYTES"]
