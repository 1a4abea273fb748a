"""One configuration for every command (issue 14): `watch --config` and `camera --config` apply every
table of deploy/example-config.toml, options given on the command line win, and no password ever
has to be on the command line (where `ps` shows it) or reaches a log line, an error or an event."""

from __future__ import annotations

import logging
import os
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from inspector import cli
from inspector.config import DB_URL_ENV, mask_secrets
from inspector.store import Store
from tests.conftest import REPO_ROOT

EXAMPLE = REPO_ROOT / "deploy" / "example-config.toml"
SECRET = "s3cr3t-pw"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """The settings `watch` and `camera` hand to the feeds (no model is loaded)."""
    from inspector.feeds import camera, folder

    seen: dict[str, Any] = {}

    def fake_watch(inbox: Path, bundle: Path, runner: Any, inspect: Any, *, once: bool = False,
                   lineout: Any = None) -> None:
        seen.update(command="watch", runner=runner, inspect=inspect, lineout=lineout)

    def fake_camera(source: str, bundle: Path, runner: Any, camera_cfg: Any, inspect: Any, *,
                    max_frames: int = 0, lineout: Any = None) -> None:
        seen.update(command="camera", source=source, runner=runner, camera=camera_cfg, inspect=inspect,
                    lineout=lineout)

    monkeypatch.setattr(folder, "watch", fake_watch)
    monkeypatch.setattr(camera, "run_camera", fake_camera)
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    (tmp_path / "bundle").mkdir()
    (tmp_path / "inbox").mkdir()
    return seen


def run(tmp_path: Path, *args: str) -> int:
    return cli.main([*args[:2], *(["--model", str(tmp_path / "bundle")] if args[0] in ("watch", "camera") else []),
                     *args[2:]])


def example_tables() -> dict[str, dict[str, Any]]:
    return tomllib.loads(EXAMPLE.read_text())


@pytest.mark.parametrize("command", ["watch", "camera"])
def test_every_setting_of_the_example_config_reaches_the_feed(captured: dict[str, Any], tmp_path: Path,
                                                              command: str) -> None:
    first = str(tmp_path / "inbox") if command == "watch" else "0"
    assert run(tmp_path, command, first, "--config", str(EXAMPLE)) == 0
    tables = example_tables()
    assert asdict(captured["inspect"]) == tables["inspect"]
    assert asdict(captured["runner"]) == tables["runner"]
    if command == "camera":
        assert asdict(captured["camera"]) == tables["camera"]
    assert asdict(captured["lineout"]) == tables["lineout"]  # [lineout.mqtt] and [lineout.opcua]


def test_options_given_on_the_command_line_win(captured: dict[str, Any], tmp_path: Path) -> None:
    assert run(tmp_path, "watch", str(tmp_path / "inbox"), "--config", str(EXAMPLE), "--station", "aoi-9",
               "--data-dir", str(tmp_path / "d"), "--no-json", "--max-batch", "2") == 0
    runner = captured["runner"]
    assert (runner.station, runner.data_dir, runner.json_lines, runner.max_batch) == ("aoi-9", str(tmp_path / "d"),
                                                                                      False, 2)
    assert runner.http_port == 9108 and captured["inspect"].review_band == 0.1  # the rest from the file
    assert run(tmp_path, "camera", "0", "--config", str(EXAMPLE), "--trigger", "every") == 0
    assert captured["camera"].trigger == "every" and captured["camera"].read_timeout_seconds == 2.0


def test_a_password_on_the_command_line_is_refused_without_echoing_it(captured: dict[str, Any], tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run(tmp_path, "watch", str(tmp_path / "inbox"), "--db", f"postgresql+psycopg://line:{SECRET}@db/aoi")
    assert info.value.code == 2 and "command" not in captured
    err = capsys.readouterr().err
    assert SECRET not in err and "BOARD_INSPECTOR_DB_URL" in err


def test_the_database_url_comes_from_the_environment_or_a_private_file(captured: dict[str, Any], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    url_file = tmp_path / "db-url"
    url_file.write_text(f"postgresql+psycopg://line:{SECRET}@db/aoi\n")
    url_file.chmod(0o600)
    config = tmp_path / "config.toml"
    config.write_text(f"[runner]\ndb_url_file = '{url_file}'\n")
    assert run(tmp_path, "watch", str(tmp_path / "inbox"), "--config", str(config)) == 0
    assert captured["runner"].db_url == f"postgresql+psycopg://line:{SECRET}@db/aoi"
    monkeypatch.setenv(DB_URL_ENV, f"postgresql+psycopg://env:{SECRET}@db2/aoi")
    assert run(tmp_path, "camera", "0", "--config", str(config)) == 0
    assert captured["runner"].db_url == f"postgresql+psycopg://env:{SECRET}@db2/aoi"
    monkeypatch.delenv(DB_URL_ENV)
    url_file.chmod(0o644)  # readable by every local user: refused
    with pytest.raises(SystemExit) as info:
        run(tmp_path, "watch", str(tmp_path / "inbox"), "--config", str(config))
    assert info.value.code == 1


def test_passwords_and_camera_credentials_are_masked_in_events_errors_and_logs(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"rtsp://cam:{SECRET}@10.0.0.7/stream1"
    assert mask_secrets(f"{url}: cannot open") == "rtsp://cam:***@10.0.0.7/stream1: cannot open"
    assert SECRET not in mask_secrets(f"host=db password={SECRET} user=x")
    with Store.open(tmp_path) as store:
        store.record_event("s1", "camera_down", f"{url}: no frame for 2 s")
        assert SECRET not in store.events()[0].detail and "cam:***@" in store.events()[0].detail
    from inspector.feeds.processor import MaskSecrets

    handler = logging.StreamHandler(open(os.devnull, "w"))
    handler.addFilter(MaskSecrets())
    record = logging.LogRecord("t", logging.ERROR, __file__, 1, "%s: cannot open\nforged line", (url,), None)
    assert handler.filter(record)
    assert SECRET not in record.getMessage() and "\n" not in record.getMessage()
    handler.stream.close()
