"""What the network adds: good boards' error with the network against the same pipeline without it.

On a fixtured design every board has a good expectation (no difference from the reference, or the
reference itself), so the network's worth is measurable on good boards alone: the error it leaves
on held-back good boards, against the error the plain reference comparison leaves there. Both are
read before the per-position model (which would divide each map by its own good level) and inside
the inspection area, on the same boards, aligned the same way. The tail (the hottest 0.1% of each
board's pixels) is what sets the region line and makes false regions; the mean is the broad level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from inspector.core.calibration import analyse_in_batches
from inspector.core.engine import Inspector

TAIL_QUANTILE = 0.999
# Below this ratio of the reference comparison's tail to the network's, the network is said not to
# have learned: 10% is within what two trainings of one seed differ by on the sample boards.
LEARNED_MIN_RATIO = 1.1


@dataclass(frozen=True)
class NetworkGain:
    """Good boards' error without the network divided by the error with it (> 1: the network lowered it)."""

    boards: int
    mean_ratio: float  # mean error, reference comparison / network
    tail_ratio: float  # mean over boards of each map's TAIL_QUANTILE, likewise
    network_tail: float
    reference_tail: float
    expectation: str

    @property
    def learned(self) -> bool:
        return self.tail_ratio >= LEARNED_MIN_RATIO

    def sentence(self) -> str:
        verdict = ("the network learned the good variation" if self.learned else
                   "THE NETWORK DID NOT LEARN: its map is no better than the reference comparison; train longer or "
                   "on more boards")
        return (f"on {self.boards} held-back good boards the network leaves {1 / self.tail_ratio:.0%} of the error tail "
                f"(q{TAIL_QUANTILE:g}) and {1 / self.mean_ratio:.0%} of the mean error that the reference comparison "
                f"({self.expectation}) leaves: {verdict}")

    def to_record(self) -> dict[str, Any]:
        return {**asdict(self), "learned": self.learned, "tail_quantile": TAIL_QUANTILE, "sentence": self.sentence()}


def _raw_maps(engine: Inspector, boards: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each board's smoothed error map before the per-position model (0 outside the inspected area)."""
    atlas, engine.atlas = engine.atlas, None
    try:
        return [analysis.smoothed for analysis in analyse_in_batches(engine, boards, desc="network gain")]
    finally:
        engine.atlas = atlas


def network_gain(engine: Inspector, boards: Sequence[np.ndarray]) -> NetworkGain:
    """The gain of `engine`'s network over its own good expectation on good `boards` (ConfigError for a
    bundle without one: boards that are not registered)."""
    expectation = engine.expectation_kind_or_error()
    was = engine.network
    try:
        engine.network = True
        with_network = _raw_maps(engine, boards)
        engine.network = False
        without = _raw_maps(engine, boards)
    finally:
        engine.network = was
    network_means: list[float] = []
    network_tails: list[float] = []
    plain_means: list[float] = []
    plain_tails: list[float] = []
    for network_map, plain_map in zip(with_network, without):
        inside = (network_map > 0) | (plain_map > 0)  # both are 0 outside the area and the made-up border
        if not inside.any():
            inside[...] = True
        for values, means, tails in ((network_map[inside], network_means, network_tails),
                                     (plain_map[inside], plain_means, plain_tails)):
            means.append(float(values.mean()))
            tails.append(float(np.quantile(values, TAIL_QUANTILE)))
    tiny = 1e-12
    network_mean, network_tail = float(np.mean(network_means)), float(np.mean(network_tails))
    plain_mean, plain_tail = float(np.mean(plain_means)), float(np.mean(plain_tails))
    return NetworkGain(boards=len(boards), mean_ratio=plain_mean / max(network_mean, tiny),
                       tail_ratio=plain_tail / max(network_tail, tiny), network_tail=network_tail,
                       reference_tail=plain_tail, expectation=expectation)
