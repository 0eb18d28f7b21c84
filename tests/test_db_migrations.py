"""Schema migrations: a database written before them (schema 1) opens, upgrades and keeps serving."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
import tvm
from tvm.s_tir import meta_schedule as ms

from tests._db_helpers import fill, make_record, matmul, target
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

NOW = "2025-01-02 03:04:05.000000"


def write_schema_1(path: Path) -> list[float]:
    """A schema-1 database with one session, one workload and three records; returns the valid means."""
    mod = matmul()
    mod_json = tvm.ir.save_json(mod)
    tkey, tjson = target_identity(target())
    wl = ms.database.Workload(mod)
    conn = sqlite3.connect(path)
    with conn:
        conn.executescript(SCHEMA_1)
        conn.execute("INSERT INTO tvmq_meta VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO tuning_sessions (id, uuid, model_name, target_json, target_key, trials_done, "
                     "started_at, status) VALUES (1, 'old-session', 'old-model', ?, ?, 3, ?, 'finished')",
                     (tjson, tkey, NOW))
        conn.execute("INSERT INTO workloads VALUES (1, 'main', ?, ?, ?, ?, ?, ?, ?)",
                     (str(module_hash(mod, "structural")), str(module_hash(mod, "ignore-tensor")),
                      str(module_hash(mod, "anchor-block")), "0.0.old",  # hashes of another TVM: recomputed
                      mod_json, hashlib.sha256(mod_json.encode()).hexdigest(), NOW))
        means = []
        for rid, secs in ((1, [3e-3, 3.2e-3]), (2, [1e-3]), (3, None)):
            trace, run_secs, _, args = make_record(wl, target(), secs, seed=rid).as_json()
            mean = None if secs is None else sum(secs) / len(secs)
            conn.execute("INSERT INTO tuning_records VALUES (?, 1, 1, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (rid, tkey, tjson, json.dumps(trace), None if secs is None else json.dumps(secs),
                          mean, json.dumps(args), f"digest-{rid}", NOW))
            if mean is not None:
                means.append(mean)
    conn.close()
    return means


def _revision(path: Path) -> str | None:
    with sqlite3.connect(path) as conn:
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "alembic_version" not in tables:
            return None
        return conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]


def test_head_constant_is_alembics_head() -> None:
    assert schema.head_revision() == schema.HEAD


def test_schema_1_database_opens_upgraded_and_serves_its_records(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    means = write_schema_1(path)
    assert _revision(path) is None

    db = open_database(path)
    assert _revision(path) == schema.head_revision()
    assert db.schema_upgrade.before is None and db.schema_upgrade.changed
    (s,) = db.summarize([matmul()], target())
    assert (s.num_records, s.num_valid, s.best_session_id) == (3, 2, 1)
    assert s.best_mean_run_secs == pytest.approx(min(means))
    (best,) = db.best_records(target=target())
    assert best.id == 2 and best.session_id == 1
    rec = db.scoped(target()).query_tuning_record(matmul(), target(), "main")
    assert sum(float(x) for x in rec.run_secs) / len(rec.run_secs) == pytest.approx(min(means), rel=1e-6)
    assert db.session(1).model_name == "old-model" and db.session(1).num_records == 3
    assert db.check().ok

    fill(db.scoped(target()), matmul(), 2, seed=9)  # and new records go in next to the old ones
    assert db.count_records(target()) == 5
    db.close()
    again = open_database(path)
    assert not again.schema_upgrade.changed
    assert again.count_records() == 5


def test_upgrade_command(tmp_path: Path, capsys) -> None:
    path = tmp_path / "old.db"
    write_schema_1(path)
    with pytest.raises(SystemExit) as info:
        main(["--db", str(path), "upgrade"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "from schema 1 (before migrations) to revision" in out
    assert _revision(path) == schema.HEAD
    with pytest.raises(SystemExit) as info:
        main(["--db", str(path), "upgrade"])
    assert info.value.code == 0 and "is at the newest schema revision" in capsys.readouterr().out


def test_migrations_make_the_tables_the_models_describe(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    db = open_database(tmp_path / "new.db")
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


def test_database_from_a_newer_tvmq_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    open_database(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'from-the-future'")
    with pytest.raises(DatabaseError, match="newer tvmq"):
        open_database(path)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (schema.HEAD,))
        conn.execute("UPDATE tvmq_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(DatabaseError, match="newer tvmq"):
        open_database(path)
