"""``tvmq-db``: every subcommand, its output and its one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tvm.s_tir import meta_schedule as ms

from tests._db_helpers import ZNVER3, fill, matmul, target
from tvmq.cli.db import build_parser, main
from tvmq.db import open_database

pytestmark = pytest.mark.timeout(120)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return int(info.value.code or 0), out, err


@pytest.fixture
def dbfile(tmp_path: Path) -> Path:
    path = tmp_path / "tvmq.db"
    db = open_database(path)
    sid = db.begin_session(model_name="mobilenet_v1", target_profile="cascadelake", target=target(),
                           trials_requested=64)
    fill(db.scoped(target(), session_id=sid), matmul(), 5)
    fill(db.scoped(target(), session_id=sid), matmul(32), 3, seed=2)
    db.end_session(sid, "finished", trials_done=8)
    fill(db.scoped(target(ZNVER3)), matmul(), 2, seed=3)
    db.close()
    return path


def test_help_reads_like_a_manual(capsys) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for word in ("sessions", "workloads", "targets", "best", "export", "import", "merge", "prune", "check",
                 "--db", "examples:", "exit status"):
        assert word in out
    code, out, _ = run(capsys, "prune", "--help")
    assert code == 0 and "--keep" in out
    assert build_parser().prog == "tvmq-db"


def test_listing_commands(capsys, dbfile: Path) -> None:
    code, out, _ = run(capsys, "--db", str(dbfile), "sessions")
    assert code == 0 and "mobilenet_v1" in out and "finished" in out and "8/64" in out
    code, out, _ = run(capsys, "--db", str(dbfile), "workloads")
    assert code == 0 and out.count("main") == 2
    code, out, _ = run(capsys, "--db", str(dbfile), "targets")
    assert code == 0 and "llvm-cascadelake-" in out and "llvm-znver3-" in out
    code, out, _ = run(capsys, "--db", str(dbfile), "best")
    assert code == 0 and out.count("llvm-cascadelake-") == 2 and out.count("llvm-znver3-") == 1
    code, out, _ = run(capsys, "--db", str(dbfile), "best", "--target", "znver3", "--top", "5")
    assert code == 0 and out.count("llvm-znver3-") == 2 and "cascadelake" not in out
    code, out, _ = run(capsys, "--db", str(dbfile), "workloads", "--target", "znver3")
    assert code == 0 and out.count("main") == 1


def test_export_import_merge_prune_check(capsys, dbfile: Path, tmp_path: Path) -> None:
    code, out, _ = run(capsys, "--db", str(dbfile), "export", str(tmp_path / "ms"), "--target", "cascadelake")
    assert code == 0 and "8 records" in out
    assert len(ms.database.JSONDatabase(work_dir=str(tmp_path / "ms"), allow_missing=False)) == 8

    fresh = tmp_path / "fresh.db"
    code, out, _ = run(capsys, "--db", str(fresh), "import", str(tmp_path / "ms"))
    assert code == 0 and "Imported 8 records" in out
    code, out, _ = run(capsys, "--db", str(fresh), "merge", str(dbfile))
    assert code == 0 and "2 records added" in out and "8 already present" in out and "1 sessions added" in out

    code, out, _ = run(capsys, "--db", str(fresh), "prune", "--keep", "1")
    assert code == 0 and "Deleted 7 of 10 records" in out
    code, out, _ = run(capsys, "--db", str(fresh), "check")
    assert code == 0 and "ok" in out

    import sqlite3

    with sqlite3.connect(fresh) as conn:
        conn.execute("UPDATE tuning_records SET trace_json = 'garbage' WHERE id = (SELECT MIN(id) FROM tuning_records)")
    code, out, _ = run(capsys, "--db", str(fresh), "check")
    assert code == 1 and "problem" in out and "cannot be replayed" in out
    code, out, _ = run(capsys, "--db", str(fresh), "check", "--fix")
    assert code == 0
    code, out, _ = run(capsys, "--db", str(fresh), "check", "--quick")
    assert code == 0


@pytest.mark.parametrize("argv, message", [
    (["--db", "{tmp}/missing.db", "sessions"], "There is no tuning database at"),
    (["--db", "{db}", "best", "--target", "power9"], "No records for target 'power9'"),
    (["--db", "{db}", "best", "--target", "llvm"], "matches several targets"),
    (["--db", "{db}", "export", "{db}"], "is a file, not a folder"),
    (["--db", "{db}", "import", "{tmp}/nothing"], "is not a folder"),
    (["--db", "{db}", "prune", "--keep", "0"], "at least 1"),
    (["--db", "{db}", "merge", "{db}"], "into itself"),
    (["--db", "{tmp}", "sessions"], "is a directory"),
])
def test_errors_are_one_line(capsys, dbfile: Path, tmp_path: Path, argv: list[str], message: str) -> None:
    argv = [a.format(tmp=tmp_path, db=dbfile) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err + out


def test_entry_point_runs_as_a_program(dbfile: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "tvmq.cli.db", "--db", str(dbfile), "targets"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "llvm-znver3-" in proc.stdout
