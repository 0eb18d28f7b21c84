"""Versions of the stack, for reports and database sessions."""

from __future__ import annotations

import platform
from importlib import metadata


def _v(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def stack_versions(reference_name: str | None = None) -> dict:
    import tvmq

    out = {
        "tvmq": tvmq.__version__,
        "tvm": _v("apache-tvm"),
        "tvm-ffi": _v("apache-tvm-ffi"),
        "tflite_interpreter": reference_name,
        "numpy": _v("numpy"),
        "python": platform.python_version(),
    }
    return {k: v for k, v in out.items() if v}
