"""The inspection loop's health for the line and its monitoring: the counters and gauges (`Metrics`) and the
HTTP endpoint that serves them (`HealthServer`: `/healthz` as JSON, `/metrics` in Prometheus's text format).

The folder runner and the camera feed share this; `LineOut` (inspector/feeds/lineout.py) counts each
delivery to the line here.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from inspector.errors import InspectorError

log = logging.getLogger("inspector.feeds.lineout")  # the line outputs' one logger, as before the split

LATENCY_WINDOW = 1000  # latencies kept for the summary quantiles
RATE_WINDOW_SECONDS = 60.0


class Metrics:
    """Counters and gauges of one inspection loop (thread-safe: the HTTP thread reads them)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self.processed = 0
        self.flagged = 0
        self.errors = 0
        self.queue_depth = 0
        self.camera_up: bool | None = None  # None: not a camera feed
        self.paused = False  # disk nearly full: no new boards taken (runner.min_free_bytes)
        # Why the loop runs but inspects nothing (the camera's run of black or stale frames); None = not.
        self.degraded: str | None = None
        self.last_tick = clock()
        self.alive = True
        # What the line has not taken yet (the publisher's view): reported apart from the inspection's
        # health, so a slow PLC shows as lag, not as a dead runner.
        self.delivery_pending = 0
        self.delivery_parked = 0
        self._oldest_pending_at: float | None = None  # clock() when the oldest verdict not yet taken was queued
        self._deliveries: dict[str, dict[str, Any]] = {}  # per consumer: taken, refused, lag
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._latency_sum = 0.0
        self._latency_count = 0
        self._done_times: deque[float] = deque()

    def tick(self) -> None:
        """The loop is alive (called every iteration, busy or idle)."""
        with self._lock:
            self.last_tick = self._clock()

    def observe(self, verdict: str, latency_s: float) -> None:
        with self._lock:
            now = self._clock()
            self.processed += 1
            if verdict in ("fail", "review"):
                self.flagged += 1
            self._latencies.append(latency_s)
            self._latency_sum += latency_s
            self._latency_count += 1
            self._done_times.append(now)
            self._trim(now)

    def error(self) -> None:
        with self._lock:
            self.errors += 1

    def set_queue_depth(self, depth: int) -> None:
        with self._lock:
            self.queue_depth = depth

    def set_camera_up(self, up: bool) -> None:
        with self._lock:
            self.camera_up = up

    def _trim(self, now: float) -> None:
        while self._done_times and now - self._done_times[0] > RATE_WINDOW_SECONDS:
            self._done_times.popleft()

    def rate(self) -> float:
        """Images per second over the last minute (or since start, if younger)."""
        with self._lock:
            now = self._clock()
            self._trim(now)
            span = min(RATE_WINDOW_SECONDS, max(now - self.started, 1e-6))
            return len(self._done_times) / span

    def set_delivery(self, pending: int, parked: int, lag_s: float) -> None:
        """The store's count (the publisher, each pass)."""
        with self._lock:
            self.delivery_pending, self.delivery_parked = pending, parked
            self._oldest_pending_at = self._clock() - lag_s if pending else None

    def verdict_queued(self) -> None:
        """A verdict was committed for the line (the inspection path): counted at once, even while the
        publisher waits on a line that does not answer."""
        with self._lock:
            self.delivery_pending += 1
            if self._oldest_pending_at is None:
                self._oldest_pending_at = self._clock()

    def delivered(self, consumer: str, taken: bool, age_s: float | None) -> None:
        """One delivery to one consumer (stdout, hook, mqtt, opcua): counted, with, when taken, how old
        the verdict was by then (the lag of that consumer)."""
        with self._lock:
            counts = self._deliveries.setdefault(consumer, {"taken": 0, "refused": 0, "lag_sum": 0.0,
                                                            "lag_count": 0, "lag_last": 0.0})
            counts["taken" if taken else "refused"] += 1
            if taken and age_s is not None:
                counts["lag_sum"] += age_s
                counts["lag_count"] += 1
                counts["lag_last"] = age_s

    def verdict_taken(self) -> None:
        """The line took a verdict (the publisher): counted at once; the store's count corrects it soon."""
        with self._lock:
            self.delivery_pending = max(0, self.delivery_pending - 1)
            if self.delivery_pending == 0:
                self._oldest_pending_at = None

    @property
    def delivery_lag_s(self) -> float:
        oldest = self._oldest_pending_at
        return max(0.0, self._clock() - oldest) if oldest is not None and self.delivery_pending else 0.0

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self.paused = paused

    def set_degraded(self, reason: str | None) -> None:
        """The loop is alive but the line goes uninspected (why), or no longer (None): /healthz 503."""
        with self._lock:
            self.degraded = reason

    def healthy(self, stale_after_s: float) -> bool:
        with self._lock:
            return (self.alive and not self.paused and self.degraded is None
                    and self._clock() - self.last_tick <= stale_after_s)

    def status(self, stale_after_s: float) -> dict[str, Any]:
        healthy = self.healthy(stale_after_s)
        rate = self.rate()
        with self._lock:
            return {
                "status": "ok" if healthy else "disk_full" if self.paused else "degraded" if self.degraded else "unhealthy",
                "degraded": self.degraded,
                "alive": self.alive,
                "seconds_since_tick": round(self._clock() - self.last_tick, 3),
                "processed": self.processed,
                "flagged": self.flagged,
                "errors": self.errors,
                "queue_depth": self.queue_depth,
                "camera_up": self.camera_up,
                "images_per_second": round(rate, 3),
                "delivery": {"pending": self.delivery_pending, "parked": self.delivery_parked,
                             "lag_seconds": round(self.delivery_lag_s, 3),
                             "consumers": {name: {"taken": c["taken"], "refused": c["refused"],
                                                  "last_lag_seconds": round(c["lag_last"], 3)}
                                           for name, c in sorted(self._deliveries.items())}},
            }

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        rate = self.rate()
        with self._lock:
            ordered = sorted(self._latencies)
            lines = [
                "# HELP inspector_images_processed_total Images inspected and stored.",
                "# TYPE inspector_images_processed_total counter",
                f"inspector_images_processed_total {self.processed}",
                "# HELP inspector_images_flagged_total Images with a fail or review verdict.",
                "# TYPE inspector_images_flagged_total counter",
                f"inspector_images_flagged_total {self.flagged}",
                "# HELP inspector_errors_total Images that could not be inspected (quarantined) and loop errors.",
                "# TYPE inspector_errors_total counter",
                f"inspector_errors_total {self.errors}",
                "# HELP inspector_queue_depth Images waiting to be inspected.",
                "# TYPE inspector_queue_depth gauge",
                f"inspector_queue_depth {self.queue_depth}",
                "# HELP inspector_inspection_latency_seconds Time from taking an image to storing its verdict.",
                "# TYPE inspector_inspection_latency_seconds summary",
            ]
            for quantile in (0.5, 0.9, 0.99):
                value = ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] if ordered else float("nan")
                lines.append(f'inspector_inspection_latency_seconds{{quantile="{quantile}"}} {value:.6g}')
            lines += [
                f"inspector_inspection_latency_seconds_sum {self._latency_sum:.6g}",
                f"inspector_inspection_latency_seconds_count {self._latency_count}",
                "# HELP inspector_images_per_second Images stored per second over the last minute.",
                "# TYPE inspector_images_per_second gauge",
                f"inspector_images_per_second {rate:.6g}",
                "# HELP inspector_verdicts_pending Verdicts the line has not taken yet (due now or after a retry delay).",
                "# TYPE inspector_verdicts_pending gauge",
                f"inspector_verdicts_pending {self.delivery_pending}",
                "# HELP inspector_verdicts_parked Verdicts the line refused too often, kept aside until resent.",
                "# TYPE inspector_verdicts_parked gauge",
                f"inspector_verdicts_parked {self.delivery_parked}",
                "# HELP inspector_delivery_lag_seconds Age of the oldest verdict the line has not taken.",
                "# TYPE inspector_delivery_lag_seconds gauge",
                f"inspector_delivery_lag_seconds {self.delivery_lag_s:.6g}",
                "# HELP inspector_deliveries_total Verdicts offered to each consumer of the line, by result.",
                "# TYPE inspector_deliveries_total counter",
            ]
            for name, c in sorted(self._deliveries.items()):
                lines += [f'inspector_deliveries_total{{output="{name}",result="taken"}} {c["taken"]}',
                          f'inspector_deliveries_total{{output="{name}",result="refused"}} {c["refused"]}']
            lines += [
                "# HELP inspector_delivery_lag_by_output_seconds Age of each verdict when a consumer took it.",
                "# TYPE inspector_delivery_lag_by_output_seconds summary",
            ]
            for name, c in sorted(self._deliveries.items()):
                lines += [f'inspector_delivery_lag_by_output_seconds_sum{{output="{name}"}} {c["lag_sum"]:.6g}',
                          f'inspector_delivery_lag_by_output_seconds_count{{output="{name}"}} {c["lag_count"]}']
            lines += [
                "# HELP inspector_camera_up 1 while the camera delivers frames (camera feed only).",
                "# TYPE inspector_camera_up gauge",
            ]
            if self.camera_up is not None:
                lines.append(f"inspector_camera_up {int(self.camera_up)}")
        return "\n".join(lines) + "\n"


class HealthServer:
    """`/healthz` and `/metrics` on a ThreadingHTTPServer in a daemon thread (port 0 = ephemeral)."""

    def __init__(self, metrics: Metrics, host: str = "127.0.0.1", port: int = 0, stale_after_s: float = 30.0) -> None:
        self.metrics = metrics
        self.stale_after_s = stale_after_s
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                if self.path.split("?")[0] == "/healthz":
                    status = outer.metrics.status(outer.stale_after_s)
                    self._send(200 if status["status"] == "ok" else 503, "application/json",
                               json.dumps(status).encode())
                elif self.path.split("?")[0] == "/metrics":
                    self._send(200, "text/plain; version=0.0.4; charset=utf-8", outer.metrics.prometheus().encode())
                else:
                    self._send(404, "text/plain", b"not found: try /healthz or /metrics\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                log.debug("http %s", format % args)

        try:
            self.server = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise InspectorError(f"health/metrics endpoint {host}:{port}: cannot listen ({exc.strerror or exc})") from exc
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="inspector-http", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> HealthServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
