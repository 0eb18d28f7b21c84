"""Which int8 dot-product instruction each layer uses, and its weights packed for it.

A *scheme* is a target's family of dot-product intrinsics (:mod:`.intrin`), named in its
profile (``[int8] scheme`` in ``targets/profiles/*.toml``):

=========  =====  ========================================================================
scheme     lanes  activations -> intrinsic (:func:`choose`)
=========  =====  ========================================================================
avx2       8      u8: ``vpmaddubsw`` if no int16 pair can saturate, else ``vpmaddwd`` on
                  int8 weights, else (weights with a zero point) ``vpmaddwd`` on
                  ``(x - zp_x) * (w - zp_w)`` widened to int16; i8: ``vpmaddwd``
avx512     16     the same on zmm registers (AVX-512BW)
vnni       16     u8: ``vpdpbusd`` (u8 x i8); i8: ``vpdpbusd`` on the activation + 128 (as u8)
                  x i8 weights, else (weights with a zero point) with u8 weights (i8 x u8)
sdot       4      i8: ``sdot`` (i8 x i8); u8: ``udot`` (u8 x u8)
=========  =====  ========================================================================

For a convolution or fully connected layer the lowering computes, per output channel ``o``,

    acc[o] = sum_k (x[k] - zp_x) * (w[k, o] - zp_w)

(TFLite's integer accumulator). The intrinsic multiplies the activation ``x`` as stored by the
weight operand ``B = w - s`` in the dtype it wants (``s = 128`` turns uint8 weights into int8,
``s = -128`` int8 into uint8, ``s = 0`` keeps them); an intrinsic with an activation offset
``t`` (128 for ``tvmq_dot_vnni_i8i8``, else 0) multiplies ``x + t``. With ``cw = s - zp_w``,

    acc[o] = dot(x + t, B[:, o]) + cw * sum_k x[k] - (zp_x + t) * sum_k B[k, o] - zp_x * cw * K

The last two terms are a per-channel constant folded into the bias at compile time; the window sum
``sum_k x[k]`` is computed at run time (a small kernel of its own) only when ``cw != 0``:
uint8 weights with a zero point on VNNI and Arm, int8 weights with one on VNNI. The x86 ``*_zp``
intrinsics take both zero points as operands instead. Everything is int32 and exact: the
result equals TFLite's accumulator bit for bit, whatever the intrinsic.

Weights are padded to a multiple of 4 input channels (the activation is padded with ``zp_x``
there, so those terms vanish) and of ``lanes`` output channels, and packed into the intrinsic's
tile order (:func:`pack`). They stay 8-bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import intrin
from .params import INT_RANGES

__all__ = ["PEAK_MACS_PER_CYCLE", "SCHEMES", "DotChoice", "choose", "pack", "pad_to", "pairs_fit_int16", "scheme_names",
           "weight_shift"]

# scheme -> activation dtype -> candidate intrinsics in order of preference
SCHEMES: dict[str, dict[str, list[str]]] = {
    "avx2": {"uint8": ["tvmq_dot_avx2_u8i8_sat", "tvmq_dot_avx2_u8i8", "tvmq_dot_avx2_u8u8_zp"],
             "int8": ["tvmq_dot_avx2_i8i8"]},
    "avx512": {"uint8": ["tvmq_dot_avx512_u8i8_sat", "tvmq_dot_avx512_u8i8", "tvmq_dot_avx512_u8u8_zp"],
               "int8": ["tvmq_dot_avx512_i8i8"]},
    "vnni": {"uint8": ["tvmq_dot_vnni_u8i8"], "int8": ["tvmq_dot_vnni_i8i8", "tvmq_dot_vnni_i8u8"]},
    "sdot": {"uint8": ["tvmq_dot_udot_u8u8"], "int8": ["tvmq_dot_sdot_i8i8"]},
}
# AMX (:mod:`.amx`): pointwise layers on tile registers, every other layer on VNNI
SCHEMES["amx"] = SCHEMES["vnni"]


# int8 multiply-accumulates per cycle and core that each scheme's instruction sustains at best:
# vpdpbusd on zmm 64 (one per cycle), Arm sdot 32 (two 128-bit pipes), vpmaddubsw half of VNNI's
# (its int16 pairs need a vpmaddwd and an add after it). For the distance of a build from the hardware
# floor (scripts/bench_layers.py), not for any decision.
# AMX's tdpbssd: 16 x 16 x 64 in 16 cycles (1024).
PEAK_MACS_PER_CYCLE: dict[str, int] = {"vnni": 64, "avx512": 32, "avx2": 32, "sdot": 32, "amx": 1024}


def scheme_names() -> list[str]:
    return sorted(SCHEMES)


@dataclass(frozen=True)
class DotChoice:
    """One layer's intrinsic and how its weights and accumulator are transformed for it."""

    intrin: str
    a_dtype: str
    b_dtype: str
    lanes: int
    layout: str  # "row" | "pair" | "pairzp"
    shift: int  # B = w - shift
    cw: int  # coefficient of the activation window sum (0: no window sum)

    @property
    def zero_points(self) -> bool:
        """The intrinsic subtracts both zero points itself: the accumulator is exact as it is."""
        return self.layout == "pairzp"
    skipped: tuple[str, ...] = ()  # preferred intrinsics that could saturate on these weights
    a_offset: int = 0  # the intrinsic multiplies the activation + a_offset (module docstring: t)


def pairs_fit_int16(b: np.ndarray, a_dtype: str) -> bool:
    """Whether ``vpmaddubsw`` is exact: every adjacent pair ``(k0, k1)``, ``(k2, k3)`` of the
    packed weights ``b`` (shape ``(K, OC)`` with ``K % 4 == 0``) keeps ``a0*b0 + a1*b1`` within
    int16 for all activations of ``a_dtype``."""
    lo, hi = INT_RANGES[a_dtype]
    pairs = b.astype(np.int64).reshape(-1, 2, b.shape[1])
    top = np.maximum(lo * pairs, hi * pairs).sum(axis=1)
    bottom = np.minimum(lo * pairs, hi * pairs).sum(axis=1)
    return bool(top.max() <= 32767 and bottom.min() >= -32768)


def pad_to(w: np.ndarray, lanes: int, value: int) -> np.ndarray:
    """``w`` (``(..., K, OC)``) padded with ``value`` to ``K % 4 == 0`` and ``OC % lanes == 0``."""
    *lead, k, oc = w.shape
    widths = [(0, 0)] * len(lead) + [(0, -k % 4), (0, -oc % lanes)]
    return np.pad(w, widths, constant_values=value)


def _fits(v: np.ndarray, dtype: str) -> bool:
    lo, hi = INT_RANGES[dtype]
    return bool(v.size == 0 or (v.min() >= lo and v.max() <= hi))


def weight_shift(w64: np.ndarray, w_dtype: str, zp_w: int, b_dtype: str) -> int:
    """The ``shift`` of ``B = w - shift`` for an intrinsic whose weight operand is ``b_dtype``:
    ``zp_w`` itself where ``w - zp_w`` fits it, else the 128 that moves uint8 into int8 or back
    (0 where the dtypes already agree)."""
    if _fits(w64 - int(zp_w), b_dtype):
        return int(zp_w)
    return 0 if b_dtype == w_dtype else (128 if w_dtype == "uint8" else -128)


def choose(scheme: str, a_dtype: str, w: np.ndarray, zp_w: int) -> DotChoice | None:
    """The intrinsic for the weights ``w`` (integer array ``(..., K, OC)``: kernel window dims,
    input channels, output channels) under ``scheme``, or None when the scheme has none for
    activations of ``a_dtype``.

    Candidates are tried in the scheme's order. A saturating one is taken only when no pair can
    saturate; one that needs the run-time window sum (``cw != 0``) only when it is the last.
    The weight shift is ``zp_w`` itself whenever ``w - zp_w`` fits the intrinsic's dtype (then
    ``cw == 0``), else the 128 that moves uint8 into int8 or back."""
    candidates = SCHEMES.get(scheme, {}).get(a_dtype, [])
    skipped = []
    w_dtype = str(w.dtype)
    w64 = w.astype(np.int64)
    for i, name in enumerate(candidates):
        a_dt, b_dt, lanes, layout, saturating, a_offset = intrin.INTRINSICS[name]
        if layout == "pairzp":  # the zero points are operands of the intrinsic itself
            if b_dt == w_dtype:
                return DotChoice(name, a_dt, b_dt, lanes, layout, 0, 0, tuple(skipped), a_offset)
            continue
        shift = weight_shift(w64, w_dtype, zp_w, b_dt)
        cw = shift - int(zp_w)
        if cw and i < len(candidates) - 1:
            continue
        if saturating:
            b = pad_to(w64 - shift, lanes, 0)
            if not pairs_fit_int16(b.reshape(-1, b.shape[-1]), a_dt):
                skipped.append(name)
                continue
        return DotChoice(name, a_dt, b_dt, lanes, layout, shift, cw, tuple(skipped), a_offset)
    return None


def pack(choice: DotChoice, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``B = w - shift`` (``w``: ``(..., K, OC)``) padded with zeros to ``K % 4 == 0`` and
    ``OC % lanes == 0`` and packed into the intrinsic's tiles: ``(OC/lanes, ..., K/4, lanes, 4)``
    for "row", ``(OC/lanes, ..., K/4, 2, lanes, 2)`` for "pair". Also returns ``sum B[..., o]``
    per (padded) output channel, int64."""
    b = pad_to(w.astype(np.int64) - choice.shift, choice.lanes, 0)
    lo, hi = INT_RANGES[choice.b_dtype]
    assert lo <= b.min() and b.max() <= hi, "weights out of the intrinsic's range"
    *lead, k, oc = b.shape
    lanes = choice.lanes
    bsum = b.reshape(-1, oc).sum(axis=0)
    nl = len(lead)
    # (*lead, K/4, 4, OC/L, L) -> (OC/L, *lead, K/4, L, 4)
    t = b.reshape(*lead, k // 4, 4, oc // lanes, lanes)
    t = np.transpose(t, (nl + 2, *range(nl), nl, nl + 3, nl + 1))
    if choice.layout in ("pair", "pairzp"):
        # (..., K/4, L, 4) -> (..., K/4, L, 2, 2) -> (..., K/4, 2, L, 2)
        t = np.swapaxes(t.reshape(*t.shape[:-1], 2, 2), -3, -2)
    return np.ascontiguousarray(t).astype(choice.b_dtype), bsum
