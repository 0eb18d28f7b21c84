"""Typed parameters that the integer kernels are built from, and the one table of integer ranges.

The pattern modules (``rewrite_*``) read these off the QDQ graph; the kernel modules
(``kernels_*``) take them as the keyword arguments of their TE functions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import numpy as np

from . import requant as rq

__all__ = ["DEPTHWISE_RULE", "INT_RANGES", "AddParams", "ConvParams", "DotParams", "LinearParams", "MatmulParams",
           "MeanParams", "OutputQuant", "PoolParams", "QuantParams", "RequantParams", "Requantization", "TapsParams"]

# The MetaSchedule custom schedule rule (:mod:`tvmq.tuner.depthwise`, registered for each target key
# as ``s_tir.meta_schedule.<key>.<name>``) that the accumulation block of a depthwise convolution
# names in its ``schedule_rule`` annotation.
DEPTHWISE_RULE = "tvmq_depthwise_nhwc"
# dtype -> (min, max): the only copy (the lowering, the dot-product choices and packing read it)
INT_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-32768, 32767)}


@dataclass(frozen=True)
class QuantParams:
    """How a quantized tensor maps to reals: ``real = scale * (q - zero_point)``."""

    scale: float
    zero_point: int
    dtype: str


@dataclass(frozen=True)
class OutputQuant:
    """A kernel's output: its quantization and the clamp (dtype range, fused activation)."""

    scale: float
    zero_point: int
    dtype: str
    qmin: int
    qmax: int
    activation: bool = False  # a float activation (RELU, RELU6, ...) was folded into the clamp

    @classmethod
    def of(cls, scale: float, zero_point: int, dtype: str, clip: Optional[Tuple[int, int]] = None) -> "OutputQuant":
        """The dtype's range, narrowed by an integer ``clip`` (the ``R.clip`` after a quantize)."""
        qmin, qmax = INT_RANGES[dtype]
        if clip is not None:
            qmin, qmax = max(qmin, clip[0]), min(qmax, clip[1])
        return cls(scale, zero_point, dtype, qmin, qmax)

    def with_activation(self, lo: float, hi: float) -> "OutputQuant":
        """The clamp of a float activation ``[lo, hi]`` applied before the quantize (TFLite's
        ``CalculateActivationRangeQuantized``: ``zp + std::round(v / scale)`` in float32)."""
        s = np.float32(self.scale)

        def level(v: float) -> int:
            return self.zero_point + rq.round_half_away(float(np.float32(v) / s))

        amin = self.qmin if lo == -np.inf else max(self.qmin, level(lo))
        amax = self.qmax if hi == np.inf else min(self.qmax, level(hi))
        return replace(self, qmin=amin, qmax=amax, activation=True)

    @property
    def full_range(self) -> bool:
        return (self.qmin, self.qmax) == INT_RANGES[self.dtype]


@dataclass(frozen=True)
class Requantization:
    """The epilogue of a conv / dense kernel: int32 accumulator -> output dtype.

    ``mode="tflite"``: fixed-point ``q``/``shift`` (None: per-channel vectors passed as tensors);
    ``mode="xnnpack"``: float32 ``scale`` (None: a per-channel vector passed as a tensor);
    ``mode="float64"``: TFLite's reference fully connected layer, ``round(double(acc) * scale)``
    with a double ``scale`` (None: a per-channel float64 vector passed as a tensor)."""

    mode: str
    zero_point: int
    qmin: int
    qmax: int
    dtype: str
    q: Optional[int] = None
    shift: Optional[int] = None
    scale: Optional[float] = None


@dataclass(frozen=True)
class ConvParams:
    """An NHWC conv's geometry (``padding`` is top, left, bottom, right)."""

    strides: Tuple[int, int]
    padding: Tuple[int, int, int, int]
    dilation: Tuple[int, int]
    groups: int


@dataclass(frozen=True)
class LinearParams:
    """A plain integer conv / dense: the zero points, and whether the weights are symmetric
    (``zp_w == 0``: ``zp_x * sum(w)`` is folded into the bias)."""

    zp_x: int
    zp_w: int
    symmetric: bool
    conv: Optional[ConvParams] = None


@dataclass(frozen=True)
class TapsParams:
    """A depthwise convolution on a depthwise intrinsic (:data:`.intrin.DEPTHWISE`): the
    activation's zero point, the offset that brings it into the intrinsic's byte type (unsigned:
    128 for int8, 0 for uint8; signed: 0 for int8, -128 for uint8), the intrinsic, and the
    convolution (strides 1 or 2, dilation 1, three columns, channels a multiple of the intrinsic's lanes)."""

    zp_x: int
    a_offset: int
    intrin: str
    conv: ConvParams
    signed: bool = False  # the intrinsic reads signed bytes (sdot), not unsigned ones (vpdpbusd)


@dataclass(frozen=True)
class MatmulParams:
    """A product of two activations ``(..., M, K) x (..., K, N)`` (TFLite's BATCH_MATMUL): their
    zero points, whether each is read transposed (``adj_x`` / ``adj_y``: its last two axes
    swapped) and the output's shape, whose batch dimensions the inputs broadcast to."""

    zp_a: int
    zp_b: int
    adj_a: bool
    adj_b: bool
    out_shape: Tuple[int, ...]


@dataclass(frozen=True)
class DotParams:
    """A conv / dense on weights packed for a dot-product intrinsic (:mod:`.dot`)."""

    zp_x: int
    cw: int  # coefficient of the activation window sum (0: none)
    lanes: int
    layout: str  # "row" | "pair" | "pairzp"
    intrin: str
    oc: int  # real output channels (the packed weights have a multiple of ``lanes``)
    window: Tuple[int, ...]  # kernel window dims (() for dense)
    out_lead: Tuple[int, ...]  # output shape without the channels
    n_extra: int = 0  # operands between the bias and the requantization vectors
    conv: Optional[ConvParams] = None
    a_offset: int = 0  # the intrinsic multiplies the activation + a_offset (:mod:`.dot`)


@dataclass(frozen=True)
class AddParams:
    """A quantized ADD of two (broadcast) operands."""

    a: QuantParams
    b: QuantParams
    out: OutputQuant
    mode: str
    shape: Tuple[int, ...]


@dataclass(frozen=True)
class RequantParams:
    """Requantize one tensor: ``identity`` when only the zero point changes; ``xnn_multiplier``:
    XNNPACK's 8-bit fixed-point convert instead of TFLite's (:func:`.requant.xnnpack_convert_np`)."""

    zp_x: int
    q: int
    shift: int
    out: OutputQuant
    identity: bool
    xnn_multiplier: Optional[int] = None


@dataclass(frozen=True)
class RescaleParams:
    """Rescale one tensor in float32 as TFLite's legacy uint8 concatenation does
    (:func:`.requant.rescale_fp32_params`)."""

    scale: float
    bias: float
    out: OutputQuant


@dataclass(frozen=True)
class MeanParams:
    """A quantized MEAN over ``axes`` (``n`` elements each): TFLite's multiplier ``q``/``shift``
    with ``1/n`` folded in, or XNNPACK's float32 ``fscale``."""

    axes: Tuple[int, ...]
    keepdims: bool
    zp_x: int
    n: int
    q: int
    shift: int
    fscale: float
    out: OutputQuant
    mode: str


@dataclass(frozen=True)
class PoolParams:
    """An NHWC integer average pool (``padding``: 2 or 4 values, as Relax holds it)."""

    pool: Tuple[int, int]
    strides: Tuple[int, int]
    padding: Tuple[int, ...]
    dtype: str
    count_include_pad: bool
