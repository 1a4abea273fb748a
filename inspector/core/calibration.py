"""Thresholds from good boards, and calibration.json versions with an audit trail.

Scale: every anomaly map is divided by one `pixel_scale` (the 99th percentile of smoothed raw
error over the pooled pixels of the calibration boards of version 1). Later versions keep that
scale, so image thresholds of every version (and QA threshold versions in the store) live on one
scale and a good board never renders as a red heatmap.

Thresholds, each set for a share of good boards:

* image threshold (the "fail" line): on good boards' image scores (mean of the top-k map pixels),
  for `target_false_alarm_rate` (default 1% of good boards fail);
* pixel threshold (the region line): on the per-image *maxima* of good boards' maps (the level a
  good board would need to reach to show any region), not on pooled pixels, for
  `region_false_alarm_rate` of good boards showing a region. A board with regions but a score
  under the fail line goes to "review" (see scoring.decide_verdict), so this rate is the share of
  good boards an operator looks at, and it can be looser than the fail rate: measured on real
  boards (DeepPCB dev), a region line that lets 30% of the held-back good boards show a region
  touches 85% of the annotated defects with 0.28 false regions per good board; at 20% it is 76%
  and 0.13.

The region line can instead be set on the *number of regions* good boards show
(`false_regions_per_board`, the default for bundles trained since 2026-12-02): the lowest line at
which the held-back boards show at most that many regions a board on average, counted as
inspection counts them (growing, small peaks, merging, minimum area). False regions per good board
is what operators live with and what the quality target is stated in; a share of boards reaching
the line says nothing of how many regions each shows, and that number moves with the model. On
DeepPCB dev, two trainings of the same seed gave 0.34 and 0.56 false regions a good board at the
44% share line, and 0.35 and 0.44 at 0.7 regions a held-back board (recall 0.908 / 0.913);
seeds 1 and 2 0.49 and 0.45 (docs/results.md).

Rule: with n good boards and n * FAR >= 1 the threshold sits just above the (1 - FAR) quantile
("higher" interpolation). With fewer boards the quantile cannot be estimated, so the conservative
rule is the larger of max(good values) * FEW_BOARDS_MARGIN and mean + FEW_BOARDS_SIGMAS * std: the
spread term widens the line when a short training run leaves good boards' scores far apart, and
a handful of boards says little about the tail.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from inspector.bundle.calibration import new_version, read_calibration, write_calibration
from inspector.bundle.files import CALIBRATION_FILE, SELFTEST_FILE, write_manifest
from inspector.config import InspectConfig
from inspector.core import scoring, selftest
from inspector.core.bundleswap import staged_bundle, switch_folders
from inspector.core.edges import fit_edge_allowance
from inspector.core.imageio import good_image_paths, load_image
from inspector.core.interface import Analyser, Analysis
from inspector.core.scoring import ScoringSpec
from inspector.errors import ConfigError

FEW_BOARDS_MARGIN = 1.15
FEW_BOARDS_SIGMAS = 4.0
POOLED_SCALE_QUANTILE = 0.99
LINE_SEARCH_STEPS = 30  # bisection steps for the region line on a count of regions (a 1e-9 bracket)
REPORTED_QUANTILES = (0.5, 0.9, 0.99, 0.999, 1.0)
MIN_REGION_AREA = InspectConfig().min_region_area


def threshold_for(values: Sequence[float] | np.ndarray, target_false_alarm_rate: float) -> tuple[float, str]:
    """A threshold that flags at most `target_false_alarm_rate` of `values`, and the rule used."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        raise ConfigError("calibration needs at least one good image")
    if not 0.0 <= target_false_alarm_rate < 1.0:
        raise ConfigError(f"target false-alarm rate must be in [0, 1), got {target_false_alarm_rate}")
    if target_false_alarm_rate > 0 and data.size * target_false_alarm_rate >= 1.0:
        quantile = float(np.quantile(data, 1.0 - target_false_alarm_rate, method="higher"))
        return float(np.nextafter(quantile, np.inf)), f"quantile {1 - target_false_alarm_rate:g} of {data.size} good boards"
    spread = float(data.mean() + FEW_BOARDS_SIGMAS * data.std(ddof=1)) if data.size > 1 else 0.0
    return max(float(data.max() * FEW_BOARDS_MARGIN), spread), (
        f"max(max x {FEW_BOARDS_MARGIN}, mean + {FEW_BOARDS_SIGMAS:g} std) of {data.size} good boards "
        f"(too few boards for a {target_false_alarm_rate:g} quantile)")


def line_for_regions_per_board(maps: Sequence[np.ndarray], spec: ScoringSpec, min_area: int,
                               regions_per_board: float) -> tuple[float, str, dict[str, float]]:
    """The region line where the good boards' `maps` come down to at most `regions_per_board` regions a
    board on average; the rule in words and what the boards show at that line.

    Above the good boards' level the count falls as the line rises (a higher line drops or shrinks
    regions); far below it, regions run together and the count falls again. The bisection keeps a
    line that meets the target above one that does not, starting just above the highest maximum
    (no region), so it lands on a line where the count crosses the target, and the
    line returned always meets it."""
    if not maps:
        raise ConfigError("calibration needs at least one good image")
    if regions_per_board < 0:
        raise ConfigError(f"false regions per board must be >= 0, got {regions_per_board}")

    def counts(line: float) -> np.ndarray:
        return np.array([len(scoring.regions_at(m, line, spec, min_area)) for m in maps])

    low, high = 0.0, float(np.nextafter(max(float(m.max()) for m in maps), np.inf))
    for _ in range(LINE_SEARCH_STEPS):
        middle = (low + high) / 2
        if counts(middle).mean() <= regions_per_board:
            high = middle
        else:
            low = middle
    shown = counts(high)
    return high, (f"line where {len(maps)} good boards come down to at most {regions_per_board:g} regions a board "
                  f"({shown.mean():.2f} a board; {(shown > 0).mean():.0%} of the boards show one)"), \
        {"regions_per_board": float(shown.mean()), "share_with_regions": float((shown > 0).mean())}


BOOTSTRAP_ROUNDS = 400


def line_spread(maxima: np.ndarray, scores: np.ndarray, region_rate: float, image_rate: float,
                seed: int = 0) -> dict[str, Any]:
    """How uncertain the lines of a small station are: the region line (a share of the boards' maxima)
    and the fail line, recomputed on boards drawn again with replacement from the same good boards,
    as the 10th and 90th percentiles (the lines another set of as many good boards could have given),
    and the hottest good boards (the tail the lines stand on)."""
    rng = np.random.default_rng(seed)
    region, image = [], []
    for _ in range(BOOTSTRAP_ROUNDS):
        drawn = rng.integers(0, len(maxima), len(maxima))
        region.append(threshold_for(maxima[drawn], region_rate)[0])
        image.append(threshold_for(scores[drawn], image_rate)[0])
    return {"boards": len(maxima), "region_line_p10_p90": [float(np.percentile(region, 10)), float(np.percentile(region, 90))],
            "image_line_p10_p90": [float(np.percentile(image, 10)), float(np.percentile(image, 90))],
            "hottest_maxima": sorted((float(v) for v in maxima), reverse=True)[:5]}


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"q{q:g}": float(np.quantile(values, q)) for q in REPORTED_QUANTILES}


def analyse_in_batches(engine: Analyser, images: Sequence[np.ndarray], batch_size: int = 4,
                       desc: str = "calibrating") -> list[Analysis]:
    """`engine.analyse` over good boards a few at a time (bounds the memory of their tensors), with progress."""
    analyses: list[Analysis] = []
    with tqdm(total=len(images), desc=desc, unit="img", leave=False) as progress:
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            analyses.extend(engine.analyse(chunk))
            progress.update(len(chunk))
    return analyses


def calibrate(engine: Analyser, images: Sequence[np.ndarray], *, target_false_alarm_rate: float,
              region_false_alarm_rate: float | None = None, pixel_scale: float | None = None,
              batch_size: int = 4, edge_allowance: bool = True, false_regions_per_board: float | None = None,
              min_region_area: int = MIN_REGION_AREA) -> dict[str, Any]:
    """Thresholds and statistics from good images run through the engine (an `Inspector`).

    The region line: with `false_regions_per_board`, the lowest line at which these boards show
    that many regions a board (`line_for_regions_per_board`, regions of at least `min_region_area`
    pixels); otherwise the line `region_false_alarm_rate` of their maxima reach.

    `pixel_scale=None` derives the map scale from these images (first calibration); later
    calibrations pass the bundle's existing scale. The edge allowance (`inspector.core.edges`) is
    fitted on these images too, for engines without a per-position model.
    """
    if len(images) == 0:
        raise ConfigError("calibration needs at least one good image")
    analyses = analyse_in_batches(engine, images, batch_size)
    return calibrate_analyses(engine, analyses, target_false_alarm_rate=target_false_alarm_rate,
                              region_false_alarm_rate=region_false_alarm_rate, pixel_scale=pixel_scale,
                              edge_allowance=edge_allowance, false_regions_per_board=false_regions_per_board,
                              min_region_area=min_region_area)


def calibrate_analyses(engine: Analyser, analyses: Sequence[Analysis], *, target_false_alarm_rate: float,
                       region_false_alarm_rate: float | None = None, pixel_scale: float | None = None,
                       edge_allowance: bool = True, false_regions_per_board: float | None = None,
                       min_region_area: int = MIN_REGION_AREA, out_of_fold: int = 0) -> dict[str, Any]:
    """`calibrate` on good boards' analyses already made (the held-back boards by `engine`, and
    `out_of_fold` more: training boards judged by engines fitted without them, training/folds.py)."""
    if len(analyses) == 0:
        raise ConfigError("calibration needs at least one good image")
    edges = (fit_edge_allowance([a.smoothed for a in analyses])
             if edge_allowance and not engine.judged_per_position else None)
    if edges is not None:  # divided out once here, for the scale and the maps alike
        analyses = [replace(a, smoothed=edges.apply(a.smoothed)) for a in analyses]
    if pixel_scale is None:
        pooled = np.concatenate([a.smoothed.ravel() for a in analyses])
        pixel_scale = max(float(np.quantile(pooled, POOLED_SCALE_QUANTILE)), 1e-12)
    maps = [engine.anomaly_map(a, pixel_scale) for a in analyses]
    maxima = np.array([float(m.max()) for m in maps])
    scores = np.array([scoring.image_score(m, engine.scoring) for m in maps])
    if region_false_alarm_rate is None:
        region_false_alarm_rate = target_false_alarm_rate
    shown: dict[str, float] = {}
    if false_regions_per_board is not None:
        pixel_threshold, pixel_rule, shown = line_for_regions_per_board(maps, engine.scoring, min_region_area,
                                                                        false_regions_per_board)
    else:
        pixel_threshold, pixel_rule = threshold_for(maxima, region_false_alarm_rate)
    image_threshold, image_rule = threshold_for(scores, target_false_alarm_rate)
    pooled_normalised = np.concatenate([m.ravel() for m in maps])
    figures: dict[str, Any] = {
        "target_false_alarm_rate": target_false_alarm_rate,
        "region_false_alarm_rate": region_false_alarm_rate,
        **({"false_regions_per_board": false_regions_per_board} if false_regions_per_board is not None else {}),
        "image_threshold": image_threshold,
        "pixel_threshold": pixel_threshold,
        "normaliser": {"pixel_scale": pixel_scale,
                       "rule": f"raw smoothed error / q{POOLED_SCALE_QUANTILE:g} of pooled good pixels"},
        "stats": {
            "images": len(analyses),
            **({"out_of_fold_images": out_of_fold} if out_of_fold else {}),
            "line_spread": line_spread(maxima, scores, region_false_alarm_rate, target_false_alarm_rate)
            if false_regions_per_board is None else None,
            "pixel_quantiles": _quantiles(pooled_normalised),
            "image_maxima": maxima.tolist(),
            "image_maxima_quantiles": _quantiles(maxima),
            "image_scores": scores.tolist(),
            "image_score_quantiles": _quantiles(scores),
            "pixel_threshold_rule": pixel_rule,
            "image_threshold_rule": image_rule,
            **({"at_region_line": shown} if shown else {}),
        },
    }
    if edges is not None:
        figures["edge_allowance"] = edges.to_record()
    return figures


def recalibrate(bundle: str | Path, data: str | Path, *, target_false_alarm_rate: float, reason: str,
                author: str, region_false_alarm_rate: float | None = None,
                false_regions_per_board: float | None = None) -> dict[str, Any]:
    """Append a calibration version computed on good images (folder, or MVTec root: test/good).

    The region line keeps the last version's rule (a count of regions a board, or a share of boards)
    unless QA gives one: `false_regions_per_board` or `region_false_alarm_rate`."""
    from inspector.core.engine import Inspector

    if not reason.strip():
        raise ConfigError("recalibration needs a reason (it is kept in the audit trail)")
    bundle = Path(bundle)
    # Recalibrating is also the way out of a failed self-test: the new thresholds are set on this
    # machine's maps, so this machine's maps become the self-test's reference below.
    engine = Inspector.load(bundle, InspectConfig(selftest=False))
    versions = read_calibration(bundle / CALIBRATION_FILE)
    images = [load_image(path) for path in good_image_paths(data, "test/good")]
    if region_false_alarm_rate is None and false_regions_per_board is None:  # keep the region line's rule
        false_regions_per_board = versions[-1].get("false_regions_per_board")
        region_false_alarm_rate = versions[-1].get("region_false_alarm_rate", target_false_alarm_rate)
    figures = calibrate(engine, images, target_false_alarm_rate=target_false_alarm_rate,
                        region_false_alarm_rate=region_false_alarm_rate, pixel_scale=engine.pixel_scale,
                        false_regions_per_board=false_regions_per_board,
                        min_region_area=engine.config.min_region_area)
    figures["stats"]["data"] = str(Path(data).resolve())
    version = new_version(versions, figures, reason=reason, author=author)
    # One step: the three files change in a copy of the bundle, which then replaces it at once
    # (core/bundleswap.py); an interruption anywhere leaves the old bundle, complete and loadable.
    with staged_bundle(bundle, switch=lambda new, current: switch_folders(new, current)) as staging:
        write_calibration(staging / CALIBRATION_FILE, versions + [version])
        selftest.record(engine, images, staging / SELFTEST_FILE)
        write_manifest(staging)
    return version
