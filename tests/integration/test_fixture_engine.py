"""Bundles of one fixtured design: registration, error verdicts, inspection area, per-position model,
and bundles exported before any of these existed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.bundle.files import (
    ATLAS_FILE,
    CHECKPOINT_FILE,
    MANIFEST_FILE,
    REFERENCE_FILE,
    REGISTRATION_FILE,
    ROI_FILE,
    SELFTEST_FILE,
    SURROUND_FILE,
    write_manifest,
)
from inspector.config import InspectConfig, RegistrationSettings, ScheduleSettings, TrainConfig
from inspector.core import scoring
from inspector.core.engine import Inspector
from inspector.core.imageio import load_image
from inspector.core.preprocess import pad_to_multiple, preprocess
from inspector.core.registration import RegistrationError


def moved(image: np.ndarray, dx: float, dy: float, angle: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def test_good_boards_of_one_design_get_registration_and_an_atlas(fixtured_bundle: Path) -> None:
    listed = json.loads((fixtured_bundle / MANIFEST_FILE).read_text())["files"]
    assert {REGISTRATION_FILE, REFERENCE_FILE, ATLAS_FILE} <= set(listed)
    assert ROI_FILE not in listed  # default: the whole image
    engine = Inspector.load(fixtured_bundle)
    assert engine.registration is not None and engine.atlas is not None
    assert engine.scoring.channel_reduce == "max"  # colour boards
    card = (fixtured_bundle / "MODEL_CARD.md").read_text()
    assert "Registration: on" in card and "Per-position model of good boards: on" in card
    metrics = json.loads((fixtured_bundle / "metrics.json").read_text())
    assert metrics["fixture"]["registration"]["registration"] == "on"
    # A fixtured board is never mirrored and its per-position model takes what a second view averaged.
    assert (engine.scoring.views, engine.scoring.view_kind) == (1, "shift")
    assert "Views: 1 shift view(s), chosen from the data (one fixtured design" in card
    assert "Edge allowance" not in card  # judged per position: the border included
    # ...and its image score is the mean of its few hottest pixels: a small defect is not averaged away.
    assert (engine.scoring.top_k_fraction, engine.scoring.top_k_min) == (0.00003, 4)
    assert engine.scoring.small_region_peak == 1.5  # a small region far above the line is kept
    assert ("Image score: mean of the hottest 0.003% of the map's pixels, at least 4; regions under the minimum "
            "area kept from 1.5x the region line, chosen from the data") in card
    assert "Training crops: all random, chosen from the data (one fixtured design" in card
    assert "Hard crops:" not in card


def test_unregistered_boards_keep_two_mirrored_views(tiny_bundle: Path) -> None:
    engine = Inspector.load(tiny_bundle)
    assert engine.registration is None
    assert (engine.scoring.views, engine.scoring.view_kind) == (2, "flip")
    assert (engine.scoring.top_k_fraction, engine.scoring.top_k_min) == (0.00015, 16)  # bare-board scans
    assert engine.scoring.small_region_peak == 0.0
    card = (tiny_bundle / "MODEL_CARD.md").read_text()
    assert "Views: 2 flip view(s), chosen from the data (boards not registered)" in card
    # bare boards train half their crops where the model draws them worst, rescored during training
    assert "Training crops: 50% of the crops over the model's worst-drawn cells" in card
    assert "chosen from the data (boards not registered)" in card
    assert "Hard crops: training boards rescored at epoch(s) 2, 4 (" in card


def test_shifted_and_rotated_board_scores_like_the_unshifted_one(fixtured_bundle: Path, sample_root: Path) -> None:
    engine = Inspector.load(fixtured_bundle)
    for path in sorted((sample_root / "test" / "good").iterdir())[:2]:
        board = load_image(path)
        shifted = moved(board, 2.0, -1.5, 0.5)  # within the fixture's play the training boards showed
        plain, turned = engine.inspect(board), engine.inspect(shifted)
        assert turned.verdict == plain.verdict and turned.score < engine.image_threshold
        # within the spread of good boards (the move resamples the board twice: a little blur)
        assert abs(turned.score - plain.score) <= 0.35 * max(plain.score, turned.score)
        # the map comes back onto the board as photographed: it moved with the board
        assert plain.anomaly_map.shape == turned.anomaly_map.shape == board.shape[:2]
        timings = turned.timings_ms
        assert timings["register"] > 0 and timings["photometric"] > 0


def test_board_that_cannot_be_aligned_gets_an_error_verdict(fixtured_bundle: Path, sample_root: Path,
                                                            tmp_path: Path) -> None:
    from inspector.feeds.batch import inspect_paths

    board = load_image(sorted((sample_root / "test" / "good").iterdir())[0])
    blank = np.full_like(board, 120)
    noise = np.random.default_rng(0).integers(0, 256, board.shape, dtype=np.uint8)
    turned_round = np.ascontiguousarray(board[::-1, ::-1])
    engine = Inspector.load(fixtured_bundle)
    outcomes = engine.inspect_each([board, blank, noise, turned_round])
    assert outcomes[0].verdict in ("pass", "review", "fail")
    for outcome in outcomes[1:]:
        assert isinstance(outcome, RegistrationError) and str(outcome)
    with pytest.raises(RegistrationError, match="blank"):
        engine.inspect(blank)
    # `inspector inspect`: an error record with the reason, never a score; the others are inspected.
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_good.png"), board)
    cv2.imwrite(str(folder / "b_turned.png"), turned_round)
    records = inspect_paths(fixtured_bundle, [folder], tmp_path / "out", InspectConfig())
    assert records[0]["verdict"] != "error" and records[0]["score"] is not None
    assert records[1]["verdict"] == "error" and records[1]["score"] is None
    assert "does not match the reference design" in records[1]["error"]


def test_runner_stores_an_error_verdict_for_a_board_it_cannot_align(fixtured_bundle: Path, sample_root: Path,
                                                                    tmp_path: Path) -> None:
    from inspector.config import RunnerConfig
    from inspector.feeds.folder import watch
    from inspector.store import Store

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    board = load_image(sorted((sample_root / "test" / "good").iterdir())[0])
    cv2.imwrite(str(inbox / "good.png"), board)
    cv2.imwrite(str(inbox / "blank.png"), np.full_like(board, 30))
    config = RunnerConfig(station="t", data_dir=str(tmp_path / "data"), stable_seconds=0.0, json_lines=False)
    watch(inbox, fixtured_bundle, config, InspectConfig(), once=True)
    store = Store.open(str(tmp_path / "data"))
    try:
        rows = {row.source_name: row for row in store.list_inspections(limit=10)}
    finally:
        store.close()
    assert rows["good.png"].verdict != "error"
    assert rows["blank.png"].verdict == "error" and "blank" in rows["blank.png"].error


@pytest.fixture()
def roi_bundle(fixtured_bundle: Path, tmp_path: Path) -> Path:
    """The tiny bundle with an inspection area: the left half of the board."""
    bundle = tmp_path / "roi"
    shutil.copytree(fixtured_bundle, bundle)
    reference = cv2.imread(str(bundle / REFERENCE_FILE), cv2.IMREAD_UNCHANGED)
    mask = np.zeros(reference.shape[:2], np.uint8)
    mask[:, : reference.shape[1] // 2] = 255
    cv2.imwrite(str(bundle / ROI_FILE), mask)
    write_manifest(bundle)
    return bundle


def test_region_outside_the_inspection_area_never_appears(fixtured_bundle: Path, roi_bundle: Path,
                                                          sample_root: Path) -> None:
    board = load_image(sorted((sample_root / "test" / "good").iterdir())[1])
    height, width = board.shape[:2]
    stained = board.copy()
    cv2.circle(stained, (int(width * 0.78), height // 2), 14, (20, 60, 160), -1)  # right half: outside
    whole = Inspector.load(fixtured_bundle).inspect(stained)
    assert any(region.bbox[0] >= width // 2 for region in whole.regions)  # found without an area...
    # (the area was added after export, so the export's self-test record no longer applies)
    inside_only = Inspector.load(roi_bundle, InspectConfig(selftest=False)).inspect(stained)
    assert all(region.bbox[2] <= width // 2 + 4 for region in inside_only.regions)  # ...never outside it
    assert float(inside_only.anomaly_map[:, width // 2 + 6:].max()) == 0.0


def test_parse_roi_rectangle_and_mask(tmp_path: Path) -> None:
    from training.fixture import parse_roi

    mask = parse_roi("10,20,30,40", 100, 120)
    assert mask.shape == (100, 120) and int((mask > 0).sum()) == 30 * 40 and mask[20, 10] == 255
    assert parse_roi("", 100, 120) is None
    drawn = np.zeros((100, 120), np.uint8)
    drawn[5:50, 5:50] = 1
    cv2.imwrite(str(tmp_path / "area.png"), drawn)
    assert int((parse_roi(str(tmp_path / "area.png"), 100, 120) > 0).sum()) == 45 * 45
    with pytest.raises(Exception, match="outside"):
        parse_roi("200,0,5,5", 100, 120)


def test_colour_only_defect_is_found(fixtured_bundle: Path, sample_root: Path) -> None:
    """A stain that changes mostly the red channel of a quiet surface raises a region over it."""
    engine = Inspector.load(fixtured_bundle)
    board = load_image(sorted((sample_root / "test" / "good").iterdir())[2])
    clean = engine.inspect(board)
    stained = board.copy()
    height, width = board.shape[:2]
    centre = (int(width * 0.3), int(height * 0.75))
    area = np.zeros(board.shape[:2], np.uint8)
    cv2.circle(area, centre, 7, 255, -1)
    red = stained[:, :, 2].astype(np.int16)
    red[area > 0] += 70  # flux residue: green solder mask turns brownish, B and G barely move
    stained[:, :, 2] = np.clip(red, 0, 255).astype(np.uint8)
    found = engine.inspect(stained)
    assert found.score > clean.score
    hits = [r for r in found.regions
            if r.bbox[0] - 4 <= centre[0] <= r.bbox[2] + 4 and r.bbox[1] - 4 <= centre[1] <= r.bbox[3] + 4]
    assert hits, found.regions


def test_atlas_lowers_a_good_boards_hard_structure_not_a_defect(fixtured_bundle: Path, sample_root: Path) -> None:
    engine = Inspector.load(fixtured_bundle)
    board = load_image(sorted((sample_root / "test" / "good").iterdir())[3])
    stained = board.copy()
    height, width = board.shape[:2]
    centre = (int(width * 0.3), int(height * 0.75))
    cv2.circle(stained, centre, 6, (30, 70, 150), -1)
    judged_good, judged_bad = (engine.analyse([image])[0].smoothed for image in (board, stained))
    atlas, engine.atlas = engine.atlas, None
    raw_good, raw_bad = (engine.analyse([image])[0].smoothed for image in (board, stained))
    engine.atlas = atlas
    hard = np.unravel_index(int(np.argmax(atlas.level)), atlas.level.shape)  # where good boards err most
    window = tuple(slice(max(0, c - 3), c + 4) for c in hard)
    defect = (slice(centre[1] - 6, centre[1] + 7), slice(centre[0] - 6, centre[0] + 7))
    # the hard structure, relative to the defect, drops by the atlas
    raw_ratio = raw_good[window].max() / raw_bad[defect].max()
    judged_ratio = judged_good[window].max() / judged_bad[defect].max()
    assert judged_ratio < 0.5 * raw_ratio


@pytest.fixture(scope="module")
def surround_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Boards lying in a fixture the camera sees: plate, pins, clamps over the board's edges, glare."""
    from inspector.synth.dataset import generate_dataset

    root = tmp_path_factory.mktemp("surround")
    generate_dataset(root, good=12, defective=0, test_good=3, seed=5, size=(160, 160), fixture=True)
    return root


def test_a_surround_travels_in_the_bundle_and_is_never_judged(surround_data: Path, fixtured_bundle: Path,
                                                             tmp_path: Path) -> None:
    from training.train import train_bundle

    bundle = tmp_path / "surround"
    train_bundle(surround_data, bundle, TrainConfig(
        width=8, depth=3, latent_channels=16, crop_size=64, holdout_fraction=0.25, seed=3, threads=1,
        schedule=ScheduleSettings(epochs=3, max_minutes=1.0, batch_size=8, crops_per_image=2, epoch_crops=0)))
    assert SURROUND_FILE in json.loads((bundle / MANIFEST_FILE).read_text())["files"]
    assert SURROUND_FILE not in json.loads((fixtured_bundle / MANIFEST_FILE).read_text())["files"]  # plain boards
    engine = Inspector.load(bundle)
    assert engine.registration is not None and engine.registration.surround is not None
    assert '"surround_share": 0.' in (bundle / "MODEL_CARD.md").read_text()
    for path in sorted((surround_data / "test" / "good").iterdir()):
        board = load_image(path)
        analysis = engine.analyse([board])[0]
        assert analysis.warp is not None
        covered = engine.registration.surround_on_reference(analysis.warp)
        assert covered is not None and covered.any()
        assert not analysis.smoothed[covered > 0].any()
        # overlays show it: the inspection area on the photo leaves the surround out
        area = engine.inspect(board).inspection_area
        assert area is not None and area.shape == board.shape[:2]
        assert not area[engine.registration.surround.camera > 0].any()
        assert area[int(0.7 * area.shape[0]), int(0.4 * area.shape[1])] == 255
    # A bundle whose surround file was damaged is refused with the file named.
    (bundle / SURROUND_FILE).write_bytes(b"damaged")
    with pytest.raises(Exception, match=SURROUND_FILE):
        Inspector.load(bundle)


@pytest.fixture(scope="module")
def legacy_bundle(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle as exported before registration existed: no fixture files, no "fixture" in the
    checkpoint, the channels' mean as error (re-exported from such a checkpoint)."""
    import torch

    from training.export import export_from_checkpoint
    from training.train import train_bundle

    first = tmp_path_factory.mktemp("legacy") / "first"
    train_bundle(sample_root, first, TrainConfig(
        width=8, depth=3, latent_channels=8, crop_size=64, holdout_fraction=0.25, seed=4, threads=1, channel_error="mean",
        schedule=ScheduleSettings(epochs=2, max_minutes=1.0, batch_size=8, crops_per_image=1, epoch_crops=0),
        registration=RegistrationSettings(mode="off", atlas="off")))
    checkpoint = torch.load(first / CHECKPOINT_FILE, map_location="cpu", weights_only=True)
    del checkpoint["fixture"]
    checkpoint["data"].pop("train_paths")
    old = tmp_path_factory.mktemp("legacy") / "checkpoint.pt"
    torch.save(checkpoint, old)
    return export_from_checkpoint(old, tmp_path_factory.mktemp("legacy") / "bundle", precision="float32")


def test_bundle_from_before_registration_loads_and_behaves_as_before(legacy_bundle: Path, sample_root: Path) -> None:
    listed = json.loads((legacy_bundle / MANIFEST_FILE).read_text())["files"]
    assert not {REGISTRATION_FILE, REFERENCE_FILE, ATLAS_FILE, ROI_FILE} & set(listed)
    assert SELFTEST_FILE in listed
    engine = Inspector.load(legacy_bundle)
    assert engine.registration is None and engine.atlas is None and engine.roi is None
    board = load_image(sorted((sample_root / "test" / "good").iterdir())[0])
    result = engine.inspect(board)
    # the map is exactly the path of before: preprocess -> model -> error -> smooth -> one scale, with
    # the edge allowance this calibration (made today, without a per-position model) carries
    assert engine.edges is not None
    card = (legacy_bundle / "MODEL_CARD.md").read_text()
    assert f"divided by up to {max(engine.edges.factors):.2f} within {len(engine.edges.factors)} px" in card
    tensor, (height, width) = pad_to_multiple(preprocess(board, engine.spec), engine.spec.pad_multiple)
    reconstruction, error = engine.run_model(tensor[None])
    raw = error[0, 0, :height, :width] if error is not None else scoring.error_map(
        tensor[:, :height, :width], reconstruction[0, :, :height, :width], engine.scoring)
    smoothed = scoring.smooth(np.ascontiguousarray(raw), engine.scoring.smooth_sigma)
    expected = scoring.normalise(engine.edges.apply(smoothed), engine.pixel_scale)
    np.testing.assert_allclose(result.anomaly_map, expected, rtol=1e-5, atol=1e-6)
    assert "register" not in result.timings_ms
    # an unalignable-looking image is simply scored, as before: there is no reference to refuse it
    assert engine.inspect(np.full_like(board, 120)).verdict in ("pass", "review", "fail")
