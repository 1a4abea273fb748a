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
from typing import NamedTuple

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


class Footprint(NamedTuple):
    """A part's shape in its own frame: body size, terminals and pads as (offset, size) pairs."""

    body: Point
    terminals: list[tuple[Point, Point]]
    pads: list[tuple[Point, Point]]


def _qfp() -> Footprint:
    body = (16.0, 16.0)
    per_side, pitch, pin_len, pin_w = 8, 1.6, 2.2, 0.7
    start = -(per_side - 1) * pitch / 2
    footprint = Footprint(body, [], [])
    for side in range(4):
        for i in range(per_side):
            along = start + i * pitch
            out = body[0] / 2 + pin_len / 2
            offsets = [(along, out), (out, -along), (-along, -out), (-out, along)]
            size = (pin_w, pin_len) if side % 2 == 0 else (pin_len, pin_w)
            pad_size = (pin_w * 1.4, pin_len * 1.5) if side % 2 == 0 else (pin_len * 1.5, pin_w * 1.4)
            footprint.terminals.append((offsets[side], size))
            pad_off = offsets[side][0] * (1.04 if side % 2 else 1.0), offsets[side][1] * (1.0 if side % 2 else 1.04)
            footprint.pads.append((pad_off, pad_size))
    return footprint


def _soic() -> Footprint:
    pins = 7
    footprint = Footprint((pins * 1.4 + 1.0, 6.0), [], [])
    pitch, pin_len, pin_w = 1.4, 2.0, 0.6
    start = -(pins - 1) * pitch / 2
    for row in (-1, 1):
        for i in range(pins):
            offset = (start + i * pitch, row * (footprint.body[1] / 2 + pin_len / 2))
            footprint.terminals.append((offset, (pin_w, pin_len)))
            footprint.pads.append(((offset[0], offset[1] * 1.08), (pin_w * 1.5, pin_len * 1.6)))
    return footprint


def _sot23() -> Footprint:
    footprint = Footprint((3.2, 1.8), [], [])
    for offset in ((-1.0, 1.5), (1.0, 1.5), (0.0, -1.5)):
        footprint.terminals.append((offset, (0.6, 1.2)))
        footprint.pads.append((offset, (1.0, 1.5)))
    return footprint


def _chip(length: float) -> Footprint:
    width = length * 0.55
    footprint = Footprint((length, width), [], [])
    cap = length * 0.2
    for side in (-1, 1):
        offset = (side * (length / 2 - cap / 2), 0.0)
        footprint.terminals.append((offset, (cap, width)))
        footprint.pads.append(((side * (length / 2 - cap * 0.2), 0.0), (cap * 2.2, width * 1.3)))
    return footprint


def _header() -> Footprint:
    pins = 8
    pitch = 2.54 * 1.6
    footprint = Footprint((pins * pitch, 5.2), [], [])
    start = -(pins - 1) * pitch / 2
    for i in range(pins):
        offset = (start + i * pitch, 0.0)
        footprint.terminals.append((offset, (1.3, 1.3)))
        footprint.pads.append((offset, (2.6, 2.6)))
    return footprint


def _electrolytic() -> Footprint:
    footprint = Footprint((9.0, 9.0), [], [])
    for side in (-1, 1):
        offset = (side * 5.2, 0.0)
        footprint.terminals.append((offset, (1.6, 1.6)))
        footprint.pads.append((offset, (2.4, 3.0)))
    return footprint


FIXED_FOOTPRINTS = {"qfp": _qfp, "soic": _soic, "sot23": _sot23, "header": _header, "electrolytic": _electrolytic}


def _footprint(kind: str, rng: np.random.Generator) -> Footprint:
    """The footprint of a `kind` part; only chip parts draw (their size) from the design's stream."""
    if kind in ("chip_r", "chip_c"):
        return _chip(float(rng.choice([3.2, 4.0])))  # 0603 / 0805-like at ~0.5 mm per design unit
    if kind not in FIXED_FOOTPRINTS:
        raise ValueError(f"unknown component kind {kind!r}")
    return FIXED_FOOTPRINTS[kind]()


def _make_component(ref: str, kind: str, center: Point, angle: float, rng: np.random.Generator) -> Component:
    body, terminals, pad_local = _footprint(kind, rng)
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


# The big parts sit where the designer put them: (ref, kind, centre, rotation in degrees).
FIXED_PARTS: tuple[tuple[str, str, Point, float], ...] = (
    ("U1", "qfp", (33.0, 38.0), 0.0),
    ("U2", "soic", (74.0, 22.0), 0.0),
    ("U3", "soic", (72.0, 58.0), 90.0),
    ("J1", "header", (36.0, 86.0), 0.0),
    ("C1", "electrolytic", (83.0, 84.0), 0.0),
    ("Q1", "sot23", (56.0, 72.0), 0.0),
    ("Q2", "sot23", (14.0, 64.0), 90.0),
)
Box = tuple[float, float, float, float]
KEEPOUTS: list[Box] = [(0.0, 0.0, 9.0, 9.0), (91.0, 0.0, 100.0, 9.0), (0.0, 91.0, 9.0, 100.0),
                       (91.0, 91.0, 100.0, 100.0), (3.0, 88.0, 17.0, 100.0), (40.0, 2.0, 62.0, 8.0)]  # corners, logo, title


@lru_cache(maxsize=4)
def board_design(design_seed: int = DESIGN_SEED) -> Design:
    """Generate the fixed layout: fixed big parts, seeded passives, traces, vias and silkscreen.

    Every step draws from one stream in this order; reordering them changes every board."""
    rng = np.random.default_rng(design_seed)
    components = [_make_component(ref, kind, center, angle, rng) for ref, kind, center, angle in FIXED_PARTS]
    components += _passives(rng, [c.extent() for c in components])
    boxes = [c.extent() for c in components]
    traces, vias = _pad_traces(rng, components)
    bus_traces, bus_vias = _header_bus(next(c for c in components if c.kind == "header"))
    traces += bus_traces
    vias += bus_vias + _stitching_vias(rng, boxes)
    labels, outlines = _silkscreen(components)
    fiducials = ((12.0, 5.0), (88.0, 5.0), (5.0, 80.0))
    holes = ((4.5, 4.5), (95.5, 4.5), (4.5, 95.5), (95.5, 95.5))
    pours = (((6.0, 52.0), (44.0, 52.0), (50.0, 58.0), (50.0, 76.0), (18.0, 76.0), (6.0, 70.0)),
             ((60.0, 72.0), (94.0, 72.0), (94.0, 94.0), (66.0, 94.0), (60.0, 88.0)))
    return Design(tuple(components), tuple(traces), tuple(vias), tuple(labels), tuple(outlines),
                  fiducials, holes, pours)


def _passives(rng: np.random.Generator, taken: list[Box]) -> list[Component]:
    """18 chip resistors and capacitors at seeded places, clear of the parts in `taken` and of each other."""
    boxes = list(taken)
    placed: list[Component] = []
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
        if _overlaps(box, boxes, 3.0) or _overlaps(box, KEEPOUTS, 1.0):
            continue
        placed.append(candidate)
        boxes.append(box)
        counts[kind] += 1
    return placed


def _pad_traces(rng: np.random.Generator, components: list[Component]) -> tuple[list[Trace], list[Via]]:
    """A track from most pads (not the header's): to a via nearby or to a neighbouring part's pad."""
    traces: list[Trace] = []
    vias: list[Via] = []
    pads = [(pad, comp) for comp in components for pad in comp.pads]
    for pad, comp in pads:
        if comp.kind == "header" or rng.random() < 0.25:
            continue
        start = _stub(pad, comp, 2.0 if comp.kind not in ("chip_r", "chip_c") else 1.2)
        width = 0.9 if comp.kind in ("chip_r", "chip_c", "electrolytic") else 0.55
        if rng.random() < 0.55:
            points, via = _track_to_via(rng, pad, start)
            vias.append(via)
        else:
            found = _track_to_neighbour(rng, pad, comp, start, pads)
            if found is None:
                continue
            points = found
        traces.append(Trace(points, width))
    return traces, vias


def _track_to_via(rng: np.random.Generator, pad: Pad, start: Point) -> tuple[tuple[Point, ...], Via]:
    """To a via a short distance away (signals dropping to an inner layer)."""
    length = float(rng.uniform(4, 11))
    angle = float(rng.choice([0, 45, 90, 135, 180, 225, 270, 315]))
    end = (start[0] + length * math.cos(math.radians(angle)), start[1] + length * math.sin(math.radians(angle)))
    end = (min(max(end[0], 4.0), 96.0), min(max(end[1], 4.0), 96.0))
    points = (pad.center, start) + route(start, end, bool(rng.random() < 0.5))[1:]
    return points, Via(end, 0.95, 0.45)


def _track_to_neighbour(rng: np.random.Generator, pad: Pad, comp: Component, start: Point,
                        pads: list[tuple[Pad, Component]]) -> tuple[Point, ...] | None:
    """To a pad of a neighbouring part (long board-crossing nets would route on inner layers); None
    where no other part's pad is near."""
    near = [(p, c) for p, c in pads if c is not comp and c.kind != "header"
            and math.dist(p.center, pad.center) < 24.0]
    if not near:
        return None
    other_pad, other = near[int(rng.integers(len(near)))]
    end = _stub(other_pad, other, 1.5)
    return (pad.center, start) + route(start, end, bool(rng.random() < 0.5))[1:] + (other_pad.center,)


def _header_bus(header: Component) -> tuple[list[Trace], list[Via]]:
    """The header's pins fan out upward as a parallel bus, the most recognisable routing on a board."""
    traces: list[Trace] = []
    vias: list[Via] = []
    for i, pad in enumerate(header.pads):
        top = (pad.center[0], pad.center[1] - 4.0)
        bend = (pad.center[0] + 6.0, pad.center[1] - 10.0)
        end = (bend[0], bend[1] - 8.0 - 1.5 * (i % 3))
        traces.append(Trace((pad.center, top, bend, end), 0.7))
        vias.append(Via(end, 0.95, 0.45))
    return traces, vias


def _stitching_vias(rng: np.random.Generator, boxes: list[Box]) -> list[Via]:
    """22 seeded places for stitching vias; those clear of every part are drilled."""
    vias: list[Via] = []
    for _ in range(22):
        center = (float(rng.uniform(6, 94)), float(rng.uniform(6, 94)))
        if not _overlaps((center[0] - 1, center[1] - 1, center[0] + 1, center[1] + 1), boxes, 1.0):
            vias.append(Via(center, 0.85, 0.4))
    return vias


def _silkscreen(components: list[Component]) -> tuple[list[Label], list[tuple[Point, ...]]]:
    """(labels, outlines): the title, every part's outline and reference, and the logo / lot box."""
    labels: list[Label] = [Label("BI-2041 REV C", (41.0, 6.5), 2.6)]
    outlines: list[tuple[Point, ...]] = []
    margin = 0.8
    for comp in components:
        x0, y0, x1, y1 = comp.extent()
        outline: tuple[Point, ...]
        if comp.kind in ("chip_r", "chip_c", "sot23"):
            outline = ((x0 - margin, y0 - margin), (x1 + margin, y0 - margin), (x1 + margin, y1 + margin),
                       (x0 - margin, y1 + margin))
        else:
            hw, hh = comp.body[0] / 2 + margin, comp.body[1] / 2 + margin
            outline = tuple(to_board(comp, corner) for corner in ((-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)))
        outlines.append(outline)
        height = 1.6 if comp.kind in ("chip_r", "chip_c", "sot23") else 2.2
        labels.append(Label(comp.ref, (x0, y0 - margin - 0.6), height))
    outlines.append(((4.0, 90.0), (16.0, 90.0), (16.0, 98.0), (4.0, 98.0)))  # the logo / lot box, bottom left
    labels.append(Label("LOT", (5.0, 93.5), 2.0))
    return labels, outlines
