"""The bundle's self-test: a machine that computes the maps differently is refused at load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from inspector.bundle.files import MANIFEST_FILE, SELFTEST_FILE, write_manifest
from inspector.config import InspectConfig
from inspector.core import selftest
from inspector.core.engine import Inspector
from inspector.errors import BundleError


def _copy(bundle: Path, tmp_path: Path) -> Path:
    out = tmp_path / "bundle"
    shutil.copytree(bundle, out)
    return out


def _rewrite(bundle: Path, scale: float, nan: bool = False) -> None:
    """What a machine whose kernels compute `scale` x the maps would see: the recorded maps scaled
    by 1 / scale (the manifest is rewritten, so only the self-test can notice)."""
    path = bundle / SELFTEST_FILE
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
    for key in arrays:
        if key.startswith(("map_", "max_")):
            arrays[key] = (arrays[key] / np.float32(scale)).astype(np.float32)
    if nan:
        arrays["map_0"].flat[0] = np.nan
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    write_manifest(bundle)


def test_a_trained_bundle_records_boards_and_passes_its_own_test(tiny_bundle: Path) -> None:
    with np.load(tiny_bundle / SELFTEST_FILE) as stored:
        assert {"image_0", "map_0", "max_0"} <= set(stored.files)
        assert stored["image_0"].dtype == np.uint8 and float(stored["max_0"]) > 0
    engine = Inspector.load(tiny_bundle)
    assert selftest.difference(engine, tiny_bundle / SELFTEST_FILE) < 1e-3  # same machine: the same maps


def test_maps_computed_differently_refuse_the_bundle_with_the_way_out(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    _rewrite(bundle, 1.10)
    with pytest.raises(BundleError, match=r"different error maps on this machine.*--precision float32"):
        Inspector.load(bundle)
    assert Inspector.load(bundle, InspectConfig(selftest=False)).image_threshold > 0  # the documented escape


def test_small_differences_within_tolerance_load(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    _rewrite(bundle, 1.01)
    assert Inspector.load(bundle).model_hash


def test_bundle_without_selftest_loads_and_a_corrupt_one_is_named(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    (bundle / SELFTEST_FILE).unlink()
    write_manifest(bundle)  # a bundle exported before the self-test existed
    Inspector.load(bundle)

    other = _copy(tiny_bundle, tmp_path / "other")
    (other / SELFTEST_FILE).write_bytes(b"not an npz")
    with pytest.raises(BundleError, match="selftest.npz"):
        Inspector.load(other)  # the manifest catches the edit
    for damaged in (b"not an npz", b"", b"PK\x03\x04" + b"\0" * 40):  # as if written so at export
        (other / SELFTEST_FILE).write_bytes(damaged)
        write_manifest(other)
        with pytest.raises(BundleError, match="unreadable self-test file"):
            Inspector.load(other)
    assert (other / MANIFEST_FILE).is_file()


def test_a_nan_anywhere_fails_the_test(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = _copy(tiny_bundle, tmp_path)
    _rewrite(bundle, 1.0, nan=True)
    with pytest.raises(BundleError, match="different error maps"):
        Inspector.load(bundle)


def test_recalibrating_on_this_machine_makes_its_maps_the_reference(tiny_bundle: Path, tmp_path: Path,
                                                                     sample_root: Path) -> None:
    from inspector.core.calibration import recalibrate

    bundle = _copy(tiny_bundle, tmp_path)
    _rewrite(bundle, 1.5)  # as if exported on a machine that computes differently
    with pytest.raises(BundleError):
        Inspector.load(bundle)
    recalibrate(bundle, sample_root, target_false_alarm_rate=0.05, reason="line PC computes differently",
                author="qa-anna")
    engine = Inspector.load(bundle)  # the manifest and the self-test now agree with this machine
    assert engine.calibration_version == 2
