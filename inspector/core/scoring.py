"""From input and reconstruction to anomaly map, regions, image score and verdict (no torch).

Each step is one function so later tuning (per-pixel error models, hysteresis thresholds) can
replace a step without touching the others:

    error_map -> smooth -> normalise -> (resize to input, in the engine) -> image_score
                                                                          -> find_regions
                                                                          -> decide_verdict

Verdict rule (documented choice):
- "fail" when the image score reaches the image threshold (calibrated so that a small share of good
  boards, default 1%, fail);
- "review" when the score is under that line but a region survives the pixel threshold and
  `min_region_area` (the pixel threshold is calibrated looser, default 30% of good boards showing a
  region: small real defects are found far more often, and a person looks before a board is
  scrapped), or when the score lies within `review_band` (a fraction, off by default) below the
  image threshold;
- "pass" otherwise, so a "pass" never carries regions.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from inspector.config.modes import LOSSES, MAX_REGION_MERGE_PX
from inspector.core.results import Region, Verdict
from inspector.errors import BundleError, ConfigError

if TYPE_CHECKING:
    from inspector.config import TrainConfig

CHANNEL_REDUCTIONS = ("mean", "max")
VIEW_COUNTS = (1, 2, 4)
VIEW_KINDS = ("shift", "flip")


@dataclass(frozen=True)
class View:
    """One view of the board: shifted down/right by (dy, dx) px, then mirrored (rows and/or columns)."""

    dy: int = 0
    dx: int = 0
    flip_rows: bool = False
    flip_columns: bool = False


def check_views(count: int, kind: str) -> None:
    if count not in VIEW_COUNTS or kind not in VIEW_KINDS:
        raise ConfigError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))} and view_kind one of "
                          f"{', '.join(VIEW_KINDS)}, got {count} / {kind!r}")


def views_for(count: int, kind: str, stride: int) -> list[View]:
    """The averaged views. Shifts are fractions of the model's total stride, so each view meets the
    strided layers at a different phase (a shift by a whole stride would change nothing)."""
    check_views(count, kind)
    if kind == "flip":
        return [View(), View(flip_columns=True), View(flip_rows=True), View(flip_rows=True, flip_columns=True)][:count]
    half, quarter = stride // 2, stride // 4
    views = [View(), View(half, half), View(quarter, 3 * quarter), View(3 * quarter, quarter)][:count]
    if len(set(views)) != len(views):
        raise ConfigError(f"a model of stride {stride} cannot take {count} distinct shifted views")
    return views


@dataclass(frozen=True)
class ScoringSpec:
    """How raw scores are computed; travels in the ONNX metadata (`board_inspector.scoring`)."""

    error: str = "l2"  # "l2" (squared error averaged over channels), "ssim" (1 - SSIM) or "mix"
    ssim_weight: float = 0.5  # share of the 1-SSIM map in "mix" (after scaling, see error_map)
    ssim_sigma: float = 1.5  # Gaussian window of the SSIM statistics
    smooth_sigma: float = 4.0  # Gaussian smoothing of the error map, working-resolution pixels
    top_k_fraction: float = 0.001  # image score = mean of the top k pixels, k = fraction of pixels...
    top_k_min: int = 16  # ...but never fewer than this
    # Error counts only where the input leaves the range its reconstruction takes within this many
    # pixels: a copper edge redrawn half a pixel off is not a defect, a spur several pixels long is.
    shift_tolerance: int = 0
    # Hysteresis: regions are seeded at the pixel threshold and grown down to this fraction of it,
    # so a defect's whole extent is outlined while faint good-board texture never starts a region.
    grow_fraction: float = 1.0
    # Reconstruction = mean over this many views of the board (1, 2 or 4; computed inside the ONNX
    # graph, see training/scored.py): "shift" moves the board by part of the model's stride (safe for
    # any board), "flip" mirrors it (only for boards whose mirror image is still a plausible board).
    views: int = 1
    view_kind: str = "shift"
    # Colour boards: per pixel, the squared error of the channels' "mean" (bundles before this field)
    # or of the worst channel ("max"): a stain that changes mostly red counts in full.
    channel_reduce: str = "mean"
    # A region smaller than the runner's minimum area is still kept when its peak reaches this multiple
    # of the region line: the minimum drops specks that just cross the line, not a small defect far
    # above it. 0 = never (bundles before this field, and bare-board scans, where such specks are good
    # board texture). See TrainConfig.small_region_peak.
    small_region_peak: float = 0.0
    # Pixels of the grown map closer than this (input pixels, Chebyshev) belong to one region: a flaw
    # the map draws in fragments, or a trace it redraws in pieces, is one box for the operator and one
    # count in the false-region rate. 0 = plain components (bundles before this field).
    region_merge_px: int = 0

    def __post_init__(self) -> None:
        if self.channel_reduce not in CHANNEL_REDUCTIONS:
            raise ConfigError(f"channel_reduce must be one of {', '.join(CHANNEL_REDUCTIONS)}, got {self.channel_reduce!r}")
        if self.error not in LOSSES:  # the training's losses: the error each one scores with
            raise ConfigError(f"scoring error must be one of {', '.join(LOSSES)}, got {self.error!r}")
        if self.smooth_sigma < 0 or self.top_k_fraction <= 0 or self.top_k_min < 1:
            raise ConfigError(f"invalid scoring settings {self}")
        if self.small_region_peak != 0.0 and self.small_region_peak < 1.0:
            raise ConfigError(f"small_region_peak must be 0 (never) or at least 1, got {self.small_region_peak}")
        if not 0 <= self.region_merge_px <= MAX_REGION_MERGE_PX:
            raise ConfigError(f"region_merge_px must be in [0, {MAX_REGION_MERGE_PX}], got {self.region_merge_px}")
        if not 0 <= self.shift_tolerance <= 8 or not 0.0 < self.grow_fraction <= 1.0:
            raise ConfigError(f"shift_tolerance must be in [0, 8] and grow_fraction in (0, 1], got {self}")
        check_views(self.views, self.view_kind)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_train_config(cls, config: TrainConfig, error: str, channels: int = 1) -> ScoringSpec:
        """The scoring a freshly trained bundle records (every model family uses this one rule)."""
        reduce = config.channel_error
        if reduce == "auto":  # measured on the colour sample boards: worst channel, see docs/results.md
            reduce = "max" if channels == 3 else "mean"
        return cls(error=error, ssim_weight=config.ssim_weight, smooth_sigma=config.smooth_sigma,
                   top_k_fraction=config.top_k_fraction, top_k_min=config.top_k_min,
                   shift_tolerance=config.shift_tolerance,
                   grow_fraction=config.grow_fraction, small_region_peak=config.small_region_peak,
                   region_merge_px=config.region_merge_px, views=config.views,
                   view_kind=config.view_kind, channel_reduce=reduce)

    @classmethod
    def from_json(cls, text: str, source: str = "scoring metadata") -> ScoringSpec:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError, ConfigError) as exc:
            raise BundleError(f"{source}: invalid scoring settings {text!r} ({exc})") from exc


def _ssim_map(x: np.ndarray, y: np.ndarray, sigma: float) -> np.ndarray:
    """Per-pixel SSIM of two HxW float32 images (data range 1), Gaussian window."""
    c1, c2 = 0.01**2, 0.03**2

    def blur(a: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(a, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2))


def _squared_difference(inputs: np.ndarray, reconstruction: np.ndarray, tolerance: int) -> np.ndarray:
    """Per-channel squared difference (CxHxW), or (tolerance > 0) the squared distance of each input
    pixel from the range [min, max] its reconstruction takes in a (2t+1)^2 neighbourhood (0 inside).

    OpenCV's element-wise functions instead of NumPy expressions: this runs on every board, and
    they do it in one vectorised pass without temporaries (3x faster at 640x640)."""
    out = np.empty_like(inputs)
    kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8) if tolerance > 0 else None
    for c in range(inputs.shape[0]):
        if kernel is None:
            difference = cv2.subtract(inputs[c], reconstruction[c])
        else:
            # At most one of the two is non-zero, so their sum squared is the distance squared.
            above = cv2.max(cv2.subtract(inputs[c], cv2.dilate(reconstruction[c], kernel)), 0.0)
            below = cv2.max(cv2.subtract(cv2.erode(reconstruction[c], kernel), inputs[c]), 0.0)
            difference = cv2.add(above, below)
        cv2.multiply(difference, difference, dst=out[c])
    return out


def error_map(inputs: np.ndarray, reconstruction: np.ndarray, spec: ScoringSpec) -> np.ndarray:
    """Raw per-pixel error (HxW float32) between a CxHxW input and its reconstruction."""
    if inputs.shape != reconstruction.shape:
        raise ConfigError(f"input {inputs.shape} and reconstruction {reconstruction.shape} differ in shape")
    per_channel = _squared_difference(inputs, reconstruction, spec.shift_tolerance)
    if per_channel.shape[0] == 1:
        squared = per_channel[0]
    elif spec.channel_reduce == "max":
        squared = np.asarray(np.max(per_channel, axis=0))
    else:
        squared = np.asarray(np.mean(per_channel, axis=0, dtype=np.float32))
    if spec.error == "l2":
        return squared
    dssim = np.mean([1.0 - _ssim_map(inputs[c], reconstruction[c], spec.ssim_sigma)
                     for c in range(inputs.shape[0])], axis=0).astype(np.float32)
    if spec.error == "ssim":
        return dssim
    # Squared errors are ~100x smaller than 1-SSIM on [0,1] images; scale so the weight means a share.
    return ((1.0 - spec.ssim_weight) * 100.0 * squared + spec.ssim_weight * dssim).astype(np.float32)


def smooth(raw: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return raw
    return cv2.GaussianBlur(raw, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


def normalise(smoothed: np.ndarray, pixel_scale: float) -> np.ndarray:
    """One scale for every board (from calibration), never per image: a good board stays cool."""
    return (smoothed * np.float32(1.0 / pixel_scale)).astype(np.float32, copy=False)


def top_k(count_pixels: int, spec: ScoringSpec) -> int:
    return max(spec.top_k_min, min(count_pixels, int(round(count_pixels * spec.top_k_fraction))))


SCORE_GROUP = 64  # pixels per group in the pre-selection of image_score


def image_score(anomaly_map: np.ndarray, spec: ScoringSpec) -> float:
    """Mean of the k highest pixels: robust to single hot pixels, still sensitive to small defects."""
    flat = anomaly_map.ravel()
    k = min(flat.size, top_k(flat.size, spec))
    groups = flat.size // SCORE_GROUP
    if groups >= 4 * k:
        # Exact pre-selection (a full partition of a 640x640 map costs more than the rest of the
        # scoring): if k groups of pixels each hold a maximum >= t, at least k pixels reach t, so the
        # k highest pixels are all >= t and a partition of those few gives the same k values.
        maxima = flat[:groups * SCORE_GROUP].reshape(groups, SCORE_GROUP).max(axis=1)
        floor = np.partition(maxima, groups - k)[groups - k]
        flat = flat[flat >= floor]
    return float(np.partition(flat, flat.size - k)[flat.size - k:].mean())


def find_regions(anomaly_map: np.ndarray, pixel_threshold: float, min_area: int,
                 grow_threshold: float | None = None, small_peak: float | None = None,
                 merge_px: int = 0) -> list[Region]:
    """Connected components of map >= grow_threshold that reach pixel_threshold somewhere (hysteresis;
    without grow_threshold, plain components of map >= pixel_threshold), largest peak first; those
    smaller than `min_area` dropped, unless their peak reaches `small_peak`. With `merge_px`,
    components closer than that many pixels are one region (its area, box and peak are those of its
    own pixels, not of the gap between them)."""
    # Most boards are clean: one pass for the maximum spares them the labelling (~1 ms at 640x640).
    if cv2.minMaxLoc(anomaly_map)[1] < pixel_threshold:
        return []
    low = pixel_threshold if grow_threshold is None else min(grow_threshold, pixel_threshold)
    binary = cv2.compare(anomaly_map, low, cv2.CMP_GE)
    grouped = binary if merge_px <= 0 else cv2.dilate(binary, np.ones((2 * merge_px + 1,) * 2, np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    seeds = cv2.findNonZero(cv2.compare(anomaly_map, pixel_threshold, cv2.CMP_GE)).reshape(-1, 2)  # (x, y) rows
    seeded = np.zeros(count, bool)
    seeded[labels[seeds[:, 1], seeds[:, 0]]] = True  # a seed reaches the line, so it is never background (0)
    regions = []
    for label in np.flatnonzero(seeded):
        x, y = int(stats[label, cv2.CC_STAT_LEFT]), int(stats[label, cv2.CC_STAT_TOP])
        w, h = int(stats[label, cv2.CC_STAT_WIDTH]), int(stats[label, cv2.CC_STAT_HEIGHT])
        own = labels[y:y + h, x:x + w] == label
        if merge_px > 0:  # the dilated group's own pixels: what the map really drew
            own &= binary[y:y + h, x:x + w] > 0
        area = int(np.count_nonzero(own))
        values = anomaly_map[y:y + h, x:x + w][own]
        if area < min_area and (small_peak is None or float(values.max()) < small_peak):
            continue
        ys, xs = np.nonzero(own)
        regions.append(Region(
            bbox=(x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1), area=area,
            peak=float(values.max()), mean=float(values.mean()),
            centroid=(x + float(xs.mean()), y + float(ys.mean())),
        ))
    regions.sort(key=lambda region: region.peak, reverse=True)
    return regions


def regions_at(anomaly_map: np.ndarray, pixel_threshold: float, spec: ScoringSpec, min_area: int) -> list[Region]:
    """The regions a board shows at a region line, with the bundle's growing, small-peak and merging
    rules: what inspection reports, and what calibration counts on good boards."""
    small_peak = spec.small_region_peak
    return find_regions(anomaly_map, pixel_threshold, min_area, pixel_threshold * spec.grow_fraction,
                        pixel_threshold * small_peak if small_peak > 0 else None, spec.region_merge_px)


def decide_verdict(score: float, image_threshold: float, regions: list[Region], review_band: float) -> Verdict:
    if score >= image_threshold:
        return "fail"
    if regions or (review_band > 0 and score >= image_threshold * (1.0 - review_band)):
        return "review"
    return "pass"
