"""The training loop: good boards in, a calibrated ONNX bundle out (`inspector train`)."""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from inspector.config import TrainConfig, from_dict
from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, preprocess
from inspector.core.registration import Registration
from inspector.core.scoring import ScoringSpec, views_for
from inspector.errors import BundleError, ConfigError
from training.augment import camera_augmentation
from training.checkpoint import Checkpoint, carried_progress, data_record, load_checkpoint, new_checkpoint
from training.corruption import corrupt
from training.data import GoodImages, load_good_images, random_window, source_crop_size, to_model_crop, window_origin
from training.export import write_bundle
from training.fixture import choose_crops, choose_score, choose_views, decide_fixture, registration_of
from training.hard_crops import HardCropSampler
from training.loop import FitState, Run, Schedule, WeightAverage, fit
from training.model import Architecture, ConvAutoencoder, count_parameters, set_reference
from training.pca_fit import train_pca_bundle

RESIDUAL_MEAN = 128.0 / 255.0  # no difference from the reference
RESIDUAL_STD = 0.05  # about the spread of augmented good residuals in [0, 1] units (0.05-0.08 on the sample boards)
MAX_VALIDATION_IMAGES = 32  # bounds the per-epoch validation cost on big hold-outs
PARITY_IMAGES = 2


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def choose_device(setting: str) -> torch.device:
    if setting not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {setting!r}")
    if setting == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA GPU")
    return torch.device("cuda" if setting != "cpu" and torch.cuda.is_available() else "cpu")


def fitted_crop_size(config: TrainConfig, images: GoodImages, spec: PreprocessSpec) -> int:
    """crop_size rounded down to the model stride and to what the smallest board allows."""
    smallest = min(min(image.shape[:2]) for image in images.train)
    fits = int(smallest * spec.scale) - 1 if spec.scale != 1.0 else smallest
    crop = min(config.crop_size, fits) // spec.pad_multiple * spec.pad_multiple
    if crop < spec.pad_multiple:
        raise ConfigError(f"boards of {smallest} px are too small for a model with stride {spec.pad_multiple}")
    return crop


def crops_per_epoch(boards: int, config: TrainConfig) -> int:
    """Crops an epoch draws: crops_per_image a board, and at least epoch_crops (training sized in steps)."""
    return max(boards * config.schedule.crops_per_image, config.schedule.epoch_crops)


def crop_order(boards: int, config: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Which board each of an epoch's crops comes from: every board equally often (to within one crop)."""
    total = crops_per_epoch(boards, config)
    order = np.resize(np.arange(boards), total)
    rng.shuffle(order)
    return order


def batches(images: GoodImages, config: TrainConfig, spec: PreprocessSpec, crop: int,
            epoch: int, registered: bool = False, registration: Registration | None = None,
            hard_crops: HardCropSampler | None = None,
            reference_input: bool = False, groups: Sequence[int] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(input, target) batches of random augmented crops; seeded per epoch so resume is repeatable.
    `registered`: the boards are already aligned, so augmentation moves them only by what registration
    leaves. `registration` in residual mode: each augmented board window becomes its difference from
    the same window of the reference (the camera's variation acts on the board, not on the difference).
    `hard_crops`: a share of the crops goes where the model last redrew its training boards worst.
    `reference_input` (residual mode): each input crop carries the reference's crop as extra channels.
    `groups`: each training board's group of good boards, whose reference its difference is taken from."""
    rng = np.random.default_rng([config.seed, epoch])
    augment_config = config
    if registered:
        augment_config = replace(config, shift_px=config.registration.registered_shift_px,
                                 rotate_deg=config.registration.registered_rotate_deg)
    augment = camera_augmentation(augment_config, seed=config.seed * 100_003 + epoch)
    side = source_crop_size(crop, spec)
    order = crop_order(len(images.train), config, rng)
    for start in range(0, len(order), config.schedule.batch_size):
        targets, inputs = [], []
        for index in order[start:start + config.schedule.batch_size]:
            reference_crop = None
            if registration is not None:
                y, x = window_origin(images.train[index], side, rng)
                board = augment(image=images.train[index][y:y + side, x:x + side])["image"]
                group = groups[index] if groups is not None else 0  # its group's reference (core/groups.py)
                window = registration.residual_of(board, registration.reference_for(group)[y:y + side, x:x + side])
                target = to_model_crop(window, crop, spec)
                if reference_input:
                    reference_crop = to_model_crop(registration.reference[y:y + side, x:x + side], crop, spec)
            else:
                hard = hard_crops.draw(rng, side) if hard_crops is not None else None
                if hard is None:
                    window = random_window(images.train[index], side, rng)
                else:
                    board, y, x = hard
                    window = images.train[board][y:y + side, x:x + side]
                target = to_model_crop(augment(image=window)["image"], crop, spec)
            targets.append(target)
            board_input = corrupt(target, rng) if config.denoising else target
            inputs.append(board_input if reference_crop is None else np.concatenate([board_input, reference_crop]))
        yield np.stack(inputs), np.stack(targets)


@dataclass
class Prepared:
    """The boards and everything decided from them before a model exists (`prepare_data`)."""

    config: TrainConfig  # with the views, score and crops made concrete for these boards
    images: GoodImages  # aligned and light-normalised when the design is registered
    raw_train: list[np.ndarray]  # as photographed: the per-position model is fitted through the engine
    raw_holdout: list[np.ndarray]  # as photographed: calibration and parity go through the engine
    registration: Registration | None
    residual: Registration | None  # the registration when the model learns board - reference
    groups: list[int] | None  # each training board's group of good boards
    fixture: dict[str, Any]
    spec: PreprocessSpec
    scoring: ScoringSpec
    arch: Architecture
    crop: int


def train_bundle(data: Path, out: Path, config: TrainConfig, resume: Path | None = None) -> dict:
    """Train on good boards in `data`, write a calibrated bundle to `out`; returns metrics.json's content.

    The steps: prepare data, resume or start, fit, choose, then `write_bundle` exports, calibrates and
    writes the card."""
    started = time.monotonic()  # the budget counts data loading too
    # TrainConfig checks its modes and ranges when it is built; built again here, because a caller may
    # have set fields on it since (the CLI's options are set on the config file's settings).
    config = replace(config)
    previous = load_checkpoint(Path(resume)) if resume is not None else None
    if previous is not None:
        config = resumed_config(previous, config, Path(resume or ""))
    if config.method == "pca":
        return train_pca_bundle(Path(data), Path(out),
                                choose_score(choose_views(config, registered=False)[0], registered=False)[0])
    seed_everything(config.seed)
    torch.set_num_threads(config.threads if config.threads > 0 else (os.cpu_count() or 1))
    device = choose_device(config.device)
    prepared = prepare_data(Path(data), config, previous, resume)
    run = resume_or_start(prepared, Path(data), device, previous, resume)
    work = Path(out).parent / f".{Path(out).name}.train"
    work.mkdir(parents=True, exist_ok=True)
    stopped = fit_run(run, prepared, device, work / "checkpoint.pt", started)
    choose(run, prepared.config, stopped, started)
    metrics = write_bundle(run.state, Path(out), calibration_images=prepared.raw_holdout,
                           atlas_images=prepared.raw_train)
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def resumed_config(previous: Checkpoint, config: TrainConfig, resume: Path) -> TrainConfig:
    """The run continues with the saved settings; only the stopping limits come from the caller."""
    saved = from_dict(TrainConfig, previous["config"], f"{resume} config")
    limits = config.schedule
    saved = saved.with_values(epochs=limits.epochs, max_minutes=limits.max_minutes,
                              early_stopping_patience=limits.early_stopping_patience)
    if saved.method == "pca":
        raise ConfigError(f"{resume}: a patch PCA is fitted in one pass; there is nothing to resume")
    return saved


def prepare_data(data: Path, config: TrainConfig, previous: Checkpoint | None, resume: Path | None) -> Prepared:
    """Load and split the boards, decide (or, resumed, take the saved) fixture, align the boards, and
    settle the preprocessing, scoring, architecture and crop size."""
    images = load_good_images(data, channels=config.channels, holdout_fraction=config.holdout_fraction,
                              seed=config.seed)
    raw_train, raw_holdout = images.train, images.holdout
    if previous is not None and previous["data"]["sha256"] != images.data_sha256:  # before any use of its reference
        raise BundleError(f"{resume}: was trained on other images (data hash differs); resume needs the same data")
    if previous is not None and "fixture" in previous:
        registration, fixture = registration_of(previous), previous["fixture"]
    else:
        registration, fixture = decide_fixture(config, images.train)
    registered = registration is not None
    config, fixture["views"] = choose_views(config, registered=registered)
    config, fixture["score"] = choose_score(config, registered=registered)
    residual = registration if registration is not None and registration.spec.residual else None
    config, fixture["crops"] = choose_crops(config, registered=registered, residual=residual is not None)
    views_for(config.views, config.view_kind, 2**config.depth)
    groups: list[int] | None = None
    if registration is not None:
        # The model learns (and validates on) boards as the runtime hands them over: aligned to the
        # reference and light-normalised; calibration gets the raw boards, the engine aligns them.
        # (In residual mode the training boards stop before the subtraction: see `batches`.)
        records: list[dict] = [{} for _ in images.train]
        images.train = [registration.apply(image, residual=False, record=record)
                        for image, record in zip(images.train, records)]
        groups = [int(record.get("group", 0)) for record in records]
        images.holdout = [registration.apply(image) for image in images.holdout]
    # Residual boards (board - reference + 128) are standardised: their good variation spans a few grey
    # levels around 128, and in [0, 1] the network's first layers saw a constant and it never left its
    # initial output (a flat 0.5 map, training loss flat; issue 18). Standardised, it learns in tens of steps.
    mean, std = (RESIDUAL_MEAN, RESIDUAL_STD) if residual is not None else (0.0, 1.0)
    spec = PreprocessSpec(channels=images.channels, scale=config.scale, pad_multiple=2**config.depth, mean=mean,
                          std=std, tile_size=config.tile_size, tile_overlap=config.tile_overlap)
    # Score with the error the model was trained to minimise.
    scoring = ScoringSpec.from_train_config(config, error=config.loss, channels=images.channels)
    reference_input = residual is not None and config.registration.reference_input
    if reference_input and config.views != 1:
        raise ConfigError(f"the reference beside the board (reference_input) needs one view, got views = {config.views}")
    arch = Architecture(in_channels=images.channels, width=config.width, depth=config.depth,
                        latent_channels=config.latent_channels, stem_stride=config.stem_stride,
                        output_sigmoid=spec.mean == 0.0 and spec.std == 1.0,
                        reference_channels=images.channels if reference_input else 0)
    return Prepared(config, images, raw_train, raw_holdout, registration, residual, groups, fixture, spec, scoring,
                    arch, fitted_crop_size(config, images, spec))


def resume_or_start(prepared: Prepared, data: Path, device: torch.device, previous: Checkpoint | None,
                    resume: Path | None) -> Run:
    """A new model, optimiser and schedule, and the checkpoint of this run; resumed, all of them continue
    from `previous` (the one place a saved run's weights and progress are read back)."""
    config, arch = prepared.config, prepared.arch
    model = ConvAutoencoder(arch).to(device).to(memory_format=torch.channels_last)  # see loop.train_epoch
    if prepared.residual is not None and model.reference_input is not None:
        set_reference(model, prepared.residual, prepared.spec)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.schedule.learning_rate, weight_decay=config.schedule.weight_decay)
    schedule = Schedule()
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: schedule.factor())
    images = prepared.images
    state = new_checkpoint(
        architecture=arch.to_dict(), preprocess_spec=prepared.spec.to_json(), scoring=prepared.scoring.to_json(),
        config=config.record() | {"crop_size": prepared.crop, "device": device.type},
        data=data_record(data, images.data_sha256, images.train, images.holdout, images.holdout_paths,
                         train_paths=images.train_paths),
        parity_images=prepared.raw_holdout[:PARITY_IMAGES], params=count_parameters(model))
    state["fixture"] = prepared.fixture
    average = None
    if previous is None and config.schedule.weight_average_decay > 0:  # resumed, `continue_from` builds it
        average = WeightAverage(model, config.schedule.weight_average_decay)
    run = Run(model, optimizer, scheduler, schedule, FitState(average=average), state)
    if previous is not None:
        continue_from(previous, run, prepared, resume)
    return run


def continue_from(previous: Checkpoint, run: Run, prepared: Prepared, resume: Path | None) -> None:
    """Set a new run to where the saved one stood: weights, optimiser, schedule, progress, the weight
    average and the hard crops' record (the only place a saved run's weights and progress are read)."""
    config = prepared.config
    if Architecture.from_dict(previous["architecture"]) != prepared.arch:
        raise BundleError(f"{resume}: its architecture differs from the current settings")
    run.model.load_state_dict(previous["model_state"])
    run.optimizer.load_state_dict(previous["optimizer_state"])
    run.scheduler.load_state_dict(previous["scheduler_state"])
    run.schedule.fraction = int(previous["epoch"]) / config.schedule.epochs
    for group in run.optimizer.param_groups:  # continue at the rate the schedule gives now
        group["lr"] = config.schedule.learning_rate * run.schedule.factor()
    average = None
    if config.schedule.weight_average_decay > 0:
        average = WeightAverage(run.model, config.schedule.weight_average_decay)  # from the resumed weights...
        if "weight_average" in previous:
            average.load(previous["weight_average"])  # ...unless the saved run kept one
    run.progress = FitState.resumed(previous, average)
    run.state.update(carried_progress(previous))
    if config.schedule.hard_crop_share > 0:  # rescored at once, keeping the record of the earlier ones (`fit_run`)
        run.state["hard_crops"] = list(previous.get("hard_crops", []))


def fit_run(run: Run, prepared: Prepared, device: torch.device, checkpoint_path: Path, started: float) -> str:
    """Epochs until the plan, the time budget or early stopping ends them (`loop.fit`); why it stopped."""
    config = prepared.config
    hard_crops = None
    if config.schedule.hard_crop_share > 0:  # never for residual training (`choose_crops`)
        hard_crops = HardCropSampler(prepared.images.train, prepared.spec, prepared.scoring,
                                     share=config.schedule.hard_crop_share, every=config.schedule.hard_crop_every,
                                     start=config.schedule.hard_crop_start)
        if "hard_crops" in run.state:  # a resumed run rescores at once and keeps the record of the earlier ones
            hard_crops.log = run.state["hard_crops"]

    def make_batches(epoch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        if hard_crops is not None and hard_crops.due(epoch):
            hard_crops.refresh(run.model, device, epoch)
            run.state["hard_crops"] = hard_crops.log  # saved with the epoch's checkpoint
        return batches(prepared.images, config, prepared.spec, prepared.crop, epoch,
                       registered=prepared.registration is not None, registration=prepared.residual,
                       hard_crops=hard_crops, reference_input=prepared.arch.reference_channels > 0,
                       groups=prepared.groups)

    stride = prepared.spec.pad_multiple
    validation = [pad_to_multiple(preprocess(image, prepared.spec), stride)[0]
                  for image in prepared.images.holdout[:MAX_VALIDATION_IMAGES]]
    return fit(run, make_batches, validation, config, device, checkpoint_path, started)


def choose(run: Run, config: TrainConfig, stopped: str, started: float) -> None:
    """Settle what export takes: the best epoch's weights (`best_state`, chosen by `fit`), why the run
    stopped and how long it trained."""
    if "epoch" not in run.state:
        raise ConfigError(f"max_minutes={config.schedule.max_minutes} left no time for a single epoch")
    run.state["stopped_reason"] = stopped
    run.state["train_seconds"] = run.progress.train_seconds(started)
