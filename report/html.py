"""HTML pages a person opens from a file: one run's report (``report.json`` as a page). A
release's matrix of models x targets, with a page per pair, is :mod:`.html_release`.

Pages are self-contained: inline CSS, plots as inline SVG (:mod:`tvmq.report.plots`), no script
and nothing fetched. Every string from the data is escaped. Cells and plots carry ``data-*``
attributes (``data-model``, ``data-target``, ``data-verdict``, ``data-change``, ``data-plot``)
that tests and scripts can select on.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from tvmq.errors import OutputError

from . import plots

VERDICT_COLOURS = {"pass": "#2da44e", "built": "#1f6feb", "fail": "#cf222e", "refused": "#8c959f",
                   "error": "#d4760a", "regression": "#cf222e", "ok": "#2da44e"}
NOT_MEASURED = '<p class="missing">not measured</p>'

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;
 padding:16px 24px;color:#1f2328;background:#fff}
h1{font-size:22px;margin:8px 0}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:6px 0}td,th{border:1px solid #d0d7de;padding:4px 8px;text-align:left;
 vertical-align:top}th{background:#f6f8fa}table.kv th{width:160px}
.badge{display:inline-block;color:#fff;border-radius:12px;padding:2px 12px;font-weight:600;font-size:13px;
 vertical-align:middle}
.plot{margin:8px 0}.plot svg{max-width:100%;height:auto}.plot figcaption{font-weight:600;margin-bottom:2px}
.missing{color:#6e7781;font-style:italic}.error{color:#cf222e;font-family:ui-monospace,monospace}
.matrix td.cell{min-width:150px;border:3px solid #fff;color:#fff;padding:6px 8px}
.matrix td.cell a{color:inherit;text-decoration:none;display:block}
.matrix td.empty{background:#f6f8fa;color:#6e7781;border:1px solid #d0d7de}
.matrix .verdict{font-weight:700;text-transform:uppercase}.matrix .ratio{font-size:13px}
.mark{float:right;font-size:15px;font-weight:700}.legend span.swatch{display:inline-block;padding:2px 8px;
 margin:2px 6px 2px 0;color:#fff;border-radius:3px}.legend span.chg{border:3px solid;padding:0 6px;margin-right:6px}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
nav a{font-size:13px}
"""


def _e(value) -> str:
    """Any value as escaped text ('' for None)."""
    return "" if value is None else escape(str(value), quote=True)


def _num(value) -> float | None:
    return plots._number(value)


def _ms(value) -> str:
    v = _num(value)
    return "–" if v is None else f"{v:.4g}"


def _interval(ci) -> tuple[float, float] | None:
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_num(v) is not None for v in ci):
        return float(ci[0]), float(ci[1])
    return None


def ratio_text(ratio, ci=None) -> str | None:
    """``0.78x (95% CI 0.74–0.81x)``; None when there is no ratio."""
    r = _num(ratio)
    if r is None:
        return None
    bounds = _interval(ci)
    return f"{r:.2f}x" + (f" (95% CI {bounds[0]:.2f}–{bounds[1]:.2f}x)" if bounds else "")


def _badge(verdict) -> str:
    v = str(verdict or "none")
    colour = VERDICT_COLOURS.get(v, "#8c959f")
    return (f'<span class="badge" data-verdict="{_e(v)}" style="background:{colour}">'
            f'{_e(v.upper())}</span>')


def _plot(name: str, title: str, svg: str | None) -> str:
    body = svg if svg else NOT_MEASURED
    return (f'<figure class="plot" data-plot="{name}" data-measured="{"true" if svg else "false"}">'
            f"<figcaption>{_e(title)}</figcaption>{body}</figure>")


def _kv_table(rows: list[tuple[str, str]]) -> str:
    """Rows of (label, already-escaped HTML)."""
    return '<table class="kv">' + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


# ---- one run -------------------------------------------------------------------------------------

def _header(report: dict, back_link: str | None) -> str:
    model, target, host = report.get("model") or {}, report.get("target") or {}, report.get("host") or {}
    nav = f'<nav><a href="{_e(back_link)}">← all models and targets</a></nav>' if back_link else ""
    sha = str(model.get("sha256") or "")
    rows = [("model", f"<code>{_e(model.get('source') or model.get('name'))}</code>"
                      + (f" · sha256 <code>{_e(sha[:16])}…</code>" if sha else "")
                      + (f" · {_e(model.get('quantization'))}" if model.get("quantization") else "")),
            ("target", f"{_e(target.get('name'))} — {_e(target.get('reason'))}"),
            ("TVM target", f"<code>{_e(json.dumps(target.get('tvm_target'), default=str))}</code>"
                           if target.get("tvm_target") else "–"),
            ("threads", _e(target.get("threads", "–"))),
            ("measured on", _e(target.get("measured_on") or "not measured (build only)")),
            ("host", f"{_e(host.get('cpu'))} ({_e(host.get('cores'))} cores, {_e(host.get('arch'))})"),
            ("created", _e(report.get("created"))),
            ("versions", _e(", ".join(f"{k} {v}" for k, v in (report.get("versions") or {}).items())) or "–")]
    title = f"{model.get('name', '?')} on {target.get('name', '?')}"
    return f"{nav}<h1>tvmq: {_e(title)} {_badge(report.get('verdict'))}</h1>{_kv_table(rows)}"


_ENGINE_ROWS = (("tvm", "tvmq"), ("tvm_untuned", "tvmq untuned"), ("tflite", "TFLite"))


def _latency_section(report: dict) -> str:
    lat = report.get("latency_ms") or {}
    out = ["<h2>Latency: tvmq against TFLite</h2>"]
    ratio = ratio_text(lat.get("ratio_tvm_over_tflite"), lat.get("ratio_ci95"))
    if ratio:
        comparison = lat.get("comparison")
        out.append(f'<p data-ratio="{_e(lat.get("ratio_tvm_over_tflite"))}">tvmq / TFLite median latency: '
                   f"<b>{_e(ratio)}</b>" + (f" — <b>{_e(comparison)}</b>" if comparison else "") + "</p>")
    speedup = _num(lat.get("speedup_tuned_over_untuned"))
    if speedup is not None:
        out.append(f"<p>tuned speed-up over untuned: <b>{speedup:.2f}x</b></p>")
    out.append(_plot("latency", "median latency per engine", plots.latency_comparison(lat)))
    rows = []
    for key, label in _ENGINE_ROWS:
        s = lat.get(key)
        if isinstance(s, dict) and _num(s.get("median")) is not None:
            ci = _interval(s.get("ci95"))
            rows.append(f"<tr><td>{label}</td><td>{_ms(s.get('median'))}</td>"
                        f"<td>{f'{ci[0]:.4g}–{ci[1]:.4g}' if ci else '–'}</td><td>{_ms(s.get('min'))}</td>"
                        f"<td>{_ms(s.get('max'))}</td><td>{_e(s.get('runs', '–'))}</td></tr>")
    if rows:
        out.append("<table><tr><th>engine</th><th>median ms</th><th>95% CI</th><th>min</th><th>max</th>"
                   "<th>runs</th></tr>" + "".join(rows) + "</table>")
    return "".join(out)


def _tuning_section(report: dict) -> str:
    tuning = report.get("tuning")
    out = ["<h2>Tuning</h2>"]
    if not isinstance(tuning, dict):
        out.append('<p class="missing">no tuning section: this run did not look up a tuning database</p>')
        tuning = {}
    else:
        est = tuning.get("estimated_ms") or {}
        facts = [f"{_e(tuning.get('trials', 0))} trials",
                 f"{_e(tuning.get('tasks_total', '?'))} tasks ({_e(tuning.get('tasks_from_db', 0))} with records "
                 f"from earlier sessions, {_e(tuning.get('tasks_tuned_now', 0))} tuned now)"]
        if _num(tuning.get("seconds")) is not None:
            facts.append(f"{tuning['seconds']:.0f} s")
        if _num(est.get("untuned")) is not None and _num(est.get("tuned")) is not None:
            facts.append(f"estimated {est['untuned']:.4g} ms untuned → {est['tuned']:.4g} ms tuned")
        out.append(f"<p>{' · '.join(facts)}</p>")
        if tuning.get("stopped_early"):
            out.append(f"<p>stopped early (no gain): {_e(', '.join(map(str, tuning['stopped_early'])))}</p>")
    latency = report.get("latency_ms")
    tvm = latency.get("tvm") if isinstance(latency, dict) else None
    measured = tvm.get("median") if isinstance(tvm, dict) else None
    out.append(_plot("tuning-curve", "end-to-end latency while tuning (anchored at the measured build)",
                     plots.tuning_curve(tuning.get("curve"), tuning.get("tasks"), _num(measured))))
    out.append(_plot("task-bars", f"the {plots.TOP_TASKS} costliest tasks, before and after tuning",
                     plots.task_bars(tuning.get("tasks"))))
    return "".join(out)


def _top5(entries) -> str:
    parts = []
    for x in entries or []:
        if isinstance(x, dict):
            label = f" {str(x['label']).split(',')[0]}" if x.get("label") else ""
            parts.append(f"{x.get('class')}{label} ({x.get('score')})")
    return "<br>".join(_e(p) for p in parts) or "–"


def _worst(image: dict) -> tuple[str, str]:
    outs = [o for o in image.get("outputs") or [] if isinstance(o, dict)]
    diffs = [_num(o.get("max_abs_diff")) for o in outs]
    shares = [_num(o.get("identical_share")) for o in outs]
    diff = max((d for d in diffs if d is not None), default=None)
    share = min((s for s in shares if s is not None), default=None)
    return ("–" if diff is None else f"{diff:g}"), ("–" if share is None else f"{share * 100:.1f}%")


def _verification_section(report: dict) -> str:
    v, images = report.get("verification") or {}, [i for i in report.get("images") or [] if isinstance(i, dict)]
    out = ["<h2>Verification</h2>"]
    if not v and not images:
        return out[0] + '<p class="missing">not verified (a build only, or the run stopped before)</p>'
    if v:
        how = "every value equal" if v.get("exact") else f"tolerance {_e(v.get('tolerance', 0))}"
        out.append(f"<p>compared with <b>{_e(v.get('reference'))}</b> ({how})"
                   + (f". Why: {_e(v.get('why'))}" if v.get("why") else "") + "</p>")
    if images:
        rows = []
        for img in images:
            diff, same = _worst(img)
            ok = img.get("passed")
            match = img.get("top5_match")
            match_text = ("same" if match else "differs") if match is not None else ("ok" if ok else "differs")
            rows.append(f'<tr data-passed="{_e(ok)}"><td>{_e(img.get("image"))}</td>'
                        f'<td>{_top5(img.get("tvm_top5"))}</td>'
                        f"<td>{_top5(img.get('tflite_top5'))}</td><td>{_e(match_text)}</td><td>{diff}</td>"
                        f"<td>{same}</td></tr>")
        out.append("<table><tr><th>input</th><th>TVM top-5</th><th>TFLite top-5</th><th>top-5</th>"
                   "<th>max |diff|</th><th>identical</th></tr>" + "".join(rows) + "</table>")
    out += [f'<p class="error">differs: {_e(line)}</p>' for line in v.get("failures") or []]
    mismatch = report.get("mismatch")
    if isinstance(mismatch, dict):
        first = mismatch.get("first")
        text = (f"first tensor where they part: {first.get('tensor')} {first.get('name')!r}, written by operator "
                f"{first.get('op_index')} {first.get('operator')}, max diff {first.get('max_abs_diff')}"
                if isinstance(first, dict) else "every tensor agrees")
        out.append(f"<p>tensor by tensor ({_e(mismatch.get('compared'))} compared): {_e(text)}</p>")
    return "".join(out)


def _placement_section(report: dict) -> str:
    """Which operators run where: the whole model in TVM, or the parts of a partitioned one
    (``partition`` of report.json, :meth:`tvmq.model.partition.Partition.to_dict`)."""
    out = ["<h2>Operator placement</h2>"]
    partition = report.get("partition")
    if not isinstance(partition, dict) or not partition.get("parts"):
        counts = (report.get("model") or {}).get("operator_counts") or {}
        ops = ", ".join(f"{k}×{v}" for k, v in counts.items())
        return out[0] + f"<p>The whole model runs in TVM{f' ({_e(ops)})' if ops else ''}.</p>"
    share = _num(partition.get("tvm_mac_share"))
    why = ", ".join(str(w) for w in partition.get("why") or [])
    out.append(f"<p>Partitioned around {_e(why or '?')}: TVM computes "
               f"{_e(f'{100 * share:.1f}%' if share is not None else '?')} of the multiply-accumulates; "
               "the other parts run in the TFLite interpreter, on the quantized tensors TVM's part reads "
               "and writes.</p>")
    out.append("<table><tr><th>part</th><th>engine</th><th>operators</th><th>MACs</th><th>reads</th>"
               "<th>writes</th></tr>")
    for i, part in enumerate(partition["parts"]):
        if not isinstance(part, dict):
            continue
        ops = ", ".join(f"{k}×{v}" for k, v in (part.get("operators") or {}).items())
        out.append(f'<tr data-engine="{_e(part.get("engine"))}"><td>{i}</td><td>{_e(part.get("engine"))}</td>'
                   f"<td>{_e(ops)}</td><td>{_e(part.get('macs'))}</td>"
                   f"<td>{_e(', '.join(map(str, part.get('inputs') or [])))}</td>"
                   f"<td>{_e(', '.join(map(str, part.get('outputs') or [])))}</td></tr>")
    out.append("</table>")
    if partition.get("not_computed"):
        out.append(f"<p>Not computed (no interpreter here runs what follows TVM's part: "
                   f"{_e(partition.get('dropped'))}): {_e(', '.join(map(str, partition['not_computed'])))}</p>")
    return "".join(out)


def _build_section(report: dict) -> str:
    rows = []
    art = report.get("artifact")
    if isinstance(art, dict):
        rows.append(("artifact", f"<code>{_e(art.get('path'))}</code> ({_e(art.get('bytes'))} bytes)"))
    tr = report.get("transforms") or {}
    if tr.get("convolutions"):
        rows.append(("convolutions", _e(", ".join(f"{k}: {v}" for k, v in tr["convolutions"].items()))))
    if tr.get("requant"):
        rows.append(("int8 requantization", _e(tr["requant"])))
    if tr.get("int8_intrinsics"):
        rows.append(("int8 intrinsics", _e(", ".join(f"{k}: {v}" for k, v in tr["int8_intrinsics"].items()))))
    timings = report.get("timings_s") or {}
    if timings:
        rows.append(("stage seconds", _e(", ".join(f"{k} {v:.1f}" if _num(v) is not None else f"{k} {v}"
                                                    for k, v in timings.items()))))
    return "<h2>Build</h2>" + (_kv_table(rows) if rows else NOT_MEASURED)


def run_page(report: dict, *, back_link: str | None = None) -> str:
    """One run's page from a ``report.json`` dict; ``back_link``: a link back to the release index."""
    model, target = report.get("model") or {}, report.get("target") or {}
    body = "".join([_header(report, back_link), _latency_section(report), _tuning_section(report),
                    _verification_section(report), _placement_section(report), _build_section(report)])
    return _page(f"tvmq: {model.get('name', '?')} on {target.get('name', '?')}", body)


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as err:
        raise OutputError(f"cannot write {path}: {err.strerror or err}") from None


def write_run_page(report: dict, path: Path, *, back_link: str | None = None) -> Path:
    _write(Path(path), run_page(report, back_link=back_link))
    return Path(path)


__all__ = ["NOT_MEASURED", "VERDICT_COLOURS", "ratio_text", "run_page", "write_run_page"]
