"""What the line sees of each verdict: a JSON line, a hook command, and the configured outputs (MQTT, OPC UA).

The folder runner and the camera feed share this; nothing here may stop the inspection loop: a
failing hook becomes an `error` event, a broken stdout pipe is ignored. The loop's health and metrics
(`/healthz`, `/metrics`) are in inspector/feeds/health.py.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

from inspector.feeds.health import Metrics

log = logging.getLogger(__name__)

HOOK_TIMEOUT_SECONDS = 5.0
HOOK_STDERR_TAIL_BYTES = 4096  # what is kept of a failing hook's stderr (its last line is reported)


def _age(verdict: dict[str, Any]) -> float | None:
    """Seconds since the verdict was stored (its `time`), for the per-consumer lag."""
    try:
        stored = datetime.fromisoformat(str(verdict["time"]))
    except (KeyError, ValueError):
        return None
    if stored.tzinfo is None:
        stored = stored.replace(tzinfo=timezone.utc)
    return max(0.0, (datetime.now(timezone.utc) - stored).total_seconds())


class LineOut:
    """Publishes each verdict to every consumer of the line: the JSON line on stdout, the hook command, and
    the configured outputs (MQTT, OPC UA: inspector/feeds/outputs.py), counting deliveries per consumer."""

    def __init__(self, *, json_lines: bool, hook: str, on_hook_failure: Callable[[str], None],
                 stream: TextIO | None = None, hook_timeout_s: float = HOOK_TIMEOUT_SECONDS,
                 outputs: Sequence[Any] = (), metrics: Metrics | None = None) -> None:
        self.json_lines = json_lines
        self.hook = shlex.split(hook) if hook else []
        self.on_hook_failure = on_hook_failure
        self.stream = stream
        self.hook_timeout_s = hook_timeout_s
        self.outputs = list(outputs)
        self.metrics = metrics

    @property
    def consumers(self) -> list[str]:
        return (["stdout"] if self.json_lines else []) + (["hook"] if self.hook else []) + [o.name for o in self.outputs]

    def start(self) -> None:
        for output in self.outputs:
            output.start()

    def station_state(self, *, online: bool, ready: bool, last_error: str | None = None) -> None:
        for output in self.outputs:
            try:
                output.station_state(online=online, ready=ready, last_error=last_error)
            except Exception:  # noqa: BLE001 - a consumer's trouble never stops the station
                log.exception("%s: station state not sent", output.name)

    def close(self) -> None:
        for output in self.outputs:
            try:
                output.close()
            except Exception:  # noqa: BLE001 - closing the others matters more
                log.exception("%s: not closed cleanly", output.name)

    def publish(self, verdict: dict[str, Any]) -> None:
        self.deliver(verdict)

    def deliver(self, verdict: dict[str, Any]) -> str | None:
        """Every consumer; None when all took it, else why not."""
        return self.deliver_to(verdict, ())[1]

    def deliver_to(self, verdict: dict[str, Any], already: Iterable[str]) -> tuple[list[str], str | None]:
        """The consumers not in `already` (they took it on an earlier try): which took it now, and why the
        others did not (None when none refused)."""
        done = set(already)
        taken: list[str] = []
        problems: list[str] = []
        for name, send in self._senders(verdict):
            if name in done:
                continue
            try:
                problem = send()
            except Exception as exc:  # noqa: BLE001 - an output must not take the publisher down
                problem = f"{name}: {type(exc).__name__}: {exc}"
            if self.metrics is not None:
                self.metrics.delivered(name, problem is None, _age(verdict))
            if problem is None:
                taken.append(name)
            else:
                problems.append(problem)
        return taken, "; ".join(problems) or None

    def _senders(self, verdict: dict[str, Any]) -> list[tuple[str, Callable[[], str | None]]]:
        line = json.dumps(verdict, sort_keys=True, default=str)
        senders: list[tuple[str, Callable[[], str | None]]] = []
        if self.json_lines:
            senders.append(("stdout", lambda: self._write_line(line)))
        if self.hook:
            senders.append(("hook", lambda: self._run_hook(line, verdict.get("source_name", ""))))
        for output in self.outputs:
            senders.append((output.name, functools.partial(output.deliver, verdict)))
        return senders

    def _write_line(self, line: str) -> str | None:
        stream = self.stream or sys.stdout
        try:
            stream.write(line + "\n")
            stream.flush()
        except (BrokenPipeError, ValueError, OSError) as exc:  # a closed consumer must not stop the line
            return f"stdout: {exc}"
        return None

    def _run_hook(self, line: str, name: str) -> str | None:
        command = shlex.join(self.hook)
        # The hook's output is never held in memory: stdout is discarded and stderr goes to a temporary
        # file of which only the tail is read (a hook printing gigabytes cannot exhaust the runner).
        with tempfile.TemporaryFile() as errors:
            try:
                done = subprocess.run(self.hook, input=(line + "\n").encode("utf-8"), stdout=subprocess.DEVNULL,
                                      stderr=errors, timeout=self.hook_timeout_s, check=False)
            except subprocess.TimeoutExpired:
                return self._failed(f"hook {command!r} for {name}: timed out after {self.hook_timeout_s:g} s")
            except OSError as exc:
                return self._failed(f"hook {command!r} for {name}: cannot run ({exc.strerror or exc})")
            errors.seek(max(0, errors.seek(0, os.SEEK_END) - HOOK_STDERR_TAIL_BYTES))
            stderr = errors.read(HOOK_STDERR_TAIL_BYTES)
        if done.returncode != 0:
            # Bytes, not text: a hook printing binary or Latin-1 must not raise here.
            text = stderr.decode("utf-8", "backslashreplace")
            tail = text.strip().splitlines()[-1:] or [""]
            shown = "".join(ch if ch.isprintable() else "?" for ch in tail[0][-300:])  # a line's end says why
            return self._failed(f"hook {command!r} for {name}: exit status {done.returncode} {shown}".strip())
        return None

    def _failed(self, detail: str) -> str:
        self.on_hook_failure(detail)
        return detail
