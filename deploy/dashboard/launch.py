"""`inspector dashboard`: run the Streamlit app in deploy/dashboard/ with this deployment's settings.

The app is a separate script (Streamlit runs it per browser session), so the settings travel in
environment variables named below; deploy/dashboard/context.py reads the same names.
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from inspector.config import DashboardConfig
from inspector.errors import ConfigError, InspectorError

ENV_DB_URL = "BOARD_INSPECTOR_DB_URL"
ENV_DATA_DIR = "BOARD_INSPECTOR_DATA_DIR"
ENV_USERS_FILE = "BOARD_INSPECTOR_USERS_FILE"
ENV_REFRESH_SECONDS = "BOARD_INSPECTOR_REFRESH_SECONDS"
ENV_SESSION_HOURS = "BOARD_INSPECTOR_SESSION_HOURS"


def app_path() -> Path:
    """deploy/dashboard/app.py, wherever the package is installed."""
    spec = importlib.util.find_spec("deploy")
    if spec is None or not spec.submodule_search_locations:
        raise InspectorError("the deploy package (dashboard app) is not installed with board-inspector")
    path = Path(next(iter(spec.submodule_search_locations))) / "dashboard" / "app.py"
    if not path.is_file():
        raise InspectorError(f"{path}: dashboard app missing from the installation")
    return path


def streamlit_command(config: DashboardConfig, data_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start the dashboard; refuses to start without logins.

    There is deliberately no built-in fallback account: a dashboard that can change thresholds
    must never come up open. `inspector demo` passes deploy/demo-users.toml explicitly.
    """
    if not config.users_file:
        raise ConfigError("dashboard: no users file given; pass --users FILE (TOML with hashed passwords, "
                          "see docs/deployment.md; deploy/demo-users.toml holds the demo logins for trials)")
    from deploy.dashboard.auth import load_users

    users_path = Path(config.users_file).resolve()
    load_users(users_path)  # fail here, in one line, rather than on the first login attempt
    if not 0 < config.port < 65536:
        raise ConfigError(f"dashboard: port must be 1-65535, got {config.port}")
    if config.refresh_seconds <= 0:
        raise ConfigError(f"dashboard: refresh_seconds must be positive, got {config.refresh_seconds}")
    if not (math.isfinite(config.session_hours) and config.session_hours > 0):
        raise ConfigError(f"dashboard: session_hours must be a positive number of hours, got {config.session_hours}")
    argv = [
        sys.executable, "-m", "streamlit", "run", str(app_path()),
        "--server.address", config.host,
        "--server.port", str(config.port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        # Operators need no "Deploy"/developer menu.
        "--client.toolbarMode", "viewer",
        # The line PC serves a fixed app; watching its source for edits only costs CPU.
        "--server.fileWatcherType", "none",
    ]
    env = dict(os.environ)
    env.update({
        ENV_DB_URL: config.db_url,
        ENV_DATA_DIR: str(Path(data_dir).resolve()),
        ENV_USERS_FILE: str(users_path),
        ENV_REFRESH_SECONDS: str(config.refresh_seconds),
        ENV_SESSION_HOURS: str(config.session_hours),
    })
    return argv, env


def _stop_server(server: subprocess.Popen) -> None:
    """Give a server that was told to stop a moment to finish, then make sure it is gone."""
    for ask, wait_s in ((None, 15.0), (server.terminate, 10.0), (server.kill, None)):
        if server.poll() is not None:
            return
        if ask is not None:
            ask()
        try:
            server.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            continue


def launch(config: DashboardConfig, data_dir: Path) -> None:
    """Run the dashboard in the foreground until it exits, is interrupted or is told to stop."""
    if importlib.util.find_spec("streamlit") is None:
        raise InspectorError("streamlit is not installed; install the dashboard extra: "
                             "pip install 'board-inspector[dashboard]'")
    argv, env = streamlit_command(config, data_dir)
    print(f"dashboard: http://{config.host}:{config.port} (Ctrl+C stops it)", flush=True)
    servers: list[subprocess.Popen] = []

    # A supervisor stops `inspector dashboard` with SIGTERM. Without passing it on, the Streamlit
    # server would outlive this process and keep the port, so the restart that follows fails. The
    # handler goes in before the server starts, so no SIGTERM can fall between the two.
    def _pass_on(signum: int, _frame: object) -> None:
        for server in servers:
            server.send_signal(signum)
        if not servers:
            raise SystemExit(128 + signum)

    in_main_thread = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _pass_on) if in_main_thread else None
    returncode = 0
    try:
        servers.append(subprocess.Popen(argv, env=env))
        returncode = servers[0].wait()
    except KeyboardInterrupt:
        # Ctrl+C in a terminal reaches Streamlit too; a SIGINT sent to this process alone does not.
        for server in servers:
            if server.poll() is None:
                server.send_signal(signal.SIGINT)
    finally:
        if in_main_thread and previous is not None:  # None: the old handler was not set from Python
            signal.signal(signal.SIGTERM, previous)
        for server in servers:
            _stop_server(server)
    if returncode not in (0, -signal.SIGINT, -signal.SIGTERM, 130, 143):
        raise InspectorError(f"dashboard: streamlit exited with status {returncode}")
