"""The task scheduler: MetaSchedule's gradient rule, with every batch joined as soon as it is sent.

MetaSchedule's own ``GradientBased`` scheduler dispatches one round to every task before it
joins any of them. Until then no measure callback runs: nothing reaches the database, the
progress bar stands still, and Ctrl-C or a crash in that phase (hundreds of trials on a model
of 45 tasks) loses every measurement. This scheduler picks tasks by the same rule (a round for
every task first, then the task whose weighted latency promises the largest gain, from its
recent improvement and from the diminishing return of more trials), per second that a round of
the task takes (:class:`TaskProgress`), and it joins every running
task before it picks the next one, so each measured batch is committed before the next is built.
"""

from __future__ import annotations

import math
import random
import statistics
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


def expected_trials(trials: int, budget_s: float | None) -> int:
    """The trials a search will measure: ``trials``, or fewer where a time budget ends it first
    (estimated at :data:`EXPECTED_TRIALS_PER_S`)."""
    return trials if not budget_s else min(trials, int(budget_s * EXPECTED_TRIALS_PER_S))


def round_size(n_tasks: int, trials: int, budget_s: float | None, largest: int = 32) -> int:
    """Candidates measured per round of one task: ``largest`` where the search can give each of
    ``n_tasks`` a round that size, else half of it, so that a short budget still reaches every
    task. A budget's trials are estimated at :data:`EXPECTED_TRIALS_PER_S`.

    On the built-in model's 32 tasks and the default 3 minutes (2-vCPU Zen 4, one run each),
    rounds of 32 reached 14 tasks at 144 trials/min (the build then ran at 1.05x TFLite's time),
    rounds of 16 reached 27 at 140/min (0.95x), and rounds of 8 all 32 at 88/min (1.09x)."""
    can = expected_trials(trials, budget_s)
    size = largest if n_tasks * largest <= can else max(1, largest // 2)
    return max(1, min(size, trials))


def budget_tasks(tasks: list[int], costs: list[float], trials: int, per_iter: int, rounds: int = 2,
                 negligible: float = 0.02) -> list[int]:
    """The tasks worth searching with ``trials``, most costly first (the order of the first
    round, so that a budget that ends early has spent it where the time is).

    ``trials``: what the search will measure (:func:`expected_trials` of a time budget, not the
    cap on trials that a budget leaves at 100,000). ``costs`` are the tasks' untuned shares of the
    model (weight x latency). When the budget
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


def plan_search(tasks: list[int], costs: list[float], trials: int, budget_s: float | None,
                largest: int = 32) -> tuple[list[int], int]:
    """The tasks a search spends ``trials`` (or a ``budget_s`` of wall-clock time, which ends it
    first) on, costliest first, and the candidates per round (:func:`budget_tasks`,
    :func:`round_size`). A budget is judged by the trials it will measure, not by the cap on
    trials it leaves: judged by the cap, a 10-minute budget on an int8 mobilenet_v2 quant (60
    tasks) gave its first rounds to all 60, the 23 that hold 2% of the time among them."""
    per_iter = round_size(len(tasks), trials, budget_s, largest)
    kept = budget_tasks(tasks, costs, expected_trials(trials, budget_s), per_iter)
    # rounds sized for the tasks kept: dropping the negligible ones may leave full rounds for the rest
    return kept, round_size(len(kept), trials, budget_s, largest)


class TaskProgress:
    """What the scheduler knows of each task: its best latency after each of its rounds, and how
    many wall-clock seconds a round of it takes (the search, the build and the measurements,
    from the moment it was picked until its batch was joined).

    The gain of one more round is MetaSchedule's gradient (``alpha`` of the recent improvement
    over ``window`` rounds, the rest the diminishing return of more rounds), weighted by how often
    the task runs. Divided by the task's seconds per round it is the gain per second, what a
    time budget should buy. Rounds differ: tuning databases of 2-vCPU Zen 4 runs show rounds of
    16 candidates taking 4.7 to 10.9 s (median per task) on the built-in model and 0.7 to 19 s
    on tf2_mobilenet_v2_ptq; a gain per round spends a budget on the slow tasks."""

    def __init__(self, alpha: float = 0.2, window: int = 3) -> None:
        self.alpha = alpha
        self.window = window
        self.history: dict[int, list[float]] = {}  # task -> best latency (ms) after each of its rounds
        self.failed_rounds: dict[int, int] = {}
        self.seconds: dict[int, list[float]] = {}  # task -> wall-clock seconds of each of its rounds

    def note(self, task_id: int, latencies_ms: list[float], seconds: float | None = None) -> None:
        hist = self.history.setdefault(task_id, [])
        hist.append(min([*latencies_ms, *(hist[-1:] or [math.inf])]))
        if not latencies_ms:
            self.failed_rounds[task_id] = self.failed_rounds.get(task_id, 0) + 1
        if seconds is not None and seconds > 0:
            self.seconds.setdefault(task_id, []).append(seconds)

    def gain(self, task_id: int, weight: float) -> float:
        """Weighted gain (ms of the model) of one more round."""
        hist = self.history.get(task_id, [])
        if not hist or math.isinf(hist[-1]):
            # Nothing valid measured yet: worth one more round, not an endless retry.
            return math.inf if self.failed_rounds.get(task_id, 0) < 2 else 0.0
        w = min(self.window, len(hist) - 1)
        backward = (hist[-1 - w] - hist[-1]) / w if w > 0 else 0.0
        forward = hist[-1] / (len(hist) + 1)  # one entry per round
        return weight * (self.alpha * backward + (1 - self.alpha) * forward)

    def seconds_per_round(self, task_id: int) -> float:
        """The median of the task's timed rounds; a task not timed yet gets the median of all."""
        own = self.seconds.get(task_id)
        pool = own or [s for v in self.seconds.values() for s in v]
        return statistics.median(pool) if pool else 1.0

    def gain_per_second(self, task_id: int, weight: float) -> float:
        return self.gain(task_id, weight) / self.seconds_per_round(task_id)


@derived_object
class EagerGradientScheduler(PyTaskScheduler):
    """Gradient-based task selection (alpha, window as in MetaSchedule), per second of tuning
    (:class:`TaskProgress`), with eager joins."""

    def __init__(self, alpha: float = 0.2, window: int = 3, seed: int = 0, deadline: float | None = None):
        super().__init__()
        self.deadline = deadline  # time.perf_counter() after which no batch starts (a --budget)
        self.progress = TaskProgress(alpha, window)
        self.rng = random.Random(seed)
        self.next_warmup = 0
        self.picked: tuple[int, float] | None = None  # the task last dispatched, and when

    def _join_all(self, sched) -> None:
        for task_id, record in enumerate(sched.tasks_):
            if not record.is_terminated and record.measure_candidates is not None:
                results = sched.join_running_task(task_id)
                seconds = None
                if self.picked is not None and self.picked[0] == task_id:
                    seconds = time.perf_counter() - self.picked[1]
                self.progress.note(task_id, [m for m in (median_ms(r) for r in results) if m is not None], seconds)

    def _pick(self, task_id: int) -> int:
        self.picked = (task_id, time.perf_counter())
        return task_id

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
                return self._pick(i)
        gains = [(self.progress.gain_per_second(i, float(tasks[i].task_weight)), self.rng.random(), i) for i in live]
        return self._pick(max(gains)[2])
