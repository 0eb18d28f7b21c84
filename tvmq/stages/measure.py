"""The measuring stages of a run: the build next to the TFLite reference, output by output
(:func:`verify`), then run for run (:func:`benchmark`).

The benchmark times both engines the same way, in one process: the same Python loop and
``time.perf_counter`` around one inference call whose inputs are already set, in alternating
blocks of runs (:func:`alternate_blocks`), so that both see the same moments of a noisy host;
:mod:`tvmq.report.stats` turns the block medians into intervals and a verdict.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from tvmq.errors import UsageError
from tvmq.options import MeasurementOptions, TargetOptions
from tvmq.report.model import BenchMethod, Latencies
from tvmq.report.stats import LatencyStats, block_medians_ms, compare_block_medians, median_estimate
from tvmq.report.verify import ImageVerdict, VerificationPolicy

from .source import Inputs
from .steps import Steps

CLOCK = "time.perf_counter"
MIN_BLOCK_S = 0.2  # a block lasts at least this long (less when the whole budget is smaller)
HARD_CAP_S = 30.0  # the measurement ends after max(this, 4 x the time asked per engine), minimums met or not
SETTLE_S = 0.05  # the least pause before each block (see alternate_blocks)
MAX_SETTLE_S = 1.0  # the most: a block starts then, whatever still runs
IDLE_SHARE = 0.1  # the process's threads are idle below this share of a core...
IDLE_WINDOW_S = 0.01  # ...over this long


def runnable(executable, lib: Path | None, where: TargetOptions):
    """Where a build runs: here (from the executable), or on a device leased from the RPC
    tracker (from the exported library). Either has ``run(arrays)`` and ``benchmark(arrays, repeat)``;
    a local one also ``timed_call(arrays)``, what :func:`benchmark` times."""
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


@dataclass(frozen=True)
class BlockPlan:
    """How long to time: rounds of one block per engine until each engine has at least
    ``min_total_s`` timed seconds and ``min_runs`` runs, and there were ``min_blocks`` rounds; or
    ``max_blocks`` rounds; or, whatever is missing, once ``max_total_s`` of wall-clock time is spent
    (checked after each round, so a very slow model still ends)."""

    min_total_s: float = 2.0
    min_blocks: int = 5
    min_runs: int = 1
    min_block_s: float = MIN_BLOCK_S  # a block runs at least this long...
    block_runs: int = 1  # ...and at least this many times
    max_blocks: int | None = None
    max_total_s: float = HARD_CAP_S
    warmup_runs: int = 2
    settle_s: float = SETTLE_S
    max_settle_s: float = MAX_SETTLE_S

    @classmethod
    def for_options(cls, measurement: MeasurementOptions, share: float = 1.0) -> BlockPlan:
        """The plan of ``tvmq-tune``'s (and ``tvmq-run``'s) measurement options; ``share`` of the time."""
        total = measurement.bench_seconds * share
        return cls(min_total_s=total, min_blocks=measurement.bench_blocks,
                   min_runs=max(1, round(measurement.repeat * share)),
                   min_block_s=min(MIN_BLOCK_S, total / measurement.bench_blocks),
                   max_total_s=max(HARD_CAP_S, 4 * total))


@dataclass(frozen=True)
class TimedBlocks:
    """Each engine's blocks, in rounds: ``runs_s[name][i]`` the seconds of each run of its block in
    round ``i``."""

    runs_s: dict[str, list[list[float]]]
    rounds: int
    seconds: float  # wall-clock, warm-up and pauses included
    capped: bool  # ended by ``max_total_s`` before the minimums were met

    def medians_ms(self, name: str) -> list[float]:
        return block_medians_ms(self.runs_s[name])


def time_block(call: Callable[[], object], min_runs: int, min_s: float) -> list[float]:
    """Seconds of each of at least ``min_runs`` calls, and more until ``min_s`` have passed. The
    garbage collector waits meanwhile (as in :mod:`timeit`)."""
    clock, times = time.perf_counter, []
    collecting = gc.isenabled()
    gc.disable()
    try:
        began = clock()
        while len(times) < min_runs or clock() - began < min_s:
            start = clock()
            call()
            times.append(clock() - start)
    finally:
        if collecting:
            gc.enable()
    return times


def wait_until_idle(min_s: float, max_s: float = MAX_SETTLE_S, window_s: float = IDLE_WINDOW_S,
                    share: float = IDLE_SHARE, cpu_clock: Callable[[], float] = time.process_time) -> float:
    """Sleep ``min_s``, then on until this process's other threads use less than ``share`` of a core
    over ``window_s`` (its CPU time, every thread's, grows by less while this one sleeps), at most
    ``max_s`` in all (``min_s`` when that is longer); the seconds waited. ``cpu_clock``: the
    process's CPU seconds (a test gives its own).

    TVM's pool workers spin after their last task (300,000 ``sched_yield`` calls, TVM's default
    ``TVM_THREAD_POOL_SPIN_COUNT``): 150-190 ms of a core on a 2-vCPU Zen 4 after a block of
    mobilenet_v2 runs, where XNNPACK's threads stop within 10 ms. A fixed 50 ms pause left TFLite's
    next block sharing a core with them: 4.8 ms where it takes 2.1 ms alone at 2 threads."""
    clock = time.perf_counter
    began = clock()
    if min_s > 0:
        time.sleep(min_s)
    while clock() - began < max_s:
        cpu, wall = cpu_clock(), clock()
        time.sleep(window_s)
        if cpu_clock() - cpu < share * (clock() - wall):
            break
    return clock() - began


def alternate_blocks(engines: Mapping[str, Callable[[], object]], plan: BlockPlan) -> TimedBlocks:
    """Time each engine (a call of one inference, inputs already set) in alternating blocks:
    ``plan.warmup_runs`` untimed runs each, then rounds of one block per engine, the order
    reversed every other round, until ``plan`` is satisfied.

    Each block starts at least ``plan.settle_s`` after the previous one ended, and only once the
    process's threads are idle (:func:`wait_until_idle`, at most ``plan.max_settle_s``): TVM's and
    XNNPACK's worker threads spin for a while after a parallel job before they sleep, and a block
    of the other engine run in that while would compete with them for the cores."""
    started = time.perf_counter()
    names = list(engines)
    for name in names:
        for _ in range(plan.warmup_runs):
            engines[name]()
    runs: dict[str, list[list[float]]] = {name: [] for name in names}
    rounds, capped = 0, False
    while True:
        for name in names if rounds % 2 == 0 else reversed(names):
            wait_until_idle(plan.settle_s, max(plan.settle_s, plan.max_settle_s))
            runs[name].append(time_block(engines[name], plan.block_runs, plan.min_block_s))
        rounds += 1
        if (plan.max_blocks is not None and rounds >= plan.max_blocks) or _enough(runs, rounds, plan):
            break
        if time.perf_counter() - started >= plan.max_total_s:
            capped = True
            break
    return TimedBlocks(runs, rounds, time.perf_counter() - started, capped)


def _enough(runs: dict[str, list[list[float]]], rounds: int, plan: BlockPlan) -> bool:
    return rounds >= plan.min_blocks and all(
        sum(map(sum, blocks)) >= plan.min_total_s and sum(map(len, blocks)) >= plan.min_runs
        for blocks in runs.values())


def compare_engines(tvm_call: Callable[[], object], tflite_call: Callable[[], object], plan: BlockPlan,
                    threads: int) -> Latencies:
    """tvmq's build against TFLite, each a call of one inference on inputs already set, timed in
    alternating blocks; the latencies with their bootstrap intervals and the verdict."""
    timed = alternate_blocks({"tvm": tvm_call, "tflite": tflite_call}, plan)
    comparison = compare_block_medians(timed.medians_ms("tvm"), timed.medians_ms("tflite"))
    method = BenchMethod(timing="alternating-blocks", clock=CLOCK, threads=threads, blocks=timed.rounds,
                         min_total_s=plan.min_total_s, min_blocks=plan.min_blocks, seconds=round(timed.seconds, 3),
                         capped=timed.capped)
    return Latencies(tvm=LatencyStats.from_blocks(timed.runs_s["tvm"], comparison.tvm),
                     tflite=LatencyStats.from_blocks(timed.runs_s["tflite"], comparison.tflite),
                     comparison=comparison, method=method)


def same_inputs(build_inputs, model_inputs, build_name: str, model_name: str) -> None:
    """:class:`UsageError` unless a model takes the inputs a build takes (as many, each of one shape
    and dtype; ``TensorInfo`` lists): only then can both be timed on the same arrays."""
    def text(tensors) -> str:
        return ", ".join(f"{t.dtype}{list(t.shape)}" for t in tensors) or "none"

    if [(list(t.shape), t.dtype) for t in build_inputs] != [(list(t.shape), t.dtype) for t in model_inputs]:
        raise UsageError(f"{model_name} does not take the inputs of the build {build_name}: "
                         f"it takes {text(model_inputs)}, the build {text(build_inputs)}")


def benchmark(build, reference, arrays, measurement: MeasurementOptions, steps: Steps) -> Latencies:
    """The build and TFLite on the same input and thread count: alternating blocks in this process
    (:func:`compare_engines`); a build on an RPC device: :func:`benchmark_remote`."""
    if not hasattr(build, "timed_call"):
        return benchmark_remote(build, reference, arrays, measurement, steps)
    plan = BlockPlan.for_options(measurement)
    with steps.step("benchmark", f"benchmark TVM and TFLite in alternating blocks (at least {plan.min_total_s:g} s, "
                                 f"{plan.min_runs} runs and {plan.min_blocks} blocks each)"):
        return compare_engines(build.timed_call(arrays), reference.timed_call(arrays), plan, reference.num_threads)


def benchmark_remote(build, reference, arrays, measurement: MeasurementOptions, steps: Steps) -> Latencies:
    """A build on an RPC device cannot run in this process's loop: ``repeat`` blocks timed there by
    TVM's time evaluator (each the mean of as many runs as fill ``bench_seconds / repeat``), then
    TFLite's blocks here. Not paired: each engine resampled on its own, and the method says so.
    (TFLite runs on this host, not on the device: the ratio compares two machines.)"""
    repeat = measurement.repeat
    block_ms = int(1e3 * measurement.bench_seconds / repeat)
    started = time.perf_counter()
    with steps.step("benchmark", f"benchmark TVM (on the RPC device, {repeat} blocks) and TFLite (here)"):
        tvm_s = build.benchmark(arrays, repeat=repeat, min_repeat_ms=block_ms)
        plan = replace(BlockPlan.for_options(measurement), min_blocks=repeat)
        tfl = alternate_blocks({"tflite": reference.timed_call(arrays)}, plan)
    comparison = compare_block_medians([s * 1e3 for s in tvm_s], tfl.medians_ms("tflite"), paired=False)
    method = BenchMethod(timing="rpc-time-evaluator", clock=f"TVM time evaluator (device), {CLOCK} (TFLite)",
                         threads=reference.num_threads, blocks=repeat, min_total_s=measurement.bench_seconds,
                         min_blocks=repeat, seconds=round(time.perf_counter() - started, 3))
    return Latencies(tvm=LatencyStats.from_blocks([[s] for s in tvm_s], comparison.tvm),
                     tflite=LatencyStats.from_blocks(tfl.runs_s["tflite"], comparison.tflite),
                     comparison=comparison, method=method)


def benchmark_untuned(build, arrays, measurement: MeasurementOptions) -> LatencyStats:
    """The untuned build alone, a third of the time and runs: the baseline of the tuned speed-up
    (blocks and an interval like the others; on an RPC device, a third of the runs, at least 3)."""
    if not hasattr(build, "timed_call"):
        seconds = build.benchmark(arrays, repeat=max(3, measurement.repeat // 3))
        return LatencyStats.from_blocks([[s] for s in seconds], median_estimate([s * 1e3 for s in seconds]))
    timed = alternate_blocks({"untuned": build.timed_call(arrays)}, BlockPlan.for_options(measurement, share=1 / 3))
    return LatencyStats.from_blocks(timed.runs_s["untuned"], median_estimate(timed.medians_ms("untuned")))


__all__ = ["BlockPlan", "TimedBlocks", "Verification", "alternate_blocks", "benchmark", "benchmark_remote",
           "benchmark_untuned", "compare_engines", "runnable", "same_inputs", "time_block", "verification_reference",
           "verify", "wait_until_idle"]
