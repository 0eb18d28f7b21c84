"""``tvmq-db``: every subcommand, its output and its one-line errors."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tvm.s_tir import meta_schedule as ms

from tests._db_helpers import listed_database
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
    return listed_database(tmp_path / "tvmq.db")


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



def break_records(db: Path, *traces: str) -> list[int]:
    """Replace the traces of the first records with ``traces``; returns their ids."""
    conn = sqlite3.connect(db)
    with conn:
        ids = [i for (i,) in conn.execute("SELECT id FROM tuning_records ORDER BY id LIMIT ?", (len(traces),))]
        for rid, trace in zip(ids, traces):
            conn.execute("UPDATE tuning_records SET trace_json = ? WHERE id = ?", (trace, rid))
    conn.close()
    return ids


def count_records(db: Path) -> int:
    with open_database(db) as d:
        return d.count_records()


def test_check_fix_says_what_it_deletes_and_why(capsys, dbfile: Path) -> None:
    bad_json, unreplayable = break_records(dbfile, "garbage", '[[["NoSuchInstruction", [], [], []]], []]')
    code, out, _ = run(capsys, "--db", str(dbfile), "check")
    assert code == 1
    assert "1 records hold JSON that cannot be parsed" in out and "1 records have traces that cannot be replayed" in out
    assert f"broken: record {bad_json} (workload " in out and "--dry-run" in out

    code, out, _ = run(capsys, "--db", str(dbfile), "check", "--dry-run")
    assert code == 1
    assert f"would delete: record {bad_json} (workload " in out and f"would delete: record {unreplayable} " in out
    assert "llvm-cascadelake-" in out and "NoSuchInstruction" in out
    assert count_records(dbfile) == 10

    code, out, _ = run(capsys, "--db", str(dbfile), "check", "--fix", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["ok"] and not report["dry_run"]
    deleted = {r["id"]: r for r in report["deleted"]}
    assert set(deleted) == {bad_json, unreplayable}
    assert deleted[bad_json]["kind"] == "bad-json" and deleted[unreplayable]["kind"] == "unreplayable"
    assert all(r["workload_name"] == "main" and r["target_key"].startswith("llvm-cascadelake-")
               for r in deleted.values())
    assert count_records(dbfile) == 8
    code, out, _ = run(capsys, "--db", str(dbfile), "check", "--quick")
    assert code == 0


def test_a_failed_export_leaves_nothing_behind(capsys, dbfile: Path, tmp_path: Path) -> None:
    (rid,) = break_records(dbfile, '[[["NoSuchInstruction", [], [], []]], []]')
    out_dir = tmp_path / "new" / "ms"
    code, _, err = run(capsys, "--db", str(dbfile), "export", str(out_dir))
    assert code == 2 and f"Tuning record {rid} " in err and "NoSuchInstruction" in err
    assert "--fix" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "new").exists()

    code, _, _ = run(capsys, "--db", str(dbfile), "export", str(out_dir), "--target", "znver3")
    assert code == 0
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    code, _, err = run(capsys, "--db", str(dbfile), "export", str(out_dir), "--overwrite")
    assert code == 2
    assert {p.name: p.read_bytes() for p in out_dir.iterdir()} == before  # the old export is intact
    assert len(ms.database.JSONDatabase(work_dir=str(out_dir), allow_missing=False)) == 2

    run(capsys, "--db", str(dbfile), "check", "--fix")
    code, out, _ = run(capsys, "--db", str(dbfile), "export", str(out_dir), "--overwrite")
    assert code == 0 and "9 records" in out
    assert sorted(p.name for p in out_dir.iterdir()) == ["database_tuning_record.json", "database_workload.json"]


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


SECRET = "S3cr3tPw"


def assert_secret_kept(code: int, out: str, err: str) -> None:
    assert code == 2, out + err
    assert len(err.strip().splitlines()) == 1, err
    assert SECRET not in out + err and "Traceback" not in out + err


@pytest.mark.parametrize("argv", [
    ["--db", f"postgresql://u:{SECRET}@127.0.0.1:notaport/x", "sessions"],
    ["--db", f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/x?sslpassword={SECRET}", "sessions"],
    ["--db", "{db}", "merge", f"postgresql://u:{SECRET}@127.0.0.1:1/x"],
    ["--db", "{db}", "merge", f"postgresql://u:{SECRET}@127.0.0.1:notaport/x"],
])
def test_database_urls_keep_their_secrets(capsys, dbfile: Path, argv: list[str]) -> None:
    code, out, err = run(capsys, *[a.format(db=dbfile) for a in argv])
    assert_secret_kept(code, out, err)
    assert "postgresql" in err and "127.0.0.1" in err


def test_a_database_url_in_the_environment_is_a_url(capsys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TVMQ_DB", f"postgresql+psycopg://user:{SECRET}@127.0.0.1:1/db")
    code, out, err = run(capsys, "sessions")
    assert_secret_kept(code, out, err)
    assert "postgresql+psycopg://***@127.0.0.1:1/db" in err
    assert not any(tmp_path.iterdir())


def test_tvmq_tune_refuses_a_bad_database_before_any_work(tmp_path: Path) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not looked at")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tvmq.cli.tune", "--model", str(model), "--out", str(tmp_path / "o"),
                           "--db", f"postgresql://u:{SECRET}@127.0.0.1:notaport/x"],
                          capture_output=True, text=True, timeout=120)
    assert_secret_kept(proc.returncode, proc.stdout, proc.stderr)
    assert "tvmq-tune: database:" in proc.stderr
    assert time.monotonic() - started < 20
