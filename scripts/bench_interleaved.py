"""tvmq libraries against TFLite, measured interleaved: the honest latency ratio on a noisy host.

On a shared 2-core host TFLite's own median moves by 20-30% between runs of the same model, so
two numbers taken minutes apart (what ``tvmq-tune``'s report and ``bench_int8.py`` print) can
disagree on which engine is faster. This loads everything into one process and alternates
blocks of runs: ``--blocks`` rounds of ``--runs`` invocations of TFLite (LiteRT, XNNPACK), then of
each library, on the same random input, with the same thread count. It prints each engine's
median of block medians and its ratio to TFLite.

    python scripts/bench_interleaved.py MODEL.tflite tvmq_out/A [tvmq_out/B ...] [--threads 2]

A library is a ``tvmq-tune --out`` folder (or its ``model.so``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def _block(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def interleave(engines: dict, blocks: int, runs: int, settle_s: float = 0.05) -> dict[str, list[float]]:
    """Each engine's block medians (ms): a warm-up block each, then ``blocks`` rounds of one block
    of ``runs`` invocations per engine, in turn, so that every engine sees the same host moments.

    Each block starts ``settle_s`` after the previous one ended: TVM's and XNNPACK's worker
    threads spin for a while after a parallel job before they sleep, and a short block of the
    other engine run in that while would compete with them for the cores."""
    for fn in engines.values():
        _block(fn, 5)
    out: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(blocks):
        for name, fn in engines.items():
            time.sleep(settle_s)
            out[name].append(_block(fn, runs))
    return out


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
    from tvmq.tuner.artifact import load
    from tvmq.tuner.compile import input_tensors, set_threads

    set_threads(args.threads)
    loaded = load_model(args.model)
    (sample,) = make_inputs(inspect_model(loaded), None, seed=0)
    ref = Reference(loaded, args.threads)
    ref.run(sample.arrays)
    engines = {f"TFLite ({ref.interpreter}, XNNPACK)": ref.invoke}  # run() above set the input
    for lib in args.libraries:
        art = load(Path(lib))
        vm, inputs = art.runnable.vm, input_tensors(sample.arrays)
        engines[str(lib)] = lambda vm=vm, inputs=inputs: vm["main"](*inputs)
    blocks = interleave(engines, args.blocks, args.runs)
    medians = {name: statistics.median(v) for name, v in blocks.items()}
    base = next(iter(medians.values()))
    table = Table(title=f"{loaded.name}: {args.blocks} interleaved blocks of {args.runs} runs, "
                        f"{args.threads} threads (ms)", title_justify="left")
    for col in ("engine", "median of block medians", "min block", "max block", "ratio to TFLite"):
        table.add_column(col, justify="left" if col == "engine" else "right")
    for name, m in medians.items():
        table.add_row(name, f"{m:.3f}", f"{min(blocks[name]):.3f}", f"{max(blocks[name]):.3f}", f"{m / base:.3f}")
    Console(width=160).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
