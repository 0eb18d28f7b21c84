"""One (model, target) pair of a release run: ``tvmq-tune``'s pipeline on it, and what the summary
keeps of its report. A pair's failure is its verdict, never the end of the run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from tvmq.errors import Interrupted, TvmqError, one_line

from .gate import latency_summary
from .plan import Plan, PlanModel, PlanTarget

# A tvmq error of these kinds means tvmq refused the model or the target (today's coverage); any
# other, or a bug, is an error of the run (a device that did not answer, a database that failed).
REFUSALS = {"unsupported-operators", "custom-operators", "dynamic-range-model", "not-tflite", "truncated-model",
            "model-too-large", "missing-isa", "compile-failed"}
VERDICTS = ("pass", "built", "fail", "refused", "error")


def slug(model: PlanModel, target: PlanTarget) -> str:
    """A file name for the pair: the model and the target label, nothing a shell or a URL minds."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{model.name}--{target.label}").strip("_")


@dataclass
class PairResult:
    """One row of ``summary.json``'s ``pairs`` (:meth:`to_dict`)."""

    model: str
    target: str
    mode: str
    slug: str
    verdict: str
    profile: str | None = None
    error: str | None = None
    error_kind: str | None = None
    report: dict | None = None  # the pair's report.json, when the pipeline got that far
    report_path: str | None = None  # relative to the run's folder
    artifact: dict | None = None
    instruction: dict | None = None
    change: str | None = None
    change_detail: str | None = None
    baseline: dict | None = None
    tuned_before: bool = False  # a finished session of an earlier run had this pair's budget: no tuning now
    threshold: float | None = None  # the gate's slowdown threshold for this pair (None: the default)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.model, self.target, self.mode

    def to_dict(self) -> dict:
        lat = (self.report or {}).get("latency_ms") or {}
        tuning = (self.report or {}).get("tuning")
        return {
            "slug": self.slug, "model": self.model, "target": self.target, "mode": self.mode,
            "threshold": self.threshold,
            "profile": self.profile, "verdict": self.verdict, "error": self.error, "error_kind": self.error_kind,
            "latency_ms": latency_summary(lat),
            "ratio_tvm_over_tflite": lat.get("ratio_tvm_over_tflite"),
            "ratio_ci95": lat.get("ratio_ci95"),
            "comparison": lat.get("comparison"),
            "speedup_tuned_over_untuned": lat.get("speedup_tuned_over_untuned"),
            "tuning": None if not tuning else {**{k: tuning.get(k) for k in (
                "seconds", "trials", "tasks_total", "tasks_from_db", "tasks_tuned_now")},
                "tuned_before": self.tuned_before},
            "artifact": self.artifact,
            "instruction": self.instruction,
            "report": self.report_path,
            "page": f"pairs/{self.slug}.html",
            "change": self.change, "change_detail": self.change_detail, "baseline": self.baseline,
        }


def run_pair(plan: Plan, model: PlanModel, target: PlanTarget, out_dir: Path, console: Console) -> PairResult:
    """The pipeline on one pair, its build and reports in ``out_dir/pairs/SLUG``; every failure
    but Ctrl-C becomes the pair's verdict."""
    from tvmq import pipeline
    from tvmq.options import RunOptions

    name = slug(model, target)
    pair_dir = out_dir / "pairs" / name
    result = PairResult(model=model.name, target=target.name, mode=target.mode, slug=name, verdict="error",
                        threshold=target.threshold if target.threshold is not None else plan.threshold)
    build_only = target.mode == "build-only"
    note = None if build_only else tuning_note(plan, model, target)
    done = note is not None and tuned_before(plan.db, note)
    flat = {
        "model": model.path, "images": list(model.images), "labels": model.labels, "target": target.name,
        "db": plan.db, "int8": plan.int8, "requant": plan.requant if plan.int8 else None,
        "threads": target.threads or plan.threads, "build_only": build_only,
        "rpc_tracker": target.tracker, "rpc_key": target.key, "out": pair_dir,
        "trials": 0 if build_only or done else plan.trials, "budget": None if build_only or done else plan.budget_s,
        "session_note": note,
    }
    if done:
        console.print(f"{model.name} on {target.label}: tuned by an earlier release run with this budget "
                      f"(a finished session in the database): building from its records", highlight=False)
    try:
        report = pipeline.run(RunOptions.from_mapping(flat), console)
    except Interrupted:
        raise
    except TvmqError as err:
        result.error, result.error_kind = err.message, err.kind
        result.verdict = "refused" if err.kind in REFUSALS else "error"
        return result
    except Exception as err:  # a bug in one pair: recorded with its traceback, the others still run
        from tvmq.cli.common import _write_crash_log

        log = _write_crash_log("tvmq-release", err)
        result.error = f"{type(err).__name__}: {one_line(err)} (a bug in tvmq; traceback in {log})"
        result.error_kind = "internal-error"
        return result
    result.tuned_before = done
    result.verdict = report.verdict or "error"
    result.profile = report.target.name
    result.report = json.loads((pair_dir / "report.json").read_text()) if (pair_dir / "report.json").exists() \
        else report.to_dict()
    result.report_path = f"pairs/{name}/report.json"
    if report.artifact is not None:
        result.artifact = _artifact(Path(report.artifact.path), out_dir)
    if build_only and plan.int8 and report.artifact is not None:
        result.instruction = instruction_check(Path(report.artifact.path), report.target.name)
        if result.instruction.get("found") is False:
            result.verdict = "fail"
            result.error = (f"the library has no {result.instruction['expected']}: the int8 layers do not use "
                            f"{report.target.name}'s dot-product instruction")
    return result


def tuning_note(plan: Plan, model: PlanModel, target: PlanTarget) -> str | None:
    """What marks the tuning session of this pair in the database: the model's bytes, the target,
    the code generated and the budget. None for a model that cannot be read (the run reports why)."""
    from tvmq.model.loader import load_model

    try:
        sha = load_model(model.path).sha256
    except TvmqError:
        return None
    requant = plan.requant if plan.int8 else "-"
    return (f"tvmq-release pair: model={sha} target={target.name} mode={target.mode} "
            f"threads={target.threads or plan.threads or '-'} int8={plan.int8} requant={requant} "
            f"budget_s={plan.budget_s or '-'} trials={plan.trials if plan.trials is not None else '-'}")


def tuned_before(db: str | None, note: str) -> bool:
    """Whether a finished session in ``db`` carries ``note``: an earlier release run tuned this
    pair with this budget, and its records are there to build from."""
    from tvmq.db import open_database

    try:
        database = open_database(db)
    except TvmqError:
        return False  # the pipeline reports a database it cannot open
    return any(s.note == note and s.status == "finished" for s in database.sessions())


def _artifact(lib: Path, out_dir: Path) -> dict:
    meta = json.loads((lib.parent / "model.json").read_text())
    try:
        shown = str(lib.resolve().relative_to(out_dir.resolve()))
    except ValueError:
        shown = str(lib)
    return {"path": shown, "sha256": meta.get("library_sha256"), "bytes": lib.stat().st_size}


# What the int8 kernels of each dot-product scheme (tvmq.int8.dot) compile to.
SCHEME_MNEMONICS = {"avx2": ("vpmaddubsw", "vpmaddwd"), "avx512": ("vpmaddubsw", "vpmaddwd"),
                    "vnni": ("vpdpbusd",), "amx": ("tdpbssd", "tdpbusd"), "sdot": ("sdot", "udot")}


def instruction_check(lib: Path, profile_name: str) -> dict:
    """Whether the disassembly of ``lib`` holds the dot-product instruction of the profile's int8
    scheme (``vpdpbusd``, ``vpmaddwd``, ``sdot``...): the proof that a cross-built library uses
    it. ``found`` is None where the profile has no scheme or no disassembler for its architecture
    is installed."""
    from tvmq.targets import get_profile

    profile = get_profile(profile_name)
    names = SCHEME_MNEMONICS.get(profile.int8_scheme or "", ())
    check = {"expected": "/".join(names) or profile.int8_instruction, "found": None, "count": 0}
    if not names:
        check["note"] = f"{profile.name} has no int8 dot-product scheme: nothing to look for"
        return check
    arm = profile.arch == "aarch64"
    tool = shutil.which("aarch64-linux-gnu-objdump" if arm else "objdump")
    if tool is None:
        check["note"] = f"no {'aarch64-linux-gnu-' if arm else ''}objdump installed: the instruction was not checked"
        return check
    asm = subprocess.run([tool, "-d", "--no-show-raw-insn", str(lib)], capture_output=True, text=True,
                         timeout=300).stdout
    counts = {n: len(re.findall(rf"\s{n}\s", asm)) for n in names}
    check.update(found=sum(counts.values()) > 0, count=sum(counts.values()), counts=counts)
    return check


__all__ = ["PairResult", "REFUSALS", "SCHEME_MNEMONICS", "VERDICTS", "instruction_check", "run_pair", "slug"]
