"""Every SQL query and write of the tuning database, as functions of an open ORM Session and plain data.

No TVM here: callers hand in modules as JSON and hashes (see :mod:`tvmq.db.msdb`) and get rows
as plain data (:mod:`tvmq.db.results`) back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import case, delete, func, or_, select, update
from sqlalchemy.orm import Session

from . import keys
from .models import TuningRecordRow, TuningSessionRow, WorkloadRow, server_utcnow, utcnow
from .results import RecordInfo, SessionInfo, TargetInfo, WorkloadInfo, WorkloadSummary

#: the columns a MetaSchedule TuningRecord is rebuilt from, in this order (see :data:`MsRow`)
MS_COLUMNS = (TuningRecordRow.id, TuningRecordRow.workload_id, TuningRecordRow.trace_json,
              TuningRecordRow.run_secs_json, TuningRecordRow.target_json, TuningRecordRow.args_info_json)
#: ``(id, workload_id, trace_json, run_secs_json, target_json, args_info_json)``
MsRow = tuple[int, int, str, str | None, str, str | None]

_R = TuningRecordRow
_INVALID_LAST = case((_R.mean_run_secs.is_(None), 1), else_=0)


def target_filter(target: Any) -> tuple:
    """The conditions that select the records of exactly ``target`` (none for ``None``).

    ``target``: a Target, its JSON (dict or text) or a :class:`~tvmq.db.keys.TargetIdentity`.
    """
    if target is None:
        return ()
    ident = keys.target_identity(target)
    return (_R.target_key == ident.key, _R.target_json == ident.json)


def chunks(seq: Sequence, n: int = 500) -> Iterator[Sequence]:
    """``seq`` in slices of ``n`` (SQL ``IN`` lists stay under the drivers' parameter limits)."""
    for i in range(0, len(seq), n):
        yield seq[i:i + n]


# ---------------------------------------------------------------------------------- sessions


def server_now(s: Session) -> datetime:
    """The database server's clock (UTC): what heartbeats are written and judged with."""
    return s.scalar(select(server_utcnow()))


def session_info(row: TuningSessionRow, num_records: int, stale_before: datetime) -> SessionInfo:
    """``row`` as plain data; it is stale when running with no heartbeat since ``stale_before``."""
    last_sign = row.heartbeat_at or row.started_at
    return SessionInfo(
        id=row.id, uuid=row.uuid, model_name=row.model_name, model_sha256=row.model_sha256,
        target_profile=row.target_profile, target_key=row.target_key, target_json=row.target_json,
        tvm_version=row.tvm_version, host_name=row.host_name, host_cpu=row.host_cpu,
        trials_requested=row.trials_requested, trials_done=row.trials_done or 0,
        started_at=row.started_at, ended_at=row.ended_at, status=row.status, num_records=num_records,
        heartbeat_at=row.heartbeat_at, note=row.note,
        stale=row.status == "running" and last_sign < stale_before,
    )


def add_session(s: Session, **columns: Any) -> int:
    row = TuningSessionRow(**columns)
    s.add(row)
    s.flush()
    return int(row.id)


def update_session(s: Session, session_id: int, **values: Any) -> bool:
    """Set ``values`` on a session; False when there is no such session."""
    done = s.execute(update(TuningSessionRow).where(TuningSessionRow.id == session_id).values(**values))
    return done.rowcount > 0


def beat(s: Session, session_id: int) -> None:
    """A heartbeat of a running session (an ended one keeps its last)."""
    s.execute(update(TuningSessionRow).where(TuningSessionRow.id == session_id,
                                             TuningSessionRow.status == "running")
              .values(heartbeat_at=server_utcnow()))


def count_session_records(s: Session, session_id: int) -> int:
    """The records that session ``session_id`` committed."""
    return int(s.scalar(select(func.count()).select_from(_R).where(_R.session_id == session_id)) or 0)


def get_session(s: Session, session_id: int, where: str, stale_after_s: float) -> SessionInfo:
    row = TuningSessionRow.find_or_raise(s, session_id, where)
    return session_info(row, count_session_records(s, session_id), _stale_before(s, stale_after_s))


def _stale_before(s: Session, stale_after_s: float) -> datetime:
    return server_now(s) - timedelta(seconds=stale_after_s)


def list_sessions(s: Session, limit: int | None, stale_after_s: float, *,
                  running_only: bool = False) -> list[SessionInfo]:
    """The sessions (``running_only``: those marked running), newest first, with their record counts."""
    counts = select(_R.session_id, func.count().label("n")).group_by(_R.session_id).subquery()
    q = (select(TuningSessionRow, counts.c.n)
         .outerjoin(counts, counts.c.session_id == TuningSessionRow.id)
         .order_by(TuningSessionRow.id.desc()))
    if running_only:
        q = q.where(TuningSessionRow.status == "running")
    if limit:
        q = q.limit(limit)
    stale_before = _stale_before(s, stale_after_s)
    return [session_info(row, int(n or 0), stale_before) for row, n in s.execute(q)]


def record_session(s: Session, record_id: int) -> int | None:
    return s.scalar(select(_R.session_id).where(_R.id == record_id))


def find_or_copy_session(s: Session, row: TuningSessionRow) -> tuple[int, bool]:
    """``(id, added)``: the session with ``row``'s uuid, else a copy of ``row`` (from another database)."""
    have = TuningSessionRow.find_by_uuid(s, row.uuid)
    if have is not None:
        return have, False
    cols = {c.key: getattr(row, c.key) for c in TuningSessionRow.__table__.columns if c.key != "id"}
    return add_session(s, **cols), True


# --------------------------------------------------------------------------------- workloads


@dataclass(frozen=True)
class NewWorkload:
    """A module as the database stores it (made with TVM by :meth:`tvmq.db.msdb.MsObjects.new_workload`)."""

    name: str
    mod_json: str
    hashes: Mapping[str, str]  # module equality -> decimal hash (see keys.all_module_hashes)
    tvm_version: str  # the TVM that computed the hashes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.mod_json.encode()).hexdigest()


#: ``is_equal(workload_id, mod_json)``: is that stored workload equal to the caller's module?
IsEqual = Callable[[int, str], bool]


def find_workloads(s: Session, module_equality: str, mod_hash: str, is_equal: IsEqual,
                   sha256: str | None = None) -> list[int]:
    """Ids of the stored workloads equal to a module under ``module_equality``, oldest first.

    Candidates have the module's hash; those with its exact content (``sha256``) are equal
    without asking ``is_equal``.
    """
    rows = WorkloadRow.find_by_hash(s, keys.hash_column(module_equality), mod_hash)
    return [wid for wid, mod_json, sha in rows if sha == sha256 or is_equal(wid, mod_json)]


def find_or_add_workload(s: Session, wl: NewWorkload, module_equality: str,
                         is_equal: IsEqual) -> tuple[int, bool]:
    """``(id, added)``: the oldest stored workload equal to ``wl`` under ``module_equality``
    (as MetaSchedule's databases match), else the one with its exact content, else a new row."""
    ids = find_workloads(s, module_equality, wl.hashes[module_equality], is_equal, wl.sha256)
    if ids:
        return ids[0], False
    sha = wl.sha256
    have = WorkloadRow.find_by_sha(s, sha)
    if have is not None:
        return int(have), False
    row = WorkloadRow(
        name=wl.name, shash_structural=wl.hashes["structural"], shash_ignore_tensor=wl.hashes["ignore-tensor"],
        shash_anchor_block=wl.hashes["anchor-block"], hash_tvm_version=wl.tvm_version,
        mod_json=wl.mod_json, mod_sha256=sha, created_at=utcnow(),
    )
    s.add(row)
    s.flush()
    return int(row.id), True


def workload_json(s: Session, workload_id: int) -> str | None:
    return s.scalar(select(WorkloadRow.mod_json).where(WorkloadRow.id == workload_id))


def rename_workload(s: Session, workload_id: int, name: str) -> None:
    s.execute(update(WorkloadRow).where(WorkloadRow.id == workload_id).values(name=name[:200]))


def stale_workloads(s: Session, tvm_version: str) -> list[tuple[int, str]]:
    """``(id, mod_json)`` of the workloads whose hashes another TVM version computed."""
    return WorkloadRow.find_stale(s, tvm_version)


def set_workload_hashes(s: Session, workload_id: int, hashes: Mapping[str, str], tvm_version: str) -> None:
    s.execute(update(WorkloadRow).where(WorkloadRow.id == workload_id).values(
        shash_structural=hashes["structural"], shash_ignore_tensor=hashes["ignore-tensor"],
        shash_anchor_block=hashes["anchor-block"], hash_tvm_version=tvm_version))


def all_workload_ids(s: Session) -> list[int]:
    return [w for (w,) in s.execute(select(WorkloadRow.id).order_by(WorkloadRow.id))]


def list_workloads(s: Session, target: Any = None) -> list[WorkloadInfo]:
    """Every workload (with records on ``target``, if given): record count, targets, best mean time."""
    stats = (select(_R.workload_id, func.count().label("n"),
                    func.count(func.distinct(_R.target_json)).label("nt"),
                    func.min(_R.mean_run_secs).label("best"))
             .where(*target_filter(target)).group_by(_R.workload_id).subquery())
    q = (select(WorkloadRow.id, WorkloadRow.name, WorkloadRow.shash_structural, WorkloadRow.created_at,
                stats.c.n, stats.c.nt, stats.c.best)
         .outerjoin(stats, stats.c.workload_id == WorkloadRow.id).order_by(WorkloadRow.id))
    if target is not None:
        q = q.where(stats.c.n > 0)
    return [WorkloadInfo(id=r[0], name=r[1], shash=r[2], created_at=r[3], num_records=int(r[4] or 0),
                         num_targets=int(r[5] or 0), best_mean_run_secs=r[6]) for r in s.execute(q)]


# ----------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class NewRecord:
    """A tuning record as JSON text, ready to store (``TuningRecord.as_json()``'s parts)."""

    workload_id: int
    target: keys.TargetIdentity
    trace_json: str
    run_secs_json: str | None
    args_info_json: str | None
    session_id: int | None = None
    created_at: datetime | None = None  # None: now


def is_valid(trace: Any, run_secs: Sequence[float] | None) -> bool:
    """MetaSchedule's TuningRecord::IsValid on the JSON form."""
    try:
        insts = trace[0]
    except (TypeError, IndexError, KeyError):
        return False
    if not insts or (isinstance(insts[0], list) and insts[0] and insts[0][0] == "EnterPostproc"):
        return False
    if not run_secs:
        return False
    return any(x is not None and float(x) != keys.MAX_MEAN_TIME for x in run_secs)


def _mean_if_valid(trace_json: str, run_secs_json: str | None) -> float | None:
    try:
        trace = json.loads(trace_json)
        run_secs = None if run_secs_json is None else json.loads(run_secs_json)
    except ValueError:  # unreadable: never served (``tvmq-db check`` reports it)
        return None
    if not is_valid(trace, run_secs):
        return None
    return sum(float(x) for x in run_secs) / len(run_secs)


def record_digest(mod_sha256: str, target_json: str, trace_json: str, run_secs_json: str | None) -> str:
    """The content digest that recognises a record across databases (``record_sha256``)."""
    h = hashlib.sha256()
    for part in (mod_sha256, target_json, trace_json, run_secs_json or "null"):
        h.update(part.encode())
        h.update(b"\x00")
    return h.hexdigest()


def add_record(s: Session, rec: NewRecord, *, skip_duplicate: bool = True) -> int | None:
    """Store ``rec``; returns its id, or None when ``skip_duplicate`` and the workload already has it."""
    mod_sha = s.scalar(select(WorkloadRow.mod_sha256).where(WorkloadRow.id == rec.workload_id))
    digest = record_digest(mod_sha or "", rec.target.json, rec.trace_json, rec.run_secs_json)
    if skip_duplicate and TuningRecordRow.find_duplicate(s, rec.workload_id, digest) is not None:
        return None
    row = TuningRecordRow(
        workload_id=rec.workload_id, session_id=rec.session_id, target_key=rec.target.key,
        target_json=rec.target.json, trace_json=rec.trace_json, run_secs_json=rec.run_secs_json,
        mean_run_secs=_mean_if_valid(rec.trace_json, rec.run_secs_json),
        args_info_json=rec.args_info_json, record_sha256=digest, created_at=rec.created_at or utcnow(),
    )
    s.add(row)
    s.flush()
    return int(row.id)


def ms_rows(s: Session, target: Any = None, *, workload_ids: Sequence[int] | None = None,
            record_ids: Sequence[int] | None = None, valid_only: bool = False,
            limit: int | None = None, best_first: bool = True) -> list[MsRow]:
    """The :data:`MsRow` of the records that match, best first (invalid ones last), or by id."""
    q = select(*MS_COLUMNS).where(*target_filter(target))
    if workload_ids is not None:
        q = q.where(_R.workload_id.in_(workload_ids))
    if record_ids is not None:
        q = q.where(_R.id.in_(record_ids))
    if valid_only:
        q = q.where(_R.mean_run_secs.is_not(None))
    q = q.order_by(_INVALID_LAST, _R.mean_run_secs, _R.id) if best_first else q.order_by(_R.id)
    if limit is not None:
        q = q.limit(limit)
    return [tuple(row) for row in s.execute(q)]


def summarize_workload(s: Session, workload_ids: Sequence[int], target: Any) -> WorkloadSummary:
    """What the records of ``workload_ids`` (one workload under some equality) say on ``target``."""
    if not workload_ids:
        return WorkloadSummary(None, 0, 0, None, None, None)
    base = (_R.workload_id.in_(workload_ids), *target_filter(target))
    n_all, n_valid = s.execute(select(func.count(), func.count(_R.mean_run_secs)).where(*base)).one()
    best = s.execute(select(_R.id, _R.mean_run_secs, _R.session_id)
                     .where(*base, _R.mean_run_secs.is_not(None))
                     .order_by(_R.mean_run_secs, _R.id).limit(1)).first()
    return WorkloadSummary(
        workload_id=workload_ids[0], num_records=int(n_all), num_valid=int(n_valid),
        best_mean_run_secs=best[1] if best else None, best_record_id=best[0] if best else None,
        best_session_id=best[2] if best else None,
    )


def _record_info(row: TuningRecordRow, name: str) -> RecordInfo:
    return RecordInfo(
        id=row.id, workload_id=row.workload_id, workload_name=name, target_key=row.target_key,
        target_json=row.target_json, mean_run_secs=row.mean_run_secs,
        run_secs=None if row.run_secs_json is None else json.loads(row.run_secs_json),
        session_id=row.session_id, created_at=row.created_at,
    )


def _with_names():
    return select(_R, WorkloadRow.name).join(WorkloadRow, WorkloadRow.id == _R.workload_id)


def best_records(s: Session, target: Any = None, workload_id: int | None = None,
                 top_k: int = 1) -> list[RecordInfo]:
    """The ``top_k`` best valid records per workload per target."""
    rn = func.row_number().over(partition_by=(_R.workload_id, _R.target_json),
                                order_by=(_R.mean_run_secs, _R.id)).label("rn")
    conds = [_R.mean_run_secs.is_not(None), *target_filter(target)]
    if workload_id is not None:
        conds.append(_R.workload_id == workload_id)
    inner = select(_R.id, rn).where(*conds).subquery()
    q = (_with_names().join(inner, inner.c.id == _R.id).where(inner.c.rn <= top_k)
         .order_by(_R.target_key, _R.workload_id, _R.mean_run_secs, _R.id))
    return [_record_info(row, name) for row, name in s.execute(q)]


def get_record(s: Session, record_id: int) -> RecordInfo | None:
    hit = s.execute(_with_names().where(_R.id == record_id)).first()
    return None if hit is None else _record_info(*hit)


def list_records(s: Session, target: Any = None, workload_id: int | None = None) -> list[RecordInfo]:
    q = _with_names().where(*target_filter(target)).order_by(_R.id)
    if workload_id is not None:
        q = q.where(_R.workload_id == workload_id)
    return [_record_info(row, name) for row, name in s.execute(q)]


def count_records(s: Session, target: Any = None) -> int:
    return int(s.scalar(select(func.count()).select_from(_R).where(*target_filter(target))) or 0)


def list_targets(s: Session) -> list[TargetInfo]:
    """Every target with records: counts and the sum over workloads of the best run time."""
    best = (select(_R.target_json, _R.workload_id, func.min(_R.mean_run_secs).label("b"))
            .group_by(_R.target_json, _R.workload_id).subquery())
    best_sum = select(best.c.target_json, func.sum(best.c.b).label("tot")).group_by(best.c.target_json).subquery()
    q = (select(_R.target_key, _R.target_json, func.count(), func.count(func.distinct(_R.workload_id)),
                func.count(func.distinct(_R.session_id)), func.max(_R.created_at), best_sum.c.tot)
         .outerjoin(best_sum, best_sum.c.target_json == _R.target_json)
         .group_by(_R.target_key, _R.target_json, best_sum.c.tot).order_by(_R.target_key))
    return [TargetInfo(target_key=k, target_json=j, num_records=int(n), num_workloads=int(nw),
                       num_sessions=int(ns), last_record_at=last, best_total_secs=tot)
            for k, j, n, nw, ns, last, tot in s.execute(q)]


def prunable_ids(s: Session, keep: int, target: Any = None) -> list[int]:
    """Records beyond the ``keep`` best valid ones per workload per target, and every invalid one."""
    rn = func.row_number().over(partition_by=(_R.workload_id, _R.target_json),
                                order_by=(_INVALID_LAST, _R.mean_run_secs, _R.id)).label("rn")
    ranked = select(_R.id, rn, _R.mean_run_secs.label("m")).where(*target_filter(target)).subquery()
    return [i for (i,) in s.execute(select(ranked.c.id).where(or_(ranked.c.rn > keep, ranked.c.m.is_(None))))]


def delete_records(s: Session, record_ids: Sequence[int]) -> None:
    for chunk in chunks(record_ids):
        s.execute(delete(_R).where(_R.id.in_(chunk)))


# ------------------------------------------------------------------------ whole-table reads


def all_rows(s: Session) -> tuple[list[TuningSessionRow], list[WorkloadRow], list[TuningRecordRow]]:
    """Every session, workload and record, by id (what ``merge`` copies)."""
    return (list(s.scalars(select(TuningSessionRow).order_by(TuningSessionRow.id))),
            list(s.scalars(select(WorkloadRow).order_by(WorkloadRow.id))),
            list(s.scalars(select(_R).order_by(_R.id))))


def table_counts(s: Session) -> dict[str, int]:
    return {name: int(s.scalar(select(func.count()).select_from(model)) or 0)
            for name, model in (("workloads", WorkloadRow), ("records", _R), ("sessions", TuningSessionRow))}


def orphan_record_ids(s: Session) -> tuple[list[int], list[int]]:
    """Records whose workload is missing, and records whose (non-null) session is missing."""
    no_wl = select(_R.id).outerjoin(WorkloadRow, WorkloadRow.id == _R.workload_id).where(WorkloadRow.id.is_(None))
    no_sess = (select(_R.id).outerjoin(TuningSessionRow, TuningSessionRow.id == _R.session_id)
               .where(_R.session_id.is_not(None), TuningSessionRow.id.is_(None)))
    return [i for (i,) in s.execute(no_wl)], [i for (i,) in s.execute(no_sess)]


def count_running_sessions(s: Session) -> int:
    return int(s.scalar(select(func.count()).select_from(TuningSessionRow)
                        .where(TuningSessionRow.status == "running")) or 0)


def workload_contents(s: Session) -> list[tuple[int, str, str]]:
    """``(id, mod_json, mod_sha256)`` of every workload."""
    return [tuple(r) for r in s.execute(select(WorkloadRow.id, WorkloadRow.mod_json, WorkloadRow.mod_sha256))]


def detach_records(s: Session, record_ids: Sequence[int]) -> None:
    """Forget the session of these records (it is missing)."""
    for chunk in chunks(record_ids):
        s.execute(update(_R).where(_R.id.in_(chunk)).values(session_id=None))


def delete_workloads(s: Session, workload_ids: Sequence[int]) -> None:
    """Delete workloads and their records."""
    for chunk in chunks(workload_ids):
        s.execute(delete(_R).where(_R.workload_id.in_(chunk)))
        s.execute(delete(WorkloadRow).where(WorkloadRow.id.in_(chunk)))
