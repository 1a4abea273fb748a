"""The one board design every synthetic sample shows, in resolution-free design units.

A line inspects many copies of one populated board, so the layout is generated once from a
constant design seed (never the dataset seed): every image of every dataset shows the same
design, at whatever pixel size it is rendered. Coordinates are design units on a 100 x 100 board;
the renderer maps them to pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

DESIGN_SEED = 2041
BOARD_UNITS = 100.0

Point = tuple[float, float]


@dataclass(frozen=True)
class Pad:
    """Exposed, solder-coated copper that a terminal sits on (centre, size, rotation in degrees)."""

    center: Point
    size: Point
    angle: float = 0.0


@dataclass(frozen=True)
class Component:
    """A placed part: what it is, where its body sits, and the pads its terminals land on.

    `terminals` are the metal parts drawn on top of the body outline (pins, end caps), in the
    component's own frame (relative to its centre, before its rotation).
    """

    ref: str
    kind: str  # "qfp", "soic", "sot23", "chip_r", "chip_c", "header", "electrolytic"
    center: Point
    body: Point  # width, height in the component frame
    angle: float  # placement rotation in degrees (0 or 90 in the design)
    terminals: tuple[tuple[Point, Point], ...]  # (offset, size) in the component frame
    pads: tuple[Pad, ...]

    def extent(self) -> tuple[float, float, float, float]:
        """Axis-aligned (x0, y0, x1, y1) covering body and pads, in design units."""
        xs: list[float] = []
        ys: list[float] = []
        half_w, half_h = self.body[0] / 2, self.body[1] / 2
        corners = [(-half_w, -half_h), (half_w, half_h)]
        for (ox, oy), (sw, sh) in self.terminals:
            corners += [(ox - sw / 2, oy - sh / 2), (ox + sw / 2, oy + sh / 2)]
        for x, y in corners:
            px, py = rotate((x, y), self.angle)
            xs.append(self.center[0] + px)
            ys.append(self.center[1] + py)
        return min(xs), min(ys), max(xs), max(ys)


@dataclass(frozen=True)
class Trace:
    """A copper track under the solder mask, as a polyline of 45/90-degree segments."""

    points: tuple[Point, ...]
    width: float


@dataclass(frozen=True)
class Via:
    center: Point
    radius: float
    drill: float


@dataclass(frozen=True)
class Label:
    """Silkscreen text, anchored at its bottom-left corner; `height` is the cap height."""

    text: str
    origin: Point
    height: float


@dataclass(frozen=True)
class Design:
    components: tuple[Component, ...]
    traces: tuple[Trace, ...]
    vias: tuple[Via, ...]
    labels: tuple[Label, ...]
    outlines: tuple[tuple[Point, ...], ...]  # silkscreen closed polylines
    fiducials: tuple[Point, ...]
    mounting_holes: tuple[Point, ...]
    pours: tuple[tuple[Point, ...], ...] = field(default_factory=tuple)  # copper fill polygons


def rotate(point: Point, angle_deg: float) -> Point:
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return point[0] * c - point[1] * s, point[0] * s + point[1] * c


def to_board(component: Component, offset: Point) -> Point:
    x, y = rotate(offset, component.angle)
    return component.center[0] + x, component.center[1] + y


def _make_component(ref: str, kind: str, center: Point, angle: float, rng: np.random.Generator) -> Component:
    terminals: list[tuple[Point, Point]] = []
    pad_local: list[tuple[Point, Point]] = []
    if kind == "qfp":
        body = (16.0, 16.0)
        per_side, pitch, pin_len, pin_w = 8, 1.6, 2.2, 0.7
        start = -(per_side - 1) * pitch / 2
        for side in range(4):
            for i in range(per_side):
                along = start + i * pitch
                out = body[0] / 2 + pin_len / 2
                offsets = [(along, out), (out, -along), (-along, -out), (-out, along)]
                size = (pin_w, pin_len) if side % 2 == 0 else (pin_len, pin_w)
                pad_size = (pin_w * 1.4, pin_len * 1.5) if side % 2 == 0 else (pin_len * 1.5, pin_w * 1.4)
                terminals.append((offsets[side], size))
                pad_off = offsets[side][0] * (1.04 if side % 2 else 1.0), offsets[side][1] * (1.0 if side % 2 else 1.04)
                pad_local.append((pad_off, pad_size))
    elif kind == "soic":
        pins = 7
        body = (pins * 1.4 + 1.0, 6.0)
        pitch, pin_len, pin_w = 1.4, 2.0, 0.6
        start = -(pins - 1) * pitch / 2
        for row in (-1, 1):
            for i in range(pins):
                offset = (start + i * pitch, row * (body[1] / 2 + pin_len / 2))
                terminals.append((offset, (pin_w, pin_len)))
                pad_local.append(((offset[0], offset[1] * 1.08), (pin_w * 1.5, pin_len * 1.6)))
    elif kind == "sot23":
        body = (3.2, 1.8)
        for offset in ((-1.0, 1.5), (1.0, 1.5), (0.0, -1.5)):
            terminals.append((offset, (0.6, 1.2)))
            pad_local.append((offset, (1.0, 1.5)))
    elif kind in ("chip_r", "chip_c"):
        length = float(rng.choice([3.2, 4.0]))  # 0603 / 0805-like at ~0.5 mm per design unit
        width = length * 0.55
        body = (length, width)
        cap = length * 0.2
        for side in (-1, 1):
            offset = (side * (length / 2 - cap / 2), 0.0)
            terminals.append((offset, (cap, width)))
            pad_local.append(((side * (length / 2 - cap * 0.2), 0.0), (cap * 2.2, width * 1.3)))
    elif kind == "header":
        pins = 8
        pitch = 2.54 * 1.6
        body = (pins * pitch, 5.2)
        start = -(pins - 1) * pitch / 2
        for i in range(pins):
            offset = (start + i * pitch, 0.0)
            terminals.append((offset, (1.3, 1.3)))
            pad_local.append((offset, (2.6, 2.6)))
    elif kind == "electrolytic":
        body = (9.0, 9.0)
        for side in (-1, 1):
            offset = (side * 5.2, 0.0)
            terminals.append((offset, (1.6, 1.6)))
            pad_local.append((offset, (2.4, 3.0)))
    else:
        raise ValueError(f"unknown component kind {kind!r}")
    component = Component(ref, kind, center, body, angle, tuple(terminals), ())
    pads = tuple(Pad(to_board(component, off), size, angle) for off, size in pad_local)
    return Component(ref, kind, center, body, angle, tuple(terminals), pads)


def _overlaps(box: tuple[float, float, float, float], boxes: list[tuple[float, float, float, float]],
              clearance: float) -> bool:
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        if x0 < a1 + clearance and a0 < x1 + clearance and y0 < b1 + clearance and b0 < y1 + clearance:
            return True
    return False


def route(start: Point, end: Point, diagonal_first: bool) -> tuple[Point, ...]:
    """A 45/90-degree route: one diagonal run and one straight run, in the chosen order."""
    dx, dy = end[0] - start[0], end[1] - start[1]
    run = min(abs(dx), abs(dy))
    diag = (math.copysign(run, dx), math.copysign(run, dy))
    if diagonal_first:
        mid = (start[0] + diag[0], start[1] + diag[1])
    else:
        mid = (end[0] - diag[0], end[1] - diag[1])
    return (start, mid, end)


def _stub(pad: Pad, component: Component, length: float) -> Point:
    """The point a trace leaves a pad at: straight out, away from the component centre."""
    vx, vy = pad.center[0] - component.center[0], pad.center[1] - component.center[1]
    if abs(vx) >= abs(vy):
        return pad.center[0] + math.copysign(length, vx), pad.center[1]
    return pad.center[0], pad.center[1] + math.copysign(length, vy)


@lru_cache(maxsize=4)
def board_design(design_seed: int = DESIGN_SEED) -> Design:
    """Generate the fixed layout: fixed big parts, seeded passives, traces, vias and silkscreen."""
    rng = np.random.default_rng(design_seed)
    components: list[Component] = [
        _make_component("U1", "qfp", (33.0, 38.0), 0.0, rng),
        _make_component("U2", "soic", (74.0, 22.0), 0.0, rng),
        _make_component("U3", "soic", (72.0, 58.0), 90.0, rng),
        _make_component("J1", "header", (36.0, 86.0), 0.0, rng),
        _make_component("C1", "electrolytic", (83.0, 84.0), 0.0, rng),
        _make_component("Q1", "sot23", (56.0, 72.0), 0.0, rng),
        _make_component("Q2", "sot23", (14.0, 64.0), 90.0, rng),
    ]
    boxes = [c.extent() for c in components]
    keepouts = [(0.0, 0.0, 9.0, 9.0), (91.0, 0.0, 100.0, 9.0), (0.0, 91.0, 9.0, 100.0), (91.0, 91.0, 100.0, 100.0),
                (3.0, 88.0, 17.0, 100.0), (40.0, 2.0, 62.0, 8.0)]  # corners, logo, title
    counts = {"chip_r": 0, "chip_c": 0}
    attempts = 0
    while sum(counts.values()) < 18 and attempts < 2000:
        attempts += 1
        kind = "chip_r" if rng.random() < 0.5 else "chip_c"
        center = (float(rng.uniform(8, 92)), float(rng.uniform(8, 92)))
        angle = float(rng.choice([0.0, 90.0]))
        prefix = "R" if kind == "chip_r" else "C"
        candidate = _make_component(f"{prefix}{counts[kind] + 1 + (1 if kind == 'chip_c' else 0)}", kind,
                                    center, angle, rng)
        box = candidate.extent()
        if _overlaps(box, boxes, 3.0) or _overlaps(box, keepouts, 1.0):
            continue
        components.append(candidate)
        boxes.append(box)
        counts[kind] += 1

    traces: list[Trace] = []
    vias: list[Via] = []
    pads = [(pad, comp) for comp in components for pad in comp.pads]
    for pad, comp in pads:
        if comp.kind == "header" or rng.random() < 0.25:
            continue
        start = _stub(pad, comp, 2.0 if comp.kind not in ("chip_r", "chip_c") else 1.2)
        width = 0.9 if comp.kind in ("chip_r", "chip_c", "electrolytic") else 0.55
        if rng.random() < 0.55:
            # to a via a short distance away (signals dropping to an inner layer)
            length = float(rng.uniform(4, 11))
            angle = float(rng.choice([0, 45, 90, 135, 180, 225, 270, 315]))
            end = (start[0] + length * math.cos(math.radians(angle)), start[1] + length * math.sin(math.radians(angle)))
            end = (min(max(end[0], 4.0), 96.0), min(max(end[1], 4.0), 96.0))
            points = (pad.center, start) + route(start, end, bool(rng.random() < 0.5))[1:]
            vias.append(Via(end, 0.95, 0.45))
        else:
            # to a pad of a neighbouring part: long board-crossing nets would route on inner layers
            near = [(p, c) for p, c in pads if c is not comp and c.kind != "header"
                    and math.dist(p.center, pad.center) < 24.0]
            if not near:
                continue
            other_pad, other = near[int(rng.integers(len(near)))]
            end = _stub(other_pad, other, 1.5)
            points = (pad.center, start) + route(start, end, bool(rng.random() < 0.5))[1:] + (other_pad.center,)
        traces.append(Trace(tuple(points), width))
    # header pins fan out upward as a parallel bus, the most recognisable routing on a board
    header = components[3]
    for i, pad in enumerate(header.pads):
        top = (pad.center[0], pad.center[1] - 4.0)
        bend = (pad.center[0] + 6.0, pad.center[1] - 10.0)
        end = (bend[0], bend[1] - 8.0 - 1.5 * (i % 3))
        traces.append(Trace((pad.center, top, bend, end), 0.7))
        vias.append(Via(end, 0.95, 0.45))
    for _ in range(22):  # stitching vias
        center = (float(rng.uniform(6, 94)), float(rng.uniform(6, 94)))
        if not _overlaps((center[0] - 1, center[1] - 1, center[0] + 1, center[1] + 1), boxes, 1.0):
            vias.append(Via(center, 0.85, 0.4))

    labels: list[Label] = [Label("BI-2041 REV C", (41.0, 6.5), 2.6)]
    outlines: list[tuple[Point, ...]] = []
    for comp in components:
        x0, y0, x1, y1 = comp.extent()
        margin = 0.8
        if comp.kind in ("chip_r", "chip_c", "sot23"):
            outline = ((x0 - margin, y0 - margin), (x1 + margin, y0 - margin), (x1 + margin, y1 + margin),
                       (x0 - margin, y1 + margin))
        else:
            hw, hh = comp.body[0] / 2 + margin, comp.body[1] / 2 + margin
            local = ((-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh))
            outline = (to_board(comp, local[0]), to_board(comp, local[1]), to_board(comp, local[2]),
                       to_board(comp, local[3]))
        outlines.append(outline)
        height = 1.6 if comp.kind in ("chip_r", "chip_c", "sot23") else 2.2
        labels.append(Label(comp.ref, (x0, y0 - margin - 0.6), height))
    # the logo / lot box in the bottom-left corner
    outlines.append(((4.0, 90.0), (16.0, 90.0), (16.0, 98.0), (4.0, 98.0)))
    labels.append(Label("LOT", (5.0, 93.5), 2.0))
    fiducials = ((12.0, 5.0), (88.0, 5.0), (5.0, 80.0))
    holes = ((4.5, 4.5), (95.5, 4.5), (4.5, 95.5), (95.5, 95.5))
    pours = (((6.0, 52.0), (44.0, 52.0), (50.0, 58.0), (50.0, 76.0), (18.0, 76.0), (6.0, 70.0)),
             ((60.0, 72.0), (94.0, 72.0), (94.0, 94.0), (66.0, 94.0), (60.0, 88.0)))
    return Design(tuple(components), tuple(traces), tuple(vias), tuple(labels), tuple(outlines),
                  fiducials, holes, pours)
