"""PersistentBuilder: workers survive across batches; a crash, hang or exception in one
candidate costs only that candidate."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import tvm
from tvm import te
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.testing import te_workload

from tvmq.errors import CompileError
from tvmq.tuner.builder import PersistentBuilder
from tvmq.tuner.pool import WorkerPool

TARGET = tvm.target.Target("llvm")


def _matmul(n: int = 32) -> tvm.tirx.PrimFunc:
    return te.create_prim_func(te_workload.matmul(n, n, n))


def _tagged(tag: str) -> tvm.IRModule:
    return tvm.IRModule({"main": _matmul().with_attr("tvmq_test", tag)})


def _make_f_build():
    # Nested, so cloudpickle ships it by value (the test module is not importable in workers).
    def f_build(mod, target, _params):
        import ctypes
        import time as _time

        import tvm as _tvm

        attrs = mod["main"].attrs
        tag = str(attrs["tvmq_test"]) if attrs is not None and "tvmq_test" in attrs else ""
        if tag == "segv":
            ctypes.string_at(0)  # segfaults the worker
        if tag == "hang":
            _time.sleep(1000)
        if tag == "raise":
            raise ValueError("candidate-specific failure")
        return _tvm.tirx.build(mod, target=target)

    return f_build


@pytest.fixture(scope="module")
def fast_builder():
    # Custom f_build that needs no tensor intrinsics: workers start in ~1 s.
    with PersistentBuilder(
        max_workers=2, timeout_sec=3, f_build=_make_f_build(), preload_tensor_intrin=False
    ) as b:
        b.wait_ready()
        yield b


def _build(builder, tags):
    return builder.build([ms.builder.BuilderInput(_tagged(t), TARGET) for t in tags])


def test_workers_are_reused_across_batches(fast_builder):
    pids = fast_builder.pool.worker_pids()
    for _ in range(3):
        results = _build(fast_builder, ["ok", "ok", "ok"])
        assert all(r.error_msg is None and os.path.isfile(r.artifact_path) for r in results)
    assert fast_builder.pool.worker_pids() == pids  # no restart per batch, unlike LocalBuilder


def test_crash_hang_and_exception_cost_one_candidate_each(fast_builder):
    restarts0 = fast_builder.stats()["restarts"]
    t0 = time.monotonic()
    results = _build(fast_builder, ["ok", "segv", "ok", "hang", "raise", "ok"])
    elapsed = time.monotonic() - t0
    by_tag = dict(zip(["ok0", "segv", "ok1", "hang", "raise", "ok2"], results))

    for name in ("ok0", "ok1", "ok2"):
        assert by_tag[name].error_msg is None, by_tag[name].error_msg
        assert by_tag[name].artifact_path.startswith(fast_builder.export_root)
        assert os.path.isfile(by_tag[name].artifact_path)
    assert by_tag["segv"].artifact_path is None
    assert "SIGSEGV" in by_tag["segv"].error_msg
    assert by_tag["hang"].artifact_path is None
    assert "Timeout, killed after 3 seconds" in by_tag["hang"].error_msg
    assert by_tag["raise"].artifact_path is None
    assert "candidate-specific failure" in by_tag["raise"].error_msg
    # The hang is cut at the timeout (+ grace), not at the 1000 s sleep.
    assert elapsed < 20
    # Exactly the crashed and the hung worker were replaced; the pool keeps building.
    assert fast_builder.stats()["restarts"] - restarts0 == 2
    again = _build(fast_builder, ["ok", "ok"])
    assert all(r.error_msg is None for r in again)


def test_artifacts_removed_at_shutdown():
    b = PersistentBuilder(max_workers=1, f_build=_make_f_build(), preload_tensor_intrin=False)
    (r,) = _build(b, ["ok"])
    assert os.path.isfile(r.artifact_path)
    pids = b.pool.worker_pids()
    b.shutdown()
    assert not os.path.exists(b.export_root)
    assert all(p is None for p in b.pool.worker_pids())
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(CompileError):
        _build(b, ["ok"])


def test_misspelt_build_function_is_one_clear_error():
    with PersistentBuilder(max_workers=1, f_build="tvmq.no_such_build_function", preload_tensor_intrin=False) as b:
        with pytest.raises(CompileError, match="could not start"):
            _build(b, ["ok"])


def test_pool_parent_side_deadline_when_worker_cannot_answer():
    # SIGSTOP freezes the worker's own timer thread too: only the parent can end this task.
    def freeze():
        import os as _os
        import signal as _signal

        _os.kill(_os.getpid(), _signal.SIGSTOP)

    with WorkerPool(1) as pool:
        t0 = time.monotonic()
        (res,) = pool.map(freeze, [()], timeout=1.0)
        assert res.status == "timeout"
        assert time.monotonic() - t0 < 10
        (res,) = pool.map(os.getpid, [()], timeout=5.0)
        assert res.ok and res.value == pool.worker_pids()[0]


def test_default_build_and_export_like_local_builder():
    """The default path (tensor intrinsics preloaded, MetaSchedule's default_build/export)
    gives a loadable tar artifact that computes the right thing."""
    func = _matmul(16)
    with PersistentBuilder(max_workers=1, timeout_sec=120) as b:
        (res,) = b.build([ms.builder.BuilderInput(tvm.IRModule({"main": func}), TARGET)])
        assert res.error_msg is None, res.error_msg
        assert res.artifact_path.endswith(".tar")
        lib = tvm.runtime.load_module(res.artifact_path)
    a = np.random.rand(16, 16).astype("float32")
    bm = np.random.rand(16, 16).astype("float32")
    out = tvm.runtime.tensor(np.zeros((16, 16), "float32"))
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(bm), out)
    np.testing.assert_allclose(out.numpy(), a @ bm, rtol=1e-5)
