"""The OPC UA output (issue 36) against real asyncua clients: a PLC that subscribes receives every result and
acknowledges each; a PLC that stops acknowledging raises the error and loses no verdict; only ResultAck is
writable; the Trigger method; anonymous access only on localhost, and a signed and encrypted server that lets
in only clients holding a trusted certificate."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.crypto import uacrypto
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from inspector.config import LineoutConfig, OpcuaConfig
from inspector.errors import ConfigError, InspectorError
from inspector.feeds.opcua_model import (
    ERROR_ACK_TIMEOUT,
    ERROR_NONE,
    ERROR_OFFLINE,
    ERROR_STATION_FAULT,
    NAMESPACE_URI,
    RESULT,
    RESULT_ABORTED,
    RESULT_COMPLETED,
    SYSTEM_PRODUCTION,
    SYSTEM_STANDBY,
    SYSTEM_UNSCHEDULED_DOWNTIME,
)
from inspector.feeds.opcua_out import OpcuaOutput
from inspector.feeds.outputs import make_outputs, verdict_message
from tests.conftest import REPO_ROOT, free_port
from tests.opcua_certs import make_certificate

STATION = "aoi-3"
CLIENT_URI = "urn:plc:line-1"
ACK = 2.0  # the PLC answers in milliseconds; tests that wait for a timeout use a shorter one
RESULT_FIELDS = ("ResultId", "ResultState", "PartId", "JobId", "CreationTime", "ResultContent",
                 "ProcessingTimes.AcquisitionDuration", "ProcessingTimes.ProcessingDuration")


def _verdict(n: int, verdict: str = "pass", *, part_id: str | None = None, error: str | None = None) -> dict[str, Any]:
    row = SimpleNamespace(
        id=n, input_sha256=f"{n:04x}" * 16, model_hash="ab" * 32, part_id=part_id if part_id is not None else f"P-{n:04d}",
        station=STATION, source_name=f"board-{n}.png", verdict=verdict, score=None if verdict == "error" else 0.5 + n,
        threshold=1.0, threshold_version=2, threshold_source="qa", tolerance_version=0,
        image_path=f"/data/done/board-{n}.png", overlay_path=None, timings={"decode": 1.5, "total": 12.0},
        error=error, regions=[{"bbox": [4, 5, 10, 12], "area": 60, "peak": 3.5}] if verdict != "pass" else [],
        created_at=datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone.utc),
    )
    return verdict_message(row, STATION)


def _config(**settings: Any) -> OpcuaConfig:
    values = {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}/board-inspector", "security": "none",
              "ack_timeout_seconds": ACK, **settings}
    return OpcuaConfig(**values)


@contextmanager
def running(output: OpcuaOutput) -> Iterator[OpcuaOutput]:
    output.start()
    try:
        yield output
    finally:
        output.close()


class Plc:
    """A PLC on an asyncua client. Woken by its subscription to ResultReady and ResultAck, it takes the result
    while ResultReady and not ResultAck, reads it and acknowledges it (while `acking`)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.acking = True
        self.acked: list[str] = []
        self.results: dict[str, dict[str, Any]] = {}
        self.ns = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Plc:
        self.ns = await self.client.get_namespace_index(NAMESPACE_URI)
        subscription = await self.client.create_subscription(20, self)
        await subscription.subscribe_data_change([self.node("PLC.ResultReady"), self.node("PLC.ResultAck")])
        self._task = asyncio.create_task(self._run())
        return self

    def node(self, path: str) -> Any:
        return self.client.get_node(f"ns={self.ns};s={path}")

    async def read(self, path: str) -> Any:
        return await self.node(path).read_value()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self._wake.set()

    def resume(self) -> None:
        """Acknowledge again (a PLC polls; here nothing changed in the model to wake the subscription)."""
        self.acking = True
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self.acking and await self.read("PLC.ResultReady") and not await self.read("PLC.ResultAck"):
                result_id = await self.read("PLC.LastResultId")
                self.results[result_id] = {name: await self.read(f"{RESULT}.{name}") for name in RESULT_FIELDS}
                self.acked.append(result_id)
                await self.node("PLC.ResultAck").write_value(True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


async def _plc(url: str) -> tuple[Client, Plc]:
    client = Client(url, timeout=10)
    await client.connect()
    return client, await Plc(client).start()


async def _wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "the server did not get there in time"
        await asyncio.sleep(0.02)


async def _cleared(plc: Plc) -> None:
    """Until the PLC's late ack cleared ErrorCode."""
    async def check() -> bool:
        return bool(await plc.read("PLC.ErrorCode") == ERROR_NONE)

    await _wait_for(check)


def test_a_subscribed_plc_receives_every_result_and_acknowledges_each() -> None:
    verdicts = [_verdict(1), _verdict(2, "fail"), _verdict(3, "review"), _verdict(4),
                _verdict(5, "error", error="not inspected: black frame"), _verdict(6, "fail", part_id="")]
    with running(OpcuaOutput(_config(), STATION, None)) as output:
        async def scenario() -> None:
            client, plc = await _plc(output.url)
            try:
                started = time.monotonic()
                # Delivered from a thread of its own, one after the other, as the publisher does.
                problems = await asyncio.to_thread(lambda: [output.deliver(v) for v in verdicts])
                elapsed = time.monotonic() - started
                assert problems == [None] * len(verdicts)
                assert plc.acked == [v["verdict_id"] for v in verdicts]
                assert elapsed < 5, f"{elapsed:.1f} s for {len(verdicts)} handshakes"
                counts = [await plc.read(f"PLC.{name}") for name in ("PassCount", "FailCount", "ReviewCount")]
                assert counts == [2, 2, 1]
                assert (await plc.read("PLC.ResultReady"), await plc.read("PLC.ResultAck")) == (False, True)
                assert await plc.read("PLC.ErrorCode") == ERROR_NONE

                second = plc.results[verdicts[1]["verdict_id"]]
                assert second["ResultState"] == RESULT_COMPLETED and second["PartId"] == "P-0002"
                assert second["JobId"] == "2"
                assert second["CreationTime"].replace(tzinfo=timezone.utc) == datetime(2025, 3, 4, 5, 6, 7,
                                                                                      tzinfo=timezone.utc)
                assert (second["ProcessingTimes.AcquisitionDuration"], second["ProcessingTimes.ProcessingDuration"]) \
                    == (1.5, 12.0)
                content = json.loads(second["ResultContent"])
                assert content["verdict"] == "fail" and content["score"] == 2.5
                assert content["regions"] == [{"box": [4, 5, 10, 12], "area": 60, "peak": 3.5}]
                assert plc.results[verdicts[4]["verdict_id"]]["ResultState"] == RESULT_ABORTED
                last = [await plc.read(f"PLC.{name}") for name in ("LastVerdict", "LastVerdictCode", "LastScore",
                                                                    "LastPartId", "LastResultId")]
                assert last == ["fail", 2, 6.5, "", verdicts[5]["verdict_id"]]
            finally:
                await plc.stop()
                await client.disconnect()

        asyncio.run(scenario())


def test_a_plc_that_stops_acknowledging_raises_the_error_and_loses_no_verdict() -> None:
    v1, v2, v3 = _verdict(1), _verdict(2, "fail"), _verdict(3)
    id2, id3 = v2["verdict_id"], v3["verdict_id"]
    with running(OpcuaOutput(_config(ack_timeout_seconds=0.5), STATION, None)) as output:
        async def deliver(verdict: dict[str, Any]) -> tuple[str | None, float]:
            started = time.monotonic()
            problem = await asyncio.to_thread(output.deliver, verdict)  # from a thread, as the publisher does
            return problem, time.monotonic() - started

        async def scenario() -> None:
            client, plc = await _plc(output.url)
            try:
                assert (await deliver(v1))[0] is None
                plc.acking = False
                problem, waited = await deliver(v2)
                assert problem == f"PLC did not acknowledge result {id2} within 0.5 s" and waited >= 0.5
                assert await plc.read("PLC.ErrorCode") == ERROR_ACK_TIMEOUT
                assert id2 in await plc.read("PLC.ErrorText")
                assert await plc.read("VisionSystem.SystemState") == SYSTEM_UNSCHEDULED_DOWNTIME
                assert (await plc.read("VisionSystem.VisionStateMachine.CurrentState")).Text == "Error"
                assert await plc.read("PLC.ResultReady") is True  # still presented: the PLC may still take it

                # The next verdict waits for that ack, is not presented over it, and answers at once: a silent
                # PLC must not hold up the line's other consumers a timeout per verdict.
                problem, waited = await deliver(v3)
                assert problem == f"result {id3} waits: PLC has not acknowledged result {id2} (ErrorCode 1)"
                assert waited < 0.3 and await plc.read("PLC.LastResultId") == id2
                problem, waited = await deliver(v2)  # the publisher sends it again: still not taken
                assert problem == f"PLC has not acknowledged result {id2} yet (ErrorCode 1)" and waited < 0.3

                plc.resume()  # the PLC is back and acknowledges the result it has
                await _cleared(plc)
                assert await plc.read("VisionSystem.SystemState") == SYSTEM_STANDBY
                problem, waited = await deliver(v2)  # sent again: the PLC has it, taken at once, not shown twice
                assert problem is None and waited < 0.3
                assert await plc.read("PLC.ResultReady") is False
                assert (await deliver(v3))[0] is None
                assert plc.acked == [v1["verdict_id"], id2, id3]  # each presented once, none lost
                assert await plc.read("PLC.PassCount") == 2 and await plc.read("PLC.FailCount") == 1
            finally:
                await plc.stop()
                await client.disconnect()

        asyncio.run(scenario())


def test_a_delivery_cancelled_mid_wait_leaves_its_result_first_in_line() -> None:
    v1, v2 = _verdict(1), _verdict(2)
    with running(OpcuaOutput(_config(ack_timeout_seconds=0.5), STATION, None)) as output:
        async def scenario() -> None:
            client, plc = await _plc(output.url)
            try:
                plc.acking = False
                assert output._loop is not None
                future = asyncio.run_coroutine_threadsafe(output._deliver(v1, v1["verdict_id"]), output._loop)

                async def presented() -> bool:
                    return bool(await plc.read("PLC.ResultReady"))

                await _wait_for(presented)
                future.cancel()  # as deliver() does when the server's loop does not answer in time
                # The next result waits its timeout for the PLC to take the one it has, then says so.
                problem = await asyncio.to_thread(output.deliver, v2)
                assert problem == f"result {v2['verdict_id']} waits: PLC did not acknowledge result " \
                                  f"{v1['verdict_id']} within 0.5 s"
                plc.resume()
                await _cleared(plc)
                assert await asyncio.to_thread(output.deliver, v1) is None
                assert await asyncio.to_thread(output.deliver, v2) is None
                assert plc.acked == [v1["verdict_id"], v2["verdict_id"]]
            finally:
                await plc.stop()
                await client.disconnect()

        asyncio.run(scenario())


def test_only_the_acknowledgement_is_writable() -> None:
    with running(OpcuaOutput(_config(), STATION, None)) as output:
        async def scenario() -> None:
            async with Client(output.url, timeout=10) as client:
                plc = Plc(client)
                plc.ns = await client.get_namespace_index(NAMESPACE_URI)
                refused = {"PLC.LastVerdict": "pass", "PLC.Ready": True, "PLC.ResultReady": False,
                           "PLC.PassCount": ua.Variant(7, ua.VariantType.UInt32),
                           "PLC.ErrorCode": ua.Variant(0, ua.VariantType.Int32),
                           "VisionSystem.SystemState": ua.Variant(1, ua.VariantType.Int32),
                           f"{RESULT}.ResultContent": "{}"}
                for path, value in refused.items():
                    with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                        await plc.node(path).write_value(value)
                assert await plc.read("PLC.Station") == STATION
                await plc.node("PLC.ResultAck").write_value(True)  # no result presented: accepted, ignored
                assert await plc.read("PLC.ResultReady") is False

        asyncio.run(scenario())


def test_the_trigger_method_hands_the_part_id_to_the_feed() -> None:
    parts: list[str] = []

    def on_trigger(part_id: str) -> None:
        if part_id == "explode":
            raise RuntimeError("the camera is gone")
        parts.append(part_id)

    with running(OpcuaOutput(_config(triggers=True), STATION, on_trigger)) as output:
        async def scenario() -> None:
            async with Client(output.url, timeout=10) as client:
                ns = await client.get_namespace_index(NAMESPACE_URI)
                plc = client.get_node(f"ns={ns};s=PLC")
                method = ua.NodeId("PLC.Trigger", ns)
                assert await plc.call_method(method, "P-42") is None
                assert await plc.call_method(method, "") is None  # a trigger without a part id
                with pytest.raises(ua.uaerrors.BadInvalidArgument):
                    await plc.call_method(method, ua.Variant(42, ua.VariantType.Int32))
                with pytest.raises(ua.uaerrors.BadInvalidArgument):
                    await plc.call_method(method, "P-1\n")
                with pytest.raises(ua.uaerrors.BadInvalidArgument):
                    await plc.call_method(method, "x" * 257)
                with pytest.raises(ua.uaerrors.BadInternalError):
                    await plc.call_method(method, "explode")
                arguments = await client.get_node(method).get_child("0:InputArguments")
                assert [a.Name for a in await arguments.read_value()] == ["partId"]

        asyncio.run(scenario())
    assert parts == ["P-42", ""]


def test_station_state_reaches_ready_and_the_system_state() -> None:
    output = OpcuaOutput(_config(), STATION, None)
    output.station_state(online=True, ready=True, last_error=None)  # before start: shown from the start
    with running(output):
        async def scenario() -> None:
            async with Client(output.url, timeout=10) as client:
                plc = Plc(client)
                plc.ns = await client.get_namespace_index(NAMESPACE_URI)
                assert await plc.read("PLC.Ready") is True
                assert await plc.read("VisionSystem.SystemState") == SYSTEM_PRODUCTION
                assert (await plc.read("VisionSystem.VisionStateMachine.CurrentState")).Text == "Operational"
                assert not await client.get_node(f"ns={plc.ns};s=PLC").get_children_descriptions(
                    refs=ua.ObjectIds.HasComponent, nodeclassmask=ua.NodeClass.Method)  # no triggers wanted
                await asyncio.to_thread(output.station_state, online=True, ready=False,
                                        last_error="camera down: rtsp://cam:s3cret@10.0.0.7/stream1")
                assert await plc.read("PLC.Ready") is False
                assert await plc.read("PLC.ErrorCode") == ERROR_STATION_FAULT
                assert await plc.read("PLC.ErrorText") == "camera down: rtsp://cam:***@10.0.0.7/stream1"
                assert await plc.read("VisionSystem.SystemState") == SYSTEM_UNSCHEDULED_DOWNTIME
                await asyncio.to_thread(output.station_state, online=True, ready=True, last_error="camera was down")
                assert (await plc.read("PLC.Ready"), await plc.read("PLC.ErrorCode")) == (True, ERROR_NONE)
                assert await plc.read("VisionSystem.SystemState") == SYSTEM_PRODUCTION

        asyncio.run(scenario())
    assert output.deliver(_verdict(1)) == "OPC UA server is not running"


def test_close_announces_the_station_offline_answers_a_waiting_delivery_and_ends_the_thread() -> None:
    output = OpcuaOutput(_config(ack_timeout_seconds=30), STATION, None)
    output.start()
    output.station_state(online=True, ready=True, last_error=None)
    answers: list[str | None] = []
    seen: list[Any] = []

    class Watcher:
        def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
            seen.append(value)

    async def scenario() -> float:
        client = Client(output.url, timeout=10)
        await client.connect()
        ns = await client.get_namespace_index(NAMESPACE_URI)
        subscription = await client.create_subscription(50, Watcher())
        await subscription.subscribe_data_change([client.get_node(f"ns={ns};s=PLC.ErrorCode")])
        waiting = threading.Thread(target=lambda: answers.append(output.deliver(_verdict(1))))
        waiting.start()
        await _wait_for(lambda: _true(client.get_node(f"ns={ns};s=PLC.ResultReady").read_value()))
        started = time.monotonic()
        await asyncio.to_thread(output.close)  # the result waits for a PLC that never comes
        took = time.monotonic() - started
        await asyncio.to_thread(waiting.join, 10)
        try:
            await client.disconnect()
        except Exception:  # noqa: BLE001 - the server is gone
            pass
        return took

    took = asyncio.run(scenario())
    assert took < 5
    assert answers == [f"OPC UA server stopped before result {_verdict(1)['verdict_id']} was acknowledged"]
    assert seen[-1] == ERROR_OFFLINE  # the subscriber saw the station go offline before the server closed
    assert not any(t.name == f"opcua-{STATION}" for t in threading.enumerate())
    assert output.deliver(_verdict(2)) == "OPC UA server is not running"


async def _true(read: Any) -> bool:
    return bool(await read)


def test_anonymous_opcua_is_refused_beyond_localhost() -> None:
    for host in ("0.0.0.0", "10.1.2.3", "plc-gateway", "[::]"):
        with pytest.raises(ConfigError, match="anonymous OPC UA only on localhost; use sign or sign_and_encrypt"):
            OpcuaOutput(OpcuaConfig(endpoint=f"opc.tcp://{host}:4840/x", security="none"), STATION, None)
    for host in ("localhost", "127.0.0.1", "[::1]"):
        assert OpcuaOutput(OpcuaConfig(endpoint=f"opc.tcp://{host}/x", security="none"), STATION, None).port == 4840
    with pytest.raises(ConfigError, match="trusted_clients_dir is required"):  # no "any valid certificate"
        OpcuaConfig(endpoint="opc.tcp://0.0.0.0:4840/x", security="sign")
    with pytest.raises(ConfigError, match="needs certificate_file and private_key_file"):
        OpcuaOutput(OpcuaConfig(endpoint="opc.tcp://0.0.0.0:4840/x", security="sign", trusted_clients_dir="/plcs"),
                    STATION, None)
    for endpoint in ("opc.tcp://:4840/x", "opc.tcp://host:port/x"):
        with pytest.raises(ConfigError, match="lineout.opcua.endpoint"):
            OpcuaOutput(OpcuaConfig(endpoint=endpoint, security="none"), STATION, None)


def test_a_port_in_use_a_missing_certificate_or_trust_folder_stop_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        output = OpcuaOutput(_config(endpoint=f"opc.tcp://127.0.0.1:{port}/x"), STATION, None)
        with pytest.raises(InspectorError, match=f"cannot listen on 127.0.0.1:{port}"):
            output.start()
        output.close()
    missing = tmp_path / "missing.der"
    output = OpcuaOutput(_config(security="sign_and_encrypt", certificate_file=str(missing),
                                 private_key_file=str(tmp_path / "key.pem"), trusted_clients_dir=str(tmp_path)),
                         STATION, None)
    with pytest.raises(ConfigError, match=f"lineout.opcua.certificate_file {missing}: cannot read"):
        output.start()
    cert, key = make_certificate(tmp_path, "server", "urn:board-inspector:aoi-3")
    output = OpcuaOutput(_config(security="sign_and_encrypt", certificate_file=str(cert), private_key_file=str(key),
                                 trusted_clients_dir=str(tmp_path / "nowhere")), STATION, None)
    with pytest.raises(ConfigError, match="trusted_clients_dir .*nowhere: not a folder"):
        output.start()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("pki")
    server = make_certificate(root / "server", "server", "urn:board-inspector:aoi-3", der=True)
    client = make_certificate(root / "plc", "plc", CLIENT_URI)
    stranger = make_certificate(root / "stranger", "stranger", "urn:somebody:else")
    trusted = root / "trusted"
    trusted.mkdir()
    (trusted / "plc.crt").write_bytes(client[0].read_bytes())  # any file name: the PLC's certificate, copied in
    return SimpleNamespace(server=server, client=client, stranger=stranger, trusted=trusted)


async def _secure_client(url: str, cert: Path, key: Path, *, user_certificate: bool = True) -> Client:
    client = Client(url, timeout=10)
    client.application_uri = CLIENT_URI
    await client.set_security(SecurityPolicyBasic256Sha256, str(cert), str(key),
                              mode=ua.MessageSecurityMode.SignAndEncrypt)
    if user_certificate:  # the X.509 identity token: the same certificate, as PLCs use it
        await client.load_client_certificate(str(cert))
        await client.load_private_key(str(key))
    return client


async def _downgraded_client(url: str, cert: Path, key: Path, server_cert: Path) -> Client:
    """A client holding a trusted certificate that opens an unsecured channel (the one kept for discovery)
    and signs its X.509 identity token over it, ignoring the endpoints the server offers."""
    client = Client(url, timeout=10)
    await client.load_client_certificate(str(cert))
    await client.load_private_key(str(key))
    await client.connect_socket()
    await client.send_hello()
    await client.open_secure_channel()
    await client.create_session()
    client.security_policy.peer_certificate = uacrypto.der_from_x509(await uacrypto.load_certificate(str(server_cert)))
    await client.activate_session(certificate=client.user_certificate)
    return client


def test_a_signed_and_encrypted_server_admits_only_holders_of_a_trusted_certificate(
        pki: SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config(security="sign_and_encrypt", certificate_file=str(pki.server[0]),
                     private_key_file=str(pki.server[1]), trusted_clients_dir=str(pki.trusted))
    with running(OpcuaOutput(config, STATION, None)) as output:
        async def scenario() -> None:
            # A client without security finds no endpoint for it...
            with pytest.raises(ua.UaError, match="No matching endpoints"):
                async with Client(output.url, timeout=10):
                    pass
            # ...and one that ignores the endpoints is refused by the server itself: no anonymous sessions.
            with monkeypatch.context() as patched:
                patched.setattr(Client, "find_endpoint", staticmethod(lambda endpoints, mode, uri: endpoints[0]))
                with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
                    async with Client(output.url, timeout=10):
                        pass
            # Encrypted, but anonymous: refused.
            client = await _secure_client(output.url, *pki.client, user_certificate=False)
            with pytest.raises(ua.uaerrors.BadIdentityTokenRejected):
                await client.connect()
            # A certificate that is not in trusted_clients_dir: refused.
            client = await _secure_client(output.url, *pki.stranger)
            client.application_uri = "urn:somebody:else"
            with pytest.raises(ua.uaerrors.BadCertificateUntrusted):
                await client.connect()
            # A trusted certificate over an unsecured channel: the session opens but may do nothing.
            with monkeypatch.context() as patched:
                patched.setattr(Client, "find_endpoint", staticmethod(lambda endpoints, mode, uri: endpoints[0]))
                client = await _downgraded_client(output.url, *pki.client, pki.server[0])
            try:
                with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                    await client.get_node(ua.NodeId(ua.ObjectIds.Server_NamespaceArray)).read_value()
            finally:
                await client.disconnect()
            # The PLC with its trusted certificate: in, and the handshake works over the encrypted channel.
            client = await _secure_client(output.url, *pki.client)
            await client.connect()
            try:
                plc = await Plc(client).start()
                assert await plc.read("PLC.Station") == STATION
                verdict = _verdict(7, "fail")
                assert await asyncio.to_thread(output.deliver, verdict) is None
                assert plc.acked == [verdict["verdict_id"]]
                with pytest.raises(ua.uaerrors.BadUserAccessDenied):
                    await plc.node("PLC.LastVerdict").write_value("pass")
                await plc.stop()
            finally:
                await client.disconnect()

        asyncio.run(scenario())


def test_the_example_config_lists_every_opcua_setting_with_its_default_and_make_outputs_builds_the_server() -> None:
    tables = tomllib.loads((REPO_ROOT / "deploy" / "example-config.toml").read_text())
    assert tables["lineout"]["opcua"] == asdict(OpcuaConfig())
    config = LineoutConfig(opcua=_config(triggers=False))
    outputs = make_outputs(config, STATION, on_trigger=lambda part_id: None)
    assert [o.name for o in outputs] == ["opcua"] and isinstance(outputs[0], OpcuaOutput)
    assert outputs[0].on_trigger is None  # triggers = false: the server offers no Trigger method
    config = LineoutConfig(opcua=_config(triggers=True))
    assert make_outputs(config, STATION, on_trigger=print)[0].on_trigger is print  # type: ignore[attr-defined]
