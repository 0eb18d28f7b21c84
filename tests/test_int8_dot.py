"""The dot-product schemes: intrinsic choice, weight packing and the accumulator algebra."""

from __future__ import annotations

import numpy as np
import pytest

from tvmq.int8 import dot, intrin
from tvmq.targets import INT8_SCHEMES, list_profiles


def test_profile_scheme_names_are_the_schemes():
    assert sorted(INT8_SCHEMES) == dot.scheme_names()
    for p in list_profiles():
        if p.int8_scheme:
            for a_dtype in ("uint8", "int8"):
                for name in dot.SCHEMES[p.int8_scheme][a_dtype]:
                    assert name in intrin.INTRINSICS, (p.name, name)


@pytest.mark.parametrize("name", sorted(intrin.INTRINSICS))
def test_every_intrinsic_is_registered(name):
    from tvm.s_tir import TensorIntrin

    a, b, lanes, layout, _, _ = intrin.INTRINSICS[name]
    for func in (TensorIntrin.get(name).desc, TensorIntrin.get(name).impl):
        bufs = [(tuple(int(d) for d in p.ty.shape), str(p.ty.dtype)) for p in func.params]
        a_shape, b_shape = ((4,), (lanes, 4)) if layout == "row" else ((2, 2), (2, lanes, 2))
        zero_points = [((1,), "int32")] * 2 if layout == "pairzp" else []
        # then the bias the accumulators start from (read by no instruction), and the accumulators
        assert bufs == [(a_shape, a), (b_shape, b), *zero_points, ((lanes,), "int32"), ((lanes,), "int32")]


def test_pairs_fit_int16_boundary():
    # u8 activations: 255 * (b0 + b1) must stay <= 32767, i.e. b0 + b1 <= 128
    ok = np.array([[64], [64], [-128], [0]])
    assert dot.pairs_fit_int16(ok, "uint8")
    assert not dot.pairs_fit_int16(np.array([[64], [65], [0], [0]]), "uint8")
    assert not dot.pairs_fit_int16(np.array([[0], [0], [-128], [-1]]), "uint8")  # 255 * -129 < -32768
    # mixed signs cancel: |255 * 127| fits
    assert dot.pairs_fit_int16(np.array([[127], [-128], [127], [-128]]), "uint8")


def test_choose_takes_vpmaddubsw_only_where_it_is_exact():
    rng = np.random.default_rng(0)
    small = rng.integers(-64, 65, (3, 3, 8, 16)).astype(np.int8)
    full = rng.integers(-127, 128, (3, 3, 8, 16)).astype(np.int8)
    assert dot.choose("avx2", "uint8", small, 0).intrin == "tvmq_dot_avx2_u8i8_sat"
    c = dot.choose("avx2", "uint8", full, 0)
    assert c.intrin == "tvmq_dot_avx2_u8i8" and c.skipped == ("tvmq_dot_avx2_u8i8_sat",)
    # int8 activations: no vpmaddubsw form (its signed side would be the activation)
    assert dot.choose("avx2", "int8", small, 0).intrin == "tvmq_dot_avx2_i8i8"
    assert dot.choose("avx512", "int8", small, 0).lanes == 16
    assert dot.choose("x86-64", "int8", small, 0) is None


@pytest.mark.parametrize("scheme,a_dtype,w_dtype,zp_w,shift,intrin", [
    ("vnni", "uint8", "uint8", 131, 128, "tvmq_dot_vnni_u8i8"),  # uint8 weights become int8: w - 128
    ("vnni", "int8", "int8", 0, 0, "tvmq_dot_vnni_i8i8"),      # (x + 128) as u8 x int8 weights
    ("vnni", "int8", "int8", 9, -128, "tvmq_dot_vnni_i8u8"),   # w - 9 leaves int8: i8 x (w + 128)
    ("sdot", "uint8", "uint8", 120, 0, "tvmq_dot_udot_u8u8"),  # udot takes uint8 weights as they are
    ("sdot", "int8", "int8", 0, 0, "tvmq_dot_sdot_i8i8"),
    ("avx2", "int8", "int8", 0, 0, "tvmq_dot_avx2_i8i8"),
])
def test_accumulator_algebra_is_exact(scheme, a_dtype, w_dtype, zp_w, shift, intrin):
    """dot(x + t, B) + cw * sum(x) - (zp_x + t) * sum(B) - zp_x * cw * K == sum((x - zp_x) * (w - zp_w)),
    with the weights packed and unpacked again by the intrinsic's layout."""
    rng = np.random.default_rng(1)
    info_a, info_w = np.iinfo(a_dtype), np.iinfo(w_dtype)
    k, oc = 13, 11  # neither a multiple of 4 nor of the lanes: both get padded
    x = rng.integers(info_a.min, info_a.max + 1, (5, k)).astype(np.int64)
    w = rng.integers(info_w.min, info_w.max + 1, (k, oc)).astype(w_dtype)
    zp_x = int(rng.integers(info_a.min, info_a.max + 1))
    choice = dot.choose(scheme, a_dtype, w, zp_w)
    assert choice.intrin == intrin and choice.shift == shift and choice.cw == shift - zp_w
    packed, bsum = dot.pack(choice, w)
    assert packed.dtype == np.dtype(choice.b_dtype)
    kp = k + (-k % 4)
    # unpack: (OC/L, K/4, L, 4) or (OC/L, K/4, 2, L, 2) -> (Kp, OCp)
    if choice.layout == "row":
        b = packed.transpose(1, 3, 0, 2).reshape(kp, -1)
    else:
        b = packed.transpose(1, 2, 4, 0, 3).reshape(kp, -1)
    np.testing.assert_array_equal(b[:k, :oc], w.astype(np.int64) - shift)
    assert not b[k:].any() and not b[:, oc:].any()
    xp = np.pad(x, ((0, 0), (0, kp - k)), constant_values=zp_x)
    t = choice.a_offset
    ours = (xp + t) @ b[:, :oc] + choice.cw * xp.sum(1, keepdims=True) - (zp_x + t) * bsum[:oc] - zp_x * choice.cw * kp
    ref = (x - zp_x) @ (w.astype(np.int64) - zp_w)
    np.testing.assert_array_equal(ours, ref)
