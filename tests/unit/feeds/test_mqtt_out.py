"""The MQTT output (issue 36) against a real Mosquitto broker: acknowledged delivery, answers within the
timeout when the broker is away or stalls, the retained status and its last will, triggers with a part id,
the password file and TLS."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from inspector.config import LineoutConfig, MqttConfig
from inspector.errors import ConfigError, InspectorError
from inspector.feeds.mqtt_out import MqttOutput
from inspector.feeds.mqtt_trigger import MAX_TRIGGER_BYTES, parse_trigger
from inspector.feeds.outputs import VERDICT_SCHEMA, make_outputs, verdict_message
from tests.conftest import REPO_ROOT, free_port
from tests.mosquitto import (  # noqa: F401 - mosquitto_fixture is the `mosquitto` fixture
    Broker,
    Subscriber,
    make_tls_files,
    mosquitto_fixture,
    publish_once,
)

STATION = "aoi-3"
PREFIX = "plant/board-inspector"


def _verdict(n: int = 1, part_id: str | None = "P-0001") -> dict[str, Any]:
    row = SimpleNamespace(
        id=n, input_sha256=f"{n:064x}", model_hash="ab" * 32, part_id=part_id, station=STATION,
        source_name=f"board-{n}.png", verdict="fail", score=1.25, threshold=1.0, threshold_version=2,
        threshold_source="qa", tolerance_version=3, image_path=f"/data/done/board-{n}.png",
        overlay_path=f"/data/overlays/board-{n}.png", timings={"decode": 1.5, "model": 9.25}, error=None,
        regions=[{"bbox": [4, 5, 10, 12], "area": 60, "peak": 3.5}],
        created_at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc),
    )
    return verdict_message(row, STATION)


def _output(broker: Broker, *, on_trigger: Any = None, **config: Any) -> MqttOutput:
    settings = {"url": broker.url, "topic_prefix": PREFIX, "ack_timeout_seconds": 2.0, "keepalive_seconds": 5, **config}
    return MqttOutput(MqttConfig(**settings), STATION, on_trigger)


def _connected(output: MqttOutput, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not output._client.is_connected():
        assert time.monotonic() < deadline, "the output did not connect"
        time.sleep(0.02)


@contextmanager
def _connected_output(output: MqttOutput) -> Iterator[MqttOutput]:
    """The output started and connected for the block, closed after it whatever happens."""
    output.start()
    try:
        _connected(output)
        yield output
    finally:
        output.close()


def _until(condition: Any, timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.02)


def _subscribed(broker: Broker) -> bool:
    """The broker has answered the station's subscription to its triggers (mosquitto logs every packet)."""
    return f"Sending SUBACK to board-inspector-{STATION}" in broker.log_file.read_text()


def _status(subscriber: Subscriber) -> dict[str, Any]:
    return subscriber.on(f"{PREFIX}/{STATION}/status")[-1].json()


def test_a_verdict_is_acknowledged_and_arrives_on_its_topic_as_compact_json(mosquitto: Broker) -> None:
    mes = Subscriber(mosquitto, f"{PREFIX}/#")
    output = _output(mosquitto)
    output.start()
    try:
        # Right after start (as `inspector lineout test` does): waits for the first connection, not refused.
        started = time.monotonic()
        assert output.deliver(_verdict(7)) is None and time.monotonic() - started < 2.0
        verdict = _verdict(part_id="P-µ-0001")  # non-ASCII goes as UTF-8, not \u escapes
        assert output.deliver(verdict) is None
        topic = f"{PREFIX}/{STATION}/verdict"
        assert mes.wait_for(lambda got: len([m for m in got if m.topic == topic]) == 2)
        message = mes.on(topic)[1]
        assert message.payload == json.dumps(verdict, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        body = message.json()
        assert body["schema"] == VERDICT_SCHEMA and body["verdict_id"] == verdict["verdict_id"]
        assert body["part_id"] == "P-µ-0001" and body["regions"] == [{"box": [4, 5, 10, 12], "area": 60, "peak": 3.5}]
        assert body["timings_ms"] == {"decode": 1.5, "model": 9.25} and body["tolerance_version"] == 3
        assert not message.retain
    finally:
        output.close()
        mes.close()


def test_with_the_broker_away_deliver_says_why_at_once_and_delivers_once_it_is_back(mosquitto: Broker) -> None:
    output = _output(mosquitto)
    assert output.deliver(_verdict()) == "mqtt: output not started"
    with _connected_output(output):
        mosquitto.stop()
        _until(lambda: not output._client.is_connected(), what="paho sees the broker gone")
        started = time.monotonic()
        problem = output.deliver(_verdict())
        assert problem is not None and problem.startswith("mqtt: not connected to the broker 127.0.0.1:")
        assert time.monotonic() - started < 0.5  # never waits on a broker that is not there
        mosquitto.start()
        _connected(output, timeout=15)  # reconnects by itself (backoff from 1 s)
        assert output.deliver(_verdict(2)) is None
    assert output.deliver(_verdict(3)) == "mqtt: output closed"
    nobody = MqttOutput(MqttConfig(url=f"mqtt://127.0.0.1:{free_port()}", ack_timeout_seconds=2.0), STATION, None)
    nobody.start()  # no broker at all from the start: the first attempt's failure is the answer
    try:
        started = time.monotonic()
        assert nobody.deliver(_verdict()) == f"mqtt: not connected to the broker {nobody.where} (cannot reach the broker)"
        assert time.monotonic() - started < 2.0
    finally:
        nobody.close()


def test_a_broker_that_stops_answering_costs_one_timeout_then_answers_at_once(mosquitto: Broker) -> None:
    """A stalled link (SIGSTOP: the TCP connection stays up, nothing answers): one verdict waits for the
    acknowledgement timeout, the next ones are refused at once, and the first PUBACK after it clears that."""
    mes = Subscriber(mosquitto, f"{PREFIX}/{STATION}/verdict")
    output = _output(mosquitto, ack_timeout_seconds=1.0, keepalive_seconds=30)
    output.start()
    assert mosquitto.process is not None
    try:
        _connected(output)
        assert output.deliver(_verdict(1)) is None
        os.kill(mosquitto.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        assert output.deliver(_verdict(2)) == ("mqtt: no acknowledgement (PUBACK) from the broker "
                                               f"127.0.0.1:{mosquitto.port} within 1 s")
        assert 0.9 < time.monotonic() - started < 2.0
        started = time.monotonic()
        problem = output.deliver(_verdict(3))
        assert problem is not None and "has not acknowledged" in problem and time.monotonic() - started < 0.2
        os.kill(mosquitto.process.pid, signal.SIGCONT)
        # paho still holds verdict 2: the broker's late PUBACK for it shows the link answers again.
        deadline = time.monotonic() + 5
        while output.deliver(_verdict(4)) is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ids = {_verdict(n)["verdict_id"] for n in (1, 2, 4)}
        assert mes.wait_for(lambda got: {m.json()["verdict_id"] for m in got} >= ids)
    finally:
        if mosquitto.process is not None:
            os.kill(mosquitto.process.pid, signal.SIGCONT)
        output.close()
        mes.close()


def test_the_status_is_retained_online_follows_the_station_and_says_offline_after_close(mosquitto: Broker) -> None:
    output = _output(mosquitto)
    output.station_state(online=True, ready=False, last_error=None)  # before the connection: sent on connect
    output.start()
    _connected(output)
    topic = f"{PREFIX}/{STATION}/status"
    late = Subscriber(mosquitto, topic)  # subscribes after the status was sent: gets the retained one
    assert late.wait_for(lambda got: len(got) >= 1)
    first = late.on(topic)[0]
    assert first.retain and first.json()["state"] == "online" and first.json()["ready"] is False
    assert datetime.fromisoformat(first.json()["time"]).tzinfo is not None
    output.station_state(online=True, ready=False, last_error="store unreachable: password=hunter2 refused")
    assert late.wait_for(lambda got: len(got) >= 2)
    assert _status(late) == {**_status(late), "state": "online", "ready": False,
                             "last_error": "store unreachable: password=*** refused"}
    output.close()
    assert late.wait_for(lambda got: len(got) >= 3 and got[-1].json()["state"] == "offline")
    late.close()
    after = Subscriber(mosquitto, topic)
    assert after.wait_for(lambda got: len(got) >= 1)
    assert after.messages[0].retain and after.messages[0].json()["state"] == "offline"
    after.close()


RUNNER = """
import sys, time
from inspector.config import MqttConfig
from inspector.feeds.mqtt_out import MqttOutput
output = MqttOutput(MqttConfig(url=sys.argv[1], topic_prefix=sys.argv[2], keepalive_seconds=5), sys.argv[3], None)
output.start()
while not output._client.is_connected():
    time.sleep(0.02)
print("connected", flush=True)
time.sleep(60)
"""


def test_a_killed_runner_shows_offline_through_its_last_will(mosquitto: Broker) -> None:
    topic = f"{PREFIX}/{STATION}/status"
    mes = Subscriber(mosquitto, topic)
    runner = subprocess.Popen([sys.executable, "-c", RUNNER, mosquitto.url, PREFIX, STATION], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert runner.stdout is not None and runner.stdout.readline().strip() == "connected"
        assert mes.wait_for(lambda got: bool(got) and got[-1].json()["state"] == "online")
        os.kill(runner.pid, signal.SIGKILL)  # no clean stop: only the broker can tell the line
        runner.wait(10)
        assert mes.wait_for(lambda got: got[-1].json()["state"] == "offline", timeout=10)
        will = _status(mes)
        assert will["ready"] is False and "connection to the station lost" in will["last_error"]
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(10)
        mes.close()
    retained = Subscriber(mosquitto, topic)
    assert retained.wait_for(lambda got: bool(got))
    assert retained.messages[0].retain and retained.messages[0].json()["state"] == "offline"
    retained.close()


def test_a_trigger_message_calls_on_trigger_with_its_part_id(mosquitto: Broker,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []
    arrived = threading.Event()

    def on_trigger(part_id: str) -> None:
        got.append(part_id)
        arrived.set()

    output = _output(mosquitto, on_trigger=on_trigger)
    topic = f"{PREFIX}/{STATION}/trigger"
    with _connected_output(output):
        _until(lambda: _subscribed(mosquitto), what="the trigger subscription")
        for payload in (b"P-42", b'{"part_id": "P-43"}', b"", b'{"part_id": 44}',
                        b"\xff\xfe", b"x" * (MAX_TRIGGER_BYTES + 1), b'{"part_id": ["P"]}', b"P\x07bell"):
            publish_once(mosquitto, topic, payload)
        publish_once(mosquitto, topic, b"P-45")
        deadline = time.monotonic() + 10
        while "P-45" not in got:
            assert time.monotonic() < deadline, got
            arrived.wait(0.1)
        assert got == ["P-42", "P-43", "", "44", "P-45"]
        assert f"Received SUBSCRIBE from board-inspector-{STATION}" in mosquitto.log_file.read_text()
        text = caplog.text
        assert "not UTF-8" in text and f"at most {MAX_TRIGGER_BYTES}" in text and "control characters" in text
        # A trigger published with retain fires once, live; the broker's stored copy, which it hands to every
        # new subscription, must not fire again at the next connection.
        publish_once(mosquitto, topic, b"P-retained", retain=True)
        _until(lambda: "P-retained" in got, what="the live trigger")
    again = _output(mosquitto, on_trigger=on_trigger)
    again.start()
    try:
        _until(lambda: "ignored: it is retained" in caplog.text, what="the retained copy at the next connection")
        assert got.count("P-retained") == 1
    finally:
        again.close()
        publish_once(mosquitto, topic, b"", retain=True)  # clears the retained message


def test_without_on_trigger_nothing_is_subscribed(mosquitto: Broker) -> None:
    with _connected_output(_output(mosquitto)) as output:
        assert output.deliver(_verdict()) is None
    # The broker's own log: the station connected and published, and never subscribed to its triggers.
    log = mosquitto.log_file.read_text()
    assert f"Received PUBLISH from board-inspector-{STATION}" in log
    assert f"Received SUBSCRIBE from board-inspector-{STATION}" not in log


@pytest.mark.parametrize(("payload", "expected"), [
    (b"  P-1\n", ("P-1", None)),
    (b'{"part_id": null}', ("", None)),
    (b"{}", ("", None)),
    (b"{not json", ("", "payload starts like JSON but is not")),
    (b"[1]", ("[1]", None)),  # not an object: a plain part id
    (b'{"part_id": true}', ("", "part_id must be a string or an integer, got bool")),
    ("P-\u00e9".encode(), ("P-\u00e9", None)),
    (("x" * 257).encode(), ("", "part id of 257 characters (at most 256)")),
])
def test_parse_trigger(payload: bytes, expected: tuple[str, str | None]) -> None:
    part_id, problem = parse_trigger(payload)
    assert part_id == expected[0]
    assert (problem is None) if expected[1] is None else (problem is not None and problem.startswith(expected[1]))


def test_the_password_comes_from_a_private_file_and_reaches_the_broker(tmp_path: Path) -> None:
    broker = Broker(tmp_path / "broker", passwords={"line-3": "pass word 3"}).start()
    try:
        secret = tmp_path / "mqtt-password"
        secret.write_text("pass word 3\n")
        secret.chmod(0o600)
        with _connected_output(_output(broker, username="line-3", password_file=str(secret))) as output:
            assert output.deliver(_verdict()) is None
        wrong = tmp_path / "wrong-password"
        wrong.write_text("guess\n")
        wrong.chmod(0o600)
        refused = _output(broker, username="line-3", password_file=str(wrong))
        refused.start()
        try:
            deadline = time.monotonic() + 10
            while (problem := refused.deliver(_verdict())) is not None and "refused" not in problem:
                assert time.monotonic() < deadline, problem
                time.sleep(0.05)
            assert problem is not None and "the broker refused the connection: Not authorized" in problem
            assert "guess" not in problem
        finally:
            refused.close()
    finally:
        broker.kill()


def test_a_password_file_others_can_read_and_other_bad_settings_are_refused_by_name(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cr3t\n")
    secret.chmod(0o644)
    url = "mqtt://127.0.0.1:1883"
    with pytest.raises(ConfigError, match=r"lineout.mqtt.password_file .*readable by other users.*chmod 600") as info:
        MqttOutput(MqttConfig(url=url, username="u", password_file=str(secret)), STATION, None)
    assert "s3cr3t" not in str(info.value)
    secret.chmod(0o600)
    with pytest.raises(ConfigError, match="password_file is set but lineout.mqtt.username is empty"):
        MqttOutput(MqttConfig(url=url, password_file=str(secret)), STATION, None)
    with pytest.raises(ConfigError, match="lineout.mqtt.password_file .*cannot read"):
        MqttOutput(MqttConfig(url=url, username="u", password_file=str(tmp_path / "missing")), STATION, None)
    secret.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        MqttOutput(MqttConfig(url=url, username="u", password_file=str(secret)), STATION, None)
    with pytest.raises(ConfigError, match="must not hold credentials"):
        MqttOutput(MqttConfig(url="mqtt://u:s3cr3t@host"), STATION, None)
    with pytest.raises(ConfigError, match="lineout.mqtt.ca_file set but lineout.mqtt.url is mqtt://"):
        MqttOutput(MqttConfig(url=url, ca_file="/etc/ssl/ca.pem"), STATION, None)
    with pytest.raises(ConfigError, match="lineout.mqtt.ca_file .*no such file"):
        MqttOutput(MqttConfig(url="mqtts://broker", ca_file=str(tmp_path / "none.pem")), STATION, None)
    with pytest.raises(ConfigError, match="the station name 'a/b' cannot be one MQTT topic level"):
        MqttOutput(MqttConfig(url=url), "a/b", None)
    with pytest.raises(ConfigError, match="lineout.mqtt.topic_prefix 'x/#'"):
        MqttOutput(MqttConfig(url=url, topic_prefix="x/#"), STATION, None)
    with pytest.raises(ConfigError, match="bad port"):
        MqttOutput(MqttConfig(url="mqtt://host:99999"), STATION, None)


def test_without_paho_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "paho.mqtt.client", None)  # import fails as if not installed
    with pytest.raises(InspectorError, match=r"pip install board-inspector\[line\]"):
        MqttOutput(MqttConfig(url="mqtt://127.0.0.1:1883"), STATION, None)


def test_make_outputs_builds_the_mqtt_output_only_when_configured() -> None:
    assert make_outputs(LineoutConfig(), STATION) == []
    outputs = make_outputs(LineoutConfig(mqtt=MqttConfig(url="mqtt://127.0.0.1:1883")), STATION, lambda p: None)
    assert [o.name for o in outputs] == ["mqtt"] and isinstance(outputs[0], MqttOutput)
    assert outputs[0].on_trigger is None  # triggers are off unless lineout.mqtt.triggers
    assert outputs[0].verdict_topic == f"board-inspector/{STATION}/verdict"


def test_tls_with_a_client_certificate_against_a_tls_broker(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path / "pki")
    broker = Broker(tmp_path / "broker", tls=tls).start()
    try:
        mes = Subscriber(broker, f"{PREFIX}/#", connect_kwargs={"tls": {
            "ca_certs": str(tls.ca), "certfile": str(tls.client_cert), "keyfile": str(tls.client_key)}})
        output = _output(broker, ca_file=str(tls.ca), cert_file=str(tls.client_cert), key_file=str(tls.client_key))
        try:
            with _connected_output(output):
                assert output.deliver(_verdict()) is None
                assert mes.wait_for(lambda got: any(m.topic.endswith("/verdict") for m in got))
        finally:
            mes.close()
        # Without the test CA the broker's certificate is not trusted: never connected, and deliver says so.
        untrusted = _output(broker, cert_file=str(tls.client_cert), key_file=str(tls.client_key))
        untrusted.start()
        try:
            time.sleep(1.0)
            problem = untrusted.deliver(_verdict())
            assert problem is not None and problem.startswith("mqtt: not connected")
        finally:
            untrusted.close()
        tls.client_key.chmod(0o644)
        with pytest.raises(ConfigError, match="lineout.mqtt.key_file .*readable by other users"):
            _output(broker, ca_file=str(tls.ca), cert_file=str(tls.client_cert), key_file=str(tls.client_key))
    finally:
        broker.kill()
