"""The error map computed inside the exported graph (training/scored.py) against the reference
(inspector.core.scoring), and view averaging."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from inspector.core.scoring import ScoringSpec, View, error_map, views_for
from inspector.errors import ConfigError
from training.model import Architecture, ConvAutoencoder
from training.scored import ScoredModel, _mirrored_layer


def _model(channels: int = 1) -> ConvAutoencoder:
    torch.manual_seed(0)
    return ConvAutoencoder(Architecture(in_channels=channels, width=8, depth=3, latent_channels=4, stem_stride=2)).eval()


@pytest.mark.parametrize("channels,tolerance,reduce", [(1, 0, "mean"), (1, 1, "mean"), (3, 2, "mean"), (3, 1, "max")])
def test_graph_error_equals_reference(channels: int, tolerance: int, reduce: str) -> None:
    spec = ScoringSpec(shift_tolerance=tolerance, views=1, channel_reduce=reduce)
    scored = ScoredModel(_model(channels), spec, stride=8)
    x = torch.rand(2, channels, 48, 40)
    with torch.no_grad():
        reconstruction, error = scored(x)
    assert error.shape == (2, 1, 48, 40)
    for index in range(2):
        expected = error_map(x[index].numpy(), reconstruction[index].numpy(), spec)
        assert np.allclose(error[index, 0].numpy(), expected, atol=1e-6)


@pytest.mark.parametrize("channels,tolerance,reduce", [(1, 1, "max"), (3, 1, "max"), (3, 2, "mean"), (1, 2, "mean")])
def test_the_graphs_tolerant_error_is_the_plain_formula_bit_for_bit(channels: int, tolerance: int, reduce: str) -> None:
    """The graph writes relu(x - upper) + relu(lower - x), squared, with fewer passes; the numbers must
    not move at all, or re-exported bundles would need recalibrating."""
    spec = ScoringSpec(shift_tolerance=tolerance, views=1, channel_reduce=reduce)
    scored = ScoredModel(_model(channels), spec, stride=8)
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(3, channels, 37, 45, generator=generator)
    reconstruction = torch.rand(3, channels, 37, 45, generator=generator)
    x[0] = reconstruction[0]  # exact agreement: the map must be exactly 0 there
    size = 2 * tolerance + 1
    upper = torch.nn.functional.max_pool2d(reconstruction, size, stride=1, padding=tolerance)
    lower = -torch.nn.functional.max_pool2d(-reconstruction, size, stride=1, padding=tolerance)
    difference = torch.relu(x - upper) + torch.relu(lower - x)
    squared = difference * difference
    if channels > 1:
        squared = squared.amax(dim=1, keepdim=True) if reduce == "max" else squared.mean(dim=1, keepdim=True)
    error = scored.error(x, reconstruction)
    assert torch.equal(error, squared)
    assert float(error[0].max()) == 0.0 and float(error[1:].max()) > 0.01


def test_shift_tolerance_forgives_a_one_pixel_shift_in_the_graph() -> None:
    """An input that is its reconstruction moved by a pixel scores (almost) nothing at tolerance 1."""
    class Shifter(torch.nn.Module):
        arch = Architecture(width=8, depth=3, latent_channels=4, stem_stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.roll(x, 1, dims=-1)

    board = torch.zeros(1, 1, 32, 32)
    board[..., 8:24, 10:12] = 1.0  # a trace
    strict = ScoredModel(Shifter(), ScoringSpec(shift_tolerance=0), stride=8)(board)[1]
    tolerant = ScoredModel(Shifter(), ScoringSpec(shift_tolerance=1), stride=8)(board)[1]
    assert strict.max() == 1.0 and tolerant.max() == 0.0


def test_views_average_the_shifted_reconstructions() -> None:
    model = _model()
    x = torch.rand(1, 1, 32, 48)
    scored = ScoredModel(model, ScoringSpec(views=2), stride=8)
    with torch.no_grad():
        averaged, _ = scored(x)
        plain = model(x)
        moved = model(torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect"))[..., 4:36, 4:52]
    assert torch.allclose(averaged, (plain + moved) / 2, atol=1e-6)
    assert not torch.allclose(averaged, plain, atol=1e-4)  # the second view really differs


def test_ssim_scoring_still_averages_views_but_leaves_the_map_to_the_cpu() -> None:
    """The recorded views hold for every error kind; only l2 maps are computed in the graph."""
    model = _model()
    x = torch.rand(1, 1, 32, 32)
    l2 = ScoredModel(model, ScoringSpec(views=2), stride=8)
    ssim = ScoredModel(model, ScoringSpec(error="ssim", views=2), stride=8)
    with torch.no_grad():
        reconstruction = ssim(x)
        expected, _ = l2(x)
    assert isinstance(reconstruction, torch.Tensor) and torch.equal(reconstruction, expected)


def test_flip_views_undo_their_flip() -> None:
    """An identity 'model' must give back the input through every mirrored view."""
    class Identity(torch.nn.Module):
        arch = Architecture(width=8, depth=3, latent_channels=4, stem_stride=2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 1.0

    x = torch.rand(1, 1, 16, 24)
    reconstruction, error = ScoredModel(Identity(), ScoringSpec(views=4, view_kind="flip"), stride=8)(x)
    assert torch.allclose(reconstruction, x) and float(error.max()) == 0.0


def test_view_sets_are_distinct_or_refused() -> None:
    assert views_for(4, "shift", 16) == [View(), View(8, 8), View(4, 12), View(12, 4)]
    assert len(set(views_for(4, "flip", 16))) == 4
    with pytest.raises(ConfigError):
        views_for(4, "shift", 2)  # a stride-2 model has only one other phase
    with pytest.raises(ConfigError):
        ScoringSpec(views=3)
    with pytest.raises(ConfigError):
        ScoringSpec(view_kind="rotate")


def test_worst_channel_error_counts_a_one_channel_change_in_full() -> None:
    """A colour change in one channel only: the channels' mean dilutes it by 3, the worst channel does not."""
    inputs = np.full((3, 16, 16), 0.5, np.float32)
    reconstruction = inputs.copy()
    inputs[2, 4:8, 4:8] += 0.3  # a brown stain on green mask: mostly red
    mean_map = error_map(inputs, reconstruction, ScoringSpec(channel_reduce="mean"))
    max_map = error_map(inputs, reconstruction, ScoringSpec(channel_reduce="max"))
    assert max_map.max() == pytest.approx(0.09, rel=1e-4)
    assert mean_map.max() == pytest.approx(0.03, rel=1e-4)
    with pytest.raises(Exception, match="channel_reduce"):
        ScoringSpec(channel_reduce="sum")


@pytest.mark.parametrize("channels,views,stem", [(1, 2, 2), (3, 2, 2), (1, 4, 2), (3, 4, 2), (1, 2, 4), (3, 4, 4)])
def test_mirrored_views_averaged_before_the_sub_pixel_shuffle_match_the_plain_average(channels: int, views: int,
                                                                                      stem: int) -> None:
    """One shuffle of the averaged low-resolution layouts gives the same reconstruction, bit for bit,
    as mirroring, running and mirroring back each view through the whole model; a mistake in the
    channel order of the mirrored copies would put each s x s block's pixels in the wrong places."""
    torch.manual_seed(0)
    model = ConvAutoencoder(Architecture(in_channels=channels, width=8, depth=3, latent_channels=4,
                                         stem_stride=stem)).eval()
    x = torch.rand(2, channels, 32, 48)
    scored = ScoredModel(model, ScoringSpec(views=views, view_kind="flip"), stride=model.arch.total_stride)
    assert scored._folded
    with torch.no_grad():
        folded, _ = scored(x)
        outputs = [model(x), torch.flip(model(torch.flip(x, [-1])), [-1]),
                   torch.flip(model(torch.flip(x, [-2])), [-2]), torch.flip(model(torch.flip(x, [-2, -1])), [-2, -1])]
        total = outputs[0]
        for output in outputs[1:views]:
            total = total + output
        expected = total * (1.0 / views)
    assert torch.equal(folded, expected)
    assert not torch.allclose(folded, outputs[0], atol=1e-4)  # the mirrored views really differ


@pytest.mark.parametrize("channels,views,kind,stem", [(1, 1, "flip", 4), (3, 1, "shift", 4), (1, 2, "flip", 4),
                                                      (3, 2, "shift", 2), (3, 4, "flip", 2)])
def test_the_onnx_form_of_the_sub_pixel_shuffle_gives_the_same_numbers(channels: int, views: int, kind: str,
                                                                        stem: int) -> None:
    """`for_onnx` writes the shuffle as a one-hot transposed convolution: the reconstruction and the
    error map must not change by a bit, whatever the views."""
    torch.manual_seed(0)
    model = ConvAutoencoder(Architecture(in_channels=channels, width=8, depth=3, latent_channels=4,
                                         stem_stride=stem)).eval()
    spec = ScoringSpec(views=views, view_kind=kind, shift_tolerance=1)
    x = torch.rand(2, channels, 32, 48)
    with torch.no_grad():
        plain = ScoredModel(model, spec, stride=model.arch.total_stride)(x)
        scored = ScoredModel(model, spec, stride=model.arch.total_stride)
        exported = scored.for_onnx(mirrored_weights=False)  # the mirrored copies: the next tests
        onnx_form = exported(x)
    assert torch.equal(plain[0], onnx_form[0]) and torch.equal(plain[1], onnx_form[1])
    # the upsamplings are transposed convolutions in the copy only; the trained model is untouched
    assert not any(isinstance(m, nn.Upsample) for m in exported.modules())
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in exported.modules()) >= 2
    assert any(isinstance(m, nn.Upsample) for m in model.modules()) and scored._shuffle_conv is None


@pytest.mark.parametrize("kernel,stride,padding,axes", [
    (3, 1, 1, (3,)), (3, 2, 1, (3,)), (3, 2, 1, (2, 3)), (4, 2, 1, (3,)), (6, 4, 1, (2, 3)), (1, 1, 0, (2,)),
    (5, 2, 2, (2,))])
def test_a_mirrored_layer_computes_the_mirrored_boards_result(kernel: int, stride: int, padding: int,
                                                              axes: tuple[int, ...]) -> None:
    """On a board whose sides are multiples of the stride, the mirrored copy of a convolution gives
    what the layer gives on the mirrored board, mirrored back; a 3-wide stride-2 window starts one
    pixel later there, so its copy gets a zero tap in front."""
    torch.manual_seed(1)
    layer = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding).eval()
    mirrored = _mirrored_layer(layer, axes)
    assert isinstance(mirrored, nn.Conv2d)
    x = torch.rand(2, 3, 8 * stride, 12 * stride)
    dims = list(axes)
    with torch.no_grad():
        expected = torch.flip(layer(torch.flip(x, dims)), dims)
        got = mirrored(x)
    assert got.shape == expected.shape
    assert torch.allclose(got, expected, atol=1e-6)
    widened = kernel % 2 == 1 and stride == 2
    assert all(mirrored.kernel_size[axis - 2] == kernel + widened for axis in axes)
    if widened:  # the wrong start would be a one-pixel shift: far from the mirrored result
        shifted = nn.Conv2d(3, 5, kernel, stride=stride, padding=padding)
        with torch.no_grad():
            shifted.weight.copy_(layer.weight.flip(dims))
            shifted.bias.copy_(layer.bias)
            assert not torch.allclose(shifted(x), expected, atol=1e-3)


def test_layers_whose_mirror_is_unknown_are_refused() -> None:
    assert _mirrored_layer(nn.Conv2d(1, 1, 3, stride=3, padding=1), (3,)) is None
    assert _mirrored_layer(nn.Conv2d(1, 1, 3, padding=2, dilation=2), (3,)) is None
    assert _mirrored_layer(nn.Upsample(scale_factor=2, mode="bilinear"), (3,)) is None
    assert _mirrored_layer(nn.BatchNorm2d(4), (3,)) is None
    transposed = nn.ConvTranspose2d(2, 2, 2, stride=2)
    assert isinstance(_mirrored_layer(transposed, (3,)), nn.ConvTranspose2d)
    assert _mirrored_layer(nn.ConvTranspose2d(2, 2, 3, stride=2), (3,)) is None


@pytest.mark.parametrize("channels,views,stem", [(1, 2, 2), (3, 2, 2), (1, 4, 2), (3, 4, 4)])
def test_the_onnx_form_runs_mirrored_views_on_mirrored_weights_without_flips(
        channels: int, views: int, stem: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """`for_onnx` gives each mirrored view a mirrored copy of the network, so the graph flips neither
    the board nor the output; float sums then run in another order, so equal to 1e-6, not bit for bit."""
    torch.manual_seed(0)
    model = ConvAutoencoder(Architecture(in_channels=channels, width=8, depth=3, latent_channels=4,
                                         stem_stride=stem)).eval()
    spec = ScoringSpec(views=views, view_kind="flip", shift_tolerance=1)
    scored = ScoredModel(model, spec, stride=model.arch.total_stride)
    exported = scored.for_onnx()
    assert exported._unflipped is not None and len(exported._unflipped) == views
    x = torch.rand(2, channels, 32, 48)
    with torch.no_grad():
        plain = scored(x)
        flipped: list[list[int]] = []
        original_flip = torch.flip
        monkeypatch.setattr(torch, "flip", lambda tensor, dims: flipped.append(dims) or original_flip(tensor, dims))
        onnx_form = exported(x)
        monkeypatch.undo()
    assert not flipped
    for ours, theirs in zip(onnx_form, plain):
        assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(onnx_form[0], model(x), atol=1e-4)  # still an average of different views
