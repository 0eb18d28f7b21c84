"""What users expect of every command: ``--version``, machine-readable listings (``tvmq-db … -f
json``), options before or after a subcommand, and ``tvmq-tune --json -`` keeping stdout for data."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import tvmq
from tests._db_helpers import listed_database
from tvmq.cli.db import LISTINGS
from tvmq.cli.db import main as db_main

REPO = Path(__file__).resolve().parents[1]
COMMANDS = ["tune", "run", "db", "release", "diff"]


def call(main, capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def command_main(name: str):
    try:
        return importlib.import_module(f"tvmq.cli.{name}").main
    except ModuleNotFoundError as err:
        if err.name == f"tvmq.cli.{name}":
            pytest.skip(f"tvmq-{name} is not written yet")
        raise


# ------------------------------------------------------------------------------------ --version


@pytest.mark.parametrize("name", COMMANDS)
def test_version_on_every_command(capsys, name):
    code, out, err = call(command_main(name), capsys, "--version")
    assert code == 0, err
    tvm, ffi = metadata.version("apache-tvm"), metadata.version("apache-tvm-ffi")
    assert out == f"tvmq-{name} {tvmq.__version__} (TVM {tvm}, tvm-ffi {ffi})\n"


def test_version_after_a_subcommand(capsys):
    code, out, _ = call(db_main, capsys, "sessions", "--version")
    assert code == 0 and out.startswith(f"tvmq-db {tvmq.__version__} (TVM ")


def test_version_does_not_import_tvm():
    """--version answers from the installed metadata: TVM's import takes seconds."""
    probe = ("import sys\nfrom tvmq.cli.tune import main\ntry:\n    main(['--version'])\nexcept SystemExit:\n    pass\n"
             "print('imported' if 'tvm' in sys.modules else 'clean')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.splitlines()[0], "clean"]


# ------------------------------------------------------------------------------ tvmq-db listings


@pytest.fixture
def dbfile(tmp_path: Path) -> Path:
    return listed_database(tmp_path / "tvmq.db")


def listing(capsys, *argv: str) -> dict:
    code, out, err = call(db_main, capsys, *argv)
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("flag", ["-f", "--format"])
def test_every_listing_prints_json(capsys, dbfile, flag):
    db = str(dbfile)
    found = {name: listing(capsys, "--db", db, name, flag, "json") for name in LISTINGS}
    assert all(str(dbfile) in doc["database"] for doc in found.values())

    (session,) = found["sessions"]["sessions"]
    assert (session["model_name"], session["state"], session["trials_done"], session["num_records"]) == \
        ("mobilenet_v1", "finished", 8, 8)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d.*", session["started_at"])
    assert sorted(w["num_records"] for w in found["workloads"]["workloads"]) == [3, 7]
    targets = {t["target_key"].split("-")[1]: t["num_records"] for t in found["targets"]["targets"]}
    assert targets == {"cascadelake": 8, "znver3": 2}
    records = found["best"]["records"]
    assert len(records) == 3 and all(r["mean_run_secs"] > 0 for r in records)
    assert found["check"]["ok"] is True and found["check"]["counts"]["records"] == 10


def test_listing_json_follows_filters(capsys, dbfile):
    doc = listing(capsys, "--db", str(dbfile), "best", "--target", "znver3", "--top", "5", "-f", "json")
    assert [r["target_key"].split("-")[1] for r in doc["records"]] == ["znver3", "znver3"]
    assert listing(capsys, "--db", str(dbfile), "sessions", "--limit", "1", "-f", "json")["sessions"]


def test_text_stays_the_default(capsys, dbfile):
    code, out, _ = call(db_main, capsys, "--db", str(dbfile), "sessions")
    assert code == 0 and "mobilenet_v1" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


def test_db_before_or_after_the_subcommand(capsys, dbfile, tmp_path):
    after = listing(capsys, "sessions", "--db", str(dbfile), "-f", "json")
    before = listing(capsys, "--db", str(dbfile), "sessions", "-f", "json")
    assert after == before and len(after["sessions"]) == 1
    # given twice, the one after the subcommand wins; given once, nothing resets it
    missing = tmp_path / "nowhere.db"
    assert listing(capsys, "--db", str(missing), "targets", "--db", str(dbfile), "-f", "json")["targets"]
    code, _, err = call(db_main, capsys, "--db", str(dbfile), "targets", "--db", str(missing))
    assert code == 2 and "nowhere.db" in err
    assert listing(capsys, "--timeout", "5", "workloads", "--db", str(dbfile), "-f", "json")["workloads"]
    assert listing(capsys, "workloads", "--timeout", "5", "--db", str(dbfile), "-f", "json")["workloads"]


def test_errors_stay_off_stdout(capsys, tmp_path):
    code, out, err = call(db_main, capsys, "sessions", "--db", str(tmp_path / "none.db"), "-f", "json")
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------ tvmq-tune --json -


def tune_without_tensorflow(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``tvmq-tune ARGV`` in a fresh process where ``import tensorflow`` fails, as in a lean install."""
    probe = ("import sys\nsys.modules['tensorflow'] = None\nfrom tvmq.cli.tune import main\nmain(sys.argv[1:])")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


def test_tune_json_to_stdout(model_factory, tmp_path):
    """``--json -``: stdout is the report and nothing else (the progress, the tables and what TVM
    and LiteRT print go to stderr), and report.json in --out is written as always. TensorFlow is
    not importable in the run: a lean install has none."""
    out = tmp_path / "out"
    done = tune_without_tensorflow(["--model", str(model_factory.path("uint8")), "--trials", "0", "--repeat", "3",
                                    "--bench-seconds", "0.1", "--db", str(tmp_path / "t.db"), "--out", str(out),
                                    "--json", "-"], tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "pass"
    assert report == json.loads((out / "report.json").read_text())
    assert "report:" in done.stderr and "verdict" not in done.stderr.split("report:")[-1]
    assert not (tmp_path / "-").exists()


def test_tune_json_to_stdout_stays_empty_on_a_bad_input(tmp_path):
    done = tune_without_tensorflow(["--model", str(tmp_path / "missing.tflite"), "--json", "-",
                                    "--db", str(tmp_path / "t.db"), "--out", str(tmp_path / "o")], tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("tvmq-tune: model-not-found:") and "missing.tflite" in last


def test_stdout_to_stderr_catches_every_writer():
    """Inside the block, Python's print, a write to file descriptor 1 (native code) and a child
    process all land on stderr; after it, stdout is the data's again."""
    probe = ("import os, subprocess, sys\nfrom tvmq.cli.common import stdout_to_stderr\n"
             "with stdout_to_stderr():\n    print('python')\n    os.write(1, b'native\\n')\n"
             "    subprocess.run([sys.executable, '-c', 'print(\"child\")'], check=True)\nprint('data')")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "data\n"
    assert done.stderr.split() == ["python", "native", "child"]
