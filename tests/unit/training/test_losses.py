"""Reconstruction losses: each kind measures what it says, and an unknown kind is refused."""

from __future__ import annotations

import pytest
import torch

from inspector.errors import ConfigError
from training.losses import reconstruction_loss


def test_each_loss_is_zero_for_a_perfect_reconstruction_and_grows_with_the_error() -> None:
    torch.manual_seed(0)
    target = torch.rand(2, 1, 32, 32)
    off = target.clone()
    off[..., 8:16, 8:16] = 1.0 - off[..., 8:16, 8:16]
    for kind in ("l2", "ssim", "mix"):
        assert float(reconstruction_loss(target, target, kind)) == pytest.approx(0.0, abs=1e-6)
        assert float(reconstruction_loss(off, target, kind)) > 0.01


def test_unknown_loss_is_refused() -> None:
    with pytest.raises(ConfigError, match="l2, ssim, mix"):
        reconstruction_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 4), "huber")
