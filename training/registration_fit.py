"""Registration decided from the good boards (training only; no torch): the reference board, the
surround (fixture parts, clamps and glare the camera sees on every board) and the alignment limits.

The line runs the result through `inspector.core.registration.Registration`; `decide` is called by
`training/fixture.py` and the surround's reference by `training/folds.py`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from inspector.core.groups import choose_groups, fit_groups, light_feature
from inspector.core.preprocess import to_channels
from inspector.core.registration import Alignment, Registration, RegistrationSpec, Surround
from inspector.errors import ConfigError, RegistrationError

# Why each number; the measurements behind them: docs/results.md, "Registration constants".
OUTLIER_SHARE_MARGIN = 2.0  # the second ECC pass's line: this many times the largest blob of the good training boards...
OUTLIER_SHARE_MIN = 0.01  # ...and never under this share of the reduced board
SURROUND_MIN_RESIDUAL = 0.1  # median brightness: aligned boards differ from the reference by more than this there...
SURROUND_STABLE_RATIO = 2.0  # ...while the raw photos agree with each other at least this many times better
SURROUND_MIN_PIECE_SHARE = 0.0002  # of the frame: smaller pieces are via rims under blur, not a clamp, pin or glare...
SURROUND_MIN_PIECE_PX = 8  # ...and never fewer pixels
SURROUND_CLOSE_PX = 3  # joins the pieces of the surround's outline
SURROUND_HULL_RATIO = 2.0  # a piece within this much of its convex hull is compact (filled to the hull)
SURROUND_GROW_PX = 6  # blur and the model's smoothing carry its edge this far onto the board
FIXTURED_MIN_MEDIAN_CORRELATION = 0.8  # "one fixtured design": good boards align onto their median this well


def _brightness_units(image: np.ndarray) -> np.ndarray:
    """Grey, lightly blurred, in units of the board's median brightness (exposure drops out)."""
    grey = to_channels(image, 1).astype(np.float32)
    return cv2.GaussianBlur(grey / max(float(np.median(grey)), 1.0), (0, 0), 1.0)


def _placed(images: Sequence[np.ndarray], registration: Registration) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(photo, warp, aligned board) for each board that aligns; the others are left out."""
    placed = []
    for image in images:
        try:
            full, _ = registration.locate(image)
        except RegistrationError:
            continue
        placed.append((image, full, registration.warp(image, full)))
    return placed


def fit_surround(placed: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], registration: Registration
                 ) -> np.ndarray | None:
    """The surround mask (camera frame, uint8 255 = surround) the good boards (`_placed`) show, or None
    when they show none.

    The surround is what the camera sees at the same place on every board while the board moves under
    it (a fixture clamp over the board's edge, locating pins, the plate around the board, the lamp's
    glare). After alignment it moves by the fixture play, so good boards differ there by whatever the
    board happened to show beside it, and no per-position model can learn it from the few boards
    training has. Found in the camera's frame: a pixel belongs to the surround when the aligned boards
    differ from the reference there by more than SURROUND_MIN_RESIDUAL of the board's median brightness
    on most boards (median over boards), while the raw photos agree with each other at least 1 /
    SURROUND_STABLE_RATIO times better. Board texture is the other way round (it moves in the photo,
    stays put after alignment); flat board areas agree in both and stay judged."""
    reference = _brightness_units(registration.reference)
    size = (registration.width, registration.height)
    photos, residuals = [], []
    for image, full, aligned in placed:
        # the residual of the aligned board, carried back to where the camera saw it
        residuals.append(cv2.warpAffine(np.abs(_brightness_units(aligned) - reference), full.astype(np.float32),
                                        size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT))
        photos.append(_brightness_units(image))
    if len(photos) < 3:
        return None
    stack = np.stack(photos)
    spread_in_photo = np.median(np.abs(stack - np.median(stack, axis=0)), axis=0)
    residual = np.median(np.stack(residuals), axis=0)
    surround = ((residual > SURROUND_MIN_RESIDUAL) & (spread_in_photo * SURROUND_STABLE_RATIO < residual)).astype(np.uint8)
    # Single pixels pass the test on boards without a surround (a via's rim under blur); a clamp, a pin
    # or a glare is a piece of hundreds of pixels at 512 px.
    count, labels, stats, _ = cv2.connectedComponentsWithStats(surround, connectivity=8)
    smallest = max(SURROUND_MIN_PIECE_PX, int(SURROUND_MIN_PIECE_SHARE * surround.size))
    surround = np.isin(labels, np.flatnonzero(stats[1:count, cv2.CC_STAT_AREA] >= smallest) + 1).astype(np.uint8)
    if not surround.any():
        return None
    close = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * SURROUND_CLOSE_PX + 1,) * 2)
    grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * SURROUND_GROW_PX + 1,) * 2)
    surround = cv2.morphologyEx(surround, cv2.MORPH_CLOSE, close)
    # Its outline is what moves; the inside of a clamp or a clipped glare core is no board either. A
    # compact piece is filled to its convex hull; a long one (a plate around the board) only inside.
    outlines, _ = cv2.findContours(surround, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    for outline in outlines:
        hull = cv2.convexHull(outline)
        compact = cv2.contourArea(hull) <= SURROUND_HULL_RATIO * max(cv2.contourArea(outline), 1.0)
        cv2.drawContours(surround, [hull if compact else outline], -1, 1, thickness=cv2.FILLED)
    return cv2.dilate(surround, grow) * np.uint8(255)


def build_reference(images: Sequence[np.ndarray], spec: RegistrationSpec, rounds: int = 2
                    ) -> tuple[np.ndarray, list[Alignment]]:
    """The reference board: the per-pixel median of the good boards aligned onto it (started from the
    board nearest the median, refined `rounds` times). Returns it and each board's alignment."""
    if len(images) < 2:
        raise ConfigError("a reference board needs at least 2 good boards")
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise ConfigError(f"good boards of different sizes ({sorted(shapes)}) cannot share one reference")
    loose = RegistrationSpec(align=True, photometric=False, work_side=spec.work_side,
                             max_shift_px=1e9, max_angle_deg=180.0, min_correlation=1e-6)
    stack = np.stack(images)
    reference = np.median(stack, axis=0).astype(np.uint8)
    alignments: list[Alignment] = []
    for _ in range(rounds):
        registration = Registration(loose, reference)
        aligned, alignments = [], []
        for image in images:
            try:
                full, alignment = registration.locate(image)
            except RegistrationError:
                aligned.append(image)
                alignments.append(Alignment(0.0, 0.0, 0.0, 0.0))
                continue
            aligned.append(registration.warp(image, full))
            alignments.append(alignment)
        reference = np.median(np.stack(aligned), axis=0).astype(np.uint8)
    return reference, alignments


def reference_without_surround(placed: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
                               registration: Registration, camera: np.ndarray) -> tuple[np.ndarray, Surround]:
    """The reference again, each pixel the median over the boards (`_placed`) that show the board there
    (not the surround: a clamp or glare that sat over a pixel on most boards would otherwise stay in
    the reference, and every board showing its own copper there would differ from it), and the
    surround with the pixels no board showed."""
    stack = [aligned for _, _, aligned in placed]
    covered = [registration.mask_on_reference(camera, full) > 0 for _, full, _ in placed]
    hidden_everywhere = np.logical_and.reduce(covered) if covered else np.zeros(camera.shape, bool)
    reference = registration.reference
    if stack:
        boards = np.stack(stack).astype(np.float32)
        boards[np.stack(covered)] = np.nan  # (boards, H, W[, C]) masked by (boards, H, W)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # pixels every board hides: kept as they were
            median = np.nanmedian(boards, axis=0)
        reference = np.clip(np.rint(np.where(np.isnan(median), reference, median)), 0, 255).astype(np.uint8)
    return reference, Surround(camera=camera, hidden=hidden_everywhere.astype(np.uint8) * np.uint8(255))


def _with_groups(registration: Registration, boards: Sequence[np.ndarray]) -> tuple[Registration, str]:
    """The registration with groups of good boards when the boards fall into clearly separated groups
    (inspector/core/groups.py), and why."""
    features, normalised = [], []
    for board in boards:
        record: dict[str, Any] = {}
        try:
            normalised.append(registration.apply(board, residual=False, record=record))
        except RegistrationError:
            continue
        features.append(light_feature(registration.warp(board, record["warp"]), registration.reference))
    if len(features) < 2:
        return registration, "one group: too few boards align"
    labels, reason = choose_groups(np.stack(features))
    if labels is None:
        return registration, reason
    groups = fit_groups(np.stack(features), labels, normalised)
    return Registration(registration.spec, registration.reference, registration.surround, groups), reason




def fixture_report(alignments: Sequence[Alignment]) -> dict[str, float]:
    correlations = np.array([a.correlation for a in alignments])
    shifts = np.array([math.hypot(a.dx, a.dy) for a in alignments])
    angles = np.array([abs(a.angle) for a in alignments])
    return {"boards": len(alignments), "correlation_min": float(correlations.min()),
            "correlation_median": float(np.median(correlations)), "shift_px_max": float(shifts.max()),
            "shift_px_median": float(np.median(shifts)), "angle_deg_max": float(angles.max())}



def decide(images: Sequence[np.ndarray], setting: str, photometric: str = "auto", work_side: int = 128,
           residual: bool = False) -> tuple[Registration | None, dict[str, Any]]:
    """Registration for these good boards: "on", "off" or "auto" (on when they are one fixtured design:
    same size and aligning onto their median with median correlation >= 0.8). Returns it (or None) and
    the reasoning, recorded in the bundle and its model card."""
    if setting not in ("auto", "on", "off"):
        raise ConfigError(f"registration must be auto, on or off, got {setting!r}")
    if photometric not in ("auto", "on", "off"):
        raise ConfigError(f"photometric must be auto, on or off, got {photometric!r}")
    if setting == "off":
        return None, {"registration": "off", "reason": "turned off in the training settings"}
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        if setting == "on":
            raise ConfigError(f"registration needs good boards of one size, got {sorted(shapes)}")
        return None, {"registration": "off", "reason": f"good boards come in {len(shapes)} sizes: not one fixtured design"}
    spec = RegistrationSpec(work_side=work_side)
    # Reference from at most 60 boards (the median settles long before; keeps training start fast).
    sample = list(images)[:: max(1, len(images) // 60)][:60]
    reference, alignments = build_reference(sample, spec)
    report = fixture_report(alignments)
    if setting == "auto" and report["correlation_median"] < FIXTURED_MIN_MEDIAN_CORRELATION:
        return None, {"registration": "off", "reason": f"good boards align onto their median with median "
                      f"correlation {report['correlation_median']:.2f} (< {FIXTURED_MIN_MEDIAN_CORRELATION}): "
                      "not one fixtured design", "fit": report}
    height, width = reference.shape[:2]
    # The second ECC pass's line: larger blobs than any good board showed (`Registration._without_outliers`).
    probe = Registration(spec, reference)
    report["outlier_share_max"] = round(max(probe.outlier_share(image) for image in sample), 5)
    placed = _placed(sample, probe)  # aligned once for both fits below
    camera = fit_surround(placed, probe)
    surround = None
    if camera is not None:
        reference, surround = reference_without_surround(placed, probe, camera)
    report["surround_share"] = round(surround.share, 5) if surround is not None else 0.0
    # Limits: what the good boards showed with room to spare, never tighter than 5% of the side / 2 degrees.
    spec = RegistrationSpec(
        align=True, photometric=photometric != "off", work_side=work_side,
        max_shift_px=round(max(2.0 * report["shift_px_max"] + 2.0, 0.05 * max(height, width)), 1),
        max_angle_deg=round(max(2.0 * report["angle_deg_max"] + 0.5, 2.0), 2),
        min_correlation=round(min(0.6, 0.75 * report["correlation_min"]), 3),
        residual=residual, edge_px=int(math.ceil(report["shift_px_max"])),
        outlier_blob_share=round(max(OUTLIER_SHARE_MIN, OUTLIER_SHARE_MARGIN * report["outlier_share_max"]), 5),
        stats=report)
    registration = Registration(spec, reference, surround)
    groups_reason = "boards compared with the one reference (no difference from it expected)"
    if residual:  # the group's reference is what a board's difference is taken from
        registration, groups_reason = _with_groups(registration, sample)
    return registration, {"registration": "on", "groups": groups_reason, "reason": (
        f"good boards are one fixtured design (median correlation {report['correlation_median']:.2f} onto "
        f"their median)") if setting == "auto" else "turned on in the training settings", "fit": report}
