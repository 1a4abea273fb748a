"""The exported graph: autoencoder (or patch PCA) + view averaging + error map, in torch.

Why in the graph: the full-resolution shift-tolerant error map (a dilation, an erosion and four
element-wise passes) cost 2 ms of OpenCV after the ONNX Runtime call, 0.5 ms inside the graph,
where ONNX Runtime runs it on its own threads. The Gaussian smoothing stays in OpenCV: as a
one-channel convolution in ONNX Runtime it cost 1.4 ms (layout reorders included) against 0.3 ms.
Thresholds never enter the graph: they are calibration, which QA changes without re-exporting.

`inspector.core.scoring.error_map` + `smooth` remain the reference (and the path for tiled inference
and SSIM scoring, whose graph has the averaged reconstruction as its only output); a test holds
the two to the same numbers.

View averaging (test-time augmentation): the board is reconstructed in several views (shifted by
part of the model's stride, or mirrored), each reconstruction is moved back, and their mean is the
reconstruction. A strided autoencoder draws each view slightly differently where it is unsure
(good-board texture), and the same where the input is clearly off its model of a board (a defect
is repaired in every view), so averaging removes false alarms faster than it removes defects.

Mirrored views of an autoencoder with a sub-pixel output (`PixelShuffle`) are averaged before the
shuffle: mirroring the shuffled image is mirroring the low-resolution layout plus a fixed
permutation of its channels, which each mirrored view's copy of the last convolution applies
(its output channels reordered). The graph then runs one `DepthToSpace` instead of one per view,
12% of ONNX Runtime's call on the default 2-view bundle, with the same numbers bit for bit.

For ONNX (`for_onnx`), the shuffle itself is written as a transposed convolution with one-hot
weights (stride and kernel = the shuffle factor): every output pixel is one input value times 1.0,
so the numbers are the same, and ONNX Runtime's CPU provider runs it in half the time of its
`DepthToSpace` (15 against 30 ms for a batch of four 640x640 colour boards). The decoder's 2x
nearest upsamplings become depthwise transposed convolutions of 2x2 ones the same way: ONNX
Runtime's `Resize` runs on one thread, and on 8-bit tensors slower still. Torch keeps
`pixel_shuffle` and `Upsample`, its fast paths.

Also for ONNX, a mirrored view runs on a mirrored copy of the network instead of on the flipped
board: every convolution's kernel mirrored (`_mirrored_layer`), so the board and the view's output
are never flipped. ONNX Runtime's `Slice` with a negative step moves about 300 million values a
second, whatever their type: the two flips were 12 of 100 ms of the default bundle's call on the
2-core AVX2 EPYC. On 8 bits the copy computes the same integers (the same products, summed in
another order, and a zero tap); the quantiser observes its activation ranges in float, where the
order of the sums moves the last bit, so the INT8 maps agree with the flipping graph to about 1e-6
on average rather than bit for bit (the same evaluation figures on DeepPCB dev).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from inspector.core.scoring import ScoringSpec, View, views_for


def _sub_pixel_tail(model: nn.Module) -> tuple[nn.Module, nn.Conv2d, int, bool] | None:
    """(everything before the last convolution, the last convolution, the shuffle factor, whether a
    sigmoid follows) for an autoencoder whose decoder ends in Conv2d, PixelShuffle[, Sigmoid]."""
    decoder = getattr(model, "decoder", None)
    encoder = getattr(model, "encoder", None)
    if not isinstance(decoder, nn.Sequential) or not isinstance(encoder, nn.Module):
        return None
    layers = list(decoder)
    sigmoid = bool(layers) and isinstance(layers[-1], nn.Sigmoid)
    if sigmoid:
        layers = layers[:-1]
    if len(layers) < 2 or not isinstance(layers[-1], nn.PixelShuffle) or not isinstance(layers[-2], nn.Conv2d):
        return None
    return nn.Sequential(encoder, *layers[:-2]), layers[-2], layers[-1].upscale_factor, sigmoid


def _mirrored_conv(conv: nn.Conv2d, factor: int, view: View) -> nn.Conv2d:
    """A copy of the sub-pixel convolution whose output channels are reordered so that mirroring its
    low-resolution output and shuffling it equals shuffling the original output and mirroring that:
    channel (c, i, j) of an s x s block takes (c, s-1-i, s-1-j) where the view mirrors rows / columns."""
    index = torch.arange(conv.out_channels).reshape(-1, factor, factor)
    if view.flip_rows:
        index = index.flip(1)
    if view.flip_columns:
        index = index.flip(2)
    order = index.reshape(-1)
    mirrored = copy.deepcopy(conv)
    with torch.no_grad():
        mirrored.weight.copy_(conv.weight[order])
        if conv.bias is not None and mirrored.bias is not None:
            mirrored.bias.copy_(conv.bias[order])
    return mirrored.eval()


def _mirrored_layer(layer: nn.Module, axes: tuple[int, ...]) -> nn.Module | None:
    """`layer` mirrored along `axes` (2: rows, 3: columns of the weight), so that on a board it
    computes what `layer` computes on the mirrored board, mirrored back; None for a kind of layer
    where that is not known to hold. Inputs are multiples of the layer's stride (the exported graph
    takes multiples of the total stride).

    A stride-s convolution with kernel k and padding p on n pixels starts its windows at s*i - p;
    on the mirrored board, mirrored back, at s*i - p' with p' = s*floor((n + 2p - k) / s) - n - p + k.
    That is p when s divides 2p - k (every stride-1 convolution, the 4-wide stride-2 stem); for a
    3-wide stride-2 convolution it is p - 1: its mirrored copy gets a zero tap in front (4 wide,
    padding p), and the zero tap adds nothing (0 x a pixel, in float and in the 8-bit kernels)."""
    if isinstance(layer, (nn.LeakyReLU, nn.ReLU, nn.Sigmoid, nn.Identity)):
        return layer
    if isinstance(layer, nn.Upsample):
        return layer if layer.mode == "nearest" else None
    if isinstance(layer, nn.ConvTranspose2d):
        # k == stride, no padding: each input pixel writes its own block, which mirrors in place.
        if any(layer.kernel_size[a - 2] != layer.stride[a - 2] or layer.padding[a - 2] or layer.output_padding[a - 2]
               for a in axes):
            return None
        mirrored_transposed = copy.deepcopy(layer)
        with torch.no_grad():
            mirrored_transposed.weight.copy_(layer.weight.flip(list(axes)))
        return mirrored_transposed
    if not isinstance(layer, nn.Conv2d) or layer.padding_mode != "zeros" or isinstance(layer.padding, str) \
            or any(d != 1 for d in layer.dilation):
        return None
    weight = layer.weight.detach().flip(list(axes))
    kernel = list(layer.kernel_size)
    for axis in axes:
        size, stride, padding = kernel[axis - 2], layer.stride[axis - 2], layer.padding[axis - 2]
        if (2 * padding - size) % stride == 0:
            continue
        if stride != 2:
            return None
        shape = list(weight.shape)
        shape[axis] = 1
        weight = torch.cat([weight.new_zeros(shape), weight], dim=axis)  # the zero tap, in front
        kernel[axis - 2] = size + 1
    stride_rows, stride_columns = layer.stride
    padding_rows, padding_columns = layer.padding
    mirrored = nn.Conv2d(layer.in_channels, layer.out_channels, (kernel[0], kernel[1]),
                         stride=(stride_rows, stride_columns), padding=(padding_rows, padding_columns),
                         groups=layer.groups, bias=layer.bias is not None)
    with torch.no_grad():
        mirrored.weight.copy_(weight)
        if layer.bias is not None and mirrored.bias is not None:
            mirrored.bias.copy_(layer.bias)
    return mirrored.eval()


def _mirrored_network(network: nn.Module, axes: tuple[int, ...]) -> nn.Module | None:
    """A copy of `network` (a tree of Sequentials) with every layer mirrored (`_mirrored_layer`), or
    None if one of its layers cannot be."""
    if isinstance(network, nn.Sequential):
        parts = [_mirrored_network(part, axes) for part in network]
        return None if any(part is None for part in parts) else nn.Sequential(*parts)  # type: ignore[arg-type]
    return _mirrored_layer(network, axes)


def _upsampling_as_transposed_convolutions(model: nn.Module) -> None:
    """Replace each 2x nearest `Upsample` followed by a convolution with a depthwise transposed
    convolution of 2x2 ones at stride 2: every output pixel is its one input pixel times 1.0, the
    same numbers. Alone, `Resize` took 4.4 ms on a batch of four 8-bit 32x80x80 maps against 1.3
    for the transposed convolution; in the default bundle, where the transposed convolution runs in
    float32 between a dequantisation and a quantisation, the call is about 5% faster."""
    for sequence in [module for module in model.modules() if isinstance(module, nn.Sequential)]:
        layers = list(sequence)
        for index, layer in enumerate(layers[:-1]):
            following = layers[index + 1]
            conv = following[0] if isinstance(following, nn.Sequential) and len(following) else following
            if not (isinstance(layer, nn.Upsample) and layer.mode == "nearest" and layer.scale_factor in (2, 2.0)
                    and isinstance(conv, nn.Conv2d)):
                continue
            channels = conv.in_channels
            upsample = nn.ConvTranspose2d(channels, channels, 2, stride=2, groups=channels, bias=False)
            with torch.no_grad():
                upsample.weight.fill_(1.0)
            upsample.weight.requires_grad_(False)
            sequence[index] = upsample.eval()


class ScoredModel(nn.Module):
    """x (N,C,H,W) -> (reconstruction (N,C,H,W), shift-tolerant squared error (N,1,H,W)) for l2
    scoring; the reconstruction alone for SSIM scoring (its map is computed on the CPU).

    Built from a trained model for export: the mirrored views' copies of the last convolution are
    taken from the model's weights here, so load weights into the model before wrapping it."""

    def __init__(self, model: nn.Module, spec: ScoringSpec, stride: int) -> None:
        super().__init__()
        self.graph_error = spec.error == "l2"
        self.model = model
        self.arch = model.arch  # export reads stride / channels from here
        self.tolerance = spec.shift_tolerance
        self.channel_max = spec.channel_reduce == "max"
        self.views = views_for(spec.views, spec.view_kind, stride)
        self.stride = stride
        tail = _sub_pixel_tail(model)
        self._split = tail is not None
        self._folded = self._split and len(self.views) > 1 and all((v.dy, v.dx) == (0, 0) for v in self.views)
        self._shuffle_conv: nn.ConvTranspose2d | None = None
        self._unflipped: nn.ModuleList | None = None  # per view, the network mirrored (for_onnx)
        if tail is not None:
            self._trunk, self._conv, self._factor, self._sigmoid = tail
        if self._folded:
            self._tails = nn.ModuleList([self._conv if (view.flip_rows, view.flip_columns) == (False, False)
                                         else _mirrored_conv(self._conv, self._factor, view) for view in self.views])

    def for_onnx(self, mirrored_weights: bool = True) -> ScoredModel:
        """A copy with the sub-pixel shuffle and the nearest upsamplings written as one-hot transposed
        convolutions (see the module docstring): the same numbers, the fast ONNX Runtime kernels;
        with `mirrored_weights`, mirrored views run on mirrored copies of the network instead of
        flipping the board and the output (see the module docstring).
        This model is left as it is, so the parity check compares the two forms."""
        exported = copy.deepcopy(self)  # one copy: the trunk and the tails keep sharing their layers
        _upsampling_as_transposed_convolutions(exported.model)
        if exported._folded and mirrored_weights:
            networks: list[nn.Module] = []
            for view, tail in zip(exported.views, exported._tails):
                axes = tuple(axis for axis, on in ((2, view.flip_rows), (3, view.flip_columns)) if on)
                network = nn.Sequential(exported._trunk, tail)
                mirrored = _mirrored_network(network, axes) if axes else network
                if mirrored is None:
                    break
                networks.append(mirrored)
            else:
                exported._unflipped = nn.ModuleList(networks)
        if exported._split:
            factor, channels = exported._factor, exported._conv.out_channels // exported._factor**2
            shuffle = nn.ConvTranspose2d(channels * factor * factor, channels, factor, stride=factor, groups=channels,
                                         bias=False)
            with torch.no_grad():
                shuffle.weight.zero_()
                for index in range(channels * factor * factor):  # channel (c, i, j) -> pixel (i, j) of channel c
                    shuffle.weight[index, 0, (index // factor) % factor, index % factor] = 1.0
            shuffle.weight.requires_grad_(False)
            exported._shuffle_conv = shuffle.eval()
        return exported

    def _shuffle(self, low: torch.Tensor) -> torch.Tensor:
        if self._shuffle_conv is None:
            return F.pixel_shuffle(low, self._factor)
        return self._shuffle_conv(low)

    def _low(self, x: torch.Tensor, conv: nn.Module) -> torch.Tensor:
        """The autoencoder's output before the shuffle (its sigmoid, if any, applied: it commutes
        with the shuffle), the last convolution being `conv`."""
        low = conv(self._trunk(x))
        return torch.sigmoid(low) if self._sigmoid else low

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder, with the shuffle as `_shuffle` does it."""
        if not self._split or self._shuffle_conv is None:
            return self.model(x)
        return self._shuffle(self._low(x, self._conv))

    def _flip(self, x: torch.Tensor, view: View) -> torch.Tensor:
        dims = [d for d, on in ((-2, view.flip_rows), (-1, view.flip_columns)) if on]
        return torch.flip(x, dims) if dims else x

    def _reconstruct_folded(self, x: torch.Tensor) -> torch.Tensor:
        """Mirrored views averaged at the sub-pixel layout, shuffled once (see the module docstring)."""
        total: torch.Tensor | None = None
        for index, (view, tail) in enumerate(zip(self.views, self._tails)):
            if self._unflipped is not None:
                low = self._unflipped[index](x)
                low = torch.sigmoid(low) if self._sigmoid else low
            else:
                low = self._flip(self._low(self._flip(x, view), tail), view)
            total = low if total is None else total + low
        assert total is not None
        return self._shuffle(total * (1.0 / len(self.views)))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.views) == 1:
            return self._network(x)
        if self._folded:
            return self._reconstruct_folded(x)
        height, width = x.shape[-2], x.shape[-1]
        total: torch.Tensor | None = None
        for view in self.views:
            # Shifted views are padded to keep H and W multiples of the stride, then cropped back.
            moved = x if (view.dy, view.dx) == (0, 0) else \
                F.pad(x, (view.dx, self.stride - view.dx, view.dy, self.stride - view.dy), mode="reflect")
            output = self._flip(self._network(self._flip(moved, view)), view)
            output = output[..., view.dy:view.dy + height, view.dx:view.dx + width]
            total = output if total is None else total + output
        assert total is not None  # views_for never returns an empty list
        return total * (1.0 / len(self.views))

    def error(self, x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        if self.tolerance > 0:
            squared = self._tolerant_squared(x, reconstruction)
        else:
            difference = x - reconstruction
            squared = difference * difference
        # A mean over one channel would still cost a full pass in ONNX Runtime (0.3 ms at 640x640).
        if squared.shape[1] == 1:
            return squared
        return squared.amax(dim=1, keepdim=True) if self.channel_max else squared.mean(dim=1, keepdim=True)

    def _tolerant_squared(self, x: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
        """relu(x - upper) + relu(lower - x), squared, written with fewer full-resolution passes (the
        error tail was 36% of ONNX Runtime's call on colour boards, all of it memory traffic); for the
        worst channel it is already reduced to one channel.

        The same numbers bit for bit as the plain form (`scoring.error_map`; a test holds it):
        - upper >= lower at every pixel (both windows hold the pixel), so at most one of the two
          terms is positive and their sum is max(x - upper, lower - x, 0);
        - lower - x = -(m + x) with m = maxpool(-r) (negation is exact), so that maximum is
          -min(upper - x, m + x, 0), and its square is min(upper - x, m + x, 0) squared;
        - for the worst channel, squaring a value <= 0 is monotone, so the channel minimum is taken
          before the square, on one channel instead of three."""
        size = 2 * self.tolerance + 1
        upper = F.max_pool2d(reconstruction, size, stride=1, padding=self.tolerance)
        negated_lower = F.max_pool2d(-reconstruction, size, stride=1, padding=self.tolerance)
        below = torch.minimum(upper - x, negated_lower + x)
        if below.shape[1] > 1 and self.channel_max:
            below = below.amin(dim=1, keepdim=True)
        below = torch.clamp(below, max=0.0)
        return below * below

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | torch.Tensor:
        reconstruction = self.reconstruct(x)
        return (reconstruction, self.error(x, reconstruction)) if self.graph_error else reconstruction
