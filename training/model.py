"""The convolutional autoencoder: a fully convolutional encoder-decoder with a real bottleneck.

No skip connections: a U-Net style shortcut would let the network copy its input, and the
reconstruction error (our anomaly signal) would vanish on defects too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

MAX_STAGE_CHANNELS = 128  # doubling stops here: wider stages cost MACs without helping


@dataclass(frozen=True)
class Architecture:
    """Sizes that fully determine the network (recorded in the checkpoint and ONNX metadata).

    Speed on a line PC is dominated by the layers at high resolution, so the network never convolves
    at full resolution: a strided stem goes straight to 1/`stem_stride` and the output is produced
    by a sub-pixel convolution (PixelShuffle) from that same resolution. Width grows only where
    pixels are few.
    """

    in_channels: int = 1
    width: int = 16  # channels at the stem's resolution
    depth: int = 4  # stride-2 steps in total (the stem counts log2(stem_stride) of them)
    latent_channels: int = 32
    stem_stride: int = 2  # 2 or 4
    output_sigmoid: bool = True  # inputs in [0, 1] (mean 0, std 1 spec) -> outputs in [0, 1]
    family: str = "conv_autoencoder"
    # Channels of the reference board fed beside the board (one fixtured design; `ReferenceInput`): the
    # network sees where the design has edges, pins and glare-prone metal, so it can redraw what good
    # boards show there (a sub-pixel shift, a leaning part, a glint) and not what no good board shows.
    reference_channels: int = 0

    def __post_init__(self) -> None:
        if self.stem_stride not in (2, 4):
            raise ValueError(f"stem_stride must be 2 or 4, got {self.stem_stride}")
        if self.depth < self.stem_steps + 1:
            raise ValueError(f"depth {self.depth} leaves no stage after a stride-{self.stem_stride} stem")

    @property
    def stem_steps(self) -> int:
        return self.stem_stride.bit_length() - 1

    @property
    def total_stride(self) -> int:
        return 2**self.depth

    def stage_channels(self) -> list[int]:
        """Channels at the stem's resolution, then at each further stride-2 stage."""
        stages = self.depth - self.stem_steps
        return [min(self.width * 2**i, MAX_STAGE_CHANNELS) for i in range(stages + 1)]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["total_stride"] = self.total_stride
        data["stage_channels"] = self.stage_channels()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Architecture:
        known = {"in_channels", "width", "depth", "latent_channels", "stem_stride", "output_sigmoid", "family",
                 "reference_channels"}
        return cls(**{key: value for key, value in data.items() if key in known})


class ReferenceInput(nn.Module):
    """Appends the reference board's pixels at the same place to the board's (conditioning).

    On the line and in validation the board is the whole aligned frame, and the reference is a
    constant of the network (`set_reference`; a constant of the ONNX graph, so the runtime feeds the
    board alone). Training crops arrive with their reference crop already appended (2x the board's
    channels) and pass through unchanged."""

    def __init__(self, board_channels: int, reference_channels: int) -> None:
        super().__init__()
        self.board_channels = board_channels
        self.reference_channels = reference_channels
        # Not saved with the weights: it is the bundle's reference board, set from it after loading.
        self.reference: torch.Tensor
        self.register_buffer("reference", torch.zeros(1, reference_channels, 0, 0), persistent=False)

    def set_reference(self, tensor: torch.Tensor) -> None:
        """The preprocessed reference board, CxHxW, padded like the boards the network will see."""
        if tensor.ndim != 3 or tensor.shape[0] != self.reference_channels:
            raise ValueError(f"reference must be {self.reference_channels}xHxW, got {tuple(tensor.shape)}")
        self.reference = tensor[None].to(self.reference.device, torch.float32).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == self.board_channels + self.reference_channels:
            return x  # a training crop with its reference crop
        if self.reference.numel() == 0:  # no board yet (counting MACs): zeros stand in
            return torch.cat([x, x.new_zeros(x.shape[0], self.reference_channels, x.shape[2], x.shape[3])], 1)
        if tuple(x.shape[2:]) != tuple(self.reference.shape[2:]):
            raise ValueError(f"a board of {tuple(x.shape[2:])} does not match the reference {tuple(self.reference.shape[2:])}")
        return torch.cat([x, self.reference.expand(x.shape[0], -1, -1, -1)], 1)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True))


def _up(cin: int, cout: int) -> nn.Sequential:
    # Nearest upsampling + conv avoids the checkerboard artefacts of ConvTranspose, which would
    # show up as a periodic error pattern in every heatmap.
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), _conv(cin, cout))


class ConvAutoencoder(nn.Module):
    """Strided stem, `depth` stride-2 steps down to `latent_channels`, mirrored up, sub-pixel output.

    No skip connections: a U-Net style shortcut would let the network copy its input, and the
    reconstruction error (our anomaly signal) would vanish on defects too.
    """

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        channels = arch.stage_channels()
        s = arch.stem_stride
        encoder: list[nn.Module] = [
            nn.Conv2d(arch.in_channels + arch.reference_channels, channels[0], s + 2, stride=s, padding=1),
            nn.LeakyReLU(0.1, inplace=True),
        ]
        if arch.reference_channels:
            encoder.insert(0, ReferenceInput(arch.in_channels, arch.reference_channels))
        for cin, cout in zip(channels[:-1], channels[1:]):
            encoder += [_conv(cin, cout, stride=2), _conv(cout, cout)]
        encoder.append(nn.Conv2d(channels[-1], arch.latent_channels, 1))  # the bottleneck: no activation
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = [nn.Conv2d(arch.latent_channels, channels[-1], 1), nn.LeakyReLU(0.1, inplace=True),
                                    _conv(channels[-1], channels[-1])]
        for cin, cout in zip(channels[:0:-1], channels[-2::-1]):
            decoder.append(_up(cin, cout))
        # Sub-pixel output: each stem-resolution position predicts its s x s block of pixels.
        decoder += [nn.Conv2d(channels[0], arch.in_channels * s * s, 3, padding=1), nn.PixelShuffle(s)]
        if arch.output_sigmoid:
            decoder.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    @property
    def reference_input(self) -> ReferenceInput | None:
        first = self.encoder[0]
        return first if isinstance(first, ReferenceInput) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def set_reference(model: ConvAutoencoder, registration: Any, spec: Any) -> None:
    """Give a network that takes the reference beside the board (`ReferenceInput`) the bundle's reference
    board, preprocessed and padded as every board is (registration: `inspector.core.registration.Registration`)."""
    from inspector.core.preprocess import pad_to_multiple, preprocess

    reference_input = model.reference_input
    if reference_input is None:
        return
    tensor, _ = pad_to_multiple(preprocess(registration.reference, spec), spec.pad_multiple)
    reference_input.set_reference(torch.from_numpy(np.ascontiguousarray(tensor)))


def count_macs(model: Any, height: int, width: int) -> int:
    """Multiply-accumulates of one forward pass on a 1 x C x height x width input (convolutions and
    transposed convolutions; any model family with an `arch.in_channels`)."""
    total = 0

    def hook(module: Any, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        kernel = module.kernel_size[0] * module.kernel_size[1]
        if isinstance(module, nn.ConvTranspose2d):  # every input pixel scatters into each output channel
            total += inputs[0].numel() * module.out_channels * kernel // module.groups
        else:
            total += output.numel() * module.in_channels * kernel // module.groups

    convolutions = (nn.Conv2d, nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, convolutions)]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(torch.zeros(1, model.arch.in_channels, height, width))
            model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    return total


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
