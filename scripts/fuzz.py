#!/usr/bin/env python3
"""Issue 15's fuzz and fault corpus with any seed: seeded flatbuffer mutants of a small quantized
model (and of ../shared/models' MobileNet when present) through the first stages of a run, and the
scripted hostile inputs through tvmq-tune, tvmq-run and tvmq-db. Prints the table of outcomes
(clean error, verdict, traceback, signal, hang, unclear) and one line per failed case; exits 1
when any case failed.

    python scripts/fuzz.py --seed 7                  # the test suite's subset, another seed
    python scripts/fuzz.py --seed 7 --full           # 300 mutants, lowered; every scripted variant
    python scripts/fuzz.py --cases 1000 --keep /tmp/fz   # 1000 mutants; keep the files there

The corpus lives in ``tests/fuzz/`` (``tests/test_fuzz.py`` runs it); this script only chooses
its size and prints it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # the small models are made with TensorFlow
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the corpus is a test helper package: tests.fuzz

from rich.console import Console  # noqa: E402

from tests.conftest import ModelFactory, shared_models_dir  # noqa: E402
from tests.fuzz.corpus import DEFAULT_MUTANTS, FULL_MUTANTS, CorpusConfig, run_corpus  # noqa: E402
from tests.fuzz.outcomes import failures, table  # noqa: E402
from tests.fuzz.workspace import Workspace  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=0, help="seed of the mutants and of the sampled cases (default: 0)")
    p.add_argument("--cases", type=int, metavar="N",
                   help=f"mutant cases in all (default: {DEFAULT_MUTANTS}, {FULL_MUTANTS} with --full)")
    p.add_argument("--full", action="store_true",
                   help="lower every mutant, build and verify the first 3 accepted, add the slow scripted cases")
    p.add_argument("--jobs", type=int, default=2, help="processes at once (default: 2)")
    p.add_argument("--deadline", type=float, default=None, metavar="S",
                   help="seconds one mutant may take before it counts as a hang (default: 60, 180 with --full)")
    p.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it (default: a temporary folder)")
    p.add_argument("--slowest", type=int, default=10, metavar="N", help="name the N slowest cases (default: 10)")
    p.add_argument("--verbose", action="store_true", help="one line per case, not only per failed case")
    args = p.parse_args(argv)
    config = CorpusConfig(seed=args.seed, mutants=args.cases or (FULL_MUTANTS if args.full else DEFAULT_MUTANTS),
                          full=args.full, builds=3 if args.full else 0, jobs=args.jobs,
                          mutant_deadline_s=args.deadline or (180.0 if args.full else 60.0))
    console = Console() if sys.stdout.isatty() else Console(width=160)
    with tempfile.TemporaryDirectory(prefix="tvmq-fuzz-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        console.print(f"building the small models in {root / 'models'} …")
        models = ModelFactory(root / "models")
        (root / "models").mkdir(exist_ok=True)
        real = shared_models_dir() / "mobilenet_v1_0.25_128_quant.tflite"
        ws = Workspace.create(root / "work", models.path("uint8"), models.path("int8"),
                              real if real.is_file() else None)
        start = time.perf_counter()
        outcomes = run_corpus(ws, config)
        console.print(table(outcomes, f"fuzz corpus, seed {args.seed}, {config.mutants} mutants"
                                      f"{', full' if args.full else ''} ({time.perf_counter() - start:.0f} s)"))
        for o in outcomes if args.verbose else failures(outcomes):
            console.print(o.line(), highlight=False, markup=False, soft_wrap=True)
        slowest = sorted(outcomes, key=lambda o: -o.seconds)[:args.slowest]
        if slowest:
            console.print("slowest: " + "; ".join(f"{o.case} {o.seconds:.1f} s" for o in slowest),
                          highlight=False, markup=False, soft_wrap=True)
    return 1 if failures(outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
