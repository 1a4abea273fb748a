"""Registration to a reference board, light normalisation, the per-position model (no model needed)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from inspector.core.atlas import Atlas, fit_atlas
from inspector.core.registration import (
    Registration,
    RegistrationError,
    RegistrationSpec,
    Surround,
)
from inspector.errors import ConfigError
from inspector.synth.board import FIXTURE_BOARD_SCALE, render_board
from training.registration_fit import build_reference, decide

SIZE = (160, 160)


@pytest.fixture(scope="module")
def boards() -> list[np.ndarray]:
    """Good boards of the sample design as the fixtured camera sees them (shift, light, noise)."""
    return [render_board(SIZE, (11, 0, index)).image for index in range(10)]


@pytest.fixture(scope="module")
def registration(boards: list[np.ndarray]) -> Registration:
    found, decision = decide(boards, "auto")
    assert found is not None, decision
    return found


def moved(image: np.ndarray, dx: float, dy: float, angle: float) -> np.ndarray:
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), angle, 1.0)
    matrix[:, 2] += (dx, dy)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def inner(image: np.ndarray, margin: int = 16) -> np.ndarray:
    return image[margin:-margin, margin:-margin].astype(np.float32)


def test_one_fixtured_design_is_registered(registration: Registration) -> None:
    spec = registration.spec
    assert spec.align and spec.photometric
    assert spec.stats["correlation_median"] > 0.9
    assert spec.max_shift_px >= 0.05 * SIZE[0]  # room for the fixture's play
    assert registration.reference.shape == (SIZE[1], SIZE[0], 3)


def test_boards_of_different_designs_are_not_registered() -> None:
    rng = np.random.default_rng(0)
    others = []
    for _ in range(8):  # each board its own layout of pads: no common reference exists
        image = np.full((128, 128), 60, np.uint8)
        for _ in range(25):
            x, y = (int(v) for v in rng.integers(4, 120, 2))
            cv2.rectangle(image, (x, y), (x + int(rng.integers(3, 12)), y + int(rng.integers(3, 12))), 200, -1)
        others.append(image)
    found, decision = decide(others, "auto")
    assert found is None
    assert decision["registration"] == "off" and "not one fixtured design" in decision["reason"]


@pytest.mark.parametrize("dx, dy, angle", [(5.0, -4.0, 1.2), (-6.5, 2.5, -0.8), (0.0, 7.0, 0.0)])
def test_shifted_and_rotated_board_is_aligned(registration: Registration, boards: list[np.ndarray], dx: float,
                                             dy: float, angle: float) -> None:
    board = boards[3]
    shifted = moved(board, dx, dy, angle)
    record: dict = {}
    aligned_shifted = registration.apply(shifted, record=record)
    aligned = registration.apply(board)
    # The alignment found the move (relative to where the board itself sits) ...
    _, own = registration.locate(board)
    found = record["alignment"]
    assert abs(found.angle - own.angle - angle) < 0.15
    assert np.hypot(found.dx - own.dx - dx, found.dy - own.dy - dy) < 0.6
    # ... and the aligned boards agree far better than the raw ones did.
    raw_difference = np.abs(inner(shifted) - inner(board)).mean()
    aligned_difference = np.abs(inner(aligned_shifted) - inner(aligned)).mean()
    assert aligned_difference < 0.25 * raw_difference
    assert aligned_difference < 6.0


def test_a_large_moved_part_does_not_pull_the_alignment() -> None:
    """The QFP moved far off its place: the board must be aligned as if it were not there. ECC on all
    pixels alike followed the part: 0.91 px off at the corners, enough for dozens of false regions on
    fine structures; the second pass without the outlying blob stays within a tenth of a pixel."""
    size = (512, 512)
    found, _ = decide([render_board(size, (7, 0, index)).image for index in range(8)], "on")
    assert found is not None
    key = (7, 2, 36)
    moved_part = render_board(size, key, "shifted_component", size_class="large")
    assert moved_part.detail["component"] == "U1"
    clean = render_board(size, key, "shifted_component", size_class="large", with_defect=False)
    corners = np.array([[0, 0, 1], [512, 0, 1], [0, 512, 1], [512, 512, 1]], float)
    (with_part, _), (without, _) = found.locate(moved_part.image), found.locate(clean.image)
    assert np.abs(corners @ with_part.T - corners @ without.T).max() < 0.25
    assert 0.0 < found.spec.outlier_blob_share <= 1.0  # the line training set from the good boards
    # A bundle from before the check (no outlier_blob_share in registration.json) aligns as it did: pulled.
    recorded = json.loads(found.spec.to_json())
    del recorded["outlier_blob_share"]
    before = Registration(RegistrationSpec.from_json(json.dumps(recorded)), found.reference)
    assert before.spec.outlier_blob_share > 1.0
    (pulled, _), (unpulled, _) = before.locate(moved_part.image), before.locate(clean.image)
    assert np.abs(corners @ pulled.T - corners @ unpulled.T).max() > 0.5


@pytest.mark.parametrize("kind", ["blank", "noise", "turned round", "too far"])
def test_board_that_cannot_be_aligned_is_refused_with_a_reason(registration: Registration,
                                                               boards: list[np.ndarray], kind: str) -> None:
    board = boards[0]
    image = {
        "blank": lambda: np.full_like(board, 90),
        "noise": lambda: np.random.default_rng(1).integers(0, 256, board.shape, dtype=np.uint8),
        "turned round": lambda: np.ascontiguousarray(board[::-1, ::-1]),
        "too far": lambda: moved(board, registration.spec.max_shift_px + 6, 0, 0),
    }[kind]()
    with pytest.raises(RegistrationError) as caught:
        registration.apply(image)
    reason = str(caught.value)
    expected = {"blank": "blank", "noise": "does not match", "turned round": "does not match",
                "too far": "fixture allows"}[kind]
    assert expected in reason


def test_another_image_size_is_refused(registration: Registration, boards: list[np.ndarray]) -> None:
    with pytest.raises(RegistrationError, match="reference board"):
        registration.apply(cv2.resize(boards[0], (200, 160)))


def test_light_normalisation_takes_out_exposure_white_balance_and_gradient(registration: Registration,
                                                                            boards: list[np.ndarray]) -> None:
    board = boards[5].astype(np.float32)
    height, width = board.shape[:2]
    xs = np.linspace(-0.5, 0.5, width, dtype=np.float32)[None, :, None]
    lamp = np.asarray([0.8, 1.0, 1.25], np.float32)  # another lighting set-up's white balance
    relit = np.clip(board * lamp * (1.05 + 0.25 * xs) + 6, 0, 255).astype(np.uint8)
    before = np.abs(inner(relit) - inner(boards[5])).mean()
    after = np.abs(inner(registration.apply(relit)) - inner(registration.apply(boards[5]))).mean()
    assert after < 0.25 * before
    assert after < 5.0


@pytest.fixture(scope="module")
def surround_registration() -> Registration:
    """Boards lying in a fixture the camera sees around them: plate, pins, clamps over the board's
    left and right edges, a lamp whose glare clips (all fixed in the frame while the board moves)."""
    found, decision = decide([render_board(SIZE, (11, 0, index), fixture=True).image for index in range(10)], "auto")
    assert found is not None, decision
    return found


def test_the_surround_is_found_where_a_fixture_covers_the_board_and_nowhere_on_plain_boards(
        registration: Registration, surround_registration: Registration) -> None:
    assert registration.surround is None and registration.spec.stats["surround_share"] == 0.0
    surround = surround_registration.surround
    assert surround is not None
    camera = surround.camera > 0
    width, height = SIZE
    margin = (1.0 - FIXTURE_BOARD_SCALE) / 2
    # the clamps' centres (inspector/synth/board.py: 5.5% of the side wide, overlapping the board by 1.4%)
    left = int(margin * width - 0.055 * width / 2 + 0.014 * width)
    right = int((1.0 - margin) * width - 0.014 * width + 0.055 * width / 2)
    assert camera[height // 2, left] and camera[height // 2, right]
    # the board itself (below the lamp's glare, which is at 62% across, 30% down)
    assert not camera[int(0.6 * height):int(0.8 * height), int(0.3 * width):int(0.55 * width)].any()
    assert 0.01 < surround.share < 0.2
    assert surround_registration.spec.stats["surround_share"] == pytest.approx(surround.share, abs=1e-5)
    # What no training board showed beside the clamps is a small part of what the surround covers.
    assert np.count_nonzero(surround.hidden) < np.count_nonzero(surround.camera)


def test_the_model_sees_the_reference_where_the_surround_lies_and_it_is_never_judged(
        surround_registration: Registration) -> None:
    board = render_board(SIZE, (11, 5, 0), fixture=True).image  # a board training never saw
    record: dict = {}
    fed = surround_registration.apply(board, record=record, residual=False)
    covered = surround_registration.surround_on_reference(record["warp"])
    assert covered is not None and covered.any()
    np.testing.assert_array_equal(fed[covered > 0], surround_registration.reference[covered > 0])
    seen = surround_registration.observed(record["warp"], 0)
    assert not seen[covered > 0].any()
    assert seen[int(0.7 * SIZE[1]), int(0.4 * SIZE[0])] == 1.0
    # In residual mode the surround is no difference at all.
    residual = surround_registration.apply(board, residual=True)
    assert (residual[covered > 0] == 128).all()


def test_surround_masks_round_trip_and_must_match_the_reference(tmp_path, surround_registration: Registration) -> None:
    surround = surround_registration.surround
    assert surround is not None
    surround.save(tmp_path / "surround.npz")
    again = Surround.load(tmp_path / "surround.npz")
    np.testing.assert_array_equal(again.camera, surround.camera)
    np.testing.assert_array_equal(again.hidden, surround.hidden)
    small = Surround(camera=surround.camera[:10, :10], hidden=surround.hidden[:10, :10])
    with pytest.raises(ConfigError, match="surround's camera mask"):
        Registration(surround_registration.spec, surround_registration.reference, small)
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="unreadable surround masks"):
        Surround.load(tmp_path / "broken.npz")


def test_reference_is_the_median_of_aligned_boards(boards: list[np.ndarray]) -> None:
    reference, alignments = build_reference(boards, RegistrationSpec())
    assert reference.shape == boards[0].shape and reference.dtype == np.uint8
    assert min(a.correlation for a in alignments) > 0.9


def test_atlas_lowers_a_hard_structure_and_not_a_defect() -> None:
    rng = np.random.default_rng(0)
    hard = (slice(20, 26), slice(30, 36))  # a fine structure redrawn poorly on every good board
    maps = []
    for _ in range(12):
        error = rng.uniform(0.0, 0.1, (64, 64)).astype(np.float32)
        error[hard] = rng.uniform(0.8, 1.0)
        maps.append(cv2.GaussianBlur(error, (0, 0), 1.0))
    atlas = fit_atlas(maps, quantile=0.9, dilate_px=2)
    good = maps[0].copy()
    defective = good.copy()
    defective[45:50, 10:15] += 0.8  # a defect on a quiet surface, as strong as the hard structure
    judged_good, judged_defect = atlas.judge(good), atlas.judge(defective)
    # Raw: the good board's hard structure is as hot as the defect; judged: far cooler than it.
    assert good[hard].max() >= 0.8 * defective[45:50, 10:15].max()
    assert judged_good[hard].max() < 0.35 * judged_defect[45:50, 10:15].max()
    assert judged_defect[45:50, 10:15].max() > 3 * judged_good.max()


def test_atlas_round_trip(tmp_path) -> None:
    maps = [np.full((16, 16), value, np.float32) for value in (0.1, 0.2, 0.3)]
    atlas = fit_atlas(maps, quantile=1.0, dilate_px=0)
    atlas.save(tmp_path / "atlas.npz")
    again = Atlas.load(tmp_path / "atlas.npz")
    np.testing.assert_allclose(again.level, atlas.level)
    assert again.floor == pytest.approx(atlas.floor)
    with pytest.raises(Exception, match="does not match"):
        again.judge(np.zeros((8, 8), np.float32))
