"""The tuning engine end to end, on a small quantized model the tests make themselves.

MetaSchedule with the XGBoost cost model measures real candidates here, so these tests take
minutes (mostly the build workers' one-time import of TVM's tensor intrinsics).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli_helpers import load_json, run_tune
from tvmq.db import open_database

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _tune_argv(model: Path, db: Path, out: Path, report: Path, trials: int, *extra: str) -> list[str]:
    return ["--model", str(model), "--db", str(db), "--out", str(out), "--json", str(report),
            "--trials", str(trials), "--repeat", "5", "--bench-seconds", "0.1", *extra]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, model_factory):
    """One real tuning session (24 trials) into a fresh database, shared by the tests below."""
    from tvmq.cli.tune import main  # capsys is function-scoped: call the CLI directly

    folder = tmp_path_factory.mktemp("tuned")
    db, report = folder / "t.db", folder / "first.json"
    model = model_factory.path("uint8")
    try:
        main(_tune_argv(model, db, folder / "out", report, 24))
        rc = 0
    except SystemExit as exc:
        rc = exc.code
    assert rc == 0
    return {"db": db, "model": model, "report": load_json(report), "folder": folder}


def test_first_session_tunes_and_records(tuned):
    r = tuned["report"]
    t = r["tuning"]
    assert r["verdict"] == "pass"
    assert 0 < t["trials"] <= 24 + 8  # the last round may finish its batch
    assert t["tasks_total"] >= 5 and t["tasks_from_db"] == 0
    assert t["task_dedup"]["fused_calls"] >= t["task_dedup"]["structural"] >= t["task_dedup"]["anchor-block"]
    curve = t["curve"]
    # no untuned phase: the first point is the first measured batch
    assert 0 < curve[0]["trials"] <= 32 and curve[-1]["trials"] == t["trials"]
    assert all(b["elapsed_s"] >= a["elapsed_s"] for a, b in zip(curve, curve[1:]))
    # an end-to-end estimate only once every task has a measured schedule, and then it only improves
    estimates = [p["estimated_ms"] for p in curve if p["estimated_ms"] is not None]
    assert all(b <= a + 1e-9 for a, b in zip(estimates, estimates[1:])), "best only improves"
    assert not estimates or all(x["tuned_ms"] or x["db_best_ms"] for x in t["tasks"])
    tuned_tasks = [x for x in t["tasks"] if x["trials"]]
    assert tuned_tasks and all(x["first_round_ms"] and x["tuned_ms"] for x in tuned_tasks)
    assert all(x["tuned_ms"] <= x["first_round_ms"] * 1.001 for x in tuned_tasks), "the best is never worse"
    assert all(x["untuned_ms"] is None for x in t["tasks"]), "untuned kernels are not measured by default"
    assert "tvm_untuned" in r["latency_ms"] and r["latency_ms"]["speedup_tuned_over_untuned"] > 0
    db = open_database(tuned["db"])
    (session,) = db.sessions()
    assert session.status == "finished" and db.count_records() >= t["trials"] - 2


def test_warm_start_trains_the_cost_model_on_the_database(tuned):
    """A second search starts from a cost model trained on every measured record of the target:
    its ranking of candidates is no longer a constant."""
    from tvm.s_tir import meta_schedule as ms

    from tvmq.targets import host_info, resolve_target
    from tvmq.tuner.warmstart import measured, warm_start

    profile, _ = resolve_target("native")
    target = profile.tvm_target(num_cores=min(profile.default_threads or 1, host_info().logical_cores))
    db = open_database(tuned["db"])
    view = db.scoped(target)
    records = [r for r in view.get_all_tuning_records() if measured(r)]
    assert len(records) >= 8
    model = ms.cost_model.XGBModel(config=ms.cost_model.xgb_model.XGBConfig(seed=0, nthread=1),
                                   num_tuning_cores=1, adaptive_training=True)
    assert warm_start(model, view, target, threads=1) == len(records)
    assert model.booster is not None and model.data_size == len(records)
    assert len(model.data) == len({r.workload.__hash__() for r in records}), "one feature group per workload"
    # the trained model ranks the stored schedules of one workload apart
    by_workload: dict = {}
    for r in records:
        by_workload.setdefault(r.workload.__hash__(), []).append(r)
    group = max(by_workload.values(), key=len)
    context = ms.TuneContext(mod=group[0].workload.mod, target=target, num_threads=1, task_name="check")
    scores = model.predict(context, [r.as_measure_candidate() for r in group])
    assert len(set(float(x) for x in scores)) > 1
    # an empty database leaves the model untouched
    empty = open_database(tuned["folder"] / "empty.db")
    fresh = ms.cost_model.XGBModel(adaptive_training=True)
    assert warm_start(fresh, empty.scoped(target), target, threads=1) == 0 and fresh.booster is None


def test_rerun_with_zero_trials_reuses_without_measuring(tuned, capsys, tmp_path):
    db = open_database(tuned["db"])
    before = db.count_records()
    report = tmp_path / "again.json"
    start = time.perf_counter()
    rc, err = run_tune(capsys, _tune_argv(tuned["model"], tuned["db"], tmp_path / "o", report, 0))
    assert rc == 0, err
    r = load_json(report)
    assert db.count_records() == before, "a --trials 0 run measures nothing"
    assert r["tuning"]["trials"] == 0
    covered = sum(1 for x in tuned["report"]["tuning"]["tasks"] if x["trials"])
    assert r["tuning"]["tasks_from_db"] == covered
    assert "tvm_untuned" in r["latency_ms"], "the build used the tuned schedules"
    assert r["timings_s"]["tune"] < 30 and time.perf_counter() - start < 300


def test_records_never_serve_another_target(tuned, capsys, tmp_path):
    from tvmq.targets import list_profiles, resolve_target

    native, _ = resolve_target("native")
    other = next(p for p in list_profiles() if p.can_run_here and p.name != native.name and p.arch == native.arch)
    report = tmp_path / "other.json"
    rc, err = run_tune(capsys, _tune_argv(tuned["model"], tuned["db"], tmp_path / "o", report, 0, "--target", other.name))
    assert rc == 0, err
    r = load_json(report)
    assert r["tuning"]["tasks_from_db"] == 0 and not any(x["in_db"] for x in r["tuning"]["tasks"])
    assert "tvm_untuned" not in r["latency_ms"]


def _spawn_tune(model: Path, db: Path, out: Path, trials: int, seed: int = 0) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    argv = [sys.executable, "-m", "tvmq.cli.tune", *_tune_argv(model, db, out, out / "r.json", trials),
            "--seed", str(seed)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=str(out.parent), start_new_session=True)


def _wait_for_records(db_path: Path, proc: subprocess.Popen, at_least: int, timeout: float = 400) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"tuning ended early (rc={proc.returncode}): {proc.stderr.read()[-3000:]}")
        if db_path.exists():
            n = open_database(db_path).count_records()
            if n >= at_least:
                return n
        time.sleep(1.0)
    proc.kill()
    pytest.fail("no records appeared in time")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_tuning_keeps_records_and_resumes(tmp_path, model_factory, sig):
    db_path = tmp_path / "t.db"
    out = tmp_path / "out"
    out.mkdir()
    proc = _spawn_tune(model_factory.path("uint8"), db_path, out, trials=2000)
    seen = _wait_for_records(db_path, proc, at_least=6)
    os.killpg(proc.pid, sig) if sig == signal.SIGKILL else proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    db = open_database(db_path)
    assert db.count_records() >= seen, "every committed record survives"
    assert db.check(deep=True).ok
    (session,) = db.sessions()
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr[-2000:]
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert session.status == "interrupted"
    else:
        assert proc.returncode == -signal.SIGKILL
        assert session.status == "running"  # nobody could close it; the records are what counts
    # A rerun resumes from what is stored: it builds from the database and tunes the rest.
    resume = _spawn_tune(model_factory.path("uint8"), db_path, out, trials=0)
    _, stderr = resume.communicate(timeout=600)
    assert resume.returncode == 0, stderr[-3000:]
    r = load_json(out / "r.json")
    assert r["verdict"] == "pass" and r["tuning"]["tasks_from_db"] >= 1


def test_two_processes_tune_into_one_sqlite_file(tmp_path, model_factory):
    db_path = tmp_path / "shared.db"
    outs = [tmp_path / "a", tmp_path / "b"]
    for o in outs:
        o.mkdir()
    procs = [_spawn_tune(model_factory.path("uint8"), db_path, outs[0], trials=12, seed=1),
             _spawn_tune(model_factory.path("int8"), db_path, outs[1], trials=12, seed=2)]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
        # stderr is a pipe, not a terminal: plain progress lines instead of a bar
        assert re.search(r"^tuning \d+:\d\d: \d+ trials \(\d+/min\), \d+ tasks searched", err, re.M), err[-3000:]
        assert "Created TensorFlow Lite XNNPACK delegate" not in err
    db = open_database(db_path)
    sessions = db.sessions()
    assert len(sessions) == 2 and all(s.status == "finished" for s in sessions)
    reports = [load_json(o / "r.json") for o in outs]
    assert db.count_records() >= sum(r["tuning"]["trials"] for r in reports) - 4
