"""One board as the line camera sees it, optionally with one defect and its exact mask.

Every random choice for a board comes from its own seed key, split into independent streams
(part placement, camera, defect), so the same board can be rendered with and without its defect
and differ only where the defect is. The mask is the set of output pixels the defect changes
before blur and sensor noise, dilated by one pixel to cover the blur.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from inspector.synth import webcam, webcam_light, webcam_parts
from inspector.synth.defects import DEFECT_TYPES, SIZE_CLASSES, DefectPlan, plan_defect
from inspector.synth.draw import Canvas, Placement, bare_board, draw_components
from inspector.synth.layout import BOARD_UNITS, DESIGN_SEED, board_design

MASK_THRESHOLD = 12  # grey levels (any channel) a defect must change a pixel by to be in the mask
MIN_MASK_AREA = 3  # pixels; a planned defect that changes less is re-planned
SUPERSAMPLE_UP_TO = 640  # images up to this side are drawn at 2x and downscaled (cleaner small parts)


@dataclass
class RenderedBoard:
    image: np.ndarray  # uint8 HxWx3 BGR
    mask: np.ndarray | None  # uint8 HxW 0/255 for a defective board, else None
    defect: str | None
    size_class: str | None = None
    bbox: tuple[int, int, int, int] | None = None  # x, y, width, height of the mask
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CameraShot:
    """Per-board line variation of the fixtured camera."""

    shift: tuple[float, float]
    angle: float
    gain: float
    white_balance: tuple[float, float, float]  # per-channel (B, G, R) gain of the lamp/sensor drift
    offset: float
    gradient: tuple[float, float]
    vignette: float
    blur_sigma: float
    noise_std: float


def _placements(rng: np.random.Generator, out_unit: float) -> dict[str, Placement]:
    """Pick-and-place tolerance: about a third of a pixel, capped at 1.5 px, and a fraction of a degree."""
    placements = {}
    for comp in board_design(DESIGN_SEED).components:
        dx, dy = np.clip(rng.normal(0.0, 0.4, 2), -1.5, 1.5) / out_unit
        dangle = float(np.clip(rng.normal(0.0, 0.35), -1.0, 1.0))
        placements[comp.ref] = Placement(float(dx), float(dy), dangle)
    return placements


# Two lighting set-ups of the line (as seen on real line frames: the board's mean colour moved
# from about (B, G, R) = (150, 145, 38) to (122, 142, 55) between them): per-channel gains.
LIGHTING_SETUPS = ((1.0, 1.0, 1.0), (0.84, 0.98, 1.3))


def _camera_shot(rng: np.random.Generator, width: int, height: int) -> CameraShot:
    # Fixture play: up to ~1.6% of the side (10 px on a 640 px frame, as on real line frames).
    reach = max(1.5, 0.016 * min(width, height))
    setup = np.asarray(LIGHTING_SETUPS[int(rng.integers(len(LIGHTING_SETUPS)))])
    return CameraShot(
        shift=(float(rng.uniform(-reach, reach)), float(rng.uniform(-reach, reach))),
        angle=float(rng.uniform(-0.7, 0.7)),
        gain=float(rng.uniform(0.9, 1.1)),
        white_balance=tuple(float(g) for g in setup * rng.uniform(0.97, 1.03, 3)),  # type: ignore[arg-type]
        offset=float(rng.uniform(-10, 10)),
        gradient=(float(rng.uniform(-0.12, 0.12)), float(rng.uniform(-0.12, 0.12))),
        vignette=float(rng.uniform(0.05, 0.18)),
        blur_sigma=float(rng.uniform(0.35, 0.75)),
        noise_std=float(rng.uniform(0.7, 1.5)),
    )


def _draw(width: int, height: int, placements: dict, plan: DefectPlan | None,
          cam: webcam.WebcamShot | None = None) -> np.ndarray:
    """The board at the drawing resolution: uint8, or for the webcam float32 radiance (glints and
    overexposed white parts above 255, clipped by the sensor)."""
    canvas = Canvas(width, height)
    board, _ = bare_board(width, height)
    image = board.copy()
    if plan is not None:
        placements = {**placements, **plan.placements}
    if cam is not None:
        webcam_parts.draw_footprints(image, canvas)
    draw_components(image, canvas, board_design(DESIGN_SEED), placements)
    if cam is not None:
        webcam_parts.draw_parts(image, canvas, placements, cam.light_azimuth)
    if plan is not None and plan.paint is not None:
        plan.paint(image, canvas)
    if cam is not None:
        return webcam_light.light_up(image, canvas, placements, cam)
    return image


# In a fixture the board fills this share of the frame, and the camera sees the fixture
# around it (the fixture stays put while the board moves in it by the fixture play).
FIXTURE_BOARD_SCALE = 0.88


@functools.lru_cache(maxsize=4)
def _fixture_parts(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fixture plate around the board, float32 HxWx3; clamp layer; clamp coverage 0-1), fixed in the
    camera's frame: anodised plate with brushed texture and locating pins, two clamps that overlap the
    board's left and right edges."""
    rng = np.random.default_rng(20411)
    plate = np.empty((height, width, 3), np.float32)
    plate[:] = (62.0, 58.0, 54.0)
    brushed = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), sigmaX=12.0, sigmaY=0.6)
    plate += (brushed * 40.0)[..., None]
    side = min(width, height)
    margin = (1.0 - FIXTURE_BOARD_SCALE) / 2
    for fx, fy in ((margin * 0.5, margin * 0.5), (1 - margin * 0.5, margin * 0.5), (margin * 0.5, 1 - margin * 0.5),
                   (1 - margin * 0.5, 1 - margin * 0.5)):
        centre = (int(round(fx * width)), int(round(fy * height)))
        cv2.circle(plate, centre, max(2, int(0.018 * side)), (150.0, 152.0, 155.0), -1, cv2.LINE_AA)
        cv2.circle(plate, centre, max(1, int(0.009 * side)), (40.0, 40.0, 42.0), -1, cv2.LINE_AA)
    clamps = np.zeros((height, width, 3), np.float32)
    cover = np.zeros((height, width), np.float32)
    clamp_w, clamp_h, overlap = 0.055 * width, 0.11 * height, 0.014 * width
    for left in (margin * width - clamp_w + overlap, (1 - margin) * width - overlap):
        x0, y0 = int(round(left)), int(round(height / 2 - clamp_h / 2))
        x1, y1 = int(round(left + clamp_w)), int(round(height / 2 + clamp_h / 2))
        cv2.rectangle(clamps, (x0, y0), (x1, y1), (128.0, 131.0, 134.0), -1)
        cv2.rectangle(clamps, (x0 + 2, y0 + 2), (x1 - 2, y1 - 2), (108.0, 110.0, 113.0), 1)
        cv2.rectangle(cover, (x0, y0), (x1, y1), 1.0, -1)
    return plate, clamps, cv2.GaussianBlur(cover, (0, 0), 0.6)[..., None]


@functools.lru_cache(maxsize=4)
def _webcam_surround(width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The fixture parts with the bench showing past the plate's edge (the webcam's frame)."""
    plate, clamps, cover = _fixture_parts(width, height)
    return webcam.with_bench(plate), clamps, cover


def _optics(drawn: np.ndarray, width: int, height: int, shot: CameraShot, fixture: bool = False,
            cam: webcam.WebcamShot | None = None) -> np.ndarray:
    """Downscale to the sensor and apply the fixture's shift and rotation (uint8 in, float32 out). In
    a fixture the board is smaller than the frame and composited into the fixture around it. A webcam
    (`cam`) also sits a little differently over the fixture, board and fixture alike."""
    if drawn.shape[1] != width or drawn.shape[0] != height:
        drawn = cv2.resize(drawn, (width, height), interpolation=cv2.INTER_AREA)
    scale = FIXTURE_BOARD_SCALE if fixture else 1.0
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), shot.angle, scale)
    matrix[:, 2] += shot.shift
    if cam is not None:
        shake = webcam.shake_matrix(cam, width, height)
        matrix = shake @ np.vstack([matrix, (0.0, 0.0, 1.0)])
    if not fixture:
        return cv2.warpAffine(drawn.astype(np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT_101)
    board = cv2.warpAffine(drawn.astype(np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT)
    inside = cv2.warpAffine(np.ones((height, width), np.float32), matrix, (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT)[..., None]
    if cam is None:
        plate, clamps, cover = _fixture_parts(width, height)
    else:
        plate, clamps, cover = _webcam_surround(width, height)
        shake = webcam.shake_matrix(cam, width, height)
        plate = cv2.warpAffine(plate, shake, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        clamps = cv2.warpAffine(clamps, shake, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        cover = cv2.warpAffine(cover, shake, (width, height), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)[..., None]
    framed = board * inside + plate * (1.0 - inside)
    return framed * (1.0 - cover) + clamps * cover


def _sensor(image: np.ndarray, shot: CameraShot, rng: np.random.Generator, fixture: bool = False) -> np.ndarray:
    """Lighting gradient, exposure, (in a fixture) the lamp's glare, lens blur and sensor noise -> uint8."""
    height, width = image.shape[:2]
    ys = (np.arange(height, dtype=np.float32) / max(1, height - 1) - 0.5)[:, None]
    xs = (np.arange(width, dtype=np.float32) / max(1, width - 1) - 0.5)[None, :]
    light = shot.gain * (1 + shot.gradient[0] * xs + shot.gradient[1] * ys - shot.vignette * (xs * xs + ys * ys))
    lit = image * (light[..., None] * np.asarray(shot.white_balance, np.float32)) + shot.offset
    if fixture:
        # The lamp's reflection: fixed in the frame, so the board moves under it; its core is
        # overexposed (clipped), its strength follows the exposure.
        radius = 0.03 * min(width, height)
        glare = np.exp(-((xs - 0.12) ** 2 * width ** 2 + (ys + 0.2) ** 2 * height ** 2) / (2 * radius ** 2))
        lit += (glare * (220.0 * shot.gain))[..., None].astype(np.float32)
    lit = cv2.GaussianBlur(lit, (0, 0), shot.blur_sigma)
    # demosaiced sensor noise is mostly shared by the three channels, with a little colour noise
    shared = rng.standard_normal((height, width, 1), dtype=np.float32) * np.float32(shot.noise_std)
    colour = rng.standard_normal(lit.shape, dtype=np.float32) * np.float32(shot.noise_std * 0.35)
    lit += shared + colour
    return np.clip(np.rint(lit), 0, 255).astype(np.uint8)


def _webcam_shot(root: np.random.SeedSequence, shot: CameraShot, width: int,
                 height: int) -> tuple[dict[str, Placement], webcam.WebcamShot, CameraShot]:
    """The webcam's own draws (from a fifth stream of the board's seed, so the line camera's four
    are untouched): the leaning parts, the light and glints, the camera's pose and its sensor."""
    lean_seq, light_seq = root.spawn(1)[0].spawn(2)
    balance = np.asarray(shot.white_balance)
    setup = int(np.argmin([np.abs(balance - np.asarray(s)).sum() for s in LIGHTING_SETUPS]))
    cam = webcam.webcam_shot(np.random.default_rng(light_seq), setup, width, height)
    return webcam.leans(np.random.default_rng(lean_seq)), cam, replace(shot, blur_sigma=cam.blur_sigma,
                                                                       noise_std=cam.noise_std)


def _finish(image: np.ndarray, shot: CameraShot, rng: np.random.Generator, fixture: bool,
            cam: webcam.WebcamShot | None) -> np.ndarray:
    """The sensor, and for a webcam its JPEG compression."""
    pixels = _sensor(image, shot, rng, fixture)
    return pixels if cam is None else webcam.jpeg(pixels, cam.jpeg_quality)


def render_board(size: tuple[int, int], key: Sequence[int], defect: str | None = None, *,
                 size_class: str | None = None, with_defect: bool = True, fixture: bool = False,
                 camera: str = "line") -> RenderedBoard:
    """Render board `key` (e.g. (seed, split, index)) at `size` = (width, height).

    With `defect`, the board carries one defect of that type (size class drawn from the key unless
    given) and its mask; `with_defect=False` renders the very same board without it (for checks).
    `fixture`: the board lies in a fixture the camera sees around it, under a lamp whose glare clips.
    `camera`: "line" (the fixed line camera) or "webcam" (implies `fixture`; inspector/synth/webcam.py:
    glints, leaning through-hole parts, clipping white parts, camera pose, bench, noise, JPEG).
    """
    width, height = size
    if defect is not None and defect not in DEFECT_TYPES:
        raise ValueError(f"unknown defect type {defect!r}; known: {', '.join(DEFECT_TYPES)}")
    if size_class is not None and size_class not in SIZE_CLASSES:
        raise ValueError(f"unknown size class {size_class!r}; known: {', '.join(SIZE_CLASSES)}")
    if camera not in webcam.CAMERAS:
        raise ValueError(f"unknown camera {camera!r}; known: {', '.join(webcam.CAMERAS)}")
    root = np.random.SeedSequence(list(key))
    placement_seq, camera_seq, noise_seq, defect_seq = root.spawn(4)
    factor = 2 if max(width, height) <= SUPERSAMPLE_UP_TO else 1
    draw_w, draw_h = width * factor, height * factor
    out_unit = min(width, height) / BOARD_UNITS
    placements = _placements(np.random.default_rng(placement_seq), out_unit)
    shot = _camera_shot(np.random.default_rng(camera_seq), width, height)
    cam = None
    design = board_design(DESIGN_SEED)
    if camera == "webcam":
        fixture = True
        leaning, cam, shot = _webcam_shot(root, shot, width, height)
        placements = {**placements, **leaning}
        design = webcam_parts.webcam_design(DESIGN_SEED)
    clean = _optics(_draw(draw_w, draw_h, placements, None, cam), width, height, shot, fixture, cam)
    if defect is None:
        return RenderedBoard(_finish(clean, shot, np.random.default_rng(noise_seq), fixture, cam), None, None)

    defect_rng = np.random.default_rng(defect_seq)
    chosen_class = size_class or SIZE_CLASSES[int(defect_rng.integers(len(SIZE_CLASSES)))]
    for attempt in range(12):
        if attempt == 6 and chosen_class != SIZE_CLASSES[-1]:
            # a few pixels is below what some boards can show (a tiny break under blur): go one size up
            chosen_class = SIZE_CLASSES[SIZE_CLASSES.index(chosen_class) + 1]
        plan = plan_defect(defect, design, defect_rng, chosen_class, out_unit, placements)
        changed = _optics(_draw(draw_w, draw_h, placements, plan, cam), width, height, shot, fixture, cam)
        mask = (np.abs(changed - clean).max(axis=2) > MASK_THRESHOLD).astype(np.uint8) * 255
        if cv2.countNonZero(mask) >= MIN_MASK_AREA:
            break
    else:
        raise RuntimeError(f"could not place a visible {defect} defect on board {tuple(key)}")
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    x, y, w, h = cv2.boundingRect(mask)
    shown = changed if with_defect else clean
    image = _finish(shown, shot, np.random.default_rng(noise_seq), fixture, cam)
    return RenderedBoard(image, mask, defect, chosen_class, (int(x), int(y), int(w), int(h)),
                         {**plan.detail, "mask_area": int(cv2.countNonZero(mask))})
