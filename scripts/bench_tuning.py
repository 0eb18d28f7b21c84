#!/usr/bin/env python3
"""Tuning benchmark: the numbers of the tuning issue, measured side by side in one run.

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(MODELS / "mobilenet_v2_1.0_224_quant.tflite"))
    ap.add_argument("--second", default=str(MODELS / "tf2_mobilenet_v2_1.0_224_ptq.tflite"))
    ap.add_argument("--image", default=str(MODELS / "cat.bmp"))
    ap.add_argument("--labels", default=str(MODELS / "imagenet_labels.txt"))
    ap.add_argument("--trials", type=int, default=1500)
    ap.add_argument("--second-trials", type=int, default=0, help="trials for the second model (default 0: coverage only)")
    ap.add_argument("--target", default="native")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--db", help="database (default: a fresh one in a temporary folder)")
    ap.add_argument("--out", default="tvmq_out/bench_tuning")
    ap.add_argument("--compare-builders", type=int, default=0, metavar="TRIALS")
    ap.add_argument("--skip-tuning", action="store_true", help="only --compare-builders")
    args = ap.parse_args()
    console = Console(stderr=True)
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
