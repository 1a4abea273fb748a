"""Detection-quality figures for `inspector evaluate`, each testable on hand-made maps and masks.

* AUPRO as defined for MVTec AD (Bergmann et al.): for every threshold on the anomaly map, the
  per-region overlap (PRO) is the mean, over connected components of the ground-truth masks, of
  the share of each component's pixels above the threshold; the false-positive rate is the share
  of defect-free pixels above it. PRO is integrated over FPR from 0 to 0.3 and divided by 0.3.
  The curve is computed exactly (every distinct map value is a threshold) by sorting samples.
* Region figures work on what an operator sees: the predicted regions' boxes at the calibrated
  threshold, against connected components of the ground-truth masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
from sklearn.metrics import auc

Box = tuple[int, int, int, int]  # x1, y1, x2, y2 with x2/y2 exclusive (as in inspector.core.results.Region)

DEFAULT_MAX_FPR = 0.3
DEFAULT_TOLERANCE_PX = 16


def gt_components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """(number of defect regions, label image) of a ground-truth mask (nonzero = defect), 8-connected."""
    count, labels = cv2.connectedComponents((mask > 0).astype(np.uint8), connectivity=8)
    return count - 1, labels


@dataclass
class ProSamples:
    """Anomaly-map samples carrying what the PRO curve needs, accumulated image by image.

    Defect pixels keep their weight 1/|component| so that each ground-truth region counts once;
    defect-free pixels may be subsampled on a regular grid (`ok_stride`) to bound memory, which
    estimates the FPR without bias.
    """

    ok_scores: list[np.ndarray] = field(default_factory=list)
    defect_scores: list[np.ndarray] = field(default_factory=list)
    defect_weights: list[np.ndarray] = field(default_factory=list)
    regions: int = 0

    def add(self, anomaly_map: np.ndarray, mask: np.ndarray | None, ok_stride: int = 1) -> None:
        anomaly_map = np.asarray(anomaly_map, dtype=np.float32)
        if mask is None:
            mask = np.zeros(anomaly_map.shape, dtype=np.uint8)
        if mask.shape != anomaly_map.shape:
            raise ValueError(f"mask shape {mask.shape} differs from anomaly map shape {anomaly_map.shape}")
        defect = mask > 0
        grid = np.zeros_like(defect)
        grid[::ok_stride, ::ok_stride] = True
        self.ok_scores.append(anomaly_map[grid & ~defect])
        count, labels = gt_components(mask)
        if count:
            sizes = np.bincount(labels.ravel())
            component = labels[defect]
            self.defect_scores.append(anomaly_map[defect])
            self.defect_weights.append((1.0 / sizes[component]).astype(np.float32))
            self.regions += count

    def extend(self, other: ProSamples) -> None:
        self.ok_scores += other.ok_scores
        self.defect_scores += other.defect_scores
        self.defect_weights += other.defect_weights
        self.regions += other.regions


def _concat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def pro_curve(samples: ProSamples) -> tuple[np.ndarray, np.ndarray]:
    """(fpr, pro) for every distinct threshold, from the highest down, starting at (0, 0)."""
    ok = _concat(samples.ok_scores, np.float32)
    defect = _concat(samples.defect_scores, np.float32)
    if samples.regions == 0 or ok.size == 0:
        raise ValueError("the PRO curve needs at least one defect region and one defect-free pixel")
    scores = np.concatenate([ok, defect])
    fpr_step = np.concatenate([np.full(ok.size, 1.0 / ok.size), np.zeros(defect.size)])
    pro_step = np.concatenate([np.zeros(ok.size), _concat(samples.defect_weights, np.float64) / samples.regions])
    order = np.argsort(-scores, kind="stable")
    scores, fpr, pro = scores[order], np.cumsum(fpr_step[order]), np.cumsum(pro_step[order])
    # A threshold keeps every sample scoring at least as high: take the last of each tied run.
    last_of_run = np.r_[scores[1:] != scores[:-1], True]
    return np.r_[0.0, fpr[last_of_run]], np.r_[0.0, pro[last_of_run]]


def aupro_from_samples(samples: ProSamples, max_fpr: float = DEFAULT_MAX_FPR) -> float:
    """Area under the PRO curve for FPR in [0, max_fpr], normalised to [0, 1]."""
    fpr, pro = pro_curve(samples)
    fpr = np.minimum(fpr, 1.0)
    inside = fpr <= max_fpr
    x, y = fpr[inside], pro[inside]
    if x[-1] < max_fpr and inside.sum() < len(fpr):  # interpolate the curve at max_fpr
        after = np.argmax(~inside)
        x0, x1, y0, y1 = fpr[after - 1], fpr[after], pro[after - 1], pro[after]
        x = np.r_[x, max_fpr]
        y = np.r_[y, y0 + (y1 - y0) * (max_fpr - x0) / (x1 - x0)]
    if len(x) < 2:
        return 0.0
    return float(auc(x, y) / max_fpr)


def aupro(anomaly_maps: Sequence[np.ndarray], masks: Sequence[np.ndarray | None],
          max_fpr: float = DEFAULT_MAX_FPR) -> float:
    """AUPRO over whole images (no subsampling); `None` masks are defect-free images."""
    samples = ProSamples()
    for anomaly_map, mask in zip(anomaly_maps, masks, strict=True):
        samples.add(anomaly_map, mask)
    return aupro_from_samples(samples, max_fpr)


def _box_mask(shape: tuple[int, int], boxes: Sequence[Box]) -> np.ndarray:
    canvas = np.zeros(shape, dtype=bool)
    for x1, y1, x2, y2 in boxes:
        canvas[max(0, y1):max(0, y2), max(0, x1):max(0, x2)] = True
    return canvas


def dilate(mask: np.ndarray, tolerance_px: int) -> np.ndarray:
    """Ground truth grown by `tolerance_px` in every direction (a disc, not a square)."""
    binary = (mask > 0).astype(np.uint8)
    if tolerance_px <= 0:
        return binary.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * tolerance_px + 1, 2 * tolerance_px + 1))
    return cv2.dilate(binary, kernel).astype(bool)


@dataclass
class RegionCounts:
    """Region-level tallies, summable across images and defect types."""

    gt_regions: int = 0
    gt_regions_found: int = 0
    predicted_regions: int = 0
    false_regions: int = 0
    box_area: int = 0
    box_area_near_defect: int = 0

    def add(self, other: RegionCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def region_recall(self) -> float | None:
        return self.gt_regions_found / self.gt_regions if self.gt_regions else None

    @property
    def localisation(self) -> float | None:
        return self.box_area_near_defect / self.box_area if self.box_area else None


def region_counts(boxes: Sequence[Box], mask: np.ndarray | None, shape: tuple[int, int],
                  tolerance_px: int = DEFAULT_TOLERANCE_PX) -> RegionCounts:
    """Compare one image's predicted region boxes with its ground-truth mask.

    A ground-truth region is found when any predicted box overlaps one of its pixels. A predicted
    box is false when it touches no ground-truth pixel even after growing the truth by
    `tolerance_px`. Localisation counts box pixels lying within that tolerance of a defect.
    """
    counts = RegionCounts(predicted_regions=len(boxes))
    if mask is None or not np.any(mask):
        counts.false_regions = len(boxes)
        counts.box_area = int(_box_mask(shape, boxes).sum()) if boxes else 0
        return counts
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} differs from image shape {shape}")
    regions, labels = gt_components(mask)
    near = dilate(mask, tolerance_px)
    covered = _box_mask(shape, boxes)
    counts.gt_regions = regions
    counts.gt_regions_found = int(np.unique(labels[covered & (labels > 0)]).size)
    for box in boxes:
        single = _box_mask(shape, [box])
        area = int(single.sum())
        inside = int((single & near).sum())
        counts.box_area += area
        counts.box_area_near_defect += inside
        counts.false_regions += inside == 0
    return counts
