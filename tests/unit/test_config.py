from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import (
    CalibrationSettings,
    ExportSettings,
    InspectConfig,
    RegistrationSettings,
    ScheduleSettings,
    Settings,
    TrainConfig,
    load_config,
)
from inspector.errors import ConfigError
from tests.conftest import REPO_ROOT


def test_toml_overrides_and_type_checks(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text("epochs = 3\nmax_minutes = 2\ndenoising = false\n")
    config = load_config(path, TrainConfig)
    assert config.schedule.epochs == 3 and config.schedule.max_minutes == 2.0 and config.denoising is False
    path.write_text("epochs = 'many'\n")
    with pytest.raises(ConfigError, match=f"{path}: epochs must be int, got 'many'"):
        load_config(path, TrainConfig)
    path.write_text("[schedule]\nepochs = 'many'\n")
    with pytest.raises(ConfigError, match=f"{path}.schedule: epochs must be int, got 'many'"):
        load_config(path, TrainConfig)
    path.write_text("epoch = 3\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(path, TrainConfig)


def test_nested_settings(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("[inspect]\nbatch_size = 2\n[runner]\nstation = 'aoi-3'\n")
    settings = load_config(path, Settings)
    assert settings.inspect.batch_size == 2 and settings.runner.station == "aoi-3"
    assert isinstance(settings.inspect, InspectConfig)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml", TrainConfig)


def test_example_config_train_section_shows_the_defaults() -> None:
    """deploy/example-config.toml documents the training defaults, in their groups; it must not drift from them."""
    import tomllib
    from dataclasses import asdict

    from inspector.config import load_settings

    example = REPO_ROOT / "deploy" / "example-config.toml"
    train = tomllib.loads(example.read_text())["train"]
    assert set(train) >= {"schedule", "registration", "calibration", "export"}
    assert train == asdict(TrainConfig())
    assert load_settings(example).train == TrainConfig()


def test_modes_and_ranges_are_checked_when_a_config_is_built(tmp_path: Path) -> None:
    """Issue 37: a bad mode or range fails at construction (in code, from TOML, from a checkpoint's
    dict), naming the field and what it may be, not minutes later inside a training."""
    with pytest.raises(ConfigError, match="precision must be one of float32, int8, got 'fp16'"):
        ExportSettings(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="atlas must be auto, on or off"):
        RegistrationSettings(atlas="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="false_regions_per_board must be >= 0"):
        CalibrationSettings(false_regions_per_board=-1.0)
    with pytest.raises(ConfigError, match="channel_error must be one of auto, max, mean"):
        TrainConfig(channel_error="worst")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hard crops"):
        TrainConfig(schedule=ScheduleSettings(hard_crop_share=1.5))
    with pytest.raises(ConfigError, match="region_merge_px"):
        TrainConfig(region_merge_px=65)
    with pytest.raises(ConfigError, match="views must be one of 0, 1, 2, 4"):
        TrainConfig(views=3)
    with pytest.raises(ConfigError, match="graph_optimization must be one of"):
        InspectConfig(graph_optimization="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="schedule must be a ScheduleSettings"):
        TrainConfig(schedule={"epochs": 3})  # type: ignore[arg-type]
    path = tmp_path / "train.toml"
    path.write_text("registration = 'sometimes'\n")
    with pytest.raises(ConfigError, match="registration must be auto, on or off, got 'sometimes'"):
        load_config(path, TrainConfig)
    # A patch PCA never reads the network's training settings: they are not checked for it (as before).
    from inspector.config import from_dict

    assert TrainConfig(method="pca", schedule=ScheduleSettings(epochs=0)).schedule.epochs == 0
    assert from_dict(TrainConfig, {"method": "pca", "epochs": 0}).schedule.epochs == 0
    with pytest.raises(ConfigError, match="pca_stride must be at least 1"):
        TrainConfig(method="pca", pca_stride=0)


def test_flat_train_configs_and_recorded_values_stay_as_they_were(tmp_path: Path) -> None:
    """The modes are typed but stay plain strings, and the groups are a shape in code only: bundles'
    config.json and checkpoints record a config flat, in the order they always have, and an old flat
    `inspector train --config` file (or recorded dict) reads back unchanged."""
    from dataclasses import fields

    from inspector.config import MAX_REGION_MERGE_PX, from_dict
    from inspector.config.training import GROUPED, GROUPS, RECORD_ORDER
    from inspector.core import scoring

    top = [f.name for f in fields(TrainConfig) if f.name not in GROUPS]
    assert sorted(RECORD_ORDER) == sorted(top + list(GROUPED))  # every setting recorded, once
    config = TrainConfig(channels="gray", view_kind="flip", views=2, export=ExportSettings(precision="float32"),
                         registration=RegistrationSettings(mode="on"))
    recorded = config.record()
    assert list(recorded) == list(RECORD_ORDER)
    assert all(type(value) in (str, int, float, bool) for value in recorded.values())
    assert (recorded["view_kind"], recorded["precision"], recorded["registration"]) == ("flip", "float32", "on")
    assert from_dict(TrainConfig, recorded) == TrainConfig().with_values(**recorded) == config
    path = tmp_path / "old.toml"
    path.write_text("method = 'ae'\nregistration = 'on'\natlas = 'off'\nprecision = 'float32'\nviews = 1\n"
                    "view_kind = 'shift'\nepochs = 2\n")
    config = load_config(path, TrainConfig)
    assert (config.registration.mode, config.registration.atlas, config.views, config.view_kind) == ("on", "off", 1, "shift")
    assert (config.export.precision, config.schedule.epochs) == ("float32", 2)
    assert MAX_REGION_MERGE_PX == scoring.MAX_REGION_MERGE_PX  # the training's bound is the runtime's


def test_train_settings_in_tables_or_flat_but_not_both(tmp_path: Path) -> None:
    """`[train.schedule]` etc. hold the groups; flat keys still work beside them; one setting given
    both ways is refused by name."""
    path = tmp_path / "settings.toml"
    path.write_text("[train]\nwidth = 8\nprecision = 'float32'\n[train.schedule]\nepochs = 3\n"
                    "[train.registration]\nmode = 'off'\n")
    train = load_config(path, Settings).train
    assert (train.width, train.export.precision, train.schedule.epochs, train.registration.mode) == (8, "float32", 3, "off")
    path.write_text("[train]\nepochs = 2\n[train.schedule]\nepochs = 3\n")
    with pytest.raises(ConfigError, match=r"train: epochs is set twice, as epochs and as schedule.epochs; keep one"):
        load_config(path, Settings)
    path.write_text("[train]\nschedule = 3\n")
    with pytest.raises(ConfigError, match="train.schedule: expected a table of settings"):
        load_config(path, Settings)


def test_flat_names_reach_their_groups() -> None:
    """The CLI's options keep their flat names (`inspector train --epochs --registration`)."""
    config = TrainConfig().with_values(epochs=5, registration="off", precision="float32", seed=7)
    assert (config.schedule.epochs, config.registration.mode, config.export.precision, config.seed) == (5, "off", "float32", 7)
    assert config.schedule.max_minutes == ScheduleSettings().max_minutes  # the rest of the group kept
    with pytest.raises(ConfigError, match="registration must be auto, on or off"):
        TrainConfig().with_values(registration="sometimes")


def test_training_checks_settings_set_after_the_config_was_built(tmp_path: Path) -> None:
    """The CLI sets its options on the config file's settings: `train_bundle` builds the config again,
    so they are checked before any board is read; a group cannot be changed in place."""
    from dataclasses import FrozenInstanceError

    from training.train import train_bundle

    config = TrainConfig()
    config.channel_error = "worst"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="channel_error must be one of auto, max, mean"):
        train_bundle(tmp_path / "no-boards", tmp_path / "bundle", config)
    with pytest.raises(FrozenInstanceError):
        config.registration.mode = "sometimes"  # type: ignore[misc]
