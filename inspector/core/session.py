"""ONNX Runtime sessions as the product opens them: providers, graph optimisation, threads.

One place for the session options, so the engine, the export's INT8 agreement check and the bench
run the graph the same way (idle workers do not spin: on two cores they would take the core that
decodes and post-processes).
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from inspector.config import InspectConfig
from inspector.config.modes import GRAPH_OPTIMIZATIONS, PROVIDERS, one_of
from inspector.errors import BundleError, ConfigError

_GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def choose_providers(setting: str) -> list[str]:
    available = ort.get_available_providers()
    if setting not in PROVIDERS:
        raise ConfigError(f"providers must be auto, cpu or cuda, got {setting!r}")
    if setting == "cuda" and "CUDAExecutionProvider" not in available:
        raise ConfigError("providers=cuda but ONNX Runtime has no CUDAExecutionProvider here "
                          f"(available: {', '.join(available)})")
    if setting != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(model_path: Path, config: InspectConfig) -> ort.InferenceSession:
    one_of("graph_optimization", config.graph_optimization, GRAPH_OPTIMIZATIONS)
    options = ort.SessionOptions()
    options.graph_optimization_level = _GRAPH_LEVELS[config.graph_optimization]
    if config.intra_op_threads > 0:
        options.intra_op_num_threads = config.intra_op_threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not config.spin_threads:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(model_path), options, providers=choose_providers(config.providers))
    except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
            ort.capi.onnxruntime_pybind11_state.InvalidGraph, RuntimeError) as exc:
        raise BundleError(f"{model_path}: ONNX Runtime cannot load the model ({exc})") from exc
