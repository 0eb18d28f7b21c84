"""``tvmq-db check``: find what is broken in a tuning database (and, with ``fix``, remove it).

Checked: SQLite's own integrity and foreign keys, records whose workload or session is missing,
workloads this TVM cannot read, targets it cannot parse, and traces that cannot be replayed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from . import keys, repository


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Broken:
    """Ids of what a check found broken."""

    records_without_workload: list[int] = field(default_factory=list)
    records_without_session: list[int] = field(default_factory=list)
    workloads: list[int] = field(default_factory=list)
    records_bad_target: list[int] = field(default_factory=list)
    records_bad_trace: list[int] = field(default_factory=list)


def _ids(ids: list[int]) -> str:
    shown = ", ".join(str(i) for i in ids[:10])
    return shown + (f", … {len(ids) - 10} more" if len(ids) > 10 else "")


def _problem(rep: CheckReport, ids: list[int], what: str) -> None:
    """``N <what> (ids …).`` among the report's problems, when there are any such ids."""
    if ids:
        rep.problems.append(f"{len(ids)} {what} (ids {_ids(ids)}).")


def check(db: Any, *, deep: bool = True, fix: bool = False) -> CheckReport:
    """Integrity: SQLite's integrity_check, orphans, unreadable workloads/targets/traces.

    ``deep`` replays every trace on its workload (what MetaSchedule does when it loads a
    record); ``fix`` deletes orphans and unreadable records/workloads.
    """
    rep = CheckReport()
    if db.is_sqlite:
        _check_sqlite(db, rep)
    bad = _Broken()
    with db.read() as s:
        rep.counts = repository.table_counts(s)
        bad.records_without_workload, bad.records_without_session = repository.orphan_record_ids(s)
        running = repository.count_running_sessions(s)
        wl_rows = repository.workload_contents(s)
        rec_rows = repository.ms_rows(s, best_first=False)
    _problem(rep, bad.records_without_workload, "records point to missing workloads")
    _problem(rep, bad.records_without_session, "records point to missing sessions")
    if running:
        rep.notes.append(f"{running} sessions are still marked running (in progress, or killed).")
    bad.workloads = _unreadable_workloads(wl_rows)
    _problem(rep, bad.workloads, "workloads cannot be read")
    _check_records(db, rec_rows, bad, deep)
    _problem(rep, bad.records_bad_target, "records have a target TVM cannot parse")
    _problem(rep, bad.records_bad_trace, f"records have traces that cannot be {'replayed' if deep else 'parsed'}")
    if fix:
        _fix(db, bad, rep)
    return rep


def _check_sqlite(db: Any, rep: CheckReport) -> None:
    with db.errors(), db.engine.connect() as conn:
        res = [x for (x,) in conn.exec_driver_sql("PRAGMA integrity_check").fetchall()]
        if res != ["ok"]:
            rep.problems += [f"SQLite integrity_check: {x}" for x in res[:20]]
        fk = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if fk:
            rep.problems.append(f"{len(fk)} rows break foreign keys (PRAGMA foreign_key_check).")


def _unreadable_workloads(rows: list[tuple[int, str, str]]) -> list[int]:
    import tvm

    bad = []
    for wid, mod_json, sha in rows:
        try:
            tvm.ir.load_json(mod_json)
            if hashlib.sha256(mod_json.encode()).hexdigest() != sha:
                raise ValueError("content hash mismatch")
        except Exception:  # noqa: BLE001
            bad.append(wid)
    return bad


def _check_records(db: Any, rows: list[repository.MsRow], bad: _Broken, deep: bool) -> None:
    """Sort records with an unparsable target or an unreadable trace into ``bad``."""
    orphans, bad_workloads = set(bad.records_without_workload), set(bad.workloads)
    target_ok: dict[str, bool] = {}
    for row in rows:
        rid, wid, trace_json, run_json, target_json, args_json = row
        if rid in orphans or wid in bad_workloads:
            continue
        if target_json not in target_ok:
            try:
                keys.as_target(target_json)
                target_ok[target_json] = True
            except Exception:  # noqa: BLE001
                target_ok[target_json] = False
        if not target_ok[target_json]:
            bad.records_bad_target.append(rid)
            continue
        try:
            json.loads(trace_json)
            if run_json is not None:
                json.loads(run_json)
            if args_json is not None:
                json.loads(args_json)
            if deep:
                db.objects.replay(row, cached=False)
        except Exception:  # noqa: BLE001
            bad.records_bad_trace.append(rid)


def _fix(db: Any, bad: _Broken, rep: CheckReport) -> None:
    doomed = sorted(set(bad.records_without_workload) | set(bad.records_bad_trace) | set(bad.records_bad_target))
    with db.write() as s:
        repository.delete_records(s, doomed)
        repository.detach_records(s, bad.records_without_session)
        repository.delete_workloads(s, bad.workloads)
    db.objects.forget_records(doomed)
    if doomed:
        rep.fixed.append(f"deleted {len(doomed)} orphaned or unreadable records")
    if bad.records_without_session:
        rep.fixed.append(f"detached {len(bad.records_without_session)} records from missing sessions")
    if bad.workloads:
        rep.fixed.append(f"deleted {len(bad.workloads)} unreadable workloads and their records")
    if rep.fixed:
        rep.notes += [f"fixed: {x}" for x in rep.fixed]
        rep.problems = [p for p in rep.problems if p.startswith("SQLite integrity_check")]
