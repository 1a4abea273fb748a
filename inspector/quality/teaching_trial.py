"""What teaching buys on a labelled set: `inspector trial-teaching`.

A new station is played back on an MVTec-layout root. The good test boards are split once: the last
`eval_good` (default: half) are the new boards it is judged on, with every defective board; the
others arrive in order and are stored, the operators dismiss the first k flagged ones (or every
board of the first k, as the team's webcam protocol does), and QA teaches once. The judged boards
are the same for every k, with and without the learned tolerance. Printed and written to teaching.json: false regions a
good board and region recall before and after, for each k (and each version's figure). Every run uses its own temporary store;
the bundle is never changed.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from inspector.config import InspectConfig, TeachConfig
from inspector.core.engine import Inspector
from inspector.core.imageio import ImageLoadError, load_image
from inspector.core.interface import Analysis
from inspector.core.registration import RegistrationError
from inspector.core.tolerance import LearnedTolerance
from inspector.errors import ConfigError, DatasetError
from inspector.quality.labelled import GOOD, LabelledImage, find_labelled_images, load_mask
from inspector.quality.metrics import RegionCounts, region_counts
from inspector.review.decisions import dismiss_false_alarm
from inspector.review.roles import User
from inspector.review.teach import learn
from inspector.store import Store

TEACH_ON = ("flagged", "boards")
OPERATOR = User("trial-operator", "operator")
QA = User("trial-qa", "qa")


@dataclass
class Judged:
    image: LabelledImage
    analysis: Analysis
    mask: np.ndarray | None


def _analyse(engine: Inspector, images: Sequence[LabelledImage], max_pixels: int) -> list[Judged]:
    judged: list[Judged] = []
    for image in tqdm(images, desc="judging boards", unit="board", leave=False):
        try:
            pixels = load_image(image.path, max_pixels=max_pixels)
            [analysis] = engine.analyse([pixels])
        except (ImageLoadError, RegistrationError):
            continue  # as evaluate: an unreadable or unaligned board is not scored
        judged.append(Judged(image, analysis, load_mask(image, pixels.shape[:2], max_pixels)))
    return judged


def _figures(engine: Inspector, boards: Sequence[Judged], tolerance: LearnedTolerance | None) -> dict[str, Any]:
    engine.set_tolerance(tolerance)
    good, defective = RegionCounts(), RegionCounts()
    n_good = shown = 0
    for board in boards:
        result = engine.judge([board.analysis])[0]
        counts = region_counts([r.bbox for r in result.regions], board.mask, result.anomaly_map.shape)
        if board.image.kind == GOOD:
            good.add(counts)
            n_good += 1
            shown += bool(result.regions)
        else:
            defective.add(counts)
    return {"false_regions_per_good_board": good.false_regions / n_good if n_good else None,
            "good_boards_with_regions": shown / n_good if n_good else None, "region_recall": defective.region_recall,
            "good_boards": n_good, "defect_regions": defective.gt_regions}


def _stream_until(engine: Inspector, store: Store, stream: Sequence[Judged], count: int, teach_on: str) -> int:
    """Store boards of the stream in order and dismiss as the operators would, until `count` boards were
    dismissed (flagged ones, or every board); returns how many boards of the stream were used."""
    engine.set_tolerance(None)
    dismissed = 0
    for used, board in enumerate(stream, 1):
        result = engine.judge([board.analysis])[0]
        digest = hashlib.sha256(board.image.path.read_bytes()).hexdigest()
        inspection_id = store.record_inspection(
            station="trial", input_sha256=digest, model_hash=engine.model_hash, verdict=result.verdict,
            source_path=str(board.image.path), source_name=board.image.path.name, score=result.score,
            threshold=result.threshold, regions=[r.to_dict() for r in result.regions],
            image_path=str(board.image.path))
        if teach_on == "boards" or result.verdict != "pass":
            if result.verdict != "pass":
                dismiss_false_alarm(store, OPERATOR, inspection_id, "trial: a good board")
            dismissed += 1
        if dismissed >= count:
            return used
    raise DatasetError(f"only {dismissed} good boards could be dismissed before the stream ran out; {count} "
                       "were asked for: give more good test boards")


def teaching_trial(bundle: Path, data: Path, out: Path, counts: Sequence[int], *, teach_on: str = "flagged",
                   eval_good: int | None = None, config: InspectConfig | None = None,
                   teach: TeachConfig | None = None) -> dict[str, Any]:
    """Teach from the first k dismissed good boards for each k in `counts`; figures before/after."""
    if teach_on not in TEACH_ON:
        raise ConfigError(f"teach_on must be one of {', '.join(TEACH_ON)}, got {teach_on!r}")
    if not counts or min(counts) < 1:
        raise ConfigError(f"give at least one count of boards to teach from (>= 1), got {list(counts)}")
    config = config or InspectConfig()
    engine = Inspector.load(bundle, config)
    images = find_labelled_images(Path(data))
    boards = _analyse(engine, images, config.max_pixels)
    good = [b for b in boards if b.image.kind == GOOD]
    defective = [b for b in boards if b.image.kind != GOOD]
    held = eval_good if eval_good is not None else len(good) // 2
    if not 0 < held < len(good):
        raise DatasetError(f"{len(good)} good boards cannot be split into a stream to teach from and {held} to judge")
    stream, later = good[:-held], good[-held:]
    out.mkdir(parents=True, exist_ok=True)
    runs: list[dict[str, Any]] = []
    for count in counts:
        with tempfile.TemporaryDirectory(prefix="teaching-trial-") as folder, Store.open(Path(folder)) as store:
            used = _stream_until(engine, store, stream, count, teach_on)
            made, record = learn(bundle, store, QA, f"trial: first {count} {teach_on}", teach, inspect_config=config)
            assert record is not None
            taught = LearnedTolerance.stored(store.tolerance_version(engine.model_hash, record.version).factor,
                                             record.version)
        (out / f"tolerance-first-{count}-{teach_on}.png").write_bytes(made.figure)
        judged = list(later) + defective
        runs.append({"taught_from": count, "teach_on": teach_on, "stream_boards_used": used,
                     "lessons": len(made.lessons), "refused": len(made.refusals),
                     "widened_share": float((made.factor > 1).mean()), "max_factor": float(made.factor.max()),
                     "before": _figures(engine, judged, None), "after": _figures(engine, judged, taught)})
    engine.set_tolerance(None)
    report = {"bundle": str(bundle), "data": str(data), "teach": (teach or TeachConfig()).__dict__, "runs": runs}
    (out / "teaching.json").write_text(json.dumps(report, indent=2))
    _print(runs, out)
    return report


def _print(runs: Sequence[dict[str, Any]], out: Path) -> None:
    table = Table(title="teaching trial: new good boards (never taught from) and every defective board")
    for column in ("taught from", "lessons", "good boards", "false regions / good board", "region recall"):
        table.add_column(column)
    for run in runs:
        before, after = run["before"], run["after"]
        table.add_row(f"first {run['taught_from']} {run['teach_on']}", f"{run['lessons']} ({run['refused']} refused)",
                      str(after["good_boards"]),
                      f"{before['false_regions_per_good_board']:.2f} -> {after['false_regions_per_good_board']:.2f}",
                      f"{_pct(before['region_recall'])} -> {_pct(after['region_recall'])}")
    Console().print(table)
    Console().print(f"figures in {out / 'teaching.json'}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
