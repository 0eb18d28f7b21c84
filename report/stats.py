"""Latency statistics over repeated runs."""

from __future__ import annotations

import statistics


def latency_stats(seconds: list[float]) -> dict:
    """median / mean / std / min / max in milliseconds, and the number of runs."""
    ms = [s * 1e3 for s in seconds]
    if not ms:
        return {"runs": 0}
    return {
        "median": statistics.median(ms),
        "mean": statistics.fmean(ms),
        "std": statistics.stdev(ms) if len(ms) > 1 else 0.0,
        "min": min(ms),
        "max": max(ms),
        "runs": len(ms),
    }
