"""A MetaSchedule builder whose worker processes stay alive across batches (see
:class:`PersistentBuilder` for why), built on :class:`tvmq.tuner.pool.WorkerPool`."""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections.abc import Callable

import tvm_ffi
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder

from tvmq.errors import CompileError, one_line

from .pool import WorkerPool

# build() is called through TVM's FFI (also by ms.tune_tasks); without this registration a
# CompileError raised there would come back to the caller as a plain RuntimeError.
tvm_ffi.register_error("tvmq.CompileError", CompileError)

__all__ = ["PersistentBuilder"]


def _init_build_worker(export_root: str, preload_tensor_intrin: bool, f_build, f_export, user_init) -> None:
    """Runs once in each build worker, before its first candidate."""
    # Artifacts (default_export uses tempfile.mkdtemp()) and TVM's own scratch folders go
    # under the builder's root, which the builder removes at shutdown: nothing leaks, not
    # even from a worker killed halfway through an export.
    tempfile.tempdir = export_root
    os.environ["TMPDIR"] = export_root
    if preload_tensor_intrin:
        from .tensor_intrinsics import import_tensor_intrinsics  # pylint: disable=import-outside-toplevel

        import_tensor_intrinsics()
    from tvm.s_tir.meta_schedule.builder import local_builder  # noqa: F401  pylint: disable=import-outside-toplevel
    from tvm.s_tir.meta_schedule.utils import get_global_func_with_default_on_worker  # pylint: disable=import-outside-toplevel

    if user_init is not None:
        user_init()
    # Same check as LocalBuilder._sanity_check: a misspelt registered name fails here,
    # once, instead of failing every candidate.
    get_global_func_with_default_on_worker(name=f_build, default=None)
    get_global_func_with_default_on_worker(name=f_export, default=None)


def _build_candidate(f_build, f_export, mod, target, params) -> str:
    """Runs in a build worker: exactly LocalBuilder's worker function."""
    from tvm.s_tir.meta_schedule.builder.local_builder import _worker_func  # pylint: disable=import-outside-toplevel

    return _worker_func(f_build, f_export, mod, target, params)


@derived_object
class PersistentBuilder(PyBuilder):
    """``ms.builder.LocalBuilder`` with a worker pool that lives for the whole session.

    Why: the stock ``LocalBuilder`` creates a fresh ``PopenPoolExecutor`` for every batch, and
    every fresh worker imports ``tvm.s_tir.tensor_intrin`` (``default_build`` needs it) before
    it builds anything, which takes many seconds; with 64 candidates per tuning iteration that
    import dominates the session (``scripts/bench_builder.py`` measures builds per minute, stock
    vs persistent). Here each worker imports the intrinsics once, at start, and then builds
    candidate after candidate; a candidate that times out, segfaults or kills its worker gets
    an error ``BuilderResult`` and its worker is replaced (see :class:`WorkerPool`).

    Parameters
    ----------
    max_workers: worker processes; defaults to ``os.cpu_count()``.
    timeout_sec: per-candidate build timeout (same meaning and default as LocalBuilder).
    f_build, f_export: as in LocalBuilder (None = MetaSchedule's ``default_build`` /
        ``default_export``; a registered global name; or a picklable callable).
    initializer: optional extra callable run once in each worker after the defaults.
    preload_tensor_intrin: import ``tvm.s_tir.tensor_intrin`` when a worker starts (what
        ``default_build`` needs); turn off only for custom ``f_build`` functions.
    max_tasks_per_worker / max_worker_rss_mb: optional recycling against slow leaks
        (None = never; recycling costs one worker start).
    init_timeout_sec: how long a worker may take to start before it counts as failed.

    Artifacts are exported below a private temporary folder that :meth:`shutdown` removes;
    MetaSchedule's task scheduler removes each candidate's folder as soon as it has run.
    """

    def __init__(
        self,
        *,
        max_workers: int | None = None,
        timeout_sec: float = 30.0,
        f_build: None | str | Callable = None,
        f_export: None | str | Callable = None,
        initializer: Callable[[], None] | None = None,
        preload_tensor_intrin: bool = True,
        max_tasks_per_worker: int | None = None,
        max_worker_rss_mb: float | None = None,
        init_timeout_sec: float | None = 600.0,
    ) -> None:
        super().__init__()
        self.max_workers = int(max_workers or os.cpu_count() or 1)
        self.timeout_sec = float(timeout_sec)
        self.f_build = f_build
        self.f_export = f_export
        self.export_root = tempfile.mkdtemp(prefix="tvmq-build-")
        self._root_finalizer = weakref.finalize(self, shutil.rmtree, self.export_root, True)
        self.pool = WorkerPool(
            self.max_workers,
            initializer=_init_build_worker,
            initargs=(self.export_root, preload_tensor_intrin, f_build, f_export, initializer),
            init_timeout=init_timeout_sec,
            max_tasks_per_worker=max_tasks_per_worker,
            max_worker_rss_mb=max_worker_rss_mb,
            log_dir=os.path.join(self.export_root, "logs"),
            start=True,
        )

    def build(self, build_inputs: list[BuilderInput]) -> list[BuilderResult]:
        from tvm.s_tir.meta_schedule.builder.local_builder import _serialize_params  # pylint: disable=import-outside-toplevel

        if self.pool.closed:
            raise CompileError("The builder was used after it was shut down.")
        tasks = [
            (self.f_build, self.f_export, bi.mod, bi.target, _serialize_params(bi.params))
            for bi in build_inputs
        ]
        outcomes = self.pool.map(_build_candidate, tasks, timeout=self.timeout_sec)
        if outcomes and all(o.status == "start-failed" for o in outcomes):
            first = one_line(outcomes[0].message, pick="first") or "unknown reason"
            raise CompileError(f"The build workers could not start: {first}.")
        results: list[BuilderResult] = []
        for o in outcomes:
            if o.status == "ok":
                results.append(BuilderResult(str(o.value), None))
            elif o.status == "timeout":
                results.append(
                    BuilderResult(None, f"PersistentBuilder: Timeout, killed after {self.timeout_sec:g} seconds")
                )
            elif o.status == "error":
                results.append(BuilderResult(None, "PersistentBuilder: An exception occurred\n" + o.message))
            else:  # crash / start-failed
                results.append(BuilderResult(None, f"PersistentBuilder: {o.message}"))
        return results

    def stats(self) -> dict[str, int]:
        """Candidates built and workers replaced so far."""
        return {"tasks": self.pool.tasks, "restarts": self.pool.restarts, "workers": self.max_workers}

    def wait_ready(self) -> None:
        """Block until every worker has finished importing (optional; build() waits anyway)."""
        self.pool.wait_ready()

    def shutdown(self) -> None:
        """Stop the workers and remove the temporary export folder. Idempotent."""
        self.pool.shutdown()
        self._root_finalizer()


def _enter(self):
    return self


def _exit(self, *exc):
    self.shutdown()


# derived_object returns a wrapper class whose special methods are looked up on the type,
# so the context-manager protocol has to be attached to the wrapper itself.
PersistentBuilder.__enter__ = _enter  # type: ignore[attr-defined]
PersistentBuilder.__exit__ = _exit  # type: ignore[attr-defined]
