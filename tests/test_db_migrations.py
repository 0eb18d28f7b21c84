"""Schema migrations: a database written before them (schema 1) or at an older revision opens,
upgrades and keeps serving, on every backend (tests/db_backends.py)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import pytest
import tvm
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from tvm.s_tir import meta_schedule as ms

from tests._db_helpers import fill, make_record, matmul, target
from tests.db_backends import execute
from tvmq.cli.db import main
from tvmq.db import module_hash, open_database, schema
from tvmq.db.keys import target_identity
from tvmq.db.models import Base
from tvmq.errors import DatabaseError

pytestmark = pytest.mark.timeout(120)

# The tables exactly as tvmq created them before it had migrations (SCHEMA_VERSION = 1).
SCHEMA_1 = """
CREATE TABLE tvmq_meta ("key" VARCHAR(64) NOT NULL, value TEXT NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE workloads (
    id INTEGER NOT NULL, name VARCHAR(200) NOT NULL, shash_structural VARCHAR(24) NOT NULL,
    shash_ignore_tensor VARCHAR(24) NOT NULL, shash_anchor_block VARCHAR(24) NOT NULL,
    hash_tvm_version VARCHAR(40) NOT NULL, mod_json TEXT NOT NULL, mod_sha256 VARCHAR(64) NOT NULL,
    created_at DATETIME NOT NULL, PRIMARY KEY (id), UNIQUE (mod_sha256));
CREATE INDEX ix_workloads_shash_structural ON workloads (shash_structural);
CREATE INDEX ix_workloads_shash_ignore_tensor ON workloads (shash_ignore_tensor);
CREATE INDEX ix_workloads_shash_anchor_block ON workloads (shash_anchor_block);
CREATE TABLE tuning_sessions (
    id INTEGER NOT NULL, uuid VARCHAR(36) NOT NULL, model_sha256 VARCHAR(64), model_name VARCHAR(300),
    target_profile VARCHAR(100), target_json TEXT, target_key VARCHAR(120), tvm_version VARCHAR(40),
    host_name VARCHAR(200), host_cpu VARCHAR(300), trials_requested INTEGER, trials_done INTEGER NOT NULL,
    started_at DATETIME NOT NULL, ended_at DATETIME, status VARCHAR(16) NOT NULL, note TEXT,
    PRIMARY KEY (id),
    CONSTRAINT ck_session_status CHECK (status IN ('running', 'finished', 'interrupted', 'failed')),
    UNIQUE (uuid));
CREATE INDEX ix_tuning_sessions_model_sha256 ON tuning_sessions (model_sha256);
CREATE TABLE tuning_records (
    id INTEGER NOT NULL, workload_id INTEGER NOT NULL, session_id INTEGER, target_key VARCHAR(120) NOT NULL,
    target_json TEXT NOT NULL, trace_json TEXT NOT NULL, run_secs_json TEXT, mean_run_secs FLOAT,
    args_info_json TEXT, record_sha256 VARCHAR(64) NOT NULL, created_at DATETIME NOT NULL,
    PRIMARY KEY (id),
    FOREIGN KEY(workload_id) REFERENCES workloads (id) ON DELETE CASCADE,
    FOREIGN KEY(session_id) REFERENCES tuning_sessions (id) ON DELETE SET NULL);
CREATE INDEX ix_tuning_records_session_id ON tuning_records (session_id);
CREATE INDEX ix_tuning_records_workload_id ON tuning_records (workload_id);
CREATE INDEX ix_tuning_records_record_sha256 ON tuning_records (record_sha256);
CREATE INDEX ix_records_lookup ON tuning_records (workload_id, target_key, mean_run_secs);
"""

THEN = datetime(2025, 1, 2, 3, 4, 5)
ENDED = datetime(2025, 1, 2, 4, 0, 0)


def _create_tables(url: str, revision: str | None) -> None:
    """Empty tables as tvmq left them at ``revision`` (None: schema 1, from before the migrations).

    On SQLite, schema 1 is the DDL above, as tvmq wrote it; elsewhere it is revision 0001 (the
    baseline, which creates exactly those tables) without Alembic's bookkeeping.
    """
    if revision is None and make_url(url).get_backend_name() == "sqlite":
        execute(url, *[st for st in SCHEMA_1.split(";") if st.strip()],
                "INSERT INTO tvmq_meta VALUES ('schema_version', '1')")
        return
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            cfg = Config()
            cfg.set_main_option("script_location", str(schema.MIGRATIONS))
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision or "0001")
            if revision is None:
                conn.execute(text("DROP TABLE alembic_version"))
    finally:
        engine.dispose()


def write_old_database(url: str, revision: str | None = None) -> list[float]:
    """A database at ``revision`` (None: schema 1) with a finished session that measured three
    records of one workload, and a session left running by a tvmq killed long ago; returns the
    valid records' means."""
    _create_tables(url, revision)
    mod = matmul()
    mod_json = tvm.ir.save_json(mod)
    tkey, tjson = target_identity(target())
    wl = ms.database.Workload(mod)
    rows: list = [
        ("INSERT INTO tuning_sessions (uuid, model_name, target_json, target_key, trials_done, started_at, "
         "ended_at, status) VALUES ('old-session', 'old-model', :tj, :tk, 3, :t, :e, 'finished')",
         {"tj": tjson, "tk": tkey, "t": THEN, "e": ENDED}),
        ("INSERT INTO tuning_sessions (uuid, model_name, trials_done, started_at, status) "
         "VALUES ('killed-session', 'killed', 0, :t, 'running')", {"t": THEN}),
        ("INSERT INTO workloads (name, shash_structural, shash_ignore_tensor, shash_anchor_block, "
         "hash_tvm_version, mod_json, mod_sha256, created_at) VALUES ('main', :a, :b, :c, :v, :j, :s, :t)",
         {"a": str(module_hash(mod, "structural")), "b": str(module_hash(mod, "ignore-tensor")),
          "c": str(module_hash(mod, "anchor-block")), "v": "0.0.old",  # hashes of another TVM: recomputed
          "j": mod_json, "s": hashlib.sha256(mod_json.encode()).hexdigest(), "t": THEN}),
    ]
    means = []
    for rid, secs in ((1, [3e-3, 3.2e-3]), (2, [1e-3]), (3, None)):
        trace, run_secs, _, args = make_record(wl, target(), secs, seed=rid).as_json()
        mean = None if secs is None else sum(secs) / len(secs)
        rows.append(("INSERT INTO tuning_records (workload_id, session_id, target_key, target_json, trace_json, "
                     "run_secs_json, mean_run_secs, args_info_json, record_sha256, created_at) "
                     "VALUES (1, 1, :tk, :tj, :tr, :rs, :m, :a, :d, :t)",
                     {"tk": tkey, "tj": tjson, "tr": json.dumps(trace),
                      "rs": None if secs is None else json.dumps(secs), "m": mean, "a": json.dumps(args),
                      "d": f"digest-{rid}", "t": THEN}))
        if mean is not None:
            means.append(mean)
    execute(url, *rows)
    return means


def _revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            if "alembic_version" not in inspect(conn).get_table_names():
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def test_head_constant_is_alembics_head() -> None:
    assert schema.head_revision() == schema.HEAD


@pytest.mark.parametrize("revision", [None, "0001"], ids=["schema-1", "0001"])
def test_old_database_opens_upgraded_and_serves_its_records(db_url: str, revision: str | None) -> None:
    means = write_old_database(db_url, revision)
    assert _revision(db_url) == revision

    db = open_database(db_url)
    assert _revision(db_url) == schema.head_revision()
    assert db.schema_upgrade.before == revision and db.schema_upgrade.changed
    (s,) = db.summarize([matmul()], target())
    assert (s.num_records, s.num_valid, s.best_session_id) == (3, 2, 1)
    assert s.best_mean_run_secs == pytest.approx(min(means))
    (best,) = db.best_records(target=target())
    assert best.id == 2 and best.session_id == 1
    rec = db.scoped(target()).query_tuning_record(matmul(), target(), "main")
    assert sum(float(x) for x in rec.run_secs) / len(rec.run_secs) == pytest.approx(min(means), rel=1e-6)
    finished, killed = db.session(1), db.session(2)
    assert finished.model_name == "old-model" and finished.num_records == 3
    # revision 0002: a session's last heartbeat is its end, else its start; the killed one is stale
    assert (finished.heartbeat_at, finished.stale) == (ENDED, False)
    assert (killed.heartbeat_at, killed.state) == (THEN, "stale")
    (problem,) = db.check().problems
    assert problem.startswith("1 sessions are stale") and "(ids 2)" in problem

    fill(db.scoped(target()), matmul(), 2, seed=9)  # and new records go in next to the old ones
    assert db.count_records(target()) == 5
    sid = db.begin_session(model_name="new")  # and new sessions beat
    assert db.session(sid).heartbeat_at is not None and not db.session(sid).stale
    db.close()
    again = open_database(db_url)
    assert not again.schema_upgrade.changed
    assert again.count_records() == 5
    again.close()


def test_upgrade_command(db_url: str, capsys) -> None:
    write_old_database(db_url)
    with pytest.raises(SystemExit) as info:
        main(["--db", db_url, "upgrade"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "from schema 1 (before migrations) to revision" in out
    assert _revision(db_url) == schema.HEAD
    with pytest.raises(SystemExit) as info:
        main(["--db", db_url, "upgrade"])
    assert info.value.code == 0 and "is at the newest schema revision" in capsys.readouterr().out


def test_migrations_make_the_tables_the_models_describe(db_url: str) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db = open_database(db_url)
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.close()


def test_database_from_a_newer_tvmq_is_refused(db_url: str) -> None:
    open_database(db_url).close()
    execute(db_url, "UPDATE alembic_version SET version_num = 'from-the-future'")
    with pytest.raises(DatabaseError, match="newer tvmq"):
        open_database(db_url)
    execute(db_url, ("UPDATE alembic_version SET version_num = :v", {"v": schema.HEAD}),
            "UPDATE tvmq_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(DatabaseError, match="newer tvmq"):
        open_database(db_url)
