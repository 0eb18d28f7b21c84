"""Latency statistics over repeated runs."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds over repeated runs."""

    runs: int
    median: float | None = None
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None

    @classmethod
    def from_seconds(cls, seconds: list[float]) -> LatencyStats:
        ms = [s * 1e3 for s in seconds]
        if not ms:
            return cls(runs=0)
        return cls(runs=len(ms), median=statistics.median(ms), mean=statistics.fmean(ms),
                   std=statistics.stdev(ms) if len(ms) > 1 else 0.0, min=min(ms), max=max(ms))

    def to_dict(self) -> dict:
        return {"runs": 0} if not self.runs else asdict(self)


def latency_stats(seconds: list[float]) -> dict:
    """median / mean / std / min / max in milliseconds, and the number of runs."""
    return LatencyStats.from_seconds(seconds).to_dict()
