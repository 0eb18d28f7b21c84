"""The HTML of a release run (``tvmq-release``'s ``summary.json``): ``index.html``, the matrix of
models x targets coloured by verdict and marked by change against the baseline, and a page per
pair (its ``report.json`` through :func:`.html.run_page`). Self-contained like every page of
:mod:`.html`; cells carry ``data-model``, ``data-target``, ``data-mode``, ``data-verdict`` and
``data-change``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from tvmq.errors import OutputError

from .html import (
    VERDICT_COLOURS,
    _badge,
    _e,
    _kv_table,
    _ms,
    _page,
    _write,
    ratio_text,
    run_page,
)

CHANGE_MARKS = {"faster": ("▲", "faster than the baseline"), "slower": ("▼", "slower than the baseline"),
                "same": ("=", "same as the baseline"), "new": ("★", "not in the baseline"),
                "status": ("◆", "verdict changed since the baseline")}
CHANGE_WORDS = {"faster": "faster than the baseline", "slower": "slower than the baseline",
                "same": "same as the baseline", "new": "new", "status": "verdict changed"}
CHANGE_COLOURS = {"faster": "#2da44e", "slower": "#cf222e", "same": "#8c959f", "new": "#1f6feb",
                  "status": "#d4760a"}


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


__all__ = ["Cell", "release_index", "write_release_pages"]
