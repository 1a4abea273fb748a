"""The publisher (issue 35, finding 1): the line's refusals and delays never hold back newer verdicts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from inspector.feeds.health import Metrics
from inspector.feeds.lineout import LineOut
from inspector.feeds.publisher import Publisher
from inspector.store import Store
from inspector.store.schema import utcnow

MODEL = "ab" * 32


class Line:
    """A PLC bridge that refuses verdicts without a score (a quarantined board's), as the issue found."""

    def __init__(self) -> None:
        self.taken: list[dict[str, Any]] = []

    def deliver_to(self, verdict: dict[str, Any], already: Any) -> tuple[list[str], str | None]:
        if verdict["score"] is None:
            return [], "hook: exit status 1 score is null"
        self.taken.append(verdict)
        return ["hook"], None


def _publisher(store: Store, line: Any, now: list[Any], attempts: int = 10) -> Publisher:
    return Publisher(store, "s1", line, Metrics(), to_message=lambda row: {"id": row.id, "score": row.score},
                     max_attempts=attempts, wall=lambda: now[0])


def _stored(store: Store, n: int, score: float | None) -> int:
    return store.record_inspection(station="s1", input_sha256=f"{n:064d}", model_hash=MODEL,
                                   verdict="error" if score is None else "pass", score=score, publish=True)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = Store.open(tmp_path / "data")
    opened.register_model(MODEL)
    return opened


def test_a_hundred_refused_verdicts_do_not_block_the_next_one(store: Store) -> None:
    now = [utcnow()]
    line = Line()
    publisher = _publisher(store, line, now)
    refused = [_stored(store, n, None) for n in range(100)]
    assert publisher.publish_due() == 0 and line.taken == []  # each refused once, due again later
    newest = _stored(store, 1000, 0.5)
    assert publisher.publish_due() == 1 and [v["id"] for v in line.taken] == [newest]
    state = store.delivery_state(station="s1", now=now[0])
    assert state.pending == 100 and state.parked == 0
    assert refused[0] in {p.inspection.id for p in store.pending_verdicts(station="s1", now=now[0] + timedelta(hours=1))}


def test_a_verdict_refused_too_often_is_parked_counted_and_resendable(store: Store) -> None:
    now = [utcnow()]
    line = Line()
    publisher = _publisher(store, line, now, attempts=3)
    bad = _stored(store, 1, None)
    for _ in range(3):
        publisher.publish_due()
        now[0] += timedelta(minutes=2)  # past any backoff
    [parked] = store.parked_verdicts(station="s1")
    assert parked.inspection.id == bad and parked.attempts == 3 and "score is null" in parked.last_error
    assert publisher.metrics.delivery_parked == 1 and publisher.metrics.delivery_pending == 0
    assert any("parked after 3 refusals" in e.detail for e in store.events(kind="error"))
    assert store.pending_verdicts(station="s1", now=now[0] + timedelta(days=1)) == []  # never retried alone
    assert store.resend_parked(station="s1") == 1
    assert [p.inspection.id for p in store.pending_verdicts(station="s1", now=now[0])] == [bad]


def test_due_verdicts_go_soonest_due_first_and_only_this_stations(store: Store) -> None:
    now = [utcnow()]
    line = Line()
    publisher = _publisher(store, line, now)
    first, second = _stored(store, 1, 0.1), _stored(store, 2, 0.2)
    store.record_inspection(station="other", input_sha256="f" * 64, model_hash=MODEL, verdict="pass", score=0.3,
                            publish=True)
    [entry] = [p for p in store.pending_verdicts(station="s1", now=now[0]) if p.inspection.id == first]
    store.verdict_not_taken(entry.outbox_id, "busy", now[0] + timedelta(seconds=5))
    assert publisher.publish_due() == 1 and [v["id"] for v in line.taken] == [second]
    now[0] += timedelta(seconds=6)
    assert publisher.publish_due() == 1 and [v["id"] for v in line.taken] == [second, first]
    assert store.delivery_state(station="other", now=now[0]).pending == 1  # its own feed publishes it


def test_the_thread_publishes_what_the_inspection_path_commits(store: Store, tmp_path: Path) -> None:
    out = tmp_path / "lines.jsonl"
    with out.open("w") as stream:
        lineout = LineOut(json_lines=True, hook="", on_hook_failure=lambda detail: None, stream=stream)
        publisher = Publisher(store, "s1", lineout, Metrics(), to_message=lambda row: {"id": row.id},
                              max_attempts=3, poll_seconds=0.05).start()
        try:
            ids = [_stored(store, n, 0.5) for n in range(5)]
            publisher.wake()
            for _ in range(200):
                if store.delivery_state(station="s1").pending == 0:
                    break
                publisher.wake()
                __import__("time").sleep(0.02)
        finally:
            publisher.stop(drain=True)
    assert not publisher.running
    assert sorted(int(line.split(":")[1].strip(" }\n")) for line in out.read_text().splitlines()) == ids


def test_the_outbox_command_lists_and_resends_parked_verdicts(store: Store, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    from inspector.cli import main

    now = [utcnow()]
    publisher = _publisher(store, Line(), now, attempts=1)
    bad = _stored(store, 1, None)
    publisher.publish_due()
    db = str(tmp_path / "data")
    assert main(["outbox", "list", "--db", db]) == 0
    shown = capsys.readouterr().out
    assert "0 verdicts pending" in shown and "1 parked" in shown and f"board #{bad}" in shown and "score is null" in shown
    assert main(["outbox", "resend", "--db", db, "--station", "s1"]) == 0
    assert "1 parked verdict(s) queued again" in capsys.readouterr().out
    assert store.delivery_state(station="s1").pending == 1
