"""Integer (int8/uint8) execution of pre-quantized TFLite models.

``lower_qdq_to_int8(mod, mode="tflite", scheme=None) -> Int8Lowering`` rewrites the QDQ Relax
graph produced by ``tvm.relax.frontend.tflite.from_tflite`` into integer TIR kernels (int32
accumulation, fixed-point requantization): ``.mod`` is the lowered module, ``.stats`` its
coverage (:class:`Int8Stats`, ``.to_dict()``: ``{op: {"lowered": n, "qdq": m}, "remaining":
{"quantize": k, "dequantize": l}}``) and ``.intrinsics`` the layers per dot-product intrinsic.

Layers: :mod:`.lower` (the pass) dispatches to the registered rewrites of :mod:`.patterns`, one
module per operator family (:mod:`.rewrite_linear`, :mod:`.rewrite_pool`,
:mod:`.rewrite_elementwise`, :mod:`.rewrite_arith`, :mod:`.rewrite_requantize`), which build the TE kernels of the
``kernels_*`` modules from the typed parameters of :mod:`.params`. Numerics live in
:mod:`.requant`; :mod:`.dot` chooses and packs for the dot-product intrinsics of :mod:`.intrin`.
"""

from . import requant
from .lower import Int8Lowering, Int8Stats, OpCoverage, lower_qdq_to_int8, qdq_op_counts

__all__ = ["Int8Lowering", "Int8Stats", "OpCoverage", "lower_qdq_to_int8", "qdq_op_counts", "requant"]
