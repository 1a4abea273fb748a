"""The labelled test set of `inspector evaluate` and the teaching trial, in the MVTec-AD layout.

`test/good/*` and every `test/<defect>/*`, each defective image with its mask
`ground_truth/<defect>/<name>_mask.png`; optionally `annotations/<name>.txt` boxes naming each
defect's type. Reading it is apart from the evaluation so that other measurements use the same set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspector.core.imageio import IMAGE_EXTENSIONS, load_image
from inspector.core.results import boxes_meet
from inspector.errors import DatasetError

GOOD = "good"


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    kind: str  # "good" or the defect type
    mask: Path | None


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
    return [any(boxes_meet(found, box.bbox) for found in predicted) for box in boxes]


def load_mask(image: LabelledImage, shape: tuple[int, int], max_pixels: int) -> np.ndarray | None:
    if image.mask is None:
        return None
    mask = load_image(image.mask, channels=1, max_pixels=max_pixels)
    if mask.shape != shape:
        raise DatasetError(f"{image.mask}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                           f"{shape[1]}x{shape[0]}")
    return mask > 0
