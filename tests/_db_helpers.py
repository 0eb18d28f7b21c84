"""Cheap real workloads and tuning records for the database tests (no compilation)."""

from __future__ import annotations

import random

import tvm
from tvm import te
from tvm.s_tir import Schedule
from tvm.s_tir import meta_schedule as ms

CASCADELAKE = {"kind": "llvm", "mcpu": "cascadelake", "num-cores": 2}
ZNVER3 = {"kind": "llvm", "mcpu": "znver3", "num-cores": 2}


def target(cfg: dict = CASCADELAKE) -> tvm.target.Target:
    return tvm.target.Target(cfg)


def matmul(n: int = 16, m: int | None = None, name: str = "main") -> tvm.IRModule:
    m = m or n
    a = te.placeholder((n, m), "float32", name="A")
    b = te.placeholder((m, n), "float32", name="B")
    k = te.reduce_axis((0, m), "k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    return tvm.IRModule({name: te.create_prim_func([a, b, c])})


def matmul_relu(n: int = 16) -> tvm.IRModule:
    """Same anchor block (the matmul) as :func:`matmul`, plus an epilogue."""
    a = te.placeholder((n, n), "float32", name="A")
    b = te.placeholder((n, n), "float32", name="B")
    k = te.reduce_axis((0, n), "k")
    c = te.compute((n, n), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    d = te.compute((n, n), lambda i, j: te.max(c[i, j], tvm.tirx.const(0, "float32")), name="D")
    return tvm.IRModule({"main": te.create_prim_func([a, b, d])})


def random_trace(mod: tvm.IRModule, seed: int) -> ms.database.TuningRecord:
    """A real schedule trace: split the first two loops of block C with random perfect tiles."""
    sch = Schedule(mod, seed=seed + 1)
    blk = sch.get_sblock("C", func_name=next(iter(mod.functions_items()))[0].name_hint)
    i, j, _ = sch.get_loops(blk)
    sch.split(i, sch.sample_perfect_tile(i, n=2))
    sch.split(j, sch.sample_perfect_tile(j, n=2))
    return sch.trace


def make_record(workload: ms.database.Workload, tgt, run_secs, seed: int = 0) -> ms.database.TuningRecord:
    return ms.database.TuningRecord(
        random_trace(workload.mod, seed), workload,
        None if run_secs is None else [float(x) for x in run_secs],
        tgt, ms.arg_info.ArgInfo.from_prim_func(next(iter(workload.mod.functions_items()))[1]),
    )


def fill(msdb, mod, n: int, seed: int = 0, base: float = 1e-3) -> list[float]:
    """Commit ``n`` records of ``mod`` through a MetaSchedule database; returns their mean times."""
    rng = random.Random(seed)
    wl = msdb.commit_workload(mod)
    means = []
    for i in range(n):
        secs = [base * (1 + rng.random()) for _ in range(3)]
        msdb.commit_tuning_record(make_record(wl, msdb.target if hasattr(msdb, "target") else None,
                                              secs, seed=seed * 1000 + i))
        means.append(sum(secs) / len(secs))
    return means


def listed_database(path):
    """A SQLite database at ``path`` for the listings: one finished session on cascadelake with two
    workloads (5 and 3 records), and 2 records on znver3 from no session."""
    from tvmq.db import open_database

    db = open_database(path)
    sid = db.begin_session(model_name="mobilenet_v1", target_profile="cascadelake", target=target(),
                           trials_requested=64)
    fill(db.scoped(target(), session_id=sid), matmul(), 5)
    fill(db.scoped(target(), session_id=sid), matmul(32), 3, seed=2)
    db.end_session(sid, "finished", trials_done=8)
    fill(db.scoped(target(ZNVER3)), matmul(), 2, seed=3)
    db.close()
    return path
