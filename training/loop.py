"""The epoch loop of `inspector train`: one epoch, validation, and the fit that repeats them.

`train.py` prepares the boards, the model and the optimiser; `fit` runs epochs until the epoch
count, the wall-clock budget or early stopping ends the run, saving a checkpoint after every epoch
so a run can be resumed.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from inspector.config import TrainConfig
from training.checkpoint import Checkpoint, EpochRecord, save_checkpoint, weights_on_cpu
from training.losses import reconstruction_loss
from training.model import ConvAutoencoder

MIN_LR_FRACTION = 0.05
FORECAST_AFTER_EPOCHS = 2  # epochs timed before the run says whether the wall-clock cap will cut it short...
FORECAST_RECHECK_EPOCHS = 10  # ...and how often it looks again, on the pace of this many latest epochs
Batches = Iterator[tuple[np.ndarray, np.ndarray]]


def lr_factor(progress: float) -> float:
    """Cosine from the base rate down to MIN_LR_FRACTION of it (AdamW on this small net needs no warm-up)."""
    return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class Schedule:
    """Where the learning-rate schedule stands: `fit` sets `fraction` after each epoch to the larger of
    epochs done and time budget spent, so a run that the budget ends early (the usual case for the
    12-minute default) still anneals instead of stopping at full rate."""

    fraction: float = 0.0

    def factor(self) -> float:
        return lr_factor(self.fraction)


class WeightAverage:
    """An exponential moving average of a model's weights, updated after every optimiser step.

    The weights of any one step carry that step's noise (a batch of 16 crops); their average over the
    last thousand or so steps draws good boards more evenly, so fewer of them light up. The decay
    ramps up over the first steps, (1 + n) / (10 + n), so the average does not start from the
    random initial weights."""

    def __init__(self, model: ConvAutoencoder, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"weight average decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.steps = 0
        self.model = copy.deepcopy(model)
        self.model.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: ConvAutoencoder) -> None:
        self.steps += 1
        decay = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for average, current in zip(self.model.parameters(), model.parameters()):
            average.lerp_(current.detach(), 1.0 - decay)

    def state(self) -> dict[str, Any]:
        return {"decay": self.decay, "steps": self.steps, "weights": weights_on_cpu(self.model)}

    def load(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        self.model.load_state_dict(state["weights"])


def train_epoch(model: ConvAutoencoder, optimizer: torch.optim.Optimizer, batches: Batches, config: TrainConfig,
                device: torch.device, deadline: float,
                average: WeightAverage | None = None) -> tuple[list[float], bool]:
    """One pass over the epoch's batches; (batch losses, whether the wall-clock deadline cut it short)."""
    model.train()
    losses: list[float] = []
    for inputs, targets in batches:
        # channels_last: oneDNN's convolution kernels (backward above all) run 15-25% faster in NHWC
        # on AVX2 CPUs, with the same results; the weights export the same either way.
        x = torch.from_numpy(inputs).to(device, memory_format=torch.channels_last)
        y = torch.from_numpy(targets).to(device, memory_format=torch.channels_last)
        loss = reconstruction_loss(model(x), y, config.loss, config.ssim_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            average.update(model)
        losses.append(float(loss.detach()))
        if time.monotonic() > deadline:
            return losses, True
    return losses, False


def cap_forecast(history: list[EpochRecord], config: TrainConfig, elapsed: float,
                 recent: int | None = None) -> dict[str, float | int | bool] | None:
    """Whether the wall-clock cap will end the run before its planned epochs, judged on the epochs so far.

    The default trains a fixed number of epochs (known to reach the quality targets); the cap is a
    safety limit. On a slow CPU it ends the run early and the model is weaker than the default's
    measured quality: say so at the start, not only at the end. `recent` judges the pace on the
    latest epochs only, so a slow first epoch (caches filling, another job finishing) does not
    decide the forecast for the whole run.
    """
    if not history:
        return None
    timed = history[-recent:] if recent else history
    seconds_per_epoch = sum(h["seconds"] for h in timed) / len(timed)
    remaining = config.schedule.epochs - history[-1]["epoch"]
    projected = elapsed + seconds_per_epoch * remaining
    budget = config.schedule.max_minutes * 60.0
    reachable = history[-1]["epoch"] + int(max(0.0, budget - elapsed) // seconds_per_epoch)
    return {"seconds_per_epoch": round(seconds_per_epoch, 2), "planned_epochs": config.schedule.epochs,
            "expected_epochs": min(reachable, config.schedule.epochs), "minutes_needed": round(projected / 60.0, 1),
            "cuts_run": projected > budget}


def forecast_message(previous: dict[str, Any] | None, forecast: dict[str, Any], max_minutes: float) -> str | None:
    """What to tell the user about the cap: the first forecast that it will cut the run, and later changes.

    Silent while the verdict stands (the epoch estimate moving by a few epochs is not news).
    """
    pace = f"training: {forecast['seconds_per_epoch']:.1f} s per epoch on this machine"
    if forecast["cuts_run"]:
        if previous and previous.get("cuts_run", True) and abs(previous["expected_epochs"] - forecast["expected_epochs"]) < 5:
            return None
        return (f"{pace}; the {max_minutes:g}-minute cap will stop the run near epoch {forecast['expected_epochs']} "
                f"of {forecast['planned_epochs']} (all epochs need about {forecast['minutes_needed']:g} min). "
                "The default's quality figures were measured on the full run: expect lower recall, "
                "or raise --max-minutes.")
    if previous and previous.get("cuts_run", True):  # checkpoints before 2026-12 kept only forecasts that cut
        return (f"{pace} now; the {max_minutes:g}-minute cap is no longer expected to cut the run: all "
                f"{forecast['planned_epochs']} epochs should end after about {forecast['minutes_needed']:g} min.")
    return None


def validation_loss(model: ConvAutoencoder, tensors: list[np.ndarray], config: TrainConfig,
                    device: torch.device) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for tensor in tensors:
            x = torch.from_numpy(tensor[None]).to(device)
            total += float(reconstruction_loss(model(x), x, config.loss, config.ssim_weight))
    model.train()
    return total / len(tensors)


def warmup_epochs(config: TrainConfig) -> int:
    """Epochs that never count as the best one (nor against early stopping): `warmup_fraction` of the plan."""
    return int(config.schedule.epochs * config.schedule.warmup_fraction)


@dataclass
class FitState:
    """Where a run stands (the one record of its progress): continued from a checkpoint on resume,
    advanced by every epoch, and written into the checkpoint after each."""

    start_epoch: int = 0
    history: list[EpochRecord] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    train_seconds_before: float = 0.0
    average: WeightAverage | None = None

    @classmethod
    def resumed(cls, previous: Checkpoint, average: WeightAverage | None) -> FitState:
        """Where the saved run stood."""
        return cls(int(previous["epoch"]), list(previous["history"]), previous["best_val_loss"],
                   previous["best_epoch"], previous["best_state"], float(previous["train_seconds"]), average)

    def train_seconds(self, started: float) -> float:
        """Training time over every part of the run, this one begun at monotonic `started`."""
        return self.train_seconds_before + time.monotonic() - started


@dataclass
class Run:
    """The model, its optimiser and schedule, and where the run stands (`train.resume_or_start`)."""

    model: ConvAutoencoder
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    schedule: Schedule
    progress: FitState
    state: Checkpoint  # what is saved each epoch and exported at the end


def fit(run: Run, make_batches: Callable[[int], Batches], validation: list[np.ndarray], config: TrainConfig,
        device: torch.device, checkpoint_path: Path, started: float) -> str:
    """Run epochs; updates `run.state` (the checkpoint) after each and returns why the run stopped.

    `started` is the monotonic time the run began (data loading counts against the budget);
    `run.schedule.fraction` drives the learning-rate schedule; `run.progress` is advanced in place.
    """
    budget = config.schedule.max_minutes * 60.0
    progress, history = run.progress, run.progress.history
    patience = config.schedule.early_stopping_patience
    patience_left = patience
    if progress.best_epoch and history:
        patience_left -= history[-1]["epoch"] - progress.best_epoch
    bar = tqdm(range(progress.start_epoch, config.schedule.epochs), desc=f"training ({run.state['params']} params)",
               unit="epoch", initial=progress.start_epoch, total=config.schedule.epochs)
    stopped = "epochs"
    for epoch in bar:
        epoch_start = time.monotonic()
        if history and epoch_start - started + history[-1]["seconds"] > budget:
            stopped = "time budget"  # the next epoch would not fit in what is left
            break
        judged, val, out_of_time = _train_and_validate(run, make_batches(epoch), validation, config, device,
                                                       epoch, epoch_start, started)
        patience_left = patience if _keep_best(progress, judged, epoch + 1, val, config) else patience_left - 1
        bar.set_postfix(train=f"{history[-1]['train_loss']:.5f}", val=f"{val:.5f}")
        _tell_forecast(run, config, epoch + 1 - progress.start_epoch, started)
        _record_epoch(run, epoch + 1, started)
        save_checkpoint(run.state, checkpoint_path)
        if out_of_time or patience_left <= 0:
            stopped = "time budget" if out_of_time else "early stopping"
            break
    bar.close()
    return stopped


def _train_and_validate(run: Run, batches: Batches, validation: list[np.ndarray], config: TrainConfig,
                        device: torch.device, epoch: int, epoch_start: float,
                        started: float) -> tuple[ConvAutoencoder, float, bool]:
    """One epoch (0-based `epoch`, begun at monotonic `epoch_start`) trained, the schedule stepped and
    the weights that would be exported validated; its record appended to the history. Returns those
    weights, their loss and whether the budget cut the epoch short."""
    budget = config.schedule.max_minutes * 60.0
    average = run.progress.average
    losses, out_of_time = train_epoch(run.model, run.optimizer, batches, config, device, started + budget, average)
    run.schedule.fraction = max((epoch + 1) / config.schedule.epochs, (time.monotonic() - started) / budget)
    run.scheduler.step()
    judged = run.model if average is None else average.model  # the weights that would be exported
    val = validation_loss(judged, validation, config, device)
    run.progress.history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)), "val_loss": val,
                                 "lr": run.optimizer.param_groups[0]["lr"], "seconds": time.monotonic() - epoch_start,
                                 "complete": not out_of_time})
    return judged, val, out_of_time


def _keep_best(progress: FitState, judged: ConvAutoencoder, epoch: int, val: float, config: TrainConfig) -> bool:
    """Keep epoch `epoch`'s weights when they are the best yet; True when early stopping's patience
    starts over (a new best, or the warm-up)."""
    if epoch <= warmup_epochs(config):  # the average is still close to where training started: never the best
        if progress.best_val == math.inf:  # exported only if the run ends (time cap) before the warm-up does
            progress.best_epoch, progress.best_state = epoch, weights_on_cpu(judged)
        return True
    if val < progress.best_val:
        progress.best_val, progress.best_epoch = val, epoch
        progress.best_state = weights_on_cpu(judged)
        return True
    return False


def _tell_forecast(run: Run, config: TrainConfig, done: int, started: float) -> None:
    """After the first epochs of this run, and every few since, where the wall-clock cap will stop it
    (kept in the checkpoint, said when it changes)."""
    due = done == FORECAST_AFTER_EPOCHS or (done > FORECAST_AFTER_EPOCHS and done % FORECAST_RECHECK_EPOCHS == 0)
    if not due:
        return
    forecast = cap_forecast(run.progress.history, config, time.monotonic() - started, recent=FORECAST_RECHECK_EPOCHS)
    if forecast is None:
        return
    message = forecast_message(run.state.get("cap_forecast"), forecast, config.schedule.max_minutes)
    run.state["cap_forecast"] = forecast
    if message:
        tqdm.write(message)


def _record_epoch(run: Run, epoch: int, started: float) -> None:
    """Write the run's progress after `epoch` into the checkpoint (what a resumed run reads back)."""
    progress, state = run.progress, run.state
    state.update({
        "model_state": {k: v.detach().cpu() for k, v in run.model.state_dict().items()},
        "optimizer_state": run.optimizer.state_dict(),
        "scheduler_state": run.scheduler.state_dict(), "epoch": epoch, "history": progress.history,
        "best_val_loss": progress.best_val, "best_epoch": progress.best_epoch,
        "train_seconds": progress.train_seconds(started),
        "stopped_reason": "in progress",
    })
    if progress.best_state is not None:
        state["best_state"] = progress.best_state
    if progress.average is not None:
        state["weight_average"] = progress.average.state()
