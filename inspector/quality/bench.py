"""`inspector bench`: where the time goes, how fast the line can go, and how close to the CPU's peak.

Figures (all printed as a table and written as JSON with `--out`):

* per-stage times (decode, preprocess, inference, post-processing): median and p90 ms per image;
* end-to-end images/s (encoded bytes -> verdict with regions; the next batch is decoded and
  prepared, and the last one scored, beside the model call) and model-only images/s (the ONNX
  Runtime call alone on a prepared batch);
* torch eager vs ONNX Runtime on the same batch, timed in alternating blocks so that a shared
  machine's changing speed falls on both (torch is imported here, lazily, only if the training
  extra is installed and the bundle has its checkpoint; otherwise "not available");
* the share of CPU time the hypervisor took (steal, from /proc/stat) during the end-to-end loop
  and the torch comparison: on a shared virtual machine it explains figures that move between runs;
* MACs per image counted from the ONNX graph (Conv, ConvTranspose, MatMul, Gemm with shapes from
  ONNX shape inference), FLOPs = 2 x MACs;
* the machine's measured float32 peak (numpy 2048x2048 matmul, all cores) and the share of it the
  model-only inference reaches.

Warm-up calls run before every timed loop; each loop runs a fixed number of iterations (the
end-to-end loop at least MIN_BOARDS boards, whatever the number of images).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from inspector.config import InspectConfig, LineoutConfig
from inspector.core.imageio import decode_image, is_image_file
from inspector.core.interface import PreparedBoard
from inspector.core.overlap import overlapped
from inspector.core.preprocess import pad_to_multiple, prepare_board, to_channels
from inspector.errors import InspectorError
from inspector.quality.bench_table import print_table
from inspector.quality.cpu import cpu_features, cpu_ticks, stolen_share

if TYPE_CHECKING:  # the type only; the engine (ONNX Runtime) is imported when a bench starts
    from inspector.core.engine import Inspector

FIXTURE_STAGES = ("register", "photometric", "atlas")

GENERATED_SIZE = (640, 640)
GENERATED_COUNT = 8
MAX_IMAGES = 32  # images read from --images (bounded: they are all held in memory as bytes)
WARMUP = 2
ITERATIONS = 5  # passes over the image set for the stage timings, at least...
MIN_BOARDS = 160  # ...this many boards end to end: the first batch's preparation and the last one's
# scoring cannot overlap a model call, and over 40 boards that ramp alone cost about 8% of the rate.
MODEL_ITERATIONS = 10
COMPARE_ROUNDS = 8  # torch eager against ONNX Runtime: rounds of...
COMPARE_BLOCK = 3  # ...this many timed calls a side
PEAK_SIZE = 2048


def _percentiles(values: list[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {"median_ms": round(float(np.median(array)), 3), "p90_ms": round(float(np.percentile(array, 90)), 3)}


def _time_calls(call: Callable[[], Any], iterations: int, warmup: int = WARMUP) -> list[float]:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(iterations):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def bench_images(images: Path | None, channels: int, size: tuple[int, int] | None = None) -> tuple[list[bytes], str]:
    """Encoded images (bytes, so decoding is measured too) and where they came from."""
    if images is not None:
        files = sorted(p for p in Path(images).iterdir() if is_image_file(p))[:MAX_IMAGES]
        if not files:
            raise InspectorError(f"{images}: no images to benchmark with")
        return [p.read_bytes() for p in files], f"{len(files)} image(s) from {images}"
    from inspector.synth.board import render_board

    size = size or GENERATED_SIZE  # a registered bundle inspects boards of its reference's size only
    encoded = []
    for index in range(GENERATED_COUNT):
        pixels = to_channels(render_board(size, (1234, 9, index)).image, channels)
        ok, data = cv2.imencode(".png", pixels)
        if not ok:
            raise InspectorError("could not encode a generated board as PNG")
        encoded.append(data.tobytes())
    kind = "gray" if channels == 1 else "colour"
    return encoded, f"{GENERATED_COUNT} generated {kind} boards {size[0]}x{size[1]}"


def count_macs(model_path: Path, input_shape: tuple[int, int, int, int]) -> dict[str, Any]:
    """MACs of one forward pass at `input_shape` (N,C,H,W), from the ONNX graph's layer shapes."""
    try:
        import onnx
        from onnx import shape_inference
    except ImportError:
        return {"available": False, "reason": "the onnx package is not installed (training extra)"}
    model = onnx.load(str(model_path))
    graph_input = model.graph.input[0]
    for dim, value in zip(graph_input.type.tensor_type.shape.dim, input_shape):
        dim.Clear()
        dim.dim_value = value
    inferred = shape_inference.infer_shapes(model, strict_mode=False)
    shapes: dict[str, list[int]] = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = [d.dim_value if d.HasField("dim_value") else 0 for d in info.type.tensor_type.shape.dim]
        shapes[info.name] = dims
    for initializer in inferred.graph.initializer:
        shapes[initializer.name] = list(initializer.dims)
    macs, counted, unknown = 0, 0, []
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "ConvTranspose", "MatMul", "Gemm"):
            continue
        ins = [shapes.get(name, []) for name in node.input[:2]]
        out = shapes.get(node.output[0], [])
        if not out or any(not s or 0 in s for s in ins) or 0 in out:
            unknown.append(node.name or node.op_type)
            continue
        if node.op_type == "Conv":  # each output value: (Cin/group) x kh x kw products
            weight = ins[1]
            macs += int(np.prod(out)) * int(np.prod(weight[1:]))
        elif node.op_type == "ConvTranspose":  # each input value scatters into (Cout/group) x kh x kw
            data, weight = ins
            macs += int(np.prod(data)) * int(np.prod(weight[1:]))
        else:  # MatMul / Gemm: each output value is a dot product over K
            k = ins[0][-1] if not any(a.name == "transA" and a.i for a in node.attribute) else ins[0][-2]
            macs += int(np.prod(out)) * int(k)
        counted += 1
    per_image = macs // max(1, input_shape[0])
    return {"available": True, "input_shape": list(input_shape), "layers_counted": counted,
            "layers_without_shape": unknown, "macs_per_image": per_image, "gflops_per_image":
            round(2 * per_image / 1e9, 6), "note": "FLOPs = 2 x MACs; Conv/ConvTranspose/MatMul/Gemm only"}


def measure_peak_gflops(size: int = PEAK_SIZE, repeats: int = 10) -> dict[str, Any]:
    """float32 matmul rate with numpy's BLAS on all cores: the best of several runs.

    This is the practical peak numpy's BLAS reaches, not the silicon's: ONNX Runtime's convolution
    kernels can beat it (a share above 100% then), and other load on the machine lowers it.
    """
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    best = min(_time_calls(lambda: a @ b, repeats, warmup=1)) / 1e3
    return {"gflops": round(2 * size**3 / best / 1e9, 2), "method": f"numpy float32 {size}x{size} matmul, "
            f"best of {repeats}", "cpu_count": os.cpu_count()}


def alternated_times(calls: dict[str, Callable[[], Any]], rounds: int = COMPARE_ROUNDS,
                     block: int = COMPARE_BLOCK) -> dict[str, list[list[float]]]:
    """Call times (ms) of several calls measured in alternating blocks, the order turned each round.

    On a machine shared with other jobs the speed changes from minute to minute; timing one side
    after the other puts that change into their ratio (1.4-2.7x for the same bundle in three benches
    minutes apart). Each round times a block of every call back to back, after one untimed call that
    wakes its thread pool, so both sides of every round see the same load.
    """
    names = list(calls)
    times: dict[str, list[list[float]]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            times[name].append(_time_calls(calls[name], block, warmup=1))
    return times


def torch_comparison(bundle: Path, batch: np.ndarray, ort_call: Callable[[], np.ndarray],
                     ort_output: np.ndarray) -> dict[str, Any]:
    """Torch eager against ONNX Runtime on the same batch, alternated, or the reason torch cannot run."""
    checkpoint = Path(bundle) / "checkpoint.pt"
    if not checkpoint.is_file():
        return {"available": False, "reason": f"{checkpoint} not in the bundle"}
    from inspector import extensions

    try:
        trainer = extensions.training()
        import torch
    except (InspectorError, ImportError) as exc:
        return {"available": False, "reason": f"torch / training part not installed ({exc})"}
    try:
        model = trainer.torch_reference(checkpoint)
    except (InspectorError, KeyError, RuntimeError) as exc:
        return {"available": False, "reason": f"cannot build the model from {checkpoint} ({exc})"}
    tensor = torch.from_numpy(batch)
    with torch.inference_mode():
        output = model(tensor)
        output = (output[0] if isinstance(output, tuple) else output).numpy()
        times = alternated_times({"torch": lambda: model(tensor), "onnxruntime": ort_call})
    torch_ms = float(np.median(np.concatenate(times["torch"])))
    ort_ms = float(np.median(np.concatenate(times["onnxruntime"])))
    per_round = np.array([np.median(t) / np.median(o) for t, o in zip(times["torch"], times["onnxruntime"])])
    return {"available": True, "torch_eager_ms_per_batch": round(torch_ms, 3),
            "onnxruntime_ms_per_batch": round(ort_ms, 3), "onnxruntime_speedup": round(torch_ms / ort_ms, 3),
            "speedup_per_round": {"min": round(float(per_round.min()), 3),
                                  "median": round(float(np.median(per_round)), 3),
                                  "max": round(float(per_round.max()), 3)},
            "method": f"alternated: {COMPARE_ROUNDS} rounds of {COMPARE_BLOCK} calls a side, order turned each round",
            "max_abs_difference": float(np.abs(output - ort_output).max()),
            "mean_abs_difference": float(np.abs(output - ort_output).mean()), "torch_threads": torch.get_num_threads()}


def run_bench(bundle: Path, *, images: Path | None, batch: int, out: Path | None, runner: bool,
              lineout: LineoutConfig | None = None) -> dict[str, Any]:
    """Measure and print; write JSON to `out` when given. Returns the figures. With `lineout` outputs
    (MQTT, OPC UA) configured, the runner is measured without and with them."""
    from inspector.bundle.files import MODEL_FILE, recorded_int8_scheme, recorded_precision
    from inspector.core.engine import Inspector

    config = InspectConfig(batch_size=batch)
    engine = Inspector.load(bundle, config)
    reference = (engine.registration.width, engine.registration.height) if engine.registration is not None else None
    encoded, source = bench_images(images, engine.spec.channels, reference)
    batch = max(1, batch)
    end_to_end = _time_end_to_end(engine, encoded, batch, config.max_pixels)

    # Model only: one prepared batch through the ONNX Runtime call.
    first = decode_image(encoded[0])
    tensor, _ = pad_to_multiple(prepare_board(first, engine.spec, engine.registration), engine.spec.pad_multiple)
    model_batch = np.ascontiguousarray(np.repeat(tensor[None], batch, axis=0), dtype=np.float32)
    model_call = partial(engine.reconstruct, model_batch)
    model_times = _time_calls(model_call, MODEL_ITERATIONS)
    ort_output = model_call()
    model_rate = batch / (float(np.median(model_times)) / 1e3)

    macs = count_macs(Path(bundle) / MODEL_FILE, tuple(model_batch.shape))
    peak = measure_peak_gflops()
    figures: dict[str, Any] = {
        "bundle": str(bundle),
        "model_hash": engine.model_hash,
        "images": source,
        "image_size": [int(first.shape[1]), int(first.shape[0])],
        "model_input_shape": list(model_batch.shape),
        "batch": batch,
        "iterations": end_to_end.passes,
        "providers": engine.session.get_providers(),
        "precision": recorded_precision(bundle) or "unknown",
        "int8_scheme": recorded_int8_scheme(bundle),
        "cpu": cpu_features(),
        "stages": {name: _percentiles(values) for name, values in end_to_end.stages_ms.items()},
        "end_to_end_images_per_second": round(end_to_end.boards / end_to_end.seconds, 3),
        "model_only_images_per_second": round(model_rate, 3),
        "model_only_ms_per_batch": _percentiles(model_times),
        "flops": macs,
        "cpu_peak": peak,
    }
    ticks_before = cpu_ticks()
    figures["torch_vs_onnxruntime"] = torch_comparison(bundle, model_batch, model_call, ort_output)
    figures["stolen_cpu_share"] = {"end_to_end": end_to_end.stolen_share,
                                   "torch_comparison": stolen_share(ticks_before, cpu_ticks())}
    if macs.get("available"):
        _add_share_of_peak(figures, model_rate)
    figures["runner"] = _runner_figures(bundle, images, encoded, lineout) if runner else None
    print_table(figures)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


@dataclass
class _EndToEnd:
    """The end-to-end loop's figures: each stage's times (ms per image), the boards it judged in how
    many seconds over how many passes of the image set, and the CPU share the hypervisor took meanwhile."""

    stages_ms: dict[str, list[float]]
    boards: int
    seconds: float
    passes: int
    stolen_share: float | None


def _time_end_to_end(engine: Inspector, encoded: list[bytes], batch: int, max_pixels: int) -> _EndToEnd:
    """Bytes -> pixels -> verdict, `batch` images per engine call; the next batch is decoded and
    prepared (aligned, light-normalised) and the last one scored while the model runs (core/overlap.py)."""
    from tqdm import tqdm

    stages: dict[str, list[float]] = {"decode": [], "preprocess": [], "inference": [], "postprocess": []}
    engine.inspect_batch([decode_image(data) for data in encoded[:batch]])  # warm-up

    def decode_and_prepare(chunk: list[bytes]) -> list[PreparedBoard]:
        pixels = []
        for data in chunk:
            decode_start = time.perf_counter()
            pixels.append(decode_image(data, max_pixels=max_pixels))
            stages["decode"].append((time.perf_counter() - decode_start) * 1e3)
        return engine.prepare(pixels)

    passes = max(ITERATIONS, -(-MIN_BOARDS // len(encoded)))
    chunks = [encoded[start:start + batch] for _ in range(passes) for start in range(0, len(encoded), batch)]
    processed = 0
    ticks_before = cpu_ticks()
    began = time.perf_counter()
    for results in tqdm(overlapped(chunks, decode_and_prepare, engine.run, engine.judge), total=len(chunks),
                        desc="bench", unit="batch"):
        processed += len(results)
        for result in results:
            _add_stage_times(stages, result.timings_ms)
    wall = time.perf_counter() - began
    return _EndToEnd(stages, processed, wall, passes, stolen_share(ticks_before, cpu_ticks()))


def _add_stage_times(stages: dict[str, list[float]], timings_ms: Mapping[str, float]) -> None:
    """One board's stage times appended to `stages` (decode is timed apart, by the loop)."""
    for stage in ("preprocess", "inference", "postprocess"):
        stages[stage].append(timings_ms[stage])
    # Bundles of one fixtured design: registration, light normalisation and the
    # per-position model (its time is also inside postprocess) are shown on their own.
    for stage in FIXTURE_STAGES:
        if stage in timings_ms:
            stages.setdefault(stage, []).append(timings_ms[stage])


def _add_share_of_peak(figures: dict[str, Any], model_rate: float) -> None:
    """The model-only inference's GFLOP/s and its share of the measured CPU peak, with a note on the
    peak where the share cannot be read as one (an INT8 graph, a share above 1)."""
    peak = figures["cpu_peak"]
    achieved = 2 * figures["flops"]["macs_per_image"] * model_rate / 1e9
    figures["inference_gflops"] = round(achieved, 3)
    figures["share_of_peak"] = round(achieved / peak["gflops"], 4)
    if figures["precision"] == "int8":
        peak["note"] = "int8 graph: its integer kernels are not bound by the float32 peak"
    elif figures["share_of_peak"] > 1:
        peak["note"] = ("inference beat the numpy matmul rate: BLAS does not reach this CPU's peak, "
                        "or other load disturbed the peak measurement")


def _runner_figures(bundle: Path, images: Path | None, encoded: list[bytes],
                    lineout: LineoutConfig | None = None) -> dict[str, Any]:
    from inspector.quality.runner_bench import benchmark_runner

    outputs = [name for name, table in (("mqtt", lineout.mqtt), ("opcua", lineout.opcua)) if table.enabled] \
        if lineout is not None else []
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as work:
        folder = images
        if folder is None:  # the runner reads files: give it the generated boards as PNGs
            folder = Path(work) / "images"
            folder.mkdir()
            for index, data in enumerate(encoded):
                (folder / f"board-{index:03d}.png").write_bytes(data)
        plain = benchmark_runner(bundle, folder, Path(work))
        if not outputs:
            return {"available": True, **plain}
        # The same boards with the line's outputs on: what MQTT / OPC UA cost the runner (target: within 10%).
        wired = benchmark_runner(bundle, folder, Path(work), lineout)
        ratio = wired["runner_images_per_second"] / max(plain["runner_images_per_second"], 1e-9)
        return {"available": True, **plain, "with_outputs": {"outputs": outputs, **wired},
                "with_outputs_speed_ratio": round(ratio, 3)}
