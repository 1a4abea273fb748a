"""Fine defects on a fixtured design at the resolution the sample boards use (512 px): a solder bridge
and a part moved by twice the placement tolerance are outlined, while the fine structures they sit on
(pins, small passives) raise nothing on good boards. Boards are generated; the model is a tiny one
trained for seconds with the fixtured-design defaults (registration, light, residual input, atlas)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import ScheduleSettings, TrainConfig
from inspector.core.engine import Inspector
from inspector.synth import render_board
from inspector.synth.layout import BOARD_UNITS, DESIGN_SEED, board_design

SIZE = 512
GOOD_TRAIN = 24
SEED = 31


@pytest.fixture(scope="module")
def fine_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.train import train_bundle

    root = tmp_path_factory.mktemp("fine")
    folder = root / "good"
    folder.mkdir()
    for index in range(GOOD_TRAIN):
        cv2.imwrite(str(folder / f"{index:03d}.png"), render_board((SIZE, SIZE), (SEED, 0, index)).image)
    out = root / "bundle"
    train_bundle(folder, out, TrainConfig(
        width=8, depth=3, latent_channels=16, crop_size=64, holdout_fraction=0.25, seed=3, threads=1, view_kind="shift",
        schedule=ScheduleSettings(epochs=6, max_minutes=1.5, batch_size=8, crops_per_image=2, epoch_crops=0)))
    return out


def pin_rows() -> np.ndarray:
    """Mask of the ICs' pin rows (QFP and SOICs): the finest high-contrast structure of the design."""
    mask = np.zeros((SIZE, SIZE), np.uint8)
    unit = SIZE / BOARD_UNITS
    for comp in board_design(DESIGN_SEED).components:
        if comp.kind in ("qfp", "soic"):
            x0, y0, x1, y1 = comp.extent()
            mask[int(y0 * unit):int(np.ceil(y1 * unit)), int(x0 * unit):int(np.ceil(x1 * unit))] = 1
    return mask


def touches(box: tuple[int, int, int, int], mask: np.ndarray) -> bool:
    x0, y0, x1, y1 = box
    return bool(mask[max(0, y0):y1, max(0, x0):x1].any())


@pytest.mark.parametrize(("defect", "size_class", "index"), [
    ("solder_bridge", "small", 0), ("solder_bridge", "medium", 1),
    ("shifted_component", "small", 3), ("shifted_component", "medium", 2)])
def test_fine_defect_is_outlined(fine_bundle: Path, defect: str, size_class: str, index: int) -> None:
    engine = Inspector.load(fine_bundle)
    board = render_board((SIZE, SIZE), (SEED, 2, index), defect, size_class=size_class)
    assert board.mask is not None
    if defect == "shifted_component":  # moved or turned: some point of the part travels >= 3 px
        assert board.detail["travel_px"] >= 3.0
    result = engine.inspect(board.image)
    assert result.verdict != "pass"
    assert any(touches(region.bbox, board.mask > 0) for region in result.regions), (board.detail, result.regions)


def test_good_pins_are_judged_below_a_bridge_on_them(fine_bundle: Path) -> None:
    """The pin rows are the finest, highest-contrast structure: on good boards the judged map there
    stays under what a solder bridge between those pins reaches."""
    engine = Inspector.load(fine_bundle)
    pins = pin_rows() > 0
    good_peak = max(float(engine.inspect(render_board((SIZE, SIZE), (SEED, 1, index)).image).anomaly_map[pins].max())
                    for index in range(4))
    bridges = [render_board((SIZE, SIZE), (SEED, 2, index), "solder_bridge", size_class=size_class)
               for index, size_class in ((0, "small"), (1, "medium"))]
    for bridge in bridges:
        assert bridge.mask is not None
        inside = float(engine.inspect(bridge.image).anomaly_map[bridge.mask > 0].max())
        assert inside > good_peak, (inside, good_peak)
