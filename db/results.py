"""What the tuning database's queries return: plain data, no TVM objects and no SQL rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


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
    heartbeat_at: datetime | None = None  # the last sign of life (the server's clock, UTC)
    stale: bool = False  # "running", but no heartbeat for longer than the grace period
    note: str | None = None  # what began it said of it (tvmq-release: the pair and its budget)

    @property
    def state(self) -> str:
        """The status to show: ``stale`` for a running session that stopped sending heartbeats."""
        return "stale" if self.stale else self.status


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
