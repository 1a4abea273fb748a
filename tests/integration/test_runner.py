"""The folder runner: file state machine (in-process, fake engine) and real runner processes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from inspector.config import InspectConfig
from inspector.errors import InspectorError
from inspector.feeds.folder import run_folder
from inspector.feeds.inbox import StabilityTracker, final_path, is_temp_name
from inspector.store import Store
from tests.conftest import REPO_ROOT, free_port
from tests.fake_engine import MODEL_HASH, FakeEngine, board
from tests.fake_store import unreachable_on
from tests.runner_config import runner_config as config

ROOT = REPO_ROOT


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_temp_names_are_never_taken() -> None:
    for name in (".board.png", "board.png.tmp", "board.png.part", "board.png~", "x.PART"):
        assert is_temp_name(name)
    assert not is_temp_name("board.png")


def test_stability_needs_an_unchanged_file_for_the_whole_period() -> None:
    clock = [100.0]
    tracker = StabilityTracker(1.0, clock=lambda: clock[0], wall=lambda: 0.0)  # mtimes look fresh

    def stat(size: int, mtime_ns: int) -> os.stat_result:
        return SimpleNamespace(st_size=size, st_mtime_ns=mtime_ns, st_ino=7)  # type: ignore[return-value]

    assert tracker.ready({"a.png": stat(10, 1)}) == []
    clock[0] += 0.6
    assert tracker.ready({"a.png": stat(20, 2)}) == []  # grew: the period starts again
    clock[0] += 0.6
    assert tracker.ready({"a.png": stat(20, 2)}) == []  # unchanged for 0.6 s only
    clock[0] += 0.5
    assert tracker.ready({"a.png": stat(20, 2)}) == ["a.png"]


def test_final_path_never_overwrites_other_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"first")
    assert final_path(tmp_path, "b.png", sha(b"x")) == tmp_path / "b.png"
    assert final_path(tmp_path, "a.png", sha(b"first")) == tmp_path / "a.png"  # same bytes: idempotent
    other = final_path(tmp_path, "a.png", sha(b"second"))
    assert other == tmp_path / f"{sha(b'second')[:12]}-a.png"


def test_runner_inspects_stores_and_moves_each_file(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    board(str(inbox / "good.png"), 60, seed=1)
    board(str(inbox / "bad.png"), 180, seed=2)
    board(str(inbox / "copy-of-good.png"), 60, seed=1)  # same bytes, another name
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    (inbox / "upload.png.part").write_bytes(b"still being written")
    engine = FakeEngine()
    out = io.StringIO()
    cfg = config(data, json_lines=True)
    stats = run_folder(inbox, engine, cfg, InspectConfig(), once=True, stream=out)
    assert (stats.processed, stats.duplicates, stats.quarantined, stats.flagged) == (2, 1, 1, 1)
    assert len(engine.inspected) == 2  # the copy was never inferred
    assert sorted(p.name for p in inbox.iterdir()) == ["upload.png.part"]
    assert sorted(p.name for p in (data / "done").iterdir()) == ["bad.png", "copy-of-good.png", "good.png"]
    assert [p.name for p in (data / "quarantine").iterdir()] == ["broken.png"]
    assert list((data / "processing").iterdir()) == []

    store = Store.open(data)
    rows = {row.source_name: row for row in store.list_inspections()}
    assert set(rows) == {"good.png", "bad.png", "broken.png"}
    assert rows["bad.png"].verdict == "fail" and rows["good.png"].verdict == "pass"
    assert Path(rows["bad.png"].overlay_path).is_file() and Path(rows["bad.png"].heatmap_path).is_file()
    assert Path(rows["bad.png"].image_path) == data / "done" / "bad.png"
    assert rows["broken.png"].verdict == "error" and "broken.png" in (rows["broken.png"].error or "")
    [quarantine_event] = store.events(kind="quarantine")
    assert "broken.png" in quarantine_event.detail
    assert [e.kind for e in store.events()][:1] == ["stop"] and store.events(kind="start")
    assert store.stations()[0].state == "stopped"
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    # The copy is published again as the stored verdict, under the same stable id (issue 14).
    assert sorted(line["source_name"] for line in lines) == ["bad.png", "broken.png", "good.png", "good.png"]
    assert len({line["verdict_id"] for line in lines if line["source_name"] == "good.png"}) == 1


def test_leftovers_in_processing_are_taken_first_and_not_inferred_twice(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    engine = FakeEngine()
    board(str(inbox / "a.png"), 50, seed=1)
    run_folder(inbox, engine, config(data), InspectConfig(), once=True)
    # Simulate a kill after the row was stored but before the move to done/: the file is back in processing.
    os.rename(data / "done" / "a.png", data / "processing" / "a.png")
    board(str(data / "processing" / "b.png"), 50, seed=2)  # a kill right after the claim
    board(str(inbox / "c.png"), 50, seed=3)  # dropped while the runner was down
    stats = run_folder(inbox, engine, config(data), InspectConfig(), once=True)
    assert (stats.processed, stats.duplicates) == (2, 1)
    assert len(engine.inspected) == 3  # a once, b once, c once
    assert sorted(p.name for p in (data / "done").iterdir()) == ["a.png", "b.png", "c.png"]
    assert len(Store.open(data).list_inspections()) == 3


def test_same_name_with_new_bytes_keeps_both(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    engine = FakeEngine()
    board(str(inbox / "a.png"), 50, seed=1)
    run_folder(inbox, engine, config(data), InspectConfig(), once=True)
    second = board(str(inbox / "a.png"), 50, seed=2)
    run_folder(inbox, engine, config(data), InspectConfig(), once=True)
    names = sorted(p.name for p in (data / "done").iterdir())
    assert names == sorted(["a.png", f"{sha(second)[:12]}-a.png"])
    rows = Store.open(data).list_inspections()
    assert len(rows) == 2 and rows[0].image_path.endswith(f"{sha(second)[:12]}-a.png")


def test_qa_threshold_change_applies_from_the_next_batch(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    engine = FakeEngine(threshold=1.0)
    board(str(inbox / "a.png"), 150, seed=1)
    run_folder(inbox, engine, config(data), InspectConfig(), once=True)
    store = Store.open(data)
    store.add_threshold_version(MODEL_HASH, 2.0, None, "qa-anna", "lot 7 is brighter")
    board(str(inbox / "b.png"), 150, seed=2)
    run_folder(inbox, engine, config(data), InspectConfig(), once=True)
    rows = {row.source_name: row for row in store.list_inspections()}
    assert rows["a.png"].verdict == "fail" and rows["a.png"].threshold == 1.0
    assert rows["b.png"].verdict == "pass" and rows["b.png"].threshold == 2.0 and rows["b.png"].threshold_version == 1
    # Both counters start at 1: the source says which one each row's version belongs to.
    assert (rows["a.png"].threshold_source, rows["b.png"].threshold_source) == ("bundle", "qa")


def test_qa_version_equal_to_the_bundle_calibration_is_still_recorded_as_qa(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    engine = FakeEngine(threshold=1.0)  # bundle calibration version 1, threshold 1.0
    board(str(inbox / "a.png"), 150, seed=1)
    run_folder(inbox, engine, config(data), InspectConfig(), once=True)  # registers the model
    store = Store.open(data)
    store.add_threshold_version(MODEL_HASH, 1.0, None, "qa-anna", "confirmed as calibrated")
    board(str(inbox / "b.png"), 150, seed=2)
    run_folder(inbox, engine, config(data), InspectConfig(), once=True)
    rows = {row.source_name: row for row in store.list_inspections()}
    assert (rows["a.png"].threshold_version, rows["a.png"].threshold_source) == (1, "bundle")
    assert (rows["b.png"].threshold_version, rows["b.png"].threshold_source) == (1, "qa")


def test_backlog_is_batched_within_max_batch(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    engine = FakeEngine()
    for index in range(7):
        board(str(inbox / f"{index}.png"), 50, seed=index)
    run_folder(inbox, engine, config(data, max_batch=3), InspectConfig(), once=True)
    assert engine.batches == [3, 3, 1]


def test_missing_inbox_and_second_runner_are_clear_errors(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    with pytest.raises(InspectorError, match="inbox folder does not exist"):
        run_folder(inbox / "nope", FakeEngine(), config(data), InspectConfig(), once=True)
    stop = threading.Event()
    first = threading.Thread(target=run_folder, args=(inbox, FakeEngine(), config(data), InspectConfig()),
                             kwargs={"stop": stop})
    first.start()
    try:
        deadline = time.monotonic() + 10
        while not (data / "runner.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        with pytest.raises(InspectorError, match="another runner"):
            run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    finally:
        stop.set()
        first.join(10)


def test_other_filesystem_is_refused(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no second filesystem to test with")
    inbox = shm / f"inbox-{os.getpid()}"
    inbox.mkdir(exist_ok=True)
    try:
        with pytest.raises(InspectorError, match="different filesystem"):
            run_folder(inbox, FakeEngine(), config(tmp_path / "data"), InspectConfig(), once=True)
    finally:
        inbox.rmdir()


# ----------------------------------------------------------------------------- real processes

def start_runner(bundle: Path, inbox: Path, data: Path, *, stable: float = 0.0,
                 once: bool = False) -> subprocess.Popen[str]:
    """`inspector watch` as the line runs it, with the tiny trained model."""
    command = [sys.executable, "-m", "inspector", "watch", str(inbox), "--model", str(bundle), "--data-dir", str(data),
               "--station", "proc", "--stable-seconds", str(stable), "--poll-seconds", "0.05"]
    return subprocess.Popen(command + (["--once"] if once else []), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def rows(data: Path) -> list:  # type: ignore[type-arg]
    if not (data / "inspector.db").exists():
        return []
    store = Store.open(data)
    try:
        return store.list_inspections(limit=10_000)
    finally:
        store.close()


@pytest.mark.slow
def test_slow_writer_is_inspected_once_after_it_completes(dirs: tuple[Path, Path], tiny_bundle: Path) -> None:
    inbox, data = dirs
    content = board("", 80, size=160, seed=5)
    proc = start_runner(tiny_bundle, inbox, data, stable=1.0)
    try:
        wait_for(lambda: (data / "inspector.db").exists())
        target = inbox / "slow.png"
        chunks = [content[i:i + len(content) // 8 + 1] for i in range(0, len(content), len(content) // 8 + 1)]
        with open(target, "wb") as stream:
            for chunk in chunks:  # about 2.5 s in all, with pauses shorter than stable_seconds
                stream.write(chunk)
                stream.flush()
                time.sleep(0.3)
        wait_for(lambda: (data / "done" / "slow.png").exists())
        [row] = rows(data)
        assert row.input_sha256 == sha(content) and row.verdict in ("pass", "fail", "review")
        assert (data / "done" / "slow.png").read_bytes() == content
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert len(out.splitlines()) == 1
    assert list((data / "quarantine").iterdir()) == []


@pytest.mark.slow
def test_sigterm_finishes_cleanly_while_a_reader_polls(dirs: tuple[Path, Path], tiny_bundle: Path) -> None:
    inbox, data = dirs
    for index in range(40):
        board(str(inbox / f"b{index:02d}.png"), 50 + index * 4, size=96, seed=index)
    Store.open(data).close()
    reader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from inspector.store import Store
        store = Store.open({str(data)!r})
        end = time.monotonic() + 20
        while time.monotonic() < end:
            store.list_inspections(flagged_only=True, limit=20); store.stations(); store.events(limit=5)
            if any(e.kind == "stop" for e in store.events(limit=5)):
                break
    """)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    proc = start_runner(tiny_bundle, inbox, data)
    wait_for(lambda: len(rows(data)) >= 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert list((data / "processing").iterdir()) == []  # the batch in hand was finished
    store = Store.open(data)
    assert store.events(limit=1)[0].kind == "stop" and store.stations()[0].state == "stopped"
    _, reader_err = reader.communicate(timeout=30)
    assert reader.returncode == 0 and "locked" not in reader_err, reader_err


def drop_kill_test_files(inbox: Path, inputs: dict[str, str], count: int) -> None:
    """`count` more files into the inbox, each recorded in `inputs` (name -> sha256): boards, now and
    then a corrupt file or the first board's bytes under a new name."""
    for _ in range(count):
        index = len(inputs)
        name = f"k{index:03d}.png"
        if index % 9 == 4:  # a corrupt file now and then
            data_bytes = b"\x89PNG\r\n\x1a\n" + bytes([index]) * 40
            (inbox / name).write_bytes(data_bytes)
        elif index % 7 == 3 and index > 0:  # the same bytes as an earlier board, under a new name
            data_bytes = (inbox.parent / "first.bin").read_bytes()
            (inbox / name).write_bytes(data_bytes)
        else:
            data_bytes = board(str(inbox / name), 40 + (index * 37) % 180, size=96, seed=index)
            if index == 0:
                (inbox.parent / "first.bin").write_bytes(data_bytes)
        inputs[name] = sha(data_bytes)


def file_locations(inbox: Path, data: Path, inputs: dict[str, str]) -> dict[str, list[str]]:
    """Name -> the folders ("inbox", "processing", "done", "quarantine") holding its bytes, under its
    name or a renamed `<hash>-<name>`."""
    found: dict[str, list[str]] = {name: [] for name in inputs}
    for state in ("inbox", "processing", "done", "quarantine"):
        folder = inbox if state == "inbox" else data / state
        if not folder.exists():
            continue
        for path in folder.iterdir():
            name = path.name if path.name in inputs else path.name.split("-", 1)[-1]
            if name in found and sha(path.read_bytes()) == inputs[name]:
                found[name].append(state)
    return found


def row_count(data: Path) -> int:
    try:
        with sqlite3.connect(data / "inspector.db", timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM inspections").fetchone()[0])
    except sqlite3.OperationalError:
        return 0  # not created yet


def kill_a_runner(bundle: Path, inbox: Path, data: Path, rng: random.Random, round_index: int) -> None:
    """Start a runner and SIGKILL it: every fourth round at any moment, otherwise mid-work."""
    before = row_count(data)
    proc = start_runner(bundle, inbox, data)
    if round_index % 4 == 3:
        time.sleep(rng.uniform(0.0, 1.5))  # anywhere, start-up included
    else:  # in the middle of the work: just after a row was committed
        deadline = time.monotonic() + 15
        while row_count(data) == before and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
    proc.kill()
    proc.communicate(timeout=30)


def assert_each_file_stored_once(inbox: Path, data: Path, inputs: dict[str, str]) -> None:
    """After the last runner: every file in done/ or (the corrupt ones) quarantine/, one row per content."""
    states = file_locations(inbox, data, inputs)
    assert all(len(s) == 1 and s[0] in ("done", "quarantine") for s in states.values()), states
    corrupt = {name for name in inputs if int(name[1:4]) % 9 == 4}
    assert {name for name, s in states.items() if s == ["quarantine"]} == corrupt
    stored = rows(data)
    assert len({(r.input_sha256, r.model_hash) for r in stored}) == len(stored)  # no duplicate rows
    assert {r.input_sha256 for r in stored} == set(inputs.values())
    store = Store.open(data)
    assert store.integrity_check() == "ok"


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing(dirs: tuple[Path, Path], tiny_bundle: Path) -> None:
    inbox, data = dirs
    rng = random.Random(11)
    inputs: dict[str, str] = {}  # name -> sha256
    drop_kill_test_files(inbox, inputs, 10)
    interrupted = 0  # kills that left a claimed file in processing/
    for round_index in range(20):
        kill_a_runner(tiny_bundle, inbox, data, rng, round_index)
        snapshot = file_locations(inbox, data, inputs)
        for name, states in snapshot.items():
            assert len(states) == 1, (name, states)
        interrupted += any(states == ["processing"] for states in snapshot.values())
        drop_kill_test_files(inbox, inputs, 4)  # arrives while the runner is down
    assert interrupted >= 3, "the kills never hit a file in processing/: the test exercised nothing"
    final = start_runner(tiny_bundle, inbox, data, once=True)
    _, err = final.communicate(timeout=60)
    assert final.returncode == 0, err
    assert_each_file_stored_once(inbox, data, inputs)


def test_failing_hook_becomes_an_error_event_and_the_runner_goes_on(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    board(str(inbox / "a.png"), 50, seed=1)
    board(str(inbox / "b.png"), 50, seed=2)
    hook = f"{sys.executable} -c \"import sys; sys.exit(3)\""
    stats = run_folder(inbox, FakeEngine(), config(data, hook=hook), InspectConfig(), once=True)
    assert stats.processed == 2
    errors = Store.open(data).events(kind="error")
    assert len(errors) == 2 and all("exit status 3" in e.detail for e in errors)


def test_unwritable_overlay_costs_the_picture_not_the_verdict(dirs: tuple[Path, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Disk full for pictures: every board is still stored, moved to done/ and published."""
    from inspector.core import render
    from inspector.errors import OutputError

    written = render.save_png

    def failing_overlays(path, image):  # type: ignore[no-untyped-def]
        if str(path).endswith(".overlay.png"):
            raise OutputError(f"{path}: No space left on device")
        return written(path, image)

    monkeypatch.setattr(render, "save_png", failing_overlays)
    inbox, data = dirs
    board(str(inbox / "good.png"), 60, seed=1)
    board(str(inbox / "bad.png"), 180, seed=2)
    stats = run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True)
    assert (stats.processed, stats.quarantined) == (2, 0)
    assert sorted(p.name for p in (data / "done").iterdir()) == ["bad.png", "good.png"]
    store = Store.open(data)
    rows = {row.source_name: row for row in store.list_inspections()}
    assert rows["bad.png"].verdict == "fail" and rows["good.png"].verdict == "pass"
    assert rows["bad.png"].overlay_path == "" and Path(rows["bad.png"].heatmap_path).is_file()
    errors = store.events(kind="error")
    assert len(errors) == 2 and all("overlay not written" in e.detail and "No space" in e.detail for e in errors)


def test_reconstructions_are_written_beside_the_heatmap(dirs: tuple[Path, Path]) -> None:
    """inspect.save_reconstruction: the dashboard shows `<stem>.reconstruction.png` next to the heatmap."""
    import cv2

    inbox, data = dirs
    board(str(inbox / "bad.png"), 180, seed=2)
    run_folder(inbox, FakeEngine(save_reconstruction=True), config(data), InspectConfig(), once=True)
    [row] = Store.open(data).list_inspections()
    heatmap = Path(row.heatmap_path)
    rebuilt = heatmap.with_name(heatmap.name.replace(".heatmap.png", ".reconstruction.png"))
    picture = cv2.imread(str(rebuilt))
    assert picture is not None and picture.shape[:2] == cv2.imread(row.image_path).shape[:2]


def test_store_outage_keeps_every_board_and_resumes(dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The store goes away for a while: the runner neither exits nor quarantines nor loses a board;
    it waits, then stores every board once and records the outage."""
    from inspector.feeds import folder as runner_module

    monkeypatch.setattr(runner_module, "STORE_RETRY_INITIAL_SECONDS", 0.05)
    calls = unreachable_on(monkeypatch, ["record_inspection"], lambda n: n <= 4, "record inspection failed")
    inbox, data = dirs
    for index in range(3):
        board(str(inbox / f"b{index}.png"), 60 + 60 * index, seed=index)
    stop = threading.Event()
    result: dict[str, object] = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "stats", run_folder(inbox, FakeEngine(), config(data), InspectConfig(), stop=stop)))
    worker.start()
    try:
        wait_for(lambda: len(list((data / "done").glob("*.png"))) == 3, timeout=30)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive() and calls["count"] >= 4  # every failure was met
    store = Store.open(data)
    names = sorted(row.source_name for row in store.list_inspections())
    assert names == ["b0.png", "b1.png", "b2.png"]  # each board once, none as an error
    assert list((data / "quarantine").iterdir()) == [] and list((data / "processing").iterdir()) == []
    assert any("unreachable" in event.detail for event in store.events(kind="error"))


def test_a_request_the_store_refuses_for_good_is_not_an_outage(dirs: tuple[Path, Path],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Only an unreachable store is waited for; a refused request ends the run at once, its board
    still in processing/ for the next start (no endless retry that logs "unreachable")."""
    from inspector.errors import StoreError

    def refused(self, **kwargs):  # type: ignore[no-untyped-def]
        raise StoreError("results store test: record inspection failed (value too long)")

    monkeypatch.setattr(Store, "record_inspection", refused)
    inbox, data = dirs
    board(str(inbox / "a.png"), 60, seed=1)
    stop = threading.Event()
    with pytest.raises(StoreError, match="value too long"):
        run_folder(inbox, FakeEngine(), config(data), InspectConfig(), stop=stop)
    assert [p.name for p in (data / "processing").iterdir()] == ["a.png"]


def test_an_outage_noticed_while_idle_is_one_outage_with_growing_waits(
        dirs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The heartbeat finds the store gone; each retry that fails again is the same outage: one error
    line, waits that grow, one outage event once the store answers."""
    import logging

    from inspector.feeds import folder as runner_module

    monkeypatch.setattr(runner_module, "STORE_RETRY_INITIAL_SECONDS", 0.01)
    monkeypatch.setattr(runner_module, "HEARTBEAT_SECONDS", 0.0)
    # start-up writes succeed, then five failures in a row
    unreachable_on(monkeypatch, ("set_station_state", "record_event"), lambda n: 3 <= n <= 7)
    waits: list[float] = []
    inbox, data = dirs
    stop = threading.Event()
    real_wait = stop.wait

    def recording_wait(timeout=None):  # type: ignore[no-untyped-def]
        waits.append(timeout)
        return real_wait(timeout)

    stop.wait = recording_wait  # type: ignore[method-assign]
    caplog.set_level(logging.INFO, logger="inspector.feeds.folder")
    worker = threading.Thread(target=lambda: run_folder(inbox, FakeEngine(), config(data), InspectConfig(), stop=stop))
    worker.start()
    try:
        wait_for(lambda: any("unreachable" in e.detail for e in Store.open(data).events(kind="error")), timeout=30)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not worker.is_alive()
    assert sum("waiting for the store" in r.getMessage() for r in caplog.records) == 1
    assert len(waits) == 5 and all(later > earlier for earlier, later in zip(waits, waits[1:]))


def test_runner_stores_into_postgresql(dirs: tuple[Path, Path], pg_schema_url: str) -> None:
    inbox, data = dirs
    board(str(inbox / "a.png"), 60, seed=1)
    board(str(inbox / "b.png"), 170, seed=2)
    stats = run_folder(inbox, FakeEngine(), config(data, db_url=pg_schema_url), InspectConfig(), once=True)
    assert stats.processed == 2
    store = Store.open(pg_schema_url)
    assert sorted(r.verdict for r in store.list_inspections()) == ["fail", "pass"]
    assert not (data / "inspector.db").exists()


@pytest.mark.slow
def test_watch_process_serves_health_and_metrics(dirs: tuple[Path, Path], tiny_bundle: Path) -> None:
    inbox, data = dirs
    port = free_port()
    for index in range(3):
        board(str(inbox / f"m{index}.png"), 60 + 30 * index, size=96, seed=index)
    command = [sys.executable, "-m", "inspector", "watch", str(inbox), "--model", str(tiny_bundle), "--data-dir",
               str(data), "--stable-seconds", "0", "--poll-seconds", "0.05", "--http-port", str(port), "--no-json"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: len(rows(data)) == 3)

        def fetch(path: str) -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                assert response.status == 200
                return response.read().decode()

        wait_for(lambda: "inspector_images_processed_total 3" in fetch("/metrics"))
        assert json.loads(fetch("/healthz"))["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out == ""  # --no-json: stdout stays quiet


class RefusesTinyImages(FakeEngine):
    """Like the real engine with a patch model: an image smaller than the model's minimum is refused."""

    def inspect_batch(self, images):  # type: ignore[no-untyped-def]
        if any(min(image.shape[:2]) < 32 for image in images):
            from inspector.errors import InspectorError

            raise InspectorError("input 16x16 is smaller than the model's 32 px minimum")
        return super().inspect_batch(images)


def test_an_image_the_model_refuses_is_quarantined_and_the_batch_goes_on(dirs: tuple[Path, Path]) -> None:
    inbox, data = dirs
    board(str(inbox / "a.png"), 60, seed=1)
    board(str(inbox / "tiny.png"), 60, size=16, seed=2)
    board(str(inbox / "c.png"), 180, seed=3)
    stats = run_folder(inbox, RefusesTinyImages(), config(data), InspectConfig(), once=True)
    assert (stats.processed, stats.quarantined) == (2, 1)
    assert sorted(p.name for p in (data / "done").iterdir()) == ["a.png", "c.png"]
    assert [p.name for p in (data / "quarantine").iterdir()] == ["tiny.png"]
    assert list((data / "processing").iterdir()) == []
    rows = {row.source_name: row for row in Store.open(data).list_inspections()}
    assert rows["tiny.png"].verdict == "error" and "smaller than the model" in (rows["tiny.png"].error or "")


class CountsCalls(FakeEngine):
    """Says when the model has been called on the runner's second part of a batch."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.second_call = threading.Event()

    def inspect_batch(self, images):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls == 2:
            self.second_call.set()
        return super().inspect_batch(images)


def test_the_model_runs_on_the_next_boards_while_the_last_ones_are_stored(dirs: tuple[Path, Path],
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from inspector.feeds.processor import Processor

    inbox, data = dirs
    for index in range(8):  # one claim of 8 boards, two model calls of 4
        board(str(inbox / f"b{index}.png"), 60 + index, seed=index)
    engine = CountsCalls()
    model_busy_while_drawing: list[bool] = []
    draw = Processor.save_images

    def save_images(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # Board 1's pictures wait for the model to take boards 5-8: only an overlap lets that happen.
        model_busy_while_drawing.append(engine.second_call.wait(10.0))
        return draw(self, *args, **kwargs)

    monkeypatch.setattr(Processor, "save_images", save_images)
    stats = run_folder(inbox, engine, config(data, max_batch=8), InspectConfig(batch_size=4), once=True)
    assert stats.processed == 8 and engine.calls == 2
    assert model_busy_while_drawing[0] is True
    rows = Store.open(data).list_inspections()
    assert sorted(row.source_name for row in rows) == [f"b{index}.png" for index in range(8)]
    assert list((data / "processing").iterdir()) == []
