"""Latency statistics: each engine's runs grouped in blocks, the median of its block medians, and
bootstrap confidence intervals of those medians and of the tvmq/TFLite ratio (with a verdict).

Why blocks: on a shared host the load drifts, so runs next to each other are alike and runs
minutes apart are not. Each block's median is one observation of "how fast, at that moment";
the block medians of two engines measured in alternating blocks are paired by round, and
resampling whole rounds keeps that pairing (:func:`compare_block_medians`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

FASTER, SLOWER, INDISTINGUISHABLE = "faster", "slower", "indistinguishable"
CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over repeated runs. ``median`` is the median of the block medians when the
    runs came in blocks (``blocks``, ``ci95``: the bootstrap interval of that median), else the
    median of the runs; mean, std, min and max are over every run."""

    runs: int
    median: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    blocks: int | None = None
    ci95: tuple[float, float] | None = None

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> LatencyStats:
        ms = [s * 1e3 for s in seconds]
        if not ms:
            return cls(runs=0)
        return cls(runs=len(ms), median=statistics.median(ms), mean=statistics.fmean(ms),
                   std=statistics.stdev(ms) if len(ms) > 1 else 0.0, min=min(ms), max=max(ms))

    @classmethod
    def from_blocks(cls, blocks_s: Sequence[Sequence[float]], estimate: Estimate) -> LatencyStats:
        """Runs (seconds) grouped in blocks, and the :class:`Estimate` of their block medians."""
        runs = cls.from_seconds([s for block in blocks_s for s in block])
        return cls(runs=runs.runs, median=estimate.median, mean=runs.mean, std=runs.std, min=runs.min,
                   max=runs.max, blocks=estimate.blocks, ci95=estimate.ci95)

    def to_dict(self) -> dict:
        if not self.runs:
            return {"runs": 0}
        d = asdict(self)
        for key in ("blocks", "ci95"):
            if d[key] is None:
                del d[key]
        if "ci95" in d:
            d["ci95"] = list(d["ci95"])
        return d


def latency_stats(seconds: list[float]) -> dict:
    """median / mean / std / min / max in milliseconds, and the number of runs."""
    return LatencyStats.from_seconds(seconds).to_dict()


def block_medians_ms(blocks_s: Sequence[Sequence[float]]) -> list[float]:
    """Each block's median run, in milliseconds."""
    return [statistics.median(block) * 1e3 for block in blocks_s if len(block)]


@dataclass(frozen=True)
class Estimate:
    """One engine: the median of its block medians (ms), its bootstrap interval, and the blocks."""

    median: float
    ci95: tuple[float, float]
    blocks: int


@dataclass(frozen=True)
class Comparison:
    """tvmq against TFLite: each engine's :class:`Estimate`, the ratio of their medians (tvmq over
    TFLite: under 1 is tvmq faster) with its bootstrap interval, and what that interval says."""

    tvm: Estimate
    tflite: Estimate
    ratio: float
    ratio_ci95: tuple[float, float]
    verdict: str  # FASTER, SLOWER or INDISTINGUISHABLE (tvmq compared with TFLite)
    paired: bool  # resampled by round (alternating blocks), or each engine on its own
    resamples: int
    seed: int


def _check(name: str, values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name}: need at least one block median")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name}: block medians must be positive and finite")
    return arr


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    lo, hi = np.percentile(samples, [tail, 100 - tail])
    return float(lo), float(hi)


def _resampled_medians(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.median(values[index], axis=1)


def median_estimate(block_medians: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED,
                    confidence: float = CONFIDENCE) -> Estimate:
    """The median of ``block_medians`` with its percentile-bootstrap interval (blocks resampled
    with replacement, ``resamples`` times, numpy's generator seeded with ``seed``)."""
    values = _check("block medians", block_medians)
    index = np.random.default_rng(seed).integers(0, values.size, size=(resamples, values.size))
    return Estimate(float(np.median(values)), _interval(_resampled_medians(values, index), confidence), values.size)


def compare_block_medians(tvm: Sequence[float], tflite: Sequence[float], paired: bool = True,
                          resamples: int = RESAMPLES, seed: int = SEED, confidence: float = CONFIDENCE) -> Comparison:
    """tvmq's block medians against TFLite's: percentile-bootstrap intervals of each median of block
    medians and of their ratio, and the verdict: :data:`FASTER` when the ratio's interval lies
    wholly below 1, :data:`SLOWER` when wholly above, else :data:`INDISTINGUISHABLE`.

    ``paired``: the blocks alternated, round ``i`` of each engine measured at the same moment, so a
    resample draws whole rounds (the lists must be of one length); else each engine's blocks are
    drawn on their own. Deterministic for a given ``seed``."""
    a, b = _check("tvm", tvm), _check("tflite", tflite)
    if paired and a.size != b.size:
        raise ValueError(f"paired block medians need one length each, not {a.size} and {b.size}")
    rng = np.random.default_rng(seed)
    index_a = rng.integers(0, a.size, size=(resamples, a.size))
    index_b = index_a if paired else rng.integers(0, b.size, size=(resamples, b.size))
    med_a, med_b = _resampled_medians(a, index_a), _resampled_medians(b, index_b)
    ratio_ci = _interval(med_a / med_b, confidence)
    verdict = FASTER if ratio_ci[1] < 1 else SLOWER if ratio_ci[0] > 1 else INDISTINGUISHABLE
    return Comparison(tvm=Estimate(float(np.median(a)), _interval(med_a, confidence), a.size),
                      tflite=Estimate(float(np.median(b)), _interval(med_b, confidence), b.size),
                      ratio=float(np.median(a) / np.median(b)), ratio_ci95=ratio_ci, verdict=verdict,
                      paired=paired, resamples=resamples, seed=seed)


__all__ = ["CONFIDENCE", "FASTER", "INDISTINGUISHABLE", "RESAMPLES", "SLOWER", "Comparison", "Estimate",
           "LatencyStats", "block_medians_ms", "compare_block_medians", "latency_stats", "median_estimate"]
