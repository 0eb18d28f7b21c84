"""The one job: model → tasks → tuning → tuned build → TFLite-verified outputs → benchmark report.

:func:`run` is what ``tvmq-tune`` does; it returns the report (the dict written as JSON) and
raises :class:`tvmq.errors.TvmqError` for anything a user can cause.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from tvmq.errors import UsageError


@dataclass
class Options:
    model: str
    target: str = "native"
    images: list[str] = field(default_factory=list)
    labels: str | None = None
    trials: int = 0
    retune: bool = False
    trials_per_task: int | None = None
    seed: int = 0
    db: str | None = None
    json_path: Path | None = None
    out_dir: Path | None = None
    threads: int | None = None
    repeat: int = 30
    tolerance: float = 2.0
    build_only: bool = False
    rpc_tracker: str | None = None
    rpc_key: str | None = None
    show_tasks: bool = False
    int8: bool = False  # lower QDQ to integer arithmetic (tvmq.int8)
    requant: str = "tflite"  # with int8: "tflite" (fixed point, bit-exact) or "xnnpack" (fp32 scaling)
    layout: str = "profile"  # "profile" (the target profile's choice), NHWC, NCHW, NCHW16c, ...
    winograd: bool | None = None  # None: the profile's choice
    runner: object | None = None  # an ms Runner for remote measurement


class Step:
    """Times a named step and prints it, so a user sees where the time goes."""

    def __init__(self, console: Console, timings: dict, name: str, text: str):
        self.console, self.timings, self.name, self.text = console, timings, name, text

    def __enter__(self):
        self.start = time.perf_counter()
        self.status = self.console.status(self.text + " …")
        self.status.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.status.__exit__(exc_type, exc, tb)
        elapsed = time.perf_counter() - self.start
        self.timings[self.name] = round(elapsed, 3)
        if exc_type is None:
            self.console.print(f"[green]✓[/] {self.text} [dim]({elapsed:.1f} s)[/]")
        return False


def default_out_dir(model_name: str, target_name: str) -> Path:
    return Path("tvmq_out") / f"{model_name}-{target_name}"


def run(opts: Options, console: Console | None = None) -> dict:
    console = console or Console(stderr=True)
    timings: dict[str, float] = {}

    from tvmq.targets import host_info, resolve_target

    host = host_info()
    profile, reason = resolve_target(opts.target)
    measure_here = not opts.build_only and not opts.rpc_tracker
    if opts.threads:
        threads = opts.threads
    elif measure_here:
        threads = min(profile.default_threads or host.logical_cores, host.logical_cores)
    else:
        threads = profile.default_threads or 1
    target = profile.tvm_target(num_cores=threads)
    console.print(f"target [bold]{profile.name}[/]: {reason}")
    if opts.build_only and opts.trials > 0:
        raise UsageError("--build-only tunes nothing: drop --trials, or tune on the device with --rpc-tracker")
    if bool(opts.rpc_tracker) != bool(opts.rpc_key):
        raise UsageError("--rpc-tracker and --rpc-key go together")
    if opts.requant != "tflite" and not opts.int8:
        raise UsageError("--requant chooses how --int8 kernels requantize: add --int8 (the QDQ float graph "
                         "has no integer requantization to choose)")
    if measure_here:
        profile.check_runnable()
    if opts.rpc_tracker and not opts.build_only:
        from tvmq.tuner.remote import check_tracker, make_rpc_runner

        check_tracker(opts.rpc_tracker, opts.rpc_key, require_free=False)
        opts.runner = make_rpc_runner(opts.rpc_tracker, opts.rpc_key)
        console.print(f"measuring on devices '{opts.rpc_key}' of the RPC tracker {opts.rpc_tracker}")

    from tvmq.model import check_convertible, inspect_model, load_model, load_labels, make_inputs
    from tvmq.report.render import model_tables

    with Step(console, timings, "load", f"load {opts.model}"):
        loaded = load_model(opts.model)
        info = inspect_model(loaded)
    for table in model_tables(info.to_dict()):
        console.print(table)
    check_convertible(info)
    labels = load_labels(opts.labels)
    samples = make_inputs(info, opts.images, seed=opts.seed) if not opts.build_only else []

    from tvmq.tuner.compile import build, import_relax, set_threads

    set_threads(threads)
    with Step(console, timings, "import", "import into Relax"):
        mod = import_relax(loaded)
    transforms: dict = {}
    if opts.int8:
        from tvmq.int8 import intrinsic_counts, lower_qdq_to_int8, lowering_stats

        scheme = profile.int8_scheme
        with Step(console, timings, "int8", "lower QDQ to integer arithmetic"
                  + (f" ({scheme} dot products" if scheme else " (no dot-product intrinsics for this target")
                  + f", {opts.requant} requantization)"):
            mod = lower_qdq_to_int8(mod, mode=opts.requant, scheme=scheme)
            transforms["requant"] = opts.requant
            transforms["int8"] = lowering_stats(mod)
            transforms["int8_intrinsics"] = intrinsic_counts(mod)
    layout = opts.layout if opts.layout != "profile" else None
    from tvmq.tuner.layout import apply_profile_transforms, conv_summary

    with Step(console, timings, "layout", f"apply {profile.name}'s layout ({layout or profile.layout}) "
              f"and strategy (winograd {'on' if (profile.winograd if opts.winograd is None else opts.winograd) else 'off'})"):
        mod = apply_profile_transforms(mod, profile, layout=layout, winograd=opts.winograd)
        transforms["convolutions"] = conv_summary(mod)

    report: dict = {
        "tvmq_report": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": {**info.to_dict(), "source": loaded.source, "path": str(loaded.path)},
        "target": {"name": profile.name, "reason": reason, "tvm_target": _target_json(target),
                   "threads": threads},
        "host": {"cpu": host.model_name, "cores": host.logical_cores, "arch": host.arch},
        "transforms": transforms,
        "verdict": None,
        "images": [],
        "latency_ms": {},
        "timings_s": timings,
    }

    out_dir = opts.out_dir or default_out_dir(loaded.name, profile.name)
    database, scoped, tuning = _tune(opts, loaded, mod, target, profile, threads, out_dir, console, timings)
    if tuning is not None:
        report["tuning"] = tuning.to_dict()

    # What the functions the database has no schedule for become. A build nobody can measure
    # here (--build-only): MetaSchedule's first design-space point (tensorized, parallel,
    # vectorized). A tuned build: that point only for the int8 dot products (their plain loops
    # never reach the instruction the weights were packed for), TVM's default for the rest.
    # Measured on int8 mobilenet_v2 (bench database, 512 trials, medians of 6x20 runs):
    # 10.2 ms as chosen, 12.2 ms with the point everywhere; and with only 4 of 71 tasks tuned,
    # 23 ms with the point everywhere against 73 ms with naive loops.
    untuned = "design-space" if opts.build_only else ("design-space-dots" if scoped is not None else "naive")
    with Step(console, timings, "build", f"build for {profile.name}" + (" with tuned schedules" if scoped else "")
              + (" (other functions: MetaSchedule's first design-space point)" if opts.build_only else "")):
        executable = build(mod, target, database=scoped, untuned=untuned)

    from tvmq.tuner import artifact

    with Step(console, timings, "export", f"export to {out_dir}"):
        lib = artifact.export(
            executable,
            out_dir,
            {
                "model": loaded.name,
                "model_sha256": loaded.sha256,
                "target": profile.name,
                "tvm_target": _target_json(target),
                "inputs": [t.__dict__ for t in info.inputs],
                "outputs": [t.__dict__ for t in info.outputs],
                "threads": threads,
            },
            export_fn=profile.export_library,
        )
    report["artifact"] = {"path": str(lib), "bytes": lib.stat().st_size}

    from tvmq.model import Reference
    from tvmq.versions import stack_versions

    if opts.build_only:
        report["versions"] = stack_versions()
        report["verdict"] = "built"
        return _finish(report, opts, out_dir, console)

    from tvmq.report.stats import latency_stats
    from tvmq.report.verify import compare_outputs

    runnable = _runnable(executable, lib, opts)
    report["target"]["measured_on"] = f"rpc {opts.rpc_key}@{opts.rpc_tracker}" if opts.rpc_tracker else "this host"
    reference = Reference(loaded, num_threads=threads)
    report["versions"] = stack_versions(reference.name)
    names = [t.name for t in info.outputs]
    with Step(console, timings, "verify", f"verify {len(samples)} input(s) against {reference.name}"):
        for sample in samples:
            verdict = compare_outputs(
                sample.name, runnable.run(sample.arrays), reference.run(sample.arrays), names,
                labels=labels, tolerance=opts.tolerance,
            )
            report["images"].append(verdict.to_dict())
    report["verdict"] = "pass" if all(v["passed"] for v in report["images"]) else "fail"

    bench_input = samples[0].arrays
    with Step(console, timings, "benchmark", f"benchmark TVM and TFLite ({opts.repeat} runs each)"):
        tvm_s = runnable.benchmark(bench_input, repeat=opts.repeat)
        tfl_s = reference.benchmark(bench_input, repeat=opts.repeat)
    lat = report["latency_ms"]
    lat["tvm"] = latency_stats(tvm_s)
    lat["tflite"] = latency_stats(tfl_s)
    lat["ratio_tvm_over_tflite"] = lat["tvm"]["median"] / lat["tflite"]["median"]
    if scoped is not None:
        with Step(console, timings, "untuned", "build and benchmark the untuned model for comparison"):
            untuned_exe = build(mod, target, database=None)
            untuned_lib = None
            if opts.rpc_tracker:
                untuned_lib = out_dir / "untuned.so"
                profile.export_library(untuned_exe, untuned_lib)
            untuned = _runnable(untuned_exe, untuned_lib, opts)
            lat["tvm_untuned"] = latency_stats(untuned.benchmark(bench_input, repeat=max(3, opts.repeat // 3)))
        lat["speedup_tuned_over_untuned"] = lat["tvm_untuned"]["median"] / lat["tvm"]["median"]
    return _finish(report, opts, out_dir, console)


def _runnable(executable, lib: Path | None, opts: Options):
    """Where the build runs: here, or on a device leased from the RPC tracker."""
    if opts.rpc_tracker:
        from tvmq.tuner.remote import RemoteRunnable

        return RemoteRunnable(lib, opts.rpc_tracker, opts.rpc_key)
    from tvmq.tuner.compile import Runnable

    return Runnable(executable)


def _tune(opts: Options, loaded, mod, target, profile, threads: int, out_dir: Path, console: Console,
          timings: dict):
    """Open the database, tune when asked, and return (database, scoped view or None, result or None).

    The scoped view is returned whenever the database holds records for this target's tasks, so
    ``--trials 0`` builds from the database alone.
    """
    from tvmq.db import open_database
    from tvmq.tuner.compile import lower_to_tir
    from tvmq.tuner.tasks import DEFAULT_MODULE_EQUALITY, dedup_counts, results_table, tasks_table
    from tvmq.tuner.tune import TuneConfig, tune

    database = open_database(opts.db)
    with Step(console, timings, "tasks", "extract tuning tasks"):
        lowered = lower_to_tir(mod, target)
        dedup = dedup_counts(lowered, target)
    session_id = None
    if opts.trials > 0:
        session_id = database.begin_session(
            model_sha256=loaded.sha256, model_name=loaded.name, target_profile=profile.name,
            target=target, trials_requested=opts.trials,
        )
    config = TuneConfig(trials=opts.trials, trials_per_task=opts.trials_per_task, seed=opts.seed, retune=opts.retune,
                        threads=threads, work_dir=out_dir / "tuning_logs", runner=opts.runner)
    status = "failed"
    try:
        with Step(console, timings, "tune", f"tune ({opts.trials} trials)" if opts.trials else "look up the database"):
            result = tune(lowered, target, database, session_id, config, console)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except Exception as err:
        from tvmq.errors import Interrupted

        status = "interrupted" if isinstance(err, Interrupted) else "failed"
        raise
    finally:
        if session_id is not None:
            database.end_session(session_id, status=status, trials_done=None)
    result.dedup = dedup
    views = f" (+ {dedup['views']} reshapes that run as views)" if dedup.get("views") else ""
    console.print(f"tasks: {dedup['fused_calls']} fused calls{views} → {dedup['structural']} structurally distinct → "
                  f"{dedup['anchor-block']} with {DEFAULT_MODULE_EQUALITY} sharing; "
                  f"{sum(t.in_db for t in result.tasks)} have records for this target")
    if opts.trials > 0:
        console.print(results_table(result.tasks))
    elif opts.show_tasks:
        console.print(tasks_table(result.tasks, "Tuning tasks"))
    covered = any(t.in_db for t in result.tasks)
    scoped = database.scoped(target, module_equality=DEFAULT_MODULE_EQUALITY) if covered else None
    return database, scoped, result


def _target_json(target) -> dict:
    """The target as the JSON dict TVM itself prints (``str(Target)`` is JSON in TVM 0.27)."""
    import json

    return json.loads(str(target))


def _finish(report: dict, opts: Options, out_dir: Path, console: Console) -> dict:
    from tvmq.report.render import print_report, write_reports

    print_report(report, console)
    json_path = opts.json_path or out_dir / "report.json"
    write_reports(report, json_path, out_dir / "report.md")
    console.print(f"report: {json_path} and {out_dir / 'report.md'}")
    return report


__all__ = ["Options", "run"]
