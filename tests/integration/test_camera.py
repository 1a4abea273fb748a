"""The camera feed: a real video file, and a scripted capture that fails, hangs and repeats itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.config import CameraConfig, RunnerConfig
from inspector.core.results import InspectionResult
from inspector.errors import CameraError, ConfigError
from inspector.feeds.backoff import Backoff
from inspector.feeds.camera import Trigger, frame_problem, run_camera_with_engine
from inspector.store import Store
from inspector.store.records import InspectionRecord
from tests.conftest import REPO_ROOT
from tests.fake_engine import FakeEngine
from tests.fake_store import unreachable_on


def textured(brightness: int, seed: int, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = np.clip(brightness + rng.integers(-20, 21, (size, size)), 0, 255).astype(np.uint8)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


class FakeClock:
    """Time that moves only when the loop sleeps (plus a real millisecond so threads can run)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds
        time.sleep(0.001)


class FakeCapture:
    """What the camera feed asks of an OpenCV capture besides read(): always open, every property 0,
    and `released` set once the feed releases it (a read that waits on it then gives up)."""

    def __init__(self) -> None:
        self.released = threading.Event()

    def isOpened(self) -> bool:  # noqa: N802
        return True

    def get(self, _prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released.set()


class ScriptedCapture(FakeCapture):
    """Hands out frames at scheduled (fake) times; then fails or hangs as scripted."""

    def __init__(self, clock: FakeClock, script: list[tuple[str, float, np.ndarray | None]]) -> None:
        super().__init__()
        self.clock = clock
        self.script = list(script)

    def read(self) -> tuple[bool, np.ndarray | None]:
        if not self.script:
            self.released.wait(30)  # hang until the feed gives up on us
            return False, None
        action, delay, image = self.script.pop(0)
        due = self.clock() + delay
        while self.clock() < due and not self.released.is_set():
            time.sleep(0.0005)
        if action == "hang":
            self.released.wait(30)
            return False, None
        if action == "fail":
            return False, None
        return True, image


def opener(outcomes: list[FakeCapture | str]):  # type: ignore[no-untyped-def]
    def open_capture() -> FakeCapture:
        outcome = outcomes.pop(0) if outcomes else "fail"
        if isinstance(outcome, str):
            raise CameraError("rtsp://line-cam-1: connection refused")
        return outcome

    return open_capture


def camera_config(**extra: object) -> CameraConfig:
    values: dict[str, object] = dict(trigger="every", read_timeout_seconds=2.0, open_timeout_seconds=5.0,
                                     backoff_initial_seconds=0.5, backoff_max_seconds=4.0, backoff_jitter=0.25,
                                     stale_frame_seconds=1.0)
    values.update(extra)
    return CameraConfig(**values)  # type: ignore[arg-type]


def not_inspected(rows: list[InspectionRecord]) -> list[str]:
    """The reasons of the triggers answered "not inspected" (error rows), without the prefix."""
    return [r.error.removeprefix("not inspected: ") for r in rows
            if r.verdict == "error" and r.error and r.error.startswith("not inspected: ")]


def test_backoff_doubles_to_the_cap_with_bounded_jitter() -> None:
    assert [Backoff(0.5, 4.0, 0.25, random=lambda: 0.5).next_delay() for _ in range(1)] == [0.5]
    middle = Backoff(0.5, 4.0, 0.25, random=lambda: 0.5)
    assert [middle.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    high = Backoff(0.5, 4.0, 0.25, random=lambda: 1.0)
    assert [high.next_delay() for _ in range(3)] == [0.625, 1.25, 2.5]
    low = Backoff(0.5, 4.0, 0.25, random=lambda: 0.0)
    assert [low.next_delay() for _ in range(2)] == [0.375, 0.75]
    middle.reset()
    assert middle.next_delay() == 0.5


def test_blank_and_black_frames_are_recognised() -> None:
    assert frame_problem(np.zeros((32, 32, 3), np.uint8)) == "black frame"
    assert frame_problem(np.full((32, 32), 128, np.uint8)) == "blank (near-constant) frame"
    assert frame_problem(textured(120, 1)) is None


def test_trigger_file_fires_when_touched(tmp_path: Path) -> None:
    marker = tmp_path / "plc.trigger"
    marker.write_text("")
    trigger = Trigger(camera_config(trigger="file", trigger_file=str(marker)), time.monotonic)
    assert not trigger.fired(True)
    time.sleep(0.01)
    marker.write_text("go")
    assert trigger.fired(False) and not trigger.fired(False)
    with pytest.raises(ConfigError, match="needs --trigger-file"):
        Trigger(camera_config(trigger="file"), time.monotonic)
    with pytest.raises(ConfigError, match="use one of"):
        Trigger(camera_config(trigger="sometimes"), time.monotonic)


def test_drops_hangs_repeats_and_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    good1, good2, good3 = textured(60, 1), textured(170, 2), textured(80, 3)
    first = ScriptedCapture(clock, [
        ("frame", 0.2, good1), ("frame", 0.2, good1.copy()),  # same pixels again: never scored twice
        ("frame", 0.2, np.zeros_like(good1)), ("frame", 0.2, np.full_like(good1, 128)),  # black, blank
        ("frame", 0.2, good2), ("hang", 0.0, None),
    ])
    second = ScriptedCapture(clock, [("frame", 0.2, good3), ("hang", 0.0, None)])
    engine = FakeEngine()
    data = tmp_path / "data"
    stats = run_camera_with_engine(
        "rtsp://line-cam-1", engine, RunnerConfig(station="cam", data_dir=str(data), json_lines=False),
        camera_config(), max_frames=3, open_capture=opener(["fail", "fail", "fail", first, "fail", second]),
        clock=clock, sleep=clock.sleep, random=lambda: 0.5,
    )
    assert stats.processed == 3
    assert engine.inspected == pytest.approx([good1.mean() / 100, good2.mean() / 100, good3.mean() / 100], rel=1e-3)
    store = Store.open(data)
    kinds = [e.kind for e in reversed(store.events()) if e.kind != "quarantine"]  # one per error row
    assert kinds == ["start", "camera_down", "camera_up", "camera_down", "camera_up", "stop"]
    stop_detail = store.events(kind="stop")[0].detail
    assert "black frame" in stop_detail and "blank" in stop_detail and "identical" in stop_detail
    rows = store.list_inspections()
    verdicts = [r for r in rows if r.verdict != "error"]
    assert len(verdicts) == 3 and all(Path(r.image_path).parent == data / "camera" for r in verdicts)
    assert all(Path(r.image_path).is_file() for r in verdicts)
    # The repeated, black and blank frames are answered too: never scored, never silent.
    assert sorted(not_inspected(rows)) == ["black frame", "blank (near-constant) frame",
                                           "repeated frame: identical to the last inspected frame"]
    assert store.stations()[0].state == "stopped"


def test_reconnect_times_follow_the_backoff(tmp_path: Path) -> None:
    clock = FakeClock()
    capture = ScriptedCapture(clock, [("frame", 0.1, textured(90, 4)), ("hang", 0.0, None)])
    from inspector.feeds import camera as camera_module

    loops: list[camera_module.CameraLoop] = []
    original = camera_module.CameraLoop

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
            super().__init__(*args, **kwargs)
            loops.append(self)

    camera_module.CameraLoop = Recording  # type: ignore[misc]
    try:
        run_camera_with_engine(
            "rtsp://line-cam-1", FakeEngine(), RunnerConfig(station="cam", data_dir=str(tmp_path), json_lines=False),
            camera_config(), max_frames=1, open_capture=opener(["fail", "fail", "fail", "fail", capture]),
            clock=clock, sleep=clock.sleep, random=lambda: 1.0,  # always the top of the jitter band
        )
    finally:
        camera_module.CameraLoop = original  # type: ignore[misc]
    attempts = loops[0].connect_attempts
    gaps = [later - earlier for earlier, later in zip(attempts, attempts[1:])]
    assert gaps == pytest.approx([0.625, 1.25, 2.5, 5.0], abs=0.02)


def test_stale_frame_is_never_scored_and_a_hang_is_noticed_in_time(tmp_path: Path) -> None:
    clock = FakeClock()
    frame = textured(90, 5)
    capture = ScriptedCapture(clock, [("frame", 0.05, frame), ("hang", 0.0, None)])
    engine = FakeEngine()
    stop = threading.Event()
    down_at: list[float] = []
    from inspector.feeds import camera as camera_module

    original_mark_down = camera_module.CameraLoop._mark_down

    def mark_down(self, reason: str) -> None:  # type: ignore[no-untyped-def]
        down_at.append(clock())
        stop.set()
        original_mark_down(self, reason)

    camera_module.CameraLoop._mark_down = mark_down  # type: ignore[method-assign]
    try:
        start = clock()
        stats = run_camera_with_engine(
            "rtsp://line-cam-1", engine, RunnerConfig(station="cam", data_dir=str(tmp_path), json_lines=False),
            camera_config(trigger="interval", interval_seconds=1.5), open_capture=opener([capture]),
            clock=clock, sleep=clock.sleep, random=lambda: 0.5, stop=stop,
        )
    finally:
        camera_module.CameraLoop._mark_down = original_mark_down  # type: ignore[method-assign]
    # t=0: no frame yet; t=1.5: the only frame is 1.45 s old (> 1 s): skipped; t~2.05: reads hung -> down.
    assert stats.processed == 0 and engine.inspected == []
    # ...and both triggers were answered, with their reasons.
    reasons = sorted(not_inspected(Store.open(tmp_path).list_inspections()))
    assert len(reasons) == 2 and reasons[0] == "no frame from the camera yet"
    assert reasons[1].startswith("stale frame: 1.") and reasons[1].endswith("s old (camera.stale_frame_seconds = 1)")
    assert down_at and down_at[0] - start == pytest.approx(2.05, abs=0.05)


def write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_video_file_is_inspected_frame_by_frame_until_its_end(tmp_path: Path) -> None:
    b1, b2, b3 = textured(70, 11, 96), textured(160, 12, 96), textured(100, 13, 96)
    video = tmp_path / "line.avi"
    write_video(video, [b1, b1, np.zeros_like(b1), b2, np.full_like(b1, 128), b3], fps=5.0)
    engine = FakeEngine()
    data = tmp_path / "data"
    stats = run_camera_with_engine(str(video), engine, RunnerConfig(station="cam", data_dir=str(data),
                                                                      json_lines=False), camera_config())
    assert stats.processed == 3  # b1 once, b2, b3; the black, blank and repeated frames never scored
    assert [round(score, 1) for score in engine.inspected] == [round(b.mean() / 100, 1) for b in (b1, b2, b3)]
    assert len(list((data / "camera").glob("*.png"))) == 3
    store = Store.open(data)
    assert [e.kind for e in reversed(store.events()) if e.kind != "quarantine"] == ["start", "stop"]
    assert sorted(not_inspected(store.list_inspections())) == [
        "black frame", "blank (near-constant) frame", "repeated frame: identical to the last inspected frame"]


class SlowEngine(FakeEngine):
    """Half a second a board: two and a half frame periods of a 5 fps recording."""

    def inspect_batch(self, images: Sequence[np.ndarray]) -> list[InspectionResult]:
        time.sleep(0.5)
        return super().inspect_batch(images)


def test_a_recording_waits_for_a_slow_loop_instead_of_skipping_boards(tmp_path: Path) -> None:
    engine = SlowEngine()
    stats = run_camera_with_engine(str(three_board_video(tmp_path)), engine,
                                   RunnerConfig(station="cam", data_dir=str(tmp_path / "data"), json_lines=False),
                                   camera_config())  # staleness 1 s: a frame played late is not stale
    assert stats.processed == 3
    assert [round(score, 1) for score in engine.inspected] == [round(b.mean() / 100, 1) for b in three_boards()]


def failing_store(monkeypatch: pytest.MonkeyPatch, failures: int) -> dict[str, int]:
    """record_inspection is unreachable `failures` times (a database server restarting)."""
    from inspector.feeds import camera as camera_module

    monkeypatch.setattr(camera_module, "STORE_RETRY_INITIAL_SECONDS", 0.01)
    return unreachable_on(monkeypatch, ["record_inspection"], lambda n: n <= failures, "record inspection failed")


def three_boards() -> list[np.ndarray]:
    return [textured(70, 11, 96), textured(160, 12, 96), textured(100, 13, 96)]


def three_board_video(tmp_path: Path) -> Path:
    video = tmp_path / "line.avi"
    write_video(video, three_boards(), fps=5.0)
    return video


def test_store_outage_holds_frames_and_stores_them_late(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = failing_store(monkeypatch, failures=2)
    data = tmp_path / "data"
    stats = run_camera_with_engine(str(three_board_video(tmp_path)), FakeEngine(),
                                   RunnerConfig(station="cam", data_dir=str(data), json_lines=False), camera_config())
    assert calls["count"] >= 2 and stats.processed == 3  # both failures met
    store = Store.open(data)
    rows = store.list_inspections()
    assert len(rows) == 3 and sorted(Path(r.image_path).name for r in rows) == sorted(
        p.name for p in (data / "camera").glob("*.png"))
    assert any("held and stored late" in e.detail for e in store.events(kind="error"))


def test_frames_the_store_never_takes_stay_journalled_and_the_next_start_stores_them_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failing_store(monkeypatch, failures=10_000)
    data = tmp_path / "data"
    config = RunnerConfig(station="cam", data_dir=str(data), json_lines=False)
    stats = run_camera_with_engine(str(three_board_video(tmp_path)), FakeEngine(), config, camera_config())
    assert stats.processed == 0
    held = sorted(p.name for p in (data / "camera-unstored").glob("*.png"))
    assert len(held) == 3 and not list((data / "camera").glob("*.png"))
    monkeypatch.undo()  # the store is back: the next start stores the held frames, then the new ones
    later_video = tmp_path / "later.avi"
    write_video(later_video, [textured(90, 31, 96), textured(130, 32, 96)], fps=5.0)
    later = run_camera_with_engine(str(later_video), FakeEngine(), config, camera_config())
    assert later.processed == 5
    store = Store.open(data)
    names = [Path(r.image_path).name for r in sorted(store.list_inspections(), key=lambda r: r.id)]
    assert names[:3] == held and len(names) == 5
    assert not list((data / "camera-unstored").iterdir()) and len(list((data / "camera").glob("*.png"))) == 5
    assert any("left unstored by the last run" in e.detail for e in store.events(kind="error"))


def test_missing_video_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CameraError, match="video file not found"):
        run_camera_with_engine(str(tmp_path / "none.avi"), FakeEngine(), RunnerConfig(data_dir=str(tmp_path)),
                               camera_config())


@pytest.mark.slow
def test_camera_command_on_a_video_file(tmp_path: Path, tiny_bundle: Path) -> None:
    import json
    import subprocess
    import sys

    b1, b2 = textured(70, 21, 96), textured(120, 22, 96)
    video = tmp_path / "line.avi"
    write_video(video, [b1, b1, b2, np.zeros_like(b1)], fps=5.0)
    data = tmp_path / "data"
    result = subprocess.run([sys.executable, "-m", "inspector", "camera", str(video), "--model", str(tiny_bundle),
                             "--data-dir", str(data), "--trigger", "every", "--station", "cam-9"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4 and {line["station"] for line in lines} == {"cam-9"}  # one answer per frame
    assert [line["error"] for line in lines if line["verdict"] == "error"] == [
        "not inspected: repeated frame: identical to the last inspected frame", "not inspected: black frame"]
    store = Store.open(data)
    assert len(store.list_inspections()) == 4 and store.stations()[0].state == "stopped"


def test_stdin_trigger_fires_once_per_line_then_ends() -> None:
    import io

    trigger = Trigger(camera_config(trigger="stdin"), time.monotonic, stdin=io.StringIO("go\ngo\n"))
    deadline = time.monotonic() + 5
    while not trigger.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not trigger.exhausted
    assert [trigger.fired(False) for _ in range(3)] == [True, True, False]
    assert trigger.exhausted
