"""Names of the ONNX graph's inputs and outputs: the contract between export (training) and the engine."""

INPUT_NAME = "input"
OUTPUT_NAME = "reconstruction"
# Shift-tolerant squared error (N,1,H,W) computed in the graph (training/scored.py); bundles exported
# before it existed have only the reconstruction, and the engine computes the map itself.
ERROR_OUTPUT = "error"
