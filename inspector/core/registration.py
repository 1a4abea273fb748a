"""Registration to a reference board and photometric normalisation against it (no torch): what the
line runs on every board.

A fixtured line photographs one design, a few pixels and a fraction of a degree differently each
time, under exposure and white balance that drift. Before the model sees a board:

1. **align**: the board is moved onto the bundle's reference board (translation + rotation). The
   search runs on grey images reduced to `work_side` pixels: phase correlation gives the
   translation, OpenCV's ECC (`cv2.findTransformECC`, Euclidean motion) refines translation and
   rotation (once more without outlying blobs when something large pulled it: `_without_outliers`);
   the warp is scaled back and applied once at full resolution.
2. **refuse**: a board that cannot be aligned (blank image, another design, turned round, shifted
   further than the fixture allows) raises `RegistrationError` with the reason; the feeds turn it
   into an "error" verdict, never a score.
3. **normalise light**: a smooth per-channel gain field and offset fitted against the reference is
   divided out (inspector/core/light.py).

`Registration.apply` is called by `inspector.core.preprocess.prepare_board`, the one entry point that
training, export and the runtime share. What only training runs (the reference board, the surround
and the limits decided from the good boards) is in training/registration_fit.py.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.core.groups import LightGroups, light_feature
from inspector.core.light import LightField
from inspector.errors import ConfigError, RegistrationError

# Why each number; the measurements behind them: docs/results.md, "Registration constants".
BLANK_STD = 2.0  # grey levels: a reduced board flatter than this has nothing to align
ECC_ITERATIONS = 60  # ECC's iteration cap: bounds what a board that does not converge costs
ECC_EPS = 1e-4  # ECC stops once a step moves the warp less than this (far below a pixel)
ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, ECC_EPS)
CORRELATION_GRID = 4  # blocks per side for the match check: enough blocks for a median a few can't sway
CLIPPED = 250  # grey level from which a pixel counts as clipped: glare carries no alignment information
OUTLIER_MADS = 6.0  # an outlying blob differs from the reference this many MADs over the median residual
OUTLIER_SMOOTH = 2.0  # px of the reduced board: the residual's blur, so thin edge residue is no blob


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
    # the reduced board (see `Registration._without_outliers`); above 1 never (bundles from before it existed).
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


@dataclass(frozen=True)
class Surround:
    """The surround: what the camera sees at the same place on every board while the board moves under
    it (a fixture clamp, locating pins, the plate around the board, the lamp's glare), found on the
    training boards (training/registration_fit.py `fit_surround`) and never judged. `camera`, uint8 255
    where the camera sees it on every board; `hidden`, uint8 255 where it covered the board on every
    training board, in the reference's frame (the reference shows no board there, so a board moved
    further than those never is judged there)."""

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
        self._light = LightField(reference)

    # ------------------------------------------------------------------ alignment
    def locate(self, image: np.ndarray) -> tuple[np.ndarray, Alignment]:
        """The 2x3 warp (reference coordinates -> board coordinates, input pixels) and the alignment;
        RegistrationError when the board cannot be aligned."""
        small = self._reduced(image)
        warp, correlation, failure = self._search(small)
        full = self._to_full(warp)
        alignment = self._alignment(full, correlation)
        refusal = self._refusal(alignment, failure)
        if refusal is not None:
            raise RegistrationError(refusal)
        return full, alignment

    def _reduced(self, image: np.ndarray) -> np.ndarray:
        """The grey board reduced to the work side; RegistrationError for another size or a blank image."""
        if image.shape[:2] != (self.height, self.width):
            raise RegistrationError(f"image is {image.shape[1]}x{image.shape[0]} px, the reference board "
                                    f"{self.width}x{self.height}: another camera set-up or design")
        small = _reduce(_grey(image), self.factor)
        if float(small.std()) < BLANK_STD:
            raise RegistrationError("no board in the image (blank: nothing to align to the reference)")
        return small

    def _search(self, small: np.ndarray) -> tuple[np.ndarray, float, str]:
        """The best warp of the reduced board, its correlation (-1 when ECC did not converge) and why
        ECC failed, if it did: phase correlation's translation refined by ECC, or that translation
        alone when it fits better (something large on the board can pull ECC off)."""
        start = self._translation(small)
        unclipped = _unclipped(small)
        failure = "no correlation with the reference"
        try:
            warp = self._ecc(small, start, unclipped)
            correlation = self._correlation(small, warp)
            warp, correlation = self._without_outliers(small, warp, unclipped, correlation)
        except cv2.error as exc:
            warp, correlation, failure = start, -1.0, str(exc).strip().splitlines()[-1][:160]
        if correlation < self.spec.min_correlation:
            shifted = self._correlation(small, start)
            if shifted > correlation:
                warp, correlation = start, shifted
        return warp, correlation, failure

    def _alignment(self, full: np.ndarray, correlation: float) -> Alignment:
        """The board's shift (of its centre: rotation about the centre does not count as shift) and
        angle (degrees counter-clockwise, as cv2.getRotationMatrix2D counts them) for a full warp."""
        angle = math.degrees(math.atan2(float(full[0, 1]), float(full[0, 0])))
        centre = np.array([(self.width - 1) / 2, (self.height - 1) / 2], np.float64)
        moved = full[:, :2].astype(np.float64) @ centre + full[:, 2] - centre
        return Alignment(float(moved[0]), float(moved[1]), angle, float(correlation))

    def _refusal(self, alignment: Alignment, failure: str) -> str | None:
        """Why a board found at `alignment` is refused (the first broken rule), or None."""
        correlation, shift, angle = alignment.correlation, math.hypot(alignment.dx, alignment.dy), alignment.angle
        if correlation < 0.0:
            return f"the board does not match the reference design (alignment did not converge: {failure})"
        if correlation < self.spec.min_correlation:
            return (f"the board does not match the reference design (correlation {correlation:.2f} after alignment, "
                    f"good boards >= {self.spec.min_correlation:.2f}): another design, a board turned round, or "
                    "something covering it")
        if shift > self.spec.max_shift_px:
            return f"the board sits {shift:.1f} px from the reference position (fixture allows {self.spec.max_shift_px:.1f} px)"
        if abs(angle) > self.spec.max_angle_deg:
            return f"the board is turned {angle:.1f} degrees from the reference (fixture allows {self.spec.max_angle_deg:.1f})"
        return None

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
        reference far more than elsewhere (residual over median + OUTLIER_MADS x MAD, smoothed so thin
        edge residue does not count), and the share of the reduced board the largest covers."""
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
        (what training's `decide` sets the second pass's line from)."""
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
        converge or fits worse.

        A large object on the board (a part moved far, a missing IC, a hand) pulls ECC towards itself:
        all the board's pixels weigh alike. So blobs where the board differs from the reference far more
        than anywhere else (`_outlier_blobs`) are masked out, but only when the largest is larger than
        any good training board showed: masking thin residue on every board drops edge pixels that
        carry the alignment (docs/results.md, "Registration constants")."""
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
        return self._light.normalise(image)

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

