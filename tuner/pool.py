"""A fixed set of long-lived worker processes that run picklable tasks in parallel, each under a
timeout; a worker that crashes or hangs is replaced and only its task fails."""

from __future__ import annotations

import concurrent.futures
import os
import queue
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Sequence

from .worker import WorkerProcess, WorkResult, WorkerStartError

__all__ = ["WorkerPool", "WorkResult", "WorkerStartError"]


def _pool_cleanup(workers: list[WorkerProcess], root: str | None, owns_root: bool) -> None:
    for worker in workers:
        try:
            worker.kill()
        except Exception:  # noqa: BLE001 - best effort at interpreter exit
            pass
    if owns_root and root:
        shutil.rmtree(root, ignore_errors=True)


class WorkerPool:
    """A fixed set of long-lived worker processes with per-task timeouts.

    Unlike ``tvm.support.popen_pool.PopenPoolExecutor`` (which the stock builder throws away
    after every batch), workers here live until :meth:`shutdown`; a worker is replaced only
    when it crashes, times out, or has run ``max_tasks_per_worker`` tasks / grown past
    ``max_worker_rss_mb``. Workers are started eagerly (in parallel, without blocking the
    constructor) so their expensive imports overlap with whatever the caller does next.
    A task that times out, segfaults or kills its worker gets an error :class:`WorkResult`;
    the other tasks and the pool go on.
    """

    def __init__(
        self,
        max_workers: int | None = None,
        *,
        initializer: Callable[..., None] | None = None,
        initargs: tuple = (),
        init_timeout: float | None = 600.0,
        max_tasks_per_worker: int | None = None,
        max_worker_rss_mb: float | None = None,
        env: dict[str, str] | None = None,
        log_dir: str | None = None,
        start: bool = True,
    ):
        self.max_workers = int(max_workers or os.cpu_count() or 1)
        if self.max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self.init_timeout = init_timeout
        self.max_tasks_per_worker = max_tasks_per_worker
        self.max_worker_rss_mb = max_worker_rss_mb
        self._owns_log_dir = log_dir is None
        self.log_dir = log_dir or tempfile.mkdtemp(prefix="tvmq-pool-")
        os.makedirs(self.log_dir, exist_ok=True)
        self._workers = [
            WorkerProcess(i, initializer, initargs, self.log_dir, env) for i in range(self.max_workers)
        ]
        self._idle: queue.SimpleQueue[WorkerProcess] = queue.SimpleQueue()
        for w in self._workers:
            self._idle.put(w)
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.max_workers, thread_name_prefix="tvmq-pool"
        )
        self._lock = threading.Lock()
        self._closed = False
        self.restarts = 0  # replacements after crash/timeout/recycling
        self.tasks = 0
        # Also runs at interpreter exit (weakref.finalize's default), so workers never
        # outlive the parent even without an explicit shutdown().
        self._finalizer = weakref.finalize(
            self, _pool_cleanup, self._workers, self.log_dir, self._owns_log_dir
        )
        if start:
            for w in self._workers:
                w.start()

    # -- running --------------------------------------------------------------------------
    def _run_one(self, fn: Callable, args: tuple, timeout: float | None) -> WorkResult:
        worker = self._idle.get()
        try:
            if self._closed:
                return WorkResult("start-failed", None, "the worker pool was shut down")
            gen = worker.generation
            result = worker.call(fn, args, timeout, self.init_timeout)
            recycle = False
            if result.status == "ok":
                if self.max_tasks_per_worker and worker.tasks_done >= self.max_tasks_per_worker:
                    recycle = True
                elif self.max_worker_rss_mb and worker.rss_mb() > self.max_worker_rss_mb:
                    recycle = True
            if recycle and not self._closed:
                worker.restart()
            with self._lock:
                self.tasks += 1
                if worker.generation != gen:
                    self.restarts += 1
            return result
        finally:
            self._idle.put(worker)

    def submit(self, fn: Callable, args: Sequence = (), timeout: float | None = None) -> concurrent.futures.Future:
        """Run ``fn(*args)`` on a free worker; the future resolves to a :class:`WorkResult`."""
        if self._closed:
            raise RuntimeError("WorkerPool is shut down")
        return self._threads.submit(self._run_one, fn, tuple(args), timeout)

    def map(self, fn: Callable, arg_tuples: Sequence[Sequence], timeout: float | None = None) -> list[WorkResult]:
        """Run ``fn(*args)`` for every tuple, in parallel; results in input order."""
        futures = [self.submit(fn, args, timeout) for args in arg_tuples]
        return [f.result() for f in futures]

    def wait_ready(self) -> None:
        """Block until every worker has finished its initializer (raises WorkerStartError)."""
        taken = [self._idle.get() for _ in range(self.max_workers)]
        try:
            errors = []

            def _ready(w: WorkerProcess) -> None:
                try:
                    w.ensure_ready(self.init_timeout)
                except WorkerStartError as err:
                    errors.append(err)

            threads = [threading.Thread(target=_ready, args=(w,)) for w in taken]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
        finally:
            for w in taken:
                self._idle.put(w)

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` has been called."""
        return self._closed

    def worker_pids(self) -> list[int | None]:
        return [w.proc.pid if w.proc is not None else None for w in self._workers]

    # -- lifetime -------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Kill every worker and remove the pool's log folder. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            w.closed = True
            w.kill()
        self._threads.shutdown(wait=True)
        self._finalizer()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
