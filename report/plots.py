"""The HTML reports' figures: small matplotlib plots rendered to SVG text for inlining in a page.

Each function takes the plain dicts of ``report.json`` and returns the ``<svg>`` element as a
string, or None when its data is missing, so that the page says "not measured" instead.
Figures are drawn on :class:`matplotlib.figure.Figure` with the Agg/SVG canvases (no pyplot, no
global backend switch); text stays text (``svg.fonttype: none``), so a page is small and searchable.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

TVM_COLOUR = "#1f6feb"
UNTUNED_COLOUR = "#9db8e6"
TFLITE_COLOUR = "#e8843b"
TOP_TASKS = 20
_RC = {"svg.fonttype": "none", "text.parse_math": False, "font.size": 9, "axes.spines.top": False, "axes.spines.right": False}


@dataclass(frozen=True)
class EngineBar:
    """One engine's latency on the comparison plot: the median and the interval drawn around it."""

    label: str
    median: float
    low: float | None
    high: float | None
    interval: str  # "95% CI", "min-max" or "" (no interval)
    colour: str


def _number(v) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, a string)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _plot(draw):
    """Runs a figure function under this module's matplotlib settings (not the user's global ones)."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(_RC):
            return draw(*args, **kwargs)

    return wrapper


def _svg(fig) -> str:
    """The figure as an ``<svg>`` element (no XML prologue), scaled by its container."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):].strip()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96)
    return fig, fig.add_subplot()


def _style(ax) -> None:
    ax.grid(True, axis="both", color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def anchored_curve(curve: list[dict] | None, tasks: list[dict] | None, measured_ms: float | None) -> list[dict]:
    """The whole model's latency after each batch, anchored at ``measured_ms`` (the tuned build's
    measured median): that latency, plus for every task searched in this run the time its best
    schedule at that point still had over its final best (weight x difference), where a task not
    yet searched counts with the best of its first round. Exact at the end; before, it assumes
    the tasks' times add up, as the build runs them one after another. Empty without a
    measurement or per-task points (reports before the points said which task they were)."""
    if measured_ms is None or not curve:
        return []
    weights, firsts = {}, {}
    for t in tasks or []:
        if isinstance(t, dict) and isinstance(t.get("index"), int):
            weights[t["index"]] = _number(t.get("weight")) or 1.0
            firsts[t["index"]] = _number(t.get("first_round_ms"))
    events = [p for p in curve if isinstance(p, dict) and p.get("task") in weights
              and _number(p.get("best_ms")) is not None and _number(p.get("elapsed_s")) is not None]
    if not events:
        return []
    final = {}
    for p in events:
        final[p["task"]] = p["best_ms"]
    best = {k: firsts[k] if firsts.get(k) is not None else final[k] for k in final}  # before any batch

    def latency() -> float:
        return measured_ms + sum(weights[k] * (best[k] - final[k]) for k in final)

    points = [{"elapsed_s": 0.0, "trials": 0, "estimated_ms": latency()}]
    for p in events:
        best[p["task"]] = p["best_ms"]
        points.append({"elapsed_s": p["elapsed_s"], "trials": p.get("trials"), "estimated_ms": latency()})
    return points


@_plot
def tuning_curve(curve: list[dict] | None, tasks: list[dict] | None = None,
                 measured_ms: float | None = None) -> str | None:
    """The end-to-end latency (ms) as tuning went on: against wall-clock minutes when every point
    has ``elapsed_s``, else against trials (reports written before it existed). The points' own
    estimates where every task had a measured schedule; else :func:`anchored_curve`."""
    points = [p for p in (curve or []) if isinstance(p, dict) and _number(p.get("estimated_ms")) is not None]
    if not points:
        points = anchored_curve(curve, tasks, measured_ms)
    if not points:
        return None
    timed = all(_number(p.get("elapsed_s")) is not None for p in points)
    xs = [p["elapsed_s"] / 60 if timed else _number(p.get("trials")) or 0 for p in points]
    ys = [float(p["estimated_ms"]) for p in points]
    fig, ax = _figure(6.0, 2.8)
    ax.step(xs, ys, where="post", color=TVM_COLOUR, linewidth=1.6)
    ax.plot(xs, ys, "o", color=TVM_COLOUR, markersize=3)
    ax.set_xlabel("wall-clock minutes since tuning began" if timed else "trials")
    ax.set_ylabel("estimated latency (ms)")
    ax.set_ylim(bottom=0)
    ax.set_xlim(left=0)
    _style(ax)
    if len(points) > 1 and ys[0] > 0:
        ax.set_title(f"{ys[0]:.3g} ms → {ys[-1]:.3g} ms ({ys[0] / ys[-1]:.2f}x)" if ys[-1] > 0 else "",
                     loc="left", fontsize=9)
    return _svg(fig)


@dataclass(frozen=True)
class TaskCost:
    """One task's share of the model's time: weight x latency, before and after tuning (before:
    the untuned kernel where it was measured, else the best of the first round)."""

    name: str
    untuned_ms: float | None
    tuned_ms: float | None

    @classmethod
    def of(cls, task: dict) -> TaskCost:
        weight = _number(task.get("weight")) or 1.0
        before = _number(task.get("untuned_ms"))
        before = before if before is not None else _number(task.get("first_round_ms"))
        after = _number(task.get("tuned_ms"))
        after = after if after is not None else _number(task.get("db_best_ms"))
        return cls(str(task.get("name", "?")), before * weight if before is not None else None,
                   after * weight if after is not None else None)

    @property
    def cost(self) -> float:
        return max(v for v in (self.untuned_ms, self.tuned_ms, 0.0) if v is not None)


def costliest_tasks(tasks: list[dict] | None, top: int = TOP_TASKS) -> list[TaskCost]:
    """The ``top`` tasks that cost the model the most (weighted), costliest first; tasks with
    neither an untuned nor a tuned latency are left out."""
    costs = [TaskCost.of(t) for t in (tasks or []) if isinstance(t, dict)]
    costs = [c for c in costs if c.untuned_ms is not None or c.tuned_ms is not None]
    return sorted(costs, key=lambda c: -c.cost)[:top]


def _short(name: str, width: int = 38) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


@_plot
def task_bars(tasks: list[dict] | None, top: int = TOP_TASKS) -> str | None:
    """Per-task weighted time (ms per inference) untuned and tuned, the costliest ``top`` tasks."""
    costs = costliest_tasks(tasks, top)
    if not costs:
        return None
    n = len(costs)
    fig, ax = _figure(6.8, 0.9 + 0.28 * n)
    ys = list(range(n))
    h = 0.38
    before = [c.untuned_ms or 0.0 for c in costs]
    after = [c.tuned_ms or 0.0 for c in costs]
    if any(c.untuned_ms is not None for c in costs):
        untuned = any(isinstance(t, dict) and _number(t.get("untuned_ms")) is not None for t in tasks or [])
        ax.barh([y - h / 2 for y in ys], before, height=h, color=UNTUNED_COLOUR,
                label="untuned" if untuned else "first round (best)")
    if any(c.tuned_ms is not None for c in costs):
        ax.barh([y + h / 2 for y in ys], after, height=h, color=TVM_COLOUR, label="tuned / database best")
    ax.set_yticks(ys, [_short(c.name) for c in costs], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("weight x latency (ms per inference)")
    ax.legend(loc="lower right", fontsize=8, frameon=False)
    _style(ax)
    ax.grid(False, axis="y")
    return _svg(fig)


_ENGINE_LABELS = (("tvm", "tvmq", TVM_COLOUR), ("tvm_untuned", "tvmq untuned", UNTUNED_COLOUR),
                  ("tflite", "TFLite", TFLITE_COLOUR))


def engine_bars(latency_ms: dict | None) -> list[EngineBar]:
    """The engines of ``report.json``'s ``latency_ms`` that have a median, each with its 95% CI
    when the report has one, else its min and max."""
    bars = []
    for key, label, colour in _ENGINE_LABELS:
        stats = (latency_ms or {}).get(key)
        median = _number(stats.get("median")) if isinstance(stats, dict) else None
        if median is None:
            continue
        ci = stats.get("ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(_number(v) is not None for v in ci):
            bars.append(EngineBar(label, median, float(ci[0]), float(ci[1]), "95% CI", colour))
        elif _number(stats.get("min")) is not None and _number(stats.get("max")) is not None:
            bars.append(EngineBar(label, median, float(stats["min"]), float(stats["max"]), "min-max", colour))
        else:
            bars.append(EngineBar(label, median, None, None, "", colour))
    return bars


@_plot
def latency_comparison(latency_ms: dict | None) -> str | None:
    """Median latency per engine (tvmq, tvmq untuned, TFLite) with its interval as error bars."""
    bars = engine_bars(latency_ms)
    if not bars:
        return None
    fig, ax = _figure(6.0, 0.8 + 0.45 * len(bars))
    ys = list(range(len(bars)))
    ax.barh(ys, [b.median for b in bars], color=[b.colour for b in bars], height=0.6)
    for y, b in zip(ys, bars):
        if b.low is not None and b.high is not None:
            err = [[max(b.median - b.low, 0.0)], [max(b.high - b.median, 0.0)]]
            ax.errorbar([b.median], [y], xerr=err, fmt="none", ecolor="#222222", capsize=4, linewidth=1)
    ax.set_yticks(ys, [f"{b.label}\n{b.median:.3g} ms" for b in bars])
    ax.invert_yaxis()
    # The medians set the scale; an interval reaching past three times the largest is cut at the edge
    # (a min-max over thousands of runs has outliers that would squash every bar).
    top = max(b.median for b in bars)
    right = min(max([top * 1.15] + [b.high for b in bars if b.high is not None]), top * 3)
    clipped = any(b.high is not None and b.high > right for b in bars)
    intervals = sorted({b.interval for b in bars if b.interval})
    ax.set_xlabel("median latency (ms)" + (f", bars: {' / '.join(intervals)}" if intervals else "")
                  + (" (cut at the edge)" if clipped else ""))
    ax.set_xlim(left=0, right=right * 1.05)
    _style(ax)
    ax.grid(False, axis="y")
    return _svg(fig)


__all__ = ["EngineBar", "TaskCost", "costliest_tasks", "engine_bars", "latency_comparison", "task_bars",
           "tuning_curve"]
