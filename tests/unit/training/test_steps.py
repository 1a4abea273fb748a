"""Training sized in optimiser steps, and the weight average's warm-up (issue 18)."""

from __future__ import annotations

import numpy as np

from inspector.config import ScheduleSettings, TrainConfig
from training.loop import warmup_epochs
from training.train import crop_order, crops_per_epoch


def test_a_few_boards_train_as_many_steps_an_epoch_as_many_boards() -> None:
    config = TrainConfig()
    assert crops_per_epoch(30, config) == crops_per_epoch(348, config) == 1392  # 87 steps of 16 crops
    assert crops_per_epoch(1000, config) == 4000  # many boards: still 4 crops each
    old_rule = TrainConfig(schedule=ScheduleSettings(epoch_crops=0))
    assert crops_per_epoch(30, old_rule) == 120  # the old rule, for tests and resumed runs
    order = crop_order(30, config, np.random.default_rng(0))
    counts = np.bincount(order, minlength=30)
    assert len(order) == 1392 and counts.max() - counts.min() <= 1  # every board equally often


def test_the_warm_up_is_a_share_of_the_planned_epochs() -> None:
    assert warmup_epochs(TrainConfig()) == 11  # of 110
    assert warmup_epochs(TrainConfig(schedule=ScheduleSettings(epochs=2))) == 0  # a two-epoch test run judges both
