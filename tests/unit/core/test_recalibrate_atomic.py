"""Recalibration is one step (issue 14): an interruption at any point leaves a bundle that loads."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from inspector.bundle.files import CALIBRATION_FILE, SELFTEST_FILE, verify_bundle
from inspector.core import calibration
from inspector.core.bundleswap import switch_folders
from inspector.core.engine import Inspector


class Interrupted(BaseException):
    """Stands in for a kill or power cut at that point."""


def interrupt(*_args: object, **_kwargs: object) -> None:
    raise Interrupted()


@pytest.mark.parametrize("point", ["write_calibration", "record", "write_manifest", "switch"])
def test_an_interrupted_recalibration_leaves_the_old_bundle_loadable(
        tiny_bundle: Path, sample_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    before = {name: (bundle / name).read_bytes() for name in (CALIBRATION_FILE, SELFTEST_FILE)}
    if point == "record":
        monkeypatch.setattr(calibration.selftest, "record", interrupt)
    elif point == "switch":
        monkeypatch.setattr(calibration, "switch_folders", interrupt)
    else:
        # The first file is written, then the process dies: today's code has already replaced it in place.
        real = getattr(calibration, point)

        def write_then_die(*args: object, **kwargs: object) -> None:
            real(*args, **kwargs)
            raise Interrupted()

        monkeypatch.setattr(calibration, point, write_then_die)
    with pytest.raises(Interrupted):
        calibration.recalibrate(bundle, sample_root, target_false_alarm_rate=0.05, reason="lighting", author="qa")
    verify_bundle(bundle)
    assert {name: (bundle / name).read_bytes() for name in before} == before
    assert Inspector.load(bundle).calibration_version == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no staging folder left behind


def test_switch_folders_exchanges_the_two(tmp_path: Path) -> None:
    old, new = tmp_path / "bundle", tmp_path / ".bundle.staging"
    old.mkdir()
    new.mkdir()
    (old / "v").write_text("1")
    (new / "v").write_text("2")
    switch_folders(new, old)
    assert (old / "v").read_text() == "2" and (new / "v").read_text() == "1"
