"""A MetaSchedule builder whose worker processes stay alive across batches.

Why: the stock ``ms.builder.LocalBuilder`` creates a fresh ``PopenPoolExecutor`` for every
batch, and every fresh worker spends ~16-27 s importing ``tvm.s_tir.tensor_intrin`` before
it builds anything (``default_build`` imports it). With 64 candidates per tuning iteration
that import dominates the whole session. :class:`PersistentBuilder` keeps one pool for the
whole session: each worker imports the intrinsics once, at start, and then builds candidate
after candidate.

Robustness: every candidate runs under a per-candidate timeout that is enforced twice, by
the worker itself (``tvm.exec.popen_worker``'s timer, which gives a clean "timeout" answer)
and by the parent (a deadline on the result pipe, in case the worker cannot even answer).
A worker that times out, segfaults or is killed is replaced at once (the replacement starts
importing in the background) and only that candidate gets an error; the session goes on.

The pool (:class:`WorkerPool`) is generic; ``tvmq.tuner.runner`` and ``tvmq.tuner.remote``
may reuse it.
"""

from __future__ import annotations

import concurrent.futures
import os
import pickle
import queue
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import tvm_ffi
from tvm.ir.utils import derived_object
from tvm.s_tir.meta_schedule.builder import BuilderInput, BuilderResult, PyBuilder

from tvmq.errors import CompileError

# build() is called through TVM's FFI (also by ms.tune_tasks); without this registration a
# CompileError raised there would come back to the caller as a plain RuntimeError.
tvm_ffi.register_error("tvmq.CompileError", CompileError)

__all__ = [
    "PersistentBuilder",
    "WorkerPool",
    "WorkResult",
    "WorkerStartError",
]

# How much longer than the per-task timeout the parent waits before it kills a worker
# that did not even answer "timeout" itself.
_GRACE_MIN_SEC = 3.0
_GRACE_FRACTION = 0.25
# Bytes of a dead worker's output (from the failing task's start) quoted in the error message.
_STDERR_TAIL = 1500


class WorkerStartError(RuntimeError):
    """A worker process could not start or its initializer failed."""


class WorkResult(NamedTuple):
    """The outcome of one task sent to a :class:`WorkerPool`.

    status: ``"ok"`` (value is the return value), ``"error"`` (the task raised; value is the
    exception, whose text holds the worker's traceback), ``"timeout"``, ``"crash"`` (the
    worker process died; message says how) or ``"start-failed"`` (no worker could be started).
    """

    status: str
    value: Any = None
    message: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"


class _Died(Exception):
    pass


class _Deadline(Exception):
    pass


def _read_exact(fd: int, n: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Deadline()
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise _Deadline()
        try:
            chunk = os.read(fd, n - got)
        except OSError as err:
            raise _Died() from err
        if not chunk:
            raise _Died()
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"it was killed by {name}"
    return f"it exited with status {returncode}"


class _Worker:
    """One ``python -m tvm.exec.popen_worker`` process, in its own process group."""

    def __init__(
        self,
        index: int,
        initializer: Callable[..., None] | None,
        initargs: tuple,
        log_dir: str,
        env: dict[str, str] | None,
    ):
        self.index = index
        self._initializer = initializer
        self._initargs = initargs
        self._log_path = os.path.join(log_dir, f"worker-{index}.log")
        self._env = env
        self.proc: subprocess.Popen | None = None
        self._rfd = -1
        self._wfd = -1
        self._log = None
        self._init_pending = False
        self.tasks_done = 0
        self.generation = 0
        self.closed = False  # set by the pool at shutdown: never start again

    # -- process lifetime -------------------------------------------------------------
    def start(self) -> None:
        """Spawn the process and send it the initializer (without waiting for it)."""
        if self.closed:
            raise _Died()
        main_read, worker_write = os.pipe()
        worker_read, main_write = os.pipe()
        self._log = open(self._log_path, "ab")  # noqa: SIM115 - kept open for the worker's life
        cmd = [sys.executable, "-m", "tvm.exec.popen_worker", str(worker_read), str(worker_write)]
        try:
            self.proc = subprocess.Popen(
                cmd,
                pass_fds=(worker_read, worker_write),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=self._log,
                env=self._env,
                # Own process group: Ctrl-C in the terminal reaches only the parent, and a
                # kill takes the worker's own children (compilers) with it.
                start_new_session=True,
            )
        finally:
            os.close(worker_read)
            os.close(worker_write)
        self._rfd, self._wfd = main_read, main_write
        self.generation += 1
        self.tasks_done = 0
        self._init_pending = False
        if self._initializer is not None:
            self._send(self._initializer, self._initargs, None)
            self._init_pending = True

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> int | None:
        """Kill the worker's process group; return its exit code."""
        code = None
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                code = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = None
            self.proc = None
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._rfd = self._wfd = -1
        if self._log is not None:
            self._log.close()
            self._log = None
        self._init_pending = False
        return code

    def restart(self) -> None:
        self.kill()
        if not self.closed:
            self.start()

    def rss_mb(self) -> float:
        try:
            import psutil  # pylint: disable=import-outside-toplevel

            return psutil.Process(self.proc.pid).memory_info().rss / 2**20  # type: ignore[union-attr]
        except Exception:  # noqa: BLE001 - psutil missing or process gone
            return 0.0

    # -- protocol -----------------------------------------------------------------------
    def _send(self, fn: Callable, args: tuple, timeout: float | None) -> None:
        import cloudpickle  # pylint: disable=import-outside-toplevel

        data = cloudpickle.dumps((fn, tuple(args), {}, timeout), protocol=pickle.HIGHEST_PROTOCOL)
        payload = struct.pack("<i", len(data)) + data
        view = memoryview(payload)
        while view:
            try:
                written = os.write(self._wfd, view)
            except OSError as err:  # broken pipe: the worker is gone
                raise _Died() from err
            view = view[written:]

    def _recv(self, deadline: float | None) -> tuple[int, Any]:
        import cloudpickle  # pylint: disable=import-outside-toplevel

        size = struct.unpack("<i", _read_exact(self._rfd, 4, deadline))[0]
        body = _read_exact(self._rfd, size, deadline)
        return cloudpickle.loads(body)

    def _stderr_tail(self, since: int) -> str:
        """What the worker printed since offset ``since`` (the start, where a crash report
        such as TVM's "Segfault encountered" banner is), capped."""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(since)
                text = f.read(_STDERR_TAIL).decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return text

    def _log_offset(self) -> int:
        try:
            return os.path.getsize(self._log_path)
        except OSError:
            return 0

    def ensure_ready(self, init_timeout: float | None) -> None:
        """Start the process if needed and wait until its initializer has finished."""
        from tvm.support.popen_pool import StatusKind  # pylint: disable=import-outside-toplevel

        if self.closed:
            raise WorkerStartError("the worker pool was shut down")
        if self.proc is None or not self.alive():
            if self.proc is not None:
                self.kill()
            self.start()
        if not self._init_pending:
            return
        since = 0
        deadline = None if init_timeout is None else time.monotonic() + init_timeout
        try:
            status, value = self._recv(deadline)
        except _Deadline:
            self.kill()
            raise WorkerStartError(
                f"a worker did not finish starting within {init_timeout:g} seconds"
            ) from None
        except _Died:
            code = self.kill()
            tail = self._stderr_tail(since)
            raise WorkerStartError(
                f"a worker died while starting ({_describe_exit(code)})" + (f"\n{tail}" if tail else "")
            ) from None
        if status != StatusKind.COMPLETE:
            self.kill()
            raise WorkerStartError(f"a worker's initializer failed:\n{value}")
        self._init_pending = False

    def call(self, fn: Callable, args: tuple, timeout: float | None, init_timeout: float | None) -> WorkResult:
        """Run ``fn(*args)`` in the worker. Never raises for task failures."""
        from tvm.support.popen_pool import StatusKind  # pylint: disable=import-outside-toplevel

        try:
            self.ensure_ready(init_timeout)
        except WorkerStartError as err:
            return WorkResult("start-failed", err, str(err))
        since = self._log_offset()
        t0 = time.monotonic()
        deadline = None
        if timeout is not None:
            deadline = t0 + timeout + max(_GRACE_MIN_SEC, _GRACE_FRACTION * timeout)
        try:
            self._send(fn, args, timeout)
            status, value = self._recv(deadline)
        except _Deadline:
            self.restart()
            return WorkResult("timeout", None, f"killed after {timeout:g} seconds", time.monotonic() - t0)
        except _Died:
            code = None
            if self.proc is not None:
                try:
                    code = self.proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    code = None
            tail = self._stderr_tail(since)
            self.restart()
            msg = f"the worker process died ({_describe_exit(code)}); it was replaced"
            if tail:
                msg += "\nLast output of the worker:\n" + tail
            return WorkResult("crash", None, msg, time.monotonic() - t0)
        seconds = time.monotonic() - t0
        self.tasks_done += 1
        if status == StatusKind.COMPLETE:
            return WorkResult("ok", value, "", seconds)
        if status == StatusKind.TIMEOUT:
            # The task's thread is still running inside the worker: replace the process.
            self.restart()
            return WorkResult("timeout", None, f"killed after {timeout:g} seconds", seconds)
        return WorkResult("error", value, str(value), seconds)


def _pool_cleanup(workers: list[_Worker], root: str | None, owns_root: bool) -> None:
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
            _Worker(i, initializer, initargs, self.log_dir, env) for i in range(self.max_workers)
        ]
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
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

            def _ready(w: _Worker) -> None:
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


# ---------------------------------------------------------------------------------------
# Builder
# ---------------------------------------------------------------------------------------


def _init_build_worker(export_root: str, preload_tensor_intrin: bool, f_build, f_export, user_init) -> None:
    """Runs once in each build worker, before its first candidate."""
    # Artifacts (default_export uses tempfile.mkdtemp()) and TVM's own scratch folders go
    # under the builder's root, which the builder removes at shutdown: nothing leaks, not
    # even from a worker killed halfway through an export.
    tempfile.tempdir = export_root
    os.environ["TMPDIR"] = export_root
    if preload_tensor_intrin:
        import tvm.s_tir.tensor_intrin  # noqa: F401  pylint: disable=unused-import,import-outside-toplevel
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

        if self.pool._closed:  # pylint: disable=protected-access
            raise CompileError("The builder was used after it was shut down.")
        tasks = [
            (self.f_build, self.f_export, bi.mod, bi.target, _serialize_params(bi.params))
            for bi in build_inputs
        ]
        outcomes = self.pool.map(_build_candidate, tasks, timeout=self.timeout_sec)
        if outcomes and all(o.status == "start-failed" for o in outcomes):
            first = outcomes[0].message.splitlines()[0] if outcomes[0].message else "unknown reason"
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
