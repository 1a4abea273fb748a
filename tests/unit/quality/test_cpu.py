"""CPU feature report: flags read from a cpuinfo file, and the 8-bit dot-product path named."""

from __future__ import annotations

from pathlib import Path

from inspector.quality.cpu import cpu_features, describe, int8_dot_product


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
