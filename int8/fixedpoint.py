"""gemmlowp's 16-bit fixed-point logistic and tanh, in numpy: what TFLite's integer LSTM applies
to its gates (``tensor_utils::ApplySigmoid``, ``ApplyTanh``: ``gemmlowp::logistic`` and
``gemmlowp::tanh`` on ``FixedPoint<int16_t, IntegerBits>``).

Every step keeps gemmlowp's int16 semantics: ``+``, ``-`` and negation wrap, products are
``SaturatingRoundingDoublingHighMul``, rescales saturate or round, constants are the int32
ones rounded 16 bits to the right. An int16 input has 65,536 values, so the integer LSTM
(:mod:`.lstm`) evaluates these once per (function, integer bits) into a table and its TIR kernel
looks the gate values up.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["logistic_q15", "logistic_table", "rounding_divide_by_pot", "saturate16", "srdhm16", "tanh_q15",
           "tanh_table", "wrap16"]

_BITS = 16


def wrap16(v) -> np.ndarray:
    """int16 two's-complement wrap (C's conversion of an out-of-range int to int16), as int64."""
    v = np.asarray(v, np.int64)
    return ((v + (1 << 15)) & 0xFFFF) - (1 << 15)


def saturate16(v) -> np.ndarray:
    """Clamped to the int16 range, as int64."""
    return np.clip(np.asarray(v, np.int64), -(1 << 15), (1 << 15) - 1)


def srdhm16(a, b) -> np.ndarray:
    """``SaturatingRoundingDoublingHighMul`` on int16: ``(a*b + nudge) / 2**15``, truncated toward
    zero, -32768 * -32768 saturated to 32767."""
    a = np.asarray(a, np.int64)
    b = np.asarray(b, np.int64)
    ab = a * b
    s = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    q = np.where(s >= 0, s // (1 << 15), -((-s) // (1 << 15)))
    return np.where((a == -(1 << 15)) & (b == -(1 << 15)), (1 << 15) - 1, q)


def rounding_divide_by_pot(x, exponent: int) -> np.ndarray:
    """``RoundingDivideByPOT`` on int64 values (any width): rounding half away from zero."""
    x = np.asarray(x, np.int64)
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def _mul_pot(x, exponent: int) -> np.ndarray:
    """``SaturatingRoundingMultiplyByPOT<exponent>`` on int16."""
    x = np.asarray(x, np.int64)
    if exponent == 0:
        return x
    if exponent < 0:
        return rounding_divide_by_pot(x, -exponent)
    threshold = (1 << (_BITS - 1 - exponent)) - 1
    shifted = saturate16(x * (1 << exponent))
    return np.where(x > threshold, (1 << 15) - 1, np.where(x < -threshold, -(1 << 15), shifted))


def _const(int32_value: int) -> int:
    """``RescaleConstantInitializer`` for int16: the int32 constant rounded 16 bits to the right."""
    return int(rounding_divide_by_pot(np.int64(int32_value), 16))


def _one(integer_bits: int) -> int:
    return (1 << 15) - 1 if integer_bits == 0 else 1 << (15 - integer_bits)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a) -> np.ndarray:
    """``exp(a)`` for ``a`` in [-1/4, 0), Q0.15 in and out (a Taylor expansion around -1/8)."""
    constant_term = _const(1895147668)
    constant_1_over_3 = _const(715827883)
    x = wrap16(a + (1 << 12))  # a + 1/8
    x2 = srdhm16(x, x)
    x3 = srdhm16(x2, x)
    x4 = srdhm16(x2, x2)
    x4_over_4 = _mul_pot(x4, -2)
    poly = _mul_pot(wrap16(srdhm16(wrap16(x4_over_4 + x3), constant_1_over_3) + x2), -1)
    return saturate16(constant_term + srdhm16(constant_term, wrap16(x + poly)))


_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401),
           (4, 242))


def _exp_on_negative_values(a, integer_bits: int) -> np.ndarray:
    """``exp(a)`` for ``a <= 0`` in Q``integer_bits``, result Q0.15."""
    frac = 15 - integer_bits
    quarter = 1 << (frac - 2)
    a = np.asarray(a, np.int64)
    a_mod = wrap16((a & (quarter - 1)) - quarter)
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(_mul_pot(a_mod, integer_bits))
    remainder = wrap16(a_mod - a)
    for exponent, multiplier in _BARREL:
        if integer_bits > exponent:
            bit = 1 << (frac + exponent)
            result = np.where(remainder & bit, srdhm16(result, _const(multiplier)), result)
    if integer_bits > 5:
        clamp = _const(-(1 << (36 - integer_bits)))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, _one(0), result)


def _newton_raphson_reciprocal(a) -> np.ndarray:
    """``x ~= 1 / (1 + a)`` for ``a`` in (0, 1) Q0.15, as Q2.13: the half denominator and three
    Newton-Raphson steps from 48/17 - 32/17 * d (gemmlowp's two ``..._for_x_in_0_1``)."""
    s = np.asarray(a, np.int64) + _one(0)
    t = s + np.where(s >= 0, 1, -1)  # RoundingHalfSum(a, One): (sum + sign) / 2, truncated
    half_denominator = np.where(t >= 0, t // 2, -((-t) // 2))
    x = wrap16(_const(1515870810) + srdhm16(half_denominator, _const(-1010580540)))
    one_f2 = _one(2)
    for _ in range(3):
        half_denominator_times_x = srdhm16(half_denominator, x)
        one_minus = wrap16(one_f2 - half_denominator_times_x)
        x = wrap16(x + _mul_pot(srdhm16(x, one_minus), 2))
    return x


def _logistic_on_positive_values(a, integer_bits: int) -> np.ndarray:
    x = _newton_raphson_reciprocal(_exp_on_negative_values(wrap16(-np.asarray(a, np.int64)), integer_bits))
    return _mul_pot(x, 1)  # Rescale<0>(ExactMulByPot<-1>(x)): Q1 -> Q0


def logistic_q15(raw, integer_bits: int = 3) -> np.ndarray:
    """``gemmlowp::logistic`` of int16 values in Q``integer_bits``: Q0.15 results, int16."""
    a = np.asarray(raw, np.int64)
    positive = a > 0
    abs_input = np.where(positive, a, wrap16(-a))
    result_if_positive = _logistic_on_positive_values(abs_input, integer_bits)
    result_if_negative = wrap16(_one(0) - result_if_positive)
    out = np.where(a == 0, _const(1 << 30), np.where(positive, result_if_positive, result_if_negative))
    return out.astype(np.int16)


def tanh_q15(raw, integer_bits: int) -> np.ndarray:
    """``gemmlowp::tanh`` of int16 values in Q``integer_bits``: Q0.15 results, int16."""
    a = np.asarray(raw, np.int64)
    negative = a < 0
    n = np.where(negative, a, wrap16(-a))  # -|a|
    # neg_tanh_on_negative_values: ExactMulByPot<1> (one more integer bit, same raw value)
    x = _newton_raphson_reciprocal(_exp_on_negative_values(n, integer_bits + 1))
    t = _mul_pot(wrap16(x - _one(2)), 2)  # Rescale<0>(x - F2::One())
    out = np.where(a == 0, 0, np.where(negative, wrap16(-t), t))
    return out.astype(np.int16)


_ALL = np.arange(-(1 << 15), 1 << 15, dtype=np.int64)


@functools.lru_cache(maxsize=None)
def logistic_table(integer_bits: int = 3) -> np.ndarray:
    """:func:`logistic_q15` of every int16 value, indexed by ``value + 32768``."""
    return logistic_q15(_ALL, integer_bits)


@functools.lru_cache(maxsize=None)
def tanh_table(integer_bits: int) -> np.ndarray:
    """:func:`tanh_q15` of every int16 value, indexed by ``value + 32768``."""
    return tanh_q15(_ALL, integer_bits)
