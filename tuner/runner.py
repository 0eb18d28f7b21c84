"""Local measurement of tuning candidates.

What the stock ``ms.runner.LocalRunner`` (TVM 0.27) already does, checked here and pinned by
``tests/test_runner.py``:

* it creates ONE ``PopenPoolExecutor`` (one worker, ``max_workers=1``) in its constructor and
  keeps it for its whole life: unlike ``LocalBuilder`` there is no pool restart per batch;
  the worker imports only ``tvm`` (~1 s), not ``tvm.s_tir.tensor_intrin``;
* every candidate runs in that worker process with ``timeout_sec``; a hang is answered by the
  worker's own timer (TVM's FFI releases the GIL, so this also covers an infinite loop in
  compiled code) and the parent then kills the worker;
* a candidate that segfaults kills only the worker: the parent sees "Subprocess terminated",
  that candidate gets a ``RunnerResult`` with an error, and the next ``submit`` starts a new
  worker (~1 s).

So no custom runner is needed: :func:`make_local_runner` configures the stock one. Candidates
are measured one at a time (the single worker), which is what accurate timing wants.
"""

from __future__ import annotations

from tvm.s_tir import meta_schedule as ms

__all__ = ["make_local_runner", "evaluator_config"]


def evaluator_config(
    number: int = 3,
    repeat: int = 1,
    min_repeat_ms: int = 100,
    enable_cpu_cache_flush: bool = False,
) -> ms.runner.EvaluatorConfig:
    """MetaSchedule's EvaluatorConfig, with argument checks that give one clear sentence."""
    if number < 1 or repeat < 1:
        raise ValueError("number and repeat must both be at least 1")
    if min_repeat_ms < 0:
        raise ValueError("min_repeat_ms must not be negative")
    return ms.runner.EvaluatorConfig(
        number=int(number),
        repeat=int(repeat),
        min_repeat_ms=int(min_repeat_ms),
        enable_cpu_cache_flush=bool(enable_cpu_cache_flush),
    )


def make_local_runner(
    timeout_sec: float = 30.0,
    number: int = 3,
    repeat: int = 1,
    min_repeat_ms: int = 50,
    enable_cpu_cache_flush: bool = False,
    *,
    cooldown_sec: float = 0.0,
    alloc_repeat: int = 1,
    f_run_evaluator=None,
    initializer=None,
) -> ms.runner.Runner:
    """A runner that measures each candidate in its own worker process with a timeout.

    A candidate that crashes or hangs costs one failed trial (a ``RunnerResult`` whose
    ``error_msg`` says "Subprocess terminated" or "Timeout, killed after N seconds"); the
    worker is replaced and the next candidate is measured normally.
    """
    if timeout_sec <= 0:
        raise ValueError("timeout_sec must be positive")
    return ms.runner.LocalRunner(
        timeout_sec=timeout_sec,
        evaluator_config=evaluator_config(number, repeat, min_repeat_ms, enable_cpu_cache_flush),
        cooldown_sec=cooldown_sec,
        alloc_repeat=alloc_repeat,
        f_run_evaluator=f_run_evaluator,
        initializer=initializer,
    )
