"""The folder runner's settings for tests: a station "t1" that takes files at once and prints no JSON lines."""

from __future__ import annotations

from pathlib import Path

from inspector.config import RunnerConfig


def runner_config(data_dir: Path, **extra: object) -> RunnerConfig:
    values: dict[str, object] = dict(station="t1", data_dir=str(data_dir), stable_seconds=0.0, poll_seconds=0.05,
                                     json_lines=False)
    values.update(extra)
    return RunnerConfig(**values)  # type: ignore[arg-type]
