"""`inspector train`'s settings: `TrainConfig`, with its schedule, registration, calibration and
export settings in groups that check their own modes and ranges.

Torch-free, so that a bundle's config.json can be read on a line PC. Bundles and checkpoints record
a config flat (`TrainConfig.record`), as they always have; `from_dict` reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from inspector.config.modes import (
    CHANNEL_ERRORS,
    CHANNELS,
    DEVICES,
    INT8_SCHEMES,
    LOSSES,
    MAX_REGION_MERGE_PX,
    METHODS,
    PRECISIONS,
    SWITCHES,
    VIEW_COUNTS,
    VIEW_KINDS,
    ChannelError,
    Channels,
    Device,
    Int8Scheme,
    Loss,
    Method,
    Precision,
    Switch,
    ViewKind,
    at_least_one,
    one_of,
)
from inspector.errors import ConfigError


@dataclass(frozen=True)
class ScheduleSettings:
    """How long and how the network trains (`[train.schedule]`). A patch PCA is fitted in one pass and
    never reads these, so their ranges are checked by `TrainConfig` for the network only (`check`)."""

    # The amount of work, the same on every machine, so the model a user gets does not depend on how fast
    # their CPU is: 110 epochs took 12.1 minutes on a 2-core AVX2-only CPU with hard crops (12.6 with export); a CPU with
    # VNNI, about 3x faster, should need about 4.
    epochs: int = 110
    # A safety cap, not the plan: a slower machine is told at epoch 2 where the cap will stop it, and the
    # model card records a run it cut short.
    max_minutes: float = 20.0
    batch_size: int = 16
    crops_per_image: int = 4
    # An epoch draws at least this many crops (else crops_per_image per board), so training is sized in
    # optimiser steps, not passes over the boards: a station's first 30 boards get as many steps an epoch
    # (1392 / batch_size = 87) as DeepPCB's 348 training boards at 4 crops each, where 30 boards at 4 crops
    # made 8 steps an epoch and the network never left its initial weights (issue 18). 0 = crops_per_image only.
    epoch_crops: int = 1392
    # Epochs before this share of the planned ones never count as the best, nor for early stopping: the
    # weight average must have seen enough steps that the exported network is the trained one.
    warmup_fraction: float = 0.1
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    early_stopping_patience: int = 40  # epochs; validation loss on a few dozen boards is noisy, and the LR still anneals
    # Exponential moving average of the weights (training/loop.py WeightAverage): validation, the best
    # epoch and the exported model use the average of about the last 1000 steps (11 epochs on DeepPCB).
    # Four seeds on DeepPCB at the same calibration rule: false regions a good board 0.54 / 0.49 / 0.45 /
    # 0.65 -> 0.37 / 0.45 / 0.44 / 0.54, recall 0.902 / 0.919 / 0.920 / 0.928 -> 0.900 / 0.915 / 0.912 /
    # 0.921; at 0.5 false regions 0.917-0.921 recall in seeds 0-2, where plain runs spread over
    # 0.897-0.92 (docs/results.md). 0 = off.
    weight_average_decay: float = 0.999
    # Hard crops (training/hard_crops.py): this share of each epoch's crops is placed over the hottest 1%
    # of the model's own error on its training boards, rescored every `hard_crop_every` epochs from
    # epoch `hard_crop_start` on; 0 = every crop random; -1 = chosen from the data (training/fixture.py
    # `choose_crops`): 0.5 on boards that are not registered (DeepPCB: more recall at the same false
    # regions, docs/results.md), 0 on one fixtured design. Residual training never takes hard crops.
    hard_crop_share: float = -1.0
    hard_crop_every: int = 20
    hard_crop_start: int = 10

    def check(self) -> None:
        """The ranges the network's training needs."""
        at_least_one(self, ("epochs", "batch_size", "crops_per_image"))
        if self.epoch_crops < 0 or not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"epoch_crops must be >= 0 and warmup_fraction in [0, 1), got {self.epoch_crops} and "
                              f"{self.warmup_fraction}")
        if self.max_minutes <= 0:
            raise ConfigError(f"max_minutes must be positive, got {self.max_minutes}")
        share_ok = 0.0 <= self.hard_crop_share <= 1.0 or self.hard_crop_share == -1.0  # -1: from the data
        if not share_ok or self.hard_crop_every < 1 or self.hard_crop_start < 0:
            raise ConfigError(f"hard crops: share must lie in [0, 1] (or -1: from the data), every >= 1 and start >= 0 "
                              f"epochs, got share {self.hard_crop_share}, every {self.hard_crop_every}, "
                              f"start {self.hard_crop_start}")


@dataclass(frozen=True)
class RegistrationSettings:
    """Boards of one fixtured design (`[train.registration]`; inspector/core/registration.py,
    inspector/core/atlas.py). Recorded in the bundle and its model card."""

    # "auto" turns registration on when the good boards align onto their median (correlation >= 0.8), and
    # the per-position model with it; "on" / "off" force them. Recorded flat as `registration`.
    mode: Switch = "auto"
    photometric: Switch = "auto"  # light normalisation against the reference (with registration)
    residual: bool = True  # with registration: the model sees board - reference (+128), see registration.py
    # With registration and `residual`: the network also sees the reference board at the same place
    # (training/model.py ReferenceInput), so it can learn what good boards' differences look like where
    # (a sub-pixel shift along the design's edges, a leaning part, glints on its metal). One view only.
    reference_input: bool = True
    atlas: Switch = "auto"
    atlas_quantile: float = 0.9  # per position: this quantile of good boards' smoothed error...
    atlas_dilate_px: int = 3  # ...dilated by this many working-resolution pixels (placement tolerance)
    # With registration the fixture's play is taken out before the model: training shifts and turns
    # boards only by what registration leaves (these replace shift_px / rotate_deg then).
    registered_shift_px: int = 1
    registered_rotate_deg: float = 0.2
    roi: str = ""  # inspection area: "x,y,w,h" on the reference board or a mask image; "" = whole image

    def __post_init__(self) -> None:
        for name, value in (("registration", self.mode), ("photometric", self.photometric), ("atlas", self.atlas)):
            if value not in SWITCHES:
                raise ConfigError(f"{name} must be auto, on or off, got {value!r}")


@dataclass(frozen=True)
class CalibrationSettings:
    """Where the bundle's lines are set on held-back good boards (`[train.calibration]`)."""

    target_false_alarm_rate: float = 0.01  # share of good boards that fail (image threshold)
    # Share of held-back good boards whose maximum reaches the region line (-> "review"). 0.44 (26 of 61
    # held-back boards on DeepPCB dev): three training seeds with 8 px region merging gave recall 0.910 /
    # 0.903 / 0.928 at 0.48 / 0.46 / 0.51 false regions a good board; 0.5 gave 0.934 / 0.907 / 0.943 at
    # 0.81 / 0.48 / 0.73, and 0.42 lost the 0.90 recall on one seed (docs/results.md, issue 17).
    region_false_alarm_rate: float = 0.44
    # The region line on a count instead (not for registered bundles, which keep the share below): the
    # line where the held-back good boards come down to this many regions a board on average; 0 turns
    # it off (the share above then sets the line). 0.7 on DeepPCB dev: two trainings of the same seed
    # gave recall 0.908 / 0.913 at 0.35 / 0.44 false regions a good board, where the 44% share gave
    # 0.906 / 0.926 at 0.34 / 0.56 (docs/results.md, issue 17).
    false_regions_per_board: float = 0.7
    # The region line of a registered bundle: its maps are already judged per position, and the share
    # of held-back boards allowed to reach the line is lower (measured on the sample boards: 0.5 gave
    # 0.75 false regions per good board, 0.3 none; docs/results.md).
    registered_region_false_alarm_rate: float = 0.3
    # One fixtured design: the lines are set on the held-back boards and on every training board judged
    # out of fold (k folds: reference and per-position model fitted without the board's fold;
    # training/folds.py), so a station's 35 boards set them instead of its 5 held back. 0 = held-back only.
    calibration_folds: int = 5

    def __post_init__(self) -> None:
        if self.false_regions_per_board < 0:
            raise ConfigError(f"false_regions_per_board must be >= 0 (0: the share line), got {self.false_regions_per_board}")


@dataclass(frozen=True)
class ExportSettings:
    """The ONNX graph the bundle ships (`[train.export]`)."""

    # "int8": static quantisation calibrated on good boards (1.6x faster on CPU, checked against
    # float32 at export); "float32" keeps the graph as trained.
    precision: Precision = "int8"
    # INT8 storage (training/quantize.py INT8_SCHEMES): "u8s8-reduced" (7-bit weights) computes the
    # same maps on AVX2-only and VNNI CPUs, so one bundle passes its self-test on both.
    int8_scheme: Int8Scheme = "u8s8-reduced"

    def __post_init__(self) -> None:
        one_of("precision", self.precision, PRECISIONS)
        one_of("int8_scheme", self.int8_scheme, INT8_SCHEMES)


GROUPS: dict[str, type] = {"schedule": ScheduleSettings, "registration": RegistrationSettings,
                           "calibration": CalibrationSettings, "export": ExportSettings}
# The flat name of each grouped setting -> (group, field): the name records and flat files use.
GROUPED: dict[str, tuple[str, str]] = {
    ("registration" if (group, f.name) == ("registration", "mode") else f.name): (group, f.name)
    for group, cls in GROUPS.items() for f in fields(cls)}
# The flat record's keys in the order bundles' config.json and checkpoints have always written them,
# so the same seed still gives the same bundle bytes.
RECORD_ORDER = (
    "method", "channels", "scale", "crop_size", "holdout_fraction", "width", "depth", "latent_channels",
    "stem_stride", "pca_patch", "pca_stride", "pca_components", "pca_max_patches", "epochs", "max_minutes",
    "batch_size", "crops_per_image", "epoch_crops", "warmup_fraction", "learning_rate", "weight_decay",
    "early_stopping_patience", "weight_average_decay", "seed", "hard_crop_share", "hard_crop_every",
    "hard_crop_start", "loss", "ssim_weight", "denoising", "shift_px", "rotate_deg", "brightness", "contrast",
    "noise_std", "blur_prob", "tile_size", "tile_overlap", "smooth_sigma", "top_k_fraction", "top_k_min",
    "small_region_peak", "shift_tolerance", "grow_fraction", "region_merge_px", "views", "view_kind", "precision",
    "int8_scheme", "target_false_alarm_rate", "region_false_alarm_rate", "false_regions_per_board",
    "registration", "photometric", "channel_error", "residual", "reference_input", "atlas", "atlas_quantile",
    "atlas_dilate_px", "registered_region_false_alarm_rate", "calibration_folds", "registered_shift_px",
    "registered_rotate_deg", "roi", "device", "threads")


@dataclass
class TrainConfig:
    """`inspector train`: data, model, augmentation, scoring and the device here; the schedule,
    registration, calibration and export in their groups."""

    method: Method = "ae"  # "ae" (conv autoencoder) or "pca" (patch PCA baseline)
    channels: Channels = "auto"  # "auto" (colour if the training images are colour), "gray", "color"
    scale: float = 1.0  # working resolution relative to the input images
    crop_size: int = 128  # random training crops (tiles) of full-resolution images
    holdout_fraction: float = 0.15  # good images held back for validation + calibration
    # model
    # channels at the stem's resolution (doubling per stage, capped). 16: 0.55 GMAC a 640x640 view, half of
    # width 24's, for the same recall on DeepPCB within run-to-run spread (docs/results.md, issue 17)
    width: int = 16
    depth: int = 4  # stride-2 steps in total: the bottleneck sits at 1/16 of the working resolution
    latent_channels: int = 32
    stem_stride: int = 4  # the first convolution's stride: nothing runs at full resolution (speed)
    # patch PCA baseline (method "pca"): patch side, patch stride (a divisor of the side), components
    pca_patch: int = 32
    pca_stride: int = 16  # measured: same AUROC/AUPRO as 8 on synthetic and DeepPCB boards at 1/4 of the MACs
    pca_components: int = 64
    pca_max_patches: int = 100_000  # patches sampled evenly from the training boards for the fit
    # Top-level, not in the schedule: it also splits the held-back boards and seeds the patch PCA's sample.
    seed: int = 0
    loss: Loss = "l2"  # "l2", "ssim" or "mix"
    ssim_weight: float = 0.5  # share of SSIM in "mix"
    # denoising autoencoder: corrupt inputs, learn to restore the clean board
    denoising: bool = True
    # augmentation matching a fixtured camera (mirrors only to match view_kind = "flip")
    shift_px: int = 4
    rotate_deg: float = 1.0
    brightness: float = 0.1
    contrast: float = 0.1
    noise_std: float = 0.02
    blur_prob: float = 0.2
    # inference
    tile_size: int = 0
    tile_overlap: int = 32
    # scoring (recorded in the bundle) and calibration
    smooth_sigma: float = 1.0  # Gaussian smoothing of the error map, working-resolution pixels
    # Image score = mean of the hottest k map pixels, k = top_k_fraction of the pixels, at least
    # top_k_min. 0 = chosen from the training boards (training/fixture.py `choose_score`):
    # - one fixtured design (registered, judged per position): 0.003%, at least 4 (8 at 512x512): the
    #   per-position model has already taken out what good boards show, so a small defect (a turned
    #   0603 part, a 37 px burn) is judged by its own few pixels, not averaged with its surroundings;
    # - otherwise (bare-board scans): 0.015%, at least 16 (about 60 at 640x640; tuned on DeepPCB).
    top_k_fraction: float = 0.0
    top_k_min: int = 0
    # A region smaller than the runner's minimum area (16 px) is kept when its peak reaches this multiple
    # of the region line; 0 = never; -1 = chosen from the training boards (`choose_score`): 1.5 on one
    # fixtured design (the 14 px burn of the sample boards at 1.6x the line), never on bare-board scans
    # (DeepPCB: no defect more found, 0.02 more false regions a board).
    small_region_peak: float = -1.0
    shift_tolerance: int = 1  # px: error only where the input leaves its reconstruction's local range
    grow_fraction: float = 0.5  # hysteresis: regions seeded at the pixel threshold, grown down to this share
    # Parts of the grown map closer than this many input pixels are one region (one box, one count).
    # -1 = chosen from the training boards (`choose_score`): 8 on bare-board scans (DeepPCB dev, three
    # models: false regions at the 50% line -10%, 0.91 -> 0.81, 0.51 -> 0.46, 0.83 -> 0.73; recall at 0.5
    # false regions +0.011-0.017; 0-2 of 542 verdicts change; docs/results.md), 0 (plain components) on
    # one fixtured design, where it was not measured.
    region_merge_px: int = -1
    # Reconstructions averaged over 1, 2 or 4 views of the board (in the ONNX graph): "flip" mirrors
    # the board (measured best on bare boards: recall 0.90 vs 0.86 for "shift"); "shift" moves it by part
    # of the model's stride and suits boards whose mirror image is implausible (printed text, polarity marks).
    # 0 / "auto" choose from the training boards (training/fixture.py `choose_views`):
    # - boards of one fixtured design (registered): 1 view, "shift" (a fixtured board is never mirrored, and
    #   its per-position model absorbs what a second view averaged out: the sample boards scored the same
    #   with 1 and 2 views, and a 640x640 colour board's model call halves);
    # - otherwise (bare-board scans, several designs): 2 views, "flip": 1.1 GMAC a 640x640 board at
    #   width 16, so a 2-core AVX2-only CPU keeps 20 boards/s; 4 views measured +0.005 recall on DeepPCB
    #   at twice the cost (docs/results.md, issue 17).
    views: int = 0
    view_kind: ViewKind = "auto"
    channel_error: ChannelError = "auto"  # colour boards: "max" (worst channel) or "mean" of the channels' error; auto = max
    device: Device = "auto"  # "auto", "cpu", "cuda"
    threads: int = 0  # torch CPU threads; 0 = every core (1 is far faster on a machine shared with other jobs)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    registration: RegistrationSettings = field(default_factory=RegistrationSettings)
    calibration: CalibrationSettings = field(default_factory=CalibrationSettings)
    export: ExportSettings = field(default_factory=ExportSettings)

    def __post_init__(self) -> None:
        """Modes and ranges, checked when a config is built (each group checks its own); what needs the
        boards is checked with them (training/fixture.py, training/registration_fit.py, training/data.py)."""
        self._check_modes()
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.method == "pca":
            at_least_one(self, ("pca_patch", "pca_stride", "pca_components", "pca_max_patches"))
        else:  # the network's training: a patch PCA is fitted in one pass and never reads these
            at_least_one(self, ("crop_size", "width", "depth", "latent_channels"))
            self.schedule.check()
            if self.stem_stride not in (2, 4) or self.depth <= self.stem_stride.bit_length() - 1:
                raise ConfigError(f"stem_stride must be 2 or 4 and smaller than 2**depth, got stem_stride "
                                  f"{self.stem_stride} with depth {self.depth}")
            self._check_scoring()

    def _check_modes(self) -> None:
        for name, cls in GROUPS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(f"{name} must be a {cls.__name__} (flat names: TrainConfig().with_values), "
                                  f"got {getattr(self, name)!r}")
        if self.method not in METHODS:
            raise ConfigError(f"method must be 'ae' (autoencoder) or 'pca' (patch PCA baseline), got {self.method!r}")
        if self.channels not in CHANNELS:
            raise ConfigError(f"channels must be auto, gray or color, got {self.channels!r}")
        one_of("loss", self.loss, LOSSES)
        one_of("channel_error", self.channel_error, CHANNEL_ERRORS)
        if self.device not in DEVICES:
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.views not in VIEW_COUNTS or self.view_kind not in VIEW_KINDS:
            raise ConfigError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))} (0: from the data) and "
                              f"view_kind one of {', '.join(VIEW_KINDS)}, got {self.views} / {self.view_kind!r}")

    def _check_scoring(self) -> None:
        if self.small_region_peak not in (-1.0, 0.0) and self.small_region_peak < 1.0:
            raise ConfigError(f"small_region_peak must be -1 (from the data), 0 (never) or at least 1, got "
                              f"{self.small_region_peak}")
        if not -1 <= self.region_merge_px <= MAX_REGION_MERGE_PX:  # here, not at export after the training
            raise ConfigError(f"region_merge_px must be -1 (from the data) or in [0, {MAX_REGION_MERGE_PX}] pixels, "
                              f"got {self.region_merge_px}")
        if self.top_k_fraction < 0 or self.top_k_min < 0:  # 0: chosen from the boards once they are loaded
            raise ConfigError(f"top_k_fraction and top_k_min must be 0 (from the data) or positive, got "
                              f"{self.top_k_fraction} and {self.top_k_min}")

    def record(self) -> dict[str, Any]:
        """The flat dict bundles' config.json and checkpoints hold, in `RECORD_ORDER`."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in GROUPS}
        values |= {flat: getattr(getattr(self, group), name) for flat, (group, name) in GROUPED.items()}
        return {name: values[name] for name in RECORD_ORDER}

    def with_values(self, **flat: Any) -> TrainConfig:
        """This config with settings changed by their flat names (the CLI's options, a record's keys),
        each grouped one set in its group; checked as when a config is built."""
        top = {name: value for name, value in flat.items() if name not in GROUPED}
        for group in GROUPS:
            changed = {name: flat[key] for key, (owner, name) in GROUPED.items() if owner == group and key in flat}
            if changed:
                top[group] = replace(getattr(self, group), **changed)
        return replace(self, **top)
