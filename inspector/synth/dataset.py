"""Write a synthetic sample set in the MVTec-AD layout, plus dataset.json describing every image.

    train/good/NNN.png   test/good/NNN.png   test/<defect>/NNN.png   ground_truth/<defect>/NNN_mask.png

Each image is rendered from its own seed key (dataset seed, split, index), so an image never
depends on how many were generated before it and one seed always gives byte-identical files.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inspector.errors import ConfigError, InspectorError
from inspector.synth.board import render_board
from inspector.synth.defects import DEFECT_TYPES, SIZE_CLASSES
from inspector.synth.layout import DESIGN_SEED
from inspector.synth.webcam import CAMERAS, WEBCAM

GENERATOR_VERSION = "1.3"
MANIFEST = "dataset.json"
PNG_OPTIONS = [cv2.IMWRITE_PNG_COMPRESSION, 9]
# seed-key split codes: part of every image's identity, so the splits never share a board
TRAIN_GOOD, TEST_GOOD, TEST_DEFECT = 0, 1, 2


@dataclass
class SampleSummary:
    """What `generate_dataset` wrote: counts per split and defect type, and where."""

    root: Path
    size: tuple[int, int]
    seed: int
    train_good: int
    test_good: int
    defective: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return self.train_good + self.test_good + sum(self.defective.values())

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    def describe(self) -> str:
        width, height = self.size
        lines = [f"wrote {self.total} boards ({width}x{height}, seed {self.seed}) to {self.root} "
                 f"in {self.seconds:.1f} s",
                 f"  train/good: {self.train_good}",
                 f"  test/good: {self.test_good}"]
        for kind, count in self.defective.items():
            if count:
                lines.append(f"  test/{kind}: {count} (masks in ground_truth/{kind})")
        lines.append(f"  {MANIFEST}: per-image defect type and bounding box")
        return "\n".join(lines)


def _validate(good: int, defective: int, test_good: int | None, size: tuple[int, int]) -> int:
    for name, value in (("good", good), ("defective", defective)):
        if not isinstance(value, int) or value < 0:
            raise ConfigError(f"samples: {name} must be a non-negative whole number, got {value!r}")
    if test_good is not None and (not isinstance(test_good, int) or test_good < 0):
        raise ConfigError(f"samples: test_good must be a non-negative whole number, got {test_good!r}")
    if (len(size) != 2 or not all(isinstance(v, int) for v in size) or min(size) < 32):
        raise ConfigError(f"samples: size must be (width, height) of at least 32 pixels, got {size!r}")
    return max(4, good // 4) if test_good is None else test_good


def _write_png(path: Path, pixels: np.ndarray) -> None:
    if not cv2.imwrite(str(path), pixels, PNG_OPTIONS):
        raise InspectorError(f"{path}: could not write the PNG (is the folder writable?)")


def _clear_previous(out: Path) -> None:
    """Remove the images a previous generation listed in its manifest, and nothing else.

    A set regenerated with smaller counts must not keep stale images from the old one; any other
    content makes the folder someone else's, so it is refused rather than mixed into.
    """
    manifest = out / MANIFEST
    if manifest.is_file():
        try:
            previous = json.loads(manifest.read_text())
            entries = previous["images"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{manifest}: not a sample-set manifest ({exc}); choose another --out") from exc
        for entry in entries:
            for key in ("path", "mask"):
                if entry.get(key):
                    (out / entry[key]).unlink(missing_ok=True)
        return
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: folder is not empty and holds no {MANIFEST}; choose an empty or new --out")


def _rounded(detail: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in detail.items()}


def generate_dataset(out: Path, *, good: int, defective: int, test_good: int | None = None, seed: int = 0,
                     size: tuple[int, int] = (384, 384), fixture: bool = False, camera: str = "line") -> SampleSummary:
    """Render `good` training boards, `test_good` good test boards and `defective` boards.

    Defective boards go round-robin over the defect types; their size class (small, medium,
    large) rotates too, so every type appears in several sizes once there are enough boards.
    `test_good=None` means max(4, good // 4). `fixture`: boards in a fixture seen around them, under
    a lamp whose glare clips (see `render_board`). `camera="webcam"`: boards in the fixture as a webcam
    sees them (implies `fixture`; inspector/synth/webcam.py); dataset.json records its parameters.
    """
    test_good = _validate(good, defective, test_good, size)
    if camera not in CAMERAS:
        raise ConfigError(f"samples: camera must be one of {', '.join(CAMERAS)}, got {camera!r}")
    fixture = fixture or camera == "webcam"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a folder")
    _clear_previous(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    jobs: list[tuple[str, int, int, str | None, str | None]] = []  # (folder, key split, key index, type, class)
    jobs += [("train/good", TRAIN_GOOD, i, None, None) for i in range(good)]
    jobs += [("test/good", TEST_GOOD, i, None, None) for i in range(test_good)]
    for i in range(defective):
        kind = DEFECT_TYPES[i % len(DEFECT_TYPES)]
        size_class = SIZE_CLASSES[(i + i // len(DEFECT_TYPES)) % len(SIZE_CLASSES)]
        jobs.append((f"test/{kind}", TEST_DEFECT, i, kind, size_class))

    images: list[dict] = []
    per_folder: dict[str, int] = {}
    for folder, split, index, kind, size_class in tqdm(jobs, desc="boards", unit="board", disable=None):
        number = per_folder.get(folder, 0)
        per_folder[folder] = number + 1
        (out / folder).mkdir(parents=True, exist_ok=True)
        board = render_board(size, (seed, split, index), kind, size_class=size_class, fixture=fixture, camera=camera)
        relative = f"{folder}/{number:03d}.png"
        _write_png(out / relative, board.image)
        entry: dict = {"path": relative, "split": folder.split("/")[0], "defect": kind}
        if board.mask is not None:
            mask_relative = f"ground_truth/{kind}/{number:03d}_mask.png"
            (out / "ground_truth" / str(kind)).mkdir(parents=True, exist_ok=True)
            _write_png(out / mask_relative, board.mask)
            entry.update(mask=mask_relative, size_class=board.size_class, bbox=list(board.bbox or ()),
                         detail=_rounded(board.detail))
        images.append(entry)

    counts = {"train/good": good, "test/good": test_good,
              **{f"test/{kind}": per_folder.get(f"test/{kind}", 0) for kind in DEFECT_TYPES}}
    manifest = {"generator": "board-inspector synth", "version": GENERATOR_VERSION, "design_seed": DESIGN_SEED,
                "seed": seed, "size": list(size), "fixture": fixture, "counts": counts, "defect_types": list(DEFECT_TYPES),
                "images": images}
    if camera != "line":  # the line camera's manifest stays as it was (byte-identical sets)
        manifest = {**{k: v for k, v in manifest.items() if k != "images"}, "camera": WEBCAM.describe(),
                    "images": images}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return SampleSummary(out, tuple(size), seed, good, test_good,  # type: ignore[arg-type]
                         {kind: per_folder.get(f"test/{kind}", 0) for kind in DEFECT_TYPES},
                         time.perf_counter() - started)
