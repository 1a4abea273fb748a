"""The exported graph: autoencoder (or patch PCA) + view averaging + error map, in torch.

Why in the graph: the full-resolution shift-tolerant error map (a dilation, an erosion and four
element-wise passes) cost 2 ms of OpenCV after the ONNX Runtime call, 0.5 ms inside the graph,
where ONNX Runtime runs it on its own threads. The Gaussian smoothing stays in OpenCV: as a
one-channel convolution in ONNX Runtime it cost 1.4 ms (layout reorders included) against 0.3 ms.
Thresholds never enter the graph: they are calibration, which QA changes without re-exporting.

`inspector.core.scoring.error_map` + `smooth` remain the reference (and the path for tiled inference
and SSIM scoring, whose graph has the averaged reconstruction as its only output); a test holds
the two to the same numbers.

View averaging (test-time augmentation): the board is reconstructed in several views (shifted by
part of the model's stride, or mirrored), each reconstruction is moved back, and their mean is the
reconstruction. A strided autoencoder draws each view slightly differently where it is unsure
(good-board texture), and the same where the input is clearly off its model of a board (a defect
is repaired in every view), so averaging removes false alarms faster than it removes defects.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inspector.core.scoring import ScoringSpec, View, views_for


class ScoredModel(nn.Module):
    """x (N,C,H,W) -> (reconstruction (N,C,H,W), shift-tolerant squared error (N,1,H,W)) for l2
    scoring; the reconstruction alone for SSIM scoring (its map is computed on the CPU)."""

    def __init__(self, model: nn.Module, spec: ScoringSpec, stride: int) -> None:
        super().__init__()
        self.graph_error = spec.error == "l2"
        self.model = model
        self.arch = model.arch  # export reads stride / channels from here
        self.tolerance = spec.shift_tolerance
        self.channel_max = spec.channel_reduce == "max"
        self.views = views_for(spec.views, spec.view_kind, stride)
        self.stride = stride

    def _flip(self, x: torch.Tensor, view: View) -> torch.Tensor:
        dims = [d for d, on in ((-2, view.flip_rows), (-1, view.flip_columns)) if on]
        return torch.flip(x, dims) if dims else x

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.views) == 1:
            return self.model(x)
        height, width = x.shape[-2], x.shape[-1]
        total: torch.Tensor | None = None
        for view in self.views:
            # Shifted views are padded to keep H and W multiples of the stride, then cropped back.
            moved = x if (view.dy, view.dx) == (0, 0) else \
                F.pad(x, (view.dx, self.stride - view.dx, view.dy, self.stride - view.dy), mode="reflect")
            output = self._flip(self.model(self._flip(moved, view)), view)
            output = output[..., view.dy:view.dy + height, view.dx:view.dx + width]
            total = output if total is None else total + output
        assert total is not None  # views_for never returns an empty list
        return total * (1.0 / len(self.views))

    def error(self, x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        if self.tolerance > 0:
            size = 2 * self.tolerance + 1
            upper = F.max_pool2d(reconstruction, size, stride=1, padding=self.tolerance)
            lower = -F.max_pool2d(-reconstruction, size, stride=1, padding=self.tolerance)
            difference = F.relu(x - upper) + F.relu(lower - x)
        else:
            difference = x - reconstruction
        squared = difference * difference
        # A mean over one channel would still cost a full pass in ONNX Runtime (0.3 ms at 640x640).
        if squared.shape[1] == 1:
            return squared
        return squared.amax(dim=1, keepdim=True) if self.channel_max else squared.mean(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        reconstruction = self.reconstruct(x)
        return (reconstruction, self.error(x, reconstruction)) if self.graph_error else reconstruction
