"""Fitting the patch-PCA baseline into a bundle (`inspector train --method pca`).

Apart from `training/pca.py` (the model family) so that the family, which export builds, does not
import export back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch

from inspector.config import TrainConfig
from inspector.core.preprocess import PreprocessSpec
from inspector.core.scoring import ScoringSpec
from training.checkpoint import data_record, new_checkpoint, weights_on_cpu
from training.data import GoodImages, load_good_images
from training.export import write_bundle
from training.pca import PARITY_IMAGES, PatchPCAArchitecture, fit_patch_pca, reconstruction_mse


def train_pca_bundle(data: Path, out: Path, config: TrainConfig) -> dict[str, Any]:
    """Fit the patch PCA on good boards in `data`, write a calibrated bundle to `out`; returns metrics."""
    started = time.monotonic()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads if config.threads > 0 else (os.cpu_count() or 1))
    images: GoodImages = load_good_images(Path(data), channels=config.channels,
                                          holdout_fraction=config.holdout_fraction, seed=config.seed)
    spec = PreprocessSpec(channels=images.channels, scale=config.scale, pad_multiple=config.pca_stride,
                          tile_size=config.tile_size, tile_overlap=config.tile_overlap)
    # PCA minimises squared error, so the maps score squared error whatever `loss` says.
    scoring_spec = ScoringSpec.from_train_config(config, error="l2")  # PCA minimises squared error
    arch = PatchPCAArchitecture(in_channels=images.channels, patch=config.pca_patch, stride=config.pca_stride,
                                components=config.pca_components,
                                clamp_output=spec.mean == 0.0 and spec.std == 1.0)
    model, fit = fit_patch_pca(images.train, spec, arch, config.pca_max_patches, config.seed)
    fit["fit_seconds"] = time.monotonic() - started
    fit["train_mse"] = reconstruction_mse(model, images.train[:PARITY_IMAGES * 4], spec)
    val_mse = reconstruction_mse(model, images.holdout, spec)
    weights = weights_on_cpu(model)
    state = new_checkpoint(
        architecture=arch.to_dict(), preprocess_spec=spec.to_json(), scoring=scoring_spec.to_json(),
        config=config.record() | {"device": "cpu"},
        data=data_record(data, images.data_sha256, images.train, images.holdout, images.holdout_paths),
        parity_images=images.holdout[:PARITY_IMAGES], params=sum(p.numel() for p in model.parameters()))
    state.update({
        "model_state": weights,
        "best_state": weights,
        "history": [],  # no epochs: loss.png shows the explained-variance curve instead
        "epoch": 0,
        "best_epoch": 0,
        "best_val_loss": val_mse,
        "train_seconds": time.monotonic() - started,
        "stopped_reason": "fitted (patch PCA has no epochs)",
        "fit": fit,
    })
    return write_bundle(state, Path(out), calibration_images=images.holdout)
