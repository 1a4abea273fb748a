"""End to end in a real browser: runner and dashboard processes on one store, driven by Chromium.

Defective sample boards are dropped into the runner's inbox; an operator logs in, sees a flagged
board appear in the live queue, opens and confirms it, and the review is found in the store; a QA
user then saves a threshold version. Screenshots of every page go to test-artifacts/; they are
copied into docs/images/ for the guides when one is missing there or when
BOARD_INSPECTOR_UPDATE_DOC_IMAGES=1 (so an ordinary test run leaves tracked files alone).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, free_port, require

pytestmark = pytest.mark.slow

REPO = REPO_ROOT
CHROMIUM = Path("/usr/bin/chromium")
LOGINS = {"operator": ("operator", "line-operator-1"), "qa": ("qa", "line-qa-pass-1")}
DOC_IMAGES = REPO / "docs" / "images"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SLOW_MS = 90_000  # two shared CPU cores: the runner and Streamlit compete with the browser


def _wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"dashboard exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"dashboard not healthy after {timeout} s:\n{log.read_text()[-3000:]}")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    handle = open(log, "wb")
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "inspector", *args], stdout=handle, stderr=subprocess.STDOUT,
                            cwd=REPO, env=env)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _users_file(folder: Path) -> Path:
    """Made the way the deployment guide says: `inspector users add`, the password on stdin."""
    path = folder / "users.toml"
    for name, (role, password) in LOGINS.items():
        result = subprocess.run([sys.executable, "-m", "inspector", "users", "add", name, "--role", role, "--users",
                                 str(path), "--password-stdin"], input=password + "\n", capture_output=True, text=True,
                                cwd=REPO, timeout=120)
        assert result.returncode == 0, result.stderr
    return path


def _gross_defect(good_board: Path, out_dir: Path) -> Path:
    """A good board with a large foreign patch: flagged by any model that learned the boards, so
    the test does not hinge on the tiny model catching the subtle generated defects."""
    import cv2

    image = cv2.imread(str(good_board), cv2.IMREAD_COLOR)
    height, width = image.shape[:2]
    cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (255, 0, 255), -1)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "foreign_object.png"
    cv2.imwrite(str(path), image)
    return path


def _drop(inbox: Path, boards: list[Path]) -> None:
    """Copy under a temporary name, then rename: the runner never sees half a file."""
    for board in boards:
        partial = inbox / f".{board.parent.name}-{board.name}.partial"
        shutil.copyfile(board, partial)
        os.replace(partial, inbox / f"{board.parent.name}-{board.name}")


@pytest.fixture()
def line(tmp_path: Path, tiny_bundle: Path) -> Iterator[dict[str, object]]:
    require(CHROMIUM.exists(), f"{CHROMIUM} (Debian chromium) is needed for the browser test")
    data_dir, inbox = tmp_path / "data", tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    runner_log, dashboard_log = tmp_path / "runner.log", tmp_path / "dashboard.log"
    runner = _start(["watch", str(inbox), "--model", str(tiny_bundle), "--data-dir", str(data_dir),
                     "--station", "e2e-line", "--stable-seconds", "0.2"], runner_log)
    dashboard = _start(["dashboard", "--data-dir", str(data_dir), "--users", str(_users_file(tmp_path)),
                        "--port", str(port)], dashboard_log)
    try:
        _wait_healthy(url, dashboard, dashboard_log)
        yield {"url": url, "data_dir": data_dir, "inbox": inbox, "runner": runner, "runner_log": runner_log,
               "dashboard_log": dashboard_log}
    finally:
        _stop(runner)
        _stop(dashboard)


def _shot(page, artifacts_dir: Path, name: str, shots: list[Path], prefix: str = "dashboard") -> None:
    page.wait_for_timeout(800)  # let charts and images finish drawing
    path = artifacts_dir / f"{prefix}-{name}.png"
    page.screenshot(path=str(path))
    shots.append(path)


def _keep_for_docs(shots: list[Path]) -> None:
    """Screenshots into docs/images/ when missing there or when BOARD_INSPECTOR_UPDATE_DOC_IMAGES=1."""
    DOC_IMAGES.mkdir(parents=True, exist_ok=True)
    refresh = os.environ.get("BOARD_INSPECTOR_UPDATE_DOC_IMAGES") == "1"
    for shot in shots:
        assert shot.stat().st_size > 10_000, f"{shot} looks empty"
        if refresh or not (DOC_IMAGES / shot.name).exists():
            shutil.copyfile(shot, DOC_IMAGES / shot.name)


def _log_in(page, url: str, user: str, password: str | None = None) -> None:
    from playwright.sync_api import expect

    password = password if password is not None else LOGINS[user][1]
    page.goto(url)
    expect(page.get_by_label("User")).to_be_visible(timeout=SLOW_MS)
    page.get_by_role("textbox", name="User").fill(user)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"Logged in as {user}")).to_be_visible(timeout=SLOW_MS)


def _nav(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()


def _sample_boards(sample_root: Path, extra_dir: Path) -> list[Path]:
    """The good test boards, then the defective ones with a gross defect made from the first good board."""
    defective = sorted(p for p in (sample_root / "test").glob("*/*.png") if p.parent.name != "good")
    good = sorted((sample_root / "test" / "good").glob("*.png"))
    assert defective and good
    defective.append(_gross_defect(good[0], extra_dir))
    return good + defective


def _operator_opens_a_flagged_board(page, url: str, inbox: Path, boards: list[Path], artifacts_dir: Path,
                                    shots: list[Path]) -> int:
    """The operator logs in, boards arrive while the queue is watched, the first card is opened: its id."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=SLOW_MS)
    _shot(page, artifacts_dir, "login", shots)
    _log_in(page, url, "operator")

    # Boards arrive while the operator watches: the queue must update without a reload.
    _drop(inbox, boards)
    open_button = page.locator('[class*="st-key-open-"] button').first  # a card's Open
    expect(open_button).to_be_visible(timeout=SLOW_MS)
    expect(page.get_by_text("e2e-line").filter(visible=True).first).to_be_visible()  # queue card
    expect(page.locator("img[src*='/media/']").first).to_be_visible(timeout=SLOW_MS)  # its thumbnail
    _shot(page, artifacts_dir, "queue", shots)

    open_button.click()
    title = page.get_by_role("heading", name="Board #")
    expect(title.first).to_be_visible(timeout=SLOW_MS)
    board_id = int(title.first.inner_text().split("#")[1].split()[0])
    expect(page.get_by_text("Heatmap opacity")).to_be_visible(timeout=SLOW_MS)
    _shot(page, artifacts_dir, "board", shots)
    return board_id


def _operator_confirms_the_board(page, data_dir: Path, board_id: int) -> None:
    """Confirmed as a solder bridge from the keyboard; the review is found in the store."""
    from playwright.sync_api import expect

    from inspector.store import Store

    # Keyboard, as an operator at the line would: type into the select, Enter picks it.
    page.get_by_label("Defect type").click()
    page.keyboard.type("solder_bridge")
    page.keyboard.press("Enter")
    page.get_by_label("Comment").fill("confirmed in the browser test")
    page.get_by_role("button", name="Confirm defect").click()
    expect(page.get_by_text(f"Board #{board_id} confirmed as solder_bridge.")).to_be_visible(timeout=SLOW_MS)

    with Store.open(data_dir) as store:
        reviews = store.reviews_for(board_id)
        record = store.get_inspection(board_id)
    assert [(r.operator, r.decision, r.defect_type, r.comment) for r in reviews] == [
        ("operator", "confirm", "solder_bridge", "confirmed in the browser test")]
    assert record is not None and record.verdict in ("fail", "review")


def _operator_sees_the_overview_and_logs_out(page, artifacts_dir: Path, shots: list[Path]) -> None:
    """The line overview without the QA page; a reload keeps the login; then the operator logs out."""
    from playwright.sync_api import expect

    _nav(page, "Line overview")
    expect(page.get_by_text("Boards per hour")).to_be_visible(timeout=SLOW_MS)
    _shot(page, artifacts_dir, "overview", shots)
    assert page.locator('[data-testid="stSidebarNav"]').get_by_text("Thresholds (QA)").count() == 0

    page.reload()  # a reload at the line keeps the login and the page
    expect(page.get_by_text("Logged in as operator")).to_be_visible(timeout=SLOW_MS)
    expect(page.get_by_text("Boards per hour")).to_be_visible(timeout=SLOW_MS)

    page.get_by_role("button", name="Log out").click()
    # The click returns before the app has ended the session over its websocket; a page load
    # before then still carries a live session past the gate, and that page then shows the
    # logged-out notice instead of the form. Wait for the logout to land.
    expect(page.get_by_text("You are not logged in")).to_be_visible(timeout=SLOW_MS)


def _qa_saves_a_threshold(page, url: str, artifacts_dir: Path, shots: list[Path]) -> None:
    from playwright.sync_api import expect

    _log_in(page, url, "qa")
    _nav(page, "Thresholds (QA)")
    expect(page.get_by_text("Score distributions")).to_be_visible(timeout=SLOW_MS)
    page.get_by_label("Reason (kept in the audit trail)").fill("browser test: keep the calibrated value")
    page.get_by_role("button", name="Save as new threshold version").click()
    saved = page.get_by_text("Saved threshold version")
    expect(saved).to_be_visible(timeout=SLOW_MS)
    saved.scroll_into_view_if_needed()
    _shot(page, artifacts_dir, "qa", shots)


def test_operator_confirms_a_flagged_board_and_qa_saves_a_threshold(
        line: dict[str, object], sample_root: Path, artifacts_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    from inspector.store import Store

    url, data_dir, inbox = str(line["url"]), Path(line["data_dir"]), Path(line["inbox"])  # type: ignore[arg-type]
    boards = _sample_boards(sample_root, inbox.parent / "extra" / "gross")
    shots: list[Path] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1200})
            board_id = _operator_opens_a_flagged_board(page, url, inbox, boards, artifacts_dir, shots)
            _operator_confirms_the_board(page, data_dir, board_id)
            _operator_sees_the_overview_and_logs_out(page, artifacts_dir, shots)
            _qa_saves_a_threshold(page, url, artifacts_dir, shots)
        finally:
            browser.close()

    with Store.open(data_dir) as store:
        model_hash = store.get_inspection(board_id).model_hash  # type: ignore[union-attr]
        version = store.current_threshold(model_hash)
    assert version is not None and version.author == "qa"
    assert version.reason == "browser test: keep the calibrated value"

    _keep_for_docs(shots)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_stopping_the_dashboard_command_stops_its_server(tmp_path: Path) -> None:
    """A supervisor's SIGTERM to `inspector dashboard` must not leave Streamlit holding the port."""
    port = free_port()
    log = tmp_path / "dashboard.log"
    dashboard = _start(["dashboard", "--data-dir", str(tmp_path / "data"), "--users", str(_users_file(tmp_path)),
                        "--port", str(port)], log)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", dashboard, log)
        dashboard.terminate()
        assert dashboard.wait(timeout=30) in (0, 143, -15), log.read_text()[-2000:]
        deadline = time.monotonic() + 10
        while _port_open(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _port_open(port), f"Streamlit still serves port {port} after the command stopped"
    finally:
        _stop(dashboard)


# Regions per seeded board (newest last): one to eight, so a card shows one zoom, a full row, two
# rows and the cap of six with the rest counted; even boards are fixtured (a reference is stored).
REGION_COUNTS = (2, 1, 3, 6, 8, 1, 2, 4, 5, 1, 3, 2)
SEED_SIZE = (480, 360)  # width, height: a small line camera frame
VIEWPORT = {"width": 1366, "height": 768}  # the smallest screen at a review station


def _defect_spots(count: int, n: int, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """`count` defect boxes (x1, y1, x2, y2) apart from each other: the first at the board's left edge,
    the second a few pixels small, the rest of assorted sizes."""
    import numpy as np

    rng = np.random.default_rng(100 + n)
    width, height = size
    boxes: list[tuple[int, int, int, int]] = []
    while len(boxes) < count:
        side = 4 if len(boxes) == 1 else int(rng.integers(8, 28))
        x = 0 if not boxes else int(rng.integers(0, width - side))
        y = int(rng.integers(0, height - side))
        box = (x, y, x + side, y + side)
        if all(box[2] + 12 < b[0] or b[2] + 12 < box[0] or box[3] + 12 < b[1] or b[3] + 12 < box[1] for b in boxes):
            boxes.append(box)
    return boxes


def _seed_board(data_dir: Path, n: int, count: int) -> tuple[str, str, list[dict]]:
    """A synthetic board with `count` painted defects, its heatmap as the runner draws it (BGRA; the
    sixth board a gray map as older dashboards were fed) and, for even boards, the reference board
    beside the heatmap. Returns the image and heatmap paths (relative) and the stored regions."""
    import cv2
    import numpy as np

    from inspector.core.render import heatmap_image
    from inspector.core.results import InspectionResult
    from inspector.synth.board import render_board

    good = render_board(SEED_SIZE, (5, 1, n)).image
    board, amap, regions = good.copy(), np.zeros(good.shape[:2], np.float32), []
    for number, (x1, y1, x2, y2) in enumerate(_defect_spots(count, n, SEED_SIZE)):
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        cv2.ellipse(board, (centre, (x2 - x1, (y2 - y1) * 0.6), 30), (190, 190, 205), -1)  # solder splashed
        peak = 1.2 + 0.15 * ((number * 7 + n) % 9)
        spot = np.zeros_like(amap)
        cv2.ellipse(spot, (centre, (x2 - x1 + 4, y2 - y1 + 4), 30), 1.0, -1)
        spot = cv2.GaussianBlur(spot, (0, 0), 3.0)
        amap = np.maximum(amap, spot * (peak / float(spot.max())))  # red at the core, fading out around it
        regions.append({"bbox": [x1, y1, x2, y2], "area": (x2 - x1) * (y2 - y1), "peak": peak, "mean": peak / 2,
                        "centroid": [(x1 + x2) / 2, (y1 + y2) / 2]})
    stem = f"images/{n:016x}-board-{n}"
    cv2.imwrite(str(data_dir / f"{stem}.png"), board)
    if n == 5:
        cv2.imwrite(str(data_dir / f"{stem}.heatmap.png"), np.clip(amap * 255, 0, 255).astype(np.uint8))
    else:
        result = InspectionResult(score=2.0, threshold=1.0, verdict="fail", regions=[], anomaly_map=amap,
                                  reconstruction=None, model_hash="cd" * 32, calibration_version=1,
                                  pixel_threshold=1.0)
        cv2.imwrite(str(data_dir / f"{stem}.heatmap.png"), heatmap_image(result))
    if n % 2 == 0:
        cv2.imwrite(str(data_dir / f"{stem}.reference.png"), good)
    return f"{stem}.png", f"{stem}.heatmap.png", regions


def _seed_flagged(data_dir: Path, count: int) -> list[int]:
    """`count` flagged boards straight into a store (no runner needed); the newest has a Markdown name."""
    from inspector.store import Store

    (data_dir / "images").mkdir(parents=True)
    ids = []
    with Store.open(data_dir) as store:
        store.register_model("cd" * 32, "bundles/tiny", {"architecture": "test"})
        store.set_station_state("e2e-line", "running", last_image="x.png")
        for n in range(count):
            image_path, heatmap_path, regions = _seed_board(data_dir, n, REGION_COUNTS[n % len(REGION_COUNTS)])
            ids.append(store.record_inspection(
                station="e2e-line", input_sha256=f"{n:064x}", model_hash="cd" * 32, verdict="fail",
                source_name="[x](http://a)" if n == count - 1 else f"board-{n}.png", score=1.5, threshold=1.0,
                regions=regions, image_path=image_path, heatmap_path=heatmap_path, threshold_version=1))
    return ids


def _zooms_in_view(page, board_id: int, expected: int) -> list[dict[str, float]]:
    """Every region zoom of `board_id` on the page, as Playwright lays them out: `expected` of them,
    their pictures drawn, each wholly inside the 1366x768 window as it is (no scrolling). The queue
    redraws itself every couple of seconds, and a reading taken mid-redraw can place a zoom below a
    card not yet drawn (seen once on a loaded machine), so the boxes are read again until one whole
    reading lies in the window; the last reading is the failure's evidence."""
    zooms = page.locator(f'[class*="st-key-zoom-{board_id}-"]')
    deadline, boxes = time.monotonic() + SLOW_MS / 1000, []
    while time.monotonic() < deadline:
        try:
            if zooms.count() == expected:
                boxes = [zooms.nth(index).bounding_box(timeout=2_000) for index in range(expected)]
                loaded = all(box is not None and box["height"] >= 50 for box in boxes)  # pictures drawn
                if loaded and not _outside_window(boxes):
                    break
        except Exception:  # noqa: BLE001 - an element replaced by the redraw between two reads
            pass
        page.wait_for_timeout(250)
    else:
        if len(boxes) != expected or any(box is None or box["height"] < 50 for box in boxes):
            pytest.fail(f"board #{board_id}: {zooms.count()} zooms laid out, expected {expected} ({boxes})")
        number, box = _outside_window(boxes)[0]
        pytest.fail(f"zoom {number} of board #{board_id} at {box} is not wholly in the 1366x768 window")
    for number, box in enumerate(boxes, start=1):
        assert box["width"] >= 150, f"zoom {number} of board #{board_id} is too small to judge: {box}"
    return [{key: round(value, 1) for key, value in box.items()} for box in boxes]


def _outside_window(boxes: list) -> list[tuple[int, dict]]:
    """(number, box) of each zoom not wholly inside the 1366x768 window."""
    return [(number, box) for number, box in enumerate(boxes, start=1)
            if not (box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= VIEWPORT["width"]
                    and box["y"] + box["height"] <= VIEWPORT["height"])]


WAITING = re.compile(r"(\d+) flagged boards waiting for review; .* Updated (\S+)\.")


def _queue_caption(page) -> tuple[int, str] | None:
    """(boards waiting, time of the last redraw) from the queue's caption; None while it is redrawn."""
    try:
        match = WAITING.search(page.get_by_text(WAITING).first.inner_text(timeout=2_000))
    except Exception:  # noqa: BLE001 - the fragment replaces its elements while it redraws
        return None
    return (int(match.group(1)), match.group(2)) if match else None


def _press_until(page, key: str, waiting: int, tries: int = 3) -> None:
    """Press `key` until the queue shows `waiting` boards. A key pressed while the queue is being
    redrawn by its auto-refresh can go unheard; the key is pressed again only after the queue has
    redrawn three times since the press with the count unchanged (the press's own run comes before
    those), so a press that is merely slow to show on a slow machine is never doubled into a second
    review of another board."""
    before, deadline = _queue_caption(page), time.monotonic() + SLOW_MS / 1000
    while before is None and time.monotonic() < deadline:
        page.wait_for_timeout(250)
        before = _queue_caption(page)
    if before is None:
        pytest.fail("the queue's caption (boards waiting, last update) never showed")
    for _attempt in range(tries):
        page.keyboard.press(key)
        deadline, redraws = time.monotonic() + SLOW_MS / 1000, set()
        while time.monotonic() < deadline:
            now = _queue_caption(page)
            if now is not None and now[0] == waiting:
                return
            assert now is None or now[0] >= waiting, f"the queue went from {before[0]} to {now[0]} boards on one key"
            if now is not None and now[1] != before[1]:
                redraws.add(now[1])
            if len(redraws) >= 3:
                before = now  # redrawn again and again with the count unchanged: the key went unheard
                break
            page.wait_for_timeout(250)
        else:
            pytest.fail(f"the queue still shows {before[0]} boards {SLOW_MS / 1000:.0f} s after pressing {key}")
    pytest.fail(f"{tries} presses of {key} went unheard; the queue still shows {before[0]} boards")


def _zoomed_board_pages(page, url: str, ids: list[int], artifacts_dir: Path, shots: list[Path]) -> dict[int, list]:
    """Board pages at 1366x768: every zoom of a board with one row of three (fixtured) and of one with
    eight regions (six zooms, the rest counted) in view without scrolling."""
    from playwright.sync_api import expect

    seen = {}
    for n in (4, 2):  # eight regions; then three regions with a reference, the guide's picture
        page.goto(f"{url}/board?board={ids[n]}")
        expect(page.get_by_role("heading", name=f"Board #{ids[n]}")).to_be_visible(timeout=SLOW_MS)
        seen[ids[n]] = _zooms_in_view(page, ids[n], min(REGION_COUNTS[n], 6))
        if REGION_COUNTS[n] > 6:
            expect(page.get_by_text(f"+{REGION_COUNTS[n] - 6} more regions with smaller peaks")).to_be_visible()
        else:
            expect(page.get_by_text("board | reference | heatmap")).to_be_visible()
    _shot(page, artifacts_dir, "board", shots, prefix="review")
    return seen


def _ten_reviewed_by_keyboard(page, url: str, ids: list[int], artifacts_dir: Path,
                              shots: list[Path]) -> dict[int, list]:
    """The queue at 1366x768, ten boards dismissed with N: before each key, every zoom of the board
    the key is for (the first card) is in view without scrolling."""
    from playwright.sync_api import expect

    page.goto(url)
    expect(page.get_by_text("12 flagged boards waiting")).to_be_visible(timeout=SLOW_MS)
    seen = {}
    for waiting in range(11, 1, -1):  # N dismisses the newest board; the next one takes its place
        newest = ids[waiting]
        seen[newest] = _zooms_in_view(page, newest, min(REGION_COUNTS[waiting], 6))
        if waiting == 10:  # three regions with a reference: the guide's picture of the queue
            _shot(page, artifacts_dir, "queue", shots, prefix="review")
        _press_until(page, "n", waiting)
    return seen


def _board_links_need_a_login(browser, url: str, board_id: int) -> None:
    """QA opens a board: its link carries no session, so it shows the login form when pasted into
    another browser, after a logout, or after going back past the logout; a reload keeps the login."""
    from playwright.sync_api import expect

    qa = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
    _log_in(qa, url, "qa")
    expect(qa.get_by_text("[x](http://a)").first).to_be_visible(timeout=SLOW_MS)  # literal text
    assert qa.locator('a[href="http://a"]').count() == 0
    qa.locator(f".st-key-open-{board_id} button").first.click()
    expect(qa.get_by_role("heading", name=f"Board #{board_id}")).to_be_visible(timeout=SLOW_MS)
    qa.wait_for_url(f"**/board?board={board_id}", timeout=SLOW_MS)
    link = qa.url
    assert "session" not in link

    stranger = browser.new_context().new_page()  # the link pasted into another browser
    stranger.goto(link)
    expect(stranger.get_by_role("button", name="Log in")).to_be_visible(timeout=SLOW_MS)
    assert stranger.get_by_text("Logged in as").count() == 0

    qa.reload()  # a reload keeps the login and the board
    expect(qa.get_by_text("Logged in as qa")).to_be_visible(timeout=SLOW_MS)
    expect(qa.get_by_role("heading", name=f"Board #{board_id}")).to_be_visible(timeout=SLOW_MS)
    qa.get_by_role("button", name="Log out").click()
    expect(qa.get_by_text("You are not logged in")).to_be_visible(timeout=SLOW_MS)
    qa.go_back()
    qa.wait_for_timeout(1500)
    assert qa.get_by_text("Logged in as qa").count() == 0
    qa.goto(link)
    expect(qa.get_by_role("button", name="Log in")).to_be_visible(timeout=SLOW_MS)


def _operator_reviews_at_a_small_screen(browser, url: str, ids: list[int], artifacts_dir: Path,
                                        shots: list[Path]) -> tuple[dict[int, list], dict[int, list]]:
    """The operator at a review station's screen: no threshold saving, then the zoomed board pages and
    ten boards dismissed from the queue by keyboard. The zooms seen on (the board pages, the queue)."""
    from playwright.sync_api import expect

    operator = browser.new_context(viewport=VIEWPORT).new_page()  # a review station's screen
    _log_in(operator, url, "operator")
    operator.goto(f"{url}/thresholds")
    expect(operator.get_by_text("Logged in as operator")).to_be_visible(timeout=SLOW_MS)
    assert operator.get_by_role("button", name="Save as new threshold version").count() == 0
    pages = _zoomed_board_pages(operator, url, ids, artifacts_dir, shots)
    queue = _ten_reviewed_by_keyboard(operator, url, ids, artifacts_dir, shots)
    return pages, queue


def test_logins_stay_out_of_the_address_and_ten_boards_are_reviewed_by_keyboard(
        tmp_path: Path, artifacts_dir: Path) -> None:
    require(CHROMIUM.exists(), f"{CHROMIUM} (Debian chromium) is needed for the browser test")
    from playwright.sync_api import sync_playwright

    from inspector.store import Store

    data_dir = tmp_path / "data"
    ids = _seed_flagged(data_dir, 12)
    shots: list[Path] = []
    port = free_port()
    url, log = f"http://127.0.0.1:{port}", tmp_path / "dashboard.log"
    dashboard = _start(["dashboard", "--data-dir", str(data_dir), "--users", str(_users_file(tmp_path)),
                        "--port", str(port)], log)
    try:
        _wait_healthy(url, dashboard, log)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                _board_links_need_a_login(browser, url, ids[-1])
                pages, queue = _operator_reviews_at_a_small_screen(browser, url, ids, artifacts_dir, shots)
            finally:
                browser.close()
    finally:
        _stop(dashboard)
    with Store.open(data_dir) as store:
        reviews = store.reviews_for()
    assert sorted(r.inspection_id for r in reviews) == sorted(ids[2:])
    assert {(r.operator, r.decision) for r in reviews} == {("operator", "dismiss")}
    assert len(queue) == 10 and sum(len(boxes) for boxes in queue.values()) == sum(
        min(count, 6) for count in REGION_COUNTS[2:])
    (artifacts_dir / "review-zooms.json").write_text(json.dumps(
        {"viewport": VIEWPORT, "queue": queue, "board pages": pages}, indent=1))
    _keep_for_docs(shots)
