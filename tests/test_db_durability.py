"""Durability and concurrency of the SQLite tuning database, with real child processes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tvmq.db import open_database
from tvmq.errors import DatabaseLocked

REPO = Path(__file__).resolve().parents[1]


def _spawn(*args: str) -> subprocess.Popen:
    """``python -m tests._db_child ARGS`` from the repository root (which puts it on sys.path)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "tests._db_child", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(REPO), env=env)


def _read_until(proc: subprocess.Popen, predicate, timeout: float = 60.0) -> list[str]:
    """Lines of the child's stdout until ``predicate(line)``; fails on timeout or early exit."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"child exited early (rc={proc.wait()}): {proc.stderr.read()[-2000:]}")
        lines.append(line.strip())
        if predicate(line.strip()):
            return lines
    proc.kill()
    pytest.fail("child too slow")


def _committed(lines: list[str]) -> int:
    return max([int(x.split()[1]) for x in lines if x.startswith("committed ")] or [0])


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_killed_writer_keeps_every_committed_record(tmp_path: Path, sig: signal.Signals) -> None:
    db_path = tmp_path / "t.db"
    proc = _spawn("write", str(db_path), "0", "1")
    try:
        lines = _read_until(proc, lambda ln: ln == "committed 25")
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    lines += [ln for ln in out.splitlines() if ln]
    reported = _committed(lines)
    assert reported >= 25

    db = open_database(db_path)
    n = db.count_records()
    # every record the child saw committed is there; at most the one in flight is extra
    assert reported <= n <= reported + 1
    rep = db.check(deep=False)
    assert rep.ok, rep.problems
    (session,) = db.sessions()
    assert session.num_records == n
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert session.status == "running"  # nobody could close it
    else:
        assert proc.returncode == 130, err[-2000:]
        assert session.status == "interrupted"
        assert session.trials_done == n == reported
    # the database is still writable after the crash
    sid = db.begin_session(model_name="after")
    db.end_session(sid, "finished", 0)
    db.close()
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.timeout(120)
def test_two_processes_write_one_file(tmp_path: Path) -> None:
    db_path = tmp_path / "shared.db"
    n = 30
    procs = [_spawn("write", str(db_path), str(n), str(seed)) for seed in (1, 2)]
    results = [p.communicate(timeout=110) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
        assert f"committed {n}" in out
    db = open_database(db_path)
    assert db.count_records() == 2 * n
    assert len(db.workloads()) == 1  # both committed the same workload: stored once
    sessions = db.sessions()
    assert sorted(s.num_records for s in sessions) == [n, n]
    assert all(s.status == "finished" for s in sessions)
    assert db.check(deep=False).ok


@pytest.mark.timeout(60)
def test_locked_past_timeout_raises_database_locked(tmp_path: Path) -> None:
    db_path = tmp_path / "locked.db"
    open_database(db_path).close()  # create the schema
    holder = _spawn("lock", str(db_path), "20")
    try:
        _read_until(holder, lambda ln: ln == "locked", timeout=30)
        db = open_database(db_path, timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(DatabaseLocked) as info:
            db.begin_session(model_name="blocked")
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    msg = str(info.value)
    assert "locked by another process for more than 0.5 s" in msg
    assert str(db_path) in msg
    assert "\n" not in msg
    assert waited >= 0.4
    # once the other process is gone, the same database object works again
    sid = db.begin_session(model_name="unblocked")
    db.end_session(sid, "finished", 0)
