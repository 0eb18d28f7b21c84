"""Exported builds: ``model.so`` plus ``model.json`` metadata, loadable again without recompiling."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvmq.errors import ArtifactError, one_line

LIB_NAME = "model.so"
META_NAME = "model.json"


def export(executable, out_dir: Path, metadata: dict, export_fn=None) -> Path:
    """Write the library and its metadata into ``out_dir``; returns the library path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lib = out_dir / LIB_NAME
    if export_fn is not None:
        export_fn(executable, lib)
    else:
        executable.export_library(str(lib))
    meta = dict(metadata)
    meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    meta["library"] = LIB_NAME
    meta["library_bytes"] = lib.stat().st_size
    (out_dir / META_NAME).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return lib


@dataclass
class Artifact:
    """A library exported by tvmq, loaded into a Relax VM on this machine."""

    path: Path
    metadata: dict
    runnable: object

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.runnable.run(arrays)


def read_metadata(path: str | Path) -> tuple[Path, dict]:
    p = Path(path).expanduser()
    folder = p if p.is_dir() else p.parent
    meta_path = folder / META_NAME
    if not meta_path.is_file():
        raise ArtifactError(f"{path} is not a tvmq build: {meta_path} is missing")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ArtifactError(f"cannot read {meta_path}: {err}") from None
    lib = folder / meta.get("library", LIB_NAME)
    if not lib.is_file():
        raise ArtifactError(f"{path} is not a complete tvmq build: {lib} is missing")
    return lib, meta


def load(path: str | Path) -> Artifact:
    """Load an exported build (its folder, or its ``model.so``) for this machine's CPU."""
    import tvm

    from .compile import Runnable

    lib, meta = read_metadata(path)
    try:
        module = tvm.runtime.load_module(str(lib))
    except Exception as err:
        raise ArtifactError(f"cannot load {lib} on this machine: {one_line(err)}") from None
    return Artifact(path=lib, metadata=meta, runnable=Runnable(module))
