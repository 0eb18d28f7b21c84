#!/usr/bin/env python3
"""Exactness over real models: every tensor of each build against the TFLite kernels it promises.

For every ``.tflite`` model in the models folder (``$TVMQ_MODELS_DIR`` or ``../shared/models``) it
makes the variants a user could run:

* ``whole``: the model itself, when TVM's frontend takes every operator;
* ``before softmax``: a classifier cut before its SOFTMAX (the logits hide nothing that the
  softmax could round away);
* ``region``: for a model with operators TVM cannot import yet, the part of it that does not
  depend on them (:func:`tvmq.model.cut.supported_region`).

Each variant is built three ways, untuned, for this host (the schedules do not change integers):
``--int8 --requant tflite`` compared with LiteRT's reference kernels (``BUILTIN_REF``),
``--int8 --requant xnnpack`` compared with LiteRT as it ships (XNNPACK), and the QDQ float graph
compared with XNNPACK. Every operator's output is a graph output (``--explain-mismatch``'s
machinery, :func:`tvmq.stages.explain`), so the table gives, per row, the largest difference on
the variant's own outputs, the largest on any tensor, the share of identical output values, and
the first tensor that differs.

    python scripts/exactness.py [--models DIR] [--only NAME_PART] [--json out.json]

Exit status 1 when an exact mode (the two --int8 rows) differs anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODES = (("tflite", True, "tflite"), ("xnnpack", True, "xnnpack"), ("qdq", False, "tflite"))
IMAGES = {"deeplab": "bird_segmentation.bmp", "mobilenet": "cat.bmp", "bodypix": "grace_hopper.bmp"}


def variants(path: Path, info, content: bytes):
    """``(variant name, flatbuffer bytes)`` of one model."""
    from tvmq.model.cut import cut, read_graph

    out = []
    bad = {u.split(" (")[0] for u in info.unsupported_operators}
    graph = read_graph(content)
    ops = graph.operators
    if not bad:
        out.append(("whole", content))
    softmax = [op for op in ops if op.name == "SOFTMAX"]
    if len(softmax) == 1 and not bad:
        out.append(("before softmax", cut(content, [softmax[0].inputs[0]])))
    if bad:
        region = graph.supported_region(bad)
        computed = {t for op in ops for t in op.outputs}
        if region and set(region) <= computed:
            out.append((f"region before {', '.join(sorted(bad))}", cut(content, region)))
    return out


def image_for(name: str, models: Path) -> list[str]:
    for key, image in IMAGES.items():
        if key in name and (models / image).exists():
            return [str(models / image)]
    return []


def run_variant(path: Path, variant: str, content: bytes, models: Path, threads: int):
    from tvmq.model import inspect_model, load_model, make_inputs
    from tvmq.model.cut import read_graph
    from tvmq.options import CodegenOptions
    from tvmq.report.verify import verification_policy
    from tvmq.stages import Inputs, Steps, explain, prepare
    from tvmq.targets import resolve_target

    profile, _ = resolve_target("native")
    target = profile.tvm_target(num_cores=threads)
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / path.name
        file.write_bytes(content)
        model = load_model(file)
        info = inspect_model(model)
        images = image_for(path.stem, models) if len(info.inputs) == 1 else []
        feed = Inputs(make_inputs(info, images), None, [t.name for t in info.outputs])
        mine = set(read_graph(content).outputs)
        rows = []
        for mode, int8, requant in MODES:
            policy = verification_policy(int8, requant, None)
            prepared = prepare(model, info, profile, CodegenOptions(int8=int8, requant=requant), Steps.quiet())
            mismatch = explain(prepared, target, None, "naive", threads, feed, policy, Steps.quiet())
            outs = [t for t in mismatch.tensors if t.tensor in mine]
            first = mismatch.first
            rows.append({
                "model": path.name, "variant": variant, "mode": mode, "reference": mismatch.reference,
                "input": feed.samples[0].name.rsplit("/", 1)[-1], "tensors": len(mismatch.tensors),
                "outputs_max_diff": max((t.max_abs_diff for t in outs), default=0.0),
                "outputs_identical": min((t.identical_share for t in outs), default=1.0),
                "tensors_max_diff": max((t.max_abs_diff for t in mismatch.tensors), default=0.0),
                "tensors_differing": sum(t.max_abs_diff != 0 for t in mismatch.tensors),
                "first_differing": None if first is None else f"{first.tensor} {first.operator}",
                "exact_mode": int8, "ok": (first is None) if int8 else all(t.agrees for t in outs),
            })
            print(_row_text(rows[-1]), flush=True)
    return rows


HEADER = (f"{'model':44s} {'variant':28s} {'mode':8s} {'reference':24s} {'out max':>7s} {'out same':>8s} "
          f"{'any max':>7s} {'differ':>9s}  first differing")


def _row_text(r: dict) -> str:
    ref = "BUILTIN_REF" if "BUILTIN_REF" in r["reference"] else "XNNPACK (AUTO)"
    return (f"{r['model'][:44]:44s} {r['variant'][:28]:28s} {r['mode']:8s} {ref:24s} {r['outputs_max_diff']:7g} "
            f"{r['outputs_identical'] * 100:7.2f}% {r['tensors_max_diff']:7g} "
            f"{r['tensors_differing']:4d}/{r['tensors']:<4d}  {r['first_differing'] or '-'}")


def main(argv=None) -> int:
    default = Path(os.environ.get("TVMQ_MODELS_DIR") or Path(__file__).resolve().parents[1].parent / "shared" / "models")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=default, help=f"models folder (default: {default})")
    p.add_argument("--only", help="only models whose file name contains this")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    if not args.models.is_dir():
        print(f"no models folder at {args.models}", file=sys.stderr)
        return 2
    from tvmq.model import inspect_model, load_model
    from tvmq.targets import host_info

    host = host_info()
    print(f"host: {host.model_name}, {host.logical_cores} logical cores; every tensor compared, untuned builds")
    print(HEADER)
    rows = []
    for path in sorted(args.models.glob("*.tflite")):
        if args.only and args.only not in path.name:
            continue
        model = load_model(path)
        info = inspect_model(model)
        found = variants(path, info, model.content)
        if not found:
            print(f"{path.name[:44]:44s} nothing TVM can import: {', '.join(info.unsupported_operators)}")
        for variant, content in found:
            rows += run_variant(path, variant, content, args.models, args.threads)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    bad = [r for r in rows if r["exact_mode"] and not r["ok"]]
    print(f"{len(rows)} rows; exact modes differing anywhere: {len(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
