"""Shared fixtures.

Real models live in ``../shared/models`` (or ``$TVMQ_MODELS_DIR``); tests that need them skip
with a clear reason when they are absent. Tests that must always run build their own small
quantized models with TensorFlow's converter.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# the database backends (SQLite, and PostgreSQL when $TVMQ_TEST_POSTGRES_URL names a server)
from tests.db_backends import db_url, db_urls  # noqa: F401 - fixtures

REPO = Path(__file__).resolve().parents[1]


def shared_models_dir() -> Path:
    env = os.environ.get("TVMQ_MODELS_DIR")
    return Path(env) if env else REPO.parent / "shared" / "models"


@pytest.fixture(scope="session")
def models_dir() -> Path:
    d = shared_models_dir()
    if not (d / "mobilenet_v1_0.25_128_quant.tflite").is_file():
        pytest.skip(f"real models not found in {d} (set TVMQ_MODELS_DIR to the folder of shared/models)")
    return d


@pytest.fixture(scope="session")
def small_real_model(models_dir: Path) -> Path:
    """MobileNet V1 0.25/128 uint8: the fastest real model."""
    return models_dir / "mobilenet_v1_0.25_128_quant.tflite"


class ModelFactory:
    """Builds each test model once per session and hands out its path."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._paths: dict[str, Path] = {}

    def path(self, name: str) -> Path:
        if name not in self._paths:
            from tests import tflite_factory as f

            builders = {
                "uint8": lambda: f.quantized(f.small_cnn(), io_dtype="uint8"),
                "int8": lambda: f.quantized(f.small_cnn(), io_dtype="int8"),
                "uint8_per_tensor": lambda: f.quantized(f.small_cnn(), io_dtype="uint8", per_tensor=True),
                "float": lambda: f.float_model(f.small_cnn()),
                "dynamic_range": f.dynamic_range,
                "gather_nd": f.with_gather_nd,
                "conv_gather_nd_conv": f.conv_gather_nd_conv,
                "conv_then_custom": f.conv_then_custom,
                "custom_then_conv": f.custom_then_conv,
                "custom": f.with_custom_op,
                "segmentation": f.segmentation_like,
            }
            p = self.folder / f"{name}.tflite"
            p.write_bytes(builders[name]())
            self._paths[name] = p
        return self._paths[name]


@pytest.fixture(scope="session")
def model_factory(tmp_path_factory) -> ModelFactory:
    return ModelFactory(tmp_path_factory.mktemp("models"))
