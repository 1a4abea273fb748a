"""Commands about models: sample boards, training, export, calibration, inspection, evaluation, bench."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from inspector.cli.common import EXISTING_DIR, EXISTING_FILE, EXISTING_PATH, store_url
from inspector.config import InspectConfig


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as exc:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 384x384, got {text!r}") from exc
    if not (32 <= width <= 8192 and 32 <= height <= 8192):
        raise typer.BadParameter(f"size must be between 32 and 8192 pixels a side, got {text!r}")
    return width, height


def samples(
    out: Path = typer.Option(..., "--out", help="Output root (MVTec-AD layout is created inside)."),
    good: int = typer.Option(40, "--good", min=1, help="Good boards for train/good."),
    defective: int = typer.Option(16, "--defective", min=0, help="Defective boards in test/<type>."),
    test_good: Optional[int] = typer.Option(None, "--test-good", min=0,
                                            help="Good boards for test/good (default: good/4, at least 4)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same images."),
    size: str = typer.Option("384x384", "--size", help="Image size WIDTHxHEIGHT."),
    fixture: bool = typer.Option(False, "--fixture", help="Boards lie in a fixture the camera sees around them "
                                 "(plate, locating pins, clamps over the board's edges) under a lamp whose glare clips."),
    camera: str = typer.Option("line", "--camera", help="line (a fixed line camera) or webcam: the fixture as a webcam "
                               "sees it (implies --fixture): glints, leaning through-hole parts, clipping, JPEG."),
) -> None:
    """Generate synthetic populated-board images with pixel-accurate defect masks."""
    dimensions = _parse_size(size)
    from inspector.synth.dataset import generate_dataset

    summary = generate_dataset(out, good=good, defective=defective, test_good=test_good, seed=seed,
                               size=dimensions, fixture=fixture, camera=camera)
    typer.echo(summary.describe())


def train(
    data: Path = typer.Option(..., "--data", help="Folder of good images, or an MVTec-AD root (uses train/good).",
                              **EXISTING_DIR),
    out: Path = typer.Option(..., "--out", help="Bundle directory to write."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs to train: the amount of work."),
    max_minutes: Optional[float] = typer.Option(
        None, "--max-minutes", min=0.05,
        help="Wall-clock safety cap: training does a fixed number of epochs; the cap cuts a slow machine short and says so."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML/JSON file of TrainConfig fields.",
                                          **EXISTING_FILE),
    method: Optional[str] = typer.Option(None, "--method", help="ae (autoencoder) or pca (patch PCA baseline)."),
    channels: Optional[str] = typer.Option(None, "--channels", help="auto, gray or color."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Checkpoint to resume from.", **EXISTING_FILE),
    roi: Optional[str] = typer.Option(None, "--roi", help="Inspection area: x,y,w,h on the reference board, or a "
                                      "mask image (non-zero = inspected). Default: the whole image."),
    registration: Optional[str] = typer.Option(None, "--registration",
                                               help="auto (on for one fixtured design), on or off."),
    atlas: Optional[str] = typer.Option(None, "--atlas", help="Per-position model of good boards: auto, on or off."),
) -> None:
    """Train a model on good boards and write a calibrated ONNX bundle."""
    from inspector import extensions
    from inspector.config import TrainConfig, load_config

    cfg = load_config(config, TrainConfig) if config else TrainConfig()
    given: dict[str, Any] = {name: value for name, value in (("epochs", epochs), ("max_minutes", max_minutes), ("method", method),
                                             ("channels", channels), ("seed", seed), ("roi", roi),
                                             ("registration", registration), ("atlas", atlas)) if value is not None}
    cfg = cfg.with_values(**given)  # the options are checked here, as the file's settings were when it was read
    extensions.training().train_bundle(data, out, cfg, resume=resume)


def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint.pt written by training.", **EXISTING_FILE),
    out: Path = typer.Option(..., "--out", help="Bundle directory to write."),
    precision: Optional[str] = typer.Option(None, "--precision",
                                  help="float32 or int8 (default: the precision the model was trained with)."),
) -> None:
    """Re-export a bundle (ONNX + metadata + parity check + calibration) from a training checkpoint."""
    from inspector import extensions

    extensions.training().export_from_checkpoint(checkpoint, out, precision=precision)


def calibrate(
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    data: Path = typer.Option(..., "--data", help="Folder of good images (or MVTec-AD root: test/good).",
                              **EXISTING_DIR),
    target_false_alarm_rate: float = typer.Option(0.01, "--target-far", min=0.0, max=0.5,
                                                  help="Share of good boards allowed to be flagged."),
    region_false_alarm_rate: Optional[float] = typer.Option(
        None, "--region-far", min=0.0, max=0.9,
        help="Share of good boards allowed to show a region (sent to review); default: keep the bundle's rule."),
    false_regions_per_board: Optional[float] = typer.Option(
        None, "--regions-per-board", min=0.0,
        help="Set the region line where the good boards show this many regions a board on average "
             "(instead of --region-far); default: keep the bundle's rule."),
    reason: str = typer.Option(..., "--reason", help="Why the thresholds change (kept in the audit trail)."),
    author: str = typer.Option("cli", "--author", help="Who recalibrates."),
) -> None:
    """Recalibrate a bundle's thresholds on good boards, as a new calibration version."""
    from inspector.core.calibration import recalibrate

    result = recalibrate(model, data, target_false_alarm_rate=target_false_alarm_rate, reason=reason, author=author,
                         region_false_alarm_rate=region_false_alarm_rate, false_regions_per_board=false_regions_per_board)
    typer.echo(f"calibration version {result['version']}: image threshold {result['image_threshold']:.4f}, "
               f"pixel threshold {result['pixel_threshold']:.4f}")


def inspect(
    paths: list[Path] = typer.Argument(..., help="Image files or folders.", **EXISTING_PATH),
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    out: Path = typer.Option(..., "--out", help="Output folder for results.jsonl, overlays and heatmaps."),
    fail_on_defect: bool = typer.Option(False, "--fail-on-defect", help="Exit 1 if any board fails."),
    batch: int = typer.Option(4, "--batch", min=1, help="Images per ONNX Runtime call."),
    min_region_area: Optional[int] = typer.Option(None, "--min-region-area", min=1, help="Drop smaller regions."),
    no_network: bool = typer.Option(False, "--no-network", help="Replace the network's output by the board's good "
                                    "expectation (the reference comparison, fixtured designs only): the network's gain."),
    db: Optional[str] = typer.Option(None, "--db", help="Judge as the runner of this store does: its newest learned "
                                     "tolerance of the bundle's model applies (URL without a password, or data directory)."),
) -> None:
    """Inspect board images and write verdicts, overlays and heatmaps."""
    from inspector.config import InspectConfig
    from inspector.feeds.batch import inspect_paths

    cfg = InspectConfig(batch_size=batch)
    if min_region_area is not None:
        cfg.min_region_area = min_region_area
    records = inspect_paths(model, paths, out, cfg, network=not no_network, tolerance_db=store_url(db) if db else None)
    if fail_on_defect and any(record.get("verdict") == "fail" for record in records):
        raise typer.Exit(1)


def evaluate(
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    data: Path = typer.Option(..., "--data", help="MVTec-AD root with test/ and ground_truth/.", **EXISTING_DIR),
    out: Path = typer.Option(..., "--out", help="Output folder for metrics.json and plots."),
    no_network: bool = typer.Option(False, "--no-network", help="Replace the network's output by the board's good "
                                    "expectation (the reference comparison, fixtured designs only): the network's gain."),
    db: Optional[str] = typer.Option(None, "--db", help="Judge as the runner of this store does: its newest learned "
                                     "tolerance of the bundle's model applies (URL without a password, or data directory)."),
) -> None:
    """Measure detection quality (AUROC, AUPRO, region recall, false regions, F1) on labelled boards."""
    from inspector.config import InspectConfig
    from inspector.quality.evaluate import evaluate as run_evaluate

    run_evaluate(model, data, out, InspectConfig(), network=not no_network, tolerance_db=store_url(db) if db else None)


def bench(
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images (default: generated boards).",
                                          **EXISTING_DIR),
    batch: int = typer.Option(InspectConfig().batch_size, "--batch", min=1,
                              help="Images per ONNX Runtime call (default: inspect.batch_size's default)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the figures as JSON here."),
    runner: bool = typer.Option(False, "--runner", help="Also measure the folder runner's sustained rate."),
    config: Optional[Path] = typer.Option(None, "--config", help="Deployment settings TOML: with --runner, the "
                                          "runner is measured again with its [lineout.*] outputs on.", **EXISTING_FILE),
) -> None:
    """Per-stage timings, throughput, torch vs ONNX Runtime, FLOPs and share of CPU peak."""
    from inspector.config import load_settings
    from inspector.quality.bench import run_bench

    run_bench(model, images=images, batch=batch, out=out, runner=runner,
              lineout=load_settings(config).lineout if config else None)
