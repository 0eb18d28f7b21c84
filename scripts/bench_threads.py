"""Multi-core scaling: tvmq libraries against TFLite at 1, 2, 4, ... threads, interleaved, on the
machine that will serve the model.

It needs TVM's *runtime* only (``TVM_USE_RUNTIME_LIB=1``, or a machine without the compiler
library), with tvmq, LiteRT (or TensorFlow), ``tflite`` and Pillow: it runs on a deployment box
that has the exported ``model.so`` files and the ``.tflite`` model but no TVM compiler.

For every thread count it resizes TVM's thread pool, builds a TFLite interpreter (XNNPACK) with
the same thread count, and alternates ``--blocks`` blocks of ``--runs`` invocations of each engine
on the same input. It prints each engine's median of block medians, its ratio to TFLite at that
thread count and its speed-up over its own time at the first thread count. Before timing it
checks that every library computes what TFLite computes: the largest difference in quantized
units over ``--check`` synthetic inputs and the ``--image`` photos (prepared as ``tvmq-tune``
prepares them), and whether each photo's top-5 agrees (``tvmq-tune``'s rule: tied scores
interchangeable on either side).

    python scripts/bench_threads.py MODEL.tflite OUT_A [OUT_B ...] --threads 1 2 4 8 --json r.json

A library is a ``tvmq-tune --out`` folder (or its ``model.so``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

# The sibling script (it imports tvmq only in its main()): run as `python scripts/bench_threads.py`,
# this script's folder is sys.path[0].
from bench_interleaved import interleave


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the .tflite model the libraries were built from")
    ap.add_argument("libraries", nargs="+", help="tvmq-tune --out folders or model.so files")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--blocks", type=int, default=6)
    ap.add_argument("--runs", type=int, default=15, help="invocations per block")
    ap.add_argument("--check", type=int, default=3, help="random inputs to compare outputs on")
    ap.add_argument("--image", nargs="*", default=[], help="photos to compare outputs on as well")
    ap.add_argument("--json", type=Path, help="write every number here")
    args = ap.parse_args()

    import numpy as np

    from tvmq.model import Reference, load_model
    from tvmq.model.inputs import image_to_array, synthetic_array
    from tvmq.report.verify import rankings_agree
    from tvmq.targets import host_info, list_profiles
    from tvmq.tuner.artifact import load
    from tvmq.tuner.compile import input_tensors, set_threads

    set_threads(args.threads[0], most=max(args.threads))  # before anything runs: the pool's size is fixed then
    host = host_info()
    flags = sorted({f for p in list_profiles() for f in p.host_flags if host.has(f)})  # what profiles ask for
    print(f"cpu: {host.model_name} ({host.logical_cores} logical), flags: {' '.join(flags)}", flush=True)

    loaded = load_model(args.model)
    arts = {str(lib): load(lib) for lib in args.libraries}
    (tensor,) = next(iter(arts.values())).metadata.inputs
    randoms = [[synthetic_array(tensor, seed)] for seed in range(args.check)]
    photos = [[image_to_array(Path(p), tensor)] for p in args.image]

    ref = Reference(loaded, args.threads[0])
    checks = {name: {"max_diff": 0, "photos": len(photos), "photos_top5_same": 0, "random_inputs": len(randoms)}
              for name in arts}
    for i, arrays in enumerate(randoms + photos):
        (want,) = ref.run(arrays)
        for name, art in arts.items():
            (got,) = art.run(arrays)
            got, want64 = got.astype(np.int64).reshape(-1), want.astype(np.int64).reshape(-1)
            checks[name]["max_diff"] = max(checks[name]["max_diff"], int(np.abs(got - want64).max()))
            if i >= len(randoms):  # random inputs give near-tied scores: their top-5 says little
                checks[name]["photos_top5_same"] += int(rankings_agree(got, want64))
    for name, c in checks.items():
        print(f"check {name}: max diff {c['max_diff']} units over {c['random_inputs']} random inputs and "
              f"{c['photos']} photos; top-5 same on {c['photos_top5_same']}/{c['photos']} photos", flush=True)

    sample = synthetic_array(tensor, args.check)
    rows = []
    for threads in args.threads:
        set_threads(threads, most=max(args.threads))
        ref = Reference(loaded, threads)
        ref.run([sample])
        engines = {f"TFLite ({ref.interpreter}, XNNPACK)": ref.invoke}  # run() above set the input
        for name, art in arts.items():
            vm, inputs = art.runnable.vm, input_tensors([sample])
            engines[name] = lambda vm=vm, inputs=inputs: vm["main"](*inputs)
        for name, b in interleave(engines, args.blocks, args.runs).items():
            rows.append({"threads": threads, "engine": name, "ms": statistics.median(b),
                         "min_block": min(b), "max_block": max(b)})
        line = "  ".join(f"{r['engine'].split('/')[-1] or r['engine']}={r['ms']:.2f}" for r in rows[-len(engines):])
        print(f"threads {threads}: {line}", flush=True)

    base = {r["threads"]: r["ms"] for r in rows if r["engine"].startswith("TFLite")}
    first = {}
    for r in rows:
        first.setdefault(r["engine"], r["ms"])
        r["ratio_to_tflite"] = r["ms"] / base[r["threads"]]
        r["speedup"] = first[r["engine"]] / r["ms"]
    print(f"\n{Path(args.model).name}: median of {args.blocks} interleaved blocks of {args.runs} runs (ms)")
    print(f"{'threads':>7}  {'engine':<48} {'ms':>8} {'ratio':>6} {'speedup':>7}")
    for r in rows:
        print(f"{r['threads']:>7}  {r['engine'][-48:]:<48} {r['ms']:>8.3f} {r['ratio_to_tflite']:>6.3f} "
              f"{r['speedup']:>7.2f}")
    if args.json:
        cpu = {"model": host.model_name, "cpus": host.logical_cores, "arch": host.arch, "flags": flags}
        args.json.write_text(json.dumps({"cpu": cpu, "model": args.model, "checks": checks, "rows": rows},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
