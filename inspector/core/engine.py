"""The inference engine: a verified bundle, one ONNX Runtime session, anomaly maps and verdicts.

Torch-free: a line PC runs this with ONNX Runtime and OpenCV only. Training calibrates through
this same class (`Inspector.uncalibrated`), so calibration and the line compute scores with
identical code.

One way in, three stages: `prepare` (align, light-normalise, scale, pad: `PreparedBoard`) -> `run`
(the model call and the raw smoothed map: `Analysis`) -> `judge` (calibrated map, score, regions,
verdict: `InspectionResult`; in core/judge.py with the thresholds and learned tolerance it judges
with). `inspect_batch`, `inspect`, `inspect_each` and `analyse` are compositions of them; the stages
are apart so one batch's judging can overlap the next one's model call (core/overlap.py).
"""

from __future__ import annotations

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
    CALIBRATION_FILE,
    META_PREPROCESS,
    META_SCORING,
    MODEL_FILE,
    REFERENCE_ATLAS_FILE,
    REFERENCE_CALIBRATION_FILE,
    SELFTEST_FILE,
    check_metadata,
    verify_bundle,
)
from inspector.bundle.tensors import ERROR_OUTPUT, INPUT_NAME, OUTPUT_NAME
from inspector.config import InspectConfig
from inspector.core import scoring, selftest
from inspector.core.atlas import Atlas
from inspector.core.fixture import load_fixture
from inspector.core.interface import Analysis, Calibration, PreparedBoard, Timings
from inspector.core.judge import JudgeStage
from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, prepare_board, preprocess
from inspector.core.registration import Registration, RegistrationError
from inspector.core.results import InspectionResult
from inspector.core.session import open_session
from inspector.core.tiling import reconstruct_tiled
from inspector.errors import BundleError, ConfigError, InspectorError

# Registered boards: error within this many px of where alignment made up the border is not judged
# (reflected pixels there differ from the reference; the network's field of view spreads them a little).
BORDER_MARGIN_PX = 4


class Inspector(JudgeStage):
    """A loaded bundle ready to inspect board images."""

    def __init__(self, session: ort.InferenceSession, spec: PreprocessSpec, scoring_spec: scoring.ScoringSpec,
                 calibration: Calibration | None, model_hash: str, config: InspectConfig, source: str,
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
        self.tolerance = None

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

    def use_network(self, on: bool, calibration: Calibration | None = None, atlas: Atlas | None = None) -> None:
        """Switch the network off (its output replaced by the good expectation) or on, with the thresholds
        and per-position model set on that pipeline's own maps (`calibration` None: uncalibrated)."""
        if not on:
            self.expectation_kind_or_error()
        self.network = on
        self.atlas = atlas
        self._set_calibration(calibration)

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
        calibration = Calibration.from_record(read_calibration(bundle / CALIBRATION_FILE)[-1], str(bundle / MODEL_FILE))
        registration, atlas, roi = load_fixture(bundle, manifest)
        engine = cls._open(bundle / MODEL_FILE, manifest["files"][MODEL_FILE]["sha256"], calibration, config,
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
            reference = read_calibration(bundle / REFERENCE_CALIBRATION_FILE)[-1]
            engine.use_network(False, Calibration.from_record(reference, str(bundle / MODEL_FILE)), reference_atlas)
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
    def _open(cls, model_path: Path, model_hash: str, calibration: Calibration | None,
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

    # ---------------------------------------------------------------- analysis
    def _prepare(self, image: np.ndarray, timings: dict[str, float] | None = None,
                 record: dict[str, Any] | None = None) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ConfigError(f"inspect expects a uint8 HxW or HxWx3 image, got "
                              f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}")
        return prepare_board(image, self.spec, self.registration, timings, record)

    def _judge_positions(self, smoothed: np.ndarray, warp: np.ndarray | None = None,
                         group: int = 0) -> tuple[np.ndarray, float | None]:
        """The per-position model and the inspection area, applied to a smoothed map; on registered
        boards, the strip alignment had to make up at the border (the camera did not see it) is cleared.
        With what it cost in ms (None: the bundle has none of them)."""
        if self.atlas is None and self.roi is None and warp is None:
            return smoothed, None
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
        return smoothed, (time.perf_counter() - start) * 1e3

    def _roi_at(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._roi_work is None or self._roi_work.shape != shape:
            assert self.roi is not None
            mask = cv2.resize(self.roi, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
            self._roi_work = (mask > 127).astype(np.float32)
        return self._roi_work

    # ---------------------------------------------------------------- stage 1: prepare
    def prepare(self, images: Sequence[np.ndarray]) -> list[PreparedBoard]:
        """Align, light-normalise, scale and pad each board (RegistrationError, with the board's index in
        a batch, when one cannot be aligned). Apart from the model call so it can run beside it."""
        prepared: list[PreparedBoard] = []
        for index, image in enumerate(images):
            start = time.perf_counter()
            fixture_ms: dict[str, float] = {}  # registration and light normalisation fill it
            record: dict[str, Any] = {}
            try:
                tensor = self._prepare(image, fixture_ms, record)
            except RegistrationError as exc:
                if len(images) > 1:
                    exc.index = index  # type: ignore[attr-defined]  # which board of the batch
                raise
            padded, working = pad_to_multiple(tensor, self.spec.pad_multiple)
            register, photometric = fixture_ms.get("register"), fixture_ms.get("photometric")
            preprocess_ms = (time.perf_counter() - start) * 1e3 - ((register or 0.0) + (photometric or 0.0))
            timings = Timings(register=register, photometric=photometric, preprocess=preprocess_ms)
            prepared.append(PreparedBoard(image.shape[:2], padded, working, timings, record.get("warp"),
                                          int(record.get("group", 0))))
        return prepared

    # ---------------------------------------------------------------- stage 2: run
    def run(self, boards: Sequence[PreparedBoard]) -> list[Analysis]:
        """The model call (same-size boards in one batch) and the raw smoothed error maps."""
        outputs = self._model_outputs(boards)
        analyses = []
        for board, (recon, error, inference_ms) in zip(boards, outputs):
            start = time.perf_counter()
            height, width = board.working
            recon = recon[:, :height, :width]
            if error is not None:
                raw = np.ascontiguousarray(error[0, :height, :width])
            else:
                raw = scoring.error_map(board.tensor[:, :height, :width], np.ascontiguousarray(recon), self.scoring)
            smoothed, atlas_ms = self._judge_positions(scoring.smooth(raw, self.scoring.smooth_sigma), board.warp,
                                                       board.group)
            timings = replace(board.timings, inference=inference_ms, atlas=atlas_ms,
                              postprocess=(time.perf_counter() - start) * 1e3)
            analyses.append(Analysis(board.input_shape, smoothed, recon, timings, board.warp, board.group))
        return analyses

    def _model_outputs(self, boards: Sequence[PreparedBoard]) -> list[tuple[np.ndarray, np.ndarray | None, float]]:
        """(reconstruction, graph error map or None, ms: its batch's share) per board, in order."""
        outputs: list[tuple[np.ndarray, np.ndarray | None, float] | None] = [None] * len(boards)
        groups: dict[tuple[int, ...], list[int]] = {}
        for index, board in enumerate(boards):
            groups.setdefault(board.tensor.shape, []).append(index)
        for indices in groups.values():
            start = time.perf_counter()
            pairs: list[tuple[np.ndarray, np.ndarray | None]]
            if not self.network:  # the reference comparison: the map is computed in `run`, on the CPU
                pairs = [(self.expectation(boards[i].tensor), None) for i in indices]
            elif self.spec.tile_size:  # stitched reconstructions; the map is computed in `run`, on the CPU
                pairs = [(reconstruct_tiled(boards[i].tensor, self.spec, self._reconstruct_chunks), None)
                         for i in indices]
            else:
                pairs = self._run_chunks(np.stack([boards[i].tensor for i in indices]))
            share = (time.perf_counter() - start) * 1e3 / len(indices)
            for i, (output, error) in zip(indices, pairs):
                outputs[i] = (output, error, share)
        return [output for output in outputs if output is not None]

    # ---------------------------------------------------------------- stage 3: judge
    # `judge`, with the thresholds and learned tolerance it judges with: `JudgeStage` (core/judge.py).

    # ---------------------------------------------------------------- the stages composed
    def analyse(self, images: Sequence[np.ndarray]) -> list[Analysis]:
        """`run(prepare(images))`: raw maps before thresholds (calibration, the self-test, teaching)."""
        return self.run(self.prepare(images))

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        """`judge(run(prepare(images)))`: results in input order; RegistrationError (an InspectorError)
        when a board of the batch cannot be aligned to the reference: `inspect_each` reports it per board."""
        return self.judge(self.run(self.prepare(images)))

    def inspect(self, image: np.ndarray) -> InspectionResult:
        """`inspect_batch` of one board."""
        return self.inspect_batch([image])[0]

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
