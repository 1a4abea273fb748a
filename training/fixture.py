"""Training side of registration, the per-position model and the inspection area.

What `inspector train` decides from the training boards (registration on or off, atlas on or off,
the inspection area) travels in the checkpoint under "fixture", so a re-export writes the same
bundle files: registration.json + reference.png, atlas.npz, roi.png (see inspector/bundle/files.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from inspector.bundle.files import GROUPS_FILE, REFERENCE_FILE, REGISTRATION_FILE, ROI_FILE, SURROUND_FILE
from inspector.config import TrainConfig, ViewKind
from inspector.core.atlas import Atlas, fit_atlas
from inspector.core.calibration import analyse_in_batches
from inspector.core.groups import LightGroups
from inspector.core.registration import Registration, RegistrationSpec, Surround
from inspector.errors import ConfigError
from training.checkpoint import Checkpoint
from training.registration_fit import decide


def parse_roi(text: str, height: int, width: int) -> np.ndarray | None:
    """`x,y,w,h` (input pixels of the reference board) or the path of a mask image (non-zero =
    inspected) -> uint8 mask HxW (255 inside), or None for the whole image."""
    text = (text or "").strip()
    if not text:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*", text)
    if match:
        x, y, w, h = (int(v) for v in match.groups())
        if w < 1 or h < 1 or x >= width or y >= height:
            raise ConfigError(f"inspection area {text!r} lies outside the {width}x{height} boards")
        mask = np.zeros((height, width), np.uint8)
        mask[y:min(height, y + h), x:min(width, x + w)] = 255
        return mask
    path = Path(text)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise ConfigError(f"inspection area {text!r}: neither x,y,w,h nor a readable mask image")
    if mask.shape != (height, width):
        raise ConfigError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, the boards {width}x{height}")
    mask = np.where(mask > 0, 255, 0).astype(np.uint8)
    if not mask.any():
        raise ConfigError(f"{path}: the inspection area mask is empty")
    return mask


# registered design -> (views, view_kind); see TrainConfig
AUTO_VIEWS: dict[bool, tuple[int, ViewKind]] = {True: (1, "shift"), False: (2, "flip")}


def choose_views(config: TrainConfig, registered: bool) -> tuple[TrainConfig, str]:
    """The config with `views = 0` / `view_kind = "auto"` made concrete for these boards, and why."""
    views, kind = AUTO_VIEWS[registered]
    chosen = replace(config, views=config.views or views,
                     view_kind=kind if config.view_kind == "auto" else config.view_kind)
    if (config.views, config.view_kind) == (chosen.views, chosen.view_kind):
        return chosen, f"{chosen.views} {chosen.view_kind} view(s), as configured"
    why = ("one fixtured design: never mirrored, the per-position model absorbs view-to-view variation"
           if registered else "boards not registered")
    return chosen, f"{chosen.views} {chosen.view_kind} view(s), chosen from the data ({why})"


# registered design -> (top_k_fraction, top_k_min, small_region_peak, region_merge_px); see TrainConfig.
# Measured on the sample boards and generated fixture boards (docs/results.md): the smaller k, image AUROC
# 0.96 -> 0.98 (demo), 0.96 -> 0.99 (42 more defective boards), 0.71-0.83 -> 0.85-0.91 (fixture sets); the
# small regions, demo region recall 0.86 -> 0.93 at the same false regions (DeepPCB: nothing more found).
# Region merging was measured on DeepPCB only (about 10% fewer false regions); a fixtured design's
# per-position model draws a defect in one piece, and on its small boards 8 px would join a defect with
# its neighbours into one box, so it keeps plain components there.
AUTO_SCORE = {True: (0.00003, 4, 1.5, 0), False: (0.00015, 16, 0.0, 8)}


def choose_score(config: TrainConfig, registered: bool) -> tuple[TrainConfig, str]:
    """The config with `top_k_fraction = 0` / `top_k_min = 0` / `small_region_peak = -1` /
    `region_merge_px = -1` made concrete for these boards, and why."""
    fraction, least, peak, merge = AUTO_SCORE[registered]
    chosen = replace(config, top_k_fraction=config.top_k_fraction or fraction, top_k_min=config.top_k_min or least,
                     small_region_peak=peak if config.small_region_peak < 0 else config.small_region_peak,
                     region_merge_px=merge if config.region_merge_px < 0 else config.region_merge_px)
    what = (f"mean of the hottest {chosen.top_k_fraction:.3%} of the map's pixels, at least {chosen.top_k_min}; "
            + (f"regions under the minimum area kept from {chosen.small_region_peak:g}x the region line"
               if chosen.small_region_peak > 0 else "regions under the minimum area dropped")
            + (f"; parts within {chosen.region_merge_px} px one region" if chosen.region_merge_px > 0 else ""))
    if (config.top_k_fraction, config.top_k_min, config.small_region_peak, config.region_merge_px) == (
            chosen.top_k_fraction, chosen.top_k_min, chosen.small_region_peak, chosen.region_merge_px):
        return chosen, f"{what}, as configured"
    why = ("one fixtured design: its per-position model already judges what good boards show, so a small "
           "defect counts by its own pixels" if registered else "boards not registered")
    return chosen, f"{what}, chosen from the data ({why})"


# registered design -> share of hard crops (training/hard_crops.py). Measured on DeepPCB (boards not
# registered; docs/results.md); on a fixtured design the per-position model already takes out what good
# boards show at each place, and hard crops were not measured there.
AUTO_HARD_CROPS = {True: 0.0, False: 0.5}


def choose_crops(config: TrainConfig, registered: bool, residual: bool) -> tuple[TrainConfig, str]:
    """The config with `hard_crop_share = -1` made concrete for these boards, and why. Residual
    training (board - reference) never takes hard crops, even when asked for."""
    if residual and config.schedule.hard_crop_share > 0:
        return (config.with_values(hard_crop_share=0.0),
                "all random (hard crops are not drawn for residual training, which needs the reference)")
    share = config.schedule.hard_crop_share
    chosen = config.with_values(hard_crop_share=AUTO_HARD_CROPS[registered] if share < 0 else share)
    hard = chosen.schedule
    what = (f"{hard.hard_crop_share:.0%} of the crops over the model's worst-drawn cells of its training boards "
            f"(rescored every {hard.hard_crop_every} epochs from epoch {hard.hard_crop_start}), the rest random"
            if hard.hard_crop_share > 0 else "all random")
    if hard.hard_crop_share == share:
        return chosen, f"{what}, as configured"
    why = "one fixtured design, not measured there" if registered else "boards not registered"
    return chosen, f"{what}, chosen from the data ({why})"


def decide_fixture(config: TrainConfig, boards: Sequence[np.ndarray]) -> tuple[Registration | None, dict[str, Any]]:
    """Registration for these training boards, and the checkpoint's "fixture" record."""
    settings = config.registration
    registration, decision = decide(boards, settings.mode, settings.photometric, residual=settings.residual)
    if registration is not None and registration.groups is not None and settings.reference_input:
        # The network sees the one reference beside the board's difference (a constant of its graph): the
        # difference is taken from that reference too, and the network learns each group's look from it.
        # Taken from each group's own reference instead, the network redrew glints the group's reference had
        # already taken out (256 px webcam-like boards: it left 87-93% of the reference comparison's error
        # tail, 72% with one reference). Each group keeps its own per-position model and its refusal.
        groups = registration.groups
        same = replace(groups, references=np.stack([registration.reference] * groups.count))
        registration = Registration(registration.spec, registration.reference, registration.surround, same)
        decision["groups"] += ("; each board's difference from the one reference, which the network sees beside it "
                               "(per group: the per-position model, and boards lit like no group refused)")
    atlas_on = settings.atlas == "on" or (settings.atlas == "auto" and registration is not None)
    shapes = {board.shape[:2] for board in boards}
    if atlas_on and registration is None and len(shapes) != 1:
        raise ConfigError("a per-position model needs boards of one size in one position (registration)")
    height, width = boards[0].shape[:2]
    roi = parse_roi(settings.roi, height, width)
    fixture: dict[str, Any] = {
        "decision": decision,
        "atlas": {"on": atlas_on, "quantile": settings.atlas_quantile, "dilate_px": settings.atlas_dilate_px,
                  "reason": ("fixtured design: good boards' error judged per position" if atlas_on and settings.atlas == "auto"
                             else f"atlas = {settings.atlas}" if settings.atlas != "auto"
                             else "boards not registered: positions differ between boards")},
    }
    if registration is not None:
        fixture["registration"] = registration.spec.to_json()
        fixture["reference"] = torch.from_numpy(np.ascontiguousarray(registration.reference))
        if registration.surround is not None:
            fixture["surround"] = {"camera": torch.from_numpy(np.ascontiguousarray(registration.surround.camera)),
                                  "hidden": torch.from_numpy(np.ascontiguousarray(registration.surround.hidden))}
        if registration.groups is not None:
            groups = registration.groups
            fixture["groups"] = {"centres": torch.from_numpy(groups.centres), "spread": torch.from_numpy(groups.spread),
                                 "radii": torch.from_numpy(groups.radii), "counts": list(groups.counts),
                                 "references": torch.from_numpy(np.ascontiguousarray(groups.references))}
    if roi is not None:
        fixture["roi"] = torch.from_numpy(roi)
    return registration, fixture


def registration_of(checkpoint: Checkpoint) -> Registration | None:
    fixture = checkpoint.get("fixture") or {}
    if "registration" not in fixture:
        return None  # checkpoints from before registration existed, or boards that are not one design
    surround = (Surround(camera=fixture["surround"]["camera"].numpy(), hidden=fixture["surround"]["hidden"].numpy())
               if "surround" in fixture else None)
    groups = None
    if "groups" in fixture:  # checkpoints from before groups, and boards lit alike, have none
        record = fixture["groups"]
        groups = LightGroups(centres=record["centres"].numpy(), spread=record["spread"].numpy(),
                             radii=record["radii"].numpy(), references=record["references"].numpy(),
                             counts=list(record["counts"]))
    return Registration(RegistrationSpec.from_json(fixture["registration"]), fixture["reference"].numpy(), surround,
                        groups)


def roi_of(checkpoint: Checkpoint) -> np.ndarray | None:
    fixture = checkpoint.get("fixture") or {}
    return fixture["roi"].numpy() if "roi" in fixture else None


def atlas_wanted(checkpoint: Checkpoint) -> bool:
    return bool((checkpoint.get("fixture") or {}).get("atlas", {}).get("on"))


def write_fixture_files(checkpoint: Checkpoint, folder: Path) -> None:
    registration = registration_of(checkpoint)
    if registration is not None:
        (folder / REGISTRATION_FILE).write_text(registration.spec.to_json() + "\n")
        if not cv2.imwrite(str(folder / REFERENCE_FILE), registration.reference):
            raise ConfigError(f"{folder / REFERENCE_FILE}: cannot write the reference board")
        if registration.surround is not None:
            registration.surround.save(folder / SURROUND_FILE)
        if registration.groups is not None:
            registration.groups.save(folder / GROUPS_FILE)
    roi = roi_of(checkpoint)
    if roi is not None and not cv2.imwrite(str(folder / ROI_FILE), roi):
        raise ConfigError(f"{folder / ROI_FILE}: cannot write the inspection area")


def fit_bundle_atlas(engine: Any, boards: Sequence[np.ndarray], checkpoint: Checkpoint, path: Path) -> Atlas:
    """Fit the atlas on good boards' maps computed by the runtime engine (no atlas on it yet), save it."""
    analyses = analyse_in_batches(engine, boards, desc="per-position model")
    atlas = atlas_of_groups(analyses, checkpoint["fixture"]["atlas"], group_count(engine.registration))
    atlas.save(path)
    return atlas


def group_count(registration: Registration | None) -> int:
    return registration.groups.count if registration is not None and registration.groups is not None else 1


# A per-position model per group of good boards only when every group has this many boards: its level
# is a high quantile (0.9) per position, which on 8-10 boards is their maximum. Measured on 192 px
# sample boards with two lighting set-ups found (10 and 8 training boards): one model per group hid a
# part moved 4-5 px (judged 0.88 at the part, line 5.3) that one model of all 18 boards outlines.
MIN_GROUP_ATLAS_BOARDS = 20


def atlas_of_groups(analyses: Sequence[Any], settings: dict[str, Any], groups: int) -> Atlas:
    """The per-position model from good boards' analyses: one level per group of good boards, each from
    that group's boards alone, when every group has MIN_GROUP_ATLAS_BOARDS; else one of all boards (each
    board's difference is still taken from its own group's reference)."""
    by_group = [[a.smoothed for a in analyses if a.group == group] for group in range(groups)]
    if groups == 1 or min(len(maps) for maps in by_group) < MIN_GROUP_ATLAS_BOARDS:
        by_group = [[a.smoothed for a in analyses]]
    return Atlas.of_groups([fit_atlas(maps, quantile=float(settings["quantile"]), dilate_px=int(settings["dilate_px"]))
                            for maps in by_group])


def model_card_lines(checkpoint: Checkpoint, atlas: Atlas | None) -> list[str]:
    fixture = checkpoint.get("fixture")
    if not fixture:
        return []
    decision = fixture["decision"]
    lines = [f"- Registration: {decision['registration']} ({decision['reason']})"]
    if "groups" in decision:
        groups = registration_of(checkpoint)
        described = f": {json.dumps(groups.groups.describe())}" if groups is not None and groups.groups else ""
        lines.append(f"- Groups of good boards: {decision['groups']}{described}")
    registration = registration_of(checkpoint)
    if registration is not None:
        spec = registration.spec
        second = (f"alignment repeated without an outlying blob over {spec.outlier_blob_share:.2%} of the reduced "
                  "board; " if spec.outlier_blob_share <= 1.0 else "")
        lines.append(f"  - limits: shift <= {spec.max_shift_px} px, rotation <= {spec.max_angle_deg} deg, correlation "
                     f">= {spec.min_correlation}; light normalisation {'on' if spec.photometric else 'off'}; {second}"
                     f"training boards: {json.dumps(spec.stats)}")
    lines.append(f"- Per-position model of good boards: {'on' if atlas is not None else 'off'} "
                 f"({fixture['atlas']['reason']})" + (f": {json.dumps(atlas.describe())}" if atlas is not None else ""))
    roi = roi_of(checkpoint)
    lines.append("- Inspection area: whole image" if roi is None else
                 f"- Inspection area: {int((roi > 0).sum())} of {roi.size} pixels (roi.png)")
    if "views" in fixture:  # checkpoints from before views were chosen from the data lack it
        lines.append(f"- Views: {fixture['views']}")
    if "score" in fixture:  # likewise the image score's k
        lines.append(f"- Image score: {fixture['score']}")
    if "crops" in fixture:  # and the hard crops
        lines.append(f"- Training crops: {fixture['crops']}")
    return lines
