"""Where a run writes, checked before any work starts (:func:`outputs`): the output folder can be
made and written to, and the JSON report's path can be written, so that a long run never ends
unable to keep what it measured. The check creates nothing."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tvmq.errors import OutputError
from tvmq.options import OutputOptions


@dataclass(frozen=True)
class Outputs:
    """The folder of the library and the reports, and the JSON report's path (None for either:
    not known yet, until the model and the target name the default folder)."""

    out_dir: Path | None
    json_path: Path | None

    @property
    def markdown_path(self) -> Path | None:
        return self.out_dir / "report.md" if self.out_dir else None


def outputs(output: OutputOptions, default_dir: Path | None = None) -> Outputs:
    """Check ``output``'s folder (which may not exist yet; ``default_dir`` stands for it when it is
    not given) and JSON path (by default ``report.json`` in the folder); raises :class:`OutputError`."""
    out_dir = output.out_dir or default_dir
    if out_dir is not None:
        check_folder(Path(out_dir), "the output folder (--out)")
    json_path = output.json_path or (Path(out_dir) / "report.json" if out_dir is not None else None)
    if json_path is not None:
        _check_file(Path(json_path), "the JSON report (--json)")
    return Outputs(out_dir and Path(out_dir), json_path and Path(json_path))


def check_folder(folder: Path, what: str) -> None:
    """``folder`` is a folder this process can write in, or can be made: nothing is created (a run
    refused later leaves no empty folder behind)."""
    nearest = next(p for p in (folder, *folder.parents) if os.path.lexists(p))
    if not nearest.is_dir():
        raise OutputError(f"cannot make {what} {folder}: {nearest} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=nearest):
            pass
    except OSError as err:
        raise OutputError(f"cannot write {what} {folder}: {nearest}: {err.strerror or err}") from None


def _check_file(path: Path, what: str) -> None:
    """``path`` can be opened for writing (its folder: as for :func:`check_folder`), without
    truncating it or leaving a new file behind."""
    if not os.path.lexists(path):
        check_folder(path.parent, what)
        return
    try:
        with open(path, "ab"):
            pass
    except OSError as err:
        raise OutputError(f"cannot write {what} to {path}: {err.strerror or err}") from None


__all__ = ["Outputs", "check_folder", "outputs"]
