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


def test_session_token_logs_the_user_back_in_until_it_expires(tmp_path: Path) -> None:
    users = _olga_users(tmp_path)
    now = [1000.0]
    tokens = auth.SessionTokens(lifetime_s=3600, clock=lambda: now[0])
    token = tokens.issue(auth.User("olga", "operator"), users)
    assert tokens.user_for(token, users) == auth.User("olga", "operator")
    now[0] += 3599
    assert tokens.user_for(token, users) is not None
    now[0] += 1
    assert tokens.user_for(token, users) is None  # a shift later the login form comes back


def test_session_token_refuses_forgery_revocation_new_password_and_other_servers(tmp_path: Path) -> None:
    users = _olga_users(tmp_path)
    tokens = auth.SessionTokens()
    token = tokens.issue(auth.User("olga", "operator"), users)
    payload, _, signature = token.partition(".")
    import base64
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = base64.urlsafe_b64encode(claims.replace(b'"expires": ', b'"expires": 9')).decode().rstrip("=")
    for bad in (f"{forged}.{signature}", f"{payload}.{signature[:-2]}xx", f"{payload}.{signature[:-1]}\u00e9",
                "garbage", "", ".", "a.b.c", "e30.x"):
        assert tokens.user_for(bad, users) is None, bad
    assert tokens.user_for(token, users, client="10.1.2.3") is None  # the link opened on another PC
    assert auth.SessionTokens().user_for(token, users) is None  # a restarted dashboard has a new secret
    assert tokens.user_for(token, _olga_users(tmp_path / "changed", "new-password")) is None  # password changed
    tokens.revoke(token)
    assert tokens.user_for(token, users) is None  # logged out


def test_require_role_lets_qa_review_but_not_operators_change_thresholds() -> None:
    qa, operator = auth.User("q", "qa"), auth.User("o", "operator")
    assert auth.require_role(qa, auth.ROLE_OPERATOR, "review") is qa
    assert auth.require_role(operator, auth.ROLE_OPERATOR, "review") is operator
    with pytest.raises(auth.AccessDenied, match="needs 'qa'"):
        auth.require_role(operator, auth.ROLE_QA, "change threshold")
    with pytest.raises(PermissionError, match="login required"):
        auth.require_role(None, auth.ROLE_OPERATOR, "review")


def test_hash_password_helper_writes_a_line_the_users_file_accepts(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "deploy.dashboard.auth", "hash-password", "--stdin"], input="pw\n",
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    path = _users_file(tmp_path, "[users.kim]\nrole = 'operator'\n" + result.stdout)
    assert auth.load_users(path).authenticate("kim", "pw") == auth.User("kim", "operator")


def test_demo_users_file_matches_documented_passwords() -> None:
    users = auth.load_users(REPO / "deploy" / "demo-users.toml")
    assert users.authenticate("operator", "demo-operator") == auth.User("operator", "operator")
    assert users.authenticate("qa", "demo-qa") == auth.User("qa", "qa")


def test_launch_refuses_without_users_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no users file"):
        streamlit_command(DashboardConfig(), tmp_path)
    with pytest.raises(ConfigError, match="users file not found"):
        streamlit_command(DashboardConfig(users_file=str(tmp_path / "missing.toml")), tmp_path)


def test_launch_command_binds_localhost_headless(tmp_path: Path) -> None:
    users = REPO / "deploy" / "demo-users.toml"
    argv, env = streamlit_command(DashboardConfig(port=8999, users_file=str(users)), tmp_path / "data")
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("deploy/dashboard/app.py")
    options = dict(zip(argv[5::2], argv[6::2]))
    assert options["--server.address"] == "127.0.0.1" and options["--server.port"] == "8999"
    assert options["--server.headless"] == "true" and options["--browser.gatherUsageStats"] == "false"
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
    assert full.shape == board.shape and tuple(full[0, 0]) == (128, 0, 0)  # JET of 0 is dark blue (BGR)
    drawn = images.draw_regions(board, [{"bbox": [10, 10, 20, 20]}])
    assert tuple(drawn[15, 10]) == images.REGION_COLOUR and tuple(drawn[15, 15]) == (100, 100, 100)
    with pytest.raises(ValueError):
        images.blend(board, heat, 1.5)


def test_missing_stored_image_is_named(tmp_path: Path) -> None:
    with pytest.raises(images.MissingImage, match="gone.png: board image missing"):
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


def test_login_throttle_locks_a_name_after_repeated_failures() -> None:
    now = [1000.0]
    throttle = auth.LoginThrottle(max_failures=3, window_s=60, lockout_s=30, clock=lambda: now[0])
    for _ in range(3):
        assert throttle.blocked_for("ana") == 0.0
        throttle.failed("ana")
    assert throttle.blocked_for("ana") == pytest.approx(30.0)
    assert throttle.blocked_for("bob") == 0.0  # other names unaffected
    now[0] += 31
    assert throttle.blocked_for("ana") == 0.0
    throttle.failed("ana")
    throttle.succeeded("ana")
    assert throttle.blocked_for("ana") == 0.0


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
