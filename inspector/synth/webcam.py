"""The webcam camera model (`render_board(..., camera="webcam")`, `inspector samples --camera webcam`).

A webcam on a stand over the fixture sees more than the fixed line camera: glints on solder joints,
pins and cans that move with the light, through-hole parts that lean differently on every board,
white parts that clip, a camera that sits a little differently over the fixture (the bench slides
into view at the frame's edge), more sensor noise, a defocus that varies and JPEG compression. All
of it is added on top of the fixture mode (`fixture=True`), whose output it never changes.

Every size is in `WEBCAM` (one place); design units are 1/100 of the board's side, which fills 88%
of the frame in a fixture: 1 unit = 4.5 px on a 512 px frame, 5.6 px on a 640 px one.

This module holds the sizes, the per-board draws (`leans`, `webcam_shot`) and what the camera itself
adds (its pose, the bench, JPEG); the through-hole parts and the glint sites are in
`webcam_parts.py`, what the lamp does to them (overexposure, glints) in `webcam_light.py`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from inspector.synth.draw import Placement
from inspector.synth.webcam_parts import FAR_LEANING, THROUGH_HOLE, glint_sites

CAMERAS = ("line", "webcam")  # "line": the fixed line camera of generator 1.3 (byte-identical output)
WEBCAM_MODEL_VERSION = 1


@dataclass(frozen=True)
class WebcamParams:
    """How large each webcam phenomenon is, and why (from real webcam frames of an assembled board)."""

    # Lighting direction: two set-ups (the same two white balances as LIGHTING_SETUPS); each lights
    # from its own side, and the lamp is moved a little between boards. Degrees, image frame
    # (0 = from the right, 90 = from below).
    light_azimuth_deg: tuple[float, float] = (225.0, 20.0)
    light_jitter_deg: float = 25.0
    # Glints (specular highlights) on solder joints, pins, header pins, plated holes and can tops:
    # light added before exposure, in grey levels (a pin is ~190, so most glints clip at 255). Real
    # good frames show glint regions of 100-400 px on a 640 px frame at 1.5-2.7x the region line.
    glint_peak: float = 230.0
    glint_gain: tuple[float, float] = (0.7, 1.3)  # per board: how hard the lamp hits (distance, angle)
    glint_lobe_deg: float = 40.0  # a facet glints when it faces the lamp within about this angle
    row_jitter_deg: float = 35.0  # per board: a row of joints (one solder wave) faces a little differently
    site_jitter_deg: float = 20.0  # per board and joint: every fillet is shaped differently
    glint_offset: float = 0.4  # the glint sits this share of the joint's radius toward the lamp
    glint_blur_units: float = 0.12  # softness of a glint's core (the optics blur comes on top)
    # A glint's halo (the lens blooms around a clipped highlight): this radius (units; 1.5 = 7 px at
    # 512, 8.4 px at 640, so one glinting joint reads as a bright patch of about 100-250 px on a 640 px
    # frame, a glinting row as a longer one) at this share of the core's light.
    halo_units: float = 1.5
    halo_share: float = 0.6
    # Lean of through-hole parts (radial caps, disc cap, coil): the top moves against its leads, a
    # few px on every board (0.6 units sd = 2.7 px at 512, 3.4 px at 640; at most 1.5 units = 7-8 px).
    lean_sd_units: float = 0.6
    lean_max_units: float = 1.5
    # ... and about 1 good board in 12 has the large disc capacitor leaning far (rare good variation):
    # 2.5-3.5 units = 11-16 px at 512, 14-20 px at 640, across its face.
    far_lean_chance: float = 1 / 12
    far_lean_units: tuple[float, float] = (2.5, 3.5)
    # Overexposed white parts (white connector, yellow coil, electrolytic tops): lit up to this share
    # above their colour toward the lamp, so they clip at 255 over an area that grows with exposure.
    white_boost: float = 0.4
    # Camera over the fixture: the webcam stand sits a little differently (share of the side: 0.8% =
    # 4 px at 512, 5 px at 640, with the fixture play on top), and the bench shows where the plate
    # ends, this share of the side inside the frame's edge.
    shake: float = 0.008
    shake_angle_deg: float = 0.35
    bench_margin: float = 0.008
    # Sensor: noise (grey levels sd; the line camera's is 0.7-1.5), defocus (Gaussian sigma in px
    # on a 640 px frame, scaled to the size: 0.56-0.92 px at 512; the line camera's is 0.35-0.75 px
    # whatever the size) and the webcam's JPEG quality (4:2:0 chroma). (Measured first with noise
    # 2.0-3.5, defocus 0.9-1.4 and quality 70-88: today's defaults gave image AUROC 0.59; with these
    # softer values 0.59 again: glints, leans and light decide it, not the sensor. sample_boards/README.md)
    noise_std: tuple[float, float] = (1.5, 3.0)
    defocus_sigma_640: tuple[float, float] = (0.7, 1.15)
    jpeg_quality: tuple[int, int] = (75, 92)

    def describe(self) -> dict:
        return {"model": "webcam", "version": WEBCAM_MODEL_VERSION, **asdict(self)}


WEBCAM = WebcamParams()


# --- per-board draws ---------------------------------------------------------------------------------

def leans(rng: np.random.Generator) -> dict[str, Placement]:
    """Where the top of every leaning part sits against its leads on this board (dx, dy in units)."""
    out: dict[str, Placement] = {}
    for part in THROUGH_HOLE:
        if not part.leans:
            continue
        dx, dy = np.clip(rng.normal(0.0, WEBCAM.lean_sd_units, 2), -WEBCAM.lean_max_units, WEBCAM.lean_max_units)
        far = rng.random() < WEBCAM.far_lean_chance
        reach = rng.uniform(*WEBCAM.far_lean_units) * (1 if rng.random() < 0.5 else -1)
        if part.kind == "disc":
            dx *= 0.35  # a disc leans over its face, hardly along it
            if far and part.ref == FAR_LEANING:
                dy = reach
        out[part.ref] = Placement(float(dx), float(dy), 0.0)
    return out


@dataclass(frozen=True)
class WebcamShot:
    """Per-board draws of the webcam model that every rendering of the board (with or without its
    defect) must share: the light, every glint site's response, the camera's pose and its sensor."""

    setup: int
    light_azimuth: float  # radians
    glint_gain: float
    site_jitter: np.ndarray  # radians, per glint site (the full list, whatever is missing)
    site_strength: np.ndarray  # 0-1 per site
    site_size: np.ndarray  # share of the site's radius
    shake: tuple[float, float, float]  # dx, dy (px), angle (degrees)
    blur_sigma: float
    noise_std: float
    jpeg_quality: int


def webcam_shot(rng: np.random.Generator, setup: int, width: int, height: int) -> WebcamShot:
    sites = glint_sites()
    rows = sorted({s.row for s in sites})
    row_jitter = dict(zip(rows, rng.normal(0.0, math.radians(WEBCAM.row_jitter_deg), len(rows))))
    per_site = rng.normal(0.0, math.radians(WEBCAM.site_jitter_deg), len(sites))
    jitter = np.asarray([row_jitter[s.row] for s in sites]) + per_site
    side = min(width, height)
    reach = WEBCAM.shake * side
    azimuth = math.radians(WEBCAM.light_azimuth_deg[setup] + rng.normal(0.0, WEBCAM.light_jitter_deg))
    return WebcamShot(
        setup=setup, light_azimuth=azimuth, glint_gain=float(rng.uniform(*WEBCAM.glint_gain)),
        site_jitter=jitter, site_strength=rng.uniform(0.4, 1.0, len(sites)), site_size=rng.uniform(0.6, 1.0, len(sites)),
        shake=(float(rng.uniform(-reach, reach)), float(rng.uniform(-reach, reach)),
               float(rng.uniform(-WEBCAM.shake_angle_deg, WEBCAM.shake_angle_deg))),
        blur_sigma=float(rng.uniform(*WEBCAM.defocus_sigma_640) * side / 640.0),
        noise_std=float(rng.uniform(*WEBCAM.noise_std)),
        jpeg_quality=int(rng.integers(WEBCAM.jpeg_quality[0], WEBCAM.jpeg_quality[1] + 1)),
    )


# --- camera over the fixture, bench, JPEG --------------------------------------------------------------

def bench(width: int, height: int) -> np.ndarray:
    """The bench the fixture stands on (grey-blue ESD mat, mottled, a cable), float32 HxWx3."""
    rng = np.random.default_rng(20413)
    out = np.empty((height, width, 3), np.float32)
    out[:] = (104.0, 98.0, 90.0)
    coarse = cv2.resize(rng.standard_normal((8, 8)).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    out += (coarse * 10.0 + rng.standard_normal((height, width)).astype(np.float32) * 3.0)[..., None]
    side = min(width, height)
    for _ in range(2):
        y = float(rng.uniform(0.1, 0.9)) * height
        pts = np.asarray([[0, y], [width * 0.5, y + rng.uniform(-0.2, 0.2) * side], [width, y]], np.int32)
        cv2.polylines(out, [pts], False, (30.0, 30.0, 34.0), max(2, side // 60), cv2.LINE_AA)
    return out


def with_bench(plate: np.ndarray) -> np.ndarray:
    """The fixture plate, ending `bench_margin` inside the frame's edge, on the bench."""
    height, width = plate.shape[:2]
    inset = int(round(WEBCAM.bench_margin * min(width, height)))
    out = bench(width, height)
    out[inset:height - inset, inset:width - inset] = plate[inset:height - inset, inset:width - inset]
    return out


def shake_matrix(shot: WebcamShot, width: int, height: int) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), shot.shake[2], 1.0)
    matrix[:, 2] += shot.shake[:2]
    return matrix


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR image
        raise RuntimeError("JPEG encoding failed")
    return cv2.imdecode(encoded, cv2.IMREAD_COLOR)
