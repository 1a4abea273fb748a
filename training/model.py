"""The convolutional autoencoder: a fully convolutional encoder-decoder with a real bottleneck.

No skip connections: a U-Net style shortcut would let the network copy its input, and the
reconstruction error (our anomaly signal) would vanish on defects too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

MAX_STAGE_CHANNELS = 128  # doubling stops here: wider stages cost params without helping small boards


@dataclass(frozen=True)
class Architecture:
    """Sizes that fully determine the network (recorded in the checkpoint and ONNX metadata)."""

    in_channels: int = 1
    width: int = 32
    depth: int = 4
    latent_channels: int = 64
    output_sigmoid: bool = True  # inputs in [0, 1] (mean 0, std 1 spec) -> outputs in [0, 1]
    family: str = "conv_autoencoder"

    @property
    def total_stride(self) -> int:
        return 2**self.depth

    def stage_channels(self) -> list[int]:
        return [min(self.width * 2**i, MAX_STAGE_CHANNELS) for i in range(self.depth)]

    def to_dict(self) -> dict:
        data = asdict(self)
        data["total_stride"] = self.total_stride
        data["stage_channels"] = self.stage_channels()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Architecture":
        known = {"in_channels", "width", "depth", "latent_channels", "output_sigmoid", "family"}
        return cls(**{key: value for key, value in data.items() if key in known})


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.1, inplace=True))


def _up(cin: int, cout: int) -> nn.Sequential:
    # Nearest upsampling + conv avoids the checkerboard artefacts of ConvTranspose, which would
    # show up as a periodic error pattern in every heatmap.
    return nn.Sequential(
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.LeakyReLU(0.1, inplace=True),
    )


class ConvAutoencoder(nn.Module):
    """`depth` stride-2 stages down to `latent_channels` at 1/2**depth resolution, mirrored up."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.arch = arch
        stages = arch.stage_channels()
        encoder: list[nn.Module] = []
        cin = arch.in_channels
        for cout in stages:
            encoder.append(_down(cin, cout))
            cin = cout
        encoder.append(nn.Conv2d(cin, arch.latent_channels, 1))  # the bottleneck: no activation
        self.encoder = nn.Sequential(*encoder)
        decoder: list[nn.Module] = [nn.Conv2d(arch.latent_channels, cin, 1), nn.LeakyReLU(0.1, inplace=True)]
        for cout in list(reversed(stages))[1:] + [stages[0]]:
            decoder.append(_up(cin, cout))
            cin = cout
        decoder.append(nn.Conv2d(cin, arch.in_channels, 3, padding=1))
        if arch.output_sigmoid:
            decoder.append(nn.Sigmoid())
        self.decoder = nn.Sequential(*decoder)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
