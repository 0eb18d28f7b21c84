#!/usr/bin/env python3
"""Operator coverage over a team's models: every ``.tflite`` of the folders (or files) given, through
``tvmq-tune``'s pipeline, one row each:

- how it ran: compiled whole, partitioned (TVM's part and TFLite's), or refused (and why);
- the share of the model's multiply-accumulates that TVM computes;
- the verification verdict against TFLite, with the output kind's own check (top-5, identical
  pixels and mIoU of a segmentation map, detections matched at IoU >= 0.9), and the outputs no
  interpreter here computes;
- tvmq's latency as a ratio to TFLite's (alternating blocks, 95% interval): untuned, and built
  from the tuning database when ``--db`` holds records for the model (or ``--trials``/``--budget``
  tunes it first).

    python scripts/coverage.py ../shared/models --image deeplab=bird_segmentation.bmp \\
        --image traffic=traffic_frame_0001.bmp --image mnist=mnist_nine.bmp

``--image SUBSTRING=PATH`` feeds PATH (relative: to the model's folder) to each model whose file
name contains SUBSTRING; other models get tvmq's deterministic synthetic input. Exit status 1 when
a model is refused or fails its verification, else 0.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402


def model_files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for p in map(Path, paths):
        found += sorted(p.glob("*.tflite")) if p.is_dir() else [p]
    return found


def image_for(model: Path, pairs: list[str]) -> list[str]:
    for pair in pairs:
        key, _, image = pair.partition("=")
        if key and key in model.name:
            path = Path(image)
            return [str(path if path.is_absolute() else model.parent / path)]
    return []


def _ratio(latency: dict | None) -> str:
    if not latency:
        return "-"
    lo, hi = latency.get("ratio_ci95") or (None, None)
    r = latency.get("ratio_tvm_over_tflite")
    return f"{r:.2f}x ({lo:.2f}-{hi:.2f})" if r and lo else (f"{r:.2f}x" if r else "-")


def _untuned_ratio(latency: dict) -> str:
    untuned, tflite = latency.get("tvm_untuned"), latency.get("tflite")
    if not untuned or not tflite:
        return "-"
    return f"{untuned['median'] / tflite['median']:.2f}x"


def _check(report: dict) -> str:
    bits = []
    for image in report.get("images", []):
        if image.get("segmentation"):
            s = image["segmentation"]
            bits.append(f"pixels {100 * s['identical_share']:.2f}% mIoU {s['miou']:.4f}")
        elif image.get("detection"):
            d = image["detection"]
            bits.append(f"boxes {d.get('matched', '?')} of {d.get('tflite_total', '?')} matched, score diff "
                        f"{d.get('max_score_diff', '?')}")
        elif image.get("top5_match") is not None:
            bits.append("top-5 " + ("same" if image["top5_match"] else "differs"))
        else:
            worst = max((o.get("max_abs_diff", 0) for o in image.get("outputs", [])), default=0)
            bits.append(f"max |diff| {worst:g}")
    return "; ".join(bits)


def cover(model: Path, args: argparse.Namespace, console: Console) -> dict:
    from tvmq import pipeline
    from tvmq.errors import TvmqError
    from tvmq.options import RunOptions

    row = {"model": model.name}
    with tempfile.TemporaryDirectory(prefix="tvmq-coverage-") as out:
        options = {"model": str(model), "target": args.target, "db": args.db, "out": out,
                   "bench_seconds": args.bench_seconds, "threads": args.threads, "image": image_for(model, args.image),
                   "trials": args.trials, "budget": args.budget}
        try:
            report = pipeline.run(RunOptions.from_mapping(options), console).to_dict()
        except TvmqError as err:
            return {**row, "ran": "refused", "why": str(err)}
    partition = report.get("partition")
    latency = report.get("latency_ms") or {}
    tuned = bool(latency.get("tvm_untuned"))
    row.update(ran="partitioned" if partition else "whole",
               tvm_mac_share=partition["tvm_mac_share"] if partition else 1.0,
               tflite_operators=sorted({op for p in (partition or {}).get("parts", []) if p["engine"] == "tflite"
                                        for op in p["operators"]}),
               not_computed=(partition or {}).get("not_computed", []),
               verdict=report.get("verdict"), check=_check(report),
               untuned=_untuned_ratio(latency) if tuned else _ratio(latency),
               tuned=_ratio(latency) if tuned else "-",
               tasks_from_db=report.get("tuning", {}).get("tasks_from_db"))
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="+", metavar="DIR_OR_MODEL")
    ap.add_argument("--db", help="tuning database (default: none, every model untuned)")
    ap.add_argument("--trials", type=int, default=0, help="trials per model before its build (default 0)")
    ap.add_argument("--budget", type=float, help="or seconds of tuning per model")
    ap.add_argument("--target", default="native")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--bench-seconds", type=float, default=1.0)
    ap.add_argument("--image", action="append", default=[], metavar="SUBSTRING=PATH")
    ap.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = ap.parse_args()
    if args.budget is not None:
        args.trials = None
    console = Console(stderr=True)
    quiet = Console(quiet=True)  # the pipeline's own tables, not wanted here
    rows = []
    for model in model_files(args.paths):
        console.print(f"[bold]{model.name}[/]")
        rows.append(cover(model, args, quiet))
        console.print(rows[-1], highlight=False)
    table = Table(title="tvmq coverage", title_justify="left")
    for column in ("model", "ran", "MACs in TVM", "TFLite runs", "verdict", "check", "untuned / TFLite",
                   "tuned / TFLite"):
        table.add_column(column)
    for r in rows:
        if r["ran"] == "refused":
            table.add_row(r["model"], "refused", "-", "-", "-", r["why"], "-", "-")
            continue
        tflite = ", ".join(r["tflite_operators"]) or "-"
        if r["not_computed"]:
            tflite += f" (not computed: {len(r['not_computed'])} outputs)"
        table.add_row(r["model"], r["ran"], f"{100 * r['tvm_mac_share']:.1f}%", tflite, r["verdict"], r["check"],
                      r["untuned"], r["tuned"])
    Console().print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["ran"] != "refused" and r["verdict"] == "pass" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
