"""Export a trained autoencoder as a runtime bundle: ONNX + metadata + parity check + calibration.

The bundle is written into `<out>.tmp-XXXX` and renamed over `<out>` only when complete, so a
crash or a failed parity check never leaves a half bundle where the line looks for one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from tqdm import tqdm

from inspector import __version__
from inspector.bundle.calibration import new_version, read_calibration, write_calibration
from inspector.bundle.files import (
    ATLAS_FILE,
    CALIBRATION_FILE,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOSS_PLOT_FILE,
    META_ARCH,
    META_CREATED,
    META_DATA_HASH,
    META_PREPROCESS,
    META_SCORING,
    META_VERSION,
    METRICS_FILE,
    MODEL_CARD_FILE,
    MODEL_FILE,
    NETWORK_FIGURE_FILE,
    REFERENCE_ATLAS_FILE,
    REFERENCE_CALIBRATION_FILE,
    SELFTEST_FILE,
    recorded_precision,
    write_manifest,
)
from inspector.bundle.tensors import ERROR_OUTPUT, INPUT_NAME, OUTPUT_NAME
from inspector.config import InspectConfig
from inspector.core import selftest
from inspector.core.calibration import analyse_in_batches, calibrate_analyses
from inspector.core.engine import Inspector
from inspector.core.imageio import load_image
from inspector.core.preprocess import PreprocessSpec, pad_to_multiple, prepare_board
from inspector.core.registration import Registration
from inspector.core.scoring import ScoringSpec
from inspector.errors import BundleError
from inspector.quality.cpu import cpu_features, describe
from inspector.quality.gain import NetworkGain, network_gain
from training.checkpoint import Checkpoint, StateKey, load_checkpoint
from training.fixture import atlas_wanted, fit_bundle_atlas, registration_of, roi_of, write_fixture_files
from training.folds import out_of_fold_analyses
from training.model import Architecture, ConvAutoencoder, ReferenceInput, set_reference
from training.model_card import loss_plot, model_card, network_figure, variance_plot
from training.pca import FAMILY as PCA_FAMILY
from training.pca import PatchPCA, build_patch_pca
from training.quantize import CALIBRATION_TENSORS, MAX_MEAN_ABS_DIFF, agreement, check_precision, quantize_int8
from training.scored import ScoredModel

ExportedModel = ConvAutoencoder | PatchPCA | ScoredModel

ONNX_OPSET = 18
PARITY_TOLERANCE = 1e-4


def export_onnx(model: ExportedModel, path: Path, metadata: dict[str, str]) -> None:
    """torch.onnx (dynamo exporter) with dynamic batch/height/width, then metadata_props.

    Measured on the default model (0.5M params), 640x640 gray, ONNX Runtime CPU, one thread:
    dynamo graph 25 nodes, median 153 ms; legacy TorchScript graph 29 nodes, 160 ms. Dynamo is
    also the maintained path, and its symbolic H/W (`16*h`) states the stride constraint in the
    graph itself. Its only cost is export time (~4 s vs 0.2 s).
    """
    model = model.cpu().eval()
    arch: Any = model.arch  # every exported family carries its architecture record
    stride = arch.total_stride
    # The patch PCA reflect-pads inside the graph, which needs inputs larger than the padding.
    min_blocks = getattr(arch, "min_blocks", 1)
    example = torch.rand(1, arch.in_channels, (min_blocks + 1) * stride, (min_blocks + 1) * stride)
    batch = torch.export.Dim("batch", min=1, max=4096)
    height = torch.export.Dim("height_blocks", min=min_blocks, max=16384 // stride)
    width = torch.export.Dim("width_blocks", min=min_blocks, max=16384 // stride)
    shapes: dict[int, Any] = {0: batch, 2: stride * height, 3: stride * width}
    reference = next((m for m in model.modules() if isinstance(m, ReferenceInput)), None)
    if reference is not None:  # the reference is a constant of the graph: boards are always its size
        example = torch.rand(1, arch.in_channels, *reference.reference.shape[2:])
        shapes = {0: batch}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=ONNX_OPSET,
                          input_names=[INPUT_NAME], output_names=_output_names(model), verbose=False,
                          dynamic_shapes={"x": shapes})
    graph = onnx.load(str(path))
    del graph.metadata_props[:]
    for key, value in metadata.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    onnx.save(graph, str(path))
    stray = Path(str(path) + ".data")  # the exporter may spill weights; the bundle is one file
    stray.unlink(missing_ok=True)


def _output_names(model: ExportedModel) -> list[str]:
    return [OUTPUT_NAME, ERROR_OUTPUT] if getattr(model, "graph_error", False) else [OUTPUT_NAME]


def check_parity(model: ExportedModel, onnx_path: Path, images: list[np.ndarray], spec: PreprocessSpec,
                 registration: Registration | None = None) -> float:
    """Torch vs ONNX Runtime on real preprocessed images plus one other size, every output (the
    error map is compared relative to its largest value); BundleError above tolerance."""
    engine = Inspector.uncalibrated(onnx_path, InspectConfig(providers="cpu"))
    inputs = [pad_to_multiple(prepare_board(image, spec, registration), spec.pad_multiple)[0] for image in images]
    first = inputs[0]
    stride = spec.pad_multiple
    # A different size proves the dynamic axes (also a different batch size: 2).
    h = max(stride, (first.shape[1] // 2) // stride * stride)
    w = max(stride, (first.shape[2] * 3 // 4) // stride * stride)
    other = np.stack([first[:, :h, :w], first[:, -h:, -w:]])
    if any(isinstance(m, ReferenceInput) for m in model.modules()):  # boards are always the reference's size
        other = np.stack([first, inputs[-1]])
    worst = 0.0
    model = model.cpu().eval()
    with torch.no_grad():
        for batch in [tensor[None] for tensor in inputs] + [other]:
            expected = model(torch.from_numpy(np.ascontiguousarray(batch)))
            expected = [t.numpy() for t in expected] if isinstance(expected, tuple) else [expected.numpy()]
            got = [output for output in engine.run_model(batch) if output is not None]
            if [g.shape for g in got] != [e.shape for e in expected]:
                raise BundleError(f"{onnx_path}: ONNX output shapes {[g.shape for g in got]} != torch "
                                  f"{[e.shape for e in expected]}")
            for index, (ours, theirs) in enumerate(zip(got, expected)):
                scale = 1.0 if index == 0 else max(1.0, float(np.abs(theirs).max()))
                worst = max(worst, float(np.abs(ours - theirs).max()) / scale)
    if worst > PARITY_TOLERANCE:
        raise BundleError(f"{onnx_path}: ONNX Runtime differs from torch by {worst:.2e} (> {PARITY_TOLERANCE:g})")
    return worst


def _recorded_training_boards(checkpoint: Checkpoint, channels: int) -> list[np.ndarray] | None:
    """The good training boards a checkpoint records, when every one is still on disk."""
    paths = [Path(p) for p in checkpoint["data"].get("train_paths", [])]  # older checkpoints lack them
    if not paths or not all(p.is_file() for p in paths):
        return None
    return [load_image(p, channels=channels) for p in paths]


def _fixture_metrics(checkpoint: Checkpoint, registration: Registration | None, atlas: Any,
                     roi: np.ndarray | None) -> dict[str, Any]:
    fixture = checkpoint["fixture"]
    return {"registration": fixture["decision"],
            "registration_limits": (json.loads(registration.spec.to_json()) if registration is not None else None),
            "atlas": atlas.describe() if atlas is not None else None,
            "atlas_reason": fixture["atlas"]["reason"],
            "roi_pixels": int((roi > 0).sum()) if roi is not None else None}


def _replace_dir(temp: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f"{out.name}.old-{datetime.now().strftime('%Y%m%d%H%M%S%f')}")
        out.rename(old)
        temp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        temp.rename(out)


def _quantize(model_path: Path, tensors: list[np.ndarray], scheme: str, pixel_std: float = 1.0) -> dict[str, Any]:
    """Replace the float32 graph at `model_path` by its INT8 version when the two agree on good boards.

    Runs after the torch parity check (which proves the float32 graph) and before calibration, so the
    thresholds are set on the graph the line will run. The agreement is judged in [0, 1] pixel units:
    `pixel_std` is the preprocessing's std (a standardised board difference is 20x its pixel units, and
    its 0.0029 of a pixel's range was refused as 0.058 before that was taken into account).
    """
    float_path = model_path.with_name("float32-" + model_path.name)
    model_path.rename(float_path)
    try:
        quantize_int8(float_path, model_path, tensors, scheme)
        figures = agreement(float_path, model_path, tensors)
    except Exception as exc:  # noqa: BLE001 - any quantiser failure leaves the validated float32 graph
        model_path.unlink(missing_ok=True)
        float_path.rename(model_path)
        return {"precision": "float32", "scheme": scheme, "refused": f"INT8 quantisation failed: {exc}"}
    figures["reconstruction_mean_abs_diff"] *= pixel_std  # in [0, 1] pixel units
    figures["reconstruction_max_abs_diff"] *= pixel_std
    if figures["reconstruction_mean_abs_diff"] > MAX_MEAN_ABS_DIFF:
        model_path.unlink()
        float_path.rename(model_path)
        return {"precision": "float32", "scheme": scheme, **figures,
                "refused": f"INT8 reconstructions differ from float32 by {figures['reconstruction_mean_abs_diff']:.4f} "
                           f"of the pixel range on good boards (> {MAX_MEAN_ABS_DIFF})"}
    float_path.unlink()
    return {"precision": "int8", "scheme": scheme, "range_boards": min(len(tensors), CALIBRATION_TENSORS),
            "exported_on": describe(cpu_features()), **figures}


def build_model(checkpoint: Checkpoint, state_key: StateKey = "best_state") -> ConvAutoencoder | PatchPCA:
    """The bare reconstruction network (training, MAC counts)."""
    if checkpoint["architecture"].get("family") == PCA_FAMILY:
        return build_patch_pca(checkpoint, state_key)
    model = ConvAutoencoder(Architecture.from_dict(checkpoint["architecture"]))
    model.load_state_dict(checkpoint[state_key])
    if model.reference_input is not None:
        registration = registration_of(checkpoint)
        if registration is None:
            raise BundleError("the network takes the reference board beside each board, but the checkpoint has none")
        set_reference(model, registration, PreprocessSpec.from_json(checkpoint["preprocess_spec"]))
    return model.eval()


def build_exported_model(checkpoint: Checkpoint, state_key: StateKey = "best_state") -> ScoredModel:
    """What model.onnx computes: the network, its view averaging and (l2 scoring) the error map."""
    model = build_model(checkpoint, state_key)
    spec = ScoringSpec.from_json(checkpoint["scoring"], "checkpoint scoring")
    return ScoredModel(model, spec, model.arch.total_stride).eval()


def _judge_and_calibrate(engine: Inspector, checkpoint: Checkpoint, atlas_images: list[np.ndarray] | None,
                         calibration_images: list[np.ndarray] | None, atlas_path: Path
                         ) -> tuple[Any, dict[str, Any] | None]:
    """The per-position model (fitted on `atlas_images`, the good training boards, through `engine`, and
    set on it) and the thresholds on `calibration_images` (None without them)."""
    config = checkpoint["config"]
    atlas = None
    if atlas_wanted(checkpoint) and atlas_images:  # the thresholds below are set on maps judged by it
        atlas = fit_bundle_atlas(engine, atlas_images, checkpoint, atlas_path)
        engine.atlas = atlas
    if not calibration_images:
        return atlas, None
    region_rate = config.get("region_false_alarm_rate")
    # Checkpoints from before the count rule (and 0) keep the share line; so do registered
    # designs, whose line was measured as a share (registered_region_false_alarm_rate).
    regions_per_board = config.get("false_regions_per_board") or None
    if engine.registration is not None:
        regions_per_board = None
        region_rate = config.get("registered_region_false_alarm_rate", region_rate)
    analyses = analyse_in_batches(engine, calibration_images)
    folds = int(config.get("calibration_folds", 0))  # checkpoints from before out-of-fold lines: held-back only
    out_of_fold = []
    if folds >= 2 and engine.registration is not None and atlas_images:
        out_of_fold = out_of_fold_analyses(engine, atlas_images, checkpoint["fixture"]["atlas"] if atlas else None,
                                           folds=folds)
    figures = calibrate_analyses(engine, analyses + out_of_fold, target_false_alarm_rate=config["target_false_alarm_rate"],
                                 region_false_alarm_rate=region_rate, false_regions_per_board=regions_per_board,
                                 min_region_area=engine.config.min_region_area, out_of_fold=len(out_of_fold))
    figures["stats"]["data"] = checkpoint["data"]["path"]
    return atlas, figures


def write_bundle(checkpoint: Checkpoint, out: Path, *, calibration_images: list[np.ndarray] | None,
                 previous_calibration: list[dict[str, Any]] | None = None,
                 atlas_images: list[np.ndarray] | None = None) -> dict[str, Any]:
    """Everything a bundle holds, written atomically. Returns metrics.json's content.

    Calibration version 1 is computed on `calibration_images` (held-back good boards); on a
    re-export without them, `previous_calibration` versions are carried over unchanged. A bundle of
    one fixtured design (checkpoint "fixture") also gets its reference board and registration
    settings, its inspection area and (fitted here on `atlas_images`, the good training boards, on
    the graph that ships) its per-position model.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    temp.chmod(0o755)  # mkdtemp's 0700 would hide the bundle from the service user on the line PC
    try:
        registration, roi = registration_of(checkpoint), roi_of(checkpoint)
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        model, parity = _export_checked(checkpoint, temp / MODEL_FILE, created, registration)
        quantisation = _quantise_step(checkpoint, temp / MODEL_FILE, calibration_images, registration)
        # One session on the graph that ships: calibration and the self-test's record see the same maps.
        engine = Inspector.uncalibrated(temp / MODEL_FILE, InspectConfig(providers="cpu"), registration=registration,
                                        roi=roi)
        write_fixture_files(checkpoint, temp)
        atlas_images = _atlas_boards(checkpoint, atlas_images, previous_calibration)
        atlas, versions = _calibrate(engine, checkpoint, atlas_images, calibration_images, previous_calibration, temp)
        gain = _reference_comparison(engine, checkpoint, atlas_images, calibration_images, temp)
        write_calibration(temp / CALIBRATION_FILE, versions)
        # The maps the thresholds were set on, for the line PC to compute again when it loads the bundle.
        selftest.record(engine, calibration_images or _parity_images(checkpoint), temp / SELFTEST_FILE)
        metrics = _metrics(checkpoint, created, model, parity, quantisation, versions[-1], gain,
                           _fixture_metrics(checkpoint, registration, atlas, roi) if "fixture" in checkpoint else None)
        _write_records(checkpoint, metrics, versions[-1], atlas, temp)
        _replace_dir(temp, out)
        return metrics
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def _parity_images(checkpoint: Checkpoint) -> list[np.ndarray]:
    return [image.numpy() for image in checkpoint["parity_images"]]


def _export_checked(checkpoint: Checkpoint, path: Path, created: str,
                    registration: Registration | None) -> tuple[ScoredModel, float]:
    """The float32 graph with its metadata at `path`, and its largest difference from torch."""
    model = build_exported_model(checkpoint)
    metadata = {
        META_PREPROCESS: checkpoint["preprocess_spec"],
        META_SCORING: checkpoint["scoring"],
        META_VERSION: __version__,
        META_CREATED: created,
        META_DATA_HASH: checkpoint["data"]["sha256"],
        META_ARCH: json.dumps(checkpoint["architecture"], sort_keys=True),
    }
    export_onnx(model.for_onnx(), path, metadata)
    spec = PreprocessSpec.from_json(checkpoint["preprocess_spec"])
    return model, check_parity(model, path, _parity_images(checkpoint), spec, registration)


def _quantise_step(checkpoint: Checkpoint, path: Path, calibration_images: list[np.ndarray] | None,
                   registration: Registration | None) -> dict[str, Any] | None:
    """INT8 in place of the graph at `path` when the run asked for it (None: float32 was asked)."""
    config = checkpoint["config"]
    precision = config.get("precision", "float32")  # checkpoints from before INT8 existed
    check_precision(precision)
    if precision != "int8":
        return None
    spec = PreprocessSpec.from_json(checkpoint["preprocess_spec"])
    boards = calibration_images or _parity_images(checkpoint)
    scheme = config.get("int8_scheme", "u8s8")  # bundles trained before the scheme existed were u8s8
    return _quantize(path, [pad_to_multiple(prepare_board(image, spec, registration), spec.pad_multiple)[0]
                            for image in boards], scheme, pixel_std=spec.std)


def _atlas_boards(checkpoint: Checkpoint, atlas_images: list[np.ndarray] | None,
                  previous_calibration: list[dict[str, Any]] | None) -> list[np.ndarray] | None:
    """The good training boards the per-position model is fitted on (a re-export reads them from disk)."""
    if atlas_wanted(checkpoint) and atlas_images is None:
        spec = PreprocessSpec.from_json(checkpoint["preprocess_spec"])
        atlas_images = _recorded_training_boards(checkpoint, spec.channels)
    if atlas_wanted(checkpoint) and not atlas_images and previous_calibration:
        raise BundleError("the training boards this model's per-position model was fitted on are gone, and "
                          "the thresholds carried over were set on judged maps: restore the boards to re-export")
    return atlas_images


def _calibrate(engine: Inspector, checkpoint: Checkpoint, atlas_images: list[np.ndarray] | None,
               calibration_images: list[np.ndarray] | None, previous_calibration: list[dict[str, Any]] | None,
               temp: Path) -> tuple[Any, list[dict[str, Any]]]:
    """The per-position model (set on `engine`) and the calibration versions: new ones set on the
    held-back boards, else the previous bundle's carried over."""
    atlas, figures = _judge_and_calibrate(engine, checkpoint, atlas_images, calibration_images, temp / ATLAS_FILE)
    if figures is not None:
        return atlas, [new_version([], figures, reason="initial calibration on held-back good boards at training",
                                   author="training")]
    if previous_calibration:
        return atlas, previous_calibration
    raise BundleError("no held-back images and no previous calibration.json: cannot calibrate the bundle")


def _reference_comparison(engine: Inspector, checkpoint: Checkpoint, atlas_images: list[np.ndarray] | None,
                          calibration_images: list[np.ndarray] | None, temp: Path) -> NetworkGain | None:
    """The same pipeline with the network's output replaced by the good expectation: its own per-position
    model and lines, so `--no-network` is the reference comparison done as well as it can be; and the
    network's gain over it (None where the bundle has no expectation or no held-back boards)."""
    if engine.expectation_kind is None or not calibration_images:
        return None
    plain = Inspector.uncalibrated(temp / MODEL_FILE, InspectConfig(providers="cpu"),
                                   registration=engine.registration, roi=engine.roi)
    plain.use_network(False)
    _, plain_figures = _judge_and_calibrate(plain, checkpoint, atlas_images, calibration_images,
                                            temp / REFERENCE_ATLAS_FILE)
    assert plain_figures is not None
    write_calibration(temp / REFERENCE_CALIBRATION_FILE, [new_version(
        [], plain_figures, reason="reference comparison (no network), set at training", author="training")])
    gain = network_gain(engine, calibration_images)
    tqdm.write(f"export: {gain.sentence()}")
    network_figure(engine, calibration_images[0], temp / NETWORK_FIGURE_FILE)
    return gain


def _metrics(checkpoint: Checkpoint, created: str, model: ScoredModel, parity: float,
             quantisation: dict[str, Any] | None, latest: dict[str, Any], gain: NetworkGain | None,
             fixture: dict[str, Any] | None) -> dict[str, Any]:
    """metrics.json's content."""
    history = checkpoint["history"]
    return {
        "created_at": created,
        "epochs": checkpoint["epoch"],
        "best_epoch": checkpoint["best_epoch"],
        "best_val_loss": checkpoint["best_val_loss"],
        "train_seconds": checkpoint["train_seconds"],
        "seconds_per_epoch": (sum(h["seconds"] for h in history) / len(history)) if history else 0.0,
        "stopped_reason": checkpoint["stopped_reason"],
        "params": sum(p.numel() for p in model.parameters()),
        "parity_max_abs_diff": parity,
        "precision": quantisation["precision"] if quantisation else "float32",
        **({"quantisation": quantisation} if quantisation else {}),
        **({"fixture": fixture} if fixture is not None else {}),
        "history": history,
        **({"fit": {key: value for key, value in checkpoint["fit"].items() if key != "explained_variance_ratio"}}
           if "fit" in checkpoint else {}),
        **({"network_gain": gain.to_record()} if gain is not None else {}),
        "calibration": {key: latest[key] for key in ("version", "image_threshold", "pixel_threshold",
                                                     "target_false_alarm_rate")},
        "calibration_stats": {key: latest["stats"][key] for key in
                              ("images", "image_score_quantiles", "image_maxima_quantiles")},
    }


def _write_records(checkpoint: Checkpoint, metrics: dict[str, Any], latest: dict[str, Any], atlas: Any,
                   temp: Path) -> None:
    """The resolved config, the metrics, the loss plot, the model card, the checkpoint and the manifest."""
    resolved = dict(checkpoint["config"])
    resolved.update({"preprocess": json.loads(checkpoint["preprocess_spec"]),
                     "scoring": json.loads(checkpoint["scoring"]),
                     "architecture": checkpoint["architecture"], "data": checkpoint["data"]})
    (temp / CONFIG_FILE).write_text(json.dumps(resolved, indent=2, default=str) + "\n")
    (temp / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    if checkpoint["history"]:
        loss_plot(checkpoint["history"], temp / LOSS_PLOT_FILE)
    elif "fit" in checkpoint:
        variance_plot(checkpoint["fit"]["explained_variance_ratio"], checkpoint["architecture"]["components"],
                       temp / LOSS_PLOT_FILE)
    (temp / MODEL_CARD_FILE).write_text(model_card(checkpoint, metrics, latest, atlas))
    torch.save(checkpoint, temp / CHECKPOINT_FILE)
    write_manifest(temp)


def export_from_checkpoint(checkpoint: Path, out: Path, precision: str | None = None) -> Path:
    """Re-export a bundle from checkpoint.pt (ONNX, metadata, parity, calibration, manifest).

    `precision` ("float32" or "int8") overrides the one the model was trained with.

    Calibration is recomputed on the held-back boards recorded in the checkpoint when they are
    still on disk; otherwise the calibration.json beside the checkpoint (its bundle) is kept.
    """
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    if precision is not None:
        check_precision(precision)
    # INT8 may have been refused at export: what the bundle beside the checkpoint actually runs counts.
    shipped = recorded_precision(checkpoint.parent) or state["config"].get("precision", "float32")
    target = precision or state["config"].get("precision", "float32")
    state["config"]["precision"] = target
    holdout = [Path(p) for p in state["data"].get("holdout_paths", [])]
    images = None
    previous = None
    if holdout and all(p.is_file() for p in holdout):
        spec = PreprocessSpec.from_json(state["preprocess_spec"])
        images = [load_image(p, channels=spec.channels) for p in holdout]
    elif target == "int8" or target != shipped:
        # INT8 takes its activation ranges from those boards, and thresholds set on one graph's error
        # maps do not carry over to another's.
        raise BundleError(f"{checkpoint}: the held-back boards it records are gone, so a {target} bundle cannot be "
                          f"quantised or calibrated; restore them, or re-export in float32 from a float32 bundle")
    elif (checkpoint.parent / CALIBRATION_FILE).is_file():
        previous = read_calibration(checkpoint.parent / CALIBRATION_FILE)
    else:
        raise BundleError(f"{checkpoint}: the held-back boards it records are gone and no {CALIBRATION_FILE} "
                          "sits beside it; cannot calibrate the re-exported bundle")
    write_bundle(state, Path(out), calibration_images=images, previous_calibration=previous)
    return Path(out)
