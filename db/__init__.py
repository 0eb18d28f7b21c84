"""What we remember: the tuning database (``tvmq.db``).

One SQL database (a SQLite file, ``tvmq.db`` in the working directory by default; any SQLAlchemy
URL works) holds every tuning session, every workload (tuning task) and every measured record.
MetaSchedule reads and writes it directly through a target-scoped view.

Modules: ``models`` (tables and their finders), ``repository`` (every SQL query), ``storage``
(connections, sessions, the read side), ``msdb`` (every TVM object: the MetaSchedule adapter and
its caches), ``database`` (``TuningDatabase``), ``transfer`` (JSON import/export, merge),
``check``, ``schema`` with ``migrations/`` (Alembic), ``engine``, ``keys``, ``results``.

Public API
----------

``open_database(url_or_path: str | os.PathLike | None = None, *, timeout_s: float | None = None) -> TuningDatabase``
    Open (creating if needed) the database at a path or SQLAlchemy URL; ``None`` means
    :func:`default_db_path`. ``timeout_s`` is how long a writer waits for another process's
    lock before :class:`tvmq.errors.DatabaseLocked` (default 30 s, ``$TVMQ_DB_TIMEOUT``).
    Raises :class:`tvmq.errors.DatabaseError` with one sentence for bad paths/URLs, files that
    are not tvmq databases, or databases from a newer tvmq. An older database is upgraded to the
    newest schema revision on open (Alembic migrations; ``TuningDatabase.upgrade()`` and
    ``tvmq-db upgrade`` say which revision it is at).

``default_db_path() -> pathlib.Path``
    ``$TVMQ_DB`` if set, else ``./tvmq.db``. ``$TVMQ_DB`` may also be a SQLAlchemy URL, which
    ``open_database()`` takes as it is. Messages name a server without its user, password or
    query string (:func:`tvmq.redact.redact_url`).

``TuningDatabase.scoped(target, *, module_equality="structural", session_id=None) -> ms.database.Database``
    A MetaSchedule database (``PyDatabase`` subclass) that only serves records of exactly this
    target (canonical JSON equality: cascadelake records never serve znver3) and stamps records
    it commits with ``session_id``. Use it as ``ms.tune_tasks(..., database=db)``, and as
    ``with target, db:`` around ``relax.transform.MetaScheduleApplyDatabase()`` or
    ``ms.relax_integration.compile_relax(db, mod, target, params)``. ``module_equality`` must be
    the one used to extract the tasks (``"structural"``, ``"ignore-tensor"``, ``"anchor-block"``).
    Every committed record is its own committed transaction (on disk before MetaSchedule goes on).

``TuningDatabase.begin_session(*, model_sha256=None, model_name=None, target_profile=None, target=None, trials_requested=None, tvm_version=None, host_name=None, host_cpu=None, note=None) -> int``
    Start a session (status ``running``; host name/CPU and TVM version filled in when omitted).

``TuningDatabase.update_session(session_id, *, trials_done) -> None``
    Progress of a running session.

``TuningDatabase.end_session(session_id, status="finished", trials_done=None) -> None``
    ``status`` is ``finished``, ``interrupted`` or ``failed``.

``TuningDatabase.summarize(mods, target, module_equality="structural") -> list[WorkloadSummary]``
    Per module: ``workload_id`` (None if unknown), ``num_records``, ``num_valid``,
    ``best_mean_run_secs``, ``best_record_id``, ``best_session_id`` (which session measured the
    best record: compare with the current session to report tasks served by earlier sessions),
    ``tuned``.

``TuningDatabase.best_records(*, target=None, workload_id=None, top_k=1) -> list[RecordInfo]``
    The best records per workload per target. ``record(record_id)``, ``record_session(record_id)``,
    ``records(...)``, ``workloads(target=None)``, ``targets()``, ``sessions()``, ``session(id)``,
    ``count_records(target=None)`` complete the read side.

``TuningDatabase.label_workloads([(name, mod), ...], module_equality="structural") -> list[int]``
    Add workloads and give them display names (e.g. MetaSchedule task names).

Maintenance (also ``tvmq-db``): ``export_json(dir, target=None, top_k=None, overwrite=False)``,
``import_json(dir, target=None, session_id=None)`` (MetaSchedule's ``database_workload.json`` +
``database_tuning_record.json``; an export is written whole or not at all), ``merge(other)``,
``prune(keep, target=None)``, ``check(deep=True, fix=False, dry_run=False)`` (a ``CheckReport``
that names every broken record, what ``fix`` deleted and why).

Traces of ``--int8`` tunes tensorize with tvmq's intrinsics (``tvmq_dot_*``); every TVM object
made from stored rows goes through :mod:`tvmq.db.msdb`, which registers them first.

Example::

    from tvmq.db import open_database
    db = open_database()                          # ./tvmq.db
    sid = db.begin_session(model_sha256=sha, model_name="mobilenet", target_profile="cascadelake",
                           target=target, trials_requested=2000)
    msdb = db.scoped(target, session_id=sid)
    try:
        ms.tune_tasks(tasks=tasks, task_weights=w, work_dir=wd, max_trials_global=2000, database=msdb)
        db.end_session(sid, "finished", trials_done=2000)
    except KeyboardInterrupt:
        db.end_session(sid, "interrupted", trials_done=len(msdb))
        raise
    with target, msdb:
        mod = relax.transform.MetaScheduleApplyDatabase()(mod)
"""

from __future__ import annotations

import os

from .engine import DEFAULT_TIMEOUT_S, default_db_path
from .keys import MODULE_EQUALITIES, canonical_target_json, module_hash, target_key
from .check import CheckReport
from .database import TuningDatabase
from .models import SESSION_STATUSES
from .results import RecordInfo, SessionInfo, TargetInfo, WorkloadInfo, WorkloadSummary
from .transfer import TransferResult


def open_database(url_or_path: str | os.PathLike | None = None, *, timeout_s: float | None = None) -> TuningDatabase:
    """Open the tuning database at ``url_or_path`` (a file path or SQLAlchemy URL; None: the default).

    See the module docstring for the API of the returned :class:`TuningDatabase`.
    """
    return TuningDatabase(url_or_path, timeout_s=timeout_s)


__all__ = [
    "DEFAULT_TIMEOUT_S",
    "MODULE_EQUALITIES",
    "SESSION_STATUSES",
    "CheckReport",
    "RecordInfo",
    "SessionInfo",
    "TargetInfo",
    "TransferResult",
    "TuningDatabase",
    "WorkloadInfo",
    "WorkloadSummary",
    "canonical_target_json",
    "default_db_path",
    "module_hash",
    "open_database",
    "target_key",
]
