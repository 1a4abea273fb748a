"""What the webcam's design adds and where it shines: the through-hole parts (their footprints, their
leaning bodies and shadows, drawn on the board) and every glint site of the design.

Part of the webcam camera model (inspector/synth/webcam.py); sizes are in design units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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


WhiteTop = tuple[list[Point], Point, float, tuple[int, int, int]]  # outline, centre, radius, colour


def white_tops(placements: dict) -> list[WhiteTop]:
    """(outline, centre, radius, colour) of every white or metal top that overexposes."""
    tops: list[WhiteTop] = []
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


