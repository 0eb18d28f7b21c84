"""Test helpers for remote measurement: a tracker and servers on the loopback interface
(:class:`LocalRPCCluster`), and one benchmark of a compiled library on one of its devices."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from tvmq.errors import RemoteError
from tvmq.report.stats import latency_stats
from tvmq.tuner.remote import RemoteRunnable, check_tracker, tracker_summary


def remote_benchmark(
    lib_path: str | os.PathLike,
    tracker: str,
    key: str,
    input_arrays: Sequence[Any],
    number: int = 10,
    repeat: int = 3,
    *,
    timeout_sec: float = 120.0,
) -> dict:
    """Time a compiled Relax VM library (an exported ``.so``) on a device of ``key``.

    One warm-up, then ``repeat`` averages of ``number`` runs each. Returns
    :func:`~tvmq.report.stats.latency_stats` with each key suffixed ``_ms`` (``median_ms``,
    ``min_ms``...), ``results_ms`` (the ``repeat`` averages), ``number``, ``repeat``, ``key``
    and ``tracker``.
    """
    remote = RemoteRunnable(lib_path, tracker, key, timeout_sec=timeout_sec)
    seconds = remote.benchmark(input_arrays, repeat=repeat, number=number)
    out: dict[str, Any] = {f"{k}_ms": v for k, v in latency_stats(seconds).items() if k != "runs"}
    out.update({"results_ms": [s * 1e3 for s in seconds], "number": number, "repeat": repeat,
                "key": key, "tracker": tracker})
    return out


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
