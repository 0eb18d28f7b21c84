"""The tuning database through MetaSchedule's API and tvmq's own: scoping, equality, interop,
sessions and their heartbeats; on every backend (tests/db_backends.py)."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path

import pytest
import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms

from tests._db_helpers import CASCADELAKE, ZNVER3, fill, make_record, matmul, matmul_relu, target
from tests.db_backends import execute
from tvmq.db import default_db_path, module_hash, open_database
from tvmq.errors import DatabaseError

pytestmark = pytest.mark.timeout(120)


def _mean(rec) -> float:
    return sum(float(x) for x in rec.run_secs) / len(rec.run_secs)


@pytest.fixture
def db(db_url: str):
    d = open_database(db_url)
    yield d
    d.close()


# ------------------------------------------------------------------------- MetaSchedule API


def test_roundtrip_through_metaschedule_api(db, db_url: str) -> None:
    msdb = db.scoped(target())
    assert isinstance(msdb, ms.database.Database)
    mod = matmul()
    assert not msdb.has_workload(mod)
    means = fill(msdb, mod, 6)
    assert msdb.has_workload(mod)
    assert len(msdb) == 6

    wl = msdb.commit_workload(matmul())  # a fresh but equal module: the same workload
    top = msdb.get_top_k(wl, 3)
    assert [round(_mean(r), 12) for r in top] == [round(m, 12) for m in sorted(means)[:3]]
    assert msdb.get_top_k(wl, 0) == []
    assert len(msdb.get_all_tuning_records()) == 6

    rec = msdb.query_tuning_record(mod, target(), "main")
    assert _mean(rec) == pytest.approx(min(means))
    sch = msdb.query_schedule(mod, target(), "main")
    assert isinstance(sch, tvm.s_tir.Schedule)
    assert str(sch.trace) == str(rec.trace)
    assert msdb.query_ir_module(mod, target(), "main") is not None
    assert msdb.query_tuning_record(matmul(32), target(), "main") is None

    with msdb:  # as MetaSchedule's current database
        assert ms.database.Database.current().same_as(msdb)

    # persisted: a new connection in a new object sees the same best record
    again = open_database(db_url).scoped(target())
    rec2 = again.query_tuning_record(matmul(), target(), "main")
    assert _mean(rec2) == pytest.approx(min(means))
    assert str(rec2.trace) == str(rec.trace)
    assert [float(x) for x in rec2.run_secs] == [float(x) for x in rec.run_secs]
    assert rec2.target.export()["mcpu"] == "cascadelake"
    assert len(rec2.args_info) == 3


def test_invalid_records_are_kept_but_never_served(db) -> None:
    msdb = db.scoped(target())
    wl = msdb.commit_workload(matmul())
    msdb.commit_tuning_record(make_record(wl, target(), None, seed=1))  # never measured
    msdb.commit_tuning_record(make_record(wl, target(), [1e10], seed=2))  # failed build/run
    assert len(msdb) == 2
    assert msdb.get_top_k(wl, 5) == []
    assert msdb.query_tuning_record(matmul(), target(), "main") is None
    (s,) = db.summarize([matmul()], target())
    assert (s.num_records, s.num_valid, s.tuned) == (2, 0, False)
    msdb.commit_tuning_record(make_record(wl, target(), [2e-3], seed=3))
    assert len(msdb.get_top_k(wl, 5)) == 1


def test_target_scoping(db) -> None:
    cl = db.scoped(target(CASCADELAKE))
    zn = db.scoped(target(ZNVER3))
    more_cores = db.scoped(target({**CASCADELAKE, "num-cores": 4}))
    fill(cl, matmul(), 4)
    assert len(cl) == 4 and len(zn) == 0 and len(more_cores) == 0
    wl = zn.commit_workload(matmul())
    assert zn.has_workload(matmul())  # workloads are shared, records are not
    assert zn.get_top_k(wl, 10) == []
    assert zn.query_tuning_record(matmul(), target(ZNVER3), "main") is None
    assert zn.query_schedule(matmul(), target(ZNVER3), "main") is None
    assert more_cores.query_tuning_record(matmul(), target(), "main") is None
    # the scope decides even when a caller passes another target to a query
    assert zn.query_tuning_record(matmul(), target(CASCADELAKE), "main") is None
    assert cl.query_tuning_record(matmul(), target(ZNVER3), "main") is not None

    zmeans = fill(zn, matmul(), 2, seed=5, base=5e-3)
    assert _mean(zn.query_tuning_record(matmul(), None, "main")) == pytest.approx(min(zmeans))
    assert all(r.target.export()["mcpu"] == "znver3" for r in zn.get_all_tuning_records())
    assert {t.target_key.split("-")[1] for t in db.targets()} == {"cascadelake", "znver3"}
    assert db.count_records(target(ZNVER3)) == 2
    assert db.count_records() == 6


def test_records_keep_their_own_target(db) -> None:
    """A record MetaSchedule commits with another target is stored under that target."""
    cl = db.scoped(target(CASCADELAKE))
    wl = cl.commit_workload(matmul())
    cl.commit_tuning_record(make_record(wl, target(ZNVER3), [1e-3], seed=1))
    cl.commit_tuning_record(make_record(wl, None, [2e-3], seed=2))  # no target: the scope's
    assert len(cl) == 1
    assert len(db.scoped(target(ZNVER3))) == 1


# -------------------------------------------------------------------------- module equality


def test_hash_matches_metaschedule() -> None:
    mod = matmul()
    assert str(module_hash(mod, "structural")) == ms.database.Workload(mod).as_json()[0]


@pytest.mark.parametrize("equality", ["structural", "ignore-tensor", "anchor-block"])
def test_module_equality_like_metaschedule(db, equality: str) -> None:
    """has_workload/commit_workload agree with ms.database.MemoryDatabase for each equality."""
    mods = [matmul(16), matmul_relu(16), matmul(16, name="other"), matmul(32), matmul(16, 8)]
    ours = db.scoped(target(), module_equality=equality)
    theirs = ms.database.MemoryDatabase(module_equality=equality)
    for mod in mods:
        assert ours.has_workload(mod) == theirs.has_workload(mod), (equality, mod)
        w_ours, w_theirs = ours.commit_workload(mod), theirs.commit_workload(mod)
        assert tvm_ffi.structural_equal(w_ours.mod, w_theirs.mod)
    if equality == "anchor-block":
        # matmul and matmul+relu share their anchor block: the records of one serve the other
        fill(ours, matmul(16), 2)
        assert ours.query_tuning_record(matmul_relu(16), target(), "main") is not None
    else:
        fill(ours, matmul(16), 2)
        assert ours.query_tuning_record(matmul_relu(16), target(), "main") is None


def test_unknown_module_equality(db) -> None:
    with pytest.raises(DatabaseError, match="Unknown module equality"):
        db.scoped(target(), module_equality="fuzzy")


# --------------------------------------------------------------------------------- sessions


def test_sessions_and_which_session_made_the_best_record(db) -> None:
    s1 = db.begin_session(model_sha256="ab" * 32, model_name="mobilenet", target_profile="cascadelake",
                          target=target(), trials_requested=8)
    fill(db.scoped(target(), session_id=s1), matmul(), 3, base=1e-3)
    db.end_session(s1, "finished", trials_done=3)
    s2 = db.begin_session(model_name="mobilenet", target=target(), trials_requested=8)
    fill(db.scoped(target(), session_id=s2), matmul(), 2, seed=9, base=1.0)  # much slower
    fill(db.scoped(target(), session_id=s2), matmul(32), 2, seed=3)
    db.update_session(s2, trials_done=4)
    db.end_session(s2, "interrupted")

    a, b, c = db.summarize([matmul(), matmul(32), matmul(64)], target())
    assert (a.num_records, a.best_session_id) == (5, s1)  # served by an earlier session
    assert (b.num_records, b.best_session_id) == (2, s2)
    assert c.workload_id is None and not c.tuned
    assert db.record_session(a.best_record_id) == s1
    assert db.scoped(target()).best_record(matmul()).session_id == s1

    info = {s.id: s for s in db.sessions()}
    assert info[s1].status == "finished" and info[s1].num_records == 3 and info[s1].trials_done == 3
    assert info[s2].status == "interrupted" and info[s2].trials_done == 4 and info[s2].ended_at
    assert info[s1].model_sha256 == "ab" * 32 and info[s1].target_profile == "cascadelake"
    assert info[s1].host_name and info[s1].tvm_version
    assert [s.id for s in db.sessions()] == [s2, s1]

    with pytest.raises(DatabaseError, match="Unknown session status"):
        db.end_session(s1, "exploded")
    with pytest.raises(DatabaseError, match="no tuning session 99"):
        db.end_session(99, "finished")


def test_a_session_without_heartbeats_goes_stale(db, db_url: str) -> None:
    sid = db.begin_session(model_name="m", target=target())
    done = db.begin_session(model_name="done")
    db.end_session(done, "finished")
    (s,) = [x for x in db.sessions() if x.id == sid]
    assert s.heartbeat_at is not None and not s.stale and s.state == "running"
    assert db.stale_sessions() == [] and db.check(deep=False).ok

    long_ago = datetime(2020, 1, 1)
    execute(db_url, ("UPDATE tuning_sessions SET heartbeat_at = :t", {"t": long_ago}))
    (s,) = [x for x in db.sessions() if x.id == sid]
    assert s.stale and s.state == "stale" and s.status == "running"
    assert [x.id for x in db.stale_sessions()] == [sid]  # an ended session is never stale
    assert db.session(sid).stale
    rep = db.check(deep=False)
    assert "1 sessions are stale: marked running, but without a heartbeat for too long" in rep.problems[0]
    assert f"(ids {sid})" in rep.problems[0]

    db.update_session(sid, trials_done=4)  # a measured batch is a heartbeat
    assert not db.session(sid).stale and db.session(sid).heartbeat_at > long_ago
    execute(db_url, ("UPDATE tuning_sessions SET heartbeat_at = :t", {"t": long_ago}))
    with db.heartbeat(sid, interval_s=0.05):  # the background thread, while a batch runs
        deadline = time.monotonic() + 10
        while db.session(sid).stale and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not db.session(sid).stale
    time.sleep(0.05)  # the thread has stopped: a grace shorter than this makes the session stale
    assert db.session(sid, stale_after_s=0.01).stale


def test_ending_a_session_counts_the_records_it_committed(db) -> None:
    sid = db.begin_session(model_name="m", target=target())
    fill(db.scoped(target(), session_id=sid), matmul(), 5)
    db.update_session(sid, trials_done=2)  # what a progress callback had counted before a second Ctrl-C
    db.end_session(sid, "interrupted")
    s = db.session(sid)
    assert (s.trials_done, s.num_records, s.status, s.stale) == (5, 5, "interrupted", False)
    db.end_session(sid, "interrupted", trials_done=7)  # an explicit count is kept as given
    assert db.session(sid).trials_done == 7


def test_best_records_and_listings(db) -> None:
    m1 = fill(db.scoped(target()), matmul(), 4)
    fill(db.scoped(target(ZNVER3)), matmul(), 2, seed=4)
    db.label_workloads([("fused_matmul", matmul())])
    best = db.best_records(target=target())
    assert len(best) == 1 and best[0].mean_run_secs == pytest.approx(min(m1))
    assert best[0].workload_name == "fused_matmul"
    assert len(db.best_records()) == 2
    assert len(db.best_records(top_k=3)) == 5
    (w,) = db.workloads()
    assert (w.name, w.num_records, w.num_targets) == ("fused_matmul", 6, 2)


# ----------------------------------------------------------------------------- JSON interop


def test_export_is_read_by_metaschedule_jsondatabase(db, tmp_path: Path) -> None:
    means = fill(db.scoped(target()), matmul(), 5)
    fill(db.scoped(target()), matmul(32), 3, seed=2)
    fill(db.scoped(target(ZNVER3)), matmul(), 2, seed=3)
    out = tmp_path / "ms"
    n_wl, n_rec = db.export_json(out)
    assert (n_wl, n_rec) == (2, 10)
    jdb = ms.database.JSONDatabase(work_dir=str(out), allow_missing=False)
    assert len(jdb) == 10
    wl = jdb.commit_workload(matmul())
    best = jdb.get_top_k(wl, 1)[0]
    ours = db.scoped(target()).query_tuning_record(matmul(), target(), "main")
    # MetaSchedule's own database ignores targets: its best for matmul is the overall best
    assert _mean(best) == pytest.approx(min(_mean(r) for r in jdb.get_top_k(wl, 100)))
    assert str(ours.trace) in {str(r.trace) for r in jdb.get_top_k(wl, 100)}
    assert _mean(ours) == pytest.approx(min(means))

    with pytest.raises(DatabaseError, match="already holds"):
        db.export_json(out)
    n_wl, n_rec = db.export_json(out, target=target(ZNVER3), overwrite=True)
    assert (n_wl, n_rec) == (1, 2)
    jdb = ms.database.JSONDatabase(work_dir=str(out), allow_missing=False)
    assert {r.target.export()["mcpu"] for r in jdb.get_all_tuning_records()} == {"znver3"}
    n_wl, n_rec = db.export_json(tmp_path / "top", top_k=1)
    assert (n_wl, n_rec) == (2, 3)


def test_import_from_metaschedule_jsondatabase(db, tmp_path: Path) -> None:
    work = tmp_path / "ms"
    work.mkdir()
    jdb = ms.database.JSONDatabase(work_dir=str(work))
    wl = jdb.commit_workload(matmul())
    jdb.commit_workload(matmul(32))  # a workload without records is imported too
    for i, secs in enumerate([[3e-3], [1e-3, 1.2e-3], [2e-3], [1e10]]):
        jdb.commit_tuning_record(make_record(wl, target(), secs, seed=i + 1))
    jdb.commit_tuning_record(make_record(wl, None, [5e-4], seed=7))  # no target
    del jdb

    res = db.import_json(work)
    assert (res.workloads_added, res.records_added, res.records_skipped) == (2, 4, 1)
    msdb = db.scoped(target())
    assert len(msdb) == 4
    assert _mean(msdb.query_tuning_record(matmul(), target(), "main")) == pytest.approx(1.1e-3)

    again = db.import_json(work, target=target(ZNVER3))
    assert (again.records_added, again.records_duplicate, again.workloads_known) == (1, 4, 2)
    assert len(db.scoped(target(ZNVER3))) == 1

    # round trip: export, read with MetaSchedule, compare with the original files' records
    db.export_json(tmp_path / "back", target=target())
    a = ms.database.JSONDatabase(work_dir=str(work), allow_missing=False)
    b = ms.database.JSONDatabase(work_dir=str(tmp_path / "back"), allow_missing=False)

    def key(r):
        return (str(r.trace), tuple(float(x) for x in r.run_secs))

    with_target = [r for r in a.get_all_tuning_records() if r.target is not None]
    assert sorted(map(key, with_target)) == sorted(map(key, b.get_all_tuning_records()))


def test_import_errors(db, tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="is not a folder"):
        db.import_json(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatabaseError, match="needs both"):
        db.import_json(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "database_workload.json").write_text("not json\n")
    (bad / "database_tuning_record.json").write_text("")
    with pytest.raises(DatabaseError, match=r"database_workload.json:1 is not a MetaSchedule workload"):
        db.import_json(bad)
    assert db.count_records() == 0


# ---------------------------------------------------------------------- prune, merge, check


def test_prune_keeps_k_best_per_workload_per_target(db) -> None:
    cl_means = fill(db.scoped(target()), matmul(), 6)
    fill(db.scoped(target()), matmul(32), 1, seed=2)
    zn_means = fill(db.scoped(target(ZNVER3)), matmul(), 4, seed=3)
    wl = db.scoped(target()).commit_workload(matmul())
    db.scoped(target()).commit_tuning_record(make_record(wl, target(), [1e10], seed=50))
    deleted = db.prune(2)
    assert deleted == (7 - 2) + (4 - 2)
    cl = db.scoped(target())
    kept = sorted(_mean(r) for r in cl.get_top_k(cl.commit_workload(matmul()), 10))
    assert kept == pytest.approx(sorted(cl_means)[:2])
    zn = db.scoped(target(ZNVER3))
    assert sorted(_mean(r) for r in zn.get_top_k(zn.commit_workload(matmul()), 10)) == \
        pytest.approx(sorted(zn_means)[:2])
    assert db.count_records() == 5
    assert db.prune(2) == 0
    with pytest.raises(DatabaseError, match="at least 1"):
        db.prune(0)


def test_merge_copies_missing_rows_once(db_urls) -> None:
    url_a, url_b = db_urls(), db_urls()
    a = open_database(url_a)
    b = open_database(url_b)
    sid = b.begin_session(model_name="other-host", target=target(ZNVER3))
    fill(b.scoped(target(ZNVER3), session_id=sid), matmul(), 3)
    fill(b.scoped(target()), matmul(32), 2, seed=2)
    b.end_session(sid, "finished", 3)
    fill(a.scoped(target()), matmul(), 2, seed=5)

    res = a.merge(url_b)
    assert (res.records_added, res.sessions_added, res.workloads_added, res.workloads_known) == (5, 1, 1, 1)
    assert len(a.workloads()) == 2
    assert a.count_records() == 7
    zn = a.scoped(target(ZNVER3))
    assert len(zn) == 3
    (s,) = a.summarize([matmul()], target(ZNVER3))
    assert a.session(s.best_session_id).model_name == "other-host"
    again = a.merge(url_b)
    assert (again.records_added, again.records_duplicate, again.sessions_added) == (0, 5, 0)
    assert a.check().ok
    with pytest.raises(DatabaseError, match="into itself"):
        a.merge(url_a)
    a.close()
    b.close()


def test_check_finds_and_fixes_problems(db, db_url: str) -> None:
    fill(db.scoped(target()), matmul(), 4)
    assert db.check().ok
    sqlite = db_url.startswith("sqlite")
    execute(db_url,
            ("UPDATE tuning_records SET trace_json = :t WHERE id = 1",
             {"t": json.dumps([[["NoSuchInstruction", [], [], []]], []])}),
            "UPDATE tuning_records SET trace_json = 'not json' WHERE id = 2",
            # an orphan: SQLite leaves foreign keys off unless asked; a server needs the constraint gone
            *([] if sqlite else ["ALTER TABLE tuning_records DROP CONSTRAINT tuning_records_workload_id_fkey"]),
            "UPDATE tuning_records SET workload_id = 999 WHERE id = 3")
    fresh = open_database(db_url)
    rep = fresh.check()
    assert not rep.ok
    text = " ".join(rep.problems)
    assert "missing workloads (ids 3)" in text and "cannot be replayed (ids 1)" in text
    assert "JSON that cannot be parsed (ids 2)" in text
    assert ("foreign key" in text) == sqlite  # SQLite's own foreign_key_check
    quick = fresh.check(deep=False)
    assert "ids 2)" in " ".join(quick.problems)  # only the unparsable one without replaying
    fixed = fresh.check(fix=True)
    assert fixed.fixed
    assert fresh.check().ok
    assert fresh.count_records() == 1
    fresh.close()


# ------------------------------------------------------------------------------ opening


def test_opening_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER)")
    with pytest.raises(DatabaseError, match="not a tvmq tuning database"):
        open_database(other)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(DatabaseError, match="junk.db"):
        open_database(junk)
    with pytest.raises(DatabaseError, match="is a directory"):
        open_database(tmp_path)
    with pytest.raises(DatabaseError, match="does not exist"):
        open_database(tmp_path / "nope" / "x.db")
    with pytest.raises(DatabaseError, match="no SQLAlchemy driver for 'nosuchdriver'"):
        open_database("nosuchdriver://host/db")
    with pytest.raises(DatabaseError, match="Not a valid TVM target"):
        open_database(tmp_path / "ok.db").scoped('{"kind": "no-such-kind"}')

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TVMQ_DB", raising=False)
    assert default_db_path() == tmp_path / "tvmq.db"
    monkeypatch.setenv("TVMQ_DB", str(tmp_path / "env.db"))
    assert default_db_path() == tmp_path / "env.db"
    open_database().close()
    assert (tmp_path / "env.db").exists()


def test_any_sqlalchemy_url(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path / 'url.db'}")
    fill(db.scoped(target()), matmul(), 2)
    assert db.count_records() == 2
    mem = open_database("sqlite://")
    fill(mem.scoped(target()), matmul(), 1)
    assert mem.count_records() == 1


def test_hashes_from_another_tvm_version_are_recomputed(db, db_url: str) -> None:
    fill(db.scoped(target()), matmul(), 2)
    execute(db_url, "UPDATE workloads SET shash_structural = '1', hash_tvm_version = '0.0.old'")
    fresh = open_database(db_url)
    msdb = fresh.scoped(target())
    assert msdb.query_tuning_record(matmul(), target(), "main") is not None
    assert fresh.import_json  # and writes work after the refresh
    fill(msdb, matmul(), 1, seed=4)
    assert len(fresh.workloads()) == 1 and len(msdb) == 3
