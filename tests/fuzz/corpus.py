"""The whole corpus: seeded flatbuffer mutants through the stage worker, side by side with the
scripted cases through the real commands; one :class:`~tests.fuzz.outcomes.Outcome` per case.

``jobs`` commands run at once, next to the stage worker (whose mutants are quick); with ``jobs`` 1
the worker runs first, then the commands one by one.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tests.fuzz.cases import artifact_builds, db_cases, run_cases, tune_cases
from tests.fuzz.cli import run_cli
from tests.fuzz.flatbuffer import Mutant, edit, fields, flip, mutants
from tests.fuzz.outcomes import VERDICT, Outcome
from tests.fuzz.server import FuzzServer
from tests.fuzz.worker import Request, StageWorker
from tests.fuzz.workspace import Workspace

DEFAULT_MUTANTS = 48
FULL_MUTANTS = 300


@dataclass(frozen=True)
class CorpusConfig:
    seed: int = 0
    mutants: int = DEFAULT_MUTANTS  # mutant cases in all, shared by the base models
    full: bool = False  # every scripted variant, and every mutant lowered to TIR too
    builds: int = 0  # mutants the stages accept that go on to a build and a verification
    jobs: int = 2
    mutant_deadline_s: float = 60.0


#: edits the full corpus found (seed 1) that LiteRT's allocate_tensors dies of (SIGSEGV, SIGABRT)
#: once tvmq's checks pass them; every run keeps them
PINNED = {"small": (("model.subgraphs[0].tensors[9].quantization.zero_point[0]", -1000),
                    ("model.subgraphs[0].tensors[12].quantization.scale[0]", 3e38))}


def mutant_cases(ws: Workspace, seed: int, total: int) -> list[tuple[str, bytes, Mutant]]:
    """``(base name, base bytes, mutant)``: ``total`` seeded mutants over the small model and
    the real one (when present), the :data:`PINNED` edits, and issue 15's example, byte 132 of
    MobileNet XOR 61."""
    bases = [("small", ws.model.read_bytes())]
    if ws.real_model is not None:
        bases.append(("mobilenet", ws.real_model.read_bytes()))
    cases = []
    for i, (name, base) in enumerate(bases):
        share = total // len(bases) + (i < total % len(bases))
        cases += [(name, base, m) for m in mutants(name, base, seed, share)]
        by_path = {f.path: f for f in fields(base)}
        drawn = {m.name for _, _, m in cases}
        pinned = [edit(name, by_path[p], v) for p, v in PINNED.get(name, ()) if p in by_path]
        cases += [(name, base, m) for m in pinned if m.name not in drawn]
    if ws.real_model is not None:
        name, base = bases[1]
        cases.append((name, base, flip(name, base, 132, 61)))
    return cases


def run_mutants(ws: Workspace, config: CorpusConfig) -> list[Outcome]:
    folder = ws.root / "mutants"
    folder.mkdir(exist_ok=True)
    outcomes, builds_left = [], config.builds
    with StageWorker(ws.root / "stage-worker.log", config.mutant_deadline_s) as worker:
        for base_name, base, mutant in mutant_cases(ws, config.seed, config.mutants):
            path = folder / f"{base_name}.tflite"  # the model's name in messages: its base's
            path.write_bytes(mutant.apply(base))
            start = time.monotonic()
            klass, detail = worker.check(Request(str(path), lower=config.full, name=mutant.name))
            if klass == VERDICT and builds_left > 0:
                builds_left -= 1
                klass, detail = worker.check(Request(str(path), build=True, name=mutant.name))
            outcomes.append(Outcome(mutant.name, klass, detail, seconds=time.monotonic() - start))
    return outcomes


def run_scripted(ws: Workspace, server: FuzzServer, config: CorpusConfig) -> list[Outcome]:
    """The builds first, then tvmq-tune's cases, then tvmq-db's and tvmq-run's (which need them)."""
    env = ws.env()
    builds = artifact_builds(ws, config.full)
    with ThreadPoolExecutor(config.jobs) as pool:
        built = {key: pool.submit(run_cli, case, ws.cwd, env) for key, (case, _) in builds.items()}
        first = [pool.submit(run_cli, case, ws.cwd, env) for case in tune_cases(ws, server, config.full)]
        outcomes = {key: f.result() for key, f in built.items()}
        folders = {key: builds[key][1] for key, o in outcomes.items() if not o.failed}
        later = db_cases(ws, config.full) if ws.build_db.is_file() else []
        later += run_cases(ws, folders, config.seed, config.full)
        rest = [pool.submit(run_cli, case, ws.cwd, env) for case in later]
        return [*outcomes.values(), *(f.result() for f in first + rest)]


def run_corpus(ws: Workspace, config: CorpusConfig = CorpusConfig()) -> list[Outcome]:
    with FuzzServer(ws.model.read_bytes()) as server:
        if config.jobs <= 1:
            return run_mutants(ws, config) + run_scripted(ws, server, config)
        with ThreadPoolExecutor(1) as side:
            scripted = side.submit(run_scripted, ws, server, config)
            return run_mutants(ws, config) + scripted.result()
