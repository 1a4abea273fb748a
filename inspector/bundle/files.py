"""The model bundle: one directory that carries everything the runtime needs.

Layout (file names are constants here so that writer and reader cannot disagree):

    model.onnx        the network; metadata_props carry the keys in REQUIRED_METADATA
    calibration.json  thresholds and score statistics (version 1 written by training)
    checkpoint.pt     torch weights + config (for re-export and fine-tuning; never read at runtime)
    config.json       the full resolved training config
    metrics.json      training/validation figures
    loss.png          the loss curve
    network.png       one fixtured design: a held-back board, its difference from the reference, what the
                      network redrew of it and the error left
    MODEL_CARD.md     data, date, settings, validation figures, for people
    selftest.npz      two held-back boards and the maps export computed on them (inspector/core/selftest.py)
    registration.json registration + light normalisation settings (inspector/core/registration.py); only
                      in bundles of one fixtured design, with reference.png beside it
    reference.png     the reference board every board is aligned to (median of aligned good boards)
    atlas.npz         the per-position model of good variation (inspector/core/atlas.py), optional
    roi.png           the inspection area (255 = inspected), reference frame, optional
    groups.npz        groups of good boards (lighting set-ups) with a reference each, optional (registration)
    reference_comparison.json  thresholds of the same pipeline with the network's output replaced by the
                      board's good expectation (`--no-network`), set at export like calibration.json
    reference_atlas.npz  the per-position model fitted on those maps (bundles with an atlas)
    manifest.json     sha256 and size of every other file

This module is torch-free and onnx-free: the runtime verifies bundles with hashlib and reads
metadata through ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.errors import BundleError

MODEL_FILE = "model.onnx"
CALIBRATION_FILE = "calibration.json"
CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
LOSS_PLOT_FILE = "loss.png"
NETWORK_FIGURE_FILE = "network.png"  # fixtured designs: board, difference, what the network redrew, error left
MODEL_CARD_FILE = "MODEL_CARD.md"
MANIFEST_FILE = "manifest.json"
SELFTEST_FILE = "selftest.npz"
REGISTRATION_FILE = "registration.json"
REFERENCE_FILE = "reference.png"
ATLAS_FILE = "atlas.npz"
ROI_FILE = "roi.png"
SURROUND_FILE = "surround.npz"  # masks of the surround around/over the board (registration)
GROUPS_FILE = "groups.npz"  # groups of good boards (lighting set-ups) and their references (registration)
REFERENCE_CALIBRATION_FILE = "reference_comparison.json"  # `--no-network`: its thresholds...
REFERENCE_ATLAS_FILE = "reference_atlas.npz"  # ...and its per-position model

# Files without which a bundle cannot run on the line.
RUNTIME_FILES = (MODEL_FILE, CALIBRATION_FILE)

# ONNX metadata_props keys (all values are strings; JSON where structured).
META_PREPROCESS = "board_inspector.preprocess"  # PreprocessSpec JSON
META_SCORING = "board_inspector.scoring"  # scoring settings JSON (error type, smoothing...)
META_VERSION = "board_inspector.version"  # package version that wrote the bundle
META_CREATED = "board_inspector.created_at"  # ISO 8601 UTC
META_DATA_HASH = "board_inspector.training_data_sha256"
META_ARCH = "board_inspector.architecture"  # model family and sizes JSON
REQUIRED_METADATA = (META_PREPROCESS, META_SCORING, META_VERSION, META_CREATED, META_DATA_HASH, META_ARCH)

_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_manifest(bundle_dir: Path) -> dict[str, Any]:
    """Hash every file of the bundle (except the manifest itself) into manifest.json."""
    bundle_dir = Path(bundle_dir)
    files = {}
    for path in sorted(p for p in bundle_dir.iterdir() if p.is_file() and p.name != MANIFEST_FILE):
        files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {"format": 1, "files": files}
    (bundle_dir / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify_bundle(bundle_dir: str | Path, *, files: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Check the manifest against the files on disk; raise BundleError naming what is wrong.

    `files` limits the check to some files (the runtime checks the ones it reads); by default
    every file listed in the manifest is checked. Returns the manifest.
    """
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"{bundle_dir}: model bundle directory not found")
    manifest_path = bundle_dir / MANIFEST_FILE
    manifest, listed = _read_manifest(manifest_path)
    for name in files if files is not None else tuple(listed):
        entry = listed.get(name)
        if entry is None:
            raise BundleError(f"{manifest_path}: does not list {name}")
        _check_listed_file(bundle_dir / name, entry)
    return manifest


def _read_manifest(manifest_path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The manifest and its table of files (name -> sha256 and bytes), which must list the runtime's files."""
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: manifest missing; not a model bundle (re-export it)")
    try:
        manifest = json.loads(manifest_path.read_text())
        listed = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{manifest_path}: unreadable manifest ({exc})") from exc
    for name in RUNTIME_FILES:
        if name not in listed:
            raise BundleError(f"{manifest_path}: does not list required file {name}")
    return manifest, listed


def _check_listed_file(path: Path, entry: dict[str, Any]) -> None:
    """The file is there with the size and sha256 its manifest entry records (size first: it is cheap)."""
    if not path.is_file():
        raise BundleError(f"{path}: missing from the bundle")
    size = path.stat().st_size
    if size != entry.get("bytes"):
        raise BundleError(
            f"{path}: size {size} bytes does not match the manifest ({entry.get('bytes')}); "
            "the file is truncated or was edited"
        )
    if sha256_file(path) != entry.get("sha256"):
        raise BundleError(f"{path}: sha256 does not match the manifest; the file was modified")


@dataclass(frozen=True)
class BundleFiles:
    """Paths of a bundle's files."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def calibration(self) -> Path:
        return self.root / CALIBRATION_FILE

    @property
    def checkpoint(self) -> Path:
        return self.root / CHECKPOINT_FILE

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE


def _recorded_metrics(bundle_dir: str | Path) -> dict[str, Any] | None:
    """metrics.json as a dict, or None when it is missing or unreadable."""
    try:
        metrics = json.loads((Path(bundle_dir) / METRICS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def recorded_precision(bundle_dir: str | Path) -> str | None:
    """The precision the export recorded in metrics.json ("float32" or "int8": INT8 may have been
    refused at export; bundles from before INT8 existed are float32), or None when the bundle has no
    readable metrics."""
    metrics = _recorded_metrics(bundle_dir)
    return None if metrics is None else str(metrics.get("precision", "float32"))


def recorded_int8_scheme(bundle_dir: str | Path) -> str | None:
    """The INT8 scheme of an INT8 bundle ("u8s8", "u8s8-reduced", "u8u8"; "u8s8" for INT8 bundles
    exported before the choice existed), or None for a float32 or unreadable bundle."""
    metrics = _recorded_metrics(bundle_dir)
    if metrics is None or metrics.get("precision") != "int8":
        return None
    return str((metrics.get("quantisation") or {}).get("scheme", "u8s8"))


def check_metadata(metadata: dict[str, str], source: str) -> None:
    """Raise BundleError if any required metadata key is missing from an ONNX model."""
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise BundleError(f"{source}: ONNX metadata lacks {', '.join(missing)}; re-export the model")
