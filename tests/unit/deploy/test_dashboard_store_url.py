"""Which store `inspector dashboard` opens (issue 35, finding 6): the runner's, found in the runner's
places and order (`--db`, BOARD_INSPECTOR_DB_URL, a private db_url_file, db_url, else SQLite in the data
directory); an inherited URL is never replaced by an empty setting; no password on either command line."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploy.dashboard import auth
from deploy.dashboard.launch import ENV_DATA_DIR, ENV_DB_URL, streamlit_command
from inspector import cli, extensions
from inspector.config import DB_URL_ENV, DashboardConfig, RunnerConfig

SECRET = "s3cr3t-pw"
ENV_URL = f"postgresql+psycopg://env:{SECRET}@db1/aoi"


@dataclass
class Started:
    """What the dashboard would have been started with (nothing is started)."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def launch(self, config: DashboardConfig, data_dir: Path, *, demo: bool = False) -> None:
        argv, env = streamlit_command(config, data_dir, demo=demo)
        self.calls.append({"config": config, "data_dir": data_dir, "argv": argv, "env": env})


@pytest.fixture(scope="module")
def users_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("users") / "users.toml"
    path.write_text(f'[users.kim]\nrole = "qa"\npassword = "{auth.hash_password("kim-pass-1")}"\n')
    return path


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> Started:
    seen = Started()
    monkeypatch.setattr(extensions, "dashboard", lambda: seen)
    monkeypatch.delenv(DB_URL_ENV, raising=False)
    return seen


def _private(path: Path, url: str, mode: int = 0o600) -> Path:
    path.write_text(url + "\n")
    path.chmod(mode)
    return path


def _dashboard(users_file: Path, *args: str) -> int:
    return cli.main(["dashboard", "--users", str(users_file), *args])


# ---------------------------------------------------------------------- the launcher's environment
def test_an_inherited_url_survives_an_empty_setting(tmp_path: Path, users_file: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_DB_URL, ENV_URL)
    argv, env = streamlit_command(DashboardConfig(users_file=str(users_file)), tmp_path / "data")
    assert env[ENV_DB_URL] == ENV_URL  # not "" (which meant: a SQLite file in the data directory)
    assert not [arg for arg in argv if SECRET in arg]
    chosen = "postgresql+psycopg://qa@db2/aoi"  # a URL the caller resolved (inspector dashboard --db) wins
    _, env = streamlit_command(DashboardConfig(users_file=str(users_file), db_url=chosen), tmp_path / "data")
    assert env[ENV_DB_URL] == chosen
    # The demo shows the store it has just filled in its own data directory, whatever the shell names.
    _, env = streamlit_command(DashboardConfig(users_file=str(users_file)), tmp_path / "data", demo=True)
    assert env[ENV_DB_URL] == ""


def test_the_launcher_reads_the_dashboards_private_url_file(tmp_path: Path, users_file: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_DB_URL, raising=False)
    url_file = _private(tmp_path / "db-url", f"postgresql+psycopg://dash:{SECRET}@db3/aoi")
    argv, env = streamlit_command(DashboardConfig(users_file=str(users_file), db_url_file=str(url_file)), tmp_path)
    assert env[ENV_DB_URL] == f"postgresql+psycopg://dash:{SECRET}@db3/aoi"
    assert not [arg for arg in argv if SECRET in arg]


def test_store_url_follows_the_runners_order() -> None:
    runner = RunnerConfig(db_url="sqlite:////srv/runner.db")
    assert DashboardConfig().store_url(runner, environ={}) == "sqlite:////srv/runner.db"
    assert DashboardConfig(db_url="sqlite:////srv/dash.db").store_url(runner, environ={}) == "sqlite:////srv/dash.db"
    assert DashboardConfig(db_url="sqlite:////srv/dash.db").store_url(runner, environ={DB_URL_ENV: " x:// "}) == "x://"
    assert DashboardConfig().store_url(None, environ={}) == ""


# ---------------------------------------------------------------------- inspector dashboard
def test_a_password_in_db_is_refused_and_nothing_starts(started: Started, users_file: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _dashboard(users_file, "--db", f"postgresql://u:{SECRET}@h/db")
    assert info.value.code == 2 and started.calls == []
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "a password in --db shows in `ps`" in err and "BOARD_INSPECTOR_DB_URL" in err
    assert "dashboard.db_url_file" in err


def test_the_environment_url_wins_over_an_empty_dashboard_table(started: Started, users_file: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[runner]\ndata_dir = "{tmp_path / "line"}"\n[dashboard]\ndb_url = ""\n')
    monkeypatch.setenv(DB_URL_ENV, ENV_URL)
    assert _dashboard(users_file, "--config", str(config)) == 0
    call = started.calls[-1]
    assert call["env"][ENV_DB_URL] == ENV_URL and not [arg for arg in call["argv"] if SECRET in arg]
    assert call["env"][ENV_DATA_DIR] == str((tmp_path / "line").resolve())


def test_the_dashboard_finds_the_store_where_the_runner_does(started: Started, users_file: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runner_file = _private(tmp_path / "runner-url", f"postgresql+psycopg://line:{SECRET}@db/aoi")
    dash_file = _private(tmp_path / "dash-url", f"postgresql+psycopg://qa:{SECRET}@db/aoi")
    config = tmp_path / "config.toml"

    def opened(dashboard_table: str, *args: str) -> str:
        config.write_text(f'[runner]\ndb_url_file = "{runner_file}"\n[dashboard]\n{dashboard_table}\n')
        assert _dashboard(users_file, "--config", str(config), *args) == 0
        return str(started.calls[-1]["env"][ENV_DB_URL])

    assert opened("") == f"postgresql+psycopg://line:{SECRET}@db/aoi"  # the runner's store, from its table
    assert opened(f'db_url_file = "{dash_file}"') == f"postgresql+psycopg://qa:{SECRET}@db/aoi"
    assert opened('db_url = "sqlite:////srv/x.db"') == "sqlite:////srv/x.db"
    monkeypatch.setenv(DB_URL_ENV, ENV_URL)
    assert opened(f'db_url_file = "{dash_file}"') == ENV_URL
    assert opened("", "--db", "postgresql+psycopg://qa@db9/aoi") == "postgresql+psycopg://qa@db9/aoi"
    monkeypatch.delenv(DB_URL_ENV)
    config.write_text("[dashboard]\n")
    assert _dashboard(users_file, "--config", str(config), "--data-dir", str(tmp_path / "d")) == 0
    assert started.calls[-1]["env"][ENV_DB_URL] == ""  # SQLite in the data directory
    assert started.calls[-1]["env"][ENV_DATA_DIR] == str((tmp_path / "d").resolve())


def test_a_url_file_others_can_read_is_refused_by_name(started: Started, users_file: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    dash_file = _private(tmp_path / "dash-url", f"postgresql+psycopg://qa:{SECRET}@db/aoi", mode=0o644)
    config = tmp_path / "config.toml"
    config.write_text(f'[dashboard]\ndb_url_file = "{dash_file}"\n')
    with pytest.raises(SystemExit) as info:
        _dashboard(users_file, "--config", str(config))
    assert info.value.code == 1 and started.calls == []
    err = capsys.readouterr().err
    assert f"dashboard.db_url_file {dash_file}: readable by other users" in err and SECRET not in err
