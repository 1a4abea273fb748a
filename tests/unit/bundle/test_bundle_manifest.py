from __future__ import annotations

import json
from pathlib import Path

import pytest

from inspector.bundle.files import CALIBRATION_FILE, MODEL_FILE, verify_bundle, write_manifest
from inspector.errors import BundleError


def make_bundle(root: Path) -> Path:
    root.mkdir()
    (root / MODEL_FILE).write_bytes(b"onnx-bytes" * 100)
    (root / CALIBRATION_FILE).write_text(json.dumps({"version": 1}))
    write_manifest(root)
    return root


def test_manifest_verifies(tmp_path: Path) -> None:
    manifest = verify_bundle(make_bundle(tmp_path / "b"))
    assert set(manifest["files"]) == {MODEL_FILE, CALIBRATION_FILE}


def test_truncated_file_is_named(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    data = (root / MODEL_FILE).read_bytes()
    (root / MODEL_FILE).write_bytes(data[:-10])
    with pytest.raises(BundleError, match="model.onnx.*truncated"):
        verify_bundle(root)


def test_edited_file_is_named(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    (root / CALIBRATION_FILE).write_text(json.dumps({"version": 9}))
    with pytest.raises(BundleError, match="calibration.json"):
        verify_bundle(root)


def test_missing_manifest_and_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not found"):
        verify_bundle(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="manifest"):
        verify_bundle(tmp_path / "empty")
