"""The epoch loop's time-cap forecast and how the model card reports a run the cap cut short."""

from __future__ import annotations

from inspector.config import TrainConfig
from training.loop import cap_forecast
from training.model_card import cap_lines


def epochs(count: int, seconds: float) -> list:
    return [{"epoch": i + 1, "train_loss": 0.1, "val_loss": 0.1, "lr": 1e-3, "seconds": seconds, "complete": True}
            for i in range(count)]


def test_a_slow_machine_is_told_where_the_cap_will_stop_it() -> None:
    config = TrainConfig(epochs=300, max_minutes=12)
    forecast = cap_forecast(epochs(2, 10.0), config, elapsed=25.0)  # an AVX2 machine: 10 s per epoch
    assert forecast is not None
    assert forecast["planned_epochs"] == 300
    assert forecast["expected_epochs"] == 2 + int((720 - 25) // 10)  # 71
    assert forecast["minutes_needed"] > 12


def test_a_fast_machine_gets_no_forecast() -> None:
    config = TrainConfig(epochs=300, max_minutes=12)
    assert cap_forecast(epochs(2, 2.0), config, elapsed=5.0) is None  # 2 s x 298 < 720 s
    assert cap_forecast([], config, elapsed=5.0) is None


def test_model_card_says_when_the_cap_cut_the_run() -> None:
    checkpoint = {"config": {"epochs": 300, "max_minutes": 12.0},
                  "cap_forecast": {"seconds_per_epoch": 10.0, "minutes_needed": 50.0}}
    cut = cap_lines(checkpoint, {"epochs": 71, "stopped_reason": "time budget"})  # type: ignore[arg-type]
    assert len(cut) == 1 and "epoch 71 of the 300 planned" in cut[0] and "10.0 s per epoch" in cut[0]
    assert cap_lines(checkpoint, {"epochs": 300, "stopped_reason": "epochs"}) == []  # type: ignore[arg-type]
    assert cap_lines(checkpoint, {"epochs": 40, "stopped_reason": "early stopping"}) == []  # type: ignore[arg-type]
