#!/usr/bin/env python3
"""Tuning benchmark: the numbers of the tuning issues, measured side by side in one run.

--minutes 2,5,10,20 (the default): the tuning curve against wall-clock time. For each point MODEL
(default mobilenet_v2_1.0_224_quant, the integer path, the default requantization) is tuned on a
fresh database with that budget (what `tvmq-tune --budget Nm` gives a user), then built, verified,
and benchmarked against TFLite in alternating blocks, so every point is a measured latency (and
its ratio to TFLite), not an estimate. Then the reference, a database tuned much longer: tuned
here with --reference-trials N (a fresh database, N trials), or given with --reference-db; the
model is built from it and measured the same way. Then all those builds and TFLite are timed side
by side in one process (scripts/bench_threads.py, 2 and 1 threads): the figures to compare, where
each point's own was taken at its own moment of a shared host. Then SECOND is tuned for
--second-minutes on the database of the longest point: how many of its tasks the first model's
records already covered (its head start). The points add up: 2,5,10,20 tune for 37 minutes.

    python scripts/bench_tuning.py --minutes 2,5,10,20 --reference-trials 2000

--trials N instead: the earlier benchmark, by trials:
1. tune MODEL (default mobilenet_v2_1.0_224_quant) with --trials into a fresh database, then
   build, verify and benchmark: untuned vs tuned vs TFLite in the same process;
2. rerun with --trials 0 on that database: no measurement, the same tuned latency, and the time
   from the model import to the start of the build;
3. tune SECOND (default tf2_mobilenet_v2_1.0_224_ptq) on the same database: how many of its
   tasks were already covered;
4. with --compare-builders N: whole-tuning trials per minute of MetaSchedule's stock
   LocalBuilder vs tvmq's PersistentBuilder on the same tasks and budget.

    python scripts/bench_tuning.py --trials 1500
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

MODELS = Path(os.environ.get("TVMQ_MODELS_DIR", Path(__file__).resolve().parents[2] / "shared" / "models"))


def run(console, **kw) -> dict:
    from tvmq import pipeline
    from tvmq.options import RunOptions

    return pipeline.run(RunOptions.from_mapping(kw), console).to_dict()


def compare_builders(model: str, trials: int, console: Console) -> list[tuple[str, int, float]]:
    """Trials per minute of a whole tuning run with each builder, same tasks, budget and seed."""
    from tvm.s_tir import meta_schedule as ms

    from tvmq.db import open_database
    from tvmq.model import load_model
    from tvmq.targets import host_info, resolve_target
    from tvmq.tuner.builder import PersistentBuilder
    from tvmq.tuner.compile import import_relax, lower_to_tir
    from tvmq.tuner.tasks import extract
    from tvmq.tuner.tune import Records, TuneConfig, tune

    profile, _ = resolve_target("native")
    threads = min(profile.default_threads or 1, host_info().logical_cores)
    target = profile.tvm_target(num_cores=threads)
    tasks = extract(lower_to_tir(import_relax(load_model(model)), target), target)
    rows = []
    for name, make in (("stock LocalBuilder", lambda: ms.builder.LocalBuilder(max_workers=os.cpu_count(), timeout_sec=600)),
                       ("tvmq PersistentBuilder", lambda: PersistentBuilder(timeout_sec=60))):
        with tempfile.TemporaryDirectory() as d:
            records = Records.open(open_database(Path(d) / "b.db"), target)
            builder = make()
            start = time.perf_counter()
            res = tune(tasks, target, records, TuneConfig(trials=trials, threads=threads, builder=builder, measure_untuned=False, work_dir=Path(d)), console)
            elapsed = time.perf_counter() - start
            if hasattr(builder, "shutdown"):
                builder.shutdown()
            rows.append((name, res.trials, elapsed))
    return rows


def curve(args, console: Console) -> dict:
    """The tuning curve (one fresh database per point), the reference and the second model."""
    root = Path(args.db or tempfile.mkdtemp(prefix="tvmq-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    common = dict(target=args.target, images=[args.image], labels=args.labels, repeat=args.repeat)
    out = Path(args.out)
    points, db, ref = [], None, None
    budgets = sorted(float(m) for m in args.minutes.split(","))
    wall0 = time.perf_counter()
    for minutes in budgets:
        # what `tvmq-tune --budget Nm` gives a user: a run of its own on a fresh database. (Segments of one
        # database, each a run resumed with --retune, spent each segment's start on a round of every task.)
        db = str(root / f"curve_{minutes:g}m.db")
        r = run(console, model=args.model, db=db, budget=minutes * 60, out_dir=out / f"curve_{minutes:g}m", **common)
        spent = r["timings_s"].get("tune", minutes * 60)
        trials = r["tuning"]["trials"]
        lat = r["latency_ms"]
        points.append({"minutes": round(spent / 60, 2), "trials": trials, "trials_per_min": trials / spent * 60,
                       "tvm_ms": lat["tvm"]["median"], "tflite_ms": lat["tflite"]["median"],
                       "ratio": lat["ratio_tvm_over_tflite"], "ratio_ci95": lat.get("ratio_ci95"),
                       "tasks_with_records": sum(1 for t in r["tuning"]["tasks"] if t["in_db"]),
                       "tasks": r["tuning"]["tasks_total"], "verdict": r["verdict"]})
    if args.reference_trials:
        args.reference_db = str(root / f"reference_{args.reference_trials}.db")
        t0 = time.perf_counter()
        ref = run(console, model=args.model, db=args.reference_db, trials=args.reference_trials,
                  out_dir=out / "reference", **common)
        console.print(f"reference: {ref['tuning']['trials']} trials in {time.perf_counter() - t0:.0f} s")
    summary: dict = {"db": db, "model": args.model, "curve": points,
                     "wall_s": round(time.perf_counter() - wall0, 1)}
    table = Table(title="Tuning curve: measured latency against minutes of tuning", title_justify="left")
    for col in ("minutes", "trials", "trials/min", "tasks tuned", "tvmq ms", "TFLite ms", "tvmq/TFLite (95% CI)", "verdict"):
        table.add_column(col)
    for p in points:
        ci = p["ratio_ci95"]
        table.add_row(f"{p['minutes']:.1f}", str(p["trials"]), f"{p['trials_per_min']:.0f}",
                      f"{p['tasks_with_records']}/{p['tasks']}", f"{p['tvm_ms']:.3f}", f"{p['tflite_ms']:.3f}",
                      f"{p['ratio']:.2f}" + (f" ({ci[0]:.2f}-{ci[1]:.2f})" if ci else ""), p["verdict"])
    if args.reference_db:
        if ref is None:  # a database tuned elsewhere: built and measured here
            ref = run(console, model=args.model, db=args.reference_db, trials=0, out_dir=out / "reference", **common)
        lat = ref["latency_ms"]
        summary["reference"] = {"db": args.reference_db, "tvm_ms": lat["tvm"]["median"],
                                "tflite_ms": lat["tflite"]["median"], "ratio": lat["ratio_tvm_over_tflite"],
                                "tasks_with_records": sum(1 for t in ref["tuning"]["tasks"] if t["in_db"])}
        table.add_row("reference", "-", "-", "-", f"{lat['tvm']['median']:.3f}", f"{lat['tflite']['median']:.3f}",
                      f"{lat['ratio_tvm_over_tflite']:.2f}", ref["verdict"])
    Console().print(table)
    builds = {f"{m:g} min": out / f"curve_{m:g}m" for m in budgets}
    if args.reference_db:
        builds["reference"] = out / "reference"
    summary["side_by_side"] = side_by_side(args.model, builds, args.image, out / "side_by_side.json")
    if points and args.reference_db:
        rows = {r["label"]: r for r in summary["side_by_side"] if r["threads"] == summary["side_by_side"][0]["threads"]}
        last = [k for k in builds if k != "reference"][-1]
        Console().print(f"after {last}: {rows[last]['ms'] / rows['reference']['ms']:.3f}x the reference's latency "
                        "(side by side, one process)")
    if args.second_minutes > 0:
        second = run(console, model=args.second, db=db, budget=args.second_minutes * 60, out_dir=out / "second", **common)
        tuning = second["tuning"]
        summary["second"] = {"model": args.second, "tasks_total": tuning["tasks_total"],
                             "tasks_from_db": tuning["tasks_from_db"], "trials": tuning["trials"],
                             "ratio": second["latency_ms"]["ratio_tvm_over_tflite"], "verdict": second["verdict"]}
        Console().print(f"second model: {tuning['tasks_from_db']} of {tuning['tasks_total']} tasks had records from "
                        f"the first before its own {args.second_minutes:g} min of tuning")
    return summary


def side_by_side(model: str, builds: dict[str, Path], image: str, json_path: Path) -> list[dict]:
    """The builds and TFLite timed in alternating blocks in one process (scripts/bench_threads.py, 2
    then 1 thread), after the curve: each point's own figure was taken right after its run, and on a
    shared host a slow spell can fall on one point and not the next."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).with_name("bench_threads.py")), model, *map(str, builds.values()),
           "--threads", "2", "1", "--blocks", "11", "--runs", "20", "--image", image, "--json", str(json_path)]
    subprocess.run(cmd, check=True)
    label = {str(path): name for name, path in builds.items()}
    rows = json.loads(json_path.read_text())["rows"]
    return [{**r, "label": label.get(r["engine"], "TFLite")} for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(MODELS / "mobilenet_v2_1.0_224_quant.tflite"))
    ap.add_argument("--second", default=str(MODELS / "tf2_mobilenet_v2_1.0_224_ptq.tflite"))
    ap.add_argument("--image", default=str(MODELS / "cat.bmp"))
    ap.add_argument("--labels", default=str(MODELS / "imagenet_labels.txt"))
    ap.add_argument("--minutes", default="2,5,10,20", help="curve checkpoints, minutes of tuning (default 2,5,10,20)")
    ap.add_argument("--reference-db", help="a database tuned much longer for MODEL (e.g. 2,000 trials): the reference")
    ap.add_argument("--reference-trials", type=int, default=0,
                    help="tune the reference here: a fresh database, this many trials (e.g. 2000)")
    ap.add_argument("--second-minutes", type=float, default=2.0, help="tuning minutes of SECOND after the curve")
    ap.add_argument("--trials", type=int, default=0, help="the trials mode instead of the curve")
    ap.add_argument("--second-trials", type=int, default=0, help="trials for the second model (default 0: coverage only)")
    ap.add_argument("--target", default="native")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--db", help="database (default: a fresh one in a temporary folder); with --minutes, a folder "
                    "for one fresh database per point")
    ap.add_argument("--out", default="tvmq_out/bench_tuning")
    ap.add_argument("--compare-builders", type=int, default=0, metavar="TRIALS")
    ap.add_argument("--skip-tuning", action="store_true", help="only --compare-builders")
    args = ap.parse_args()
    console = Console(stderr=True)
    if not args.trials and not args.compare_builders:
        print(json.dumps(curve(args, console), indent=2))
        return 0
    out = Path(args.out)
    db = args.db or str(Path(tempfile.mkdtemp(prefix="tvmq-bench-")) / "tune.db")
    summary: dict = {"db": db}
    if not args.skip_tuning:
        common = dict(target=args.target, images=[args.image], labels=args.labels, db=db, repeat=args.repeat)
        first = run(console, model=args.model, trials=args.trials, out_dir=out / "first", **common)
        t0 = time.perf_counter()
        again = run(console, model=args.model, trials=0, out_dir=out / "again", **common)
        again_wall = time.perf_counter() - t0
        second = run(console, model=args.second, trials=args.second_trials, out_dir=out / "second", **common)
        lat1, lat2 = first["latency_ms"], again["latency_ms"]
        table = Table(title="Tuning benchmark (medians, ms)", title_justify="left")
        for col in ("run", "trials", "untuned", "tuned", "TFLite", "tuned/untuned", "tvmq/TFLite", "verdict"):
            table.add_column(col)
        for name, r in (("first (tune)", first), ("again (--trials 0)", again), ("second model", second)):
            lat = r["latency_ms"]
            unt = lat.get("tvm_untuned", {}).get("median")
            table.add_row(name, str(r["tuning"]["trials"]), f"{unt:.2f}" if unt else "-", f"{lat['tvm']['median']:.2f}",
                          f"{lat['tflite']['median']:.2f}",
                          f"{lat['tvm']['median'] / unt:.3f}" if unt else "-",
                          f"{lat['ratio_tvm_over_tflite']:.2f}", r["verdict"])
        Console().print(table)
        t_again = again["timings_s"]
        summary.update({
            "first": {"trials": first["tuning"]["trials"], "tuning_s": first["timings_s"].get("tune"),
                      "untuned_ms": lat1["tvm_untuned"]["median"], "tuned_ms": lat1["tvm"]["median"],
                      "tflite_ms": lat1["tflite"]["median"],
                      "speedup": lat1["tvm_untuned"]["median"] / lat1["tvm"]["median"], "verdict": first["verdict"]},
            "again": {"trials": again["tuning"]["trials"], "tuned_ms": lat2["tvm"]["median"],
                      "tuned_ratio_to_first": lat2["tvm"]["median"] / lat1["tvm"]["median"],
                      "import_to_build_s": t_again.get("tasks", 0) + t_again.get("tune", 0),
                      "wall_s": again_wall, "verdict": again["verdict"]},
            "second": {"tasks_total": second["tuning"]["tasks_total"], "tasks_from_db": second["tuning"]["tasks_from_db"],
                       "verdict": second["verdict"]},
        })
        Console().print(f"second model: {second['tuning']['tasks_from_db']} of {second['tuning']['tasks_total']} tasks "
                        f"already covered by the first model's records")
        Console().print(f"rerun: import → build in {summary['again']['import_to_build_s']:.1f} s "
                        f"(task extraction + database look-up), no trial measured")
    if args.compare_builders:
        rows = compare_builders(args.model, args.compare_builders, console)
        table = Table(title=f"Whole-tuning throughput, {args.compare_builders} trials", title_justify="left")
        for col in ("builder", "trials", "seconds", "trials/min"):
            table.add_column(col)
        base = None
        for name, n, secs in rows:
            rate = n / secs * 60
            base = base or rate
            table.add_row(name, str(n), f"{secs:.0f}", f"{rate:.1f} ({rate / base:.2f}x)")
        Console().print(table)
        summary["builders"] = [{"builder": n, "trials": t, "seconds": s} for n, t, s in rows]
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
