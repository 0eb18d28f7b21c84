"""Rendering a run's report: rich tables in the terminal, JSON and Markdown files.

Every renderer reads the typed :class:`~tvmq.report.model.Report`; the JSON is its ``to_dict()``.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .model import Report
from .stats import FASTER, SLOWER
from .verify import ImageVerdict


def _fmt_ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _top5_text(entries: list[dict], sep: str = ", ") -> str:
    """``class label (score)`` per entry; a label is cut at its first comma (ImageNet synonyms)."""
    parts = []
    for e in entries:
        label = f" {e['label'].split(',')[0]}" if e.get("label") else ""
        parts.append(f"{e['class']}{label} ({e['score']:.4g})")
    return sep.join(parts)


def model_tables(info) -> list[Table]:
    """The model's summary and its input/output tensors (``info``: a ModelInfo)."""
    summary = Table(title=f"Model {info.name}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("sha256", info.sha256)
    summary.add_row("size", f"{info.size_bytes / 1e6:.2f} MB")
    summary.add_row("quantization", info.quantization)
    summary.add_row("operators", ", ".join(f"{k}×{v}" for k, v in info.operator_counts.items()))
    tensors = Table(title="Inputs and outputs", title_justify="left")
    for col in ("", "name", "shape", "dtype", "quantization"):
        tensors.add_column(col)
    for kind, items in (("input", info.inputs), ("output", info.outputs)):
        for t in items:
            tensors.add_row(kind, t.name, str(t.shape), t.dtype, t.quantization_text())
    return [summary, tensors]


def _match_text(img: ImageVerdict, rich: bool) -> str:
    if img.top5_match is None:
        if not rich:
            return "n/a"
        return "[green]ok[/]" if img.passed else "[red]differs[/]"
    text = "same" if img.top5_match else "differs"
    return f"[{'green' if img.top5_match else 'red'}]{text}[/]" if rich else text


def _worst(img: ImageVerdict) -> tuple[float, float]:
    """The largest difference and the smallest share of identical values over the outputs."""
    return (max((o.max_abs_diff for o in img.outputs), default=0),
            min((o.identical_share for o in img.outputs), default=1))


def _kind_text(img: ImageVerdict) -> str:
    """The segmentation or detection figures of an image in a few words; "-" for other kinds."""
    seg, det = img.segmentation, img.detection
    if det is not None:
        text = (f"detection: {det.matched}/{det.tvm_total} TVM, {det.matched}/{det.tflite_total} TFLite matched, "
                f"max score diff {det.max_score_diff:.3g}")
        missing = len(det.unmatched_tvm) + len(det.unmatched_tflite)
        return text + (f", {missing} strong unmatched" if missing else "")
    if seg is not None:
        return f"segmentation: {seg.identical_share * 100:.2f}% pixels identical, mIoU {seg.miou:.4f}"
    return "-"


def _has_kind_checks(report: Report) -> bool:
    return any(img.segmentation is not None or img.detection is not None for img in report.images)


def _reference_text(report: Report) -> str:
    """The kernels the build was compared with, and how closely."""
    v = report.verification or {}
    if not v:
        return report.reference_name
    how = "every value equal" if v.get("exact") else f"tolerance {v.get('tolerance', 0):g}"
    return f"{v.get('reference', report.reference_name)} ({how})"


def verification_table(report: Report) -> Table:
    table = Table(title=f"Verification against {_reference_text(report)}: {report.verdict.upper()}",
                  title_justify="left")
    kinds = _has_kind_checks(report)
    columns = ("input", "TVM top-5", "TFLite top-5", "top-5", "max |diff|", "identical")
    for col in columns + (("by kind",) if kinds else ()):
        table.add_column(col)
    for img in report.images:
        diff, same = _worst(img)
        table.add_row(Path(img.image).name, _top5_text(img.tvm_top5, "\n") or "-",
                      _top5_text(img.tflite_top5, "\n") or "-", _match_text(img, rich=True),
                      f"{diff:g}", f"{same * 100:.1f}%", *((_kind_text(img),) if kinds else ()))
    return table


_ENGINES = {"tvm": "tvmq (TVM)", "tvm_untuned": "tvmq untuned", "tflite": "TFLite (XNNPACK)"}
_STATS = ("median", "mean", "std", "min", "max")
_COLUMNS = ("median", "95% CI", "mean", "std", "min", "max", "runs", "blocks")


def _engine_rows(report: Report) -> list[tuple[str, object]]:
    lat = report.latencies
    rows = [("tvm", lat.tvm), ("tvm_untuned", lat.tvm_untuned), ("tflite", lat.tflite)]
    return [(key, s) for key, s in rows if s is not None and s.runs]


def _ci_text(ci, unit: str = "") -> str:
    return "-" if ci is None else f"{ci[0]:.3f}-{ci[1]:.3f}{unit}"


def _cells(s) -> list[str]:
    """One engine's row: median, its interval, mean, std, min, max (ms), runs, blocks."""
    return [_fmt_ms(s.median), _ci_text(s.ci95), *(_fmt_ms(getattr(s, k)) for k in _STATS[1:]), str(s.runs),
            "-" if s.blocks is None else str(s.blocks)]


def latency_table(report: Report) -> Table:
    table = Table(title=f"Latency (ms, {report.target.threads} threads)", title_justify="left")
    for col in ("engine", *_COLUMNS):
        table.add_column(col, justify="right" if col != "engine" else "left")
    for key, s in _engine_rows(report):
        table.add_row(_ENGINES[key], *_cells(s))
    return table


def comparison_line(latencies) -> str | None:
    """The verdict of the benchmark in words, with the 95% interval of the ratio: "tvmq is 1.23x
    faster than TFLite (95% CI 1.15-1.31x)"; None without a comparison (``latencies``: a Latencies)."""
    c = latencies.comparison
    if c is None:
        return None
    lo, hi = c.ratio_ci95
    if c.verdict == FASTER:
        return f"tvmq is {1 / c.ratio:.2f}x faster than TFLite (95% CI {1 / hi:.2f}-{1 / lo:.2f}x)"
    if c.verdict == SLOWER:
        return f"tvmq is {c.ratio:.2f}x slower than TFLite (95% CI {lo:.2f}-{hi:.2f}x)"
    return (f"tvmq is indistinguishable from TFLite at 95% confidence "
            f"(tvmq/TFLite {c.ratio:.2f}x, 95% CI {lo:.2f}-{hi:.2f}x)")


def method_line(latencies) -> str | None:
    """How the latencies were measured, in words; None when the report does not say."""
    m = latencies.method
    if m is None:
        return None
    if m.timing == "rpc-time-evaluator":
        return (f"measured: TVM on the RPC device by its time evaluator, TFLite on this host, {m.blocks} runs each, "
                f"{m.threads} threads: not side by side, each run its own sample")
    capped = f"; stopped by the {m.seconds:.0f} s cap before the minimums" if m.capped else ""
    return (f"measured: {m.blocks} rounds of alternating blocks in one process (at least {m.min_total_s:g} s and "
            f"{m.min_blocks} blocks per engine), {m.threads} threads, {m.clock} around each inference{capped}")


def ratio_lines(report: Report) -> list[str]:
    lat = report.latencies
    lines = []
    verdict = comparison_line(lat)
    if verdict is not None:
        lines.append(verdict)
    elif lat.ratio_tvm_over_tflite is not None:
        lines.append(f"tvmq / TFLite median latency: {lat.ratio_tvm_over_tflite:.2f}x")
    if lat.speedup_tuned_over_untuned is not None:
        lines.append(f"tuned speed-up over untuned: {lat.speedup_tuned_over_untuned:.2f}x")
    how = method_line(lat)
    if how is not None:
        lines.append(how)
    return lines


def print_report(report: Report, console: Console) -> None:
    if report.images:
        console.print(verification_table(report))
        failures = (report.verification or {}).get("failures", [])
        for line in failures:
            console.print(f"[red]differs:[/] {line}")
        if failures and report.mismatch is None:
            console.print("to find the first tensor where they part: run again with --explain-mismatch")
    if report.latencies:
        console.print(latency_table(report))
        for line in ratio_lines(report):
            console.print(line)


def to_markdown(report: Report) -> str:
    m, t = report.model, report.target
    lines = [
        f"# tvmq report: {m['name']} on {t.name}",
        "",
        f"- verdict: **{report.verdict}**",
        f"- model: `{m['source']}` (sha256 `{m['sha256'][:16]}…`, {m['quantization']})",
        f"- target: {t.name} — `{json.dumps(t.tvm_target)}`",
        f"- host: {report.host.cpu} ({report.host.cores} cores)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in report.versions.items()),
        "",
    ]
    if report.images:
        kinds = _has_kind_checks(report)
        header = "| input | TVM top-5 | TFLite top-5 | top-5 | max abs diff | identical |" + (" by kind |" if kinds else "")
        lines += ["## Verification", "", header, "|---|---|---|---|---|---|" + ("---|" if kinds else "")]
        for img in report.images:
            diff, same = _worst(img)
            lines.append(f"| {img.image} | {_top5_text(img.tvm_top5)} | {_top5_text(img.tflite_top5)} | "
                         f"{_match_text(img, rich=False)} | {diff:g} | {same * 100:.1f}% |"
                         + (f" {_kind_text(img)} |" if kinds else ""))
        lines += ["", f"Compared with {_reference_text(report)}."]
        why = (report.verification or {}).get("why")
        if why:
            lines[-1] += f" Why: {why}."
        lines += [f"- differs: {line}" for line in (report.verification or {}).get("failures", [])]
        if report.mismatch is not None:
            lines += ["", "### Tensor by tensor (--explain-mismatch)", ""] + [f"- {ln}" for ln in report.mismatch.lines()]
        lines.append("")
    if report.latencies:
        lines += ["## Latency (ms)", "", "| engine | " + " | ".join(_COLUMNS) + " |",
                  "|---" * (len(_COLUMNS) + 1) + "|"]
        for key, s in _engine_rows(report):
            lines.append(f"| {key} | " + " | ".join(_cells(s)) + " |")
        lines.append("")
        lines += [f"{line}  " for line in ratio_lines(report)]
        lines.append("")
    if report.tuning is not None:
        tu = report.tuning
        lines += ["## Tuning", "", f"- trials: {tu.trials}", f"- tasks: {tu.tasks_total} "
                  f"({tu.tasks_from_db} with records from earlier sessions)", ""]
    if report.partition:
        lines += partition_lines(report.partition)
    if report.artifact:
        lines += ["## Artifact", "", f"- `{report.artifact.path}` ({report.artifact.bytes} bytes)", ""]
    return "\n".join(lines)


def partition_lines(partition: dict) -> list[str]:
    """The markdown of a partitioned model: which operators run where, the MAC share in TVM."""
    lines = ["## Partition", "", f"Partitioned around {', '.join(partition['why'])}: TVM computes "
             f"{100 * partition['tvm_mac_share']:.1f}% of the multiply-accumulates.", "",
             "| part | engine | operators | MACs |", "|---|---|---|---|"]
    for i, part in enumerate(partition["parts"]):
        ops = ", ".join(f"{k}×{v}" for k, v in part["operators"].items())
        lines.append(f"| {i} | {part['engine']} | {ops} | {part['macs']} |")
    if partition.get("not_computed"):
        lines += ["", f"Not computed ({partition.get('dropped')}): {', '.join(partition['not_computed'])}"]
    return lines + [""]


def to_json(report: Report) -> str:
    """The JSON report (``report.json``, and ``tvmq-tune --json -``'s stdout)."""
    return json.dumps(report.to_dict(), indent=2, default=str) + "\n"


def write_reports(report: Report, json_path: Path | None, md_path: Path | None) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(to_json(report))
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(to_markdown(report))
