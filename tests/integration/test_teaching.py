"""Learning from review (issue 34): dismissed false alarms widen the tolerance where they were, and only there.

A "glint" (a soft bright spot, as a lamp leaves on a plated hole) is painted on good boards of the tiny
fixtured bundle: at place P it is dismissed and taught, at place Q it never is.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspector.cli import main
from inspector.config import InspectConfig, TeachConfig
from inspector.core.engine import Inspector
from inspector.errors import ConfigError
from inspector.feeds.folder import run_folder
from inspector.review import decisions
from inspector.review.plan import TeachingRefused
from inspector.review.preview import tolerance_of
from inspector.review.roles import AccessDenied, User
from inspector.review.teach import learn, rollback
from inspector.store import Store
from tests.runner_config import runner_config

QA = User("quinn", "qa")
OPERATOR = User("olga", "operator")
CANDIDATES = [(50, 60), (100, 40), (40, 120), (110, 100), (80, 80), (120, 130)]
GLINT = 37.0


def glint(image: np.ndarray, place: tuple[int, int], strength: float = GLINT, radius: int = 3) -> np.ndarray:
    spot = np.zeros(image.shape[:2], np.float32)
    cv2.circle(spot, place, radius, 1.0, -1)
    spot = cv2.GaussianBlur(spot, (0, 0), 1.5) * np.float32(strength)
    added = spot[..., None] if image.ndim == 3 else spot
    return np.clip(image.astype(np.float32) + added, 0, 255).astype(np.uint8)


def near(bbox: tuple[int, int, int, int] | list[int], place: tuple[int, int], slack: int = 6) -> bool:
    x1, y1, x2, y2 = bbox
    return x1 - slack <= place[0] <= x2 + slack and y1 - slack <= place[1] <= y2 + slack


def goods(sample_root: Path) -> list[np.ndarray]:
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((sample_root / "train" / "good").glob("*.png"))]


@pytest.fixture(scope="module")
def places(fixtured_bundle: Path, sample_root: Path) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two places where the glint is flagged on the first four good boards (P is taught, Q is not)."""
    engine = Inspector.load(fixtured_bundle)
    boards = goods(sample_root)[:4]
    found = [place for place in CANDIDATES
             if all(any(near(r.bbox, place) for r in engine.inspect(glint(b, place)).regions) for b in boards)]
    assert len(found) >= 2, f"the glint is flagged at too few places ({found}) to test teaching"
    return found[0], found[1]


class Line:
    """A store and a folder of stored boards, as the runner leaves them."""

    def __init__(self, root: Path, engine: Inspector) -> None:
        self.root, self.engine = root, engine
        self.store = Store.open(root / "data")
        self.store.register_model(engine.model_hash)
        (root / "boards").mkdir(exist_ok=True)

    def inspect(self, image: np.ndarray, name: str) -> tuple[int, object]:
        path = self.root / "boards" / f"{name}.png"
        cv2.imwrite(str(path), image)
        result = self.engine.inspect(image)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        inspection_id = self.store.record_inspection(
            station="t", input_sha256=digest, model_hash=result.model_hash, verdict=result.verdict, source_name=path.name,
            score=result.score, threshold=result.threshold, regions=[r.to_dict() for r in result.regions],
            image_path=str(path), tolerance_version=result.tolerance_version,
            silenced_regions=[r.to_dict() for r in result.silenced_regions])
        return inspection_id, result

    def dismissed(self, image: np.ndarray, name: str) -> None:
        """A board inspected and stored, then dismissed by the operator as a false alarm."""
        inspection_id, _ = self.inspect(image, name)
        decisions.dismiss_false_alarm(self.store, OPERATOR, inspection_id)

    def use_current(self) -> None:
        """Judge the next boards with the newest stored version, as the runner does."""
        self.engine.set_tolerance(tolerance_of(self.store.current_tolerance(self.engine.model_hash, with_maps=True)))


@pytest.fixture
def line(tmp_path: Path, fixtured_bundle: Path) -> Iterator[Line]:
    made = Line(tmp_path, Inspector.load(fixtured_bundle))
    yield made
    made.store.close()


def test_a_dismissal_silences_its_place_on_the_next_board_and_nowhere_else(
        line: Line, fixtured_bundle: Path, sample_root: Path, places: tuple[tuple[int, int], tuple[int, int]]) -> None:
    p, q = places
    boards = goods(sample_root)
    first, result = line.inspect(glint(boards[0], p), "first")
    assert any(near(r.bbox, p) for r in result.regions)  # type: ignore[attr-defined]
    decisions.dismiss_false_alarm(line.store, OPERATOR, first, "glint on the via")
    made, version = learn(fixtured_bundle, line.store, QA, "glint on the via row")
    assert version is not None and version.version == 1 and version.author == "quinn"
    assert any(lesson.inspection_id == first for lesson in made.lessons)
    assert made.preview.removed_on_dismissed >= 1 and made.preview.missed == []
    assert 0 < float((made.factor > 1).mean()) < 0.1  # local: a few places, not the board
    assert float(made.factor.max()) <= TeachConfig().ceiling
    line.use_current()
    _, same_place = line.inspect(glint(boards[1], (p[0] + 1, p[1] + 1), GLINT * 1.05), "next-at-p")
    assert not any(near(r.bbox, p) for r in same_place.regions)  # type: ignore[attr-defined]
    assert any(near(r.bbox, p) for r in same_place.silenced_regions)  # type: ignore[attr-defined]
    assert same_place.tolerance_version == 1  # type: ignore[attr-defined]
    stored = line.store.get_inspection(line.store.list_inspections(limit=1)[0].id)
    assert stored is not None and stored.tolerance_version == 1 and stored.silenced_regions
    _, other_place = line.inspect(glint(boards[1], q), "next-at-q")
    assert any(near(r.bbox, q) for r in other_place.regions)  # type: ignore[attr-defined]


def test_a_confirmed_defect_place_is_never_silenced(
        line: Line, fixtured_bundle: Path, sample_root: Path, places: tuple[tuple[int, int], tuple[int, int]]) -> None:
    p, _ = places
    boards = goods(sample_root)
    confirmed, _ = line.inspect(glint(boards[2], p), "real-defect-at-p")
    decisions.confirm_defect(line.store, OPERATOR, confirmed, "contamination")
    line.dismissed(glint(boards[0], p), "glint-at-p")
    made, _ = learn(fixtured_bundle, line.store, QA, "glints")
    x, y = p
    assert made.protected[y, x] and made.factor[y - 3:y + 4, x - 3:x + 4].max() == 1.0
    assert any(lesson.clipped_by_protection for lesson in made.lessons) or not made.lessons
    line.use_current()
    _, again = line.inspect(glint(boards[3], p), "next-at-p")
    assert any(near(r.bbox, p) for r in again.regions)  # type: ignore[attr-defined]


def test_a_later_confirmation_resets_a_taught_place(
        line: Line, fixtured_bundle: Path, sample_root: Path, places: tuple[tuple[int, int], tuple[int, int]]) -> None:
    p, _ = places
    boards = goods(sample_root)
    line.dismissed(glint(boards[0], p), "glint-at-p")
    first, _ = learn(fixtured_bundle, line.store, QA, "glint")
    assert first.factor[p[1], p[0]] > 1.0
    line.use_current()
    # A defect at that place still reaches the line when it is stronger than the glint taught: confirmed.
    confirmed, shown = line.inspect(glint(boards[2], p, GLINT * 6), "defect-at-p")
    assert shown.regions  # type: ignore[attr-defined]
    decisions.confirm_defect(line.store, OPERATOR, confirmed, "burn")
    second, _ = learn(fixtured_bundle, line.store, QA, "a burn was confirmed there")
    assert second.factor[p[1], p[0]] == 1.0 and second.protected[p[1], p[0]]


def test_a_huge_dismissed_region_is_refused_as_a_set_up_problem(line: Line, fixtured_bundle: Path,
                                                                  sample_root: Path) -> None:
    board = goods(sample_root)[0]
    flooded = glint(board, (80, 80), 90.0, radius=40)  # a lamp that moved: a third of the board
    inspection_id, result = line.inspect(flooded, "lamp-moved")
    assert result.regions  # type: ignore[attr-defined]
    decisions.dismiss_false_alarm(line.store, OPERATOR, inspection_id)
    made, version = learn(fixtured_bundle, line.store, QA, "lamp")
    [refusal] = made.refusals
    assert refusal.inspection_id == inspection_id and "set-up problem" in refusal.reason
    assert made.lessons == [] and float(made.factor.max()) == 1.0  # nothing on that board is learned
    assert version is not None and version.summary["refusals"]


def test_only_qa_teaches_and_nothing_to_teach_is_said(line: Line, fixtured_bundle: Path, sample_root: Path,
                                                      places: tuple[tuple[int, int], tuple[int, int]]) -> None:
    with pytest.raises(TeachingRefused, match="nothing to teach"):
        learn(fixtured_bundle, line.store, QA, "first try")
    line.dismissed(glint(goods(sample_root)[0], places[0]), "glint")
    with pytest.raises(AccessDenied, match="needs 'qa'"):
        learn(fixtured_bundle, line.store, OPERATOR, "an operator tries")
    with pytest.raises(ConfigError, match="reason"):
        learn(fixtured_bundle, line.store, QA, "  ")
    assert line.store.tolerance_history(line.engine.model_hash) == []


def test_bare_board_bundles_are_told_teaching_does_not_apply(tmp_path: Path, tiny_bundle: Path) -> None:
    with Store.open(tmp_path) as store, pytest.raises(ConfigError, match="not registered to a reference"):
        learn(tiny_bundle, store, QA, "scans")


def test_rollback_restores_the_previous_behaviour_exactly(
        line: Line, fixtured_bundle: Path, sample_root: Path, places: tuple[tuple[int, int], tuple[int, int]]) -> None:
    p, q = places
    boards = goods(sample_root)
    probe = glint(glint(boards[3], p), q)
    _, untaught = line.inspect(probe, "probe-before")
    line.dismissed(glint(boards[0], p), "glint-p")
    learn(fixtured_bundle, line.store, QA, "glint at p")
    line.use_current()
    taught_p = line.engine.inspect(probe)
    line.dismissed(glint(boards[1], q), "glint-q")
    learn(fixtured_bundle, line.store, QA, "glint at q")
    line.use_current()
    assert not np.array_equal(line.engine.inspect(probe).anomaly_map, taught_p.anomaly_map)  # q is tolerated too
    with pytest.raises(AccessDenied):
        rollback(fixtured_bundle, line.store, OPERATOR, 1, "operator")
    _, record = rollback(fixtured_bundle, line.store, QA, 1, "q was a real problem after all")
    assert record.version == 3 and record.restored_from == 1
    line.use_current()
    back = line.engine.inspect(probe)
    np.testing.assert_array_equal(back.anomaly_map, taught_p.anomaly_map)
    assert [r.bbox for r in back.regions] == [r.bbox for r in taught_p.regions]
    rollback(fixtured_bundle, line.store, QA, 0, "start over")
    line.use_current()
    np.testing.assert_array_equal(line.engine.inspect(probe).anomaly_map, untaught.anomaly_map)  # type: ignore[attr-defined]
    assert [v.version for v in line.store.tolerance_history(line.engine.model_hash)] == [1, 2, 3, 4]


def _users_file(path: Path) -> Path:
    path.write_text('[users.quinn]\nrole = "qa"\npassword = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="\n'
                    '[users.olga]\nrole = "operator"\npassword = "scrypt$16384$8$1$c2FsdA==$aGFzaA=="\n')
    return path


def test_the_review_command_writes_what_the_dashboard_writes(tmp_path: Path, line: Line, sample_root: Path) -> None:
    users = _users_file(tmp_path / "users.toml")
    ids = [line.inspect(glint(goods(sample_root)[i], (60 + i, 60)), f"b{i}")[0] for i in range(4)]
    db = str(tmp_path / "data")
    assert main(["review", "dismiss", str(ids[0]), "--db", db, "--user", "olga", "--users", str(users),
                 "--comment", "glint"]) == 0
    decisions.dismiss_false_alarm(line.store, OPERATOR, ids[1], "glint")
    assert main(["review", "confirm", str(ids[2]), "--type", "burn", "--db", db, "--user", "olga",
                 "--users", str(users)]) == 0
    decisions.confirm_defect(line.store, OPERATOR, ids[3], "burn")
    by_cli, by_page = line.store.reviews_for(ids[0])[0], line.store.reviews_for(ids[1])[0]
    assert (by_cli.operator, by_cli.decision, by_cli.defect_type, by_cli.comment) == \
        (by_page.operator, by_page.decision, by_page.defect_type, by_page.comment) == ("olga", "dismiss", "", "glint")
    by_cli, by_page = line.store.reviews_for(ids[2])[0], line.store.reviews_for(ids[3])[0]
    assert (by_cli.operator, by_cli.decision, by_cli.defect_type) == (by_page.operator, by_page.decision,
                                                                      by_page.defect_type) == ("olga", "confirm", "burn")


def test_the_review_command_keeps_the_role_checks(tmp_path: Path, line: Line, sample_root: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    users = _users_file(tmp_path / "users.toml")
    ids = [line.inspect(glint(goods(sample_root)[i], (60 + i, 60)), f"b{i}")[0] for i in range(2)]
    db = str(tmp_path / "data")
    for argv, message in (
            (["review", "dismiss", str(ids[0]), str(ids[1]), "--db", db, "--user", "olga", "--users", str(users)],
             "needs 'qa'"),  # several at once is QA's, as on the dashboard
            (["review", "dismiss", str(ids[0]), "--db", db, "--user", "mallory", "--users", str(users)], "no user"),
            (["review", "confirm", str(ids[0]), "--type", "gremlin", "--db", db, "--user", "olga", "--users",
              str(users)], "unknown defect type"),
            (["review", "dismiss", "999", "--db", db, "--user", "olga", "--users", str(users)], "does not exist"),
            (["learn", "--model", str(line.root), "--db", db, "--user", "olga", "--users", str(users), "--reason", "x"],
             "")):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code in (1, 2)
        if message:
            assert message in capsys.readouterr().err
    assert line.store.reviews_for(ids[0]) == [] and line.store.reviews_for(ids[1]) == []


def test_the_runner_applies_a_new_version_from_its_next_board_without_a_restart(
        tmp_path: Path, fixtured_bundle: Path, sample_root: Path,
        places: tuple[tuple[int, int], tuple[int, int]]) -> None:
    p, q = places
    boards = goods(sample_root)
    inbox, data = tmp_path / "inbox", tmp_path / "data"
    inbox.mkdir()
    users = _users_file(tmp_path / "users.toml")
    config = runner_config(data, station="t")
    engine = Inspector.load(fixtured_bundle)
    stop = threading.Event()
    worker = threading.Thread(target=run_folder, args=(inbox, engine, config, InspectConfig()),
                              kwargs={"stop": stop, "bundle": fixtured_bundle})
    worker.start()
    try:
        def drop(image: np.ndarray, name: str) -> int:
            cv2.imwrite(str(inbox / f"{name}.png"), image)
            deadline = time.monotonic() + 30
            with Store.open(data) as store:
                while time.monotonic() < deadline:
                    found = [r for r in store.list_inspections(limit=50) if r.source_name == f"{name}.png"]
                    if found:
                        return found[0].id
                    time.sleep(0.05)
            raise AssertionError(f"{name} was not stored")

        first = drop(glint(boards[0], p), "first")
        assert main(["review", "dismiss", str(first), "--db", str(data), "--user", "olga", "--users", str(users)]) == 0
        assert main(["learn", "--model", str(fixtured_bundle), "--db", str(data), "--user", "quinn", "--users",
                     str(users), "--reason", "glint on the via row", "--figure", str(tmp_path / "taught.png")]) == 0
        assert cv2.imread(str(tmp_path / "taught.png")) is not None
        time.sleep(1.1)  # the runner looks for a new version at most once a second
        at_p, at_q = drop(glint(boards[1], p), "next-at-p"), drop(glint(boards[1], q), "next-at-q")
    finally:
        stop.set()
        worker.join(30)
    with Store.open(data) as store:
        taught, untaught = store.get_inspection(at_p), store.get_inspection(at_q)
    assert taught is not None and untaught is not None
    assert taught.tolerance_version == 1 and any(near(r["bbox"], p) for r in taught.silenced_regions)
    assert not any(near(r["bbox"], p) for r in taught.regions)
    assert any(near(r["bbox"], q) for r in untaught.regions)
