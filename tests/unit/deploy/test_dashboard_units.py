"""Dashboard pieces without Streamlit: logins, launch command, threshold arithmetic, pictures."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from deploy.dashboard import analysis, auth, images
from deploy.dashboard.launch import ENV_DATA_DIR, ENV_USERS_FILE, streamlit_command
from inspector.config import DashboardConfig
from inspector.errors import ConfigError
from inspector.review import roles
from tests.conftest import REPO_ROOT

REPO = REPO_ROOT


def _users_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "users.toml"
    path.write_text(body)
    return path


def test_password_hash_is_salted_and_verifies() -> None:
    first, second = auth.hash_password("s3cret"), auth.hash_password("s3cret")
    assert first != second  # per-user salt
    assert auth.verify_password("s3cret", first) and auth.verify_password("s3cret", second)
    assert not auth.verify_password("s3creT", first)


def test_users_file_authenticates_by_role(tmp_path: Path) -> None:
    path = _users_file(tmp_path, f'[users.ana]\nrole = "qa"\npassword = "{auth.hash_password("pw")}"\n')
    users = auth.load_users(path)
    assert users.authenticate("ana", "pw") == auth.User("ana", "qa")
    assert users.authenticate("ana", "nope") is None
    assert users.authenticate("bob", "pw") is None


@pytest.mark.parametrize("body, fragment", [
    ("[users.a]\nrole = 'admin'\npassword = 'x'\n", "role must be one of"),
    ("[users.a]\nrole = 'qa'\npassword = 'plaintext'\n", "scrypt$N$r$p$salt$hash"),
    ("[users.a]\nrole = 'qa'\n", "password hash missing"),
    ("[users.a]\nrole = 'qa'\npassword = 'x'\nshoe = 1\n", "unknown key(s) shoe"),
    ("title = 'no users'\n", "no [users.<name>] tables"),
    ("[users.a\n", "cannot parse"),
])
def test_bad_users_file_names_the_file_and_problem(tmp_path: Path, body: str, fragment: str) -> None:
    path = _users_file(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        auth.load_users(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def _olga_users(folder: Path, olga_password: str = "olga-pass") -> auth.UsersFile:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "olga-users.toml"
    path.write_text(f'[users.olga]\nrole = "operator"\npassword = "{auth.hash_password(olga_password)}"\n')
    return auth.load_users(path)


def test_require_role_lets_qa_review_but_not_operators_change_thresholds() -> None:
    qa, operator = roles.User("q", "qa"), roles.User("o", "operator")
    assert roles.require_role(qa, roles.ROLE_OPERATOR, "review") is qa
    assert roles.require_role(operator, roles.ROLE_OPERATOR, "review") is operator
    with pytest.raises(roles.AccessDenied, match="needs 'qa'"):
        roles.require_role(operator, roles.ROLE_QA, "change threshold")
    with pytest.raises(PermissionError, match="login required"):
        roles.require_role(None, roles.ROLE_OPERATOR, "review")


def test_launch_refuses_without_users_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no users file"):
        streamlit_command(DashboardConfig(), tmp_path)
    with pytest.raises(ConfigError, match="users file not found"):
        streamlit_command(DashboardConfig(users_file=str(tmp_path / "missing.toml")), tmp_path)


def test_launch_command_binds_localhost_headless_with_pinned_security(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    users = _users_file(tmp_path, f'[users.kim]\nrole = "qa"\npassword = "{auth.hash_password("kim-pass-1")}"\n')
    monkeypatch.setenv("STREAMLIT_CLIENT_SHOW_ERROR_DETAILS", "full")  # a stray variable loosens nothing
    argv, env = streamlit_command(DashboardConfig(port=8999, users_file=str(users)), tmp_path / "data")
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("deploy/dashboard/server.py")
    options = dict(zip(argv[5::2], argv[6::2]))
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8999"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
    assert options["--client.showErrorDetails"] == "none"
    assert options["--server.enableXsrfProtection"] == "true" and options["--server.enableCORS"] == "true"
    assert not [name for name in env if name.startswith("STREAMLIT_")]
    assert env["BOARD_INSPECTOR_IDLE_MINUTES"] == "30.0"
    assert env[ENV_USERS_FILE] == str(users.resolve()) and env[ENV_DATA_DIR] == str((tmp_path / "data").resolve())


def test_cli_dashboard_without_users_is_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "inspector", "dashboard", "--data-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("error: dashboard: no users file")


def _frame(passed: list[float], dismissed: list[float], confirmed: list[float], unreviewed: list[float]):
    now = datetime.now(timezone.utc)
    rows, reviews = [], {}
    for group, scores in (("pass", passed), ("dismiss", dismissed), ("confirm", confirmed), ("open", unreviewed)):
        for score in scores:
            n = len(rows)
            rows.append(SimpleNamespace(id=n, created_at=now - timedelta(minutes=n * 20), station="s", score=score,
                                        threshold=1.0, verdict="pass" if group == "pass" else "fail"))
            if group in ("dismiss", "confirm"):
                reviews[n] = SimpleNamespace(decision=group, defect_type="short" if group == "confirm" else "")
    return analysis.history_frame(rows, reviews)


def test_history_groups_and_preview_counts() -> None:
    frame = _frame([0.1, 0.2, 0.3, 0.4], [1.1], [1.5, 2.5], [3.0])
    assert list(frame["group"]) == ["passed"] * 4 + ["dismissed", "confirmed", "confirmed", "unreviewed"]
    result = analysis.preview(frame, 2.5)  # 2.5 itself is flagged (score >= threshold)
    assert (result.boards, result.flagged, result.confirmed_defects, result.missed_defects,
            result.good_boards, result.false_alarms) == (8, 2, 2, 1, 5, 0)
    assert result.sentence().startswith("Of the last 8 boards, 2 would be flagged; 1 of 2 confirmed defects")


def test_threshold_for_false_alarm_rate_flags_at_most_that_share() -> None:
    good = np.arange(1, 101, dtype=float)  # 100 good boards scored 1..100
    threshold = analysis.threshold_for_false_alarm_rate(good, 0.05)
    assert np.sum(analysis.flags(good, threshold)) == 5 and threshold == pytest.approx(95.0)
    assert np.sum(analysis.flags(good, analysis.threshold_for_false_alarm_rate(good, 0.0))) == 0
    with pytest.raises(ValueError, match="no good boards"):
        analysis.threshold_for_false_alarm_rate(np.array([]), 0.1)


def test_threshold_for_miss_rate_misses_at_most_that_share() -> None:
    defects = np.array([2.0, 3.0, 4.0, 5.0])
    threshold = analysis.threshold_for_miss_rate(defects, 0.25)
    assert np.sum(~analysis.flags(defects, threshold)) == 1 and threshold == 3.0
    assert np.sum(~analysis.flags(defects, analysis.threshold_for_miss_rate(defects, 0.0))) == 0


def test_curves_need_both_classes_and_separate_perfectly_separable_scores() -> None:
    assert analysis.curves(_frame([0.1, 0.2], [], [], [3.0])) is None
    found = analysis.curves(_frame([0.1, 0.2, 0.3], [0.9], [1.5, 2.5], []))
    assert found is not None and found.roc_auc == 1.0 and found.average_precision == 1.0


def test_hourly_rates_and_defect_counts() -> None:
    frame = _frame([0.1, 0.2, 0.3], [], [1.5, 2.5], [])
    rates = analysis.hourly_rates(frame)
    assert int(rates["boards"].sum()) == 5
    assert float((rates["confirmed_rate"] * rates["boards"]).sum()) == pytest.approx(2.0)
    assert analysis.defect_type_counts(frame).to_dict() == {"short": 2}


def test_blend_opacity_and_regions_are_drawn() -> None:
    board = np.full((40, 50, 3), 100, np.uint8)
    heat = np.zeros((20, 25), np.uint8)  # half size: resized to the board
    assert np.array_equal(images.blend(board, heat, 0.0), board)
    full = images.blend(board, heat, 1.0)
    assert full.shape == board.shape and tuple(full[0, 0]) == (100, 100, 100)  # a zero map leaves the board as it is
    drawn = images.draw_regions(board, [{"bbox": [10, 10, 20, 20]}])
    assert tuple(drawn[15, 10]) == images.REGION_COLOUR and tuple(drawn[15, 15]) == (100, 100, 100)
    with pytest.raises(ValueError):
        images.blend(board, heat, 1.5)


def test_missing_stored_image_is_named(tmp_path: Path) -> None:
    with pytest.raises(images.MissingImage, match="gone.png: board image missing or unreadable .file not found"):
        images.read_colour(tmp_path / "gone.png", "board image")
    with pytest.raises(images.MissingImage, match="no heatmap was stored"):
        images.read_colour("", "heatmap")


def test_example_config_is_a_valid_settings_file_bound_to_localhost() -> None:
    from inspector.config import Settings, load_config

    settings = load_config(REPO / "deploy" / "example-config.toml", Settings)
    assert settings.dashboard.host == "127.0.0.1" and settings.dashboard.users_file
    assert settings.runner.data_dir == "/var/lib/board-inspector"


def test_cli_dashboard_config_names_the_missing_users_file(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[dashboard]\nusers_file = "{tmp_path / "absent.toml"}"\n')
    result = subprocess.run([sys.executable, "-m", "inspector", "dashboard", "--config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: {tmp_path / 'absent.toml'}: users file not found"


def test_threshold_label_says_which_counter_a_version_belongs_to() -> None:
    from datetime import datetime, timezone

    from deploy.dashboard.board_page import threshold_label
    from inspector.store.records import InspectionRecord

    def record(version: int | None, source: str | None) -> InspectionRecord:
        return InspectionRecord(id=1, station="s", source_path="", source_name="b.png", input_sha256="a" * 64,
                                created_at=datetime.now(timezone.utc), score=1.0, threshold=2.0, verdict="pass",
                                regions=[], image_path="", overlay_path="", heatmap_path="", model_hash="m",
                                threshold_version=version, timings={}, error=None, threshold_source=source)

    assert threshold_label(record(1, "qa")) == "QA v1"
    assert threshold_label(record(1, "bundle")) == "bundle v1"
    assert threshold_label(record(3, None)) == "v3"
    assert threshold_label(record(None, None)) == "bundle"


def test_shift_summary_counts_per_station_and_hour_and_downloads_as_csv() -> None:
    hour = datetime(2026, 11, 30, 6, 0, tzinfo=timezone.utc)
    rows = [SimpleNamespace(id=i, created_at=hour + timedelta(minutes=m), station=station, score=score, threshold=1.0,
                            verdict=verdict)
            for i, (m, station, score, verdict) in enumerate([
                (5, "line-1", 0.2, "pass"), (10, "line-1", 2.0, "fail"), (20, "line-1", 1.5, "review"),
                (70, "line-1", 3.0, "fail"), (15, "line-2", 0.1, "pass"), (25, "line-2", 2.2, "fail")])]
    reviews = {1: SimpleNamespace(decision="confirm", defect_type="short"),
               2: SimpleNamespace(decision="dismiss", defect_type=""),
               5: SimpleNamespace(decision="dismiss", defect_type="")}
    summary = analysis.shift_summary(analysis.history_frame(rows, reviews))
    assert summary.to_dict("records") == [
        {"station": "line-1", "hour": "2026-11-30T06:00Z", "boards": 3, "flagged": 2, "confirmed": 1, "dismissed": 1,
         "unreviewed": 0},
        {"station": "line-1", "hour": "2026-11-30T07:00Z", "boards": 1, "flagged": 1, "confirmed": 0, "dismissed": 0,
         "unreviewed": 1},
        {"station": "line-2", "hour": "2026-11-30T06:00Z", "boards": 2, "flagged": 1, "confirmed": 0, "dismissed": 1,
         "unreviewed": 0},
    ]
    csv = analysis.shift_summary_csv(analysis.history_frame(rows, reviews)).decode()
    assert csv.splitlines()[0] == "station,hour,boards,flagged,confirmed,dismissed,unreviewed"
    assert csv.splitlines()[1] == "line-1,2026-11-30T06:00Z,3,2,1,1,0"
    assert analysis.shift_summary(analysis.history_frame([], {})).empty
