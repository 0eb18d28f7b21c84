"""The one job, as a chain of stages: outputs → plan → load → split → prepare → lower → tune → build →
export → verify → benchmark → report (the output paths are checked first, so that no run ends
unable to write what it measured).

:func:`run` is what ``tvmq-tune`` does; it returns the typed :class:`~tvmq.report.model.Report`
(``to_dict()`` is the JSON written) and raises :class:`tvmq.errors.TvmqError` for anything a
user can cause. Each stage is in :mod:`tvmq.stages` and can be called on its own.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from tvmq.db.engine import check_location
from tvmq.errors import OutputError, UnsupportedOperators
from tvmq.options import RunOptions
from tvmq.redact import redact_text
from tvmq.report.model import Report
from tvmq.stages import (Outputs, Steps, benchmark, benchmark_untuned, build, explain, export, inputs, load, lower,
                         open_records, outputs, plan, prepare, runnable, split, tune, verification_reference, verify)


def default_out_dir(model_name: str, target_name: str) -> Path:
    return Path("tvmq_out") / f"{model_name}-{target_name}"


def run(opts: RunOptions, console: Console | None = None) -> Report:
    steps = Steps(console or Console(stderr=True))
    outputs(opts.output)  # --out and --json as given, before any work
    check_location(opts.tuning.db)  # and the database: a bad --db fails now, not after the build
    where = opts.target
    plan_ = plan(where, steps)
    whole, whole_info = load(opts.source, steps)
    parts = split(whole, whole_info, steps)
    if parts.partition is not None and where.rpc_tracker:
        why = parts.partition.unsupported
        raise UnsupportedOperators(f"{whole.name} runs in parts, TVM's and TFLite's (around {', '.join(why)}): a "
                                   "partitioned model runs here or is cross-built (--build-only), not on an RPC "
                                   "device yet", list(why))
    model, info = parts.tvm_model, parts.tvm_info
    paths = outputs(opts.output, default_out_dir(model.name, plan_.profile.name))
    out_dir = paths.out_dir
    feed = inputs(parts.checked_info, opts.source) if not where.build_only else None
    from tvmq.tuner.compile import set_threads

    set_threads(plan_.threads)
    prepared = prepare(model, info, plan_.profile, opts.codegen, steps)
    report = Report(model={**whole_info.to_dict(), "source": redact_text(model.source), "path": str(model.path)},
                    target=plan_.target_section(), host=plan_.host_section(), transforms=prepared.transforms,
                    timings_s=steps.timings,
                    partition=parts.partition.to_dict() if parts.partition is not None else None)
    lowered = lower(prepared, plan_.target, steps)
    records = open_records(opts.tuning.db, lowered, plan_, opts.tuning.trials, opts.tuning.session_note)
    report.tuning = tune(lowered, records, plan_, opts.tuning, out_dir / "tuning_logs", steps)
    # What the functions the database has no schedule for become. A build nobody can measure
    # here (--build-only): MetaSchedule's first design-space point everywhere. A tuned build: that
    # point only for the int8 dot products (their plain loops never reach the instruction the
    # weights were packed for), TVM's default for the rest. bench_int8.py measures the choice.
    view = records.view if any(t.in_db for t in report.tuning.tasks) else None
    untuned = "design-space" if where.build_only else ("design-space-dots" if view is not None else "naive")
    executable = build(lowered, view, untuned, steps)
    report.artifact = export(executable, prepared, plan_, out_dir, steps, whole=parts)
    if where.build_only:
        return _finish(report, "built", paths, steps)

    from tvmq.model import Reference
    from tvmq.report.verify import verification_policy

    built = parts.runnable(runnable(executable, Path(report.artifact.path), where), plan_.threads)
    reference = Reference(parts.checked_model, num_threads=plan_.threads)
    report.versions = _versions(reference.interpreter)
    policy = verification_policy(opts.codegen.int8, opts.codegen.requant, opts.measurement.tolerance)
    checker = verification_reference(parts.checked_model, policy, plan_.threads, reference)
    verification = verify(built, checker, feed, policy, steps)
    report.images = verification.images
    report.verification = verification.to_dict()
    if opts.measurement.explain_mismatch:
        failing = next((v.image for v in verification.images if not v.passed), None)
        report.mismatch = explain(prepared, plan_.target, view, untuned, plan_.threads, feed, policy, steps,
                                  failing=failing)
    arrays = feed.samples[0].arrays
    report.latencies = benchmark(built, reference, arrays, opts.measurement, steps)
    if view is not None:
        with steps.step("untuned", "build and benchmark the untuned model for comparison"):
            getattr(built, "close", lambda: None)()  # an RPC device goes back to the tracker
            plain = build(lowered, None, "naive", Steps.quiet())
            lib = export(plain, prepared, plan_, out_dir, steps, lib_name="untuned.so") if where.rpc_tracker else None
            untuned_stats = benchmark_untuned(parts.runnable(runnable(plain, lib and Path(lib.path), where), plan_.threads),
                                              arrays, opts.measurement)
        report.latencies = report.latencies.with_untuned(untuned_stats)
    return _finish(report, verification.verdict, paths, steps)


def _versions(reference_name: str | None = None) -> dict:
    from tvmq.versions import stack_versions

    return stack_versions(reference_name)


def _finish(report: Report, verdict: str, paths: Outputs, steps: Steps) -> Report:
    from tvmq.report.html import write_run_page
    from tvmq.report.render import print_report, write_reports

    report.verdict = verdict
    report.versions = report.versions or _versions()
    print_report(report, steps.console)
    html_path = paths.markdown_path.with_suffix(".html") if paths.markdown_path else None
    try:
        write_reports(report, paths.json_path, paths.markdown_path)
        if html_path is not None:
            write_run_page(report.to_dict(), html_path)
    except OSError as err:  # checked writable at the start; the disk may have filled since
        raise OutputError(f"cannot write the report: {err}") from None
    steps.print(f"report: {paths.json_path}, {paths.markdown_path} and {html_path}")
    return report


__all__ = ["RunOptions", "default_out_dir", "run"]
