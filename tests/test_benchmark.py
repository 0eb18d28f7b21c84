"""The benchmark: both engines timed by one loop in alternating blocks, bootstrap intervals of the
medians of block medians and of the tvmq/TFLite ratio, the verdict, and how reports and
``tvmq-run --compare-tflite`` tell it."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.cli_helpers import run_main, untuned_build
from tvmq.errors import UsageError
from tvmq.options import MeasurementOptions, RunOptions
from tvmq.report.model import BenchMethod, Latencies
from tvmq.report.render import comparison_line, method_line
from tvmq.report.stats import (FASTER, INDISTINGUISHABLE, SLOWER, LatencyStats, compare_block_medians,
                               median_estimate)
from tvmq.stages import Steps
from tvmq.stages.measure import BlockPlan, alternate_blocks, benchmark, benchmark_untuned, time_block


def noisy(center: float, n: int, seed: int, spread: float = 0.05) -> list[float]:
    return list(center * (1 + spread * np.random.default_rng(seed).standard_normal(n)))


# ----------------------------------------------------------------------------- statistics
def test_clearly_separated_blocks_give_faster_and_slower():
    quick, slow = noisy(8.0, 12, seed=1), noisy(10.0, 12, seed=2)
    c = compare_block_medians(quick, slow)
    assert c.verdict == FASTER and c.ratio_ci95[1] < 1
    assert c.ratio == pytest.approx(np.median(quick) / np.median(slow))
    assert compare_block_medians(slow, quick).verdict == SLOWER


def test_the_same_noisy_engine_twice_is_indistinguishable():
    blocks = noisy(10.0, 12, seed=3, spread=0.1)
    assert compare_block_medians(blocks, blocks).verdict == INDISTINGUISHABLE
    # two draws of one distribution: the interval straddles 1
    c = compare_block_medians(noisy(10.0, 12, seed=4, spread=0.1), noisy(10.0, 12, seed=5, spread=0.1))
    assert c.verdict == INDISTINGUISHABLE and c.ratio_ci95[0] < 1 < c.ratio_ci95[1]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_each_interval_holds_its_point_estimate(seed):
    a, b = noisy(7.0, 9, seed=seed, spread=0.2), noisy(7.5, 9, seed=seed + 100, spread=0.2)
    for paired in (True, False):
        c = compare_block_medians(a, b, paired=paired)
        assert c.ratio_ci95[0] <= c.ratio <= c.ratio_ci95[1]
        for est, values in ((c.tvm, a), (c.tflite, b)):
            assert est.ci95[0] <= est.median <= est.ci95[1] and est.median == pytest.approx(np.median(values))
            assert est.blocks == len(values)


def test_deterministic_with_the_seed():
    a, b = noisy(7.0, 9, seed=7, spread=0.2), noisy(7.2, 9, seed=8, spread=0.2)
    assert compare_block_medians(a, b, seed=11) == compare_block_medians(a, b, seed=11)
    assert compare_block_medians(a, b, seed=11).ratio_ci95 != compare_block_medians(a, b, seed=12).ratio_ci95
    assert median_estimate(a, seed=5) == median_estimate(a, seed=5)


def test_pairing_by_round_cancels_a_drifting_host():
    """The host's load doubles and halves between rounds; tvmq is 10% faster in every round. Paired
    by round that is clear; each engine resampled on its own it drowns in the drift."""
    load = 1 + np.random.default_rng(9).uniform(0, 1, 12)
    tflite = list(10.0 * load)
    tvm = list(9.0 * load * (1 + 0.01 * np.random.default_rng(10).standard_normal(12)))
    assert compare_block_medians(tvm, tflite, paired=True).verdict == FASTER
    assert compare_block_medians(tvm, tflite, paired=False).verdict == INDISTINGUISHABLE


def test_bad_block_medians_are_refused():
    with pytest.raises(ValueError, match="one length"):
        compare_block_medians([1.0, 2.0], [1.0])
    assert compare_block_medians([1.0, 2.0], [1.0], paired=False).tflite.blocks == 1
    for bad in ([], [0.0, 1.0], [float("nan")]):
        with pytest.raises(ValueError):
            compare_block_medians(bad, [1.0] * max(1, len(bad)))


# ----------------------------------------------------------------------------- the timing loop
class Engine:
    """A callable that sleeps ``seconds`` and logs its name, standing in for one inference."""

    def __init__(self, name: str, seconds: float, log: list[str]):
        self.name, self.seconds, self.log = name, seconds, log

    def __call__(self):
        self.log.append(self.name)
        time.sleep(self.seconds)


def test_time_block_runs_long_enough_and_often_enough():
    log: list[str] = []
    times = time_block(Engine("a", 0.002, log), min_runs=3, min_s=0.03)
    assert len(times) >= 3 and sum(times) >= 0.03 * 0.9 and all(t >= 0.002 for t in times)
    assert len(time_block(Engine("a", 0.0, log), min_runs=4, min_s=0)) == 4


def test_alternating_blocks_meet_every_minimum_in_alternating_order():
    log: list[str] = []
    plan = BlockPlan(min_total_s=0.06, min_blocks=4, min_runs=10, min_block_s=0.01, settle_s=0.001)
    timed = alternate_blocks({"tvm": Engine("tvm", 0.001, log), "tflite": Engine("tflite", 0.002, log)}, plan)
    assert not timed.capped and timed.rounds >= 4
    for name in ("tvm", "tflite"):
        blocks = timed.runs_s[name]
        assert len(blocks) == timed.rounds and len(timed.medians_ms(name)) == timed.rounds
        assert sum(map(sum, blocks)) >= 0.06 and sum(map(len, blocks)) >= 10
    timed_log = log[2 * plan.warmup_runs:]
    firsts = [timed_log[0]]
    for prev, cur in zip(timed_log, timed_log[1:]):
        if cur != prev:
            firsts.append(cur)
    # rounds go tvm,tflite | tflite,tvm | tvm,tflite ...: the engine switches once per round or less
    assert firsts[:3] == ["tvm", "tflite", "tvm"]
    assert np.median(timed.medians_ms("tflite")) > np.median(timed.medians_ms("tvm"))


def test_a_fixed_number_of_blocks_and_the_hard_cap():
    log: list[str] = []
    fixed = BlockPlan(min_total_s=100, min_blocks=2, min_block_s=0, block_runs=3, max_blocks=3, settle_s=0)
    timed = alternate_blocks({"a": Engine("a", 0, log)}, fixed)
    assert timed.rounds == 3 and [len(b) for b in timed.runs_s["a"]] == [3, 3, 3] and not timed.capped
    slow = BlockPlan(min_total_s=100, min_blocks=100, min_block_s=0.01, max_total_s=0.2, settle_s=0)
    start = time.perf_counter()
    timed = alternate_blocks({"slow": Engine("slow", 0.05, log)}, slow)
    assert timed.capped and time.perf_counter() - start < 2 and timed.rounds >= 1


def test_plan_of_the_options():
    plan = BlockPlan.for_options(MeasurementOptions(repeat=12, bench_seconds=2.0, bench_blocks=5))
    assert (plan.min_total_s, plan.min_blocks, plan.min_runs, plan.max_total_s) == (2.0, 5, 12, 30.0)
    assert BlockPlan.for_options(MeasurementOptions(bench_seconds=20)).max_total_s == 80
    third = BlockPlan.for_options(MeasurementOptions(repeat=12, bench_seconds=3.0), share=1 / 3)
    assert third.min_total_s == pytest.approx(1.0) and third.min_runs == 4


@pytest.mark.parametrize("name,value", [("bench_seconds", -1.0), ("bench_seconds", float("inf")),
                                        ("bench_seconds", 4000.0), ("bench_blocks", 1), ("repeat", 0)])
def test_measurement_options_out_of_range(name, value):
    with pytest.raises(UsageError, match=f"--{name.replace('_', '-')}"):
        RunOptions.from_mapping({"model": "m.tflite", name: value})


# ----------------------------------------------------------------------------- the stage, local and remote
class LocalBuild:
    def __init__(self, seconds: float):
        self.seconds, self.inputs = seconds, None

    def timed_call(self, arrays):
        self.inputs = arrays
        return lambda: time.sleep(self.seconds)


class Remote:
    """Like tvmq.tuner.remote.RemoteRunnable: ``benchmark`` only (each result a block's mean)."""

    def __init__(self):
        self.block_ms: list[int] = []

    def benchmark(self, arrays, repeat, min_repeat_ms=0):
        self.block_ms.append(min_repeat_ms)
        return [0.004 + 0.0001 * i for i in range(repeat)]


class FakeReference(LocalBuild):
    num_threads = 2

    def benchmark(self, arrays, repeat):
        return [0.008] * repeat


FAST = MeasurementOptions(repeat=6, bench_seconds=0.05, bench_blocks=3)


def test_benchmark_times_both_engines_on_the_same_input():
    build, ref, arrays = LocalBuild(0.001), FakeReference(0.004), [np.zeros(3)]
    lat = benchmark(build, ref, arrays, FAST, Steps.quiet())
    assert build.inputs is arrays and ref.inputs is arrays
    d = lat.to_dict()
    assert d["comparison"] == FASTER and d["method"]["timing"] == "alternating-blocks"
    assert d["method"]["threads"] == 2 and d["method"]["clock"] == "time.perf_counter"
    assert d["method"]["blocks"] == d["tvm"]["blocks"] == d["tflite"]["blocks"] >= 3
    for engine in ("tvm", "tflite"):
        s = d[engine]
        assert s["runs"] >= 6 and s["ci95"][0] <= s["median"] <= s["ci95"][1] and s["min"] <= s["median"] <= s["max"]
    assert isinstance(d["ratio_tvm_over_tflite"], float)
    assert d["ratio_tvm_over_tflite"] == pytest.approx(d["tvm"]["median"] / d["tflite"]["median"])
    lo, hi = d["ratio_ci95"]
    assert lo <= d["ratio_tvm_over_tflite"] <= hi < 1
    untuned = benchmark_untuned(LocalBuild(0.003), arrays, FAST)
    assert untuned.blocks >= 3 and untuned.ci95[0] <= untuned.median <= untuned.ci95[1]
    d = lat.with_untuned(untuned).to_dict()
    assert d["speedup_tuned_over_untuned"] == pytest.approx(untuned.median / lat.tvm.median)
    assert set(d["tvm_untuned"]) >= {"median", "ci95", "blocks", "runs"}


def test_a_remote_build_keeps_its_evaluator_and_says_so():
    remote = Remote()
    lat = benchmark(remote, FakeReference(0.008), [np.zeros(3)], FAST, Steps.quiet())
    d = lat.to_dict()
    assert d["method"]["timing"] == "rpc-time-evaluator" and not lat.comparison.paired
    # --repeat blocks on the device, each filling its share of --bench-seconds; TFLite in as many blocks here
    assert remote.block_ms == [int(1e3 * FAST.bench_seconds / FAST.repeat)]
    assert d["tvm"]["runs"] == d["tvm"]["blocks"] == 6 and d["tflite"]["blocks"] >= 6
    assert d["comparison"] == FASTER
    assert "RPC device" in method_line(lat)
    untuned = benchmark_untuned(Remote(), [np.zeros(3)], MeasurementOptions(repeat=12))
    assert untuned.runs == 4 and untuned.blocks == 4


# ----------------------------------------------------------------------------- telling it
def latencies(tvm: list[float], tflite: list[float]) -> Latencies:
    c = compare_block_medians(tvm, tflite)
    method = BenchMethod("alternating-blocks", "time.perf_counter", 2, len(tvm), 2.0, 5, 4.2)
    return Latencies(tvm=LatencyStats.from_blocks([[m / 1e3] for m in tvm], c.tvm),
                     tflite=LatencyStats.from_blocks([[m / 1e3] for m in tflite], c.tflite), comparison=c,
                     method=method)


def test_verdict_lines():
    faster = latencies(noisy(8.0, 10, 1, 0.01), noisy(10.0, 10, 2, 0.01))
    line = comparison_line(faster)
    assert line.startswith("tvmq is 1.2") and "x faster than TFLite (95% CI 1." in line
    lo, hi = (float(x) for x in line.split("CI ")[1].rstrip("x)").split("-"))
    assert lo <= 1 / faster.comparison.ratio <= hi
    assert "x slower than TFLite (95% CI 1." in comparison_line(latencies(noisy(10.0, 10, 2, 0.01),
                                                                          noisy(8.0, 10, 1, 0.01)))
    same = noisy(10.0, 10, 3, 0.1)
    assert "indistinguishable from TFLite at 95% confidence" in comparison_line(latencies(same, same))
    assert comparison_line(Latencies(LatencyStats(runs=0), LatencyStats(runs=0))) is None
    assert "10 rounds of alternating blocks" in method_line(faster)


def test_markdown_and_console_show_the_intervals(tmp_path):
    from rich.console import Console

    from tvmq.report.model import HostSection, Report, TargetSection, Transforms
    from tvmq.report.render import print_report, to_markdown, write_reports

    report = Report(model={"name": "m", "source": "m.tflite", "sha256": "0" * 64, "quantization": "int8"},
                    target=TargetSection("native", "host", {"kind": "llvm"}, 2), host=HostSection("cpu", 2, "x86_64"),
                    transforms=Transforms({}), verdict="pass",
                    latencies=latencies(noisy(8.0, 10, 1, 0.01), noisy(10.0, 10, 2, 0.01)))
    md = to_markdown(report)
    assert "| engine | median | 95% CI |" in md and "x faster than TFLite (95% CI" in md
    console = Console(record=True, width=200)
    print_report(report, console)
    text = console.export_text()
    assert "95% CI" in text and "faster than TFLite" in text
    write_reports(report, tmp_path / "r.json", None)
    r = json.loads((tmp_path / "r.json").read_text())["latency_ms"]
    assert r["comparison"] == FASTER and len(r["ratio_ci95"]) == 2 and len(r["tvm"]["ci95"]) == 2
    assert r["method"]["min_total_s"] == 2.0 and r["tvm"]["blocks"] == 10


# ----------------------------------------------------------------------------- tvmq-run --compare-tflite
@pytest.fixture(scope="module")
def built(tmp_path_factory, model_factory) -> Path:
    """An untuned build of the small uint8 model for this host, one thread."""
    return untuned_build(model_factory.path("uint8"), tmp_path_factory.mktemp("built") / "build")


def tvmq_run(capsys, *args) -> tuple[int, str]:
    from tvmq.cli.run import main

    return run_main(main, capsys, [str(a) for a in args])


def test_run_compares_a_build_with_tflite(capsys, built, model_factory):
    fast = ("--bench-seconds", "0.05", "--bench-blocks", "3")
    rc, text = tvmq_run(capsys, built, "--compare-tflite", model_factory.path("uint8"), *fast, "--json")
    assert rc == 0, text
    c = json.loads(text[text.index("{"):])["comparison"]
    assert c["comparison"] in (FASTER, SLOWER, INDISTINGUISHABLE) and c["method"]["threads"] == 1
    assert c["tvm"]["blocks"] >= 3 and c["tflite"]["runs"] >= 3
    assert c["ratio_ci95"][0] <= c["ratio_tvm_over_tflite"] <= c["ratio_ci95"][1]
    assert c["summary"].startswith("tvmq is ") and "95%" in c["summary"]
    rc, text = tvmq_run(capsys, built, "--compare-tflite", model_factory.path("uint8"), *fast, "--threads", "2")
    assert rc == 0, text
    assert "tvmq is " in text and "95%" in text and "block medians" in text


def test_run_refuses_a_model_with_other_inputs(capsys, built, model_factory):
    other = model_factory.path("int8")
    capsys.readouterr()  # what converting the model printed
    rc, text = tvmq_run(capsys, built, "--compare-tflite", other, "--bench-seconds", "0")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1 and "Traceback" not in text, text
    assert "does not take the inputs of the build" in lines[0] and "int8" in lines[0]


@pytest.mark.parametrize("option,value", [("--bench-seconds", "-1"), ("--bench-blocks", "1")])
def test_run_bad_benchmark_options(capsys, built, option, value):
    rc, text = tvmq_run(capsys, built, "--compare-tflite", "m.tflite", option, value)
    assert rc == 2 and option in text and "Traceback" not in text


def test_a_block_waits_until_the_other_engines_threads_stop_spinning():
    # the process's CPU time as it grows while another thread keeps a core busy until ``until``
    # (TVM's pool workers after a block): deterministic, whatever else the machine runs
    from tvmq.stages.measure import wait_until_idle

    def busy_until(until: float):
        start = time.perf_counter()
        return lambda: min(time.perf_counter(), until) - start

    assert wait_until_idle(0.02, cpu_clock=busy_until(0.0)) < 0.2  # idle: the least pause and a window
    began = time.perf_counter()
    waited = wait_until_idle(0.02, cpu_clock=busy_until(began + 0.3))
    assert 0.29 <= waited < 1.0
    assert wait_until_idle(0.0, max_s=0.2, cpu_clock=busy_until(time.perf_counter() + 5)) < 0.4  # the most it waits
