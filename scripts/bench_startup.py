#!/usr/bin/env python3
"""Start-up cost of ``tvmq-tune``, two installations side by side: the time from start to the
first tuning trial, and a whole ``--trials 0`` run on a tuning database that already has records.

Each installation is a Python interpreter with tvmq installed (a virtual environment of an older
checkout, say). Runs alternate between them, ``--rounds`` times, each in a fresh process, so
both see the same moments of a noisy host; the table prints the median of each and the ratio.

    python scripts/bench_startup.py --before /tmp/oldvenv/bin/python --after .venv/bin/python \\
        --db tuned.db [--rounds 5] [-- extra tvmq-tune flags, e.g. --int8]

"The first trial" is the moment tvmq hands its first batch to MetaSchedule's ``tune_tasks``
(after task extraction and the untuned measurement of every task); the run stops there. Each
``--trials 0`` run gets its own copy of ``--db``, so a schema upgrade by one installation cannot
change what the other reads.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run inside the measured interpreter: time from process start to MetaSchedule's tune_tasks.
_FIRST_TRIAL = """
import sys, time
t0 = time.perf_counter()
from tvm.s_tir import meta_schedule as ms

def first_trial(*args, **kwargs):
    print("TVMQ_FIRST_TRIAL_S", time.perf_counter() - t0, flush=True)
    raise KeyboardInterrupt

ms.tune_tasks = first_trial
from tvmq.cli.tune import main
main(sys.argv[1:])
"""


def first_trial_s(python: str, flags: list[str], work: Path) -> float:
    db = work / "first.db"
    db.unlink(missing_ok=True)
    out = subprocess.run([python, "-c", _FIRST_TRIAL, "--trials", "16", "--db", str(db), "--out", str(work / "o"),
                          *flags], capture_output=True, text=True, cwd=work)
    for line in out.stdout.splitlines():
        if line.startswith("TVMQ_FIRST_TRIAL_S"):
            return float(line.split()[1])
    raise RuntimeError(f"{python} never reached the first trial:\n{out.stderr[-3000:]}")


def trials0(python: str, flags: list[str], db: Path, work: Path) -> tuple[float, dict]:
    copy = work / "trials0.db"
    shutil.copyfile(db, copy)
    report = work / "r.json"
    start = time.perf_counter()
    out = subprocess.run([python, "-m", "tvmq.cli.tune", "--trials", "0", "--db", str(copy), "--out", str(work / "o"),
                          "--json", str(report), *flags], capture_output=True, text=True, cwd=work)
    wall = time.perf_counter() - start
    if out.returncode not in (0, 1):
        raise RuntimeError(f"{python}: --trials 0 exited {out.returncode}:\n{out.stderr[-3000:]}")
    return wall, json.loads(report.read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--before", required=True, help="Python interpreter of the first installation")
    ap.add_argument("--after", required=True, help="Python interpreter of the second installation")
    ap.add_argument("--db", type=Path, required=True, help="a tuning database with records for the model")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("flags", nargs="*", help="more tvmq-tune flags (after --), the same for both")
    args = ap.parse_args()

    pythons = {"before": args.before, "after": args.after}
    first: dict[str, list[float]] = {k: [] for k in pythons}
    wall: dict[str, list[float]] = {k: [] for k in pythons}
    steps: dict[str, list[float]] = {k: [] for k in pythons}
    seen: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(pythons) if r % 2 == 0 else list(pythons)[::-1]
            for name in order:
                work = Path(tmp) / name
                work.mkdir(exist_ok=True)
                first[name].append(first_trial_s(pythons[name], args.flags, work))
                w, report = trials0(pythons[name], args.flags, args.db, work)
                wall[name].append(w)
                t = report["timings_s"]
                steps[name].append(sum(t.get(k, 0) for k in ("import", "int8", "layout", "tasks", "tune", "build")))
                seen[name] = report
            print(f"round {r + 1}: " + "  ".join(
                f"{n}: first trial {first[n][-1]:.1f} s, --trials 0 {wall[n][-1]:.1f} s" for n in pythons), flush=True)

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    print(f"\nmedians of {args.rounds} alternating rounds (flags: {' '.join(args.flags) or 'none'})")
    print(f"{'':34s} {'before':>9s} {'after':>9s} {'after/before':>13s}")
    for label, data in (("start to first trial (s)", first), ("--trials 0, whole run (s)", wall),
                        ("--trials 0, import..build (s)", steps)):
        b, a = med(data["before"]), med(data["after"])
        print(f"{label:34s} {b:9.2f} {a:9.2f} {a / b:13.2f}")
    for name, rep in seen.items():
        lat = rep.get("latency_ms", {})
        tasks = rep.get("tuning", {})
        print(f"{name}: verdict {rep['verdict']}, tvm {lat.get('tvm', {}).get('median', float('nan')):.3f} ms, "
              f"TFLite {lat.get('tflite', {}).get('median', float('nan')):.3f} ms, "
              f"tasks with records {sum(t['in_db'] for t in tasks.get('tasks', []))}/{tasks.get('tasks_total')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
