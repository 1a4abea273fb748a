"""Commands of review and teaching: confirm and dismiss, learn, the teaching trial, the tolerance's versions."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from inspector.cli.common import EXISTING_DIR, EXISTING_FILE, REVIEW_USER, REVIEW_USERS, STORE_HELP, open_store, teach_config

review_app = typer.Typer(help="Review flagged boards from a script: the dashboard's Confirm and Dismiss, same "
                         "role checks, same records.", no_args_is_help=True)


@review_app.command("dismiss")
def review_dismiss(ids: list[int] = typer.Argument(..., help="Inspection ids (the dashboard's board numbers)."),
                   db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP), user: str = REVIEW_USER,
                   users: Path = REVIEW_USERS,
                   comment: str = typer.Option("", "--comment", help="Kept with each review.")) -> None:
    """Dismiss boards as false alarms (several at once: QA only, as on the dashboard)."""
    from inspector.review.decisions import dismiss_false_alarm, dismiss_many
    from inspector.review.roles import named_user

    who = named_user(users, user)
    with open_store(db) as store:
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
    with open_store(db) as store:
        made = confirm_defect(store, who, inspection_id, defect_type, comment)
    typer.echo(f"board {inspection_id} confirmed as {defect_type}: review {made}")


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
    with open_store(db) as store:
        made, record = run_learn(model, store, who, reason, teach_config(config), dry_run=dry_run)
    typer.echo(made.describe())
    if figure is not None:
        atomic_write_bytes(figure, made.figure)
    typer.echo("dry run: nothing stored" if record is None else
               f"learned tolerance version {record.version} stored; runners apply it from their next board")


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
    teaching_trial(model, data, out, counts, teach_on=teach_on, eval_good=eval_good, teach=teach_config(config))


tolerance_app = typer.Typer(help="The learned tolerance's versions: history and rollback.", no_args_is_help=True)


@tolerance_app.command("history")
def tolerance_history(model: Path = typer.Option(..., "--model", help="Model bundle directory.", **EXISTING_DIR),
                      db: Optional[str] = typer.Option(None, "--db", help=STORE_HELP)) -> None:
    """Every version: who, when, why, what it changed."""
    from inspector.bundle.files import MODEL_FILE, sha256_file

    model_hash = sha256_file(model / MODEL_FILE)
    with open_store(db) as store:
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
    with open_store(db) as store:
        shown, record = rollback(model, store, who, version, reason, teach_config(config))
    typer.echo(f"preview: {shown.describe()}")
    typer.echo(f"learned tolerance version {record.version} = version {version}; runners apply it from their next board")
