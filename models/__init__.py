"""Training code that reproduces the shipped ONNX models (needs the `train` extra: torch, onnx)."""
