"""An MQTT output's connection settings (`[lineout.mqtt]`, inspector/feeds/mqtt_out.py), checked before it
connects: the broker's address, the station's topics, the password file and the TLS files. Each refusal
is a `ConfigError` that names the setting and the fix."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from inspector.config import MqttConfig
from inspector.config.secrets import check_private
from inspector.errors import ConfigError

if TYPE_CHECKING:  # the type only; paho is imported by mqtt_out when MQTT is configured
    import paho.mqtt.client as mqtt

DEFAULT_PORTS = {"mqtt": 1883, "mqtts": 8883}
TOPIC_FORBIDDEN = ("+", "#", "\0")  # wildcards and NUL cannot be part of a topic name


def broker_address(url: str) -> tuple[str, int, bool]:
    """(host, port, TLS or not) from `lineout.mqtt.url` (mqtt://host:port or mqtts://host:port)."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigError(f"lineout.mqtt.url must start with mqtt:// or mqtts://, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigError("lineout.mqtt.url must not hold credentials: set lineout.mqtt.username and put the "
                          "password in the file named by lineout.mqtt.password_file")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"lineout.mqtt.url is host and port only (mqtt://host:1883), got {url!r}")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError(f"lineout.mqtt.url {url!r}: bad port ({exc})") from exc
    if not parts.hostname:
        raise ConfigError(f"lineout.mqtt.url {url!r} names no host")
    return parts.hostname, port, parts.scheme == "mqtts"


def station_topics(topic_prefix: str, station: str) -> tuple[str, str, str]:
    """The station's verdict, status and trigger topics, under `<topic_prefix>/<station>/`."""
    prefix = _topic_level(topic_prefix.rstrip("/"), "lineout.mqtt.topic_prefix", allow_slash=True)
    station = _topic_level(station, "the station name", allow_slash=False)
    return f"{prefix}/{station}/verdict", f"{prefix}/{station}/status", f"{prefix}/{station}/trigger"


def _topic_level(value: str, setting: str, *, allow_slash: bool) -> str:
    forbidden = TOPIC_FORBIDDEN if allow_slash else (*TOPIC_FORBIDDEN, "/")
    if not value or any(char in value for char in forbidden):
        kind = "a topic prefix" if allow_slash else "one MQTT topic level"
        shown = ", ".join(repr(char) for char in forbidden)
        raise ConfigError(f"{setting} {value!r} cannot be {kind}: it must be non-empty and hold none of {shown}")
    return value


def broker_password(config: MqttConfig) -> str | None:
    """The password for `lineout.mqtt.username`, from `lineout.mqtt.password_file`; None when none is set."""
    password = read_password(config.password_file) if config.password_file else None
    if password is not None and not config.username:
        raise ConfigError("lineout.mqtt.password_file is set but lineout.mqtt.username is empty")
    return password


def read_password(path: str) -> str:
    """The broker password: the first line of `lineout.mqtt.password_file`, which only the service may read
    (like `runner.db_url_file`): a password never goes on the command line or into the config file."""
    file = Path(path)
    try:
        mode = file.stat().st_mode
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"lineout.mqtt.password_file {file}: cannot read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"lineout.mqtt.password_file {file}: not UTF-8 text") from exc
    check_private(file, mode, "lineout.mqtt.password_file")
    # Only the line end is taken off: spaces may be part of a password.
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError(f"lineout.mqtt.password_file {file}: empty (the password is its first line)")
    return password


def set_tls(client: mqtt.Client, config: MqttConfig, *, tls: bool) -> None:
    """Checks `lineout.mqtt.ca_file`, `cert_file` and `key_file` and, for mqtts://, gives them to `client`."""
    files = {"ca_file": config.ca_file, "cert_file": config.cert_file, "key_file": config.key_file}
    if not tls:
        given = [f"lineout.mqtt.{name}" for name, path in files.items() if path]
        if given:
            raise ConfigError(f"{', '.join(given)} set but lineout.mqtt.url is mqtt:// (no TLS): use mqtts://")
        return
    for name, path in files.items():
        if path and not Path(path).is_file():
            raise ConfigError(f"lineout.mqtt.{name} {path}: no such file")
    if config.key_file and not config.cert_file:
        raise ConfigError("lineout.mqtt.key_file is set without lineout.mqtt.cert_file")
    if config.key_file:
        check_private(config.key_file, Path(config.key_file).stat().st_mode, "lineout.mqtt.key_file")
    try:
        # Default context: the broker's certificate must chain to ca_file (or the system's CAs) and name the host.
        client.tls_set(ca_certs=config.ca_file or None, certfile=config.cert_file or None,
                       keyfile=config.key_file or None)
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"lineout.mqtt: the TLS files were refused ({exc})") from exc
