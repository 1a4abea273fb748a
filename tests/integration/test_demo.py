"""`inspector demo --no-dashboard` runs the whole pipeline on the bundled sample boards."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

REPO = REPO_ROOT


@pytest.mark.slow
def test_demo_without_dashboard_stores_every_sample_board(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    command = [sys.executable, "-m", "inspector", "demo", "--no-dashboard", "--workdir", str(workdir),
               "--minutes", "0.2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads((workdir / "demo-summary.json").read_text())
    test_boards = [p for p in (REPO / "sample_boards" / "test").rglob("*.png")]
    assert summary["boards"] == len(test_boards) > 0
    assert summary["stored"] == summary["boards"]  # every board has exactly one stored verdict
    assert sum(summary["verdicts"].values()) == summary["boards"]
    assert (workdir / "model" / "model.onnx").is_file()
    assert (workdir / "evaluation" / "metrics.json").is_file()
    # A second run reuses the trained model instead of training again.
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "using the trained demo model" in again.stdout
