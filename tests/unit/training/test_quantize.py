"""Static INT8 bundles: the default graph is quantised, agrees with float32, keeps the error map on the
board's own pixels, and falls back to float32 (saying why) when quantisation does not hold up."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from inspector.bundle.files import CALIBRATION_FILE, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE, MODEL_CARD_FILE, MODEL_FILE
from inspector.bundle.tensors import INPUT_NAME
from inspector.config import TrainConfig
from inspector.core.engine import Inspector
from inspector.core.imageio import load_image
from inspector.errors import BundleError, ConfigError
from training import export as export_module
from training.checkpoint import load_checkpoint
from training.export import export_from_checkpoint
from training.quantize import MAX_MEAN_ABS_DIFF
from training.train import train_bundle


def op_types(bundle: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(bundle / MODEL_FILE)).graph.node}


def metrics(bundle: Path) -> dict:
    return json.loads((bundle / METRICS_FILE).read_text())


def test_default_bundle_is_int8_and_agrees_with_float32(tiny_bundle: Path, float_bundle: Path,
                                                        sample_root: Path) -> None:
    figures = metrics(tiny_bundle)
    assert figures["precision"] == "int8"
    assert figures["quantisation"]["reconstruction_mean_abs_diff"] <= MAX_MEAN_ABS_DIFF
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types(tiny_bundle)
    assert "QuantizeLinear" not in op_types(float_bundle)
    assert "int8" in (tiny_bundle / MODEL_CARD_FILE).read_text()

    board = load_image(sorted((sample_root / "test" / "good").iterdir())[0])
    int8, float32 = (Inspector.load(bundle).analyse([board])[0] for bundle in (tiny_bundle, float_bundle))
    difference = np.abs(int8.reconstruction - float32.reconstruction)
    assert difference.mean() <= MAX_MEAN_ABS_DIFF
    assert difference.max() > 0  # really a different graph, not the float32 one under another name
    # Both calibrated on the same held-back boards with their own graph.
    assert Inspector.load(tiny_bundle).pixel_threshold != Inspector.load(float_bundle).pixel_threshold


def test_error_map_reads_the_boards_own_pixels(tiny_bundle: Path) -> None:
    """Only the quantised convolutions may read the rounded input; the error map reads the original."""
    graph = onnx.load(str(tiny_bundle / MODEL_FILE)).graph
    rounded_input = {node.output[0] for node in graph.node
                     if node.op_type == "DequantizeLinear" and node.input[0].startswith(INPUT_NAME)}
    readers = [node for node in graph.node if set(node.input) & rounded_input]
    assert readers and all(node.op_type == "Conv" for node in readers)
    error_inputs = {name for node in graph.node if node.op_type == "Sub" for name in node.input}
    assert INPUT_NAME in error_inputs


def test_disagreeing_int8_keeps_float32(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_module, "MAX_MEAN_ABS_DIFF", 0.0)
    out = export_from_checkpoint(tiny_bundle / CHECKPOINT_FILE, tmp_path / "refused", precision="int8")
    figures = metrics(out)
    assert figures["precision"] == "float32" and "differ from float32" in figures["quantisation"]["refused"]
    assert "QuantizeLinear" not in op_types(out)
    assert "int8 refused" in (out / MODEL_CARD_FILE).read_text()
    assert Inspector.load(out).calibration_version == 1


def test_quantiser_failure_keeps_float32(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(export_module, "quantize_int8", broken)
    out = export_from_checkpoint(tiny_bundle / CHECKPOINT_FILE, tmp_path / "failed", precision="int8")
    assert metrics(out)["precision"] == "float32"
    assert "unsupported operator" in metrics(out)["quantisation"]["refused"]
    assert not any(path.name.startswith("float32-") for path in out.iterdir())
    Inspector.load(out)


def moved_checkpoint(bundle: Path, folder: Path) -> Path:
    """The bundle's checkpoint, calibration and metrics, with its held-back boards gone."""
    folder.mkdir()
    state = load_checkpoint(bundle / CHECKPOINT_FILE)
    state["data"]["holdout_paths"] = [str(folder / "gone" / "board.png")]
    torch.save(state, folder / CHECKPOINT_FILE)
    for name in (CALIBRATION_FILE, METRICS_FILE):
        shutil.copy(bundle / name, folder / name)
    return folder / CHECKPOINT_FILE


def test_without_the_held_back_boards_only_the_same_float32_graph_is_re_exported(
        tiny_bundle: Path, float_bundle: Path, tmp_path: Path) -> None:
    """INT8 takes activation ranges from the held-back boards, and thresholds of one graph do not
    carry over to another: without the boards, only a float32 bundle is re-exported as it was."""
    int8 = moved_checkpoint(tiny_bundle, tmp_path / "int8")
    for precision in ("float32", "int8", None):
        with pytest.raises(BundleError, match="held-back boards it records are gone"):
            export_from_checkpoint(int8, tmp_path / f"out-{precision}", precision=precision)
        assert not (tmp_path / f"out-{precision}").exists()
    float32 = moved_checkpoint(float_bundle, tmp_path / "float32")
    with pytest.raises(BundleError, match="gone"):
        export_from_checkpoint(float32, tmp_path / "to-int8", precision="int8")
    same = export_from_checkpoint(float32, tmp_path / "same")
    assert metrics(same)["precision"] == "float32"
    assert json.loads((same / CALIBRATION_FILE).read_text()) == json.loads(
        (float_bundle / CALIBRATION_FILE).read_text())


def test_unknown_precision_is_refused(sample_root: Path, tiny_bundle: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="precision"):
        train_bundle(sample_root, tmp_path / "fp16", TrainConfig().with_values(epoch_crops=0, precision="fp16", epochs=1))
    with pytest.raises(ConfigError, match="precision"):
        export_from_checkpoint(tiny_bundle / CHECKPOINT_FILE, tmp_path / "fp16b", precision="fp16")
    assert not (tmp_path / "fp16").exists() and not (tmp_path / "fp16b").exists()


def _weight_initialisers(model_path: Path) -> list[np.ndarray]:
    """The integer convolution weights of a QDQ graph (inputs of DequantizeLinear that are initialisers)."""
    model = onnx.load(str(model_path))
    initialisers = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    return [initialisers[node.input[0]] for node in model.graph.node
            if node.op_type == "DequantizeLinear" and node.input[0] in initialisers
            and initialisers[node.input[0]].ndim == 4]


@pytest.mark.parametrize("scheme", ["u8s8", "u8s8-reduced", "u8u8"])
def test_int8_schemes_store_the_weights_they_promise(float_bundle: Path, sample_root: Path, tmp_path: Path,
                                                     scheme: str) -> None:
    from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, preprocess
    from training.quantize import agreement, quantize_int8

    spec = Inspector.load(float_bundle).spec
    assert isinstance(spec, PreprocessSpec)
    boards = [load_image(p) for p in sorted((sample_root / "train" / "good").iterdir())[:4]]
    tensors = [pad_to_multiple(preprocess(board, spec), spec.pad_multiple)[0] for board in boards]
    out = tmp_path / f"{scheme}.onnx"
    quantize_int8(float_bundle / MODEL_FILE, out, tensors, scheme)
    weights = _weight_initialisers(out)
    assert weights
    if scheme == "u8u8":
        assert all(w.dtype == np.uint8 for w in weights)
    else:
        assert all(w.dtype == np.int8 for w in weights)
        low, high = min(int(w.min()) for w in weights), max(int(w.max()) for w in weights)
        if scheme == "u8s8-reduced":  # 7-bit weights: a pair of u8 x s7 products fits in 16 bits
            assert -64 <= low and high <= 64  # 2 x 255 x 64 = 32640 < 32767
        else:
            assert low < -64 or high > 63  # the full 8-bit range is used
    figures = agreement(float_bundle / MODEL_FILE, out, tensors)
    assert figures["reconstruction_mean_abs_diff"] <= MAX_MEAN_ABS_DIFF


def test_default_bundle_records_its_int8_scheme_and_machine(tiny_bundle: Path) -> None:
    quantisation = metrics(tiny_bundle)["quantisation"]
    assert quantisation["scheme"] == TrainConfig().export.int8_scheme == "u8s8-reduced"
    assert "int8:" in quantisation["exported_on"]
    card = (tiny_bundle / MODEL_CARD_FILE).read_text()
    assert "scheme u8s8-reduced" in card
    assert "int8:" in card.splitlines()[2]  # the "Created" line names the CPU and its 8-bit path


def test_unknown_int8_scheme_is_refused(sample_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="int8_scheme"):
        train_bundle(sample_root, tmp_path / "bundle", TrainConfig().with_values(epoch_crops=0, int8_scheme="s4", epochs=1))


def test_the_mirrored_view_runs_on_mirrored_weights_not_on_flipped_boards(tiny_bundle: Path) -> None:
    """The default bundle's second view is the mirrored board: its graph runs mirrored copies of the
    convolutions on the board itself, so it has no flip (`Slice`, about 1 GB/s in ONNX Runtime) and
    rounds the board to 8 bits once, for both views' stems."""
    graph = onnx.load(str(tiny_bundle / MODEL_FILE)).graph
    assert json.loads((tiny_bundle / CONFIG_FILE).read_text())["views"] == 2
    assert "Slice" not in {node.op_type for node in graph.node}
    roundings = [node for node in graph.node if node.op_type == "QuantizeLinear" and node.input[0] == INPUT_NAME]
    assert len(roundings) == 1
    rounded = {node.output[0] for node in graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] == roundings[0].output[0]}
    stems = [node for node in graph.node if node.op_type == "Conv" and set(node.input) & rounded]
    assert len(stems) == 2
