"""Heartbeats of running tuning sessions, as Optuna's RDB storage keeps them for its trials.

A running session writes the database server's clock into ``tuning_sessions.heartbeat_at`` when
it begins, after every measured batch, and from a background thread every
:func:`heartbeat_interval` seconds (a batch can take minutes). A session still marked
``running`` whose last heartbeat is older than :func:`stale_after` was killed, or has been cut
off from the database for that long: ``tvmq-db sessions`` shows it as ``stale`` and
``tvmq-db check`` reports it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

#: seconds between two heartbeats of the background thread (``$TVMQ_HEARTBEAT_S``)
HEARTBEAT_INTERVAL_S = 20.0
#: seconds without a heartbeat after which a running session is stale (``$TVMQ_STALE_AFTER_S``);
#: several intervals plus the 30 s a heartbeat may wait for another writer's lock
STALE_AFTER_S = 120.0

_log = logging.getLogger("tvmq.db")


def _seconds_from_env(name: str, default: float) -> float:
    """A positive number of seconds from ``$name``, else ``default``."""
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


def heartbeat_interval() -> float:
    return _seconds_from_env("TVMQ_HEARTBEAT_S", HEARTBEAT_INTERVAL_S)


def stale_after() -> float:
    return _seconds_from_env("TVMQ_STALE_AFTER_S", STALE_AFTER_S)


class Heartbeat:
    """While the ``with`` block runs, a daemon thread calls ``beat()`` every ``interval_s`` seconds.

    A beat that fails (the database locked or unreachable for a while) is logged and tried again
    at the next interval: a session that stays cut off long enough shows as stale, which is the
    truth. The thread never outlives the process (it is a daemon), and a beat still waiting for
    a lock when the block ends is left to finish on its own.
    """

    def __init__(self, beat: Callable[[], None], interval_s: float | None = None) -> None:
        self.beat = beat
        self.interval_s = heartbeat_interval() if interval_s is None else float(interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tvmq-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.beat()
            except Exception as err:  # noqa: BLE001 - a missed beat is not an error of the run
                _log.debug("heartbeat not written: %s", err)
