"""Photographed boards of one fixtured design (issue 18): the network earns its place over the plain
reference comparison, the lines stand on every good board, `--no-network` is that comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.bundle.files import CALIBRATION_FILE, CHECKPOINT_FILE, MANIFEST_FILE, REFERENCE_CALIBRATION_FILE
from inspector.config import InspectConfig, TrainConfig
from inspector.core import scoring
from inspector.core.engine import Inspector
from inspector.core.imageio import load_image
from inspector.core.preprocess import preprocess, to_channels
from inspector.quality.evaluate import evaluate
from inspector.quality.gain import LEARNED_MIN_RATIO, network_gain

pytestmark = pytest.mark.slow

# The network must leave at most this share of the reference comparison's error tail on held-back good
# boards, i.e. lower it by at least 1 / 0.85 = 1.18x (measured on this station: 0.72 after 1600 steps;
# the untrained network leaves more than all of it).
TAIL_SHARE_AT_MOST = 0.85


def station_config(**overrides: object) -> TrainConfig:
    """A station's first boards, trained for seconds: 1600 optimiser steps of the default network, however few the boards."""
    values: dict = dict(epochs=10, epoch_crops=1280, max_minutes=3.0, crop_size=64,
                        batch_size=8, holdout_fraction=0.15, seed=5, threads=1)
    values.update(overrides)
    return TrainConfig().with_values(**values)


@pytest.fixture(scope="module")
def station(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 good boards of one design as a webcam sees it (31 train, 5 held back) and a few test boards.
    Not the plain generated boards: at 160 px their good boards differ by sensor noise alone, which no
    network can redraw; glints, leaning parts and defocus are what it can learn."""
    from inspector.synth.dataset import generate_dataset

    root = tmp_path_factory.mktemp("station")
    generate_dataset(root, good=36, defective=7, test_good=6, seed=21, size=(256, 256), camera="webcam")
    return root


@pytest.fixture(scope="module")
def station_bundle(station: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from training.train import train_bundle

    out = tmp_path_factory.mktemp("station-bundle") / "bundle"
    metrics = train_bundle(station, out, station_config())
    return out, metrics


def test_the_network_lowers_held_back_error_below_the_reference_comparison(station_bundle: tuple[Path, dict]) -> None:
    bundle, metrics = station_bundle
    gain = metrics["network_gain"]
    assert gain["boards"] == 5 and gain["learned"]
    assert 1 / gain["tail_ratio"] <= TAIL_SHARE_AT_MOST, gain
    assert gain["network_tail"] < gain["reference_tail"]
    card = (bundle / "MODEL_CARD.md").read_text()
    assert "What the network adds" in card and "the network learned" in card


def test_an_untrained_network_is_called_out(station_bundle: tuple[Path, dict], station: Path, tmp_path: Path) -> None:
    """The same bundle exported with the network's initial weights: the gain says it did not learn."""
    import torch

    from training.checkpoint import load_checkpoint
    from training.export import write_bundle
    from training.model import Architecture, ConvAutoencoder

    bundle, _ = station_bundle
    checkpoint = load_checkpoint(bundle / CHECKPOINT_FILE)
    torch.manual_seed(5)
    initial = ConvAutoencoder(Architecture.from_dict(checkpoint["architecture"]))
    checkpoint["best_state"] = {k: v.detach().clone() for k, v in initial.state_dict().items()}
    held_back = [load_image(Path(p)) for p in checkpoint["data"]["holdout_paths"]]
    metrics = write_bundle(checkpoint, tmp_path / "untrained", calibration_images=held_back)
    gain = metrics["network_gain"]
    assert not gain["learned"] and gain["tail_ratio"] < LEARNED_MIN_RATIO
    assert "DID NOT LEARN" in (tmp_path / "untrained" / "MODEL_CARD.md").read_text()


def test_lines_stand_on_every_training_board_out_of_fold(station_bundle: tuple[Path, dict]) -> None:
    bundle, metrics = station_bundle
    first = json.loads((bundle / CALIBRATION_FILE).read_text())["versions"][0]
    data = json.loads((bundle / "config.json").read_text())["data"]
    assert first["stats"]["out_of_fold_images"] == data["train_count"] == 31
    assert first["stats"]["images"] == data["train_count"] + data["holdout_count"]
    spread = first["stats"]["line_spread"]
    low, high = spread["region_line_p10_p90"]
    assert low <= first["pixel_threshold"] * 1.0001 and high >= low > 0
    assert spread["hottest_maxima"] == sorted(spread["hottest_maxima"], reverse=True)
    assert "out of fold" in (bundle / "MODEL_CARD.md").read_text()


def test_out_of_fold_maps_are_hotter_than_in_sample_ones(station_bundle: tuple[Path, dict]) -> None:
    """A training board judged by a per-position model fitted without it is no longer its own excuse."""
    from training.checkpoint import load_checkpoint
    from training.folds import out_of_fold_analyses

    bundle, _ = station_bundle
    checkpoint = load_checkpoint(bundle / CHECKPOINT_FILE)
    boards = [load_image(Path(p)) for p in checkpoint["data"]["train_paths"]]
    engine = Inspector.load(bundle)
    in_sample = [float(a.smoothed.max()) for a in engine.analyse(boards)]
    out_of_fold = [float(a.smoothed.max()) for a in out_of_fold_analyses(engine, boards, checkpoint["fixture"]["atlas"])]
    assert len(out_of_fold) == len(boards)
    assert np.median(out_of_fold) > np.median(in_sample)


def test_no_network_is_the_plain_reference_comparison(station_bundle: tuple[Path, dict], station: Path) -> None:
    bundle, _ = station_bundle
    engine = Inspector.load(bundle, network=False)
    assert engine.expectation_kind == "no difference from the reference"
    assert engine.calibration is not None
    assert engine.calibration.record == json.loads((bundle / REFERENCE_CALIBRATION_FILE).read_text())["versions"][-1]
    board = load_image(next((station / "test" / "good").iterdir()))
    engine.atlas = None  # compare the raw map
    smoothed = engine.analyse([board])[0].smoothed
    # by hand: the aligned, light-normalised board minus the reference, per channel, worst channel, squared
    assert engine.registration is not None
    record: dict = {}
    aligned = engine.registration.apply(to_channels(board, engine.spec.channels), residual=False, record=record)
    reference = engine.registration.reference_for(record["group"])  # its lighting set-up's (core/groups.py)
    # board - reference + 128 is saturated in 8 bits, as the network's input is
    residual = np.clip(aligned.astype(np.int16) - reference.astype(np.int16) + 128, 0, 255)
    difference = np.abs(preprocess(residual.astype(np.uint8), engine.spec)
                        - preprocess(np.full_like(aligned, 128), engine.spec)).max(axis=0)
    expected = scoring.smooth(difference * difference, engine.scoring.smooth_sigma)
    inside = smoothed > 0
    assert inside.mean() > 0.5
    assert np.allclose(smoothed[inside], expected[inside], rtol=1e-3, atol=1e-4 * float(expected.max()))


def test_evaluate_and_inspect_without_the_network(station_bundle: tuple[Path, dict], station: Path,
                                                  tmp_path: Path) -> None:
    bundle, _ = station_bundle
    plain = evaluate(bundle, station, tmp_path / "plain", InspectConfig(), network=False)
    assert plain["network"].startswith("off") and plain["image_auroc"] is not None
    with_network = evaluate(bundle, station, tmp_path / "net", InspectConfig())
    assert with_network["network"] is True
    result = subprocess.run([sys.executable, "-m", "inspector", "inspect", "--model", str(bundle), "--no-network",
                             "--out", str(tmp_path / "inspected"), str(station / "test" / "good")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "inspected" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6


def test_no_network_needs_a_good_expectation(tiny_bundle: Path, station: Path, tmp_path: Path) -> None:
    """Boards that are not registered have no expectation: a clear error, not a score."""
    result = subprocess.run([sys.executable, "-m", "inspector", "evaluate", "--model", str(tiny_bundle), "--no-network",
                             "--data", str(station), "--out", str(tmp_path / "e")], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode != 0
    assert "not registered to a reference" in result.stderr + result.stdout
    with pytest.raises(Exception, match="not registered"):
        network_gain(Inspector.load(tiny_bundle), [cv2.imread(str(next((station / "test" / "good").iterdir())))])


def test_a_bundle_from_before_the_reference_comparison_says_to_re_export(station_bundle: tuple[Path, dict],
                                                                        tmp_path: Path) -> None:
    import shutil

    from inspector.bundle.files import write_manifest
    from inspector.errors import BundleError

    bundle, _ = station_bundle
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    (old / REFERENCE_CALIBRATION_FILE).unlink()
    write_manifest(old)
    assert REFERENCE_CALIBRATION_FILE not in json.loads((old / MANIFEST_FILE).read_text())["files"]
    Inspector.load(old)  # with the network as before
    with pytest.raises(BundleError, match="re-export"):
        Inspector.load(old, network=False)
