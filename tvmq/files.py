"""Writing files that readers may open at any moment, and where native code's stderr goes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path


def write_atomically(path: Path, text: str | bytes) -> None:
    """A reader sees the old file or the new one, never a part (a temporary file, then a rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        if isinstance(text, bytes):
            tmp.write_bytes(text)
        else:
            tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def native_stderr_to(path: str | os.PathLike) -> Iterator[int | None]:
    """Inside the block, file descriptor 2 (what C++ code such as TVM's or LiteRT's writes to) is
    appended to ``path`` (``os.devnull`` drops it). Yields a descriptor of the real stderr, open
    until the block ends; None where there is no real stderr (embedded), and nothing moves."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield None
        return
    try:
        with open(path, "ab") as target:
            os.dup2(target.fileno(), 2)
        yield saved
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


__all__ = ["native_stderr_to", "write_atomically"]
