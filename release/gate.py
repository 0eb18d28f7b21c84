"""The regression gate: each pair of a run against the same pair of a baseline run.

A pair is *slower* when its relative latency's 95% confidence interval and the baseline's do
not overlap and the relative latency grew by more than the threshold (5% by default); *faster*
the other way round; *same* otherwise. The relative latency is tvmq's median over TFLite's,
measured in alternating blocks in the same process: on a shared host both engines slow down
together, so absolute milliseconds taken minutes apart move by 30% and more with nothing changed
(seen on the 2-vCPU hosts), while the ratio holds. Its interval is the bootstrap interval of the
ratio, placed at the medians the file gives. RPC pairs are compared by tvmq's latency on the
device and its interval: TFLite runs on the host that drives the device, not beside it, so the
ratio there mixes two machines' noise (on an RPC server of this very host, an unchanged build's
ratio moved from 2.09x to 2.65x, intervals apart, between two runs). A device's latency moves
between runs by more than its interval within one run says (the same server: 6.02, 6.62 and
5.87 ms): a plan gives such a target a larger ``threshold``. Pairs measured without TFLite are
compared by tvmq's latency too. A verdict that changed is a *status* change, a regression when it got worse
(pass or built to fail, refused or error). Pairs the baseline lacks are *new*. The run's exit
status: 1 on a regression, a failed verification or an error; 0 otherwise (a model tvmq refuses,
as it did before, holds no release).

It reads two kinds of files: a ``tvmq-release`` ``summary.json`` (its ``pairs``) and a
``tvmq-tune`` ``report.json`` (one pair), so that ``tvmq-diff`` gates two single runs the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from tvmq.errors import UsageError

DEFAULT_THRESHOLD = 0.05
# How bad a verdict is: a change to a higher rank is a regression.
RANK = {"pass": 0, "built": 0, "refused": 1, "fail": 2, "error": 2}
SEVERITY = ("ok", "refused", "regression", "fail", "error")  # summary.json "worst", mildest first


@dataclass(frozen=True)
class Change:
    kind: str  # faster | slower | same | new | status
    detail: str
    regression: bool = False
    baseline: dict | None = None  # what the baseline said of the pair: verdict, latency, ratio

    def to_dict(self) -> dict:
        return {"change": self.kind, "change_detail": self.detail, "regression": self.regression}


@dataclass
class GateResult:
    changes: dict[tuple, Change] = field(default_factory=dict)
    gone: list[tuple] = field(default_factory=list)  # baseline pairs this run did not have
    threshold: float | None = None  # None: each pair's own, else the default

    @property
    def regressions(self) -> list[tuple]:
        return [k for k, c in self.changes.items() if c.regression]


def pair_key(pair: dict) -> tuple[str, str, str]:
    return pair.get("model"), pair.get("target"), pair.get("mode") or "local"


def latency_summary(latency_ms: dict) -> dict | None:
    """What a summary keeps of a report's ``latency_ms``: each measured engine's median and interval."""
    engines = {k: {"median": v.get("median"), "ci95": v.get("ci95")}
               for k in ("tvm", "tflite", "tvm_untuned") if isinstance(v := latency_ms.get(k), dict) and v.get("median")}
    return engines or None


def latency_of(pair: dict) -> tuple[float | None, list[float] | None]:
    tvm = (pair.get("latency_ms") or {}).get("tvm") or {}
    return tvm.get("median"), tvm.get("ci95")


def relative_latency(pair: dict) -> tuple[float | None, list[float] | None]:
    """tvmq's median over TFLite's, and the 95% interval of that ratio (the bootstrap interval the
    run measured, scaled to this ratio); (None, None) without both medians."""
    lat = pair.get("latency_ms") or {}
    tvm, tfl = (lat.get("tvm") or {}).get("median"), (lat.get("tflite") or {}).get("median")
    if not tvm or not tfl:
        return None, None
    ratio = tvm / tfl
    measured, ci = pair.get("ratio_tvm_over_tflite"), pair.get("ratio_ci95")
    if not measured or not ci:
        return ratio, None
    return ratio, [ci[0] * ratio / measured, ci[1] * ratio / measured]


def compare(new: dict, old: dict | None, threshold: float = DEFAULT_THRESHOLD) -> Change:
    """How ``new`` changed against ``old`` (the same model, target and mode)."""
    if old is None:
        return Change("new", "not in the baseline")
    base = {"verdict": old.get("verdict"), "latency_ms": old.get("latency_ms"),
            "ratio_tvm_over_tflite": old.get("ratio_tvm_over_tflite")}
    v_new, v_old = new.get("verdict"), old.get("verdict")
    if v_new != v_old:
        worse = RANK.get(v_new, 2) > RANK.get(v_old, 2)
        return Change("status", f"{v_old} -> {v_new}", regression=worse, baseline=base)
    (m_new, ci_new), (m_old, ci_old) = relative_latency(new), relative_latency(old)
    unit = "x TFLite"
    if not m_new or not m_old or new.get("mode") == "rpc":
        (m_new, ci_new), (m_old, ci_old), unit = latency_of(new), latency_of(old), "ms"
    if not m_new or not m_old:
        return Change("same", f"{v_new}, as before (no latency to compare)", baseline=base)
    ratio = m_new / m_old
    lo_new, hi_new = ci_new or (m_new, m_new)
    lo_old, hi_old = ci_old or (m_old, m_old)
    overlap = lo_new <= hi_old and lo_old <= hi_new
    text = f"{m_old:.3f} -> {m_new:.3f} {unit} ({ratio:.2f}x)"
    if not overlap and ratio > 1 + threshold:
        return Change("slower", f"{text}: the 95% intervals do not overlap", regression=True, baseline=base)
    if not overlap and ratio < 1 - threshold:
        return Change("faster", f"{text}: the 95% intervals do not overlap", baseline=base)
    why = "the 95% intervals overlap" if overlap else f"within {threshold:.0%}"
    return Change("same", f"{text}: {why}", baseline=base)


def gate(pairs: list[dict], baseline: list[dict] | None, threshold: float | None = None) -> GateResult:
    """Each pair against the baseline's; ``threshold`` (given: for every pair) or each pair's own
    ``threshold`` (a plan's target can set one) or :data:`DEFAULT_THRESHOLD`."""
    result = GateResult(threshold=threshold)
    if baseline is None:
        return result
    old = {pair_key(p): p for p in baseline}
    for p in pairs:
        own = threshold if threshold is not None else p.get("threshold")
        result.changes[pair_key(p)] = compare(p, old.get(pair_key(p)), DEFAULT_THRESHOLD if own is None else own)
    seen = {pair_key(p) for p in pairs}
    result.gone = [k for k in old if k not in seen]
    return result


def worst(pairs: list[dict], result: GateResult) -> str:
    """The worst thing that happened, one of :data:`SEVERITY`."""
    levels = ["ok"]
    for p in pairs:
        v = p.get("verdict")
        levels.append({"fail": "fail", "error": "error", "refused": "refused"}.get(v, "ok"))
    if result.regressions:
        levels.append("regression")
    return max(levels, key=SEVERITY.index)


def exit_status(level: str) -> int:
    return 0 if level in ("ok", "refused") else 1


def read_pairs(path: str | Path) -> tuple[list[dict], str, str]:
    """The pairs of a ``summary.json`` or a ``report.json`` (or of a folder holding either), the
    file read and its kind (``summary`` or ``report``); :class:`UsageError` when it is neither."""
    p = Path(path)
    if p.is_dir():
        found = [p / n for n in ("summary.json", "report.json") if (p / n).is_file()]
        if not found:
            raise UsageError(f"{p}: holds neither summary.json (tvmq-release) nor report.json (tvmq-tune)")
        p = found[0]
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise UsageError(f"{p}: not a readable JSON file ({getattr(err, 'strerror', None) or err})") from None
    if isinstance(data, dict) and isinstance(data.get("pairs"), list) and "tvmq_release" in data:
        pairs = [q for q in data["pairs"] if isinstance(q, dict)]
        if len(pairs) != len(data["pairs"]):
            raise UsageError(f"{p}: every entry of pairs must be an object")
        return pairs, str(p), "summary"
    if isinstance(data, dict) and "tvmq_report" in data:
        return [pair_from_report(data)], str(p), "report"
    raise UsageError(f"{p}: neither a tvmq-release summary.json nor a tvmq-tune report.json")


def pair_from_report(report: dict) -> dict:
    """A ``tvmq-tune`` report as one pair, keyed like a release's."""
    target = report.get("target") or {}
    measured = str(target.get("measured_on") or "")
    mode = "build-only" if report.get("verdict") == "built" else ("rpc" if measured.startswith("rpc") else "local")
    lat = report.get("latency_ms") or {}
    return {"model": (report.get("model") or {}).get("name"), "target": target.get("name"), "mode": mode,
            "verdict": report.get("verdict"),
            "latency_ms": latency_summary(lat),
            "ratio_tvm_over_tflite": lat.get("ratio_tvm_over_tflite"), "ratio_ci95": lat.get("ratio_ci95")}


__all__ = ["Change", "DEFAULT_THRESHOLD", "GateResult", "SEVERITY", "compare", "exit_status", "gate", "latency_of",
           "latency_summary", "pair_from_report", "pair_key", "read_pairs", "relative_latency", "worst"]
