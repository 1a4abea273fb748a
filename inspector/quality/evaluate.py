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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score, roc_curve
from tqdm import tqdm

from inspector.atomic import atomic_write_text
from inspector.config import InspectConfig
from inspector.core.imageio import IMAGE_EXTENSIONS, load_image
from inspector.core.render import overlay, save_png
from inspector.core.results import InspectionResult
from inspector.errors import DatasetError, ImageLoadError, OutputError
from inspector.quality.metrics import (
    DEFAULT_MAX_FPR,
    DEFAULT_TOLERANCE_PX,
    ProSamples,
    RegionCounts,
    aupro_from_samples,
    region_counts,
)

GOOD = "good"
METRICS_FILE = "metrics.json"
PIXELS_PER_IMAGE = 8192  # defect-free pixel samples kept per image (about)
WORST_PER_KIND = 3


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    kind: str  # "good" or the defect type
    mask: Path | None


@dataclass
class Outcome:
    image: LabelledImage
    score: float
    verdict: str
    regions: int


def find_labelled_images(root: Path) -> list[LabelledImage]:
    """Every test image with its mask; DatasetError naming what is missing."""
    test = root / "test"
    if not test.is_dir():
        raise DatasetError(f"{root}: no test/ folder (expected the MVTec-AD layout test/<type>/, ground_truth/<type>/)")
    kinds = sorted(p.name for p in test.iterdir() if p.is_dir())
    if GOOD not in kinds:
        raise DatasetError(f"{test / GOOD}: missing; evaluation needs good boards")
    images: list[LabelledImage] = []
    missing: list[str] = []
    for kind in [GOOD] + [k for k in kinds if k != GOOD]:
        files = sorted(p for p in (test / kind).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        for path in files:
            if kind == GOOD:
                images.append(LabelledImage(path, kind, None))
                continue
            mask = root / "ground_truth" / kind / f"{path.stem}_mask.png"
            if not mask.is_file():
                missing.append(f"{path} (expected {mask})")
            images.append(LabelledImage(path, kind, mask))
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise DatasetError(f"ground-truth mask missing for {'; '.join(missing[:3])}{more}")
    if not any(image.kind == GOOD for image in images):
        raise DatasetError(f"{test / GOOD}: holds no images")
    if all(image.kind == GOOD for image in images):
        raise DatasetError(f"{test}: no defective images (test/<defect type>/ folders)")
    return images


# Box annotations beside the masks (`annotations/<stem>.txt`, one `x1,y1,x2,y2,type` per line with
# inclusive corners, as in the DeepPCB conversion) say which kind of defect each box is, so recall
# can be reported per annotated type even when all images share one test/ folder. DeepPCB's type
# codes get their names; any other code is reported as it is written.
DEEPPCB_TYPE_NAMES = {"1": "open", "2": "short", "3": "mousebite", "4": "spur", "5": "spurious_copper",
                      "6": "pin_hole"}


@dataclass(frozen=True)
class AnnotatedBox:
    bbox: tuple[int, int, int, int]  # x1, y1, x2, y2, exclusive like Region.bbox
    kind: str


def read_box_annotations(root: Path, image: LabelledImage) -> list[AnnotatedBox]:
    """The annotated boxes of a defective image, or [] when the data set has no annotations."""
    path = root / "annotations" / f"{image.path.stem}.txt"
    if image.mask is None or not path.is_file():
        return []
    boxes = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            x1, y1, x2, y2 = (int(float(v)) for v in fields[:4])
            code = fields[4]
        except (ValueError, IndexError) as exc:
            raise DatasetError(f"{path}:{number}: expected x1,y1,x2,y2,type, got {line!r}") from exc
        boxes.append(AnnotatedBox((x1, y1, x2 + 1, y2 + 1), DEEPPCB_TYPE_NAMES.get(code, code)))
    return boxes


def boxes_found(boxes: Sequence[AnnotatedBox], predicted: Sequence[tuple[int, int, int, int]]) -> list[bool]:
    """Per annotated box: does any predicted region box touch it?"""
    return [any(px1 < bx2 and px2 > bx1 and py1 < by2 and py2 > by1 for px1, py1, px2, py2 in predicted)
            for bx1, by1, bx2, by2 in (box.bbox for box in boxes)]


def load_mask(image: LabelledImage, shape: tuple[int, int], max_pixels: int) -> np.ndarray | None:
    if image.mask is None:
        return None
    mask = load_image(image.mask, channels=1, max_pixels=max_pixels)
    if mask.shape != shape:
        raise DatasetError(f"{image.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                           f"{shape[1]}x{shape[0]}")
    return mask > 0


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


def write_worst(engine: Any, picks: Sequence[tuple[str, Outcome]], folder: Path, max_pixels: int) -> list[str]:
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
    samples: dict[str, ProSamples] = defaultdict(ProSamples)
    counts: dict[str, RegionCounts] = defaultdict(RegionCounts)
    outcomes: list[Outcome] = []
    skipped: list[dict[str, str]] = []
    strides: set[int] = set()
    annotated: dict[str, list[bool]] = defaultdict(list)
    batch = max(1, config.batch_size)
    with tqdm(total=len(images), desc="evaluate", unit="img") as progress:
        for start in range(0, len(images), batch):
            chunk = images[start:start + batch]
            loaded: list[tuple[LabelledImage, np.ndarray, np.ndarray | None]] = []
            for item in chunk:
                try:
                    pixels = load_image(item.path, max_pixels=config.max_pixels)
                except ImageLoadError as exc:  # reported, not fatal: the rest still measures
                    skipped.append({"image": str(item.path), "reason": exc.reason})
                    continue
                loaded.append((item, pixels, load_mask(item, pixels.shape[:2], config.max_pixels)))
            results = engine.inspect_each([pixels for _, pixels, _ in loaded]) if loaded else []
            for (item, _pixels, mask), result in zip(loaded, results):
                if not isinstance(result, InspectionResult):  # an error verdict (not aligned): reported, not scored
                    skipped.append({"image": str(item.path), "reason": f"error verdict: {result}"})
                    continue
                stride = sampling_stride(result.anomaly_map.shape)
                strides.add(stride)
                samples[item.kind].add(result.anomaly_map, mask, ok_stride=stride)
                boxes = [region.bbox for region in result.regions]
                counts[item.kind].add(region_counts(boxes, mask, result.anomaly_map.shape, DEFAULT_TOLERANCE_PX))
                labelled_boxes = read_box_annotations(Path(data), item)
                for box, found in zip(labelled_boxes, boxes_found(labelled_boxes, boxes)):
                    annotated[box.kind].append(found)
                outcomes.append(Outcome(item, float(result.score), result.verdict, len(result.regions)))
            progress.update(len(chunk))
    kinds = sorted({o.image.kind for o in outcomes} - {GOOD})
    if not kinds or not any(o.image.kind == GOOD for o in outcomes):
        raise DatasetError(f"{data}: after skipping unreadable images there are no good or no defective boards")

    def figures(selected_kinds: Sequence[str]) -> dict[str, Any]:
        chosen = [o for o in outcomes if o.image.kind == GOOD or o.image.kind in selected_kinds]
        n_good = sum(o.image.kind == GOOD for o in chosen)
        result = {"counts": {"good": n_good, "defective": len(chosen) - n_good}}
        result.update(image_figures(chosen))
        result.update(pixel_figures(_merge([samples[GOOD]] + [samples[k] for k in selected_kinds])))
        result.update(region_figures(counts[GOOD], _sum_counts([counts[k] for k in selected_kinds]),
                                     n_good, len(chosen) - n_good))
        return result

    metrics: dict[str, Any] = figures(kinds)
    metrics["counts"].update({kind: sum(o.image.kind == kind for o in outcomes) for kind in kinds})
    metrics["counts"]["skipped"] = len(skipped)
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
                           "n": sorted(strides)},
        "per_type": {kind: figures([kind]) for kind in kinds},
        "per_annotation_type": {kind: {"boxes": len(found), "found": int(sum(found)),
                                       "region_recall": round(float(np.mean(found)), 6)}
                                for kind, found in sorted(annotated.items())},
        "skipped": skipped,
    })
    plot_roc(outcomes, out / "roc.png")
    plot_histogram(outcomes, engine.image_threshold, out / "score_histogram.png")
    metrics["worst"] = write_worst(engine, worst_cases(outcomes), out / "worst", config.max_pixels)
    metrics["images"] = [{"image": str(o.image.path), "type": o.image.kind, "score": round(o.score, 6),
                          "verdict": o.verdict, "regions": o.regions} for o in outcomes]
    write_json_atomic(out / METRICS_FILE, metrics)
    print_summary(metrics, out)
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
