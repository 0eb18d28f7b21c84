"""Cross builds reach the right ISA: disassemble exported libraries and look for it.

* cascadelake: a uint8 x int8 -> int32 matmul tensorized with a VNNI dot-product intrinsic
  must contain ``vpdpbusd`` (and compute the right numbers when this host has VNNI); a small
  float conv model must use AVX-512 ``zmm`` registers (a haswell build of it must not).
* neoverse-n1 / cortex-a76: the same matmul tensorized with TVM's ``dot_4x4_i8i8s32_sdot`` must
  contain ``sdot`` in aarch64-linux-gnu-objdump; a float model must use NEON ``v<n>.4s``.

TVM 0.27's registered ``dot_16x4_vnni`` intrinsic does not compile with the LLVM 22 it ships
with: it passes ``<16 x i32>`` operands to ``llvm.x86.avx512.vpdpbusd.512``, which LLVM 22
declares with ``<64 x i8>`` operands ("Call parameter type does not match function
signature"). tvmq's own ``tvmq_dot_vnni_u8i8`` (:mod:`tvmq.int8.intrin`) passes ``<64 x i8>``
operands; ``test_registered_vnni_intrin_is_broken_on_llvm22`` records the upstream bug so that
we notice when it is fixed.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from tvmq.targets import get_profile, host_info

X86_OBJDUMP = shutil.which("objdump")
A64_OBJDUMP = shutil.which("aarch64-linux-gnu-objdump")
A64_GCC = shutil.which("aarch64-linux-gnu-gcc")

needs_x86_tools = pytest.mark.skipif(
    host_info().arch != "x86_64" or X86_OBJDUMP is None,
    reason="needs an x86_64 host with objdump (binutils)")
needs_a64_tools = pytest.mark.skipif(
    A64_GCC is None or A64_OBJDUMP is None,
    reason="aarch64 cross toolchain missing: apt-get install gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu")


def _packed_matmul(a_dtype: str, lanes: int, M=8, N=32, K=64, bias: bool = False):
    """C[i, j] = sum_k A[i, k] * B[j, k] with B packed as (N/lanes, K/4, lanes, 4); with ``bias``,
    the accumulators start from ``I[j]`` as tvmq's kernels do (what tvmq's intrinsics describe)."""
    from tvm import te

    from tvmq.int8.init_operand import INIT_FROM, init_from_operands

    A = te.placeholder((M, K), a_dtype, name="A")
    B = te.placeholder((N // lanes, K // 4, lanes, 4), "int8", name="B")
    I = te.placeholder((N,), "int32", name="I")  # noqa: E741 - the intrinsics' name for it
    k = te.reduce_axis((0, K), name="k")
    C = te.compute(
        (M, N),
        lambda i, j: te.sum(
            A[i, k].astype("int32") * B[j // lanes, k // 4, j % lanes, k % 4].astype("int32"), axis=k),
        name="C", attrs={INIT_FROM: 2} if bias else None)
    if bias:
        return init_from_operands(te.create_prim_func([A, B, I, C])), (M, N, K)
    return te.create_prim_func([A, B, C]), (M, N, K)


def _tensorized(func, lanes: int, intrin: str):
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    blk = sch.get_sblock("C")
    _, j, k = sch.get_loops(blk)
    jo, ji = sch.split(j, [None, lanes])
    ko, ki = sch.split(k, [None, 4])
    sch.reorder(jo, ko, ji, ki)
    sch.decompose_reduction(blk, ko)
    sch.tensorize(ji, intrin)
    return sch.mod


def _disasm(objdump: str, path) -> str:
    return subprocess.run([objdump, "-d", str(path)], check=True, capture_output=True, text=True).stdout


def _tiny_conv_model():
    from tvm import relax

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 8, 8, 32), "float32"))
    w = relax.const(np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(relax.op.nn.conv2d(x, w, padding=[1, 1, 1, 1], data_layout="NHWC", kernel_layout="HWIO"))
            out = bb.emit_output(relax.op.nn.relu(y))
        bb.emit_func_output(out)
    return bb.get()


def _build_model(name, tmp_path):
    import tvm
    from tvm import relax

    prof = get_profile(name)
    target = prof.tvm_target(1)
    with target:
        mod = relax.get_pipeline("zero")(_tiny_conv_model())
    ex = tvm.compile(mod, target=target)
    return prof.export_library(ex, tmp_path / f"{name}.so")


# ------------------------------------------------------------------ x86
@needs_x86_tools
def test_cascadelake_vnni_matmul_has_vpdpbusd(tmp_path):
    import tvm

    prof = get_profile("cascadelake")
    func, (M, N, K) = _packed_matmul("uint8", 16, bias=True)
    from tvmq.int8 import intrin  # noqa: F401 - registers tvmq_dot_vnni_u8i8

    lib = tvm.compile(_tensorized(func, 16, "tvmq_dot_vnni_u8i8"), target=prof.tvm_target(1))
    so = prof.export_library(lib, tmp_path / "vnni.so")
    asm = _disasm(X86_OBJDUMP, so)
    assert re.search(r"\bvpdpbusd\b.*%zmm", asm), "no 512-bit vpdpbusd in the cascadelake object"
    if prof.can_run_here:  # and it computes the right thing
        rng = np.random.default_rng(0)
        a = rng.integers(0, 256, (M, K), dtype=np.uint8)
        b = rng.integers(-128, 128, (N, K), dtype=np.int8)
        bias = rng.integers(-5000, 5000, N).astype(np.int32)
        packed = b.reshape(N // 16, 16, K // 4, 4).transpose(0, 2, 1, 3).copy()
        c = tvm.runtime.tensor(np.zeros((M, N), "int32"))
        tvm.runtime.load_module(str(so))["main"](tvm.runtime.tensor(a), tvm.runtime.tensor(packed),
                                                 tvm.runtime.tensor(bias), c)
        np.testing.assert_array_equal(c.numpy(), a.astype(np.int64) @ b.astype(np.int64).T + bias)


@needs_x86_tools
def test_registered_vnni_intrin_is_broken_on_llvm22():
    """Upstream TVM 0.27 bug (see module doc). When this starts failing, the registered
    ``dot_16x4_vnni`` works again and the int8 path can use it directly."""
    import tvm
    from tvm.target.codegen import llvm_version_major

    from tvmq.tuner.tensor_intrinsics import import_tensor_intrinsics

    if llvm_version_major() < 22:
        pytest.skip("only LLVM >= 22 declares vpdpbusd.512 with <64 x i8> operands")
    import_tensor_intrinsics()  # TVM's own, dot_16x4_vnni among them (not only when another test did)
    func, _ = _packed_matmul("uint8", 16)
    mod = _tensorized(func, 16, "dot_16x4_vnni")
    with pytest.raises(Exception, match="does not match function signature"):
        tvm.compile(mod, target=get_profile("cascadelake").tvm_target(1))


@needs_x86_tools
def test_cascadelake_float_model_uses_avx512_haswell_does_not(tmp_path):
    clx = _disasm(X86_OBJDUMP, _build_model("cascadelake", tmp_path))
    hsw = _disasm(X86_OBJDUMP, _build_model("haswell", tmp_path))
    assert "zmm" in clx
    assert "zmm" not in hsw and "ymm" in hsw


# ------------------------------------------------------------------ aarch64
@needs_a64_tools
@pytest.mark.parametrize("name", ["neoverse-n1", "cortex-a76"])
def test_aarch64_dotprod_matmul_has_sdot(name, tmp_path):
    import tvm
    import tvm.s_tir.tensor_intrin  # noqa: F401 - registers the Arm intrinsics

    prof = get_profile(name)
    assert prof.tensor_intrin == "dot_4x4_i8i8s32_sdot"
    func, _ = _packed_matmul("int8", 4)
    lib = tvm.compile(_tensorized(func, 4, prof.tensor_intrin), target=prof.tvm_target(1))
    so = prof.export_library(lib, tmp_path / f"{name}.so")
    header = subprocess.run([A64_OBJDUMP, "-f", str(so)], check=True, capture_output=True, text=True).stdout
    assert "aarch64" in header
    assert re.search(r"\bsdot\s+v\d+\.4s", _disasm(A64_OBJDUMP, so)), f"no sdot in the {name} object"


@needs_a64_tools
def test_aarch64_float_model_is_neon(tmp_path):
    asm = _disasm(A64_OBJDUMP, _build_model("cortex-a72", tmp_path))
    assert re.search(r"\bv\d+\.4s\b", asm)
    assert "zmm" not in asm
