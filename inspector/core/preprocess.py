"""The one preprocessing function shared by training, export checks and inference.

Training (torch), the export parity check and the ONNX runtime all call `preprocess`, and the
`PreprocessSpec` that parameterises it travels inside the model bundle (ONNX metadata), so the
pixels the model sees on the line cannot drift from the pixels it was trained on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from inspector.errors import ConfigError

if TYPE_CHECKING:
    from inspector.core.registration import Registration


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything needed to turn a decoded image into model input, recorded in every bundle."""

    channels: int = 1  # 1 = grayscale, 3 = BGR colour (OpenCV order throughout)
    scale: float = 1.0  # resize factor applied to the whole board before the model (1 = full res)
    mean: float = 0.0  # applied after dividing by 255
    std: float = 1.0
    pad_multiple: int = 16  # the model's total stride: inputs are padded up to a multiple of it
    tile_size: int = 0  # 0 = whole image in one pass; else overlapping tiles stitched back
    tile_overlap: int = 32

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3, got {self.channels}")
        if not 0.05 <= self.scale <= 4.0:
            raise ConfigError(f"scale must be in [0.05, 4], got {self.scale}")
        if self.std <= 0:
            raise ConfigError(f"std must be positive, got {self.std}")
        if self.pad_multiple < 1:
            raise ConfigError(f"pad_multiple must be >= 1, got {self.pad_multiple}")
        if self.tile_size and self.tile_size <= 2 * self.tile_overlap:
            raise ConfigError("tile_size must exceed twice the tile overlap")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        try:
            return cls(**json.loads(text))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid preprocessing spec {text!r}: {exc}") from exc


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """uint8 HxW or HxWx3 (BGR) -> uint8 with the requested channel count (HxW for 1)."""
    if image.ndim == 2:
        return image if channels == 1 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if channels == 1 else image
    raise ConfigError(f"expected an HxW or HxWx3 uint8 image, got shape {image.shape}")


def preprocess(image: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Decoded uint8 image (HxW or HxWx3 BGR) -> float32 CxHxW model input.

    The output is at the working resolution (`spec.scale`), not padded: padding to the model's
    stride and tiling are the inference engine's business because they must be undone there.
    """
    if image.dtype != np.uint8:
        raise ConfigError(f"preprocess expects uint8 pixels, got {image.dtype}")
    pixels = to_channels(image, spec.channels)
    if spec.scale != 1.0:
        height, width = pixels.shape[:2]
        size = (max(1, round(width * spec.scale)), max(1, round(height * spec.scale)))
        interpolation = cv2.INTER_AREA if spec.scale < 1.0 else cv2.INTER_LINEAR
        pixels = cv2.resize(pixels, size, interpolation=interpolation)
    # One float32 array, written channel-first in place: the same values as converting, scaling,
    # normalising and transposing into four fresh arrays, which cost a 640x640 colour board 3 ms
    # more (each new 5 MB array is page faults too).
    planes = pixels[None, :, :] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
    tensor = np.empty(planes.shape, np.float32)
    np.multiply(planes, np.float32(1.0 / 255.0), out=tensor)
    if spec.mean != 0.0 or spec.std != 1.0:
        tensor -= np.float32(spec.mean)
        tensor /= np.float32(spec.std)
    return tensor


def working_size(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int]:
    """(height, width) of an image of the given size after `preprocess`."""
    if spec.scale == 1.0:
        return height, width
    return max(1, round(height * spec.scale)), max(1, round(width * spec.scale))


def pad_to_multiple(tensor: np.ndarray, multiple: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Reflect-pad a ...xHxW array on the bottom/right to a multiple; returns (padded, (H, W))."""
    height, width = tensor.shape[-2:]
    pad_h = (-height) % multiple
    pad_w = (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return tensor, (height, width)
    pad: list[tuple[int, int]] = [(0, 0)] * (tensor.ndim - 2) + [(0, pad_h), (0, pad_w)]
    mode: Any = "reflect" if height > pad_h and width > pad_w else "edge"
    return np.pad(tensor, pad, mode=mode), (height, width)


def prepare_board(image: np.ndarray, spec: PreprocessSpec, registration: Registration | None = None,
                  timings: dict[str, float] | None = None, record: dict | None = None) -> np.ndarray:
    """The whole path from a decoded board to model input: registration to the bundle's reference
    board and light normalisation (when the bundle has them, `inspector.core.registration`), then
    `preprocess`. Training, export and the runtime all call this, so they see the same pixels.
    Raises `RegistrationError` for a board that cannot be aligned; `timings` receives the cost of
    each step, `record` the warp from reference to board coordinates (key "warp")."""
    if image.dtype != np.uint8:
        raise ConfigError(f"preprocess expects uint8 pixels, got {image.dtype}")
    if registration is not None:
        image = registration.apply(to_channels(image, spec.channels), timings, record)
    return preprocess(image, spec)
