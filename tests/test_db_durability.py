"""Durability and concurrency of the tuning database, with real child processes, on every backend
(tests/db_backends.py): killed writers, two writers, a held lock, a killed session's heartbeat."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tvmq.cli.db import main
from tvmq.db import open_database
from tvmq.errors import DatabaseLocked

REPO = Path(__file__).resolve().parents[1]


def _spawn(*args: str, **env: str) -> subprocess.Popen:
    """``python -m tests._db_child ARGS`` from the repository root (which puts it on sys.path)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **env)
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


def _sqlite_file(url: str) -> str | None:
    u = make_url(url)
    return u.database if u.get_backend_name() == "sqlite" else None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_killed_writer_keeps_every_committed_record(db_url: str, sig: signal.Signals) -> None:
    proc = _spawn("write", db_url, "0", "1")
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

    db = open_database(db_url)
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
    path = _sqlite_file(db_url)
    if path is not None:
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.timeout(120)
def test_two_processes_write_one_database(db_url: str) -> None:
    n = 30
    procs = [_spawn("write", db_url, str(n), str(seed)) for seed in (1, 2)]
    results = [p.communicate(timeout=110) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
        assert f"committed {n}" in out
    db = open_database(db_url)
    assert db.count_records() == 2 * n
    assert len(db.workloads()) == 1  # both committed the same workload: stored once
    sessions = db.sessions()
    assert sorted(s.num_records for s in sessions) == [n, n]
    assert all(s.status == "finished" for s in sessions)
    assert db.check(deep=False).ok


def _open_at_once(path: str, barrier, results) -> None:  # in a forked child
    try:
        barrier.wait(timeout=30)
        db = open_database(path)
        db.end_session(db.begin_session(model_name="racer"), "finished", 0)
        results.put("ok")
    except Exception as err:  # noqa: BLE001 - reported to the parent
        results.put(f"{type(err).__name__}: {err}")


@pytest.mark.timeout(180)
def test_processes_creating_one_new_file_at_once_all_open_it(tmp_path: Path) -> None:
    """Two tuners started together on a database that does not exist yet both create it: the
    switch to WAL, which SQLite refuses at once (not under the busy timeout) while another
    connection has the file open, is retried (CI saw a tune fail this way in 0.03 s)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    failures = []
    for round_ in range(25):
        path = str(tmp_path / f"new{round_}.db")
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_open_at_once, args=(path, barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
        failures += [o for o in outcomes if o != "ok"]
        assert len(open_database(path).sessions()) == 4 - len([o for o in outcomes if o != "ok"])
    assert not failures, failures[:3]


@pytest.mark.timeout(60)
def test_locked_past_timeout_raises_database_locked(db_url: str) -> None:
    open_database(db_url).close()  # create the schema
    holder = _spawn("lock", db_url, "20")
    try:
        _read_until(holder, lambda ln: ln == "locked", timeout=30)
        db = open_database(db_url, timeout_s=0.5)
        t0 = time.monotonic()
        with pytest.raises(DatabaseLocked) as info:
            db.begin_session(model_name="blocked")
        waited = time.monotonic() - t0
    finally:
        holder.kill()
        holder.wait()
    msg = str(info.value)
    assert "locked by another process for more than 0.5 s" in msg
    assert db.where in msg
    assert "\n" not in msg
    assert waited >= 0.4
    # once the other process is gone, the same database object works again
    sid = db.begin_session(model_name="unblocked")
    db.end_session(sid, "finished", 0)


@pytest.mark.timeout(120)
def test_a_killed_session_goes_stale(db_url: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """The heartbeat thread keeps a session whose batch runs long alive; SIGKILL stops it, and
    after the grace period the session shows as stale in ``tvmq-db sessions`` and ``check``."""
    grace = 1.5
    proc = _spawn("session", db_url, TVMQ_HEARTBEAT_S="0.2")
    try:
        (line,) = _read_until(proc, lambda ln: ln.startswith("session "))[-1:]
        sid = int(line.split()[1])
        db = open_database(db_url)
        time.sleep(2 * grace)  # one long batch: only the background thread beats
        alive = db.session(sid, stale_after_s=grace)
        assert alive.status == "running" and not alive.stale
        proc.kill()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(grace + 0.5)
    dead = db.session(sid, stale_after_s=grace)
    assert dead.stale and dead.state == "stale" and dead.heartbeat_at >= alive.heartbeat_at

    monkeypatch.setenv("TVMQ_STALE_AFTER_S", str(grace))
    assert [x.id for x in db.stale_sessions()] == [sid]
    (problem,) = db.check(deep=False).problems
    assert problem.startswith("1 sessions are stale") and f"(ids {sid})" in problem
    with pytest.raises(SystemExit) as info:
        main(["--db", db_url, "sessions"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "stale" in out.split("long-batch")[1].splitlines()[0]  # the session's row
    assert "no heartbeat for more than 1.5 s" in out
    db.close()
