"""What a bundle tells people about its model: the loss (or explained-variance) plot and MODEL_CARD.md.

Apart from export.py, which writes the bundle, so the pipeline reads as its steps and the wording of
the card lives in one place.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inspector import __version__
from inspector.bundle.files import NETWORK_FIGURE_FILE
from inspector.quality.cpu import cpu_features, describe
from training.checkpoint import Checkpoint
from training.fixture import model_card_lines
from training.pca import FAMILY as PCA_FAMILY


def loss_plot(history: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = [h["epoch"] for h in history]
    axis.plot(epochs, [h["train_loss"] for h in history], label="train")
    axis.plot(epochs, [h["val_loss"] for h in history], label="validation (held-back boards)")
    axis.set_xlabel("epoch")
    axis.set_ylabel("loss")
    axis.set_yscale("log")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def network_figure(engine: Any, board: np.ndarray, path: Path) -> None:
    """What the network adds on one held-back good board of a fixtured design, for people: the board as
    the network sees it (aligned, light-normalised), its difference from the reference (what the plain
    reference comparison judges), what the network redrew of that difference, and the error left (what
    is judged instead). Same colour scale for the three differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inspector.core.preprocess import to_channels
    from inspector.core.scoring import error_map

    prepared = engine.prepare([board])[0]
    height, width = prepared.working
    expected = engine.expectation(prepared.tensor)[:, :height, :width]
    tensor = prepared.tensor[:, :height, :width]
    reconstruction = engine.run_model(prepared.tensor[None])[0][0][:, :height, :width]
    difference = np.abs(tensor - expected).max(axis=0)
    redrawn = np.abs(reconstruction - expected).max(axis=0)
    left = np.sqrt(error_map(np.ascontiguousarray(tensor), np.ascontiguousarray(reconstruction), engine.scoring))
    aligned = engine.registration.apply(to_channels(board, engine.spec.channels), residual=False)
    top = float(np.quantile(difference, 0.999)) or 1.0
    figure, axes = plt.subplots(1, 4, figsize=(16, 4.9), dpi=70)
    panels = [(aligned[..., ::-1] if aligned.ndim == 3 else aligned, "board (aligned, light-normalised)", None),
              (difference, "difference from the reference\n(what the reference comparison judges)", top),
              (redrawn, "what the network redrew of it\n(good variation it expects here)", top),
              (left, "error left (what is judged)", top)]
    for axis, (image, title, scale) in zip(axes, panels):
        axis.imshow(image, cmap=None if scale is None else "inferno", vmin=0, vmax=scale)
        axis.set_title(title, fontsize=10)
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def variance_plot(explained: list[float], components: int, path: Path) -> None:
    """The patch PCA's counterpart of the loss curve: cumulative explained variance per component."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4), dpi=100)
    cumulative = np.cumsum(explained)
    axis.plot(np.arange(1, len(cumulative) + 1), cumulative, label="cumulative explained variance")
    axis.axvline(components, color="tab:red", linestyle="--", label=f"{components} components kept")
    axis.set_xlabel("principal components of training patches")
    axis.set_ylabel("share of patch variance")
    axis.set_xscale("log")
    axis.set_ylim(0, 1)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _model_lines(checkpoint: Checkpoint, metrics: dict[str, Any]) -> list[str]:
    arch = checkpoint["architecture"]
    config = checkpoint["config"]
    if arch.get("family") == PCA_FAMILY:
        fit = checkpoint["fit"]
        return [
            f"- Model: patch PCA, {arch['components']} components of {arch['patch']} px patches at stride "
            f"{arch['stride']} ({metrics['params']} parameters), explaining "
            f"{fit['explained_variance_share']:.1%} of the training patch variance",
            f"- Fit: {fit['patches']} patches in {metrics['train_seconds']:.0f} s; reconstruction MSE "
            f"{fit['train_mse']:.6f} on training boards, {metrics['best_val_loss']:.6f} on held-back boards",
        ]
    settings = ", ".join(f"{k}={config[k]}" for k in ("loss", "denoising", "crop_size", "width", "depth",
                                                       "latent_channels", "epochs", "max_minutes", "seed"))
    return [
        f"- Model: {metrics['params']} parameters, {arch['depth']} stride-2 stages, "
        f"latent {arch['latent_channels']} channels",
        f"- Settings: {settings}",
        f"- Training: {metrics['epochs']} epochs in {metrics['train_seconds']:.0f} s "
        f"(stopped: {metrics['stopped_reason']}); best validation loss {metrics['best_val_loss']:.6f} "
        f"at epoch {metrics['best_epoch']}",
        *cap_lines(checkpoint, metrics),
        *_hard_crop_lines(checkpoint),
        *_average_lines(checkpoint),
    ]


def _average_lines(checkpoint: Checkpoint) -> list[str]:
    kept = checkpoint.get("weight_average")
    if not kept:
        return []
    return [f"- Weights: moving average of the training steps' weights (decay {kept['decay']:g}, "
            f"{int(kept['steps'])} steps); validation, the best epoch and the exported model use it"]


def _hard_crop_lines(checkpoint: Checkpoint) -> list[str]:
    log = checkpoint.get("hard_crops")
    if not log:
        return []
    return [f"- Hard crops: training boards rescored at epoch(s) {', '.join(str(int(r['epoch'])) for r in log)} "
            f"({sum(r['seconds'] for r in log):.0f} s in all; {int(log[-1]['hot_cells'])} hot cells at the last)"]


def cap_lines(checkpoint: Checkpoint, metrics: dict[str, Any]) -> list[str]:
    """Whether the wall-clock cap cut the run short of its planned epochs, for the model card."""
    planned = int(checkpoint["config"].get("epochs", metrics["epochs"]))
    cap = checkpoint["config"].get("max_minutes")
    if metrics["stopped_reason"] != "time budget" or metrics["epochs"] >= planned:
        if metrics["stopped_reason"] == "early stopping" or cap is None:
            return []
        return [f"- Time cap: not reached; all {planned} planned epochs ran (the {cap:g}-minute cap is a safety limit)"]
    line = (f"- Time cap: the {cap:g}-minute cap ended training at epoch "
            f"{metrics['epochs']} of the {planned} planned")
    forecast = checkpoint.get("cap_forecast")
    if forecast:
        line += (f" ({forecast['seconds_per_epoch']:.1f} s per epoch here; all epochs needed about "
                 f"{forecast['minutes_needed']:g} min). Quality may be below the default's measured figures")
    return [line]


def _precision_line(metrics: dict[str, Any]) -> str:
    quantisation = metrics.get("quantisation")
    if not quantisation:
        return "- Precision: float32"
    if quantisation["precision"] == "int8":
        return (f"- Precision: int8, scheme {quantisation.get('scheme', 'u8s8')} (static, activation ranges from "
                f"{quantisation['range_boards']} good boards); "
                f"reconstructions differ from float32 by {quantisation['reconstruction_mean_abs_diff']:.4f} on average "
                f"over {quantisation['boards']} good boards")
    return f"- Precision: float32 (int8 refused, scheme {quantisation.get('scheme', 'u8s8')}: {quantisation['refused']})"


def _edge_line(calibration: dict[str, Any]) -> list[str]:
    """QA should know how much more a defect at the border must show than one in the middle."""
    edges = calibration.get("edge_allowance")
    if not edges:
        return []
    factors = edges["factors"]
    return [f"- Edge allowance (part of the calibration): the map is divided by up to {max(factors):.2f} within "
            f"{edges['reach_px']} px of the image border ({factors[0]:.2f} at the border; good boards' "
            f"q{edges['quantile']:g} there against the interior's)"]


def _line_lines(calibration: dict[str, Any]) -> list[str]:
    """Which boards set the lines, and how far another set of as many good boards could move them."""
    stats = calibration["stats"]
    lines = []
    if stats.get("out_of_fold_images"):
        lines.append(f"- Lines set on {stats['images']} good boards: {stats['images'] - stats['out_of_fold_images']} "
                     f"held back and {stats['out_of_fold_images']} training boards judged out of fold (reference and "
                     "per-position model fitted without each board's fold)")
    spread = stats.get("line_spread")
    if spread:
        region, image = spread["region_line_p10_p90"], spread["image_line_p10_p90"]
        lines.append(f"- How uncertain the lines are ({spread['boards']} boards drawn again 400 times, 10th-90th "
                     f"percentile): region line {region[0]:.3g}-{region[1]:.3g}, fail line {image[0]:.3g}-{image[1]:.3g}; "
                     f"hottest good boards' maxima {', '.join(f'{v:.3g}' for v in spread['hottest_maxima'])}")
    return lines


def _gain_lines(metrics: dict[str, Any]) -> list[str]:
    """What the network adds over the plain reference comparison (fixtured designs; inspector/quality/gain.py)."""
    gain = metrics.get("network_gain")
    if not gain:
        return []
    return [f"- What the network adds: {gain['sentence']} (error tail {gain['reference_tail']:.3g} -> "
            f"{gain['network_tail']:.3g}; {NETWORK_FIGURE_FILE} shows one board); `inspector evaluate --no-network` "
            "measures the reference comparison with its own per-position model and lines"]


def model_card(checkpoint: Checkpoint, metrics: dict[str, Any], calibration: dict[str, Any],
                atlas: Any = None) -> str:
    data = checkpoint["data"]
    family = "patch PCA baseline" if checkpoint["architecture"].get("family") == PCA_FAMILY else "autoencoder"
    return "\n".join([
        f"# Model card: board-inspector {family}",
        "",
        f"- Created: {metrics['created_at']} (board-inspector {__version__}) on {describe(cpu_features())}",
        f"- Training data: `{data['path']}` — {data['train_count']} good boards for training, "
        f"{data['holdout_count']} held back (validation + calibration)",
        f"- Training data sha256: `{data['sha256']}`",
        f"- Input: {checkpoint['architecture']['in_channels']} channel(s), "
        f"scale {json.loads(checkpoint['preprocess_spec'])['scale']}",
        *model_card_lines(checkpoint, atlas),
        *_model_lines(checkpoint, metrics),
        f"- Export parity (torch vs ONNX Runtime): max abs diff {metrics['parity_max_abs_diff']:.2e}",
        _precision_line(metrics),
        f"- Calibration v{calibration['version']} on {calibration['stats']['images']} held-back good boards: "
        f"image threshold {calibration['image_threshold']:.4f}, pixel threshold {calibration['pixel_threshold']:.4f}, "
        f"target false-alarm rate {calibration['target_false_alarm_rate']:g} "
        f"({calibration['stats']['image_threshold_rule']}); region line: "
        f"{calibration['stats'].get('pixel_threshold_rule', 'not recorded')}",
        *_edge_line(calibration),
        *_line_lines(calibration),
        *_gain_lines(metrics),
        "",
        "Detection quality on labelled boards: run `inspector evaluate`.",
        "",
    ])
