"""The MetaSchedule side of the tuning database: every TVM object made from its rows (or from
MetaSchedule's JSON files), their caches, and :class:`ScopedDatabase`, the ``PyDatabase`` through
which MetaSchedule reads and writes it.

The traces of an ``--int8`` tune tensorize with tvmq's own intrinsics (``tvmq_dot_*``), and TVM
replays such a trace only when they are registered. Importing this module registers them, so
every conversion below (and so every command and the MetaSchedule view) has them.
"""

from __future__ import annotations

import contextlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy.orm import Session
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.database.database import PyDatabase, _PyDatabase

from tvmq.errors import DatabaseError, TvmqError, one_line
from tvmq.int8 import intrin as _tvmq_intrinsics  # noqa: F401 - registers tvmq_dot_* before any replay

from . import keys, repository
from .repository import MsRow, NewRecord, NewWorkload
from .results import WorkloadSummary
from .storage import Storage

#: replayed TuningRecords kept per database (a replay costs a trace application)
RECORD_CACHE_SIZE = 4096


def tvm_version() -> str:
    """The version of the TVM that computes workload hashes (hashes are not portable across versions)."""
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


# ------------------------------------------------------------------ stored text -> TVM objects


def module_from_json(mod_json: str) -> Any:
    """The IRModule of a stored workload (``tvm.ir.save_json`` text)."""
    import tvm

    return tvm.ir.load_json(mod_json)


def workload_from_json(obj: Any) -> Any:
    """An ``ms.database.Workload`` from a line of MetaSchedule's ``database_workload.json``."""
    from tvm.s_tir import meta_schedule as ms

    return ms.database.Workload.from_json(obj)


def record_from_json(obj: Any, workload: Any) -> Any:
    """An ``ms.database.TuningRecord`` from its JSON (``[trace, run_secs, target, args_info]``):
    its trace is replayed on ``workload``. A trace that tensorizes with one of TVM's own
    intrinsics (a JSON database tuned outside tvmq) gets them registered first."""
    from tvm.s_tir import meta_schedule as ms

    try:
        return ms.database.TuningRecord.from_json(obj, workload)
    except Exception:
        if not _registered_tvm_intrinsics(obj[0]):
            raise
        return ms.database.TuningRecord.from_json(obj, workload)


def _registered_tvm_intrinsics(trace: Any) -> bool:
    """Register TVM's own tensor intrinsics (seconds: not done unless needed) when ``trace``
    needs an intrinsic nobody registered yet; whether that was done now."""
    import sys

    if "tvm.s_tir.tensor_intrin" in sys.modules or not unknown_intrinsics(trace):
        return False
    from tvmq.tuner.tensor_intrinsics import import_tensor_intrinsics

    import_tensor_intrinsics()
    return True


def tensor_intrinsics(trace: Any) -> set[str]:
    """The tensor intrinsics a trace (its JSON, or the text of it) tensorizes with."""
    try:
        insts = (json.loads(trace) if isinstance(trace, str) else trace)[0]
        return {str(attrs[0]) for name, _inputs, attrs, *_ in insts
                if name == "Tensorize" and attrs and isinstance(attrs[0], str)}
    except (ValueError, TypeError, IndexError, KeyError):
        return set()


def unknown_intrinsics(trace: Any) -> list[str]:
    """The tensor intrinsics a trace needs that no one registered with TVM (sorted)."""
    from tvm.s_tir import TensorIntrin

    return sorted(name for name in tensor_intrinsics(trace) if TensorIntrin.get(name, allow_missing=True) is None)


def why_unreplayable(trace: Any, err: BaseException) -> str:
    """Why a trace cannot be replayed, in words: the intrinsics it lacks, else TVM's error."""
    missing = unknown_intrinsics(trace)
    if missing:
        return (f"it needs tensor intrinsics this tvmq does not register ({', '.join(missing)}); "
                "a tvmq that has them can use it")
    return one_line(err, pick="last").rstrip(".")


class MsObjects:
    """The TVM objects of one database: stored modules, their ``ms`` Workloads and replayed records.

    Wraps a :class:`~tvmq.db.storage.Storage` the way a cache wraps a store; every conversion
    between rows and TVM objects goes through here.
    """

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        # id -> (IRModule, ms Workload); workload objects handed to MetaSchedule stay alive here
        self._workloads: dict[int, tuple[Any, Any]] = {}
        # Workload object hash (address) -> workload id, for records MetaSchedule commits
        self._wl_by_obj: dict[int, int] = {}
        self._records: OrderedDict[int, Any] = OrderedDict()  # record id -> ms TuningRecord
        self._hashes_fresh = False

    # ---------------------------------------------------------------- workloads

    def refresh_hashes(self) -> None:
        """Recompute workload hashes written by another TVM version (hashes are not portable).

        Never call it inside a write transaction: it writes itself.
        """
        if self._hashes_fresh:
            return
        current = tvm_version()
        with self.storage.read() as s:
            stale = repository.stale_workloads(s, current)
        if stale:
            with self.storage.write() as s:
                for wid, mod_json in stale:
                    try:
                        mod = module_from_json(mod_json)
                    except Exception:  # noqa: BLE001 - reported by check()
                        continue
                    repository.set_workload_hashes(s, wid, keys.all_module_hashes(mod), current)
        self._hashes_fresh = True

    def load_workload(self, wid: int, mod_json: str | None = None) -> tuple[Any, Any]:
        """``(IRModule, ms.database.Workload)`` of stored workload ``wid`` (cached)."""
        hit = self._workloads.get(wid)
        if hit is not None:
            return hit
        from tvm.s_tir import meta_schedule as ms

        if mod_json is None:
            with self.storage.read() as s:
                mod_json = repository.workload_json(s, wid)
            if mod_json is None:
                raise DatabaseError(f"Workload {wid} is missing from {self.storage.where}.")
        try:
            mod = module_from_json(mod_json)
        except Exception as err:  # noqa: BLE001
            raise DatabaseError(
                f"Workload {wid} in {self.storage.where} cannot be read by this TVM "
                f"({one_line(err, pick='last').rstrip('.')}); `tvmq-db check` lists what cannot be read."
            ) from None
        wl = ms.database.Workload(mod)
        self._workloads[wid] = (mod, wl)
        self._wl_by_obj[wl.__hash__()] = wid
        return mod, wl

    @staticmethod
    def new_workload(mod: Any) -> NewWorkload:
        """``mod`` as the repository stores it: its JSON, display name and hashes."""
        import tvm

        return NewWorkload(name=_mod_name(mod), mod_json=tvm.ir.save_json(mod),
                           hashes=keys.all_module_hashes(mod), tvm_version=tvm_version())

    def _is_equal(self, mod: Any, module_equality: str) -> repository.IsEqual:
        return lambda wid, mod_json: keys.modules_equal(self.load_workload(wid, mod_json)[0], mod, module_equality)

    def find_workload_ids(self, s: Session, mod: Any, module_equality: str,
                          mod_hash: str | None = None) -> list[int]:
        """Ids of stored workloads equal to ``mod`` under ``module_equality`` (oldest first)."""
        if mod_hash is None:
            mod_hash = str(keys.module_hash(mod, module_equality))
        return repository.find_workloads(s, module_equality, mod_hash, self._is_equal(mod, module_equality))

    def find_or_add_workload(self, s: Session, wl: NewWorkload, mod: Any,
                             module_equality: str = "structural") -> tuple[int, bool]:
        """``(id, added)`` of the stored workload equal to ``mod`` (``wl`` is its stored form)."""
        return repository.find_or_add_workload(s, wl, module_equality, self._is_equal(mod, module_equality))

    def find_workload(self, mod: Any, module_equality: str = "structural") -> int | None:
        """The id of the stored workload equal to ``mod``, or None."""
        keys.check_module_equality(module_equality)
        self.refresh_hashes()
        with self.storage.read() as s:
            ids = self.find_workload_ids(s, mod, module_equality)
        return ids[0] if ids else None

    def commit_workload(self, mod: Any, module_equality: str = "structural") -> tuple[int, Any]:
        """Find or add ``mod``; returns ``(workload id, ms.database.Workload)``."""
        keys.check_module_equality(module_equality)
        self.refresh_hashes()
        mod_hash = str(keys.module_hash(mod, module_equality))
        with self.storage.read() as s:
            ids = self.find_workload_ids(s, mod, module_equality, mod_hash)
        if ids:
            wid = ids[0]
        else:
            new = self.new_workload(mod)
            with self.storage.write() as s:  # re-checks under the write lock: another process may have won
                wid, _ = self.find_or_add_workload(s, new, mod, module_equality)
        return wid, self.load_workload(wid)[1]

    def label_workloads(self, named_mods: Iterable[tuple[str, Any]],
                        module_equality: str = "structural") -> list[int]:
        """Add workloads (if missing) and name them, e.g. with MetaSchedule task names."""
        ids = []
        for name, mod in named_mods:
            wid, _ = self.commit_workload(mod, module_equality)
            with self.storage.write() as s:
                repository.rename_workload(s, wid, str(name))
            ids.append(wid)
        return ids

    # ---------------------------------------------------------------- records

    @staticmethod
    def new_record(record: Any, workload_id: int, target: keys.TargetIdentity,
                   session_id: int | None) -> NewRecord:
        """An ``ms.database.TuningRecord`` as the repository stores it."""
        trace, run_secs, _, args_info = record.as_json()
        return NewRecord(
            workload_id=workload_id, target=target, trace_json=_dumps(trace),
            run_secs_json=None if run_secs is None else _dumps([float(x) for x in run_secs]),
            args_info_json=None if args_info is None else _dumps(args_info), session_id=session_id,
        )

    def commit_record(self, record: Any, *, target: Any = None, session_id: int | None = None,
                      module_equality: str = "structural") -> int:
        """Store one ``ms.database.TuningRecord`` now (its own transaction); returns its id.

        The record is stored under its own target, or ``target`` when it has none.
        """
        rec_target = record.target if record.target is not None else target
        if rec_target is None:
            raise DatabaseError("A tuning record without a target cannot be stored; give a target.")
        ident = keys.target_identity(rec_target)
        self.refresh_hashes()
        wid = self._wl_by_obj.get(record.workload.__hash__())
        new = None if wid is not None else self.new_workload(record.workload.mod)
        with self.storage.write() as s:
            if wid is None:
                wid, _ = self.find_or_add_workload(s, new, record.workload.mod, module_equality)
            return repository.add_record(s, self.new_record(record, wid, ident, session_id), skip_duplicate=False)

    def _replay(self, row: MsRow) -> Any:
        _, wid, trace_json, run_json, target_json, args_json = row
        return record_from_json(
            [json.loads(trace_json), None if run_json is None else json.loads(run_json),
             json.loads(target_json), None if args_json is None else json.loads(args_json)],
            self.load_workload(wid)[1],
        )

    def replay(self, row: MsRow, *, cached: bool = True) -> Any:
        """The ``ms.database.TuningRecord`` of a stored row (replays its trace on its workload)."""
        rid = row[0]
        hit = self._records.get(rid) if cached else None
        if hit is not None:
            self._records.move_to_end(rid)
            return hit
        try:
            rec = self._replay(row)
        except TvmqError:
            raise
        except Exception as err:  # noqa: BLE001
            raise DatabaseError(
                f"Tuning record {rid} in {self.storage.where} cannot be replayed: "
                f"{why_unreplayable(row[2], err)} (`tvmq-db check` lists every such record)."
            ) from None
        self._records[rid] = rec
        if len(self._records) > RECORD_CACHE_SIZE:
            self._records.popitem(last=False)
        return rec

    def replay_problem(self, row: MsRow) -> str | None:
        """Why a stored row cannot be replayed (see :func:`why_unreplayable`), or None if it can."""
        try:
            self._replay(row)
        except Exception as err:  # noqa: BLE001
            return why_unreplayable(row[2], err)
        return None

    def forget_records(self, record_ids: Iterable[int]) -> None:
        """Drop deleted records from the cache (SQLite may give their ids to new records)."""
        for rid in record_ids:
            self._records.pop(rid, None)

    def top_k(self, mod: Any, target: keys.TargetIdentity, k: int, module_equality: str) -> list[Any]:
        """The ``k`` best valid ``ms`` TuningRecords of ``mod`` on exactly ``target``."""
        if k < 0:
            raise ValueError("top_k must be non-negative")
        if k == 0:
            return []
        self.refresh_hashes()
        with self.storage.read() as s:
            wids = self.find_workload_ids(s, mod, module_equality)
            rows = repository.ms_rows(s, target, workload_ids=wids, valid_only=True, limit=k) if wids else []
        return [self.replay(row) for row in rows]

    def all_records(self, target: keys.TargetIdentity) -> list[Any]:
        """Every ``ms`` TuningRecord on exactly ``target``, best first."""
        with self.storage.read() as s:
            rows = repository.ms_rows(s, target)
        return [self.replay(row) for row in rows]

    def summarize(self, mods: Sequence[Any], target: Any,
                  module_equality: str = "structural") -> list[WorkloadSummary]:
        """For each module: is it stored, how many records on ``target``, the best one and its session."""
        keys.check_module_equality(module_equality)
        ident = keys.target_identity(target)
        self.refresh_hashes()
        with self.storage.read() as s:
            return [repository.summarize_workload(s, self.find_workload_ids(s, mod, module_equality), ident)
                    for mod in mods]


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
    """A MetaSchedule database over a :class:`~tvmq.db.database.TuningDatabase`, for one target.

    ``TuningDatabase.scoped(target)`` returns one: a real ``ms.database.Database`` (a
    ``@derived_object`` ``PyDatabase``), so it can be given to ``ms.tune_tasks(..., database=db)``
    / ``ms.tune_tir`` / ``relax_integration.tune_relax`` and used as ``with target, db:`` around
    ``relax.transform.MetaScheduleApplyDatabase`` or ``ms.relax_integration.compile_relax(db, ...)``.

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

    Attributes: ``store`` (the TuningDatabase), ``target`` (tvm Target), ``target_key``,
    ``target_json``, ``module_equality``, ``session_id`` (stamped on committed records).
    """

    def __init__(self, store: Any, target: Any, *, module_equality: str = "structural",
                 session_id: int | None = None) -> None:
        super().__init__()
        self.store = store
        self.objects: MsObjects = store.objects
        self.module_equality = keys.check_module_equality(module_equality)
        self.target = keys.as_target(target)
        self.identity = keys.target_identity(self.target)
        self.target_key, self.target_json = self.identity
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
        return self._guard(lambda: self.objects.find_workload(mod, self.module_equality) is not None)

    def commit_workload(self, mod: Any) -> Any:
        return self._guard(lambda: self.objects.commit_workload(mod, self.module_equality)[1])

    def commit_tuning_record(self, record: Any) -> None:
        self._guard(lambda: self.objects.commit_record(
            record, target=self.target, session_id=self.session_id, module_equality=self.module_equality))

    def get_top_k(self, workload: Any, top_k: int) -> list[Any]:
        return self._guard(lambda: self.objects.top_k(workload.mod, self.identity, int(top_k), self.module_equality))

    def get_all_tuning_records(self) -> list[Any]:
        return self._guard(lambda: self.objects.all_records(self.identity))

    def query_tuning_record(self, mod: Any, target: Any = None, workload_name: str | None = None) -> Any:
        recs = self._guard(lambda: self.objects.top_k(mod, self.identity, 1, self.module_equality))
        return recs[0] if recs else None

    def __len__(self) -> int:
        return self._guard(lambda: self.store.count_records(self.identity))

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
        (summary,) = self.objects.summarize([mod], self.identity, self.module_equality)
        if summary.best_record_id is None:
            return None
        return self.store.record(summary.best_record_id)

    def __repr__(self) -> str:
        return f"ScopedDatabase({self.store.where!r}, target={self.target_key})"
