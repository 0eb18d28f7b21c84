"""AVX2 int8 dot-product tensor intrinsic (no VNNI / AVX-512 needed).

``dot_8x4_u8i8i32_avx2``: ``C[i] += sum_k u8(A[k]) * i8(B[i, k])`` for ``i < 8, k < 4`` -- the
shape of TVM's VNNI intrinsic (``tvm/s_tir/tensor_intrin/x86.py``, 16x4) at half the width,
implemented with

* ``vpmaddubsw`` (``llvm.x86.avx2.pmadd.ub.sw``): u8 x i8 products, adjacent pairs summed into
  int16 **with signed saturation**;
* ``vpmaddwd`` (``llvm.x86.avx2.pmadd.wd``) against a vector of ones: adjacent int16 pairs
  summed into int32;
* a 256-bit int32 add into the accumulator.

Caveat (same as TVM's ``dot_16x4_avx512``): the int16 pair sums saturate when
``|a0*b0 + a1*b1| > 32767``; with u8 activations this is exact whenever the int8 weights are in
``[-64, 64]`` (``2*255*64 = 32640``), or activations are 7-bit.  TFLite's int8 kernels have
no such limit, so this intrinsic is only bit-exact under that condition (XNNPACK's AVX2 kernels
avoid it by widening to int16 and using ``vpmaddwd`` only).

Importing this module registers the intrinsic under :data:`AVX2_DOT_8x4_INTRIN`.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

AVX2_DOT_8x4_INTRIN = "tvmq_dot_8x4_u8i8i32_avx2"


@T.prim_func(s_tir=True)
def dot_product_8x4_u8i8i32_desc(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((8, 4), "int8", offset_factor=1),
    C: T.Buffer((8,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:8], A[0:4], B[0:8, 0:4])
        T.writes(C[0:8])
        for i in T.serial(0, 8):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


@T.prim_func(s_tir=True)
def dot_product_8x4_u8i8i32_avx2(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((8, 4), "int8", offset_factor=1),
    C: T.Buffer((8,), "int32", offset_factor=1),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:8], A[0:4], B[0:8, 0:4])
        T.writes(C[0:8])

        A_u8x4 = A.vload([0], "uint8x4")
        A_i32 = T.reinterpret(A_u8x4, dtype="int32")
        A_brdcst = T.broadcast(A_i32, 8)
        A_u8x32 = T.reinterpret(A_brdcst, dtype="uint8x32")

        B_i8x32 = B.vload([0, 0], dtype="int8x32")

        Red = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.ub.sw"),
            A_u8x32,
            B_i8x32,
            dtype="int16x16",
        )

        C[T.ramp(T.int32(0), 1, 8)] += T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
            Red,
            T.int16x16(1),
            dtype="int32x8",
        )


TensorIntrin.register(AVX2_DOT_8x4_INTRIN, dot_product_8x4_u8i8i32_desc, dot_product_8x4_u8i8i32_avx2, override=True)

__all__ = ["AVX2_DOT_8x4_INTRIN", "dot_product_8x4_u8i8i32_desc", "dot_product_8x4_u8i8i32_avx2"]
