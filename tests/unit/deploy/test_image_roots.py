"""Where the dashboard reads stored pictures from (issue 35, findings 6 and 8): its data folder and the
stations' data folders the store records, never anywhere else (symlinks included), each file read
through one descriptor whose file is checked, so nothing can be swapped in between a check and the read."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from deploy.dashboard import images


@pytest.fixture(autouse=True)
def _no_station_folders() -> Iterator[None]:
    """Each test registers its own stations' folders; none leaks into the next test."""
    registry = getattr(images, "_STATION_FOLDERS", {})
    saved = dict(registry)
    yield
    registry.clear()
    registry.update(saved)


def _png(path: Path, value: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((12, 16, 3), value, np.uint8))
    return path


def test_a_picture_in_a_stations_folder_is_read_one_elsewhere_is_refused(tmp_path: Path) -> None:
    data_dir, station_dir, elsewhere = tmp_path / "dashboard-data", tmp_path / "line-1", tmp_path / "elsewhere"
    data_dir.mkdir()
    board = _png(station_dir / "done" / "b.png", 90)
    stray = _png(elsewhere / "b.png", 90)
    with pytest.raises(images.MissingImage, match="board image is outside the data folder; not shown"):
        images.read_colour(board, "board image", data_dir)  # no store told the dashboard about line-1 yet
    images.use_station_folders(data_dir, lambda: ["", "relative/dir", str(station_dir)])
    assert images.read_colour(board, "board image", data_dir)[0, 0].tolist() == [90, 90, 90]
    for outside in (stray, Path("/etc/passwd")):
        with pytest.raises(images.MissingImage, match="board image is outside the data folder; not shown"):
            images.read_colour(outside, "board image", data_dir)


def test_a_station_recorded_at_the_file_systems_root_opens_nothing(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    images.use_station_folders(data_dir, lambda: ["/"])
    with pytest.raises(images.MissingImage, match="outside the data folder"):
        images.read_colour(_png(tmp_path / "other" / "b.png", 1), "board image", data_dir)


def test_the_stations_are_asked_only_for_a_picture_outside_the_data_folder(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    asked: list[int] = []
    images.use_station_folders(data_dir, lambda: asked.append(1) or [])
    images.read_colour(_png(data_dir / "b.png", 5), "board image", data_dir)
    assert asked == []  # the common case costs no store query


def test_symlinks_out_of_every_folder_are_refused_and_within_them_followed(tmp_path: Path) -> None:
    data_dir, station_dir = tmp_path / "data", tmp_path / "station"
    outside = _png(tmp_path / "secret" / "b.png", 200)
    inside = _png(station_dir / "b.png", 60)
    images.use_station_folders(data_dir, lambda: [str(station_dir)])
    data_dir.mkdir()
    (data_dir / "leak.png").symlink_to(outside)
    (data_dir / "dir-leak").symlink_to(outside.parent, target_is_directory=True)
    (data_dir / "to-station.png").symlink_to(inside)
    for link in (data_dir / "leak.png", data_dir / "dir-leak" / "b.png"):
        with pytest.raises(images.MissingImage, match="outside the data folder"):
            images.read_colour(link, "board image", data_dir)
        with pytest.raises(images.MissingImage, match="outside the data folder"):
            images.read_heatmap(link, data_dir)
    assert images.read_colour(data_dir / "to-station.png", "board image", data_dir)[0, 0].tolist() == [60] * 3
    # The data folder reached through a symlink of its own (a mount point, /var/lib/... -> /srv/...) is no leak.
    (tmp_path / "data-link").symlink_to(data_dir, target_is_directory=True)
    _png(data_dir / "own.png", 7)
    assert images.read_colour(tmp_path / "data-link" / "own.png", "board image", tmp_path / "data-link").shape == (12, 16, 3)


def test_a_name_swapped_for_a_symlink_at_the_open_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check before the open sees a picture inside; the name then points outside when it is opened
    (what an attacker racing the dashboard would do). The file actually opened is refused."""
    data_dir = tmp_path / "data"
    board = _png(data_dir / "b.png", 30)
    secret = _png(tmp_path / "secret.png", 250)
    real_open = os.open

    def swapping_open(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: int) -> int:
        if Path(path) == board:
            board.unlink()
            board.symlink_to(secret)
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", swapping_open)
    for read in (lambda: images.read_colour(board, "board image", data_dir), lambda: images.read_heatmap(board, data_dir)):
        with pytest.raises(images.MissingImage, match="b.png: .* is outside the data folder; not shown"):
            read()
        board.unlink()
        _png(board, 30)


def test_each_picture_is_opened_once_and_decoded_from_the_bytes_read(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """No second open by name: not for the check, not for the decode, not for a heatmap's alpha."""
    data_dir = tmp_path / "data"
    board = _png(data_dir / "b.png", 30)
    heat = np.zeros((12, 16, 4), np.uint8)
    heat[2:5, 2:5] = (0, 0, 255, 255)
    heat_path = data_dir / "b.heatmap.png"
    cv2.imwrite(str(heat_path), heat)  # BGRA: its alpha is read from the same bytes
    opened: list[str] = []
    real_open = os.open

    def counting_open(path: str | os.PathLike[str], flags: int, *args: int, **kwargs: int) -> int:
        opened.append(str(path))
        return real_open(path, flags, *args, **kwargs)

    def by_name(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a stored picture was opened again by its name")

    monkeypatch.setattr(os, "open", counting_open)
    monkeypatch.setattr(np, "fromfile", by_name)
    monkeypatch.setattr(cv2, "imread", by_name)
    assert images.read_colour(board, "board image", data_dir).shape == (12, 16, 3)
    layer = images.read_heatmap(heat_path, data_dir)
    assert layer.shape == (12, 16, 4) and layer[3, 3, 3] == 255 and layer[8, 8, 3] == 0
    assert opened == [str(board), str(heat_path)]


def test_what_is_no_picture_file_is_named_not_read(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    (data_dir / "folder.png").mkdir(parents=True)
    os.mkfifo(data_dir / "pipe.png")  # would block an open() without O_NONBLOCK
    (data_dir / "text.png").write_text("not a picture")
    with pytest.raises(images.MissingImage, match="folder.png: board image missing or unreadable .is a directory"):
        images.read_colour(data_dir / "folder.png", "board image", data_dir)
    outcome: list[BaseException | None] = []

    def read_pipe() -> None:
        try:
            images.read_colour(data_dir / "pipe.png", "board image", data_dir)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            outcome.append(exc)

    reader = threading.Thread(target=read_pipe, daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # blocked in open(): let it go (a writer appears), then fail
        os.close(os.open(data_dir / "pipe.png", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("a FIFO among the stored pictures blocked the dashboard")
    assert isinstance(outcome[0], images.MissingImage)
    assert "pipe.png: board image missing or unreadable (not a regular file)" in str(outcome[0])
    with pytest.raises(images.MissingImage, match="text.png: board image missing or unreadable .unsupported"):
        images.read_colour(data_dir / "text.png", "board image", data_dir)
    with pytest.raises(images.MissingImage, match="gone.png: board image missing or unreadable .file not found"):
        images.read_colour(data_dir / "gone.png", "board image", data_dir)
