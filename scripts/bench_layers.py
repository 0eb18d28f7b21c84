#!/usr/bin/env python3
"""Layer by layer: each convolution of a model as a one-op model, tvmq next to TFLite.

``bench_interleaved.py`` says how far a whole tuned build is from TFLite; this script says which
layers make up the difference. For every distinct CONV_2D / DEPTHWISE_CONV_2D of the model
(shape, kernel, stride, padding and fused activation read from its flatbuffer):

1. a one-op Keras model of that layer, fully int8-quantized by TensorFlow's converter
   (per-channel weights, int8 input and output: the QS8 layers of an int8 model);
2. TFLite (LiteRT with XNNPACK) runs it;
3. tvmq builds it exactly as ``tvmq-tune --int8 --requant MODE --trials 0`` would, with the
   schedules of the given tuning database (MetaSchedule's anchor-block equality matches the layer
   to the records of the model's layer of the same shape; a layer with no record gets
   MetaSchedule's first design-space point and is marked untuned), and checks its output
   against TFLite's;
4. both are timed in interleaved blocks in one process, same thread count.

The table prints each layer's latency in both engines (median of the block medians), the ratio,
the ratio of the two engines' best blocks (less sensitive to a noisy host), how often the layer
occurs in the model, and its share of the model's total (count x latency); the summary adds the
totals per kind of layer, and the last line the whole model, built the same way and timed the
same way, with the share of it that the one-op convolutions add up to in each engine, and its
distance from the hardware floor: the model's convolution MACs at the scheme's peak
(``tvmq.int8.dot.PEAK_MACS_PER_CYCLE``, e.g. 64 per cycle and core for ``vpdpbusd``) on the
threads' cores at the clock (``--ghz``, else /proc/cpuinfo's); each layer's GMAC/s is also given
as a share of that peak. Where that
share is far from what the model's other layers leave (a few per cent on mobilenets), a
layer costs that engine more alone than among its neighbours (per-invocation costs, cold caches,
threads that sleep between invocations) and its one-op latencies overstate it.

    python scripts/bench_layers.py ../shared/models/tf2_mobilenet_v2_1.0_224_ptq.tflite \\
        --db sqlite:///tf2.db --requant xnnpack [--threads 2] [--blocks 15 --runs 20]

Only int8 models are reproduced faithfully: a uint8 model's layers become int8 one-op models,
which run other kernels in both engines than the model's own layers do.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench_interleaved import interleave  # noqa: E402  (a sibling: run as a script, its folder is on sys.path)

_ACTIVATIONS = {0: None, 1: "relu", 3: "relu6"}


@dataclass(frozen=True)
class Layer:
    kind: str  # "conv2d" | "depthwise"
    h: int
    w: int
    cin: int
    cout: int
    kh: int
    kw: int
    stride: int
    padding: str  # "same" | "valid"
    activation: str | None

    def describe(self) -> str:
        act = f" {self.activation}" if self.activation else ""
        if self.kind == "depthwise":
            return f"dw {self.kh}x{self.kw}/{self.stride} {self.h}x{self.w}x{self.cin}{act}"
        return f"conv {self.kh}x{self.kw}/{self.stride} {self.h}x{self.w}x{self.cin}->{self.cout}{act}"

    def macs(self) -> int:
        oh, ow = -(-self.h // self.stride), -(-self.w // self.stride)
        if self.padding == "valid":
            oh, ow = (self.h - self.kh) // self.stride + 1, (self.w - self.kw) // self.stride + 1
        per_out = self.kh * self.kw * (1 if self.kind == "depthwise" else self.cin)
        return oh * ow * self.cout * per_out


@dataclass
class Row:
    layer: Layer
    count: int  # occurrences in the model
    tflite_ms: float  # median of the block medians
    tvmq_ms: float
    best_ratio: float  # tvmq's best block / TFLite's best block
    tuned: bool | None  # every task of the layer had a record in the database (None: it has no
    # task, its kernel is scheduled by hand: AMX)
    max_diff: int  # against TFLite's output, in quantization steps


def model_layers(loaded) -> Counter:
    """The model's convolutions (subgraph 0), counted by their distinct :class:`Layer`."""
    import tflite

    from tvmq.model.inspect import operator_names

    model = loaded.tflite_model
    names = operator_names(model)
    sg = model.Subgraphs(0)
    found: Counter = Counter()
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        name = names[op.OpcodeIndex()]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        x = sg.Tensors(int(op.Inputs(0))).ShapeAsNumpy()
        wt = sg.Tensors(int(op.Inputs(1))).ShapeAsNumpy()
        y = sg.Tensors(int(op.Outputs(0))).ShapeAsNumpy()
        table = op.BuiltinOptions()
        opts = tflite.Conv2DOptions() if name == "CONV_2D" else tflite.DepthwiseConv2DOptions()
        opts.Init(table.Bytes, table.Pos)
        if opts.StrideH() != opts.StrideW() or opts.DilationHFactor() != 1 or opts.DilationWFactor() != 1:
            continue  # not a layer this script can rebuild as it is
        if opts.FusedActivationFunction() not in _ACTIVATIONS:
            continue
        padding = "same" if opts.Padding() == tflite.Padding.SAME else "valid"
        kind = "conv2d" if name == "CONV_2D" else "depthwise"
        if kind == "depthwise" and int(y[3]) != int(x[3]):
            continue  # channel multiplier > 1
        found[Layer(kind, int(x[1]), int(x[2]), int(x[3]), int(y[3]), int(wt[1]), int(wt[2]),
                    int(opts.StrideH()), padding, _ACTIVATIONS[opts.FusedActivationFunction()])] += 1
    return found


def one_op_model(layer: Layer, seed: int) -> bytes:
    """``layer`` alone as a fully int8-quantized TFLite model (per-channel weights)."""
    import tensorflow as tf

    from tvmq.model.builtin import quantize_keras

    tf.keras.utils.set_random_seed(seed)
    inp = tf.keras.Input((layer.h, layer.w, layer.cin))
    if layer.kind == "depthwise":
        op = tf.keras.layers.DepthwiseConv2D((layer.kh, layer.kw), strides=layer.stride, padding=layer.padding,
                                             activation=layer.activation, bias_initializer="random_normal")
    else:
        op = tf.keras.layers.Conv2D(layer.cout, (layer.kh, layer.kw), strides=layer.stride, padding=layer.padding,
                                    activation=layer.activation, bias_initializer="random_normal")
    model = tf.keras.Model(inp, op(inp))
    return quantize_keras(model, (layer.h, layer.w, layer.cin), io_dtype="int8", samples=8, seed=seed)


def build_from_db(loaded, profile, target, requant: str, records):
    """``(Runnable, tasks described)``: ``loaded`` built as ``tvmq-tune --int8 --requant REQUANT
    --trials 0`` would, with the schedules of ``records`` (MetaSchedule's first design-space point
    for the functions the database lacks)."""
    from tvmq.model import inspect_model
    from tvmq.options import CodegenOptions
    from tvmq.stages import Steps, build, lower, prepare
    from tvmq.tuner.compile import Runnable
    from tvmq.tuner.tasks import describe

    quiet = Steps.quiet()
    prepared = prepare(loaded, inspect_model(loaded), profile, CodegenOptions(int8=True, requant=requant), quiet)
    lowered = lower(prepared, target, quiet)
    infos = describe(list(lowered.tasks), records.database, target)
    return Runnable(build(lowered, records.view, "design-space", quiet)), infos


def main() -> int:
    from tvmq.int8.requant import MODES

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="the .tflite model whose layers to measure")
    ap.add_argument("--db", required=True, help="the tuning database the model was tuned into (URL or path)")
    ap.add_argument("--target", default="native", help="target profile (default: native)")
    ap.add_argument("--requant", choices=MODES, default="xnnpack",
                    help="requantization the model was tuned with (default: xnnpack)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=15)
    ap.add_argument("--runs", type=int, default=20,
                    help="invocations per block, at least (more for short layers: each block lasts ~20 ms)")
    ap.add_argument("--only", choices=("conv2d", "depthwise"), help="one kind of layer only")
    ap.add_argument("--ghz", type=float, default=None,
                    help="the cores' clock for the floor (default: the highest 'cpu MHz' of /proc/cpuinfo)")
    args = ap.parse_args()

    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from tvmq.db import open_database
    from tvmq.model import inspect_model, load_model, make_inputs
    from tvmq.model.reference import Reference
    from tvmq.targets import resolve_target
    from tvmq.tuner.compile import input_tensors, set_threads
    from tvmq.tuner.tune import Records

    console = Console(width=170)
    set_threads(args.threads)
    profile, _ = resolve_target(args.target, args.threads)
    target = profile.tvm_target(num_cores=args.threads)
    records = Records.open(open_database(args.db), target)
    layers = all_layers = model_layers(load_model(args.model))
    if args.only:
        layers = Counter({k: v for k, v in layers.items() if k.kind == args.only})
    console.print(f"{len(layers)} distinct convolutions ({sum(layers.values())} in the model), "
                  f"{profile.name}, {args.threads} threads, requant {args.requant}")

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n, (layer, count) in enumerate(sorted(layers.items(), key=lambda kv: -kv[0].macs())):
            path = Path(tmp) / f"layer{n}.tflite"
            path.write_bytes(one_op_model(layer, seed=n))
            loaded = load_model(path)
            runnable, infos = build_from_db(loaded, profile, target, args.requant, records)
            ref = Reference(loaded, args.threads)
            rng = np.random.default_rng(n)
            x = rng.integers(-128, 128, (1, layer.h, layer.w, layer.cin)).astype(np.int8)
            want = ref.run([x])[0]
            got = runnable.run([x])[0]
            diff = int(np.abs(got.astype(np.int32) - want.astype(np.int32)).max())
            inputs = input_tensors([x])
            engines = {"tflite": ref.invoke, "tvmq": lambda vm=runnable.vm: vm["main"](*inputs)}
            # blocks of at least ~20 ms each: a block of a few short runs would sit inside one
            # moment of this host's noise, or inside the other engine's threads still spinning
            start = time.perf_counter()
            ref.invoke()
            runs = max(args.runs, int(0.02 / max(time.perf_counter() - start, 1e-6)))
            blocks = interleave(engines, args.blocks, runs)
            t_ref, t_us = (statistics.median(blocks[k]) for k in ("tflite", "tvmq"))
            best = min(blocks["tvmq"]) / min(blocks["tflite"])
            rows.append(Row(layer, count, t_ref, t_us, best, all(t.in_db for t in infos) if infos else None, diff))
            console.print(f"  {layer.describe():40s} x{count}  TFLite {t_ref * 1e3:8.1f} us  tvmq {t_us * 1e3:8.1f} us"
                          f"  {t_us / t_ref:5.2f}x (best blocks {best:4.2f}x)  max diff {diff}")

    total_ref = sum(r.count * r.tflite_ms for r in rows)
    total_us = sum(r.count * r.tvmq_ms for r in rows)
    table = Table(title=f"{Path(args.model).name}: one-op models, median of {args.blocks} interleaved blocks of "
                        f">= {args.runs} runs and ~20 ms, {args.threads} threads", title_justify="left")
    ghz = args.ghz or host_ghz()

    def peak_gmacs(layer):
        return peak_macs_per_second(layer_scheme(layer, profile.int8_scheme), args.threads, ghz) / 1e9

    for col in ("layer", "x", "MMAC", "TFLite us", "tvmq us", "ratio", "best blocks", "tvmq GMAC/s", "of peak",
                "share of tvmq", "tvmq - TFLite (x count, us)", "tuned", "max diff"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for r in sorted(rows, key=lambda r: -r.count * (r.tvmq_ms - r.tflite_ms)):
        table.add_row(r.layer.describe(), str(r.count), f"{r.layer.macs() / 1e6:.1f}", f"{r.tflite_ms * 1e3:.1f}",
                      f"{r.tvmq_ms * 1e3:.1f}", f"{r.tvmq_ms / r.tflite_ms:.2f}", f"{r.best_ratio:.2f}",
                      f"{r.layer.macs() / r.tvmq_ms / 1e6:.1f}",
                      f"{r.layer.macs() / r.tvmq_ms / 1e6 / peak_gmacs(r.layer):.0%}" if peak_gmacs(r.layer) else "-",
                      f"{100 * r.count * r.tvmq_ms / total_us:.1f}%",
                      f"{r.count * (r.tvmq_ms - r.tflite_ms) * 1e3:+.0f}", {True: "yes", False: "NO", None: "no task"}[r.tuned], str(r.max_diff))
    console.print(table)
    for kind in ("conv2d", "depthwise"):
        ref_k = sum(r.count * r.tflite_ms for r in rows if r.layer.kind == kind)
        us_k = sum(r.count * r.tvmq_ms for r in rows if r.layer.kind == kind)
        if ref_k:
            console.print(f"{kind:10s} TFLite {ref_k:.3f} ms  tvmq {us_k:.3f} ms  ratio {us_k / ref_k:.2f}")
    console.print(f"{'all':10s} TFLite {total_ref:.3f} ms  tvmq {total_us:.3f} ms  ratio {total_us / total_ref:.2f}")

    # the whole model, built the same way: one-op latencies only add up to it where a layer costs
    # the same alone as among its neighbours (warm caches, threads kept busy), which may differ
    loaded = load_model(args.model)
    (sample,) = make_inputs(inspect_model(loaded), None, seed=0)
    runnable, _ = build_from_db(loaded, profile, target, args.requant, records)
    ref = Reference(loaded, args.threads)
    ref.run(sample.arrays)
    inputs = input_tensors(sample.arrays)
    blocks = interleave({"tflite": ref.invoke, "tvmq": lambda: runnable.vm["main"](*inputs)}, args.blocks, args.runs)
    whole_ref, whole_us = (statistics.median(blocks[k]) for k in ("tflite", "tvmq"))
    console.print(f"{'whole model':10s} TFLite {whole_ref:.3f} ms  tvmq {whole_us:.3f} ms  ratio {whole_us / whole_ref:.2f}"
                  f"  (its convolutions' one-op sums: {total_ref / whole_ref:.0%} and {total_us / whole_us:.0%} of it)")
    floor = layers_floor(all_layers, profile.int8_scheme, args.threads, ghz)
    if floor is None:
        console.print("floor      unknown: no dot-product scheme or no clock (--ghz)")
    else:
        floor_ms, how = floor
        console.print(f"{'floor':10s} {how} = {floor_ms:.3f} ms: tvmq {whole_us / floor_ms:.2f}x the floor, "
                      f"TFLite {whole_ref / floor_ms:.2f}x")
    return 0


def host_ghz():
    """The highest clock /proc/cpuinfo reports (GHz), or None."""
    try:
        mhz = [float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
               if line.startswith("cpu MHz")]
    except OSError:
        return None
    return max(mhz) / 1e3 if mhz else None


def peak_macs_per_second(scheme, threads: int, ghz) -> float:
    """The scheme's peak on ``threads`` cores at ``ghz`` (0 when either is unknown)."""
    from tvmq.int8.dot import PEAK_MACS_PER_CYCLE

    return PEAK_MACS_PER_CYCLE.get(scheme or "", 0) * threads * (ghz or 0) * 1e9


def layer_scheme(layer: Layer, scheme):
    """The scheme whose instruction computes ``layer``: on ``amx`` only the pointwise layers
    (1x1, stride 1, 32+ pixels) run on AMX tiles (``tvmq.int8.amx``), the others on VNNI."""
    if scheme != "amx":
        return scheme
    from tvmq.int8 import amx

    pointwise = layer.kind == "conv2d" and (layer.kh, layer.kw, layer.stride) == (1, 1, 1)
    return "amx" if pointwise and amx.fits(layer.h * layer.w, layer.cin, layer.cout) else "vnni"


def layers_floor(layers: Counter, scheme, threads: int, ghz):
    """``(ms, description)``: the time the model's convolutions take, each at the peak of the
    instruction that computes it (:func:`layer_scheme`), or None when a peak or the clock is unknown."""
    from tvmq.int8.dot import PEAK_MACS_PER_CYCLE

    ms, parts = 0.0, Counter()
    for layer, count in layers.items():
        part = hardware_floor(layer.macs() * count, layer_scheme(layer, scheme), threads, ghz)
        if part is None:
            return None
        ms += part[0]
        parts[layer_scheme(layer, scheme)] += layer.macs() * count
    how = " + ".join(f"{macs / 1e6:.1f} MMAC at {PEAK_MACS_PER_CYCLE[s]} MAC/cycle/core ({s})" for s, macs in parts.items())
    return ms, f"{how} x {threads} cores x {ghz:.2f} GHz"


def hardware_floor(macs: int, scheme, threads: int, ghz):
    """``(ms, description)``: the time the model's convolutions take at the scheme's peak on
    ``threads`` cores at ``ghz``, or None when either is unknown."""
    from tvmq.int8.dot import PEAK_MACS_PER_CYCLE

    peak = peak_macs_per_second(scheme, threads, ghz)
    if not peak:
        return None
    return macs / peak * 1e3, (f"{macs / 1e6:.1f} MMAC at {PEAK_MACS_PER_CYCLE[scheme]} MAC/cycle/core ({scheme}) "
                               f"x {threads} cores x {ghz:.2f} GHz")


if __name__ == "__main__":
    sys.exit(main())
