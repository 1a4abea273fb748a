"""The epoch loop's time-cap forecast and how the model card reports a run the cap cut short."""

from __future__ import annotations

from inspector.config import ScheduleSettings, TrainConfig
from training.loop import cap_forecast, forecast_message
from training.model_card import cap_lines


def epochs(count: int, seconds: float) -> list:
    return [{"epoch": i + 1, "train_loss": 0.1, "val_loss": 0.1, "lr": 1e-3, "seconds": seconds, "complete": True}
            for i in range(count)]


def test_a_slow_machine_is_told_where_the_cap_will_stop_it() -> None:
    config = TrainConfig(schedule=ScheduleSettings(epoch_crops=0, epochs=300, max_minutes=12))
    forecast = cap_forecast(epochs(2, 10.0), config, elapsed=25.0)  # an AVX2 machine: 10 s per epoch
    assert forecast is not None
    assert forecast["planned_epochs"] == 300
    assert forecast["expected_epochs"] == 2 + int((720 - 25) // 10)  # 71
    assert forecast["minutes_needed"] > 12 and forecast["cuts_run"]
    message = forecast_message(None, forecast, config.schedule.max_minutes)
    assert message is not None and "near epoch 71 of 300" in message


def test_a_fast_machine_is_told_nothing() -> None:
    config = TrainConfig(schedule=ScheduleSettings(epoch_crops=0, epochs=300, max_minutes=12))
    forecast = cap_forecast(epochs(2, 2.0), config, elapsed=5.0)  # 2 s x 298 < 720 s
    assert forecast is not None and not forecast["cuts_run"]
    assert forecast_message(None, forecast, config.schedule.max_minutes) is None
    assert cap_forecast([], config, elapsed=5.0) is None


def test_the_forecast_follows_the_latest_pace_and_says_when_its_verdict_changes() -> None:
    config = TrainConfig(schedule=ScheduleSettings(epoch_crops=0, epochs=110, max_minutes=20))
    # two slow first epochs (another job on the machine), then 5 s epochs
    history = epochs(2, 16.0) + [{**record, "epoch": record["epoch"] + 2} for record in epochs(8, 5.0)]
    first = cap_forecast(history[:2], config, elapsed=33.0, recent=10)
    assert first is not None and first["cuts_run"]
    later = cap_forecast(history, config, elapsed=73.0, recent=8)
    assert later is not None and not later["cuts_run"] and later["seconds_per_epoch"] == 5.0
    assert cap_forecast(history, config, elapsed=73.0)["seconds_per_epoch"] > 5.0  # type: ignore[index]
    cleared = forecast_message(first, later, config.schedule.max_minutes)
    assert cleared is not None and "no longer expected to cut" in cleared
    assert forecast_message(later, later, config.schedule.max_minutes) is None
    # still cut, the estimate moved by less than 5 epochs: no news
    assert forecast_message(first, {**first, "expected_epochs": first["expected_epochs"] + 2}, 20) is None
    moved = forecast_message(first, {**first, "expected_epochs": first["expected_epochs"] + 9}, 20)
    assert moved is not None and f"near epoch {first['expected_epochs'] + 9}" in moved


def test_model_card_says_when_the_cap_cut_the_run() -> None:
    checkpoint = {"config": {"epochs": 300, "max_minutes": 12.0},
                  "cap_forecast": {"seconds_per_epoch": 10.0, "minutes_needed": 50.0}}
    cut = cap_lines(checkpoint, {"epochs": 71, "stopped_reason": "time budget"})  # type: ignore[arg-type]
    assert len(cut) == 1 and "epoch 71 of the 300 planned" in cut[0] and "10.0 s per epoch" in cut[0]
    full = cap_lines(checkpoint, {"epochs": 300, "stopped_reason": "epochs"})  # type: ignore[arg-type]
    assert len(full) == 1 and "not reached; all 300 planned epochs ran" in full[0]
    assert cap_lines(checkpoint, {"epochs": 40, "stopped_reason": "early stopping"}) == []  # type: ignore[arg-type]


def test_the_weight_average_trails_the_weights_by_its_decay() -> None:
    import pytest
    import torch

    from training.loop import WeightAverage
    from training.model import Architecture, ConvAutoencoder

    model = ConvAutoencoder(Architecture(width=4, depth=2, stem_stride=2, latent_channels=4))
    start = [p.detach().clone() for p in model.parameters()]
    average = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update(model)  # first step: the ramp's decay (1 + 1) / (10 + 1), not 0.9
    ramp = 2 / 11
    for before, now in zip(start, average.model.parameters()):
        assert torch.allclose(now, before + (1 - ramp), atol=1e-6)
    for _ in range(200):  # the weights stand still: the average closes in on them
        average.update(model)
    for before, now in zip(start, average.model.parameters()):
        assert torch.allclose(now, before + 1.0, atol=1e-5)
    assert not any(p.requires_grad for p in average.model.parameters())
    restored = WeightAverage(model, decay=0.9)
    restored.load(average.state())
    assert restored.steps == 201
    assert all(torch.equal(a, b) for a, b in zip(restored.model.parameters(), average.model.parameters()))
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, decay=1.0)
