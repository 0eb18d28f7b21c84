"""Child process for the database durability tests, run from the repository root.

    python -m tests._db_child write DB N SEED
        commit N records (N=0: forever), print "committed K" after each commit; Ctrl-C ends the
        session "interrupted" and exits 130 (as tvmq-tune does: SIGINT sets a flag that the loop
        checks after each commit; a KeyboardInterrupt raised at a random point, e.g. inside a
        finalizer, can be swallowed by Python)
    python -m tests._db_child session DB
        begin a session, print "session ID", then wait in one long "batch" while the heartbeat
        thread beats (every $TVMQ_HEARTBEAT_S seconds) until the process is killed
    python -m tests._db_child lock DB SECONDS
        hold tvmq's write lock (SQLite's, or PostgreSQL's advisory lock), print "locked", then wait

DB is a file path or a SQLAlchemy URL.
"""

from __future__ import annotations

import signal
import sys
import threading
import time


def write(url: str, n: int, seed: int) -> int:
    from tests._db_helpers import make_record, matmul, target
    from tvmq.db import open_database

    db = open_database(url, timeout_s=30)
    tgt = target()
    sid = db.begin_session(model_name=f"child-{seed}", target=tgt, trials_requested=n or None)
    msdb = db.scoped(tgt, session_id=sid)
    wl = msdb.commit_workload(matmul())
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    print("ready", flush=True)
    done = 0
    with msdb.reraise_errors():
        while n == 0 or done < n:
            secs = [1e-3 * (1 + ((seed * 7919 + done * 104729) % 1000) / 1000.0)]
            msdb.commit_tuning_record(make_record(wl, tgt, secs, seed=seed * 100000 + done))
            done += 1
            print(f"committed {done}", flush=True)
            if stop.is_set():
                db.end_session(sid, "interrupted", trials_done=done)
                print(f"interrupted {done}", flush=True)
                return 130
    db.end_session(sid, "finished", trials_done=done)
    return 0


def session(url: str) -> int:
    from tvmq.db import open_database

    db = open_database(url, timeout_s=30)
    sid = db.begin_session(model_name="long-batch", host_cpu="test", tvm_version="test")
    with db.heartbeat(sid):
        print(f"session {sid}", flush=True)
        time.sleep(3600)
    return 0


def lock(url: str, seconds: float) -> int:
    from tvmq.db import open_database

    db = open_database(url, timeout_s=30)
    with db.write():
        print("locked", flush=True)
        time.sleep(seconds)
    return 0


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "write":
        sys.exit(write(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    if cmd == "session":
        sys.exit(session(sys.argv[2]))
    if cmd == "lock":
        sys.exit(lock(sys.argv[2], float(sys.argv[3])))
    sys.exit(f"unknown command {cmd}")
