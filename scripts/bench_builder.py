#!/usr/bin/env python
"""Builds per minute: stock ms.builder.LocalBuilder vs tvmq's PersistentBuilder.

Both builders build the same candidates (MetaSchedule schedules of one workload, sampled by
the post-order-apply space generator + replay-trace strategy, postprocessors applied), in
batches the way the task scheduler sends them. Each builder's clock starts at its
constructor, so worker start-up (the ~20 s ``tvm.s_tir.tensor_intrin`` import) is counted
for both: once for PersistentBuilder, once per batch for LocalBuilder.

    .venv/bin/python scripts/bench_builder.py --candidates 16 --batch 4
"""

from __future__ import annotations

import argparse
import os
import time


def make_candidates(workload: str, n: int, target):
    # pylint: disable=import-outside-toplevel
    import tvm
    from tvm import te
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.testing import te_workload

    if workload == "matmul":
        func = te.create_prim_func(te_workload.matmul(128, 128, 128))
    else:  # conv2d NHWC, a MobileNet-like layer
        func = te.create_prim_func(te_workload.conv2d_nhwc(1, 28, 28, 64, 64, 3, 1, 1))
    mod = tvm.IRModule({"main": func})
    ctx = ms.TuneContext(
        mod=mod,
        target=target,
        space_generator="post-order-apply",
        search_strategy="replay-trace",
        task_name=workload,
        num_threads=1,
        rand_state=0,
    )
    ctx.pre_tuning(max_trials=n, num_trials_per_iter=n, design_spaces=ctx.generate_design_space())
    cands = ctx.generate_measure_candidates() or []
    return [ms.builder.BuilderInput(c.sch.mod, target) for c in cands[:n]]


def run_builder(make, inputs, batch: int):
    # pylint: disable=import-outside-toplevel
    from tvm.s_tir.meta_schedule.utils import remove_build_dir

    t0 = time.perf_counter()
    builder = make()
    ok = failed = 0
    batch_secs = []
    try:
        for i in range(0, len(inputs), batch):
            tb = time.perf_counter()
            for res in builder.build(inputs[i : i + batch]):
                if res.error_msg is None:
                    ok += 1
                    remove_build_dir(res.artifact_path)
                else:
                    failed += 1
            batch_secs.append(time.perf_counter() - tb)
    finally:
        if hasattr(builder, "shutdown"):
            builder.shutdown()
    return {"seconds": time.perf_counter() - t0, "ok": ok, "failed": failed, "batches": batch_secs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workload", choices=["matmul", "conv2d"], default="matmul")
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--timeout", type=float, default=120.0, help="per-candidate build timeout (s)")
    p.add_argument("--target", default="llvm", help="target kind (llvm) or a JSON target dict")
    args = p.parse_args()

    # pylint: disable=import-outside-toplevel
    from rich.console import Console
    from rich.table import Table
    from tvm.s_tir import meta_schedule as ms
    from tvm.target import Target

    from tvmq.tuner.builder import PersistentBuilder

    console = Console()
    import json

    spec = json.loads(args.target) if args.target.lstrip().startswith("{") else {"kind": args.target}
    spec.setdefault("num-cores", os.cpu_count())
    target = Target(spec)
    with console.status("sampling candidates..."):
        t = time.perf_counter()
        inputs = make_candidates(args.workload, args.candidates, target)
    console.print(
        f"{len(inputs)} {args.workload} candidates for [bold]{spec}[/] sampled in "
        f"{time.perf_counter() - t:.1f} s; batches of {args.batch}, {args.workers} workers, "
        f"{os.cpu_count()} CPUs"
    )

    contenders = [
        ("LocalBuilder (stock)", lambda: ms.builder.LocalBuilder(max_workers=args.workers, timeout_sec=args.timeout)),
        ("PersistentBuilder", lambda: PersistentBuilder(max_workers=args.workers, timeout_sec=args.timeout)),
    ]
    rows = {}
    for name, make in contenders:
        with console.status(f"building with {name}..."):
            rows[name] = run_builder(make, inputs, args.batch)
        r = rows[name]
        console.print(f"{name}: {r['seconds']:.1f} s, batches " + ", ".join(f"{s:.1f}" for s in r["batches"]))

    base = rows["LocalBuilder (stock)"]
    table = Table(title=f"Builds per minute ({len(inputs)} candidates, batches of {args.batch})")
    for col in ("builder", "built", "failed", "wall s", "s / batch (mean)", "builds / min", "vs stock"):
        table.add_column(col, justify="left" if col == "builder" else "right")
    base_rate = base["ok"] / base["seconds"] * 60 if base["seconds"] else 0.0
    for name, r in rows.items():
        rate = r["ok"] / r["seconds"] * 60 if r["seconds"] else 0.0
        ratio = rate / base_rate if base_rate else float("nan")
        table.add_row(
            name,
            str(r["ok"]),
            str(r["failed"]),
            f"{r['seconds']:.1f}",
            f"{sum(r['batches']) / max(1, len(r['batches'])):.1f}",
            f"{rate:.1f}",
            f"{ratio:.2f}x",
        )
    console.print(table)


if __name__ == "__main__":
    main()
