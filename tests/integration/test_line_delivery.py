"""Issue 35, finding 1: a PLC bridge that stops answering never stops inspection (the real folder runner)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

from inspector.config import InspectConfig
from inspector.feeds.folder import run_folder
from inspector.store import Store
from tests.conftest import free_port
from tests.fake_engine import FakeEngine, board
from tests.runner_config import runner_config


def test_a_hook_that_hangs_does_not_slow_inspection(tmp_path: Path) -> None:
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    calls = tmp_path / "calls"
    hook = tmp_path / "plc-bridge.sh"
    hook.write_text(f"#!/bin/sh\necho x >> {calls}\nsleep 30\n")  # a bridge that stopped answering
    hook.chmod(0o755)
    port = free_port()
    config = runner_config(data, hook=str(hook), http_port=port)
    stop = threading.Event()
    worker = threading.Thread(target=run_folder, args=(inbox, FakeEngine(), config, InspectConfig()),
                              kwargs={"stop": stop})
    worker.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        for n in range(16):  # dropped at once, as in the trial
            board(str(inbox / f"b{n}.png"), 60 + n, seed=n)
        stored = 0
        while time.monotonic() - started < 20 and stored < 16:
            time.sleep(0.05)
            with Store.open(data) as store:
                stored = len(store.list_inspections(limit=100))
        elapsed = time.monotonic() - started
        # Before: the first hook call alone held the loop for its 5 s timeout, and 4 of 16 boards were
        # stored after 30 s. Now every board is stored while the bridge is still on its first verdict.
        assert stored == 16 and elapsed < 4.5, (stored, elapsed)
        assert len(calls.read_text().split()) <= 1
        health = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
        assert health["status"] == "ok" and health["delivery"]["pending"] >= 15
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()  # a stop does not wait for the bridge beyond one call and the drain bound
    with Store.open(data) as store:
        assert store.outbox_backlog() >= 14  # still owed to the line, kept in the store for the next start


def test_every_input_gets_a_row_and_a_published_verdict_quarantined_unread_ones_too(tmp_path: Path) -> None:
    import io
    import os

    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    board(str(inbox / "good.png"), 60, seed=1)
    (inbox / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 5000)  # over the cap below: never read whole
    os.mkfifo(inbox / "pipe.png")
    os.symlink(tmp_path / "elsewhere.png", inbox / "link.png")
    config = runner_config(data, json_lines=True, max_file_bytes=4096)  # the test reads the published lines
    out = io.StringIO()
    run_folder(inbox, FakeEngine(), config, InspectConfig(), once=True, stream=out)
    published = {json.loads(line)["source_name"]: json.loads(line) for line in out.getvalue().splitlines()}
    with Store.open(data) as store:
        rows = {row.source_name: row for row in store.list_inspections()}
        assert store.outbox_backlog() == 0
    taken = set(rows)
    assert taken == {"good.png", "huge.png", "pipe.png", "link.png"}
    assert set(published) == taken
    assert rows["huge.png"].verdict == "error" and "over the limit" in (rows["huge.png"].error or "")
    assert all(published[name]["verdict"] == "error" for name in taken - {"good.png"})
    # The oversize file dropped again is recognised by its digest (streamed, never decoded): same row.
    (inbox / "huge-again.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 5000)
    again = io.StringIO()
    run_folder(inbox, FakeEngine(), config, InspectConfig(), once=True, stream=again)
    [line] = [json.loads(text) for text in again.getvalue().splitlines()]
    assert line["inspection_id"] == rows["huge.png"].id and line["verdict"] == "error"
