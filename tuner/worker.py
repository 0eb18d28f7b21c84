"""One long-lived ``python -m tvm.exec.popen_worker`` process and the pipe protocol to it: a task
in, a :class:`WorkResult` out, with a timeout enforced by the worker and again by the parent."""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["WorkResult", "WorkerProcess", "WorkerStartError"]

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


class WorkerProcess:
    """One ``python -m tvm.exec.popen_worker`` process, in its own process group.

    Every task runs under its timeout twice: the worker's own timer (``popen_worker``'s, which
    gives a clean "timeout" answer) and a deadline on the result pipe in the parent, in case
    the worker cannot even answer. :meth:`call` never raises for a task's failure: a timeout,
    crash or exception comes back as a :class:`WorkResult`, and a dead or hung process is
    replaced at once (the replacement starts its initializer in the background).
    """

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
