"""``tvmq-run``: run a build exported by ``tvmq-tune`` without recompiling it."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from .common import ArgumentParser, exit_status_help, exit_with, number_in, quiet_native_logs, run_command, run_option

DESCRIPTION = """\
Load a library exported by tvmq-tune (its folder, or its model.so next to model.json), run it
on images or on a deterministic synthetic input, and print the top-5 classes; optionally time it.
Nothing is compiled: the library is loaded as it is, so it must have been built for this CPU.

An artifact is executable code: load one only from a source you trust. Before loading model.so,
tvmq-run checks model.json (every field), that model.so is a plain file of the folder with the
size and sha256 model.json records, that this CPU has the features the code needs, and that
tvm-ffi has the C ABI it was built with. These checks find a damaged, truncated or swapped
library and an edited model.json; they cannot tell a forged artifact from a real one.
"""


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="tvmq-run", description=DESCRIPTION, epilog=exit_status_help("done"),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("build", metavar="BUILD", help="folder written by tvmq-tune --out (or its model.so)")
    p.add_argument("--image", action="append", default=[], nargs="+", metavar="PATH",
                   help="image file(s) or folder(s); without it a synthetic input is used")
    p.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", dest="inputs",
                   help="feed the input NAME this array (a .npy of its exact shape and dtype; repeatable)")
    p.add_argument("--labels", metavar="PATH", help="class names, one per line")
    p.add_argument("--seed", type=run_option("seed"), default=0, help="seed of the synthetic input (default: 0)")
    p.add_argument("--threads", type=run_option("threads"), metavar="N", help="threads (default: those of the build)")
    p.add_argument("--repeat", type=number_in(0), default=0, metavar="N", help="also time N runs (default: 0)")
    p.add_argument("--compare-tflite", metavar="MODEL",
                   help="also time the build against TFLite running MODEL (the .tflite it was built from) on the "
                        "same input and threads, in alternating blocks, and say whether it is faster, slower or "
                        "indistinguishable at 95%% confidence")
    p.add_argument("--bench-seconds", type=run_option("bench_seconds"), default=2.0, metavar="S",
                   help="with --compare-tflite: at least S seconds of timed runs of each engine (default: 2)")
    p.add_argument("--bench-blocks", type=run_option("bench_blocks"), default=5, metavar="N",
                   help="with --compare-tflite: at least N blocks of runs of each engine (default: 5)")
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    return p


def main(argv: list[str] | None = None) -> None:
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)

    def body() -> int:
        from tvmq.model import load_labels, make_inputs
        from tvmq.model.inputs import read_input_arrays
        from tvmq.report.stats import latency_stats
        from tvmq.report.verify import is_classification, top_k
        from tvmq.tuner import artifact
        from tvmq.tuner.compile import set_threads

        art = artifact.load(args.build)
        for warning in art.warnings:
            console.print(f"[yellow]tvmq-run: warning:[/] {warning}", highlight=False, soft_wrap=True)
        lib, meta = art.path, art.metadata
        set_threads(args.threads or meta.threads)
        labels = load_labels(args.labels)
        samples = make_inputs(meta, [p for group in args.image for p in group], args.seed,
                              arrays=read_input_arrays(meta, args.inputs))
        results = []
        for s in samples:
            outs = art.run(s.arrays)
            entry = {"input": s.name}
            if is_classification(outs):
                scores = outs[0].reshape(-1)
                entry["top5"] = [{"class": i, "score": scores[i].item(),
                                  "label": labels[i] if labels and i < len(labels) else None}
                                 for i in top_k(scores.astype("float64"))]
            else:
                entry["outputs"] = [{"shape": list(o.shape), "dtype": str(o.dtype)} for o in outs]
            results.append(entry)
        result = {"build": str(lib), "model": meta.model, "target": meta.target, "results": results}
        if args.repeat:
            result["latency_ms"] = latency_stats(art.benchmark(samples[0].arrays, repeat=args.repeat))
        if args.compare_tflite:
            result["comparison"] = compare_tflite(art, args, samples[0].arrays, console)
        if args.json:
            print(json.dumps(result, indent=2))
            return 0
        table = Table(title=f"{meta.model} on {meta.target} ({lib})", title_justify="left")
        table.add_column("input")
        table.add_column("top-5")
        for r in results:
            text = ", ".join(f"{e['class']}{' ' + e['label'] if e['label'] else ''} ({e['score']:.4g})"
                             for e in r.get("top5", []))
            table.add_row(r["input"], text or json.dumps(r.get("outputs")))
        Console().print(table)
        if "latency_ms" in result:
            s = result["latency_ms"]
            Console().print(f"latency: median {s['median']:.3f} ms, mean {s['mean']:.3f} ms over {s['runs']} runs")
        if "comparison" in result:
            c = result["comparison"]
            for engine in ("tvm", "tflite"):
                e = c[engine]
                Console().print(f"{engine}: median of {e['blocks']} block medians {e['median']:.3f} ms "
                                f"(95% CI {e['ci95'][0]:.3f}-{e['ci95'][1]:.3f}), {e['runs']} runs", highlight=False)
            Console().print(c["summary"], highlight=False)
        return 0

    exit_with(run_command("tvmq-run", body, console))


def compare_tflite(art, args: argparse.Namespace, arrays: list, console: Console) -> dict:
    """``--compare-tflite``: the build against TFLite on ``args.compare_tflite``, in alternating
    blocks (:func:`tvmq.stages.measure.compare_engines`); the comparison's JSON and its verdict line."""
    from rich.markup import escape

    from tvmq.model import Reference
    from tvmq.options import MeasurementOptions, SourceOptions
    from tvmq.redact import redact_text
    from tvmq.report.render import comparison_line
    from tvmq.stages import Steps, load
    from tvmq.stages.measure import BlockPlan, compare_engines, same_inputs

    meta, shown = art.metadata, redact_text(args.compare_tflite)
    model, info = load(SourceOptions(args.compare_tflite), Steps.quiet())
    same_inputs(meta.inputs, info.inputs, str(art.path), shown)
    if info.sha256 != meta.model_sha256:
        console.print(f"[yellow]tvmq-run: warning:[/] {escape(shown)} is not the model {escape(meta.model)} this "
                      "build was made from (another sha256): timing it anyway", highlight=False, soft_wrap=True)
    threads = args.threads or meta.threads
    content = None
    wanted = [t.name for t in meta.outputs]
    if meta.partition is not None and wanted != [t.name for t in info.outputs]:
        from tvmq.model.cut import cut

        content = cut(model.content, wanted)  # a build whose last part runs nowhere: what it computes
    reference = Reference(model, num_threads=threads, content=content)
    plan = BlockPlan.for_options(MeasurementOptions(bench_seconds=args.bench_seconds, bench_blocks=args.bench_blocks,
                                                    repeat=1))
    with Steps(console).step("benchmark", f"time the build and {reference.interpreter} in alternating blocks "
                                          f"({threads} threads)"):
        latencies = compare_engines(art.runnable.timed_call(arrays), reference.timed_call(arrays), plan, threads)
    return {**latencies.to_dict(), "reference": reference.name, "summary": comparison_line(latencies)}


if __name__ == "__main__":
    main()
