"""`inspector` command line: each subcommand calls one function of the Python API.

The functions live in their own modules and are imported inside each command so that
`inspector --help` is instant and the runtime commands never import torch. The commands are
grouped by theme (`models`, `line`, `review`) and registered here, on the one app, in the order
`inspector --help` lists them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

# typer >= 0.20 vendors click as typer._click; its exceptions are not re-exported publicly.
try:
    from typer._click import exceptions as click_exceptions
except ImportError:  # older typer on top of click
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from inspector.cli import line, models, review
from inspector.cli.common import app
from inspector.config import mask_secrets
from inspector.errors import InspectorError

__all__ = ["app", "main"]


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


# (name, function) in the order `inspector --help` lists them; the groups follow the commands.
COMMANDS = (("samples", models.samples), ("train", models.train), ("export", models.export),
            ("calibrate", models.calibrate), ("inspect", models.inspect), ("evaluate", models.evaluate),
            ("bench", models.bench), ("watch", line.watch), ("camera", line.camera), ("dashboard", line.dashboard),
            ("learn", review.learn), ("trial-teaching", review.trial_teaching), ("demo", demo))
GROUPS = (("users", line.users_app), ("review", review.review_app), ("lineout", line.lineout_app),
          ("outbox", line.outbox_app), ("tolerance", review.tolerance_app))
for _name, _function in COMMANDS:
    app.command(_name)(_function)
for _name, _group in GROUPS:
    app.add_typer(_group, name=_name)


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
