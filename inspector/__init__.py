"""board-inspector runtime: ONNX inference, heatmaps, thresholds, feeds, results store, CLI.

Nothing in this package may import torch: a line PC installs it with ONNX Runtime and OpenCV only.
"""

__version__ = "0.1.0"
