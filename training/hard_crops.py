"""Training crops drawn where the model still redraws good boards worst.

Random crops show the network each structure about as often as it occurs. On real boards the false
regions sit on structures that are rare in the training boards (printed legend text, rows of small
pads, long straight traces, the board's border): the network has seen them a few times and redraws
them worse than the common copper, and at the region line that is a region on a good board. So
every few epochs the model scores its own training boards with the product's error (shift
tolerant, one view) and a share of each epoch's crops is then placed over the hottest cells of
those maps. Only good boards are ever shown, so this teaches rare good structure, not defects.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F

from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, preprocess
from inspector.core.scoring import ScoringSpec, error_map
from training.model import ConvAutoencoder
from training.scored import ScoredModel

CELL = 8  # working-resolution pixels per cell of the error grid
HOT_CELL_FRACTION = 0.01  # hard crops cover the hottest 1% of cells over all boards
SCORE_BATCH = 4  # boards a call while rescoring


class HardCropSampler:
    """Where the next epochs' hard crops go, refreshed from the model's error on its training boards."""

    def __init__(self, boards: list[np.ndarray], spec: PreprocessSpec, scoring: ScoringSpec, *,
                 share: float, every: int, start: int) -> None:
        self.boards = boards
        self.spec = spec
        self.scoring = replace(scoring, views=1)  # one network pass a board: the refresh is overhead
        self.share = share
        self.every = every
        self.start = start
        self.refreshed_at: int | None = None
        self.hot: np.ndarray | None = None  # (board, cell row, cell column) of the hottest cells
        self.log: list[dict[str, float]] = []  # each rescoring: epoch, hot cells, seconds (kept in the checkpoint)

    def due(self, epoch: int) -> bool:
        if epoch < self.start:
            return False
        return self.refreshed_at is None or epoch - self.refreshed_at >= self.every

    def refresh(self, model: ConvAutoencoder, device: torch.device, epoch: int) -> None:
        """Score every training board with the current weights and keep the hottest cells."""
        started = time.monotonic()
        scored = ScoredModel(model, self.scoring, model.arch.total_stride).eval()
        was_training = model.training
        grids: list[np.ndarray] = []
        with torch.no_grad():
            for start in range(0, len(self.boards), SCORE_BATCH):
                tensors = [preprocess(board, self.spec) for board in self.boards[start:start + SCORE_BATCH]]
                # Boards of one size go through in one call (half the time a board of one-at-a-time).
                groups = [tensors] if len({t.shape for t in tensors}) == 1 else [[t] for t in tensors]
                for group in groups:
                    padded = [pad_to_multiple(tensor, model.arch.total_stride)[0] for tensor in group]
                    height, width = group[0].shape[-2:]
                    x = torch.from_numpy(np.stack(padded)).to(device)
                    output = scored(x)
                    if isinstance(output, tuple):
                        error = output[1][:, :, :height, :width]
                    else:  # SSIM scoring: the graph returns the reconstruction; the runtime's map is error_map
                        error = torch.from_numpy(np.stack([
                            error_map(board[:, :height, :width], drawn[:, :height, :width], self.scoring)
                            for board, drawn in zip(x.cpu().numpy(), output.cpu().numpy())]))[:, None]
                    grids.extend(grid[0] for grid in F.max_pool2d(error, CELL, ceil_mode=True).cpu().numpy())
        model.train(was_training)
        values = np.concatenate([grid.ravel() for grid in grids])
        keep = max(1, int(len(values) * HOT_CELL_FRACTION))
        line = max(float(np.partition(values, len(values) - keep)[len(values) - keep]), np.finfo(np.float32).tiny)
        # Cells at zero error are never hot (a model that redraws everything exactly keeps random crops).
        hot = [np.column_stack([np.full(len(rows), board), rows, columns])
               for board, grid in enumerate(grids) for rows, columns in [np.nonzero(grid >= line)]]
        cells = np.concatenate(hot).astype(np.int64)
        self.hot = cells if len(cells) else None
        self.refreshed_at = epoch
        self.log.append({"epoch": epoch, "hot_cells": len(cells), "seconds": round(time.monotonic() - started, 2)})

    def draw(self, rng: np.random.Generator, side: int) -> tuple[int, int, int] | None:
        """(board, y, x) of a side x side full-resolution window over a hot cell, or None for a random crop."""
        if self.hot is None or rng.random() >= self.share:
            return None
        board, row, column = self.hot[int(rng.integers(len(self.hot)))]
        height, width = self.boards[board].shape[:2]
        # The cell at full resolution, and a window that holds all of it wherever it lands inside.
        top, left = row * CELL / self.spec.scale, column * CELL / self.spec.scale
        bottom, right = (row + 1) * CELL / self.spec.scale, (column + 1) * CELL / self.spec.scale
        y = int(np.clip(rng.integers(int(np.ceil(bottom)) - side, int(top) + 1), 0, height - side))
        x = int(np.clip(rng.integers(int(np.ceil(right)) - side, int(left) + 1), 0, width - side))
        return int(board), y, x
