"""TuningDatabase, what tvmq opens: the SQL :class:`~tvmq.db.storage.Storage` with its TVM objects
(:class:`~tvmq.db.msdb.MsObjects`, imported lazily), and the entry points of the maintenance modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from tvmq.errors import DatabaseError

from . import check as _check
from . import repository, transfer
from .check import CheckReport
from .results import WorkloadSummary
from .storage import Storage
from .transfer import TransferResult


class TuningDatabase(Storage):
    """The tuning database behind a SQLAlchemy URL (a SQLite file by default).

    Use :func:`tvmq.db.open_database` to get one. ``objects`` holds its TVM objects
    (:class:`~tvmq.db.msdb.MsObjects`, made on first use so that listing needs no TVM).
    """

    def __init__(self, url_or_path: str | Path | None = None, *, timeout_s: float | None = None):
        super().__init__(url_or_path, timeout_s=timeout_s)
        self._objects = None

    @property
    def objects(self) -> Any:
        if self._objects is None:
            from .msdb import MsObjects

            self._objects = MsObjects(self)
        return self._objects

    # ------------------------------------------------------------ MetaSchedule view

    def scoped(self, target: Any, *, module_equality: str = "structural",
               session_id: int | None = None) -> Any:
        """A MetaSchedule ``Database`` that reads and writes this database for one target.

        See :class:`tvmq.db.msdb.ScopedDatabase`.
        """
        from .msdb import ScopedDatabase

        return ScopedDatabase(self, target, module_equality=module_equality, session_id=session_id)

    def summarize(self, mods: Sequence[Any], target: Any,
                  module_equality: str = "structural") -> list[WorkloadSummary]:
        """For each module: is it stored, how many records on ``target``, the best one and its session."""
        return self.objects.summarize(mods, target, module_equality)

    def find_workload(self, mod: Any, module_equality: str = "structural") -> int | None:
        """The id of the stored workload equal to ``mod``, or None."""
        return self.objects.find_workload(mod, module_equality)

    def commit_workload(self, mod: Any, module_equality: str = "structural") -> tuple[int, Any]:
        """Find or add ``mod``; returns ``(workload id, ms.database.Workload)``."""
        return self.objects.commit_workload(mod, module_equality)

    def commit_record(self, record: Any, *, target: Any = None, session_id: int | None = None,
                      module_equality: str = "structural") -> int:
        """Store one ``ms.database.TuningRecord`` now (its own transaction); returns its id."""
        return self.objects.commit_record(record, target=target, session_id=session_id,
                                          module_equality=module_equality)

    def label_workloads(self, named_mods: Iterable[tuple[str, Any]],
                        module_equality: str = "structural") -> list[int]:
        """Add workloads (if missing) and name them, e.g. with MetaSchedule task names."""
        return self.objects.label_workloads(named_mods, module_equality)

    def workload_module(self, workload_id: int) -> Any:
        """The IRModule of a stored workload."""
        return self.objects.load_workload(workload_id)[0]

    # ------------------------------------------------------------ maintenance

    def prune(self, keep: int, *, target: Any = None, vacuum: bool = True) -> int:
        """Keep the ``keep`` best valid records per workload per target; delete the rest.

        Records that MetaSchedule would never serve (failed or unmeasured) are deleted too.
        Returns the number of records deleted.
        """
        if keep < 1:
            raise DatabaseError("prune needs --keep of at least 1 (use a new database to start over).")
        with self.write() as s:
            ids = repository.prunable_ids(s, keep, target)
            repository.delete_records(s, ids)
        if self._objects is not None:
            self._objects.forget_records(ids)
        if ids and vacuum and self.is_sqlite:
            self.vacuum()
        return len(ids)

    def export_json(self, directory: str | Path, *, target: Any = None, top_k: int | None = None,
                    overwrite: bool = False) -> tuple[int, int]:
        """Write MetaSchedule's JSON database files; see :func:`tvmq.db.transfer.export_json`."""
        return transfer.export_json(self, directory, target=target, top_k=top_k, overwrite=overwrite)

    def import_json(self, directory: str | Path, *, target: Any = None,
                    session_id: int | None = None) -> TransferResult:
        """Read MetaSchedule's JSON database files; see :func:`tvmq.db.transfer.import_json`."""
        return transfer.import_json(self, directory, target=target, session_id=session_id)

    def merge(self, other: str | Path | TuningDatabase) -> TransferResult:
        """Copy what ``other`` has and this lacks; see :func:`tvmq.db.transfer.merge`."""
        return transfer.merge(self, other)

    def check(self, *, deep: bool = True, fix: bool = False, dry_run: bool = False) -> CheckReport:
        """Integrity check (and repair, or with ``dry_run`` what a repair would do); see
        :func:`tvmq.db.check.check`."""
        return _check.check(self, deep=deep, fix=fix, dry_run=dry_run)
