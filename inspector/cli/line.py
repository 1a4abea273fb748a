"""Commands of the line: the folder and camera feeds, the dashboard and its users, the line's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from inspector.cli.common import EXISTING_DIR, EXISTING_FILE, STORE_HELP, open_store

CONFIG_HELP = ("Deployment settings TOML (deploy/example-config.toml): its [inspect], [runner], [camera] and [lineout.*] tables "
               "apply; options given here win.")
DB_HELP = ("SQLAlchemy URL without a password (default: BOARD_INSPECTOR_DB_URL, runner.db_url_file, runner.db_url, "
           "else SQLite in the data directory). A password here would show in `ps`: it is refused.")


def _line_settings(config: Optional[Path], db: Optional[str], overrides: dict[tuple[str, str], Any]) -> Any:
    """Settings for `watch` and `camera`: the file, then the options given (None = not given)."""
    from inspector.config import has_secret, load_settings, resolve_db_url

    settings = load_settings(config)
    if db is not None:
        if has_secret(db):
            raise typer.BadParameter("a password in --db shows in `ps` and the unit file: put the URL in "
                                     "BOARD_INSPECTOR_DB_URL or in runner.db_url_file (mode 0600)", param_hint="--db")
        settings.runner.db_url = db
    else:
        settings.runner.db_url = resolve_db_url(settings.runner)
    for table, name, value in ((t, n, v) for (t, n), v in overrides.items()):
        if value is not None:
            setattr(getattr(settings, table), name, str(value) if isinstance(value, Path) else value)
    return settings


def watch(
    inbox: Path = typer.Argument(..., help="Folder the line drops images into."),
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP, **EXISTING_FILE),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    station: Optional[str] = typer.Option(None, "--station", help="Station name recorded with every result "
                                          "[default: station-1]."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Store, processed images, overlays [default: data]."),
    http_port: Optional[int] = typer.Option(None, "--http-port", help="Serve /healthz and /metrics on this port "
                                            "(0 = off) [default: 0]."),
    hook: Optional[str] = typer.Option(None, "--hook", help="Command run per verdict with the JSON on stdin."),
    once: bool = typer.Option(False, "--once", help="Process what is in the inbox, then exit."),
    stable_seconds: Optional[float] = typer.Option(None, "--stable-seconds", min=0.0,
                                                   help="A file must stop changing this long before it is taken "
                                                        "[default: 1.0]."),
    poll_seconds: Optional[float] = typer.Option(None, "--poll-seconds", min=0.01,
                                                 help="Rescan the inbox at least this often (file events wake it "
                                                      "sooner) [default: 0.5]."),
    max_batch: Optional[int] = typer.Option(None, "--max-batch", min=1, help="Most images held in memory at once "
                                            "[default: 8]."),
    json_lines: Optional[bool] = typer.Option(None, "--json/--no-json", help="Print one JSON line per verdict on "
                                              "stdout [default: --json]."),
) -> None:
    """Watch a folder feed: inspect each new image exactly once and store the result."""
    from inspector.feeds.folder import watch as run_watch

    settings = _line_settings(config, db, {
        ("runner", "station"): station, ("runner", "data_dir"): data_dir, ("runner", "http_port"): http_port,
        ("runner", "hook"): hook, ("runner", "stable_seconds"): stable_seconds,
        ("runner", "poll_seconds"): poll_seconds, ("runner", "max_batch"): max_batch,
        ("runner", "json_lines"): json_lines})
    run_watch(inbox, model, settings.runner, settings.inspect, once=once, lineout=settings.lineout)


def camera(
    source: str = typer.Argument(..., help="Device index, video file, or RTSP/HTTP URL (credentials are masked "
                                 "in logs and events)."),
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP, **EXISTING_FILE),
    db: Optional[str] = typer.Option(None, "--db", help=DB_HELP),
    station: Optional[str] = typer.Option(None, "--station", help="Station name recorded with every result "
                                          "[default: station-1]."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Store, captured images, overlays "
                                            "[default: data]."),
    trigger: Optional[str] = typer.Option(None, "--trigger", help="every, interval, stdin or file [default: interval]."),
    interval: Optional[float] = typer.Option(None, "--interval", min=0.0, help="Seconds between inspections "
                                             "(interval) [default: 2.0]."),
    trigger_file: Optional[str] = typer.Option(None, "--trigger-file", help="File touched by the PLC bridge (file)."),
    http_port: Optional[int] = typer.Option(None, "--http-port", help="Serve /healthz and /metrics on this port "
                                            "(0 = off) [default: 0]."),
    max_frames: int = typer.Option(0, "--max-frames", min=0, help="Stop after this many inspections (0 = never)."),
) -> None:
    """Inspect frames from a camera or video stream."""
    from inspector.feeds.camera import run_camera

    settings = _line_settings(config, db, {
        ("runner", "station"): station, ("runner", "data_dir"): data_dir, ("runner", "http_port"): http_port,
        ("camera", "trigger"): trigger, ("camera", "interval_seconds"): interval,
        ("camera", "trigger_file"): trigger_file})
    run_camera(source, model, settings.runner, settings.camera, settings.inspect, max_frames=max_frames,
               lineout=settings.lineout)


DASHBOARD_DB_HELP = ("SQLAlchemy URL of the results store, without a password (default, as the runner finds it: "
                     "BOARD_INSPECTOR_DB_URL, dashboard.db_url_file, dashboard.db_url, runner.db_url_file, "
                     "runner.db_url, else SQLite in the data directory). A password here would show in `ps`: it is "
                     "refused.")


def _dashboard_store_url(settings: Any, db: Optional[str]) -> str:
    """The store `inspector dashboard` opens: `--db` (never with a password), else what the runner
    would find (`DashboardConfig.store_url`); "" = SQLite in the data directory."""
    from inspector.config import has_secret

    if db is None:
        return str(settings.dashboard.store_url(settings.runner))
    if has_secret(db):
        raise typer.BadParameter("a password in --db shows in `ps` and the unit file: put the URL in "
                                 "BOARD_INSPECTOR_DB_URL or in dashboard.db_url_file (mode 0600)", param_hint="--db")
    return db


def dashboard(
    db: Optional[str] = typer.Option(None, "--db", help=DASHBOARD_DB_HELP),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Data directory (default store; its images) "
                                            "[default: runner.data_dir, data]."),
    port: Optional[int] = typer.Option(None, "--port", help="HTTP port [default: 8501]."),
    host: Optional[str] = typer.Option(None, "--host",
                                       help="Bind address (localhost unless told otherwise) [default: 127.0.0.1]."),
    users: Optional[Path] = typer.Option(None, "--users", help="Users file (TOML, hashed passwords).",
                                         **EXISTING_FILE),
    config: Optional[Path] = typer.Option(None, "--config", help="Deployment settings TOML (deploy/example-config.toml); "
                                          "uses its [dashboard] table, and the [runner] table's store and data_dir; "
                                          "options given here win.",
                                          **EXISTING_FILE),
) -> None:
    """Open the operator and QA dashboard (Streamlit)."""
    from inspector import extensions
    from inspector.config import load_settings

    settings = load_settings(config)
    cfg = settings.dashboard
    # Resolved here, once, in the runner's order; the launcher hands it to Streamlit in the
    # environment (never in its argv) and keeps an inherited BOARD_INSPECTOR_DB_URL when it is empty.
    cfg.db_url, cfg.db_url_file = _dashboard_store_url(settings, db), ""
    for name, value in (("port", port), ("host", host), ("users_file", users and str(users))):
        if value is not None:
            setattr(cfg, name, value)
    extensions.dashboard().launch(cfg, data_dir if data_dir is not None else Path(settings.runner.data_dir))


users_app = typer.Typer(help="Manage the dashboard's users file (logins and roles).", no_args_is_help=True)
USERS_FILE = typer.Option(..., "--users", help="Users file (TOML with scrypt hashes; created by `add`).")
PASSWORD_STDIN = typer.Option(False, "--password-stdin",
                              help="Read the password from stdin (one line) instead of asking twice.")


def _users(action: str, users_file: Path, name: str | None = None, role: str | None = None,
           password_stdin: bool = False) -> None:
    from inspector import extensions

    typer.echo(extensions.dashboard().manage_users(action, users_file, name, role=role,
                                                   password_stdin=password_stdin))


@users_app.command("add")
def users_add(name: str = typer.Argument(..., help="Login name."),
              role: str = typer.Option(..., "--role", help="operator (reviews boards) or qa (also thresholds)."),
              users: Path = USERS_FILE, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Add a user; the password is asked twice (or read from stdin)."""
    _users("add", users, name, role, password_stdin)


@users_app.command("passwd")
def users_passwd(name: str = typer.Argument(..., help="Login name."),
                 role: Optional[str] = typer.Option(None, "--role", help="Also change the role."),
                 users: Path = USERS_FILE, password_stdin: bool = PASSWORD_STDIN) -> None:
    """Set a new password (ends the user's open dashboard sessions)."""
    _users("passwd", users, name, role, password_stdin)


@users_app.command("remove")
def users_remove(name: str = typer.Argument(..., help="Login name."), users: Path = USERS_FILE) -> None:
    """Remove a user (ends their open dashboard sessions)."""
    _users("remove", users, name)


@users_app.command("list")
def users_list(users: Path = USERS_FILE) -> None:
    """List users and roles."""
    _users("list", users)


lineout_app = typer.Typer(help="The line's outputs (hook, MQTT, OPC UA) as watch and camera configure them.",
                          no_args_is_help=True)


@lineout_app.command("test")
def lineout_test(config: Path = typer.Option(..., "--config", help="Deployment settings TOML: [runner] (station, "
                                             "hook) and [lineout.*].", **EXISTING_FILE)) -> None:
    """Publish one test verdict on every configured output and say what answered (exit 1 if any did not)."""
    from inspector.config import load_settings
    from inspector.feeds.lineout_check import check_outputs

    answers = check_outputs(load_settings(config))
    if not answers:
        typer.echo("no output configured besides stdout: set runner.hook or a [lineout.mqtt] / [lineout.opcua] table")
        raise typer.Exit(1)
    for answer in answers:
        typer.echo(f"{answer.output}: " + ("acknowledged" if answer.problem is None else f"NO ANSWER: {answer.problem}")
                   + f" ({answer.seconds:.2f} s)")
    if any(answer.problem is not None for answer in answers):
        raise typer.Exit(1)


outbox_app = typer.Typer(help="Verdicts owed to the line: what waits, what was parked as undeliverable, resending.",
                         no_args_is_help=True)


@outbox_app.command("list")
def outbox_list(db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP),
                station: Optional[str] = typer.Option(None, "--station", help="Only this station's.")) -> None:
    """Pending and parked verdicts, with why the line refused the parked ones."""
    with open_store(db) as store:
        state = store.delivery_state(station=station)
        parked = store.parked_verdicts(station=station)
    typer.echo(f"{state.pending} verdicts pending (oldest {state.lag_seconds:.0f} s), {state.parked} parked")
    for entry in parked:
        row = entry.inspection
        typer.echo(f"parked #{entry.outbox_id}: board #{row.id} {row.source_name} ({row.station}, {row.verdict}) "
                   f"after {entry.attempts} refusals: {entry.last_error}")


@outbox_app.command("resend")
def outbox_resend(ids: Optional[list[int]] = typer.Argument(None, help="Outbox ids to resend (default: every parked)."),
                  db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP),
                  station: Optional[str] = typer.Option(None, "--station", help="Only this station's.")) -> None:
    """Put parked verdicts back in the queue: the station's runner publishes them again."""
    with open_store(db) as store:
        count = store.resend_parked(station=station, outbox_ids=list(ids) if ids else None)
    typer.echo(f"{count} parked verdict(s) queued again")
