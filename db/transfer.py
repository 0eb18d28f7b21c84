"""Moving records between databases: MetaSchedule's JSON database files (export, import) and merge.

Workloads are matched by content or structural equality and records by content digest, so an
import or merge that is run twice adds nothing the second time.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tvmq.errors import DatabaseError, one_line

from . import keys, repository
from .models import WorkloadRow
from .storage import Storage

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"


@dataclass
class TransferResult:
    """What ``import``/``merge`` did."""

    workloads_added: int = 0
    workloads_known: int = 0
    records_added: int = 0
    records_duplicate: int = 0
    records_skipped: int = 0  # e.g. imported records without a target and no default target
    sessions_added: int = 0


def _reason(err: BaseException) -> str:
    return one_line(err, pick="last").rstrip(".")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f, 1):
                if line.strip():
                    yield i, line
    except (OSError, UnicodeDecodeError) as err:
        raise DatabaseError(f"Cannot read {path}: {err}.") from None


def _check_export_dir(d: Path, overwrite: bool) -> None:
    if d.exists() and not d.is_dir():
        raise DatabaseError(f"Cannot export to {d}: it is a file, not a folder.")
    if not overwrite and any((d / name).exists() for name in (WORKLOAD_FILE, RECORD_FILE)):
        raise DatabaseError(f"{d} already holds a MetaSchedule database; "
                            "choose an empty folder or pass --overwrite.")


def _make_dirs(d: Path) -> list[Path]:
    """Create ``d`` and its missing parents; returns the folders created, innermost first."""
    created = [p for p in (d, *d.parents) if not p.exists()]
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        _remove_empty(created)
        raise DatabaseError(f"Cannot create the folder {d}: {err.strerror or err}.") from None
    return created


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders an export made (innermost first), as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_database(d: Path, workloads: dict[int, Any], records: list[tuple[int, Any]]) -> None:
    """MetaSchedule's two files in ``d``, written whole or not at all: ``JSONDatabase`` writes them
    into a temporary folder inside ``d``; they are synced, then renamed into place."""
    from tvm.s_tir import meta_schedule as ms

    try:
        with tempfile.TemporaryDirectory(prefix=".tvmq-export-", dir=d) as tmp:
            jdb = ms.database.JSONDatabase(work_dir=tmp, module_equality="structural")
            ms_wl = {wid: jdb.commit_workload(mod) for wid, mod in workloads.items()}
            for wid, rec in records:
                jdb.commit_tuning_record(ms.database.TuningRecord(
                    rec.trace, ms_wl[wid], rec.run_secs, rec.target, rec.args_info))
            del jdb
            for name in (WORKLOAD_FILE, RECORD_FILE):
                _fsync(Path(tmp) / name)
            for name in (WORKLOAD_FILE, RECORD_FILE):
                os.replace(Path(tmp) / name, d / name)
            _fsync(d)
    except Exception as err:  # noqa: BLE001 - TVM's and the file system's errors alike
        raise DatabaseError(f"Cannot write a MetaSchedule database in {d} ({_reason(err)}).") from None


def export_json(db: Any, directory: str | Path, *, target: Any = None, top_k: int | None = None,
                overwrite: bool = False) -> tuple[int, int]:
    """Write MetaSchedule's JSON database (``database_workload.json`` +
    ``database_tuning_record.json``, as ``ms.database.JSONDatabase(work_dir=...)`` reads them).

    ``target`` limits it to one target; ``top_k`` to the best k records per workload per target.
    Every record is replayed before a file is written, and the files appear whole (written
    aside, synced, renamed), so a failed export leaves nothing behind, not even the folder it
    created. With ``overwrite`` the old files stay until the new ones replace them.
    Returns ``(workloads written, records written)``.
    """
    d = Path(directory)
    _check_export_dir(d, overwrite)
    with db.read() as s:
        if top_k is not None:
            ids = sorted(x.id for x in repository.best_records(s, target, None, top_k))
            rows = repository.ms_rows(s, record_ids=ids, best_first=False)
        else:
            rows = repository.ms_rows(s, target, best_first=False)
        if target is None and top_k is None:
            wids = repository.all_workload_ids(s)
        else:
            wids = sorted({row[1] for row in rows})
    workloads = {wid: db.workload_module(wid) for wid in wids}
    records = [(row[1], db.objects.replay(row)) for row in rows]
    created = _make_dirs(d)
    try:
        _write_json_database(d, workloads, records)
    except BaseException:
        _remove_empty(created)
        raise
    return len(workloads), len(records)


def _read_json_database(d: Path) -> tuple[list[Any], list[tuple[int, Any]]]:
    """The workloads and ``(workload index, record)`` pairs of a MetaSchedule JSON database."""
    from .msdb import record_from_json, why_unreplayable, workload_from_json

    wfile, rfile = d / WORKLOAD_FILE, d / RECORD_FILE
    if not d.is_dir():
        raise DatabaseError(f"{d} is not a folder.")
    if not wfile.is_file() or not rfile.is_file():
        raise DatabaseError(f"{d} is not a MetaSchedule database: it needs both {WORKLOAD_FILE} "
                            f"and {RECORD_FILE}.")
    workloads: list[Any] = []
    for lineno, line in _lines(wfile):
        try:
            workloads.append(workload_from_json(json.loads(line)))
        except Exception as err:  # noqa: BLE001
            raise DatabaseError(f"{wfile}:{lineno} is not a MetaSchedule workload ({_reason(err)}).") from None
    records: list[tuple[int, Any]] = []
    for lineno, line in _lines(rfile):
        trace = None
        try:
            idx, rjson = json.loads(line)
            idx, trace = int(idx), rjson[0]
            if not 0 <= idx < len(workloads):
                raise ValueError(f"workload index {idx} out of range")
            records.append((idx, record_from_json(rjson, workloads[idx])))
        except Exception as err:  # noqa: BLE001
            raise DatabaseError(f"{rfile}:{lineno} is not a MetaSchedule tuning record this tvmq can read "
                                f"({why_unreplayable(trace, err)}).") from None
    return workloads, records


def import_json(db: Any, directory: str | Path, *, target: Any = None,
                session_id: int | None = None) -> TransferResult:
    """Read a MetaSchedule JSON database (the two files ``JSONDatabase`` writes) into ``db``.

    Records are stored under their own target; ``target`` is used for records that have none
    (otherwise they are skipped). Records already present are not duplicated. The import is
    one transaction: on any error nothing is added.
    """
    workloads, records = _read_json_database(Path(directory))
    default = keys.target_identity(target) if target is not None else None
    objects = db.objects
    new = [objects.new_workload(wl.mod) for wl in workloads]
    objects.refresh_hashes()
    res = TransferResult()
    with db.write() as s:
        wids = []
        for wl, stored in zip(workloads, new, strict=True):
            wid, added = objects.find_or_add_workload(s, stored, wl.mod, "structural")
            wids.append(wid)
            res.workloads_added += added
            res.workloads_known += not added
        for idx, rec in records:
            ident = keys.target_identity(rec.target) if rec.target is not None else default
            if ident is None:
                res.records_skipped += 1
                continue
            rid = repository.add_record(s, objects.new_record(rec, wids[idx], ident, session_id))
            res.records_added += rid is not None
            res.records_duplicate += rid is None
    return res


def merge(db: Any, other: str | Path | Storage) -> TransferResult:
    """Copy every session, workload and record of ``other`` that ``db`` lacks.

    Sessions are recognised by uuid, workloads by content (or structural equality), records
    by content, so merging the same database twice adds nothing the second time.
    """
    src = other if isinstance(other, Storage) else type(db)(other, timeout_s=db.timeout_s)
    try:
        if src.url == db.url:
            raise DatabaseError("Cannot merge a database into itself.")
        with src.read() as ss:
            sessions, workloads, records = repository.all_rows(ss)
        return _merge_rows(db, src.where, sessions, workloads, records)
    finally:
        if src is not other:
            src.close()


class _SourceWorkload:
    """A workload row of the database being merged in; its module is loaded only when needed."""

    def __init__(self, row: WorkloadRow, where: str) -> None:
        self.row, self.where, self._mod = row, where, None

    @property
    def mod(self) -> Any:
        if self._mod is None:
            from .msdb import module_from_json

            try:
                self._mod = module_from_json(self.row.mod_json)
            except Exception as err:  # noqa: BLE001
                raise DatabaseError(
                    f"Workload {self.row.id} of {self.where} cannot be read ({_reason(err)}).") from None
        return self._mod

    def stored(self, tvm_version: str) -> repository.NewWorkload:
        """The row as this database stores it (its hashes are kept when the same TVM made them)."""
        row = self.row
        hashes = ({"structural": row.shash_structural, "ignore-tensor": row.shash_ignore_tensor,
                   "anchor-block": row.shash_anchor_block}
                  if row.hash_tvm_version == tvm_version else keys.all_module_hashes(self.mod))
        return repository.NewWorkload(name=row.name, mod_json=row.mod_json, hashes=hashes, tvm_version=tvm_version)


def _merge_rows(db: Any, src_where: str, sessions: list, workloads: list, records: list) -> TransferResult:
    from .msdb import tvm_version

    res = TransferResult()
    objects = db.objects
    objects.refresh_hashes()
    current = tvm_version()
    with db.write() as s:
        sess_map: dict[int, int] = {}
        for row in sessions:
            sess_map[row.id], added = repository.find_or_copy_session(s, row)
            res.sessions_added += added
        wl_map: dict[int, int] = {}
        for row in workloads:
            src = _SourceWorkload(row, src_where)
            if WorkloadRow.find_by_sha(s, row.mod_sha256) is None:
                src.mod  # noqa: B018 - a workload this TVM cannot read fails the merge before it is copied

            def is_equal(wid: int, mod_json: str, src: _SourceWorkload = src) -> bool:
                return keys.modules_equal(objects.load_workload(wid, mod_json)[0], src.mod, "structural")

            wl_map[row.id], added = repository.find_or_add_workload(s, src.stored(current), "structural", is_equal)
            res.workloads_added += added
            res.workloads_known += not added
        for row in records:
            if row.workload_id not in wl_map:
                res.records_skipped += 1  # orphan in the source
                continue
            rid = repository.add_record(s, repository.NewRecord(
                workload_id=wl_map[row.workload_id], target=keys.TargetIdentity(row.target_key, row.target_json),
                trace_json=row.trace_json, run_secs_json=row.run_secs_json, args_info_json=row.args_info_json,
                session_id=sess_map.get(row.session_id) if row.session_id else None, created_at=row.created_at))
            res.records_added += rid is not None
            res.records_duplicate += rid is None
    return res
