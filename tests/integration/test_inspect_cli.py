"""`inspector inspect`, `evaluate` and `bench` end to end on the tiny bundle and synthetic boards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from inspector.errors import DatasetError
from inspector.quality.labelled import find_labelled_images
from training.quantize import MAX_MEAN_ABS_DIFF

RECORD_KEYS = {"image", "score", "threshold", "pixel_threshold", "verdict", "regions", "overlay", "heatmap",
               "model_hash", "calibration_version", "timings_ms", "error"}


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True, timeout=300)


def read_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_inspect_writes_records_and_pictures_and_survives_a_corrupt_file(
        tiny_bundle: Path, sample_root: Path, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    shutil.copytree(sample_root / "test" / "good", inbox)
    good_names = sorted(p.name for p in inbox.iterdir())
    data = (inbox / good_names[0]).read_bytes()
    (inbox / "0-corrupt.png").write_bytes(data[: len(data) // 2])  # sorts first: the run must go on
    (inbox / "notes.txt").write_text("not an image, not picked up from a folder")
    out = tmp_path / "out"
    result = run_cli("inspect", "--model", str(tiny_bundle), str(inbox), "--out", str(out), "--batch", "2")
    assert result.returncode == 0, result.stderr
    records = read_records(out)
    assert [Path(r["image"]).name for r in records] == ["0-corrupt.png", *good_names]
    error = records[0]
    assert error["verdict"] == "error" and "truncated" in error["error"] and error["overlay"] is None
    for record in records[1:]:
        assert RECORD_KEYS <= set(record) and record["error"] is None
        assert record["verdict"] in ("pass", "fail", "review")
        assert record["score"] >= 0 and record["threshold"] > 0 and len(record["model_hash"]) == 64
        assert record["calibration_version"] >= 1
        assert {"decode", "preprocess", "inference", "postprocess", "render", "total"} <= set(record["timings_ms"])
        for region in record["regions"]:
            assert {"bbox", "area", "score", "peak", "mean"} <= set(region) and len(region["bbox"]) == 4
        overlay = cv2.imread(str(out / record["overlay"]))
        heatmap = cv2.imread(str(out / record["heatmap"]))
        assert overlay.shape == heatmap.shape == (160, 160, 3)
    assert "error" in result.stdout and "0-corrupt.png" in result.stdout  # the summary names it


def test_fail_on_defect_sets_the_exit_code(fixtured_bundle: Path, sample_root: Path, tmp_path: Path) -> None:
    # A good board with a large saturated white patch: far outside anything seen in training.
    board = cv2.imread(str(sorted((sample_root / "test" / "good").iterdir())[0]))
    board[50:110, 50:110] = 255
    cv2.imwrite(str(tmp_path / "patched.png"), board)
    args = ["inspect", "--model", str(fixtured_bundle), str(tmp_path / "patched.png")]
    relaxed = run_cli(*args, "--out", str(tmp_path / "a"))
    strict = run_cli(*args, "--out", str(tmp_path / "b"), "--fail-on-defect")
    assert read_records(tmp_path / "b")[0]["verdict"] == "fail"
    assert relaxed.returncode == 0, relaxed.stderr
    assert strict.returncode == 1


def test_a_board_that_cannot_be_aligned_gets_an_error_record_and_the_others_are_inspected(
        fixtured_bundle: Path, sample_root: Path, tmp_path: Path) -> None:
    from inspector.config import InspectConfig
    from inspector.feeds.batch import inspect_paths

    good = sorted((sample_root / "test" / "good").iterdir())
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(good[0], folder / "a-good.png")
    blank = cv2.imread(str(good[0]))
    blank[:] = 90  # no board in front of the camera: nothing to align
    cv2.imwrite(str(folder / "b-empty.png"), blank)
    shutil.copy(good[1], folder / "c-good.png")
    records = inspect_paths(fixtured_bundle, [folder], tmp_path / "out", InspectConfig(batch_size=4))
    assert [Path(r["image"]).name for r in records] == ["a-good.png", "b-empty.png", "c-good.png"]
    assert records[1]["verdict"] == "error" and records[1]["error"].startswith("board not aligned")
    assert records[1]["score"] is None and records[1]["overlay"] is None
    assert [records[i]["verdict"] for i in (0, 2)] == ["pass", "pass"]
    assert all((tmp_path / "out" / records[i]["overlay"]).is_file() for i in (0, 2))


def test_evaluate_writes_metrics_and_plots(tiny_bundle: Path, sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = run_cli("evaluate", "--model", str(tiny_bundle), "--data", str(sample_root), "--out", str(out))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("image_auroc", "pixel_auroc", "aupro", "region_recall", "fp_regions_per_good_image",
                "fp_regions_per_defective_image", "localisation", "f1", "precision", "recall",
                "image_threshold", "pixel_threshold", "counts", "per_type"):
        assert key in metrics
    for key in ("image_auroc", "pixel_auroc", "aupro", "region_recall", "f1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["counts"]["good"] == 4 and metrics["counts"]["defective"] == 8
    assert metrics["gt_regions"] >= 8  # every synthetic defect has at least one region
    assert set(metrics["per_type"]) == {p.name for p in (sample_root / "test").iterdir()} - {"good"}
    for name in ("roc.png", "score_histogram.png"):
        assert cv2.imread(str(out / name)) is not None
    worst = list((out / "worst").glob("*.png"))
    assert worst and all(cv2.imread(str(p)) is not None for p in worst)
    assert "aupro" in result.stdout


def test_evaluate_names_a_missing_mask(sample_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(sample_root, root)
    mask = sorted((root / "ground_truth").glob("*/*_mask.png"))[0]
    mask.unlink()
    with pytest.raises(DatasetError, match=str(mask)):
        find_labelled_images(root)


def test_bench_prints_table_and_writes_figures(tiny_bundle: Path, sample_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = run_cli("bench", "--model", str(tiny_bundle), "--images", str(sample_root / "test" / "good"),
                     "--batch", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "end to end images/s" in result.stdout and "share of peak" in result.stdout
    figures = json.loads(out.read_text())
    assert set(figures["stages"]) == {"decode", "preprocess", "inference", "postprocess"}
    for stage in figures["stages"].values():
        assert 0 <= stage["median_ms"] <= stage["p90_ms"]
    assert figures["end_to_end_images_per_second"] > 0 and figures["model_only_images_per_second"] > 0
    # a few sample images still make a long enough end-to-end run for the overlap's ramp to fade
    images = len(list((sample_root / "test" / "good").glob("*.png")))
    assert figures["iterations"] * images >= 160 > (figures["iterations"] - 1) * images
    assert figures["model_input_shape"] == [2, 3, 160, 160]
    assert figures["cpu_peak"]["gflops"] > 0 and 0 < figures["share_of_peak"] < 5
    assert figures["flops"]["gflops_per_image"] == pytest.approx(2 * figures["flops"]["macs_per_image"] / 1e9, rel=1e-3)
    comparison = figures["torch_vs_onnxruntime"]
    # torch runs the float32 network; the default bundle runs its INT8 version (rounding only).
    assert figures["precision"] == "int8" and "model precision" in result.stdout
    assert comparison["available"] and 0 < comparison["mean_abs_difference"] <= MAX_MEAN_ABS_DIFF
    assert figures["flops"]["macs_per_image"] == torch_macs(tiny_bundle, (1, 3, 160, 160))
    # steal from /proc/stat, a share per phase (Linux: always readable here)
    assert set(figures["stolen_cpu_share"]) == {"end_to_end", "torch_comparison"}
    assert all(0 <= share <= 1 for share in figures["stolen_cpu_share"].values())
    assert "CPU taken by the hypervisor" in result.stdout


def torch_macs(bundle: Path, shape: tuple[int, int, int, int]) -> int:
    """Independent count with forward hooks on the torch model the graph was exported from (network,
    view averaging and the sub-pixel shuffle in its ONNX form): the ONNX-graph count must agree."""
    from training.checkpoint import load_checkpoint
    from training.export import build_exported_model
    from training.model import count_macs

    batch, _, height, width = shape
    return batch * count_macs(build_exported_model(load_checkpoint(bundle / "checkpoint.pt")).for_onnx(), height, width)
