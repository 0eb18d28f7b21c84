"""The measuring stages of a run: the build next to the TFLite reference, output by output
(:func:`verify`), then run for run (:func:`benchmark`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tvmq.options import MeasurementOptions, TargetOptions
from tvmq.report.model import Latencies
from tvmq.report.stats import LatencyStats
from tvmq.report.verify import ImageVerdict, VerificationPolicy

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
    policy: VerificationPolicy
    reference: str  # the interpreter and kernels compared with, in words

    @property
    def verdict(self) -> str:
        return "pass" if all(v.passed for v in self.images) else "fail"

    def failures(self) -> list[str]:
        return [line for img in self.images for line in img.failures()]

    def to_dict(self) -> dict:
        return {"reference": self.reference, **self.policy.to_dict(), "failures": self.failures()}


def verification_reference(model, policy: VerificationPolicy, threads: int, benchmarked):
    """The interpreter a build is verified against: ``benchmarked`` (TFLite as it ships) when the
    policy asks for the XNNPACK kernels, else one running the kernels it names."""
    from tvmq.model import Reference

    return benchmarked if policy.kernels == benchmarked.kernels else Reference(model, threads, kernels=policy.kernels)


def verify(build, reference, feed: Inputs, policy: VerificationPolicy, steps: Steps) -> Verification:
    """Every input through the build and through the reference; each compared output by output as
    ``policy`` says (:func:`tvmq.report.verify.verification_policy`)."""
    from tvmq.report.verify import compare_outputs

    images = []
    how = "every value equal" if policy.exact else f"tolerance {policy.tolerance:g}"
    with steps.step("verify", f"verify {len(feed.samples)} input(s) against {reference.name} ({how})"):
        for sample in feed.samples:
            images.append(compare_outputs(sample.name, build.run(sample.arrays), reference.run(sample.arrays),
                                          feed.output_names, labels=feed.labels, tolerance=policy.tolerance,
                                          exact=policy.exact))
    return Verification(images, policy, reference.name)


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


__all__ = ["Verification", "benchmark", "benchmark_untuned", "runnable", "verification_reference", "verify"]
