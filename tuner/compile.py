"""TFLite → Relax import and the compilation of a Relax module for a target."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import numpy as np

from tvmq.errors import CompileError, UnsupportedOperators, one_line
from tvmq.model import LoadedModel


def set_threads(n: int, most: int | None = None) -> None:
    """Size TVM's runtime thread pool (the measuring and the serving side alike) to ``n`` threads.

    ``TVM_NUM_THREADS`` must be set before the pool exists, and stay set: TVM reads it at every
    parallel launch and sizes its pool by it once. Unset, on x86 TVM takes half the logical cores
    (one on a 2-vCPU host), runs every parallel loop inline and asks the OS for the core count at
    each launch: the built-in model took 0.41 ms that way against 0.21 ms at one thread with the
    variable set (2-vCPU Zen 4). ``most``: the largest count this process will ask for later (a
    thread-scaling benchmark); the pool cannot grow past the count it was created with. The
    tuning runner's worker inherits the variable: it measures at ``most or n`` threads."""
    import tvm

    os.environ["TVM_NUM_THREADS"] = str(max(int(n), int(most or n)))
    tvm.get_global_func("runtime.config_threadpool")(0, int(n))


def import_relax(loaded: LoadedModel):
    """The model as a Relax IRModule (QDQ form: quantize/dequantize around float operators)."""
    import tvm

    from tvmq.model.frontend import from_tflite

    try:
        return from_tflite(loaded.tflite_model)
    except tvm.error.OpNotImplemented as err:
        raise UnsupportedOperators(f"{loaded.name}: the TVM TFLite frontend cannot import it: "
                                   f"{one_line(err, 10_000)}") from None
    except NotImplementedError as err:
        raise UnsupportedOperators(f"{loaded.name}: the TVM TFLite frontend cannot import it: {err}") from None
    except Exception as err:  # the frontend's own asserts and TVM errors on odd graphs
        raise CompileError(f"{loaded.name}: import into Relax failed: {type(err).__name__}: {one_line(err, 500)}") from None


def lower_to_tir(mod, target, database=None):
    """Legalize, fuse, and (with a database) apply tuned schedules: the module MetaSchedule sees."""
    from tvm import relax

    with target, (database if database is not None else contextlib.nullcontext()):
        return relax.get_pipeline("zero")(mod)


def build(mod, target, database=None, untuned: str = "naive"):
    """Compile a Relax module to a VM executable (:func:`lower_to_tir`, then :func:`build_lowered`)."""
    try:
        lowered = lower_to_tir(mod, target)
    except Exception as err:
        raise CompileError(f"compilation for {target} failed: {type(err).__name__}: {one_line(err, 800)}") from None
    return build_lowered(lowered, target, database, untuned)


def build_lowered(lowered, target, database=None, untuned: str = "naive"):
    """Compile a module after the zero pipeline to a VM executable; tuned schedules come from
    ``database`` (applied here, so one lowered module serves the tuned and the untuned build).

    ``untuned``: what the functions the database does not cover become: ``"naive"`` (the plain
    loops, what "untuned" latencies measure), ``"design-space"`` (MetaSchedule's first valid
    design-space point: tensorized, parallel, vectorized, unmeasured; for ``--build-only``) or
    ``"design-space-dots"`` (that point for the functions holding an int8 dot product only)."""
    import tvm
    from tvm import relax

    try:
        if database is not None:
            with target, database:
                lowered = relax.transform.MetaScheduleApplyDatabase()(lowered)
        if untuned in ("design-space", "design-space-dots"):
            from .rules import schedule_unscheduled

            lowered, _ = schedule_unscheduled(lowered, target, only_dots=untuned == "design-space-dots")
        with target:
            return tvm.compile(lowered, target=target)
    except Exception as err:
        raise CompileError(f"compilation for {target} failed: {type(err).__name__}: {one_line(err, 800)}") from None


def input_tensors(arrays: list[np.ndarray]):
    import tvm

    return [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in arrays]


def outputs_to_numpy(result) -> list[np.ndarray]:
    """The VM returns a tensor or a (nested) tuple of tensors; flatten to numpy arrays."""
    if hasattr(result, "numpy"):
        return [result.numpy()]
    out: list[np.ndarray] = []
    for item in result:
        out.extend(outputs_to_numpy(item))
    return out


class Runnable:
    """A Relax VM over a compiled executable or a loaded library, on the local CPU. It uses the
    runtime's VM class (``relax.VirtualMachine`` is the same), so a loaded library needs only
    TVM's runtime, not its compiler."""

    def __init__(self, executable_or_module):
        import tvm
        from tvm.runtime.vm import VirtualMachine

        self.device = tvm.cpu()
        self.vm = VirtualMachine(executable_or_module, self.device)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return outputs_to_numpy(self.vm["main"](*input_tensors(arrays)))

    def timed_call(self, arrays: list[np.ndarray]) -> Callable[[], object]:
        """One inference of ``main`` on ``arrays``, copied into tensors once, here: what the
        benchmark times (:func:`tvmq.stages.measure.alternate_blocks`)."""
        main, inputs = self.vm["main"], input_tensors(arrays)
        return lambda: main(*inputs)

    def benchmark(self, arrays: list[np.ndarray], repeat: int, warmup: int = 3) -> list[float]:
        """Seconds of ``repeat`` single runs (Relax VM time evaluator) after ``warmup`` runs."""
        inputs = input_tensors(arrays)
        for _ in range(warmup):
            self.vm["main"](*inputs)
        evaluator = self.vm.time_evaluator("main", self.device, number=1, repeat=repeat)
        return list(evaluator(*inputs).results)
