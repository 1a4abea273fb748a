"""Every dashboard page, run by Streamlit's AppTest against a store seeded through the Store API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from deploy.dashboard import actions
from deploy.dashboard.context import plain
from deploy.dashboard.launch import ENV_USERS_FILE
from deploy.dashboard.settings import session_table, settings_from_env
from inspector.errors import StoreUnavailable
from inspector.review.roles import AccessDenied, User
from inspector.store import Store
from tests.dashboard_env import APP, Browser, dashboard_env, log_in, logged_in, write_users

MODEL = "ab" * 32


@dataclass
class Seeded:
    store: Store
    data_dir: Path
    unreviewed: list[int]  # flagged and waiting, newest first
    confirmed: int
    dismissed: int
    browser: Browser


def _sha(n: int) -> str:
    return f"{n:064x}"


def _board_files(data_dir: Path, n: int, rng: np.random.Generator) -> tuple[str, str]:
    """A small board picture, a grayscale heatmap with one hot spot and a reconstruction (paths
    relative to data_dir, named like the runner names them)."""
    board = np.full((64, 80, 3), (40, 110, 30), np.uint8)
    cv2.rectangle(board, (10, 10), (30, 25), (200, 200, 200), -1)
    board = cv2.add(board, rng.integers(0, 20, board.shape, dtype=np.uint8))
    heat = np.zeros((64, 80), np.uint8)
    cv2.circle(heat, (50, 40), 8, 255, -1)
    (data_dir / "images").mkdir(exist_ok=True)
    image_rel, heat_rel = f"images/{n}.png", f"images/{n}.heatmap.png"
    cv2.imwrite(str(data_dir / image_rel), board)
    cv2.imwrite(str(data_dir / heat_rel), heat)
    cv2.imwrite(str(data_dir / f"images/{n}.reconstruction.png"), cv2.GaussianBlur(board, (5, 5), 0))
    return image_rel, heat_rel


def _own_idle_minutes(request: pytest.FixtureRequest) -> str:
    """A session table of its own per test (the table is per idle timeout): tests move its clock."""
    return str(30 + (abs(hash(request.node.nodeid)) % 100_000) / 1e6)


@pytest.fixture()
def seeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Seeded:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    listed = write_users(tmp_path / "users.toml", "olga", "quinn")
    store = Store.open(data_dir)
    store.register_model(MODEL, "bundles/tiny", {"architecture": "test"})
    store.set_station_state("line-1", "running", last_image="board-39.png")
    store.set_station_state("line-2", "camera_down")
    store.add_threshold_version(MODEL, 1.0, None, "calibration", "initial calibration")
    rng = np.random.default_rng(0)
    start = datetime.now(timezone.utc) - timedelta(hours=3)
    ids: dict[str, list[int]] = {"pass": [], "fail": []}
    for n in range(40):
        flagged = n % 5 == 4  # 8 flagged boards among 40
        score = float(rng.uniform(1.2, 2.0) if flagged else rng.uniform(0.3, 0.95))
        image_rel, heat_rel = _board_files(data_dir, n, rng)
        inspection_id = store.record_inspection(
            station="line-1", input_sha256=_sha(n), model_hash=MODEL, verdict="fail" if flagged else "pass",
            source_name="[x](http://a)" if n == 39 else f"board-{n}.png", score=score, threshold=1.0,
            regions=[{"bbox": [42, 32, 58, 48], "area": 201, "peak": score, "mean": score / 2,
                      "centroid": [50.0, 40.0]}] if flagged else [],
            image_path=image_rel, heatmap_path=heat_rel, threshold_version=1,
            created_at=start + timedelta(minutes=4 * n),
        )
        ids["fail" if flagged else "pass"].append(inspection_id)
    flagged_ids = ids["fail"]  # oldest first
    for inspection_id in flagged_ids[:3]:
        store.add_review(inspection_id, "olga", "confirm", "short", "bridge between pads")
    store.add_review(flagged_ids[3], "olga", "dismiss", "", "dust")
    browser = dashboard_env(monkeypatch, db_url="", data_dir=data_dir, users_file=listed,
                            idle_minutes=_own_idle_minutes(request))
    yield Seeded(store, data_dir, unreviewed=list(reversed(flagged_ids[4:])), confirmed=flagged_ids[0],
                 dismissed=flagged_ids[3], browser=browser)
    store.close()


def _shows_login(at: AppTest) -> bool:
    return (not at.exception and [t.value for t in at.title] == ["board-inspector"]
            and any("/bi/login" in m.value for m in at.markdown) and not at.dataframe and not at.get("image"))


def _texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.markdown, *at.text, *at.caption, *at.title, *at.subheader, *at.success, *at.error,
                               *at.info, *at.warning)]
    parts += [f"{m.label}={m.value}" for m in at.metric]
    return "\n".join(str(p) for p in parts)


def test_login_is_required_and_the_address_logs_nobody_in(seeded: Seeded) -> None:
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert _shows_login(at)  # nothing from the store before login
    cookie = log_in(seeded.browser, "quinn")
    seeded.browser["cookie"] = None  # another browser, given only the address
    for params in ({"session": cookie}, {"board": str(seeded.unreviewed[0]), "session": "e30." + "[" * 5000}):
        at = AppTest.from_file(str(APP), default_timeout=60)
        for key, value in params.items():
            at.query_params[key] = value
        at.run()
        assert _shows_login(at) and "session" not in at.query_params and "user" not in at.session_state


def test_copied_board_link_in_a_fresh_browser_shows_the_login_reload_keeps_it_logout_ends_it(seeded: Seeded) -> None:
    at = logged_in("quinn", seeded.browser)
    cookie = seeded.browser["cookie"]
    at.button(key=f"open-{seeded.unreviewed[0]}").click().run()
    assert at.title[0].value == f"Board #{seeded.unreviewed[0]}"
    assert not any(cookie in str(v) for v in at.query_params.values())  # nothing of the login in the address
    link = dict(at.query_params)

    seeded.browser["cookie"] = None  # the link pasted into another browser (or by the operator next to her)
    fresh = AppTest.from_file(str(APP), default_timeout=60)
    for key, value in link.items():
        fresh.query_params[key] = value
    assert _shows_login(fresh.run())

    seeded.browser["cookie"] = cookie  # a reload in her own browser: the cookie comes along
    reloaded = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not reloaded.exception and "Logged in as quinn (qa)" in [t.value for t in reloaded.text]

    reloaded.button(key="logout").click().run()
    assert _shows_login(reloaded)
    assert _shows_login(at.run())  # the other tab of the same login is logged out too
    assert _shows_login(AppTest.from_file(str(APP), default_timeout=60).run())  # Back / history: the form


def test_an_idle_session_ends(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    table = session_table(settings_from_env())
    now = [table.clock()]
    table.clock = lambda: now[0]
    now[0] += 29 * 60
    at.run()
    assert "Logged in as olga (operator)" in [t.value for t in at.text]
    now[0] += 29 * 60  # 29 minutes after the last page run: still in
    at.run()
    assert "Logged in as olga (operator)" in [t.value for t in at.text]
    now[0] += 31 * 60
    assert _shows_login(at.run())


def test_a_store_outage_or_a_fault_shows_a_plain_line(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    at = logged_in("olga", seeded.browser)

    def outage(*_args: object, **_kwargs: object) -> None:
        raise StoreUnavailable("results store unreachable: connection refused")

    monkeypatch.setattr(Store, "count_inspections", outage)
    at.run()
    assert not at.exception and any("results store unreachable" in e.value for e in at.error)

    def fault(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("SELECT secret FROM inspections")

    monkeypatch.setattr(Store, "count_inspections", fault)
    at.run()
    assert not at.exception and not any("SELECT" in e.value for e in at.error)
    assert any("The page failed" in e.value for e in at.error)


def test_inbox_names_show_as_literal_text(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    assert any("[x](http://a)" in t.value for t in at.text)
    assert not any("](http://a)" in m.value for m in at.markdown)
    at.button(key=f"open-{seeded.unreviewed[0]}").click().run()
    assert any("image [x](http://a)" in t.value for t in at.text)


def test_missing_users_file_stops_with_a_clear_message(seeded: Seeded, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_USERS_FILE, str(tmp_path / "nope.toml"))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert any("cannot start" in e.value and plain("nope.toml") in e.value for e in at.error)
    assert not at.text_input


def test_queue_lists_unreviewed_flagged_boards_newest_first_with_stations(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    open_keys = [b.key for b in at.button if b.key and b.key.startswith("open-")]
    assert open_keys == [f"open-{i}" for i in seeded.unreviewed]
    stations = at.dataframe[0].value
    assert list(stations["station"]) == ["line-1", "line-2"]
    assert list(stations["state"]) == ["running", "camera down"]
    assert list(stations["last image"]) == ["board-39.png", ""]
    assert stations["last image at"].iloc[0].endswith("min ago") and stations["last image at"].iloc[1] == "never"
    assert "4 flagged boards waiting for review" in _texts(at)

    at.toggle(key="queue_include_reviewed").set_value(True).run()
    open_keys = [b.key for b in at.button if b.key and b.key.startswith("open-")]
    assert f"open-{seeded.confirmed}" in open_keys and len(open_keys) == 8


def test_operator_confirms_a_board_and_moves_to_the_next(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    first, second = seeded.unreviewed[0], seeded.unreviewed[1]
    at.button(key=f"open-{first}").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == f"Board #{first}"
    assert len(at.get("image")) == 4  # its region's zoom, the board with regions, the heatmap blend, the reconstruction
    regions = at.dataframe[0].value
    assert list(regions["x1"]) == [42] and list(regions["area (px)"]) == [201]
    text = _texts(at)
    assert "Threshold version=v1" in text and MODEL[:16] in text

    at.slider(key="heatmap_opacity").set_value(0.8).run()
    assert not at.exception
    at.selectbox(key=f"defect_type-{first}").set_value("solder_bridge")
    at.text_area(key=f"comment-{first}").input("bridge on U3")
    next(b for b in at.button if b.label == "Confirm defect").click().run()
    assert not at.exception, at.exception

    reviews = seeded.store.reviews_for(first)
    assert [(r.operator, r.decision, r.defect_type, r.comment) for r in reviews] == [
        ("olga", "confirm", "solder_bridge", "bridge on U3")]
    assert at.title[0].value == f"Board #{second}"
    assert f"Board #{first} confirmed as solder_bridge." in _texts(at)


def test_operator_dismisses_a_false_alarm(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    board = seeded.unreviewed[-1]
    at.button(key=f"open-{board}").click().run()
    next(b for b in at.button if b.label == "Dismiss as false alarm").click().run()
    assert not at.exception, at.exception
    assert [(r.operator, r.decision) for r in seeded.store.reviews_for(board)] == [("olga", "dismiss")]


def test_line_overview_counts_boards_and_defect_types(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    at.switch_page("views/overview.py").run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Boards"] == "40"
    assert metrics["Flag rate"] == "20.0%"
    assert metrics["Confirmed defects"] == "3"
    assert metrics["Waiting for review"] == "4"


def test_operator_has_no_qa_page_and_cannot_write_thresholds(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    with pytest.raises(ValueError):
        at.switch_page("views/qa.py").run()
    operator = User("olga", "operator")
    with pytest.raises(AccessDenied):
        actions.save_threshold(seeded.store, operator, MODEL, 1.5, "looks better")
    with pytest.raises(AccessDenied):
        actions.save_threshold(seeded.store, None, MODEL, 1.5, "looks better")
    assert [v.version for v in seeded.store.threshold_history(MODEL)] == [1]


def test_qa_previews_and_saves_a_threshold_version(seeded: Seeded) -> None:
    at = logged_in("quinn", seeded.browser)
    at.switch_page("views/qa.py").run()
    assert not at.exception, at.exception
    assert "Current threshold 1.0000" in _texts(at)
    at.slider(key="qa_threshold").set_value(1.5).run()
    records = seeded.store.list_inspections(limit=100)
    reviews = {r.inspection_id: r.decision for r in seeded.store.reviews_for()}
    flagged = sum(r.score >= 1.5 for r in records)
    missed = sum(r.score < 1.5 for r in records if reviews.get(r.id) == "confirm")
    assert f"Of the last 40 boards, {flagged} would be flagged; {missed} of 3 confirmed defects would be missed" \
        in _texts(at)

    # An empty reason is refused and nothing is written.
    next(b for b in at.button if b.label == "Save as new threshold version").click().run()
    assert any("reason is required" in e.value for e in at.error)
    assert [v.version for v in seeded.store.threshold_history(MODEL)] == [1]

    at.slider(key="qa_threshold").set_value(1.5).run()
    at.text_area(key="qa_reason").input("fewer false alarms on line 1")
    next(b for b in at.button if b.label == "Save as new threshold version").click().run()
    assert not at.exception, at.exception
    current = seeded.store.current_threshold(MODEL)
    assert current is not None and current.version == 2 and current.author == "quinn"
    assert current.image_threshold == pytest.approx(1.5) and current.previous_image_threshold == 1.0
    assert current.reason == "fewer false alarms on line 1"
    assert list(at.dataframe[-1].value["version"]) == [2, 1]


def test_qa_chooses_by_false_alarm_rate_and_restores_an_old_version(seeded: Seeded) -> None:
    at = logged_in("quinn", seeded.browser)
    at.switch_page("views/qa.py").run()
    at.radio(key="qa_method").set_value("target false-alarm rate").run()
    at.number_input(key="qa_far").set_value(0.0).run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    # At 0 % false alarms the threshold sits on the highest good score: the dismissed board
    # (a good board that was flagged) is above every passed one, so nothing good is flagged.
    assert metrics["False alarms"] == "0 of 33"

    seeded.store.add_threshold_version(MODEL, 1.7, None, "quinn", "trial")
    at.run()
    at.selectbox(key="qa_restore_version").set_value(1)
    at.text_input(key="qa_restore_reason").input("trial over")
    next(b for b in at.button if b.label == "Restore as new version").click().run()
    assert not at.exception, at.exception
    history = seeded.store.threshold_history(MODEL)
    assert [(v.version, v.image_threshold) for v in history] == [(1, 1.0), (2, 1.7), (3, 1.0)]
    assert history[-1].reason == "restore version 1: trial over" and history[-1].previous_image_threshold == 1.7


def test_board_with_a_vanished_image_says_which_file(seeded: Seeded) -> None:
    board = seeded.unreviewed[0]
    record = seeded.store.get_inspection(board)
    (seeded.data_dir / record.image_path).unlink()
    at = logged_in("olga", seeded.browser)
    at.button(key=f"open-{board}").click().run()
    assert not at.exception, at.exception
    assert any(plain(record.image_path) in w.value and "missing" in w.value for w in at.warning)
    assert next(b for b in at.button if b.label == "Confirm defect")  # still reviewable


def test_unknown_board_in_the_address_is_reported(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    at.query_params["board"] = "9999"
    at.switch_page("views/board.py").run()
    assert not at.exception, at.exception
    assert any("Board #9999 is not in the store" in e.value for e in at.error)


def test_operator_reviews_from_the_queue_with_one_click_each(seeded: Seeded) -> None:
    at = logged_in("olga", seeded.browser)
    assert len(at.get("image")) == 2 * len(seeded.unreviewed)  # per waiting board: the board, its region's zoom
    first, second = seeded.unreviewed[0], seeded.unreviewed[1]
    at.selectbox(key="queue_defect_type").set_value("short").run()
    at.button(key=f"confirm-{first}").click().run()
    assert not at.exception, at.exception
    at.button(key=f"dismiss-{second}").click().run()
    assert not at.exception, at.exception
    assert [(r.operator, r.decision, r.defect_type) for r in seeded.store.reviews_for(first)] == [
        ("olga", "confirm", "short")]
    assert [(r.operator, r.decision) for r in seeded.store.reviews_for(second)] == [("olga", "dismiss")]
    open_keys = [b.key for b in at.button if b.key and b.key.startswith("open-")]
    assert open_keys == [f"open-{i}" for i in seeded.unreviewed[2:]]  # both left the queue
    assert "2 flagged boards waiting for review" in _texts(at)
    assert not any(b.key == "dismiss-selected" for b in at.button) and not at.checkbox  # QA only


def test_qa_dismisses_several_boards_at_once(seeded: Seeded) -> None:
    at = logged_in("quinn", seeded.browser)
    chosen = seeded.unreviewed[:3]
    for board in chosen:
        at.checkbox(key=f"select-{board}").check().run()
    at.button(key="dismiss-selected").click().run()
    assert not at.exception, at.exception
    for board in chosen:
        assert [(r.operator, r.decision) for r in seeded.store.reviews_for(board)] == [("quinn", "dismiss")]
    assert [b.key for b in at.button if b.key and b.key.startswith("open-")] == [f"open-{seeded.unreviewed[3]}"]
    with pytest.raises(AccessDenied):
        actions.dismiss_many(seeded.store, User("olga", "operator"), [seeded.unreviewed[3]])


def test_a_store_at_its_own_url_shows_its_stations_pictures_and_nothing_outside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """`inspector dashboard --db <the runner's store>` without --data-dir (issue 35): the store records
    where each station's feed keeps its pictures, and the board page shows them from there; a row
    pointing anywhere else still shows nothing."""
    line_dir, elsewhere, stores = tmp_path / "line-7", tmp_path / "elsewhere", tmp_path / "stores"
    for folder in (line_dir, elsewhere, stores):
        folder.mkdir()
    url = f"sqlite:///{stores / 'custom.db'}"
    store = Store.open(url)
    store.register_model(MODEL, "bundles/tiny", {"architecture": "test"})
    store.claim_station("line-7", data_dir=str(line_dir.resolve()), feed="watch")  # as the feed records it
    rng = np.random.default_rng(7)
    boards = {}
    for n, folder in ((1, line_dir), (2, elsewhere)):
        image_rel, heat_rel = _board_files(folder, n, rng)
        boards[folder] = store.record_inspection(
            station="line-7", input_sha256=_sha(100 + n), model_hash=MODEL, verdict="fail", source_name=f"b-{n}.png",
            score=1.5, threshold=1.0, regions=[{"bbox": [42, 32, 58, 48], "area": 201, "peak": 1.5, "mean": 0.7,
                                                "centroid": [50.0, 40.0]}],
            image_path=str(folder / image_rel), heatmap_path=str(folder / heat_rel), threshold_version=None)
    browser = dashboard_env(monkeypatch, db_url=url, data_dir=tmp_path / "data",
                            users_file=write_users(tmp_path / "users.toml", "olga"),
                            idle_minutes=_own_idle_minutes(request))
    try:
        log_in(browser, "olga")
        for folder, shown in ((line_dir, True), (elsewhere, False)):
            at = AppTest.from_file(str(APP), default_timeout=60)
            at.query_params["board"] = str(boards[folder])
            at.switch_page("views/board.py").run()
            assert not at.exception, at.exception
            refused = [w.value for w in at.warning if "outside the data folder" in w.value]
            if shown:  # the board, its zoom, the heatmap over it, the reconstruction: all from line-7's folder
                assert not refused and len(at.get("image")) >= 3
            else:
                assert refused and plain(str(elsewhere / "images" / "2.png")) in refused[0]
                assert not at.get("image")
    finally:
        store.close()
