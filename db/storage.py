"""The SQL storage under the tuning database: connections, transactions, sessions and the read side.

Everything here is plain data; :class:`tvmq.db.database.TuningDatabase` adds what needs TVM.
"""

from __future__ import annotations

import contextlib
import platform
import socket
import uuid as uuid_mod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tvmq.errors import DatabaseError

from . import keys, repository, schema
from .engine import default_timeout, describe_url, is_sqlite, make_engine, resolve_url, translate_errors
from .heartbeat import Heartbeat, stale_after
from .models import SESSION_STATUSES, server_utcnow, utcnow
from .results import RecordInfo, SessionInfo, TargetInfo, WorkloadInfo


def _host_cpu() -> str:
    try:
        from tvmq.targets import host_info

        return host_info().model_name or platform.processor() or platform.machine()
    except Exception:  # noqa: BLE001
        return platform.processor() or platform.machine()


def _installed_tvm_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("apache-tvm")
    except Exception:  # noqa: BLE001
        return None


class Storage:
    """The tuning database's tables behind a SQLAlchemy URL (a SQLite file by default).

    Opening brings the schema to the newest revision (:mod:`tvmq.db.schema`). Safe to use from
    several processes at once (SQLite WAL, ``BEGIN IMMEDIATE`` writes, busy timeout); one
    instance should be used by one thread at a time.
    """

    def __init__(self, url_or_path: str | Path | None = None, *, timeout_s: float | None = None):
        self.url = resolve_url(url_or_path)
        self.where = describe_url(self.url)
        self.timeout_s = default_timeout() if timeout_s is None else float(timeout_s)
        self.is_sqlite = is_sqlite(self.url)
        self.engine = make_engine(self.url, self.timeout_s)
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        with self.errors():
            #: what opening did to the schema (``before`` is None for a new or pre-migration database)
            self.schema_upgrade = schema.ensure_schema(self.engine, self.where)

    # -------------------------------------------------------------------- plumbing

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections (records are already on disk)."""
        self.engine.dispose()

    def errors(self) -> contextlib.AbstractContextManager[None]:
        """Driver errors inside become :class:`~tvmq.errors.DatabaseError` / ``DatabaseLocked``."""
        return translate_errors(self.where, self.timeout_s)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading."""
        with self.errors(), self._sessions() as s:
            yield s

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction, committed (on disk) when the block ends."""
        with self.errors():
            with self.engine.connect() as conn:
                conn = conn.execution_options(tvmq_write=True)
                with Session(bind=conn, expire_on_commit=False) as s:
                    with conn.begin():
                        yield s
                        s.flush()

    def upgrade(self) -> schema.Upgrade:
        """Bring the schema to the newest revision; says from which revision (opening already upgraded)."""
        with self.errors():
            done = schema.upgrade(self.engine, self.where)
        return schema.Upgrade(before=self.schema_upgrade.before, after=done.after)

    def vacuum(self) -> None:
        """Compact a SQLite file (outside any transaction; needs no other writer)."""
        if not self.is_sqlite:
            return
        with self.errors():
            raw = self.engine.raw_connection()
            try:
                raw.driver_connection.execute("VACUUM")
            finally:
                raw.close()

    # -------------------------------------------------------------------- sessions

    def begin_session(
        self,
        *,
        model_sha256: str | None = None,
        model_name: str | None = None,
        target_profile: str | None = None,
        target: Any = None,
        trials_requested: int | None = None,
        tvm_version: str | None = None,
        host_name: str | None = None,
        host_cpu: str | None = None,
        note: str | None = None,
    ) -> int:
        """Record the start of a tuning run; returns the session id (status ``running``, with its
        first heartbeat; :meth:`heartbeat` keeps it alive)."""
        tkey = tjson = None
        if target is not None:
            tkey, tjson = keys.target_identity(target)
        with self.write() as s:
            return repository.add_session(
                s, uuid=str(uuid_mod.uuid4()), model_sha256=model_sha256, model_name=model_name,
                target_profile=target_profile, target_json=tjson, target_key=tkey,
                tvm_version=tvm_version or _installed_tvm_version(),
                host_name=host_name or socket.gethostname(), host_cpu=host_cpu or _host_cpu(),
                trials_requested=trials_requested, trials_done=0, started_at=utcnow(),
                status="running", note=note, heartbeat_at=server_utcnow(),
            )

    def update_session(self, session_id: int, *, trials_done: int) -> None:
        """Update the trial count of a running session after a measured batch (a heartbeat too)."""
        with self.write() as s:
            repository.update_session(s, session_id, trials_done=int(trials_done), heartbeat_at=server_utcnow())

    def beat(self, session_id: int) -> None:
        """A heartbeat of a running session: it is alive now."""
        with self.write() as s:
            repository.beat(s, session_id)

    def heartbeat(self, session_id: int, *, interval_s: float | None = None) -> Heartbeat:
        """A ``with`` block during which a background thread beats for ``session_id`` every
        ``interval_s`` seconds (default ``$TVMQ_HEARTBEAT_S`` or 20; see :mod:`tvmq.db.heartbeat`)."""
        return Heartbeat(lambda: self.beat(session_id), interval_s)

    def end_session(self, session_id: int, status: str = "finished", trials_done: int | None = None) -> None:
        """Close a session with ``status`` (finished, interrupted or failed) and its trial count
        (None: the records it committed, counted in the database)."""
        if status not in SESSION_STATUSES:
            raise DatabaseError(
                f"Unknown session status {status!r}; use one of: {', '.join(SESSION_STATUSES)}."
            )
        values: dict[str, Any] = {"status": status, "ended_at": utcnow(), "heartbeat_at": server_utcnow()}
        with self.write() as s:
            values["trials_done"] = (repository.count_session_records(s, session_id)
                                     if trials_done is None else int(trials_done))
            if not repository.update_session(s, session_id, **values):
                raise DatabaseError(f"There is no tuning session {session_id} in {self.where}.")

    def session(self, session_id: int, *, stale_after_s: float | None = None) -> SessionInfo:
        """One session with its record count; see :meth:`sessions` for ``stale_after_s``."""
        with self.read() as s:
            return repository.get_session(s, session_id, self.where, stale_after_s or stale_after())

    def sessions(self, *, limit: int | None = None, stale_after_s: float | None = None) -> list[SessionInfo]:
        """All sessions, newest first, with their record counts. A running one without a heartbeat
        for ``stale_after_s`` seconds (default ``$TVMQ_STALE_AFTER_S`` or 120) is ``stale``."""
        with self.read() as s:
            return repository.list_sessions(s, limit, stale_after_s or stale_after())

    def stale_sessions(self, *, stale_after_s: float | None = None) -> list[SessionInfo]:
        """The sessions marked running that stopped sending heartbeats (killed, or cut off)."""
        with self.read() as s:
            running = repository.list_sessions(s, None, stale_after_s or stale_after(), running_only=True)
        return [x for x in running if x.stale]

    def record_session(self, record_id: int) -> int | None:
        """The id of the session that measured record ``record_id`` (None: imported/unknown)."""
        with self.read() as s:
            return repository.record_session(s, record_id)

    # -------------------------------------------------------------------- read side

    def workloads(self, *, target: Any = None) -> list[WorkloadInfo]:
        """Every workload with its record count, number of targets and best mean run time."""
        with self.read() as s:
            return repository.list_workloads(s, target)

    def count_records(self, target: Any = None) -> int:
        with self.read() as s:
            return repository.count_records(s, target)

    def best_records(self, *, target: Any = None, workload_id: int | None = None,
                     top_k: int = 1) -> list[RecordInfo]:
        """The ``top_k`` best valid records per workload per target (optionally filtered)."""
        with self.read() as s:
            return repository.best_records(s, target, workload_id, top_k)

    def record(self, record_id: int) -> RecordInfo:
        """One record as plain data."""
        with self.read() as s:
            info = repository.get_record(s, record_id)
        if info is None:
            raise DatabaseError(f"There is no tuning record {record_id} in {self.where}.")
        return info

    def records(self, *, target: Any = None, workload_id: int | None = None) -> list[RecordInfo]:
        with self.read() as s:
            return repository.list_records(s, target, workload_id)

    def targets(self) -> list[TargetInfo]:
        """Every target with records: counts and the sum over workloads of the best run time."""
        with self.read() as s:
            return repository.list_targets(s)
