"""The report of one run as typed sections; :meth:`Report.to_dict` is the JSON contract of
``tvmq-tune --json`` (``report.json``), the only place its keys are spelled."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace

from .stats import Comparison, LatencyStats
from .verify import ImageVerdict

REPORT_FORMAT = 1


@dataclass(frozen=True)
class BenchMethod:
    """How the latencies were measured. ``timing``: ``"alternating-blocks"`` (both engines here, in
    turn, the same Python loop around one inference: :func:`tvmq.stages.measure.alternate_blocks`)
    or ``"rpc-time-evaluator"`` (the build on an RPC device timed by TVM's time evaluator, TFLite
    on this host: not paired, each run its own block)."""

    timing: str
    clock: str
    threads: int
    blocks: int  # rounds measured (blocks of each engine)
    min_total_s: float  # asked: at least this much timed per engine
    min_blocks: int
    seconds: float  # wall-clock time the measurement took
    capped: bool = False  # stopped by the hard cap before the minimums were met

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Latencies:
    """The benchmark: tvmq's build and TFLite on the same input and thread count, compared with
    bootstrap intervals (``comparison``), and the untuned build where the run had tuned schedules
    to compare with."""

    tvm: LatencyStats
    tflite: LatencyStats
    tvm_untuned: LatencyStats | None = None
    comparison: Comparison | None = None
    method: BenchMethod | None = None

    def with_untuned(self, untuned: LatencyStats) -> Latencies:
        return replace(self, tvm_untuned=untuned)

    @property
    def ratio_tvm_over_tflite(self) -> float | None:
        return self.comparison.ratio if self.comparison else _ratio(self.tvm, self.tflite)

    @property
    def speedup_tuned_over_untuned(self) -> float | None:
        return _ratio(self.tvm_untuned, self.tvm) if self.tvm_untuned else None

    def to_dict(self) -> dict:
        d = {"tvm": self.tvm.to_dict(), "tflite": self.tflite.to_dict(),
             "ratio_tvm_over_tflite": self.ratio_tvm_over_tflite}
        if self.comparison is not None:
            d["ratio_ci95"] = list(self.comparison.ratio_ci95)
            d["comparison"] = self.comparison.verdict
        if self.method is not None:
            d["method"] = self.method.to_dict()
        if self.tvm_untuned is not None:
            d["tvm_untuned"] = self.tvm_untuned.to_dict()
            d["speedup_tuned_over_untuned"] = self.speedup_tuned_over_untuned
        return d


def _ratio(a: LatencyStats | None, b: LatencyStats | None) -> float | None:
    if a is None or b is None or not a.median or not b.median:
        return None
    return a.median / b.median


@dataclass(frozen=True)
class TargetSection:
    name: str
    reason: str
    tvm_target: dict
    threads: int
    measured_on: str | None = None  # "this host" or "rpc KEY@TRACKER"; None for a build only

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["measured_on"] is None:
            del d["measured_on"]
        return d


@dataclass(frozen=True)
class HostSection:
    cpu: str
    cores: int
    arch: str

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Transforms:
    """What was done to the imported graph: layouts per convolution, and the int8 lowering."""

    convolutions: dict[str, int]
    requant: str | None = None  # only with --int8
    int8: dict | None = None  # the lowering's statistics
    int8_intrinsics: dict | None = None  # layers per dot-product intrinsic

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ArtifactSection:
    path: str
    bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Report:
    """Everything a run tells. Sections a run did not reach stay None (``tuning`` without a
    database lookup, ``latencies`` for a build only)."""

    model: dict  # ModelInfo.to_dict() with the source and the cached path
    target: TargetSection
    host: HostSection
    transforms: Transforms
    verdict: str | None = None  # "pass", "fail" or "built"
    images: list[ImageVerdict] = field(default_factory=list)
    verification: dict | None = None  # tvmq.stages.Verification.to_dict(): reference kernels, policy, failures
    mismatch: object | None = None  # tvmq.report.mismatch.Mismatch (--explain-mismatch)
    latencies: Latencies | None = None
    tuning: object | None = None  # tvmq.tuner.tune.TuningResult (kept untyped: no TVM import here)
    artifact: ArtifactSection | None = None
    partition: dict | None = None  # tvmq.model.partition.Partition.to_dict(): which operators run where
    versions: dict = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def reference_name(self) -> str:
        return self.versions.get("tflite_interpreter", "TFLite")

    def to_dict(self) -> dict:
        d = {
            "tvmq_report": REPORT_FORMAT,
            "created": self.created,
            "model": self.model,
            "target": self.target.to_dict(),
            "host": self.host.to_dict(),
            "transforms": self.transforms.to_dict(),
            "verdict": self.verdict,
            "images": [v.to_dict() for v in self.images],
            "verification": self.verification or {},
            "latency_ms": self.latencies.to_dict() if self.latencies else {},
            "timings_s": self.timings_s,
        }
        if self.mismatch is not None:
            d["mismatch"] = self.mismatch.to_dict()
        if self.tuning is not None:
            d["tuning"] = self.tuning.to_dict()
        if self.artifact is not None:
            d["artifact"] = self.artifact.to_dict()
        if self.partition is not None:
            d["partition"] = self.partition
        d["versions"] = self.versions
        return d


__all__ = ["ArtifactSection", "BenchMethod", "HostSection", "Latencies", "LatencyStats", "Report", "TargetSection", "Transforms"]
