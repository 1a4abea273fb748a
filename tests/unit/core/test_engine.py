"""The ONNX engine: batching, verdicts, regions, resolution, channels, tiling, recalibration, no torch."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.bundle.files import CALIBRATION_FILE, verify_bundle
from inspector.config import CalibrationSettings, InspectConfig, RegistrationSettings, ScheduleSettings, TrainConfig
from inspector.core.calibration import recalibrate, threshold_for
from inspector.core.engine import Inspector
from inspector.core.imageio import load_image
from inspector.core.preprocess import pad_to_multiple, preprocess
from inspector.errors import ConfigError


def good_boards(root: Path, split: str = "test") -> list[np.ndarray]:
    return [load_image(p) for p in sorted((root / split / "good").iterdir())]


def designed_board(rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """A gray board of one fixed design (pads on a grid, traces), as a fixtured camera sees it:
    a shift of a couple of pixels, lighting drift and sensor noise."""
    dx, dy = (int(v) for v in rng.integers(-2, 3, 2))
    image = np.full((size, size), 70, np.uint8)
    for x in range(12, size - 12, 24):
        cv2.line(image, (x + dx, 0), (x + dx, size), 110, 2)
    for y in range(16, size - 8, 24):
        for x in range(12, size - 12, 24):
            cv2.rectangle(image, (x + dx - 5, y + dy - 4), (x + dx + 5, y + dy + 4), 200, -1)
    image = cv2.convertScaleAbs(image, alpha=rng.uniform(0.9, 1.1), beta=rng.uniform(-8, 8))
    return cv2.add(image, rng.integers(0, 6, image.shape, dtype=np.uint8))


@pytest.fixture(scope="module")
def gray_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A grayscale bundle trained (~20 s) on boards of one design, long enough to tell a defect
    from a good board (the shared tiny bundle is too short-trained for that)."""
    from training.train import train_bundle

    data = tmp_path_factory.mktemp("designed")
    rng = np.random.default_rng(5)
    for index in range(16):
        cv2.imwrite(str(data / f"{index:02d}.png"), designed_board(rng))
    out = tmp_path_factory.mktemp("gray") / "bundle"
    # Four held-back boards cannot show a region line that lets some good boards through (the
    # default, 0.7 regions a board, would flag clean boards by design): the region line here is the
    # share rule at 0, whose few-boards form sits above every good board.
    config = TrainConfig(
        channels="gray", width=16, depth=3, latent_channels=4, stem_stride=2, crop_size=64, holdout_fraction=0.25,
        seed=3, threads=1,
        schedule=ScheduleSettings(epochs=30, max_minutes=3.0, batch_size=8, crops_per_image=8, epoch_crops=0),
        calibration=CalibrationSettings(region_false_alarm_rate=0.0, false_regions_per_board=0.0),
        registration=RegistrationSettings(mode="off"))
    train_bundle(data, out, config)
    return out


def test_batch_equals_single(tiny_bundle: Path, sample_root: Path) -> None:
    engine = Inspector.load(tiny_bundle, InspectConfig(batch_size=3))
    boards = good_boards(sample_root) + [good_boards(sample_root)[0][:120, :100]]  # a second size in the batch
    batched = engine.inspect_batch(boards)
    for board, together in zip(boards, batched):
        alone = engine.inspect(board)
        assert np.allclose(alone.anomaly_map, together.anomaly_map, atol=1e-5)
        assert abs(alone.score - together.score) < 1e-5
        assert alone.verdict == together.verdict and len(alone.regions) == len(together.regions)
        assert set(together.timings_ms) == {"preprocess", "inference", "postprocess", "total"}


def test_clean_boards_pass_without_regions(gray_bundle: Path) -> None:
    engine = Inspector.load(gray_bundle)
    rng = np.random.default_rng(99)  # boards never seen in training or calibration
    results = engine.inspect_batch([designed_board(rng) for _ in range(4)])
    for result in results:
        assert result.verdict == "pass" and not result.regions, (result.score, result.threshold)
        assert result.score < result.threshold and result.anomaly_map.max() < result.pixel_threshold
        assert result.calibration_version == 1 and result.model_hash == engine.model_hash


@pytest.mark.parametrize("centre", [(64, 64), (30, 90), (100, 40)])
def test_dark_blob_gives_an_overlapping_region(gray_bundle: Path, centre: tuple[int, int]) -> None:
    engine = Inspector.load(gray_bundle)
    board = designed_board(np.random.default_rng(123))
    clean = engine.inspect(board)
    damaged = board.copy()
    radius = 14
    cv2.circle(damaged, centre, radius, 10, -1)
    result = engine.inspect(damaged)
    assert result.verdict == "fail", (result.score, result.threshold)
    assert result.score > clean.score
    x0, y0, x1, y1 = centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius
    overlapping = [r for r in result.regions if r.bbox[0] < x1 and r.bbox[2] > x0 and r.bbox[1] < y1 and r.bbox[3] > y0]
    assert overlapping, [r.bbox for r in result.regions]


def test_anomaly_map_is_at_input_resolution(tiny_bundle: Path, sample_root: Path) -> None:
    engine = Inspector.load(tiny_bundle, InspectConfig(save_reconstruction=True))
    board = good_boards(sample_root)[0][:131, :150]  # not a multiple of the model stride
    result = engine.inspect(board)
    assert result.anomaly_map.shape == (131, 150) and result.anomaly_map.dtype == np.float32
    assert result.reconstruction is not None and result.reconstruction.shape == board.shape
    assert np.isfinite(result.anomaly_map).all() and result.anomaly_map.min() >= 0


def test_tiled_inference_covers_the_image(tiny_bundle: Path, sample_root: Path) -> None:
    engine = Inspector.load(tiny_bundle)
    whole = engine.inspect(good_boards(sample_root)[0])
    engine.spec = dataclasses.replace(engine.spec, tile_size=64, tile_overlap=16)
    tiled = engine.inspect(good_boards(sample_root)[0])
    assert tiled.anomaly_map.shape == whole.anomaly_map.shape
    # Away from tile seams the stitched map matches the whole-image pass closely.
    assert np.median(np.abs(tiled.anomaly_map - whole.anomaly_map)) < 0.1 * np.median(whole.anomaly_map) + 1e-6


def test_gray_and_colour_bundles(tiny_bundle: Path, gray_bundle: Path, sample_root: Path) -> None:
    colour_engine = Inspector.load(tiny_bundle)
    gray_engine = Inspector.load(gray_bundle)
    assert colour_engine.spec.channels == 3 and gray_engine.spec.channels == 1
    board = good_boards(sample_root)[0]
    gray_board = cv2.cvtColor(board, cv2.COLOR_BGR2GRAY)
    assert board.ndim == 3 and gray_board.ndim == 2
    for engine in (colour_engine, gray_engine):
        for image in (board, gray_board):  # either kind of camera image is converted to the model's channels
            result = engine.inspect(image)
            assert result.anomaly_map.shape == image.shape[:2]
    assert np.allclose(gray_engine.inspect(board).anomaly_map, gray_engine.inspect(gray_board).anomaly_map, atol=1e-4)


def test_bad_image_is_refused_clearly(tiny_bundle: Path) -> None:
    engine = Inspector.load(tiny_bundle)
    with pytest.raises(ConfigError, match="uint8"):
        engine.inspect(np.zeros((64, 64), np.float32))


def test_review_band(tiny_bundle: Path, sample_root: Path) -> None:
    board = good_boards(sample_root)[0]
    engine = Inspector.load(tiny_bundle, InspectConfig(review_band=0.999999))
    result = engine.inspect(board)
    # Under the fail line a board goes to review, whether for its regions or for the band.
    assert result.verdict == ("fail" if result.score >= result.threshold else "review")
    engine.set_image_threshold(result.score * 0.5, version=7)
    again = engine.inspect(board)
    assert again.verdict == "fail" and again.calibration_version == 7 and again.threshold == result.score * 0.5


def test_threshold_rules() -> None:
    many = np.linspace(0.0, 1.0, 1001)
    threshold, rule = threshold_for(many, 0.01)
    assert "quantile" in rule and np.mean(many >= threshold) <= 0.01
    few = [1.0, 1.1, 0.9]
    threshold, rule = threshold_for(few, 0.01)
    assert threshold > max(few) and "too few" in rule


def test_recalibrate_appends_a_version(tiny_bundle: Path, sample_root: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = Inspector.load(bundle)
    version = recalibrate(bundle, sample_root, target_false_alarm_rate=0.05, reason="new lighting", author="qa-anna")
    assert version["version"] == 2 and version["author"] == "qa-anna" and version["reason"] == "new lighting"
    assert version["stats"]["images"] == len(list((sample_root / "test" / "good").iterdir()))
    versions = json.loads((bundle / CALIBRATION_FILE).read_text())["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    verify_bundle(bundle)  # the manifest was rewritten
    after = Inspector.load(bundle)
    assert after.calibration_version == 2 and after.image_threshold == version["image_threshold"]
    assert after.pixel_scale == before.pixel_scale  # one scale across versions
    # the edge allowance belongs to the calibration, and only where no per-position model judges the board
    assert ("edge_allowance" in version) == (not before.judged_per_position)
    assert (after.edges is None) == before.judged_per_position
    with pytest.raises(ConfigError, match="reason"):
        recalibrate(bundle, sample_root, target_false_alarm_rate=0.05, reason=" ", author="x")


def test_recalibration_keeps_the_region_lines_rule_unless_qa_gives_the_other(tiny_bundle: Path, sample_root: Path,
                                                                             tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    first = json.loads((bundle / CALIBRATION_FILE).read_text())["versions"][0]
    assert first["false_regions_per_board"] == TrainConfig().calibration.false_regions_per_board  # trained unregistered
    assert "come down to at most 0.7 regions a board" in first["stats"]["pixel_threshold_rule"]
    kept = recalibrate(bundle, sample_root, target_false_alarm_rate=0.05, reason="new lighting", author="qa")
    assert kept["false_regions_per_board"] == 0.7 and kept["stats"]["at_region_line"]["regions_per_board"] <= 0.7
    tighter = recalibrate(bundle, sample_root, target_false_alarm_rate=0.05, reason="operators flooded", author="qa",
                          false_regions_per_board=0.0)
    assert tighter["stats"]["at_region_line"]["regions_per_board"] == 0.0
    assert tighter["pixel_threshold"] >= kept["pixel_threshold"]
    share = recalibrate(bundle, sample_root, target_false_alarm_rate=0.05, reason="back to a share", author="qa",
                        region_false_alarm_rate=0.5)
    assert "false_regions_per_board" not in share and "quantile 0.5" in share["stats"]["pixel_threshold_rule"]
    # and the share rule is then the one kept
    assert "false_regions_per_board" not in recalibrate(bundle, sample_root, target_false_alarm_rate=0.05,
                                                        reason="again", author="qa")


def test_runtime_does_not_import_torch(tiny_bundle: Path, sample_root: Path) -> None:
    image = sorted((sample_root / "test" / "good").iterdir())[0]
    code = (
        "import sys\n"
        "from inspector.core.engine import Inspector\n"
        "from inspector.core.imageio import load_image\n"
        f"result = Inspector.load({str(tiny_bundle)!r}).inspect(load_image({str(image)!r}))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(result.verdict)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("pass", "fail", "review")


def test_graph_error_map_matches_the_reference(tiny_bundle: Path, sample_root: Path) -> None:
    """The bundle computes the error map inside the ONNX graph; it must be the map inspector.core.scoring
    computes from the same reconstruction (the reference, also used for tiled inference)."""
    from inspector.core import scoring

    engine = Inspector.load(tiny_bundle)
    assert engine.graph_error
    board = good_boards(sample_root)[0]
    analysis = engine.analyse([board])[0]
    tensor, _ = pad_to_multiple(preprocess(board, engine.spec), engine.spec.pad_multiple)
    height, width = analysis.input_shape
    reference = scoring.smooth(scoring.error_map(tensor[:, :height, :width], np.ascontiguousarray(
        analysis.reconstruction), engine.scoring), engine.scoring.smooth_sigma)
    assert np.allclose(analysis.smoothed, reference, rtol=1e-4, atol=1e-6 * float(reference.max()))
