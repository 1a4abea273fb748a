"""All settings of the product, in one typed place, with defaults that work.

Each dataclass belongs to one part of the product; a TOML or JSON file can override any field
(`load_config`). Training settings live here too (torch-free dataclasses) so that a bundle's
config.json can be read on a line PC.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from inspector.errors import ConfigError

T = TypeVar("T")

# The modes a setting may take: the `Literal` types annotate the fields, the tuples (their values, one
# source) are what `__post_init__` checks, so a config is refused when it is built (from TOML or JSON
# with `load_config`, from the CLI, in code, or read back from a checkpoint), with the field named.
# The values stay plain strings: bundles' config.json and checkpoints record them as such.
Method = Literal["ae", "pca"]
Channels = Literal["auto", "gray", "color"]
Loss = Literal["l2", "ssim", "mix"]
ViewKind = Literal["auto", "shift", "flip"]
Precision = Literal["float32", "int8"]
Int8Scheme = Literal["u8s8", "u8s8-reduced", "u8u8"]
Switch = Literal["auto", "on", "off"]  # registration, photometric, atlas
ChannelError = Literal["auto", "max", "mean"]
Device = Literal["auto", "cpu", "cuda"]
Providers = Literal["auto", "cpu", "cuda"]
GraphOptimization = Literal["disable", "basic", "extended", "all"]

METHODS: tuple[str, ...] = get_args(Method)
CHANNELS: tuple[str, ...] = get_args(Channels)
LOSSES: tuple[str, ...] = get_args(Loss)
VIEW_KINDS: tuple[str, ...] = get_args(ViewKind)
VIEW_COUNTS = (0, 1, 2, 4)  # 0 = chosen from the training boards
PRECISIONS: tuple[str, ...] = get_args(Precision)
INT8_SCHEMES: tuple[str, ...] = get_args(Int8Scheme)
SWITCHES: tuple[str, ...] = get_args(Switch)
CHANNEL_ERRORS: tuple[str, ...] = get_args(ChannelError)
DEVICES: tuple[str, ...] = get_args(Device)
PROVIDERS: tuple[str, ...] = get_args(Providers)
GRAPH_OPTIMIZATIONS: tuple[str, ...] = get_args(GraphOptimization)
MAX_REGION_MERGE_PX = 64  # the runtime's bound (inspector/core/scoring.py), checked before a training


def _one_of(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


@dataclass
class TrainConfig:
    """`inspector train`: data, model, augmentation, optimisation, calibration."""

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
    # optimisation
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
    seed: int = 0
    # Hard crops (training/hard_crops.py): this share of each epoch's crops is placed over the hottest 1%
    # of the model's own error on its training boards, rescored every `hard_crop_every` epochs from
    # epoch `hard_crop_start` on; 0 = every crop random; -1 = chosen from the data (training/fixture.py
    # `choose_crops`): 0.5 on boards that are not registered (DeepPCB: more recall at the same false
    # regions, docs/results.md), 0 on one fixtured design. Residual training never takes hard crops.
    hard_crop_share: float = -1.0
    hard_crop_every: int = 20
    hard_crop_start: int = 10
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
    # "int8": static quantisation calibrated on good boards (1.6x faster on CPU, checked against
    # float32 at export); "float32" keeps the graph as trained.
    precision: Precision = "int8"
    # INT8 storage (training/quantize.py INT8_SCHEMES): "u8s8-reduced" (7-bit weights) computes the
    # same maps on AVX2-only and VNNI CPUs, so one bundle passes its self-test on both.
    int8_scheme: Int8Scheme = "u8s8-reduced"
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
    # Boards of one fixtured design (inspector/core/registration.py, inspector/core/atlas.py): "auto" turns
    # registration on when the good boards align onto their median (correlation >= 0.8), and the
    # per-position model with it; "on" / "off" force them. Recorded in the bundle and its model card.
    registration: Switch = "auto"
    photometric: Switch = "auto"  # light normalisation against the reference (with registration)
    channel_error: ChannelError = "auto"  # colour boards: "max" (worst channel) or "mean" of the channels' error; auto = max
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
    # The region line of a registered bundle: its maps are already judged per position, and the share
    # of held-back boards allowed to reach the line is lower (measured on the sample boards: 0.5 gave
    # 0.75 false regions per good board, 0.3 none; docs/results.md).
    registered_region_false_alarm_rate: float = 0.3
    # One fixtured design: the lines are set on the held-back boards and on every training board judged
    # out of fold (k folds: reference and per-position model fitted without the board's fold;
    # training/folds.py), so a station's 35 boards set them instead of its 5 held back. 0 = held-back only.
    calibration_folds: int = 5
    registered_shift_px: int = 1
    registered_rotate_deg: float = 0.2
    roi: str = ""  # inspection area: "x,y,w,h" on the reference board or a mask image; "" = whole image
    device: Device = "auto"  # "auto", "cpu", "cuda"
    threads: int = 0  # torch CPU threads; 0 = every core (1 is far faster on a machine shared with other jobs)

    def __post_init__(self) -> None:
        """Modes and ranges, checked when a config is built; what needs the boards is checked with them
        (training/fixture.py, training/registration_fit.py, training/data.py)."""
        self._check_modes()
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.method == "pca":
            for name in ("pca_patch", "pca_stride", "pca_components", "pca_max_patches"):
                if getattr(self, name) < 1:
                    raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        else:  # the network's training: a patch PCA is fitted in one pass and never reads these
            self._check_training()
            self._check_scoring()

    def _check_modes(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be 'ae' (autoencoder) or 'pca' (patch PCA baseline), got {self.method!r}")
        if self.channels not in CHANNELS:
            raise ConfigError(f"channels must be auto, gray or color, got {self.channels!r}")
        for name, allowed in (("loss", LOSSES), ("precision", PRECISIONS), ("int8_scheme", INT8_SCHEMES),
                              ("channel_error", CHANNEL_ERRORS)):
            _one_of(name, getattr(self, name), allowed)
        for name in ("registration", "photometric", "atlas"):
            if getattr(self, name) not in SWITCHES:
                raise ConfigError(f"{name} must be auto, on or off, got {getattr(self, name)!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if self.views not in VIEW_COUNTS or self.view_kind not in VIEW_KINDS:
            raise ConfigError(f"views must be one of {', '.join(map(str, VIEW_COUNTS))} (0: from the data) and "
                              f"view_kind one of {', '.join(VIEW_KINDS)}, got {self.views} / {self.view_kind!r}")

    def _check_training(self) -> None:
        for name in ("crop_size", "width", "depth", "latent_channels", "epochs", "batch_size", "crops_per_image"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.epoch_crops < 0 or not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"epoch_crops must be >= 0 and warmup_fraction in [0, 1), got {self.epoch_crops} and "
                              f"{self.warmup_fraction}")
        if self.max_minutes <= 0:
            raise ConfigError(f"max_minutes must be positive, got {self.max_minutes}")
        if self.false_regions_per_board < 0:
            raise ConfigError(f"false_regions_per_board must be >= 0 (0: the share line), got {self.false_regions_per_board}")
        if self.stem_stride not in (2, 4) or self.depth <= self.stem_stride.bit_length() - 1:
            raise ConfigError(f"stem_stride must be 2 or 4 and smaller than 2**depth, got stem_stride "
                              f"{self.stem_stride} with depth {self.depth}")
        share_ok = 0.0 <= self.hard_crop_share <= 1.0 or self.hard_crop_share == -1.0  # -1: from the data
        if not share_ok or self.hard_crop_every < 1 or self.hard_crop_start < 0:
            raise ConfigError(f"hard crops: share must lie in [0, 1] (or -1: from the data), every >= 1 and start >= 0 "
                              f"epochs, got share {self.hard_crop_share}, every {self.hard_crop_every}, "
                              f"start {self.hard_crop_start}")

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


@dataclass
class InspectConfig:
    """Inference and post-processing on the line."""

    providers: Providers = "auto"  # "auto" (CUDA when available), "cpu", "cuda"
    intra_op_threads: int = 0  # 0 = ONNX Runtime default (all cores)
    graph_optimization: GraphOptimization = "all"  # "disable", "basic", "extended", "all"
    # ONNX Runtime's idle workers spin for a while after each call; on a 2-core line PC they steal
    # the core that decodes and post-processes the board (measured: e2e 50 -> 55 boards/s without).
    spin_threads: bool = False
    batch_size: int = 4
    min_region_area: int = 16  # pixels at input resolution; smaller regions are dropped
    review_band: float = 0.0  # >0 enables "review" for scores within this fraction below threshold
    max_pixels: int = 40_000_000  # refuse images larger than this (decompression bombs)
    save_reconstruction: bool = False
    # On load, recompute the maps export recorded (selftest.npz) and refuse a bundle this machine
    # computes differently: its thresholds would not hold (e.g. INT8 on a CPU without VNNI).
    selftest: bool = True

    def __post_init__(self) -> None:
        if self.providers not in PROVIDERS:
            raise ConfigError(f"providers must be auto, cpu or cuda, got {self.providers!r}")
        _one_of("graph_optimization", self.graph_optimization, GRAPH_OPTIMIZATIONS)


@dataclass
class RunnerConfig:
    """The folder feed (`inspector watch`) and what it shares with the camera feed."""

    station: str = "station-1"
    data_dir: str = "data"  # store, processed images and overlays
    db_url: str = ""  # empty = SQLite in data_dir (a password belongs in db_url_file or BOARD_INSPECTOR_DB_URL)
    db_url_file: str = ""  # a file (mode 0600) holding the database URL, so no password shows in argv
    stable_seconds: float = 1.0  # a file must keep its size and mtime this long before it is taken
    poll_seconds: float = 0.5
    max_batch: int = 8  # bound on images held in memory at once
    http_host: str = "127.0.0.1"
    http_port: int = 0  # 0 = no health/metrics endpoint
    hook: str = ""  # command run with each verdict as JSON on stdin
    json_lines: bool = True  # one JSON line per verdict on stdout
    max_attempts: int = 3  # tries of one board (a crash counts) before it is quarantined
    # A verdict the line (stdout, hook) refused this many times is parked: kept, counted on /healthz,
    # resendable with `inspector outbox resend`, and no longer retried ahead of newer verdicts.
    max_publish_attempts: int = 10
    max_file_bytes: int = 256 * 1024 * 1024  # larger inbox files are quarantined unread
    min_free_bytes: int = 256 * 1024 * 1024  # below this free space no new boards are taken (0 = never pause)
    retention_days: float = 0.0  # delete done/, overlays/, camera/ files older than this (0 = keep)
    # The folder runner decodes in a worker process (inspector/feeds/decoder.py): a decode that takes
    # longer than this is killed and its board quarantined with the reason (a real 40-Mpixel board
    # decodes in about a second on a slow line PC)...
    decode_timeout_seconds: float = 10.0
    # ...and one that needs more memory than this beyond the worker's own footprint (about 0.5 GB of
    # address space: Python, numpy, OpenCV) fails inside the worker and is quarantined the same way.
    decode_memory_mb: int = 2048


@dataclass
class CameraConfig:
    """The camera feed (`inspector camera`)."""

    trigger: str = "interval"  # "every", "interval", "stdin", "file"
    interval_seconds: float = 2.0
    trigger_file: str = ""
    open_timeout_seconds: float = 5.0
    read_timeout_seconds: float = 2.0
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    backoff_jitter: float = 0.25
    stale_frame_seconds: float = 1.0  # a frame older than this is never inspected
    # This many triggers in a row answered "not inspected" for a black, blank or stale frame (a strobe or
    # lamp that failed, a frozen stream): an error event and /healthz 503 "degraded" until a frame fit to
    # inspect arrives again. 0 = never.
    degraded_after_triggers: int = 10


@dataclass
class DashboardConfig:
    """`inspector dashboard`."""

    host: str = "127.0.0.1"  # bound to localhost unless told otherwise
    port: int = 8501
    # Both empty = the runner's store ([runner] db_url_file / db_url, else SQLite in the data directory);
    # see `store_url`. A password belongs in db_url_file or BOARD_INSPECTOR_DB_URL.
    db_url: str = ""
    db_url_file: str = ""  # a file (mode 0600) holding the database URL, so no password shows in argv
    users_file: str = ""  # TOML with hashed passwords and roles
    refresh_seconds: float = 2.0
    session_hours: float = 12.0  # a login lasts at most this long (a shift), see deploy/dashboard/sessions.py
    idle_minutes: float = 30.0  # a login unused this long ends (no page run, no auto-refresh)

    def store_url(self, runner: RunnerConfig | None = None, environ: dict[str, str] | None = None) -> str:
        """The store the dashboard opens, found where the runner finds its own and in the same order
        (`resolve_db_url`): `BOARD_INSPECTOR_DB_URL`, else this table's db_url_file, else its db_url,
        else the same two of `runner` (the [runner] table of the same config file: the dashboard
        shows the store the runner writes); "" = SQLite in the data directory. A `--db` option comes
        before all of them and is the caller's."""
        own = bool(self.db_url_file or self.db_url)
        source = RunnerConfig(db_url=self.db_url, db_url_file=self.db_url_file) if own or runner is None else runner
        try:
            return resolve_db_url(source, environ)
        except ConfigError as exc:
            if not own:
                raise
            # resolve_db_url names the runner's setting; this file was the dashboard's.
            raise ConfigError(str(exc).replace("runner.db_url_file", "dashboard.db_url_file", 1)) from exc


@dataclass
class TeachConfig:
    """Learning from operators' dismissals (`inspector learn`, inspector/review/teach.py): how far a
    dismissed false alarm may widen the per-position tolerance, and what is refused as a lesson."""

    # At a dismissed region's pixels the tolerance becomes what the region showed over the region line
    # times (1 + margin): the same false alarm seen a little stronger next time stays silent.
    margin: float = 0.25
    # ...and within this many working-resolution pixels around them (a glint or a leaning part lands a
    # few pixels apart on the next board; alignment leaves a pixel or two). 10 rather than 6: on the
    # webcam-like boards a glint wanders further, and recall did not move (docs/results.md, issue 34).
    spread_px: int = 10
    # Never more than this multiple of the bundle's own tolerance anywhere: a region far above the line
    # is not silenced by teaching (it still needs a person, or a retrained model).
    ceiling: float = 4.0
    # A dismissed region larger than this share of the inspected board is not a place but a set-up
    # problem (light, focus, fixture): refused as a lesson, with that said.
    max_region_share: float = 0.02
    # Before a version is applied it is tried on the last this-many stored boards: false regions it
    # removes, and confirmed defects it would have missed (any: refused).
    preview_boards: int = 200

    def __post_init__(self) -> None:
        if not (0.0 <= self.margin <= 2.0 and 0 <= self.spread_px <= 64 and 1.0 < self.ceiling <= 100.0
                and 0.0 < self.max_region_share <= 1.0 and self.preview_boards >= 0):
            raise ConfigError(f"teach settings out of range: margin [0, 2], spread_px [0, 64], ceiling (1, 100], "
                              f"max_region_share (0, 1], preview_boards >= 0; got {self}")


MQTT_SCHEMES = ("mqtt", "mqtts")
OPCUA_SECURITY = ("none", "sign", "sign_and_encrypt")


@dataclass
class MqttConfig:
    """`[lineout.mqtt]`: verdicts to an MES or SCADA over MQTT (QoS 1, at least once). Off while `url` is ""."""

    url: str = ""  # mqtt://host:1883 or mqtts://host:8883 (TLS)
    topic_prefix: str = "board-inspector"  # <prefix>/<station>/verdict, /status, /trigger
    username: str = ""
    password_file: str = ""  # a file (mode 0600) holding the password: never in argv or this file
    client_id: str = ""  # "" = board-inspector-<station>
    ca_file: str = ""  # TLS: the broker's CA (default: the system's)
    cert_file: str = ""  # TLS client certificate (optional)
    key_file: str = ""
    keepalive_seconds: int = 30
    ack_timeout_seconds: float = 5.0  # no PUBACK within this: the verdict stays pending and is sent again
    triggers: bool = False  # the camera feed takes triggers (with a part id) from <prefix>/<station>/trigger

    @property
    def enabled(self) -> bool:
        return bool(self.url)

    def __post_init__(self) -> None:
        if self.url and self.url.split("://", 1)[0] not in MQTT_SCHEMES:
            raise ConfigError(f"lineout.mqtt.url must start with mqtt:// or mqtts://, got {self.url!r}")
        if self.ack_timeout_seconds <= 0 or self.keepalive_seconds < 5:
            raise ConfigError("lineout.mqtt: ack_timeout_seconds must be > 0 and keepalive_seconds >= 5")


@dataclass
class OpcuaConfig:
    """`[lineout.opcua]`: a station's OPC UA server (OPC 40100-1 Machine Vision where it applies, plus plain
    variables and a ResultReady / ResultAck handshake for PLCs). Off while `endpoint` is ""."""

    endpoint: str = ""  # opc.tcp://0.0.0.0:4840/board-inspector
    security: str = "sign_and_encrypt"  # none (anonymous: only when bound to localhost), sign, sign_and_encrypt
    certificate_file: str = ""  # the server's certificate and key (DER or PEM), required unless security = none
    private_key_file: str = ""
    trusted_clients_dir: str = ""  # client certificates allowed to connect (all others refused)
    ack_timeout_seconds: float = 10.0  # the PLC must write ResultAck within this: else an error, verdict kept
    triggers: bool = False  # the camera feed takes triggers from the Trigger(partId) method

    @property
    def enabled(self) -> bool:
        return bool(self.endpoint)

    def __post_init__(self) -> None:
        if self.endpoint and not self.endpoint.startswith("opc.tcp://"):
            raise ConfigError(f"lineout.opcua.endpoint must start with opc.tcp://, got {self.endpoint!r}")
        if self.security not in OPCUA_SECURITY:
            raise ConfigError(f"lineout.opcua.security must be one of {', '.join(OPCUA_SECURITY)}, got {self.security!r}")
        if self.ack_timeout_seconds <= 0:
            raise ConfigError("lineout.opcua.ack_timeout_seconds must be > 0")
        if self.endpoint and self.security != "none" and not self.trusted_clients_dir:
            # An empty trust list would let any client with a valid certificate in: name the PLCs instead.
            raise ConfigError("lineout.opcua.trusted_clients_dir is required with security sign / sign_and_encrypt: "
                              "the folder of the client certificates (or their CAs) to let in")


@dataclass
class LineoutConfig:
    """Where verdicts go besides stdout and the hook (`[lineout.*]`), read by `watch` and `camera`."""

    mqtt: MqttConfig = field(default_factory=MqttConfig)
    opcua: OpcuaConfig = field(default_factory=OpcuaConfig)


@dataclass
class Settings:
    """A whole deployment's settings (the example config in deploy/ mirrors this)."""

    train: TrainConfig = field(default_factory=TrainConfig)
    inspect: InspectConfig = field(default_factory=InspectConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)
    teach: TeachConfig = field(default_factory=TeachConfig)
    lineout: LineoutConfig = field(default_factory=LineoutConfig)


def from_dict(cls: type[T], data: dict[str, Any], source: str = "config") -> T:
    """Build a dataclass from a dict, refusing unknown keys and wrong types by name."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
    known = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}")
    values: dict[str, Any] = {}
    defaults = cls()
    for name, value in data.items():
        default = getattr(defaults, name)
        if is_dataclass(default):
            values[name] = from_dict(type(default), value, f"{source}.{name}")
            continue
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ConfigError(f"{source}: {name} must be true or false, got {value!r}")
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, type(default)):
            raise ConfigError(f"{source}: {name} must be {type(default).__name__}, got {value!r}")
        values[name] = value
    return cls(**values)


def load_config(path: str | Path, cls: type[T]) -> T:
    """Read a TOML or JSON file into `cls` (a section named like the class key may wrap it)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot parse ({exc})") from exc
    return from_dict(cls, data, str(path))


def to_dict(config: Any) -> dict[str, Any]:
    return asdict(config)


# ------------------------------------------------------------------- secrets

DB_URL_ENV = "BOARD_INSPECTOR_DB_URL"
_URL_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):(?P<password>[^\s@/]*)@")
_SECRET_PARAMS = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|api_key)=([^&\s'\"]+)")


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL (`scheme://user:***@host`) and `password=...` masked."""
    text = _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", text)
    return _SECRET_PARAMS.sub(lambda m: f"{m.group(1)}=***", text)


def has_secret(text: str) -> bool:
    return mask_secrets(text) != text


def resolve_db_url(runner: RunnerConfig, environ: dict[str, str] | None = None) -> str:
    """The store URL: `BOARD_INSPECTOR_DB_URL`, else the first line of `db_url_file`, else `db_url`."""
    env = os.environ if environ is None else environ
    if env.get(DB_URL_ENV, "").strip():
        return env[DB_URL_ENV].strip()
    if runner.db_url_file:
        path = Path(runner.db_url_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"runner.db_url_file {path}: cannot read ({exc.strerror or exc})") from exc
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ConfigError(f"runner.db_url_file {path}: readable by other users; make it readable by the "
                              f"service only (chmod 600 {path})")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise ConfigError(f"runner.db_url_file {path}: empty")
        return lines[0]
    return runner.db_url


def load_settings(path: str | Path | None) -> Settings:
    """A deployment's settings file (deploy/example-config.toml), or the defaults without one."""
    return load_config(path, Settings) if path else Settings()
