"""What a model's outputs are, and how to tell whether two runs of it agree by what they mean.

Two kinds get a check of their own besides the per-value comparison of
:func:`tvmq.report.verify.array_difference`:

- **segmentation maps**: an integer class map ``[1, H, W]``, or a score map ``[1, H, W, C]`` with
  ``C > 1`` (its class map: the argmax over ``C``, the first class on ties, as TFLite's ARG_MAX),
  at least :data:`SEGMENTATION_MIN_SIZE` pixels each way. Figures: the share of identical pixels
  of the class maps and their mean IoU (over the classes present in either map). It passes when
  at least :data:`SEGMENTATION_MIN_IDENTICAL` of the pixels are identical.
- **detection**: the four outputs of ``TFLite_Detection_PostProcess``: boxes ``[1, N, 4]``,
  classes ``[1, N]``, scores ``[1, N]`` and the count ``[1]``, all float, found by their names
  (``TFLite_Detection_PostProcess``, ``…:1``, ``…:2``, ``…:3``) or else by their shapes. The first
  ``count`` detections of each side are matched greedily, the strongest reference detection first:
  a TVM detection matches a TFLite one of the same class whose box overlaps it with an IoU of at
  least :data:`DETECTION_MATCH_IOU`. It passes when every detection scoring at least
  :data:`DETECTION_MIN_SCORE`, on either side, is matched (non-maximum suppression may order ties
  differently; weak detections come and go with it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

SEGMENTATION_MIN_IDENTICAL = 0.995  # share of identical class-map pixels a segmentation map needs
SEGMENTATION_MIN_SIZE = 8  # pixels each way: smaller maps are compared value by value only
DETECTION_MATCH_IOU = 0.9  # boxes of the same class overlapping at least this much are one detection
DETECTION_MIN_SCORE = 0.5  # detections at least this strong must be matched on both sides

POSTPROCESS = "Detection_PostProcess"
DETECTION_ROLES = ("boxes", "classes", "scores", "count")


@dataclass(frozen=True)
class SegmentationCheck:
    """The class maps of the segmentation outputs (``outputs``: their indices), the worst of them:
    the smallest share of identical pixels and the smallest mean IoU."""

    outputs: list[int]
    identical_share: float
    miou: float
    min_identical: float = SEGMENTATION_MIN_IDENTICAL

    @property
    def passed(self) -> bool:
        return self.identical_share >= self.min_identical

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


@dataclass(frozen=True)
class DetectionCheck:
    """The detections of both sides matched (see the module's docstring). ``outputs``: the indices
    of boxes, classes, scores and count; ``unmatched_*``: the detections scoring at least
    ``min_score`` that found no partner, as ``{"class", "score", "box"}``."""

    outputs: list[int]
    matched: int
    tvm_total: int
    tflite_total: int
    max_score_diff: float  # over the matched pairs; 0 when none matched
    unmatched_tvm: list[dict]
    unmatched_tflite: list[dict]
    min_iou: float = DETECTION_MATCH_IOU
    min_score: float = DETECTION_MIN_SCORE

    @property
    def passed(self) -> bool:
        return not self.unmatched_tvm and not self.unmatched_tflite

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


# ----------------------------------------------------------------------------- segmentation
def is_segmentation_map(arr: np.ndarray) -> bool:
    """An integer ``[1, H, W]`` class map or a ``[1, H, W, C>1]`` score map, H and W at least
    :data:`SEGMENTATION_MIN_SIZE`."""
    shape = arr.shape
    if len(shape) == 3:
        spatial, ok = shape[1:], np.asarray(arr).dtype.kind in "iu"
    elif len(shape) == 4:
        spatial, ok = shape[1:3], shape[3] > 1
    else:
        return False
    return ok and shape[0] == 1 and min(spatial) >= SEGMENTATION_MIN_SIZE


def class_map(arr: np.ndarray, like: np.ndarray) -> np.ndarray | None:
    """The class map of an output shaped as the reference output ``like`` (``arr`` reshaped when
    only the shape differs); None when the sizes differ."""
    arr = np.asarray(arr)
    if arr.shape != like.shape:
        if arr.size != like.size:
            return None
        arr = arr.reshape(like.shape)
    return arr[0].argmax(axis=-1) if arr.ndim == 4 else arr[0]


def mean_iou(mine: np.ndarray, ref: np.ndarray) -> float:
    """The mean, over the classes present in either class map, of intersection over union."""
    classes = np.union1d(mine, ref)
    if classes.size == 0:
        return 1.0
    ious = [np.logical_and(mine == c, ref == c).sum() / np.logical_or(mine == c, ref == c).sum() for c in classes]
    return float(np.mean(ious))


def check_segmentation(tvm_outputs: list[np.ndarray], ref_outputs: list[np.ndarray]) -> SegmentationCheck | None:
    """The segmentation figures of the outputs that are segmentation maps; None when none is."""
    indices = [i for i, r in enumerate(ref_outputs) if is_segmentation_map(r)]
    if not indices:
        return None
    shares, mious = [], []
    for i in indices:
        ref = class_map(ref_outputs[i], ref_outputs[i])
        mine = class_map(tvm_outputs[i], ref_outputs[i])
        if mine is None:
            shares.append(0.0)
            mious.append(0.0)
            continue
        shares.append(float((mine == ref).mean()))
        mious.append(mean_iou(mine, ref))
    return SegmentationCheck(indices, min(shares), min(mious))


# ----------------------------------------------------------------------------- detection
def _by_names(names: list[str]) -> dict[str, int] | None:
    """The roles of ``TFLite_Detection_PostProcess``'s outputs by their names (no suffix: boxes,
    ``:1`` classes, ``:2`` scores, ``:3`` count); None unless all four are there."""
    suffixes = {"": "boxes", ":1": "classes", ":2": "scores", ":3": "count"}
    roles = {}
    for i, name in enumerate(names):
        at = name.find(POSTPROCESS)
        if at >= 0:
            role = suffixes.get(name[at + len(POSTPROCESS):])
            if role is not None and role not in roles:
                roles[role] = i
    return roles if len(roles) == 4 else None


def _by_shapes(outputs: list[np.ndarray]) -> dict[str, int] | None:
    """The roles by shapes: one float ``[1, N, 4]``, two float ``[1, N]``, one float of one value.
    Of the two ``[1, N]``, the classes are whole numbers and the scores lie in ``[0, 1]``; when
    the values cannot tell (no detections), the first is the classes, as TFLite orders them."""
    floats = [(i, o) for i, o in enumerate(outputs) if np.asarray(o).dtype.kind == "f"]
    boxes = [i for i, o in floats if o.ndim == 3 and o.shape[0] == 1 and o.shape[2] == 4]
    if len(boxes) != 1:
        return None
    n = outputs[boxes[0]].shape[1]
    pairs = [i for i, o in floats if o.shape == (1, n)]
    counts = [i for i, o in floats if o.size == 1 and o.ndim <= 1]
    if len(pairs) != 2 or len(counts) != 1:
        return None
    first, second = (outputs[i] for i in pairs)

    def whole(a):
        return bool(np.all(a == np.round(a)))

    def unit(a):
        return bool(np.all((a >= 0) & (a <= 1)))

    swap = (whole(second) and not whole(first)) or (unit(first) and not unit(second))
    classes, scores = (pairs[1], pairs[0]) if swap else (pairs[0], pairs[1])
    return {"boxes": boxes[0], "classes": classes, "scores": scores, "count": counts[0]}


def detection_roles(outputs: list[np.ndarray], names: list[str]) -> dict[str, int] | None:
    """Which output is which of ``TFLite_Detection_PostProcess``'s (:data:`DETECTION_ROLES`), by
    names, else by shapes and dtypes; None when the outputs are not a detector's."""
    roles = _by_names(names)
    if roles is not None:
        b, c, s, n = (np.asarray(outputs[roles[k]]) for k in DETECTION_ROLES)
        if b.ndim >= 2 and b.shape[-1] == 4 and c.size == s.size == b.size // 4 and n.size == 1:
            return roles
    return _by_shapes(outputs)


@dataclass(frozen=True)
class Detections:
    """The first ``count`` detections of one side, as arrays."""

    boxes: np.ndarray  # [n, 4] ymin, xmin, ymax, xmax
    classes: np.ndarray  # [n] int
    scores: np.ndarray  # [n]

    @classmethod
    def of(cls, outputs: list[np.ndarray], roles: dict[str, int]) -> Detections:
        boxes = np.asarray(outputs[roles["boxes"]], dtype=np.float64).reshape(-1, 4)
        classes = np.asarray(outputs[roles["classes"]], dtype=np.float64).reshape(-1)
        scores = np.asarray(outputs[roles["scores"]], dtype=np.float64).reshape(-1)
        count = np.asarray(outputs[roles["count"]], dtype=np.float64).reshape(-1)
        n = min(len(boxes), len(classes), len(scores))
        if count.size and np.isfinite(count[0]):
            n = max(0, min(n, int(np.rint(count[0]))))
        return cls(boxes[:n], np.round(classes[:n]).astype(np.int64), scores[:n])

    def entry(self, i: int) -> dict:
        return {"class": int(self.classes[i]), "score": float(self.scores[i]),
                "box": [float(x) for x in self.boxes[i]]}


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` [n, 4] with every box of ``b`` [m, 4] (corners in either order of
    axes, the same for both); two equal empty boxes overlap fully."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)

    def area(x):
        return np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=-1)

    union = area(a)[:, None] + area(b)[None, :] - inter
    same = np.all(a[:, None, :] == b[None, :, :], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), same.astype(np.float64))


def match_detections(tvm: Detections, ref: Detections, min_iou: float = DETECTION_MATCH_IOU) -> list[tuple[int, int]]:
    """Pairs ``(tvm index, reference index)``: the reference's detections strongest first, each
    taking the unmatched TVM detection of its class that overlaps it most, at least ``min_iou``."""
    iou = box_iou(tvm.boxes, ref.boxes)
    free = np.ones(len(tvm.scores), dtype=bool)
    pairs = []
    for j in np.argsort(-ref.scores, kind="stable"):
        candidates = free & (tvm.classes == ref.classes[j]) & (iou[:, j] >= min_iou)
        if candidates.any():
            i = int(np.argmax(np.where(candidates, iou[:, j], -1.0)))
            free[i] = False
            pairs.append((i, int(j)))
    return pairs


def check_detection(tvm_outputs: list[np.ndarray], ref_outputs: list[np.ndarray],
                    names: list[str]) -> DetectionCheck | None:
    """The detection figures when the reference's outputs are ``TFLite_Detection_PostProcess``'s;
    None otherwise."""
    roles = detection_roles(ref_outputs, names)
    if roles is None:
        return None
    ref = Detections.of(ref_outputs, roles)
    tvm = Detections.of(tvm_outputs, roles)
    pairs = match_detections(tvm, ref)
    diffs = [abs(tvm.scores[i] - ref.scores[j]) for i, j in pairs]
    matched_tvm, matched_ref = {i for i, _ in pairs}, {j for _, j in pairs}

    def strong_unmatched(side: Detections, matched: set[int]) -> list[dict]:
        return [side.entry(k) for k in range(len(side.scores))
                if k not in matched and side.scores[k] >= DETECTION_MIN_SCORE]

    return DetectionCheck(outputs=[roles[k] for k in DETECTION_ROLES], matched=len(pairs),
                          tvm_total=len(tvm.scores), tflite_total=len(ref.scores),
                          max_score_diff=float(max(diffs, default=0.0)),
                          unmatched_tvm=strong_unmatched(tvm, matched_tvm),
                          unmatched_tflite=strong_unmatched(ref, matched_ref))


__all__ = ["DETECTION_MATCH_IOU", "DETECTION_MIN_SCORE", "DETECTION_ROLES", "SEGMENTATION_MIN_IDENTICAL",
           "SEGMENTATION_MIN_SIZE", "DetectionCheck", "Detections", "SegmentationCheck", "box_iou",
           "check_detection", "check_segmentation", "class_map", "detection_roles", "is_segmentation_map",
           "match_detections", "mean_iou"]
