#!/usr/bin/env python
"""Untuned latency of the QDQ float path vs the integer (int8) path vs TFLite, side by side.

    python scripts/bench_int8.py [MODEL.tflite] [--threads 2] [--mode tflite|xnnpack] [--number 5 --repeat 3]

Both TVM paths are compiled with the same target (llvm -mcpu=znver3, num-cores=threads) and the
Relax "zero" pipeline, no tuning; TFLite runs with the same thread count, with its default
XNNPACK delegate and with its builtin kernels.  Also reports the exported .so size of each path,
the int8 lowering coverage, and agreement of the outputs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mobilenet_v2_1.0_224_quant.tflite"


def _tflite_logits(interp):
    """The input of the last SOFTMAX (needs ``experimental_preserve_all_tensors``), or None."""
    idx = None
    for op in interp._get_ops_details():
        if op["op_name"] == "SOFTMAX":
            idx = int(op["inputs"][0])
    return None if idx is None else interp.get_tensor(idx)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", nargs="?", default=str(DEFAULT))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", default="tflite", choices=["tflite", "xnnpack"])
    ap.add_argument("--number", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import tflite
    import tvm
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    from tvm import relax
    from tvm.relax.frontend.tflite import from_tflite

    from tvmq.int8 import lower_qdq_to_int8, lowering_stats
    from tvmq.int8.util import return_pre_softmax

    buf = Path(args.model).read_bytes()
    it = Interpreter(model_content=buf)
    d = it.get_input_details()[0]
    rng = np.random.default_rng(0)
    info = np.iinfo(d["dtype"])
    x = rng.integers(info.min, info.max + 1, size=d["shape"]).astype(d["dtype"])

    mod = from_tflite(tflite.Model.GetRootAsModel(buf, 0))
    t0 = time.time()
    low = lower_qdq_to_int8(mod, mode=args.mode)
    print(f"model: {args.model}")
    print(f"int8 lowering ({args.mode}): {time.time() - t0:.1f}s, coverage: {lowering_stats(low)}")

    target = tvm.target.Target({"kind": "llvm", "mcpu": "znver3", "num-cores": args.threads})
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    res = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench_int8_"))
    def with_logits(m):
        try:
            return return_pre_softmax(m, new_name="logits")
        except ValueError:
            return m

    for name, m in (("qdq", mod), ("int8", low)):
        m = with_logits(m)
        t0 = time.time()
        with target:
            m2 = relax.get_pipeline("zero")(m)
        ex = tvm.compile(m2, target=target)
        ct = time.time() - t0
        so = tmp / f"{name}.so"
        ex.export_library(str(so))
        vm = relax.VirtualMachine(ex, tvm.cpu())
        out = vm["main"](tvm.runtime.tensor(x)).numpy()
        logits = vm["logits"](tvm.runtime.tensor(x)).numpy() if "logits" in [g.name_hint for g, _ in m.functions_items()] else None
        tm = vm.time_evaluator("main", tvm.cpu(), number=args.number, repeat=args.repeat)(tvm.runtime.tensor(x))
        res[name] = dict(ms=tm.median * 1e3, so=so.stat().st_size, compile=ct, out=out, logits=logits)
        print(f"  {name:5s} compiled in {ct:.0f}s: median {tm.median * 1e3:.2f} ms, .so {so.stat().st_size / 1e6:.2f} MB")

    for kname, kind in (("tflite_xnnpack", OpResolverType.AUTO), ("tflite_builtin", OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)):
        t = Interpreter(model_content=buf, num_threads=args.threads, experimental_op_resolver_type=kind,
                        experimental_preserve_all_tensors=True)
        t.allocate_tensors()
        t.set_tensor(t.get_input_details()[0]["index"], x)
        t.invoke()
        ts = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            for _ in range(args.number):
                t.invoke()
            ts.append((time.perf_counter() - t0) / args.number)
        out = t.get_tensor(t.get_output_details()[0]["index"])
        res[kname] = dict(ms=float(np.median(ts)) * 1e3, out=out, logits=_tflite_logits(t))
        print(f"  {kname:15s}: median {res[kname]['ms']:.2f} ms")

    t = Interpreter(model_content=buf, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                    experimental_preserve_all_tensors=True)
    t.allocate_tensors()
    t.set_tensor(t.get_input_details()[0]["index"], x)
    t.invoke()
    res["tflite_reference"] = dict(out=t.get_tensor(t.get_output_details()[0]["index"]), logits=_tflite_logits(t))

    q, i = res["qdq"], res["int8"]
    print("\nsummary (untuned, %d threads):" % args.threads)
    print(f"  QDQ float path  {q['ms']:9.2f} ms   .so {q['so'] / 1e6:6.2f} MB")
    print(f"  integer path    {i['ms']:9.2f} ms   .so {i['so'] / 1e6:6.2f} MB")
    print(f"  TFLite XNNPACK  {res['tflite_xnnpack']['ms']:9.2f} ms")
    print(f"  TFLite builtin  {res['tflite_builtin']['ms']:9.2f} ms")
    print(f"  speedup int8 vs QDQ: {q['ms'] / i['ms']:.2f}x;  int8 / TFLite-XNNPACK: {i['ms'] / res['tflite_xnnpack']['ms']:.2f}x;"
          f"  .so size int8/QDQ: {i['so'] / q['so']:.2f}")
    for ref in ("tflite_reference", "tflite_builtin", "tflite_xnnpack"):
        for name in ("qdq", "int8"):
            dd = np.abs(res[name]["out"].astype(np.int64) - res[ref]["out"].astype(np.int64))
            msg = f"  {name} vs {ref}: output identical {float((dd == 0).mean()):.4f}, max abs diff {int(dd.max())}"
            la, lb = res[name].get("logits"), res[ref].get("logits")
            if la is not None and lb is not None:
                dl = np.abs(la.astype(np.int64).reshape(-1) - lb.astype(np.int64).reshape(-1))
                msg += f";  logits (softmax input) identical {float((dl == 0).mean()):.4f}, max abs diff {int(dl.max())}"
            print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
