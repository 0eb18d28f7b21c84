"""Rendering a run's report: rich tables in the terminal, JSON and Markdown files.

The report is one plain dict (the JSON written by ``--json``); every renderer reads only it.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table


def _fmt_ms(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _top5_text(entries: list[dict], sep: str = ", ") -> str:
    """``class label (score)`` per entry; a label is cut at its first comma (ImageNet synonyms)."""
    parts = []
    for e in entries:
        label = f" {e['label'].split(',')[0]}" if e.get("label") else ""
        parts.append(f"{e['class']}{label} ({e['score']:.4g})")
    return sep.join(parts)


def model_tables(info: dict) -> list[Table]:
    summary = Table(title=f"Model {info['name']}", show_header=False, title_justify="left")
    summary.add_column(style="bold")
    summary.add_column()
    summary.add_row("sha256", info["sha256"])
    summary.add_row("size", f"{info['size_bytes'] / 1e6:.2f} MB")
    summary.add_row("quantization", info["quantization"])
    summary.add_row("operators", ", ".join(f"{k}×{v}" for k, v in info["operator_counts"].items()))
    tensors = Table(title="Inputs and outputs", title_justify="left")
    for col in ("", "name", "shape", "dtype", "quantization"):
        tensors.add_column(col)
    for kind in ("inputs", "outputs"):
        for t in info[kind]:
            q = "-"
            if t["scales"]:
                if len(t["scales"]) > 1:
                    q = f"per-channel ({len(t['scales'])} scales, axis {t['quantized_dimension']})"
                else:
                    q = f"scale={t['scales'][0]:.6g} zero_point={t['zero_points'][0]}"
            tensors.add_row(kind[:-1], t["name"], str(t["shape"]), t["dtype"], q)
    return [summary, tensors]


def verification_table(report: dict) -> Table:
    table = Table(title=f"Verification against {report['versions'].get('tflite_interpreter', 'TFLite')}: "
                  f"{report['verdict'].upper()}", title_justify="left")
    for col in ("input", "TVM top-5", "TFLite top-5", "top-5", "max |diff|", "identical"):
        table.add_column(col)
    for img in report["images"]:
        out = img["outputs"][0] if img["outputs"] else {}
        if img.get("top5_match") is None:
            match = "[green]ok[/]" if img["passed"] else "[red]differs[/]"
        else:
            match = "[green]same[/]" if img["top5_match"] else "[red]differs[/]"
        table.add_row(
            Path(img["image"]).name,
            _top5_text(img.get("tvm_top5") or [], "\n") or "-",
            _top5_text(img.get("tflite_top5") or [], "\n") or "-",
            match,
            f"{max((o['max_abs_diff'] for o in img['outputs']), default=0):g}",
            f"{min((o['identical_share'] for o in img['outputs']), default=1) * 100:.1f}%",
        )
    return table


def latency_table(report: dict) -> Table:
    lat = report["latency_ms"]
    table = Table(title=f"Latency (ms, {report['target'].get('threads', '?')} threads)", title_justify="left")
    for col in ("engine", "median", "mean", "std", "min", "max", "runs"):
        table.add_column(col, justify="right" if col != "engine" else "left")
    names = {"tvm": "tvmq (TVM)", "tvm_untuned": "tvmq untuned", "tflite": "TFLite (XNNPACK)"}
    for key, label in names.items():
        s = lat.get(key)
        if not s:
            continue
        table.add_row(label, *(_fmt_ms(s.get(k)) for k in ("median", "mean", "std", "min", "max")), str(s.get("runs", "")))
    return table


def ratio_lines(report: dict) -> list[str]:
    lat = report["latency_ms"]
    lines = []
    if lat.get("ratio_tvm_over_tflite") is not None:
        lines.append(f"tvmq / TFLite median latency: {lat['ratio_tvm_over_tflite']:.2f}x")
    if lat.get("speedup_tuned_over_untuned") is not None:
        lines.append(f"tuned speed-up over untuned: {lat['speedup_tuned_over_untuned']:.2f}x")
    return lines


def print_report(report: dict, console: Console) -> None:
    if report["images"]:
        console.print(verification_table(report))
    if report.get("latency_ms"):
        console.print(latency_table(report))
        for line in ratio_lines(report):
            console.print(line)


def to_markdown(report: dict) -> str:
    m = report["model"]
    t = report["target"]
    lines = [
        f"# tvmq report: {m['name']} on {t['name']}",
        "",
        f"- verdict: **{report['verdict']}**",
        f"- model: `{m['source']}` (sha256 `{m['sha256'][:16]}…`, {m['quantization']})",
        f"- target: {t['name']} — `{json.dumps(t['tvm_target'])}`",
        f"- host: {report['host']['cpu']} ({report['host']['cores']} cores)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "",
    ]
    if report["images"]:
        lines += ["## Verification", "", "| input | TVM top-5 | TFLite top-5 | top-5 | max abs diff | identical |",
                  "|---|---|---|---|---|---|"]
        for img in report["images"]:
            match = "n/a" if img.get("top5_match") is None else ("same" if img["top5_match"] else "differs")
            md = max((o["max_abs_diff"] for o in img["outputs"]), default=0)
            ident = min((o["identical_share"] for o in img["outputs"]), default=1) * 100
            lines.append(f"| {img['image']} | {_top5_text(img.get('tvm_top5') or [])} | "
                         f"{_top5_text(img.get('tflite_top5') or [])} | {match} | {md:g} | {ident:.1f}% |")
        lines.append("")
    if report.get("latency_ms"):
        lines += ["## Latency (ms)", "", "| engine | median | mean | std | min | max | runs |", "|---|---|---|---|---|---|---|"]
        for key in ("tvm", "tvm_untuned", "tflite"):
            s = report["latency_ms"].get(key)
            if s:
                lines.append(f"| {key} | " + " | ".join(_fmt_ms(s.get(k)) for k in ("median", "mean", "std", "min", "max"))
                             + f" | {s.get('runs', '')} |")
        lines.append("")
        lines += [f"{line}  " for line in ratio_lines(report)]
        lines.append("")
    if report.get("tuning"):
        tu = report["tuning"]
        lines += ["## Tuning", "", f"- trials: {tu.get('trials')}", f"- tasks: {tu.get('tasks_total')} "
                  f"({tu.get('tasks_from_db')} with records from earlier sessions)", ""]
    if report.get("artifact"):
        a = report["artifact"]
        lines += ["## Artifact", "", f"- `{a['path']}` ({a['bytes']} bytes)", ""]
    return "\n".join(lines)


def write_reports(report: dict, json_path: Path | None, md_path: Path | None) -> None:
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    if md_path is not None:
        md_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.write_text(to_markdown(report))
