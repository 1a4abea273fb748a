"""More than one way a good board looks: groups of good boards, each judged against its own kind.

A station often runs under two lighting set-ups (a day lamp and a night lamp, two white balances),
two fixtures or two product variants. Light normalisation takes out the overall colour, but not
where glints sit under each lamp, how a clipped part grows, or which variant's part is fitted:
judged against one reference and one per-position model, each group's own look reads as a defect
on the other's boards, or the per-position model learns to excuse everything both groups show.

So the good training boards are grouped by how they look (`light_feature`: the white balance of the
aligned board against the reference, as log ratios of the channels' gains, and its overall exposure),
when they fall into clearly separated groups of enough boards each (`fit_groups`). Each group gets
its own reference for the board's difference (the median of its aligned, light-normalised boards)
and, at export, its own per-position model. At inspection a board is judged against the group whose
centre it lies nearest, and a board that lies far from every group gets a clear reason
(`RegistrationError`), not a score. Grey boards carry exposure alone.

Torch-free: the runtime loads the groups from the bundle (`groups.npz`).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspector.errors import BundleError, ConfigError

# A group's reference is the median of its boards: of 8-10 boards it is noisy enough that the per-position
# model learned to excuse a part moved 4-5 px (192 px sample boards whose two white balances light
# normalisation already takes out; one reference of 18 boards outlines it).
MIN_GROUP_BOARDS = 12
MIN_GROUP_SHARE = 0.15  # nor does a group of a handful among hundreds
# Two groups are taken as real when their centres lie this many pooled within-group spreads apart:
# boards of one set-up that k-means splits in two lie about 2.7 apart (a normal cloud cut at its
# mean); the two white balances of the webcam sample boards lie 5.1 apart under their lamp's
# gradient and glints (`inspector samples --camera webcam`), real set-ups' colours further still.
MIN_SEPARATION = 4.0
MAX_GROUPS = 3
# A board fits a group when it lies within this many times the farthest training board of that
# group from its centre, and never closer than RADIUS_FLOOR spreads (exposure drifts a little). A
# good board refused is an error verdict on the line, so the margin is wide: at 2x, a held-back board
# of a set-up whose 14 training boards came in two shades lay at 6.0 spreads against a radius of 5.4.
RADIUS_MARGIN = 3.0
RADIUS_FLOOR = 6.0
CLIPPED = 250  # pixels this bright carry no colour
SPREAD_QUANTILES = (0.1, 0.9)


def _quantile_of_histogram(histogram: np.ndarray, q: float) -> float:
    """np.quantile(values, q) (linear interpolation) of the uint8 values counted in a 256-bin histogram:
    the same order statistics, read off the cumulative counts."""
    cumulative = np.cumsum(histogram)
    count = int(cumulative[-1])
    position = (count - 1) * q
    below = int(np.floor(position))
    first = int(np.searchsorted(cumulative, below, side="right"))
    second = int(np.searchsorted(cumulative, min(below + 1, count - 1), side="right"))
    return first + (position - below) * (second - first)


def _spreads(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each channel's 10-90% spread over the mask's pixels (uint8 image, uint8 mask 255 = counted)."""
    low, high = SPREAD_QUANTILES
    spreads = []
    for channel in range(1 if image.ndim == 2 else image.shape[2]):
        histogram = cv2.calcHist([image], [channel], mask, [256], [0, 256]).ravel()
        spreads.append(_quantile_of_histogram(histogram, high) - _quantile_of_histogram(histogram, low))
    return np.array(spreads, np.float64)


def light_feature(aligned: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """How the board is lit, against the reference: log gains of blue and red over green, and the log
    gain of green (grey boards: that gain alone). A channel's gain is the ratio of its 10-90% spread on
    the board to the reference's, over pixels clipped in neither: an additive offset (black level,
    stray light) cancels, which moved a dark red channel's median by 0.25 in log units, and a defect or a
    glint covers too few pixels to move a 10-90% spread. Runs on every board of a bundle with groups, so
    the quantiles come from OpenCV histograms of the 8-bit boards (np.quantile on float copies took
    121 ms a 640x640 colour board)."""
    lowest, highest = (0,) * (1 if aligned.ndim == 2 else 3), (CLIPPED - 1,) * (1 if aligned.ndim == 2 else 3)
    usable = cv2.bitwise_and(cv2.inRange(aligned, lowest, highest), cv2.inRange(reference, lowest, highest))
    if cv2.countNonZero(usable) < 100:
        usable = np.full(usable.shape, 255, np.uint8)
    gains = np.log((_spreads(aligned, usable) + 1.0) / (_spreads(reference, usable) + 1.0))
    if gains.size == 1:
        return gains.astype(np.float32)
    blue, green, red = gains
    return np.array([blue - green, red - green, green], np.float32)


@dataclass
class LightGroups:
    """Groups of good boards and each group's reference for the board's difference."""

    centres: np.ndarray  # (G, F) feature centres
    spread: np.ndarray  # (F,) pooled within-group spread of each feature (the distance's unit)
    radii: np.ndarray  # (G,) farthest a board may lie from each centre, in spreads
    references: np.ndarray  # (G, H, W[, C]) uint8
    counts: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.centres = np.asarray(self.centres, np.float32)
        self.spread = np.asarray(self.spread, np.float32)
        self.radii = np.asarray(self.radii, np.float32)
        if self.centres.ndim != 2 or len(self.centres) != len(self.references) or len(self.radii) != len(self.centres):
            raise ConfigError("light groups: centres, radii and references must describe the same groups")

    @property
    def count(self) -> int:
        return len(self.centres)

    def distances(self, feature: np.ndarray) -> np.ndarray:
        return np.sqrt((((feature[None, :] - self.centres) / self.spread[None, :]) ** 2).sum(axis=1))

    def group_of(self, feature: np.ndarray) -> tuple[int, float]:
        """(nearest group, its distance in spreads); -1 when the board fits no group."""
        distances = self.distances(feature)
        nearest = int(np.argmin(distances))
        return (nearest if distances[nearest] <= self.radii[nearest] else -1), float(distances[nearest])

    def describe(self) -> dict[str, Any]:
        return {"groups": self.count, "boards": list(self.counts),
                "centres": [[round(float(v), 4) for v in centre] for centre in self.centres],
                "radius_spreads": [round(float(r), 2) for r in self.radii],
                "feature": "log gain blue/green, red/green, exposure against the reference"
                if self.centres.shape[1] == 3 else "log exposure against the reference"}

    def save(self, path: Path) -> None:
        buffer = io.BytesIO()
        np.savez_compressed(buffer, centres=self.centres, spread=self.spread, radii=self.radii,
                            references=self.references, counts=np.asarray(self.counts, np.int32))
        Path(path).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> LightGroups:
        try:
            with np.load(path, allow_pickle=False) as data:
                return cls(centres=data["centres"], spread=data["spread"], radii=data["radii"],
                           references=np.asarray(data["references"], np.uint8), counts=[int(c) for c in data["counts"]])
        except (OSError, ValueError, KeyError, EOFError, ConfigError) as exc:
            raise BundleError(f"{path}: unreadable groups of good boards ({exc})") from exc


def _kmeans(features: np.ndarray, k: int, seed: int = 0, rounds: int = 50) -> np.ndarray:
    """Labels of a k-means on standardised features, started from the farthest-first points (deterministic)."""
    scale = features.std(axis=0) + 1e-6
    points = (features - features.mean(axis=0)) / scale
    centres = [points[int(np.argmin(np.abs(points).sum(axis=1)))]]
    while len(centres) < k:
        distance = np.min([((points - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(points[int(np.argmax(distance))])
    labels = np.zeros(len(points), int)
    for _ in range(rounds):
        labels = np.argmin([((points - c) ** 2).sum(axis=1) for c in centres], axis=0)
        moved = [points[labels == g].mean(axis=0) if (labels == g).any() else centres[g] for g in range(k)]
        if all(np.allclose(a, b) for a, b in zip(moved, centres)):
            break
        centres = moved
    return labels


def _spread(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    residuals = np.concatenate([features[labels == g] - features[labels == g].mean(axis=0) for g in np.unique(labels)])
    # a floor: a set-up whose boards are all lit alike would give zero spread and refuse every new board
    return np.maximum(np.sqrt((residuals ** 2).mean(axis=0)), 0.01).astype(np.float32)


def choose_groups(features: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Labels of the good boards' groups, or None when they are one group; and why, for the model card."""
    boards = len(features)
    least = max(MIN_GROUP_BOARDS, int(np.ceil(MIN_GROUP_SHARE * boards)))
    chosen, reason = None, "one group: the good boards are lit alike"
    for k in range(2, MAX_GROUPS + 1):
        if boards < k * least:
            break
        labels = _kmeans(features, k)
        sizes = np.bincount(labels, minlength=k)
        if sizes.min() < least:
            continue
        spread = _spread(features, labels)
        centres = np.stack([features[labels == g].mean(axis=0) for g in range(k)])
        gaps = [float(np.sqrt((((centres[a] - centres[b]) / spread) ** 2).sum())) for a in range(k) for b in range(a + 1, k)]
        if min(gaps) < MIN_SEPARATION:
            continue
        chosen = labels
        reason = (f"{k} groups of {', '.join(str(int(s)) for s in sizes)} boards, centres at least {min(gaps):.0f} "
                  f"spreads apart (>= {MIN_SEPARATION:g})")
    if chosen is None and boards < 2 * least:
        reason = f"one group: {boards} good boards are too few to split into groups of {least}"
    return chosen, reason


def fit_groups(features: np.ndarray, labels: np.ndarray, normalised: Sequence[np.ndarray]) -> LightGroups:
    """Groups from the good boards' features, labels and light-normalised aligned boards."""
    count = int(labels.max()) + 1
    spread = _spread(features, labels)
    centres = np.stack([features[labels == g].mean(axis=0) for g in range(count)])
    stack = np.stack(normalised)
    references = np.stack([np.median(stack[labels == g], axis=0).astype(np.uint8) for g in range(count)])
    groups = LightGroups(centres=centres, spread=spread, radii=np.zeros(count, np.float32), references=references,
                         counts=[int((labels == g).sum()) for g in range(count)])
    radii = [max(RADIUS_FLOOR, RADIUS_MARGIN * max(float(groups.distances(f)[g]) for f in features[labels == g]))
             for g in range(count)]
    groups.radii = np.asarray(radii, np.float32)
    return groups
