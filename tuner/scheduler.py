"""The task scheduler: MetaSchedule's gradient rule, with every batch joined as soon as it is sent.

MetaSchedule's own ``GradientBased`` scheduler dispatches one round to every task before it
joins any of them. Until then no measure callback runs: nothing reaches the database, the
progress bar stands still, and Ctrl-C or a crash in that phase (hundreds of trials on a model
of 45 tasks) loses every measurement. This scheduler picks tasks by the same rule (a round for
every task first, then the task whose weighted latency promises the largest gain, from its
recent improvement and from the diminishing return of more trials), but it joins every running
task before it picks the next one, so each measured batch is committed before the next is built.
"""

from __future__ import annotations

import math
import random
import time

from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.task_scheduler import PyTaskScheduler


def median_ms(runner_result) -> float | None:
    """Median run time of a measured candidate in ms; None for a failed one."""
    if runner_result.error_msg is not None or not runner_result.run_secs:
        return None
    secs = sorted(float(s) for s in runner_result.run_secs)
    return secs[len(secs) // 2] * 1e3


EXPECTED_TRIALS_PER_S = 2.3  # whole default runs on 2 vCPUs measured 140-166 trials/min


def round_size(n_tasks: int, trials: int, budget_s: float | None, largest: int = 32) -> int:
    """Candidates measured per round of one task: ``largest`` where the search can give each of
    ``n_tasks`` a round that size, else half of it, so that a short budget still reaches every
    task. A budget's trials are estimated at :data:`EXPECTED_TRIALS_PER_S`.

    On the built-in model's 32 tasks and the default 3 minutes (2-vCPU Zen 4, one run each),
    rounds of 32 reached 14 tasks at 144 trials/min (the build then ran at 1.05x TFLite's time),
    rounds of 16 reached 27 at 140/min (0.95x), and rounds of 8 all 32 at 88/min (1.09x)."""
    can = trials if not budget_s else min(trials, int(budget_s * EXPECTED_TRIALS_PER_S))
    size = largest if n_tasks * largest <= can else max(1, largest // 2)
    return max(1, min(size, trials))


def budget_tasks(tasks: list[int], costs: list[float], trials: int, per_iter: int, rounds: int = 2,
                 negligible: float = 0.02) -> list[int]:
    """The tasks worth searching with ``trials``, most costly first (the order of the first
    round, so that a budget that ends early has spent it where the time is).

    ``costs`` are the tasks' untuned shares of the model (weight x latency). When the budget
    cannot give every task ``rounds`` rounds of ``per_iter`` trials, the cheapest tasks that
    together hold at most ``negligible`` of the untuned time are left to their default schedule
    (an int8 mobilenet_v2 has a dozen adds and requantizes of a few microseconds each: one
    round each is ~200 trials taken from the convolutions). When it cannot give the rest one
    round each, only the costliest ``trials // per_iter`` are searched."""
    order = sorted(range(len(tasks)), key=lambda k: -costs[k])
    if len(order) * per_iter * rounds > trials:
        total = sum(costs) or 1.0
        dropped = 0.0
        while len(order) > 1 and (dropped + costs[order[-1]]) / total <= negligible:
            dropped += costs[order.pop()]
    order = order[: max(1, trials // per_iter)]
    return [tasks[k] for k in order]


@derived_object
class EagerGradientScheduler(PyTaskScheduler):
    """Gradient-based task selection (alpha, window as in MetaSchedule) with eager joins."""

    def __init__(self, alpha: float = 0.2, window: int = 3, seed: int = 0, deadline: float | None = None):
        super().__init__()
        self.deadline = deadline  # time.perf_counter() after which no batch starts (a --budget)
        self.alpha = alpha
        self.window = window
        self.rng = random.Random(seed)
        self.history: dict[int, list[float]] = {}  # task -> best latency (ms) after each of its rounds
        self.rounds: dict[int, int] = {}
        self.failed_rounds: dict[int, int] = {}
        self.next_warmup = 0

    def _join_all(self, sched) -> None:
        for task_id, record in enumerate(sched.tasks_):
            if not record.is_terminated and record.measure_candidates is not None:
                results = sched.join_running_task(task_id)
                self._note(task_id, results)

    def _note(self, task_id: int, results) -> None:
        latencies = [m for m in (median_ms(r) for r in results) if m is not None]
        hist = self.history.setdefault(task_id, [])
        best = min([*latencies, *(hist[-1:] or [math.inf])])
        hist.append(best)
        self.rounds[task_id] = self.rounds.get(task_id, 0) + 1
        if not latencies:
            self.failed_rounds[task_id] = self.failed_rounds.get(task_id, 0) + 1

    def _gain(self, task_id: int, weight: float) -> float:
        hist = self.history.get(task_id, [])
        if not hist or math.isinf(hist[-1]):
            # Nothing valid measured yet: worth one more round, not an endless retry.
            return math.inf if self.failed_rounds.get(task_id, 0) < 2 else 0.0
        w = min(self.window, len(hist) - 1)
        backward = (hist[-1 - w] - hist[-1]) / w if w > 0 else 0.0
        forward = hist[-1] / (self.rounds[task_id] + 1)
        return weight * (self.alpha * backward + (1 - self.alpha) * forward)

    def next_task_id(self) -> int:
        sched = self._outer()  # pylint: disable=no-member
        self._join_all(sched)
        tasks = sched.tasks_
        live = [i for i, t in enumerate(tasks) if not t.is_terminated]
        if live and self.deadline is not None and time.perf_counter() >= self.deadline:
            for i in live:  # the budget is spent: the batches in flight were joined above and are kept
                sched.terminate_task(i)
            return -1
        if not live:
            return -1
        while self.next_warmup < len(tasks):  # one round for every task first, in order
            i = self.next_warmup
            self.next_warmup += 1
            if not tasks[i].is_terminated:
                return i
        gains = [(self._gain(i, float(tasks[i].task_weight)), self.rng.random(), i) for i in live]
        return max(gains)[2]
