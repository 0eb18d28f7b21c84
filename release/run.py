"""A release run: every pair of a plan in turn, the summary written after each (a run cut short
keeps what it measured), the gate against the baseline, the HTML pages and the table.

Pairs run one after another, in this process: local ones would disturb each other's timings,
and one tuning database is shared by all, so a task two models share is tuned once (the
second pair finds its records).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tvmq.errors import Interrupted, OutputError
from tvmq.files import write_atomically
from tvmq.stages.output import check_folder

from .gate import exit_status, gate, worst
from .pairs import PairResult, run_pair
from .plan import Plan

SUMMARY_FORMAT = 1
COLOURS = {"pass": "green", "built": "blue", "fail": "red", "refused": "yellow", "error": "magenta"}


@dataclass
class ReleaseRun:
    plan: Plan
    out_dir: Path
    baseline: list[dict] | None = None
    baseline_source: str | None = None
    threshold: float | None = None  # --threshold: for every pair; None: the plan's (or 5%)
    pairs: list[PairResult] = field(default_factory=list)
    interrupted: bool = False
    started: float = field(default_factory=time.time)

    def summary(self) -> dict:
        from tvmq.targets.host import host_info

        rows = [p.to_dict() for p in self.pairs]
        result = gate(rows, self.baseline, self.threshold)
        for row in rows:
            change = result.changes.get((row["model"], row["target"], row["mode"]))
            if change is not None:
                row.update(change.to_dict(), baseline=change.baseline)
        level = "error" if self.interrupted else worst(rows, result)
        host, settings = host_info(), self.plan.to_dict()
        return {
            "tvmq_release": SUMMARY_FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "plan": self.plan.source, "settings": settings, "db": settings["db"],
            "host": {"cpu": host.model_name, "cores": host.logical_cores, "arch": host.arch},
            "baseline": self.baseline_source, "threshold": self.threshold,
            "interrupted": self.interrupted,
            "worst": level, "exit_status": 130 if self.interrupted else exit_status(level),
            "regressions": [{"model": k[0], "target": k[1], "mode": k[2], "detail": result.changes[k].detail}
                            for k in result.regressions],
            "gone": [{"model": k[0], "target": k[1], "mode": k[2]} for k in result.gone],
            "pairs": rows,
        }


def run_release(run: ReleaseRun, console: Console) -> dict:
    """Every pair of ``run.plan``; returns the summary (also written to ``out_dir/summary.json``,
    after each pair, and rendered to ``out_dir/index.html``)."""
    check_folder(run.out_dir, "the output folder (--out)")
    pairs = run.plan.pairs()
    try:
        for i, (model, target) in enumerate(pairs, 1):
            console.rule(f"[bold]pair {i}/{len(pairs)}: {model.name} on {target.label}")
            result = run_pair(run.plan, model, target, run.out_dir, console)
            run.pairs.append(result)
            line = f"{result.verdict}" + (f": {result.error}" if result.error else "")
            console.print(f"[{COLOURS.get(result.verdict, 'white')}]{model.name} on {target.label}: {line}",
                          highlight=False, soft_wrap=True)
            write_summary(run.summary(), run.out_dir, pages=False)
    except (KeyboardInterrupt, Interrupted):
        run.interrupted = True
        write_summary(run.summary(), run.out_dir)
        raise Interrupted(f"release run stopped by Ctrl-C after {len(run.pairs)} of {len(pairs)} pairs; "
                          f"{run.out_dir / 'summary.json'} holds them") from None
    summary = run.summary()
    write_summary(summary, run.out_dir)
    return summary


def write_summary(summary: dict, out_dir: Path, pages: bool = True) -> None:
    """``summary.json`` (written to a temporary file, then renamed: never half a file) and, with
    ``pages``, ``index.html`` and a page per pair."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
        if pages:
            from tvmq.report.html_release import write_release_pages

            write_release_pages(summary, out_dir)
    except OSError as err:
        raise OutputError(f"cannot write the release summary in {out_dir}: {err.strerror or err}") from None


def summary_table(summary: dict) -> Table:
    """The matrix as rows, for the terminal."""
    table = Table(title=f"release run: {summary['plan']}", title_justify="left")
    for col in ("model", "target", "verdict", "tvm ms (95% CI)", "x TFLite (95% CI)", "tuned/untuned", "change"):
        table.add_column(col)
    for p in summary["pairs"]:
        tvm = ((p.get("latency_ms") or {}).get("tvm") or {})
        table.add_row(p["model"], p["target"] + ("" if p["mode"] == "local" else f" ({p['mode']})"),
                      f"[{COLOURS.get(p['verdict'], 'white')}]{p['verdict']}",
                      _with_ci(tvm.get("median"), tvm.get("ci95")),
                      _with_ci(p.get("ratio_tvm_over_tflite"), p.get("ratio_ci95"), "x"),
                      f"{p['speedup_tuned_over_untuned']:.2f}x" if p.get("speedup_tuned_over_untuned") else "",
                      p.get("change") or "")
    return table


def _with_ci(value, ci, unit: str = "") -> str:
    if value is None:
        return ""
    text = f"{value:.3f}{unit}"
    return text + (f" ({ci[0]:.3f}-{ci[1]:.3f})" if ci else "")


def gate_lines(summary: dict) -> list[str]:
    lines = [f"regression: {r['model']} on {_label(r)}: {r['detail']}" for r in summary["regressions"]]
    lines += [f"{p['verdict']}: {p['model']} on {_label(p)}: {p['error']}"
              for p in summary["pairs"] if p["verdict"] in ("fail", "error", "refused") and p.get("error")]
    lines += [f"gone: {g['model']} on {_label(g)} was in the baseline, not in this run" for g in summary["gone"]]
    return lines


def _label(pair: dict) -> str:
    return pair["target"] + ("" if pair.get("mode", "local") == "local" else f" ({pair['mode']})")


__all__ = ["ReleaseRun", "SUMMARY_FORMAT", "gate_lines", "run_release", "summary_table", "write_summary"]
