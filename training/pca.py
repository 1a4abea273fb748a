"""The patch-PCA baseline (`inspector train --method pca`): PCA of image patches as a conv network.

A p x p patch is projected onto the top-k principal components of good-board patches and
projected back. Written as a strided Conv2d (projection, bias = -components @ mean) and a
ConvTranspose2d with the same weights (back-projection), plus the mean patch and an overlap count
that are themselves ConvTranspose layers over a ones map, it exports to the same ONNX bundle as the
autoencoder (`input` -> `reconstruction`, dynamic batch/H/W) and runs through the same engine,
calibration, evaluate and bench.

Borders: the module reflect-pads p - s pixels on each side and crops them off again, so every
output pixel is the average of exactly (p/s)^2 overlapping patch reconstructions; the fit samples
patches from training images padded the same way, so border patches are in the training set too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn
from tqdm import tqdm

from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, preprocess
from inspector.errors import ConfigError
from training.checkpoint import Checkpoint, StateKey

FAMILY = "patch_pca"
ACCUMULATE_CHUNK = 8192  # patches per covariance update (bounds memory at chunk x C*p*p floats)
MAX_VARIANCE_CURVE = 512  # explained-variance ratios kept in the checkpoint for the plot
PARITY_IMAGES = 2


@dataclass(frozen=True)
class PatchPCAArchitecture:
    """Sizes that fully determine the module (recorded in the checkpoint and ONNX metadata)."""

    in_channels: int = 1
    patch: int = 32
    stride: int = 8
    components: int = 64
    clamp_output: bool = True  # inputs in [0, 1] (mean 0, std 1 spec) -> outputs clamped to [0, 1]
    family: str = FAMILY

    def __post_init__(self) -> None:
        if self.stride < 1 or self.patch < self.stride or self.patch % self.stride:
            raise ConfigError(f"pca_patch ({self.patch}) must be a multiple of pca_stride ({self.stride}) "
                              "so that every pixel is covered by the same number of patches")
        dims = self.in_channels * self.patch * self.patch
        if not 1 <= self.components <= dims:
            raise ConfigError(f"pca_components must be in [1, {dims}] for {self.in_channels} channel(s) and "
                              f"{self.patch} px patches, got {self.components}")

    @property
    def total_stride(self) -> int:
        """The input-size multiple the engine pads to (named like the autoencoder's for export)."""
        return self.stride

    @property
    def border(self) -> int:
        """Reflect padding on each side: with it every kept pixel lies under (p/s)^2 patches."""
        return self.patch - self.stride

    @property
    def min_blocks(self) -> int:
        """Smallest input side in strides: reflect padding needs more pixels than it pads."""
        return self.border // self.stride + 1

    @property
    def dims(self) -> int:
        return self.in_channels * self.patch * self.patch

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["total_stride"] = self.total_stride
        data["min_side"] = self.min_blocks * self.stride
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchPCAArchitecture:
        known = {"in_channels", "patch", "stride", "components", "clamp_output", "family"}
        return cls(**{key: value for key, value in data.items() if key in known})


class PatchPCA(nn.Module):
    """Project every p x p patch (stride s) on k components, back-project, average the overlaps."""

    def __init__(self, arch: PatchPCAArchitecture, components: torch.Tensor | None = None,
                 mean: torch.Tensor | None = None) -> None:
        super().__init__()
        self.arch = arch
        c, k, p, s = arch.in_channels, arch.components, arch.patch, arch.stride
        self.encoder = nn.Conv2d(c, k, p, stride=s)
        self.decoder = nn.ConvTranspose2d(k, c, p, stride=s, bias=False)
        # One tensor for both: the back-projection is the transpose of the projection by construction.
        self.decoder.weight = self.encoder.weight
        self.mean_patch = nn.ConvTranspose2d(1, c, p, stride=s, bias=False)
        self.coverage = nn.ConvTranspose2d(1, 1, p, stride=s, bias=False)
        with torch.no_grad():
            self.coverage.weight.fill_(1.0)
            if components is not None and mean is not None:
                self.set_pca(components, mean)
        for parameter in self.parameters():
            parameter.requires_grad_(False)

    def set_pca(self, components: torch.Tensor, mean: torch.Tensor) -> None:
        """components: k x D (orthonormal rows), mean: D, with D = C*p*p flattened as C, p, p."""
        arch = self.arch
        if tuple(components.shape) != (arch.components, arch.dims) or tuple(mean.shape) != (arch.dims,):
            raise ConfigError(f"PCA of shape {tuple(components.shape)} / mean {tuple(mean.shape)} does not fit "
                              f"{arch.components} components of {arch.dims} dims")
        components = components.to(torch.float32)
        mean = mean.to(torch.float32)
        assert self.encoder.bias is not None  # built with bias=True
        with torch.no_grad():
            self.encoder.weight.copy_(components.reshape(arch.components, arch.in_channels, arch.patch, arch.patch))
            self.encoder.bias.copy_(-(components @ mean))
            self.mean_patch.weight.copy_(mean.reshape(1, arch.in_channels, arch.patch, arch.patch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        border = self.arch.border
        padded = F.pad(x, (border, border, border, border), mode="reflect") if border else x
        codes = self.encoder(padded)
        ones = torch.ones_like(codes[:, :1])
        total = self.decoder(codes) + self.mean_patch(ones)
        averaged = total / self.coverage(ones)
        if border:
            averaged = averaged[:, :, border:-border, border:-border]
        if self.arch.clamp_output:
            averaged = averaged.clamp(0.0, 1.0)
        return averaged


def build_patch_pca(checkpoint: Checkpoint, state_key: StateKey = "best_state") -> PatchPCA:
    """The module from a checkpoint (used by export and bench through training.export.build_model)."""
    model = PatchPCA(PatchPCAArchitecture.from_dict(checkpoint["architecture"]))
    model.load_state_dict(checkpoint[state_key])
    return model.eval()


def _padded(tensor: np.ndarray, border: int) -> np.ndarray:
    if not border:
        return tensor
    mode: Any = "reflect" if min(tensor.shape[1:]) > border else "symmetric"
    return np.pad(tensor, [(0, 0), (border, border), (border, border)], mode=mode)


def sample_patches(tensor: np.ndarray, count: int, patch: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random patches of a CxHxW tensor, flattened to count x (C*p*p) in C, p, p order."""
    windows = sliding_window_view(tensor, (patch, patch), axis=(1, 2))  # C, H-p+1, W-p+1, p, p
    ys = rng.integers(0, windows.shape[1], size=count)
    xs = rng.integers(0, windows.shape[2], size=count)
    picked = windows[:, ys, xs]  # C, count, p, p
    return np.ascontiguousarray(picked.transpose(1, 0, 2, 3)).reshape(count, -1)


@dataclass
class PatchStatistics:
    """Mean and covariance of flattened patches, accumulated without holding them all.

    Each chunk's products run in float32 (twice as fast as float64) on patches shifted by the first
    chunk's mean, which keeps the sums small and the covariance free of cancellation; the running
    sums are float64.
    """

    count: int
    total: torch.Tensor
    outer: torch.Tensor
    shift: torch.Tensor | None = None

    @classmethod
    def empty(cls, dims: int) -> PatchStatistics:
        return cls(0, torch.zeros(dims, dtype=torch.float64), torch.zeros(dims, dims, dtype=torch.float64))

    def add(self, patches: np.ndarray) -> None:
        for start in range(0, len(patches), ACCUMULATE_CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(patches[start:start + ACCUMULATE_CHUNK], np.float32))
            if self.shift is None:
                self.shift = chunk.mean(0)
            centred = chunk - self.shift
            self.count += len(chunk)
            self.total += centred.sum(0, dtype=torch.float64)
            self.outer += (centred.T @ centred).to(torch.float64)

    def pca(self, components: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(top components k x D, mean D, explained-variance ratio of every component, descending)."""
        if self.count < 2:
            raise ConfigError("patch PCA needs at least 2 patches")
        centred_mean = self.total / self.count
        covariance = (self.outer - self.count * torch.outer(centred_mean, centred_mean)) / (self.count - 1)
        assert self.shift is not None  # set by the first add(), and count >= 2 here
        mean = self.shift.to(torch.float64) + centred_mean
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        eigenvalues = eigenvalues.flip(0).clamp_min(0.0)
        eigenvectors = eigenvectors.flip(1)
        ratio = eigenvalues / eigenvalues.sum().clamp_min(1e-30)
        return eigenvectors[:, :components].T.contiguous(), mean, ratio


def fit_patch_pca(train: list[np.ndarray], spec: PreprocessSpec, arch: PatchPCAArchitecture, max_patches: int,
                  seed: int) -> tuple[PatchPCA, dict[str, Any]]:
    """Fit on patches drawn evenly from the training images (never the held-back ones)."""
    if max_patches < 1:
        raise ConfigError(f"pca_max_patches must be at least 1, got {max_patches}")
    rng = np.random.default_rng(seed)
    statistics = PatchStatistics.empty(arch.dims)
    per_image = max(1, -(-max_patches // len(train)))
    sizes = []
    for image in tqdm(train, desc=f"patch PCA: sampling {arch.patch}px patches", unit="board"):
        tensor = _padded(preprocess(image, spec), arch.border)
        if min(tensor.shape[1:]) < arch.patch:
            raise ConfigError(f"boards of {image.shape[1]}x{image.shape[0]} px are smaller than a "
                              f"{arch.patch} px patch; lower pca_patch")
        statistics.add(sample_patches(tensor, per_image, arch.patch, rng))
        sizes.append(tensor.shape[1:])
    components, mean, ratio = statistics.pca(arch.components)
    model = PatchPCA(arch, components, mean).eval()
    cumulative = torch.cumsum(ratio, 0)
    fit = {"patches": statistics.count, "patches_per_board": per_image,
           "explained_variance_share": float(cumulative[arch.components - 1]),
           "explained_variance_ratio": [float(v) for v in ratio[:MAX_VARIANCE_CURVE]]}
    return model, fit


def reconstruction_mse(model: PatchPCA, images: list[np.ndarray], spec: PreprocessSpec) -> float:
    """Mean squared error over whole images, padded as the engine pads them."""
    errors = []
    with torch.no_grad():
        for image in images:
            tensor = pad_to_multiple(preprocess(image, spec), spec.pad_multiple)[0]
            x = torch.from_numpy(np.ascontiguousarray(tensor))[None]
            errors.append(float(((model(x) - x) ** 2).mean()))
    return float(np.mean(errors)) if errors else float("nan")
