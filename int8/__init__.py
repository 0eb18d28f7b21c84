"""Integer (int8/uint8) execution of pre-quantized TFLite models.

``lower_qdq_to_int8(mod, mode="tflite") -> IRModule`` rewrites the QDQ Relax graph produced by
``tvm.relax.frontend.tflite.from_tflite`` into integer TIR kernels (int32 accumulation,
fixed-point requantization); ``lowering_stats(lowered)`` reports per-op coverage
``{op: {"lowered": n, "qdq": m}, "remaining": {"quantize": k, "dequantize": l}}``.
``LowerQDQToInt8(mode)`` is the same as a ``tvm.transform`` module pass.
Numerics live in :mod:`.requant`; :mod:`.avx2` registers an AVX2 u8 x i8 dot-product
tensor intrinsic; :mod:`.util` has debugging helpers.
"""

from . import requant
from .lower import LowerQDQToInt8, intrinsic_counts, lower_qdq_to_int8, lowering_stats, qdq_op_counts

__all__ = ["LowerQDQToInt8", "intrinsic_counts", "lower_qdq_to_int8", "lowering_stats", "qdq_op_counts", "requant"]
