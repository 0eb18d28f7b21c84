"""Verification by output kind: segmentation maps by their class maps, a detector's outputs box by box."""

import json

import numpy as np
import pytest

from tvmq.report.output_kinds import (
    DETECTION_MIN_SCORE,
    SEGMENTATION_MIN_IDENTICAL,
    box_iou,
    detection_roles,
    mean_iou,
)
from tvmq.report.verify import compare_outputs

POSTPROCESS_NAMES = ["TFLite_Detection_PostProcess", "TFLite_Detection_PostProcess:1",
                     "TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess:3"]


# ----------------------------------------------------------------------------- segmentation
def score_map(h=10, w=10, classes=3, seed=0) -> np.ndarray:
    """An int8 score map whose argmax is unique at every pixel (the winner 20 units ahead)."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(-100, 0, size=(1, h, w, classes)).astype(np.int8)
    winners = rng.integers(0, classes, size=(h, w))
    rows, cols = np.indices((h, w))
    scores[0, rows, cols, winners] = 20
    return scores


def test_identical_maps_pass():
    ref = score_map()
    v = compare_outputs("x", [ref.copy()], [ref], ["seg"], tolerance=2)
    assert v.kind == "segmentation" and v.passed and v.failures() == []
    assert v.segmentation.outputs == [0]
    assert v.segmentation.identical_share == 1.0 and v.segmentation.miou == 1.0
    labels = ref[0].argmax(-1)[None].astype(np.uint8)  # an integer [1, H, W] class map
    v = compare_outputs("x", [labels.copy()], [labels], ["argmax"], exact=True)
    assert v.kind == "segmentation" and v.passed and v.segmentation.miou == 1.0


def test_one_percent_of_pixels_changed_fails():
    ref = score_map()  # 100 pixels
    tvm = ref.copy()
    winner = int(ref[0, 3, 4].argmax())
    tvm[0, 3, 4, (winner + 1) % 3] = 40  # another class wins at one pixel
    v = compare_outputs("x", [tvm], [ref], ["seg"], tolerance=1000)  # values alone are within tolerance
    assert v.outputs[0].within_tolerance
    assert v.segmentation.identical_share == pytest.approx(0.99) and v.segmentation.miou < 1
    assert not v.passed and not v.segmentation.passed
    assert any("99.00% identical" in line and "mean IoU" in line for line in v.failures())
    d = v.to_dict()
    assert d["kind"] == "segmentation" and d["segmentation"]["passed"] is False
    assert d["segmentation"]["identical_share"] == pytest.approx(0.99)


def test_integer_class_map_with_one_percent_changed_fails():
    ref = np.zeros((1, 20, 20), np.int32)
    ref[0, :10] = 1
    tvm = ref.copy()
    tvm[0, 0, :4] = 2  # 4 of 400 pixels
    v = compare_outputs("x", [tvm], [ref], ["classes"], tolerance=5)
    assert v.segmentation.identical_share == pytest.approx(0.99)
    assert v.segmentation.miou == pytest.approx((1 + 196 / 200 + 0) / 3)  # classes 0, 1 and 2
    assert not v.passed


def test_segmentation_decides_over_tolerance_unless_exact():
    ref = score_map(16, 16, 4, seed=1)
    tvm = ref.copy()
    tvm[0, :, :, :] += np.where(ref[0] < 0, 5, 0).astype(np.int8)  # losers move 5 units, no winner changes
    tvm[0, 0, :2] = ref[0, 0, :2]
    loose = compare_outputs("x", [tvm], [ref], ["seg"], tolerance=2)
    assert not loose.outputs[0].within_tolerance and loose.outputs[0].max_abs_diff == 5
    assert loose.passed and loose.segmentation.identical_share == 1.0
    assert not compare_outputs("x", [tvm], [ref], ["seg"], exact=True).passed
    # 99.6% identical (1 of 256 pixels) still passes a non-exact policy
    tvm[0, 5, 5] = ref[0, 5, 5][::-1]
    one_off = compare_outputs("x", [tvm], [ref], ["seg"], tolerance=2)
    assert SEGMENTATION_MIN_IDENTICAL <= one_off.segmentation.identical_share < 1 and one_off.passed


def test_small_or_single_channel_maps_stay_value_by_value():
    small = np.zeros((1, 4, 4, 2), np.int8)
    assert compare_outputs("x", [small], [small], ["s"]).kind == "other"
    one = np.zeros((1, 16, 16, 1), np.int8)
    assert compare_outputs("x", [one], [one], ["s"]).segmentation is None
    floats = np.zeros((1, 16, 16), np.float32)
    assert compare_outputs("x", [floats], [floats], ["s"]).kind == "other"


def test_mean_iou_over_classes_in_either_map():
    a = np.array([[0, 0, 1, 1]])
    b = np.array([[0, 0, 1, 2]])
    assert mean_iou(a, b) == pytest.approx((1 + 0.5 + 0) / 3)


# ----------------------------------------------------------------------------- detection
def detections(boxes, classes, scores, n_max=6) -> list[np.ndarray]:
    """TFLite_Detection_PostProcess's outputs: the given detections, padded with zeros to n_max."""
    n = len(scores)
    b = np.zeros((1, n_max, 4), np.float32)
    c = np.zeros((1, n_max), np.float32)
    s = np.zeros((1, n_max), np.float32)
    b[0, :n], c[0, :n], s[0, :n] = boxes, classes, scores
    return [b, c, s, np.array([n], np.float32)]


BOXES = [[0.1, 0.1, 0.6, 0.6], [0.2, 0.5, 0.9, 0.95], [0.0, 0.0, 0.3, 0.2], [0.5, 0.1, 0.8, 0.4]]
CLASSES = [1, 17, 3, 1]
SCORES = [0.9, 0.8, 0.7, 0.3]


def test_same_boxes_in_another_order_pass():
    ref = detections(BOXES, CLASSES, SCORES)
    order = [2, 0, 3, 1]
    tvm = detections([BOXES[i] for i in order], [CLASSES[i] for i in order], [SCORES[i] for i in order])
    v = compare_outputs("x", tvm, ref, POSTPROCESS_NAMES, tolerance=2)
    assert v.kind == "detection" and v.detection.outputs == [0, 1, 2, 3]
    assert v.detection.matched == v.detection.tvm_total == v.detection.tflite_total == 4
    assert v.detection.max_score_diff == 0
    assert not v.outputs[0].within_tolerance  # reported, but the matched detections decide
    assert v.passed and v.failures() == []
    d = json.loads(json.dumps(v.to_dict()))
    assert d["detection"]["passed"] and d["outputs"][0]["within_tolerance"] is False and d["passed"]


def test_box_shifted_to_iou_08_fails():
    ref = detections(BOXES, CLASSES, SCORES)
    moved = [list(b) for b in BOXES]
    shift = 0.5 / 9  # a 0.5-wide box moved by 1/9 of its width overlaps (1 - 1/9) / (1 + 1/9) = 0.8
    moved[0][1] += shift
    moved[0][3] += shift
    assert box_iou(np.array(moved[:1]), np.array(BOXES[:1]))[0, 0] == pytest.approx(0.8)
    v = compare_outputs("x", detections(moved, CLASSES, SCORES), ref, POSTPROCESS_NAMES, tolerance=1000)
    assert all(o.within_tolerance for o in v.outputs)  # the values alone would pass
    assert not v.passed and v.detection.matched == 3
    assert [e["class"] for e in v.detection.unmatched_tvm] == [1]
    assert [e["class"] for e in v.detection.unmatched_tflite] == [1]
    assert any("without a partner" in line for line in v.failures())


def test_a_different_class_fails():
    ref = detections(BOXES, CLASSES, SCORES)
    v = compare_outputs("x", detections(BOXES, [1, 18, 3, 1], SCORES), ref, POSTPROCESS_NAMES, tolerance=1000)
    assert not v.passed and v.detection.unmatched_tflite[0]["class"] == 17


def test_a_weak_unmatched_detection_does_not_fail():
    ref = detections(BOXES, CLASSES, SCORES)
    assert SCORES[3] < DETECTION_MIN_SCORE
    tvm = detections(BOXES[:3], CLASSES[:3], [0.88, 0.8, 0.7])  # the weak one is gone, a score moved
    v = compare_outputs("x", tvm, ref, POSTPROCESS_NAMES, tolerance=2)
    assert v.passed and v.detection.matched == 3
    assert v.detection.tvm_total == 3 and v.detection.tflite_total == 4
    assert v.detection.max_score_diff == pytest.approx(0.02)
    # a strong detection TVM alone finds fails
    extra = detections(BOXES + [[0.4, 0.4, 0.5, 0.5]], CLASSES + [9], SCORES + [0.6])
    v = compare_outputs("x", extra, ref, POSTPROCESS_NAMES, tolerance=2)
    assert not v.passed and v.detection.unmatched_tvm == [{"class": 9, "score": pytest.approx(0.6),
                                                          "box": pytest.approx([0.4, 0.4, 0.5, 0.5])}]


def test_detection_outputs_found_by_shapes_in_any_order():
    b, c, s, n = detections(BOXES, CLASSES, SCORES)
    outputs = [s, b, n, c]  # the order of a TF2 export, names that do not tell
    assert detection_roles(outputs, ["a", "b", "c", "d"]) == {"boxes": 1, "classes": 3, "scores": 0, "count": 2}
    v = compare_outputs("x", [o.copy() for o in outputs], outputs, ["a", "b", "c", "d"])
    assert v.kind == "detection" and v.passed and v.detection.matched == 4


def test_exact_policy_still_wants_every_value():
    ref = detections(BOXES, CLASSES, SCORES)
    order = [1, 0, 2, 3]
    tvm = detections([BOXES[i] for i in order], [CLASSES[i] for i in order], [SCORES[i] for i in order])
    v = compare_outputs("x", tvm, ref, POSTPROCESS_NAMES, exact=True)
    assert v.detection.passed and not v.passed


# ----------------------------------------------------------------------------- classification and reports
def test_classification_is_unchanged():
    ref = np.array([[0, 200, 10, 3, 2, 1, 0, 0]], dtype=np.uint8)
    v = compare_outputs("x", [ref.copy()], [ref], ["probs"])
    assert v.kind == "classification" and v.segmentation is None and v.detection is None and v.top5_match


def test_reports_show_the_figures():
    from rich.console import Console

    from tvmq.report.model import HostSection, Report, TargetSection, Transforms
    from tvmq.report.render import print_report, to_markdown

    seg_ref = score_map()
    seg = compare_outputs("street.png", [seg_ref.copy()], [seg_ref], ["seg"])
    det_ref = detections(BOXES, CLASSES, SCORES)
    det = compare_outputs("dog.png", [o.copy() for o in det_ref], det_ref, POSTPROCESS_NAMES)
    report = Report(model={"name": "m", "source": "m.tflite", "sha256": "0" * 64, "quantization": "int8"},
                    target=TargetSection("native", "host", {"kind": "llvm"}, 2), host=HostSection("cpu", 2, "x86_64"),
                    transforms=Transforms({}), verdict="pass", images=[seg, det])
    md = to_markdown(report)
    assert "| by kind |" in md
    assert "segmentation: 100.00% pixels identical, mIoU 1.0000" in md
    assert "detection: 4/4 TVM, 4/4 TFLite matched" in md
    console = Console(record=True, width=250)
    print_report(report, console)
    assert "mIoU 1.0000" in console.export_text()
    d = report.to_dict()["images"]
    assert d[0]["segmentation"]["miou"] == 1.0 and d[1]["detection"]["matched"] == 4
    assert {"tvm_top5", "top5_match", "outputs", "passed", "exact"} <= set(d[0])
