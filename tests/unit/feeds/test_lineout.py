"""Line output: JSON lines, hook command, and the health/metrics endpoint over real HTTP."""

from __future__ import annotations

import io
import json
import shlex
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from inspector.feeds.health import HealthServer, Metrics
from inspector.feeds.lineout import LineOut


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_healthz_and_metrics_over_http() -> None:
    clock = [1000.0]
    metrics = Metrics(clock=lambda: clock[0])
    server = HealthServer(metrics, "127.0.0.1", 0, stale_after_s=5.0).start()
    try:
        assert server.port > 0
        metrics.observe("pass", 0.02)
        metrics.observe("fail", 0.04)
        metrics.observe("review", 0.06)
        metrics.error()
        metrics.set_queue_depth(7)
        metrics.set_camera_up(True)
        code, content_type, body = get(server.port, "/healthz")
        status = json.loads(body)
        assert code == 200 and content_type == "application/json"
        assert status["status"] == "ok" and status["processed"] == 3 and status["flagged"] == 2

        code, content_type, text = get(server.port, "/metrics")
        assert code == 200 and content_type.startswith("text/plain; version=0.0.4")
        samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                   for line in text.splitlines() if line and not line.startswith("#")}
        assert samples["inspector_images_processed_total"] == 3
        assert samples["inspector_images_flagged_total"] == 2
        assert samples["inspector_errors_total"] == 1
        assert samples["inspector_queue_depth"] == 7
        assert samples["inspector_camera_up"] == 1
        assert samples["inspector_images_per_second"] > 0
        assert samples["inspector_inspection_latency_seconds_count"] == 3
        assert samples["inspector_inspection_latency_seconds_sum"] == pytest.approx(0.12)
        assert samples['inspector_inspection_latency_seconds{quantile="0.5"}'] == pytest.approx(0.04)
        assert "# TYPE inspector_inspection_latency_seconds summary" in text

        clock[0] += 6.0  # the loop stopped ticking
        code, _, body = get(server.port, "/healthz")
        assert code == 503 and json.loads(body)["status"] == "unhealthy"
        metrics.tick()
        assert get(server.port, "/healthz")[0] == 200
        metrics.alive = False  # the loop ended
        assert get(server.port, "/healthz")[0] == 503
        assert get(server.port, "/nope")[0] == 404
    finally:
        server.stop()


def test_rate_counts_the_last_minute_only() -> None:
    clock = [0.0]
    metrics = Metrics(clock=lambda: clock[0])
    clock[0] = 10.0
    for _ in range(5):
        metrics.observe("pass", 0.01)
    assert metrics.rate() == pytest.approx(0.5)  # 5 images in the 10 s since start
    clock[0] = 100.0
    metrics.observe("pass", 0.01)
    assert metrics.rate() == pytest.approx(1 / 60)  # the first five fell out of the window


def test_json_lines_and_hook_receive_each_verdict(tmp_path: Path) -> None:
    received = tmp_path / "hook.jsonl"
    hook = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
        f"import sys; open({str(received)!r}, 'a').write(sys.stdin.read())")
    failures: list[str] = []
    stream = io.StringIO()
    out = LineOut(json_lines=True, hook=hook, on_hook_failure=failures.append, stream=stream)
    out.publish({"source_name": "a.png", "verdict": "fail", "score": 2.5})
    out.publish({"source_name": "b.png", "verdict": "pass", "score": 0.5})
    assert [json.loads(line)["source_name"] for line in stream.getvalue().splitlines()] == ["a.png", "b.png"]
    assert [json.loads(line)["verdict"] for line in received.read_text().splitlines()] == ["fail", "pass"]
    assert failures == []


def test_failing_hooks_are_reported_not_raised(tmp_path: Path) -> None:
    failures: list[str] = []
    crash = f"{shlex.quote(sys.executable)} -c " + shlex.quote("import sys; sys.exit('PLC offline')")
    LineOut(json_lines=False, hook=crash, on_hook_failure=failures.append).publish({"source_name": "a.png"})
    slow = f"{shlex.quote(sys.executable)} -c " + shlex.quote("import time; time.sleep(10)")
    LineOut(json_lines=False, hook=slow, on_hook_failure=failures.append, hook_timeout_s=0.5).publish(
        {"source_name": "b.png"})
    LineOut(json_lines=False, hook=str(tmp_path / "missing-hook"), on_hook_failure=failures.append).publish(
        {"source_name": "c.png"})
    assert len(failures) == 3
    assert "a.png" in failures[0] and "exit status 1" in failures[0] and "PLC offline" in failures[0]
    assert "b.png" in failures[1] and "timed out" in failures[1]
    assert "c.png" in failures[2] and "cannot run" in failures[2]


def test_busy_port_is_a_clear_error() -> None:
    from inspector.errors import InspectorError

    first = HealthServer(Metrics(), "127.0.0.1", 0)
    try:
        with pytest.raises(InspectorError, match=f"127.0.0.1:{first.port}: cannot listen"):
            HealthServer(Metrics(), "127.0.0.1", first.port)
    finally:
        first.server.server_close()
