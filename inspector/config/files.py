"""Settings read from a TOML or JSON file, every key and type checked by name.

`[train]` takes its grouped settings either as tables (`[train.schedule]`, `[train.registration]`,
`[train.calibration]`, `[train.export]`) or flat, as bundles record them and older files hold them.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from inspector.config.line import Settings
from inspector.config.training import GROUPED, GROUPS, TrainConfig
from inspector.errors import ConfigError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a dataclass from a dict, refusing unknown keys and wrong types by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
    if cls is TrainConfig:
        data = _grouped(data, source)
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}")
    values: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        default = getattr(defaults, name)
        if is_dataclass(default):
            values[name] = from_dict(type(default), value, f"{source}.{name}")
        else:
            values[name] = _checked(name, value, default, source)
    return cls(**values)


def _checked(name: str, value: Any, default: Any, source: str) -> Any:
    """`value` for a setting whose default is `default`, refused unless of its type (an int may be a float)."""
    if isinstance(default, bool) and not isinstance(value, bool):
        raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, type(default)):
        raise ConfigError(f"{source}: {name} must be {type(default).__name__}, got {value!r}")
    return value


def _grouped(data: dict[str, Any], source: str) -> dict[str, Any]:
    """A `[train]` table with its flat grouped settings moved into their groups' tables; a setting
    given both ways is refused by name."""
    defaults = TrainConfig().record()
    nested = {key: value for key, value in data.items()
              if key not in GROUPED or (key in GROUPS and isinstance(value, dict))}
    for flat, value in data.items():
        if flat in nested:
            continue
        group, name = GROUPED[flat]
        table = nested.get(group, {})
        if not isinstance(table, dict):
            continue  # from_dict refuses the group's value by name
        if name in table:
            raise ConfigError(f"{source}: {flat} is set twice, as {flat} and as {group}.{name}; keep one")
        nested[group] = {**table, name: _checked(flat, value, defaults[flat], source)}
    return nested


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a TOML or JSON file into `cls`: its keys are `cls`'s fields (a `Settings` file: one table per part)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse ({exc})") from exc
    return from_dict(cls, data, str(path))


def load_settings(path: str | Path | None) -> Settings:
    """A deployment's settings file (deploy/example-config.toml), or the defaults without one."""
    return load_config(path, Settings) if path else Settings()
