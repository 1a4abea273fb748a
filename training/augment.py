"""Augmentation matching a fixtured camera (albumentations 2.0.8).

Boards sit in a fixture, so only small shifts and rotations, lighting drift, sensor noise and a
little defocus occur. No large rotations, and flips only when the bundle averages mirrored views
(`view_kind = "flip"`): then the network redraws mirrored boards on the line and should have seen
them in training. Boards with text or polarity marks use shifted views and are never mirrored.
"""

from __future__ import annotations

import os

# albumentations asks PyPI for a newer version on import unless told not to: training must not reach
# the network (factory workstations have none, and a slow DNS failure would stall every run).
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402 - after the variable above
import cv2

from inspector.config import TrainConfig
from inspector.core.scoring import views_for


def camera_augmentation(config: TrainConfig, seed: int) -> A.Compose:
    transforms = [
        A.Affine(
            translate_px={"x": (-config.shift_px, config.shift_px), "y": (-config.shift_px, config.shift_px)},
            rotate=(-config.rotate_deg, config.rotate_deg),
            interpolation=cv2.INTER_LINEAR,
            border_mode=cv2.BORDER_REFLECT_101,
            p=0.7,
        ),
        A.RandomBrightnessContrast(brightness_limit=config.brightness, contrast_limit=config.contrast, p=0.7),
        A.RandomGamma(gamma_limit=(90, 110), p=0.3),
        A.GaussNoise(std_range=(0.0, config.noise_std), p=0.5),
        A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.8), p=config.blur_prob),
    ]
    # Exactly the mirrors the bundle's views use (shifted views use none).
    views = views_for(config.views, config.view_kind, 2**config.depth)
    if any(view.flip_columns for view in views):
        transforms.append(A.HorizontalFlip(p=0.5))
    if any(view.flip_rows for view in views):
        transforms.append(A.VerticalFlip(p=0.5))
    return A.Compose(transforms, seed=seed)
