"""Where a verdict goes besides the store: each consumer of the line is a `LineOutput`.

stdout JSON lines and the hook command are outputs like MQTT (inspector/feeds/mqtt_out.py) and OPC UA
(inspector/feeds/opcua_out.py). The publisher (publisher.py) hands each due verdict to every output
that has not taken it yet: an output takes a verdict only when its consumer acknowledged it (the line
written, the hook's exit status 0, the broker's PUBACK, the PLC's ResultAck); one that refuses or
times out is tried again with the verdict's backoff, while the outputs that took it are not sent it
again (`verdict_outbox.taken_by`). The published message is the same typed dict everywhere
(`verdict_message`), with its schema version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

VERDICT_SCHEMA = 2  # 1: the JSON lines before issue 36 (no schema, part_id or timings)

# Called with a part id ("" when the trigger carried none) when the line triggers an inspection.
TriggerCallback = Callable[[str], None]


class LineOutput(Protocol):
    """One consumer of verdicts. `deliver` blocks until the consumer acknowledged the verdict or its
    timeout passed, and must never raise for a consumer's fault: it returns why instead."""

    name: str

    def start(self) -> None:
        """Connect or listen (returns at once; reconnects by itself)."""
        ...

    def deliver(self, verdict: dict[str, Any]) -> str | None:
        """None when the consumer acknowledged the verdict, else why not (it is sent again later)."""
        ...

    def station_state(self, *, online: bool, ready: bool, last_error: str | None) -> None:
        """What the line should see of the station (MQTT's retained status, OPC UA's system state)."""
        ...

    def close(self) -> None:
        """Stop (announcing the station offline where the protocol can)."""
        ...


def verdict_id(input_sha256: str, model_hash: str) -> str:
    """One id per (image bytes, model), like the store's unique key."""
    return f"{input_sha256[:32]}-{model_hash[:16]}"


def verdict_message(row: Any, station: str) -> dict[str, Any]:
    """The published form of a stored inspection (an `InspectionRecord`): one schema for stdout, the
    hook, MQTT and OPC UA."""
    regions = [{"box": list(r.get("bbox", [])), "area": r.get("area"), "peak": r.get("peak")}
               for r in (row.regions or [])]
    return {
        "schema": VERDICT_SCHEMA,
        "verdict_id": verdict_id(row.input_sha256, row.model_hash),
        "inspection_id": row.id,
        "part_id": row.part_id or None,
        "station": row.station or station,
        "source_name": row.source_name,
        "input_sha256": row.input_sha256,
        "verdict": row.verdict,
        "score": row.score,
        "threshold": row.threshold,
        "threshold_version": row.threshold_version,
        "threshold_source": row.threshold_source,
        "tolerance_version": row.tolerance_version or 0,
        "regions": regions,
        "model_hash": row.model_hash,
        "image_path": row.image_path,
        "overlay_path": row.overlay_path,
        "timings_ms": dict(row.timings or {}),
        "error": row.error,
        "time": row.created_at.isoformat(),
    }


def make_outputs(config: Any, station: str, on_trigger: TriggerCallback | None = None) -> list[LineOutput]:
    """The configured MQTT and OPC UA outputs (`config`: a `LineoutConfig`), not started. Each module is
    imported only when configured: a line PC without them needs neither paho-mqtt nor asyncua."""
    outputs: list[LineOutput] = []
    if config.mqtt.enabled:
        from inspector.feeds.mqtt_out import MqttOutput

        outputs.append(MqttOutput(config.mqtt, station, on_trigger if config.mqtt.triggers else None))
    if config.opcua.enabled:
        from inspector.feeds.opcua_out import OpcuaOutput

        outputs.append(OpcuaOutput(config.opcua, station, on_trigger if config.opcua.triggers else None))
    return outputs
