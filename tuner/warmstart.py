"""Warm start: the XGBoost cost model learns, before the first trial, what the tuning database
already measured on this target, for this model's tasks and for every other model's.

MetaSchedule's evolutionary search already seeds each task's population from the best records
of the same workload (``Database.get_top_k``). What it does not do is carry the cost model over:
a fresh ``XGBModel`` ranks the first rounds of every task at random. Here the records of the
target (at most :data:`WARM_START_LIMIT`, the newest) are replayed into measure candidates and fed
to the model through its own ``update``, one feature group per workload as MetaSchedule groups
them during tuning (costs are normalized within a workload), and the model is trained once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

#: records of the target the cost model is trained on before the first trial (the newest)
WARM_START_LIMIT = 1024
#: a run_secs entry at least this large is MetaSchedule's mark of a failed run, not a latency
_FAILED_RUN_S = 1e9

_log = logging.getLogger("tvmq.tuning")


def measured(record) -> bool:
    """Whether a tuning record holds a real measurement (not a failed build or run)."""
    secs = [float(s) for s in (record.run_secs or [])]
    return bool(secs) and max(secs) < _FAILED_RUN_S


def warm_start(cost_model, view, target, threads: int, limit: int = WARM_START_LIMIT,
               should_stop: Callable[[], bool] = lambda: False) -> int:
    """Train ``cost_model`` (an ``ms.cost_model.XGBModel``) on the newest ``limit`` measured
    records that ``view`` (the run's MetaSchedule database for ``target``) holds; returns how
    many it learnt from (0: an empty database, and the model is left untouched)."""
    from tvm.s_tir import meta_schedule as ms

    records = [r for r in view.get_all_tuning_records() if measured(r)][-limit:]
    groups: dict[int, list] = {}
    for record in records:
        groups.setdefault(record.workload.__hash__(), []).append(record)
    batches = []
    for group in groups.values():
        if should_stop():
            return 0
        candidates, results = [], []
        for record in group:
            try:
                candidates.append(record.as_measure_candidate())
            except Exception as err:  # noqa: BLE001 - a trace that no longer replays is skipped
                _log.debug("warm start: record skipped (%s)", err)
                continue
            results.append(ms.runner.RunnerResult(run_secs=record.run_secs, error_msg=None))
        if candidates:
            context = ms.TuneContext(mod=group[0].workload.mod, target=target, num_threads=threads,
                                     task_name="warm-start")
            batches.append((context, candidates, results))
    if not batches:
        return 0
    # XGBModel.update retrains whenever its data grew by a fifth since the last training; the
    # groups are added with training held off, then the last one trains the model once.
    adaptive, cost_model.adaptive_training = cost_model.adaptive_training, True
    cost_model.last_train_size = 1 << 40
    try:
        for context, candidates, results in batches[:-1]:
            cost_model.update(context, candidates, results)
        cost_model.last_train_size = 0
        cost_model.update(*batches[-1])
    finally:
        cost_model.adaptive_training = adaptive
    return sum(len(c) for _, c, _ in batches)
