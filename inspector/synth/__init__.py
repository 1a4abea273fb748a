"""Procedural sample boards: one fixed populated-board design, line variation, seeded defects.

`generate_dataset` writes an MVTec-AD style set; `render_board` renders one board (with or without
its defect) for tests and tools. numpy + OpenCV only: this package ships with the runtime.
"""

from inspector.synth.board import RenderedBoard, render_board
from inspector.synth.dataset import SampleSummary, generate_dataset
from inspector.synth.defects import DEFECT_TYPES

__all__ = ["DEFECT_TYPES", "RenderedBoard", "SampleSummary", "generate_dataset", "render_board"]
