"""The measuring stages of a run: the build next to the TFLite reference, output by output
(:func:`verify`), then run for run (:func:`benchmark`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tvmq.options import MeasurementOptions, TargetOptions
from tvmq.report.model import Latencies
from tvmq.report.stats import LatencyStats
from tvmq.report.verify import ImageVerdict

from .source import Inputs
from .steps import Steps


def runnable(executable, lib: Path | None, where: TargetOptions):
    """Where a build runs: here (from the executable), or on a device leased from the RPC
    tracker (from the exported library). Either has ``run(arrays)`` and ``benchmark(arrays, repeat)``."""
    if where.rpc_tracker:
        from tvmq.tuner.remote import RemoteRunnable

        return RemoteRunnable(lib, where.rpc_tracker, where.rpc_key)
    from tvmq.tuner.compile import Runnable

    return Runnable(executable)


@dataclass(frozen=True)
class Verification:
    images: list[ImageVerdict]

    @property
    def verdict(self) -> str:
        return "pass" if all(v.passed for v in self.images) else "fail"


def verify(build, reference, feed: Inputs, measurement: MeasurementOptions, steps: Steps) -> Verification:
    """Every input through the build and through the reference; each compared output by output."""
    from tvmq.report.verify import compare_outputs

    images = []
    with steps.step("verify", f"verify {len(feed.samples)} input(s) against {reference.name}"):
        for sample in feed.samples:
            images.append(compare_outputs(sample.name, build.run(sample.arrays), reference.run(sample.arrays),
                                          feed.output_names, labels=feed.labels, tolerance=measurement.tolerance))
    return Verification(images)


def benchmark(build, reference, arrays, measurement: MeasurementOptions, steps: Steps) -> Latencies:
    """``repeat`` runs of each engine on the same input and thread count."""
    repeat = measurement.repeat
    with steps.step("benchmark", f"benchmark TVM and TFLite ({repeat} runs each)"):
        tvm_s = build.benchmark(arrays, repeat=repeat)
        tfl_s = reference.benchmark(arrays, repeat=repeat)
    return Latencies(tvm=LatencyStats.from_seconds(tvm_s), tflite=LatencyStats.from_seconds(tfl_s))


def benchmark_untuned(build, arrays, measurement: MeasurementOptions) -> LatencyStats:
    """The untuned build, a third of the runs (at least 3): the baseline of the tuned speed-up."""
    return LatencyStats.from_seconds(build.benchmark(arrays, repeat=max(3, measurement.repeat // 3)))


__all__ = ["Verification", "benchmark", "benchmark_untuned", "runnable", "verify"]
