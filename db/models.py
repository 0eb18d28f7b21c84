"""The tables of the tuning database (SQLAlchemy 2 typed declarative models), each with its finders.

All times are UTC; schema changes are Alembic migrations (:mod:`tvmq.db.schema`).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship
from sqlalchemy.sql.functions import FunctionElement

from tvmq.errors import DatabaseError

#: ``tvmq_meta.schema_version``, kept for tvmq releases from before the Alembic migrations (they
#: refuse a database whose number is higher than theirs); a migration that changes the tables in
#: a way they cannot read raises it
SCHEMA_VERSION = 1

SESSION_STATUSES = ("running", "finished", "interrupted", "failed")


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class server_utcnow(FunctionElement):  # noqa: N801 - reads as the SQL function it is
    """The database server's clock in UTC, as a naive ``DateTime``: what heartbeats are written and
    judged with, so that tuners on hosts whose clocks disagree share one clock (as Optuna's RDB
    storage does with its heartbeats)."""

    type = DateTime()
    inherit_cache = True


@compiles(server_utcnow, "sqlite")
def _sqlite_utcnow(element, compiler, **kw) -> str:  # noqa: ANN001, ARG001
    return "STRFTIME('%Y-%m-%d %H:%M:%f', 'now')"  # UTC, in milliseconds


@compiles(server_utcnow, "postgresql")
def _postgresql_utcnow(element, compiler, **kw) -> str:  # noqa: ANN001, ARG001
    return "TIMEZONE('utc', CLOCK_TIMESTAMP())"  # the time now, not at the transaction's start


@compiles(server_utcnow)
def _default_utcnow(element, compiler, **kw) -> str:  # noqa: ANN001, ARG001
    return "CURRENT_TIMESTAMP"


class Base(DeclarativeBase):
    """The tables:

    - ``workloads``        one row per distinct tuning task (a TIR IRModule): its hashes under every
                           MetaSchedule module equality, and the module itself as ``tvm.ir.save_json``
    - ``tuning_records``   one measured schedule: workload, target (canonical JSON + short key),
                           trace JSON, run times in seconds, argument info, session, time
    - ``tuning_sessions``  one ``tvmq-tune`` run: model, target, host, versions, trials, status,
                           heartbeat
    - ``tvmq_meta``        key/value facts about the database itself (schema version)
    """


class Meta(Base):
    __tablename__ = "tvmq_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)

    @classmethod
    def find_value(cls, session: Session, key: str) -> str | None:
        return session.scalar(select(cls.value).where(cls.key == key))


class WorkloadRow(Base):
    """A tuning task: one TIR IRModule, hashed the ways MetaSchedule's ModuleEquality hashes."""

    __tablename__ = "workloads"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: display name: the PrimFunc's global symbol (e.g. ``fused_conv2d_add_relu``) or ``main``
    name: Mapped[str] = mapped_column(String(200), default="main")
    #: decimal unsigned 64-bit hashes, one per module equality (see :mod:`tvmq.db.keys`)
    shash_structural: Mapped[str] = mapped_column(String(24), index=True)
    shash_ignore_tensor: Mapped[str] = mapped_column(String(24), index=True)
    shash_anchor_block: Mapped[str] = mapped_column(String(24), index=True)
    #: TVM version the hashes were computed with (hashes are not portable across versions)
    hash_tvm_version: Mapped[str] = mapped_column(String(40))
    #: the module, ``tvm.ir.save_json(mod)``
    mod_json: Mapped[str] = mapped_column(Text)
    #: sha256 of ``mod_json``: identifies the exact module across databases
    mod_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    records: Mapped[list[TuningRecordRow]] = relationship(
        back_populates="workload", cascade="all, delete-orphan", passive_deletes=True
    )

    @classmethod
    def find_by_sha(cls, session: Session, mod_sha256: str) -> int | None:
        """The id of the workload with exactly this content, or None."""
        return session.scalar(select(cls.id).where(cls.mod_sha256 == mod_sha256))

    @classmethod
    def find_by_hash(cls, session: Session, hash_column: str, mod_hash: str) -> list[tuple[int, str, str]]:
        """``(id, mod_json, mod_sha256)`` of the workloads whose ``hash_column`` is ``mod_hash``, oldest first."""
        col = getattr(cls, hash_column)
        return [tuple(r) for r in session.execute(
            select(cls.id, cls.mod_json, cls.mod_sha256).where(col == mod_hash).order_by(cls.id))]

    @classmethod
    def find_stale(cls, session: Session, tvm_version: str) -> list[tuple[int, str]]:
        """``(id, mod_json)`` of the workloads hashed by another TVM version than ``tvm_version``."""
        return [tuple(r) for r in session.execute(
            select(cls.id, cls.mod_json).where(cls.hash_tvm_version != tvm_version))]


class TuningSessionRow(Base):
    """One tuning run."""

    __tablename__ = "tuning_sessions"
    __table_args__ = (
        CheckConstraint(
            "status IN ('running', 'finished', 'interrupted', 'failed')", name="ck_session_status"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: globally unique id, so that ``merge`` can recognise a session it already copied
    uuid: Mapped[str] = mapped_column(String(36), unique=True)
    model_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    model_name: Mapped[str | None] = mapped_column(String(300))
    target_profile: Mapped[str | None] = mapped_column(String(100))
    target_json: Mapped[str | None] = mapped_column(Text)
    target_key: Mapped[str | None] = mapped_column(String(120))
    tvm_version: Mapped[str | None] = mapped_column(String(40))
    host_name: Mapped[str | None] = mapped_column(String(200))
    host_cpu: Mapped[str | None] = mapped_column(String(300))
    trials_requested: Mapped[int | None] = mapped_column(Integer)
    trials_done: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="running")
    note: Mapped[str | None] = mapped_column(Text)
    #: the last sign of life of a running session (the server's clock, UTC; revision 0002): written
    #: at its start, after every measured batch and by a background thread; see :mod:`tvmq.db.heartbeat`
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)

    records: Mapped[list[TuningRecordRow]] = relationship(back_populates="session")

    @classmethod
    def find_or_raise(cls, session: Session, session_id: int, where: str) -> TuningSessionRow:
        row = session.get(cls, session_id)
        if row is None:
            raise DatabaseError(f"There is no tuning session {session_id} in {where}.")
        return row

    @classmethod
    def find_by_uuid(cls, session: Session, uuid: str) -> int | None:
        return session.scalar(select(cls.id).where(cls.uuid == uuid))


class TuningRecordRow(Base):
    """One measured schedule of a workload on a target."""

    __tablename__ = "tuning_records"
    __table_args__ = (
        Index("ix_records_lookup", "workload_id", "target_key", "mean_run_secs"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    workload_id: Mapped[int] = mapped_column(
        ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    session_id: Mapped[int | None] = mapped_column(
        ForeignKey("tuning_sessions.id", ondelete="SET NULL"), index=True
    )
    target_key: Mapped[str] = mapped_column(String(120))
    #: canonical target JSON (sorted keys); records match a target only when this is identical
    target_json: Mapped[str] = mapped_column(Text)
    #: ``Trace.as_json(remove_postproc=False)``, the first element of ``TuningRecord.as_json()``
    trace_json: Mapped[str] = mapped_column(Text)
    #: measured run times in seconds, a JSON list; NULL when never measured
    run_secs_json: Mapped[str | None] = mapped_column(Text)
    #: mean of run_secs when the record is valid in MetaSchedule's sense (a non-empty trace and
    #: at least one real measurement), else NULL; the best record has the smallest value
    mean_run_secs: Mapped[float | None] = mapped_column(Float)
    #: ``[ArgInfo.as_json(), ...]`` as JSON, or NULL
    args_info_json: Mapped[str | None] = mapped_column(Text)
    #: sha256 over workload, target, trace and run times: recognises duplicates on merge/import
    record_sha256: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    workload: Mapped[WorkloadRow] = relationship(back_populates="records")
    session: Mapped[TuningSessionRow | None] = relationship(back_populates="records")

    @classmethod
    def find_duplicate(cls, session: Session, workload_id: int, record_sha256: str) -> int | None:
        """The id of a record of ``workload_id`` with this content digest, or None."""
        return session.scalar(select(cls.id).where(
            cls.record_sha256 == record_sha256, cls.workload_id == workload_id).limit(1))
