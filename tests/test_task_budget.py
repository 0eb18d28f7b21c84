"""Which tasks a tuning budget is spent on (:func:`tvmq.tuner.scheduler.budget_tasks`)."""

from __future__ import annotations

from tvmq.tuner.scheduler import budget_tasks

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
