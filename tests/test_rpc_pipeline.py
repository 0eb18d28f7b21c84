"""Tuning and measuring a small model end to end through TVM's RPC tracker and two loopback servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.cli_helpers import load_json
from tests.rpc_helpers import LocalRPCCluster
from tvmq.db import open_database

pytestmark = pytest.mark.slow


def test_tune_verify_and_benchmark_through_two_servers(tmp_path, model_factory):
    db_path, out = tmp_path / "t.db", tmp_path / "out"
    with LocalRPCCluster(num_servers=2, key="tvmq-test") as cluster:
        argv = [sys.executable, "-m", "tvmq.cli.tune", "--model", str(model_factory.path("uint8")),
                "--db", str(db_path), "--out", str(out), "--json", str(tmp_path / "r.json"),
                "--trials", "48", "--repeat", "5", "--rpc-tracker", cluster.tracker, "--rpc-key", cluster.key]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"), cwd=str(tmp_path))
        # Once measurements flow, take one server away: only its in-flight trials may fail.
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None:
            if db_path.exists() and open_database(db_path).count_records() >= 8:
                cluster.kill_server(0)
                break
            time.sleep(0.5)
        _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    r = load_json(tmp_path / "r.json")
    assert r["verdict"] == "pass"
    assert r["target"]["measured_on"] == f"rpc tvmq-test@{cluster.tracker}"
    assert r["latency_ms"]["tvm"]["runs"] == 5
    db = open_database(db_path)
    valid = [x for x in db.records() if x.mean_run_secs is not None]
    assert len(valid) >= r["tuning"]["trials"] - 8, "losing one server costs at most its in-flight batch"
