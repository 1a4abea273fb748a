from __future__ import annotations

from pathlib import Path

import pytest

from inspector.config import InspectConfig, Settings, TrainConfig, load_config
from inspector.errors import ConfigError
from tests.conftest import REPO_ROOT


def test_toml_overrides_and_type_checks(tmp_path: Path) -> None:
    path = tmp_path / "train.toml"
    path.write_text("epochs = 3\nmax_minutes = 2\ndenoising = false\n")
    config = load_config(path, TrainConfig)
    assert config.epochs == 3 and config.max_minutes == 2.0 and config.denoising is False
    path.write_text("epochs = 'many'\n")
    with pytest.raises(ConfigError, match="epochs"):
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
    """deploy/example-config.toml documents the training defaults; it must not drift from them."""
    import tomllib
    from dataclasses import asdict

    example = REPO_ROOT / "deploy" / "example-config.toml"
    train = tomllib.loads(example.read_text())["train"]
    assert train == asdict(TrainConfig())


def test_modes_and_ranges_are_checked_when_a_config_is_built(tmp_path: Path) -> None:
    """Issue 37: a bad mode or range fails at construction (in code, from TOML, from a checkpoint's
    dict), naming the field and what it may be, not minutes later inside a training."""
    with pytest.raises(ConfigError, match="precision must be one of float32, int8, got 'fp16'"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="atlas must be auto, on or off"):
        TrainConfig(atlas="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="channel_error must be one of auto, max, mean"):
        TrainConfig(channel_error="worst")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="hard crops"):
        TrainConfig(hard_crop_share=1.5)
    with pytest.raises(ConfigError, match="region_merge_px"):
        TrainConfig(region_merge_px=65)
    with pytest.raises(ConfigError, match="views must be one of 0, 1, 2, 4"):
        TrainConfig(views=3)
    with pytest.raises(ConfigError, match="graph_optimization must be one of"):
        InspectConfig(graph_optimization="max")  # type: ignore[arg-type]
    path = tmp_path / "train.toml"
    path.write_text("registration = 'sometimes'\n")
    with pytest.raises(ConfigError, match="registration must be auto, on or off, got 'sometimes'"):
        load_config(path, TrainConfig)
    # A patch PCA never reads the network's training settings: they are not checked for it (as before).
    assert TrainConfig(method="pca", epochs=0).epochs == 0
    with pytest.raises(ConfigError, match="pca_stride must be at least 1"):
        TrainConfig(method="pca", pca_stride=0)


def test_flat_train_configs_and_recorded_values_stay_as_they_were(tmp_path: Path) -> None:
    """The modes are typed but stay plain strings: bundles' config.json and checkpoints record them,
    and an old flat `inspector train --config` file (or recorded dict) reads back unchanged."""
    from dataclasses import asdict

    from inspector.config import MAX_REGION_MERGE_PX, from_dict
    from inspector.core import scoring

    recorded = asdict(TrainConfig(method="ae", channels="gray", view_kind="flip", views=2, precision="float32"))
    assert all(type(value) in (str, int, float, bool) for value in recorded.values())
    assert recorded["view_kind"] == "flip" and recorded["precision"] == "float32"
    assert from_dict(TrainConfig, recorded) == TrainConfig(**recorded)
    path = tmp_path / "old.toml"
    path.write_text("method = 'ae'\nregistration = 'on'\natlas = 'off'\nprecision = 'float32'\nviews = 1\n"
                    "view_kind = 'shift'\nepochs = 2\n")
    config = load_config(path, TrainConfig)
    assert (config.registration, config.atlas, config.views, config.view_kind) == ("on", "off", 1, "shift")
    assert MAX_REGION_MERGE_PX == scoring.MAX_REGION_MERGE_PX  # the training's bound is the runtime's


def test_training_checks_settings_set_after_the_config_was_built(tmp_path: Path) -> None:
    """The CLI sets its options on the config file's settings: `train_bundle` builds the config again,
    so they are checked before any board is read."""
    from training.train import train_bundle

    config = TrainConfig()
    config.registration = "sometimes"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="registration must be auto, on or off"):
        train_bundle(tmp_path / "no-boards", tmp_path / "bundle", config)
