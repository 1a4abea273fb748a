"""The folder runner's sustained rate, as `inspector bench --runner` reports it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from inspector.config import InspectConfig, LineoutConfig, RunnerConfig
from inspector.core.imageio import is_image_file
from inspector.errors import InspectorError
from inspector.feeds.folder import run_folder
from inspector.feeds.processor import load_engine


def benchmark_runner(bundle: Path, images: Path, workdir: Path, lineout: LineoutConfig | None = None) -> dict[str, Any]:
    """Sustained images/s of the whole folder runner (claim, decode, inspect, overlay, store, move), with the
    line's outputs of `lineout` on when given."""
    sources = sorted(p for p in Path(images).iterdir() if is_image_file(p))
    if not sources:
        raise InspectorError(f"{images}: no images to benchmark the runner with")
    workdir = Path(workdir)
    run_dir = workdir / f"runner-bench-{time.time_ns()}"
    inbox = run_dir / "inbox"
    inbox.mkdir(parents=True)
    engine = load_engine(bundle, InspectConfig())
    for index, source in enumerate(sources):
        shutil.copyfile(source, inbox / f"{index:05d}-{source.name}")
    config = RunnerConfig(station="bench", data_dir=str(run_dir / "data"), stable_seconds=0.0, json_lines=False,
                          poll_seconds=0.05)
    started = time.monotonic()
    stats = run_folder(inbox, engine, config, InspectConfig(), once=True, bundle=bundle, lineout=lineout)
    wall = time.monotonic() - started
    return {
        "runner_images": stats.handled,
        "runner_seconds": round(wall, 3),
        "runner_images_per_second": round(stats.sustained_rate(), 3),
        "runner_images_per_second_wall": round(stats.handled / wall, 3) if wall > 0 else 0.0,
        "runner_quarantined": stats.quarantined,
    }
