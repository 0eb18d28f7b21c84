"""The one job, as a chain of stages: plan → load → prepare → lower → tune → build → export →
verify → benchmark → report.

:func:`run` is what ``tvmq-tune`` does; it returns the typed :class:`~tvmq.report.model.Report`
(``to_dict()`` is the JSON written) and raises :class:`tvmq.errors.TvmqError` for anything a
user can cause. Each stage is in :mod:`tvmq.stages` and can be called on its own.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tvmq.options import RunOptions
from tvmq.report.model import Report
from tvmq.stages import (Steps, benchmark, benchmark_untuned, build, export, inputs, load, lower,
                         open_records, plan, prepare, runnable, tune, verify)


def default_out_dir(model_name: str, target_name: str) -> Path:
    return Path("tvmq_out") / f"{model_name}-{target_name}"


def run(opts: RunOptions, console: Console | None = None) -> Report:
    steps = Steps(console or Console(stderr=True))
    where = opts.target
    plan_ = plan(where, steps)
    model, info = load(opts.source, steps)
    feed = inputs(info, opts.source) if not where.build_only else None
    from tvmq.tuner.compile import set_threads

    set_threads(plan_.threads)
    prepared = prepare(model, info, plan_.profile, opts.codegen, steps)
    report = Report(model={**info.to_dict(), "source": model.source, "path": str(model.path)},
                    target=plan_.target_section(), host=plan_.host_section(), transforms=prepared.transforms,
                    timings_s=steps.timings)
    out_dir = opts.output.out_dir or default_out_dir(model.name, plan_.profile.name)
    lowered = lower(prepared, plan_.target, steps)
    records = open_records(opts.tuning.db, lowered, plan_, opts.tuning.trials)
    report.tuning = tune(lowered, records, plan_, opts.tuning, out_dir / "tuning_logs", steps)
    # What the functions the database has no schedule for become. A build nobody can measure
    # here (--build-only): MetaSchedule's first design-space point everywhere. A tuned build: that
    # point only for the int8 dot products (their plain loops never reach the instruction the
    # weights were packed for), TVM's default for the rest. bench_int8.py measures the choice.
    view = records.view if any(t.in_db for t in report.tuning.tasks) else None
    untuned = "design-space" if where.build_only else ("design-space-dots" if view is not None else "naive")
    executable = build(lowered, view, untuned, steps)
    report.artifact = export(executable, prepared, plan_, out_dir, steps)
    if where.build_only:
        return _finish(report, "built", opts, out_dir, steps)

    from tvmq.model import Reference

    built = runnable(executable, Path(report.artifact.path), where)
    reference = Reference(model, num_threads=plan_.threads)
    report.versions = _versions(reference.name)
    verification = verify(built, reference, feed, opts.measurement, steps)
    report.images = verification.images
    arrays = feed.samples[0].arrays
    report.latencies = benchmark(built, reference, arrays, opts.measurement, steps)
    if view is not None:
        with steps.step("untuned", "build and benchmark the untuned model for comparison"):
            plain = build(lowered, None, "naive", Steps.quiet())
            lib = export(plain, prepared, plan_, out_dir, steps, lib_name="untuned.so") if where.rpc_tracker else None
            untuned_stats = benchmark_untuned(runnable(plain, lib and Path(lib.path), where), arrays, opts.measurement)
        report.latencies = report.latencies.with_untuned(untuned_stats)
    return _finish(report, verification.verdict, opts, out_dir, steps)


def _versions(reference_name: str | None = None) -> dict:
    from tvmq.versions import stack_versions

    return stack_versions(reference_name)


def _finish(report: Report, verdict: str, opts: RunOptions, out_dir: Path, steps: Steps) -> Report:
    from tvmq.report.render import print_report, write_reports

    report.verdict = verdict
    report.versions = report.versions or _versions()
    print_report(report, steps.console)
    json_path = opts.output.json_path or out_dir / "report.json"
    write_reports(report, json_path, out_dir / "report.md")
    steps.print(f"report: {json_path} and {out_dir / 'report.md'}")
    return report


__all__ = ["RunOptions", "default_out_dir", "run"]
