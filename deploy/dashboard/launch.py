"""`inspector dashboard`: run the Streamlit app in deploy/dashboard/ with this deployment's settings.

The app is a separate script (Streamlit runs it per browser session), so the settings travel in
environment variables named below; deploy/dashboard/context.py reads the same names. The store's
URL, which may hold a password, is one of them: it never goes on Streamlit's command line.
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
ENV_IDLE_MINUTES = "BOARD_INSPECTOR_IDLE_MINUTES"

# Streamlit's security settings, pinned here rather than inherited from its defaults or from a
# config.toml lying around: no exception details for visitors (the server log has them), XSRF
# tokens on uploads, CORS protection on (no cross-origin HTTP access, and the websocket accepts
# same-origin connections only, as corsAllowedOrigins stays empty).
SECURITY_OPTIONS = (
    ("--client.showErrorDetails", "none"),
    ("--server.enableXsrfProtection", "true"),
    ("--server.enableCORS", "true"),
    ("--server.xsrfCookieSameSite", "strict"),
    ("--server.enableStaticServing", "false"),
    ("--global.developmentMode", "false"),
)


def app_path() -> Path:
    """deploy/dashboard/server.py (the st.App serving app.py and the login routes), wherever installed."""
    spec = importlib.util.find_spec("deploy")
    if spec is None or not spec.submodule_search_locations:
        raise InspectorError("the deploy package (dashboard app) is not installed with board-inspector")
    path = Path(next(iter(spec.submodule_search_locations))) / "dashboard" / "server.py"
    if not path.is_file():
        raise InspectorError(f"{path}: dashboard app missing from the installation")
    return path


def streamlit_command(config: DashboardConfig, data_dir: Path, *, demo: bool = False) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that start the dashboard; refuses to start without logins.

    There is deliberately no built-in fallback account: a dashboard that can change thresholds
    must never come up open. A users file that still holds a published demo password is refused
    unless `inspector demo` starts the dashboard (`demo=True`).
    """
    if not config.users_file:
        raise ConfigError("dashboard: no users file given; pass --users FILE (make one with "
                          "`inspector users add NAME --role operator --users FILE`, see docs/deployment.md)")
    from deploy.dashboard.auth import demo_logins_in, load_users

    users_path = Path(config.users_file).resolve()
    users = load_users(users_path)  # fail here, in one line, rather than on the first login attempt
    if not demo:
        published = demo_logins_in(users)
        if published:
            raise ConfigError(f"{users_path}: user(s) {', '.join(published)} still have the published demo "
                              "password; set new ones with `inspector users passwd NAME --users FILE`")
    if not 0 < config.port < 65536:
        raise ConfigError(f"dashboard: port must be 1-65535, got {config.port}")
    if config.refresh_seconds <= 0:
        raise ConfigError(f"dashboard: refresh_seconds must be positive, got {config.refresh_seconds}")
    if not (math.isfinite(config.session_hours) and config.session_hours > 0):
        raise ConfigError(f"dashboard: session_hours must be a positive number of hours, got {config.session_hours}")
    if not (math.isfinite(config.idle_minutes) and config.idle_minutes > 0):
        raise ConfigError(f"dashboard: idle_minutes must be a positive number of minutes, got {config.idle_minutes}")
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
        "--server.runOnSave", "false",
    ]
    for option, value in SECURITY_OPTIONS:
        argv += [option, value]
    env = dict(os.environ)
    env.update({
        ENV_DB_URL: store_url(config, env, demo=demo),
        ENV_DATA_DIR: str(Path(data_dir).resolve()),
        ENV_USERS_FILE: str(users_path),
        ENV_REFRESH_SECONDS: str(config.refresh_seconds),
        ENV_SESSION_HOURS: str(config.session_hours),
        ENV_IDLE_MINUTES: str(config.idle_minutes),
    })
    # Streamlit also reads STREAMLIT_* variables; none may loosen the pinned options.
    for name in [n for n in env if n.startswith("STREAMLIT_")]:
        del env[name]
    return argv, env


def store_url(config: DashboardConfig, environ: dict[str, str], *, demo: bool = False) -> str:
    """The store URL the app gets (in its environment, never in its argv, where `ps` shows it).

    `config.db_url` is the store the caller chose (`inspector dashboard` resolved --db and the
    runner's order into it). An empty one never replaces the URL this process inherited in
    BOARD_INSPECTOR_DB_URL: that is where the line keeps its password, and overwriting it with ""
    sent QA's reviews into a SQLite file no runner reads. Then `config.db_url_file`; "" = SQLite in
    the data directory. The demo always shows the store it has just filled in its data directory,
    whatever the shell's environment names.
    """
    if config.db_url.strip():
        return config.db_url.strip()
    if demo:
        return ""
    return config.store_url(environ=environ)


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


def launch(config: DashboardConfig, data_dir: Path, *, demo: bool = False) -> None:
    """Run the dashboard in the foreground until it exits, is interrupted or is told to stop."""
    if importlib.util.find_spec("streamlit") is None:
        raise InspectorError("streamlit is not installed; install the dashboard extra: "
                             "pip install 'board-inspector[dashboard]'")
    argv, env = streamlit_command(config, data_dir, demo=demo)
    print(f"dashboard: http://{config.host}:{config.port} (Ctrl+C stops it)", flush=True)
    returncode = _serve(argv, env)
    if returncode not in (0, -signal.SIGINT, -signal.SIGTERM, 130, 143):
        raise InspectorError(f"dashboard: streamlit exited with status {returncode}")


def _serve(argv: list[str], env: dict[str, str]) -> int:
    """Run the Streamlit server in the foreground, passing SIGTERM and Ctrl+C on to it; its exit
    status (0 after Ctrl+C)."""
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
    return returncode
