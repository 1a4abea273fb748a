"""Power cuts and verdicts that reach the line (issue 14).

The runner is stopped dead (an exception no handler catches, injected at each step between a
board's commit and its final move: not timing luck). After a restart every board is in exactly one
final place with exactly one row, and every verdict has been published at least once, under a
stable id. A hook that fails is retried with backoff until it takes the verdict.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from inspector.config import InspectConfig, RunnerConfig
from inspector.feeds import processor as processor_module
from inspector.feeds.folder import run_folder
from inspector.feeds.processor import make_processor, verdict_id
from inspector.store import Store
from tests.fake_engine import FakeEngine, board


class PowerCut(BaseException):
    """Nothing in the runner catches it: the process is gone at that instruction."""


def config(data_dir: Path, **extra: object) -> RunnerConfig:
    values: dict[str, object] = dict(station="t1", data_dir=str(data_dir), stable_seconds=0.0, poll_seconds=0.05)
    values.update(extra)
    return RunnerConfig(**values)  # type: ignore[arg-type]


def drop_boards(inbox: Path) -> dict[str, str]:
    """Two good boards, one failing board, a corrupt file and a copy of the first board."""
    inputs = {}
    for name, brightness, seed in (("a.png", 60, 1), ("b.png", 180, 2), ("c.png", 70, 3)):
        inputs[name] = hashlib.sha256(board(str(inbox / name), brightness, seed=seed)).hexdigest()
    (inbox / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    inputs["corrupt.png"] = hashlib.sha256((inbox / "corrupt.png").read_bytes()).hexdigest()
    (inbox / "copy-of-a.png").write_bytes((inbox / "a.png").read_bytes())
    inputs["copy-of-a.png"] = inputs["a.png"]
    return inputs


@pytest.mark.parametrize("nth", [1, 2, 4])
@pytest.mark.parametrize("step", ["committed", "published", "moved"])
def test_a_power_cut_at_each_step_between_commit_and_move_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, nth: int) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    inputs = drop_boards(inbox)
    hits = {"n": 0}

    def cut(at: str) -> None:
        if at == step:
            hits["n"] += 1
            if hits["n"] == nth:
                raise PowerCut(at)

    monkeypatch.setattr(processor_module, "_no_fault", cut)
    first, second = io.StringIO(), io.StringIO()
    with pytest.raises(PowerCut):
        run_folder(inbox, FakeEngine(), config(data, max_batch=2), InspectConfig(), once=True, stream=first)
    monkeypatch.setattr(processor_module, "_no_fault", lambda at: None)
    run_folder(inbox, FakeEngine(), config(data, max_batch=2), InspectConfig(), once=True, stream=second)

    places: dict[str, list[str]] = {}
    for state in ("processing", "done", "quarantine"):
        for path in (data / state).iterdir():
            places.setdefault(path.name, []).append(state)
    assert os.listdir(inbox) == [] and os.listdir(data / "processing") == []
    assert sorted(places) == sorted(inputs) and all(len(where) == 1 for where in places.values()), places
    assert places["corrupt.png"] == ["quarantine"]
    store = Store.open(data)
    rows = store.list_inspections()
    assert sorted(row.input_sha256 for row in rows) == sorted(set(inputs.values()))  # one row per image
    published = [json.loads(line) for text in (first, second) for line in text.getvalue().splitlines()]
    ids = {line["verdict_id"] for line in published}
    assert {verdict_id(row.input_sha256, row.model_hash) for row in rows} <= ids
    assert store.outbox_backlog() == 0


def test_a_hook_that_fails_three_times_is_retried_with_backoff_until_it_takes_the_verdict(tmp_path: Path) -> None:
    taken = tmp_path / "taken.jsonl"
    calls = tmp_path / "calls"
    script = tmp_path / "hook.sh"
    script.write_text(f"#!/bin/sh\necho x >> {calls}\n[ $(wc -l < {calls}) -le 3 ] && exit 1\ncat >> {taken}\n")
    script.chmod(0o755)
    store = Store.open(tmp_path / "data")
    engine = FakeEngine()
    processor = make_processor(engine, store, config(tmp_path / "data", hook=str(script), json_lines=False),
                               tmp_path / "overlays")
    (tmp_path / "overlays").mkdir()
    now = [store_time := processor.wall()]
    processor.wall = lambda: now[0]
    import numpy as np

    result = engine.inspect(np.full((16, 16), 180, np.uint8))
    verdict = processor.store_result(result, digest="d" * 64, name="b.png", source_path="in/b.png",
                                     image_path="done/b.png", overlay_path="", heatmap_path="", started=0.0)
    assert verdict.verdict == "fail" and store.outbox_backlog() == 1  # first try failed
    assert processor.publish_pending() == 0 and len(calls.read_text().split()) == 1  # not due yet: no retry
    for seconds, expected_calls in ((1, 2), (3, 3)):  # backoff 1 s, then 2 s
        now[0] = store_time + timedelta(seconds=seconds + 0.01)
        assert processor.publish_pending() == 0 and len(calls.read_text().split()) == expected_calls
    now[0] = store_time + timedelta(seconds=7.02)  # then 4 s: the fourth try is taken
    assert processor.publish_pending() == 1
    [line] = [json.loads(text) for text in taken.read_text().splitlines()]
    assert line["verdict"] == "fail" and line["verdict_id"] == verdict.verdict_id == verdict_id("d" * 64, engine.model_hash)
    assert store.outbox_backlog() == 0 and len(store.events(kind="error")) == 3
    now[0] += timedelta(hours=1)
    assert processor.publish_pending() == 0 and len(calls.read_text().split()) == 4  # taken once, not again


def test_a_board_sent_again_is_published_again_under_the_same_id(tmp_path: Path) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    board(str(inbox / "b.png"), 180, seed=2)
    out = io.StringIO()
    run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True, stream=out)
    board(str(inbox / "b-again.png"), 180, seed=2)  # the line missed it and sends it again
    run_folder(inbox, FakeEngine(), config(data), InspectConfig(), once=True, stream=out)
    lines = [json.loads(text) for text in out.getvalue().splitlines()]
    assert [line["verdict"] for line in lines] == ["fail", "fail"]
    assert lines[0]["verdict_id"] == lines[1]["verdict_id"] and lines[0]["inspection_id"] == lines[1]["inspection_id"]
