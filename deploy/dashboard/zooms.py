"""Region zooms on the queue's cards and the board page: how an operator judges a region.

For each region of a flagged board (largest peak first, at most a few; the rest are counted) one
picture of three panels side by side: the board, the reference board at the same place (fixtured
designs, when the runner stored it) and the heatmap, cropped around the region and outlined alike.
Each zoom sits in a container keyed `zoom-<board>-<region>` so a browser test can find it. Pictures
are built from the stored files once per board (cached: stored files never change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from deploy.dashboard import images
from deploy.dashboard.context import plain
from deploy.dashboard.settings import DashboardSettings
from inspector.core import region_zoom
from inspector.store import InspectionRecord

# (bbox, peak, area): a stored region as the cache's key (hashable)
RegionKey = tuple[tuple[int, int, int, int], float, "int | None"]
# How Streamlit lays a zoom grid out: per row, the caption under the picture and the gap to the next
# row; between columns, their gap (measured in Chromium, tests/browser/test_dashboard_e2e.py).
ROW_EXTRA_PX = 48
COLUMN_GAP_PX = 16
NO_REFERENCE = "No reference board stored (only flagged boards of fixtured designs have one)."


@dataclass(frozen=True)
class BoardViews:
    """What a card or the board page shows of one board's pictures."""

    overview: np.ndarray | None  # RGB: the whole board, heatmap where it matters, regions outlined
    zooms: tuple[images.Zoom, ...]
    left_out: int  # regions not zoomed (smaller peaks)
    missing: tuple[str, ...] = ()  # the stored files that could not be read, each named with why
    reference_note: str | None = None  # why the zooms have no reference panel


def region_keys(regions: Sequence[Mapping[str, Any]]) -> tuple[RegionKey, ...]:
    keys = []
    for region, box in zip(regions, images.boxes_of(regions), strict=True):
        area = region.get("area")
        keys.append((box, float(region.get("peak", region.get("score", 0.0)) or 0.0), None if area is None else int(area)))
    return tuple(keys)


def _reference(heatmap_path: str, root: Path | None, shape: tuple[int, ...]) -> tuple[np.ndarray | None, str | None]:
    """The reference board stored beside the heatmap, or None and what to tell the operator."""
    found = images.reference_beside(Path(heatmap_path)) if heatmap_path else None
    if found is None:
        return None, NO_REFERENCE
    try:
        reference = images.read_colour(found, "reference board", root)
    except images.MissingImage as exc:
        return None, str(exc)
    if not images.same_proportions(reference, shape):
        return None, (f"{found}: the reference board is {reference.shape[1]}x{reference.shape[0]} px, the board "
                      f"{shape[1]}x{shape[0]}: not shown")
    return reference, None


def build_views(image_path: str, heatmap_path: str, regions: tuple[RegionKey, ...], root: Path | None, *,
                overview_width: int | None, opacity: float, limit: int) -> BoardViews:
    """The overview and zooms of one board from its stored files; a missing file costs its part only."""
    try:
        board = images.read_colour(image_path, "board image", root)
    except images.MissingImage as exc:
        return BoardViews(None, (), 0, (str(exc),))
    layer, missing = None, []
    try:
        layer = images.read_heatmap(heatmap_path, root)
    except images.MissingImage as exc:
        missing.append(str(exc))
    stored = [{"bbox": list(box), "peak": peak, "area": area} for box, peak, area in regions]
    overview = images.to_rgb(images.board_picture(board, layer, stored, opacity=opacity, width=overview_width))
    if limit <= 0:
        return BoardViews(overview, (), len(stored), tuple(missing))
    reference, why = _reference(heatmap_path, root, board.shape)
    zooms, left_out = images.region_zooms(board, layer, reference, stored, limit=limit)
    return BoardViews(overview, tuple(zooms), left_out, tuple(missing), why if zooms else None)


@st.cache_data(show_spinner=False, max_entries=256)
def board_views(image_path: str, heatmap_path: str, regions: tuple[RegionKey, ...], root: str, *,
                overview_width: int | None = None, opacity: float = 0.0,
                limit: int = region_zoom.ZOOM_LIMIT) -> BoardViews:
    """`build_views`, cached per stored files and regions (stored files never change)."""
    return build_views(image_path, heatmap_path, regions, Path(root), overview_width=overview_width,
                       opacity=opacity, limit=limit)


def record_views(settings: DashboardSettings, record: InspectionRecord, *, overview_width: int | None = None,
                 opacity: float = 0.0, limit: int = region_zoom.ZOOM_LIMIT) -> BoardViews:
    """`board_views` of a stored board: its pictures where the dashboard finds them, its boxed regions."""
    return board_views(str(settings.resolve(record.image_path)) if record.image_path else "",
                       str(settings.resolve(record.heatmap_path)) if record.heatmap_path else "",
                       region_keys([r for r in record.regions if "bbox" in r]), str(settings.data_dir),
                       overview_width=overview_width, opacity=opacity, limit=limit)


def zoom_columns(count: int, panels: int, *, width: float, height: float, widest: int = 3) -> int:
    """Columns for `count` zooms of `panels` panels each in a `width` x `height` px area (its size on a
    1366x768 screen): the largest panels that fit, as Streamlit lays a grid out (a zoom no wider than
    drawn, ROW_EXTRA_PX of caption and gap per row, COLUMN_GAP_PX between columns). When no grid fits,
    the lowest one."""
    natural = panels * region_zoom.ZOOM_SIDE + (panels - 1) * region_zoom.ZOOM_GAP
    best: tuple[bool, float, int] | None = None
    for columns in range(1, max(1, min(count, widest)) + 1):
        rows = -(-count // columns)
        shown = min(natural, (width - (columns - 1) * COLUMN_GAP_PX) / columns)
        side = shown * region_zoom.ZOOM_SIDE / natural
        tall = rows * (side + ROW_EXTRA_PX)
        score = (tall <= height, side if tall <= height else -tall, -columns)
        if best is None or score > best:
            best = score
    assert best is not None
    return -best[2]


def show_zooms(views: BoardViews, board_id: int, *, area: tuple[float, float] | None = None,
               rest_shown: str = "outlined on the board and listed in the regions table") -> None:
    """A line naming the panels, the zooms in a grid sized for `area` (width, height in px on a
    1366x768 screen; None: one narrow column, with a short line), each keyed `zoom-<board>-<region>`
    and captioned with its region's number, peak and area, then how many regions are left out and
    where they are."""
    if not views.zooms:
        return
    # Paths in a note carry names from the line's inbox: never Markdown.
    st.caption(plain(panels_line(views, short=area is None)))
    count, panels = len(views.zooms), len(views.zooms[0].panels)
    columns = st.columns(1 if area is None else zoom_columns(count, panels, width=area[0], height=area[1]))
    for index, zoom in enumerate(views.zooms):
        with columns[index % len(columns)], st.container(key=f"zoom-{board_id}-{zoom.number}"):
            st.image(zoom.picture, caption=zoom.caption, width="content")
    if views.left_out:
        st.caption(f"+{views.left_out} more region{'s' if views.left_out > 1 else ''} with smaller peaks: "
                   f"{rest_shown}.")


def panels_line(views: BoardViews, *, short: bool = False) -> str:
    """What each zoom's panels are, left to right, and why there is no reference when there is none
    (`short`: only that there is none, for the queue's small cards)."""
    panels = " | ".join(views.zooms[0].panels) if views.zooms else ""
    if short:
        return f"Zooms: {panels}" + ("" if views.reference_note is None else " (no reference board)")
    line = f"Each region, largest peak first: {panels}."
    return line if views.reference_note is None else f"{line} {views.reference_note}"
