"""INT8 on a CPU without VNNI, whatever CPU runs the tests: an AVX2-only Haswell emulated by qemu-user.

ONNX Runtime picks its 8-bit kernels by CPUID. Under `qemu-x86_64 -cpu Haswell` it sees AVX2 and no
AVX-512 or VNNI, so it runs the AVX2 kernel that sums pairs of u8 x s8 products in 16 bits; qemu
executes those instructions with their saturation. A synthetic convolution built to saturate shows
that the emulated CPU really took that path; the 7-bit-weight scheme (the default) must compute
there what it computes on the host, and a bundle exported on the host must pass its self-test there.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from inspector.bundle.tensors import INPUT_NAME
from inspector.config import InspectConfig
from inspector.core.session import open_session
from tests.conftest import require
from training.quantize import quantize_int8

QEMU = "qemu-x86_64"
CPU = "Haswell"  # AVX2 + FMA, no AVX-512, no VNNI
CHANNELS = 8


def emulated(code: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """Run Python `code` in this venv's interpreter on the emulated AVX2-only CPU."""
    require(platform.machine() == "x86_64" and shutil.which(QEMU) is not None,
            f"{QEMU} (Debian's qemu-user) on an x86_64 machine")
    return subprocess.run([QEMU, "-cpu", CPU, sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_the_emulated_cpu_reports_avx2_without_avx512_or_vnni() -> None:
    # What ONNX Runtime's dispatch reads: CPUID leaf 7 (AVX2 EBX bit 5, AVX-512F EBX bit 16, VNNI ECX bit 11).
    code = ("import ctypes, mmap\n"
            "code = bytes([0x53, 0x89, 0xf8, 0x31, 0xc9, 0x0f, 0xa2, 0x89, 0x1e, 0x89, 0x4e, 0x04, 0x5b, 0xc3])\n"
            "page = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
            "page.write(code)\n"
            "address = ctypes.addressof(ctypes.c_char.from_buffer(page))\n"
            "cpuid = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_void_p)(address)\n"
            "out = (ctypes.c_uint32 * 2)()\n"
            "cpuid(7, ctypes.addressof(out))\n"
            "ebx, ecx = out[0], out[1]\n"
            "print((ebx >> 5) & 1, (ebx >> 16) & 1, (ecx >> 11) & 1)\n")
    result = emulated(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["1", "0", "0"]  # avx2, no avx512f, no avx512_vnni


def saturating_conv(path: Path) -> list[np.ndarray]:
    """A 1x1 convolution over CHANNELS channels, all weights +1, and boards of bright pixels: every
    quantised activation is 255 and every full-range weight 127, so a pair sums to 64,770, past the
    16-bit limit; 7-bit weights (64) give 32,640, under it. Returns good boards for the ranges."""
    weight = helper.make_tensor("weight", TensorProto.FLOAT, [1, CHANNELS, 1, 1], [1.0] * CHANNELS)
    graph = helper.make_graph([helper.make_node("Conv", [INPUT_NAME, "weight"], ["output"])], "saturating",
                              [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, CHANNELS, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, 16, 16])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    rng = np.random.default_rng(0)
    return [rng.uniform(0.9, 1.0, (CHANNELS, 16, 16)).astype(np.float32) for _ in range(4)]


RUN = ("import sys, numpy as np\n"
       "from inspector.config import InspectConfig\n"
       "from inspector.core.session import open_session\n"
       "session = open_session(sys.argv[1], InspectConfig(providers='cpu'))\n"
       "board = np.load(sys.argv[2])\n"
       "np.save(sys.argv[3], session.run(None, {session.get_inputs()[0].name: board})[0])\n")


def test_seven_bit_weights_compute_the_same_on_avx2_and_full_range_weights_saturate(tmp_path: Path) -> None:
    boards = saturating_conv(tmp_path / "float.onnx")
    board = np.full((1, CHANNELS, 16, 16), 1.0, dtype=np.float32)
    np.save(tmp_path / "board.npy", board)
    exact = float(CHANNELS)  # the float32 convolution of all-ones boards with all-ones weights
    for scheme in ("u8s8", "u8s8-reduced"):
        quantize_int8(tmp_path / "float.onnx", tmp_path / f"{scheme}.onnx", boards, scheme)
        host = open_session(tmp_path / f"{scheme}.onnx", InspectConfig(providers="cpu")).run(
            None, {INPUT_NAME: board})[0]
        result = emulated(RUN, str(tmp_path / f"{scheme}.onnx"), str(tmp_path / "board.npy"),
                          str(tmp_path / f"{scheme}-avx2.npy"))
        assert result.returncode == 0, result.stderr[-2000:]
        avx2 = np.load(tmp_path / f"{scheme}-avx2.npy")
        if scheme == "u8s8":
            # The control: on the emulated AVX2 CPU the full-range scheme loses about half the sum.
            assert float(avx2.mean()) < 0.75 * exact, avx2.mean()
        else:
            assert np.array_equal(avx2, host)  # the same integers as the host's kernel (VNNI or AVX2)
            assert abs(float(avx2.mean()) - exact) < 0.05 * exact


SELFTEST = ("import json, sys\n"
            "from pathlib import Path\n"
            "from inspector.config import InspectConfig\n"
            "from inspector.core import selftest\n"
            "from inspector.core.engine import Inspector\n"
            "bundle = Path(sys.argv[1])\n"
            "engine = Inspector.load(bundle, InspectConfig(selftest=False, providers='cpu'))\n"
            "print(json.dumps({'difference': selftest.difference(engine, bundle / 'selftest.npz')}))\n"
            "Inspector.load(bundle)\n")


@pytest.mark.slow
def test_an_int8_bundle_exported_here_passes_its_self_test_on_an_avx2_only_cpu(tiny_bundle: Path) -> None:
    metrics = json.loads((tiny_bundle / "metrics.json").read_text())
    assert metrics["quantisation"]["precision"] == "int8" and metrics["quantisation"]["scheme"] == "u8s8-reduced"
    result = emulated(SELFTEST, str(tiny_bundle))
    assert result.returncode == 0, result.stderr[-2000:]  # Inspector.load runs the self-test and raises on failure
    assert json.loads(result.stdout.strip().splitlines()[-1])["difference"] < 1e-3
