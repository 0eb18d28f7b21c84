"""The distribution installs non-editable under the `tvmq` namespace, with nothing at top level
that could collide with another package (`db`, `tuner`, `targets`...)."""

import email
import hashlib
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


SCRIPTS = ("tvmq-tune", "tvmq-run", "tvmq-db", "tvmq-release", "tvmq-diff")


@dataclass(frozen=True)
class Installed:
    """The wheel, and a fresh venv it is installed in (its dependencies: this environment's)."""

    wheel: Path
    env_dir: Path
    site: Path

    @property
    def python(self) -> Path:
        return self.env_dir / "bin" / "python"

    def run(self, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd, env=env, timeout=120)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    tmp_path = tmp_path_factory.mktemp("wheel")
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(REPO)], check=True, timeout=300, cwd=tmp_path)
    (wheel,) = wheels.glob("tvmq-*.whl")

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # The heavy dependencies (TVM, TensorFlow) come from this environment; tvmq itself does not.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, timeout=300, cwd=tmp_path)
    return Installed(wheel, env_dir, site)


def test_wheel_installs_into_fresh_venv(installed, tmp_path):
    env_dir, site, py = installed.env_dir, installed.site, installed.python
    top_level = sorted(p.name for p in site.iterdir() if p.is_dir() and not p.name.endswith((".dist-info", "__pycache__")))
    assert top_level == ["tvmq"], top_level
    assert {p.name for p in (site / "tvmq").iterdir() if p.is_dir()} >= {"db", "tuner", "targets", "model", "report", "cli", "int8"}
    assert list((site / "tvmq" / "targets" / "profiles").glob("*.toml")), "profiles are package data"

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    probe = ("import tvmq, tvmq.db, tvmq.tuner, tvmq.targets, tvmq.model; "
             "print(tvmq.db.__file__); "
             "from tvmq.targets import list_profiles; print(len(list_profiles()))")
    proc = subprocess.run([str(py), "-c", probe], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    db_file, n_profiles = proc.stdout.split()
    assert db_file.startswith(str(site / "tvmq" / "db"))
    assert int(n_profiles) >= 13
    for name in ("db", "tuner", "targets"):
        leak = subprocess.run([str(py), "-c", f"import {name}"], capture_output=True, cwd=tmp_path, env=env)
        assert leak.returncode != 0, f"a top-level '{name}' module was installed"

    for script in SCRIPTS:
        proc = subprocess.run([str(env_dir / "bin" / script), "--help"], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "usage:" in proc.stdout
        proc = installed.run(str(env_dir / "bin" / script), "--version", cwd=tmp_path)
        assert proc.returncode == 0 and proc.stdout.startswith(f"{script} 0."), proc.stderr


def test_wheel_ships_the_builtin_model(installed, tmp_path):
    """builtin:NAME is package data: it loads from the installed package, checksum checked,
    where TensorFlow cannot be imported."""
    from tvmq.model.builtin import BUILTINS

    (model,) = BUILTINS.values()
    data = installed.site / "tvmq" / "model" / "data" / f"{model.name}.tflite"
    assert hashlib.sha256(data.read_bytes()).hexdigest() == model.sha256
    with zipfile.ZipFile(installed.wheel) as wheel:
        assert f"tvmq/model/data/{model.name}.tflite" in wheel.namelist()
    probe = ("import sys\nsys.modules['tensorflow'] = None\nfrom tvmq.model import load_model\n"
             f"print(load_model('builtin:{model.name}').path)")
    proc = installed.run(str(installed.python), "-c", probe, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(data)


def test_tensorflow_only_under_an_extra(installed):
    """A plain install is lean: TensorFlow (1.25 GiB) is required only by the extras that need it,
    and LiteRT's wheel is asked for on every platform it has one (macOS calls Arm arm64)."""
    with zipfile.ZipFile(installed.wheel) as wheel:
        (name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(wheel.read(name))
    requires = [Requirement(r) for r in meta.get_all("Requires-Dist")]
    tensorflow = [r for r in requires if r.name.startswith("tensorflow")]
    assert tensorflow, "the test and convert extras need TensorFlow"
    for req in tensorflow:
        assert req.marker is not None and "extra" in str(req.marker), str(req)
        assert not req.marker.evaluate({"extra": ""}), str(req)
    assert {e for e in ("test", "convert") if any(r.marker.evaluate({"extra": e}) for r in tensorflow)} == \
        {"test", "convert"}
    (litert,) = [r for r in requires if r.name == "ai-edge-litert"]
    for machine in ("x86_64", "aarch64", "arm64"):
        assert litert.marker.evaluate({"platform_machine": machine, "extra": ""}), machine
