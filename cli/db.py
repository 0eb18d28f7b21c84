"""``tvmq-db``: look into and maintain the tuning database."""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import datetime

from rich.console import Console
from rich.table import Table

from .common import ArgumentParser, exit_status_help, exit_with, number_in, run_command

DESCRIPTION = """\
Look into and maintain the tvmq tuning database: the SQL database (a SQLite file by default)
where tvmq-tune keeps every tuning session, every workload (tuning task) and every measured
schedule, and from which builds take their best schedules.

Records belong to exactly one target: a record measured for one target (e.g. cascadelake) is never
used for another (e.g. znver3), even for the same workload.
"""

EPILOG = """\
targets:
  Where a command takes --target, give the target key that `tvmq-db targets` shows (or a unique
  prefix of it), a CPU name that only one stored target has (e.g. cascadelake), or the target's
  JSON (e.g. '{"kind": "llvm", "mcpu": "znver3", "num-cores": 4}').

database:
  --db takes a file path or any SQLAlchemy URL (sqlite:///path.db, postgresql://...). The default
  is $TVMQ_DB, else tvmq.db in the working directory. A SQLite database is safe to use from
  several processes at once; a command waits up to --timeout seconds for another writer. Both go
  before or after the command (after it, they win).

examples:
  tvmq-db sessions                          what was tuned, when, on which host, how it ended
  tvmq-db sessions -f json --db other.db    the same as JSON on stdout (every listing takes -f json)
  tvmq-db best --target cascadelake         best schedule per workload for one target
  tvmq-db export ms_db/ --target znver3     write MetaSchedule's JSON database files
  tvmq-db import ms_db/                     read them (e.g. from ms.tune_tasks work_dir)
  tvmq-db merge other/tvmq.db               copy what another machine tuned
  tvmq-db prune --keep 5                    keep the 5 best records per workload per target
  tvmq-db check                             integrity: SQLite, orphans, unreadable traces
  tvmq-db check --dry-run                   what `check --fix` would delete, and why
  tvmq-db upgrade                           bring an older database to the newest schema
"""


#: the subcommands that list what the database holds, each with ``-f json``
LISTINGS = ("sessions", "workloads", "targets", "best", "check")


def add_database_options(p: argparse.ArgumentParser, default) -> None:
    """``--db`` and ``--timeout``, taken before the subcommand (``default`` None) and after it
    (``default`` SUPPRESS, so that an option given before it is not overwritten)."""
    p.add_argument("--db", metavar="URL_OR_PATH", default=default,
                   help="database file or SQLAlchemy URL (default: $TVMQ_DB or ./tvmq.db)")
    p.add_argument("--timeout", type=number_in(0.0, 86400.0), metavar="SECONDS", default=default,
                   help="how long to wait for another process's write lock (default: 30)")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="tvmq-db", description=DESCRIPTION,
                       epilog=EPILOG + "\n" + exit_status_help("success", "`check` found problems"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_database_options(p, default=None)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, desc: str | None = None) -> argparse.ArgumentParser:
        s = sub.add_parser(name, help=help_, description=desc or help_,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        # also after the subcommand; SUPPRESS: not given there, it keeps what was given before it
        add_database_options(s, default=argparse.SUPPRESS)
        if name in LISTINGS:
            s.add_argument("-f", "--format", choices=("text", "json"), default="text",
                           help="text: a table (default); json: one JSON object on stdout, for scripts")
        return s

    s = add("sessions", "list tuning sessions, newest first",
            "List tuning sessions, newest first: model, target, host, trials, status, records.\n"
            "A session still marked running that sent no heartbeat for $TVMQ_STALE_AFTER_S seconds\n"
            "(default 120; a tuner beats every $TVMQ_HEARTBEAT_S, default 20) shows as stale:\n"
            "killed, or cut off from the database.")
    s.add_argument("--limit", type=number_in(1), metavar="N", help="only the N newest sessions")

    s = add("workloads", "list workloads (tuning tasks) with record counts",
            "List workloads (tuning tasks): name, structural hash, records, targets, best time.")
    s.add_argument("--target", metavar="TARGET", help="only records of this target")

    add("targets", "list the targets that have records",
        "List the targets that have records: key (for --target), CPU, records, workloads, sessions,\n"
        "and the sum over workloads of the best mean run time.")

    s = add("best", "best records per workload and target",
            "Show the best (lowest mean run time) valid records per workload per target, and the\n"
            "session that measured each.")
    s.add_argument("--target", metavar="TARGET", help="only this target")
    s.add_argument("--workload", type=number_in(1), metavar="ID", help="only this workload id")
    s.add_argument("--top", type=number_in(1), default=1, metavar="K", help="the K best of each (default: 1)")

    s = add("export", "write MetaSchedule's JSON database files into a folder",
            "Write database_workload.json and database_tuning_record.json into DIR, exactly the\n"
            "files ms.database.JSONDatabase(work_dir=DIR) reads.")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--target", metavar="TARGET", help="only records of this target")
    s.add_argument("--top", type=number_in(1), metavar="K", help="only the K best records per workload per target")
    s.add_argument("--overwrite", action="store_true", help="replace the files if DIR already has them")

    s = add("import", "read MetaSchedule's JSON database files from a folder",
            "Read database_workload.json and database_tuning_record.json (as written by\n"
            "ms.database.JSONDatabase, e.g. the work_dir of ms.tune_tasks) into the database.\n"
            "Records already present are skipped; the import is all or nothing.")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--target", metavar="TARGET",
                   help="target (JSON) for records that have none; without it they are skipped")

    s = add("merge", "copy sessions, workloads and records from another database",
            "Copy every session, workload and record of OTHER_DB that this database lacks.\n"
            "Merging the same database twice adds nothing the second time.")
    s.add_argument("other", metavar="OTHER_DB", help="file path or SQLAlchemy URL")

    s = add("prune", "keep only the K best records per workload per target",
            "Delete all but the K best valid records of every workload on every target; records\n"
            "that failed or were never measured are deleted too. Then compact the SQLite file.")
    s.add_argument("--keep", type=number_in(1), required=True, metavar="K")
    s.add_argument("--target", metavar="TARGET", help="only prune this target")
    s.add_argument("--no-vacuum", action="store_true", help="do not compact the file afterwards")

    s = add("check", "check the database's integrity",
            "Check integrity: SQLite's integrity_check and foreign keys, records whose workload or\n"
            "session is missing, workloads this TVM cannot read, targets it cannot parse, and\n"
            "traces that cannot be replayed on their workload. Exit status 1 if anything is wrong.")
    s.add_argument("--quick", action="store_true", help="parse traces as JSON instead of replaying them")
    s.add_argument("--fix", action="store_true",
                   help="delete orphaned and unreadable records and workloads, and list each record deleted "
                        "(records that only need a tensor intrinsic this tvmq lacks are kept)")
    s.add_argument("--dry-run", action="store_true", help="list what --fix would delete, and why; delete nothing")
    s.add_argument("--json", action="store_true",
                   help="print the report as JSON (problems, and each broken or deleted record) instead of text "
                        "(the same as -f json)")

    add("upgrade", "bring the database to the newest schema revision",
        "Run the schema migrations (Alembic) that this tvmq has and the database lacks, and say\n"
        "which revision it is at. Every command already does this when it opens a database.")
    return p


# ------------------------------------------------------------------------------------ helpers


def fmt_secs(secs: float | None) -> str:
    if secs is None:
        return "-"
    if secs >= 1:
        return f"{secs:.3f} s"
    if secs >= 1e-3:
        return f"{secs * 1e3:.3f} ms"
    return f"{secs * 1e6:.2f} µs"


def fmt_time(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _cpu_of(target_json: str | None) -> str:
    try:
        cfg = json.loads(target_json or "{}")
    except ValueError:
        return "?"
    return str(cfg.get("mcpu") or cfg.get("mtriple") or cfg.get("kind") or "?")


def resolve_target(db, text: str | None, *, must_exist: bool = True) -> str | None:
    """The canonical target JSON that ``--target`` names (see the help's "targets")."""
    from tvmq.errors import DatabaseError

    if text is None:
        return None
    t = text.strip()
    if t.startswith("{"):
        from tvmq.db.keys import canonical_target_json

        return canonical_target_json(t)
    known = db.targets()
    exact = [x for x in known if x.target_key == t]
    if exact:
        return exact[0].target_json
    hits = [x for x in known if x.target_key.startswith(t)] or [x for x in known if _cpu_of(x.target_json) == t]
    if len(hits) == 1:
        return hits[0].target_json
    if len(hits) > 1:
        raise DatabaseError(f"--target {t!r} matches several targets "
                            f"({', '.join(x.target_key for x in hits)}); give the full key.")
    if not must_exist:
        raise DatabaseError(f"--target {t!r} is not a stored target; give the target as JSON.")
    shown = ", ".join(x.target_key for x in known) or "none yet"
    raise DatabaseError(f"No records for target {t!r} in {db.where} (stored targets: {shown}).")


def print_json(out: Console, db, key: str, rows: list) -> int:
    """``-f json``: ``{"database": WHERE, key: [each row's fields]}`` on stdout (times in ISO 8601, UTC)."""
    def plain(row) -> dict:
        fields = dataclasses.asdict(row)
        if hasattr(row, "state"):
            fields["state"] = row.state
        return fields

    text = json.dumps({"database": db.where, key: [plain(r) for r in rows]}, indent=2,
                      default=lambda v: v.isoformat() if isinstance(v, datetime) else str(v))
    out.file.write(text + "\n")
    return 0


# ----------------------------------------------------------------------------------- commands


def cmd_sessions(db, args, out: Console) -> int:
    from tvmq.db.heartbeat import stale_after

    rows = db.sessions(limit=args.limit)
    if args.format == "json":
        return print_json(out, db, "sessions", rows)
    table = Table(title=f"Tuning sessions in {db.where}", title_justify="left")
    for col in ("id", "started (UTC)", "ended", "model", "target", "host", "trials", "records", "status"):
        table.add_column(col, justify="right" if col in ("id", "trials", "records") else "left")
    colors = {"finished": "green", "running": "yellow", "interrupted": "magenta", "failed": "red", "stale": "red"}
    for s in rows:
        trials = f"{s.trials_done}/{s.trials_requested}" if s.trials_requested else str(s.trials_done)
        target = s.target_profile or s.target_key or "-"
        if s.target_profile and s.target_key:
            target = f"{s.target_profile} ({s.target_key})"
        host = s.host_name or "-"
        if s.host_cpu:
            host += f"\n{s.host_cpu}"
        model = s.model_name or "-"
        if s.model_sha256:
            model += f"\nsha256 {s.model_sha256[:12]}"
        table.add_row(str(s.id), fmt_time(s.started_at), fmt_time(s.ended_at), model, target, host, trials,
                      str(s.num_records), f"[{colors.get(s.state, 'white')}]{s.state}[/]")
    out.print(table if rows else f"No tuning sessions in {db.where}.")
    if any(s.stale for s in rows):
        out.print(f"stale: marked running, but no heartbeat for more than {stale_after():g} s "
                  "(killed, or cut off from the database); its records are kept.", highlight=False)
    return 0


def cmd_workloads(db, args, out: Console) -> int:
    tj = resolve_target(db, args.target)
    rows = db.workloads(target=tj)
    if args.format == "json":
        return print_json(out, db, "workloads", rows)
    table = Table(title=f"Workloads in {db.where}" + (f" with records for {args.target}" if tj else ""),
                  title_justify="left")
    for col in ("id", "name", "structural hash", "records", "targets", "best mean", "added (UTC)"):
        table.add_column(col, justify="right" if col in ("id", "records", "targets", "best mean") else "left")
    for w in rows:
        table.add_row(str(w.id), w.name, f"{int(w.shash):016x}", str(w.num_records), str(w.num_targets),
                      fmt_secs(w.best_mean_run_secs), fmt_time(w.created_at))
    out.print(table if rows else f"No workloads in {db.where}.")
    return 0


def cmd_targets(db, args, out: Console) -> int:
    rows = db.targets()
    if args.format == "json":
        return print_json(out, db, "targets", rows)
    table = Table(title=f"Targets in {db.where}", title_justify="left")
    for col in ("key", "cpu", "records", "workloads", "sessions", "sum of best", "last record (UTC)"):
        table.add_column(col, justify="right" if col in ("records", "workloads", "sessions", "sum of best") else "left")
    for t in rows:
        table.add_row(t.target_key, _cpu_of(t.target_json), str(t.num_records), str(t.num_workloads),
                      str(t.num_sessions), fmt_secs(t.best_total_secs), fmt_time(t.last_record_at))
    out.print(table if rows else f"No tuning records in {db.where}.")
    return 0


def cmd_best(db, args, out: Console) -> int:
    from tvmq.errors import DatabaseError

    if args.top < 1:
        raise DatabaseError("--top must be at least 1.")
    tj = resolve_target(db, args.target)
    rows = db.best_records(target=tj, workload_id=args.workload, top_k=args.top)
    if args.format == "json":
        return print_json(out, db, "records", rows)
    table = Table(title=f"Best records in {db.where}", title_justify="left")
    for col in ("target", "workload", "name", "record", "mean run time", "runs", "session", "measured (UTC)"):
        table.add_column(col, justify="right" if col in ("workload", "record", "mean run time", "runs", "session")
                         else "left")
    for r in rows:
        table.add_row(r.target_key, str(r.workload_id), r.workload_name, str(r.id), fmt_secs(r.mean_run_secs),
                      str(len(r.run_secs or [])), str(r.session_id) if r.session_id else "-",
                      fmt_time(r.created_at))
    out.print(table if rows else "No valid tuning records match.")
    return 0


def cmd_export(db, args, out: Console) -> int:
    from tvmq.errors import DatabaseError

    if args.top is not None and args.top < 1:
        raise DatabaseError("--top must be at least 1.")
    tj = resolve_target(db, args.target)
    n_wl, n_rec = db.export_json(args.dir, target=tj, top_k=args.top, overwrite=args.overwrite)
    out.print(f"Exported {n_wl} workloads and {n_rec} records to {args.dir} "
              "(database_workload.json, database_tuning_record.json).")
    return 0


def cmd_import(db, args, out: Console) -> int:
    tj = resolve_target(db, args.target, must_exist=False)
    res = db.import_json(args.dir, target=tj)
    msg = (f"Imported {res.records_added} records ({res.records_duplicate} already present) and "
           f"{res.workloads_added} new workloads ({res.workloads_known} known) from {args.dir}.")
    if res.records_skipped:
        msg += f" Skipped {res.records_skipped} records without a target (give --target)."
    out.print(msg)
    return 0


def cmd_merge(db, args, out: Console) -> int:
    from tvmq.redact import redact_text

    res = db.merge(args.other)
    out.print(f"Merged {redact_text(args.other)}: {res.records_added} records added ({res.records_duplicate} "
              f"already present), {res.workloads_added} workloads added, {res.sessions_added} sessions added.",
              highlight=False)
    return 0


def cmd_prune(db, args, out: Console) -> int:
    tj = resolve_target(db, args.target)
    before = db.count_records()
    n = db.prune(args.keep, target=tj, vacuum=not args.no_vacuum)
    out.print(f"Deleted {n} of {before} records; kept at most {args.keep} per workload per target.")
    return 0


def cmd_check(db, args, out: Console) -> int:
    rep = db.check(deep=not args.quick, fix=args.fix and not args.dry_run, dry_run=args.dry_run)
    if args.json or args.format == "json":
        print(json.dumps({"database": db.where, **rep.to_dict()}, indent=2))
        return 0 if rep.ok else 1
    c = rep.counts
    out.print(f"{db.where}: {c.get('workloads', 0)} workloads, {c.get('records', 0)} records, "
              f"{c.get('sessions', 0)} sessions.", highlight=False)
    for note in rep.notes:
        out.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    for prob in rep.problems:
        out.print(f"[red]problem:[/] {prob}", highlight=False, soft_wrap=True)
    deleted = {r.id for r in rep.deleted}
    for rec in rep.records:  # each broken record: what happens to it, and why
        if not (args.fix or args.dry_run):
            verb = "broken"
        elif rec.id in deleted:
            verb = "would delete" if rep.dry_run else "deleted"
        else:
            verb = "would keep" if rep.dry_run else "kept"
        out.print(f"  {verb}: {rec.describe()}", highlight=False, markup=False, soft_wrap=True)
    if rep.ok:
        out.print("[green]ok[/]: no problems found.")
        return 0
    if not (args.fix or args.dry_run):
        out.print(f"{len(rep.problems)} problem(s); `tvmq-db check --dry-run` lists what `--fix` deletes, "
                  "and why.")
    return 1


def cmd_upgrade(db, args, out: Console) -> int:
    done = db.upgrade()
    if done.changed:
        before = f"revision {done.before}" if done.before else "schema 1 (before migrations)"
        out.print(f"Upgraded {db.where} from {before} to revision {done.after}.")
    else:
        out.print(f"{db.where} is at the newest schema revision ({done.after}).")
    return 0


COMMANDS = {
    "sessions": cmd_sessions, "workloads": cmd_workloads, "targets": cmd_targets, "best": cmd_best,
    "export": cmd_export, "import": cmd_import, "merge": cmd_merge, "prune": cmd_prune, "check": cmd_check,
    "upgrade": cmd_upgrade,
}


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    err_console = Console(stderr=True)
    out = Console()
    if not out.is_terminal:  # piped or captured: do not squeeze tables into 80 columns
        out = Console(width=200)

    def body() -> int:
        from pathlib import Path

        from tvmq.db import open_database
        from tvmq.db.engine import is_sqlite, resolve_url
        from tvmq.errors import DatabaseError

        url = resolve_url(args.db)
        if args.command not in ("import", "merge") and is_sqlite(url) and url.database \
                and not Path(url.database).exists():
            raise DatabaseError(f"There is no tuning database at {url.database} (tvmq-tune creates it; "
                                "--db or $TVMQ_DB chooses another).")
        db = open_database(args.db, timeout_s=args.timeout)
        try:
            return COMMANDS[args.command](db, args, out)
        finally:
            db.close()

    exit_with(run_command("tvmq-db", body, err_console))


if __name__ == "__main__":
    main()
