"""Drawing the design onto pixels: the bare board (cached per size) and the placed parts.

Everything is drawn anti-aliased with sub-pixel coordinates (OpenCV's `shift`), at a supersampled
resolution for small images, so a part moved by half a pixel really moves by half a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from inspector.synth.layout import BOARD_UNITS, DESIGN_SEED, Component, Design, Point, board_design, rotate

SHIFT = 4  # OpenCV fixed-point bits for sub-pixel drawing
ONE = 1 << SHIFT

# BGR colours of a green-mask, HASL-finish board under white ring light
MASK_GREEN = (48, 98, 30)
TRACE_GREEN = (62, 132, 44)
SOLDER = (172, 178, 178)
GOLD = (78, 168, 206)
LAMINATE = (105, 148, 160)
SILK = (222, 228, 226)
DRILL = (22, 24, 20)
IC_BODY = (40, 38, 38)
PIN_METAL = (188, 190, 192)
RESISTOR_BODY = (34, 34, 34)
CAP_BODY = (98, 138, 170)
CAN_METAL = (196, 198, 196)
PLASTIC = (32, 30, 30)


@dataclass(frozen=True)
class Canvas:
    """Maps design units to pixels of an image `width` x `height` (already supersampled)."""

    width: int
    height: int

    @property
    def sx(self) -> float:
        return self.width / BOARD_UNITS

    @property
    def sy(self) -> float:
        return self.height / BOARD_UNITS

    @property
    def unit(self) -> float:
        """Pixels per design unit for lengths that must not stretch (radii, widths)."""
        return min(self.sx, self.sy)

    def px(self, point: Point) -> tuple[float, float]:
        return point[0] * self.sx, point[1] * self.sy

    def fixed(self, points: list[Point] | tuple[Point, ...]) -> np.ndarray:
        """Design points -> int32 fixed-point pixel coordinates for OpenCV drawing."""
        array = np.asarray(points, dtype=np.float64) * (self.sx * ONE, self.sy * ONE)
        return np.round(array).astype(np.int32)

    def thickness(self, units: float) -> int:
        return max(1, int(round(units * self.unit)))


def fill_poly(image: np.ndarray, canvas: Canvas, points: list[Point] | tuple[Point, ...], color) -> None:
    cv2.fillPoly(image, [canvas.fixed(points)], color, cv2.LINE_AA, SHIFT)


def polyline(image: np.ndarray, canvas: Canvas, points, color, width_units: float, closed: bool = False) -> None:
    cv2.polylines(image, [canvas.fixed(points)], closed, color, canvas.thickness(width_units), cv2.LINE_AA, SHIFT)


def circle(image: np.ndarray, canvas: Canvas, center: Point, radius_units: float, color, thickness: int = -1) -> None:
    cx, cy = canvas.px(center)
    radius = max(1, int(round(radius_units * canvas.unit * ONE)))
    cv2.circle(image, (int(round(cx * ONE)), int(round(cy * ONE))), radius, color, thickness, cv2.LINE_AA, SHIFT)


def rect(center: Point, size: Point, angle: float) -> list[Point]:
    """Corners of a rotated rectangle in design units."""
    hw, hh = size[0] / 2, size[1] / 2
    corners = [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]
    out = []
    for corner in corners:
        x, y = rotate(corner, angle)
        out.append((center[0] + x, center[1] + y))
    return out


def shade(color, factor: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(c * factor)))) for c in color)  # type: ignore[return-value]


def _texture(height: int, width: int, rng: np.random.Generator, cells: int, amplitude: float) -> np.ndarray:
    """Smooth random field (low-frequency mottling) in [-amplitude, amplitude]."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(field, -2.5, 2.5) * (amplitude / 2.5)


def put_label(image: np.ndarray, canvas: Canvas, text: str, origin: Point, height_units: float, color) -> None:
    height_px = height_units * canvas.unit
    scale = height_px / 22.0  # Hershey simplex capitals are ~22 px tall at scale 1
    thickness = max(1, int(round(height_px / 7.0)))
    x, y = canvas.px(origin)
    cv2.putText(image, text, (int(round(x)), int(round(y))), cv2.FONT_HERSHEY_SIMPLEX, scale, color, thickness,
                cv2.LINE_AA)


@lru_cache(maxsize=8)
def _bare_board_cached(width: int, height: int, design_seed: int) -> tuple[np.ndarray, np.ndarray]:
    design = board_design(design_seed)
    canvas = Canvas(width, height)
    copper = _copper(design, canvas)
    image, substrate = _masked_board(copper, np.random.default_rng(design_seed + 1))
    _draw_holes(image, canvas, design)
    _draw_pads(image, canvas, design)
    for outline in design.outlines:
        polyline(image, canvas, outline, SILK, 0.35, closed=True)
    for label in design.labels:
        put_label(image, canvas, label.text, label.origin, label.height, SILK)
    image.setflags(write=False)
    substrate.setflags(write=False)
    return image, substrate


def _copper(design: Design, canvas: Canvas) -> np.ndarray:
    """Where copper lies under the solder mask (uint8 0-255): traces, via rings and the ground pours."""
    copper = np.zeros((canvas.height, canvas.width), np.uint8)
    for trace in design.traces:
        polyline(copper, canvas, trace.points, 255, trace.width)
    for via in design.vias:
        circle(copper, canvas, via.center, via.radius * 1.5, 255)
    if design.pours:
        np.maximum(copper, _pours(design, canvas, copper), out=copper)
    return copper


def _pours(design: Design, canvas: Canvas, copper: np.ndarray) -> np.ndarray:
    """The ground pours, keeping a clearance gap around every other net's copper and every pad."""
    pour = np.zeros_like(copper)
    for poly in design.pours:
        fill_poly(pour, canvas, poly, 255)
    keep_clear = copper.copy()
    for comp in design.components:
        for pad in comp.pads:
            fill_poly(keep_clear, canvas, rect(pad.center, pad.size, pad.angle), 255)
    reach = max(1, int(round(0.8 * canvas.unit)))
    keep_clear = cv2.dilate(keep_clear, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * reach + 1,) * 2))
    return cv2.subtract(pour, keep_clear)


def _masked_board(copper: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(solder mask over laminate and copper; mask over laminate alone), both with the mask's texture."""
    height, width = copper.shape
    laminate = np.empty((height, width, 3), np.uint8)
    laminate[:] = MASK_GREEN
    alpha = (copper.astype(np.float32) / 255.0)[..., None]
    # solder-mask mottling and grain, fixed for the design (the camera adds its own noise later)
    mottle = _texture(height, width, rng, 10, 7.0)
    grain = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), 1.2) * 2.5
    texture = (mottle + grain)[..., None] * np.asarray([0.6, 1.0, 0.5], np.float32)
    substrate = np.clip(laminate.astype(np.float32) + texture, 0, 255).astype(np.uint8)
    with_copper = laminate.astype(np.float32) * (1 - alpha) + np.asarray(TRACE_GREEN, np.float32) * alpha + texture
    return np.clip(with_copper, 0, 255).astype(np.uint8), substrate


def _draw_holes(image: np.ndarray, canvas: Canvas, design: Design) -> None:
    """Mounting holes, fiducials and vias: gold or tinned rings around their drills."""
    for center in design.mounting_holes:
        circle(image, canvas, center, 3.4, LAMINATE)
        circle(image, canvas, center, 2.8, GOLD)
        circle(image, canvas, center, 1.9, DRILL)
    for center in design.fiducials:
        circle(image, canvas, center, 2.6, LAMINATE)
        circle(image, canvas, center, 1.2, GOLD)
    for via in design.vias:
        circle(image, canvas, via.center, via.radius, SOLDER)
        circle(image, canvas, via.center, via.drill, DRILL)


def _draw_pads(image: np.ndarray, canvas: Canvas, design: Design) -> None:
    """Every part's pads: solder-coated, gold (and drilled) under the header."""
    for comp in design.components:
        pad_color = GOLD if comp.kind == "header" else SOLDER
        for pad in comp.pads:
            fill_poly(image, canvas, rect(pad.center, pad.size, pad.angle), shade(pad_color, 0.92))
            inner = (pad.size[0] * 0.7, pad.size[1] * 0.7)
            fill_poly(image, canvas, rect(pad.center, inner, pad.angle), pad_color)
            if comp.kind == "header":
                circle(image, canvas, pad.center, 0.6, DRILL)


def bare_board(width: int, height: int, design_seed: int = DESIGN_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(bare board with pads, vias and silkscreen; mask-only substrate) at this size, cached.

    The substrate (solder mask over laminate, no copper) lets a broken-trace defect show exactly
    what the board looks like where copper is missing.
    """
    return _bare_board_cached(width, height, design_seed)


@dataclass(frozen=True)
class Placement:
    """Where one part actually landed on this board: offset (design units) and extra rotation."""

    dx: float = 0.0
    dy: float = 0.0
    dangle: float = 0.0


def local_to_board(comp: Component, placement: Placement, offset: Point) -> Point:
    x, y = rotate(offset, comp.angle + placement.dangle)
    return comp.center[0] + placement.dx + x, comp.center[1] + placement.dy + y


def _part_rect(comp: Component, placement: Placement, offset: Point, size: Point) -> list[Point]:
    hw, hh = size[0] / 2, size[1] / 2
    corners = [(offset[0] - hw, offset[1] - hh), (offset[0] + hw, offset[1] - hh),
               (offset[0] + hw, offset[1] + hh), (offset[0] - hw, offset[1] + hh)]
    return [local_to_board(comp, placement, c) for c in corners]


def component_footprint(comp: Component, placement: Placement) -> list[list[Point]]:
    """Polygons the part covers (body and terminals), for its shadow."""
    polys = [_part_rect(comp, placement, (0.0, 0.0), comp.body)]
    polys += [_part_rect(comp, placement, off, size) for off, size in comp.terminals]
    return polys


def draw_component(image: np.ndarray, canvas: Canvas, comp: Component, placement: Placement) -> None:
    """Draw one placed part: terminals first, then the body, then its markings."""
    terminal_metal = GOLD if comp.kind == "header" else PIN_METAL
    if comp.kind == "header":
        fill_poly(image, canvas, _part_rect(comp, placement, (0.0, 0.0), comp.body), PLASTIC)
        for off, size in comp.terminals:
            fill_poly(image, canvas, _part_rect(comp, placement, off, (size[0] * 1.5, size[1] * 1.5)),
                      shade(PLASTIC, 1.5))
            fill_poly(image, canvas, _part_rect(comp, placement, off, size), terminal_metal)
            fill_poly(image, canvas, _part_rect(comp, placement, off, (size[0] * 0.45, size[1] * 0.45)),
                      shade(terminal_metal, 1.18))
        return
    for off, size in comp.terminals:
        fill_poly(image, canvas, _part_rect(comp, placement, off, size), shade(terminal_metal, 0.85))
        fill_poly(image, canvas, _part_rect(comp, placement, off, (size[0] * 0.6, size[1] * 0.6)), terminal_metal)
    if comp.kind == "electrolytic":
        base = (comp.body[0] * 1.05, comp.body[1] * 1.05)
        fill_poly(image, canvas, _part_rect(comp, placement, (0.0, 0.0), base), PLASTIC)
        center = local_to_board(comp, placement, (0.0, 0.0))
        circle(image, canvas, center, comp.body[0] * 0.47, shade(CAN_METAL, 0.8))
        circle(image, canvas, center, comp.body[0] * 0.42, CAN_METAL)
        stripe = [local_to_board(comp, placement, p) for p in
                  ((-comp.body[0] * 0.42, -1.2), (-comp.body[0] * 0.2, -2.8), (-comp.body[0] * 0.2, 2.8),
                   (-comp.body[0] * 0.42, 1.2))]
        fill_poly(image, canvas, stripe, (45, 40, 40))
        for a, b in (((-1.8, 0.0), (1.8, 0.0)), ((0.0, -1.8), (0.0, 1.8))):
            polyline(image, canvas, [local_to_board(comp, placement, a), local_to_board(comp, placement, b)],
                     shade(CAN_METAL, 0.7), 0.3)
        return
    body_color = {"chip_r": RESISTOR_BODY, "chip_c": CAP_BODY}.get(comp.kind, IC_BODY)
    body = comp.body
    if comp.kind in ("chip_r", "chip_c"):
        body = (comp.body[0] * 0.62, comp.body[1] * 0.98)  # the end caps cover the body's ends
    fill_poly(image, canvas, _part_rect(comp, placement, (0.0, 0.0), body), body_color)
    inner = (body[0] - 0.5, body[1] - 0.5) if comp.kind in ("qfp", "soic") else (body[0] * 0.8, body[1] * 0.7)
    fill_poly(image, canvas, _part_rect(comp, placement, (0.0, 0.0), inner), shade(body_color, 1.12))
    if comp.kind in ("qfp", "soic"):
        dot = local_to_board(comp, placement, (-body[0] / 2 + 1.6, -body[1] / 2 + 1.6 if comp.kind == "qfp" else
                                                body[1] / 2 - 1.4))
        circle(image, canvas, dot, 0.55, shade(body_color, 0.55))
        mark_height = 1.6 if comp.kind == "qfp" else 1.2
        origin = local_to_board(comp, placement, (-body[0] / 2 + 2.6, 0.6))
        if comp.angle == 0.0 and abs(placement.dangle) < 2.0:
            put_label(image, canvas, "BI41" if comp.kind == "qfp" else "L7805", origin, mark_height, (120, 122, 124))
        else:
            # rotated text cannot be drawn by putText: mark with a laser-etched bar instead
            polyline(image, canvas, [local_to_board(comp, placement, (-body[0] / 4, 0.0)),
                                     local_to_board(comp, placement, (body[0] / 4, 0.0))], (110, 112, 114), 0.4)


def component_layer_mask(canvas: Canvas, design: Design, placements: dict[str, Placement | None]) -> np.ndarray:
    """Single-channel coverage of every placed part (for shadows)."""
    mask = np.zeros((canvas.height, canvas.width), np.uint8)
    for comp in design.components:
        placement = placements.get(comp.ref, Placement())
        if placement is None:
            continue
        for poly in component_footprint(comp, placement):
            fill_poly(mask, canvas, poly, 255)
    return mask


def draw_components(image: np.ndarray, canvas: Canvas, design: Design,
                    placements: dict[str, Placement | None]) -> None:
    """Cast soft shadows, then draw every part that is present (placement None = missing)."""
    coverage = component_layer_mask(canvas, design, placements).astype(np.float32) * (1.0 / 255.0)
    sigma = max(0.6, 0.5 * canvas.unit)
    offset = 0.35 * canvas.unit
    translation = np.array([[1, 0, offset], [0, 1, offset]], dtype=np.float32)
    shifted = cv2.warpAffine(coverage, translation, (canvas.width, canvas.height))
    shadow = cv2.GaussianBlur(shifted, (0, 0), sigma)
    np.multiply(image, (1.0 - 0.45 * shadow)[..., None], out=image, casting="unsafe")
    for comp in design.components:
        placement = placements.get(comp.ref, Placement())
        if placement is not None:
            draw_component(image, canvas, comp, placement)
