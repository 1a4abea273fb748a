"""Static INT8 quantisation of the exported graph, calibrated on good boards.

ONNX Runtime's own tools (`onnxruntime.quantization`) rewrite the float32 graph into QDQ form:
weights per output channel in int8, activations in uint8 with ranges observed on good boards.
ONNX Runtime's CPU provider fuses each QDQ convolution into an integer kernel (VNNI where the CPU
has it). Only convolutions are quantised: the view averaging and the error map stay float32, so the
anomaly signal itself is never rounded.

Measured on the default DeepPCB model (640x640 gray, 4 views, 2-core CPU): 29 ms float32, 18 ms
int8; reconstructions differ from float32 by 0.0014 on average (pixel values in [0, 1]).

The quantised graph must agree with float32 on good boards (`MAX_MEAN_ABS_DIFF`); when it does not
(an unusual network or input range), the bundle stays float32 and says why, rather than shipping a
model whose heatmaps drift from the one that was validated.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from inspector.bundle.tensors import INPUT_NAME
from inspector.config import INT8_SCHEMES, PRECISIONS, InspectConfig
from inspector.config.modes import one_of
from inspector.core.session import open_session

# How weights and activations are stored, and so which integer kernels ONNX Runtime runs:
# - "u8s8": 8-bit signed weights. Fastest; on AVX2 without VNNI the kernel sums pairs of u8 x s8
#   products in 16 bits and saturates, so such a CPU computes other maps than a VNNI one.
# - "u8s8-reduced": 7-bit signed weights (reduce_range). A pair of products fits in 16 bits, so
#   AVX2 and VNNI compute the same integers; one bit less weight precision.
# - "u8u8": unsigned weights; ONNX Runtime's AVX2 u8u8 kernel widens to 16 bits first and does not
#   saturate either, at some speed cost.
CALIBRATION_TENSORS = 16  # activation ranges settle after a dozen boards; more only costs export time
AGREEMENT_BOARDS = 64  # boards compared against float32 (bounded: a large hold-out would cost minutes)
MAX_MEAN_ABS_DIFF = 0.01  # reconstruction, in [0, 1] pixel units: 1% of the range on average


def check_precision(precision: str) -> None:
    one_of("precision", precision, PRECISIONS)


class _GoodBoards:
    """ONNX Runtime's calibration reader protocol over preprocessed (C, H, W) tensors."""

    def __init__(self, tensors: list[np.ndarray]) -> None:
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(
            [{INPUT_NAME: np.ascontiguousarray(t[None], dtype=np.float32)} for t in tensors])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def check_int8_scheme(scheme: str) -> None:
    one_of("int8_scheme", scheme, INT8_SCHEMES)


def quantize_int8(float_model: Path, out: Path, tensors: list[np.ndarray], scheme: str = "u8s8") -> None:
    """Write the INT8 (QDQ) version of `float_model` to `out`, activation ranges from `tensors`.

    `tensors` are preprocessed, padded good boards. Metadata (preprocessing, scoring, version,
    training-data hash) is carried over by the quantiser.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    check_int8_scheme(scheme)
    if not tensors:
        raise ValueError("INT8 quantisation needs good boards to observe activation ranges")
    weight_type = QuantType.QUInt8 if scheme == "u8u8" else QuantType.QInt8
    with tempfile.TemporaryDirectory(prefix="quantize-") as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        # Shape inference lets the quantiser see every convolution; the symbolic pass is for
        # transformer graphs and fails on the exporter's symbolic H/W.
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(out), _GoodBoards(tensors[:CALIBRATION_TENSORS]),
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=weight_type,
                        reduce_range=scheme == "u8s8-reduced",
                        op_types_to_quantize=["Conv"], calibrate_method=CalibrationMethod.MinMax)
    _keep_float_input(out)


def _keep_float_input(path: Path) -> None:
    """Give every node except the quantised convolutions the float32 input back.

    The quantiser rounds the graph input once (for the first convolution) and rewires every reader
    to the rounded copy, the error map included. The anomaly signal must compare the board's own
    pixels with the reconstruction, so those readers go back to the original tensor.
    """
    import onnx

    model = onnx.load(str(path))
    graph_inputs = {entry.name for entry in model.graph.input}
    quantised = {node.output[0]: node.input[0] for node in model.graph.node
                 if node.op_type == "QuantizeLinear" and node.input[0] in graph_inputs}
    rounded = {node.output[0]: quantised[node.input[0]] for node in model.graph.node
               if node.op_type == "DequantizeLinear" and node.input[0] in quantised}
    for node in model.graph.node:
        if node.op_type == "Conv":
            continue
        for index, name in enumerate(node.input):
            if name in rounded:
                node.input[index] = rounded[name]
    onnx.save(model, str(path))


def agreement(float_model: Path, int8_model: Path, tensors: list[np.ndarray]) -> dict[str, Any]:
    """How far the INT8 reconstruction is from float32 on `tensors` (good boards)."""
    sessions = [open_session(path, InspectConfig(providers="cpu")) for path in (float_model, int8_model)]
    mean_diffs, max_diff = [], 0.0
    tensors = tensors[:AGREEMENT_BOARDS]
    for tensor in tensors:
        feed = {INPUT_NAME: np.ascontiguousarray(tensor[None], dtype=np.float32)}
        reference, quantised = (session.run(None, feed)[0] for session in sessions)
        difference = np.abs(reference - quantised)
        mean_diffs.append(float(difference.mean()))
        max_diff = max(max_diff, float(difference.max()))
    return {"boards": len(tensors), "reconstruction_mean_abs_diff": float(np.mean(mean_diffs)),
            "reconstruction_max_abs_diff": max_diff}
