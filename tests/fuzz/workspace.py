"""The files the scripted cases feed the commands, made once per corpus run in one folder: the
models, an existing file and folder, random bytes, a FIFO, a decompression-bomb PNG, a library
whose constructor leaves a marker, and a secret to plant."""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

PLANTED_C = r"""
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((constructor)) static void planted(void) {
    const char *marker = getenv("TVMQ_FUZZ_MARKER");
    if (marker) { int fd = open(marker, O_CREAT | O_WRONLY, 0600); if (fd >= 0) close(fd); }
}
"""
MARKER_ENV = "TVMQ_FUZZ_MARKER"


def png_bomb(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A PNG whose header says ``width`` x ``height`` grey pixels; only its first rows follow."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(bytes((width + 1) * 4))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def planted_library(folder: Path) -> Path | None:
    """A shared library that only creates ``$TVMQ_FUZZ_MARKER`` when loaded (None without gcc)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        return None
    src, lib = folder / "planted.c", folder / "planted.so"
    src.write_text(PLANTED_C)
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(lib), str(src)], check=True, capture_output=True)
    return lib


@dataclass
class Workspace:
    root: Path
    model: Path  # a small quantized model (the tests' factory)
    other_model: Path  # another one: its library is swapped into the first one's build
    real_model: Path | None  # mobilenet_v1_0.25_128_quant.tflite when ../shared/models has it
    secret: str

    @classmethod
    def create(cls, root: Path, model: Path, other_model: Path, real_model: Path | None = None) -> Workspace:
        ws = cls(root, model, other_model, real_model, "tvmqFuzz" + os.urandom(6).hex())
        shutil.rmtree(ws.outs, ignore_errors=True)  # a kept folder, used again
        for d in (ws.cwd, ws.cache, ws.outs, ws.adir, ws.markers):
            d.mkdir(parents=True, exist_ok=True)
        ws.afile.write_text("an existing file\n")
        ws.garbage.write_bytes(os.urandom(4096))
        if not ws.fifo.exists():
            os.mkfifo(ws.fifo)
        png_bomb(ws.bomb)
        planted_library(root)
        return ws

    cwd = property(lambda self: self.root / "cwd")  # where the commands run (./tvmq.db lands here)
    cache = property(lambda self: self.root / "cache")  # $TVMQ_CACHE
    outs = property(lambda self: self.root / "outs")
    db = property(lambda self: self.root / "tvmq.db")  # the tvmq-tune cases'
    build_db = property(lambda self: self.root / "builds.db")  # the builds', then read and copied by tvmq-db's
    afile = property(lambda self: self.root / "a-file.txt")
    adir = property(lambda self: self.root / "a-folder")
    garbage = property(lambda self: self.root / "garbage.bin")
    fifo = property(lambda self: self.root / "a-fifo")
    bomb = property(lambda self: self.root / "bomb-20000x20000.png")
    markers = property(lambda self: self.root / "markers")

    @property
    def planted(self) -> Path | None:
        lib = self.root / "planted.so"
        return lib if lib.is_file() else None

    def out(self, name: str) -> Path:
        """A folder path of its own for one case (not created): its name in safe characters, and a
        hash of it, since two names may read the same in safe characters ("[]" and "{}")."""
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        return self.outs / f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TVMQ_")}
        return {**env, "TVMQ_CACHE": str(self.cache), "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "200"}
