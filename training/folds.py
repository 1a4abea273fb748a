"""Out-of-fold maps: every good training board judged as if it had been held back.

A station starts with 30-50 good boards. Holding back 15% leaves five boards to set the lines, and
the largest of five maxima is not a line (issue 18: held-back maxima reached 8.5, the test good
boards' 17.8). Every training board shaped the reference (a median) and the per-position model (a
high quantile of the boards' own maps, where a board's own glint or leaning part sets the level),
so its in-sample map is far cooler than a new board's. Out of fold, it is not: the training boards
are split into k folds, and the boards of each fold are aligned to a reference built without them
and judged by a per-position model fitted without them. The network is the one trained on all
boards (training it k times more does not fit the time budget), so these maps are still slightly
optimistic where the network memorised a board.

Together with the held-back boards, every good board then has a held-back map, and 35 boards set
the lines instead of 5.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from inspector.config import InspectConfig
from inspector.core.calibration import analyse_in_batches
from inspector.core.engine import Inspector
from inspector.core.interface import Analysis
from inspector.core.registration import Registration, RegistrationError
from training.fixture import atlas_of_groups, group_count
from training.registration_fit import reference_without_surround

DEFAULT_FOLDS = 5
MIN_BOARDS_PER_FOLD_TRAINING = 4  # a reference and a per-position model from fewer boards mean little


def fold_of(count: int, folds: int) -> np.ndarray:
    """Fold number of each of `count` boards: interleaved, so boards taken in time order spread evenly."""
    return np.arange(count) % folds


def fold_registration(boards: Sequence[np.ndarray], registration: Registration) -> Registration:
    """The registration with its reference rebuilt from `boards` only (aligned onto the full reference,
    the surround masked as the full reference was)."""
    placed = []
    for board in boards:
        try:
            full, _ = registration.locate(board)
        except RegistrationError:
            continue  # a training board the bundle itself refuses adds nothing to a reference
        placed.append((board, full, registration.warp(board, full)))
    if len(placed) < 2:
        return registration
    if registration.surround is not None:
        reference, _ = reference_without_surround(placed, registration, registration.surround.camera)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = np.median(np.stack([aligned for _, _, aligned in placed]), axis=0).astype(np.uint8)
    groups = registration.groups
    if groups is not None and all(np.array_equal(r, registration.reference) for r in groups.references):
        # the difference is taken from the one reference in every group (training/fixture.py): so here too
        groups = replace(groups, references=np.stack([reference] * groups.count))
    elif groups is not None:  # each group's reference again, from the fold's boards of that group
        normalised: dict[int, list[np.ndarray]] = {}
        for board, _, _ in placed:
            record: dict = {}
            try:
                board_normalised = registration.apply(board, residual=False, record=record)
            except RegistrationError:
                continue
            normalised.setdefault(int(record["group"]), []).append(board_normalised)
        references = np.stack([np.median(np.stack(normalised[g]), axis=0).astype(np.uint8)
                               if len(normalised.get(g, [])) >= 2 else groups.references[g] for g in range(groups.count)])
        groups = replace(groups, references=references)
    return Registration(registration.spec, reference, registration.surround, groups)



def out_of_fold_analyses(engine: Inspector, boards: Sequence[np.ndarray], atlas_settings: dict | None,
                         folds: int = DEFAULT_FOLDS) -> list[Analysis]:
    """Each training board's analysis by an engine whose reference and per-position model were fitted
    without its fold (same network, inspection area and network switch as `engine`). Boards that cannot
    be aligned are left out. `atlas_settings`: the checkpoint's atlas record (quantile, dilation), or None
    for a bundle without a per-position model."""
    if engine.registration is None:
        raise ValueError("out-of-fold maps need a registered bundle (one fixtured design)")
    folds = min(folds, len(boards) // MIN_BOARDS_PER_FOLD_TRAINING)
    if folds < 2:
        return []
    assignment = fold_of(len(boards), folds)
    analyses: list[Analysis] = []
    for fold in range(folds):
        inside = [board for board, f in zip(boards, assignment) if f != fold]
        held = [board for board, f in zip(boards, assignment) if f == fold]
        fold_engine = Inspector(engine.session, engine.spec, engine.scoring, None, engine.model_hash,
                                InspectConfig(providers="cpu"), engine.source,
                                registration=fold_registration(inside, engine.registration), roi=engine.roi)
        fold_engine.network = engine.network
        if atlas_settings is not None:
            fold_engine.atlas = atlas_of_groups(analyse_in_batches(fold_engine, inside, desc="out of fold"), atlas_settings,
                                                group_count(engine.registration))
        for board in held:
            try:
                analyses += fold_engine.analyse([board])
            except RegistrationError:
                continue
    return analyses
