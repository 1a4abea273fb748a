"""The command line explains itself and turns bad input into one error line."""

from __future__ import annotations

import subprocess
import sys

import pytest

COMMANDS = ["samples", "train", "export", "calibrate", "inspect", "evaluate", "bench", "watch", "camera",
            "dashboard", "demo"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True, timeout=120)


def test_root_help_lists_every_command() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage: inspector " + command in result.stdout
    assert "--help" in result.stdout


def test_unknown_option_is_one_line() -> None:
    result = run_cli("inspect", "--no-such-option")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "--no-such-option" in lines[0]
    assert "Traceback" not in result.stderr


def test_missing_path_is_one_line(tmp_path) -> None:
    result = run_cli("train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "b"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0]


def test_bad_size_is_one_line(tmp_path) -> None:
    result = run_cli("samples", "--out", str(tmp_path), "--size", "big")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and "WIDTHxHEIGHT" in result.stderr
