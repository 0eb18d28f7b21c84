"""Tensorize a small u8 x i8 -> i32 matmul with our AVX2 dot-product intrinsic."""

from __future__ import annotations

import numpy as np
import pytest

import tvm
from tvm.script import tirx as T

M, N, K = 16, 32, 64


@T.prim_func(s_tir=True)
def matmul_u8i8(A: T.Buffer((M, K), "uint8"), B: T.Buffer((N // 8, K // 4, 8, 4), "int8"),
                C: T.Buffer((M, N), "int32")):
    # B is pre-packed so that each 8x4 (output-channel x reduction) tile is contiguous,
    # as TVM's VNNI schedules pack weights for dot_16x4_vnni.
    T.func_attr({"global_symbol": "main", "tirx.noalias": True})
    for i, j, k in T.grid(M, N, K):
        with T.sblock("C"):
            vi, vj, vk = T.axis.remap("SSR", [i, j, k])
            with T.init():
                C[vi, vj] = 0
            C[vi, vj] = C[vi, vj] + T.cast(A[vi, vk], "int32") * T.cast(B[vj // 8, vk // 4, vj % 8, vk % 4], "int32")


def _has_avx2():
    try:
        return "avx2" in open("/proc/cpuinfo").read()
    except OSError:
        return False


def test_avx2_dot_tensorize():
    from tvmq.int8.avx2 import AVX2_DOT_8x4_INTRIN

    sch = tvm.s_tir.Schedule(matmul_u8i8)
    blk = sch.get_sblock("C")
    i, j, k = sch.get_loops(blk)
    jo, ji = sch.split(j, [None, 8])
    ko, ki = sch.split(k, [None, 4])
    sch.reorder(i, jo, ko, ji, ki)
    sch.decompose_reduction(blk, ko)
    sch.tensorize(ji, AVX2_DOT_8x4_INTRIN)
    assert "pmadd.ub.sw" in sch.mod.script()

    target = tvm.target.Target({"kind": "llvm", "mcpu": "znver3"})
    lib = tvm.compile(sch.mod, target=target)
    asm = lib.mod.inspect_source("asm") if hasattr(lib, "mod") else lib.inspect_source("asm")
    assert "vpmaddubsw" in asm, "vpmaddubsw not in the compiled assembly"
    assert "vpmaddwd" in asm

    if not _has_avx2():
        pytest.skip("host has no AVX2: compiled and checked the assembly only")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(M, K), dtype=np.int64).astype(np.uint8)
    # |a0*b0 + a1*b1| <= 2*255*64 = 32640: no int16 saturation in vpmaddubsw
    b = rng.integers(-64, 65, size=(N, K), dtype=np.int64).astype(np.int8)
    b_packed = np.ascontiguousarray(b.reshape(N // 8, 8, K // 4, 4).transpose(0, 2, 1, 3))
    c = tvm.runtime.tensor(np.zeros((M, N), np.int32))
    lib["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(b_packed), c)
    ref = a.astype(np.int32) @ b.astype(np.int32).T
    np.testing.assert_array_equal(c.numpy(), ref)
