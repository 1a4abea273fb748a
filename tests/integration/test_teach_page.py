"""The dashboard's Teaching page (issue 34) under Streamlit's AppTest, on a real fixtured bundle and store."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from inspector.core.engine import Inspector
from inspector.store import Store
from tests.dashboard_env import Browser, dashboard_env, logged_in, write_users
from tests.integration.test_teaching import glint


@pytest.fixture
def station(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixtured_bundle: Path,
            sample_root: Path) -> tuple[Store, Browser]:
    data = tmp_path / "data"
    (data / "done").mkdir(parents=True)
    listed = write_users(tmp_path / "users.toml", "olga", "quinn")
    engine = Inspector.load(fixtured_bundle)
    store = Store.open(data)
    store.register_model(engine.model_hash, str(fixtured_bundle))
    good = cv2.imread(str(sorted((sample_root / "train" / "good").glob("*.png"))[0]), cv2.IMREAD_UNCHANGED)
    flagged = []
    for n, place in enumerate([(50, 60), (100, 40), (40, 120)]):
        path = data / "done" / f"glint-{n}.png"
        cv2.imwrite(str(path), glint(good, place))
        result = engine.inspect(cv2.imread(str(path), cv2.IMREAD_UNCHANGED))
        flagged.append(store.record_inspection(
            station="line-1", input_sha256=f"{n:064d}", model_hash=engine.model_hash, verdict=result.verdict,
            source_name=path.name, score=result.score, threshold=result.threshold,
            regions=[r.to_dict() for r in result.regions], image_path=str(path)))
    store.add_review(flagged[0], "olga", "dismiss", "", "glint")
    browser = dashboard_env(monkeypatch, db_url="", data_dir=data, users_file=listed, idle_minutes="30.123")
    yield store, browser
    store.close()


def test_qa_previews_then_teaches_and_operators_have_no_teaching_page(station: tuple[Store, Browser]) -> None:
    store, browser = station
    [model] = [m.hash for m in store.models()]
    at = logged_in("quinn", browser, timeout=120)
    at.switch_page("views/teach.py").run()
    assert not at.exception, at.exception
    assert any("1** boards dismissed" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Preview").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Lessons"]) >= 1 and metrics["Confirmed defects missed"] == "0"
    assert store.tolerance_history(model) == []  # a preview stores nothing

    at.text_area(key="teach_reason").input("glint on the via row")
    next(b for b in at.button if b.label == "Teach: store as a new version").click().run()
    assert not at.exception, at.exception
    [version] = store.tolerance_history(model)
    assert (version.version, version.author, version.reason) == (1, "quinn", "glint on the via row")
    assert "In force: version 1 by quinn (glint on the via row)" in [s.value for s in at.subheader]

    # A board judged with the version: the board page lists what it silenced, and says by which version.
    silenced = [{"bbox": [46, 56, 56, 66], "area": 80, "peak": 1.4, "mean": 1.1, "centroid": [51.0, 61.0]}]
    board = store.record_inspection(station="line-1", input_sha256="f" * 64, model_hash=model, verdict="pass",
                                    source_name="later.png", score=0.5, threshold=1.0, tolerance_version=1,
                                    silenced_regions=silenced)
    operator = logged_in("olga", browser, timeout=120)
    with pytest.raises(ValueError):
        operator.switch_page("views/teach.py").run()
    operator.query_params["board"] = str(board)
    operator.switch_page("views/board.py").run()
    assert not operator.exception, operator.exception
    assert any("1 region(s) silenced by learned tolerance version 1" in i.value for i in operator.info)
