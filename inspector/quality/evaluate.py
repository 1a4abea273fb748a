"""`inspector evaluate`: detection quality of a bundle on a labelled MVTec-AD-layout root.

Reads `test/good/*` and every `test/<defect>/*` with `ground_truth/<defect>/<name>_mask.png`,
inspects them with the runtime engine (batched, so the figures are those of the line), and writes
`metrics.json`, `roc.png`, `score_histogram.png` and `worst/` overlays.

Memory stays bounded on hundreds of 640x640 boards: anomaly maps are not kept. For the pixel
figures every defect pixel is kept, while defect-free pixels are sampled on a fixed grid (every
Nth row and column, N chosen so about PIXELS_PER_IMAGE samples remain per image) — deterministic,
and an unbiased estimate of the false-positive rate. The grid is recorded in metrics.json.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score, roc_curve
from tqdm import tqdm

from inspector.atomic import atomic_write_text
from inspector.config import InspectConfig
from inspector.core.imageio import load_image
from inspector.core.render import overlay, save_png
from inspector.core.results import InspectionResult
from inspector.errors import DatasetError, ImageLoadError, OutputError
from inspector.quality.labelled import (
    GOOD,
    LabelledImage,
    boxes_found,
    find_labelled_images,
    load_mask,
    read_box_annotations,
)
from inspector.quality.metrics import (
    DEFAULT_MAX_FPR,
    DEFAULT_TOLERANCE_PX,
    ProSamples,
    RegionCounts,
    aupro_from_samples,
    region_counts,
)

if TYPE_CHECKING:  # the type only; the engine (ONNX Runtime) is imported when an evaluation starts
    from inspector.core.engine import Inspector

METRICS_FILE = "metrics.json"
PIXELS_PER_IMAGE = 8192  # defect-free pixel samples kept per image (about)
WORST_PER_KIND = 3


@dataclass
class Outcome:
    image: LabelledImage
    score: float
    verdict: str
    regions: int


def sampling_stride(shape: tuple[int, int]) -> int:
    return max(1, math.ceil(math.sqrt(shape[0] * shape[1] / PIXELS_PER_IMAGE)))


def _optional(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def image_figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Image-level AUROC (scores) and F1/precision/recall at the calibrated verdicts.

    A board is flagged when it reaches an operator: verdict "fail" or "review" (a region under the
    fail line). The fail line alone is reported too (`fail_*`), and the shares of good boards
    failed and flagged, which is what the line feels.
    """
    truth = np.array([o.image.kind != GOOD for o in outcomes])
    scores = np.array([o.score for o in outcomes])
    flagged = np.array([o.verdict in ("fail", "review") for o in outcomes])
    failed = np.array([o.verdict == "fail" for o in outcomes])
    both = truth.any() and (~truth).any()
    good = ~truth
    return {
        "image_auroc": _optional(roc_auc_score(truth, scores)) if both else None,
        "f1": _optional(f1_score(truth, flagged, zero_division=0)),
        "precision": _optional(precision_score(truth, flagged, zero_division=0)),
        "recall": _optional(recall_score(truth, flagged, zero_division=0)),
        "fail_f1": _optional(f1_score(truth, failed, zero_division=0)),
        "fail_recall": _optional(recall_score(truth, failed, zero_division=0)),
        "good_boards_failed": _optional(float(failed[good].mean())) if good.any() else None,
        "good_boards_flagged": _optional(float(flagged[good].mean())) if good.any() else None,
    }


def pixel_figures(samples: ProSamples) -> dict[str, Any]:
    ok = np.concatenate(samples.ok_scores) if samples.ok_scores else np.zeros(0, np.float32)
    defect = np.concatenate(samples.defect_scores) if samples.defect_scores else np.zeros(0, np.float32)
    if ok.size == 0 or defect.size == 0:
        return {"pixel_auroc": None, "aupro": None}
    labels = np.r_[np.zeros(ok.size, bool), np.ones(defect.size, bool)]
    return {"pixel_auroc": _optional(roc_auc_score(labels, np.r_[ok, defect])),
            "aupro": _optional(aupro_from_samples(samples, DEFAULT_MAX_FPR))}


def region_figures(good: RegionCounts, defective: RegionCounts, n_good: int, n_defective: int) -> dict[str, Any]:
    return {
        "region_recall": _optional(defective.region_recall),
        "fp_regions_per_good_image": _optional(good.false_regions / n_good) if n_good else None,
        "fp_regions_per_defective_image": _optional(defective.false_regions / n_defective) if n_defective else None,
        "localisation": _optional(defective.localisation),
        "gt_regions": defective.gt_regions,
        "gt_regions_found": defective.gt_regions_found,
        "predicted_regions_good": good.predicted_regions,
        "predicted_regions_defective": defective.predicted_regions,
    }


def _merge(parts: Sequence[ProSamples]) -> ProSamples:
    merged = ProSamples()
    for part in parts:
        merged.extend(part)
    return merged


def _sum_counts(parts: Sequence[RegionCounts]) -> RegionCounts:
    total = RegionCounts()
    for part in parts:
        total.add(part)
    return total


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    try:
        atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def plot_roc(outcomes: Sequence[Outcome], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = [o.image.kind != GOOD for o in outcomes]
    fpr, tpr, _ = roc_curve(truth, [o.score for o in outcomes])
    figure, axes = plt.subplots(figsize=(5, 5))
    axes.plot(fpr, tpr, label=f"AUROC {roc_auc_score(truth, [o.score for o in outcomes]):.3f}")
    axes.plot([0, 1], [0, 1], "--", color="grey", linewidth=0.8)
    axes.set(xlabel="false-positive rate (good boards flagged)", ylabel="true-positive rate",
             title="Image-level ROC")
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_histogram(outcomes: Sequence[Outcome], threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    good = [o.score for o in outcomes if o.image.kind == GOOD]
    bad = [o.score for o in outcomes if o.image.kind != GOOD]
    bins: Any = np.linspace(min(good + bad + [threshold]), max(good + bad + [threshold]), 40)
    figure, axes = plt.subplots(figsize=(7, 4))
    axes.hist(good, bins=bins, alpha=0.6, label=f"good ({len(good)})", color="tab:blue")
    axes.hist(bad, bins=bins, alpha=0.6, label=f"defective ({len(bad)})", color="tab:red")
    axes.axvline(threshold, color="black", linestyle="--", label=f"image threshold {threshold:.3f}")
    axes.set(xlabel="image score (calibrated scale)", ylabel="boards", title="Image scores")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def worst_cases(outcomes: Sequence[Outcome]) -> list[tuple[str, Outcome]]:
    good = sorted((o for o in outcomes if o.image.kind == GOOD), key=lambda o: -o.score)
    bad = sorted((o for o in outcomes if o.image.kind != GOOD), key=lambda o: o.score)
    missed = [o for o in bad if o.verdict == "pass"]
    picks = [("good-high", o) for o in good[:WORST_PER_KIND]]
    picks += [("defect-low", o) for o in bad[:WORST_PER_KIND]]
    picks += [("missed", o) for o in missed if o not in bad[:WORST_PER_KIND]][:WORST_PER_KIND]
    return picks


def write_worst(engine: Inspector, picks: Sequence[tuple[str, Outcome]], folder: Path, max_pixels: int) -> list[str]:
    """Overlays of the worst cases, with the ground-truth outline drawn in green."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for label, outcome in picks:
        image = load_image(outcome.image.path, max_pixels=max_pixels)
        result = engine.inspect(image)
        result.pixel_threshold = engine.pixel_threshold
        picture = overlay(image, result)
        mask = load_mask(outcome.image, image.shape[:2], max_pixels)
        if mask is not None:
            contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(picture, contours, -1, (0, 255, 0), 1)
        name = f"{label}_{outcome.image.kind}_{outcome.image.path.stem}.png"
        written.append(str(save_png(folder / name, picture).relative_to(folder.parent)))
    return written


def evaluate(bundle: Path, data: Path, out: Path, config: InspectConfig, *, network: bool = True,
             tolerance_db: str | None = None) -> dict[str, Any]:
    """Inspect every labelled test image and write metrics.json plus plots; returns the metrics.
    `network=False`: the same pipeline with the network's output replaced by the board's good expectation
    (the reference comparison, with its own per-position model and lines), so the network's gain is the
    difference between two runs. `tolerance_db`: the store whose newest learned tolerance of this model
    applies, as on the line."""
    from inspector.core.engine import Inspector  # ONNX Runtime only when a command needs it

    images = find_labelled_images(Path(data))
    engine = Inspector.load(bundle, config, network=network)
    tolerance = "none"
    if tolerance_db is not None:
        from inspector.feeds.learned import use_learned_tolerance

        tolerance = use_learned_tolerance(engine, tolerance_db)
        print(tolerance)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tally = _inspect_labelled(engine, images, Path(data), config)
    kinds = sorted({o.image.kind for o in tally.outcomes} - {GOOD})
    if not kinds or not any(o.image.kind == GOOD for o in tally.outcomes):
        raise DatasetError(f"{data}: after skipping unreadable images there are no good or no defective boards")
    metrics = _metrics(tally, kinds, engine, config, network=network, tolerance=tolerance)
    plot_roc(tally.outcomes, out / "roc.png")
    plot_histogram(tally.outcomes, engine.image_threshold, out / "score_histogram.png")
    metrics["worst"] = write_worst(engine, worst_cases(tally.outcomes), out / "worst", config.max_pixels)
    metrics["images"] = [{"image": str(o.image.path), "type": o.image.kind, "score": round(o.score, 6),
                          "verdict": o.verdict, "regions": o.regions} for o in tally.outcomes]
    write_json_atomic(out / METRICS_FILE, metrics)
    print_summary(metrics, out)
    return metrics


@dataclass
class _Tally:
    """What inspecting the labelled set leaves for the figures (anomaly maps are not kept): each scored
    image's outcome; per kind ("good" or a defect type) the pixel samples and region counts; whether
    each annotated box was found, per annotated type; the images skipped; the sampling grids used."""

    data: Path  # the labelled root (its annotations/ folder)
    outcomes: list[Outcome] = field(default_factory=list)
    samples: dict[str, ProSamples] = field(default_factory=lambda: defaultdict(ProSamples))
    counts: dict[str, RegionCounts] = field(default_factory=lambda: defaultdict(RegionCounts))
    annotated: dict[str, list[bool]] = field(default_factory=lambda: defaultdict(list))
    skipped: list[dict[str, str]] = field(default_factory=list)
    strides: set[int] = field(default_factory=set)

    def add(self, item: LabelledImage, mask: np.ndarray | None, result: InspectionResult) -> None:
        stride = sampling_stride(result.anomaly_map.shape)
        self.strides.add(stride)
        self.samples[item.kind].add(result.anomaly_map, mask, ok_stride=stride)
        boxes = [region.bbox for region in result.regions]
        self.counts[item.kind].add(region_counts(boxes, mask, result.anomaly_map.shape, DEFAULT_TOLERANCE_PX))
        labelled_boxes = read_box_annotations(self.data, item)
        for box, found in zip(labelled_boxes, boxes_found(labelled_boxes, boxes)):
            self.annotated[box.kind].append(found)
        self.outcomes.append(Outcome(item, float(result.score), result.verdict, len(result.regions)))


def _inspect_labelled(engine: Inspector, images: Sequence[LabelledImage], data: Path,
                      config: InspectConfig) -> _Tally:
    """Every image inspected in batches of the line's size; an unreadable image or an error verdict is
    reported in `skipped`, not fatal: the rest still measures."""
    tally = _Tally(data)
    batch = max(1, config.batch_size)
    with tqdm(total=len(images), desc="evaluate", unit="img") as progress:
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            loaded = _load_chunk(chunk, config.max_pixels, tally.skipped)
            results = engine.inspect_each([pixels for _, pixels, _ in loaded]) if loaded else []
            for (item, _pixels, mask), result in zip(loaded, results):
                if not isinstance(result, InspectionResult):  # an error verdict (not aligned): reported, not scored
                    tally.skipped.append({"image": str(item.path), "reason": f"error verdict: {result}"})
                    continue
                tally.add(item, mask, result)
            progress.update(len(chunk))
    return tally


def _load_chunk(chunk: Sequence[LabelledImage], max_pixels: int,
                skipped: list[dict[str, str]]) -> list[tuple[LabelledImage, np.ndarray, np.ndarray | None]]:
    """Each readable image with its pixels and mask; the unreadable ones appended to `skipped`."""
    loaded: list[tuple[LabelledImage, np.ndarray, np.ndarray | None]] = []
    for item in chunk:
        try:
            pixels = load_image(item.path, max_pixels=max_pixels)
        except ImageLoadError as exc:
            skipped.append({"image": str(item.path), "reason": exc.reason})
            continue
        loaded.append((item, pixels, load_mask(item, pixels.shape[:2], max_pixels)))
    return loaded


def _figures(tally: _Tally, kinds: Sequence[str]) -> dict[str, Any]:
    """Image, pixel and region figures of the defect types `kinds` against all good boards."""
    chosen = [o for o in tally.outcomes if o.image.kind == GOOD or o.image.kind in kinds]
    n_good = sum(o.image.kind == GOOD for o in chosen)
    figures: dict[str, Any] = {"counts": {"good": n_good, "defective": len(chosen) - n_good}}
    figures.update(image_figures(chosen))
    figures.update(pixel_figures(_merge([tally.samples[GOOD]] + [tally.samples[k] for k in kinds])))
    figures.update(region_figures(tally.counts[GOOD], _sum_counts([tally.counts[k] for k in kinds]),
                                  n_good, len(chosen) - n_good))
    return figures


def _metrics(tally: _Tally, kinds: Sequence[str], engine: Inspector, config: InspectConfig, *, network: bool,
             tolerance: str) -> dict[str, Any]:
    """metrics.json without the worst cases and the per-image list: the figures of all defect types, the
    settings they were measured with, the figures per defect type and per annotated type."""
    metrics = _figures(tally, kinds)
    metrics["counts"].update({kind: sum(o.image.kind == kind for o in tally.outcomes) for kind in kinds})
    metrics["counts"]["skipped"] = len(tally.skipped)
    metrics.update({
        "image_threshold": engine.image_threshold,
        "pixel_threshold": engine.pixel_threshold,
        "calibration_version": engine.calibration_version,
        "model_hash": engine.model_hash,
        "network": network if network else f"off: the map compares the board with {engine.expectation_kind}",
        "learned_tolerance": tolerance,
        "min_region_area": config.min_region_area,
        "aupro_max_fpr": DEFAULT_MAX_FPR,
        "tolerance_px": DEFAULT_TOLERANCE_PX,
        "pixel_sampling": {"defect_pixels": "all", "defect_free_pixels": "every Nth row and column",
                           "n": sorted(tally.strides)},
        "per_type": {kind: _figures(tally, [kind]) for kind in kinds},
        "per_annotation_type": {kind: {"boxes": len(found), "found": int(sum(found)),
                                       "region_recall": round(float(np.mean(found)), 6)}
                                for kind, found in sorted(tally.annotated.items())},
        "skipped": tally.skipped,
    })
    return metrics


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)


def print_summary(metrics: dict[str, Any], out: Path, console: Console | None = None) -> None:
    """All figures for the whole set, then the key ones per defect type (narrow enough for 80 columns)."""
    console = console or Console()
    overall = Table(title=f"evaluation -> {out / METRICS_FILE}")
    overall.add_column("measure")
    overall.add_column("value", justify="right")
    counts = metrics["counts"]
    overall.add_row("boards good / defective / skipped", f"{counts['good']} / {counts['defective']} / {counts['skipped']}")
    for key in ("image_auroc", "pixel_auroc", "aupro", "region_recall", "fp_regions_per_good_image",
                "fp_regions_per_defective_image", "localisation", "f1", "precision", "recall", "fail_f1",
                "fail_recall", "good_boards_failed", "good_boards_flagged",
                "image_threshold", "pixel_threshold"):
        overall.add_row(key.replace("_", " "), _fmt(metrics[key]))
    console.print(overall)
    per_type = Table(title="per defect type (against all good boards)")
    for header in ("type", "boards", "img AUROC", "AUPRO", "reg recall", "F1"):
        per_type.add_column(header, justify="left" if header == "type" else "right")
    for name, figures in metrics["per_type"].items():
        per_type.add_row(name, str(figures["counts"]["defective"]), _fmt(figures["image_auroc"]),
                         _fmt(figures["aupro"]), _fmt(figures["region_recall"]), _fmt(figures["f1"]))
    console.print(per_type)
    if metrics.get("per_annotation_type"):
        by_box = Table(title="per annotated defect type (boxes touched by a predicted region)")
        for header in ("type", "boxes", "found", "reg recall"):
            by_box.add_column(header, justify="left" if header == "type" else "right")
        for name, figures in metrics["per_annotation_type"].items():
            by_box.add_row(name, str(figures["boxes"]), str(figures["found"]), _fmt(figures["region_recall"]))
        console.print(by_box)
    if metrics["skipped"]:
        console.print(f"{len(metrics['skipped'])} unreadable image(s) skipped (listed in metrics.json)",
                      style="yellow", markup=False)
