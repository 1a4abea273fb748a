"""The webcam camera model (`render_board(..., camera="webcam")`, `inspector samples --camera webcam`).

A webcam on a stand over the fixture sees more than the fixed line camera: glints on solder joints,
pins and cans that move with the light, through-hole parts that lean differently on every board,
white parts that clip, a camera that sits a little differently over the fixture (the bench slides
into view at the frame's edge), more sensor noise, a defocus that varies and JPEG compression. All
of it is added on top of the fixture mode (`fixture=True`), whose output it never changes.

Every size is in `WEBCAM` (one place); design units are 1/100 of the board's side, which fills 88%
of the frame in a fixture: 1 unit = 4.5 px on a 512 px frame, 5.6 px on a 640 px one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

from inspector.synth.draw import (
    CAN_METAL,
    DRILL,
    PLASTIC,
    SILK,
    SOLDER,
    Canvas,
    Placement,
    circle,
    fill_poly,
    local_to_board,
    polyline,
    rect,
    shade,
)
from inspector.synth.layout import Component, Design, Point, board_design

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


# --- the through-hole parts the webcam design adds (design units) ---------------------------------

@dataclass(frozen=True)
class ThroughHole:
    ref: str
    kind: str  # "radial" (electrolytic), "coil" (yellow-taped drum), "disc" (ceramic), "white_connector",
    #            "pin_header" (tin pins), "plated_row" (unpopulated plated holes)
    center: Point
    size: Point  # radial / coil: (diameter, diameter); disc: (diameter, thickness); others: (w, h)
    pitch: float = 0.0  # lead or pin pitch
    pins: int = 2
    leans: bool = False

    def component(self) -> Component:
        """As a layout component (for defect planning: missing parts, keeping breaks out from under it)."""
        return Component(self.ref, self.kind, self.center, self.size, 0.0, (), ())


THROUGH_HOLE: tuple[ThroughHole, ...] = (
    ThroughHole("C20", "radial", (14.0, 19.0), (6.4, 6.4), pitch=2.5, leans=True),
    ThroughHole("C21", "radial", (56.0, 26.0), (5.2, 5.2), pitch=2.0, leans=True),
    ThroughHole("L1", "coil", (11.0, 48.0), (7.2, 7.2), pitch=3.0, leans=True),
    ThroughHole("C22", "disc", (58.0, 43.0), (7.5, 2.2), pitch=5.0, leans=True),
    ThroughHole("J2", "white_connector", (90.0, 50.0), (6.0, 15.5), pitch=3.0, pins=5),
    ThroughHole("J3", "pin_header", (93.0, 22.0), (3.2, 16.4), pitch=4.0, pins=4),
    ThroughHole("TP1", "plated_row", (41.0, 94.5), (26.0, 2.4), pitch=4.0, pins=7),
)
TALL = {"radial": 11.0, "coil": 8.0, "disc": 10.0}  # height above the board (units), for shadows
FAR_LEANING = "C22"
SLEEVE = (78, 50, 34)
COIL_YELLOW = (40, 200, 232)
COIL_CORE = (52, 54, 58)
DISC_FACE = (34, 104, 188)
WHITE = (226, 232, 234)
TIN = (182, 186, 188)


@lru_cache(maxsize=2)
def webcam_design(design_seed: int) -> Design:
    """The line's design plus the through-hole parts (used to plan defects on the webcam's boards)."""
    base = board_design(design_seed)
    return Design(base.components + tuple(p.component() for p in THROUGH_HOLE), base.traces, base.vias,
                  base.labels, base.outlines, base.fiducials, base.mounting_holes, base.pours)


def _pin_centers(part: ThroughHole) -> list[Point]:
    cx, cy = part.center
    offsets = [(i - (part.pins - 1) / 2) * part.pitch for i in range(part.pins)]
    if part.kind == "plated_row" or part.kind in TALL:
        return [(cx + o, cy) for o in offsets]
    return [(cx, cy + o) for o in offsets]  # connector and header stand vertically in the frame


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


# --- glint sites --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GlintSite:
    ref: str
    offset: Point  # in the part's frame (SMD parts) or the top's centre offset (through-hole)
    radius: float  # units
    shape: str  # "spot", "crescent" (a plated ring), "streak" (a can's embossed top)
    row: str  # sites of one row (one side of an IC, one header) face alike
    facet: float  # radians: where this site's facet faces on an average board
    symmetric: bool = False  # round (ring, can): glints whatever the lamp's side, where it faces the lamp


@lru_cache(maxsize=1)
def glint_sites() -> tuple[GlintSite, ...]:
    """Every shiny place of the webcam design, in a fixed order (per-board draws index into it)."""
    rng = np.random.default_rng(20412)
    sites: list[GlintSite] = []
    for comp in board_design().components:
        if comp.kind == "electrolytic":
            sites.append(GlintSite(comp.ref, (0.0, 0.0), comp.body[0] * 0.42, "streak", comp.ref, 0.0, True))
            continue
        per_row = {"qfp": 8, "soic": 7, "header": 8}.get(comp.kind, len(comp.terminals))
        facets = rng.uniform(-math.pi, math.pi, len(comp.terminals) // per_row + 1)
        for i, (off, size) in enumerate(comp.terminals):
            row = i // per_row
            radius = 0.55 if comp.kind == "header" else 0.5 * max(min(size), 0.6)
            sites.append(GlintSite(comp.ref, off, radius, "spot", f"{comp.ref}:{row}", float(facets[row])))
    for part in THROUGH_HOLE:
        if part.kind in ("radial",):
            sites.append(GlintSite(part.ref, (0.0, 0.0), part.size[0] / 2, "streak", part.ref, 0.0, True))
        elif part.kind == "plated_row":
            for c in _pin_centers(part):
                sites.append(GlintSite(part.ref, (c[0] - part.center[0], c[1] - part.center[1]), 1.1, "crescent",
                                       part.ref, 0.0, True))
        elif part.kind in ("pin_header", "white_connector"):
            facet = float(rng.uniform(-math.pi, math.pi))
            for c in _pin_centers(part):
                sites.append(GlintSite(part.ref, (c[0] - part.center[0], c[1] - part.center[1]),
                                       0.6 if part.kind == "pin_header" else 0.35, "spot", part.ref, facet))
    return tuple(sites)


# --- drawing -------------------------------------------------------------------------------------------

def _ring(center: Point, radius: float, n: int = 40) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], axis=1)


def _hull(*point_sets: np.ndarray) -> list[Point]:
    points = np.concatenate(point_sets).astype(np.float32)
    hull = cv2.convexHull(points)[:, 0, :]
    return [(float(x), float(y)) for x, y in hull]


def _round_rect(center: Point, size: Point) -> np.ndarray:
    """A rectangle with semicircular ends along x (a disc seen edge-on)."""
    half_w, half_h = size[0] / 2, size[1] / 2
    ends = [_ring((center[0] + s * (half_w - half_h), center[1]), half_h, 16) for s in (-1, 1)]
    return np.concatenate(ends)


def _top(part: ThroughHole, placement: Placement) -> Point:
    return part.center[0] + placement.dx, part.center[1] + placement.dy


def _silhouette(part: ThroughHole, placement: Placement) -> list[Point]:
    """What a tall part covers seen from above: the hull of its foot and its (leaning) top."""
    top = _top(part, placement)
    if part.kind == "disc":
        foot = (part.center[0] + placement.dx * 0.3, part.center[1] + placement.dy * 0.3)
        return _hull(_round_rect(foot, part.size), _round_rect(top, part.size))
    return _hull(_ring(part.center, part.size[0] / 2), _ring(top, part.size[0] / 2))


def draw_footprints(image: np.ndarray, canvas: Canvas) -> None:
    """Plated holes and silkscreen of the through-hole parts: on the board, whatever leans."""
    for part in THROUGH_HOLE:
        if part.kind == "plated_row":
            for c in _pin_centers(part):
                circle(image, canvas, c, 1.1, shade(SOLDER, 0.95))
                circle(image, canvas, c, 0.5, DRILL)
            continue
        if part.kind in TALL:
            for c in _pin_centers(part):
                circle(image, canvas, c, 0.85, SOLDER)
                circle(image, canvas, c, 0.4, DRILL)
            if part.kind == "disc":
                outline = [tuple(p) for p in _round_rect(part.center, (part.size[0] + 0.8, part.size[1] + 0.8))]
            else:
                outline = [tuple(p) for p in _ring(part.center, part.size[0] / 2 + 0.5)]
            polyline(image, canvas, outline, SILK, 0.3, closed=True)
        else:
            w, h = part.size[0] + 1.2, part.size[1] + 1.2
            polyline(image, canvas, rect(part.center, (w, h), 0.0), SILK, 0.3, closed=True)


def draw_parts(image: np.ndarray, canvas: Canvas, placements: dict, light_azimuth: float) -> None:
    """Shadows (away from the lamp, longer for taller parts), then every present through-hole part."""
    shadow = np.zeros(image.shape[:2], np.uint8)
    away = (-math.cos(light_azimuth), -math.sin(light_azimuth))
    for part in THROUGH_HOLE:
        placement = placements.get(part.ref, Placement())
        if placement is None or part.kind not in TALL and part.kind != "white_connector":
            continue
        reach = 0.08 * TALL.get(part.kind, 5.0)
        shifted = Placement(placement.dx + away[0] * reach, placement.dy + away[1] * reach)
        poly = (_silhouette(part, shifted) if part.kind in TALL
                else rect((part.center[0] + away[0] * reach, part.center[1] + away[1] * reach), part.size, 0.0))
        fill_poly(shadow, canvas, poly, 255)
    soft = cv2.GaussianBlur(shadow, (0, 0), max(0.6, 0.6 * canvas.unit)).astype(np.float32) * (0.5 / 255.0)
    np.multiply(image, (1.0 - soft)[..., None], out=image, casting="unsafe")
    for part in THROUGH_HOLE:
        placement = placements.get(part.ref, Placement())
        if placement is None:
            continue
        _draw_part(image, canvas, part, placement)


def _draw_part(image: np.ndarray, canvas: Canvas, part: ThroughHole, placement: Placement) -> None:
    top = _top(part, placement)
    if part.kind in ("radial", "coil"):
        sleeve = SLEEVE if part.kind == "radial" else shade(COIL_YELLOW, 0.8)
        fill_poly(image, canvas, _silhouette(part, placement), sleeve)
        r = part.size[0] / 2
        if part.kind == "radial":
            circle(image, canvas, top, r, shade(SLEEVE, 1.3))
            circle(image, canvas, top, r * 0.84, CAN_METAL)
            for a, b in (((-0.45 * r, 0.0), (0.45 * r, 0.0)), ((0.0, -0.45 * r), (0.0, 0.45 * r))):
                polyline(image, canvas, [(top[0] + a[0], top[1] + a[1]), (top[0] + b[0], top[1] + b[1])],
                         shade(CAN_METAL, 0.7), 0.25)
        else:
            circle(image, canvas, top, r, COIL_YELLOW)
            circle(image, canvas, top, r * 0.35, COIL_CORE)
    elif part.kind == "disc":
        fill_poly(image, canvas, _silhouette(part, placement), shade(DISC_FACE, 0.85))
        fill_poly(image, canvas, [tuple(p) for p in _round_rect(top, part.size)], DISC_FACE)
        face = (part.center[0] + placement.dx * 0.65, part.center[1] + placement.dy * 0.65)
        if abs(placement.dy) > 1.0:  # leaning over: its printed face shows
            polyline(image, canvas, [(face[0] - 1.5, face[1]), (face[0] + 1.5, face[1])], shade(DISC_FACE, 0.5), 0.4)
    elif part.kind == "white_connector":
        fill_poly(image, canvas, rect(part.center, part.size, 0.0), WHITE)
        fill_poly(image, canvas, rect((part.center[0] + 0.6, part.center[1]), (part.size[0] - 2.4, part.size[1] - 1.4),
                                      0.0), shade(WHITE, 0.9))
        for c in _pin_centers(part):
            fill_poly(image, canvas, rect((c[0] + 0.6, c[1]), (1.6, 1.6), 0.0), (58, 58, 60))
            fill_poly(image, canvas, rect((c[0] + 0.6, c[1]), (0.7, 0.7), 0.0), TIN)
    elif part.kind == "pin_header":
        fill_poly(image, canvas, rect(part.center, part.size, 0.0), PLASTIC)
        for c in _pin_centers(part):
            fill_poly(image, canvas, rect(c, (1.9, 1.9), 0.0), shade(PLASTIC, 1.5))
            fill_poly(image, canvas, rect(c, (1.2, 1.2), 0.0), TIN)


def _site_center(site: GlintSite, placements: dict, parts: dict[str, Component | ThroughHole]) -> Point | None:
    owner = parts[site.ref]
    placement = placements.get(site.ref, Placement())
    if placement is None:
        return None
    if isinstance(owner, ThroughHole):
        if owner.leans:  # a can top leans with the part
            return owner.center[0] + placement.dx + site.offset[0], owner.center[1] + placement.dy + site.offset[1]
        return owner.center[0] + site.offset[0], owner.center[1] + site.offset[1]
    return local_to_board(owner, placement, site.offset)


def _white_tops(placements: dict) -> list[tuple[list[Point], Point, float, tuple[int, int, int]]]:
    """(outline, centre, radius, colour) of every white or metal top that overexposes."""
    tops = []
    for comp in board_design().components:
        placement = placements.get(comp.ref, Placement())
        if comp.kind == "electrolytic" and placement is not None:
            center = local_to_board(comp, placement, (0.0, 0.0))
            r = comp.body[0] * 0.42
            tops.append(([tuple(p) for p in _ring(center, r)], center, r, CAN_METAL))
    for part in THROUGH_HOLE:
        placement = placements.get(part.ref, Placement())
        if placement is None:
            continue
        if part.kind in ("radial", "coil"):
            center, r = _top(part, placement), part.size[0] / 2 * (0.84 if part.kind == "radial" else 1.0)
            colour = CAN_METAL if part.kind == "radial" else COIL_YELLOW
            tops.append(([tuple(p) for p in _ring(center, r)], center, r, colour))
        elif part.kind == "white_connector":
            tops.append((rect(part.center, part.size, 0.0), part.center, max(part.size) / 2, WHITE))
    return tops


def light_up(image: np.ndarray, canvas: Canvas, placements: dict, shot: WebcamShot) -> np.ndarray:
    """uint8 drawing -> float32 radiance with the white parts' overexposure and the glints on top."""
    out = image.astype(np.float32)
    toward = np.asarray([math.cos(shot.light_azimuth), math.sin(shot.light_azimuth)], np.float32)
    for outline, center, radius, colour in _white_tops(placements):
        pts = canvas.fixed(outline)
        x0, y0 = np.maximum(pts.min(axis=0) // 16 - 2, 0)
        x1, y1 = np.minimum(pts.max(axis=0) // 16 + 3, (canvas.width, canvas.height))
        if x1 <= x0 or y1 <= y0:
            continue
        cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(cover, [pts - np.asarray([x0 * 16, y0 * 16], np.int32)], 255, cv2.LINE_AA, 4)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        cx, cy = canvas.px(center)
        along = ((xs - cx) * toward[0] + (ys - cy) * toward[1]) / max(1.0, radius * canvas.unit)
        lit = np.clip(0.5 + 0.5 * along, 0.0, 1.0) * (cover.astype(np.float32) / 255.0) * WEBCAM.white_boost
        out[y0:y1, x0:x1] += lit[..., None] * np.asarray(colour, np.float32)
    glints = np.zeros(image.shape[:2], np.uint8)
    halos = np.zeros(image.shape[:2], np.uint8)
    parts: dict[str, Component | ThroughHole] = {c.ref: c for c in board_design().components}
    parts.update({p.ref: p for p in THROUGH_HOLE})
    lobe = math.radians(WEBCAM.glint_lobe_deg)
    for index, site in enumerate(glint_sites()):
        found = _site_center(site, placements, parts)
        if found is None:
            continue
        center = found
        if site.symmetric:
            response = 1.0
        else:
            facing = site.facet + shot.site_jitter[index] - shot.light_azimuth
            facing = (facing + math.pi) % (2 * math.pi) - math.pi
            response = math.exp(-0.5 * (facing / lobe) ** 2)
        level = WEBCAM.glint_peak * shot.glint_gain * response * shot.site_strength[index]
        if level < 8.0:
            continue
        level = min(255.0, level)
        radius = site.radius * shot.site_size[index]
        circle(halos, canvas, center, WEBCAM.halo_units * shot.site_size[index], level * WEBCAM.halo_share)
        jitter = shot.site_jitter[index] if site.symmetric else 0.0
        angle = shot.light_azimuth + 0.5 * jitter
        direction = (math.cos(angle), math.sin(angle))
        if site.shape == "crescent":
            cx, cy = canvas.px(center)
            r = int(round(site.radius * 0.8 * canvas.unit * 16))
            cv2.ellipse(glints, (int(round(cx * 16)), int(round(cy * 16))), (r, r), math.degrees(angle), -40, 40,
                        level, max(1, int(round(0.35 * canvas.unit))), cv2.LINE_AA, 4)
            continue
        spot = (center[0] + direction[0] * site.radius * WEBCAM.glint_offset,
                center[1] + direction[1] * site.radius * WEBCAM.glint_offset)
        if site.shape == "streak":
            sx, sy = canvas.px((center[0] + direction[0] * site.radius * 0.45,
                                center[1] + direction[1] * site.radius * 0.45))
            axes = (int(round(site.radius * 0.55 * canvas.unit * 16)), int(round(site.radius * 0.16 * canvas.unit * 16)))
            cv2.ellipse(glints, (int(round(sx * 16)), int(round(sy * 16))), axes, math.degrees(angle) + 90.0, 0, 360,
                        level * 0.8, -1, cv2.LINE_AA, 4)
            continue
        circle(glints, canvas, spot, max(0.25, radius), level)
    soft = cv2.GaussianBlur(glints, (0, 0), max(0.5, WEBCAM.glint_blur_units * canvas.unit)).astype(np.float32)
    bloom = cv2.GaussianBlur(halos, (0, 0), 0.4 * WEBCAM.halo_units * canvas.unit).astype(np.float32)
    out += (soft * 1.6 + bloom)[..., None]  # the blur spreads a glint's core; 1.6 brings its peak back
    return out


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
