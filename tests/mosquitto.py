"""A real Mosquitto broker for the MQTT tests (the distribution's `mosquitto`, which .ci/run installs).

`Broker` runs `mosquitto -c <generated config>` on a free localhost port, with persistence on (retained
status and the test subscriber's persistent session survive a restart), and can be stopped, killed and
started again on the same port. `Subscriber` is the MES in the tests: a paho client that keeps every
message it gets. The `mosquitto` fixture (import `mosquitto_fixture` into a test module) gives a running
plain broker, anonymous clients allowed; it skips where mosquitto is not installed, and fails under CI.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, require

START_TIMEOUT_SECONDS = 10.0


def mosquitto_binary() -> str | None:
    """Debian installs the broker in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None


def require_mosquitto() -> str:
    binary = mosquitto_binary()
    require(binary is not None, "mosquitto is not installed (apt-get install mosquitto; .ci/run installs it)")
    assert binary is not None
    return binary


@dataclass(frozen=True)
class TlsFiles:
    """A test CA, the broker's certificate for localhost / 127.0.0.1 and a client certificate, all from it."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def make_tls_files(folder: Path) -> TlsFiles:
    """Generated with openssl in well under a second (EC keys)."""
    openssl = shutil.which("openssl")
    require(openssl is not None, "openssl is not installed (TLS broker tests)")
    assert openssl is not None
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True, timeout=30)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=board-inspector test CA")
    (folder / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, extra in (("server", ("-extfile", "server.ext")), ("client", ())):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", f"{name}.crt", "-days", "2", *extra)
        (folder / f"{name}.key").chmod(0o600)
    return TlsFiles(folder / "ca.crt", folder / "server.crt", folder / "server.key", folder / "client.crt",
                    folder / "client.key")


class Broker:
    """One mosquitto process; `stop` + `start` keep its port, persistence file and settings."""

    def __init__(self, folder: Path, *, port: int | None = None, tls: TlsFiles | None = None,
                 passwords: dict[str, str] | None = None) -> None:
        self.binary = require_mosquitto()
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.tls = tls
        self.log_file = folder / "mosquitto.log"
        self.config_file = folder / "mosquitto.conf"
        self.process: subprocess.Popen[bytes] | None = None
        lines = [
            # Run as root (CI), mosquitto would switch to the user "mosquitto", who cannot write the test's
            # folder; as any other user the setting changes nothing.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            f"listener {self.port} 127.0.0.1",
            "persistence true",
            f"persistence_location {folder}/",
            f"log_dest file {self.log_file}",
            "log_type all",
        ]
        if tls is not None:
            lines += [f"cafile {tls.ca}", f"certfile {tls.server_cert}", f"keyfile {tls.server_key}",
                      "require_certificate true"]
        if passwords:
            password_file = folder / "passwords"
            password_file.write_text("")
            for user, password in passwords.items():  # the test broker's own file, hashed by mosquitto_passwd
                subprocess.run([self._passwd_tool(), "-b", str(password_file), user, password], check=True,
                               capture_output=True, timeout=30)
            password_file.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines += ["allow_anonymous true"]
        self.config_file.write_text("\n".join(lines) + "\n")

    def _passwd_tool(self) -> str:
        tool = shutil.which("mosquitto_passwd") or str(Path(self.binary).parent.parent / "bin" / "mosquitto_passwd")
        require(os.access(tool, os.X_OK), "mosquitto_passwd is not installed (it comes with mosquitto)")
        return tool

    @property
    def url(self) -> str:
        return f"mqtts://localhost:{self.port}" if self.tls else f"mqtt://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> Broker:
        assert not self.running
        self.process = subprocess.Popen([self.binary, "-c", str(self.config_file)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {stderr}\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen on {self.port} within {START_TIMEOUT_SECONDS} s\n{self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM: the broker saves its persistence file (retained messages, sessions and their queues)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def _end(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stderr:
            self.process.stderr.close()
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@pytest.fixture(name="mosquitto")
def mosquitto_fixture(tmp_path: Path) -> Iterator[Broker]:
    """A running plain broker (anonymous clients allowed) for one test."""
    broker = Broker(tmp_path / "mosquitto").start()
    try:
        yield broker
    finally:
        broker.kill()


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() when it arrived

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """The line's side in a test: a paho client (QoS 1) that keeps every message it gets, reconnecting by
    itself. `persistent`: a session the broker keeps, with its queue, while the subscriber is away."""

    def __init__(self, broker: Broker, topic: str, *, persistent: bool = False, client_id: str = "",
                 connect_kwargs: dict[str, Any] | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.topic = topic
        self._condition = threading.Condition()
        self.messages: list[Received] = []
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or f"mes-{uuid.uuid4().hex[:8]}",
                                  clean_session=not persistent)
        self.client.reconnect_delay_set(1, 1)  # back quickly after each broker restart
        if connect_kwargs:
            connect_kwargs = dict(connect_kwargs)
            if "tls" in connect_kwargs:
                self.client.tls_set(**connect_kwargs.pop("tls"))
            if "username" in connect_kwargs:
                self.client.username_pw_set(connect_kwargs.pop("username"), connect_kwargs.pop("password", None))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.on_message = self._on_message
        host = "localhost" if broker.tls else "127.0.0.1"
        self.client.connect_async(host, broker.port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(10), f"the test subscriber did not connect\n{broker.log_tail()}"

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if not reason_code.is_failure:
            client.subscribe(self.topic, qos=1)
            self.connected.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._condition:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain), time.monotonic()))
            self._condition.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._condition:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._condition:
            while not predicate(list(self.messages)):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
            return True

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish_once(broker: Broker, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """One QoS 1 message from a test client, acknowledged before this returns (the PLC's trigger)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"plc-{uuid.uuid4().hex[:8]}")
    client.connect("127.0.0.1", broker.port, keepalive=10)
    client.loop_start()
    try:
        info = client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()
