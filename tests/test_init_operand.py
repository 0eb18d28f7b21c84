"""Accumulators that start from the bias (tvmq.int8.init_operand), and the epilogue's rounding."""

import numpy as np
import pytest

from tests._int8_helpers import llvm_asm


def _kernel():
    from tvm import te
    from tvmq.int8.init_operand import INIT_FROM

    a = te.placeholder((8, 12), "int32", name="a")
    bias = te.placeholder((8,), "int32", name="bias")
    k = te.reduce_axis((0, 12), "k")
    acc = te.compute((8,), lambda o: te.sum(a[o, k], axis=k), name="acc", attrs={INIT_FROM: 1})
    out = te.compute((8,), lambda o: acc[o] * 2, name="out")
    return te.create_prim_func([a, bias, out])


def test_the_accumulator_starts_from_the_operand():
    import tvm
    from tvmq.int8.init_operand import INIT_FROM, init_from_operands

    func = init_from_operands(_kernel())
    assert INIT_FROM not in func.script()  # the mark is consumed
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target="llvm")
    rng = np.random.default_rng(0)
    a = rng.integers(-100, 100, (8, 12)).astype(np.int32)
    bias = rng.integers(-1000, 1000, 8).astype(np.int32)
    out = tvm.runtime.tensor(np.zeros(8, np.int32))
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(bias), out)
    np.testing.assert_array_equal(out.numpy(), (a.sum(axis=1) + bias) * 2)


def test_the_anchor_block_hash_survives_a_second_lowering():
    """The operand the init reads is declared among the block's reads: a buffer the block reads
    without declaring it hashes by identity, so the same kernel built twice would be two
    workloads, and a database would never find its records again."""
    import tvm
    from tvmq.db import keys
    from tvmq.int8.init_operand import init_from_operands

    one, two = init_from_operands(_kernel()), init_from_operands(_kernel())
    m1, m2 = tvm.IRModule({"main": one}), tvm.IRModule({"main": two})
    assert keys.module_hash(m1, "anchor-block") == keys.module_hash(m2, "anchor-block")
    assert keys.modules_equal(m1, m2, "anchor-block")


@pytest.mark.parametrize("mcpu, lanes", [("znver4", 16), ("haswell", 8)])
def test_the_epilogue_rounds_in_one_conversion(mcpu, lanes):
    """XNNPACK's requantization rounds half to even: one ``vcvtps2dq`` (``llvm.lrint``), not a
    ``vrndscaleps`` / ``vroundps`` and a truncating ``vcvttps2dq`` after it."""
    import tvm
    from tvm import s_tir, te
    from tvmq.int8 import requant as rq

    x = te.placeholder((64,), "int32", name="x")
    y = te.compute((64,), lambda i: rq.requantize_fp32_tir(x[i], 0.37, -3, -128, 127, "int8"), name="y")
    sch = s_tir.Schedule(tvm.IRModule({"main": te.create_prim_func([x, y])}))
    (i,) = sch.get_loops(sch.get_sblock("y"))
    sch.vectorize(sch.split(i, [None, lanes])[1])
    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu, "mtriple": "x86_64-linux-gnu"})
    asm = llvm_asm(tvm.compile(sch.mod, target=target))
    assert "vcvtps2dq" in asm
    assert "vrndscaleps" not in asm and "vroundps" not in asm and "vcvttps2dq" not in asm
