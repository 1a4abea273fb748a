"""What the webcam's lamp does to the drawing: white and metal tops that overexpose toward it, and the
glints (specular highlights with their halos) on every shiny site that faces it on this board.

Part of the webcam camera model (inspector/synth/webcam.py): the sizes are in `WEBCAM`, the per-board
draws in `WebcamShot`, the glint sites and the tops in inspector/synth/webcam_parts.py.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from inspector.synth.draw import Canvas, Placement, circle, local_to_board
from inspector.synth.layout import Component, Point, board_design
from inspector.synth.webcam import WEBCAM, WebcamShot
from inspector.synth.webcam_parts import THROUGH_HOLE, GlintSite, ThroughHole, WhiteTop, glint_sites, white_tops

MIN_GLINT = 8.0  # grey levels: a fainter glint is not drawn at all


def light_up(image: np.ndarray, canvas: Canvas, placements: dict, shot: WebcamShot) -> np.ndarray:
    """uint8 drawing -> float32 radiance with the white parts' overexposure and the glints on top."""
    out = image.astype(np.float32)
    toward = np.asarray([math.cos(shot.light_azimuth), math.sin(shot.light_azimuth)], np.float32)
    for top in white_tops(placements):
        _overexpose(out, canvas, top, toward)
    glints, halos = _glint_layers(image.shape[:2], canvas, placements, shot)
    soft = cv2.GaussianBlur(glints, (0, 0), max(0.5, WEBCAM.glint_blur_units * canvas.unit)).astype(np.float32)
    bloom = cv2.GaussianBlur(halos, (0, 0), 0.4 * WEBCAM.halo_units * canvas.unit).astype(np.float32)
    out += (soft * 1.6 + bloom)[..., None]  # the blur spreads a glint's core; 1.6 brings its peak back
    return out


def _overexpose(out: np.ndarray, canvas: Canvas, top: WhiteTop, toward: np.ndarray) -> None:
    """Add light to one top (in place), rising toward the lamp, so it clips over a growing area."""
    outline, center, radius, colour = top
    pts = canvas.fixed(outline)
    x0, y0 = np.maximum(pts.min(axis=0) // 16 - 2, 0)
    x1, y1 = np.minimum(pts.max(axis=0) // 16 + 3, (canvas.width, canvas.height))
    if x1 <= x0 or y1 <= y0:
        return
    cover = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(cover, [pts - np.asarray([x0 * 16, y0 * 16], np.int32)], 255, cv2.LINE_AA, 4)
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    cx, cy = canvas.px(center)
    along = ((xs - cx) * toward[0] + (ys - cy) * toward[1]) / max(1.0, radius * canvas.unit)
    lit = np.clip(0.5 + 0.5 * along, 0.0, 1.0) * (cover.astype(np.float32) / 255.0) * WEBCAM.white_boost
    out[y0:y1, x0:x1] += lit[..., None] * np.asarray(colour, np.float32)


def _glint_layers(shape: tuple[int, ...], canvas: Canvas, placements: dict,
                  shot: WebcamShot) -> tuple[np.ndarray, np.ndarray]:
    """(glint cores, halos): uint8 layers of this board's glints, before the optics blur them."""
    glints = np.zeros(shape, np.uint8)
    halos = np.zeros(shape, np.uint8)
    parts: dict[str, Component | ThroughHole] = {c.ref: c for c in board_design().components}
    parts.update({p.ref: p for p in THROUGH_HOLE})
    for index, site in enumerate(glint_sites()):
        center = _site_center(site, placements, parts)
        if center is None:  # its part is missing
            continue
        level = _glint_level(site, shot, index)
        if level < MIN_GLINT:
            continue
        _draw_glint(glints, halos, canvas, site, center, min(255.0, level), shot, index)
    return glints, halos


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


def _glint_level(site: GlintSite, shot: WebcamShot, index: int) -> float:
    """How bright site `index` glints on this board: how well its facet faces the lamp (a round site
    always does somewhere), the lamp's gain and the site's own strength."""
    if site.symmetric:
        response = 1.0
    else:
        lobe = math.radians(WEBCAM.glint_lobe_deg)
        facing = site.facet + shot.site_jitter[index] - shot.light_azimuth
        facing = (facing + math.pi) % (2 * math.pi) - math.pi
        response = math.exp(-0.5 * (facing / lobe) ** 2)
    return float(WEBCAM.glint_peak * shot.glint_gain * response * shot.site_strength[index])


def _draw_glint(glints: np.ndarray, halos: np.ndarray, canvas: Canvas, site: GlintSite, center: Point,
                level: float, shot: WebcamShot, index: int) -> None:
    """One glint: its halo, and its core shaped as the site is (a spot toward the lamp, a plated ring's
    crescent, a can top's streak)."""
    circle(halos, canvas, center, WEBCAM.halo_units * shot.site_size[index], level * WEBCAM.halo_share)
    jitter = shot.site_jitter[index] if site.symmetric else 0.0
    angle = shot.light_azimuth + 0.5 * jitter
    direction = (math.cos(angle), math.sin(angle))
    if site.shape == "crescent":
        cx, cy = canvas.px(center)
        r = int(round(site.radius * 0.8 * canvas.unit * 16))
        cv2.ellipse(glints, (int(round(cx * 16)), int(round(cy * 16))), (r, r), math.degrees(angle), -40, 40,
                    level, max(1, int(round(0.35 * canvas.unit))), cv2.LINE_AA, 4)
    elif site.shape == "streak":
        sx, sy = canvas.px((center[0] + direction[0] * site.radius * 0.45,
                            center[1] + direction[1] * site.radius * 0.45))
        axes = (int(round(site.radius * 0.55 * canvas.unit * 16)), int(round(site.radius * 0.16 * canvas.unit * 16)))
        cv2.ellipse(glints, (int(round(sx * 16)), int(round(sy * 16))), axes, math.degrees(angle) + 90.0, 0, 360,
                    level * 0.8, -1, cv2.LINE_AA, 4)
    else:
        spot = (center[0] + direction[0] * site.radius * WEBCAM.glint_offset,
                center[1] + direction[1] * site.radius * WEBCAM.glint_offset)
        circle(glints, canvas, spot, max(0.25, site.radius * shot.site_size[index]), level)
