"""int8 tuning records in ``tvmq-db``: their traces tensorize with tvmq's own intrinsics
(``tvmq_dot_*``), which TVM knows only once tvmq has registered them.

The commands run as a user runs them, in a fresh process (``python -m tvmq.cli.db``): inside
pytest the intrinsics are already registered by whatever imported :mod:`tvmq.int8.intrin` first,
and a command that forgets to register them would pass here and fail for the user.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._int8_helpers import uint8_qdq_conv
from tvmq.db import open_database

pytestmark = pytest.mark.timeout(300)

INTRINSIC = "tvmq_dot_vnni_u8i8"
NUM_RECORDS = 3


def tvmq_db(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tvmq.cli.db", *map(str, argv)],
                          capture_output=True, text=True, timeout=180)


def _int8_task():
    """A real int8 tuning task (a uint8 convolution lowered for VNNI), its target, and the trace of
    its first design-space point: tiled around ``tvmq_dot_vnni_u8i8`` and tensorized with it."""
    from tvmq.int8 import lower_qdq_to_int8
    from tvmq.targets import get_profile
    from tvmq.tuner.compile import lower_to_tir
    from tvmq.tuner.rules import design_space_schedule
    from tvmq.tuner.tasks import extract

    prof = get_profile("cascadelake")
    target = prof.tvm_target(2)
    mod, _, _ = uint8_qdq_conv(np.random.default_rng(3), (-128, 127), stride=2)
    lowering = lower_qdq_to_int8(mod, scheme=prof.int8_scheme)
    assert lowering.intrinsics == {INTRINSIC: 1}
    (task,) = [t for t in extract(lower_to_tir(lowering.mod, target), target) if t.task_name.startswith("int8_conv2d")]
    workload = task.dispatched[0]
    sch = design_space_schedule(workload, target)
    assert sch is not None and f'"{INTRINSIC}"' in str(sch.trace), "the design-space point is not tensorized"
    return task.task_name, workload, target, sch.trace


@pytest.fixture(scope="module")
def int8_db(tmp_path_factory) -> Path:
    """A database holding NUM_RECORDS tensorized records of one int8 task, as a tune writes them
    (the run times are made up: nothing is measured)."""
    from tvm.s_tir import meta_schedule as ms

    name, workload, target, trace = _int8_task()
    path = tmp_path_factory.mktemp("int8") / "int8.db"
    db = open_database(path)
    db.label_workloads([(name, workload)], module_equality="anchor-block")
    sid = db.begin_session(model_name="int8_conv", target_profile="cascadelake", target=target,
                           trials_requested=NUM_RECORDS)
    view = db.scoped(target, module_equality="anchor-block", session_id=sid)
    wl = view.commit_workload(workload)
    args = ms.arg_info.ArgInfo.from_prim_func(workload["main"])
    for i in range(NUM_RECORDS):
        view.commit_tuning_record(ms.database.TuningRecord(trace, wl, [1e-4 * (i + 1)] * 2, target, args))
    db.end_session(sid, "finished", trials_done=NUM_RECORDS)
    db.close()
    return path


def copy_of(db: Path, folder: Path) -> Path:
    dest = folder / db.name
    shutil.copy(db, dest)
    return dest


def count_records(db: Path) -> int:
    with open_database(db) as d:
        return d.count_records()


def test_check_and_fix_keep_int8_records(int8_db: Path, tmp_path: Path) -> None:
    db = copy_of(int8_db, tmp_path)
    proc = tvmq_db("--db", db, "check", "--fix")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no problems found" in proc.stdout and "delete" not in proc.stdout
    assert count_records(db) == NUM_RECORDS


def test_export_import_merge_int8_records(int8_db: Path, tmp_path: Path) -> None:
    from tvm.s_tir import meta_schedule as ms

    out = tmp_path / "ms"
    proc = tvmq_db("--db", int8_db, "export", out)
    assert proc.returncode == 0, proc.stderr
    assert f"{NUM_RECORDS} records" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["database_tuning_record.json", "database_workload.json"]
    exported = ms.database.JSONDatabase(work_dir=str(out), allow_missing=False).get_all_tuning_records()
    assert len(exported) == NUM_RECORDS
    assert all(f'"{INTRINSIC}"' in str(rec.trace) for rec in exported)

    imported = tmp_path / "imported.db"
    proc = tvmq_db("--db", imported, "import", out)
    assert proc.returncode == 0, proc.stderr
    assert f"Imported {NUM_RECORDS} records" in proc.stdout

    merged = tmp_path / "merged.db"
    proc = tvmq_db("--db", merged, "merge", int8_db)
    assert proc.returncode == 0, proc.stderr
    assert f"{NUM_RECORDS} records added" in proc.stdout

    proc = tvmq_db("--db", imported, "check")  # (merge copies rows as they are: the check above covers them)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for db in (imported, merged):
        with open_database(db) as d:
            (best,) = d.best_records()
            assert best.mean_run_secs == pytest.approx(1e-4)
            records = d.scoped(best.target_json).get_all_tuning_records()
        assert len(records) == NUM_RECORDS
        assert all(f'"{INTRINSIC}"' in str(rec.trace) for rec in records)


def in_process(capsys, *argv: str) -> tuple[int, str, str]:
    """``tvmq-db`` in this process (where a registration it forgot would not show)."""
    from tvmq.cli.db import main

    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


def test_records_that_need_an_unknown_intrinsic_are_kept(int8_db: Path, tmp_path: Path, capsys) -> None:
    """A trace naming an intrinsic this tvmq does not register (say, one a newer tvmq made) is
    reported, never deleted, and an export that meets it fails without leaving a file behind."""
    db = copy_of(int8_db, tmp_path)
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE tuning_records SET trace_json = replace(trace_json, ?, 'tvmq_dot_from_the_future') "
                     "WHERE id = (SELECT MIN(id) FROM tuning_records)", (INTRINSIC,))
    conn.close()
    code, out, _ = in_process(capsys, "--db", db, "check")
    assert code == 1 and "tvmq_dot_from_the_future" in out and "broken: record" in out
    code, out, _ = in_process(capsys, "--db", db, "check", "--fix")
    assert code == 1 and "kept: record" in out and "deleted:" not in out
    assert count_records(db) == NUM_RECORDS

    out_dir = tmp_path / "export" / "ms"
    code, out, err = in_process(capsys, "--db", db, "export", out_dir)
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "tvmq_dot_from_the_future" in err and "--fix" not in err
    assert not (tmp_path / "export").exists()

    code, out, _ = in_process(capsys, "--db", db, "check", "--json")
    assert code == 1
    (kept,) = json.loads(out)["records"]
    assert kept["kind"] == "unknown-intrinsic" and "tvmq_dot_from_the_future" in kept["reason"]
    assert kept["workload_name"].startswith("int8_conv2d") and kept["target_key"].startswith("llvm-cascadelake-")
