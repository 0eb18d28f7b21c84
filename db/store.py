"""TuningDatabase: the tuning database and everything tvmq does with it.

MetaSchedule reads and writes it through :meth:`TuningDatabase.scoped` (see
:mod:`tvmq.db.msdb`); the tuning driver and ``tvmq-db`` use the methods here.
TVM is imported lazily, so commands that only list sessions stay fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import platform
import socket
import uuid as uuid_mod
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import case, delete, func, inspect, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from tvmq.errors import DatabaseError

from . import keys
from .engine import default_timeout, describe_url, is_sqlite, make_engine, resolve_url, translate_errors
from .models import (
    SCHEMA_VERSION,
    SESSION_STATUSES,
    Base,
    Meta,
    TuningRecordRow,
    TuningSessionRow,
    WorkloadRow,
    utcnow,
)

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"


# ------------------------------------------------------------------------------ result types


@dataclass(frozen=True)
class SessionInfo:
    id: int
    uuid: str
    model_name: str | None
    model_sha256: str | None
    target_profile: str | None
    target_key: str | None
    target_json: str | None
    tvm_version: str | None
    host_name: str | None
    host_cpu: str | None
    trials_requested: int | None
    trials_done: int
    started_at: datetime
    ended_at: datetime | None
    status: str
    num_records: int = 0


@dataclass(frozen=True)
class RecordInfo:
    """A tuning record as plain data (no TVM objects)."""

    id: int
    workload_id: int
    workload_name: str
    target_key: str
    target_json: str
    mean_run_secs: float | None
    run_secs: list[float] | None
    session_id: int | None
    created_at: datetime


@dataclass(frozen=True)
class WorkloadSummary:
    """What the database knows of one workload on one target (see :meth:`TuningDatabase.summarize`)."""

    workload_id: int | None  # None: the workload is not in the database at all
    num_records: int  # records on this target, valid or not
    num_valid: int  # records MetaSchedule would serve (measured, non-empty trace)
    best_mean_run_secs: float | None
    best_record_id: int | None
    best_session_id: int | None  # the session that measured the best record

    @property
    def tuned(self) -> bool:
        return self.best_record_id is not None


@dataclass(frozen=True)
class WorkloadInfo:
    id: int
    name: str
    shash: str
    num_records: int
    num_targets: int
    best_mean_run_secs: float | None
    created_at: datetime


@dataclass(frozen=True)
class TargetInfo:
    target_key: str
    target_json: str
    num_records: int
    num_workloads: int
    num_sessions: int
    best_total_secs: float | None  # sum over workloads of the best mean run time
    last_record_at: datetime | None


@dataclass
class TransferResult:
    """What ``import``/``merge`` did."""

    workloads_added: int = 0
    workloads_known: int = 0
    records_added: int = 0
    records_duplicate: int = 0
    records_skipped: int = 0  # e.g. imported records without a target and no default target
    sessions_added: int = 0


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


# ---------------------------------------------------------------------------------- helpers


def _tvm_version() -> str:
    import tvm

    return str(tvm.__version__)


def _mod_name(mod: Any) -> str:
    """The display name of a workload: its PrimFunc's global symbol, else the GlobalVar name."""
    try:
        items = list(mod.functions_items())
    except Exception:  # noqa: BLE001
        return "main"
    for gv, fn in items:
        attrs = getattr(fn, "attrs", None)
        try:
            if attrs is not None and "global_symbol" in attrs:
                sym = str(attrs["global_symbol"])
                if sym and sym != "main":
                    return sym
        except Exception:  # noqa: BLE001
            pass
        return gv.name_hint
    return "main"


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _is_valid(trace: Any, run_secs: Sequence[float] | None) -> bool:
    """MetaSchedule's TuningRecord::IsValid on the JSON form."""
    try:
        insts = trace[0]
    except (TypeError, IndexError, KeyError):
        return False
    if not insts or (isinstance(insts[0], list) and insts[0] and insts[0][0] == "EnterPostproc"):
        return False
    if not run_secs:
        return False
    return any(s is not None and float(s) != keys.MAX_MEAN_TIME for s in run_secs)


def _mean(run_secs: Sequence[float] | None) -> float | None:
    if not run_secs:
        return None
    return sum(float(s) for s in run_secs) / len(run_secs)


def _record_digest(mod_sha256: str, target_json: str, trace_json: str, run_secs_json: str | None) -> str:
    h = hashlib.sha256()
    for part in (mod_sha256, target_json, trace_json, run_secs_json or "null"):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def _host_cpu() -> str:
    try:
        from tvmq.targets import host_info

        return host_info().model_name or platform.processor() or platform.machine()
    except Exception:  # noqa: BLE001
        return platform.processor() or platform.machine()


def _session_info(row: TuningSessionRow, num_records: int = 0) -> SessionInfo:
    return SessionInfo(
        id=row.id, uuid=row.uuid, model_name=row.model_name, model_sha256=row.model_sha256,
        target_profile=row.target_profile, target_key=row.target_key, target_json=row.target_json,
        tvm_version=row.tvm_version, host_name=row.host_name, host_cpu=row.host_cpu,
        trials_requested=row.trials_requested, trials_done=row.trials_done or 0,
        started_at=row.started_at, ended_at=row.ended_at, status=row.status, num_records=num_records,
    )


# ----------------------------------------------------------------------------- the database


class TuningDatabase:
    """The tuning database behind a SQLAlchemy URL (a SQLite file by default).

    Use :func:`tvmq.db.open_database` to get one. It is safe to use from several processes at
    once (SQLite WAL, ``BEGIN IMMEDIATE`` writes, busy timeout); one instance should be used by
    one thread at a time.
    """

    def __init__(self, url_or_path: str | Path | None = None, *, timeout_s: float | None = None):
        self.url = resolve_url(url_or_path)
        self.where = describe_url(self.url)
        self.timeout_s = default_timeout() if timeout_s is None else float(timeout_s)
        self.is_sqlite = is_sqlite(self.url)
        self.engine = make_engine(self.url, self.timeout_s)
        self._sessions = sessionmaker(bind=self.engine, expire_on_commit=False)
        # id -> (IRModule, ms Workload); workload objects handed to MetaSchedule stay alive here
        self._workloads: dict[int, tuple[Any, Any]] = {}
        # Workload object hash (address) -> workload id, for records MetaSchedule commits
        self._wl_by_obj: dict[int, int] = {}
        self._records: OrderedDict[int, Any] = OrderedDict()  # record id -> ms TuningRecord
        self._hashes_fresh = False
        self._init_schema()

    # -------------------------------------------------------------------- plumbing

    def __repr__(self) -> str:
        return f"TuningDatabase({self.where!r})"

    def __enter__(self) -> TuningDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections (records are already on disk)."""
        self.engine.dispose()

    def _errors(self):
        return translate_errors(self.where, self.timeout_s)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with self._errors(), self._sessions() as s:
            yield s

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        """One write transaction, committed (on disk) when the block ends."""
        with self._errors():
            with self.engine.connect() as conn:
                conn = conn.execution_options(tvmq_write=True)
                with Session(bind=conn, expire_on_commit=False) as s:
                    with conn.begin():
                        yield s
                        s.flush()

    def _init_schema(self) -> None:
        with self._errors():
            with self.engine.connect() as conn:
                names = set(inspect(conn).get_table_names())
            if names and "tvmq_meta" not in names:
                raise DatabaseError(
                    f"{self.where} is a database but not a tvmq tuning database "
                    f"(it has tables {', '.join(sorted(names)[:5])})."
                )
            if "tvmq_meta" not in names or not {t.name for t in Base.metadata.sorted_tables} <= names:
                with self.engine.connect() as conn:
                    conn = conn.execution_options(tvmq_write=True)
                    with conn.begin():
                        Base.metadata.create_all(conn)
                        have = conn.execute(
                            select(Meta.value).where(Meta.key == "schema_version")
                        ).scalar()
                        if have is None:
                            conn.execute(
                                Meta.__table__.insert().values(key="schema_version", value=str(SCHEMA_VERSION))
                            )
            with self.engine.connect() as conn:
                version = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar()
        if version is not None and int(version) > SCHEMA_VERSION:
            raise DatabaseError(
                f"{self.where} was written by a newer tvmq (schema {version}, this one reads "
                f"{SCHEMA_VERSION}); upgrade tvmq to use it."
            )

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
        """Record the start of a tuning run; returns the session id (status ``running``)."""
        tkey = tjson = None
        if target is not None:
            tkey, tjson = keys.target_identity(target)
        if tvm_version is None:
            try:
                from importlib.metadata import version

                tvm_version = version("apache-tvm")
            except Exception:  # noqa: BLE001
                tvm_version = None
        row = TuningSessionRow(
            uuid=str(uuid_mod.uuid4()), model_sha256=model_sha256, model_name=model_name,
            target_profile=target_profile, target_json=tjson, target_key=tkey,
            tvm_version=tvm_version, host_name=host_name or socket.gethostname(),
            host_cpu=host_cpu or _host_cpu(), trials_requested=trials_requested,
            trials_done=0, started_at=utcnow(), status="running", note=note,
        )
        with self._write() as s:
            s.add(row)
            s.flush()
            return int(row.id)

    def update_session(self, session_id: int, *, trials_done: int) -> None:
        """Update the trial count of a running session (e.g. after each measured batch)."""
        with self._write() as s:
            s.execute(update(TuningSessionRow).where(TuningSessionRow.id == session_id)
                      .values(trials_done=int(trials_done)))

    def end_session(self, session_id: int, status: str = "finished", trials_done: int | None = None) -> None:
        """Close a session with ``status`` (finished, interrupted or failed) and its trial count."""
        if status not in SESSION_STATUSES:
            raise DatabaseError(
                f"Unknown session status {status!r}; use one of: {', '.join(SESSION_STATUSES)}."
            )
        values: dict[str, Any] = {"status": status, "ended_at": utcnow()}
        if trials_done is not None:
            values["trials_done"] = int(trials_done)
        with self._write() as s:
            done = s.execute(update(TuningSessionRow).where(TuningSessionRow.id == session_id).values(**values))
            if done.rowcount == 0:
                raise DatabaseError(f"There is no tuning session {session_id} in {self.where}.")

    def session(self, session_id: int) -> SessionInfo:
        with self._read() as s:
            row = s.get(TuningSessionRow, session_id)
            if row is None:
                raise DatabaseError(f"There is no tuning session {session_id} in {self.where}.")
            n = s.scalar(select(func.count()).select_from(TuningRecordRow)
                         .where(TuningRecordRow.session_id == session_id)) or 0
            return _session_info(row, int(n))

    def sessions(self, *, limit: int | None = None) -> list[SessionInfo]:
        """All sessions, newest first, with their record counts."""
        counts = (select(TuningRecordRow.session_id, func.count().label("n"))
                  .group_by(TuningRecordRow.session_id).subquery())
        q = (select(TuningSessionRow, counts.c.n)
             .outerjoin(counts, counts.c.session_id == TuningSessionRow.id)
             .order_by(TuningSessionRow.id.desc()))
        if limit:
            q = q.limit(limit)
        with self._read() as s:
            return [_session_info(row, int(n or 0)) for row, n in s.execute(q)]

    def record_session(self, record_id: int) -> int | None:
        """The id of the session that measured record ``record_id`` (None: imported/unknown)."""
        with self._read() as s:
            return s.scalar(select(TuningRecordRow.session_id).where(TuningRecordRow.id == record_id))

    # ------------------------------------------------------------ MetaSchedule view

    def scoped(self, target: Any, *, module_equality: str = "structural",
               session_id: int | None = None) -> Any:
        """A MetaSchedule ``Database`` that reads and writes this database for one target.

        See :class:`tvmq.db.msdb.ScopedDatabase`.
        """
        from .msdb import ScopedDatabase

        return ScopedDatabase(self, target, module_equality=module_equality, session_id=session_id)

    # -------------------------------------------------------------------- workloads

    def _refresh_hashes(self) -> None:
        """Recompute workload hashes written by another TVM version (hashes are not portable)."""
        if self._hashes_fresh:
            return
        import tvm

        current = _tvm_version()
        with self._read() as s:
            stale = s.execute(select(WorkloadRow.id, WorkloadRow.mod_json)
                              .where(WorkloadRow.hash_tvm_version != current)).all()
        if stale:
            with self._write() as s:
                for wid, mod_json in stale:
                    try:
                        mod = tvm.ir.load_json(mod_json)
                    except Exception:  # noqa: BLE001 - reported by check()
                        continue
                    h = keys.all_module_hashes(mod)
                    s.execute(update(WorkloadRow).where(WorkloadRow.id == wid).values(
                        shash_structural=h["structural"], shash_ignore_tensor=h["ignore-tensor"],
                        shash_anchor_block=h["anchor-block"], hash_tvm_version=current))
        self._hashes_fresh = True

    def _load_workload(self, wid: int, mod_json: str | None = None) -> tuple[Any, Any]:
        hit = self._workloads.get(wid)
        if hit is not None:
            return hit
        import tvm
        from tvm.s_tir import meta_schedule as ms

        if mod_json is None:
            with self._read() as s:
                mod_json = s.scalar(select(WorkloadRow.mod_json).where(WorkloadRow.id == wid))
            if mod_json is None:
                raise DatabaseError(f"Workload {wid} is missing from {self.where}.")
        try:
            mod = tvm.ir.load_json(mod_json)
        except Exception as err:  # noqa: BLE001
            raise DatabaseError(
                f"Workload {wid} in {self.where} cannot be read by this TVM ({_short(err)}); "
                "run `tvmq-db check`."
            ) from None
        wl = ms.database.Workload(mod)
        self._workloads[wid] = (mod, wl)
        self._wl_by_obj[wl.__hash__()] = wid
        return mod, wl

    def _find_workload_ids(self, s: Session, mod: Any, module_equality: str,
                           mod_hash: str | None = None) -> list[int]:
        """Ids of stored workloads equal to ``mod`` under ``module_equality`` (oldest first)."""
        self._refresh_hashes()
        if mod_hash is None:
            mod_hash = str(keys.module_hash(mod, module_equality))
        col = getattr(WorkloadRow, keys.hash_column(module_equality))
        rows = s.execute(select(WorkloadRow.id, WorkloadRow.mod_json).where(col == mod_hash)
                         .order_by(WorkloadRow.id)).all()
        out = []
        for wid, mod_json in rows:
            stored, _ = self._load_workload(wid, mod_json)
            if keys.modules_equal(stored, mod, module_equality):
                out.append(wid)
        return out

    def find_workload(self, mod: Any, module_equality: str = "structural") -> int | None:
        """The id of the stored workload equal to ``mod``, or None."""
        keys.check_module_equality(module_equality)
        with self._read() as s:
            ids = self._find_workload_ids(s, mod, module_equality)
        return ids[0] if ids else None

    def _insert_workload(self, s: Session, mod: Any, name: str | None = None,
                         hashes: dict[str, str] | None = None, mod_json: str | None = None) -> int:
        import tvm

        mod_json = mod_json or tvm.ir.save_json(mod)
        sha = hashlib.sha256(mod_json.encode()).hexdigest()
        existing = s.scalar(select(WorkloadRow.id).where(WorkloadRow.mod_sha256 == sha))
        if existing is not None:
            return int(existing)
        h = hashes or keys.all_module_hashes(mod)
        row = WorkloadRow(
            name=name or _mod_name(mod), shash_structural=h["structural"],
            shash_ignore_tensor=h["ignore-tensor"], shash_anchor_block=h["anchor-block"],
            hash_tvm_version=_tvm_version(), mod_json=mod_json, mod_sha256=sha, created_at=utcnow(),
        )
        s.add(row)
        s.flush()
        return int(row.id)

    def commit_workload(self, mod: Any, module_equality: str = "structural") -> tuple[int, Any]:
        """Find or add ``mod``; returns ``(workload id, ms.database.Workload)``."""
        keys.check_module_equality(module_equality)
        mod_hash = str(keys.module_hash(mod, module_equality))
        with self._read() as s:
            ids = self._find_workload_ids(s, mod, module_equality, mod_hash)
        if not ids:
            with self._write() as s:  # re-check under the write lock: another process may have won
                ids = self._find_workload_ids(s, mod, module_equality, mod_hash)
                if not ids:
                    ids = [self._insert_workload(s, mod)]
        wid = ids[0]
        return wid, self._load_workload(wid)[1]

    def label_workloads(self, named_mods: Iterable[tuple[str, Any]],
                        module_equality: str = "structural") -> list[int]:
        """Add workloads (if missing) and name them, e.g. with MetaSchedule task names."""
        ids = []
        for name, mod in named_mods:
            wid, _ = self.commit_workload(mod, module_equality)
            with self._write() as s:
                s.execute(update(WorkloadRow).where(WorkloadRow.id == wid).values(name=str(name)[:200]))
            ids.append(wid)
        return ids

    def workload_module(self, workload_id: int) -> Any:
        """The IRModule of a stored workload."""
        return self._load_workload(workload_id)[0]

    def workloads(self, *, target: Any = None) -> list[WorkloadInfo]:
        """Every workload with its record count, number of targets and best mean run time."""
        rec = TuningRecordRow
        conds = []
        if target is not None:
            tkey, tjson = keys.target_identity(target)
            conds = [rec.target_key == tkey, rec.target_json == tjson]
        stats = (select(rec.workload_id, func.count().label("n"),
                        func.count(func.distinct(rec.target_json)).label("nt"),
                        func.min(rec.mean_run_secs).label("best"))
                 .where(*conds).group_by(rec.workload_id).subquery())
        q = (select(WorkloadRow.id, WorkloadRow.name, WorkloadRow.shash_structural, WorkloadRow.created_at,
                    stats.c.n, stats.c.nt, stats.c.best)
             .outerjoin(stats, stats.c.workload_id == WorkloadRow.id).order_by(WorkloadRow.id))
        if target is not None:
            q = q.where(stats.c.n > 0)
        with self._read() as s:
            return [WorkloadInfo(id=r[0], name=r[1], shash=r[2], created_at=r[3], num_records=int(r[4] or 0),
                                 num_targets=int(r[5] or 0), best_mean_run_secs=r[6]) for r in s.execute(q)]

    # -------------------------------------------------------------------- records

    def _workload_id_of(self, s: Session, workload: Any, module_equality: str) -> int:
        wid = self._wl_by_obj.get(workload.__hash__())
        if wid is not None:
            return wid
        ids = self._find_workload_ids(s, workload.mod, module_equality)
        if ids:
            return ids[0]
        return self._insert_workload(s, workload.mod)

    def _record_row(self, s: Session, record: Any, workload_id: int, target_key: str,
                    target_json: str, session_id: int | None) -> TuningRecordRow:
        j = record.as_json()  # [trace, run_secs, target config, args_info]
        trace, run_secs, args_info = j[0], j[1], j[3]
        run_secs = None if run_secs is None else [float(x) for x in run_secs]
        trace_json = _dumps(trace)
        run_json = None if run_secs is None else _dumps(run_secs)
        mod_sha = s.scalar(select(WorkloadRow.mod_sha256).where(WorkloadRow.id == workload_id))
        return TuningRecordRow(
            workload_id=workload_id, session_id=session_id, target_key=target_key,
            target_json=target_json, trace_json=trace_json, run_secs_json=run_json,
            mean_run_secs=_mean(run_secs) if _is_valid(trace, run_secs) else None,
            args_info_json=None if args_info is None else _dumps(args_info),
            record_sha256=_record_digest(mod_sha or "", target_json, trace_json, run_json),
            created_at=utcnow(),
        )

    def commit_record(self, record: Any, *, target: Any = None, session_id: int | None = None,
                      module_equality: str = "structural") -> int:
        """Store one ``ms.database.TuningRecord`` now (its own transaction); returns its id.

        The record is stored under its own target, or ``target`` when it has none.
        """
        rec_target = record.target if record.target is not None else target
        if rec_target is None:
            raise DatabaseError("A tuning record without a target cannot be stored; give a target.")
        tkey, tjson = keys.target_identity(rec_target)
        self._refresh_hashes()  # never inside a write transaction (it writes itself)
        with self._write() as s:
            wid = self._workload_id_of(s, record.workload, module_equality)
            row = self._record_row(s, record, wid, tkey, tjson, session_id)
            s.add(row)
            s.flush()
            return int(row.id)

    def _to_ms_record(self, row_or_tuple: Any) -> Any:
        """An ``ms.database.TuningRecord`` from a stored row (cached; replays the trace once)."""
        from tvm.s_tir import meta_schedule as ms

        rid, wid, trace_json, run_json, target_json, args_json = row_or_tuple
        hit = self._records.get(rid)
        if hit is not None:
            self._records.move_to_end(rid)
            return hit
        _, wl = self._load_workload(wid)
        try:
            rec = ms.database.TuningRecord.from_json(
                [json.loads(trace_json), None if run_json is None else json.loads(run_json),
                 json.loads(target_json), None if args_json is None else json.loads(args_json)],
                wl,
            )
        except Exception as err:  # noqa: BLE001
            raise DatabaseError(
                f"Tuning record {rid} in {self.where} cannot be replayed ({_short(err)}); "
                "run `tvmq-db check --fix`."
            ) from None
        self._records[rid] = rec
        if len(self._records) > 4096:
            self._records.popitem(last=False)
        return rec

    _REC_COLS = (TuningRecordRow.id, TuningRecordRow.workload_id, TuningRecordRow.trace_json,
                 TuningRecordRow.run_secs_json, TuningRecordRow.target_json, TuningRecordRow.args_info_json)

    def top_k(self, mod: Any, target: Any, k: int, module_equality: str = "structural") -> list[Any]:
        """The ``k`` best valid ``ms`` TuningRecords of ``mod`` on exactly ``target``."""
        tkey, tjson = keys.target_identity(target)
        return self._top_k_ids(mod, tkey, tjson, k, module_equality)

    def _top_k_ids(self, mod: Any, tkey: str, tjson: str, k: int, module_equality: str,
                   wids: list[int] | None = None) -> list[Any]:
        if k < 0:
            raise ValueError("top_k must be non-negative")
        if k == 0:
            return []
        with self._read() as s:
            if wids is None:
                wids = self._find_workload_ids(s, mod, module_equality)
            if not wids:
                return []
            r = TuningRecordRow
            rows = s.execute(select(*self._REC_COLS).where(
                r.workload_id.in_(wids), r.target_key == tkey, r.target_json == tjson,
                r.mean_run_secs.is_not(None)).order_by(r.mean_run_secs, r.id).limit(k)).all()
        return [self._to_ms_record(tuple(row)) for row in rows]

    def _all_ms_records(self, tkey: str, tjson: str) -> list[Any]:
        r = TuningRecordRow
        with self._read() as s:
            rows = s.execute(select(*self._REC_COLS).where(r.target_key == tkey, r.target_json == tjson)
                             .order_by(case((r.mean_run_secs.is_(None), 1), else_=0), r.mean_run_secs, r.id)).all()
        return [self._to_ms_record(tuple(row)) for row in rows]

    def count_records(self, target: Any = None) -> int:
        r = TuningRecordRow
        q = select(func.count()).select_from(r)
        if target is not None:
            tkey, tjson = keys.target_identity(target)
            q = q.where(r.target_key == tkey, r.target_json == tjson)
        with self._read() as s:
            return int(s.scalar(q) or 0)

    def summarize(self, mods: Sequence[Any], target: Any,
                  module_equality: str = "structural") -> list[WorkloadSummary]:
        """For each module: is it stored, how many records on ``target``, the best one and its session."""
        keys.check_module_equality(module_equality)
        tkey, tjson = keys.target_identity(target)
        r = TuningRecordRow
        out = []
        with self._read() as s:
            for mod in mods:
                wids = self._find_workload_ids(s, mod, module_equality)
                if not wids:
                    out.append(WorkloadSummary(None, 0, 0, None, None, None))
                    continue
                base = (r.workload_id.in_(wids), r.target_key == tkey, r.target_json == tjson)
                n_all, n_valid = s.execute(select(func.count(), func.count(r.mean_run_secs)).where(*base)).one()
                best = s.execute(select(r.id, r.mean_run_secs, r.session_id)
                                 .where(*base, r.mean_run_secs.is_not(None))
                                 .order_by(r.mean_run_secs, r.id).limit(1)).first()
                out.append(WorkloadSummary(
                    workload_id=wids[0], num_records=int(n_all), num_valid=int(n_valid),
                    best_mean_run_secs=best[1] if best else None,
                    best_record_id=best[0] if best else None,
                    best_session_id=best[2] if best else None,
                ))
        return out

    def best_records(self, *, target: Any = None, workload_id: int | None = None,
                     top_k: int = 1) -> list[RecordInfo]:
        """The ``top_k`` best valid records per workload per target (optionally filtered)."""
        r = TuningRecordRow
        rn = func.row_number().over(partition_by=(r.workload_id, r.target_json),
                                    order_by=(r.mean_run_secs, r.id)).label("rn")
        conds = [r.mean_run_secs.is_not(None)]
        if target is not None:
            tkey, tjson = keys.target_identity(target)
            conds += [r.target_key == tkey, r.target_json == tjson]
        if workload_id is not None:
            conds.append(r.workload_id == workload_id)
        inner = select(r.id, rn).where(*conds).subquery()
        q = (select(r, WorkloadRow.name).join(inner, inner.c.id == r.id)
             .join(WorkloadRow, WorkloadRow.id == r.workload_id)
             .where(inner.c.rn <= top_k).order_by(r.target_key, r.workload_id, r.mean_run_secs, r.id))
        with self._read() as s:
            return [_record_info(row, name) for row, name in s.execute(q)]

    def record(self, record_id: int) -> RecordInfo:
        """One record as plain data."""
        r = TuningRecordRow
        with self._read() as s:
            hit = s.execute(select(r, WorkloadRow.name).join(WorkloadRow, WorkloadRow.id == r.workload_id)
                            .where(r.id == record_id)).first()
        if hit is None:
            raise DatabaseError(f"There is no tuning record {record_id} in {self.where}.")
        return _record_info(*hit)

    def records(self, *, target: Any = None, workload_id: int | None = None) -> list[RecordInfo]:
        r = TuningRecordRow
        q = select(r, WorkloadRow.name).join(WorkloadRow, WorkloadRow.id == r.workload_id).order_by(r.id)
        if target is not None:
            tkey, tjson = keys.target_identity(target)
            q = q.where(r.target_key == tkey, r.target_json == tjson)
        if workload_id is not None:
            q = q.where(r.workload_id == workload_id)
        with self._read() as s:
            return [_record_info(row, name) for row, name in s.execute(q)]

    def targets(self) -> list[TargetInfo]:
        """Every target with records: counts and the sum over workloads of the best run time."""
        r = TuningRecordRow
        best = (select(r.target_json, r.workload_id, func.min(r.mean_run_secs).label("b"))
                .group_by(r.target_json, r.workload_id).subquery())
        best_sum = select(best.c.target_json, func.sum(best.c.b).label("tot")).group_by(best.c.target_json).subquery()
        q = (select(r.target_key, r.target_json, func.count(), func.count(func.distinct(r.workload_id)),
                    func.count(func.distinct(r.session_id)), func.max(r.created_at), best_sum.c.tot)
             .outerjoin(best_sum, best_sum.c.target_json == r.target_json)
             .group_by(r.target_key, r.target_json, best_sum.c.tot).order_by(r.target_key))
        with self._read() as s:
            return [TargetInfo(target_key=k, target_json=j, num_records=int(n), num_workloads=int(nw),
                               num_sessions=int(ns), last_record_at=last, best_total_secs=tot)
                    for k, j, n, nw, ns, last, tot in s.execute(q)]

    # -------------------------------------------------------------------- prune

    def prune(self, keep: int, *, target: Any = None, vacuum: bool = True) -> int:
        """Keep the ``keep`` best valid records per workload per target; delete the rest.

        Records that MetaSchedule would never serve (failed or unmeasured) are deleted too.
        Returns the number of records deleted.
        """
        if keep < 1:
            raise DatabaseError("prune needs --keep of at least 1 (use a new database to start over).")
        r = TuningRecordRow
        rn = func.row_number().over(
            partition_by=(r.workload_id, r.target_json),
            order_by=(case((r.mean_run_secs.is_(None), 1), else_=0), r.mean_run_secs, r.id)).label("rn")
        conds = []
        if target is not None:
            tkey, tjson = keys.target_identity(target)
            conds = [r.target_key == tkey, r.target_json == tjson]
        ranked = select(r.id, rn, r.mean_run_secs.label("m")).where(*conds).subquery()
        doomed = select(ranked.c.id).where(or_(ranked.c.rn > keep, ranked.c.m.is_(None)))
        with self._write() as s:
            ids = [i for (i,) in s.execute(doomed)]
            for chunk in _chunks(ids, 500):
                s.execute(delete(r).where(r.id.in_(chunk)))
        for i in ids:
            self._records.pop(i, None)
        if ids and vacuum and self.is_sqlite:
            self.vacuum()
        return len(ids)

    def vacuum(self) -> None:
        """Compact a SQLite file (outside any transaction; needs no other writer)."""
        if not self.is_sqlite:
            return
        with self._errors():
            raw = self.engine.raw_connection()
            try:
                raw.driver_connection.execute("VACUUM")
            finally:
                raw.close()

    # ----------------------------------------------------------- JSON interop

    def export_json(self, directory: str | Path, *, target: Any = None, top_k: int | None = None,
                    overwrite: bool = False) -> tuple[int, int]:
        """Write MetaSchedule's JSON database (``database_workload.json`` +
        ``database_tuning_record.json``, as ``ms.database.JSONDatabase(work_dir=...)`` reads them).

        ``target`` limits it to one target; ``top_k`` to the best k records per workload per target.
        Returns ``(workloads written, records written)``.
        """
        from tvm.s_tir import meta_schedule as ms

        d = Path(directory)
        if d.exists() and not d.is_dir():
            raise DatabaseError(f"Cannot export to {d}: it is a file, not a folder.")
        d.mkdir(parents=True, exist_ok=True)
        files = [d / WORKLOAD_FILE, d / RECORD_FILE]
        if any(f.exists() for f in files):
            if not overwrite:
                raise DatabaseError(f"{d} already holds a MetaSchedule database; "
                                    "choose an empty folder or pass --overwrite.")
            for f in files:
                f.unlink(missing_ok=True)
        r = TuningRecordRow
        if top_k is not None:
            rows_info = self.best_records(target=target, top_k=top_k)
            ids = sorted(x.id for x in rows_info)
            cond = [r.id.in_(ids)] if ids else [r.id == -1]
        else:
            cond = []
            if target is not None:
                tkey, tjson = keys.target_identity(target)
                cond = [r.target_key == tkey, r.target_json == tjson]
        with self._read() as s:
            if target is None and top_k is None:
                wids = [w for (w,) in s.execute(select(WorkloadRow.id).order_by(WorkloadRow.id))]
            else:
                wids = [w for (w,) in s.execute(select(r.workload_id).where(*cond).distinct()
                                                 .order_by(r.workload_id))]
            rows = s.execute(select(*self._REC_COLS).where(*cond).order_by(r.id)).all()
        try:
            jdb = ms.database.JSONDatabase(work_dir=str(d), module_equality="structural")
        except Exception as err:  # noqa: BLE001
            raise DatabaseError(f"Cannot write a MetaSchedule database in {d} ({_short(err)}).") from None
        ms_wl: dict[int, Any] = {}
        for wid in wids:
            ms_wl[wid] = jdb.commit_workload(self.workload_module(wid))
        for row in rows:
            rec = self._to_ms_record(tuple(row))
            wl = ms_wl.get(rec_wid := row[1])
            if wl is None:
                wl = ms_wl[rec_wid] = jdb.commit_workload(self.workload_module(rec_wid))
            jdb.commit_tuning_record(ms.database.TuningRecord(
                rec.trace, wl, rec.run_secs, rec.target, rec.args_info))
        return len(ms_wl), len(rows)

    def import_json(self, directory: str | Path, *, target: Any = None,
                    session_id: int | None = None) -> TransferResult:
        """Read a MetaSchedule JSON database (the two files ``JSONDatabase`` writes) into this one.

        Records are stored under their own target; ``target`` is used for records that have none
        (otherwise they are skipped). Records already present are not duplicated. The import is
        one transaction: on any error nothing is added.
        """
        from tvm.s_tir import meta_schedule as ms

        d = Path(directory)
        wfile, rfile = d / WORKLOAD_FILE, d / RECORD_FILE
        if not d.is_dir():
            raise DatabaseError(f"{d} is not a folder.")
        if not wfile.is_file() or not rfile.is_file():
            raise DatabaseError(f"{d} is not a MetaSchedule database: it needs both {WORKLOAD_FILE} "
                                f"and {RECORD_FILE}.")
        res = TransferResult()
        workloads: list[Any] = []
        for lineno, line in _lines(wfile):
            try:
                workloads.append(ms.database.Workload.from_json(json.loads(line)))
            except Exception as err:  # noqa: BLE001
                raise DatabaseError(f"{wfile}:{lineno} is not a MetaSchedule workload ({_short(err)}).") from None
        records: list[tuple[int, Any]] = []
        for lineno, line in _lines(rfile):
            try:
                idx, rjson = json.loads(line)
                idx = int(idx)
                if not 0 <= idx < len(workloads):
                    raise ValueError(f"workload index {idx} out of range")
                records.append((idx, ms.database.TuningRecord.from_json(rjson, workloads[idx])))
            except Exception as err:  # noqa: BLE001
                raise DatabaseError(f"{rfile}:{lineno} is not a MetaSchedule tuning record ({_short(err)}).") from None
        default = keys.target_identity(target) if target is not None else None
        self._refresh_hashes()
        with self._write() as s:
            wids = []
            for wl in workloads:
                ids = self._find_workload_ids(s, wl.mod, "structural")
                if ids:
                    res.workloads_known += 1
                    wids.append(ids[0])
                else:
                    res.workloads_added += 1
                    wids.append(self._insert_workload(s, wl.mod))
            for idx, rec in records:
                ident = keys.target_identity(rec.target) if rec.target is not None else default
                if ident is None:
                    res.records_skipped += 1
                    continue
                row = self._record_row(s, rec, wids[idx], ident[0], ident[1], session_id)
                if s.scalar(select(TuningRecordRow.id).where(
                        TuningRecordRow.record_sha256 == row.record_sha256,
                        TuningRecordRow.workload_id == row.workload_id).limit(1)) is not None:
                    res.records_duplicate += 1
                    continue
                s.add(row)
                s.flush()
                res.records_added += 1
        return res

    # -------------------------------------------------------------------- merge

    def merge(self, other: str | Path | TuningDatabase) -> TransferResult:
        """Copy every session, workload and record of ``other`` that this database lacks.

        Sessions are recognised by uuid, workloads by content (or structural equality), records
        by content, so merging the same database twice adds nothing the second time.
        """
        import tvm

        src = other if isinstance(other, TuningDatabase) else TuningDatabase(other, timeout_s=self.timeout_s)
        if src.url == self.url:
            raise DatabaseError("Cannot merge a database into itself.")
        res = TransferResult()
        current = _tvm_version()
        with src._read() as ss:
            s_sessions = list(ss.scalars(select(TuningSessionRow).order_by(TuningSessionRow.id)))
            s_workloads = list(ss.scalars(select(WorkloadRow).order_by(WorkloadRow.id)))
            s_records = list(ss.scalars(select(TuningRecordRow).order_by(TuningRecordRow.id)))
        self._refresh_hashes()
        with self._write() as s:
            sess_map: dict[int, int] = {}
            for row in s_sessions:
                have = s.scalar(select(TuningSessionRow.id).where(TuningSessionRow.uuid == row.uuid))
                if have is None:
                    copy = TuningSessionRow(**{c.key: getattr(row, c.key) for c in TuningSessionRow.__table__.columns
                                               if c.key != "id"})
                    s.add(copy)
                    s.flush()
                    have = copy.id
                    res.sessions_added += 1
                sess_map[row.id] = int(have)
            wl_map: dict[int, tuple[int, str]] = {}
            for row in s_workloads:
                have = s.execute(select(WorkloadRow.id, WorkloadRow.mod_sha256)
                                 .where(WorkloadRow.mod_sha256 == row.mod_sha256)).first()
                if have is None:
                    try:
                        mod = tvm.ir.load_json(row.mod_json)
                    except Exception as err:  # noqa: BLE001
                        raise DatabaseError(f"Workload {row.id} of {src.where} cannot be read ({_short(err)}).") from None
                    ids = self._find_workload_ids(s, mod, "structural")
                    if ids:
                        sha = s.scalar(select(WorkloadRow.mod_sha256).where(WorkloadRow.id == ids[0]))
                        have = (ids[0], sha)
                        res.workloads_known += 1
                    else:
                        hashes = None
                        if row.hash_tvm_version == current:
                            hashes = {"structural": row.shash_structural, "ignore-tensor": row.shash_ignore_tensor,
                                      "anchor-block": row.shash_anchor_block}
                        wid = self._insert_workload(s, mod, name=row.name, hashes=hashes, mod_json=row.mod_json)
                        have = (wid, row.mod_sha256)
                        res.workloads_added += 1
                else:
                    res.workloads_known += 1
                wl_map[row.id] = (int(have[0]), str(have[1]))
            for row in s_records:
                if row.workload_id not in wl_map:
                    res.records_skipped += 1  # orphan in the source
                    continue
                wid, sha = wl_map[row.workload_id]
                digest = _record_digest(sha, row.target_json, row.trace_json, row.run_secs_json)
                if s.scalar(select(TuningRecordRow.id).where(TuningRecordRow.record_sha256 == digest,
                                                              TuningRecordRow.workload_id == wid).limit(1)):
                    res.records_duplicate += 1
                    continue
                s.add(TuningRecordRow(
                    workload_id=wid, session_id=sess_map.get(row.session_id) if row.session_id else None,
                    target_key=row.target_key, target_json=row.target_json, trace_json=row.trace_json,
                    run_secs_json=row.run_secs_json, mean_run_secs=row.mean_run_secs,
                    args_info_json=row.args_info_json, record_sha256=digest, created_at=row.created_at))
                res.records_added += 1
        if src is not other:
            src.close()
        return res

    # -------------------------------------------------------------------- check

    def check(self, *, deep: bool = True, fix: bool = False) -> CheckReport:
        """Integrity: SQLite's integrity_check, orphans, unreadable workloads/targets/traces.

        ``deep`` replays every trace on its workload (what MetaSchedule does when it loads a
        record); ``fix`` deletes orphans and unreadable records/workloads.
        """
        rep = CheckReport()
        r = TuningRecordRow
        with self._errors(), self.engine.connect() as conn:
            if self.is_sqlite:
                res = [x for (x,) in conn.exec_driver_sql("PRAGMA integrity_check").fetchall()]
                if res != ["ok"]:
                    rep.problems += [f"SQLite integrity_check: {x}" for x in res[:20]]
                fk = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if fk:
                    rep.problems.append(f"{len(fk)} rows break foreign keys (PRAGMA foreign_key_check).")
        with self._read() as s:
            rep.counts = {
                "workloads": int(s.scalar(select(func.count()).select_from(WorkloadRow)) or 0),
                "records": int(s.scalar(select(func.count()).select_from(r)) or 0),
                "sessions": int(s.scalar(select(func.count()).select_from(TuningSessionRow)) or 0),
            }
            orphan_wl = [i for (i,) in s.execute(
                select(r.id).outerjoin(WorkloadRow, WorkloadRow.id == r.workload_id).where(WorkloadRow.id.is_(None)))]
            orphan_sess = [i for (i,) in s.execute(
                select(r.id).outerjoin(TuningSessionRow, TuningSessionRow.id == r.session_id)
                .where(r.session_id.is_not(None), TuningSessionRow.id.is_(None)))]
            running = s.scalar(select(func.count()).select_from(TuningSessionRow)
                               .where(TuningSessionRow.status == "running")) or 0
            wl_rows = s.execute(select(WorkloadRow.id, WorkloadRow.mod_json, WorkloadRow.mod_sha256)).all()
            rec_rows = s.execute(select(*self._REC_COLS)).all()
        if orphan_wl:
            rep.problems.append(f"{len(orphan_wl)} records point to missing workloads (ids {_ids(orphan_wl)}).")
        if orphan_sess:
            rep.problems.append(f"{len(orphan_sess)} records point to missing sessions (ids {_ids(orphan_sess)}).")
        if running:
            rep.notes.append(f"{running} sessions are still marked running (in progress, or killed).")
        bad_wl, bad_rec, bad_target = [], [], []
        import tvm

        for wid, mod_json, sha in wl_rows:
            try:
                tvm.ir.load_json(mod_json)
                if hashlib.sha256(mod_json.encode()).hexdigest() != sha:
                    raise ValueError("content hash mismatch")
            except Exception:  # noqa: BLE001
                bad_wl.append(wid)
        if bad_wl:
            rep.problems.append(f"{len(bad_wl)} workloads cannot be read (ids {_ids(bad_wl)}).")
        orphan_set, bad_wl_set = set(orphan_wl), set(bad_wl)
        target_ok: dict[str, bool] = {}
        for row in rec_rows:
            rid, wid, trace_json, run_json, target_json, args_json = row
            if rid in orphan_set or wid in bad_wl_set:
                continue
            if target_json not in target_ok:
                try:
                    keys.as_target(target_json)
                    target_ok[target_json] = True
                except Exception:  # noqa: BLE001
                    target_ok[target_json] = False
            if not target_ok[target_json]:
                bad_target.append(rid)
                continue
            try:
                json.loads(trace_json)
                if run_json is not None:
                    json.loads(run_json)
                if args_json is not None:
                    json.loads(args_json)
                if deep:
                    self._records.pop(rid, None)
                    self._to_ms_record(tuple(row))
            except Exception:  # noqa: BLE001
                bad_rec.append(rid)
        if bad_target:
            rep.problems.append(f"{len(bad_target)} records have a target TVM cannot parse (ids {_ids(bad_target)}).")
        if bad_rec:
            rep.problems.append(f"{len(bad_rec)} records have traces that cannot be "
                                f"{'replayed' if deep else 'parsed'} (ids {_ids(bad_rec)}).")
        if fix:
            doomed = sorted(set(orphan_wl) | set(bad_rec) | set(bad_target))
            with self._write() as s:
                for chunk in _chunks(doomed, 500):
                    s.execute(delete(r).where(r.id.in_(chunk)))
                if orphan_sess:
                    for chunk in _chunks(orphan_sess, 500):
                        s.execute(update(r).where(r.id.in_(chunk)).values(session_id=None))
                for chunk in _chunks(bad_wl, 500):
                    s.execute(delete(r).where(r.workload_id.in_(chunk)))
                    s.execute(delete(WorkloadRow).where(WorkloadRow.id.in_(chunk)))
            if doomed:
                rep.fixed.append(f"deleted {len(doomed)} orphaned or unreadable records")
            if orphan_sess:
                rep.fixed.append(f"detached {len(orphan_sess)} records from missing sessions")
            if bad_wl:
                rep.fixed.append(f"deleted {len(bad_wl)} unreadable workloads and their records")
            if rep.fixed:
                rep.notes += [f"fixed: {x}" for x in rep.fixed]
                rep.problems = [p for p in rep.problems if p.startswith("SQLite integrity_check")]
        return rep


# ----------------------------------------------------------------------------- small helpers


def _record_info(row: TuningRecordRow, name: str) -> RecordInfo:
    return RecordInfo(
        id=row.id, workload_id=row.workload_id, workload_name=name, target_key=row.target_key,
        target_json=row.target_json, mean_run_secs=row.mean_run_secs,
        run_secs=None if row.run_secs_json is None else json.loads(row.run_secs_json),
        session_id=row.session_id, created_at=row.created_at,
    )


def _short(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(err).__name__)[:300].rstrip(".")


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f", … {len(ids) - 10} more" if len(ids) > 10 else "")


def _chunks(seq: list, n: int) -> Iterator[list]:
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    yield i, line
    except (OSError, UnicodeDecodeError) as err:
        raise DatabaseError(f"Cannot read {path}: {err}.") from None

