"""The camera feed under frame faults, dead lights, kills and a second feed (issue 35, findings 4, 5 and 7).

Every trigger gets exactly one answer (a verdict, or an `error` row with its reason) and the feed
goes on; frames are on disk before their rows; what a kill leaves is stored at the next start; a run
of black frames is an event and a degraded `/healthz`; two feeds cannot share a station.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from inspector.config import InspectConfig, RunnerConfig
from inspector.core.results import InspectionResult
from inspector.errors import ConfigError, InspectorError
from inspector.feeds import camera_journal as journal_module
from inspector.feeds.camera import HEARTBEAT_SECONDS, run_camera_with_engine
from inspector.feeds.folder import run_folder
from inspector.store import Store
from tests.conftest import REPO_ROOT, free_port
from tests.fake_engine import FakeEngine, board
from tests.integration.test_camera import FakeCapture, FakeClock, ScriptedCapture, camera_config, opener, textured, write_video


class FaultyEngine(FakeEngine):
    """Fails the way ONNX Runtime and OpenCV do on frames the model was not made for."""

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        for image in images:
            height, width = image.shape[:2]
            if height % 2 or width % 2:
                raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions for input")
            if (height, width) == (50, 50):
                raise cv2.error("OpenCV(4.10.0) resize.cpp:4152: error: (-215:Assertion failed) !ssize.empty()")
        return super().inspect_batch(images)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def rows(data: Path) -> list[Any]:
    with Store.open(data) as store:
        return sorted(store.list_inspections(limit=10_000), key=lambda r: r.id)


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def test_a_4_channel_a_16_bit_an_odd_sized_frame_and_a_full_disk_each_give_an_error_row_and_the_feed_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    good1, good2 = textured(60, 1), textured(90, 2)
    bgra = cv2.cvtColor(textured(70, 3), cv2.COLOR_BGR2BGRA)
    deep = textured(80, 4).astype(np.uint16) * 257
    odd = textured(75, 5, size=63)
    opencv_fails = textured(85, 6, size=50)
    unwritable = textured(95, 7)
    capture = ScriptedCapture(clock, [("frame", 0.1, image) for image in
                                      (good1, bgra, deep, odd, opencv_fails, unwritable, good2)] + [("hang", 0.0, None)])
    real_write = journal_module.atomic_write_bytes

    def write(path: Path, data: bytes, *, durable: bool = False) -> Path:
        assert durable, "a frame must be on disk before its row"
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if image is not None and image.mean() == pytest.approx(unwritable.mean()):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data, durable=durable)

    monkeypatch.setattr(journal_module, "atomic_write_bytes", write)
    data = tmp_path / "data"
    stats = run_camera_with_engine("rtsp://cam", FaultyEngine(), RunnerConfig(station="cam", data_dir=str(data),
                                                                                json_lines=False),
                                   camera_config(), max_frames=2, open_capture=opener([capture]), clock=clock,
                                   sleep=clock.sleep, random=lambda: 0.5)
    assert stats.processed == 2  # the good frame after the five faults was inspected: the feed went on
    stored = rows(data)
    assert [r.verdict for r in stored] == ["pass", "error", "error", "error", "error", "error", "pass"]
    reasons = [r.error for r in stored[1:6]]
    assert "4-channel frame" in reasons[0] and "16-bit frame" in reasons[1]
    assert "INVALID_ARGUMENT" in reasons[2] and "OpenCV" in reasons[3] and "No space left on device" in reasons[4]
    for row in stored[:5] + stored[6:]:  # the frames that could be written are kept for a person to look at
        assert Path(row.image_path).parent == data / "camera" and Path(row.image_path).is_file()
    assert stored[5].image_path == ""
    assert not list((data / "camera-unstored").iterdir())


def test_a_frame_is_whole_on_disk_before_its_row_is_committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    capture = ScriptedCapture(clock, [("frame", 0.1, textured(60 + 20 * i, i)) for i in range(3)] + [("hang", 0, None)])
    seen: list[bool] = []
    original = Store.record_inspection

    def record(self: Store, **fields: Any) -> int:
        journalled = Path(fields["image_path"]).parent.parent / "camera-unstored" / Path(fields["image_path"]).name
        seen.append(journalled.is_file() and cv2.imread(str(journalled)) is not None)
        return original(self, **fields)

    monkeypatch.setattr(Store, "record_inspection", record)
    fsynced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsynced.append(fd), real_fsync(fd))[1])
    run_camera_with_engine("rtsp://cam", FakeEngine(), RunnerConfig(station="cam", data_dir=str(tmp_path),
                                                                    json_lines=False),
                           camera_config(), max_frames=3, open_capture=opener([capture]), clock=clock,
                           sleep=clock.sleep, random=lambda: 0.5)
    assert seen == [True, True, True]
    assert len(fsynced) >= 3 * 2  # each frame: its file and its folder (then the move into camera/)
    assert len(list((tmp_path / "camera").glob("*.png"))) == 3


class GatedCapture(FakeCapture):
    """Frames handed out as the test opens each gate (real time), so the test can look in between."""

    def __init__(self, frames: list[tuple[threading.Event | None, np.ndarray]]) -> None:
        super().__init__()
        self.frames = list(frames)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.frames:
            self.released.wait(60)
            return False, None
        gate, image = self.frames.pop(0)
        if gate is not None:
            while not gate.wait(0.01) and not self.released.is_set():
                pass
        return True, image


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_twenty_black_frames_give_twenty_answers_an_event_and_a_degraded_healthz(tmp_path: Path) -> None:
    strobe_back = threading.Event()
    black = np.zeros((64, 64, 3), np.uint8)
    capture = GatedCapture([(None, black.copy()) for _ in range(20)] + [(strobe_back, textured(90, 8))])
    port, stop, published = free_port(), threading.Event(), io.StringIO()
    config = RunnerConfig(station="cam", data_dir=str(tmp_path), http_port=port)
    # Named like a recording, the capture hands every frame to the loop (none is dropped for a newer one),
    # so the test counts triggers exactly on any machine.
    thread, box = in_thread(lambda: run_camera_with_engine(
        "strobe.avi", FakeEngine(), config, camera_config(read_timeout_seconds=600.0, stale_frame_seconds=60.0),
        open_capture=opener([capture]), stop=stop, stream=published))
    try:
        wait_for(lambda: len(rows(tmp_path)) == 20)
        code, status = healthz(port)
        assert code == 503 and status["status"] == "degraded" and "black frame" in status["degraded"]
        with Store.open(tmp_path) as store:
            [event] = [e for e in store.events(kind="error") if "in a row not inspected" in e.detail]
        assert "10 triggers in a row" in event.detail  # camera.degraded_after_triggers, the default
        strobe_back.set()
        wait_for(lambda: len(rows(tmp_path)) == 21)
        wait_for(lambda: healthz(port)[0] == 200)
    finally:
        stop.set()
        capture.release()
        thread.join(30)
    assert "error" not in box, box.get("error")
    answers = [json.loads(line) for line in published.getvalue().splitlines()]
    assert [a["error"] for a in answers[:20]] == ["not inspected: black frame"] * 20
    assert len({a["verdict_id"] for a in answers[:20]}) == 20  # one answer per trigger, not one per identical frame
    assert answers[20]["verdict"] == "pass"


def test_an_idle_camera_keeps_its_station_alive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    beats: list[float] = []
    original = Store.set_station_state

    def beat(self: Store, station: str, state: str, **extra: Any) -> None:
        beats.append(clock())
        original(self, station, state, **extra)

    monkeypatch.setattr(Store, "set_station_state", beat)
    stop = threading.Event()

    def sleep(seconds: float) -> None:
        clock.sleep(0.5)  # half a second of feed time a turn: a minute of idling in a few hundred turns
        if clock() - 1000.0 > 65.0:
            stop.set()

    run_camera_with_engine("rtsp://cam", FakeEngine(), RunnerConfig(station="cam", data_dir=str(tmp_path),
                                                                     json_lines=False),
                           camera_config(trigger="file", trigger_file=str(tmp_path / "never-touched"),
                                         read_timeout_seconds=600.0),
                           open_capture=opener([GatedCapture([])]), clock=clock, sleep=sleep, stop=stop)
    idle = [t for t in beats if t > 1000.0]
    gaps = [later - earlier for earlier, later in zip(beats, beats[1:])]
    assert len(idle) >= 6 and max(gaps) <= HEARTBEAT_SECONDS + 1.0  # the store takes 120 s of silence as gone


def test_a_camera_and_a_watch_feed_cannot_share_a_station(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    board(str(inbox / "one.png"), 40)
    stop = threading.Event()
    capture = GatedCapture([])
    thread, box = in_thread(lambda: run_camera_with_engine(
        "rtsp://cam", FakeEngine(), RunnerConfig(station="line-1", data_dir=str(tmp_path / "cam"), db_url=db,
                                                 json_lines=False),
        camera_config(read_timeout_seconds=600.0), open_capture=opener([capture]), stop=stop))
    try:
        def camera_holds_it() -> bool:
            with Store.open(db) as store:
                return any(s.name == "line-1" and s.feed == "camera" and s.state == "running" for s in store.stations())

        wait_for(camera_holds_it)
        watch_config = RunnerConfig(station="line-1", data_dir=str(tmp_path / "watch"), db_url=db,
                                    stable_seconds=0.0, json_lines=False)
        with pytest.raises(ConfigError, match="fed by a camera"):
            run_folder(inbox, FakeEngine(), watch_config, InspectConfig(), once=True)
        assert (inbox / "one.png").exists()  # refused before it took anything
        with pytest.raises(InspectorError, match="another runner is already using this data directory"):
            run_camera_with_engine("rtsp://cam", FakeEngine(), RunnerConfig(station="line-1",
                                                                            data_dir=str(tmp_path / "cam"), db_url=db),
                                   camera_config(), open_capture=opener([GatedCapture([])]))
    finally:
        stop.set()
        capture.release()
        thread.join(30)
    assert "error" not in box, box.get("error")
    # ...and the other way round: a live folder feed keeps its station from a camera.
    with Store.open(db) as store:
        store.claim_station("line-2", data_dir=str((tmp_path / "watch2").resolve()), feed="watch")
        store.set_station_state("line-2", "running")
    with pytest.raises(ConfigError, match="fed by a watch"):
        run_camera_with_engine("rtsp://cam", FakeEngine(), RunnerConfig(station="line-2", data_dir=str(tmp_path / "c2"),
                                                                        db_url=db),
                               camera_config(), open_capture=opener([GatedCapture([])]))
    with pytest.raises(ConfigError, match="data directory of station 'line-1'"):  # one data directory, one station
        run_camera_with_engine("rtsp://cam", FakeEngine(), RunnerConfig(station="station-1",
                                                                        data_dir=str(tmp_path / "cam"), db_url=db),
                               camera_config(), open_capture=opener([GatedCapture([])]))


# ----------------------------------------------------------------------------- a real process, killed

OUTAGE_SCRIPT = """
import os, sys
from inspector.errors import StoreUnavailable
from inspector.store import Store

marker = sys.argv.pop(1)
original = Store.record_inspection

def record_inspection(self, **fields):
    # The database server is away while the marker file exists (a real outage, injected at the store).
    if os.path.exists(marker):
        raise StoreUnavailable("results store test: connection refused")
    return original(self, **fields)

Store.record_inspection = record_inspection
from inspector.cli import main
sys.exit(main(sys.argv[1:]))
"""


def start_camera(video: Path, bundle: Path, data: Path, marker: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", OUTAGE_SCRIPT, str(marker), "camera", str(video), "--model", str(bundle),
               "--data-dir", str(data), "--trigger", "every", "--station", "cam-k"]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_frames_held_in_an_outage_survive_kill_9_and_are_stored_first_after_the_restart(
        tmp_path: Path, tiny_bundle: Path) -> None:
    boards = [textured(60 + 4 * i, 100 + i, 96) for i in range(40)]
    video = tmp_path / "line.avi"
    write_video(video, boards, fps=5.0)
    data, marker = tmp_path / "data", tmp_path / "store-away"
    marker.touch()
    journal = data / "camera-unstored"
    proc = start_camera(video, tiny_bundle, data, marker)
    try:
        wait_for(lambda: journal.is_dir() and len(list(journal.glob("*.png"))) >= 3, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    held = sorted(path.name for path in journal.glob("*.png"))
    assert len(held) >= 3 and rows(data) == []
    marker.unlink()  # the store is back
    later = tmp_path / "later.avi"
    write_video(later, [textured(100, 201, 96), textured(140, 202, 96)], fps=5.0)
    restarted = start_camera(later, tiny_bundle, data, marker)
    out, err = restarted.communicate(timeout=180)
    assert restarted.returncode == 0, err
    stored = rows(data)
    names = [Path(row.image_path).name for row in stored]
    assert names[:len(held)] == held  # the held frames first, in their order, then the new ones
    assert len(stored) == len(held) + 2 and all(row.verdict != "error" for row in stored)
    assert not list(journal.glob("*.png")) and all((data / "camera" / name).is_file() for name in held)
    assert len(out.splitlines()) == len(stored)  # every stored verdict reached the line
