"""Training augmentation follows the views the bundle averages: mirrored boards are shown in
training only when the line will redraw mirrored boards."""

from __future__ import annotations

import albumentations as A
import numpy as np

from inspector.config import TrainConfig
from training.augment import camera_augmentation


def flips(config: TrainConfig) -> list[str]:
    return [type(t).__name__ for t in camera_augmentation(config, seed=0).transforms
            if isinstance(t, (A.HorizontalFlip, A.VerticalFlip))]


def test_mirrored_views_bring_mirrored_training_boards() -> None:
    assert flips(TrainConfig(views=4, view_kind="flip")) == ["HorizontalFlip", "VerticalFlip"]
    assert flips(TrainConfig(views=2, view_kind="flip")) == ["HorizontalFlip"]  # 2 views mirror left-right only


def test_shifted_or_single_views_never_mirror_a_board() -> None:
    assert flips(TrainConfig(views=4, view_kind="shift")) == []
    assert flips(TrainConfig(views=1, view_kind="flip")) == []
    board = np.zeros((32, 32), np.uint8)
    board[4:10, 2:6] = 255  # an asymmetric mark: a mirror would move it
    augment = camera_augmentation(TrainConfig(views=4, view_kind="shift", shift_px=0, rotate_deg=0.0), seed=1)
    for _ in range(20):
        out = augment(image=board)["image"]
        assert out[4:10, 2:6].mean() > out[22:28, 26:30].mean() + 100


def test_importing_training_does_not_reach_the_network() -> None:
    # albumentations looks up its latest version on PyPI at import unless NO_ALBUMENTATIONS_UPDATE is set.
    import subprocess
    import sys

    probe = ("import os, socket\n"
             "os.environ.pop('NO_ALBUMENTATIONS_UPDATE', None)\n"
             "calls = []\n"
             "def refuse(*args, **kwargs):\n"
             "    calls.append(args[:1])\n"
             "    raise OSError('no network in this test')\n"
             "socket.getaddrinfo = refuse\n"
             "socket.socket.connect = refuse\n"
             "import training.augment\n"
             "print(len(calls))\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "0", done.stdout + done.stderr


def test_views_chosen_from_the_data_unless_configured() -> None:
    from training.fixture import choose_views

    fixtured, why = choose_views(TrainConfig(), registered=True)
    assert (fixtured.views, fixtured.view_kind) == (1, "shift") and "chosen from the data" in why
    loose, _ = choose_views(TrainConfig(), registered=False)
    assert (loose.views, loose.view_kind) == (2, "flip")
    mine, why = choose_views(TrainConfig(views=4, view_kind="flip"), registered=True)
    assert (mine.views, mine.view_kind) == (4, "flip") and why.endswith("as configured")
    half, _ = choose_views(TrainConfig(views=2), registered=True)  # a count given, the kind still chosen
    assert (half.views, half.view_kind) == (2, "shift")
    assert flips(fixtured) == [] and flips(loose) == ["HorizontalFlip"]  # no mirrored boards on a fixtured design


def test_region_merging_chosen_from_the_data_and_recorded_in_the_scoring() -> None:
    from dataclasses import replace

    from inspector.core.scoring import ScoringSpec
    from training.fixture import choose_score

    loose, why = choose_score(TrainConfig(), registered=False)
    assert loose.region_merge_px == 8 and "parts within 8 px one region" in why
    fixtured, why = choose_score(TrainConfig(), registered=True)
    assert fixtured.region_merge_px == 0 and "px one region" not in why
    mine, why = choose_score(TrainConfig(region_merge_px=3, top_k_fraction=0.001, top_k_min=4, small_region_peak=0.0),
                             registered=True)
    assert mine.region_merge_px == 3 and why.endswith("as configured")
    assert ScoringSpec.from_train_config(replace(loose, views=2, view_kind="flip"), error="l2").region_merge_px == 8
