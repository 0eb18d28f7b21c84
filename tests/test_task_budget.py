"""Which tasks a tuning budget is spent on (:func:`tvmq.tuner.scheduler.budget_tasks`), and what one
more round of a task is worth per second (:class:`tvmq.tuner.scheduler.TaskProgress`)."""

from __future__ import annotations

from tvmq.tuner.scheduler import budget_tasks, round_size

# an int8 mobilenet_v2 in miniature: a few convolutions, many near-free adds and requantizes
IDS = [10, 11, 12, 13, 14, 15, 16, 17]
COSTS = [5.0, 0.01, 20.0, 0.02, 9.0, 0.005, 0.8, 1.0]


def test_an_ample_budget_searches_every_task_costliest_first():
    got = budget_tasks(IDS, COSTS, trials=len(IDS) * 16 * 2, per_iter=16)
    assert got == [12, 14, 10, 17, 16, 13, 11, 15]


def test_a_tight_budget_leaves_only_negligible_tasks_untuned():
    got = budget_tasks(IDS, COSTS, trials=len(IDS) * 16, per_iter=16)
    dropped = set(IDS) - set(got)
    assert dropped == {11, 13, 15}, "the three tasks holding 0.1% of the time"
    assert sum(c for i, c in zip(IDS, COSTS) if i in dropped) / sum(COSTS) <= 0.02
    assert got == [12, 14, 10, 17, 16], "costliest first"


def test_dropping_stops_at_two_percent_of_the_time():
    ids = list(range(60))
    costs = [1.0] * 60  # no task is negligible on its own terms: 60 x 1.7%
    got = budget_tasks(ids, costs, trials=60 * 16, per_iter=16)
    assert len(got) == 59, "one task (1.7%) fits under 2%, a second would not"


def test_a_budget_below_one_round_each_goes_to_the_costliest():
    assert budget_tasks(IDS, COSTS, trials=32, per_iter=16) == [12, 14]
    assert budget_tasks(IDS, COSTS, trials=3, per_iter=16) == [12], "never nothing"


def test_round_size_halves_when_the_search_cannot_reach_every_task():
    assert round_size(10, trials=10 * 32, budget_s=None) == 32, "enough trials: full rounds"
    assert round_size(11, trials=10 * 32, budget_s=None) == 16, "one task short: half rounds"
    # the default 3 minutes on the built-in model's 32 tasks: ~414 trials, not the 1024 of full rounds
    assert round_size(32, trials=100_000, budget_s=180) == 16
    assert round_size(32, trials=100_000, budget_s=600) == 32, "10 minutes reach every task with full rounds"
    assert round_size(1, trials=8, budget_s=None) == 8, "never more than the trials"
    assert round_size(5, trials=64, budget_s=None, largest=4) == 4


def test_a_round_twice_as_slow_needs_twice_the_gain():
    """The scheduler buys gain per second: of two tasks with the same history and weight, the one
    whose rounds take half the time is picked; double the slow task's weight and it ties."""
    from tvmq.tuner.scheduler import TaskProgress

    p = TaskProgress()
    for task, secs in ((0, 2.0), (1, 4.0)):
        for best in (10.0, 8.0, 7.0):
            p.note(task, [best, best * 1.5], seconds=secs)
    assert p.gain(0, 1.0) == p.gain(1, 1.0) > 0
    assert p.gain_per_second(0, 1.0) == 2 * p.gain_per_second(1, 1.0)
    assert p.gain_per_second(1, 2.0) == p.gain_per_second(0, 1.0)


def test_an_untimed_task_is_charged_the_typical_round():
    from tvmq.tuner.scheduler import TaskProgress

    p = TaskProgress()
    p.note(0, [5.0], seconds=3.0)
    p.note(1, [5.0], seconds=5.0)
    p.note(2, [5.0])  # joined without a timing (dispatched in the same call as another)
    assert p.seconds_per_round(2) == 4.0
    assert p.seconds_per_round(0) == 3.0


def test_failed_rounds_are_retried_once_then_dropped():
    import math

    from tvmq.tuner.scheduler import TaskProgress

    p = TaskProgress()
    p.note(0, [], seconds=1.0)
    assert math.isinf(p.gain(0, 1.0))
    p.note(0, [], seconds=1.0)
    assert p.gain(0, 1.0) == 0.0


def test_the_progress_line_calls_the_sum_of_kernels_what_it_is():
    """The sum of the tasks' best latencies is no end-to-end latency (the whole model measured
    21-26% slower): the line names it a kernel sum, and only once every task is measured."""
    from tvmq.tuner.tasks import TaskInfo
    from tvmq.tuner.tune import TuningResult, progress_line

    tasks = [TaskInfo(index=i, name=f"t{i}", weight=2, flops=1e6, has_dot=True) for i in range(2)]
    result = TuningResult(tasks=tasks)
    tasks[0].tuned_ms = 0.25
    assert progress_line(result, 16, 30.0, 1).endswith("1/2 tasks measured")
    tasks[1].tuned_ms = 0.5
    line = progress_line(result, 32, 60.0, 2)
    assert line == "tuning 1:00: 32 trials (32/min), 2 tasks searched, kernel sum 1.500 ms"
    assert "end-to-end" not in line


def test_a_time_budget_is_planned_by_the_trials_it_will_measure():
    """``--budget`` leaves the trial cap at 100,000; the plan must judge the budget by the trials it
    will measure (2.3/s), or a 10-minute budget gives its first rounds to every near-free task."""
    from tvmq.tuner.scheduler import EXPECTED_TRIALS_PER_S, plan_search

    ids = list(range(60))
    costs = [10.0] * 37 + [0.005] * 23  # 37 convolutions; 23 adds and requantizes, 0.03% of the time
    kept, per_iter = plan_search(ids, costs, trials=100_000, budget_s=600)
    assert kept == ids[:37], "the negligible tasks are left to their default schedule"
    assert per_iter == 32 and 37 * 32 <= 600 * EXPECTED_TRIALS_PER_S, "the 37 kept get full rounds"
    assert plan_search(ids, costs, trials=100_000, budget_s=3600) == (ids, 32), "an hour searches every task"
    assert plan_search(ids, costs, trials=100_000, budget_s=None) == (ids, 32), "a trial count is its own measure"
    kept, per_iter = plan_search(ids, costs, trials=100_000, budget_s=120)
    assert per_iter == 16 and kept == ids[:int(120 * EXPECTED_TRIALS_PER_S) // 16], "2 minutes: the costliest"
