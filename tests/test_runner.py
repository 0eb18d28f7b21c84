"""make_local_runner: a candidate that segfaults or hangs costs one failed trial; the next
candidate in the same runner is measured normally."""

from __future__ import annotations

import os
import time

import pytest
import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.script import tirx as T
from tvm.support.tar import tar

from tvmq.tuner.runner import make_local_runner


@T.prim_func
def _segv(A: T.Buffer((16,), "int32")):
    T.func_attr({"global_symbol": "main", "tir.noalias": True})
    Z = T.decl_buffer((1,), "int32", data=T.reinterpret("handle", T.uint64(8)))
    Z[0] = A[0]  # reads address 8: SIGSEGV


@T.prim_func
def _hang(A: T.Buffer((16,), "int32")):
    T.func_attr({"global_symbol": "main", "tir.noalias": True})
    while A[0] > -1:  # never false once A[0] == 1
        A[0] = 1


@T.prim_func
def _ok(A: T.Buffer((16,), "int32")):
    T.func_attr({"global_symbol": "main", "tir.noalias": True})
    for i in range(16):
        A[i] = i


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    out = {}
    for name, func in [("segv", _segv), ("hang", _hang), ("ok", _ok)]:
        lib = tvm.tirx.build(tvm.IRModule({"main": func}), target="llvm")
        path = tmp_path_factory.mktemp(name) / "mod.tar"
        lib.export_library(str(path), fcompile=tar)
        out[name] = ms.runner.RunnerInput(str(path), "cpu", ms.arg_info.ArgInfo.from_prim_func(func))
    return out


def test_segfault_and_hang_cost_one_trial_each(artifacts):
    runner = make_local_runner(timeout_sec=3, number=2, repeat=2, min_repeat_ms=0)
    order = ["ok", "segv", "ok", "hang", "ok"]
    results = []
    t0 = time.monotonic()
    for name in order:  # one candidate per run() call, as separate batches
        (future,) = runner.run([artifacts[name]])
        results.append(future.result())
    elapsed = time.monotonic() - t0

    for name, res in zip(order, results):
        if name == "ok":
            assert res.error_msg is None, res.error_msg
            assert len(res.run_secs) == 2 and all(0 < float(s) < 1 for s in res.run_secs)
    assert results[1].run_secs is None and "Subprocess terminated" in results[1].error_msg
    assert results[3].run_secs is None and "Timeout, killed after 3 seconds" in results[3].error_msg
    assert elapsed < 30  # the hang is cut at the timeout


def test_one_batch_with_bad_candidates(artifacts):
    runner = make_local_runner(timeout_sec=2, number=1, repeat=1, min_repeat_ms=0)
    batch = [artifacts[n] for n in ("hang", "ok", "segv", "ok")]
    results = [f.result() for f in runner.run(batch)]
    assert [r.error_msg is None for r in results] == [False, True, False, True]


def test_local_runner_pool_is_not_restarted_per_batch(artifacts):
    """The stock LocalRunner keeps its single worker across batches (so, unlike the
    builder, it needs no persistent replacement)."""
    runner = make_local_runner(timeout_sec=5, number=1, repeat=1, min_repeat_ms=0)
    pids = []
    for _ in range(3):
        runner.run([artifacts["ok"]])[0].result()
        pids.append(runner.pool.submit(os.getpid).result())
    assert len(set(pids)) == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        make_local_runner(timeout_sec=0)
    with pytest.raises(ValueError):
        make_local_runner(number=0)
