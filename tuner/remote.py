"""Measurement on remote devices registered with TVM's own RPC tracker.

* :func:`check_tracker` - is the tracker reachable, does it know devices of a key, are any free?
* :func:`make_rpc_runner` - MetaSchedule's ``RPCRunner`` set up for a tracker/key, with one
  connection per registered device and a client-side timeout on top of the server's session
  timeout (so even a device that vanishes from the network costs only its in-flight trials).
* :func:`remote_benchmark` - the final benchmark of a compiled Relax VM library on a device.
* :class:`LocalRPCCluster` - a tracker and N servers on 127.0.0.1 (tests, scripts, demos).

How the stock pieces behave (checked, see tests/test_rpc.py): an RPC server does NOT import
``tvm.s_tir.tensor_intrin`` (it starts in ~1-2 s); each session runs in a process forked by
the server and killed by it when ``session_timeout`` expires; when a server dies its tracker
connection drops and the tracker forgets it, so later requests go to the remaining devices.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

from tvmq.errors import RemoteError

__all__ = [
    "LocalRPCCluster",
    "check_tracker",
    "make_rpc_runner",
    "parse_tracker",
    "remote_benchmark",
    "tracker_summary",
]


def parse_tracker(tracker: str) -> tuple[str, int]:
    """``"HOST:PORT"`` -> ``(host, port)``; RemoteError if it is not of that form."""
    host, sep, port = str(tracker).strip().rpartition(":")
    host = host.strip("[]")  # allow "[::1]:9190"
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RemoteError(f"The tracker address {tracker!r} is not of the form HOST:PORT.")
    return host, int(port)


def _in_thread(fn, timeout: float, what: str):
    """Run ``fn()`` in a daemon thread; RemoteError if it takes longer than ``timeout``."""
    box: dict[str, Any] = {}

    def _target():
        try:
            box["value"] = fn()
        except BaseException as err:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = err

    t = threading.Thread(target=_target, daemon=True, name="tvmq-rpc-query")
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise RemoteError(f"{what} did not answer within {timeout:g} seconds.")
    if "error" in box:
        raise box["error"]
    return box["value"]


def tracker_summary(tracker: str, timeout: float = 10.0) -> dict:
    """The tracker's ``summary()`` dict; RemoteError when it cannot be reached or asked."""
    host, port = parse_tracker(tracker)
    try:
        # A plain connect first: rpc.connect_tracker would retry a refused connection for 60 s.
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise RemoteError(f"Cannot reach the RPC tracker at {host}:{port} ({reason}).") from None

    def _query():
        from tvm import rpc  # pylint: disable=import-outside-toplevel

        session = rpc.connect_tracker(host, port)
        try:
            return session.summary()
        finally:
            session.close()

    try:
        return _in_thread(_query, timeout, f"The RPC tracker at {host}:{port}")
    except RemoteError:
        raise
    except Exception as err:  # noqa: BLE001 - e.g. "is not RPC Tracker", connection reset
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RemoteError(f"The service at {host}:{port} did not answer as an RPC tracker ({first}).") from None


def check_tracker(tracker: str, key: str, timeout: float = 10.0, *, require_free: bool = True) -> dict:
    """Check that ``tracker`` is up and has devices registered under ``key``.

    Returns ``{"total": n, "free": f, "pending": p, "servers": [addresses]}``. Raises
    :class:`RemoteError` with one clear sentence when the tracker is unreachable, when no
    device of that key is registered, or (``require_free``) when all of them are busy.
    """
    summary = tracker_summary(tracker, timeout)
    servers = [
        item.get("addr")
        for item in summary.get("server_info", [])
        if str(item.get("key", "")).split(":", 1)[-1] == key
    ]
    queue = summary.get("queue_info", {}).get(key, {})
    info = {
        "total": len(servers),
        "free": int(queue.get("free", 0)),
        "pending": int(queue.get("pending", 0)),
        "servers": servers,
    }
    if info["total"] == 0 and info["free"] == 0:
        known = sorted({str(i.get("key", "")).split(":", 1)[-1] for i in summary.get("server_info", [])})
        others = f"; it knows {', '.join(known)}" if known else "; it has no devices at all"
        raise RemoteError(f"The RPC tracker at {tracker} has no device registered with key {key!r}{others}.")
    if require_free and info["free"] == 0:
        raise RemoteError(
            f"The RPC tracker at {tracker} has {info['total']} device(s) with key {key!r} but none is free "
            f"({info['pending']} request(s) waiting)."
        )
    return info


def make_rpc_runner(
    tracker: str,
    key: str,
    timeout_sec: float = 30.0,
    number: int = 3,
    repeat: int = 1,
    min_repeat_ms: int = 100,
    enable_cpu_cache_flush: bool = False,
    *,
    max_workers: int | None = None,
    session_priority: int = 1,
    client_timeout_sec: float | None = None,
    check: bool = True,
):
    """``ms.runner.RPCRunner`` measuring on the devices registered as ``key`` at ``tracker``.

    ``timeout_sec`` is the RPC session timeout: the server kills a session (upload, load,
    and measurement of one candidate) that runs longer. ``max_workers`` (parallel sessions)
    defaults to the number of devices registered with the key, so every device is used.
    ``client_timeout_sec`` (default ``2 * timeout_sec + 30``) is a second, client-side limit
    per candidate that also covers a device that vanished without closing its connection.
    """
    # pylint: disable=import-outside-toplevel
    from tvm.s_tir import meta_schedule as ms
    from tvm.support.popen_pool import PopenPoolExecutor

    from .runner import evaluator_config

    host, port = parse_tracker(tracker)
    if timeout_sec <= 0:
        raise ValueError("timeout_sec must be positive")
    if max_workers is None:
        max_workers = check_tracker(tracker, key, require_free=False)["total"] if check else 1
    elif check:
        check_tracker(tracker, key, require_free=False)
    max_workers = max(1, int(max_workers))
    runner = ms.runner.RPCRunner(
        rpc_config=ms.runner.RPCConfig(
            tracker_host=host,
            tracker_port=port,
            tracker_key=key,
            session_priority=session_priority,
            session_timeout_sec=timeout_sec,
        ),
        evaluator_config=evaluator_config(number, repeat, min_repeat_ms, enable_cpu_cache_flush),
        max_workers=max_workers,
    )
    # The stock RPCRunner's pool has no timeout of its own; give it one (its futures turn
    # a TimeoutError into "RPCRunner: Timeout, killed after ..." and the worker is replaced).
    if client_timeout_sec is None:
        client_timeout_sec = 2 * timeout_sec + 30
    old_pool = runner.pool
    runner.pool = PopenPoolExecutor(max_workers=max_workers, timeout=client_timeout_sec)
    old_pool.shutdown(wait=False)
    return runner


def _stats_ms(seconds: Sequence[float]) -> dict[str, float]:
    ms_values = [float(s) * 1e3 for s in seconds]
    return {
        "mean_ms": statistics.fmean(ms_values),
        "median_ms": statistics.median(ms_values),
        "min_ms": min(ms_values),
        "max_ms": max(ms_values),
        "std_ms": statistics.pstdev(ms_values) if len(ms_values) > 1 else 0.0,
        "results_ms": ms_values,
    }


class RemoteRunnable:
    """A compiled Relax VM library running on a device leased from the RPC tracker.

    Same interface as :class:`tvmq.tuner.compile.Runnable` (``run``, ``benchmark``), so the
    pipeline verifies and benchmarks a remote build exactly like a local one. Each failure is
    a :class:`RemoteError` naming the stage that failed.
    """

    def __init__(self, lib_path: str | os.PathLike, tracker: str, key: str, *, device: str = "cpu",
                 timeout_sec: float = 120.0, priority: int = 1):
        from tvm import relax, rpc

        lib_path = os.fspath(lib_path)
        if not os.path.isfile(lib_path):
            raise RemoteError(f"The compiled library {lib_path} does not exist.")
        check_tracker(tracker, key, require_free=False)
        host, port = parse_tracker(tracker)
        self.tracker, self.key = tracker, key
        with self._stage("requesting a device"):
            self.session = rpc.connect_tracker(host, port).request(
                key, priority=priority, session_timeout=timeout_sec)
        with self._stage("uploading the library"):
            remote_name = os.path.basename(lib_path)
            self.session.upload(lib_path, remote_name)
        with self._stage("loading the library"):
            rlib = self.session.load_module(remote_name)
            self.device = self.session.device(device, 0)
            self.vm = relax.VirtualMachine(rlib, self.device)

    @contextlib.contextmanager
    def _stage(self, stage: str):
        try:
            yield
        except RemoteError:
            raise
        except Exception as err:  # noqa: BLE001 - TVMError, RuntimeError, OSError over RPC
            text = str(err).strip()
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(err).__name__)
            raise RemoteError(f"The remote run on {self.key!r} via {self.tracker} failed while {stage}: {first}") from None

    def _inputs(self, arrays):
        import numpy as np
        import tvm

        return [tvm.runtime.tensor(np.ascontiguousarray(a), self.device) for a in arrays]

    def run(self, arrays, func_name: str = "main"):
        from .compile import outputs_to_numpy

        with self._stage("copying the inputs"):
            args = self._inputs(arrays)
        with self._stage("running"):
            return outputs_to_numpy(self.vm[func_name](*args))

    def benchmark(self, arrays, repeat: int, warmup: int = 1, number: int = 1, min_repeat_ms: int = 0,
                  func_name: str = "main") -> list[float]:
        """Seconds per run: ``repeat`` averages of ``number`` runs each, after ``warmup`` runs."""
        if number < 1 or repeat < 1:
            raise ValueError("number and repeat must both be at least 1")
        with self._stage("copying the inputs"):
            self.vm.set_input(func_name, *self._inputs(arrays))
        with self._stage("timing"):
            for _ in range(warmup):
                self.vm.invoke_stateful(func_name)
            timer = self.vm.time_evaluator("invoke_stateful", self.device, number=number, repeat=repeat,
                                           min_repeat_ms=min_repeat_ms)
            return list(timer(func_name).results)


def remote_benchmark(
    lib_path: str | os.PathLike,
    tracker: str,
    key: str,
    input_arrays: Sequence[Any],
    number: int = 10,
    repeat: int = 3,
    *,
    func_name: str = "main",
    device: str = "cpu",
    min_repeat_ms: int = 0,
    timeout_sec: float = 120.0,
    priority: int = 1,
) -> dict:
    """Time a compiled Relax VM library (an exported ``.so``) on a remote device.

    Uploads ``lib_path``, loads it with ``relax.VirtualMachine`` on the remote device, sets
    ``input_arrays`` (numpy arrays) as the inputs of ``func_name`` and runs the VM's
    ``time_evaluator`` there (one warm-up, then ``repeat`` x ``number`` runs). Returns
    latencies in milliseconds: mean/median/min/max/std over the ``repeat`` averages,
    ``results_ms`` (each an average of ``number`` runs), plus ``number``, ``repeat``, ``key``.
    """
    if number < 1 or repeat < 1:
        raise ValueError("number and repeat must both be at least 1")
    remote = RemoteRunnable(lib_path, tracker, key, device=device, timeout_sec=timeout_sec, priority=priority)
    seconds = remote.benchmark(input_arrays, repeat=repeat, number=number, min_repeat_ms=min_repeat_ms,
                               func_name=func_name)
    out: dict[str, Any] = _stats_ms(seconds)
    out.update({"number": number, "repeat": repeat, "key": key, "tracker": tracker})
    return out


# ---------------------------------------------------------------------------------------
# A tracker and servers on the loopback interface
# ---------------------------------------------------------------------------------------


def _free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _kill_group(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Kill a process started with start_new_session=True and everything it started
    (the rpc_server's popen worker and its forked session processes)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class LocalRPCCluster:
    """``python -m tvm.exec.rpc_tracker`` plus ``num_servers`` ``python -m tvm.exec.rpc_server``
    processes, all bound to 127.0.0.1 only. Use as a context manager::

        with LocalRPCCluster(num_servers=2, key="local") as cluster:
            runner = make_rpc_runner(cluster.tracker, cluster.key)
            ...
            cluster.kill_server(0)   # simulate a device dying

    Each process runs in its own process group, so stopping a server also stops its
    session processes. Their output goes to log files in :attr:`log_dir`.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        num_servers: int = 2,
        key: str = "tvmq-local",
        *,
        port: int | None = None,
        start_timeout: float = 60.0,
        log_dir: str | None = None,
    ):
        if num_servers < 0:
            raise ValueError("num_servers must not be negative")
        self.num_servers = num_servers
        self.key = key
        self.port = port
        self.start_timeout = start_timeout
        self._owns_log_dir = log_dir is None
        self.log_dir = log_dir
        self.tracker_proc: subprocess.Popen | None = None
        self.servers: list[subprocess.Popen | None] = []

    @property
    def tracker(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalRPCCluster is not started")
        return f"{self.host}:{self.port}"

    # -- lifetime -------------------------------------------------------------------------
    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(os.path.join(self.log_dir, log_name), "ab")  # noqa: SIM115
        try:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def _log_tail(self, log_name: str, n: int = 600) -> str:
        try:
            with open(os.path.join(self.log_dir, log_name), "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-n:].decode("utf-8", "replace").strip()

    def start(self) -> LocalRPCCluster:
        if self.log_dir is None:
            self.log_dir = tempfile.mkdtemp(prefix="tvmq-rpc-")
        os.makedirs(self.log_dir, exist_ok=True)
        try:
            self._start_tracker()
            for _ in range(self.num_servers):
                self.add_server(wait=False)
            self.wait_for_servers(self.num_servers)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_tracker(self) -> None:
        fixed = self.port is not None
        for _attempt in range(1 if fixed else 3):
            port = self.port if fixed else _free_port(self.host)
            proc = self._spawn(
                ["tvm.exec.rpc_tracker", "--host", self.host, "--port", str(port), "--port-end", str(port + 1)],
                "tracker.log",
            )
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    tracker_summary(f"{self.host}:{port}", timeout=5)
                    self.tracker_proc, self.port = proc, port
                    return
                except RemoteError:
                    time.sleep(0.2)
            _kill_group(proc)
        raise RemoteError(
            f"The local RPC tracker did not start on {self.host}: {self._log_tail('tracker.log') or 'no output'}."
        )

    def add_server(self, wait: bool = True) -> int:
        """Start one more server with this cluster's key; returns its index."""
        index = len(self.servers)
        sport = _free_port(self.host)
        proc = self._spawn(
            [
                "tvm.exec.rpc_server",
                "--tracker", self.tracker,
                "--key", self.key,
                "--host", self.host,
                "--port", str(sport),
                "--port-end", str(sport + 20),
            ],
            f"server-{index}.log",
        )  # fmt: skip
        self.servers.append(proc)
        if wait:
            self.wait_for_servers(self.alive_servers())
        return index

    def alive_servers(self) -> int:
        return sum(1 for p in self.servers if p is not None and p.poll() is None)

    def wait_for_servers(self, count: int, timeout: float | None = None) -> None:
        """Wait until the tracker lists ``count`` free servers with this cluster's key."""
        deadline = time.monotonic() + (timeout or self.start_timeout)
        info: dict = {}
        while time.monotonic() < deadline:
            for i, p in enumerate(self.servers):
                if p is not None and p.poll() is not None and p.returncode != -signal.SIGKILL:
                    raise RemoteError(
                        f"Local RPC server {i} exited with status {p.returncode}: "
                        f"{self._log_tail(f'server-{i}.log') or 'no output'}."
                    )
            try:
                info = check_tracker(self.tracker, self.key, timeout=5, require_free=False)
            except RemoteError:
                info = {}
            if info.get("total", 0) >= count and info.get("free", 0) >= count:
                return
            time.sleep(0.2)
        raise RemoteError(
            f"Only {info.get('total', 0)} of {count} local RPC servers registered with the tracker "
            f"within {timeout or self.start_timeout:g} seconds."
        )

    def kill_server(self, index: int, sig: int = signal.SIGKILL) -> None:
        """Kill server ``index`` and its session processes (simulates a device dying)."""
        proc = self.servers[index]
        if proc is not None:
            _kill_group(proc, sig)
            self.servers[index] = None

    def stop(self) -> None:
        """Stop every server and the tracker. Idempotent."""
        for i in range(len(self.servers)):
            self.kill_server(i)
        if self.tracker_proc is not None:
            _kill_group(self.tracker_proc)
            self.tracker_proc = None
        if self._owns_log_dir and self.log_dir:
            import shutil  # pylint: disable=import-outside-toplevel

            shutil.rmtree(self.log_dir, ignore_errors=True)
            self.log_dir = None

    def __enter__(self) -> LocalRPCCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self):
        try:
            self.stop()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
