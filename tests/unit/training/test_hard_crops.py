"""Hard crops land where the model redraws its training boards worst, and nowhere before it has looked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inspector.config import ScheduleSettings, TrainConfig
from inspector.core.preprocess import PreprocessSpec
from inspector.core.scoring import ScoringSpec
from inspector.errors import ConfigError
from training.data import GoodImages
from training.hard_crops import HardCropSampler
from training.model import Architecture
from training.train import batches, train_bundle

SQUARE = (200, 300, 16)  # y, x, side of the one structure the fake model cannot draw, on board 1


class FlatModel(nn.Module):
    """Draws every board as flat mid-gray: its error is exactly where a board is not mid-gray."""

    def __init__(self) -> None:
        super().__init__()
        self.arch = Architecture(in_channels=1, width=4, depth=4, latent_channels=4, stem_stride=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x, 128 / 255)


def boards() -> list[np.ndarray]:
    flat = [np.full((480, 640), 128, np.uint8) for _ in range(3)]
    y, x, side = SQUARE
    flat[1][y:y + side, x:x + side] = 255
    return flat


def sampler(images: list[np.ndarray], share: float = 1.0) -> HardCropSampler:
    scoring = ScoringSpec(shift_tolerance=1, views=2, view_kind="flip")
    return HardCropSampler(images, PreprocessSpec(channels=1, pad_multiple=16), scoring, share=share, every=20, start=10)


def test_hard_crops_cover_the_structure_the_model_redraws_worst() -> None:
    images = boards()
    hard = sampler(images)
    rng = np.random.default_rng(0)
    assert hard.draw(rng, 128) is None  # nothing scored yet: every crop random
    assert not hard.due(9) and hard.due(10)
    hard.refresh(FlatModel(), torch.device("cpu"), epoch=10)
    assert not hard.due(29) and hard.due(30)
    y0, x0, side = SQUARE
    for _ in range(200):
        drawn = hard.draw(rng, 128)
        assert drawn is not None
        board, y, x = drawn
        assert board == 1
        assert 0 <= y <= 480 - 128 and 0 <= x <= 640 - 128  # always a whole window
        # the window overlaps the square (the hot cells are the square's, at 8 px a cell)
        assert y < y0 + side and y + 128 > y0 and x < x0 + side and x + 128 > x0


def test_ssim_scored_bundles_rescore_with_the_runtimes_error_map() -> None:
    # the SSIM graph returns only the reconstruction: the hot cells come from scoring.error_map
    hard = HardCropSampler(boards(), PreprocessSpec(channels=1, pad_multiple=16), ScoringSpec(error="ssim"),
                           share=1.0, every=20, start=10)
    hard.refresh(FlatModel(), torch.device("cpu"), epoch=10)
    assert hard.hot is not None and set(hard.hot[:, 0]) == {1}  # only the board with the square
    y0, x0, side = SQUARE
    rows, columns = hard.hot[:, 1] * 8, hard.hot[:, 2] * 8  # cells within the SSIM window's reach of it
    assert rows.min() >= y0 - 16 and rows.max() < y0 + side + 16
    assert columns.min() >= x0 - 16 and columns.max() < x0 + side + 16


def test_a_perfect_model_and_share_zero_leave_every_crop_random() -> None:
    images = [np.full((256, 256), 128, np.uint8) for _ in range(2)]
    hard = sampler(images)
    hard.refresh(FlatModel(), torch.device("cpu"), epoch=10)
    assert hard.hot is None  # no cell has any error: no cell is hot
    assert hard.draw(np.random.default_rng(0), 64) is None
    none_taken = sampler(boards(), share=0.0)
    none_taken.refresh(FlatModel(), torch.device("cpu"), epoch=10)
    assert none_taken.draw(np.random.default_rng(0), 64) is None


def test_training_batches_take_their_hard_share_from_the_hot_board() -> None:
    images = boards()
    good = GoodImages(channels=1, train=images, holdout=[], train_paths=[], holdout_paths=[], data_sha256="x",
                      source=Path("."))
    hard = sampler(images, share=1.0)
    hard.refresh(FlatModel(), torch.device("cpu"), epoch=10)
    config = TrainConfig(denoising=False, views=1, view_kind="shift", shift_px=0, rotate_deg=0.0, brightness=0.0,
                         contrast=0.0, noise_std=0.0, blur_prob=0.0,
                         schedule=ScheduleSettings(epoch_crops=0, batch_size=6, crops_per_image=2))
    spec = PreprocessSpec(channels=1, pad_multiple=16)
    _, targets = next(batches(good, config, spec, 64, epoch=10, hard_crops=hard))
    # every crop (share 1) holds part of the white square; without the sampler most do not
    assert all(t.max() > 0.9 for t in targets)
    _, plain = next(batches(good, config, spec, 64, epoch=10))
    assert sum(t.max() > 0.9 for t in plain) < len(plain)


def test_hard_crop_settings_are_checked(sample_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="hard crops"):
        train_bundle(sample_root, tmp_path / "b", TrainConfig().with_values(epoch_crops=0, hard_crop_share=1.5, epochs=1))


def test_residual_training_says_it_keeps_random_crops(sample_root: Path, tmp_path: Path) -> None:
    # one fixtured design trains on board - reference: a hard crop asked for there is not drawn, and the card says so
    config = TrainConfig(width=8, depth=3, latent_channels=16, crop_size=64, holdout_fraction=0.25, seed=3, threads=1,
                         schedule=ScheduleSettings(epochs=1, max_minutes=1.0, batch_size=8, crops_per_image=1, epoch_crops=0,
                                                   hard_crop_share=0.5, hard_crop_start=0))
    train_bundle(sample_root, tmp_path / "b", config)
    card = (tmp_path / "b" / "MODEL_CARD.md").read_text()
    assert "Training crops: all random (hard crops are not drawn for residual training" in card
    assert "Hard crops:" not in card
