"""`inspector` command line: each subcommand calls one function of the Python API.

The functions live in their own modules and are imported inside each command so that
`inspector --help` is instant and the runtime commands never import torch.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer

# typer >= 0.20 vendors click as typer._click; its exceptions are not re-exported publicly.
try:
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer on top of click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from inspector import __version__
from inspector.config import InspectConfig, mask_secrets
from inspector.errors import InspectorError

app = typer.Typer(
    name="inspector",
    help=(
        "board-inspector: anomaly detection for printed circuit boards. Train an autoencoder on "
        "good boards, export it as an ONNX bundle, inspect images from a folder or a camera, store "
        "every verdict, and review flagged boards in the dashboard."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EXISTING_DIR: dict[str, Any] = dict(exists=True, file_okay=False, dir_okay=True, readable=True, resolve_path=True)
EXISTING_FILE: dict[str, Any] = dict(exists=True, file_okay=True, dir_okay=False, readable=True, resolve_path=True)
EXISTING_PATH: dict[str, Any] = dict(exists=True, readable=True, resolve_path=True)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"board-inspector {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """board-inspector command line."""


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError as exc:
        raise typer.BadParameter(f"expected WIDTHxHEIGHT such as 384x384, got {text!r}") from exc
    if not (32 <= width <= 8192 and 32 <= height <= 8192):
        raise typer.BadParameter(f"size must be between 32 and 8192 pixels a side, got {text!r}")
    return width, height


@app.command()
def samples(
    out: Path = typer.Option(..., "--out", help="Output root (MVTec-AD layout is created inside)."),
    good: int = typer.Option(40, "--good", min=1, help="Good boards for train/good."),
    defective: int = typer.Option(16, "--defective", min=0, help="Defective boards in test/<type>."),
    test_good: Optional[int] = typer.Option(None, "--test-good", min=0,
                                            help="Good boards for test/good (default: good/4, at least 4)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same images."),
    size: str = typer.Option("384x384", "--size", help="Image size WIDTHxHEIGHT."),
    fixture: bool = typer.Option(False, "--fixture", help="Boards lie in a fixture the camera sees around them "
                                 "(plate, locating pins, clamps over the board's edges) under a lamp whose glare clips."),
    camera: str = typer.Option("line", "--camera", help="line (a fixed line camera) or webcam: the fixture as a webcam "
                               "sees it (implies --fixture): glints, leaning through-hole parts, clipping, JPEG."),
) -> None:
    """Generate synthetic populated-board images with pixel-accurate defect masks."""
    dimensions = _parse_size(size)
    from inspector.synth.dataset import generate_dataset

    summary = generate_dataset(out, good=good, defective=defective, test_good=test_good, seed=seed,
                               size=dimensions, fixture=fixture, camera=camera)
    typer.echo(summary.describe())


@app.command()
def train(
    data: Path = typer.Option(..., "--data", help="Folder of good images, or an MVTec-AD root (uses train/good).",
                              **EXISTING_DIR),
    out: Path = typer.Option(..., "--out", help="Bundle directory to write."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Epochs to train: the amount of work."),
    max_minutes: Optional[float] = typer.Option(
        None, "--max-minutes", min=0.05,
        help="Wall-clock safety cap: training does a fixed number of epochs; the cap cuts a slow machine short and says so."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML/JSON file of TrainConfig fields.",
                                          **EXISTING_FILE),
    method: Optional[str] = typer.Option(None, "--method", help="ae (autoencoder) or pca (patch PCA baseline)."),
    channels: Optional[str] = typer.Option(None, "--channels", help="auto, gray or color."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Checkpoint to resume from.", **EXISTING_FILE),
    roi: Optional[str] = typer.Option(None, "--roi", help="Inspection area: x,y,w,h on the reference board, or a "
                                      "mask image (non-zero = inspected). Default: the whole image."),
    registration: Optional[str] = typer.Option(None, "--registration",
                                               help="auto (on for one fixtured design), on or off."),
    atlas: Optional[str] = typer.Option(None, "--atlas", help="Per-position model of good boards: auto, on or off."),
) -> None:
    """Train a model on good boards and write a calibrated ONNX bundle."""
    from inspector import extensions
    from inspector.config import TrainConfig, load_config

    cfg = load_config(config, TrainConfig) if config else TrainConfig()
    for name, value in (("epochs", epochs), ("max_minutes", max_minutes), ("method", method),
                        ("channels", channels), ("seed", seed), ("roi", roi), ("registration", registration),
                        ("atlas", atlas)):
        if value is not None:
            setattr(cfg, name, value)
    extensions.training().train_bundle(data, out, cfg, resume=resume)


@app.command()
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="checkpoint.pt written by training.", **EXISTING_FILE),
    out: Path = typer.Option(..., "--out", help="Bundle directory to write."),
    precision: Optional[str] = typer.Option(None, "--precision",
                                  help="float32 or int8 (default: the precision the model was trained with)."),
) -> None:
    """Re-export a bundle (ONNX + metadata + parity check + calibration) from a training checkpoint."""
    from inspector import extensions

    extensions.training().export_from_checkpoint(checkpoint, out, precision=precision)


@app.command()
def calibrate(
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    data: Path = typer.Option(..., "--data", help="Folder of good images (or MVTec-AD root: test/good).",
                              **EXISTING_DIR),
    target_false_alarm_rate: float = typer.Option(0.01, "--target-far", min=0.0, max=0.5,
                                                  help="Share of good boards allowed to be flagged."),
    region_false_alarm_rate: Optional[float] = typer.Option(
        None, "--region-far", min=0.0, max=0.9,
        help="Share of good boards allowed to show a region (sent to review); default: keep the bundle's rule."),
    false_regions_per_board: Optional[float] = typer.Option(
        None, "--regions-per-board", min=0.0,
        help="Set the region line where the good boards show this many regions a board on average "
             "(instead of --region-far); default: keep the bundle's rule."),
    reason: str = typer.Option(..., "--reason", help="Why the thresholds change (kept in the audit trail)."),
    author: str = typer.Option("cli", "--author", help="Who recalibrates."),
) -> None:
    """Recalibrate a bundle's thresholds on good boards, as a new calibration version."""
    from inspector.core.calibration import recalibrate

    result = recalibrate(model, data, target_false_alarm_rate=target_false_alarm_rate, reason=reason, author=author,
                         region_false_alarm_rate=region_false_alarm_rate, false_regions_per_board=false_regions_per_board)
    typer.echo(f"calibration version {result['version']}: image threshold {result['image_threshold']:.4f}, "
               f"pixel threshold {result['pixel_threshold']:.4f}")


@app.command()
def inspect(
    paths: list[Path] = typer.Argument(..., help="Image files or folders.", **EXISTING_PATH),
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    out: Path = typer.Option(..., "--out", help="Output folder for results.jsonl, overlays and heatmaps."),
    fail_on_defect: bool = typer.Option(False, "--fail-on-defect", help="Exit 1 if any board fails."),
    batch: int = typer.Option(4, "--batch", min=1, help="Images per ONNX Runtime call."),
    min_region_area: Optional[int] = typer.Option(None, "--min-region-area", min=1, help="Drop smaller regions."),
    no_network: bool = typer.Option(False, "--no-network", help="Replace the network's output by the board's good "
                                    "expectation (the reference comparison, fixtured designs only): the network's gain."),
    db: Optional[str] = typer.Option(None, "--db", help="Judge as the runner of this store does: its newest learned "
                                     "tolerance of the bundle's model applies (URL without a password, or data directory)."),
) -> None:
    """Inspect board images and write verdicts, overlays and heatmaps."""
    from inspector.config import InspectConfig
    from inspector.feeds.batch import inspect_paths

    cfg = InspectConfig(batch_size=batch)
    if min_region_area is not None:
        cfg.min_region_area = min_region_area
    records = inspect_paths(model, paths, out, cfg, network=not no_network, tolerance_db=_store_url(db) if db else None)
    if fail_on_defect and any(record.get("verdict") == "fail" for record in records):
        raise typer.Exit(1)


@app.command()
def evaluate(
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    data: Path = typer.Option(..., "--data", help="MVTec-AD root with test/ and ground_truth/.", **EXISTING_DIR),
    out: Path = typer.Option(..., "--out", help="Output folder for metrics.json and plots."),
    no_network: bool = typer.Option(False, "--no-network", help="Replace the network's output by the board's good "
                                    "expectation (the reference comparison, fixtured designs only): the network's gain."),
    db: Optional[str] = typer.Option(None, "--db", help="Judge as the runner of this store does: its newest learned "
                                     "tolerance of the bundle's model applies (URL without a password, or data directory)."),
) -> None:
    """Measure detection quality (AUROC, AUPRO, region recall, false regions, F1) on labelled boards."""
    from inspector.config import InspectConfig
    from inspector.quality.evaluate import evaluate as run_evaluate

    run_evaluate(model, data, out, InspectConfig(), network=not no_network, tolerance_db=_store_url(db) if db else None)


@app.command()
def bench(
    model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of images (default: generated boards).",
                                          **EXISTING_DIR),
    batch: int = typer.Option(InspectConfig().batch_size, "--batch", min=1,
                              help="Images per ONNX Runtime call (default: inspect.batch_size's default)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the figures as JSON here."),
    runner: bool = typer.Option(False, "--runner", help="Also measure the folder runner's sustained rate."),
    config: Optional[Path] = typer.Option(None, "--config", help="Deployment settings TOML: with --runner, the "
                                          "runner is measured again with its [lineout.*] outputs on.", **EXISTING_FILE),
) -> None:
    """Per-stage timings, throughput, torch vs ONNX Runtime, FLOPs and share of CPU peak."""
    from inspector.config import load_settings
    from inspector.quality.bench import run_bench

    run_bench(model, images=images, batch=batch, out=out, runner=runner,
              lineout=load_settings(config).lineout if config else None)


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


@app.command()
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


@app.command()
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


@app.command()
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
app.add_typer(users_app, name="users")
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


# ------------------------------------------------------------------------------ review and teaching
STORE_HELP = ("The runner's results store: SQLAlchemy URL without a password (BOARD_INSPECTOR_DB_URL holds one) or "
              "its data directory [default: BOARD_INSPECTOR_DB_URL].")
REVIEW_USER = typer.Option(..., "--user", help="Who acts: a user of the users file (its role decides what it may do).")
REVIEW_USERS = typer.Option(..., "--users", help="The dashboard's users file (names and roles).", **EXISTING_FILE)


def _store_url(db: Optional[str]) -> str:
    from inspector.config import RunnerConfig, has_secret, resolve_db_url

    if db is not None and has_secret(db):
        raise typer.BadParameter("a password in --db shows in `ps`: put the URL in BOARD_INSPECTOR_DB_URL",
                                 param_hint="--db")
    url = db if db is not None else resolve_db_url(RunnerConfig())
    if not url:
        raise typer.BadParameter("give the runner's store (URL or data directory), or set BOARD_INSPECTOR_DB_URL",
                                 param_hint="--db")
    return url


def _open_store(db: Optional[str]) -> Any:
    from inspector.store import Store

    return Store.open(_store_url(db))


review_app = typer.Typer(help="Review flagged boards from a script: the dashboard's Confirm and Dismiss, same "
                         "role checks, same records.", no_args_is_help=True)
app.add_typer(review_app, name="review")


@review_app.command("dismiss")
def review_dismiss(ids: list[int] = typer.Argument(..., help="Inspection ids (the dashboard's board numbers)."),
                   db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP), user: str = REVIEW_USER,
                   users: Path = REVIEW_USERS,
                   comment: str = typer.Option("", "--comment", help="Kept with each review.")) -> None:
    """Dismiss boards as false alarms (several at once: QA only, as on the dashboard)."""
    from inspector.review.decisions import dismiss_false_alarm, dismiss_many
    from inspector.review.roles import named_user

    who = named_user(users, user)
    with _open_store(db) as store:
        made = (dismiss_many(store, who, ids, comment) if len(ids) > 1
                else [dismiss_false_alarm(store, who, ids[0], comment)])
    typer.echo(f"dismissed {len(made)} board(s) as false alarms: reviews {', '.join(map(str, made))}")


@review_app.command("confirm")
def review_confirm(inspection_id: int = typer.Argument(..., help="Inspection id (the dashboard's board number)."),
                   defect_type: str = typer.Option(..., "--type", help="Defect type (as the dashboard lists them)."),
                   db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP), user: str = REVIEW_USER,
                   users: Path = REVIEW_USERS,
                   comment: str = typer.Option("", "--comment", help="Kept with the review.")) -> None:
    """Confirm a board's defect."""
    from inspector.review.decisions import confirm_defect
    from inspector.review.roles import named_user

    who = named_user(users, user)
    with _open_store(db) as store:
        made = confirm_defect(store, who, inspection_id, defect_type, comment)
    typer.echo(f"board {inspection_id} confirmed as {defect_type}: review {made}")


def _teach_config(config: Optional[Path]) -> Any:
    from inspector.config import load_settings

    return load_settings(config).teach


@app.command()
def learn(
    model: Path = typer.Option(..., "--model", help="Model bundle directory (one fixtured design).", **EXISTING_DIR),
    db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP),
    user: str = REVIEW_USER, users: Path = REVIEW_USERS,
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Deployment settings TOML: its [teach] table.",
                                          **EXISTING_FILE),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the lessons and the preview; store nothing."),
    figure: Optional[Path] = typer.Option(None, "--figure", help="Also write the version's figure (PNG) here."),
) -> None:
    """Teach the station from the regions dismissed since the last version (QA): a new learned tolerance."""
    from inspector.atomic import atomic_write_bytes
    from inspector.review.roles import named_user
    from inspector.review.teach import learn as run_learn

    who = named_user(users, user)
    with _open_store(db) as store:
        made, record = run_learn(model, store, who, reason, _teach_config(config), dry_run=dry_run)
    typer.echo(made.describe())
    if figure is not None:
        atomic_write_bytes(figure, made.figure)
    typer.echo("dry run: nothing stored" if record is None else
               f"learned tolerance version {record.version} stored; runners apply it from their next board")


@app.command("trial-teaching")
def trial_teaching(
    model: Path = typer.Option(..., "--model", help="Model bundle directory (one fixtured design).", **EXISTING_DIR),
    data: Path = typer.Option(..., "--data", help="MVTec-AD root: test/good is the stream, test/<type> the defects.",
                              **EXISTING_DIR),
    out: Path = typer.Option(..., "--out", help="Folder for teaching.json."),
    first: str = typer.Option("5,10,20", "--first", help="Teach from the first k dismissed boards, for each k."),
    teach_on: str = typer.Option("flagged", "--teach-on", help="flagged (the first k flagged good boards) or boards "
                                 "(the first k good boards, every region on them dismissed)."),
    eval_good: Optional[int] = typer.Option(None, "--eval-good", min=1,
                                            help="Judge only this many good boards after the taught ones."),
    config: Optional[Path] = typer.Option(None, "--config", help="Deployment settings TOML: its [teach] table.",
                                          **EXISTING_FILE),
) -> None:
    """Measure teaching: false regions a good board and region recall before and after, on later boards."""
    from inspector.quality.teaching_trial import teaching_trial

    try:
        counts = [int(part) for part in first.split(",") if part.strip()]
    except ValueError as exc:
        raise typer.BadParameter(f"expected counts such as 5,10,20, got {first!r}", param_hint="--first") from exc
    teaching_trial(model, data, out, counts, teach_on=teach_on, eval_good=eval_good, teach=_teach_config(config))


lineout_app = typer.Typer(help="The line's outputs (hook, MQTT, OPC UA) as watch and camera configure them.",
                          no_args_is_help=True)
app.add_typer(lineout_app, name="lineout")


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
app.add_typer(outbox_app, name="outbox")


@outbox_app.command("list")
def outbox_list(db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP),
                station: Optional[str] = typer.Option(None, "--station", help="Only this station's.")) -> None:
    """Pending and parked verdicts, with why the line refused the parked ones."""
    with _open_store(db) as store:
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
    with _open_store(db) as store:
        count = store.resend_parked(station=station, outbox_ids=list(ids) if ids else None)
    typer.echo(f"{count} parked verdict(s) queued again")


tolerance_app = typer.Typer(help="The learned tolerance's versions: history and rollback.", no_args_is_help=True)
app.add_typer(tolerance_app, name="tolerance")


@tolerance_app.command("history")
def tolerance_history(model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
                      db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP)) -> None:
    """Every version: who, when, why, what it changed."""
    from inspector.bundle.files import MODEL_FILE, sha256_file

    model_hash = sha256_file(model / MODEL_FILE)
    with _open_store(db) as store:
        history = store.tolerance_history(model_hash)
    if not history:
        typer.echo(f"model {model_hash[:12]}: nothing learned (the bundle's own tolerance)")
    for version in history:
        summary = version.summary
        typer.echo(f"v{version.version} {version.created_at:%Y-%m-%d %H:%M} {version.author}: {version.reason} | "
                   f"{len(summary.get('lessons', []))} lessons, {len(summary.get('refusals', []))} refused, widened "
                   f"{summary.get('widened_share', 0.0):.2%} | {summary.get('preview_text', '')}")


@tolerance_app.command("rollback")
def tolerance_rollback(version: int = typer.Argument(..., min=0, help="The version to bring back (0: nothing learned)."),
                       model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
                       db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP),
                       user: str = REVIEW_USER, users: Path = REVIEW_USERS,
                       reason: str = typer.Option(..., "--reason", help="Why (kept in the audit trail)."),
                       config: Optional[Path] = typer.Option(None, "--config", help="Deployment settings TOML.",
                                                             **EXISTING_FILE)) -> None:
    """Bring an earlier version back as a new version (QA), after a preview on stored boards."""
    from inspector.review.roles import named_user
    from inspector.review.teach import rollback

    who = named_user(users, user)
    with _open_store(db) as store:
        shown, record = rollback(model, store, who, version, reason, _teach_config(config))
    typer.echo(f"preview: {shown.describe()}")
    typer.echo(f"learned tolerance version {record.version} = version {version}; runners apply it from their next board")


@app.command()
def demo(
    no_dashboard: bool = typer.Option(False, "--no-dashboard", help="Stop after storing results (for scripts)."),
    workdir: Path = typer.Option(Path(".demo"), "--workdir", help="Where the demo keeps its model and store."),
    retrain: bool = typer.Option(False, "--retrain", help="Train the demo model again even if one exists."),
    minutes: float = typer.Option(3.0, "--minutes", min=0.1,
                                  help="Wall-clock cap on training the demo model (it trains a fixed number of epochs)."),
) -> None:
    """Run the whole product on the bundled sample boards, ending in the dashboard."""
    from inspector.demo import run_demo

    run_demo(workdir=workdir, no_dashboard=no_dashboard, retrain=retrain, minutes=minutes)


def main(argv: list[str] | None = None) -> int:
    """Entry point: usage and domain errors become one `error:` line, never a traceback."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="inspector", standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx is not None else str(exc))
        sys.exit(0)
    except click_exceptions.UsageError as exc:
        hint = f" (try '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        typer.echo(f"error: {mask_secrets(exc.format_message())}{hint}", err=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("error: interrupted", err=True)
        sys.exit(130)
    except InspectorError as exc:
        typer.echo(f"error: {mask_secrets(str(exc))}", err=True)
        sys.exit(1)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
        typer.echo(f"error: {mask_secrets(str(exc))}", err=True)
        sys.exit(1)
    code = result if isinstance(result, int) else 0
    if argv is None:
        sys.exit(code)
    return code
