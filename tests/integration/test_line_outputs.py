"""Issue 36: part ids from the line travel with the board to its row and every output; `inspector lineout
test` says what answered. (MQTT and OPC UA against real parts: test_mqtt_out.py, test_opcua_out.py.)"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.cli import main
from inspector.config import CameraConfig, RunnerConfig
from inspector.feeds.camera import run_camera_with_engine
from inspector.feeds.capture import LineTriggers
from inspector.store import Store
from tests.fake_engine import FakeEngine


class SlowLines:
    """A PLC bridge writing one part id a line on the camera's stdin, a little apart."""

    def __init__(self, lines: list[str], pause: float) -> None:
        self.lines, self.pause = lines, pause

    def __iter__(self) -> Iterator[str]:
        for line in self.lines:
            time.sleep(self.pause)
            yield line + "\n"


def _video(tmp_path: Path) -> Path:
    import cv2
    import numpy as np

    path = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 64))
    rng = np.random.default_rng(0)
    for n in range(25):
        writer.write(np.clip(60 + 40 * (n % 3) + rng.integers(-20, 21, (64, 64, 3)), 0, 255).astype(np.uint8))
    writer.release()
    return path


def test_part_ids_from_the_line_reach_the_row_and_the_published_verdict(tmp_path: Path) -> None:
    data = tmp_path / "data"
    out = io.StringIO()
    parts = ["PN-4711-0001", "PN-4711-0002", "PN-4711-0003"]
    run_camera_with_engine(str(_video(tmp_path)), FakeEngine(),
                           RunnerConfig(station="cam", data_dir=str(data), json_lines=True),
                           CameraConfig(trigger="stdin", stale_frame_seconds=10.0), stream=out,
                           stdin=SlowLines(parts, 0.6))
    with Store.open(data) as store:
        rows = {row.part_id: row for row in store.list_inspections()}
    assert set(rows) == set(parts)  # one answer per trigger, each with its part id
    published = [json.loads(line) for line in out.getvalue().splitlines()]
    assert sorted(m["part_id"] for m in published) == parts
    assert all(m["schema"] == 2 and m["verdict_id"] and m["station"] == "cam" for m in published)
    assert {m["part_id"]: m["inspection_id"] for m in published} == {p: rows[p].id for p in parts}


def test_line_triggers_carry_part_ids_from_any_thread() -> None:
    line = LineTriggers()
    line.put("  PN-1\n")
    line.put("PN-\x002")  # control characters never reach the store
    line.put("x" * 500)
    assert [line.take(), line.take(), len(line.take() or "")] == ["PN-1", "PN-2", 200]
    assert line.take() is None


def test_lineout_test_says_what_answered(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "ok.sh", tmp_path / "bad.sh"
    good.write_text("#!/bin/sh\ncat > /dev/null\n")
    bad.write_text("#!/bin/sh\ncat > /dev/null\necho 'PLC bridge down' >&2\nexit 3\n")
    for script in (good, bad):
        script.chmod(0o755)
    config = tmp_path / "line.toml"
    config.write_text(f'[runner]\nstation = "aoi-1"\nhook = "{good}"\n')
    assert main(["lineout", "test", "--config", str(config)]) == 0
    assert "hook: acknowledged" in capsys.readouterr().out
    config.write_text(f'[runner]\nstation = "aoi-1"\nhook = "{bad}"\n')
    assert main(["lineout", "test", "--config", str(config)]) == 1
    assert "hook: NO ANSWER: hook" in capsys.readouterr().out
    config.write_text('[runner]\nstation = "aoi-1"\n')
    assert main(["lineout", "test", "--config", str(config)]) == 1
    assert "no output configured" in capsys.readouterr().out
