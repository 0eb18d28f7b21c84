"""Measurement on remote devices registered with TVM's own RPC tracker.

* :func:`check_tracker` - is the tracker reachable, does it know devices of a key, are any free?
* :func:`make_rpc_runner` - MetaSchedule's ``RPCRunner`` set up for a tracker/key, with one
  connection per registered device and a client-side timeout on top of the server's session
  timeout (so even a device that vanishes from the network costs only its in-flight trials).
* :class:`RemoteRunnable` - a compiled Relax VM library run and timed on a device.

How the stock pieces behave (checked, see tests/test_rpc.py): an RPC server does NOT import
``tvm.s_tir.tensor_intrin`` (it starts in ~1-2 s); each session runs in a process forked by
the server and killed by it when ``session_timeout`` expires; when a server dies its tracker
connection drops and the tracker forgets it, so later requests go to the remaining devices.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any

from tvmq.errors import RemoteError, one_line

__all__ = [
    "RemoteRunnable",
    "check_tracker",
    "make_rpc_runner",
    "parse_tracker",
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
        raise RemoteError(
            f"The service at {host}:{port} did not answer as an RPC tracker ({one_line(err, pick='first')})."
        ) from None


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

    def close(self) -> None:
        """Give the device back to the tracker now, not when the session times out: a second
        build (the untuned one) would otherwise wait for it where the key has one server."""
        import gc

        self.vm = self.device = self.session = None
        gc.collect()

    @contextlib.contextmanager
    def _stage(self, stage: str):
        try:
            yield
        except RemoteError:
            raise
        except Exception as err:  # noqa: BLE001 - TVMError, RuntimeError, OSError over RPC
            raise RemoteError(
                f"The remote run on {self.key!r} via {self.tracker} failed while {stage}: "
                f"{one_line(err, pick='first')}"
            ) from None

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
