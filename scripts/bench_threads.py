"""Multi-core scaling: tvmq libraries against TFLite at 1, 2, 4, ... threads, interleaved, on the
machine that will serve the model.

It needs only TVM's *runtime* (``TVM_USE_RUNTIME_LIB=1`` or a machine without the compiler
library), LiteRT (or TensorFlow), numpy, Pillow and tvmq's pure-Python verification rule: no
compiler and no model tooling, so it runs on a deployment box that only has the exported
``model.so`` files and the ``.tflite`` model.

For every thread count it resizes TVM's thread pool, builds a TFLite interpreter (XNNPACK) with
the same thread count, and alternates ``--blocks`` blocks of ``--runs`` invocations of each engine
on the same input. It prints each engine's median of block medians, its ratio to TFLite at that
thread count and its speed-up over its own time at the first thread count. Before timing it
checks that every library computes what TFLite computes: the largest difference in quantized
units over ``--check`` random inputs and the ``--image`` photos, and whether each photo's top-5
agrees (``tvmq-tune``'s rule: tied scores interchangeable on either side).

    python scripts/bench_threads.py MODEL.tflite OUT_A [OUT_B ...] --threads 1 2 4 8 --json r.json

A library is a ``tvmq-tune --out`` folder (or its ``model.so``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_interleaved import _block  # noqa: E402 - the sibling script; it imports tvmq only in main()


def _interpreter(model: str, threads: int):
    try:
        from ai_edge_litert import interpreter as litert
    except ImportError:  # pragma: no cover - TensorFlow's copy of the same interpreter
        import tensorflow as tf

        litert = tf.lite
    interp = litert.Interpreter(model_path=model, num_threads=threads)
    interp.allocate_tensors()
    return interp


def cpu_summary() -> dict:
    """Model name, logical CPUs and the int8-relevant ISA flags of this machine (Linux)."""
    info = {"machine": platform.machine(), "cpus": os.cpu_count(), "model": "", "flags": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not info["model"]:
            info["model"] = value.strip()
        if key.strip() == "flags":
            wanted = {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8"}
            info["flags"] = sorted(wanted & set(value.split()))
            break
    return info


def image_input(path: str, shape, dtype) -> np.ndarray:
    """A photo resized to the model's input, in its integer dtype (int8 models: shifted by 128)."""
    from PIL import Image

    _, h, w, _ = shape
    pixels = np.asarray(Image.open(path).convert("RGB").resize((w, h), Image.BILINEAR), dtype=np.int16)
    if np.dtype(dtype) == np.int8:
        pixels = pixels - 128
    return pixels.astype(dtype)[None]


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

    import tvm
    from tvm.runtime.vm import VirtualMachine

    from tvmq.report.verify import rankings_agree  # pure Python: the rule tvmq-tune verifies with

    cpu = cpu_summary()
    print(f"cpu: {cpu['model']} ({cpu['cpus']} logical), flags: {' '.join(cpu['flags'])}", flush=True)

    ref = _interpreter(args.model, args.threads[0])
    (inp,) = ref.get_input_details()
    (outd,) = ref.get_output_details()
    rng = np.random.default_rng(0)
    info = np.iinfo(inp["dtype"]) if np.issubdtype(inp["dtype"], np.integer) else None

    def sample():
        if info is not None:
            return rng.integers(info.min, info.max + 1, size=inp["shape"], dtype=inp["dtype"])
        return rng.uniform(-1, 1, size=inp["shape"]).astype(inp["dtype"])

    libs = {}
    for lib in args.libraries:
        path = Path(lib)
        so = path / "model.so" if path.is_dir() else path
        vm = VirtualMachine(tvm.runtime.load_module(str(so)), tvm.cpu())
        libs[str(lib)] = vm

    def run_ref(x):
        ref.set_tensor(inp["index"], x)
        ref.invoke()
        return ref.get_tensor(outd["index"])

    def run_lib(vm, x):
        out = vm["main"](tvm.runtime.tensor(x))
        out = out[0] if isinstance(out, (list, tuple)) or type(out).__name__ == "Array" else out
        return out.numpy()

    randoms = [sample() for _ in range(args.check)]
    photos = [image_input(p, inp["shape"], inp["dtype"]) for p in args.image]
    checks = {name: {"max_diff": 0, "photos": len(photos), "photos_top5_same": 0, "random_inputs": len(randoms)}
              for name in libs}
    for i, x in enumerate(randoms + photos):
        want = run_ref(x).astype(np.int64)
        for name, vm in libs.items():
            got = run_lib(vm, x).astype(np.int64).reshape(want.shape)
            checks[name]["max_diff"] = max(checks[name]["max_diff"], int(np.abs(got - want).max()))
            if i >= len(randoms):  # random inputs give near-tied scores: their top-5 says little
                checks[name]["photos_top5_same"] += int(rankings_agree(got.reshape(-1), want.reshape(-1)))
    for name, c in checks.items():
        print(f"check {name}: max diff {c['max_diff']} units over {c['random_inputs']} random inputs and "
              f"{c['photos']} photos; top-5 same on {c['photos_top5_same']}/{c['photos']} photos", flush=True)

    x = sample()
    rows = []
    for threads in args.threads:
        tvm.get_global_func("runtime.config_threadpool")(0, int(threads))
        interp = _interpreter(args.model, threads)
        interp.set_tensor(inp["index"], x)
        engines = {"TFLite (XNNPACK)": interp.invoke}
        for name, vm in libs.items():
            tx = tvm.runtime.tensor(x)
            engines[name] = lambda vm=vm, tx=tx: vm["main"](tx)
        for fn in engines.values():
            _block(fn, 5)
        blocks = {name: [] for name in engines}
        for _ in range(args.blocks):
            for name, fn in engines.items():
                blocks[name].append(_block(fn, args.runs))
        for name, b in blocks.items():
            rows.append({"threads": threads, "engine": name, "ms": statistics.median(b),
                         "min_block": min(b), "max_block": max(b)})
        line = "  ".join(f"{r['engine'].split('/')[-1] or r['engine']}={r['ms']:.2f}" for r in rows[-len(engines):])
        print(f"threads {threads}: {line}", flush=True)

    base = {(r["threads"]): r["ms"] for r in rows if r["engine"].startswith("TFLite")}
    single = {}
    for r in rows:
        single.setdefault(r["engine"], r["ms"])
        r["ratio_to_tflite"] = r["ms"] / base[r["threads"]]
        r["speedup"] = single[r["engine"]] / r["ms"]
    print(f"\n{Path(args.model).name}: median of {args.blocks} interleaved blocks of {args.runs} runs (ms)")
    print(f"{'threads':>7}  {'engine':<48} {'ms':>8} {'ratio':>6} {'speedup':>7}")
    for r in rows:
        print(f"{r['threads']:>7}  {r['engine'][-48:]:<48} {r['ms']:>8.3f} {r['ratio_to_tflite']:>6.3f} "
              f"{r['speedup']:>7.2f}")
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu, "model": args.model, "checks": checks, "rows": rows},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
