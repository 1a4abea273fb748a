"""Issue 36, done when: 200 boards through the folder runner to an MES over MQTT (a real Mosquitto), the
broker restarted twice mid-run and the runner stopped and started once: every verdict_id arrives at least
once, none is missing, and the retained status says offline while the runner is down."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from inspector.config import InspectConfig, LineoutConfig, MqttConfig, RunnerConfig
from inspector.feeds.folder import run_folder
from inspector.feeds.processor import verdict_id
from inspector.store import InspectionRecord, Store
from tests.fake_engine import FakeEngine, board
from tests.mosquitto import Broker, Subscriber, mosquitto_fixture  # noqa: F401
from tests.runner_config import runner_config

BOARDS = 200
FIRST_RUN = 150  # boards dropped while the first runner is up; the rest while it is down
STATION = "line-1"


class Runner:
    """`inspector watch` in-process (the real folder runner, the fake engine), stoppable like SIGTERM."""

    def __init__(self, inbox: Path, config: RunnerConfig, lineout: LineoutConfig) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(inbox, config, lineout), daemon=True)
        self.thread.start()

    def _run(self, inbox: Path, config: RunnerConfig, lineout: LineoutConfig) -> None:
        try:
            run_folder(inbox, FakeEngine(), config, InspectConfig(), stop=self.stop, lineout=lineout)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)

    def end(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive() and not self.errors, self.errors


def _drop(inbox: Path, n: int) -> None:
    """As the camera PC does: written under a name the runner never takes, then renamed into place."""
    part = inbox / f".b{n:03d}.png.part"
    board(str(part), 40 + n % 120, seed=n)  # over 100: a failing board with a region
    os.replace(part, inbox / f"b{n:03d}.png")


def _stored(data: Path) -> int:
    with Store.open(data) as store:
        return store.count_inspections(station=STATION).total


def _wait(condition: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _drop_first_run(inbox: Path, mosquitto: Broker) -> list[float]:
    """The first run's boards, with the broker restarted twice while they come; how long each restart took."""
    restarts: list[float] = []
    n = 0
    while n < FIRST_RUN:
        _drop(inbox, n)
        n += 1
        time.sleep(0.03)  # about 30 boards a second, a fast line
        if n in (40, 100):  # the broker restarts, down for 1.5 s, while boards keep coming and are inspected
            started = time.monotonic()
            mosquitto.stop()
            while time.monotonic() - started < 1.5:
                _drop(inbox, n)
                n += 1
                time.sleep(0.05)
            mosquitto.start()
            restarts.append(time.monotonic() - started)
    return restarts


def _assert_retained_offline(mosquitto: Broker, status: str) -> None:
    retained = Subscriber(mosquitto, status)  # what an MES connecting now sees
    assert retained.wait_for(lambda got: bool(got))
    assert retained.messages[0].retain and retained.messages[0].json()["state"] == "offline"
    retained.close()


def _assert_messages_match(rows: list[InspectionRecord], received: list[dict[str, Any]]) -> None:
    """Each stored inspection's message carries its verdict, source and id; both verdicts occur."""
    by_id = {m["verdict_id"]: m for m in received}
    assert {row.verdict for row in rows} == {"pass", "fail"}
    for row in rows:
        message = by_id[verdict_id(row.input_sha256, row.model_hash)]
        assert (message["verdict"], message["source_name"], message["inspection_id"]) == (row.verdict, row.source_name,
                                                                                          row.id)


def _held_and_not_connected(data: Path) -> tuple[int, int]:
    """The outbox's verdicts that took more than one try, and those last refused as not connected."""
    with Store.open(data) as store:
        assert store.outbox_backlog() == 0  # the broker acknowledged every one
    with sqlite3.connect(data / "inspector.db") as db:  # the outages did cost tries: held, then resent
        (held,) = db.execute("SELECT count(*) FROM verdict_outbox WHERE attempts > 1").fetchone()
        (not_connected,) = db.execute("SELECT count(*) FROM verdict_outbox WHERE last_error LIKE "
                                      "'mqtt: not connected%'").fetchone()
    return held, not_connected


def test_200_boards_reach_the_mes_through_two_broker_restarts_and_a_runner_stop(tmp_path: Path,
                                                                                mosquitto: Broker) -> None:
    began = time.monotonic()
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    verdicts, status = f"board-inspector/{STATION}/verdict", f"board-inspector/{STATION}/status"
    # The MES: a persistent session, so what the broker takes while the MES is away waits for it.
    mes = Subscriber(mosquitto, f"board-inspector/{STATION}/#", persistent=True, client_id="mes-line-1")
    config = runner_config(data, station=STATION, min_free_bytes=0)
    lineout = LineoutConfig(mqtt=MqttConfig(url=mosquitto.url, ack_timeout_seconds=2.0, keepalive_seconds=5))

    def last_status() -> dict[str, object] | None:
        got = mes.on(status)
        return got[-1].json() if got else None

    runner = Runner(inbox, config, lineout)
    _wait(lambda: (last_status() or {}).get("state") == "online", 15, "the station online")
    restarts = _drop_first_run(inbox, mosquitto)
    _wait(lambda: _stored(data) >= FIRST_RUN, 30, "the first run's boards stored")
    # The runner stops (a service restart). Its retained status says offline while it is down.
    runner.end()
    _wait(lambda: (last_status() or {}).get("state") == "offline", 5, "the station offline")
    _assert_retained_offline(mosquitto, status)
    for n in range(FIRST_RUN, BOARDS):  # boards keep arriving while the runner is down
        _drop(inbox, n)
    offline_seen = [m.json()["state"] for m in mes.on(status)].count("offline")

    runner = Runner(inbox, config, lineout)
    try:
        _wait(lambda: _stored(data) >= BOARDS, 30, "every board stored")
        with Store.open(data) as store:
            rows = store.list_inspections(station=STATION, limit=10 * BOARDS)
        expected = {verdict_id(row.input_sha256, row.model_hash) for row in rows}
        assert len(rows) == BOARDS and len(expected) == BOARDS

        def arrived() -> set[str]:
            return {m.json()["verdict_id"] for m in mes.on(verdicts)}

        _wait(lambda: arrived() >= expected, 40, "every verdict at the MES")
    finally:
        runner.end()
    _wait(lambda: (last_status() or {}).get("state") == "offline", 5, "the station offline after the stop")
    received = [m.json() for m in mes.on(verdicts)]
    ids = [m["verdict_id"] for m in received]
    assert set(ids) == expected  # none missing, none the store does not know
    _assert_messages_match(rows, received)
    held, not_connected = _held_and_not_connected(data)
    assert held >= 40 and not_connected >= 40, (held, not_connected)
    assert offline_seen >= 1
    mes.close()
    elapsed = time.monotonic() - began
    print(f"200 boards, broker down {restarts[0]:.1f} s and {restarts[1]:.1f} s, runner stopped once: "
          f"{held} verdicts held and resent, {len(ids)} messages for {len(set(ids))} verdicts "
          f"({len(ids) - len(set(ids))} repeats) in {elapsed:.1f} s")
    assert elapsed < 90
