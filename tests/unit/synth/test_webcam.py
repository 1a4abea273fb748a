"""The webcam camera model (`--camera webcam`): deterministic, the line camera untouched, glints that
move with the light, leaning through-hole parts, noise and JPEG, masks in the frame."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.errors import ConfigError
from inspector.synth import DEFECT_TYPES, generate_dataset, render_board, webcam, webcam_light, webcam_parts
from inspector.synth import board as board_module
from inspector.synth.draw import Canvas, Placement
from inspector.synth.layout import BOARD_UNITS

SIZE = (160, 160)


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def shot_of(key: tuple[int, ...], size: tuple[int, int] = SIZE) -> tuple[dict, webcam.WebcamShot]:
    """The webcam's per-board draws and the board's placements, as render_board makes them."""
    root = np.random.SeedSequence(list(key))
    placement_seq, camera_seq, _, _ = root.spawn(4)
    shot = board_module._camera_shot(np.random.default_rng(camera_seq), *size)
    leaning, cam, _ = board_module._webcam_shot(root, shot, *size)
    placements = board_module._placements(np.random.default_rng(placement_seq), min(size) / BOARD_UNITS)
    return {**placements, **leaning}, cam


def test_webcam_boards_are_deterministic_and_differ_from_the_fixture_mode(tmp_path: Path) -> None:
    first = render_board(SIZE, (3, 2, 1), "burn", camera="webcam")
    again = render_board(SIZE, (3, 2, 1), "burn", camera="webcam")
    assert np.array_equal(first.image, again.image) and np.array_equal(first.mask, again.mask)
    fixture = render_board(SIZE, (3, 2, 1), "burn", fixture=True)
    assert not np.array_equal(first.image, fixture.image)
    for root in (tmp_path / "a", tmp_path / "b"):
        generate_dataset(root, good=2, defective=3, test_good=1, seed=4, size=SIZE, camera="webcam")
    assert files_under(tmp_path / "a") == files_under(tmp_path / "b")


def test_the_line_camera_is_the_default_and_its_manifest_is_unchanged(tmp_path: Path) -> None:
    for fixture in (False, True):
        default = render_board((96, 96), (5, 2, 0), "scratch", fixture=fixture)
        line = render_board((96, 96), (5, 2, 0), "scratch", fixture=fixture, camera="line")
        assert np.array_equal(default.image, line.image) and np.array_equal(default.mask, line.mask)
    generate_dataset(tmp_path / "line", good=1, defective=1, test_good=0, seed=1, size=(64, 64), fixture=True)
    manifest = json.loads((tmp_path / "line/dataset.json").read_text())
    assert "camera" not in manifest and manifest["version"] == "1.3" and manifest["fixture"] is True
    with pytest.raises(ValueError, match="camera"):
        render_board((64, 64), (0, 0, 0), camera="phone")
    with pytest.raises(ConfigError, match="camera"):
        generate_dataset(tmp_path / "bad", good=1, defective=0, test_good=0, size=(64, 64), camera="phone")


def test_glints_differ_between_two_good_boards_at_the_same_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same placements under two boards' light: the glint layer moves and changes."""
    canvas = Canvas(320, 320)
    black = np.zeros((320, 320, 3), np.uint8)
    placements, _ = shot_of((0, 0, 0))
    layers = [webcam_light.light_up(black, canvas, placements, shot_of((0, 0, i))[1])[..., 1] for i in range(4)]
    for a, b in zip(layers, layers[1:]):
        bright_a, bright_b = a > 60, b > 60
        assert bright_a.sum() > 200 and bright_b.sum() > 200  # every board glints somewhere
        overlap = (bright_a & bright_b).sum() / (bright_a | bright_b).sum()
        assert overlap < 0.6, overlap  # ... but not at the same places
        assert np.abs(a - b).mean() > 2.0
    # and on the rendered boards: glints change pixels by far more than the sensor's noise
    with_glints = render_board(SIZE, (0, 0, 1), camera="webcam").image.astype(np.int16)
    monkeypatch.setattr(webcam_light, "WEBCAM", dataclasses.replace(webcam.WEBCAM, glint_peak=0.0))
    without = render_board(SIZE, (0, 0, 1), camera="webcam").image.astype(np.int16)
    assert (np.abs(with_glints - without).max(axis=2) > 40).sum() > 30


def test_a_leaning_part_moves_between_boards_and_missing_changes_more_than_leaning() -> None:
    leans = [webcam.leans(np.random.default_rng(i)) for i in range(240)]
    dx = np.asarray([lean["C20"].dx for lean in leans])
    assert 0.4 < dx.std() < 0.8 and np.abs(dx).max() <= webcam.WEBCAM.lean_max_units
    far = np.mean([abs(lean["C22"].dy) >= webcam.WEBCAM.far_lean_units[0] for lean in leans])
    assert 0.03 < far < 0.15  # about one good board in 12
    assert "C1" not in leans[0] and "U1" not in leans[0]  # surface-mount parts do not lean

    size = 256
    canvas = Canvas(size, size)

    def drawn(placements: dict) -> np.ndarray:
        image = np.zeros((size, size, 3), np.uint8)
        webcam_parts.draw_parts(image, canvas, placements, 0.0)
        return image.astype(np.int16)

    def changed(a: np.ndarray, b: np.ndarray) -> float:
        """How much light moved: the summed absolute change (a lean moves edges, a loss takes all)."""
        return float(np.abs(a - b).max(axis=2).sum())

    upright = drawn({})
    typical = drawn({"C20": Placement(webcam.WEBCAM.lean_sd_units, 0.0)})
    furthest = drawn({"C20": Placement(webcam.WEBCAM.lean_max_units, 0.0)})
    assert 0 < changed(typical, upright) < changed(furthest, upright)  # the top moves on the image
    assert (np.abs(typical - upright).max(axis=2) > 12).sum() > 20
    # A missing part takes away all of it, whatever its lean: more than twice what a typical lean
    # changes and more than the furthest lean.
    for lean in (upright, typical, furthest):
        assert changed(drawn({"C20": None}), lean) > max(2 * changed(typical, upright), changed(furthest, upright))
    # two real boards: C20's top (its bright can) sits at different places
    centres = []
    for index in (0, 1, 2):
        placements, _ = shot_of((0, 0, index))
        top = webcam_parts._top(webcam_parts.THROUGH_HOLE[0], placements["C20"])
        centres.append(top)
    assert len({(round(x, 2), round(y, 2)) for x, y in centres}) == 3


def test_noise_and_jpeg_are_present(monkeypatch: pytest.MonkeyPatch) -> None:
    def residual(image: np.ndarray) -> float:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        return float(np.median(np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 2.0))))

    key = (3, 0, 0)
    compressed = render_board(SIZE, key, camera="webcam").image
    line = render_board(SIZE, key, fixture=True).image
    assert residual(compressed) > residual(line) * 1.2  # more sensor noise than the line camera
    monkeypatch.setattr(webcam, "jpeg", lambda image, quality: image)
    raw = render_board(SIZE, key, camera="webcam").image
    change = np.abs(compressed.astype(np.int16) - raw).astype(np.float32)
    assert change.mean() > 0.5  # JPEG changed the image
    # a JPEG decoded image survives another round at its quality far better than the raw image does
    quality = shot_of(key)[1].jpeg_quality
    assert webcam.WEBCAM.jpeg_quality[0] <= quality <= webcam.WEBCAM.jpeg_quality[1]
    again = np.abs(cv2.imdecode(cv2.imencode(".jpg", compressed, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 1)
                   .astype(np.int16) - compressed).mean()
    first = np.abs(cv2.imdecode(cv2.imencode(".jpg", raw, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], 1)
                   .astype(np.int16) - raw).mean()
    assert again < 0.6 * first, (again, first)


def test_webcam_masks_are_non_empty_and_inside_the_frame(tmp_path: Path) -> None:
    generate_dataset(tmp_path, good=1, defective=7, test_good=1, seed=2, size=(192, 160), camera="webcam")
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    assert manifest["fixture"] is True and manifest["camera"]["model"] == "webcam"
    assert manifest["camera"]["lean_sd_units"] == webcam.WEBCAM.lean_sd_units
    defective = [e for e in manifest["images"] if e["defect"]]
    assert {e["defect"] for e in defective} == set(DEFECT_TYPES)
    for entry in defective:
        mask = cv2.imread(str(tmp_path / entry["mask"]), cv2.IMREAD_UNCHANGED)
        image = cv2.imread(str(tmp_path / entry["path"]))
        assert mask.shape == image.shape[:2] == (160, 192)
        assert set(np.unique(mask).tolist()) == {0, 255}
        x, y, w, h = entry["bbox"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 192 and y + h <= 160
        assert cv2.boundingRect(mask) == (x, y, w, h)


def test_a_missing_through_hole_part_is_a_defect_with_its_mask() -> None:
    for index in range(40):
        board = render_board((256, 256), (1, 2, index), "missing_component", size_class="medium", camera="webcam")
        if board.detail["component"] in ("C20", "C21", "C22"):
            break
    else:
        pytest.fail("no through-hole part was ever missing")
    assert board.mask is not None and board.detail["mask_area"] > 150
