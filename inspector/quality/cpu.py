"""What this CPU offers an INT8 or float32 model: the instruction sets the bench and the model card report.

ONNX Runtime picks its integer kernels by instruction set: with AVX-512 VNNI (or AVX-VNNI) an 8-bit
dot product accumulates in 32 bits; with AVX2 alone it goes through `vpmaddubsw`, which adds pairs
of u8 x s8 products in 16 bits and saturates when both are large. A bundle's INT8 settings decide
whether the two kinds of machine compute the same maps (training/quantize.py), so the figures
that depend on it name the instruction sets they were measured with.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

# Flags (as /proc/cpuinfo spells them) worth naming, in the order they are reported.
X86_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "sve", "sve2", "bf16")


def _cpuinfo(path: Path) -> tuple[str, set[str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    return model, flags


def int8_dot_product(isa: list[str]) -> str:
    """How this CPU multiplies 8-bit values, in the words the model card and bench use."""
    if "avx512_vnni" in isa or "avx_vnni" in isa:
        return "vnni (u8 x s8 accumulated in 32 bits)"
    if "avx2" in isa:
        return "avx2 (u8 x s8 pairs summed in 16 bits: saturates without 7-bit weights or u8 x u8)"
    if "asimddp" in isa or "i8mm" in isa:
        return "arm dot product"
    return "no 8-bit dot product instructions"


def cpu_features(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Machine, model name, the relevant instruction sets and the 8-bit dot-product path."""
    model, flags = _cpuinfo(cpuinfo)
    machine = platform.machine()
    wanted = ARM_FLAGS if machine.lower() in ("aarch64", "arm64") else X86_FLAGS
    isa = [flag for flag in wanted if flag in flags]
    return {
        "machine": machine,
        "model": model or platform.processor() or "unknown",
        "isa": isa,
        "int8_dot_product": int8_dot_product(isa),
    }


def describe(features: dict[str, Any]) -> str:
    """One line: 'x86_64, AMD EPYC ..., avx2 fma (int8: avx2 ...)'."""
    isa = " ".join(features["isa"]) or "no SIMD flags found"
    return f"{features['machine']}, {features['model']}, {isa}; int8: {features['int8_dot_product']}"


def cpu_ticks(stat: Path = Path("/proc/stat")) -> tuple[int, int] | None:
    """(all, stolen) CPU time since boot in clock ticks, from /proc/stat; None where it cannot be read.

    On a virtual machine the hypervisor can take the CPU away from this guest ("steal"): timings
    taken meanwhile are slow for a reason that is not the code, so the bench reports the share.
    """
    try:
        fields = stat.read_text().splitlines()[0].split()
        if fields[0] != "cpu" or len(fields) < 9:
            return None
        # user nice system idle iowait irq softirq steal (guest time is already inside user)
        ticks = [int(value) for value in fields[1:9]]
    except (OSError, IndexError, ValueError):
        return None
    return sum(ticks), ticks[7]


def stolen_share(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    """The share of CPU time the hypervisor took between two `cpu_ticks` readings."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    return round((after[1] - before[1]) / (after[0] - before[0]), 4)
