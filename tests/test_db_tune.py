"""MetaSchedule's task scheduler and Relax passes reading and writing the tuning database.

Tuning uses MetaSchedule's real task scheduler, space generator and search strategy, with its
DummyBuilder/DummyRunner (random run times) so that nothing is compiled or timed; the first
TuneContext still imports TVM's tensor intrinsics (~15 s), so the tests share one tuning run.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest
import tvm
import tvm_ffi
from tvm import relax
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.testing.dummy_object import DummyBuilder, DummyRunner

from tests._db_helpers import CASCADELAKE, ZNVER3, matmul, target
from tvmq.db import open_database

pytestmark = pytest.mark.timeout(180)

TRIALS = 8


@derived_object
class FolderBuilder(PyBuilder):
    """DummyBuilder, but each "artifact" in a folder of its own under ``root``, which MetaSchedule's
    default measure callbacks (RemoveBuildArtifact) can delete as they do after a real build."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def build(self, build_inputs: list) -> list:
        return [BuilderResult(str(Path(tempfile.mkdtemp(dir=self.root)) / "lib.so"), None) for _ in build_inputs]


def relax_matmul_relu(n: int = 16) -> tvm.IRModule:
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((n, n), "float32"))
    w = relax.Var("w", relax.TensorType((n, n), "float32"))
    with bb.function("main", [x, w]):
        with bb.dataflow():
            y = bb.emit(relax.op.matmul(x, w))
            z = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(z)
    return bb.get()


def fused(mod: tvm.IRModule) -> tvm.IRModule:
    """The same preparation as extract_tasks/compile_relax, before MetaScheduleApplyDatabase."""
    return tvm.transform.Sequential([
        relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR(),
    ])(mod)


def _tune(msdb, tasks, work_dir: Path, seed: int = 1) -> None:
    space = ms.space_generator.PostOrderApply(
        sch_rules=[ms.schedule_rule.MultiLevelTiling(structure="SSRSRS")], postprocs=[], mutator_probs={})
    # TuneContexts made here rather than with extracted_tasks_to_tune_contexts: its per-work_dir
    # logger set-up fails when called twice in one process
    contexts = [ms.TuneContext(mod=t.dispatched[0], target=t.target, space_generator=space,
                               search_strategy="replay-trace", task_name=t.task_name, num_threads=1,
                               rand_state=seed).clone() for t in tasks]
    weights = [float(t.weight) for t in tasks]
    with msdb.reraise_errors():
        ms.tune_tasks(tasks=contexts, task_weights=weights, work_dir=str(work_dir),
                      max_trials_global=TRIALS, num_trials_per_iter=4,
                      builder=DummyBuilder(), runner=DummyRunner(), database=msdb, cost_model="random",
                      measure_callbacks=[ms.measure_callback.AddToDatabase()])


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tune")
    db = open_database(tmp / "tvmq.db")
    mod = relax_matmul_relu()
    tasks = ms.relax_integration.extract_tasks(fused(mod), target())
    sid = db.begin_session(model_name="matmul_relu", target=target(), trials_requested=TRIALS)
    msdb = db.scoped(target(), session_id=sid)
    _tune(msdb, tasks, tmp / "work")
    db.end_session(sid, "finished", trials_done=len(msdb))
    return db, mod, tasks, sid, tmp


def test_tune_tasks_writes_records(tuned) -> None:
    db, _, tasks, sid, _ = tuned
    assert len(tasks) >= 1
    (session,) = db.sessions()
    assert session.num_records == TRIALS and session.status == "finished"
    summary = db.summarize([t.dispatched[0] for t in tasks], target())
    assert all(s.tuned and s.best_session_id == sid for s in summary)
    assert db.count_records(target(ZNVER3)) == 0
    assert db.check().ok  # every trace MetaSchedule wrote replays


def test_apply_database_uses_only_the_scoped_target(tuned) -> None:
    db, mod, tasks, _, _ = tuned
    before = fused(mod)
    names = {t.task_name for t in tasks}

    def changed(msdb, tgt) -> set[str]:
        with tgt, msdb, tvm.transform.PassContext(opt_level=3):
            after = relax.transform.MetaScheduleApplyDatabase(enable_warning=False)(before)
        return {gv.name_hint for gv, f in after.functions_items()
                if isinstance(f, tvm.tirx.PrimFunc) and gv.name_hint in names
                and not tvm_ffi.structural_equal(f, before[gv.name_hint])}

    assert changed(db.scoped(target(CASCADELAKE)), target(CASCADELAKE)) == names
    assert changed(db.scoped(target(ZNVER3)), target(ZNVER3)) == set()


def test_compile_relax_with_the_database(tuned) -> None:
    db, mod, _, _, _ = tuned
    ex = ms.relax_integration.compile_relax(db.scoped(target()), mod, target(), None)
    assert ex is not None


def test_resume_seeds_from_earlier_records(tuned) -> None:
    """A second session on the same file adds its records; the best may stay the first session's."""
    db, _, tasks, sid, tmp = tuned
    db2 = open_database(tmp / "tvmq.db")
    sid2 = db2.begin_session(model_name="matmul_relu", target=target(), trials_requested=TRIALS)
    msdb = db2.scoped(target(), session_id=sid2)
    _tune(msdb, tasks, tmp / "work2", seed=2)
    db2.end_session(sid2, "finished", trials_done=TRIALS)
    assert db2.count_records(target()) == 2 * TRIALS
    (s,) = db2.summarize([tasks[0].dispatched[0]], target())
    assert s.best_session_id in (sid, sid2)
    assert {x.num_records for x in db2.sessions()} == {TRIALS}


def test_interrupt_reports_the_trials_the_session_kept(tuned, tmp_path: Path, monkeypatch) -> None:
    """A second Ctrl-C can land after MetaSchedule committed records but before the progress
    callback counted them: the message and the session say what the database holds."""
    from rich.console import Console

    from tvmq.errors import Interrupted
    from tvmq.tuner.tune import Records, TuneConfig, tune

    _, _, tasks, _, _ = tuned
    db = open_database(tmp_path / "interrupted.db")
    sid = db.begin_session(model_name="matmul_relu", target=target(), trials_requested=64)
    commit = db.objects.commit_record

    def commit_then_ctrl_c(record, **kwargs):
        rid = commit(record, **kwargs)
        if db.session(sid).num_records == 6:  # in the middle of the second batch of 4
            raise KeyboardInterrupt
        return rid

    monkeypatch.setattr(db.objects, "commit_record", commit_then_ctrl_c)
    config = TuneConfig(trials=64, num_trials_per_iter=4, population=16, builder=FolderBuilder(tmp_path),
                        runner=DummyRunner(), measure_untuned=False, work_dir=tmp_path / "work")
    with pytest.raises(Interrupted, match="stopped by Ctrl-C after 6 trials"):
        tune(list(tasks), target(), Records.open(db, target(), sid), config, Console(file=io.StringIO()))
    db.end_session(sid, "interrupted")  # what the tune stage does on the way out
    s = db.session(sid)
    assert (s.trials_done, s.num_records, s.status) == (6, 6, "interrupted")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_real_tuning_into_the_database(tmp_path: Path) -> None:
    """A real (tiny) MetaSchedule run: LocalBuilder compiles, LocalRunner times, we store."""
    db = open_database(tmp_path / "tvmq.db")
    tgt = target({"kind": "llvm", "num-cores": 1})
    sid = db.begin_session(model_name="matmul", target=tgt, trials_requested=4)
    msdb = db.scoped(tgt, session_id=sid)
    space = ms.space_generator.PostOrderApply(
        sch_rules=[ms.schedule_rule.MultiLevelTiling(structure="SSRSRS")], postprocs=[], mutator_probs={})
    with msdb.reraise_errors():
        ms.tune_tir(matmul(), tgt, str(tmp_path / "work"), max_trials_global=4, num_trials_per_iter=4,
                    builder=ms.builder.LocalBuilder(max_workers=1, timeout_sec=300),  # worker start-up imports ~30 s of intrinsics
                    runner=ms.runner.LocalRunner(), database=msdb, cost_model="random",
                    space=space, strategy="replay-trace", num_tuning_cores=1)
    db.end_session(sid, "finished", trials_done=len(msdb))
    assert len(msdb) == 4
    best = db.best_records(target=tgt)
    assert best and 0 < best[0].mean_run_secs < 1.0
    assert ms.tir_integration.compile_tir(msdb, matmul(), tgt) is not None
