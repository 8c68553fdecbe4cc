"""Detectors: pure functions and ONNX sessions, arrays in, findings out.

Nothing here imports drivers/, edge_agent/ or hw_sim/: a detector is usable on any array,
from any source, in any process.
"""
