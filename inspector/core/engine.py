"""The inference engine: a verified bundle, one ONNX Runtime session, anomaly maps and verdicts.

Torch-free: a line PC runs this with ONNX Runtime and OpenCV only. Training calibrates through
this same class (`Inspector.uncalibrated`), so calibration and the line compute scores with
identical code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from inspector.bundle.calibration import read_calibration
from inspector.bundle.files import (
    CALIBRATION_FILE,
    META_PREPROCESS,
    META_SCORING,
    MODEL_FILE,
    SELFTEST_FILE,
    check_metadata,
    verify_bundle,
)
from inspector.bundle.tensors import ERROR_OUTPUT, INPUT_NAME, OUTPUT_NAME
from inspector.config import InspectConfig
from inspector.core import scoring, selftest
from inspector.core.interface import Analysis
from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, preprocess
from inspector.core.results import InspectionResult
from inspector.errors import BundleError, ConfigError, InspectorError

_GRAPH_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def choose_providers(setting: str) -> list[str]:
    available = ort.get_available_providers()
    if setting not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"providers must be auto, cpu or cuda, got {setting!r}")
    if setting == "cuda" and "CUDAExecutionProvider" not in available:
        raise ConfigError("providers=cuda but ONNX Runtime has no CUDAExecutionProvider here "
                          f"(available: {', '.join(available)})")
    if setting != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(model_path: Path, config: InspectConfig) -> ort.InferenceSession:
    if config.graph_optimization not in _GRAPH_LEVELS:
        raise ConfigError(f"graph_optimization must be one of {', '.join(_GRAPH_LEVELS)}, "
                          f"got {config.graph_optimization!r}")
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


def _blend_window(tile: int, overlap: int) -> np.ndarray:
    """Weights that ramp over the overlap so stitched tiles leave no seams (never zero)."""
    ramp = np.ones(tile, np.float32)
    if overlap > 0:
        edge = np.arange(1, overlap + 1, dtype=np.float32) / (overlap + 1)
        ramp[:overlap] = edge
        ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def _tile_starts(length: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, max(length - tile, 0) + 1, stride))
    if starts[-1] + tile < length:
        starts.append(length - tile)
    return starts


class Inspector:
    """A loaded bundle ready to inspect board images."""

    def __init__(self, session: ort.InferenceSession, spec: PreprocessSpec, scoring_spec: scoring.ScoringSpec,
                 calibration: dict[str, Any] | None, model_hash: str, config: InspectConfig, source: str) -> None:
        self.session = session
        self.spec = spec
        self.scoring = scoring_spec
        self.config = config
        self.model_hash = model_hash
        self.source = source
        self.calibration: dict[str, Any] | None = calibration
        self.calibration_version = int(calibration["version"]) if calibration else 0
        self.threshold_source = "bundle"
        self.image_threshold = float(calibration["image_threshold"]) if calibration else math.inf
        self.pixel_threshold = float(calibration["pixel_threshold"]) if calibration else math.inf
        self.pixel_scale = float(calibration["normaliser"]["pixel_scale"]) if calibration else 1.0
        self.graph_error = ERROR_OUTPUT in {output.name for output in session.get_outputs()}
        self._outputs = [OUTPUT_NAME, ERROR_OUTPUT] if self.graph_error else [OUTPUT_NAME]

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(cls, bundle: str | Path, config: InspectConfig | None = None) -> Inspector:
        bundle = Path(bundle)
        config = config or InspectConfig()
        manifest = verify_bundle(bundle, files=(MODEL_FILE, CALIBRATION_FILE))
        versions = read_calibration(bundle / CALIBRATION_FILE)
        engine = cls._open(bundle / MODEL_FILE, manifest["files"][MODEL_FILE]["sha256"], versions[-1], config)
        # Bundles from before the self-test existed have none: they load as before.
        if config.selftest and SELFTEST_FILE in manifest["files"]:
            verify_bundle(bundle, files=(SELFTEST_FILE,))
            selftest.check(engine, bundle / SELFTEST_FILE, str(bundle))
        return engine

    @classmethod
    def uncalibrated(cls, model_path: Path, config: InspectConfig | None = None) -> Inspector:
        """An engine on a bare model.onnx (used while calibrating): raw maps, no thresholds."""
        from inspector.bundle.files import sha256_file

        return cls._open(Path(model_path), sha256_file(Path(model_path)), None, config or InspectConfig())

    @classmethod
    def _open(cls, model_path: Path, model_hash: str, calibration: dict[str, Any] | None,
              config: InspectConfig) -> Inspector:
        session = open_session(model_path, config)
        metadata = session.get_modelmeta().custom_metadata_map
        check_metadata(metadata, str(model_path))
        try:
            spec = PreprocessSpec.from_json(metadata[META_PREPROCESS])
        except ConfigError as exc:
            raise BundleError(f"{model_path}: {exc}") from exc
        scoring_spec = scoring.ScoringSpec.from_json(metadata[META_SCORING], str(model_path))
        return cls(session, spec, scoring_spec, calibration, model_hash, config, str(model_path))

    def set_image_threshold(self, value: float, version: int) -> None:
        """Apply a QA threshold version from the store (pixel threshold and normaliser unchanged)."""
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"image threshold must be a positive number, got {value!r}")
        self.image_threshold = float(value)
        self.calibration_version = int(version)
        self.threshold_source = "qa"

    # ---------------------------------------------------------------- model calls
    def run_model(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The raw model call: NCHW float32 (H, W multiples of pad_multiple) -> (reconstruction,
        raw error map N1HW, or None when the graph does not compute it)."""
        try:
            outputs = self.session.run(self._outputs, {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)})
        except Exception as exc:  # ONNX Runtime's own error types; the runner needs one it can quarantine on
            raise InspectorError(f"{self.source}: the model cannot run on an input of shape "
                                 f"{tuple(batch.shape)} ({str(exc).splitlines()[0][:200]})") from exc
        return outputs[0], (outputs[1] if self.graph_error else None)

    def reconstruct(self, batch: np.ndarray) -> np.ndarray:
        return self.run_model(batch)[0]

    def _run_chunks(self, batch: np.ndarray) -> list[tuple[np.ndarray, np.ndarray | None]]:
        size = max(1, self.config.batch_size)
        pairs: list[tuple[np.ndarray, np.ndarray | None]] = []
        for i in range(0, len(batch), size):
            recon, error = self.run_model(batch[i:i + size])
            pairs.extend(zip(recon, error if error is not None else [None] * len(recon)))
        return pairs

    def _reconstruct_chunks(self, batch: np.ndarray) -> np.ndarray:
        return np.stack([recon for recon, _ in self._run_chunks(batch)])

    def _reconstruct_tiled(self, tensor: np.ndarray) -> np.ndarray:
        """One padded CxHxW image through overlapping tiles, blended back together."""
        multiple = self.spec.pad_multiple
        tile = max(multiple, self.spec.tile_size // multiple * multiple)
        overlap = min(self.spec.tile_overlap, tile // 2 - 1) if tile > 2 else 0
        channels, height, width = tensor.shape
        grow_h, grow_w = max(0, tile - height), max(0, tile - width)
        if grow_h or grow_w:
            tensor = np.pad(tensor, [(0, 0), (0, grow_h), (0, grow_w)], mode="edge")
        full_h, full_w = tensor.shape[1:]
        stride = tile - overlap
        corners = [(y, x) for y in _tile_starts(full_h, tile, stride) for x in _tile_starts(full_w, tile, stride)]
        tiles = np.stack([tensor[:, y:y + tile, x:x + tile] for y, x in corners])
        recon_tiles = self._reconstruct_chunks(tiles)
        window = _blend_window(tile, overlap)
        total = np.zeros((channels, full_h, full_w), np.float32)
        weight = np.zeros((full_h, full_w), np.float32)
        for (y, x), recon in zip(corners, recon_tiles):
            total[:, y:y + tile, x:x + tile] += recon * window
            weight[y:y + tile, x:x + tile] += window
        return (total / weight)[:, :height, :width]

    # ---------------------------------------------------------------- analysis
    def _prepare(self, image: np.ndarray) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ConfigError(f"inspect expects a uint8 HxW or HxWx3 image, got "
                              f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
        return preprocess(image, self.spec)

    def analyse(self, images: Sequence[np.ndarray]) -> list[Analysis]:
        """Preprocess, run the model (grouping same-size images), raw smoothed error maps."""
        prepared: list[tuple[np.ndarray, tuple[int, int]]] = []
        timings: list[dict[str, float]] = []
        for image in images:
            start = time.perf_counter()
            tensor = self._prepare(image)
            padded, working = pad_to_multiple(tensor, self.spec.pad_multiple)
            prepared.append((padded, working))
            timings.append({"preprocess": (time.perf_counter() - start) * 1e3})
        reconstructions: list[np.ndarray | None] = [None] * len(prepared)
        graph_errors: list[np.ndarray | None] = [None] * len(prepared)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, (padded, _) in enumerate(prepared):
            groups.setdefault(padded.shape, []).append(index)
        for indices in groups.values():
            start = time.perf_counter()
            if self.spec.tile_size:  # stitched reconstructions; the map is computed below, on the CPU
                outputs: list[tuple[np.ndarray, np.ndarray | None]] = [
                    (self._reconstruct_tiled(prepared[i][0]), None) for i in indices]
            else:
                outputs = self._run_chunks(np.stack([prepared[i][0] for i in indices]))
            share = (time.perf_counter() - start) * 1e3 / len(indices)
            for i, (output, error) in zip(indices, outputs):
                reconstructions[i] = output
                graph_errors[i] = error
                timings[i]["inference"] = share
        analyses = []
        for image, (padded, (height, width)), recon, error, timing in zip(images, prepared, reconstructions,
                                                                        graph_errors, timings):
            start = time.perf_counter()
            assert recon is not None
            recon = recon[:, :height, :width]
            if error is not None:
                raw = np.ascontiguousarray(error[0, :height, :width])
            else:
                raw = scoring.error_map(padded[:, :height, :width], np.ascontiguousarray(recon), self.scoring)
            smoothed = scoring.smooth(raw, self.scoring.smooth_sigma)
            timing["postprocess"] = (time.perf_counter() - start) * 1e3
            analyses.append(Analysis(image.shape[:2], smoothed, recon, timing))
        return analyses

    def anomaly_map(self, analysis: Analysis, pixel_scale: float | None = None) -> np.ndarray:
        """Calibrated-scale map at the input resolution."""
        normalised = scoring.normalise(analysis.smoothed, pixel_scale or self.pixel_scale)
        height, width = analysis.input_shape
        if normalised.shape != (height, width):
            normalised = cv2.resize(normalised, (width, height), interpolation=cv2.INTER_LINEAR)
        return normalised

    def _reconstruction_image(self, analysis: Analysis) -> np.ndarray:
        pixels = analysis.reconstruction * np.float32(self.spec.std) + np.float32(self.spec.mean)
        pixels = np.clip(pixels * 255.0 + 0.5, 0, 255).astype(np.uint8)
        pixels = pixels[0] if pixels.shape[0] == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))
        height, width = analysis.input_shape
        if pixels.shape[:2] != (height, width):
            pixels = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LINEAR)
        return pixels

    def _result(self, analysis: Analysis) -> InspectionResult:
        if self.calibration is None:
            raise BundleError(f"{self.source}: the model is not calibrated; it cannot give verdicts")
        start = time.perf_counter()
        amap = self.anomaly_map(analysis)
        score = scoring.image_score(amap, self.scoring)
        regions = scoring.find_regions(amap, self.pixel_threshold, self.config.min_region_area,
                                       self.pixel_threshold * self.scoring.grow_fraction)
        verdict = scoring.decide_verdict(score, self.image_threshold, regions, self.config.review_band)
        recon = self._reconstruction_image(analysis) if self.config.save_reconstruction else None
        timings = dict(analysis.timings)
        timings["postprocess"] += (time.perf_counter() - start) * 1e3
        timings["total"] = timings["preprocess"] + timings["inference"] + timings["postprocess"]
        return InspectionResult(score=score, threshold=self.image_threshold, verdict=verdict, regions=regions,
                                anomaly_map=amap, reconstruction=recon, model_hash=self.model_hash,
                                calibration_version=self.calibration_version, timings_ms=timings,
                                threshold_source=self.threshold_source,
                                pixel_threshold=self.pixel_threshold)

    # ---------------------------------------------------------------- public API
    def inspect(self, image: np.ndarray) -> InspectionResult:
        return self.inspect_batch([image])[0]

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        return [self._result(analysis) for analysis in self.analyse(images)]
