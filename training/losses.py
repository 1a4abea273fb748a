"""Reconstruction losses: L2, SSIM (small own implementation with a Gaussian window) or a mix."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from inspector.config import LOSSES
from inspector.config.modes import one_of


def _gaussian_window(size: int, sigma: float, channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    coords = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = torch.outer(g, g)
    return window.expand(channels, 1, size, size).contiguous()


def ssim_map(x: torch.Tensor, y: torch.Tensor, *, window_size: int = 11, sigma: float = 1.5,
             data_range: float = 1.0) -> torch.Tensor:
    """Per-pixel SSIM (N,C,H,W) with a Gaussian window; borders use reflect padding."""
    channels = x.shape[1]
    window = _gaussian_window(window_size, sigma, channels, x.device, x.dtype)
    pad = window_size // 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (pad, pad, pad, pad), mode="reflect"), window, groups=channels)

    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sigma_x = blur(x * x) - mu_x**2
    sigma_y = blur(y * y) - mu_y**2
    sigma_xy = blur(x * y) - mu_x * mu_y
    return ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sigma_x + sigma_y + c2))


def reconstruction_loss(recon: torch.Tensor, target: torch.Tensor, kind: str, ssim_weight: float = 0.5,
                        data_range: float = 1.0) -> torch.Tensor:
    one_of("loss", kind, LOSSES)
    l2 = F.mse_loss(recon, target)
    if kind == "l2":
        return l2
    dssim = (1.0 - ssim_map(recon, target, data_range=data_range).mean()) / 2.0
    if kind == "ssim":
        return dssim
    return (1.0 - ssim_weight) * l2 + ssim_weight * dssim
