#!/usr/bin/env python
"""Untuned latency of each x86 layout/strategy choice, side by side, in one run.

    python scripts/bench_layouts.py [MODEL.tflite] [--target znver3] [--number 3] [--repeat 5]

For each choice (NHWC as imported, NCHW, NCHW8c, NCHW16c, NHWC + winograd) the model is
imported, transformed with :func:`tvmq.tuner.layout.apply_profile_transforms`, compiled with
the "zero" pipeline for the target profile, checked against the NHWC output, and timed with the
Relax VM time evaluator. Choices whose code this host cannot run are skipped with the reason.
No tuning happens: these are the layouts' untuned costs, which is what the profile's default
must not make worse.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "mobilenet_v2_1.0_224_quant.tflite"
CHOICES = [("NHWC", False), ("NCHW", False), ("NCHW8c", False), ("NCHW16c", False), ("NHWC", True)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=str(DEFAULT_MODEL))
    ap.add_argument("--target", default="native", help="target profile (default: native)")
    ap.add_argument("--num-cores", type=int, default=None)
    ap.add_argument("--number", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", nargs="*", default=None, help="labels to run, e.g. NHWC NCHW8c")
    args = ap.parse_args(argv)

    import numpy as np
    import tflite
    import tvm
    from rich.console import Console
    from rich.table import Table
    from tvm import relax
    from tvm.relax.frontend.tflite import from_tflite

    from tvmq.errors import TvmqError
    from tvmq.targets import resolve_target
    from tvmq.tuner.layout import LayoutChoice, apply_profile_transforms, conv_summary

    console = Console()
    try:
        profile, reason = resolve_target(args.target, args.num_cores)
        profile.check_runnable()
    except TvmqError as e:
        console.print(f"[red]error:[/red] {e}")
        return e.exit_code
    path = Path(args.model)
    if not path.is_file():
        console.print(f"[red]error:[/red] model {path} not found")
        return 2
    console.print(f"target: {reason}")
    target = profile.tvm_target()
    buf = path.read_bytes()
    mod0 = from_tflite(tflite.Model.GetRootAsModel(buf, 0))
    params = mod0["main"].params
    shape = [int(d) for d in params[0].ty.shape.values]
    dtype = str(params[0].ty.dtype)
    rng = np.random.default_rng(0)
    if dtype.startswith(("uint", "int")):
        info = np.iinfo(dtype)
        x = rng.integers(info.min, info.max + 1, size=shape, dtype=dtype)
    else:
        x = rng.random(shape, dtype=np.float32).astype(dtype)

    built = []
    ref = None
    for lay, wino in CHOICES:
        choice = LayoutChoice(lay, wino)
        if args.only and choice.label not in args.only and lay not in args.only:
            continue
        t0 = time.perf_counter()
        mod = apply_profile_transforms(mod0, profile, layout=lay, winograd=wino)
        summary = conv_summary(mod)
        with target:
            mod = relax.get_pipeline("zero")(mod)
        ex = tvm.compile(mod, target=target)
        build_s = time.perf_counter() - t0
        vm = relax.VirtualMachine(ex, tvm.cpu())
        inp = tvm.runtime.tensor(x)
        out = vm["main"](inp).numpy()
        if ref is None:
            ref = out
        diff = int(np.abs(out.astype(np.int64) - ref.astype(np.int64)).max())
        timer = vm.time_evaluator("main", tvm.cpu(), number=args.number, repeat=1)
        built.append((choice.label, summary, build_s, diff, timer, inp))
        console.print(f"  built {choice.label:<18} in {build_s:.0f} s, max |diff| vs NHWC {diff}")

    # Round-robin: one repeat of every choice per round, so that load from other processes on
    # a shared machine hits all choices alike instead of whichever ran during a busy minute.
    samples: dict[str, list[float]] = {b[0]: [] for b in built}
    for _ in range(args.repeat):
        for label, _s, _b, _d, timer, inp in built:
            samples[label].append(timer(inp).mean * 1e3)
    rows = [(label, summary, build_s, float(np.median(samples[label])), float(np.std(samples[label])), diff)
            for label, summary, build_s, diff, _t, _i in built]

    base = next((r[3] for r in rows if r[0] == "NHWC"), rows[0][3] if rows else 1.0)
    table = Table(title=f"{path.name}, untuned, {profile.name} ({profile.mcpu}), "
                        f"number={args.number} x {args.repeat} round-robin rounds")
    for col in ("layout / strategy", "convs", "median ms", "std ms", "ratio to NHWC", "max |diff|", "build s"):
        table.add_column(col, justify="left" if col in ("layout / strategy", "convs") else "right")
    for label, summary, build_s, med, std, diff in rows:
        convs = ", ".join(f"{k}:{v}" for k, v in sorted(summary.items()))
        table.add_row(label, convs, f"{med:.2f}", f"{std:.2f}", f"{med / base:.2f}x", str(diff), f"{build_s:.0f}")
    console.print(table)
    best = min(rows, key=lambda r: r[3])
    console.print(f"fastest untuned: {best[0]}; profile {profile.name} uses {profile.layout}"
                  + (" + winograd" if profile.winograd else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
