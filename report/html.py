"""HTML pages a person opens from a file: one run's report (``report.json`` as a page) and a
release's matrix of models x targets (``tvmq-release``'s ``summary.json``) with a page per pair.

Pages are self-contained: inline CSS, plots as inline SVG (:mod:`tvmq.report.plots`), no script
and nothing fetched. Every string from the data is escaped. Cells and plots carry ``data-*``
attributes (``data-model``, ``data-target``, ``data-verdict``, ``data-change``, ``data-plot``)
that tests and scripts can select on.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from html import escape
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from tvmq.errors import OutputError

from . import plots

VERDICT_COLOURS = {"pass": "#2da44e", "built": "#1f6feb", "fail": "#cf222e", "refused": "#8c959f",
                   "error": "#d4760a", "regression": "#cf222e", "ok": "#2da44e"}
CHANGE_MARKS = {"faster": ("▲", "faster than the baseline"), "slower": ("▼", "slower than the baseline"),
                "same": ("=", "same as the baseline"), "new": ("★", "not in the baseline"),
                "status": ("◆", "verdict changed since the baseline")}
CHANGE_WORDS = {"faster": "faster than the baseline", "slower": "slower than the baseline",
                "same": "same as the baseline", "new": "new", "status": "verdict changed"}
CHANGE_COLOURS = {"faster": "#2da44e", "slower": "#cf222e", "same": "#8c959f", "new": "#1f6feb",
                  "status": "#d4760a"}
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
    out.append(_plot("tuning-curve", "estimated end-to-end latency while tuning",
                     plots.tuning_curve(tuning.get("curve"))))
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


def _placement_rows(placement) -> list[tuple[str, str, str]]:
    """(index, operator, engine) per entry of a ``placement`` section: a list of entries, or a
    dict holding one under ``operators``."""
    entries = placement.get("operators") if isinstance(placement, dict) else placement
    rows = []
    for i, entry in enumerate(entries or []):
        if isinstance(entry, dict):
            op = entry.get("operator", entry.get("op", entry.get("name", "?")))
            rows.append((str(entry.get("index", i)), str(op), str(entry.get("engine", "?"))))
    return rows


def _placement_section(report: dict) -> str:
    out = ["<h2>Operator placement</h2>"]
    placement = report.get("placement")
    rows = _placement_rows(placement) if placement is not None else []
    if not rows:
        counts = (report.get("model") or {}).get("operator_counts") or {}
        ops = ", ".join(f"{k}×{v}" for k, v in counts.items())
        return out[0] + f"<p>The whole model runs in TVM{f' ({_e(ops)})' if ops else ''}.</p>"
    engines: dict[str, int] = {}
    for _, _, engine in rows:
        engines[engine] = engines.get(engine, 0) + 1
    out.append("<p>" + _e(", ".join(f"{n} operators in {k}" for k, n in engines.items())) + "</p>")
    out.append("<table><tr><th>#</th><th>operator</th><th>engine</th></tr>" + "".join(
        f'<tr data-engine="{_e(eng)}"><td>{_e(i)}</td><td>{_e(op)}</td><td>{_e(eng)}</td></tr>'
        for i, op, eng in rows) + "</table>")
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


# ---- a release -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One pair of the release as the matrix shows it."""

    pair: dict

    def get(self, key: str, default=None):
        return self.pair.get(key, default)

    @property
    def verdict(self) -> str:
        return str(self.pair.get("verdict") or "error")

    @property
    def change(self) -> str:
        return str(self.pair.get("change") or "")

    def ratio(self) -> str | None:
        return ratio_text(self.pair.get("ratio_tvm_over_tflite"), self.pair.get("ratio_ci95"))

    def href(self) -> str | None:
        page = _relative_path(self.pair.get("page"))
        return quote(str(page)) if page else None


def _relative_path(value) -> PurePosixPath | None:
    """A path from the summary that stays inside the release folder, or None."""
    if not isinstance(value, str) or not value or "\\" in value or ":" in value:
        return None
    p = PurePosixPath(value)
    return None if p.is_absolute() or ".." in p.parts else p


def _ordered(pairs: list[dict], key: str) -> list[str]:
    seen: dict[str, None] = {}
    for p in pairs:
        seen.setdefault(str(p.get(key)), None)
    return list(seen)


def _cell_html(cell: Cell) -> str:
    v, change = cell.verdict, cell.change
    colour = VERDICT_COLOURS.get(v, "#8c959f")
    border = CHANGE_COLOURS.get(change, "#fff")
    mark, meaning = CHANGE_MARKS.get(change, ("", ""))
    title = "; ".join(str(x) for x in (meaning, cell.get("change_detail"), cell.get("error")) if x)
    inner = [f'<span class="mark" data-mark="{_e(change)}">{mark}</span>' if mark else "",
             f'<div class="verdict">{_e(v)}</div>']
    ratio = cell.ratio()
    inner.append(f'<div class="ratio">tvmq/TFLite {_e(ratio)}</div>' if ratio else
                 '<div class="ratio">ratio not measured</div>')
    if cell.get("comparison"):
        inner.append(f'<div class="ratio">against TFLite: {_e(cell.get("comparison"))}</div>')
    if change:
        inner.append(f'<div class="ratio">{_e(CHANGE_WORDS.get(change, change))}</div>')
    content = "".join(inner)
    href = cell.href()
    if href:
        content = f'<a href="{_e(href)}">{content}</a>'
    return (f'<td class="cell verdict-{_e(v)}" data-model="{_e(cell.get("model"))}" '
            f'data-target="{_e(cell.get("target"))}" data-mode="{_e(cell.get("mode"))}" '
            f'data-verdict="{_e(v)}" data-change="{_e(change)}" '
            f'data-slug="{_e(cell.get("slug"))}" title="{_e(title)}" '
            f'style="background:{colour};border-color:{border}">{content}</td>')


def _column(pair: dict, split: set[str]) -> str:
    """A pair's column: its target, with the mode where one target is run in several modes."""
    target = str(pair.get("target"))
    return f"{target} ({pair.get('mode')})" if target in split else target


def _matrix(pairs: list[dict]) -> str:
    modes: dict[str, set] = {}
    for p in pairs:
        modes.setdefault(str(p.get("target")), set()).add(str(p.get("mode")))
    split = {t for t, m in modes.items() if len(m) > 1}
    models = _ordered(pairs, "model")
    targets = list(dict.fromkeys(_column(p, split) for p in pairs))
    by = {(str(p.get("model")), _column(p, split)): Cell(p) for p in pairs}
    head = "<tr><th>model \\ target</th>" + "".join(f'<th data-column="{_e(t)}">{_e(t)}</th>' for t in targets)
    rows = [head + "</tr>"]
    for m in models:
        cells = [_cell_html(by[(m, t)]) if (m, t) in by else '<td class="empty">–</td>' for t in targets]
        rows.append(f'<tr data-model="{_e(m)}"><th>{_e(m)}</th>{"".join(cells)}</tr>')
    return '<table class="matrix">' + "".join(rows) + "</table>"


def _legend() -> str:
    verdicts = "".join(f'<span class="swatch" style="background:{VERDICT_COLOURS[v]}">{v}</span>'
                       for v in ("pass", "built", "fail", "refused", "error"))
    changes = "".join(f'<span class="chg" style="border-color:{CHANGE_COLOURS[k]}">{mark} {k}</span>'
                      f"<small>{_e(meaning)}</small> "
                      for k, (mark, meaning) in CHANGE_MARKS.items())
    return (f'<div class="legend"><p>verdict: {verdicts}</p><p>change against the baseline (border and mark): '
            f"{changes}</p><p>ratio: tvmq median latency over TFLite's, below 1 is faster, with its 95% "
            "confidence interval where measured</p></div>")


def _run_info(summary: dict) -> str:
    host = summary.get("host") or {}
    rows = [("created", _e(summary.get("created"))), ("plan", f"<code>{_e(summary.get('plan'))}</code>"),
            ("database", f"<code>{_e(summary.get('db'))}</code>"),
            ("host", f"{_e(host.get('cpu'))} ({_e(host.get('cores'))} cores, {_e(host.get('arch'))})"),
            ("baseline", f"<code>{_e(summary.get('baseline'))}</code>" if summary.get("baseline") else "none"),
            ("exit status", _e(summary.get("exit_status")))]
    return _kv_table(rows)


def _failures(pairs: list[dict]) -> str:
    bad = [p for p in pairs if p.get("verdict") in ("fail", "refused", "error") or p.get("error")]
    if not bad:
        return "<h2>Failures</h2><p>none</p>"
    items = "".join(
        f'<li data-slug="{_e(p.get("slug"))}"><b>{_e(p.get("model"))}</b> on <b>{_e(p.get("target"))}</b>: '
        f'{_e(p.get("verdict"))}' + (f' — <span class="error">{_e(p.get("error"))}</span>' if p.get("error") else "")
        + "</li>" for p in bad)
    return f'<h2>Failures</h2><ul class="failures">{items}</ul>'


def _pairs_table(pairs: list[dict]) -> str:
    rows = []
    for p in pairs:
        lat = p.get("latency_ms") or {}
        tuning = p.get("tuning") or {}
        instr = p.get("instruction") or {}
        found = "" if not instr else f"{instr.get('expected')} {'found' if instr.get('found') else 'missing'}"
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in (
            _e(p.get("model")), _e(p.get("target")), _e(p.get("profile")), _e(p.get("mode")), _e(p.get("verdict")),
            _ms((lat.get("tvm") or {}).get("median")), _ms((lat.get("tflite") or {}).get("median")),
            _e(ratio_text(p.get("ratio_tvm_over_tflite"), p.get("ratio_ci95")) or "–"),
            _e(f"{tuning.get('trials')} trials, {tuning.get('seconds')} s" if tuning else "–"), _e(found or "–"),
            _e(p.get("change_detail") or p.get("change") or "–"))) + "</tr>")
    head = "".join(f"<th>{h}</th>" for h in ("model", "target", "profile", "mode", "verdict", "tvmq ms", "TFLite ms",
                                             "ratio", "tuning", "instruction", "change"))
    return f"<h2>All pairs</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def release_index(summary: dict) -> str:
    """The release's front page: the models x targets matrix, the legend, the run and its failures."""
    pairs = [p for p in summary.get("pairs") or [] if isinstance(p, dict)]
    body = (f"<h1>tvmq release {_badge(summary.get('worst'))}</h1>" + _run_info(summary) + "<h2>Models × targets</h2>"
            + (_matrix(pairs) if pairs else '<p class="missing">no pairs</p>') + _legend() + _failures(pairs)
            + _pairs_table(pairs))
    return _page("tvmq release", body)


def _pair_without_report(pair: dict, back_link: str, why: str) -> str:
    rows = [("model", _e(pair.get("model"))), ("target", _e(pair.get("target"))),
            ("profile", _e(pair.get("profile"))), ("mode", _e(pair.get("mode"))),
            ("error", f'<span class="error">{_e(pair.get("error") or why)}</span>')]
    title = f"{pair.get('model')} on {pair.get('target')}"
    body = (f'<nav><a href="{_e(back_link)}">← all models and targets</a></nav>'
            f"<h1>tvmq: {_e(title)} {_badge(pair.get('verdict'))}</h1>{_kv_table(rows)}")
    return _page(f"tvmq: {title}", body)


def _load_report(out_dir: Path, pair: dict) -> tuple[dict | None, str]:
    rel = _relative_path(pair.get("report"))
    if rel is None:
        return None, "no report"
    try:
        data = json.loads((out_dir / rel).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return None, f"report {rel} unreadable: {err}"
    return (data, "") if isinstance(data, dict) else (None, f"report {rel} is not a JSON object")


def write_release_pages(summary: dict, out_dir: Path) -> list[Path]:
    """``out_dir/index.html`` and each pair's page (``pair["page"]``, relative to ``out_dir``) from
    its ``report.json``, or a page with its error line; returns the paths written."""
    out_dir = Path(out_dir)
    written = [out_dir / "index.html"]
    _write(written[0], release_index(summary))
    for pair in summary.get("pairs") or []:
        if not isinstance(pair, dict):
            continue
        page = _relative_path(pair.get("page"))
        if page is None:
            raise OutputError(f"pair {pair.get('slug')!r}: page {pair.get('page')!r} is not a path inside {out_dir}")
        path = out_dir / page
        back = Path(os.path.relpath(out_dir / "index.html", path.parent)).as_posix()
        report, why = _load_report(out_dir, pair)
        _write(path, run_page(report, back_link=back) if report is not None else _pair_without_report(pair, back, why))
        written.append(path)
    return written


__all__ = ["Cell", "ratio_text", "release_index", "run_page", "write_release_pages", "write_run_page"]
