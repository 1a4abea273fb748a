"""What the `inspector` commands share: the one Typer app, option presets and the store helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from inspector import __version__

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


STORE_HELP = ("The runner's results store: SQLAlchemy URL without a password (BOARD_INSPECTOR_DB_URL holds one) or "
              "its data directory [default: BOARD_INSPECTOR_DB_URL].")
REVIEW_USER = typer.Option(..., "--user", help="Who acts: a user of the users file (its role decides what it may do).")
REVIEW_USERS = typer.Option(..., "--users", help="The dashboard's users file (names and roles).", **EXISTING_FILE)


def store_url(db: Optional[str]) -> str:
    from inspector.config import RunnerConfig, has_secret, resolve_db_url

    if db is not None and has_secret(db):
        raise typer.BadParameter("a password in --db shows in `ps`: put the URL in BOARD_INSPECTOR_DB_URL",
                                 param_hint="--db")
    url = db if db is not None else resolve_db_url(RunnerConfig())
    if not url:
        raise typer.BadParameter("give the runner's store (URL or data directory), or set BOARD_INSPECTOR_DB_URL",
                                 param_hint="--db")
    return url


def open_store(db: Optional[str]) -> Any:
    from inspector.store import Store

    return Store.open(store_url(db))


def teach_config(config: Optional[Path]) -> Any:
    from inspector.config import load_settings

    return load_settings(config).teach
