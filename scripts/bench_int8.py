#!/usr/bin/env python3
"""Integer path vs QDQ float path vs TFLite, measured side by side in one run.

For each model (default: mobilenet_v2_1.0_224_quant and tf2_mobilenet_v2_1.0_224_ptq from
``../shared/models`` or ``$TVMQ_MODELS_DIR``), through tvmq's own pipeline, same target (the host's
profile) and thread count for every engine:

1. the QDQ float path and the integer path (``--int8``, the profile's dot-product scheme), each
   tuned with ``--trials`` into one database (``--trials 0``: build from what it holds), then
   benchmarked untuned and tuned next to TFLite (LiteRT with XNNPACK) in the same process, and
   verified against TFLite on the images (top-5, identical output values);
2. the integer build's outputs against TFLite's reference kernels (``BUILTIN_REF``): tvmq's
   ``mode="tflite"`` numerics are bit-exact with them, XNNPACK rounds differently;
3. the exported library size, and the peak resident memory of inference: a fresh process per
   engine, RSS after its imports and peak RSS over the inferences;
4. the per-task latency of the tuned integer build: where the time goes;
5. disassembly: the dot-product instructions in this host's tuned integer library, and in a
   ``--target cascadelake --int8 --build-only`` library.

    python scripts/bench_int8.py --trials 800 [--models mobilenet_v2_1.0_224_quant] [--db bench.db]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODELS = Path(os.environ.get("TVMQ_MODELS_DIR", Path(__file__).resolve().parents[2] / "shared" / "models"))
DEFAULT_MODELS = ["mobilenet_v2_1.0_224_quant", "tf2_mobilenet_v2_1.0_224_ptq"]
INSTRUCTIONS = ("vpmaddubsw", "vpmaddwd", "vpdpbusd")


def run_pipeline(console, **kw) -> dict:
    """One ``tvmq-tune`` run from its flat option names; its report as the JSON dict."""
    from tvmq import pipeline
    from tvmq.options import RunOptions

    return pipeline.run(RunOptions.from_mapping(kw), console).to_dict()


# ------------------------------------------------------------------------------ peak RSS
def _proc_status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def rss_child(kind: str, path: str, runs: int) -> None:
    """In a fresh process: RSS after the imports, then peak RSS over loading the model and
    ``runs`` inferences. The peak is reset after the imports (``/proc/self/clear_refs``), or an
    import that briefly needed more memory than the model would hide the model's share."""
    import numpy as np

    if kind == "tflite":
        from ai_edge_litert.interpreter import Interpreter
    else:
        import tvm  # noqa: F401

        from tvmq.tuner import artifact
    import gc

    gc.collect()
    after_imports = _proc_status_mb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:  # Linux: VmHWM := VmRSS
        f.write("5")
    if kind == "tflite":
        it = Interpreter(model_path=path, num_threads=int(os.environ.get("TVM_NUM_THREADS", "2")))
        it.allocate_tensors()
        d = it.get_input_details()[0]
        it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
        for _ in range(runs):
            it.invoke()
    else:
        art = artifact.load(path)
        inputs = [np.zeros(t.shape, t.dtype) for t in art.metadata.inputs]
        for _ in range(runs):
            art.run(inputs)
    print(json.dumps({"after_imports_mb": after_imports, "peak_mb": _proc_status_mb("VmHWM")}))


def peak_rss(kind: str, path: Path, threads: int, runs: int = 20) -> dict:
    env = dict(os.environ, TVM_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--rss-child", kind, str(path), str(runs)], env=env,
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["inference_mb"] = r["peak_mb"] - r["after_imports_mb"]
    return r


# ------------------------------------------------------------------------------ outputs
def reference_agreement(model: Path, lib_dir: Path, images: list[str], threads: int) -> dict:
    """Integer build vs TFLite's reference kernels and its default (XNNPACK): identical share
    and largest difference of the output, over the images."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tvmq.model import inspect_model, load_model, make_inputs
    from tvmq.tuner import artifact

    loaded = load_model(str(model))
    samples = make_inputs(inspect_model(loaded), images)
    art = artifact.load(lib_dir)
    out = {}
    for name, kind in (("reference kernels", OpResolverType.BUILTIN_REF), ("XNNPACK", OpResolverType.AUTO)):
        it = Interpreter(model_content=loaded.content, num_threads=threads, experimental_op_resolver_type=kind)
        it.allocate_tensors()
        same, diff = [], 0
        for s in samples:
            for d, a in zip(it.get_input_details(), s.arrays):
                it.set_tensor(d["index"], a)
            it.invoke()
            ref = it.get_tensor(it.get_output_details()[0]["index"]).astype(np.int64)
            ours = art.run(s.arrays)[0].astype(np.int64)
            same.append(float((ours == ref).mean()))
            diff = max(diff, int(np.abs(ours - ref).max()))
        out[name] = {"identical_share": min(same), "max_abs_diff": diff}
    return out


def disassembly_counts(lib: Path) -> dict:
    objdump = shutil.which("objdump")
    if objdump is None:
        return {"note": "objdump not installed"}
    asm = subprocess.run([objdump, "-d", str(lib)], capture_output=True, text=True, check=True).stdout
    return {ins: len(re.findall(rf"\b{ins}\b", asm)) for ins in INSTRUCTIONS}


# ------------------------------------------------------------------------------ main
def main() -> int:
    from tvmq.int8.requant import MODES

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="model names in the models folder")
    ap.add_argument("--images", nargs="+", default=[str(MODELS / n) for n in ("cat.bmp", "grace_hopper.bmp",
                                                                               "parrot.jpg")])
    ap.add_argument("--labels", default=str(MODELS / "imagenet_labels.txt"))
    ap.add_argument("--trials", type=int, default=800, help="trials per path and model (0: database only)")
    ap.add_argument("--target", default="native")
    ap.add_argument("--requant", choices=MODES, default="tflite",
                    help="the integer path's requantization (tvmq-tune --requant)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--db", help="tuning database (default: a fresh one in a temporary folder)")
    ap.add_argument("--out", default="tvmq_out/bench_int8")
    ap.add_argument("--json", help="also write the summary here")
    ap.add_argument("--rss-child", nargs=3, metavar=("KIND", "PATH", "RUNS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], int(args.rss_child[2]))
        return 0

    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    out_console = Console() if sys.stdout.isatty() else Console(width=160)  # tables whole in a log file
    db = args.db or str(Path(tempfile.mkdtemp(prefix="tvmq-bench-int8-")) / "tune.db")
    out = Path(args.out)
    summary: dict = {"db": db, "trials": args.trials, "models": {}}
    for name in args.models:
        model = MODELS / f"{name}.tflite"
        if not model.is_file():
            console.print(f"[red]{model} not found[/] (set TVMQ_MODELS_DIR)")
            return 2
        runs = {}
        for path, int8 in (("qdq", False), ("int8", True)):
            runs[path] = run_pipeline(console, model=str(model), target=args.target, images=args.images,
                                      labels=args.labels, trials=args.trials, db=db, repeat=args.repeat,
                                      threads=args.threads, int8=int8, out_dir=out / f"{name}-{path}",
                                      **({"requant": args.requant} if int8 else {}))
        threads = runs["int8"]["target"]["threads"]
        entry: dict = {"threads": threads, "target": runs["int8"]["target"]["name"]}
        for path, r in runs.items():
            lat = r["latency_ms"]
            entry[path] = {
                "untuned_ms": lat.get("tvm_untuned", {}).get("median"),
                "tuned_ms": lat["tvm"]["median"],
                "tflite_ms": lat["tflite"]["median"],
                "ratio_tvm_over_tflite": lat["ratio_tvm_over_tflite"],
                "library_mb": r["artifact"]["bytes"] / 1e6,
                "verdict": r["verdict"],
                "top5_match": all(i.get("top5_match") for i in r["images"]),
                "identical_share_vs_tflite": min(o["identical_share"] for i in r["images"] for o in i["outputs"]),
                "tuning_trials": r.get("tuning", {}).get("trials"),
                "peak_rss": peak_rss("tvm", Path(r["artifact"]["path"]).parent, threads),
            }
        entry["int8"]["intrinsics"] = runs["int8"]["transforms"].get("int8_intrinsics")
        entry["int8"]["agreement"] = reference_agreement(model, Path(runs["int8"]["artifact"]["path"]).parent,
                                                         args.images, threads)
        entry["tflite_peak_rss"] = peak_rss("tflite", model, threads)
        entry["int8"]["disassembly"] = disassembly_counts(Path(runs["int8"]["artifact"]["path"]))
        tasks = runs["int8"].get("tuning", {}).get("tasks", [])
        total = sum((t["tuned_ms"] or t["db_best_ms"] or t["untuned_ms"] or 0) * t["weight"] for t in tasks) or 1.0
        entry["int8"]["tasks"] = sorted(
            ({"task": t["name"], "weight": t["weight"], "mflop": t["flops"] / 1e6,
              "ms_each": t["tuned_ms"] or t["db_best_ms"] or t["untuned_ms"],
              "share": (t["tuned_ms"] or t["db_best_ms"] or t["untuned_ms"] or 0) * t["weight"] / total,
              "trials": t["trials"]} for t in tasks), key=lambda t: -t["share"])
        summary["models"][name] = entry

        table = Table(title=f"{name}: {threads} threads on {entry['target']} (medians, ms)", title_justify="left")
        for col in ("path", "untuned", "tuned", "TFLite", "tuned/untuned", "tvmq/TFLite", ".so MB",
                    "inference RSS MB", "top-5 = TFLite", "identical values"):
            table.add_column(col, justify="right")
        for path in ("qdq", "int8"):
            e = entry[path]
            unt = e["untuned_ms"]
            table.add_row(path, f"{unt:.1f}" if unt else "-", f"{e['tuned_ms']:.2f}", f"{e['tflite_ms']:.2f}",
                          f"{e['tuned_ms'] / unt:.3f}" if unt else "-", f"{e['ratio_tvm_over_tflite']:.2f}",
                          f"{e['library_mb']:.2f}", f"{e['peak_rss']['inference_mb']:.0f}",
                          "yes" if e["top5_match"] else "NO", f"{e['identical_share_vs_tflite']:.4f}")
        tfl = entry["tflite_peak_rss"]
        table.add_row("TFLite", "", "", "", "", "", f"{model.stat().st_size / 1e6:.2f}", f"{tfl['inference_mb']:.0f}",
                      "", "")
        out_console.print(table)
        q, i = entry["qdq"], entry["int8"]
        if q["untuned_ms"] and i["untuned_ms"]:
            out_console.print(f"int8 / QDQ: untuned {i['untuned_ms'] / q['untuned_ms']:.3f}, "
                            f"tuned {i['tuned_ms'] / q['tuned_ms']:.3f}, library {i['library_mb'] / q['library_mb']:.3f}, "
                            f"inference RSS {i['peak_rss']['inference_mb'] / max(q['peak_rss']['inference_mb'], 1):.3f}")
        out_console.print(f"int8 intrinsics: {i['intrinsics']}")
        out_console.print(f"int8 vs TFLite: {i['agreement']}")
        out_console.print(f"int8 library instructions: {i['disassembly']}")
        tt = Table(title=f"{name} int8: where the tuned time goes", title_justify="left")
        for col in ("task", "weight", "MFLOP", "ms each", "share", "trials"):
            tt.add_column(col, justify="right")
        for t in entry["int8"]["tasks"][:15]:
            tt.add_row(t["task"], str(t["weight"]), f"{t['mflop']:.1f}",
                       f"{t['ms_each']:.4f}" if t["ms_each"] else "-", f"{t['share']:.1%}", str(t["trials"]))
        out_console.print(tt)

    clx = run_pipeline(console, model=str(MODELS / f"{args.models[0]}.tflite"), target="cascadelake", int8=True,
                       requant=args.requant,
                       build_only=True, db=db, out_dir=out / "cascadelake-int8-build-only")
    summary["cascadelake_build_only"] = {"intrinsics": clx["transforms"].get("int8_intrinsics"),
                                         "disassembly": disassembly_counts(Path(clx["artifact"]["path"]))}
    out_console.print(f"cascadelake --int8 --build-only: {summary['cascadelake_build_only']}")
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
