"""The modes a setting may take, and the one check that names a setting and its allowed values.

The `Literal` types annotate the fields, the tuples (their values, one source) are what the
dataclasses' `__post_init__` checks, so a config is refused when it is built (from TOML or JSON with
`load_config`, from the CLI, in code, or read back from a checkpoint), with the field named. The
values stay plain strings: bundles' config.json and checkpoints record them as such.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from inspector.errors import ConfigError

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
MAX_REGION_MERGE_PX = 64  # the runtime's bound (ScoringSpec), also checked before a training


def one_of(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    """Refuse `value` unless it is one of `allowed`, naming the setting and what it may be."""
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")


def at_least_one(owner: object, names: tuple[str, ...]) -> None:
    """Refuse the first of `owner`'s settings `names` below 1, naming it."""
    for name in names:
        if getattr(owner, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(owner, name)}")
