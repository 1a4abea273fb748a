"""The inference engine: a verified bundle, one ONNX Runtime session, anomaly maps and verdicts.

Torch-free: a line PC runs this with ONNX Runtime and OpenCV only. Training calibrates through
this same class (`Inspector.uncalibrated`), so calibration and the line compute scores with
identical code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort

from inspector.bundle.calibration import read_calibration
from inspector.bundle.files import (
    ATLAS_FILE,
    CALIBRATION_FILE,
    GROUPS_FILE,
    META_PREPROCESS,
    META_SCORING,
    MODEL_FILE,
    REFERENCE_ATLAS_FILE,
    REFERENCE_CALIBRATION_FILE,
    REFERENCE_FILE,
    REGISTRATION_FILE,
    ROI_FILE,
    SELFTEST_FILE,
    SURROUND_FILE,
    check_metadata,
    verify_bundle,
)
from inspector.bundle.tensors import ERROR_OUTPUT, INPUT_NAME, OUTPUT_NAME
from inspector.config import InspectConfig
from inspector.core import scoring, selftest
from inspector.core.atlas import Atlas
from inspector.core.edges import EdgeAllowance
from inspector.core.groups import LightGroups
from inspector.core.interface import Analysis, PreparedBoard
from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, prepare_board, preprocess
from inspector.core.registration import Registration, RegistrationError, RegistrationSpec, Surround
from inspector.core.results import InspectionResult, Region
from inspector.core.session import open_session
from inspector.core.tolerance import LearnedTolerance
from inspector.errors import BundleError, ConfigError, InspectorError

# Registered boards: error within this many px of where alignment made up the border is not judged
# (reflected pixels there differ from the reference; the network's field of view spreads them a little).
BORDER_MARGIN_PX = 4

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
                 calibration: dict[str, Any] | None, model_hash: str, config: InspectConfig, source: str,
                 registration: Registration | None = None, atlas: Atlas | None = None,
                 roi: np.ndarray | None = None) -> None:
        self.session = session
        # Bundles of one fixtured design: the reference board and how boards are aligned to it, the
        # per-position model of good boards, the inspection area (uint8 mask, input resolution).
        self.registration = registration
        self.atlas = atlas
        self.roi = roi
        self._roi_work: np.ndarray | None = None
        self.spec = spec
        self.scoring = scoring_spec
        self.config = config
        self.model_hash = model_hash
        self.source = source
        self.threshold_source = "bundle"
        self._set_calibration(calibration)
        self.graph_error = ERROR_OUTPUT in {output.name for output in session.get_outputs()}
        self._outputs = [OUTPUT_NAME, ERROR_OUTPUT] if self.graph_error else [OUTPUT_NAME]
        # False: the network's output is replaced by the board's good expectation (`use_network`).
        self.network = True
        self._expected: np.ndarray | None = None
        # What QA taught the station from dismissed false alarms (None: nothing learned).
        self.tolerance: LearnedTolerance | None = None

    # ---------------------------------------------------------------- the good expectation
    @property
    def expectation_kind(self) -> str | None:
        """What a good board is expected to look like without the network: "no difference" when the model
        sees the board minus the reference, "the reference" when it sees the aligned board, None for boards
        that are not registered (no expectation exists: each board is its own design)."""
        if self.registration is None:
            return None
        return "no difference from the reference" if self.registration.spec.residual else "the reference board"

    def expectation(self, tensor: np.ndarray) -> np.ndarray:
        """The good expectation of a prepared board (CxHxW, padded): what `--no-network` puts in the
        network's place, so the map is the plain reference comparison."""
        self.expectation_kind_or_error()
        assert self.registration is not None
        if self._expected is None or self._expected.shape != tensor.shape:
            reference = self.registration.reference
            board = (np.full(reference.shape, 128, np.uint8) if self.registration.spec.residual else reference)
            expected, _ = pad_to_multiple(preprocess(board, self.spec), self.spec.pad_multiple)
            if expected.shape != tensor.shape:
                raise InspectorError(f"{self.source}: a board of working size {tensor.shape[1:]} does not match the "
                                     f"reference ({expected.shape[1:]})")
            self._expected = np.ascontiguousarray(expected, dtype=np.float32)
        return self._expected

    def use_network(self, on: bool, calibration: dict[str, Any] | None = None, atlas: Atlas | None = None) -> None:
        """Switch the network off (its output replaced by the good expectation) or on, with the thresholds
        and per-position model set on that pipeline's own maps (`calibration` None: uncalibrated)."""
        if not on:
            self.expectation_kind_or_error()
        self.network = on
        self.atlas = atlas
        self._set_calibration(calibration)

    def _set_calibration(self, calibration: dict[str, Any] | None) -> None:
        """Thresholds, map scale and edge allowance of a calibration version (None: uncalibrated)."""
        self.calibration = calibration
        self.calibration_version = int(calibration["version"]) if calibration else 0
        self.image_threshold = float(calibration["image_threshold"]) if calibration else math.inf
        self.pixel_threshold = float(calibration["pixel_threshold"]) if calibration else math.inf
        self.pixel_scale = float(calibration["normaliser"]["pixel_scale"]) if calibration else 1.0
        try:  # calibrations from before the edge allowance have none
            self.edges = EdgeAllowance.from_record(calibration.get("edge_allowance")) if calibration else None
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{self.source}: the calibration's edge allowance is unreadable ({exc})") from exc

    def expectation_kind_or_error(self) -> str:
        kind = self.expectation_kind
        if kind is None:
            raise ConfigError(f"{self.source}: boards of this bundle are not registered to a reference, so there is "
                              "no good expectation to compare with: --no-network needs a bundle of one fixtured design")
        return kind

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(cls, bundle: str | Path, config: InspectConfig | None = None, *, network: bool = True) -> Inspector:
        """A verified bundle. `network=False`: the same pipeline with the network's output replaced by the
        board's good expectation, judged with the per-position model and thresholds export set on that
        pipeline's own maps (a reference comparison; `--no-network`)."""
        bundle = Path(bundle)
        config = config or InspectConfig()
        manifest = verify_bundle(bundle, files=(MODEL_FILE, CALIBRATION_FILE))
        versions = read_calibration(bundle / CALIBRATION_FILE)
        registration, atlas, roi = load_fixture(bundle, manifest)
        engine = cls._open(bundle / MODEL_FILE, manifest["files"][MODEL_FILE]["sha256"], versions[-1], config,
                           registration=registration, atlas=atlas, roi=roi)
        if not network:
            engine.expectation_kind_or_error()
            if REFERENCE_CALIBRATION_FILE not in manifest["files"]:
                raise BundleError(f"{bundle}: exported before the reference comparison was recorded; re-export it "
                                  "(inspector export --checkpoint ...) to run it without the network")
            verify_bundle(bundle, files=(REFERENCE_CALIBRATION_FILE,))
            reference_atlas = None
            if REFERENCE_ATLAS_FILE in manifest["files"]:
                verify_bundle(bundle, files=(REFERENCE_ATLAS_FILE,))
                reference_atlas = Atlas.load(bundle / REFERENCE_ATLAS_FILE)
            engine.use_network(False, read_calibration(bundle / REFERENCE_CALIBRATION_FILE)[-1], reference_atlas)
            return engine  # the self-test records the network's maps
        # Bundles from before the self-test existed have none: they load as before.
        if config.selftest and SELFTEST_FILE in manifest["files"]:
            verify_bundle(bundle, files=(SELFTEST_FILE,))
            selftest.check(engine, bundle / SELFTEST_FILE, str(bundle))
        return engine

    @classmethod
    def uncalibrated(cls, model_path: Path, config: InspectConfig | None = None, *,
                     registration: Registration | None = None, atlas: Atlas | None = None,
                     roi: np.ndarray | None = None) -> Inspector:
        """An engine on a bare model.onnx (used while calibrating): raw maps, no thresholds."""
        from inspector.bundle.files import sha256_file

        return cls._open(Path(model_path), sha256_file(Path(model_path)), None, config or InspectConfig(),
                         registration=registration, atlas=atlas, roi=roi)

    @classmethod
    def _open(cls, model_path: Path, model_hash: str, calibration: dict[str, Any] | None,
              config: InspectConfig, **fixture: Any) -> Inspector:
        session = open_session(model_path, config)
        metadata = session.get_modelmeta().custom_metadata_map
        check_metadata(metadata, str(model_path))
        try:
            spec = PreprocessSpec.from_json(metadata[META_PREPROCESS])
        except ConfigError as exc:
            raise BundleError(f"{model_path}: {exc}") from exc
        scoring_spec = scoring.ScoringSpec.from_json(metadata[META_SCORING], str(model_path))
        return cls(session, spec, scoring_spec, calibration, model_hash, config, str(model_path), **fixture)

    def set_image_threshold(self, value: float, version: int) -> None:
        """Apply a QA threshold version from the store (pixel threshold and normaliser unchanged)."""
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"image threshold must be a positive number, got {value!r}")
        self.image_threshold = float(value)
        self.calibration_version = int(version)
        self.threshold_source = "qa"

    @property
    def tolerance_version(self) -> int:
        return self.tolerance.version if self.tolerance is not None else 0

    def set_tolerance(self, tolerance: LearnedTolerance | None) -> None:
        """Apply a learned tolerance version from the store from the next board on (None: none)."""
        if tolerance is not None:
            if self.registration is None:
                raise ConfigError(f"{self.source}: a learned tolerance needs boards registered to one reference "
                                  "(a fixtured design); this bundle has no reference")
            expected = preprocess(self.registration.reference, self.spec).shape[1:]
            if tolerance.factor.shape != expected:
                raise ConfigError(f"{self.source}: learned tolerance version {tolerance.version} is "
                                  f"{tolerance.factor.shape[1]}x{tolerance.factor.shape[0]}, this bundle's maps "
                                  f"{expected[1]}x{expected[0]}: it was taught on another bundle")
        self.tolerance = tolerance

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
    def _prepare(self, image: np.ndarray, timings: dict[str, float] | None = None,
                 record: dict[str, Any] | None = None) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ConfigError(f"inspect expects a uint8 HxW or HxWx3 image, got "
                              f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
        return prepare_board(image, self.spec, self.registration, timings, record)

    def aligned_board(self, image: np.ndarray) -> np.ndarray:
        """The board as the model sees it before scaling: aligned and light-normalised when the bundle
        registers boards, else unchanged (for overlays and figures)."""
        if self.registration is None:
            return image
        from inspector.core.preprocess import to_channels

        return self.registration.apply(to_channels(image, self.spec.channels))

    def _judge(self, smoothed: np.ndarray, timing: dict[str, float], warp: np.ndarray | None = None,
               group: int = 0) -> np.ndarray:
        """The per-position model and the inspection area, applied to a smoothed map; on registered
        boards, the strip alignment had to make up at the border (the camera did not see it) is cleared."""
        if self.atlas is None and self.roi is None and warp is None:
            return smoothed
        start = time.perf_counter()
        if warp is not None and self.registration is not None:
            seen = self.registration.observed(warp, BORDER_MARGIN_PX)
            if seen.shape != smoothed.shape:
                seen = cv2.resize(seen, (smoothed.shape[1], smoothed.shape[0]), interpolation=cv2.INTER_NEAREST)
            smoothed = cv2.multiply(smoothed, seen)
        if self.atlas is not None:
            smoothed = self.atlas.judge(smoothed, group)
        if self.roi is not None:
            smoothed = cv2.multiply(smoothed, self._roi_at(smoothed.shape))
        timing["atlas"] = (time.perf_counter() - start) * 1e3
        return smoothed

    def _area_on_board(self, analysis: Analysis) -> np.ndarray | None:
        """The inspection area on the board as photographed (for overlays): the bundle's area, less the
        surround the camera sees (fixture parts, clamps, glare: never judged); None for the whole image."""
        surround = None
        if analysis.warp is not None and self.registration is not None and self.registration.surround is not None:
            surround = self.registration.surround.camera
        if self.roi is None and surround is None:
            return None
        height, width = analysis.input_shape
        if self.roi is None:
            area = np.full((height, width), 255, np.uint8)
        else:
            area = self.roi if self.roi.shape == (height, width) else cv2.resize(self.roi, (width, height),
                                                                                  interpolation=cv2.INTER_NEAREST)
            if analysis.warp is not None:
                area = cv2.warpAffine(area, analysis.warp.astype(np.float32), (width, height),
                                      flags=cv2.INTER_NEAREST)
        if surround is not None:  # already where the camera sees it
            if surround.shape != (height, width):
                surround = cv2.resize(surround, (width, height), interpolation=cv2.INTER_NEAREST)
            area = cv2.bitwise_and(area, cv2.bitwise_not(surround))
        return area

    def _roi_at(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._roi_work is None or self._roi_work.shape != shape:
            assert self.roi is not None
            mask = cv2.resize(self.roi, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
            self._roi_work = (mask > 127).astype(np.float32)
        return self._roi_work

    def analyse(self, images: Sequence[np.ndarray]) -> list[Analysis]:
        """Preprocess, run the model (grouping same-size images), raw smoothed error maps."""
        return self.analyse_prepared(self.prepare(images))

    def prepare(self, images: Sequence[np.ndarray]) -> list[PreparedBoard]:
        """Align, light-normalise, scale and pad each board (RegistrationError, with the board's index in
        a batch, when one cannot be aligned). Apart from the model call so it can run beside it."""
        prepared: list[PreparedBoard] = []
        for index, image in enumerate(images):
            start = time.perf_counter()
            timing: dict[str, float] = {}
            record: dict[str, Any] = {}
            try:
                tensor = self._prepare(image, timing, record)
            except RegistrationError as exc:
                if len(images) > 1:
                    exc.index = index  # type: ignore[attr-defined]  # which board of the batch
                raise
            padded, working = pad_to_multiple(tensor, self.spec.pad_multiple)
            fixture_ms = timing.get("register", 0.0) + timing.get("photometric", 0.0)
            timing["preprocess"] = (time.perf_counter() - start) * 1e3 - fixture_ms
            prepared.append(PreparedBoard(image.shape[:2], padded, working, timing, record.get("warp"),
                                          int(record.get("group", 0))))
        return prepared

    def analyse_prepared(self, boards: Sequence[PreparedBoard]) -> list[Analysis]:
        """The model call (same-size boards in one batch) and the raw smoothed error maps."""
        reconstructions: list[np.ndarray | None] = [None] * len(boards)
        graph_errors: list[np.ndarray | None] = [None] * len(boards)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, board in enumerate(boards):
            groups.setdefault(board.tensor.shape, []).append(index)
        for indices in groups.values():
            start = time.perf_counter()
            outputs: list[tuple[np.ndarray, np.ndarray | None]]
            if not self.network:  # the reference comparison: the map is computed below, on the CPU
                outputs = [(self.expectation(boards[i].tensor), None) for i in indices]
            elif self.spec.tile_size:  # stitched reconstructions; the map is computed below, on the CPU
                outputs = [
                    (self._reconstruct_tiled(boards[i].tensor), None) for i in indices]
            else:
                outputs = self._run_chunks(np.stack([boards[i].tensor for i in indices]))
            share = (time.perf_counter() - start) * 1e3 / len(indices)
            for i, (output, error) in zip(indices, outputs):
                reconstructions[i] = output
                graph_errors[i] = error
                boards[i].timings["inference"] = share
        analyses = []
        for board, recon, error in zip(boards, reconstructions, graph_errors):
            start = time.perf_counter()
            assert recon is not None
            height, width = board.working
            recon = recon[:, :height, :width]
            if error is not None:
                raw = np.ascontiguousarray(error[0, :height, :width])
            else:
                raw = scoring.error_map(board.tensor[:, :height, :width], np.ascontiguousarray(recon), self.scoring)
            smoothed = self._judge(scoring.smooth(raw, self.scoring.smooth_sigma), board.timings, board.warp, board.group)
            board.timings["postprocess"] = (time.perf_counter() - start) * 1e3
            analyses.append(Analysis(board.input_shape, smoothed, recon, board.timings, board.warp, board.group))
        return analyses

    @property
    def judged_per_position(self) -> bool:
        """Registered boards get no edge allowance: their per-position model judges the border too,
        and the strip alignment makes up at the border is cleared (`_judge`)."""
        return self.atlas is not None or self.registration is not None

    def anomaly_map(self, analysis: Analysis, pixel_scale: float | None = None,
                    edges: EdgeAllowance | None = None) -> np.ndarray:
        """Calibrated-scale map at the input resolution (`edges`: the edge allowance to divide out;
        the bundle's own is `self.edges`)."""
        smoothed = analysis.smoothed if edges is None else edges.apply(analysis.smoothed)
        normalised = scoring.normalise(smoothed, pixel_scale or self.pixel_scale)
        height, width = analysis.input_shape
        if normalised.shape != (height, width):
            normalised = cv2.resize(normalised, (width, height), interpolation=cv2.INTER_LINEAR)
        if analysis.warp is not None:  # from the reference frame back onto the board as photographed
            normalised = cv2.warpAffine(normalised, analysis.warp.astype(np.float32), (width, height),
                                        flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
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
        amap = self.anomaly_map(analysis, edges=self.edges)
        untolerated = amap
        if self.tolerance is not None:
            amap = self.anomaly_map(replace(analysis, smoothed=self.tolerance.apply(analysis.smoothed)), edges=self.edges)
        score = scoring.image_score(amap, self.scoring)
        regions = scoring.regions_at(amap, self.pixel_threshold, self.scoring, self.config.min_region_area)
        silenced = self._silenced(untolerated, regions) if self.tolerance is not None else []
        verdict = scoring.decide_verdict(score, self.image_threshold, regions, self.config.review_band)
        recon = self._reconstruction_image(analysis) if self.config.save_reconstruction else None
        timings = dict(analysis.timings)
        timings["postprocess"] += (time.perf_counter() - start) * 1e3
        timings["total"] = (timings["preprocess"] + timings["inference"] + timings["postprocess"]
                            + timings.get("register", 0.0) + timings.get("photometric", 0.0))
        return InspectionResult(score=score, threshold=self.image_threshold, verdict=verdict, regions=regions,
                                inspection_area=self._area_on_board(analysis),
                                anomaly_map=amap, reconstruction=recon, model_hash=self.model_hash,
                                calibration_version=self.calibration_version, timings_ms=timings,
                                threshold_source=self.threshold_source,
                                pixel_threshold=self.pixel_threshold, warp=analysis.warp,
                                silenced_regions=silenced, tolerance_version=self.tolerance_version)

    def _silenced(self, untolerated: np.ndarray, shown: list[Region]) -> list[Region]:
        """Regions the map without the learned tolerance shows that the tolerated map does not."""
        if cv2.minMaxLoc(untolerated)[1] < self.pixel_threshold:
            return []
        every = scoring.regions_at(untolerated, self.pixel_threshold, self.scoring, self.config.min_region_area)
        return [region for region in every if not any(_boxes_meet(region.bbox, other.bbox) for other in shown)]

    # ---------------------------------------------------------------- public API
    def inspect(self, image: np.ndarray) -> InspectionResult:
        return self.inspect_batch([image])[0]

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        """Results in input order; RegistrationError (an InspectorError) when a board of the batch
        cannot be aligned to the reference: `inspect_each` reports it per board instead."""
        return self.results(self.analyse(images))

    def results(self, analyses: Sequence[Analysis]) -> list[InspectionResult]:
        """Verdicts for analysed boards: `inspect_batch` is `results(analyse(images))`, split in two so
        the scoring of one batch can run beside the model call of the next (core/overlap.py)."""
        return [self._result(analysis) for analysis in analyses]

    def inspect_each(self, images: Sequence[np.ndarray]) -> list[InspectionResult | RegistrationError]:
        """Like inspect_batch, but a board that cannot be aligned gets its RegistrationError (the reason
        for its error verdict) in its place while the others are inspected."""
        try:
            return list(self.inspect_batch(images))
        except RegistrationError as exc:
            if len(images) == 1:
                return [exc]
        outcomes: list[InspectionResult | RegistrationError] = []
        for image in images:
            try:
                outcomes.append(self.inspect_batch([image])[0])
            except RegistrationError as exc:
                outcomes.append(exc)
        return outcomes


def _boxes_meet(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def load_fixture(bundle: Path, manifest: dict[str, Any]
                 ) -> tuple[Registration | None, Atlas | None, np.ndarray | None]:
    """Registration, per-position model and inspection area of a bundle (each None when it has none:
    bundles exported before they existed load and behave as before)."""
    listed = manifest["files"]
    registration = atlas = roi = None
    if REGISTRATION_FILE in listed:
        verify_bundle(bundle, files=(REGISTRATION_FILE, REFERENCE_FILE))
        try:
            spec = RegistrationSpec.from_json((bundle / REGISTRATION_FILE).read_text())
        except ConfigError as exc:
            raise BundleError(f"{bundle / REGISTRATION_FILE}: {exc}") from exc
        reference = cv2.imread(str(bundle / REFERENCE_FILE), cv2.IMREAD_UNCHANGED)
        if reference is None:
            raise BundleError(f"{bundle / REFERENCE_FILE}: unreadable reference board")
        try:
            surround = groups = None
            if SURROUND_FILE in listed:
                verify_bundle(bundle, files=(SURROUND_FILE,))
                surround = Surround.load(bundle / SURROUND_FILE)
            if GROUPS_FILE in listed:
                verify_bundle(bundle, files=(GROUPS_FILE,))
                groups = LightGroups.load(bundle / GROUPS_FILE)
            registration = Registration(spec, reference, surround, groups)
        except ConfigError as exc:
            raise BundleError(f"{bundle}: {exc}") from exc
    if ATLAS_FILE in listed:
        verify_bundle(bundle, files=(ATLAS_FILE,))
        atlas = Atlas.load(bundle / ATLAS_FILE)
    if ROI_FILE in listed:
        verify_bundle(bundle, files=(ROI_FILE,))
        roi = cv2.imread(str(bundle / ROI_FILE), cv2.IMREAD_GRAYSCALE)
        if roi is None:
            raise BundleError(f"{bundle / ROI_FILE}: unreadable inspection area")
    return registration, atlas, roi
