"""``tvmq-tune``: tune, build, verify and benchmark a pre-quantized TFLite model on a target."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from rich.console import Console

from .common import (ArgumentParser, exit_status_help, exit_with, layout, quiet_native_logs, run_command, run_option,
                     stdout_to_stderr)

DESCRIPTION = """\
Tune a pre-quantized (uint8/int8) TFLite model for a CPU with Apache TVM, build it, check that
it predicts what TFLite predicts, and report how fast it runs next to TFLite.

One run does, in order:
  1. load the model (a file or an http(s) URL, downloaded once and checksummed) and show what
     it holds: inputs, outputs, operators and how it is quantized;
  2. import it into Relax and extract the tuning tasks;
  3. lower it to integer kernels (int8 x int8 -> int32 on the target's dot-product instruction,
     requantized as XNNPACK does; --no-int8 keeps TVM's QDQ float graph), then tune the tasks with
     MetaSchedule and an XGBoost cost model for 3 minutes (--budget, --trials), every measurement
     kept in the tuning database (--db), so a later run reuses it (--trials 0 tunes nothing);
  4. build the model with the best schedules the database holds for this exact target
     (int8 dot products it has none for: MetaSchedule's first design-space point);
  5. run every input (--image) through the build and through the TFLite interpreter and compare
     the top-5 (ties are interchangeable) and every output value;
  6. benchmark both with the same thread count, in alternating blocks of runs in this process,
     with a 95% bootstrap interval of the tvmq/TFLite ratio (faster, slower or
     indistinguishable), and write the report (terminal, JSON, Markdown) and the compiled library (model.so + model.json, loadable by tvmq-run).
"""

EPILOG = """\
examples:
  tvmq-tune
      the default run: the built-in quantized MobileNet on the integer path, the host CPU,
      3 minutes of tuning into the SQLite database ./tvmq.db — works offline. Run it again: the
      build reuses every record and the next 3 minutes go to the tasks not tuned yet.
  tvmq-tune --target native --model mobilenet_v2_1.0_224_quant.tflite \\
            --image cat.bmp --labels imagenet_labels.txt
  tvmq-tune --target cascadelake --model m.tflite --build-only
      cross-build for a CPU this host cannot run (tuned where the database has records,
      MetaSchedule's first design-space point elsewhere, which already uses vpdpbusd).
  tvmq-tune --list-targets

limits (each overridable by its environment variable): a model file or download of at most
$TVMQ_MAX_MODEL_BYTES (under 2 GiB, a flatbuffer's own limit), a download that takes at most
$TVMQ_DOWNLOAD_TIMEOUT seconds in all (900), images of at most $TVMQ_MAX_IMAGE_PIXELS pixels
(100000000). Output paths (--out, --json) are checked before any work starts.
"""


def build_parser() -> argparse.ArgumentParser:
    from tvmq.model.builtin import DEFAULT

    p = ArgumentParser(
        prog="tvmq-tune",
        description=DESCRIPTION,
        epilog=EPILOG + "\n" + exit_status_help("the verification passed (or --build-only built and exported)",
                                                 "TVM and TFLite disagree"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    what = p.add_argument_group("what to tune")
    what.add_argument("--model", default=DEFAULT, metavar="PATH_OR_URL",
                      help=f"the .tflite model: a path, an http(s) URL (cached; add #sha256=HEX to pin "
                           f"it; its user:password@ and ?query are sent, never printed or stored), or "
                           f"builtin:NAME (default: {DEFAULT}, shipped with tvmq)")
    what.add_argument("--target", default="native", metavar="NAME",
                      help="target profile name or alias (default: native, the closest profile to "
                           "this host); see --list-targets")
    what.add_argument("--image", action="append", default=[], nargs="+", metavar="PATH",
                      help="image file(s) or folder(s) to verify with (any format Pillow reads; "
                           "repeatable). Without --image a deterministic synthetic input is used")
    what.add_argument("--input", action="append", default=[], metavar="NAME=FILE.npy", dest="inputs",
                      help="feed the model input NAME this array (a .npy of its exact shape and dtype; "
                           "repeatable): a detector's recurrent state, a second input. Inputs neither --image "
                           "nor --input feeds get deterministic synthetic values")
    what.add_argument("--labels", metavar="PATH", help="class names, one per line (line N is class N)")
    tune = p.add_argument_group("tuning")
    tune.add_argument("--trials", type=run_option("trials"), default=None, metavar="N",
                      help="measurement trials over all tasks (default: as many as --budget allows; 0 with --build-only). "
                           "They go to the tasks the "
                           "database does not cover yet for this target, heaviest first (a budget under two rounds "
                           "of every task skips those worth under 2%% of the untuned time); 0 tunes nothing "
                           "and builds from the database alone")
    tune.add_argument("--budget", type=duration, metavar="TIME",
                      help="tune until this much wall-clock time is spent (90s, 5m, 1h), then build (default: 3m "
                           "when --trials is not given); --trials, when given too, still caps the trials")
    tune.add_argument("--retune", action="store_true",
                      help="also search tasks the database already covers (the search starts from their records)")
    tune.add_argument("--trials-per-task", type=run_option("trials_per_task"), metavar="N",
                      help="cap on the trials of one task")
    tune.add_argument("--seed", type=run_option("seed"), default=0,
                      help="seed of the search and of synthetic inputs (default: 0)")
    tune.add_argument("--db", metavar="URL_OR_PATH",
                      help="tuning database: a SQLite file path or any SQLAlchemy URL (default: ./tvmq.db)")
    tune.add_argument("--show-tasks", action="store_true", help="print the task table even when not tuning")
    build = p.add_argument_group("code generation")
    build.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                       help="integer arithmetic (the default): lower the QDQ graph to int8 x int8 -> int32 kernels "
                            "with integer requantization (--requant), convolutions and dense layers packed for the "
                            "target's dot-product instruction (vpmaddubsw/vpmaddwd, vpdpbusd, sdot/udot: the "
                            "profile's int8 scheme), which tuning tensorizes. --no-int8 builds the QDQ float graph "
                            "TVM imports (dequantize, float operator, quantize): the fallback, and the comparison")
    # tvmq.int8.requant.MODES, spelled out: importing it loads TVM, which --help should not wait for
    build.add_argument("--requant", choices=("tflite", "xnnpack"), default=None,
                       help="how the integer kernels scale accumulators to the next layer's integers: xnnpack "
                            "(default: the fp32 scaling of the XNNPACK delegate, which TFLite runs on x86 and Arm, "
                            "so the build is verified against what TFLite computes there) or tflite (TFLite's "
                            "fixed-point multiply and shift, bit-exact with its reference kernels; differs from "
                            "xnnpack by at most one unit on ties). The two build different kernels, tuned separately")
    build.add_argument("--layout", default="profile", type=layout, metavar="LAYOUT",
                       help="convolution data layout: profile (the target profile's choice, default), NHWC, "
                            "NCHW, or NCHW<b>c such as NCHW16c")
    build.add_argument("--winograd", action=argparse.BooleanOptionalAction, default=None,
                       help="winograd for eligible 3x3 stride-1 convolutions (default: the profile's choice)")
    out = p.add_argument_group("output")
    out.add_argument("--out", type=Path, metavar="DIR",
                     help="folder for model.so, model.json and the reports (default: tvmq_out/MODEL-TARGET)")
    out.add_argument("--json", type=Path, metavar="PATH",
                     help="also write the JSON report here; - writes it to stdout, and nothing else goes there")
    run = p.add_argument_group("running and measuring")
    run.add_argument("--threads", type=run_option("threads"), metavar="N",
                     help="threads for TVM and TFLite alike (default: the profile's, at most the host's cores)")
    run.add_argument("--bench-seconds", type=run_option("bench_seconds"), metavar="S",
                     help="benchmark: time TVM and TFLite in alternating blocks of runs until each has at least S "
                          "seconds of timed runs (default: 2; the benchmark ends after max(30, 4*S) seconds "
                          "in any case)")
    run.add_argument("--bench-blocks", type=run_option("bench_blocks"), metavar="N",
                     help="benchmark: at least N blocks of each engine, the samples of its 95%% interval (default: 5)")
    run.add_argument("--repeat", type=run_option("repeat"), metavar="N",
                     help="benchmark: at least N timed runs of each engine (default: 10; on an RPC device exactly N)")
    run.add_argument("--tolerance", type=run_option("tolerance"), metavar="UNITS",
                     help="largest difference allowed on any output, in quantized units (default: 0 on the integer path, "
                          "whose builds are compared with the TFLite kernels they compute: reference kernels for "
                          "--requant tflite, XNNPACK for --requant xnnpack; 2 for the QDQ float graph (--no-int8), compared "
                          "with XNNPACK, where a classifier passes on its top-5)")
    run.add_argument("--explain-mismatch", action="store_true",
                     help="also run the model with every operator's output as an output, here and in TFLite, and "
                          "print the first tensor where they part: its operator, shape, quantization and difference")
    run.add_argument("--build-only", action="store_true",
                     help="tune nothing, run nothing: build (cross-build for a foreign CPU) and export")
    remote = p.add_argument_group("remote devices (TVM's RPC tracker)")
    remote.add_argument("--rpc-tracker", metavar="HOST:PORT",
                        help="measure on devices registered with this tracker (python -m tvm.exec.rpc_tracker), "
                             "for tuning and for the final verification and benchmark")
    remote.add_argument("--rpc-key", metavar="KEY", help="the device key the servers registered with")
    p.add_argument("--list-targets", action="store_true", help="print the target profiles and exit")
    return p


def duration(text: str) -> float:
    """argparse ``type=`` of ``--budget``: :func:`tvmq.options.parse_duration`."""
    from tvmq.errors import UsageError
    from tvmq.options import parse_duration

    try:
        return parse_duration(text)
    except UsageError as err:
        raise argparse.ArgumentTypeError(err.message.replace("a duration ", "", 1)) from None


def main(argv: list[str] | None = None) -> None:
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)

    def body() -> int:
        if args.list_targets:
            from tvmq.targets import render_targets_table

            Console().print(render_targets_table())
            return 0
        from tvmq import pipeline
        from tvmq.options import RunOptions

        flat = {k: v for k, v in vars(args).items() if k != "list_targets"}
        json_to_stdout = str(args.json) == "-"  # the report on stdout; report.json in --out as always
        if json_to_stdout:
            flat["json"] = None
        with stdout_to_stderr() if json_to_stdout else contextlib.nullcontext():
            report = pipeline.run(RunOptions.from_mapping(flat), console)
        if json_to_stdout:
            from tvmq.report.render import to_json

            sys.stdout.write(to_json(report))
        return 0 if report.verdict in ("pass", "built") else 1

    exit_with(run_command("tvmq-tune", body, console))


if __name__ == "__main__":
    main()
