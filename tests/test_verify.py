"""Tie-aware top-5 comparison and element-wise statistics."""

import numpy as np

from tvmq.report.verify import compare_outputs, rankings_agree, top_k


def test_identical_scores_agree():
    s = np.array([1, 9, 3, 7, 5, 0, 2], dtype=float)
    assert rankings_agree(s, s)
    assert top_k(s) == [1, 3, 4, 2, 6]


def test_swap_inside_a_tie_is_allowed():
    ref = np.array([10, 30, 30, 5, 4, 3, 1], dtype=float)
    tvm = np.array([10, 31, 30, 5, 4, 3, 1], dtype=float)  # TVM orders 1 before 2; TFLite ties them
    assert rankings_agree(tvm, ref)
    tvm2 = np.array([10, 30, 31, 5, 4, 3, 1], dtype=float)
    assert rankings_agree(tvm2, ref)


def test_tie_on_tvm_side_is_allowed():
    ref = np.array([0, 34, 30, 20, 9, 8], dtype=float)
    tvm = np.array([0, 31, 31, 18, 10, 8], dtype=float)
    assert rankings_agree(tvm, ref)


def test_real_reordering_is_caught():
    ref = np.array([10, 30, 29, 5, 4, 3, 1], dtype=float)
    tvm = np.array([10, 29, 30, 5, 4, 3, 1], dtype=float)
    assert not rankings_agree(tvm, ref)
    assert rankings_agree(tvm, ref, k=0) and not rankings_agree(tvm, ref, k=1)


def test_fifth_place_disagreement_is_caught():
    ref = np.array([9, 8, 7, 6, 5, 4, 0], dtype=float)
    tvm = np.array([9, 8, 7, 6, 4, 5, 0], dtype=float)
    assert not rankings_agree(tvm, ref)


def test_compare_outputs_statistics_and_labels():
    ref = np.array([[0, 200, 10, 3, 2, 1, 0, 0]], dtype=np.uint8)
    tvm = np.array([[0, 199, 10, 3, 2, 1, 0, 1]], dtype=np.uint8)
    v = compare_outputs("x", [tvm], [ref], ["out"], labels=["a", "b", "c", "d", "e", "f", "g", "h"])
    assert v.top5_match and v.top1_match and v.passed
    assert v.tvm_top5[0] == {"class": 1, "score": 199, "label": "b"}
    out = v.outputs[0]
    assert out.max_abs_diff == 1 and out.identical_share == 6 / 8


def test_non_classification_outputs_use_tolerance():
    ref = [np.zeros((1, 4, 4, 2), np.int8), np.zeros((1, 6), np.int8)]
    close = [ref[0].copy(), ref[1].copy()]
    close[0][0, 0, 0, 0] = 2
    v = compare_outputs("x", close, ref, ["seg", "pool"], tolerance=2)
    assert v.top5_match is None and v.passed
    far = [ref[0].copy(), ref[1].copy()]
    far[1][0, 3] = -5
    v = compare_outputs("x", far, ref, ["seg", "pool"], tolerance=2)
    assert not v.passed and v.outputs[1].max_abs_diff == 5
