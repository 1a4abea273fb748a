"""`inspector inspect`: image files and folders -> results.jsonl, overlays, heatmaps, zooms, a summary.

A bad image never stops the run: it becomes a record with verdict "error" and the reason, and the
next image is inspected. Records are appended and flushed one by one, so an interrupted run keeps
every verdict it reached. Overlay, heatmap and zoom paths in the records are relative to the output
folder (the folder can be moved or archived as a whole). A board with regions also gets a zoom
sheet (`zooms/`): each region, largest peak first, as board | reference board (fixtured designs) |
heatmap (inspector/core/render.py `region_zooms`).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from rich.table import Table
from tqdm import tqdm

from inspector.config import InspectConfig
from inspector.core.imageio import IMAGE_EXTENSIONS, load_image
from inspector.core.interface import PreparedBoard
from inspector.core.overlap import overlapped
from inspector.core.region_zoom import region_zooms, zoom_sheet
from inspector.core.registration import RegistrationError
from inspector.core.render import heatmap_image, overlay, reference_on_board, save_png
from inspector.core.results import InspectionResult
from inspector.errors import ImageLoadError, InspectorError

if TYPE_CHECKING:  # the type only; the engine (ONNX Runtime) is imported when a run starts
    from inspector.core.engine import Inspector

# A chunk of input paths as read and prepared for the model (path, pixels, decode ms, board) with the
# records of those that could not be (unreadable, or not aligned), then the same with the results.
ReadChunk = tuple[Sequence[Path], list[tuple[Path, np.ndarray, float, PreparedBoard]], dict[Path, dict[str, Any]]]
InspectedChunk = tuple[Sequence[Path], list[tuple[Path, np.ndarray, float, PreparedBoard]],
                       dict[Path, dict[str, Any]], list[InspectionResult]]

RESULTS_FILE = "results.jsonl"
OVERLAY_DIR = "overlays"
HEATMAP_DIR = "heatmaps"
ZOOM_DIR = "zooms"
VERDICTS = ("pass", "review", "fail", "error")


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files as given; folders replaced by their image files (sorted by name, not recursive)."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            found.append(path)
    if not found:
        raise InspectorError(f"no images found in {', '.join(str(p) for p in paths)} "
                             f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
    return found


class _OutputNames:
    """One output file name per input image, unique even when two folders hold the same name."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def __call__(self, image: Path) -> str:
        stem, counter = image.stem, 1
        name = f"{stem}.png"
        while name in self.used:
            counter += 1
            name = f"{stem}-{counter}.png"
        self.used.add(name)
        return name


def _chunks(items: Sequence[Path], size: int) -> Iterator[Sequence[Path]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def error_record(image: Path, reason: str) -> dict[str, Any]:
    return {"image": str(image), "verdict": "error", "error": reason, "score": None, "threshold": None,
            "regions": [], "overlay": None, "heatmap": None, "zooms": None}


def result_record(image: Path, result: InspectionResult, overlay_path: str, heatmap_path: str,
                  timings_ms: dict[str, float], zooms_path: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"image": str(image), **result.summary()}
    record["pixel_threshold"] = result.pixel_threshold
    record["overlay"] = overlay_path
    record["heatmap"] = heatmap_path
    record["zooms"] = zooms_path
    record["timings_ms"] = {name: round(float(value), 3) for name, value in timings_ms.items()}
    record["error"] = None
    return record


def save_pictures(out: Path, name: str, pixels: np.ndarray, result: InspectionResult,
                  reference: np.ndarray | None) -> tuple[str, str, str | None]:
    """Overlay, heatmap and, for a board with regions, its zoom sheet under `out`; their paths
    relative to `out` (None: no zoom sheet). `reference`: the bundle's reference board (fixtured
    designs), placed where this board lay for the sheet's reference panels."""
    overlay_path = save_png(out / OVERLAY_DIR / name, overlay(pixels, result))
    layer = heatmap_image(result)
    heatmap_path = save_png(out / HEATMAP_DIR / name, layer)
    zooms_path = None
    if result.regions:
        placed = None if reference is None else reference_on_board(reference, result.warp, pixels.shape)
        zooms, left_out = region_zooms(pixels, layer, [(region.bbox, region.peak) for region in result.regions],
                                       placed)
        zooms_path = str(save_png(out / ZOOM_DIR / name, zoom_sheet(zooms, left_out)).relative_to(out))
    return str(overlay_path.relative_to(out)), str(heatmap_path.relative_to(out)), zooms_path


def inspect_paths(bundle: Path, paths: list[Path], out: Path, config: InspectConfig, *,
                  network: bool = True, tolerance_db: str | None = None) -> list[dict[str, Any]]:
    """Inspect every image under `paths` with the bundle; write DIR/results.jsonl and pictures.
    `network=False`: the reference comparison (see `Inspector.load`). `tolerance_db`: the store whose
    newest learned tolerance of this model applies, as on the line.

    Returns the records (one per image, in input order) as written to results.jsonl.
    """
    from inspector.core.engine import Inspector  # the engine pulls in ONNX Runtime; keep `--help` instant

    images = expand_paths(paths)
    engine = Inspector.load(bundle, config, network=network)
    if tolerance_db is not None:
        from inspector.feeds.learned import use_learned_tolerance

        print(use_learned_tolerance(engine, tolerance_db), file=sys.stderr)
    out = Path(out)
    for folder in (out, out / OVERLAY_DIR, out / HEATMAP_DIR):
        folder.mkdir(parents=True, exist_ok=True)
    steps = _ChunkSteps(engine, out, config.max_pixels)
    # The next chunk is read and prepared, and the last one drawn, while the model runs (core/overlap.py).
    chunks = overlapped(_chunks(images, max(1, config.batch_size)), steps.read, steps.run, steps.draw)
    records = _write_records(out / RESULTS_FILE, chunks, len(images))
    print_summary(records, out)
    return records


class _ChunkSteps:
    """The three steps of a chunk of input paths, around the engine and the output folder they share:
    `read` (decode, prepare), `run` (the model, then the verdicts), `draw` (pictures, records)."""

    def __init__(self, engine: Inspector, out: Path, max_pixels: int) -> None:
        self.engine = engine
        self.out = out
        self.max_pixels = max_pixels
        self.names = _OutputNames()
        self.reference = engine.registration.reference if engine.registration is not None else None

    def read(self, chunk: Sequence[Path]) -> ReadChunk:
        loaded: list[tuple[Path, np.ndarray, float, PreparedBoard]] = []
        chunk_records: dict[Path, dict[str, Any]] = {}
        for image_path in chunk:
            start = time.perf_counter()
            try:
                pixels = load_image(image_path, max_pixels=self.max_pixels)
            except ImageLoadError as exc:
                chunk_records[image_path] = error_record(image_path, exc.reason)
                continue
            decode_ms = (time.perf_counter() - start) * 1e3
            try:
                [board] = self.engine.prepare([pixels])
            except RegistrationError as exc:  # cannot be aligned to the reference board: no score
                chunk_records[image_path] = error_record(image_path, f"board not aligned: {exc}")
                continue
            loaded.append((image_path, pixels, decode_ms, board))
        return chunk, loaded, chunk_records

    def run(self, batch: ReadChunk) -> InspectedChunk:
        chunk, loaded, chunk_records = batch
        boards = [board for _, _, _, board in loaded]
        results = self.engine.judge(self.engine.run(boards)) if boards else []
        return chunk, loaded, chunk_records, results

    def draw(self, batch: InspectedChunk) -> list[dict[str, Any]]:
        chunk, loaded, chunk_records, results = batch
        for (image_path, pixels, decode_ms, _), result in zip(loaded, results, strict=True):
            result.pixel_threshold = self.engine.pixel_threshold
            start = time.perf_counter()
            overlay_path, heatmap_path, zooms_path = save_pictures(self.out, self.names(image_path), pixels, result,
                                                                   self.reference)
            timings = {"decode": decode_ms, **result.timings_ms}
            timings["render"] = (time.perf_counter() - start) * 1e3
            timings["total"] = timings.get("total", 0.0) + decode_ms + timings["render"]
            chunk_records[image_path] = result_record(image_path, result, overlay_path, heatmap_path, timings,
                                                      zooms_path)
        return [chunk_records[image_path] for image_path in chunk]  # input order, errors included


def _write_records(path: Path, chunks: Iterable[list[dict[str, Any]]], total: int) -> list[dict[str, Any]]:
    """Each record appended to `path` as one JSON line and flushed as it comes (an interrupted run keeps
    every verdict it reached); the records, in order."""
    records: list[dict[str, Any]] = []
    with open(path, "w", encoding="utf-8") as sink, tqdm(total=total, desc="inspect", unit="img") as progress:
        for chunk_records in chunks:
            for record in chunk_records:
                sink.write(json.dumps(record) + "\n")
                sink.flush()
                records.append(record)
                progress.update(1)
    return records


def print_summary(records: list[dict[str, Any]], out: Path, console: Console | None = None) -> None:
    """Counts per verdict and the highest-scoring boards, as rich tables."""
    console = console or Console()
    counts = {verdict: sum(1 for r in records if r["verdict"] == verdict) for verdict in VERDICTS}
    table = Table(title=f"{len(records)} image(s) inspected -> {out / RESULTS_FILE}")
    for verdict in VERDICTS:
        table.add_column(verdict, justify="right")
    table.add_row(*(str(counts[v]) for v in VERDICTS))
    console.print(table)
    scored = sorted((r for r in records if r["score"] is not None), key=lambda r: r["score"], reverse=True)
    if scored:
        worst = Table(title="highest anomaly scores")
        for column in ("image", "verdict", "score", "threshold", "regions"):
            worst.add_column(column, justify="left" if column == "image" else "right")
        for record in scored[:5]:
            worst.add_row(Path(record["image"]).name, record["verdict"], f"{record['score']:.4f}",
                          f"{record['threshold']:.4f}", str(len(record["regions"])))
        console.print(worst)
    for record in records:
        if record["verdict"] == "error":
            console.print(f"error {record['image']}: {record['error']}", style="red", markup=False, highlight=False,
                          soft_wrap=True)
