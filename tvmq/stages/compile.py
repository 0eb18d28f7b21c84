"""The compiling stages of a run: where it runs (:func:`plan`), the Relax module (:func:`prepare`),
the TIR module and its tasks (:func:`lower`), the search (:func:`tune`), the executable
(:func:`build`) and the exported library (:func:`export`). Each takes and returns typed values, so
each can be called on its own from Python."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from tvmq.model import LoadedModel, ModelInfo
from tvmq.options import BUDGET_TRIALS_CAP, CodegenOptions, TargetOptions, TuningOptions
from tvmq.report.model import ArtifactSection, HostSection, TargetSection, Transforms

from .steps import Steps


@dataclass(frozen=True)
class Plan:
    """The machine a run compiles for and where its code runs."""

    profile: object  # tvmq.targets.TargetProfile
    reason: str  # why this profile (``--target native`` says what it detected)
    target: object  # tvm.target.Target, with the thread count as num-cores
    threads: int
    host: object  # tvmq.targets.HostInfo
    where: TargetOptions
    runner: object | None = None  # MetaSchedule's RPC runner for the tracker's devices

    @property
    def tvm_target_json(self) -> dict:
        """The target as the JSON dict TVM itself prints (``str(Target)`` is JSON in TVM 0.27)."""
        return json.loads(str(self.target))

    def target_section(self) -> TargetSection:
        where = self.where
        measured_on = None if where.build_only else (
            f"rpc {where.rpc_key}@{where.rpc_tracker}" if where.rpc_tracker else "this host")
        return TargetSection(self.profile.name, self.reason, self.tvm_target_json, self.threads, measured_on)

    def host_section(self) -> HostSection:
        return HostSection(self.host.model_name, self.host.logical_cores, self.host.arch)


def plan(where: TargetOptions, steps: Steps) -> Plan:
    """Resolve the profile and the thread count; check that this host (or the tracker) can run it."""
    from tvmq.targets import host_info, resolve_target

    host = host_info()
    profile, reason = resolve_target(where.name)
    if where.threads:
        threads = where.threads
    elif where.measure_here:
        threads = min(profile.default_threads or host.logical_cores, host.logical_cores)
    else:
        threads = profile.default_threads or 1
    steps.print(f"target [bold]{profile.name}[/]: {reason}")
    if where.measure_here:
        profile.check_runnable()
    runner = None
    if where.remote:
        from tvmq.tuner.remote import check_tracker, make_rpc_runner

        check_tracker(where.rpc_tracker, where.rpc_key, require_free=False)
        runner = make_rpc_runner(where.rpc_tracker, where.rpc_key)
        steps.print(f"measuring on devices '{where.rpc_key}' of the RPC tracker {where.rpc_tracker}")
    return Plan(profile, reason, profile.tvm_target(num_cores=threads), threads, host, where, runner)


@dataclass(frozen=True)
class Prepared:
    """A model as a Relax module after import, the int8 lowering and the profile's layout.

    A model TVM compiles whole is one ``Prepared``; a partitioned model would be several, one
    per TVM-compiled region, each going through :func:`lower`, :func:`tune` and :func:`build`."""

    model: LoadedModel
    info: ModelInfo
    mod: object  # tvm.IRModule (Relax)
    profile: object
    codegen: CodegenOptions
    transforms: Transforms


def prepare(model: LoadedModel, info: ModelInfo, profile, codegen: CodegenOptions, steps: Steps) -> Prepared:
    from tvmq.tuner.compile import import_relax
    from tvmq.tuner.layout import apply_profile_transforms, conv_summary

    with steps.step("import", "import into Relax"):
        mod = import_relax(model)
    int8 = {}
    if codegen.int8:
        from tvmq.int8 import lower_qdq_to_int8

        scheme = profile.int8_scheme
        with steps.step("int8", "lower QDQ to integer arithmetic"
                        + (f" ({scheme} dot products" if scheme else " (no dot-product intrinsics for this target")
                        + f", {codegen.requant} requantization)"):
            lowering = lower_qdq_to_int8(mod, mode=codegen.requant, scheme=scheme)
        mod = lowering.mod
        int8 = {"requant": codegen.requant, "int8": lowering.stats.to_dict(), "int8_intrinsics": lowering.intrinsics}
    winograd = profile.winograd if codegen.winograd is None else codegen.winograd
    with steps.step("layout", f"apply {profile.name}'s layout ({codegen.layout or profile.layout}) "
                    f"and strategy (winograd {'on' if winograd else 'off'})"):
        mod = apply_profile_transforms(mod, profile, layout=codegen.layout, winograd=codegen.winograd)
    return Prepared(model, info, mod, profile, codegen, Transforms(conv_summary(mod), **int8))


@dataclass(frozen=True)
class Lowered:
    """The TIR module MetaSchedule sees (Relax's zero pipeline, run once) and its tuning tasks
    (extracted once, anchor-block equality, reshapes that run as views left out)."""

    prepared: Prepared
    target: object
    mod: object  # tvm.IRModule after the zero pipeline, no schedule applied
    tasks: tuple  # ms.ExtractedTask
    dedup: object  # tvmq.tuner.tasks.TaskDedup


def lower(prepared: Prepared, target, steps: Steps) -> Lowered:
    from tvmq.tuner.compile import lower_to_tir
    from tvmq.tuner.tasks import TaskDedup, extract

    with steps.step("tasks", "extract tuning tasks"):
        mod = lower_to_tir(prepared.mod, target)
        tasks = tuple(extract(mod, target))
        dedup = TaskDedup.of(mod, tasks)
    return Lowered(prepared, target, mod, tasks, dedup)


def open_records(db: str | None, lowered: Lowered, plan_: Plan, trials: int, note: str | None = None):
    """The tuning database (``db``: URL or path, None for the default) and this run's view of it;
    a session is begun when ``trials`` > 0 and ended by :func:`tune`."""
    from tvmq.db import open_database
    from tvmq.tuner.tune import Records

    database = open_database(db)
    session_id = None
    if trials > 0:
        model = lowered.prepared.model
        session_id = database.begin_session(model_sha256=model.sha256, model_name=model.name,
                                            target_profile=plan_.profile.name, target=lowered.target,
                                            trials_requested=trials, note=note)
    return Records.open(database, lowered.target, session_id)


def tune(lowered: Lowered, records, plan_: Plan, tuning: TuningOptions, work_dir: Path, steps: Steps):
    """Search the tasks the database lacks (all of them with ``retune``) into ``records``
    (:func:`open_records`); returns the :class:`~tvmq.tuner.tune.TuningResult`: what the
    database holds for every task, and what this run measured."""
    from tvmq.errors import Interrupted
    from tvmq.tuner.tasks import results_table, tasks_table
    from tvmq.tuner.tune import TuneConfig, tune as search

    config = TuneConfig(trials=tuning.trials, trials_per_task=tuning.trials_per_task, seed=tuning.seed,
                        retune=tuning.retune, threads=plan_.threads, work_dir=work_dir, runner=plan_.runner,
                        budget_s=tuning.budget_s)
    if tuning.budget_s and tuning.trials:
        text = f"tune for {tuning.budget_s:.0f} s" + (f" (at most {tuning.trials} trials)"
                                                     if tuning.trials < BUDGET_TRIALS_CAP else "")
    else:
        text = f"tune ({tuning.trials} trials)" if tuning.trials else "look up the database"
    status = "failed"
    try:
        with records.heartbeat(), steps.step("tune", text):
            result = search(list(lowered.tasks), lowered.target, records, config, steps.console)
        status = "finished"
    except (KeyboardInterrupt, Interrupted):
        status = "interrupted"
        raise
    finally:
        if records.session_id is not None:  # its trials: the records it committed
            records.database.end_session(records.session_id, status=status)
    result.dedup = lowered.dedup.to_dict()
    d = lowered.dedup
    views = f" (+ {d.views} reshapes that run as views)" if d.views else ""
    steps.print(f"tasks: {d.fused_calls} fused calls{views} → {d.structural} structurally distinct → "
                f"{d.anchor_block} with anchor-block sharing; "
                f"{sum(t.in_db for t in result.tasks)} have records for this target")
    if tuning.trials > 0:
        steps.print(results_table(result.tasks))
    elif tuning.show_tasks:
        steps.print(tasks_table(result.tasks, "Tuning tasks"))
    return result


def build(lowered: Lowered, view, untuned: str, steps: Steps, name: str = "build", text: str | None = None):
    """The executable of ``lowered`` with the schedules ``view`` (a scoped database, or None)
    holds; see :func:`tvmq.tuner.compile.build_lowered` for ``untuned``."""
    from tvmq.tuner.compile import build_lowered

    profile = lowered.prepared.profile
    text = text or (f"build for {profile.name}" + (" with tuned schedules" if view is not None else "")
                    + (" (other functions: MetaSchedule's first design-space point)" if untuned == "design-space" else ""))
    with steps.step(name, text):
        return build_lowered(lowered.mod, lowered.target, database=view, untuned=untuned)


def export(executable, prepared: Prepared, plan_: Plan, out_dir: Path, steps: Steps,
           lib_name: str | None = None, whole=None) -> ArtifactSection:
    """``model.so`` + ``model.json`` in ``out_dir`` (``lib_name``: another library name, no metadata).
    ``model.json`` records what :func:`tvmq.tuner.artifact.load` checks before loading the library:
    its size and sha256, the versions that built it, and the architecture and CPU flags its code needs.
    ``whole``: a partitioned model's :class:`~tvmq.stages.partition.Split`: the build takes and gives
    what the whole takes and gives, and holds its TFLite parts."""
    from tvmq.tuner import artifact

    if lib_name is not None:
        lib = out_dir / lib_name
        plan_.profile.export_library(executable, lib)
        return ArtifactSection(str(lib), lib.stat().st_size)
    info, profile, sha256 = prepared.info, plan_.profile, prepared.model.sha256
    if whole is not None and whole.partition is not None:
        info, sha256 = whole.checked_info, whole.source_sha256
    with steps.step("export", f"export to {out_dir}"):
        lib = artifact.export(executable, out_dir, {
            "model": prepared.model.name, "model_sha256": sha256, "target": profile.name,
            "tvm_target": plan_.tvm_target_json, "requires": {"arch": profile.arch, "cpu_flags": profile.host_flags},
            "inputs": [asdict(t) for t in info.inputs], "outputs": [asdict(t) for t in info.outputs],
            "threads": plan_.threads, "partition": whole.artifact_parts() if whole is not None else None,
        }, export_fn=profile.export_library)
    return ArtifactSection(str(lib), lib.stat().st_size)


__all__ = ["Lowered", "Plan", "Prepared", "build", "export", "lower", "open_records", "plan", "prepare", "tune"]
