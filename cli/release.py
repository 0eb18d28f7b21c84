"""``tvmq-release``: every model of a plan on every target, tuned into one database, built,
verified and benchmarked, then gated against the last release's summary."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from .common import ArgumentParser, exit_with, fraction, quiet_native_logs, run_command, run_option

DESCRIPTION = """\
Run a pre-release plan: every [[model]] on every [[target]] of PLAN.toml, one pair after the
other (local measurements would disturb each other), into one tuning database (a task two models
share is tuned once). A pair that fails (a refused model, a device that does not answer, a failed
verification) is recorded and the run goes on.

  db = "sqlite:///release.db"     # any --db URL; a relative SQLite path is beside the plan
  budget = "5m"                   # tuning time per pair; or trials = N (both: the first reached)
  int8 = true                     # default true; requant = "xnnpack" (default) or "tflite"
  [[model]]
  path = "models/mobilenet_v2_1.0_224_quant.tflite"   # relative to the plan's folder, or a URL
  images = ["cat.bmp"]            # optional; labels = "labels.txt" optional; name = "..." optional
  [[target]]
  name = "native"                 # a profile or alias; mode = "local" (default)
  [[target]]
  name = "cascadelake"
  mode = "build-only"             # cross-build, check the dot-product instruction is in the library
  [[target]]
  name = "cortex-a76"
  mode = "rpc"                    # tracker = "HOST:PORT", key = "KEY": measured on that device

Writes OUT/summary.json (the contract: README), OUT/index.html with a page per pair, and each
pair's build and reports under OUT/pairs/. With --baseline, each pair is compared with the same
pair of that earlier run: slower (the 95% intervals do not overlap and the median grew by more
than --threshold), faster, the same, new, or a changed verdict.
"""

EPILOG = """\
exit status:
  0 nothing regressed and nothing failed (a model refused as before holds no release);
  1 a regression against the baseline, a failed verification or an error in a pair;
  2 a bad plan, option or baseline (one line on stderr); 3 an internal error of tvmq; 130 Ctrl-C
  (the summary then holds the pairs done).
"""


def build_parser() -> argparse.ArgumentParser:
    from tvmq.options import REQUANT_MODES

    p = ArgumentParser(prog="tvmq-release", description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("plan", metavar="PLAN.toml", type=Path, help="the plan")
    p.add_argument("--out", type=Path, default=Path("release_out"), metavar="DIR",
                   help="folder for summary.json, index.html and the pairs (default: release_out)")
    p.add_argument("--baseline", metavar="DIR_OR_JSON",
                   help="a previous run's folder or summary.json to gate against")
    p.add_argument("--threshold", type=fraction, default=None, metavar="FRACTION",
                   help="slowdown that counts as a regression when the intervals do not overlap, for every pair "
                        "(default: the plan's threshold, a target's own, or 0.05)")
    over = p.add_argument_group("overriding the plan")
    over.add_argument("--db", metavar="URL_OR_PATH", help="tuning database")
    over.add_argument("--budget", metavar="TIME", help="tuning time per pair (90s, 5m, 1h)")
    over.add_argument("--trials", type=run_option("trials"), metavar="N", help="tuning trials per pair")
    over.add_argument("--threads", type=run_option("threads"), metavar="N", help="threads of every pair")
    over.add_argument("--int8", action=argparse.BooleanOptionalAction, default=None,
                      help="the integer path (the plan's default: on)")
    over.add_argument("--requant", choices=REQUANT_MODES, help="requantization of the integer path")
    return p


def main(argv: list[str] | None = None) -> None:
    quiet_native_logs()
    args = build_parser().parse_args(argv)
    console = Console(stderr=True)

    def body() -> int:
        from tvmq.options import parse_duration
        from tvmq.release.gate import read_pairs
        from tvmq.release.plan import load_plan, with_overrides
        from tvmq.release.run import ReleaseRun, gate_lines, run_release, summary_table

        threshold = args.threshold
        plan = with_overrides(load_plan(args.plan), db=args.db, trials=args.trials, threads=args.threads,
                              int8=args.int8, requant=args.requant,
                              budget_s=parse_duration(args.budget) if args.budget else None)
        baseline, source, _ = read_pairs(args.baseline) if args.baseline else (None, None, None)
        run = ReleaseRun(plan=plan, out_dir=args.out, baseline=baseline, baseline_source=source, threshold=threshold)
        summary = run_release(run, console)
        wide = console if console.is_terminal else Console(stderr=True, width=160)
        wide.print(summary_table(summary))
        for line in gate_lines(summary):
            console.print(line, highlight=False, soft_wrap=True, markup=False)
        console.print(f"summary: {args.out / 'summary.json'}; pages: {args.out / 'index.html'}; "
                      f"worst: {summary['worst']}", highlight=False, soft_wrap=True, markup=False)
        return summary["exit_status"]

    exit_with(run_command("tvmq-release", body, console))


if __name__ == "__main__":
    main()
