"""The figures of `inspector bench` as one printed table: a row per measure, in the order the bench
measures them (stages, speeds, FLOPs and the CPU's peak, torch against ONNX Runtime, the hypervisor's
steal, the folder runner)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from inspector.quality.cpu import describe

STEAL_WARNING = 0.05  # share of CPU time the hypervisor took during a phase before the table warns

Rows = list[tuple[str, str]]  # the table's (measure, value) rows


def print_table(figures: dict[str, Any], console: Console | None = None) -> None:
    """The figures `run_bench` measured, as a table on `console` (the terminal by default)."""
    console = console or Console()
    table = Table(title=f"bench: {figures['images']}, batch {figures['batch']}, input {figures['model_input_shape']}")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for measure, value in (_speed_rows(figures) + _peak_rows(figures) + _torch_rows(figures["torch_vs_onnxruntime"])
                           + _steal_rows(figures.get("stolen_cpu_share", {})) + _runner_rows(figures.get("runner"))):
        table.add_row(measure, value)
    console.print(table)


def _speed_rows(figures: dict[str, Any]) -> Rows:
    rows = [(f"{stage} ms/img (median / p90)", f"{values['median_ms']:.2f} / {values['p90_ms']:.2f}")
            for stage, values in figures["stages"].items()]
    scheme = figures.get("int8_scheme")
    return rows + [("CPU", describe(figures["cpu"])),
                   ("model precision", figures["precision"] + (f" ({scheme})" if scheme else "")),
                   ("end to end images/s", f"{figures['end_to_end_images_per_second']:.2f}"),
                   ("model only images/s", f"{figures['model_only_images_per_second']:.2f}")]


def _peak_rows(figures: dict[str, Any]) -> Rows:
    """The model's FLOPs, the rate inference reaches and its share of the CPU's measured peak."""
    flops = figures["flops"]
    if flops.get("available"):
        rows = [("MACs / FLOPs per image", f"{flops['macs_per_image'] / 1e9:.3f} G / {flops['gflops_per_image']:.3f} G"),
                ("inference GFLOP/s", f"{figures['inference_gflops']:.2f}")]
    else:
        rows = [("FLOPs", f"not available: {flops['reason']}")]
    rows.append(("CPU float32 peak GFLOP/s", f"{figures['cpu_peak']['gflops']:.1f}"))
    if "share_of_peak" in figures:
        rows.append(("share of peak", f"{100 * figures['share_of_peak']:.1f} %"))
        if "note" in figures["cpu_peak"]:
            rows.append(("note", figures["cpu_peak"]["note"]))
    return rows


def _torch_rows(comparison: dict[str, Any]) -> Rows:
    if not comparison["available"]:
        return [("torch vs ONNX Runtime", f"not available: {comparison['reason']}")]
    spread = comparison["speedup_per_round"]
    return [("torch eager (float32) ms/batch", f"{comparison['torch_eager_ms_per_batch']:.2f}"),
            ("ONNX Runtime ms/batch", f"{comparison['onnxruntime_ms_per_batch']:.2f}"),
            ("ORT speed-up over torch (alternated; rounds min-max)",
             f"{comparison['onnxruntime_speedup']:.2f}x ({spread['min']:.2f}-{spread['max']:.2f}x)")]


def _steal_rows(stolen_cpu_share: dict[str, float | None]) -> Rows:
    """The CPU share the hypervisor took per measured phase (where /proc/stat told), and a warning when much."""
    stolen = {phase: share for phase, share in stolen_cpu_share.items() if share is not None}
    if not stolen:
        return []
    rows = [("CPU taken by the hypervisor (steal)",
             ", ".join(f"{phase.replace('_', ' ')} {share:.1%}" for phase, share in stolen.items()))]
    if max(stolen.values()) > STEAL_WARNING:
        rows.append(("note", "this virtual machine lost CPU time while measuring: "
                             "the figures above are low and vary; repeat on a quiet machine"))
    return rows


def _runner_rows(runner: dict[str, Any] | None) -> Rows:
    if runner is None:
        return []
    if not runner.get("available"):
        return [("runner", runner["reason"])]
    rows = [("runner sustained images/s", str(runner.get("runner_images_per_second")))]
    if runner.get("with_outputs"):
        wired = runner["with_outputs"]
        rows.append((f"runner images/s with {', '.join(wired['outputs'])} on",
                     f"{wired['runner_images_per_second']} ({runner['with_outputs_speed_ratio']:.0%} of without)"))
    return rows
