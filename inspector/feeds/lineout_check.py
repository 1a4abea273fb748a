"""`inspector lineout test`: one test verdict on every configured output, and what answered.

For commissioning: the controls engineer sees at once whether the broker acknowledged, the PLC
acknowledged the OPC UA result, and the hook exited 0, with the same settings `watch` and `camera`
read. The test verdict is marked (`"test": true`, verdict "test") so no MES books it as a board.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from inspector.config import Settings
from inspector.feeds.lineout import LineOut
from inspector.feeds.outputs import VERDICT_SCHEMA, make_outputs


@dataclass(frozen=True)
class Answered:
    output: str
    problem: str | None  # None: the consumer acknowledged the test verdict
    seconds: float


def test_message(station: str) -> dict[str, Any]:
    return {"schema": VERDICT_SCHEMA, "test": True, "verdict_id": f"test-{uuid.uuid4().hex[:16]}", "inspection_id": None,
            "part_id": None, "station": station, "source_name": "lineout-test", "input_sha256": None,
            "verdict": "test", "score": None, "threshold": None, "threshold_version": None, "threshold_source": None,
            "tolerance_version": 0, "regions": [], "model_hash": None, "image_path": "", "overlay_path": "",
            "timings_ms": {}, "error": None, "time": datetime.now(timezone.utc).isoformat()}


def check_outputs(settings: Settings) -> list[Answered]:
    """Start every configured output (and the hook), deliver one test verdict to each, close them."""
    station = settings.runner.station
    outputs = make_outputs(settings.lineout, station)
    failures: list[str] = []
    line = LineOut(json_lines=False, hook=settings.runner.hook, on_hook_failure=failures.append, outputs=outputs)
    message = test_message(station)
    answers: list[Answered] = []
    try:
        line.start()
        line.station_state(online=True, ready=True)
        senders = line._senders(message)  # noqa: SLF001 - the same delivery path as the publisher's
        for name, send in senders:
            started = time.monotonic()
            try:
                problem = send()
            except Exception as exc:  # noqa: BLE001 - reported, like the publisher would
                problem = f"{type(exc).__name__}: {exc}"
            answers.append(Answered(name, problem, time.monotonic() - started))
    finally:
        line.close()
    return answers
