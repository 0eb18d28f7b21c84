"""Issue 15's fuzz and fault corpus: no input ends in a traceback, a signal or a hang.

The default run takes 48 seeded flatbuffer mutants through the first stages of a run and every
scripted input of the issue through the real commands; the full run (slow) takes 300 mutants,
lowers each, builds a few, and adds the slower scripted variants (with ``TVMQ_FUZZ_FULL=1``).
``scripts/fuzz.py`` runs either with any seed.
"""

from __future__ import annotations

import os
import signal
import struct

import pytest

from tests.conftest import shared_models_dir
from tests.fuzz.corpus import FULL_MUTANTS, CorpusConfig, run_corpus
from tests.fuzz.flatbuffer import edit, fields, mutants
from tests.fuzz.outcomes import CLEAN, HANG, SIGNAL, TRACEBACK, UNCLEAR, VERDICT, classify_exit, failures, report_text
from tests.fuzz.worker import Request, StageWorker
from tests.fuzz.workspace import Workspace


@pytest.fixture
def workspace(tmp_path, model_factory) -> Workspace:
    real = shared_models_dir() / "mobilenet_v1_0.25_128_quant.tflite"
    return Workspace.create(tmp_path, model_factory.path("uint8"), model_factory.path("int8"),
                            real if real.is_file() else None)


def _assert_clean(outcomes, title: str) -> None:
    if failures(outcomes):
        pytest.fail("\n" + report_text(outcomes, title), pytrace=False)


def test_corpus(workspace):
    outcomes = run_corpus(workspace, CorpusConfig(seed=0))
    assert sum(o.case.startswith(("small:", "mobilenet:")) for o in outcomes) >= 48
    _assert_clean(outcomes, "fuzz corpus, seed 0")


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("TVMQ_FUZZ_FULL"),
                    reason="the full corpus (about 520 cases, 5 minutes) runs with TVMQ_FUZZ_FULL=1 "
                           "or scripts/fuzz.py --full; the default run takes the seed-0 subset")
def test_full_corpus(workspace):
    outcomes = run_corpus(workspace, CorpusConfig(seed=1, mutants=FULL_MUTANTS, full=True, builds=3,
                                                  mutant_deadline_s=180))
    _assert_clean(outcomes, "full fuzz corpus, seed 1")


# ----------------------------------------------------------------------- the corpus's own parts


def test_schema_walk_finds_what_tflite_reads(model_factory):
    import tflite

    content = model_factory.path("uint8").read_bytes()
    found = {f.path: f for f in fields(content)}
    model = tflite.Model.GetRootAsModel(content, 0)
    tensor = model.Subgraphs(0).Tensors(0)
    length = found["model.subgraphs[0].tensors[0].shape.<length>"]
    assert struct.unpack_from(length.fmt, content, length.offset)[0] == tensor.ShapeLength()
    assert {f.role for f in found.values()} >= {"soffset", "vtable", "reference", "length", "int", "float"}
    assert sum(p.startswith("model.buffers[") and p.endswith("data.<length>") for p in found) >= 2

    dim = found["model.subgraphs[0].tensors[0].shape[0]"]
    edited = edit("small", dim, 7).apply(content)
    assert len(edited) == len(content) and edited != content
    assert tflite.Model.GetRootAsModel(edited, 0).Subgraphs(0).Tensors(0).Shape(0) == 7


def test_mutants_are_seeded_distinct_and_mixed(model_factory):
    base = model_factory.path("uint8").read_bytes()
    first = list(mutants("small", base, seed=5, count=60))
    assert [m.name for m in first] == [m.name for m in mutants("small", base, seed=5, count=60)]
    assert [m.name for m in first] != [m.name for m in mutants("small", base, seed=6, count=60)]
    assert len({m.apply(base) for m in first}) == 60 and all(m.apply(base) != base for m in first)
    kinds = {m.name.split(":", 1)[1].split("@")[0].split(" ")[0] for m in first}
    assert kinds == {"flip", "cut", "set"}


@pytest.mark.parametrize("prog, code, out, err, klass", [
    ("tvmq-tune", 2, "", "target native\ntvmq-tune: usage: --repeat must be 1 or more\n", CLEAN),
    ("tvmq-db", 2, "", "tvmq-db prune: usage: argument --keep: must be at least 1, not -1\n", CLEAN),
    ("tvmq-tune", 2, "", "Traceback (most recent call last):\n  ...\nValueError: x\n", TRACEBACK),
    ("tvmq-tune", 2, "", "some line\nanother\n", UNCLEAR),
    ("tvmq-run", 3, "", "tvmq-run: internal-error: KeyError (a bug in tvmq; the traceback is in /x.log)\n", TRACEBACK),
    ("tvmq-run", 1, "| table |\n", "", VERDICT),
    ("tvmq-run", -signal.SIGBUS, "", "", SIGNAL),
    ("tvmq-tune", None, "", "step 1\n", HANG),
    ("tvmq-tune", 130, "", "tvmq-tune: interrupted: stopped\n", UNCLEAR),
])
def test_exit_classes(prog, code, out, err, klass):
    assert classify_exit(prog, code, out, err)[0] == klass


def test_stage_worker_outlives_a_hang_and_a_signal(tmp_path, model_factory):
    model = str(model_factory.path("uint8"))
    with StageWorker(tmp_path / "worker.log", deadline_s=0.01) as worker:
        assert worker.check(Request(model))[0] == HANG  # no stage answers within 10 ms
        worker.deadline_s = 120
        assert worker.check(Request(model))[0] == VERDICT  # a new child
        os.kill(worker.proc.pid, signal.SIGSEGV)
        klass, detail = worker.check(Request(model))
        assert klass == SIGNAL and "SIGSEGV" in detail
        garbage = tmp_path / "garbage.tflite"
        garbage.write_bytes(b"\0" * 64)
        assert worker.check(Request(str(garbage)))[0] == CLEAN
