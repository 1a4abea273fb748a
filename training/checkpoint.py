"""checkpoint.pt: what a training run saves each epoch and a bundle keeps for re-export and resume.

The checkpoint is a plain dict (torch.save with `weights_only=True` loads only plain containers and
tensors, so a checkpoint cannot run code when it is read); `Checkpoint` types its keys so the
trainer, the exporter and the type checker agree on them.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np
import torch

from inspector.atomic import atomic_write
from inspector.errors import BundleError

FORMAT = 1
StateKey = Literal["best_state", "model_state"]  # which weights to build a model from


class DataRecord(TypedDict, total=False):
    path: str
    sha256: str
    train_count: int
    holdout_count: int
    holdout_paths: list[str]
    train_paths: list[str]  # the training boards (the per-position model is fitted on them)


class EpochRecord(TypedDict):
    epoch: int
    train_loss: float
    val_loss: float
    lr: float
    seconds: float
    complete: bool


class Checkpoint(TypedDict, total=False):
    format: int
    architecture: dict[str, Any]  # Architecture / PatchPCAArchitecture .to_dict()
    preprocess_spec: str  # PreprocessSpec JSON
    scoring: str  # ScoringSpec JSON
    config: dict[str, Any]  # the resolved TrainConfig
    data: DataRecord
    parity_images: list[torch.Tensor]  # held-back boards for the export's parity check
    params: int
    model_state: dict[str, torch.Tensor]  # weights after the last epoch (resume continues here)
    best_state: dict[str, torch.Tensor]  # weights of the best validation epoch (what is exported)
    optimizer_state: dict[str, Any]
    scheduler_state: dict[str, Any]
    epoch: int
    history: list[EpochRecord]
    best_val_loss: float
    best_epoch: int
    train_seconds: float
    stopped_reason: str
    fit: dict[str, Any]  # patch PCA only: the fit's figures
    hard_crops: list[dict[str, float]]  # each rescoring for hard crops: epoch, hot cells, seconds
    fixture: dict[str, Any]  # registration / inspection-area / per-position decisions (training/fixture.py)
    cap_forecast: dict[str, Any]  # set when the wall-clock cap was forecast to end the run early
    weight_average: dict[str, Any]  # the moving average of the weights (decay, steps, weights), when kept


# What every checkpoint needs to be exported again (a resumed or re-exported run reads these).
REQUIRED_KEYS = ("model_state", "best_state", "architecture", "preprocess_spec", "scoring", "data", "config",
                 "history", "epoch", "parity_images")


def data_record(data: Path, sha256: str, train: Sequence[np.ndarray], holdout: Sequence[np.ndarray],
                holdout_paths: Sequence[Path], train_paths: Sequence[Path] | None = None) -> DataRecord:
    """The boards a run learned from: where, their hash, and which were held back."""
    record: DataRecord = {"path": str(Path(data).resolve()), "sha256": sha256, "train_count": len(train),
                          "holdout_count": len(holdout), "holdout_paths": [str(p.resolve()) for p in holdout_paths]}
    if train_paths is not None:
        record["train_paths"] = [str(p.resolve()) for p in train_paths]
    return record


def new_checkpoint(*, architecture: dict[str, Any], preprocess_spec: str, scoring: str, config: dict[str, Any],
                   data: DataRecord, parity_images: Sequence[np.ndarray], params: int) -> Checkpoint:
    """What a run trains on and how, before any progress (the autoencoder and the patch PCA both start here)."""
    return {
        "format": FORMAT,
        "architecture": architecture,
        "preprocess_spec": preprocess_spec,
        "scoring": scoring,
        "config": config,
        "data": data,
        "parity_images": [torch.from_numpy(np.ascontiguousarray(image)) for image in parity_images],
        "params": params,
    }


def carried_progress(previous: Checkpoint) -> Checkpoint:
    """What a resumed run's checkpoint takes over from the saved one until its own first epoch is saved
    (so a run with no epoch left still exports where the saved one stood)."""
    return {"model_state": previous["model_state"], "best_state": previous["best_state"],
            "optimizer_state": previous["optimizer_state"], "scheduler_state": previous["scheduler_state"],
            "epoch": previous["epoch"], "history": previous["history"],
            "best_val_loss": previous["best_val_loss"], "best_epoch": previous["best_epoch"]}


def weights_on_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's weights on the CPU that later steps cannot change (best epoch, checkpoint)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def save_checkpoint(state: Checkpoint, path: Path) -> None:
    """Write then rename, so an interrupted save never destroys the previous epoch's checkpoint."""
    atomic_write(path, lambda stream: torch.save(dict(state), stream))


def load_checkpoint(path: Path) -> Checkpoint:
    """A checkpoint written by `save_checkpoint`, or BundleError naming what is wrong with the file."""
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise BundleError(f"{path}: cannot read the checkpoint ({exc})") from exc
    if not isinstance(loaded, dict):
        raise BundleError(f"{path}: not a board-inspector checkpoint (holds a {type(loaded).__name__})")
    missing = [key for key in REQUIRED_KEYS if key not in loaded]
    if missing:
        raise BundleError(f"{path}: not a board-inspector checkpoint (lacks {', '.join(missing)})")
    checkpoint: Checkpoint = loaded  # type: ignore[assignment]  # keys checked above
    return checkpoint
