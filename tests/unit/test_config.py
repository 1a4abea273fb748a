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
