"""`inspector demo`: the whole product on the bundled sample boards, ending in the dashboard.

sample boards -> (train the demo model once, cached) -> copy the test boards into an inbox ->
the folder runner inspects them into a fresh results store -> evaluation figures -> dashboard.
Training needs the `train` extra; everything after it is the runtime path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer

from inspector import extensions
from inspector.bundle.files import MANIFEST_FILE
from inspector.config import DashboardConfig, InspectConfig, RunnerConfig, ScheduleSettings, TrainConfig

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_BOARDS = REPO_ROOT / "sample_boards"
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def _sample_root(workdir: Path) -> Path:
    """The committed sample set, or (for a non-editable install) the same set generated afresh."""
    if (SAMPLE_BOARDS / "train" / "good").is_dir():
        return SAMPLE_BOARDS
    from inspector.synth.dataset import generate_dataset

    root = workdir / "samples"
    if not (root / "train" / "good").is_dir():
        typer.echo(f"demo: generating sample boards into {root}")
        generate_dataset(root, good=34, defective=14, test_good=8, seed=0, size=(512, 512))
    return root


# A fixed amount of work, as for every training: an epoch is at least 87 steps however few the boards
# (TrainConfig.schedule.epoch_crops), and 30 of them (2610 steps, about 2 minutes on a 2-core VNNI CPU) take the
# sample boards' network from its initial flat output to redrawing about half of the good boards' error
# tail (issue 18; 300 epochs of 8 steps before, 2400 steps, in which it never left the flat output).
DEMO_EPOCHS = 30


def demo_train_config(minutes: float) -> TrainConfig:
    # The sample boards carry printed labels: a mirrored label is no plausible board, so the views
    # averaged are shifted, not mirrored. `minutes` is the safety cap.
    return TrainConfig(seed=0, view_kind="shift", schedule=ScheduleSettings(epochs=DEMO_EPOCHS, max_minutes=minutes))


def _ensure_model(samples: Path, bundle: Path, *, retrain: bool, minutes: float) -> Path:
    if bundle.is_dir() and (bundle / MANIFEST_FILE).is_file() and not retrain:
        typer.echo(f"demo: using the trained demo model in {bundle} (--retrain to train again)")
        return bundle
    trainer = extensions.training()  # a runtime-only install has no torch: one clear error naming the extra
    typer.echo(f"demo: training the demo model on {samples / 'train' / 'good'} ({DEMO_EPOCHS} epochs, capped at {minutes:g} min)")
    trainer.train_bundle(samples, bundle, demo_train_config(minutes))
    return bundle


def _fill_inbox(samples: Path, inbox: Path) -> int:
    """Copy every test board (good and defective) into the inbox, as the line would drop them."""
    inbox.mkdir(parents=True, exist_ok=True)
    count = 0
    for folder in sorted((samples / "test").iterdir()):
        for image in sorted(folder.iterdir()):
            if image.suffix.lower() in IMAGE_SUFFIXES:
                shutil.copy2(image, inbox / f"{folder.name}-{image.name}")
                count += 1
    return count


def run_demo(*, workdir: Path, no_dashboard: bool, retrain: bool = False, minutes: float = 3.0) -> dict:
    """Run the demo; returns the figures it printed (for tests and notebooks)."""
    from inspector.feeds.folder import watch
    from inspector.quality.evaluate import evaluate
    from inspector.store import Store

    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    samples = _sample_root(workdir)
    bundle = _ensure_model(samples, workdir / "model", retrain=retrain, minutes=minutes)

    # A fresh feed and store each run, so the dashboard shows exactly this run's boards.
    data_dir = workdir / "data"
    inbox = workdir / "inbox"
    for folder in (data_dir, inbox):
        shutil.rmtree(folder, ignore_errors=True)
    fed = _fill_inbox(samples, inbox)
    typer.echo(f"demo: {fed} boards dropped into {inbox}; running the folder runner")
    runner_config = RunnerConfig(station="demo-line", data_dir=str(data_dir), stable_seconds=0.0, json_lines=False)
    stats = watch(inbox, bundle, runner_config, InspectConfig(), once=True)

    store = Store.open(str(data_dir))
    try:
        rows = store.list_inspections(limit=10_000)
    finally:
        store.close()
    verdicts: dict[str, int] = {}
    for row in rows:
        verdicts[row.verdict] = verdicts.get(row.verdict, 0) + 1
    typer.echo(f"demo: stored {len(rows)} inspections in {data_dir}: {json.dumps(verdicts, sort_keys=True)}")

    metrics = evaluate(bundle, samples, workdir / "evaluation", InspectConfig())
    summary = {
        "boards": fed,
        "stored": len(rows),
        "verdicts": verdicts,
        "runner_images_per_second": round(stats.sustained_rate(), 2),
        "image_auroc": metrics.get("image_auroc"),
        "region_recall": metrics.get("region_recall"),
        "fp_regions_per_good_image": metrics.get("fp_regions_per_good_image"),
    }
    (workdir / "demo-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    typer.echo(f"demo: evaluation on the sample boards: {json.dumps(summary)}")

    if no_dashboard:
        return summary
    board_dashboard = extensions.dashboard()

    typer.echo("demo: opening the dashboard at http://127.0.0.1:8501 (log in as operator / demo-operator, "
               "or qa / demo-qa); Ctrl-C to stop")
    demo_users = board_dashboard.demo_users_file(workdir)
    board_dashboard.launch(DashboardConfig(users_file=str(demo_users)), data_dir, demo=True)
    return summary
