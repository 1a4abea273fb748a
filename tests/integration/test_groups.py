"""Groups of good boards (issue 18): a station under two lighting set-ups judges each board against its
own set-up's reference and per-position model, and a board lit like neither gets a reason, not a score."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.bundle.files import GROUPS_FILE, MANIFEST_FILE
from inspector.core.engine import Inspector
from inspector.core.groups import LightGroups, choose_groups
from inspector.core.registration import RegistrationError
from inspector.synth.board import render_board
from training.registration_fit import decide

pytestmark = pytest.mark.slow

SIZE = 192
CAST_B = np.array([1.7, 0.8, 0.45], np.float32)  # set-up B: a cold lamp, far bluer than A (BGR gains)
GLINT_AT = (60, 130)  # (x, y): where set-up B's lamp glints on every board (a pin's top under that lamp)


def lit(board: np.ndarray, setup: str) -> np.ndarray:
    """The board under set-up A (as rendered) or B (another white balance and a glint of its own)."""
    if setup == "A":
        return board
    out = np.clip(board.astype(np.float32) * CAST_B, 0, 255).astype(np.uint8)
    cv2.circle(out, GLINT_AT, 8, (255, 255, 255), -1)  # in the photo: the fixture play moves it by 4 px at most
    return out


def boards(count: int, split: int) -> list[np.ndarray]:
    return [render_board((SIZE, SIZE), (31, split, index)).image for index in range(count)]


@pytest.fixture(scope="module")
def two_setups(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """52 good boards, every other one under set-up B, in the MVTec layout (training only needs train/good):
    enough for a reference and a per-position model per set-up (12 and 20 boards a group at least)."""
    root = tmp_path_factory.mktemp("two-setups")
    folder = root / "train" / "good"
    folder.mkdir(parents=True)
    for index, board in enumerate(boards(52, 0)):
        cv2.imwrite(str(folder / f"{index:03d}.png"), lit(board, "B" if index % 2 else "A"))
    return root


def test_two_lighting_setups_are_found_and_each_board_is_judged_against_its_own(two_setups: Path) -> None:
    training = [cv2.imread(str(p)) for p in sorted((two_setups / "train" / "good").iterdir())]
    registration, decision = decide(training, "auto", residual=True)
    assert registration is not None and registration.groups is not None, decision
    assert registration.groups.count == 2 and "2 groups of 26, 26 boards" in decision["groups"]
    record_a: dict = {}
    record_b: dict = {}
    new_a, new_b = (lit(board, setup) for board, setup in zip(boards(2, 1), "AB"))
    registration.apply(new_a, record=record_a)
    residual_b = registration.apply(new_b, record=record_b)
    assert record_a["group"] != record_b["group"]
    # B's own glint is part of B's reference: no difference there, where one reference would show it
    x, y = GLINT_AT
    window = np.s_[y - 1:y + 2, x - 1:x + 2]
    assert np.abs(residual_b[window].astype(int) - 128).max() < 40
    single = decide(training, "auto", residual=False)[0]
    assert single is not None and single.groups is None  # groups serve the board's difference only
    aligned = single.apply(new_b)
    assert np.abs(aligned[window].astype(int) - single.reference[window].astype(int)).max() > 60


def test_a_board_lit_like_no_group_gets_a_reason_not_a_score(two_setups: Path) -> None:
    training = [cv2.imread(str(p)) for p in sorted((two_setups / "train" / "good").iterdir())]
    registration, _ = decide(training, "auto", residual=True)
    assert registration is not None
    strange = np.clip(boards(1, 2)[0].astype(np.float32) * np.array([0.45, 1.0, 1.9], np.float32), 0, 255)
    with pytest.raises(RegistrationError, match="lit unlike every group"):
        registration.apply(strange.astype(np.uint8))


def test_boards_lit_alike_stay_one_group() -> None:
    rng = np.random.default_rng(0)
    one_setup = rng.normal([0.0, 0.1, 0.0], [0.02, 0.03, 0.05], (40, 3)).astype(np.float32)
    labels, reason = choose_groups(one_setup)
    assert labels is None and reason.startswith("one group")
    two = np.concatenate([one_setup[:20], one_setup[20:] + np.array([-0.2, 0.35, 0.0], np.float32)])
    labels, reason = choose_groups(two)
    assert labels is not None and sorted(np.bincount(labels)) == [20, 20]
    assert choose_groups(np.concatenate([two[:10], two[20:30]]))[0] is None  # too few boards for two groups of 12


def test_groups_travel_in_the_bundle_with_a_per_position_model_each(two_setups: Path, tmp_path: Path) -> None:
    from inspector.config import ScheduleSettings, TrainConfig
    from training.train import train_bundle

    bundle = tmp_path / "bundle"
    train_bundle(two_setups, bundle, TrainConfig(
        width=8, depth=3, latent_channels=8, crop_size=64, holdout_fraction=0.1, seed=2, threads=1,
        schedule=ScheduleSettings(epochs=2, epoch_crops=0, max_minutes=1.0, batch_size=8, crops_per_image=1)))
    assert GROUPS_FILE in json.loads((bundle / MANIFEST_FILE).read_text())["files"]
    loaded = LightGroups.load(bundle / GROUPS_FILE)
    assert loaded.count == 2
    engine = Inspector.load(bundle)
    assert engine.atlas is not None and engine.atlas.groups == 2
    new_a, new_b = (lit(board, setup) for board, setup in zip(boards(2, 3), "AB"))
    groups = {analysis.group for analysis in engine.analyse([new_a, new_b])}
    assert groups == {0, 1}
    assert "Groups of good boards: 2 groups" in (bundle / "MODEL_CARD.md").read_text()


def test_out_of_fold_references_follow_the_bundle_s_rule(two_setups: Path) -> None:
    """A fold rebuilds what the bundle compares boards with: each group's own reference, or (when the
    network sees the one reference beside the difference) the one reference in every group."""
    from dataclasses import replace

    from inspector.core.registration import Registration
    from training.folds import fold_registration

    training = [cv2.imread(str(p)) for p in sorted((two_setups / "train" / "good").iterdir())]
    registration, _ = decide(training, "auto", residual=True)
    assert registration is not None and registration.groups is not None
    own = fold_registration(training[:30], registration)
    assert own.groups is not None and not np.array_equal(own.groups.references[0], own.groups.references[1])
    one = Registration(registration.spec, registration.reference, registration.surround,
                       replace(registration.groups, references=np.stack([registration.reference] * 2)))
    folded = fold_registration(training[:30], one)
    assert folded.groups is not None
    assert all(np.array_equal(reference, folded.reference) for reference in folded.groups.references)
    assert not np.array_equal(folded.reference, registration.reference)  # rebuilt from the fold's boards
