"""Training, checkpoints, resume, time budget, model shape, export parity and bundle integrity."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from inspector.bundle.files import (
    CALIBRATION_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOSS_PLOT_FILE,
    META_DATA_HASH,
    METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    REQUIRED_METADATA,
    verify_bundle,
)
from inspector.config import TrainConfig
from inspector.core.engine import Inspector
from inspector.core.imageio import load_image
from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, preprocess
from inspector.errors import BundleError
from training import loop as loop_module
from training.checkpoint import load_checkpoint
from training.export import build_exported_model, check_parity
from training.model import Architecture, ConvAutoencoder, count_macs, count_parameters
from training.train import train_bundle


def quick_config(**overrides) -> TrainConfig:
    """A run of a few seconds: the smallest net, one crop per board, one thread."""
    values = dict(epochs=2, max_minutes=1.0, width=4, depth=2, stem_stride=2, latent_channels=4, crop_size=32, batch_size=8,
                  crops_per_image=1, epoch_crops=0, holdout_fraction=0.25, seed=1, threads=1)
    values.update(overrides)
    return TrainConfig().with_values(**values)


@pytest.fixture(scope="module")
def two_epoch_bundle(sample_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    saved_epochs: list[int] = []
    original = loop_module.save_checkpoint

    def recording(state, path):
        saved_epochs.append(state["epoch"])
        original(state, path)

    loop_module.save_checkpoint = recording
    try:
        out = tmp_path_factory.mktemp("two") / "bundle"
        train_bundle(sample_root, out, quick_config())
    finally:
        loop_module.save_checkpoint = original
    return out, saved_epochs


def test_short_run_lowers_the_loss(tiny_bundle: Path) -> None:
    metrics = json.loads((tiny_bundle / METRICS_FILE).read_text())
    history = metrics["history"]
    assert len(history) == metrics["epochs"] >= 2
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert metrics["best_val_loss"] < history[0]["val_loss"]


def test_checkpoint_written_every_epoch(two_epoch_bundle: tuple[Path, list[int]]) -> None:
    bundle, saved_epochs = two_epoch_bundle
    assert saved_epochs == [1, 2]
    checkpoint = load_checkpoint(bundle / CHECKPOINT_FILE)
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2
    assert {"model_state", "optimizer_state", "scheduler_state", "config", "preprocess_spec"} <= set(checkpoint)
    assert not (bundle.parent / ".bundle.train").exists()  # the work folder goes once the bundle is written


def test_resume_continues_from_the_saved_epoch(two_epoch_bundle, sample_root: Path, tmp_path: Path) -> None:
    bundle, _ = two_epoch_bundle
    before = load_checkpoint(bundle / CHECKPOINT_FILE)
    metrics = train_bundle(sample_root, tmp_path / "resumed", quick_config(epochs=4),
                           resume=bundle / CHECKPOINT_FILE)
    assert metrics["epochs"] == 4
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["history"][:2] == before["history"]
    after = load_checkpoint(tmp_path / "resumed" / CHECKPOINT_FILE)
    assert after["scheduler_state"]["last_epoch"] == 4


def test_resume_refuses_other_data(two_epoch_bundle, tmp_path: Path) -> None:
    bundle, _ = two_epoch_bundle
    other = tmp_path / "other"
    other.mkdir()
    rng = np.random.default_rng(0)
    import cv2

    for i in range(4):
        cv2.imwrite(str(other / f"{i}.png"), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(BundleError, match="data hash"):
        train_bundle(other, tmp_path / "x", quick_config(epochs=3), resume=bundle / CHECKPOINT_FILE)


def test_max_minutes_stops_training(sample_root: Path, tmp_path: Path) -> None:
    metrics = train_bundle(sample_root, tmp_path / "budget", quick_config(epochs=100_000, max_minutes=0.04,
                                                                          early_stopping_patience=100_000))
    assert metrics["stopped_reason"] == "time budget"
    assert metrics["epochs"] < 100_000
    assert metrics["train_seconds"] < 0.04 * 60 + 10  # at most one partial epoch past the budget


def test_model_has_a_real_bottleneck() -> None:
    defaults = TrainConfig()
    arch = Architecture(in_channels=3, width=defaults.width, depth=defaults.depth,
                        latent_channels=defaults.latent_channels, stem_stride=defaults.stem_stride)
    model = ConvAutoencoder(arch)
    assert 100_000 <= count_parameters(model) <= 600_000  # the default size
    assert count_macs(model, 640, 640) < 2e9  # a 640x640 board stays cheap on a line PC's CPU
    x = torch.rand(1, 3, 128, 96)
    latent = model.encode(x)
    assert latent.shape[2:] == (128 // 16, 96 // 16)
    assert latent.numel() < x.numel() / 4
    assert model(x).shape == x.shape
    names = [type(m).__name__ for m in model.modules()]
    assert "Sigmoid" in names  # inputs in [0, 1] -> outputs in [0, 1]


def test_export_parity_at_two_sizes(tiny_bundle: Path, float_bundle: Path, sample_root: Path) -> None:
    """Every graph output (averaged reconstruction, error map) of the float32 export against the torch
    module it came from (the default INT8 bundle is checked against float32 in test_quantize.py)."""
    checkpoint = load_checkpoint(tiny_bundle / CHECKPOINT_FILE)
    model = build_exported_model(checkpoint)
    spec = PreprocessSpec.from_json(checkpoint["preprocess_spec"])
    session = ort.InferenceSession(str(float_bundle / MODEL_FILE), providers=["CPUExecutionProvider"])
    image = load_image(sorted((sample_root / "test" / "good").iterdir())[0])
    full = pad_to_multiple(preprocess(image, spec), spec.pad_multiple)[0][None]
    other = np.ascontiguousarray(np.concatenate([full[:, :, :48, :80], full[:, :, 40:88, 8:88]]))
    for batch in (full, other):
        with torch.no_grad():
            expected_recon, expected_error = (t.numpy() for t in model(torch.from_numpy(batch)))
        got_recon, got_error = session.run(["reconstruction", "error"], {"input": batch})
        assert got_recon.shape == batch.shape and got_error.shape == (batch.shape[0], 1, *batch.shape[2:])
        assert np.abs(got_recon - expected_recon).max() < 1e-4
        assert np.abs(got_error - expected_error).max() < 1e-4 * max(1.0, float(expected_error.max()))
    metrics = json.loads((float_bundle / METRICS_FILE).read_text())
    assert metrics["parity_max_abs_diff"] < 1e-4 and metrics["precision"] == "float32"


def test_parity_check_catches_a_mismatch(tiny_bundle: Path, float_bundle: Path, sample_root: Path) -> None:
    checkpoint = load_checkpoint(tiny_bundle / CHECKPOINT_FILE)
    model = build_exported_model(checkpoint)
    with torch.no_grad():
        next(model.parameters()).add_(0.05)  # torch no longer matches the exported graph
    spec = PreprocessSpec.from_json(checkpoint["preprocess_spec"])
    image = load_image(sorted((sample_root / "test" / "good").iterdir())[0])
    with pytest.raises(BundleError, match="differs from torch"):
        check_parity(model, float_bundle / MODEL_FILE, [image], spec)


def test_bundle_round_trips(tiny_bundle: Path, sample_root: Path) -> None:
    manifest = verify_bundle(tiny_bundle)
    for name in (MODEL_FILE, CALIBRATION_FILE, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, LOSS_PLOT_FILE,
                 MODEL_CARD_FILE):
        assert name in manifest["files"]
    engine = Inspector.load(tiny_bundle)
    assert engine.model_hash == manifest["files"][MODEL_FILE]["sha256"]
    assert engine.calibration_version == 1 and 0 < engine.image_threshold < float("inf")
    metadata = engine.session.get_modelmeta().custom_metadata_map
    assert all(key in metadata for key in REQUIRED_METADATA)
    digest = hashlib.sha256()
    for path in sorted((sample_root / "train" / "good").iterdir()):
        digest.update(path.read_bytes())
    assert metadata[META_DATA_HASH] == digest.hexdigest()
    config = json.loads((tiny_bundle / CONFIG_FILE).read_text())
    assert config["preprocess"]["channels"] == engine.spec.channels and config["seed"] == 3
    calibration = json.loads((tiny_bundle / CALIBRATION_FILE).read_text())["versions"][0]
    assert calibration["stats"]["images"] == config["data"]["holdout_count"] >= 1
    assert "sha256" in (tiny_bundle / MODEL_CARD_FILE).read_text()


@pytest.fixture()
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    return copy


def test_truncated_model_is_refused(bundle_copy: Path) -> None:
    model = bundle_copy / MODEL_FILE
    model.write_bytes(model.read_bytes()[:1000])
    with pytest.raises(BundleError, match="model.onnx"):
        Inspector.load(bundle_copy)


def test_edited_calibration_is_refused(bundle_copy: Path) -> None:
    path = bundle_copy / CALIBRATION_FILE
    data = json.loads(path.read_text())
    data["versions"][0]["image_threshold"] *= 10
    path.write_text(json.dumps(data, indent=2) + "\n")
    with pytest.raises(BundleError, match="calibration.json"):
        Inspector.load(bundle_copy)


@pytest.mark.parametrize("name", [MODEL_FILE, CALIBRATION_FILE])
def test_missing_file_is_refused(bundle_copy: Path, name: str) -> None:
    (bundle_copy / name).unlink()
    with pytest.raises(BundleError, match=name.replace(".", r"\.")):
        Inspector.load(bundle_copy)


def test_cli_train_and_export(sample_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "train.toml"
    config.write_text("width = 4\ndepth = 2\nstem_stride = 2\nlatent_channels = 4\ncrop_size = 32\ncrops_per_image = 1\n"
                      "epoch_crops = 0\n"
                      "holdout_fraction = 0.25\nthreads = 1\n")
    bundle = tmp_path / "cli-bundle"
    result = subprocess.run([sys.executable, "-m", "inspector", "train", "--data", str(sample_root), "--out",
                             str(bundle), "--epochs", "1", "--config", str(config)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    verify_bundle(bundle)
    again = tmp_path / "re-exported"
    result = subprocess.run([sys.executable, "-m", "inspector", "export", "--checkpoint",
                             str(bundle / CHECKPOINT_FILE), "--out", str(again)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    verify_bundle(again)
    assert Inspector.load(again).calibration_version == 1
    # A checkpoint that is not one gives one error line, not a traceback.
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    result = subprocess.run([sys.executable, "-m", "inspector", "export", "--checkpoint", str(bogus), "--out",
                             str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and result.stderr.startswith("error:") and "bogus.pt" in result.stderr
    assert not (tmp_path / "nope").exists()


def test_half_scale_mix_loss_bundle(sample_root: Path, tmp_path: Path) -> None:
    """Working resolution below the input's and the SSIM+L2 error travel through the bundle."""
    train_bundle(sample_root, tmp_path / "half", quick_config(epochs=1, scale=0.5, loss="mix", smooth_sigma=2.0))
    engine = Inspector.load(tmp_path / "half")
    assert engine.spec.scale == 0.5 and engine.scoring.error == "mix" and engine.scoring.smooth_sigma == 2.0
    board = load_image(sorted((sample_root / "test" / "good").iterdir())[0])
    result = engine.inspect(board)
    assert result.anomaly_map.shape == board.shape[:2]
    assert np.isfinite(result.score)


def test_model_without_metadata_is_refused(bundle_copy: Path) -> None:
    import onnx

    from inspector.bundle.files import write_manifest

    model = onnx.load(str(bundle_copy / MODEL_FILE))
    del model.metadata_props[:]
    onnx.save(model, str(bundle_copy / MODEL_FILE))
    write_manifest(bundle_copy)  # a consistent manifest: only the metadata check can catch it
    with pytest.raises(BundleError, match="metadata"):
        Inspector.load(bundle_copy)


def test_the_averaged_weights_are_judged_and_exported_and_resume_carries_on(sample_root: Path, tmp_path: Path) -> None:
    import torch

    first = tmp_path / "averaged"
    train_bundle(sample_root, first, quick_config(epochs=1, weight_average_decay=0.99))
    saved = load_checkpoint(first / CHECKPOINT_FILE)
    kept = saved["weight_average"]
    steps_per_epoch = kept["steps"]
    assert kept["decay"] == 0.99 and steps_per_epoch > 0
    live, averaged, best = saved["model_state"], kept["weights"], saved["best_state"]
    assert any(not torch.equal(live[k], averaged[k]) for k in live)  # the average trails the live weights
    assert saved["best_epoch"] == saved["epoch"] == 1
    assert all(torch.equal(best[k], averaged[k]) for k in best)  # what is exported is the average
    train_bundle(sample_root, tmp_path / "resumed", quick_config(epochs=3, weight_average_decay=0.99),
                 resume=first / CHECKPOINT_FILE)
    resumed = load_checkpoint(tmp_path / "resumed" / CHECKPOINT_FILE)
    assert resumed["weight_average"]["steps"] == 3 * steps_per_epoch  # counted on, not restarted
    card = (tmp_path / "resumed" / "MODEL_CARD.md").read_text()
    assert f"moving average of the training steps' weights (decay 0.99, {3 * steps_per_epoch} steps)" in card


def test_no_epoch_inside_the_warm_up_is_the_best(sample_root: Path, tmp_path: Path) -> None:
    """The exported weights are never those of the first epochs, however good their validation looked."""
    metrics = train_bundle(sample_root, tmp_path / "warm", quick_config(epochs=6, warmup_fraction=0.5,
                                                                         early_stopping_patience=100))
    assert metrics["best_epoch"] >= 4
    saved = load_checkpoint(tmp_path / "warm" / CHECKPOINT_FILE)
    assert saved["best_epoch"] == metrics["best_epoch"]
