"""CPU feature report: flags read from a cpuinfo file, and the 8-bit dot-product path named."""

from __future__ import annotations

from pathlib import Path

from inspector.quality.cpu import cpu_features, cpu_ticks, describe, int8_dot_product, stolen_share


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 {flags}\n\n"
                    f"processor\t: 1\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse2 {flags}\n")
    return path


def test_avx2_only_cpu_is_named_as_saturating(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    features = cpu_features(_cpuinfo(tmp_path, "avx2 fma"))
    assert features["isa"] == ["avx2", "fma"]
    assert features["model"] == "Test CPU 9000"
    assert features["int8_dot_product"].startswith("avx2")
    assert "saturates" in describe(features)


def test_vnni_cpu_is_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    features = cpu_features(_cpuinfo(tmp_path, "avx2 fma avx512f avx512bw avx512_vnni"))
    assert "avx512_vnni" in features["isa"]
    assert features["int8_dot_product"].startswith("vnni")


def test_arm_and_missing_cpuinfo(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp sve\n")
    assert cpu_features(path)["isa"] == ["asimd", "asimddp", "sve"]
    assert int8_dot_product(["asimd"]) == "no 8-bit dot product instructions"
    assert cpu_features(tmp_path / "absent")["isa"] == []


def test_stolen_cpu_time_is_read_from_proc_stat(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 5 35 0 0\ncpu0 50 0 25 400 5 0 2 18 0 0\n")
    before = cpu_ticks(stat)
    assert before == (1000, 35)
    stat.write_text("cpu  200 0 60 900 10 0 5 125 0 0\n")  # 300 more ticks, 90 of them stolen
    assert stolen_share(before, cpu_ticks(stat)) == 0.3
    assert stolen_share(before, before) is None  # no time passed: no share
    stat.write_text("intr 1 2 3\n")
    assert cpu_ticks(stat) is None and cpu_ticks(tmp_path / "missing") is None
