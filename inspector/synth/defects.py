"""The defect catalogue: each type plans its change from a seeded generator, then paints it.

A plan may change where parts are placed (missing or shifted parts) and/or paint over the
finished board (bridges, breaks, scratches, particles, burns). Sizes are chosen in output pixels
so "small" means a few pixels across whatever the image size. The ground-truth mask is not
drawn here: the renderer takes it from what the plan actually changed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from inspector.synth.draw import SOLDER, Canvas, Placement, bare_board, circle, fill_poly, local_to_board, polyline, shade
from inspector.synth.layout import Component, Design, Point

DEFECT_TYPES: tuple[str, ...] = ("missing_component", "shifted_component", "solder_bridge", "broken_trace",
                                 "scratch", "contamination", "burn")
SIZE_CLASSES = ("small", "medium", "large")

Painter = Callable[[np.ndarray, Canvas], None]


@dataclass
class DefectPlan:
    kind: str
    size_class: str
    placements: dict[str, Placement | None] = field(default_factory=dict)  # overrides of the normal placement
    paint: Painter | None = None
    detail: dict = field(default_factory=dict)


def _pick(rng: np.random.Generator, items: list):
    return items[int(rng.integers(len(items)))]


def _span(rng: np.random.Generator, size_class: str, small: tuple[float, float], medium: tuple[float, float],
          large: tuple[float, float]) -> float:
    low, high = {"small": small, "medium": medium, "large": large}[size_class]
    return float(rng.uniform(low, high))


def _missing(design: Design, rng, size_class: str, out_unit: float, placements) -> DefectPlan:
    # radial / disc / coil: the webcam design's through-hole parts (absent from the line's design, so
    # its choices are unchanged); whole parts gone change far more than their lean on good boards
    kinds = {"small": ("chip_r", "chip_c", "sot23"),
             "medium": ("chip_r", "chip_c", "sot23", "electrolytic", "radial", "disc"),
             "large": ("soic", "electrolytic", "qfp", "coil")}[size_class]
    comp = _pick(rng, [c for c in design.components if c.kind in kinds])
    return DefectPlan("missing_component", size_class, {comp.ref: None}, detail={"component": comp.ref})


def _shifted(design: Design, rng, size_class: str, out_unit: float, placements) -> DefectPlan:
    kinds = {"small": ("chip_r", "chip_c", "sot23"), "medium": ("chip_r", "chip_c", "sot23", "soic"),
             "large": ("soic", "qfp", "electrolytic", "header")}[size_class]
    comp: Component = _pick(rng, [c for c in design.components if c.kind in kinds])
    base = placements[comp.ref]
    # At least twice the placement tolerance of good boards (board._placements: at most 1.5 px), so a
    # shifted part is never within what good boards show: moved by this many output pixels, or turned
    # until its outermost corner moves that far.
    travel_px = _span(rng, size_class, (3.0, 4.0), (4.0, 5.5), (5.0, 8.0))
    if rng.random() < 0.5:
        distance = travel_px / out_unit
        direction = rng.uniform(0, 2 * math.pi)
        moved = Placement(base.dx + distance * math.cos(direction), base.dy + distance * math.sin(direction),
                          base.dangle)
    else:
        # Turning by t moves a point at radius r by 2 r sin(t / 2). (Generator 1.2 turned parts by 5-20
        # degrees whatever their size: a small chip's corners then moved about 1 px, inside good variation.)
        radius_px = corner_radius(comp) * out_unit
        turn = math.degrees(2 * math.asin(min(1.0, travel_px / (2 * radius_px))))
        turn = min(turn, MAX_TURN_DEG) * (1 if rng.random() < 0.5 else -1)
        moved = Placement(base.dx, base.dy, base.dangle + turn)
    return DefectPlan("shifted_component", size_class, {comp.ref: moved},
                      detail={"component": comp.ref, "dx": moved.dx - base.dx, "dy": moved.dy - base.dy,
                              "dangle": moved.dangle - base.dangle, "travel_px": round(travel_px, 2)})


MAX_TURN_DEG = 45.0  # a part turned further reads as misplaced by any measure; no need to go on


def corner_radius(comp: Component) -> float:
    """Distance (design units) from the part's centre to its outermost body or terminal corner."""
    corners = [(comp.body[0] / 2, comp.body[1] / 2)]
    corners += [(abs(ox) + sw / 2, abs(oy) + sh / 2) for (ox, oy), (sw, sh) in comp.terminals]
    return max(math.hypot(x, y) for x, y in corners)


def _blob(center: Point, radius: float, rng: np.random.Generator, vertices: int = 11,
          roughness: float = 0.35, stretch: float = 1.0) -> list[Point]:
    """An irregular closed outline around `center` (design units)."""
    angles = np.sort(rng.uniform(0, 2 * math.pi, vertices))
    radii = radius * (1 + roughness * rng.uniform(-1, 1, vertices))
    tilt = rng.uniform(0, math.pi)
    points = []
    for a, r in zip(angles, radii):
        x, y = r * math.cos(a) * stretch, r * math.sin(a)
        points.append((center[0] + x * math.cos(tilt) - y * math.sin(tilt),
                       center[1] + x * math.sin(tilt) + y * math.cos(tilt)))
    return points


def _bridge(design: Design, rng, size_class: str, out_unit: float, placements) -> DefectPlan:
    comp: Component = _pick(rng, [c for c in design.components if c.kind in ("qfp", "soic")])
    per_row = 8 if comp.kind == "qfp" else 7
    span = 3 if size_class == "large" else 2
    row = int(rng.integers(len(comp.terminals) // per_row))
    first = int(rng.integers(per_row - span + 1))
    pins = [comp.terminals[row * per_row + first + i] for i in range(span)]
    (ax, ay), size = pins[0]
    (bx, by), _ = pins[-1]
    along_x = abs(bx - ax) > abs(by - ay)
    length = size[1] if along_x else size[0]  # pin length, across the row
    depth = length * {"small": 0.35, "medium": 0.6, "large": 0.8}[size_class]
    # toward the pin tip: away from the body centre
    tip_sign = math.copysign(1.0, ay if along_x else ax)
    offset_across = tip_sign * (length / 2 - depth / 2) * 0.9
    cx, cy = (ax + bx) / 2, (ay + by) / 2
    if along_x:
        cy += offset_across
        half = (abs(bx - ax) / 2 + size[0] * 0.45, depth / 2)
    else:
        cx += offset_across
        half = (depth / 2, abs(by - ay) / 2 + size[1] * 0.45)
    placement = placements[comp.ref]
    local = [(cx + half[0] * math.cos(t), cy + half[1] * math.sin(t)) for t in np.linspace(0, 2 * math.pi, 20, False)]
    jitter = rng.uniform(-0.08, 0.08, (len(local), 2))
    outline = [local_to_board(comp, placement, (x + jx * half[0], y + jy * half[1]))
               for (x, y), (jx, jy) in zip(local, jitter)]
    highlight = [local_to_board(comp, placement, (cx + half[0] * 0.45 * math.cos(t), cy + half[1] * 0.3 * math.sin(t)))
                 for t in np.linspace(0, 2 * math.pi, 12, False)]

    def paint(image: np.ndarray, canvas: Canvas) -> None:
        fill_poly(image, canvas, outline, shade(SOLDER, 0.95))
        fill_poly(image, canvas, highlight, shade(SOLDER, 1.25))

    return DefectPlan("solder_bridge", size_class, paint=paint, detail={"component": comp.ref, "pins": span})


def _near_parts(point: Point, design: Design, margin: float) -> bool:
    for comp in design.components:
        x0, y0, x1, y1 = comp.extent()
        if x0 - margin <= point[0] <= x1 + margin and y0 - margin <= point[1] <= y1 + margin:
            return True
    for via in design.vias:
        if math.dist(point, via.center) < via.radius * 1.5 + margin:
            return True
    for label in design.labels:
        x, y = label.origin
        if x - margin <= point[0] <= x + label.height * 0.9 * len(label.text) + margin and \
                y - label.height - margin <= point[1] <= y + margin:
            return True
    return False


def _broken_trace(design: Design, rng, size_class: str, out_unit: float, placements) -> DefectPlan:
    gap = _span(rng, size_class, (1.0, 1.8), (2.5, 4.5), (5.0, 9.0)) / out_unit
    for _ in range(200):
        trace = _pick(rng, list(design.traces))
        segment = int(rng.integers(len(trace.points) - 1))
        a, b = trace.points[segment], trace.points[segment + 1]
        length = math.dist(a, b)
        if length < gap + 2.0:
            continue
        t = rng.uniform((gap / 2 + 1.0) / length, 1 - (gap / 2 + 1.0) / length)
        point = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)
        if not _near_parts(point, design, 1.0 + trace.width):
            break
    else:  # the design always has long open segments; this is only a guard against an endless loop
        raise RuntimeError("no trace segment can carry a break")
    ux, uy = (b[0] - a[0]) / length, (b[1] - a[1]) / length
    half_len, half_w = gap / 2, trace.width * 1.4
    corners = [(point[0] + sx * half_len * ux - sy * half_w * uy, point[1] + sx * half_len * uy + sy * half_w * ux)
               for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))]

    def paint(image: np.ndarray, canvas: Canvas) -> None:
        _, substrate = bare_board(canvas.width, canvas.height)
        alpha = np.zeros(image.shape[:2], np.uint8)
        fill_poly(alpha, canvas, corners, 255)
        ys, xs = np.nonzero(alpha)
        weight = (alpha[ys, xs].astype(np.float32) / 255.0)[:, None]
        image[ys, xs] = np.round(image[ys, xs] * (1 - weight) + substrate[ys, xs] * weight).astype(np.uint8)

    return DefectPlan("broken_trace", size_class, paint=paint, detail={"gap_units": gap})


def _scratch(design: Design, rng, size_class: str, out_unit: float, placements) -> DefectPlan:
    length = _span(rng, size_class, (2.5, 5.0), (12.0, 30.0), (40.0, 90.0)) / out_unit
    start = (float(rng.uniform(8, 92)), float(rng.uniform(8, 92)))
    heading = rng.uniform(0, 2 * math.pi)
    end = (start[0] + length * math.cos(heading), start[1] + length * math.sin(heading))
    bend = rng.uniform(-0.25, 0.25) * length
    control = ((start[0] + end[0]) / 2 - bend * math.sin(heading), (start[1] + end[1]) / 2 + bend * math.cos(heading))
    ts = np.linspace(0, 1, max(4, int(length * 2)))[:, None]
    curve = (1 - ts) ** 2 * np.asarray(start) + 2 * (1 - ts) * ts * np.asarray(control) + ts ** 2 * np.asarray(end)
    points = [tuple(p) for p in np.clip(curve, 1.0, 99.0)]
    width = max(0.25, 0.9 / out_unit) * (1.6 if size_class == "large" else 1.0)
    color = _pick(rng, [(150, 196, 160), (96, 140, 196), (190, 210, 200)])  # bare mask, copper, white
    strength = float(rng.uniform(0.75, 0.95))

    def paint(image: np.ndarray, canvas: Canvas) -> None:
        layer = image.copy()
        polyline(layer, canvas, points, color, width)
        cv2.addWeighted(layer, strength, image, 1 - strength, 0, dst=image)

    return DefectPlan("scratch", size_class, paint=paint, detail={"length_units": length})


def _contamination(design: Design, rng, size_class: str, out_unit: float, placements) -> DefectPlan:
    radius = _span(rng, size_class, (0.6, 1.2), (2.5, 5.0), (7.0, 14.0)) / out_unit
    center = (float(rng.uniform(6, 94)), float(rng.uniform(6, 94)))
    kind = _pick(rng, ["flux", "dust", "solder_ball", "fiber"])
    outline = _blob(center, radius, rng, stretch=float(rng.uniform(1.0, 1.8)))
    fiber_points = _blob(center, radius * 1.2, rng, vertices=5, roughness=0.6)[:4]

    def paint(image: np.ndarray, canvas: Canvas) -> None:
        layer = image.copy()
        if kind == "flux":
            fill_poly(layer, canvas, outline, (40, 92, 132))
            opacity = 0.7
        elif kind == "dust":
            fill_poly(layer, canvas, outline, (205, 212, 214))
            opacity = 0.92
        elif kind == "solder_ball":
            circle(layer, canvas, center, radius * 0.8, shade(SOLDER, 0.8))
            circle(layer, canvas, (center[0] - radius * 0.2, center[1] - radius * 0.2), radius * 0.35,
                   shade(SOLDER, 1.3))
            opacity = 1.0
        else:
            polyline(layer, canvas, fiber_points, (200, 205, 210), max(0.3, 0.8 / out_unit))
            opacity = 0.9
        cv2.addWeighted(layer, opacity, image, 1 - opacity, 0, dst=image)

    return DefectPlan("contamination", size_class, paint=paint, detail={"particle": kind, "radius_units": radius})


def _burn(design: Design, rng, size_class: str, out_unit: float, placements) -> DefectPlan:
    radius = _span(rng, size_class, (0.9, 1.6), (4.0, 8.0), (10.0, 20.0)) / out_unit
    center = (float(rng.uniform(8, 92)), float(rng.uniform(8, 92)))
    stretch = float(rng.uniform(1.0, 1.6))
    tilt = float(rng.uniform(0, 180))
    noise_seed = int(rng.integers(2**31))
    char = (18, 28, 40) if rng.random() < 0.6 else (30, 60, 95)  # char or brown discolouration
    peak = float(rng.uniform(0.75, 0.95))

    def paint(image: np.ndarray, canvas: Canvas) -> None:
        cx, cy = canvas.px(center)
        r = radius * canvas.unit
        reach = int(math.ceil(r * stretch * 2.2)) + 2
        x0, x1 = max(0, int(cx) - reach), min(canvas.width, int(cx) + reach + 1)
        y0, y1 = max(0, int(cy) - reach), min(canvas.height, int(cy) + reach + 1)
        if x1 <= x0 or y1 <= y0:
            return
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        a = math.radians(tilt)
        u = ((xs - cx) * math.cos(a) + (ys - cy) * math.sin(a)) / stretch
        v = -(xs - cx) * math.sin(a) + (ys - cy) * math.cos(a)
        local = np.random.default_rng(noise_seed)
        wobble = cv2.resize(local.standard_normal((6, 6)).astype(np.float32), (x1 - x0, y1 - y0),
                            interpolation=cv2.INTER_CUBIC)
        distance = np.sqrt(u * u + v * v) / r * (1 + 0.25 * wobble)
        alpha = np.clip(peak * np.exp(-(distance ** 4)), 0, 1)[..., None]
        patch = image[y0:y1, x0:x1].astype(np.float32)
        image[y0:y1, x0:x1] = np.round(patch * (1 - alpha) + np.asarray(char, np.float32) * alpha).astype(np.uint8)

    return DefectPlan("burn", size_class, paint=paint, detail={"radius_units": radius})


PLANNERS = {
    "missing_component": _missing,
    "shifted_component": _shifted,
    "solder_bridge": _bridge,
    "broken_trace": _broken_trace,
    "scratch": _scratch,
    "contamination": _contamination,
    "burn": _burn,
}


def plan_defect(kind: str, design: Design, rng: np.random.Generator, size_class: str, out_unit: float,
                placements: dict[str, Placement]) -> DefectPlan:
    """Choose one defect of `kind` for this board (`out_unit`: output pixels per design unit)."""
    if kind not in PLANNERS:
        raise ValueError(f"unknown defect type {kind!r}; known: {', '.join(DEFECT_TYPES)}")
    return PLANNERS[kind](design, rng, size_class, out_unit, placements)
