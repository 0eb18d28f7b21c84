"""The distribution installs non-editable under the `tvmq` namespace, with nothing at top level
that could collide with another package (`db`, `tuner`, `targets`...)."""

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_installs_into_fresh_venv(tmp_path):
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

    for script in ("tvmq-tune", "tvmq-run", "tvmq-db"):
        proc = subprocess.run([str(env_dir / "bin" / script), "--help"], capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "usage:" in proc.stdout
