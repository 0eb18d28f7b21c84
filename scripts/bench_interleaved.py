"""tvmq libraries against TFLite, measured interleaved: the honest latency ratio on a noisy host.

On a shared 2-core host TFLite's own median moves by 20-30% between runs of the same model, so
two numbers taken minutes apart (what ``tvmq-tune``'s report and ``bench_int8.py`` print) can
disagree on which engine is faster. This loads everything into one process and alternates
blocks of runs: ``--blocks`` rounds of ``--runs`` invocations of TFLite (LiteRT, XNNPACK), then of
each library, on the same random input, with the same thread count, each timed by the loop
``tvmq-tune``'s benchmark uses (:func:`tvmq.stages.measure.alternate_blocks`). It prints each
engine's median of block medians, its ratio to TFLite with the 95% bootstrap interval (blocks
resampled by round) and whether that says faster, slower or indistinguishable.

    python scripts/bench_interleaved.py MODEL.tflite tvmq_out/A [tvmq_out/B ...] [--threads 2]

A library is a ``tvmq-tune --out`` folder (or its ``model.so``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from tvmq.stages.measure import SETTLE_S, BlockPlan, alternate_blocks


def interleave(engines: dict, blocks: int, runs: int, settle_s: float = SETTLE_S) -> dict[str, list[float]]:
    """Each engine's block medians (ms): five warm-up runs each, then ``blocks`` rounds of one block
    of ``runs`` invocations per engine (:func:`tvmq.stages.measure.alternate_blocks`, which says
    why each block waits ``settle_s`` first)."""
    plan = BlockPlan(min_total_s=0.0, min_blocks=blocks, min_block_s=0.0, block_runs=runs, max_blocks=blocks,
                     max_total_s=float("inf"), warmup_runs=5, settle_s=settle_s)
    timed = alternate_blocks(engines, plan)
    return {name: timed.medians_ms(name) for name in engines}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the .tflite model the libraries were built from")
    ap.add_argument("libraries", nargs="+", help="tvmq-tune --out folders or model.so files")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20, help="invocations per block")
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from tvmq.model import inspect_model, load_model, make_inputs
    from tvmq.model.reference import Reference
    from tvmq.report.stats import compare_block_medians
    from tvmq.tuner.artifact import load
    from tvmq.tuner.compile import set_threads

    set_threads(args.threads)
    loaded = load_model(args.model)
    (sample,) = make_inputs(inspect_model(loaded), None, seed=0)
    ref = Reference(loaded, args.threads)
    ref.run(sample.arrays)
    engines = {f"TFLite ({ref.interpreter}, XNNPACK)": ref.invoke}  # run() above set the input
    for lib in args.libraries:
        art = load(Path(lib))
        engines[str(lib)] = art.runnable.timed_call(sample.arrays)
    blocks = interleave(engines, args.blocks, args.runs)
    medians = {name: statistics.median(v) for name, v in blocks.items()}
    base_name = next(iter(blocks))
    table = Table(title=f"{loaded.name}: {args.blocks} interleaved blocks of {args.runs} runs, "
                        f"{args.threads} threads (ms)", title_justify="left")
    for col in ("engine", "median of block medians", "min block", "max block", "ratio to TFLite", "95% CI", "verdict"):
        table.add_column(col, justify="left" if col in ("engine", "verdict") else "right")
    for name, m in medians.items():
        ratio, ci, verdict = 1.0, "", ""
        if name != base_name:
            c = compare_block_medians(blocks[name], blocks[base_name])
            ratio, ci, verdict = c.ratio, f"{c.ratio_ci95[0]:.3f}-{c.ratio_ci95[1]:.3f}", c.verdict
        table.add_row(name, f"{m:.3f}", f"{min(blocks[name]):.3f}", f"{max(blocks[name]):.3f}", f"{ratio:.3f}", ci,
                      verdict)
    Console(width=180).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
