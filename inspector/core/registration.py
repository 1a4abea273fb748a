"""Registration to a reference board and photometric normalisation against it (no torch).

A fixtured line photographs one design, a few pixels and a fraction of a degree differently each
time, under exposure and white balance that drift. Before the model sees a board:

1. **align**: the board is moved onto the bundle's reference board (translation + rotation). The
   search runs on grey images reduced to `work_side` pixels: phase correlation gives the
   translation, OpenCV's ECC (`cv2.findTransformECC`, Euclidean motion) refines translation and
   rotation; the warp is scaled back and applied once at full resolution.
2. **refuse**: a board that cannot be aligned (blank image, another design, turned round, shifted
   further than the fixture allows) raises `RegistrationError` with the reason; the feeds turn it
   into an "error" verdict, never a score.
3. **normalise light**: per channel, the aligned board is fitted as reference x (smooth quadratic
   gain field) + offset on a coarse grid (robustly: the worst-fitting tenth of the cells, where a
   defect would sit, is dropped and the fit repeated), and that field is divided out. This takes
   out exposure, white balance, lighting gradients and vignetting, and cannot follow a local
   defect.

`Registration.apply` is called by `inspector.core.preprocess.prepare_board`, the one entry point that
training, export and the runtime share.
"""

from __future__ import annotations

import io
import json
import math
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.core.groups import LightGroups, choose_groups, fit_groups, light_feature
from inspector.errors import ConfigError, InspectorError

BLANK_STD = 2.0  # grey levels: a reduced board flatter than this has nothing to align
LIGHT_GRID = 20  # cells per side of the grid the lighting field is fitted on
ECC_ITERATIONS = 60
ECC_EPS = 1e-4
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPS)
CORRELATION_GRID = 4  # blocks per side for the match check
CLIPPED = 250  # grey level from which a pixel counts as clipped
# A large object on the board (a part moved far, a missing IC, a hand) pulls ECC towards itself: all
# the board's pixels weigh alike. After the first alignment, blobs where the board differs from the
# reference far more than anywhere else (residual over median + OUTLIER_MADS x MAD, smoothed so thin
# edge residue does not count) are masked out and ECC runs once more, but only when the largest blob
# is larger than any good training board showed (`RegistrationSpec.outlier_blob_share`, set by
# `decide`). Measured on 512 px sample boards at work side 128: good boards' largest blob covers at
# most 0.53% of the reduced board, a large moved part that pulled the warp 0.86 px (83 false
# regions on that board) 1.4%. Masking thin residue on every board instead drops edge pixels that
# carry the alignment (measured: rms error 0.100 -> 0.112 px).
OUTLIER_MADS = 6.0
OUTLIER_SMOOTH = 2.0  # px of the reduced board
OUTLIER_SHARE_MARGIN = 2.0  # the line: this many times the largest blob of the good training boards...
OUTLIER_SHARE_MIN = 0.01  # ...and never under this share of the reduced board
# The surround: what the camera sees at the same place on every board while the board moves under it
# (a fixture clamp over the board's edge, locating pins, the plate around the board, the lamp's
# glare). After alignment it moves by the fixture play, so good boards differ there by whatever the
# board happened to show beside it, and no per-position model can learn it from the few boards
# training has. Found on the training boards in the camera's frame: a pixel belongs to the surround
# when the aligned boards differ from the reference there by more than SURROUND_MIN_RESIDUAL of the
# board's median brightness on most boards (median over boards), while the raw photos agree with
# each other at least 1 / SURROUND_STABLE_RATIO times better. Board texture is the other way round
# (it moves in the photo, stays put after alignment); flat board areas agree in both and stay judged.
# Measured at 512 px: boards without a surround, no pixel; with clamps, pins and glare, 5-6% of the
# frame once filled and grown (`inspector samples --fixture`).
SURROUND_MIN_RESIDUAL = 0.1
SURROUND_STABLE_RATIO = 2.0
SURROUND_MIN_PIECE_SHARE = 0.0002  # of the frame (52 px at 512x512)...
SURROUND_MIN_PIECE_PX = 8  # ...and never fewer pixels
SURROUND_CLOSE_PX = 3  # joins the pieces of the surround's outline
SURROUND_HULL_RATIO = 2.0
SURROUND_GROW_PX = 6  # blur and the model's smoothing carry its edge this far onto the board


class RegistrationError(InspectorError):
    """A board that cannot be aligned to the reference: an error verdict with this reason."""


@dataclass(frozen=True)
class RegistrationSpec:
    """How boards are aligned and normalised; recorded in the bundle (registration.json)."""

    align: bool = True
    photometric: bool = True
    work_side: int = 128  # the alignment search runs on boards reduced to at most this side
    max_shift_px: float = 16.0  # input pixels; a board moved further is refused
    max_angle_deg: float = 4.0
    min_correlation: float = 0.5  # ECC correlation after alignment; below it the board is refused
    # The model sees the board's difference from the reference (+128 grey), not the board itself:
    # what is the same on every board is gone before the network, which then learns what good
    # differences (placement tolerance, lighting residue, noise) look like.
    residual: bool = False
    # A second ECC pass without outlying blobs runs when the largest covers more than this share of
    # the reduced board (see OUTLIER_MADS); above 1 never (bundles from before it existed).
    outlier_blob_share: float = 2.0
    # Band at the reference's border not judged: as far as the good boards moved in the fixture (what
    # slides in there is background, or nothing the camera saw).
    edge_px: int = 0
    stats: dict[str, Any] = field(default_factory=dict)  # what the training boards showed (for people)

    def __post_init__(self) -> None:
        if self.work_side < 32:
            raise ConfigError(f"registration work_side must be at least 32, got {self.work_side}")
        if self.max_shift_px <= 0 or self.max_angle_deg <= 0 or not 0.0 < self.min_correlation < 1.0:
            raise ConfigError(f"invalid registration limits {self}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, indent=2)

    @classmethod
    def from_json(cls, text: str) -> RegistrationSpec:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid registration settings: {exc}") from exc


@dataclass(frozen=True)
class Alignment:
    """Where a board was found relative to the reference (input pixels, degrees) and how well it fits."""

    dx: float
    dy: float
    angle: float
    correlation: float


_SCRATCH = threading.local()


def _scratch(shape: tuple[int, ...]) -> np.ndarray:
    """A float32 buffer of `shape` kept per thread for intermediates that never leave a call. A
    fresh 5 MB array for every 640x640 colour board cost about 2 ms in page faults on the line's
    hot path; one buffer per thread stays safe when several feeds share a Registration."""
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.shape != shape:
        buffer = _SCRATCH.buffer = np.empty(shape, np.float32)
    return buffer


def _grey(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image


def _unclipped(small: np.ndarray) -> np.ndarray:
    """uint8 mask of the pixels below CLIPPED: glare, overexposed parts or a white object carry no
    alignment information."""
    return (small < CLIPPED).astype(np.uint8)


def _standardised(small: np.ndarray) -> np.ndarray:
    return (small - small.mean()) / (float(small.std()) + 1e-6)


def _reduce(grey: np.ndarray, factor: float) -> np.ndarray:
    if factor == 1.0:
        return grey.astype(np.float32)
    height, width = grey.shape
    size = (max(8, round(width * factor)), max(8, round(height * factor)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.float32)


def _light_basis(height: int, width: int) -> np.ndarray:
    """(cells, 6) quadratic basis 1, x, y, x^2, xy, y^2 on the coarse lighting grid, x and y in [-1, 1]."""
    ys, xs = np.meshgrid(np.linspace(-1, 1, height, dtype=np.float32), np.linspace(-1, 1, width, dtype=np.float32),
                         indexing="ij")
    x, y = xs.ravel(), ys.ravel()
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)


@dataclass(frozen=True)
class Surround:
    """The surround (see SURROUND_MIN_RESIDUAL): `camera`, uint8 255 where the camera sees it on every
    board; `hidden`, uint8 255 where it covered the board on every training board, in the reference's
    frame (the reference shows no board there, so a board moved further than those never is judged there)."""

    camera: np.ndarray
    hidden: np.ndarray

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, camera=self.camera, hidden=self.hidden)
        Path(path).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> Surround:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(camera=np.asarray(data["camera"], np.uint8), hidden=np.asarray(data["hidden"], np.uint8))
        except (OSError, ValueError, KeyError, EOFError) as exc:
            raise ConfigError(f"{path}: unreadable surround masks ({exc})") from exc

    @property
    def share(self) -> float:
        return float(np.count_nonzero(self.camera)) / self.camera.size


class Registration:
    """A reference board and the rules to align and normalise boards onto it."""

    def __init__(self, spec: RegistrationSpec, reference: np.ndarray, surround: Surround | None = None,
                 groups: LightGroups | None = None) -> None:
        """`surround`: what the camera sees of the surround (never judged), or None (nothing found on
        the training boards, or bundles from before it existed). `groups`: the ways good boards look
        (lighting set-ups; inspector/core/groups.py), each with its own reference for the difference."""
        if reference.dtype != np.uint8 or reference.ndim not in (2, 3):
            raise ConfigError(f"the reference board must be a uint8 image, got {reference.dtype} {reference.shape}")
        if surround is not None:
            for name, mask in (("camera", surround.camera), ("hidden", surround.hidden)):
                if mask.dtype != np.uint8 or mask.shape != reference.shape[:2]:
                    raise ConfigError(f"the surround's {name} mask must be a uint8 image of the reference's size "
                                      f"{reference.shape[1]}x{reference.shape[0]}, got {mask.dtype} {mask.shape}")
        if groups is not None and groups.references.shape[1:] != reference.shape:
            raise ConfigError(f"the groups' references {groups.references.shape[1:]} differ from the reference "
                              f"{reference.shape}")
        self.spec = spec
        self.reference = reference
        self.surround = surround
        self.groups = groups
        self.height, self.width = reference.shape[:2]
        self.channels = 1 if reference.ndim == 2 else 3
        self.factor = min(1.0, spec.work_side / max(self.height, self.width))
        self._ref_small = _reduce(_grey(reference), self.factor)
        self._ref_standard = _standardised(self._ref_small)  # what each board's outlier check compares with
        small_h, small_w = self._ref_small.shape
        self._window = cv2.createHanningWindow((small_w, small_h), cv2.CV_32F)
        self._blocks = self._match_blocks()
        # The lighting grid: reference per channel, averaged into LIGHT_GRID x LIGHT_GRID cells.
        self._grid = (min(LIGHT_GRID, self.height), min(LIGHT_GRID, self.width))
        self._ref_cells = self._cells(reference)
        self._basis = _light_basis(*self._grid)

    # ------------------------------------------------------------------ alignment
    def _cells(self, image: np.ndarray) -> np.ndarray:
        cells = cv2.resize(image, (self._grid[1], self._grid[0]), interpolation=cv2.INTER_AREA).astype(np.float32)
        return cells.reshape(-1, 1) if cells.ndim == 2 else cells.reshape(-1, 3)

    def locate(self, image: np.ndarray) -> tuple[np.ndarray, Alignment]:
        """The 2x3 warp (reference coordinates -> board coordinates, input pixels) and the alignment;
        RegistrationError when the board cannot be aligned."""
        if image.shape[:2] != (self.height, self.width):
            raise RegistrationError(f"image is {image.shape[1]}x{image.shape[0]} px, the reference board "
                                    f"{self.width}x{self.height}: another camera set-up or design")
        small = _reduce(_grey(image), self.factor)
        if float(small.std()) < BLANK_STD:
            raise RegistrationError("no board in the image (blank: nothing to align to the reference)")
        start = self._translation(small)
        unclipped = _unclipped(small)
        failure = "no correlation with the reference"
        try:
            warp = self._ecc(small, start, unclipped)
            correlation = self._correlation(small, warp)
            warp, correlation = self._without_outliers(small, warp, unclipped, correlation)
        except cv2.error as exc:
            warp, correlation, failure = start, -1.0, str(exc).strip().splitlines()[-1][:160]
        # Something large on the board can pull ECC off; the translation alone may then fit better.
        if correlation < self.spec.min_correlation:
            shifted = self._correlation(small, start)
            if shifted > correlation:
                warp, correlation = start, shifted
        if correlation < 0.0:
            raise RegistrationError(f"the board does not match the reference design (alignment did not converge: "
                                    f"{failure})")
        full = self._to_full(warp)
        # degrees counter-clockwise, as cv2.getRotationMatrix2D counts them
        angle = math.degrees(math.atan2(float(full[0, 1]), float(full[0, 0])))
        # Shift of the board's centre (rotation about the centre does not count as shift).
        centre = np.array([(self.width - 1) / 2, (self.height - 1) / 2], np.float64)
        moved = full[:, :2].astype(np.float64) @ centre + full[:, 2] - centre
        alignment = Alignment(float(moved[0]), float(moved[1]), angle, float(correlation))
        if correlation < self.spec.min_correlation:
            raise RegistrationError(f"the board does not match the reference design (correlation {correlation:.2f} "
                                    f"after alignment, good boards >= {self.spec.min_correlation:.2f}): another "
                                    "design, a board turned round, or something covering it")
        if math.hypot(alignment.dx, alignment.dy) > self.spec.max_shift_px:
            raise RegistrationError(f"the board sits {math.hypot(alignment.dx, alignment.dy):.1f} px from the "
                                    f"reference position (fixture allows {self.spec.max_shift_px:.1f} px)")
        if abs(angle) > self.spec.max_angle_deg:
            raise RegistrationError(f"the board is turned {angle:.1f} degrees from the reference (fixture allows "
                                    f"{self.spec.max_angle_deg:.1f})")
        return full, alignment

    def _translation(self, small: np.ndarray) -> np.ndarray:
        """The first guess: translation only, by phase correlation (robust to lighting), as a 2x3 warp."""
        # (copies: this OpenCV's phaseCorrelate writes into its inputs)
        (shift_x, shift_y), _ = cv2.phaseCorrelate(self._ref_small.copy(), small.copy(), self._window)
        return np.array([[1, 0, shift_x], [0, 1, shift_y]], np.float32)

    def _ecc(self, small: np.ndarray, start: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """ECC from `start` over the mask's pixels: rotation and sub-pixel translation (cv2.error when it
        does not converge)."""
        _, warp = cv2.findTransformECC(self._ref_small, small, start.copy(), cv2.MOTION_EUCLIDEAN, ECC_CRITERIA,
                                       mask, 5)
        return warp

    def _outlier_blobs(self, small: np.ndarray, warp: np.ndarray) -> tuple[np.ndarray, float]:
        """Blobs (uint8, reference frame of the reduced board) where the aligned board differs from the
        reference far more than elsewhere, and the share of the reduced board the largest covers."""
        height, width = self._ref_small.shape
        aligned = cv2.warpAffine(small, warp, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REFLECT_101)
        # ECC matches up to gain and offset: compare standardised images
        residual = cv2.GaussianBlur(cv2.absdiff(_standardised(aligned), self._ref_standard), (0, 0), OUTLIER_SMOOTH)
        sample = residual[::2, ::2]  # the statistics from a quarter of the pixels: same line, half the cost
        median = float(np.median(sample))
        spread = 1.4826 * float(np.median(np.abs(sample - median)))
        outliers = (residual > median + OUTLIER_MADS * spread).astype(np.uint8)
        count, _, stats, _ = cv2.connectedComponentsWithStats(outliers, connectivity=8)
        largest = int(stats[1:, cv2.CC_STAT_AREA].max()) if count > 1 else 0
        return outliers, largest / float(height * width)

    def outlier_share(self, image: np.ndarray) -> float:
        """The share of the reduced board its largest outlying blob covers after the first alignment
        (what `decide` sets the second pass's line from)."""
        small = _reduce(_grey(image), self.factor)
        start = self._translation(small)
        try:
            warp = self._ecc(small, start, _unclipped(small))
        except cv2.error:
            warp = start
        return self._outlier_blobs(small, warp)[1]

    def _without_outliers(self, small: np.ndarray, warp: np.ndarray, unclipped: np.ndarray,
                          correlation: float) -> tuple[np.ndarray, float]:
        """ECC once more without the outlying blobs when the largest is larger than good boards show
        (`spec.outlier_blob_share`); the first warp when it is not, or when the second pass does not
        converge or fits worse."""
        if self.spec.outlier_blob_share > 1.0:
            return warp, correlation
        outliers, share = self._outlier_blobs(small, warp)
        if share <= self.spec.outlier_blob_share:
            return warp, correlation
        height, width = self._ref_small.shape
        outliers = cv2.dilate(outliers, np.ones((5, 5), np.uint8))
        # ECC's mask lives on the board (the image it warps): move the reference-frame blobs there
        on_board = cv2.warpAffine(outliers, warp, (width, height), flags=cv2.INTER_NEAREST,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        mask = (unclipped & (on_board == 0)).astype(np.uint8)
        try:
            second = self._ecc(small, warp, mask)
        except cv2.error:
            return warp, correlation
        refit = self._correlation(small, second)
        return (second, refit) if refit >= correlation - 0.01 else (warp, correlation)

    def _correlation(self, small: np.ndarray, warp: np.ndarray) -> float:
        """How well the aligned reduced board matches the reduced reference: the median of the
        normalised correlations of a 4x4 grid of blocks, away from the border (ECC's own returned
        value is not a plain correlation). The median keeps a large foreign object or a glare over a
        few blocks from making a good board look like another design; another design, a board turned
        round or noise differ in every block."""
        height, width = self._ref_small.shape
        aligned = cv2.warpAffine(small, warp, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REFLECT_101)
        scores = [float(cv2.matchTemplate(aligned[rows, cols], ref, cv2.TM_CCOEFF_NORMED)[0, 0])
                  for rows, cols, ref in self._blocks]
        return float(np.median(scores)) if scores else 0.0

    def _match_blocks(self) -> list[tuple[slice, slice, np.ndarray]]:
        """The blocks `_correlation` compares, with the reference's pixels in each: a grid away from
        the border, without the flat parts of the design (they say nothing). Fixed by the reference,
        so found once and not on every board."""
        height, width = self._ref_small.shape
        margin_y, margin_x = height // 16, width // 16
        ys = np.linspace(margin_y, height - margin_y, CORRELATION_GRID + 1).astype(int)
        xs = np.linspace(margin_x, width - margin_x, CORRELATION_GRID + 1).astype(int)
        blocks = []
        for y0, y1 in zip(ys, ys[1:]):
            for x0, x1 in zip(xs, xs[1:]):
                ref = self._ref_small[y0:y1, x0:x1]
                if float(ref.std()) >= BLANK_STD:
                    blocks.append((slice(y0, y1), slice(x0, x1), ref))
        return blocks

    def _to_full(self, warp: np.ndarray) -> np.ndarray:
        """A warp found on the reduced images, in input pixels (pixel centres mapped exactly)."""
        full = warp.astype(np.float64).copy()
        if self.factor == 1.0:
            return full
        rotation = full[:, :2]
        half = 0.5 - 0.5 / self.factor
        full[:, 2] = full[:, 2] / self.factor + (rotation - np.eye(2)) @ np.array([half, half])
        return full

    def observed(self, full: np.ndarray, margin: int) -> np.ndarray:
        """float32 mask of the reference frame: 1 where the aligned board shows pixels the camera saw
        of the board (at least `margin` px inside the photo, off the surround), 0 where alignment had to
        make them up at the border or the surround covers them on this board."""
        inside = np.zeros((self.height, self.width), np.uint8)
        inside[margin:self.height - margin, margin:self.width - margin] = 1
        if self.surround is not None:
            inside[self.surround.camera > 0] = 0
        seen = self.mask_on_reference(inside, full)
        if self.surround is not None:
            seen[self.surround.hidden > 0] = 0
        edge = self.spec.edge_px
        if edge > 0:
            seen[:edge], seen[-edge:], seen[:, :edge], seen[:, -edge:] = 0, 0, 0, 0
        return seen.astype(np.float32)

    def mask_on_reference(self, mask: np.ndarray, full: np.ndarray) -> np.ndarray:
        """A mask in the photo's frame moved onto the reference frame for this board (nearest, 0 outside)."""
        return cv2.warpAffine(mask, full.astype(np.float32), (self.width, self.height),
                              flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
                              borderValue=0)

    def surround_on_reference(self, full: np.ndarray) -> np.ndarray | None:
        """uint8 mask of the reference frame (255) where the surround lies on this board, or None."""
        if self.surround is None:
            return None
        return cv2.bitwise_or(self.mask_on_reference(self.surround.camera, full), self.surround.hidden)

    def warp(self, image: np.ndarray, full: np.ndarray) -> np.ndarray:
        return cv2.warpAffine(image, full.astype(np.float32), (self.width, self.height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT_101)

    # ------------------------------------------------------------------ light
    def normalise_light(self, image: np.ndarray) -> np.ndarray:
        """Divide out a smooth per-channel gain field and offset fitted against the reference."""
        cells = self._cells(image)
        gains = np.empty((self._basis.shape[1] + 1, cells.shape[1]), np.float32)
        for c in range(cells.shape[1]):
            design = np.concatenate([self._basis * self._ref_cells[:, c:c + 1], np.ones((len(cells), 1), np.float32)], 1)
            keep = np.ones(len(cells), bool)
            for _ in range(2):  # refit without the worst-fitting tenth of the cells (a defect, a glare)
                coef, *_ = np.linalg.lstsq(design[keep], cells[keep, c], rcond=None)
                residual = np.abs(design @ coef - cells[:, c])
                keep = residual <= np.partition(residual, int(0.9 * (len(residual) - 1)))[int(0.9 * (len(residual) - 1))]
            gains[:, c] = coef
        field_small = (self._basis @ gains[:-1]).reshape(self._grid[0], self._grid[1], -1)
        field_small = np.clip(field_small, 0.2, 5.0)
        field_full = cv2.resize(field_small, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        # (image - offset) / field, rounded and saturated to uint8, in two OpenCV passes: 1.5 ms for a
        # 640x640 colour board on an AVX2 CPU where the numpy expression took 15 (issue 17).
        offset = tuple(float(value) for value in gains[-1]) + (0.0,) * (4 - gains.shape[1])
        shifted = cv2.subtract(image, offset, dst=_scratch(image.shape), dtype=cv2.CV_32F)
        return cv2.divide(shifted, field_full, dtype=cv2.CV_8U)

    # ------------------------------------------------------------------ the step
    def reference_for(self, group: int) -> np.ndarray:
        """The reference a board of `group` is compared with (the one reference without groups)."""
        return self.groups.references[group] if self.groups is not None and group >= 0 else self.reference

    def group_of(self, aligned: np.ndarray) -> int:
        """The group of good boards an aligned (not yet light-normalised) board belongs to: 0 without groups;
        RegistrationError when it fits none (lit unlike every group seen in training)."""
        if self.groups is None:
            return 0
        feature = light_feature(aligned, self.reference)
        group, distance = self.groups.group_of(feature)
        if group < 0:
            nearest = int(np.argmin(self.groups.distances(feature)))
            seen, centre = (", ".join(f"{v:+.3f}" for v in values) for values in (feature, self.groups.centres[nearest]))
            raise RegistrationError(
                f"the board is lit unlike every group of good boards seen in training ({self.groups.count} lighting "
                f"set-ups): {distance:.1f} spreads from the nearest, whose boards lie within "
                f"{float(self.groups.radii[nearest]):.1f} (white balance / exposure "
                f"{seen} against {centre}):"
                " a new lamp or camera setting needs boards of its own in training")
        return group

    def residual_of(self, board: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """What the model sees in residual mode: board - reference + 128 (uint8, saturated)."""
        return cv2.addWeighted(board, 1.0, self.reference if reference is None else reference, -1.0, 128.0)

    def apply(self, image: np.ndarray, timings: dict[str, float] | None = None,
              record: dict[str, Any] | None = None, residual: bool | None = None) -> np.ndarray:
        """Board (uint8, the reference's channel count) -> aligned, light-normalised board. `record`
        receives the warp (reference -> board coordinates) and the alignment. `residual=False` stops
        before the reference is subtracted (training augments the board first)."""
        start = time.perf_counter()
        out = image
        surround = None
        if self.spec.align:
            full, alignment = self.locate(image)
            out = self.warp(image, full)
            surround = self.surround_on_reference(full)
            if record is not None:
                record["warp"], record["alignment"] = full, alignment
        group = self.group_of(out)
        if record is not None:
            record["group"] = group
        reference = self.reference_for(group)
        middle = time.perf_counter()
        if self.spec.photometric:
            out = self.normalise_light(out)
        if surround is not None:
            # The surround is no board: the model sees the reference there (no difference), so a clamp
            # or a glare that sits elsewhere on each board cannot spread error onto the board beside it.
            out = out.copy() if out is image else out
            cv2.copyTo(reference, surround, out)
        if self.spec.residual if residual is None else residual:
            out = self.residual_of(out, reference)
        if timings is not None:
            timings["register"] = timings.get("register", 0.0) + (middle - start) * 1e3
            timings["photometric"] = timings.get("photometric", 0.0) + (time.perf_counter() - middle) * 1e3
        return out


# ---------------------------------------------------------------------- fitting on good boards
def _brightness_units(image: np.ndarray) -> np.ndarray:
    """Grey, lightly blurred, in units of the board's median brightness (exposure drops out)."""
    grey = _grey(image).astype(np.float32)
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
    when they show none (see SURROUND_MIN_RESIDUAL)."""
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


# A design is "one fixtured design" when its good boards align onto their median this well.
FIXTURED_MIN_MEDIAN_CORRELATION = 0.8


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
    # The second ECC pass's line: larger blobs than any good board showed (see OUTLIER_MADS).
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
