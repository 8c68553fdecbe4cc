"""The onnxruntime session every X-ray model runs in (the detector and its verifier), and the
error a model file that does not fit raises."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


class ModelLayoutError(ValueError):
    """The ONNX file's inputs or outputs do not fit the configured layout."""


def ort_session(model: Path | bytes, threads: int, what: str) -> ort.InferenceSession:
    """A CPU session with `threads` intra-op threads, run sequentially; `model` is a path or the
    file's bytes (already read to check its hash), `what` names it in errors."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=so,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for missing/corrupt files
        raise ModelLayoutError(f"{what}: cannot load ONNX model: {e}") from e
