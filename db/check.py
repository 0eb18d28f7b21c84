"""``tvmq-db check``: find what is broken in a tuning database and, with ``fix``, remove it, saying
which records go and why.

Checked: SQLite's own integrity and foreign keys, records whose workload or session is missing,
workloads this TVM cannot read, targets it cannot parse, and traces that cannot be replayed.
Traces are replayed the way MetaSchedule loads them, with tvmq's tensor intrinsics registered
(:mod:`tvmq.db.msdb`). A trace that needs an intrinsic this tvmq does not register is reported
and kept: the record is sound, and a tvmq that has the intrinsic can use it.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tvmq.errors import one_line

from . import keys, repository

#: what can be wrong with a record: (the problem, in words, for N records; whether ``fix`` deletes it)
RECORD_PROBLEMS: dict[str, tuple[str, bool]] = {
    "missing-workload": ("records point to missing workloads", True),
    "unreadable-workload": ("records belong to workloads this TVM cannot read", True),
    "bad-target": ("records have a target TVM cannot parse", True),
    "bad-json": ("records hold JSON that cannot be parsed", True),
    "unreplayable": ("records have traces that cannot be replayed", True),
    "unknown-intrinsic": ("records need tensor intrinsics this tvmq does not register", False),
}


@dataclass(frozen=True)
class BrokenRecord:
    """One record a check found broken: which one, of what, on which target, and why."""

    id: int
    kind: str  # a key of RECORD_PROBLEMS
    reason: str
    workload_id: int | None = None
    workload_name: str | None = None
    target_key: str | None = None

    @property
    def deletable(self) -> bool:
        """Whether ``fix`` deletes it."""
        return RECORD_PROBLEMS[self.kind][1]

    def describe(self) -> str:
        workload = f"workload {self.workload_id}" + (f" {self.workload_name}" if self.workload_name else "")
        return f"record {self.id} ({workload}, target {self.target_key or '?'}): {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CheckReport:
    """What a check found; with ``fix``, what it deleted (with ``dry_run``, what it would delete)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    records: list[BrokenRecord] = field(default_factory=list)  # every broken record found
    deleted: list[BrokenRecord] = field(default_factory=list)  # deleted (dry run: would be)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts, "problems": self.problems, "notes": self.notes,
                "fixed": self.fixed, "dry_run": self.dry_run, "records": [r.to_dict() for r in self.records],
                "deleted": [r.to_dict() for r in self.deleted]}


@dataclass
class _Found:
    """What a check found, before anything is deleted."""

    records: list[BrokenRecord] = field(default_factory=list)
    records_without_session: list[int] = field(default_factory=list)
    workloads: list[int] = field(default_factory=list)  # unreadable


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f", … {len(ids) - 10} more" if len(ids) > 10 else "")


def _problem(rep: CheckReport, ids: list[int], what: str) -> None:
    """``N <what> (ids …).`` among the report's problems, when there are any such ids."""
    if ids:
        rep.problems.append(f"{len(ids)} {what} (ids {_ids(ids)}).")


def check(db: Any, *, deep: bool = True, fix: bool = False, dry_run: bool = False) -> CheckReport:
    """Integrity: SQLite's integrity_check, orphans, unreadable workloads/targets/traces.

    ``deep`` replays every trace on its workload (what MetaSchedule does when it loads a
    record). ``fix`` deletes orphaned and unreadable records and workloads, listing each record
    in ``deleted``; records that only lack a tensor intrinsic are kept. ``dry_run`` lists what
    ``fix`` would delete and deletes nothing.
    """
    rep = CheckReport(dry_run=dry_run)
    if db.is_sqlite:
        _check_sqlite(db, rep)
    found = _Found()
    with db.read() as s:
        rep.counts = repository.table_counts(s)
        without_workload, found.records_without_session = repository.orphan_record_ids(s)
        running = repository.count_running_sessions(s)
        wl_rows = repository.workload_contents(s)
        rec_rows = repository.ms_rows(s, best_first=False)
    if running:
        rep.notes.append(f"{running} sessions are still marked running (in progress, or killed).")
    unreadable = _unreadable_workloads(wl_rows)
    found.workloads = sorted(unreadable)
    names = {w.id: w.name for w in db.workloads()}
    orphans = set(without_workload)
    for row in rec_rows:
        rid, wid, _, _, target_json, _ = row
        where = {"workload_id": wid, "workload_name": names.get(wid), "target_key": _parse_target(target_json)[0]}
        if rid in orphans:
            found.records.append(BrokenRecord(rid, "missing-workload", f"its workload {wid} is missing", **where))
        elif wid in unreadable:
            found.records.append(BrokenRecord(rid, "unreadable-workload", unreadable[wid], **where))
        else:
            problem = _record_problem(db, row, deep)
            if problem is not None:
                found.records.append(BrokenRecord(rid, *problem, **where))
    rep.records = found.records
    fixing = fix and not dry_run  # what fixing repairs is no problem left
    if fixing:
        rep.problems = [p for p in rep.problems if "foreign_key_check" not in p]
    for kind, (what, deletable) in RECORD_PROBLEMS.items():
        if not (fixing and deletable):
            _problem(rep, [r.id for r in found.records if r.kind == kind], what)
    if not fixing:
        _problem(rep, found.records_without_session, "records point to missing sessions")
        _problem(rep, found.workloads, "workloads cannot be read")
    _problem(rep, [x.id for x in db.stale_sessions()], "sessions are stale: marked running, but without a "
             "heartbeat for too long, so killed or cut off from the database; their records are kept")
    if fix or dry_run:
        _fix(db, found, rep)
    return rep


@functools.lru_cache(maxsize=256)
def _parse_target(target_json: str) -> tuple[str | None, str | None]:
    """``(target key, None)`` of a stored target, or ``(None, why TVM cannot parse it)``."""
    try:
        return keys.target_key(keys.canonical_target_json(keys.as_target(target_json))), None
    except Exception as err:  # noqa: BLE001 - TVM raises ValueError/TVMError/RuntimeError
        return None, one_line(err, pick="last").rstrip(".")


def _check_sqlite(db: Any, rep: CheckReport) -> None:
    with db.errors(), db.engine.connect() as conn:
        res = [x for (x,) in conn.exec_driver_sql("PRAGMA integrity_check").fetchall()]
        if res != ["ok"]:
            rep.problems += [f"SQLite integrity_check: {x}" for x in res[:20]]
        fk = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if fk:
            rep.problems.append(f"{len(fk)} rows break foreign keys (PRAGMA foreign_key_check).")


def _unreadable_workloads(rows: list[tuple[int, str, str]]) -> dict[int, str]:
    """``{workload id: why it cannot be read}``."""
    from .msdb import module_from_json

    bad = {}
    for wid, mod_json, sha in rows:
        if hashlib.sha256(mod_json.encode()).hexdigest() != sha:
            bad[wid] = f"its workload {wid} does not match its content hash (the row was altered)"
            continue
        try:
            module_from_json(mod_json)
        except Exception as err:  # noqa: BLE001
            bad[wid] = f"its workload {wid} cannot be read by this TVM: {one_line(err, pick='last').rstrip('.')}"
    return bad


def _record_problem(db: Any, row: repository.MsRow, deep: bool) -> tuple[str, str] | None:
    """``(kind, reason)`` of what is wrong with a record whose workload is sound, or None."""
    from .msdb import unknown_intrinsics

    _, _, trace_json, run_json, target_json, args_json = row
    bad_target = _parse_target(target_json)[1]
    if bad_target:
        return "bad-target", f"its target cannot be parsed: {bad_target}"
    try:
        for text in (trace_json, run_json, args_json):
            if text is not None:
                json.loads(text)
    except ValueError as err:
        return "bad-json", f"its JSON cannot be parsed: {one_line(err).rstrip('.')}"
    reason = db.objects.replay_problem(row) if deep else None
    if reason is None:
        return None
    return ("unknown-intrinsic" if unknown_intrinsics(trace_json) else "unreplayable",
            f"its trace cannot be replayed: {reason}")


def _fix(db: Any, found: _Found, rep: CheckReport) -> None:
    """Delete what ``fix`` deletes (or, in a dry run, say so), and report each record."""
    doomed = [r for r in found.records if r.deletable]
    kept = len(found.records) - len(doomed)
    rep.deleted = doomed
    verb = "would delete" if rep.dry_run else "deleted"
    if not rep.dry_run:
        ids = [r.id for r in doomed]
        with db.write() as s:
            repository.delete_records(s, ids)
            repository.detach_records(s, found.records_without_session)
            repository.delete_workloads(s, found.workloads)
        db.objects.forget_records(ids)
    if doomed:
        rep.fixed.append(f"{verb} {len(doomed)} orphaned or unreadable records (ids {_ids([r.id for r in doomed])})")
    if found.records_without_session:
        rep.fixed.append(f"{'would detach' if rep.dry_run else 'detached'} {len(found.records_without_session)} "
                         "records from missing sessions")
    if found.workloads:
        rep.fixed.append(f"{verb} {len(found.workloads)} unreadable workloads (ids {_ids(found.workloads)})")
    if not rep.dry_run:
        rep.notes += [f"fixed: {x}" for x in rep.fixed]
    if kept:
        rep.notes.append(f"{'would keep' if rep.dry_run else 'kept'} {kept} records that this tvmq cannot "
                         "replay but a tvmq with their tensor intrinsics can.")
