"""The MetaSchedule view of the tuning database: a ``PyDatabase`` scoped to one target.

``TuningDatabase.scoped(target)`` returns a :class:`ScopedDatabase`, a real
``ms.database.Database`` (a ``@derived_object`` ``PyDatabase``), so it can be given to
``ms.tune_tasks(..., database=db)`` / ``ms.tune_tir`` / ``relax_integration.tune_relax`` and used
as ``with target, db:`` around ``relax.transform.MetaScheduleApplyDatabase`` or
``ms.relax_integration.compile_relax(db, ...)``.

Target scope: every read (``get_top_k``, ``query_tuning_record`` and so ``query_schedule`` /
``query_ir_module``, ``get_all_tuning_records``, ``len``) only sees records whose canonical
target JSON is identical to the scope's, whatever target a caller passes to a query (MetaSchedule
itself ignores that argument). Writes store a record under its own target (MetaSchedule sets it to
the task's target), or the scope's when it has none.

Module equality: workloads are matched the way MetaSchedule's JSONDatabase/MemoryDatabase match
them for the same ``module_equality`` name (hash, then equality, see :mod:`tvmq.db.keys`); the
name is also handed to the C++ ``PyDatabase`` node (``Database::GetModuleEquality``, which the
evolutionary search uses to skip already measured candidates). Pass the same value as to
``ms.relax_integration.extract_tasks`` / ``tune_tasks``.

Durability: ``commit_tuning_record`` is its own committed transaction, so a record is on disk
as soon as MetaSchedule has committed it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.database.database import PyDatabase, _PyDatabase

from tvmq.errors import TvmqError

from . import keys


class _PyDatabaseWithEquality(_PyDatabase):
    """``_PyDatabase`` that receives ``module_equality`` as a field (stock PyDatabase drops it)."""

    def __init__(self, module_equality: str, *methods: Any) -> None:
        _PyDatabase.__init__(self, *methods, module_equality)


class _PyDatabaseBase(PyDatabase):
    _tvm_metadata = {  # noqa: RUF012
        "cls": _PyDatabaseWithEquality,
        "fields": ["module_equality"],
        "methods": list(PyDatabase._tvm_metadata["methods"]),
    }


@derived_object
class ScopedDatabase(_PyDatabaseBase):
    """A MetaSchedule database over a :class:`~tvmq.db.store.TuningDatabase`, for one target.

    Attributes: ``store`` (the TuningDatabase), ``target`` (tvm Target), ``target_key``,
    ``target_json``, ``module_equality``, ``session_id`` (stamped on committed records).
    """

    def __init__(self, store: Any, target: Any, *, module_equality: str = "structural",
                 session_id: int | None = None) -> None:
        super().__init__()
        self.store = store
        self.module_equality = keys.check_module_equality(module_equality)
        self.target = keys.as_target(target)
        self.target_key, self.target_json = keys.target_identity(self.target)
        self.session_id = session_id
        self.error: BaseException | None = None

    # ---------------------------------------------------------------- MetaSchedule API
    # Exceptions raised here cross TVM's C++ layer, which turns them into RuntimeError; the
    # user-facing ones (DatabaseLocked...) and Ctrl-C are kept in ``self.error`` so that
    # ``reraise_errors()`` can give the caller the original exception back.

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except (TvmqError, KeyboardInterrupt) as err:
            self.error = err
            raise

    def has_workload(self, mod: Any) -> bool:
        return self._guard(lambda: self.store.find_workload(mod, self.module_equality) is not None)

    def commit_workload(self, mod: Any) -> Any:
        return self._guard(lambda: self.store.commit_workload(mod, self.module_equality)[1])

    def commit_tuning_record(self, record: Any) -> None:
        self._guard(lambda: self.store.commit_record(
            record, target=self.target, session_id=self.session_id, module_equality=self.module_equality))

    def get_top_k(self, workload: Any, top_k: int) -> list[Any]:
        return self._guard(lambda: self.store._top_k_ids(  # noqa: SLF001
            workload.mod, self.target_key, self.target_json, int(top_k), self.module_equality))

    def get_all_tuning_records(self) -> list[Any]:
        return self._guard(lambda: self.store._all_ms_records(self.target_key, self.target_json))  # noqa: SLF001

    def query_tuning_record(self, mod: Any, target: Any = None, workload_name: str | None = None) -> Any:
        recs = self._guard(lambda: self.store._top_k_ids(  # noqa: SLF001
            mod, self.target_key, self.target_json, 1, self.module_equality))
        return recs[0] if recs else None

    def __len__(self) -> int:
        return self._guard(lambda: self.store.count_records(self.target))

    @contextlib.contextmanager
    def reraise_errors(self) -> Iterator[None]:
        """Around ``ms.tune_tasks``/compilation: re-raise what this database raised inside TVM.

        TVM turns a Python exception raised in a database callback into ``RuntimeError``; inside
        this block, such an error becomes the original :class:`~tvmq.errors.DatabaseLocked` /
        :class:`~tvmq.errors.DatabaseError` / ``KeyboardInterrupt`` again.
        """
        self.error = None
        try:
            yield
        except Exception:
            err, self.error = self.error, None
            if err is not None:
                raise err from None
            raise

    # ---------------------------------------------------------------- tvmq extras

    def best_record(self, mod: Any) -> Any:
        """The best ``RecordInfo`` of ``mod`` on this target (with its session id), or None."""
        (summary,) = self.store.summarize([mod], self.target, self.module_equality)
        if summary.best_record_id is None:
            return None
        return self.store.record(summary.best_record_id)

    def __repr__(self) -> str:
        return f"ScopedDatabase({self.store.where!r}, target={self.target_key})"
