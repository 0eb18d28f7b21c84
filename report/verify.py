"""Verification of TVM's outputs against the TFLite reference.

Which TFLite kernels a build is compared with, and how closely, is the build's promise
(:func:`verification_policy`): an integer build with ``--requant tflite`` computes what TFLite's
reference kernels compute and is compared with them (``BUILTIN_REF``); one with ``--requant xnnpack``
computes what the XNNPACK delegate computes and is compared with TFLite as it ships. Both are
exact: every value of every output must be equal, a classifier included. The QDQ float graph
promises neither; it is compared with TFLite as it ships, within ``--tolerance`` units (default
2), and a classifier passes on its top-5.

Classification outputs (one output of shape ``[1, N]`` or ``[N]``) are compared by their top-5
with ties handled honestly: classes with equal scores are interchangeable, on either side.
The rankings agree when, position by position, the class TVM ranks there can also be ranked
there by TFLite's scores (and the other way round). Every output is also compared element-wise:
the largest absolute difference (in quantized units for integer outputs) and the share of
identical values.

Segmentation maps and the outputs of a detector's ``TFLite_Detection_PostProcess`` are also
compared by what they mean (:mod:`tvmq.report.output_kinds`): the class maps pixel by pixel (share
of identical pixels, mean IoU), the detections matched box by box. Under a non-exact policy these
checks decide for their outputs instead of the per-value tolerance: a segmentation map passes with
at least 99.5% identical pixels, and a detector's float outputs do not fail an image whose
detections all match (non-maximum suppression may order ties differently); their per-value
figures are reported all the same. An exact policy still wants every value equal.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .output_kinds import (
    DETECTION_MATCH_IOU,
    DETECTION_MIN_SCORE,
    SEGMENTATION_MIN_IDENTICAL,
    DetectionCheck,
    SegmentationCheck,
    check_detection,
    check_segmentation,
)

TOP_K = 5
DEFAULT_TOLERANCE = 2.0  # quantized units, for the QDQ float graph


@dataclass(frozen=True)
class VerificationPolicy:
    """What a build is compared with: the TFLite kernel set (:data:`tvmq.model.reference.KERNELS`),
    whether every value must be equal, and the tolerance otherwise; ``why`` says it in words."""

    kernels: str
    exact: bool
    tolerance: float
    why: str

    def to_dict(self) -> dict:
        return asdict(self)


def verification_policy(int8: bool, requant: str, tolerance: float | None = None) -> VerificationPolicy:
    """The policy of a build (see the module's docstring). ``tolerance``: the user's, which makes
    even an exact mode allow that many units (and says so); None: the mode's own."""
    if int8 and requant == "tflite":
        kernels, why = "reference", "--requant tflite computes TFLite's reference integer arithmetic"
    elif int8:
        kernels, why = "xnnpack", "--requant xnnpack computes what the XNNPACK delegate computes"
    else:
        return VerificationPolicy("xnnpack", False, DEFAULT_TOLERANCE if tolerance is None else float(tolerance),
                                  "the QDQ float graph is compared with TFLite as it ships, within a tolerance")
    if tolerance is None or tolerance == 0:
        return VerificationPolicy(kernels, True, 0.0, why + ": every value must be equal")
    return VerificationPolicy(kernels, False, float(tolerance), why + f", within --tolerance {tolerance:g}")



@dataclass
class OutputComparison:
    index: int
    name: str
    shape: list[int]
    dtype: str
    max_abs_diff: float
    identical_share: float
    within_tolerance: bool


KINDS = ("classification", "detection", "segmentation", "other")  # ImageVerdict.kind


@dataclass
class ImageVerdict:
    image: str
    tvm_top5: list[dict] = field(default_factory=list)
    tflite_top5: list[dict] = field(default_factory=list)
    top1_match: bool | None = None
    top5_match: bool | None = None
    outputs: list[OutputComparison] = field(default_factory=list)
    exact: bool = False  # every value of every output must be equal (top-5 alone does not pass)
    kind: str = "other"  # one of KINDS: what the outputs are, as far as the shapes (and names) tell
    segmentation: SegmentationCheck | None = None  # the class maps of the segmentation outputs
    detection: DetectionCheck | None = None  # TFLite_Detection_PostProcess's outputs matched box by box

    @property
    def passed(self) -> bool:
        if self.exact:
            return all(o.max_abs_diff == 0 for o in self.outputs)
        if self.top5_match is not None:
            return bool(self.top5_match)
        checks = [c for c in (self.segmentation, self.detection) if c is not None]
        return all(c.passed for c in checks) and not self._values_failing()

    def _judged_by_kind(self) -> set[int]:
        """The outputs a kind's check decides for, not the per-value tolerance (a non-exact
        policy): segmentation maps, and a detector's outputs while its detections all match."""
        judged = set(self.segmentation.outputs) if self.segmentation is not None else set()
        if self.detection is not None and self.detection.passed:
            judged |= set(self.detection.outputs)
        return judged

    def _values_failing(self) -> list[OutputComparison]:
        if self.exact:
            return [o for o in self.outputs if o.max_abs_diff != 0]
        judged = self._judged_by_kind() if self.top5_match is None else set()
        return [o for o in self.outputs if not o.within_tolerance and o.index not in judged]

    def failures(self) -> list[str]:
        """One line per output that fails: its name, largest difference and identical share; one
        for failed top-5, segmentation or detection checks."""
        if self.passed:
            return []
        lines = [f"{self.image}: output {o.name!r} {o.shape} differs by up to {o.max_abs_diff:g} "
                 f"({o.identical_share * 100:.1f}% identical)" for o in self._values_failing()]
        if not self.exact and self.top5_match is False:
            lines.append(f"{self.image}: the top-5 classes differ")
        seg, det = self.segmentation, self.detection
        if not self.exact and seg is not None and not seg.passed:
            lines.append(f"{self.image}: class maps {seg.identical_share * 100:.2f}% identical (at least "
                         f"{SEGMENTATION_MIN_IDENTICAL * 100:g}% wanted), mean IoU {seg.miou:.4f}")
        if not self.exact and det is not None and not det.passed:
            lines.append(f"{self.image}: detections scoring {DETECTION_MIN_SCORE:g} or more without a partner "
                         f"(same class, IoU >= {DETECTION_MATCH_IOU:g}): {len(det.unmatched_tvm)} of TVM's, "
                         f"{len(det.unmatched_tflite)} of TFLite's")
        return lines or [f"{self.image}: differs"]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["segmentation"] = self.segmentation.to_dict() if self.segmentation is not None else None
        d["detection"] = self.detection.to_dict() if self.detection is not None else None
        d["passed"] = self.passed
        return d


def _scores(arr: np.ndarray) -> np.ndarray:
    return arr.reshape(-1).astype(np.float64)


def top_k(scores: np.ndarray, k: int = TOP_K) -> list[int]:
    """Indices of the k highest scores, ties broken by the lower index (stable)."""
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[:k]]


def rankings_agree(tvm_scores: np.ndarray, ref_scores: np.ndarray, k: int = TOP_K) -> bool:
    """True when both top-k rankings are the same up to swaps among equal scores.

    Greedy over positions: the next class must be among TVM's highest remaining scores and
    among TFLite's highest remaining scores; any class in both sets is as good as another.
    """
    remaining = np.ones(tvm_scores.shape[0], dtype=bool)
    for _ in range(min(k, tvm_scores.shape[0])):
        t_best = tvm_scores[remaining].max()
        r_best = ref_scores[remaining].max()
        both = remaining & (tvm_scores == t_best) & (ref_scores == r_best)
        if not both.any():
            return False
        remaining[int(np.flatnonzero(both)[0])] = False
    return True


def is_classification(outputs: list[np.ndarray]) -> bool:
    if len(outputs) != 1:
        return False
    shape = outputs[0].shape
    return (len(shape) == 2 and shape[0] == 1 and shape[1] >= 2) or (len(shape) == 1 and shape[0] >= 2)


def _label(labels: list[str] | None, idx: int) -> str | None:
    if labels is None:
        return None
    return labels[idx] if 0 <= idx < len(labels) else None


def _entries(scores: np.ndarray, raw: np.ndarray, labels, indices) -> list[dict]:
    flat = raw.reshape(-1)
    out = []
    for i in indices:
        value = flat[i].item()
        out.append({"class": i, "score": value, "label": _label(labels, i)})
    return out


def array_difference(mine: np.ndarray, ref: np.ndarray, tolerance: float) -> tuple[float, float, bool]:
    """``(largest absolute difference, share of identical values, within tolerance)`` of one array
    against the reference's (``mine`` reshaped to it when only the shape differs; inf when the sizes
    differ). ``tolerance`` is in quantized units for integers, relative to the largest reference
    magnitude (per mille) for floats."""
    mine, ref = np.asarray(mine), np.asarray(ref)
    if mine.shape != ref.shape and mine.size == ref.size:
        mine = mine.reshape(ref.shape)
    if mine.shape != ref.shape:
        return float("inf"), 0.0, False
    diff = np.abs(mine.astype(np.float64) - ref.astype(np.float64))
    max_diff = float(diff.max()) if diff.size else 0.0
    if ref.dtype.kind in "iub":
        ok = max_diff <= tolerance
    else:
        scale = float(np.abs(ref).max()) if ref.size else 1.0
        ok = max_diff <= 1e-3 * tolerance * max(scale, 1e-12)
    return max_diff, float((mine == ref).mean()) if ref.size else 1.0, ok


def compare_outputs(
    image: str,
    tvm_outputs: list[np.ndarray],
    ref_outputs: list[np.ndarray],
    names: list[str],
    labels: list[str] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    exact: bool = False,
) -> ImageVerdict:
    """Compare one input's outputs. ``tolerance`` is in quantized units (integer outputs) or
    relative to the largest reference magnitude (float outputs); ``exact``: every value must be
    equal, whatever the top-5, segmentation or detection checks say. ``names``: the outputs' names
    (a detector's are recognised by them, else by their shapes)."""
    verdict = ImageVerdict(image=image, exact=exact)
    if len(tvm_outputs) != len(ref_outputs):
        raise ValueError(f"TVM gave {len(tvm_outputs)} outputs, TFLite {len(ref_outputs)}")
    for i, (t, r) in enumerate(zip(tvm_outputs, ref_outputs)):
        max_diff, share, ok = array_difference(t, r, tolerance)
        verdict.outputs.append(OutputComparison(i, names[i] if i < len(names) else f"output{i}", list(r.shape),
                                                str(r.dtype), max_diff, share, ok))
    if is_classification(ref_outputs) and verdict.outputs and verdict.outputs[0].within_tolerance is not None:
        ts, rs = _scores(tvm_outputs[0]), _scores(ref_outputs[0])
        if ts.shape == rs.shape:
            verdict.tvm_top5 = _entries(ts, tvm_outputs[0], labels, top_k(ts))
            verdict.tflite_top5 = _entries(rs, ref_outputs[0], labels, top_k(rs))
            verdict.top1_match = rankings_agree(ts, rs, k=1)
            verdict.top5_match = rankings_agree(ts, rs)
        verdict.kind = "classification"
        return verdict
    verdict.detection = check_detection(tvm_outputs, ref_outputs, names)
    if verdict.detection is None:
        verdict.segmentation = check_segmentation(tvm_outputs, ref_outputs)
    verdict.kind = ("detection" if verdict.detection is not None else
                    "segmentation" if verdict.segmentation is not None else "other")
    return verdict
