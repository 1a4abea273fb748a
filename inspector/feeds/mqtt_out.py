"""Verdicts to an MES or SCADA over MQTT (`[lineout.mqtt]`): a `LineOutput` (inspector/feeds/outputs.py).

Topics, under `<topic_prefix>/<station>/`:
- `verdict`: each verdict as compact UTF-8 JSON (`verdict_message`), QoS 1. `deliver` returns None only
  once the broker acknowledged it (PUBACK); otherwise the publisher keeps the verdict pending and sends it
  again later, so the line gets every verdict at least once and drops repeats by `verdict_id`.
- `status`: retained `{"state": "online"|"offline", "ready", "last_error", "time"}`; the last will is the
  offline status, so the broker announces a station that vanished (kill, power cut, network cut).
- `trigger` (only when the feed takes triggers): a part id, plain UTF-8 or `{"part_id": "..."}`
  (read by `mqtt_trigger.parse_trigger`).

The settings (broker address, topics, password file, TLS files) are checked in `mqtt_settings.py`.

paho-mqtt runs its network loop on its own thread and reconnects by itself with backoff (1 s doubling to
30 s). paho is imported here only, when MQTT is configured: a line PC without it needs no paho.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from inspector.config import MqttConfig
from inspector.config.secrets import one_line
from inspector.errors import InspectorError
from inspector.feeds.mqtt_settings import broker_address, broker_password, set_tls, station_topics
from inspector.feeds.mqtt_trigger import parse_trigger

if TYPE_CHECKING:  # the type only; the module is imported in `_paho` when MQTT is configured
    import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

RECONNECT_MIN_SECONDS = 1
RECONNECT_MAX_SECONDS = 30
# paho keeps QoS 1 messages it could not send yet; the outbox is the durable copy, so this only bounds memory.
MAX_QUEUED_MESSAGES = 1000
MAX_ERROR_CHARS = 500  # of `last_error` in the status message
LOOP_STOP_SECONDS = 10.0  # close() waits at most this for paho's thread (it may be in a connect attempt)
WILL_ERROR = "connection to the station lost (no clean stop)"

TriggerCallback = Callable[[str], None]  # = outputs.TriggerCallback (importing outputs here would be a cycle)


def _paho() -> Any:
    try:
        import paho.mqtt.client as client_module
    except ImportError as exc:
        raise InspectorError("[lineout.mqtt] needs paho-mqtt, which is not installed: "
                             "pip install board-inspector[line]") from exc
    return client_module


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


class MqttOutput:
    """One station's MQTT connection: verdicts out (QoS 1, acknowledged), status retained, triggers in.

    Thread use: `deliver` runs on the publisher's thread, `station_state` on the feed's, paho's callbacks
    (connect, acknowledgements, triggers) on paho's; the shared state is under `_lock`."""

    name = "mqtt"

    def __init__(self, config: MqttConfig, station: str, on_trigger: TriggerCallback | None = None) -> None:
        self.config = config
        self.on_trigger = on_trigger
        self.host, self.port, self.tls = broker_address(config.url)
        self.where = f"{self.host}:{self.port}"
        self.verdict_topic, self.status_topic, self.trigger_topic = station_topics(config.topic_prefix, station)
        self.station = station
        self.ack_timeout = float(config.ack_timeout_seconds)
        password = broker_password(config)
        self._paho = _paho()
        self._client: mqtt.Client = self._make_client(password)

        self._lock = threading.Lock()
        self._ready = True  # the feed starts its outputs once it runs; it says otherwise through station_state
        self._online = True
        self._last_error: str | None = None
        self._problem: str | None = None  # why the last connection attempt failed, for deliver's answer
        self._refusal: str | None = None  # the broker's answer to the last attempt, when it refused it
        self._outage_logged = False  # one warning per outage; the retries after it log at debug level
        self._up = False  # between a successful CONNACK and the connection's end
        # Set once the first connection attempt has an outcome: until then a verdict waits for it (at most
        # ack_timeout_seconds) rather than be refused for a connection that is being made.
        self._attempted = threading.Event()
        self._unacked_since: float | None = None  # a publish went unacknowledged: the link may be dead
        self._started = False
        self._closed = False

    def _make_client(self, password: str | None) -> mqtt.Client:
        """The paho client, with its credentials, TLS and callbacks; not connected yet."""
        paho = self._paho
        # Clean session: a trigger sent while the station was away must not fire late, at a board that is no
        # longer under the camera; the verdicts' durable copy is the outbox, not a broker session.
        client: mqtt.Client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=self.config.client_id or f"board-inspector-{self.station}",
            clean_session=True, protocol=paho.MQTTv311)
        client.suppress_exceptions = True  # a surprise in a callback must not end paho's thread
        client.reconnect_delay_set(RECONNECT_MIN_SECONDS, RECONNECT_MAX_SECONDS)
        client.max_queued_messages_set(MAX_QUEUED_MESSAGES)
        if self.config.username:
            client.username_pw_set(self.config.username, password)
        set_tls(client, self.config, tls=self.tls)
        if password is not None and not self.tls and self.host not in ("localhost", "127.0.0.1", "::1"):
            log.warning("lineout.mqtt: the password crosses the network to %s unencrypted; use mqtts://", self.where)
        client.on_pre_connect = self._on_pre_connect
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        if self.on_trigger is not None:
            client.message_callback_add(self.trigger_topic, self._on_trigger_message)
        return client

    # ------------------------------------------------------------------ LineOutput

    def start(self) -> None:
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        try:
            # Returns at once: the connection, and every reconnection with backoff, is made on paho's thread.
            self._client.connect_async(self.host, self.port, keepalive=self.config.keepalive_seconds)
            self._client.loop_start()
        except Exception as exc:  # noqa: BLE001 - the station runs on without the line; deliver says why
            with self._lock:
                self._problem = one_line(f"{type(exc).__name__}: {exc}", MAX_ERROR_CHARS)
            self._attempted.set()
            log.error("MQTT broker %s: cannot start the connection (%s)", self.where, exc)

    def deliver(self, verdict: dict[str, Any]) -> str | None:
        try:
            return self._deliver(verdict)
        except Exception as exc:  # noqa: BLE001 - the publisher's thread calls this: a reason, never a raise
            log.exception("MQTT: verdict not delivered")
            return one_line(f"mqtt: {type(exc).__name__}: {exc}", MAX_ERROR_CHARS)

    def _deliver(self, verdict: dict[str, Any]) -> str | None:
        try:
            payload = json.dumps(verdict, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            return one_line(f"mqtt: verdict is not JSON ({exc})", MAX_ERROR_CHARS)
        with self._lock:
            if not self._started or self._closed:
                return "mqtt: output not started" if not self._closed else "mqtt: output closed"
        deadline = time.monotonic() + self.ack_timeout  # one bound for the whole call
        just_connected = self._await_first_connection()
        sent_at = time.monotonic()
        problem = self._link_problem(sent_at)
        if problem is not None:
            return problem
        return self._publish_verdict(payload, deadline, sent_at, just_connected=just_connected)

    def _await_first_connection(self) -> bool:
        """Waits (at most ack_timeout) for the first connection attempt's outcome; whether it had to wait."""
        if not self._client.is_connected() and not self._attempted.is_set():
            self._attempted.wait(self.ack_timeout)  # just started: the first connection is on its way
            return True
        return False

    def _link_problem(self, now: float) -> str | None:
        """Why a verdict is not published now (no connection, or one that stopped acknowledging), or None."""
        with self._lock:
            problem = self._problem
            unacked_since = self._unacked_since
        if not self._client.is_connected():
            # Not published at all while away: paho would queue a copy per retry and flood the broker later.
            return one_line(f"mqtt: not connected to the broker {self.where}" + (f" ({problem})" if problem else ""),
                            MAX_ERROR_CHARS)
        if unacked_since is not None and now - unacked_since < self.config.keepalive_seconds:
            # The last publish is still unacknowledged: the link is probably dead and paho's keepalive will
            # renew it. Answering at once keeps the publisher (and the outputs after this one) moving; one
            # verdict a keepalive period still tries, so a link that comes back is noticed.
            return (f"mqtt: the broker {self.where} has not acknowledged for {now - unacked_since:.0f} s; "
                    f"waiting for it to answer or for the connection to be renewed")
        return None

    def _publish_verdict(self, payload: bytes, deadline: float, sent_at: float, *, just_connected: bool) -> str | None:
        """Publishes at QoS 1 and waits until `deadline` for the broker's PUBACK: None once it came."""
        info = self._client.publish(self.verdict_topic, payload, qos=1, retain=False)
        if info.rc == self._paho.MQTT_ERR_NO_CONN:
            # paho keeps it and sends it after the reconnection; the publisher sends it again too (repeats are
            # dropped by verdict_id).
            return f"mqtt: connection to the broker {self.where} lost while publishing"
        if info.rc != self._paho.MQTT_ERR_SUCCESS:
            return one_line(f"mqtt: publish refused by the client ({self._paho.error_string(info.rc)})", MAX_ERROR_CHARS)
        try:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            published = info.is_published()
        except (ValueError, RuntimeError) as exc:
            return one_line(f"mqtt: publish failed ({exc})", MAX_ERROR_CHARS)
        if published:
            return None
        if not just_connected:  # a wait shortened by the first connection says nothing about the link
            with self._lock:
                if self._unacked_since is None:
                    self._unacked_since = sent_at
        return f"mqtt: no acknowledgement (PUBACK) from the broker {self.where} within {self.ack_timeout:g} s"

    def station_state(self, *, online: bool, ready: bool, last_error: str | None) -> None:
        try:
            with self._lock:
                self._online, self._ready = online, ready
                self._last_error = one_line(last_error, MAX_ERROR_CHARS) if last_error else None
                started = self._started and not self._closed
            if started and self._client.is_connected():
                self._publish_status()  # else on_connect publishes it
        except Exception:  # noqa: BLE001 - the station's state is a courtesy to the line, never a stop
            log.exception("MQTT: station state not published")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
            self._online, self._ready = False, False
        if not started:
            return
        try:
            if self._client.is_connected():
                # The retained status says offline before the clean DISCONNECT, which makes the broker drop
                # the last will: the line sees a stop, not silence.
                info = self._publish_status()
                if info.rc == self._paho.MQTT_ERR_SUCCESS:
                    info.wait_for_publish(self.ack_timeout)
            self._client.disconnect()
        except Exception:  # noqa: BLE001 - closing must finish; the will covers what was not said
            log.exception("MQTT: not closed cleanly")
        # loop_stop joins paho's thread, which may be in a connect attempt: bounded, so a stop never hangs.
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-close", daemon=True)
        stopper.start()
        stopper.join(LOOP_STOP_SECONDS)
        if stopper.is_alive():
            log.warning("MQTT: the network thread did not stop within %.0f s", LOOP_STOP_SECONDS)

    # ------------------------------------------------------------------ status

    def _status(self, *, online: bool, ready: bool, last_error: str | None) -> bytes:
        state = {"state": "online" if online else "offline", "ready": ready, "last_error": last_error, "time": _now()}
        return json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    def _publish_status(self) -> mqtt.MQTTMessageInfo:
        with self._lock:
            payload = self._status(online=self._online, ready=self._ready, last_error=self._last_error)
        return self._client.publish(self.status_topic, payload, qos=1, retain=True)

    # ------------------------------------------------------------------ paho callbacks (paho's thread)

    def _on_pre_connect(self, client: Any, userdata: Any) -> None:
        try:
            # Set before each (re)connection, so the will's time is that connection's; the broker publishes it
            # (retained) when the connection ends without a clean DISCONNECT. Its last_error says why the
            # station is offline, not an older error that the MES saw while it was online.
            will = self._status(online=False, ready=False, last_error=WILL_ERROR)
            client.will_set(self.status_topic, will, qos=1, retain=True)
        except Exception:  # noqa: BLE001
            log.exception("MQTT: last will not set")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        try:
            if reason_code.is_failure:
                # paho disconnects and tries again with backoff; a wrong password or client id shows here.
                refusal = one_line(f"the broker refused the connection: {reason_code}", MAX_ERROR_CHARS)
                with self._lock:
                    first, self._outage_logged = not self._outage_logged, True
                    self._problem = self._refusal = refusal
                self._attempted.set()
                (log.error if first else log.debug)("MQTT broker %s: %s", self.where, refusal)
                return
            with self._lock:
                self._up = True
                self._problem = self._refusal = None
                self._outage_logged = False
                self._unacked_since = None
            self._attempted.set()
            log.info("MQTT broker %s: connected (verdicts on %s)", self.where, self.verdict_topic)
            self._publish_status()
            if self.on_trigger is not None:
                # Clean session: subscribe again on every connection.
                client.subscribe(self.trigger_topic, qos=1)
        except Exception:  # noqa: BLE001
            log.exception("MQTT: connection set-up failed")

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        with self._lock:
            self._refusal = None  # the broker is out of reach now: its earlier refusal is no longer the news
        self._not_connected("cannot reach the broker")

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        with self._lock:
            was_up, self._up = self._up, False
            closing = self._closed
        if closing:
            return
        if was_up:
            with self._lock:
                self._problem = one_line(f"connection lost: {reason_code}", MAX_ERROR_CHARS)
                self._outage_logged = True
            log.warning("MQTT broker %s: connection lost (%s); reconnecting with backoff", self.where, reason_code)
        else:  # the end of an attempt that never got through: a refusal keeps its own reason
            self._not_connected(f"cannot connect ({reason_code})")

    def _not_connected(self, reason: str) -> None:
        with self._lock:
            first, self._outage_logged = not self._outage_logged, True
            self._problem = self._refusal or one_line(reason, MAX_ERROR_CHARS)
            problem = self._problem
        self._attempted.set()
        (log.warning if first else log.debug)("MQTT broker %s: %s; retrying with backoff (up to %d s)",
                                              self.where, problem, RECONNECT_MAX_SECONDS)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._lock:
            self._unacked_since = None  # the broker answers again

    def _on_trigger_message(self, client: Any, userdata: Any, message: Any) -> None:
        try:
            if message.retain:
                # A retained trigger would fire again at every reconnection.
                log.warning("MQTT trigger on %s ignored: it is retained (publish triggers without retain)",
                            message.topic)
                return
            part_id, problem = parse_trigger(bytes(message.payload))
            if problem is not None:
                log.warning("MQTT trigger on %s refused: %s", message.topic, problem)
                return
            if self.on_trigger is not None:
                self.on_trigger(part_id)
        except Exception:  # noqa: BLE001 - one bad trigger must not end paho's thread
            log.exception("MQTT trigger not handled")
